"""Composable SMC steps (init, extend, reweight, change_target, resample, rejuvenate) and the smc driver."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import InferenceError, UnvisitedConstraintError
from ppl.infer import smc
from tests.infer.smc_testing import Y_NORMAL, A, Q, R, kalman, normal_normal, normal_normal_exact, prior_mh

# A state-space model written with a Python loop: each new n adds x_n and y_n,
# so SMC over n = 1..K is a particle filter through generic trace updates.


@ppl.gen
def python_loop_ssm(n):
    x = dist.Normal(0.0, 1.0) @ ("x", 0)
    for t in range(1, n + 1):
        x = dist.Normal(A * x, math.sqrt(Q)) @ ("x", t)
        dist.Normal(x, math.sqrt(R)) @ ("y", t)


@ppl.gen
def optimal_step(trace, obs, n):
    """p(x_n | x_{n-1}, y_n), reading the previous state from the old trace."""
    prior_mean = A * trace[("x", n - 1)]
    var = 1.0 / (1.0 / Q + 1.0 / R)
    dist.Normal(var * (prior_mean / Q + obs[("y", n)] / R), math.sqrt(var)) @ ("x", n)


K = 4
YS = np.asarray([0.3, -0.4, 1.1, 1.9], np.float32)
STEPS = [((n,), {("y", n): YS[n - 1]}) for n in range(1, K + 1)]
R_REPS = 12


def run_replicates(**options) -> np.ndarray:
    @jax.jit
    def run(keys):
        return jax.vmap(lambda k: smc(k, python_loop_ssm, STEPS, particles=300, **options).log_marginal_likelihood())(
            keys
        )

    return np.asarray(run(jax.random.split(jax.random.key(0), R_REPS)), np.float64)


def check_logz(logz: np.ndarray, exact: float) -> float:
    sd = logz.std(ddof=1)
    # 4 replicate standard errors after adding back the -Var/2 bias of log Z_hat
    assert abs(logz.mean() + sd**2 / 2 - exact) < 4 * sd / math.sqrt(len(logz)) + 1e-3, (logz, exact)
    return sd


@pytest.mark.slow
def test_smc_driver_bootstrap_and_proposal_match_kalman() -> None:
    exact = kalman(YS)[0]
    sd_boot = check_logz(run_replicates(ess_threshold=0.5), exact)
    sd_opt = check_logz(run_replicates(ess_threshold=0.5, proposal=optimal_step), exact)
    assert sd_opt < sd_boot


def test_smc_driver_with_rejuvenation_recovers_the_posterior() -> None:
    # growing data: target k is p(mu | y_1..y_k); MH moves on mu between steps
    @ppl.gen
    def growing(n):
        mu = dist.Normal(0.0, 1.0) @ "mu"
        for i in range(n):
            dist.Normal(mu, 0.8) @ ("y", i)

    ys = Y_NORMAL[:3]
    steps = [((k,), {("y", k - 1): ys[k - 1]}) for k in range(1, len(ys) + 1)]
    kernel = prior_mh(ppl.select("mu"))
    run = jax.jit(
        lambda key: smc(
            key, growing, steps, particles=4000, ess_threshold=0.5, rejuvenation=kernel, rejuvenation_steps=3
        )
    )
    pc = run(jax.random.key(4))
    mean, var, logz = normal_normal_exact(ys)
    # 5 se with se = sd_post / sqrt(N / 4): MH-moved, resampled particles are correlated
    assert abs(float(pc.mean("mu")) - mean) < 5 * math.sqrt(var / (4000 / 4))
    assert abs(float(pc.log_marginal_likelihood()) - logz) < 0.1


# -------------------------------------------------------------- single steps


@ppl.gen
def prior_only():
    dist.Normal(0.0, 1.0) @ "mu"


@pytest.fixture(scope="module")
def prior_particles() -> ppl.infer.ParticleCollection:
    return smc.init(jax.random.key(1), prior_only, (), None, particles=20_000)


def test_change_target_and_reweight_give_importance_sampling(prior_particles) -> None:
    mean, var, logz = normal_normal_exact()
    moved = smc.change_target(jax.random.key(2), prior_particles, normal_normal, (), {"y": Y_NORMAL})
    reweighted = smc.reweight(
        prior_particles,
        lambda tr: jnp.sum(jax.scipy.stats.norm.logpdf(jnp.asarray(Y_NORMAL), tr["mu"], 0.8)),
    )
    for pc in (moved, reweighted):
        ess = float(pc.ess)
        # self-normalised IS: 5 se with se = sd / sqrt(ESS); log Z relative var ~ 1/ESS
        assert abs(float(pc.mean("mu")) - mean) < 5 * math.sqrt(var / ess)
        assert abs(float(pc.log_marginal_likelihood()) - logz) < 5 * math.sqrt(1 / ess)
    assert moved.traces.gen_fn == normal_normal  # structural identity (generative functions are values)
    np.testing.assert_allclose(np.asarray(moved.log_weights), np.asarray(reweighted.log_weights), rtol=1e-4, atol=1e-4)


def test_adaptive_resampling_decides_from_the_ess(prior_particles) -> None:
    same = smc.resample_adaptive(jax.random.key(0), prior_particles, ess_threshold=0.5)
    assert float(same.log_normalizer) == 0.0  # equal weights: ESS = N, no resampling
    np.testing.assert_array_equal(
        np.asarray(same.traces.choices["mu"]), np.asarray(prior_particles.traces.choices["mu"])
    )
    peaked = smc.reweight(prior_particles, lambda tr: -50.0 * (tr["mu"] - 1.0) ** 2)
    resampled = smc.resample_adaptive(jax.random.key(0), peaked, ess_threshold=0.5)
    assert np.all(np.asarray(resampled.log_weights) == 0.0)
    assert float(resampled.log_marginal_likelihood()) == pytest.approx(
        float(peaked.log_marginal_likelihood()), abs=1e-4
    )


def test_rejuvenation_leaves_the_exact_posterior_invariant() -> None:
    mean, var, _ = normal_normal_exact()
    n = 20_000
    exact_draws = mean + math.sqrt(var) * jax.random.normal(jax.random.key(5), (n,))
    traces = jax.jit(
        jax.vmap(lambda mu: normal_normal.generate(jax.random.key(0), {"mu": mu, "y": jnp.asarray(Y_NORMAL)}, ())[0])
    )(exact_draws)
    pc = ppl.infer.ParticleCollection(traces=traces, log_weights=jnp.zeros(n))
    moved, info = smc.rejuvenate(jax.random.key(6), pc, prior_mh(ppl.select("mu")), num_steps=3)
    mu = np.asarray(moved.traces.choices["mu"], np.float64)
    assert info.acceptance_rate.shape == (3, n)
    assert 0.05 < float(jnp.mean(info.acceptance_rate)) < 0.95
    assert np.mean(mu != np.asarray(exact_draws)) > 0.05  # particles moved
    # 5 se: se(mean) = sd / sqrt(n), se(var) = var * sqrt(2 / n)
    assert abs(mu.mean() - mean) < 5 * math.sqrt(var / n)
    assert abs(mu.var() - var) < 5 * var * math.sqrt(2 / n)
    np.testing.assert_array_equal(np.asarray(moved.traces.choices["y"][0]), Y_NORMAL)


def test_step_errors(prior_particles) -> None:
    with pytest.raises(UnvisitedConstraintError, match=r"smc.extend: the new observations name an address.*'nope'"):
        smc.extend(jax.random.key(0), prior_particles, (), {"nope": 1.0})
    with pytest.raises(InferenceError, match="rejuvenate needs an MCMC kernel"):
        smc.rejuvenate(jax.random.key(0), prior_particles, "mh")
    with pytest.raises(InferenceError, match="steps is empty"):
        smc(jax.random.key(0), prior_only, [], particles=5)
    with pytest.raises(ValueError, match="unknown resampling method"):
        smc.resample(jax.random.key(0), prior_particles, method="sorted")
