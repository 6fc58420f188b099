"""Flow VI (issue 9): 100 optimiser steps of the ELBO with a flow guide, ppl vs flowjax vs hand-written JAX.

Target: ``z ~ N(0, I_D)``, ``y ~ N(W z, 0.5^2 I)`` with ``y`` observed (a
correlated Gaussian posterior), D = 10 and 50. Guides: a MAF (flowjax's
``masked_autoregressive_flow``, 4 layers, width 32) and a rational-quadratic
spline coupling flow (4 layers, 8 knots). One sample per step, Adam(1e-3).

* **ppl**: ``ppl.vi.fit(key, ppl.vi.elbo(model, auto_flow guide), ...)``, 100
  steps (one compiled chunk), no progress bar;
* **flowjax**: ``flowjax.train.fit_to_key_based_loss`` with ``ElboLoss(target,
  num_samples=1)`` (its loop dispatches one compiled step per Python iteration);
* **hand-written JAX**: ``lax.scan`` over 100 steps of
  ``eqx.filter_value_and_grad`` of ``-(log p(x, y) - log q(x))`` with
  ``x, log q = flow.sample_and_log_prob(key)``, and optax.

All three train the same flowjax flow from the same initial parameters.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flowjax import flows as fjf
from flowjax.bijections import RationalQuadraticSpline
from flowjax.distributions import StandardNormal
from flowjax.train import fit_to_key_based_loss
from flowjax.train.losses import ElboLoss
from harness import Row, run_row

import ppl
from ppl import dist

STEPS = 1000  # per timed call: fit's fixed per-call cost (about 10 ms) amortised as in a real run
LR = 1e-3


def _problem(d: int):
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d))
    y = jnp.asarray(rng.normal(size=d).astype(np.float32))

    @ppl.gen
    def model():
        z = dist.Normal(jnp.zeros(d), 1.0).to_event(1) @ "z"
        dist.Normal(w @ z, 0.5).to_event(1) @ "y"

    def log_joint(z):
        return jnp.sum(jax.scipy.stats.norm.logpdf(z)) + jnp.sum(jax.scipy.stats.norm.logpdf(y, w @ z, 0.5))

    return model, {"y": y}, log_joint


def _flow(kind: str, d: int):
    key = jax.random.key(1)
    if kind == "MAF":
        return fjf.masked_autoregressive_flow(key, base_dist=StandardNormal((d,)), flow_layers=4, nn_width=32)
    spline = RationalQuadraticSpline(knots=8, interval=4.0)
    return fjf.coupling_flow(key, base_dist=StandardNormal((d,)), transformer=spline, flow_layers=4, nn_width=32)


def _impls(kind: str, d: int):
    model, obs, log_joint = _problem(d)
    flow0 = _flow(kind, d)

    def ours():
        guide, _ = ppl.vi.auto_flow(model, (), obs, flow=ppl.flows.Flow(flow0))
        params = {"flow": ppl.flows.Flow(flow0), "loc": jnp.zeros(d)}
        objective = ppl.vi.elbo(model, guide, obs)
        opt = optax.adam(LR)  # one objective and optimiser: fit compiles once and reuses the program

        def run(key, p):
            res = ppl.vi.fit(key, objective, ((), (p,)), opt, steps=STEPS, chunk_size=STEPS,
                             progress_bar=False)  # fmt: skip
            return res.params[1][0]["loc"]

        return run, (jax.random.key(0), params)

    def flowjax_loop():
        loss = ElboLoss(log_joint, num_samples=1)
        opt = optax.adam(LR)  # the same optimiser object each call, so flowjax's step is compiled once

        def run(key, f):
            trained, _ = fit_to_key_based_loss(key, f, loss_fn=loss, steps=STEPS, optimizer=opt,
                                               show_progress=False)  # fmt: skip
            return jax.tree_util.tree_leaves(eqx.filter(trained, eqx.is_inexact_array))[0]

        return run, (jax.random.key(0), flow0)

    def hand():
        params0, static = eqx.partition(flow0, eqx.is_inexact_array)
        opt = optax.adam(LR)

        def neg_elbo(p, key):
            f = eqx.combine(p, static)
            x, lq = f.sample_and_log_prob(key)
            return lq - log_joint(x)

        @jax.jit
        def run(key, p):
            def step(carry, k):
                p, s = carry
                v, g = eqx.filter_value_and_grad(neg_elbo)(p, k)
                u, s = opt.update(g, s, p)
                return (eqx.apply_updates(p, u), s), v

            (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), jax.random.split(key, STEPS))
            return jax.tree_util.tree_leaves(p)[0]

        return run, (jax.random.key(0), params0)

    return {"hand-written JAX": hand, "flowjax fit_to_key_based_loss": flowjax_loop, "ppl": ours}


def rows(quick: bool = False) -> list[Row]:
    out = []
    for kind in ("MAF", "spline coupling"):
        for d in (10,) if quick else (10, 50):
            out.append(
                run_row(
                    f"flow VI: {STEPS} ELBO steps, {kind} guide",
                    f"D={d}, 4 layers, 1 sample/step",
                    _impls(kind, d),
                    "hand-written JAX",
                    warmup=1,
                    repeats=3 if quick else 10,
                )
            )
    return out
