"""Bootstrap particle filter on a 1-D linear Gaussian state-space model.

Model (T = 100 steps):

    x_0 ~ N(0, 1),  x_t = 0.9 x_{t-1} + N(0, 1),  y_t = x_t + N(0, 0.5^2)

Every implementation runs the same algorithm with ``N`` particles and
systematic resampling at every step (resample, propagate from the
transition, weight by the observation density, accumulate ``log Z``) and
returns ``(log Z_hat, final particles)``; the data are fixed, the key
varies per call. Implementations:

* ``hand-written JAX``: one ``lax.scan``, ``normal(key, (N,))`` draws and the
  O(N) systematic resampler that counts offsets (no ``searchsorted``);
* ``ppl particle_filter``: ``ppl.infer.particle_filter`` on the model written
  with ``@ppl.gen`` + ``ppl.scan``, under ``jax.jit``; returns
  ``pc.log_marginal_likelihood()`` and the filtering particles at T;
* ``BlackJAX SMC step``: ``blackjax.smc.base.step`` in a ``lax.scan`` with
  its systematic resampler (``searchsorted``) and vmapped per-particle keys;
* ``GenJAX 1.0 SMC`` (when ``bench/.venv-genjax`` exists, Python 3.12):
  measured in that environment's own process against its own copy of the
  hand-written filter (same jax version within the row), see
  ``bench/genjax_particle_filter.py``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from harness import Row, Timing, run_row
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl
from ppl import dist

T = 100
A, Q_SD, R_SD = 0.9, 1.0, 0.5
GENJAX_PY = Path(__file__).resolve().parents[1] / ".venv-genjax" / "bin" / "python"
GENJAX_SCRIPT = Path(__file__).resolve().parents[1] / "genjax_particle_filter.py"


def data() -> jax.Array:
    rng = np.random.default_rng(0)
    x, ys = rng.normal(), []
    for _ in range(T):
        x = A * x + Q_SD * rng.normal()
        ys.append(x + R_SD * rng.normal())
    return jnp.asarray(ys, jnp.float32)


# --------------------------------------------------------------- hand-written


def systematic_counting(key: jax.Array, log_w: jax.Array, n: int) -> jax.Array:
    """O(N) systematic resampling: count offsets below each cumulative weight."""
    w = jnp.exp(log_w - logsumexp(log_w))
    c = jnp.cumsum(w) * n
    u = jax.random.uniform(key)
    m = jnp.clip(jnp.ceil(c - u), 0, n).astype(jnp.int32).at[-1].set(n)
    return jnp.minimum(jnp.cumsum(jnp.zeros(n + 1, jnp.int32).at[m].add(1)[:n]), n - 1)


def hand_filter(key: jax.Array, ys: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    k0, k_steps = jax.random.split(key)
    x0 = jax.random.normal(k0, (n,))

    def step(carry, inp):
        x, log_w, log_z = carry
        k, y = inp
        k_res, k_prop = jax.random.split(k)
        log_z = log_z + logsumexp(log_w) - jnp.log(n)
        x = x[systematic_counting(k_res, log_w, n)]
        x = A * x + Q_SD * jax.random.normal(k_prop, (n,))
        log_w = norm.logpdf(y, x, R_SD)
        return (x, log_w, log_z), None

    (x, log_w, log_z), _ = jax.lax.scan(step, (x0, jnp.zeros(n), jnp.zeros(())), (jax.random.split(k_steps, T), ys))
    return log_z + logsumexp(log_w) - jnp.log(n), x


# ------------------------------------------------------------------------ ppl


@ppl.gen
def transition(x_prev, _):
    x = dist.Normal(A * x_prev, Q_SD) @ "x"
    dist.Normal(x, R_SD) @ "y"
    return x, None


@ppl.gen
def lg_model(num_steps):
    x0 = dist.Normal(0.0, 1.0) @ "x0"
    return ppl.scan(transition, length=num_steps)(x0, None) @ "steps"


def ppl_filter(key: jax.Array, ys: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    pc = ppl.infer.particle_filter(key, lg_model, (T,), {"steps": {"y": ys}}, particles=n, ess_threshold=1.0)
    return pc.log_marginal_likelihood(), pc.info.choices["steps", "x"][-1]


# ------------------------------------------------------------------- BlackJAX


def blackjax_filter(key: jax.Array, ys: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    import blackjax.smc.base as smc_base
    import blackjax.smc.resampling as bj_resampling

    k0, k_steps = jax.random.split(key)
    state = smc_base.init(jax.random.normal(k0, (n,)), {})

    def step(carry, inp):
        state, log_z = carry
        k, y = inp

        def update_fn(keys, particles, _params):
            new = jax.vmap(lambda kk, x: A * x + Q_SD * jax.random.normal(kk))(keys, particles)
            return new, None

        def weight_fn(particles):
            return norm.logpdf(y, particles, R_SD)

        state, info = smc_base.step(k, state, update_fn, weight_fn, bj_resampling.systematic)
        return (state, log_z + info.log_likelihood_increment), None

    (state, log_z), _ = jax.lax.scan(step, (state, jnp.zeros(())), (jax.random.split(k_steps, T), ys))
    return log_z, state.particles


# ---------------------------------------------------------------------- rows


def _builder(fn, n: int):
    def build():
        ys = data()
        f = jax.jit(lambda k: fn(k, ys, n))
        return f, (jax.random.key(1),)

    return build


def _genjax_timings(n: int, repeats: int) -> tuple[list[Timing], str]:
    """GenJAX and its own hand-written baseline, timed in the GenJAX environment."""
    if not GENJAX_PY.exists():
        return [], "GenJAX not run: bench/.venv-genjax (Python 3.12 + genjax 1.0) is missing"
    out = subprocess.run(
        [str(GENJAX_PY), str(GENJAX_SCRIPT), str(n), str(repeats)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return [], "GenJAX run failed: " + out.stderr.strip().splitlines()[-1][:200]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    note = (
        f"GenJAX {res['genjax']} (jax {res['jax']}) measured in its own process: hand-written "
        f"{res['hand_s'] * 1e3:.2f} ms there, GenJAX/hand ratio {res['genjax_s'] / res['hand_s']:.2f}"
    )
    return [
        Timing("GenJAX 1.0 SMC (own process, rescaled)", res["genjax_compile_s"], res["genjax_s"] / res["hand_s"])
    ], note


def rows(quick: bool = False) -> list[Row]:
    out = []
    sizes = [1_000] if quick else [1_000, 100_000]
    for n in sizes:
        impls = {
            "hand-written JAX": _builder(hand_filter, n),
            "ppl particle_filter": _builder(ppl_filter, n),
            "BlackJAX SMC step": _builder(blackjax_filter, n),
        }
        repeats = 5 if quick else (50 if n <= 1_000 else 10)
        row = run_row("bootstrap particle filter", f"T={T}, N={n:,}", impls, "hand-written JAX", repeats=repeats)
        base = next(t for t in row.timings if t.impl == "hand-written JAX")
        extra, note = _genjax_timings(n, repeats)
        for t in extra:  # express GenJAX's ratio against this process's hand-written time
            row.timings.append(Timing(t.impl, t.compile_s, t.run_s * base.run_s, []))
        row.note = note
        out.append(row)
    return out
