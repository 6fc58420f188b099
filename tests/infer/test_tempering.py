"""Tempered models (a GFI transformation) and adaptive tempered SMC on conjugate models."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.errors import InferenceError, MissingChoiceError
from ppl.infer.tempering import next_temperature, tempered
from tests.infer.smc_testing import CONJUGATE, Y_NORMAL, normal_normal, prior_mh

# ------------------------------------------------------------- the tempered model


def log_prior(mu: float) -> float:
    return float(stats.norm(0.0, 1.0).logpdf(mu))


def log_lik(mu: float) -> float:
    return float(stats.norm(mu, 0.8).logpdf(Y_NORMAL).sum())


OBS = ppl.choices({"y": jnp.asarray(Y_NORMAL)})
TEMPERED = tempered(normal_normal)


def test_tempered_scores_and_weights() -> None:
    beta = 0.3
    args = (beta, OBS)
    tr = TEMPERED.simulate(jax.random.key(0), args)
    mu = float(tr.choices["mu"])
    assert tr.choices.addresses() == [("mu",)]  # observations are arguments, not choices
    assert float(tr.score) == pytest.approx(log_prior(mu) + beta * log_lik(mu), rel=1e-5)
    assert float(tr.log_likelihood) == pytest.approx(log_lik(mu), rel=1e-5)
    lp, _ = TEMPERED.assess(ppl.choices({"mu": 0.7}), args)
    assert float(lp) == pytest.approx(log_prior(0.7) + beta * log_lik(0.7), rel=1e-5)
    _, w = TEMPERED.generate(jax.random.key(1), ppl.choices({"mu": 0.7}), args)
    assert float(w) == pytest.approx(log_prior(0.7) + beta * log_lik(0.7), rel=1e-5)
    # changing only beta through update: incremental weight (beta' - beta) log p(y | x)
    new, w, _ = TEMPERED.update(jax.random.key(2), tr, ppl.choices({}), (0.8, OBS))
    assert float(w) == pytest.approx(0.5 * log_lik(mu), rel=1e-5)
    assert float(new.score) == pytest.approx(log_prior(mu) + 0.8 * log_lik(mu), rel=1e-5)


def test_regenerate_never_moves_observations_and_gives_the_mh_ratio() -> None:
    tr = TEMPERED.simulate(jax.random.key(0), (0.5, OBS))
    new, w = TEMPERED.regenerate(jax.random.key(3), tr, ppl.select_all())
    np.testing.assert_array_equal(np.asarray(new.inner.choices["y"]), Y_NORMAL)
    mu0, mu1 = float(tr.choices["mu"]), float(new.choices["mu"])
    assert mu0 != mu1
    # prior proposal: the MH log ratio is the change in the tempered likelihood
    assert float(w) == pytest.approx(0.5 * (log_lik(mu1) - log_lik(mu0)), rel=1e-4, abs=1e-4)


def test_tempered_model_errors() -> None:
    with pytest.raises(MissingChoiceError, match="needs a value for every latent choice; none given at 'mu'"):
        TEMPERED.assess(ppl.choices({}), (0.5, OBS))
    with pytest.raises(InferenceError, match="at the observed address"):
        TEMPERED.generate(jax.random.key(0), ppl.choices({"y": jnp.zeros(5)}), (0.5, OBS))
    with pytest.raises(InferenceError, match=r"takes \(beta, observations, \*model_args\)"):
        TEMPERED.simulate(jax.random.key(0), (0.5,))


def test_next_temperature_hits_the_target_ess() -> None:
    loglik = jax.random.normal(jax.random.key(0), (1000,)) * 10.0
    step = jax.jit(lambda lw, ll, b, t: (next_temperature(lw, ll, b, t), ppl.infer.resampling.ess(lw + ll)))
    beta, _ = step(jnp.zeros(1000), loglik, 0.2, 500.0)
    assert 0.2 < float(beta) < 1.0
    _, ess = step(jnp.zeros(1000), (float(beta) - 0.2) * loglik, 0.2, 500.0)
    assert float(ess) == pytest.approx(500.0, rel=1e-3)
    # an uninformative likelihood goes straight to 1
    assert float(step(jnp.zeros(1000), jnp.zeros(1000), 0.0, 500.0)[0]) == 1.0


# ------------------------------------------------------------ tempered SMC

R_REPS, N = 8, 1000
MH_MU = prior_mh(ppl.select("mu"))
KERNELS = {
    "normal-normal": lambda: MH_MU,  # test-local MH through regenerate
    "beta-binomial": lambda: None,  # the default: ppl.infer.kernels.mh on every latent
    "gamma-poisson": lambda: ppl.infer.kernels.hmc(ppl.select("lam"), step_size=0.3, num_steps=5),
}


def replicates(name: str):
    model, obs, addr, exact = CONJUGATE[name]
    kernel = KERNELS[name]()

    @jax.jit
    def run(keys, obs):
        def one(key):
            pc = ppl.infer.tempered_smc(key, model, (), obs, particles=N, kernel=kernel, mcmc_steps=3)
            return pc.log_marginal_likelihood(), pc.mean(addr), pc.variance(addr), pc.info.num_stages

        return jax.vmap(one)(keys)

    return run, obs, exact


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONJUGATE))
def test_tempered_smc_recovers_conjugate_posterior_and_evidence(name: str) -> None:
    run, obs, exact = replicates(name)
    logz, mean, var, stages = (np.asarray(x, np.float64) for x in run(jax.random.split(jax.random.key(0), R_REPS), obs))
    m, v, lz = exact()
    se = lambda x: x.std(ddof=1) / math.sqrt(R_REPS)  # noqa: E731  replicate standard error
    # 4 replicate standard errors; floors of 1e-3 relative for near-deterministic estimates
    assert abs(mean.mean() - m) < 4 * se(mean) + 1e-3 * abs(m), (mean, m)
    assert abs(var.mean() - v) < 4 * se(var) + 0.02 * v, (var, v)  # variance: O(1/N) bias allowance
    # log Z_hat is biased low by Var/2 (Jensen): add it back
    assert abs(logz.mean() + logz.var(ddof=1) / 2 - lz) < 4 * se(logz) + 1e-3, (logz, lz)
    assert np.all(stages >= 1)
    if name == "beta-binomial":
        # the same compiled program with an impossible observation (k > n) fails loudly
        with pytest.raises(Exception, match="tempered_smc: the estimate of the marginal likelihood is 0 or NaN"):
            jax.block_until_ready(run(jax.random.split(jax.random.key(0), R_REPS), {"k": jnp.asarray(25)}))


@ppl.gen
def sharp_model():
    mu = dist.Normal(0.0, 10.0) @ "mu"
    dist.Normal(mu * jnp.ones(20), 0.1) @ "y"


def test_sharp_likelihood_needs_several_temperatures() -> None:
    y = jnp.full((20,), 3.0)
    # MH from the prior (N(0, 10)) almost never moves at sd 0.022: the collapse is reported
    with pytest.warns(ppl.errors.DegeneracyWarning, match="collapsed"):
        pc = ppl.infer.tempered_smc(
            jax.random.key(1), sharp_model, (), {"y": y}, particles=500, kernel=MH_MU, mcmc_steps=5, target_ess=0.5
        )
    stages = int(pc.info.num_stages)
    betas = np.asarray(pc.info.betas)[:stages]
    assert stages > 3 and np.all(np.diff(betas) > 0) and betas[-1] == 1.0
    # every stage's ESS before resampling was at the target (except the last jump to 1)
    np.testing.assert_allclose(np.asarray(pc.info.ess)[: stages - 1], 250.0, rtol=0.02)
    # posterior: mean ~ 3 (prior negligible), sd = 0.1 / sqrt(20) ~ 0.022
    assert abs(float(pc.mean("mu")) - 3.0) < 0.05


@ppl.gen
def observed_only():
    dist.Normal(0.0, 1.0) @ "y"


def test_tempered_smc_errors() -> None:
    with pytest.raises(InferenceError, match="no observations given"):
        ppl.infer.tempered_smc(jax.random.key(0), normal_normal, (), None, particles=10)
    with pytest.raises(InferenceError, match="has no latent choices given these observations"):
        ppl.infer.tempered_smc(jax.random.key(0), observed_only, (), {"y": 0.0}, particles=10, kernel=MH_MU)
    with pytest.raises(InferenceError, match=r"target_ess must be in \(0, 1\)"):
        ppl.infer.tempered_smc(jax.random.key(0), normal_normal, (), OBS, particles=10, target_ess=1.5)


# ----------------------------------------------- the default kernel mixes; collapse is reported
D_LAT, N_OBS, S_OBS = 5, 50, 0.5  # mu ~ N(0, I_5), y_dj ~ N(mu_d, S_OBS): posterior sd ~ 0.07, prior sd 1
Y_VEC = np.random.default_rng(0).normal(1.0, S_OBS, (D_LAT, N_OBS)).astype(np.float32)


@ppl.gen
def vector_normal():
    mu = dist.Normal(jnp.zeros(D_LAT), 1.0).to_event(1) @ "mu"
    dist.Normal(mu[:, None] * jnp.ones((D_LAT, N_OBS)), S_OBS).to_event(2) @ "y"


def vector_normal_exact() -> tuple[np.ndarray, float]:
    prec = 1.0 + N_OBS / S_OBS**2
    return Y_VEC.sum(axis=1) / S_OBS**2 / prec, prec**-0.5


@pytest.mark.slow
def test_default_kernel_recovers_a_sharp_multivariate_posterior() -> None:
    reps, n = 6, 1000

    @jax.jit
    def run(keys):
        def one(key):
            pc = ppl.infer.tempered_smc(key, vector_normal, (), {"y": jnp.asarray(Y_VEC)}, particles=n)
            return pc.mean("mu"), jnp.sqrt(pc.variance("mu")), pc.info.num_unique

        return jax.vmap(one)(keys)

    mean, sd, unique = (np.asarray(x, np.float64) for x in run(jax.random.split(jax.random.key(0), reps)))
    m, s = vector_normal_exact()
    # per coordinate: 4 replicate standard errors, each floored at the standard error of a posterior mean
    # (or sd) from n / 10 independent draws (the moved, resampled particles are correlated)
    se_mean = np.maximum(mean.std(axis=0, ddof=1) / math.sqrt(reps), s / math.sqrt(n / 10))
    se_sd = np.maximum(sd.std(axis=0, ddof=1) / math.sqrt(reps), s / math.sqrt(2 * n / 10))
    assert np.all(np.abs(mean.mean(axis=0) - m) < 4 * se_mean), (mean.mean(axis=0), m)
    assert np.all(np.abs(sd.mean(axis=0) - s) < 4 * se_sd), (sd.mean(axis=0), s)  # prior-MH default gave sd ~ 0.01
    assert np.all(unique > n / 2)


@pytest.mark.slow
def test_default_kernel_is_unbiased_for_the_evidence_on_a_constrained_latent() -> None:
    # beta-binomial (p in (0, 1): the default HMC moves logit p); Z_hat / Z has mean 1
    model, obs, _, exact = CONJUGATE["beta-binomial"]
    reps = 40
    run = jax.jit(
        jax.vmap(lambda k: ppl.infer.tempered_smc(k, model, (), obs, particles=200).log_marginal_likelihood())
    )
    ratio = np.exp(np.asarray(run(jax.random.split(jax.random.key(2), reps)), np.float64) - exact()[2])
    # 4 replicate standard errors of the mean of Z_hat / Z
    assert abs(ratio.mean() - 1.0) < 4 * ratio.std(ddof=1) / math.sqrt(reps), ratio.mean()


@pytest.mark.slow
@pytest.mark.parametrize("kernel, steps", [("prior-mh", 3), ("default", 0)], ids=["prior-mh", "no-moves"])
def test_collapsed_cloud_warns(kernel: str, steps: int) -> None:
    k = ppl.infer.kernels.mh(ppl.select_all()) if kernel == "prior-mh" else None
    with pytest.warns(ppl.errors.DegeneracyWarning, match="final particle cloud has collapsed"):
        pc = ppl.infer.tempered_smc(
            jax.random.key(0), vector_normal, (), {"y": jnp.asarray(Y_VEC)}, particles=500, kernel=k, mcmc_steps=steps
        )
    assert int(pc.info.num_unique) < 50


def test_mixing_default_kernel_does_not_warn() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl.errors.DegeneracyWarning)
        pc = ppl.infer.tempered_smc(jax.random.key(0), vector_normal, (), {"y": jnp.asarray(Y_VEC)}, particles=500)
    stages = int(pc.info.num_stages)
    assert np.all(np.asarray(pc.info.acceptance_rate)[:stages] > 0.3)
    assert np.all(np.asarray(pc.info.step_sizes)[:stages] > 0)
