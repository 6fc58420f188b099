"""NUTS: effective samples per second and compile time, ppl vs BlackJAX vs NumPyro.

Two posteriors, 4 chains, 1,000 warm-up + 1,000 draws, diagonal mass matrix,
target acceptance 0.8, max tree depth 10:

* eight schools, non-centred (posteriordb's ``eight_schools_noncentered``);
* logistic regression, N = 5,000, D = 20, synthetic data (seed 0):
  ``beta ~ N(0, I)``, ``y_i ~ Bernoulli(logit^-1(x_i . beta))``.

Implementations, each timed as one complete run (initialisation, warm-up,
sampling, all chains):

* ``ppl``: ``ppl.infer.nuts`` on the ppl model;
* ``BlackJAX`` (the hand-written reference): the log density written by hand
  on an unconstrained vector, ``blackjax.window_adaptation`` + ``blackjax.nuts``
  vmapped over chains, the whole run in one ``jax.jit``;
* ``NumPyro``: ``MCMC(NUTS(model), chain_method="vectorized")``.

Run time is the median over repeated runs after the first (for NumPyro every
run re-traces and re-compiles, which is part of its cost); compile time is
the time JAX reports spending on tracing, lowering and XLA compilation
during the first run (``jax.monitoring`` compile events). ESS/s is the minimum (and the
median) bulk ESS over all scalar parameters, averaged over the timed runs (each
with its own key), divided by the median run time. All three are in one
process with one jax version.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from harness import Row, Timing
from jax.scipy.stats import norm
from numpyro.infer import MCMC, NUTS

import ppl
from ppl import dist
from ppl.diagnostics import ess_bulk

CHAINS, WARMUP, SAMPLES = 4, 1000, 1000
ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- problems
def eight_schools_data():
    d = json.loads((ROOT / "tests/data/posteriordb/eight_schools-eight_schools_noncentered/data.json").read_text())
    return jnp.asarray(d["y"], jnp.float32), jnp.asarray(d["sigma"], jnp.float32)


def logistic_data(n: int = 5000, d: int = 20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    beta = rng.normal(size=d).astype(np.float32)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-x @ beta))).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@ppl.gen
def ppl_schools(sigma):
    theta_trans = dist.Normal(jnp.zeros(sigma.shape[0]), 1.0) @ "theta_trans"
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    dist.Normal(theta_trans * tau + mu, sigma) @ "y"


@ppl.gen
def ppl_logistic(x):
    beta = dist.Normal(jnp.zeros(x.shape[1]), 1.0) @ "beta"
    dist.Bernoulli(logits=x @ beta) @ "y"


def np_schools(sigma, y):
    theta_trans = numpyro.sample("theta_trans", nd.Normal(jnp.zeros(sigma.shape[0]), 1.0))
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    numpyro.sample("y", nd.Normal(theta_trans * tau + mu, sigma), obs=y)


def np_logistic(x, y):
    beta = numpyro.sample("beta", nd.Normal(jnp.zeros(x.shape[1]), 1.0))
    numpyro.sample("y", nd.Bernoulli(logits=x @ beta), obs=y)


def hand_schools_logdensity(y, sigma):
    """Unconstrained z = (theta_trans[8], mu, log tau), Jacobian of tau = exp(log tau) included."""

    def logdensity(z):
        theta_trans, mu, log_tau = z[:-2], z[-2], z[-1]
        tau = jnp.exp(log_tau)
        lp = jnp.sum(norm.logpdf(theta_trans)) + norm.logpdf(mu, 0.0, 5.0)
        lp += jnp.log(2.0) - jnp.log(jnp.pi * 5.0 * (1 + (tau / 5.0) ** 2)) + log_tau
        return lp + jnp.sum(norm.logpdf(y, theta_trans * tau + mu, sigma))

    return logdensity


def hand_logistic_logdensity(x, y):
    def logdensity(beta):
        logits = x @ beta
        return jnp.sum(norm.logpdf(beta)) + jnp.sum(y * logits - jax.nn.softplus(logits))

    return logdensity


# ------------------------------------------------------------ implementations
def blackjax_runner(logdensity, dim: int):
    def one_chain(key):
        k_init, k_warm, k_samp = jax.random.split(key, 3)
        z0 = jax.random.uniform(k_init, (dim,), minval=-2.0, maxval=2.0)
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity, target_acceptance_rate=0.8)
        (state, params), _ = warmup.run(k_warm, z0, WARMUP)
        kernel = blackjax.nuts(logdensity, **params)

        def step(s, k):
            s, _ = kernel.step(k, s)
            return s, s.position

        _, positions = jax.lax.scan(step, state, jax.random.split(k_samp, SAMPLES))
        return positions

    run = jax.jit(lambda key: jax.vmap(one_chain)(jax.random.split(key, CHAINS)))
    return lambda key: np.asarray(run(key))  # [chain, draw, dim]


def ppl_runner(model, args, obs):
    def run(key):
        r = ppl.infer.nuts(
            key, model, args, obs, num_warmup=WARMUP, num_samples=SAMPLES, num_chains=CHAINS, progress_bar=False
        )
        return np.concatenate([v.reshape(CHAINS, SAMPLES, -1) for v in r.samples.values()], axis=-1)

    return run


def numpyro_runner(model, args):
    mcmc = MCMC(
        NUTS(model),
        num_warmup=WARMUP,
        num_samples=SAMPLES,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )

    def run(key):
        mcmc.run(key, *args)
        s = mcmc.get_samples(group_by_chain=True)
        return np.concatenate([np.asarray(v).reshape(CHAINS, SAMPLES, -1) for v in s.values()], axis=-1)

    return run


# ------------------------------------------------------------------- timing
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _on_event(name: str, seconds: float, **_: object) -> None:
    if name in COMPILE_EVENTS:
        _compile_seconds[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


def measure(name: str, make, repeats: int) -> Timing:
    """First run (compile time = JAX's tracing + lowering + XLA time in it), then ``repeats`` timed runs."""
    jax.clear_caches()
    run = make()
    key = jax.random.PRNGKey if name == "NumPyro" else jax.random.key
    _compile_seconds[0] = 0.0
    run(key(0))
    compile_s = _compile_seconds[0]
    runs, ess_min, ess_median = [], [], []
    recompile = 0.0
    for i in range(repeats):
        _compile_seconds[0] = 0.0
        t = time.perf_counter()
        draws = run(key(i + 1))
        runs.append(time.perf_counter() - t)
        recompile += _compile_seconds[0]
        ess = np.atleast_1d(ess_bulk(draws))
        ess_min.append(float(ess.min()))
        ess_median.append(float(np.median(ess)))
    recompile /= repeats
    # ESS of one run is noisy (+-15% for the minimum over parameters): average it over the timed runs
    extra = {"ess_min": float(np.mean(ess_min)), "ess_median": float(np.mean(ess_median)), "recompile_s": recompile}
    return Timing(name, compile_s, statistics.median(runs), runs, extra)


def problem_row(label: str, impls: dict, repeats: int) -> Row:
    timings = [measure(name, make, repeats) for name, make in impls.items()]
    parts = []
    base = timings[0]
    for t in timings:
        per_s = t.extra["ess_min"] / t.run_s
        ratio = per_s / (base.extra["ess_min"] / base.run_s)
        parts.append(
            f"{t.impl}: ESS/s {per_s:,.0f} min / {t.extra['ess_median'] / t.run_s:,.0f} median bulk "
            f"({ratio:.2f}x BlackJAX), ESS min {t.extra['ess_min']:,.0f}, compile {t.compile_s:.1f} s"
            + (f" (+{t.extra['recompile_s']:.1f} s again in every run)" if t.extra["recompile_s"] > 0.05 else "")
        )
    return Row("NUTS 4x(1000+1000)", label, "BlackJAX", timings, note="; ".join(parts))


def rows(quick: bool = False) -> list[Row]:
    global WARMUP, SAMPLES
    if quick:
        WARMUP, SAMPLES = 200, 200
    repeats = 2 if quick else 8
    y, sigma = eight_schools_data()
    x, yl = logistic_data()
    out = [
        problem_row(
            "eight schools (non-centred)",
            {
                "BlackJAX": lambda: blackjax_runner(hand_schools_logdensity(y, sigma), 10),
                "ppl": lambda: ppl_runner(ppl_schools, (sigma,), {"y": y}),
                "NumPyro": lambda: numpyro_runner(np_schools, (sigma, y)),
            },
            repeats,
        ),
        problem_row(
            "logistic regression N=5,000 D=20",
            {
                "BlackJAX": lambda: blackjax_runner(hand_logistic_logdensity(x, yl), 20),
                "ppl": lambda: ppl_runner(ppl_logistic, (x,), {"y": yl}),
                "NumPyro": lambda: numpyro_runner(np_logistic, (x, yl)),
            },
            max(2, repeats - 2),
        ),
    ]
    return out
