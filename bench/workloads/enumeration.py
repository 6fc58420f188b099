"""Discrete choices summed out: ppl's variable elimination vs hand-written JAX (issue 8).

* Mixture log marginal and its gradient: a 3-component Gaussian mixture,
  ``z_i ~ Categorical(w)``, ``x_i ~ N(mu[z_i], 1)`` inside ``ppl.vmap``,
  the assignments summed out (``ppl.infer.marginal_log_density``), value and
  gradient w.r.t. ``mu`` at N = 1,000 and 100,000, against the hand-written
  ``sum_i logsumexp_k(log w_k + log N(x_i; mu_k, 1))``.
* HMM log marginal likelihood, T = 1,000, K = 10, Gaussian emissions, the
  states summed out inside ``ppl.scan`` (forward algorithm), against a
  hand-written ``lax.scan`` forward algorithm.

The old estimator (one re-run of the whole program per element and value)
grew as N^1.9 on the mixture (1.14 s per gradient at N = 3,000, issue 8);
both ppl rows here are linear in N (or T).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from harness import Row, run_row
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl
from ppl import dist

K_MIX = 3
W_MIX = jnp.full(K_MIX, 1.0 / K_MIX)
MU0 = jnp.asarray([-2.0, 0.0, 2.0])


@ppl.gen
def point(mu):
    """One data point of the mixture: its assignment and its value."""
    z = dist.Categorical(probs=W_MIX) @ "z"
    dist.Normal(mu[z], 1.0) @ "x"


def _data(n: int):
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=n).astype(np.float32) * 3.0)


def _mixture(n: int):
    x, w, mu0 = _data(n), W_MIX, MU0

    @ppl.gen
    def model(mu):
        ppl.vmap(point, in_axes=None, axis_size=n)(mu) @ "pts"

    def ours():
        f = jax.jit(jax.value_and_grad(lambda mu, x: ppl.infer.marginal_log_density(model, (mu,), {"pts": {"x": x}})))
        return f, (mu0, x)

    def hand():
        def lp(mu, x):
            return jnp.sum(logsumexp(jnp.log(w) + norm.logpdf(x[:, None], mu, 1.0), axis=1))

        return jax.jit(jax.value_and_grad(lp)), (mu0, x)

    return {"hand-written JAX": hand, "ppl": ours}


def _mixture_elbo(n: int):
    """ELBO gradient: Normal guide on mu, the assignments summed out in the model (TraceEnum_ELBO's job)."""
    x, w, loc0 = _data(n), W_MIX, MU0

    @ppl.gen
    def model(x):
        mu = dist.Normal(jnp.zeros(K_MIX), 5.0) @ "mu"
        ppl.vmap(point, in_axes=None, axis_size=x.shape[0])(mu) @ "pts"

    @ppl.gen
    def guide(loc):
        dist.Normal(loc, 0.1).to_event(1) @ "mu"

    objective = ppl.vi.elbo(model, guide, lambda a: {"pts": {"x": a[0]}})

    def ours():
        f = jax.jit(lambda key, loc, x: objective.value_and_grad_estimate(key, (x,), (loc,)))
        return f, (jax.random.key(0), loc0, x)

    def hand():
        def elbo(loc, key, x):
            eps = jax.random.normal(key, (K_MIX,))
            mu = loc + 0.1 * eps
            lp = jnp.sum(logsumexp(jnp.log(w) + norm.logpdf(x[:, None], mu, 1.0), axis=1))
            lp += jnp.sum(norm.logpdf(mu, 0.0, 5.0))
            return lp - jnp.sum(norm.logpdf(mu, loc, 0.1))

        f = jax.jit(lambda key, loc, x: jax.value_and_grad(elbo)(loc, key, x))
        return f, (jax.random.key(0), loc0, x)

    return {"hand-written JAX": hand, "ppl": ours}


def _hmm(t: int, k: int):
    rng = np.random.default_rng(1)
    trans = jnp.asarray(0.5 * np.eye(k) + 0.5 * rng.dirichlet(np.ones(k), size=k), jnp.float32)  # rows sum to 1
    means = jnp.asarray(np.linspace(-5, 5, k), jnp.float32)
    ys = jnp.asarray(rng.normal(size=t).astype(np.float32) * 3.0)

    @ppl.gen
    def step(z_prev, _):
        z = dist.Categorical(probs=trans[z_prev]) @ "z"
        dist.Normal(means[z], 1.0) @ "y"
        return z, None

    @ppl.gen
    def model():
        ppl.scan(step, length=t)(jnp.int32(0), None) @ "s"

    def ours():
        return jax.jit(lambda y: ppl.infer.marginal_log_density(model, (), {"s": {"y": y}})), (ys,)

    def hand():
        log_t = jnp.log(trans)

        def forward(y):
            a0 = log_t[0] + norm.logpdf(y[0], means, 1.0)

            def body(a, yt):
                return logsumexp(a[:, None] + log_t, axis=0) + norm.logpdf(yt, means, 1.0), None

            a, _ = jax.lax.scan(body, a0, y[1:])
            return logsumexp(a)

        return jax.jit(forward), (ys,)

    return {"hand-written JAX": hand, "ppl": ours}


def rows(quick: bool = False) -> list[Row]:
    out = []
    for n in (1_000,) if quick else (1_000, 100_000):
        out.append(
            run_row(
                "mixture log marginal + gradient (assignments summed out)",
                f"N={n:,}, K={K_MIX}",
                _mixture(n),
                "hand-written JAX",
                repeats=10 if quick else 50,
            )
        )
    for n in (1_000,) if quick else (1_000, 100_000):
        out.append(
            run_row(
                "mixture ELBO gradient (Normal guide on mu, assignments summed out)",
                f"N={n:,}, K={K_MIX}",
                _mixture_elbo(n),
                "hand-written JAX",
                repeats=10 if quick else 50,
            )
        )
    t = 100 if quick else 1_000
    out.append(
        run_row(
            "HMM log marginal (forward algorithm)",
            f"T={t:,}, K=10",
            _hmm(t, 10),
            "hand-written JAX",
            repeats=10 if quick else 50,
        )
    )
    return out
