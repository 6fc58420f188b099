"""Log joint density (and gradient) of a hierarchical regression.

Model (J groups, N observations, group index g, covariate x):

    mu ~ Normal(0, 5), tau ~ HalfNormal(2), a_j ~ Normal(0, 1),
    b ~ Normal(0, 1), sigma ~ HalfNormal(1),
    y_i ~ Normal(mu + tau * a[g_i] + b * x_i, sigma)

Implementations: ppl's ``assess`` under ``jax.jit``; the same density written
by hand with ``jax.scipy.stats``; NumPyro's ``log_density`` of the equivalent
NumPyro model. Gradients are with respect to all five parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from harness import Row, run_row
from jax.scipy.stats import norm
from numpyro.infer.util import log_density

import ppl
from ppl import dist

J = 50


def data(n: int):
    rng = np.random.default_rng(0)
    g = jnp.asarray(rng.integers(0, J, n))
    x = jnp.asarray(rng.normal(size=n), jnp.float32)
    y = jnp.asarray(rng.normal(size=n), jnp.float32)
    return g, x, y


PARAMS = {
    "mu": jnp.asarray(0.1),
    "tau": jnp.asarray(1.0),
    "a": jnp.full((J,), 0.1),
    "b": jnp.asarray(0.5),
    "sigma": jnp.asarray(1.2),
}


@ppl.gen
def model(g, x):
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfNormal(2.0) @ "tau"
    a = dist.Normal(jnp.zeros(J), 1.0) @ "a"
    b = dist.Normal(0.0, 1.0) @ "b"
    sigma = dist.HalfNormal(1.0) @ "sigma"
    return dist.Normal(mu + tau * a[g] + b * x, sigma) @ "y"


def ppl_logp(p, g, x, y):
    return model.assess(ppl.choices(p) | ppl.choices(y=y), (g, x))[0]


def hand_logp(p, g, x, y):
    half = jnp.log(2.0)
    lp = norm.logpdf(p["mu"], 0.0, 5.0)
    lp += half + norm.logpdf(p["tau"], 0.0, 2.0)
    lp += jnp.sum(norm.logpdf(p["a"], 0.0, 1.0))
    lp += norm.logpdf(p["b"], 0.0, 1.0)
    lp += half + norm.logpdf(p["sigma"], 0.0, 1.0)
    lp += jnp.sum(norm.logpdf(y, p["mu"] + p["tau"] * p["a"][g] + p["b"] * x, p["sigma"]))
    return lp


def numpyro_model(g, x, y):
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfNormal(2.0))
    a = numpyro.sample("a", nd.Normal(jnp.zeros(J), 1.0))
    b = numpyro.sample("b", nd.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
    numpyro.sample("y", nd.Normal(mu + tau * a[g] + b * x, sigma), obs=y)


def numpyro_logp(p, g, x, y):
    return log_density(numpyro_model, (g, x, y), {}, p)[0]


def _builder(logp, n: int, grad: bool):
    def build():
        g, x, y = data(n)
        f = jax.grad(logp) if grad else logp
        fn = jax.jit(lambda p: f(p, g, x, y))
        return fn, (PARAMS,)

    return build


def rows(quick: bool = False) -> list[Row]:
    out = []
    sizes = [1_000] if quick else [1_000, 100_000]
    for n in sizes:
        for grad in (False, True):
            impls = {
                "hand-written JAX": _builder(hand_logp, n, grad),
                "ppl assess": _builder(ppl_logp, n, grad),
                "NumPyro log_density": _builder(numpyro_logp, n, grad),
            }
            what = "gradient" if grad else "log density"
            out.append(
                run_row("hierarchical " + what, f"N={n:,}", impls, "hand-written JAX", repeats=10 if quick else 200)
            )
    return out
