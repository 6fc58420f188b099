"""GenJAX 1.0 bootstrap particle filter vs the hand-written filter, in GenJAX's own environment.

Run by ``bench/workloads/particle_filter.py`` with ``bench/.venv-genjax/bin/python``
(Python 3.12, genjax 1.0, which needs jax >= 0.11: a different jax from the main
environment, so the ratio is taken here, against a hand-written filter run in
the same process). Prints one JSON line:
``{"genjax_s", "genjax_compile_s", "hand_s", "hand_compile_s", "genjax", "jax"}``.

Set up with::

    ~/.pyenv/versions/3.12.1/bin/python -m venv bench/.venv-genjax
    bench/.venv-genjax/bin/pip install genjax==1.0.14

The GenJAX filter uses ``genjax.inference.smc``: ``init`` at the first
observation, then per step ``resample(method="systematic")`` and ``extend``
with the transition model (its return value is the next step's argument),
all inside one ``lax.scan`` under ``seed`` and ``jit``: the same algorithm as
the hand-written filter (systematic resampling every step).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import genjax
import jax
import jax.numpy as jnp
import numpy as np
from genjax import const, gen, normal, seed
from genjax.inference.smc import extend, init, resample
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

T = 100
A, Q_SD, R_SD = 0.9, 1.0, 0.5


def data() -> jax.Array:
    rng = np.random.default_rng(0)
    x, ys = rng.normal(), []
    for _ in range(T):
        x = A * x + Q_SD * rng.normal()
        ys.append(x + R_SD * rng.normal())
    return jnp.asarray(ys, jnp.float32)


def systematic_counting(key, log_w, n):
    w = jnp.exp(log_w - logsumexp(log_w))
    c = jnp.cumsum(w) * n
    u = jax.random.uniform(key)
    m = jnp.clip(jnp.ceil(c - u), 0, n).astype(jnp.int32).at[-1].set(n)
    return jnp.minimum(jnp.cumsum(jnp.zeros(n + 1, jnp.int32).at[m].add(1)[:n]), n - 1)


def hand_filter(key, ys, n):
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


@gen
def transition(x_prev):
    x = normal(A * x_prev, Q_SD) @ "x"
    normal(x, R_SD) @ "y"
    return x


@gen
def initial_state():
    return normal(0.0, 1.0) @ "x0"


def genjax_filter(ys, n):
    def step(particles, y):
        particles = resample(particles, method="systematic")
        return extend(particles, transition, particles.traces.get_retval(), {"y": y})

    # x_0 from its prior, then the first step outside the scan (the trace type
    # changes from initial_state's to transition's there), the rest inside it
    first = step(init(initial_state, (), const(n), {}), ys[0])
    final, _ = jax.lax.scan(lambda p, y: (step(p, y), None), first, ys[1:])
    return final.log_marginal_likelihood(), final.traces.get_retval()


def timed(fn, args, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        jax.block_until_ready(fn(*args))
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), compile_s


def main() -> None:
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    ys = data()
    hand = jax.jit(lambda k: hand_filter(k, ys, n))
    gj = jax.jit(seed(lambda: genjax_filter(ys, n)))
    # interleave twice, keep the medians of both rounds
    h1, hc = timed(hand, (jax.random.key(1),), repeats)
    g1, gc = timed(gj, (jax.random.key(1),), repeats)
    h2, _ = timed(hand, (jax.random.key(1),), repeats)
    g2, _ = timed(gj, (jax.random.key(1),), repeats)
    print(
        json.dumps(
            {
                "hand_s": min(h1, h2),
                "hand_compile_s": hc,
                "genjax_s": min(g1, g2),
                "genjax_compile_s": gc,
                "genjax": genjax.__version__ if hasattr(genjax, "__version__") else "1.0",
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
