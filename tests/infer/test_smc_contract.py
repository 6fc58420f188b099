"""SMC steps against the GFI contract: what ``update``'s discard means for the incremental weight.

When ``smc.extend`` gives data for a choice the traces had *sampled* (data
revealed over time through ``ppl.masked`` constraints, or an observation of
an address the earlier targets left latent), ``update`` overwrites the
sampled value and reports it in its discard. The SMC weight must add back the
old density of those values (a backward kernel proposing them from their old
conditionals); data given again must not be counted twice.

Expected values are exact (a Kalman filter, the closed-form normal-normal
evidence). ``Z_hat`` is unbiased for ``Z`` (``log Z_hat`` is biased low, by
Jensen), so unbiasedness is checked on ``Z_hat / Z`` over independent
replicate runs: its replicate mean must be within 4 standard errors of 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import InferenceError
from ppl.infer import smc
from tests.infer.smc_testing import (
    M0,
    S0,
    Y_NORMAL,
    R,
    S,
    kalman,
    lg_model,
    normal_normal_exact,
    simulate_lg,
)

T_REVEAL = 6
YS = simulate_lg(3, T_REVEAL)


def check_unbiased(log_z_hat: np.ndarray, log_z: float) -> None:
    ratio = np.exp(np.asarray(log_z_hat, np.float64) - log_z)
    se = ratio.std(ddof=1) / math.sqrt(len(ratio))
    # 4 replicate standard errors of the mean of Z_hat / Z
    assert abs(ratio.mean() - 1.0) < 4 * se, (ratio.mean(), se)


def reveal_steps(ys: np.ndarray) -> list:
    """Targets k = 0..T: the scan model with y_1..y_k observed (masks), args unchanged."""
    t = len(ys)
    return [((t,), {"steps": {"y": ppl.masked(jnp.asarray(ys), jnp.arange(t) < k)}}) for k in range(t + 1)]


@pytest.mark.slow
@pytest.mark.parametrize("ess_threshold", [0.5, 0.0], ids=["adaptive", "never"])
def test_data_revealed_by_masks_gives_an_unbiased_evidence(ess_threshold: float) -> None:
    log_z = kalman(YS)[0]
    steps = reveal_steps(YS)
    reps = 200

    @jax.jit
    def run(keys):
        return jax.vmap(
            lambda k: smc(k, lg_model, steps, particles=100, ess_threshold=ess_threshold).log_marginal_likelihood()
        )(keys)

    log_z_hat = np.asarray(run(jax.random.split(jax.random.key(0), reps)))
    # Jensen: E[log Z_hat] <= log Z (4 replicate standard errors of slack)
    assert log_z_hat.mean() < log_z + 4 * log_z_hat.std(ddof=1) / math.sqrt(reps)
    check_unbiased(log_z_hat, log_z)


def test_each_revealed_step_adds_exactly_its_observation_density() -> None:
    # no resampling in between: the increment of revealing y_k is log N(y_k; x_k, R) for each particle,
    # and the steps observed before (re-given under the mask) add nothing
    steps = reveal_steps(YS)
    pc = smc.init(jax.random.key(0), lg_model, *steps[0], particles=50)
    x = np.asarray(pc.traces.choices["steps", "x"], np.float64)
    for k in (1, 2, 3):
        moved = smc.extend(jax.random.key(k), pc, *steps[k])
        y = float(YS[k - 1])
        expected = -0.5 * np.log(2 * np.pi * R) - (y - x[:, k - 1]) ** 2 / (2 * R)
        got = np.asarray(moved.log_weights - pc.log_weights, np.float64)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(moved.traces.choices["steps", "x"]), x)  # latents kept
        pc = moved


Y4 = np.asarray([0.9, 1.8, 1.2, 0.4], np.float32)


@ppl.gen
def four_ys():
    mu = dist.Normal(M0, S0) @ "mu"
    for i in range(len(Y4)):
        dist.Normal(mu, S) @ ("y", i)


@pytest.mark.slow
def test_accumulated_observations_are_not_counted_twice() -> None:
    # step k observes y_0..y_k (unmasked, accumulated): y_0..y_{k-1} are data given again, y_k overwrites a draw
    steps = [((), {("y", i): Y4[i] for i in range(k + 1)}) for k in range(len(Y4))]
    log_z = normal_normal_exact(Y4)[2]
    reps = 200
    run = jax.jit(jax.vmap(lambda k: smc(k, four_ys, steps, particles=200).log_marginal_likelihood()))
    check_unbiased(np.asarray(run(jax.random.split(jax.random.key(1), reps))), log_z)


def test_extend_records_the_observations_and_matches_the_exact_increment() -> None:
    # one extend, no resampling: the incremental weight of y_0 revealed is exactly log p(y_0 | mu)
    pc = smc.init(jax.random.key(0), four_ys, (), {("y", 1): Y4[1]}, particles=50)
    moved = smc.extend(jax.random.key(1), pc, (), {("y", 0): Y4[0], ("y", 1): Y4[1]})
    mu = np.asarray(pc.traces.choices["mu"], np.float64)
    expected = -0.5 * np.log(2 * np.pi * S**2) - (Y4[0] - mu) ** 2 / (2 * S**2)
    np.testing.assert_allclose(
        np.asarray(moved.log_weights - pc.log_weights, np.float64), expected, rtol=1e-4, atol=1e-4
    )
    assert moved.observed.full == frozenset({("y", 0), ("y", 1)})
    resampled = smc.resample(jax.random.key(2), moved)
    assert resampled.observed is moved.observed or resampled.observed.full == moved.observed.full


@ppl.gen
def hierarchical():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(mu, 1.0) @ "y"


def test_overwriting_a_value_others_depend_on_is_an_error() -> None:
    pc = smc.init(jax.random.key(0), hierarchical, (), {"y": 0.3}, particles=10)
    with pytest.raises(InferenceError, match="other choices or factors of the model depend on"):
        smc.extend(jax.random.key(1), pc, (), {"mu": 0.5})
    with pytest.raises(Exception, match="other choices or factors of the model depend on"):
        jax.jit(lambda k, p: smc.extend(k, p, (), {"mu": 0.5}).log_weights)(jax.random.key(1), pc).block_until_ready()


def test_a_collection_without_a_record_of_its_observations_cannot_absorb_a_discard() -> None:
    made = ppl.infer.importance(jax.random.key(0), four_ys, (), {("y", 1): Y4[1]}, particles=10)
    pc = ppl.infer.ParticleCollection(made.traces, made.log_weights)  # built by hand: observed=None
    with pytest.raises(InferenceError, match=r"overwrote or dropped the choices at \('y', 0\).*smc\.init"):
        smc.extend(jax.random.key(1), pc, (), {("y", 0): Y4[0]})

    # new addresses discard nothing, so any collection can be extended with them
    @ppl.gen
    def growing(n):
        mu = dist.Normal(0.0, 1.0) @ "mu"
        for i in range(n):
            dist.Normal(mu, 1.0) @ ("y", i)

    pc = ppl.infer.importance(jax.random.key(0), growing, (1,), {("y", 0): 0.2}, particles=10)
    assert smc.extend(jax.random.key(1), pc, (2,), {("y", 1): 0.4}).log_weights.shape == (10,)


# ------------------------------------------------ importance, then extend
def test_importance_records_its_observations_masks_included() -> None:
    steps = reveal_steps(YS)
    pc = ppl.infer.importance(jax.random.key(0), lg_model, *steps[2], particles=20)
    assert pc.observed is not None and pc.observed.full == frozenset()
    np.testing.assert_array_equal(np.asarray(pc.observed.mask_of(("steps", "y"))), np.arange(T_REVEAL) < 2)
    assert pc.observed.mask_of(("steps", "x")) is None and pc.observed.mask_of(("x0",)) is None
    whole = ppl.infer.importance(jax.random.key(0), four_ys, (), {("y", 1): Y4[1]}, particles=5)
    assert whole.observed.full == frozenset({("y", 1)})


def test_importance_then_extend_adds_exactly_the_revealed_observation_density() -> None:
    # importance with y_1, y_2 observed (masks), then extend revealing y_3, no resampling in between: the
    # increment is log N(y_3; x_3, R) per particle, and y_1, y_2 (data given again under the mask) add nothing
    steps = reveal_steps(YS)
    pc = ppl.infer.importance(jax.random.key(0), lg_model, *steps[2], particles=50)
    x = np.asarray(pc.traces.choices["steps", "x"], np.float64)
    moved = smc.extend(jax.random.key(1), pc, *steps[3])
    expected = -0.5 * np.log(2 * np.pi * R) - (float(YS[2]) - x[:, 2]) ** 2 / (2 * R)
    np.testing.assert_allclose(
        np.asarray(moved.log_weights - pc.log_weights, np.float64), expected, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(np.asarray(moved.traces.choices["steps", "x"]), x)  # latents kept
    np.testing.assert_array_equal(np.asarray(moved.observed.mask_of(("steps", "y"))), np.arange(T_REVEAL) < 3)


@ppl.gen
def one_y(mu):
    dist.Normal(mu, S) @ "y"


@ppl.gen
def normal_normal_elements():
    """``normal_normal`` with each y_i its own choice (``ppl.vmap``), so masks can reveal them one by one."""
    mu = dist.Normal(M0, S0) @ "mu"
    ppl.vmap(one_y, in_axes=(None,), axis_size=len(Y_NORMAL))(mu) @ "ys"


@pytest.mark.slow
def test_importance_then_extend_on_revealed_data_gives_an_unbiased_evidence() -> None:
    # mu ~ N(M0, S0), y_i ~ N(mu, S), i < 5: importance with y_0, y_1 observed by mask, then
    # resample_adaptive / extend revealing y_2, y_3, y_4. Z_hat must be unbiased for the closed-form evidence
    # p(y_0..y_4): checked on Z_hat / Z over independent replicates, whose mean must lie within 4 replicate
    # standard errors of 1 (check_unbiased). (A one-latent model keeps Z_hat light-tailed: on the scan model,
    # revealing data without rejuvenation keeps the future states drawn at importance time, and Z_hat / Z
    # is so skewed that its replicate mean is no reliable check.)
    n = len(Y_NORMAL)
    steps = [((), {"ys": {"y": ppl.masked(jnp.asarray(Y_NORMAL), jnp.arange(n) < k)}}) for k in range(2, n + 1)]
    log_z = normal_normal_exact(Y_NORMAL)[2]
    reps = 200

    def one(key):
        k0, *ks = jax.random.split(key, 2 * len(steps) - 1)
        pc = ppl.infer.importance(k0, normal_normal_elements, *steps[0], particles=100)
        for j, (args, obs) in enumerate(steps[1:]):
            pc = smc.resample_adaptive(ks[2 * j], pc, ess_threshold=0.5)
            pc = smc.extend(ks[2 * j + 1], pc, args, obs)
        return pc.log_marginal_likelihood()

    log_z_hat = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(4), reps)))
    check_unbiased(log_z_hat, log_z)
