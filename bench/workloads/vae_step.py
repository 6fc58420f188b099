"""One optimiser step (gradient + Adam update) of a Bernoulli VAE, batch 128.

Configurations (issue 4):

* small: scikit-learn digits, 64 pixels binarised at half the maximum;
  encoder 64-256-relu-(16 means, 16 log-scales), decoder 16-256-relu-64 logits;
* large: the programmable-VI paper's VAE on 784 synthetic binary pixels;
  encoder 784-200-leaky_relu-(10 means, 10 softplus scales), decoder
  10-200-leaky_relu-784 logits.

Objectives: the ELBO (one reparameterised sample per data point) and the
per-data-point IWAE bound with K = 8, both summed over the batch.

Implementations, all with ``optax.adam(1e-3)`` and the same initial
parameters and batch:

* hand-written JAX: the estimator written out with ``jax.random.normal``,
  the densities in closed form (``log q`` through ``eps``), ``jax.value_and_grad``;
* ppl: ``ppl.vi.elbo`` on a whole-batch model, and ``ppl.vi.iwae`` on a
  one-data-point model summed over the batch with ``ppl.vi.batch_sum``
  (an expectation inside another);
* NumPyro SVI: ``Trace_ELBO`` / ``RenyiELBO(alpha=0, num_particles=8)`` (its
  IWAE; per data point through the plate), parameters through
  ``numpyro.param``, the same optax Adam via ``optax_to_numpyro``.

GenJAX is not included: it needs Python 3.12 and this environment has 3.11
(its numbers in ../shared/anchors.md were measured elsewhere).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import optax
from harness import Row, run_row
from jax.scipy.special import logsumexp
from numpyro.infer import SVI, RenyiELBO, Trace_ELBO
from numpyro.optim import optax_to_numpyro

import ppl
from ppl import dist

BATCH = 128
PARTICLES = 8
LR = 1e-3


# ------------------------------------------------------------- configurations
class Config:
    def __init__(self, name, pixels, hidden, latent, act, scale_fn):
        self.name, self.pixels, self.hidden, self.latent = name, pixels, hidden, latent
        self.act, self.scale_fn = act, scale_fn


SMALL = Config("small (digits 64-256-16)", 64, 256, 16, jax.nn.relu, jnp.exp)
LARGE = Config("large (784-200-10)", 784, 200, 10, jax.nn.leaky_relu, jax.nn.softplus)


def data(cfg: Config) -> jax.Array:
    if cfg.pixels == 64:
        from sklearn.datasets import load_digits

        x = load_digits().data[:BATCH]
        return jnp.asarray(x > 8.0, jnp.int32)  # binarised at half the maximum (16)
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.random((BATCH, cfg.pixels)) < 0.3, jnp.int32)


def init_params(cfg: Config) -> dict:
    def layer(key, n_in, n_out):
        return {"w": jax.random.normal(key, (n_in, n_out)) / math.sqrt(n_in), "b": jnp.zeros(n_out)}

    k = jax.random.split(jax.random.key(0), 4)
    return {
        "enc": [layer(k[0], cfg.pixels, cfg.hidden), layer(k[1], cfg.hidden, 2 * cfg.latent)],
        "dec": [layer(k[2], cfg.latent, cfg.hidden), layer(k[3], cfg.hidden, cfg.pixels)],
    }


def mlp(layers, x, act):
    h = act(x @ layers[0]["w"] + layers[0]["b"])
    return h @ layers[1]["w"] + layers[1]["b"]


def encode(cfg, enc, x):
    out = mlp(enc, x.astype(jnp.float32), cfg.act)
    return out[..., : cfg.latent], cfg.scale_fn(out[..., cfg.latent :])


def decode(cfg, dec, z):
    return mlp(dec, z, cfg.act)


# ------------------------------------------------------------- hand-written
def hand_objective(cfg: Config, iwae: bool):
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def objective(params, key, x):
        loc, scale = encode(cfg, params["enc"], x)
        k = PARTICLES if iwae else 1
        eps = jax.random.normal(key, (k, *loc.shape)) if iwae else jax.random.normal(key, loc.shape)
        z = loc + scale * eps  # (K, B, L) or (B, L)
        logits = decode(cfg, params["dec"], z.reshape(-1, cfg.latent)).reshape(*z.shape[:-1], cfg.pixels)
        softplus = jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))  # stable, cheaper than logaddexp
        log_px = jnp.sum(x * logits - softplus, axis=-1)
        log_pz = jnp.sum(-0.5 * z**2 - half_log_2pi, axis=-1)
        log_qz = jnp.sum(-0.5 * eps**2 - jnp.log(scale) - half_log_2pi, axis=-1)  # log N(z; loc, scale) via eps
        log_w = log_px + log_pz - log_qz
        if not iwae:
            return jnp.sum(log_w)
        return jnp.sum(logsumexp(log_w, axis=0) - math.log(k))

    return objective


# ------------------------------------------------------------------- ppl
def ppl_objective(cfg: Config, iwae: bool) -> ppl.vi.Expectation:
    if not iwae:

        @ppl.gen
        def model(dec, x):
            z = dist.Normal(jnp.zeros((x.shape[0], cfg.latent)), 1.0).to_event(2) @ "z"
            dist.Bernoulli(logits=decode(cfg, dec, z)).to_event(2) @ "x"

        @ppl.gen
        def guide(enc, x):
            loc, scale = encode(cfg, enc, x)
            dist.Normal(loc, scale).to_event(2) @ "z"

        return ppl.vi.elbo(model, guide, lambda model_args: {"x": model_args[1]})

    @ppl.gen
    def model1(dec, x):
        z = dist.Normal(jnp.zeros(cfg.latent), 1.0).to_event(1) @ "z"
        dist.Bernoulli(logits=decode(cfg, dec, z)).to_event(1) @ "x"

    @ppl.gen
    def guide1(enc, x):
        loc, scale = encode(cfg, enc, x)
        dist.Normal(loc, scale).to_event(1) @ "z"

    per_point = ppl.vi.iwae(model1, guide1, lambda model_args: {"x": model_args[1]}, particles=PARTICLES)
    return ppl.vi.batch_sum(per_point, in_axes=((None, 0), (None, 0)))


# ----------------------------------------------------------------- NumPyro
def numpyro_svi(cfg: Config, iwae: bool, params: dict):
    def param_tree(prefix, layers):
        return [{k: numpyro.param(f"{prefix}{i}_{k}", v) for k, v in layer.items()} for i, layer in enumerate(layers)]

    def model(x):
        dec = param_tree("dec", params["dec"])
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", nd.Normal(jnp.zeros(cfg.latent), 1.0).to_event(1))
            numpyro.sample("x", nd.Bernoulli(logits=decode(cfg, dec, z)).to_event(1), obs=x)

    def guide(x):
        enc = param_tree("enc", params["enc"])
        loc, scale = encode(cfg, enc, x)
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", nd.Normal(loc, scale).to_event(1))

    loss = RenyiELBO(alpha=0.0, num_particles=PARTICLES) if iwae else Trace_ELBO()
    return SVI(model, guide, optax_to_numpyro(optax.adam(LR)), loss)


# ----------------------------------------------------------------- builders
def _builders(cfg: Config, iwae: bool) -> dict:
    opt = optax.adam(LR)

    def adam_step(value_and_grad):
        def step(params, opt_state, key, x):
            value, grads = value_and_grad(params, key, x)
            updates, opt_state = opt.update(jax.tree_util.tree_map(jnp.negative, grads), opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        return jax.jit(step)

    def hand():
        objective = hand_objective(cfg, iwae)
        params = init_params(cfg)
        step = adam_step(lambda p, key, x: jax.value_and_grad(objective)(p, key, x.astype(jnp.float32)))
        return step, (params, opt.init(params), jax.random.key(1), data(cfg))

    def ours():
        objective = ppl_objective(cfg, iwae)

        def value_and_grad(p, key, x):
            value, (g_model, g_guide) = objective.value_and_grad_estimate(key, (p["dec"], x), (p["enc"], x))
            return value, {"dec": g_model[0], "enc": g_guide[0]}

        params = init_params(cfg)
        return adam_step(value_and_grad), (params, opt.init(params), jax.random.key(1), data(cfg))

    def numpyro_():
        svi = numpyro_svi(cfg, iwae, init_params(cfg))
        x = data(cfg)
        state = svi.init(jax.random.key(1), x)
        return jax.jit(svi.update), (state, x)

    return {"hand-written JAX+optax": hand, "ppl": ours, "NumPyro SVI": numpyro_}


def rows(quick: bool = False) -> list[Row]:
    out = []
    for cfg in (SMALL, LARGE):
        for iwae in (False, True):
            what = f"IWAE K={PARTICLES}" if iwae else "ELBO"
            out.append(
                run_row(
                    f"Bernoulli VAE step, {what}",
                    cfg.name,
                    _builders(cfg, iwae),
                    "hand-written JAX+optax",
                    repeats=10 if quick else 100,
                    min_time=0.0 if quick else 2.0,
                )
            )
    return out
