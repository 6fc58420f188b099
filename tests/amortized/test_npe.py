"""Neural posterior estimation (ppl.amortized) against closed forms.

The main model has three independent conjugate parts, so its posterior and its evidence are known exactly:

    mu  ~ N(0, I_2),          y_j ~ N(mu, NOISE)          (j = 1..5, y is [5, 2])
    tau ~ LogNormal(0, 1),    z_j ~ N(log tau, NOISE)     (j = 1..5)

mu | y is normal and tau | z log-normal (a positive parameter: the flow works on log tau and log_prob carries
the Jacobian of exp). Every x given to the estimator is the raw [5, 2] and [5] data, not a summary statistic.

Design target of the estimators trained here (a two-layer MAF with 16 hidden units, 20 000 simulations, at most
3000 steps: about ten seconds of training on this machine): posterior means within 0.4 posterior sd and sds within
20 % of the exact ones, KL(q || p) below 0.1 nats. Measured (both environments give the same numbers): mean errors
0.13 posterior sd root mean square, 0.28 at most over the 15 checks; KL 0.02 nats. (0.1 sd would take about ten
times the simulations and training this file can afford: the error is mostly the variance of a network fitted to
finitely many simulations.) The tolerances below are these allowances plus 4 Monte Carlo standard errors of the
draws used to measure them.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import ppl
import ppl.amortized
import ppl.flows
from ppl import dist
from ppl.errors import AmortizedError

NOISE = 0.5
N_OBS = 5
PREC = 1.0 + N_OBS / NOISE**2  # posterior precision of mu (and of log tau)
POST_SD = 1.0 / np.sqrt(PREC)
MEAN_ALLOWANCE = 0.4  # design target: |mean error| <= 0.4 posterior sd
SD_ALLOWANCE = 0.2  # design target: |sd error| <= 20 % of the posterior sd
SMALL_MAF = functools.partial(ppl.flows.maf, layers=2, width=16)


@ppl.gen
def model(noise):
    mu = dist.Normal(jnp.zeros(2), 1.0).to_event(1) @ "mu"
    tau = dist.LogNormal(0.0, 1.0) @ "tau"
    dist.Normal(mu, noise).expand([N_OBS, 2]).to_event(2) @ "y"
    dist.Normal(jnp.log(tau), noise).expand([N_OBS]).to_event(1) @ "z"


def exact(obs):
    """Posterior moments and log evidence of ``model(NOISE)`` given ``obs`` (closed forms)."""
    y, z = np.asarray(obs["y"], np.float64), np.asarray(obs["z"], np.float64)
    mu_mean = y.sum(0) / NOISE**2 / PREC
    log_tau_mean = z.sum() / NOISE**2 / PREC
    tau_mean = np.exp(log_tau_mean + POST_SD**2 / 2)  # log-normal moments
    tau_sd = tau_mean * np.sqrt(np.expm1(POST_SD**2))
    # y[:, k] and z are each N(0, NOISE^2 I + 1 1^T) in marginal
    cov = NOISE**2 * np.eye(N_OBS) + np.ones((N_OBS, N_OBS))
    mvn = stats.multivariate_normal(np.zeros(N_OBS), cov)
    log_z = mvn.logpdf(y[:, 0]) + mvn.logpdf(y[:, 1]) + mvn.logpdf(z)
    return {"mu_mean": mu_mean, "log_tau_mean": log_tau_mean, "tau_mean": tau_mean, "tau_sd": tau_sd, "log_z": log_z}


def exact_log_posterior(draws, ex):
    mu, tau = np.asarray(draws["mu"], np.float64), np.asarray(draws["tau"], np.float64)
    lp_mu = stats.norm.logpdf(mu, ex["mu_mean"], POST_SD).sum(-1)
    lp_tau = stats.norm.logpdf(np.log(tau), ex["log_tau_mean"], POST_SD) - np.log(tau)  # log-normal density
    return lp_mu + lp_tau


def new_data(key, n):
    """``n`` data sets from the prior predictive (one at a time: the program ``ppl.diagnostics.sbc`` runs too)."""
    out = []
    for k in jax.random.split(key, n):
        cm = model.simulate(k, (NOISE,)).choices
        out.append({"y": cm["y"], "z": cm["z"]})
    return out


def check_moments(draws, mean, sd, what):
    """Sample mean and sd of ``draws`` against the exact ``mean`` and ``sd``.

    Standard errors: sd / sqrt(n) for the mean; for the sd, sd * sqrt((kurtosis - 1) / (4 n)) (delta method on
    the sample variance, whose variance is (m4 - sd^4) / n), with the sample's own kurtosis.
    """
    d = np.asarray(draws, np.float64)
    n = len(d)
    m, s = d.mean(), d.std()
    kurt = np.mean((d - m) ** 4) / s**4
    se_mean, se_sd = s / np.sqrt(n), s * np.sqrt((kurt - 1) / (4 * n))
    assert abs(m - mean) < 4 * se_mean + MEAN_ALLOWANCE * sd, f"{what}: mean {m:.4f}, exact {mean:.4f} (sd {sd:.4f})"
    assert abs(s - sd) < 4 * se_sd + SD_ALLOWANCE * sd, f"{what}: sd {s:.4f}, exact {sd:.4f}"


N_DRAWS = 4000  # draws per posterior everywhere (one compiled sampler)


@pytest.fixture(scope="module")
def simulations():
    return ppl.amortized.simulate_dataset(
        jax.random.key(0), model, (NOISE,), parameters=["mu", "tau"], observed=["y", "z"], simulations=20_000
    )


@pytest.fixture(scope="module")
def trained(simulations):
    return ppl.amortized.npe(
        jax.random.key(1),
        model,
        (NOISE,),
        parameters=["mu", "tau"],
        observed=["y", "z"],
        dataset=simulations,
        flow=SMALL_MAF,
        steps=3000,
        progress_bar=False,
    )


@pytest.mark.slow
def test_amortized_posterior_matches_the_conjugate_posterior_for_new_data(trained):
    assert trained.num_skipped == 0 and trained.layout.theta_dim == 3 and trained.layout.x_dim == 15
    n = N_DRAWS
    for i, obs in enumerate(new_data(jax.random.key(11), 5)):
        ex = exact(obs)
        draws = trained.posterior(obs).sample(jax.random.key(100 + i), n)
        assert draws["mu"].shape == (n, 2) and draws["tau"].shape == (n,)
        assert np.all(np.asarray(draws["tau"]) > 0)
        for k in range(2):
            check_moments(draws["mu"][:, k], ex["mu_mean"][k], POST_SD, f"data set {i}: mu[{k}]")
        check_moments(draws["tau"], ex["tau_mean"], ex["tau_sd"], f"data set {i}: tau")


def test_log_prob_is_the_density_of_the_draws_with_the_jacobian(trained):
    # z = 1 puts E[log tau | z] = 0.95, so a missing or wrong log-Jacobian (log tau) would shift log q by ~1 nat
    obs = {"y": jnp.full((N_OBS, 2), 0.3), "z": jnp.ones(N_OBS)}
    post = trained.posterior(obs)
    draws, log_q = post.sample_and_log_prob(jax.random.key(12), N_DRAWS)
    # the inverse pass (log_prob) agrees with the forward pass that drew them: equal in exact arithmetic,
    # float32 round-off through a 5-layer flow and the standardisation
    np.testing.assert_allclose(post.log_prob(draws), log_q, atol=2e-3)
    batched = post.log_prob({"mu": draws["mu"].reshape(40, 100, 2), "tau": draws["tau"].reshape(40, 100)})
    np.testing.assert_allclose(batched.reshape(-1), log_q, atol=2e-3)  # same quantity, batched: round-off
    # mean(log q - log p) over draws of q estimates KL(q || p) >= 0; 4 standard errors of that mean
    diff = np.asarray(log_q, np.float64) - exact_log_posterior(draws, exact(obs))
    se = diff.std() / np.sqrt(len(diff))
    assert -4 * se < diff.mean() < 0.1 + 4 * se


def test_sbc_and_tarp_pass_for_the_trained_posterior(trained):
    recorded = []

    def infer(key, obs):  # L = 99 i.i.d. draws: the first 99 of the usual N_DRAWS
        draws = {a: v[:99] for a, v in trained.posterior(obs).sample(key, N_DRAWS).items()}
        recorded.append(np.column_stack([np.asarray(draws["mu"]), np.asarray(draws["tau"])]))
        return draws

    res = ppl.diagnostics.sbc(
        jax.random.key(3), model, (NOISE,), infer, observed=["y", "z"], parameters=["mu", "tau"], simulations=100
    )
    assert set(res.ranks) == {"mu[0]", "mu[1]", "tau"}
    assert res.passes(), res.test()
    truths = np.column_stack([res.truths["mu[0]"], res.truths["mu[1]"], res.truths["tau"]])
    tarp = ppl.diagnostics.tarp_coverage(np.stack(recorded), truths)  # draws [S, L, D], truths [S, D]
    assert tarp.ks_pvalue > 0.01


def test_sbc_fails_for_a_misspecified_posterior(trained):
    # An untrained flow is close to the standardised prior, and the prior is calibrated (it passes SBC), so the
    # failing case is a misspecified posterior: trained for noise 0.5, used on data simulated with noise 1.5 it is
    # about 2.5 times too narrow (posterior sd 0.22 instead of 0.56).
    res = ppl.diagnostics.sbc(
        jax.random.key(4),
        model,
        (1.5,),
        lambda key, obs: {a: v[:99] for a, v in trained.posterior(obs).sample(key, N_DRAWS).items()},
        observed=["y", "z"],
        parameters=["mu"],
        simulations=100,
    )
    assert not res.passes()


def test_importance_with_the_amortized_proposal_recovers_the_log_evidence(trained):
    (obs,) = new_data(jax.random.key(13), 1)
    ex = exact(obs)
    post = trained.posterior(obs)
    n = 2000
    pc = post.importance(jax.random.key(5), particles=n)
    ess = float(pc.ess)
    assert ess > 0.5 * n  # q is close to the posterior
    # delta method: Var(Z_hat) / Z^2 = (N / ESS - 1) / N, so se(log Z_hat) = sqrt(1 / ESS - 1 / N)
    se = np.sqrt(1 / ess - 1 / n)
    assert abs(float(pc.log_marginal_likelihood()) - ex["log_z"]) < 4 * se
    # the self-normalised estimate of E[mu | y]: se = sd / sqrt(ESS)
    w = np.asarray(jax.nn.softmax(pc.log_weights), np.float64)
    mu = np.asarray(pc.traces.choices["mu"], np.float64)
    np.testing.assert_array_less(np.abs(w @ mu - ex["mu_mean"]), 4 * POST_SD / np.sqrt(ess))
    # the same proposal through ppl.infer.importance directly (it reads x from the observations)
    pc2 = ppl.infer.importance(jax.random.key(5), model, (NOISE,), obs, particles=n, proposal=post.as_proposal())
    # same keys, same proposal, same weights: equal up to float32 round-off
    np.testing.assert_allclose(pc2.log_marginal_likelihood(), pc.log_marginal_likelihood(), rtol=1e-5)


def test_mcmc_init_gives_one_start_per_chain(trained):
    (obs,) = new_data(jax.random.key(14), 1)
    init = trained.posterior(obs).mcmc_init(jax.random.key(6), 4)
    assert isinstance(init, ppl.ChoiceMap)
    assert init["mu"].shape == (4, 2) and init["tau"].shape == (4,)
    # starts are posterior draws: within 5 posterior sds of the exact posterior mean
    np.testing.assert_array_less(np.abs(np.asarray(init["mu"]) - exact(obs)["mu_mean"]), 5 * POST_SD)


# ------------------------------------------- a simulator without a density, which sometimes fails


def _simulate_flaky(key, mu):
    k_noise, k_fail = jax.random.split(key)
    y = mu[:, None] + NOISE * jax.random.normal(k_noise, (2, N_OBS))
    return jnp.where(jax.random.uniform(k_fail) < 0.1, jnp.nan, y)  # fails (all NaN) 10 % of the time


# A simulator-only site: it samples, but has no density (log_prob is NaN). A log_prob that raises would stop
# simulate, which scores every draw, so NaN is the way to say "no density"; NPE never asks for it.
# Its parameter mu [2] is its batch shape: a draw is y transposed, [2, 5].
FlakySimulator = ppl.dist.make_distribution(
    "FlakySimulator",
    params=("mu",),
    sample=_simulate_flaky,
    log_prob=lambda value, mu: jnp.full(jnp.shape(mu), jnp.nan),
    event_shape=(N_OBS,),
)


@ppl.gen
def flaky():
    """``model`` with y from a failing simulator-only site and z a ppl.deterministic function of nuisance draws."""
    mu = dist.Normal(jnp.zeros(2), 1.0).to_event(1) @ "mu"
    tau = dist.LogNormal(0.0, 1.0) @ "tau"
    FlakySimulator(mu) @ "yt"
    eps = dist.Normal(0.0, 1.0).expand([N_OBS]).to_event(1) @ "eps"
    ppl.deterministic("z", jnp.log(tau) + NOISE * eps)  # a simulator's output computed from its own draws


FLAKY_SIMULATIONS = 20_000
FLAKY_OPT = optax.adam(2e-3)  # one optimiser object: the runs below share one compiled training program


@pytest.fixture(scope="module")
def flaky_data():
    with pytest.warns(ppl.amortized.SkippedSimulationsWarning, match="simulations of flaky .* were skipped"):
        return ppl.amortized.simulate_dataset(
            jax.random.key(30), flaky, (), parameters=["mu", "tau"], observed=["yt", "z"], simulations=FLAKY_SIMULATIONS
        )


class PairSummary(eqx.Module):
    """A DeepSet over the pairs (y_j, z_j). A summary network reads one standardised observation: the value of
    the observed address, or with several, as here, ``{"yt": [2, 5], "z": [5]}``."""

    inner: ppl.amortized.DeepSet

    def __call__(self, obs):
        return self.inner(jnp.column_stack([obs["yt"].T, obs["z"]]))


@pytest.fixture(scope="module")
def flaky_networks():
    # one flow and one summary instance: every run below shares one compiled training program. The summary's
    # 15-dimensional context gives the flow the main estimator's shapes.
    summary = PairSummary(ppl.amortized.deep_set(jax.random.key(20), (3,), 15, width=16, depth=1))
    return SMALL_MAF(jax.random.key(31), 3, context_dim=15), summary


def train_flaky(flaky_data, flaky_networks, steps, **kwargs):
    flow, summary = flaky_networks
    return ppl.amortized.npe(
        jax.random.key(32), flaky, (), parameters=["mu", "tau"], observed=["yt", "z"], dataset=flaky_data,
        flow=flow, summary=summary, optimizer=FLAKY_OPT, steps=steps, chunk_size=100, progress_bar=False, **kwargs,
    )  # fmt: skip


def test_non_finite_simulations_are_skipped_and_counted(flaky_data):
    # the same keys, simulated directly: simulation i uses jax.random.split(key, simulations)[i]
    keys = jax.random.split(jax.random.key(30), FLAKY_SIMULATIONS)
    ys = np.asarray(jax.jit(jax.vmap(lambda k: flaky.simulate(k, ()).choices["yt"]))(keys))
    failed = int(np.sum(~np.all(np.isfinite(ys.reshape(len(ys), -1)), axis=1)))
    # 10 % fail: within 4 binomial standard errors of 2000
    assert abs(failed - 0.1 * FLAKY_SIMULATIONS) < 4 * np.sqrt(FLAKY_SIMULATIONS * 0.1 * 0.9)
    assert flaky_data.num_skipped == failed and flaky_data.size == FLAKY_SIMULATIONS - failed
    assert np.all(np.isfinite(np.asarray(flaky_data.x)))
    assert flaky_data.layout.observed[1].deterministic and flaky_data.layout.x_dim == 15


@pytest.mark.slow
def test_a_simulator_without_a_density_trains_with_a_summary_network(flaky_data, flaky_networks):
    res = train_flaky(flaky_data, flaky_networks, 1500)
    assert res.num_skipped == flaky_data.num_skipped and res.num_simulations == FLAKY_SIMULATIONS
    summary = flaky_networks[1]
    trained_phi = res.estimator.summary.inner.phi.layers[0].weight
    assert not np.allclose(trained_phi, summary.inner.phi.layers[0].weight)  # trained jointly with the flow
    # the failures do not depend on the parameters, so given finite data the posterior is model's
    for i, obs in enumerate(new_data(jax.random.key(34), 3)):
        ex = exact(obs)
        draws = res.posterior({"yt": obs["y"].T, "z": obs["z"]}).sample(jax.random.key(35 + i), N_DRAWS)
        for k in range(2):
            check_moments(draws["mu"][:, k], ex["mu_mean"][k], POST_SD, f"simulator-only model {i}: mu[{k}]")
        check_moments(draws["tau"], ex["tau_mean"], ex["tau_sd"], f"simulator-only model {i}: tau")
    with pytest.raises(AmortizedError, match=r"'z' are ppl\.deterministic values"):
        res.posterior({"yt": obs["y"].T, "z": obs["z"]}).importance(jax.random.key(36))


def test_training_resumes_from_a_checkpoint(flaky_data, flaky_networks, tmp_path):
    path = tmp_path / "npe.npz"
    first = train_flaky(flaky_data, flaky_networks, 200, checkpoint=path, patience=100)
    assert first.fit.step == 200 and path.exists()
    resumed = train_flaky(flaky_data, flaky_networks, 400, checkpoint=path, patience=100)  # continues from step 200
    assert resumed.fit.step == 400 and len(resumed.history) == 400
    np.testing.assert_array_equal(resumed.history[:200], first.history)
    straight = train_flaky(flaky_data, flaky_networks, 400, patience=100)
    # a resumed run repeats the same steps with the same keys: equal up to round-off (XLA may fuse differently)
    np.testing.assert_allclose(resumed.history, straight.history, rtol=1e-6)
    # the last networks (the best ones are tracked per run)
    for a, b in zip(
        jax.tree_util.tree_leaves(eqx.filter(resumed.fit.params[0], eqx.is_array)),
        jax.tree_util.tree_leaves(eqx.filter(straight.fit.params[0], eqx.is_array)),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- bad input


def test_bad_input_names_addresses_and_shapes(trained):
    key = jax.random.key(40)
    with pytest.raises(AmortizedError, match=r"'nope', which model does not make.*'mu', 'tau', 'y', 'z'"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["nope"], observed=["y"])
    with pytest.raises(AmortizedError, match="observed names 'w', which model does not make"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu"], observed=["w"])
    with pytest.raises(AmortizedError, match="'y' named both as parameters and as observed"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu", "y"], observed=["y"])
    with pytest.raises(AmortizedError, match=r"observation at 'y' has shape \(4, 2\).*'y' has shape \(5, 2\)"):
        trained.posterior({"y": jnp.zeros((4, 2)), "z": jnp.zeros(N_OBS)})
    with pytest.raises(AmortizedError, match="no value at 'z'"):
        trained.posterior({"y": jnp.zeros((N_OBS, 2))})
    with pytest.raises(AmortizedError, match=r"summary must be callable.*got int"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu"], observed=["y"], summary=3)
    flow = trained.estimator.flow  # dimension 3, contexts (15,)
    with pytest.raises(AmortizedError, match=r"contexts of shape \(15,\), but the summary network outputs .* size 3"):
        ppl.amortized.npe(
            key, model, (NOISE,), parameters=["mu", "tau"], observed=["y"], summary=lambda y: jnp.zeros(3), flow=flow
        )
    with pytest.raises(AmortizedError, match="flow has dimension 3, but the parameters have 2"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu"], observed=["y", "z"], flow=flow)
    with pytest.raises(AmortizedError, match=r"contexts of shape \(15,\), but the observations flatten to .* size 10"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu", "tau"], observed=["y"], flow=flow)
    with pytest.raises(AmortizedError, match=r"summary network must return a context vector \[C\].*\(5, 2\)"):
        ppl.amortized.npe(key, model, (NOISE,), parameters=["mu"], observed=["y"], summary=lambda y: y)

    @ppl.gen
    def coin():
        p = dist.Beta(2.0, 2.0) @ "p"
        k = dist.Bernoulli(p) @ "k"
        dist.Normal(k, 1.0) @ "x"

    with pytest.raises(AmortizedError, match="parameter 'k' of coin is discrete"):
        ppl.amortized.npe(key, coin, (), parameters=["p", "k"], observed=["x"])
