"""Importance sampling: exact conjugate posteriors and evidence, proposals, particle vectorisation, errors."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.errors import DegenerateWeightsError, InferenceError, UnvisitedConstraintError
from tests.infer.smc_testing import (
    CONJUGATE,
    Y_NORMAL,
    beta_binomial,
    normal_normal,
    normal_normal_exact,
)


def check_against_exact(pc: ppl.infer.ParticleCollection, addr: str, exact: tuple[float, float, float]) -> None:
    """Posterior mean, variance and log evidence within standard errors of the exact values."""
    mean, var, logz = exact
    ess = float(pc.ess)
    n = pc.num_particles
    # self-normalised IS: se(mean) ~ sd_post / sqrt(ESS); se(var) ~ var * sqrt(2 / ESS)
    # (near-Gaussian posteriors); log Z_hat has relative variance ~ 1/ESS - 1/N.
    assert abs(float(pc.mean(addr)) - mean) < 5 * math.sqrt(var / ess)
    assert abs(float(pc.variance(addr)) - var) < 5 * var * math.sqrt(2 / ess)
    se_logz = math.sqrt(max(1 / ess - 1 / n, 1e-8))
    assert abs(float(pc.log_marginal_likelihood()) - logz) < 5 * se_logz + 1e-4


@pytest.mark.parametrize("name", list(CONJUGATE))
def test_prior_importance_recovers_conjugate_posterior_and_evidence(name: str) -> None:
    model, obs, addr, exact = CONJUGATE[name]
    pc = ppl.infer.importance(jax.random.key(0), model, (), obs, particles=20_000)
    assert pc.traces.choices[addr].shape == (20_000,)
    assert float(pc.ess) > 1000
    check_against_exact(pc, addr, exact())


@ppl.gen
def data_driven_proposal(obs):
    # proposal args default to (observations, *model_args): it reads the data
    ybar = jnp.mean(obs["y"])
    dist.Normal(ybar, 0.6) @ "mu"


def test_proposal_importance_is_unbiased_and_more_efficient() -> None:
    prior = ppl.infer.importance(jax.random.key(1), normal_normal, (), {"y": Y_NORMAL}, particles=20_000)
    pc = ppl.infer.importance(
        jax.random.key(1), normal_normal, (), {"y": Y_NORMAL}, particles=20_000, proposal=data_driven_proposal
    )
    check_against_exact(pc, "mu", normal_normal_exact())
    assert float(pc.ess) > float(prior.ess)  # a proposal near the posterior beats the prior


@ppl.gen
def two_latents():
    a = dist.Normal(0.0, 1.0) @ "a"
    b = dist.Normal(a, 1.0) @ "b"
    dist.Normal(a + b, 0.5) @ "y"


@ppl.gen
def propose_a_only(centre):
    dist.Normal(centre, 1.5) @ "a"


def test_partial_proposal_with_explicit_args() -> None:
    # q proposes "a" only; "b" comes from the model's prior given "a" and cancels.
    y = 1.3
    pc = ppl.infer.importance(
        jax.random.key(2), two_latents, (), {"y": y}, particles=20_000, proposal=propose_a_only, proposal_args=(0.5,)
    )
    # exact: a + b = 2a + e_b, so Var(a + b) = 5, Cov(a, a + b) = 2; y = a + b + e
    var_y = 5.0 + 0.25
    mean_a, var_a = 2.0 / var_y * y, 1.0 - 4.0 / var_y
    logz = stats.norm(0, math.sqrt(var_y)).logpdf(y)
    check_against_exact(pc, "a", (mean_a, var_a, logz))


# ---------------------------------------------------- vectorisation over particles


Skellam = ppl.dist.make_distribution(
    "Skellam",
    params=("mu",),
    support=ppl.dist.constraints.integer_interval(-1000, 1000),
    sample=lambda key, mu: (
        jax.random.poisson(jax.random.fold_in(key, 1), mu) - jax.random.poisson(jax.random.fold_in(key, 2), mu)
    ),
    log_prob=lambda k, mu: jnp.zeros_like(mu),
)


@ppl.gen
def element(s):
    return dist.Normal(0.0, s) @ "z"


@ppl.gen
def walk_step(c, _):
    x = dist.Normal(c, 1.0) @ "x"
    return x, None


@ppl.gen
def many_sites():
    dist.Normal(1.0, 2.0) @ "normal"
    dist.Normal(1.0, 2.0) @ "normal2"
    dist.HalfNormal(1.0) @ "halfnormal"
    dist.LogNormal(0.0, 0.5) @ "lognormal"
    dist.Gamma(2.0, 1.0) @ "gamma"
    dist.Poisson(3.0) @ "poisson"
    dist.Categorical(jnp.array([0.2, 0.3, 0.5])) @ "categorical"
    dist.Normal(0.0, 1.0).expand([3]).to_event(1) @ "vector"
    dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)) @ "mvn"
    Skellam(2.0) @ "custom"
    ppl.vmap(element, in_axes=None, axis_size=3)(1.0) @ "plate"
    ppl.scan(walk_step, length=4)(0.0, None) @ "walk"


@pytest.fixture(scope="module")
def site_draws() -> ppl.ChoiceMap:
    n = 4000
    pc = ppl.infer.importance(jax.random.key(3), many_sites, (), None, particles=n)
    return pc.traces.choices


@pytest.mark.slow
def test_every_particle_gets_independent_draws(site_draws: ppl.ChoiceMap) -> None:
    cm = site_draws
    n = 4000
    # (mean, variance) of each site's first element
    moments = {
        "normal": (1.0, 4.0),
        "halfnormal": (math.sqrt(2 / math.pi), 1 - 2 / math.pi),
        "lognormal": (math.exp(0.125), (math.exp(0.25) - 1) * math.exp(0.25)),
        "gamma": (2.0, 2.0),
        "poisson": (3.0, 3.0),
        "categorical": (1.3, 0.2 * 1.3**2 + 0.3 * 0.3**2 + 0.5 * 0.7**2),
        "vector": (0.0, 1.0),
        "mvn": (0.0, 1.0),
        "custom": (0.0, 4.0),
        ("plate", "z"): (0.0, 1.0),
        ("walk", "x"): (0.0, 1.0),
    }
    for addr, (mean, var) in moments.items():
        v = np.asarray(cm[addr], np.float64).reshape(n, -1)[:, 0]
        # 5 standard errors: se(mean) = sd / sqrt(n); se(var) <= var * sqrt(8 / n) for these tails
        assert abs(v.mean() - mean) < 5 * math.sqrt(var / n), addr
        assert abs(v.var() - var) < 5 * var * math.sqrt(8 / n), addr


def test_sites_and_elements_are_uncorrelated(site_draws: ppl.ChoiceMap) -> None:
    cm = site_draws
    n = 4000
    bound = 5 / math.sqrt(n)  # 5 standard errors of a correlation near 0
    pairs = [
        (cm["normal"], cm["normal2"]),  # two sites, same distribution
        (cm["vector"][:, 0], cm["vector"][:, 1]),  # batch elements of one site
        (cm["plate", "z"][:, 0], cm["plate", "z"][:, 1]),  # ppl.vmap elements
        (cm["mvn"][:, 0], cm["mvn"][:, 1]),
    ]
    for a, b in pairs:
        assert abs(np.corrcoef(np.asarray(a), np.asarray(b))[0, 1]) < bound
    # random walk: x_1 = x_0 + e_1, so Var(x_1) = 2 (steps are independent)
    x = np.asarray(cm["walk", "x"])
    assert abs(x[:, 1].var() - 2.0) < 5 * 2.0 * math.sqrt(2 / n)


# ------------------------------------------------------------------------ jit


def test_importance_runs_under_jit_and_matches_eager() -> None:
    f = jax.jit(
        lambda key, y: ppl.infer.importance(key, normal_normal, (), {"y": y}, particles=500).log_marginal_likelihood()
    )
    eager = ppl.infer.importance(jax.random.key(5), normal_normal, (), {"y": Y_NORMAL}, particles=500)
    assert float(f(jax.random.key(5), Y_NORMAL)) == pytest.approx(float(eager.log_marginal_likelihood()), abs=1e-4)


def test_resample_keeps_log_marginal_likelihood_and_equalises_weights() -> None:
    pc = ppl.infer.importance(jax.random.key(6), normal_normal, (), {"y": Y_NORMAL}, particles=20_000)
    r = pc.resample(jax.random.key(7), method="residual")
    assert np.all(np.asarray(r.log_weights) == 0.0)
    assert float(r.log_marginal_likelihood()) == pytest.approx(float(pc.log_marginal_likelihood()), abs=1e-4)
    half = pc.resample(jax.random.key(7), n=500)
    assert half.num_particles == 500
    draws = pc.sample(jax.random.key(8), 3000)
    mean, var, _ = normal_normal_exact()
    # 5 se: resampled draws of the weighted posterior (ESS-limited)
    assert abs(float(jnp.mean(draws["mu"])) - mean) < 5 * math.sqrt(var / float(pc.ess))


# ---------------------------------------------------------------------- errors


def test_unknown_observation_address_is_named() -> None:
    with pytest.raises(UnvisitedConstraintError, match=r"ppl.infer.importance: the observations name an address.*'z'"):
        ppl.infer.importance(jax.random.key(0), normal_normal, (), {"z": 1.0}, particles=10)


@ppl.gen
def all_observed():
    dist.Normal(0.0, 1.0) @ "y"


def test_model_without_latents_warns_and_gives_exact_evidence() -> None:
    with pytest.warns(ppl.infer.NoLatentChoicesWarning, match="every choice of the model is observed"):
        pc = ppl.infer.importance(jax.random.key(0), all_observed, (), {"y": 0.5}, particles=10)
    assert float(pc.log_marginal_likelihood()) == pytest.approx(stats.norm.logpdf(0.5), abs=1e-5)


def test_impossible_observation_raises_degenerate_weights() -> None:
    # k = 25 > 20 trials: every particle has log weight -inf
    with pytest.raises(DegenerateWeightsError, match=r"all 20000 particles have log weight -inf or NaN.*'k'"):
        ppl.infer.importance(jax.random.key(0), beta_binomial, (), {"k": 25}, particles=20_000)


@ppl.gen
def nan_factor():
    x = dist.Normal(0.0, 1.0) @ "x"
    ppl.factor("bad", jnp.log(-jnp.abs(x) - 1.0))  # NaN for every x


def test_nan_everywhere_raises_eagerly_and_under_jit() -> None:
    with pytest.raises(DegenerateWeightsError, match="all 20 particles have log weight -inf or NaN"):
        ppl.infer.importance(jax.random.key(0), nan_factor, (), None, particles=20)
    f = jax.jit(lambda k: ppl.infer.importance(k, nan_factor, (), None, particles=20).log_weights)
    with pytest.raises(Exception, match="all 20 particles have log weight -inf or NaN"):
        jax.block_until_ready(f(jax.random.key(0)))


@ppl.gen
def proposes_observation(obs):
    dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(0.0, 1.0) @ "y"


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(InferenceError, match="samples the observed address"):
        ppl.infer.importance(
            jax.random.key(0), all_observed, (), {"y": 0.0}, particles=5, proposal=proposes_observation
        )
    with pytest.raises(InferenceError, match="particles must be a positive Python int"):
        ppl.infer.importance(jax.random.key(0), normal_normal, (), {"y": Y_NORMAL}, particles=0)
    with pytest.raises(InferenceError, match="args must be a tuple"):
        ppl.infer.importance(jax.random.key(0), normal_normal, [], {"y": Y_NORMAL}, particles=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InferenceError, match="model must be a generative function"):
            ppl.infer.importance(jax.random.key(0), lambda: None, (), None, particles=5)
