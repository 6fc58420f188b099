"""Variance and cost of gradient estimators on a discrete-latent model.

Model: a Gaussian mixture with discrete assignments, ``N`` points, ``C``
components, ``z_n ~ Categorical(uniform)``, ``x_n ~ N(mu_{z_n}, 1)``; guide:
``z_n ~ Categorical(logits_n)``. The objective is the ELBO; what changes is
the estimator the guide's choice asks for:

* REINFORCE without a baseline;
* REINFORCE with a running-mean baseline (here its converged value: the
  ELBO's mean at these parameters, passed in as an argument);
* MVD (the measure-valued derivative: one forward re-run per point and
  alternative value);
* enumeration (one re-run per point and alternative value, differentiated).

Reported per estimator: the time of one gradient estimate (timed by the
harness, ratio to REINFORCE) and, in the notes, the total variance of the
gradient w.r.t. the guide's logits, ``sum_i Var(g_i)`` over 2,000 estimates
at fixed parameters (model means at the data's clusters, guide logits
random), so the numbers compare estimators at equal cost per estimate
up to the re-runs' price.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from harness import Row, run_row

import ppl
from ppl import dist

C = 3


def problem(n: int):
    rng = np.random.default_rng(0)
    means = jnp.array([-3.0, 0.0, 3.0])
    z = rng.integers(0, C, n)
    x = jnp.asarray(np.asarray(means)[z] + rng.normal(size=n), jnp.float32)
    logits = jnp.asarray(rng.normal(size=(n, C)), jnp.float32)
    return means, x, logits


def objective(tag, x):
    @ppl.gen
    def model(means):
        z = dist.Categorical(logits=jnp.zeros((x.shape[0], C))) @ "z"
        dist.Normal(means[z], 1.0) @ "x"

    @ppl.gen
    def guide(logits, baseline):
        tag(dist.Categorical(logits=logits), baseline) @ "z"

    return ppl.vi.elbo(model, guide, {"x": x})


TAGS = {
    "REINFORCE": lambda d, b: ppl.vi.reinforce(d),
    "REINFORCE + running-mean baseline": lambda d, b: ppl.vi.reinforce(d, baseline=b),
    "MVD": lambda d, b: ppl.vi.mvd(d),
    "enumeration": lambda d, b: ppl.vi.enum(d),
}


def variances(n: int, draws: int = 2000) -> dict:
    means, x, logits = problem(n)
    elbo_mean = float(
        jnp.mean(
            jax.vmap(lambda k: objective(TAGS["REINFORCE"], x).estimate(k, (means,), (logits, 0.0)))(
                jax.random.split(jax.random.key(1), draws)
            )
        )
    )
    out = {}
    for name, tag in TAGS.items():
        e = objective(tag, x)
        grads = jax.jit(jax.vmap(lambda k, e=e: e.grad_estimate(k, (means,), (logits, elbo_mean))[1][0]))(
            jax.random.split(jax.random.key(2), draws)
        )
        out[name] = float(jnp.sum(jnp.var(grads, axis=0)))
    return out


def _build(name: str, n: int):
    def build():
        means, x, logits = problem(n)
        e = objective(TAGS[name], x)
        fn = jax.jit(lambda key, p, g: e.grad_estimate(key, p, g))
        return fn, (jax.random.key(0), (means,), (logits, 0.0))

    return build


def rows(quick: bool = False) -> list[Row]:
    n = 20 if quick else 100
    row = run_row(
        "GMM ELBO gradient (discrete latent)",
        f"N={n}, C={C}",
        {name: _build(name, n) for name in TAGS},
        "REINFORCE",
        repeats=10 if quick else 100,
    )
    var = variances(n, 200 if quick else 2000)
    base = var["REINFORCE"]
    row.note = "total variance of the logits gradient: " + "; ".join(
        f"{k} {v:.3g} ({v / base:.2g}x)" for k, v in var.items()
    )
    return [row]
