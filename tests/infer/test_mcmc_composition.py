"""MCMC on composed models: Gibbs supports that follow the run's values, switch/mixture
models in the runners, and the warning for chains that disagree.

Expected values come from exact enumeration with ``model.assess`` or closed
forms, never from the code under test.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.diagnostics import mcse_mean
from ppl.diagnostics.convergence import ConvergenceWarning, chain_disagreement
from ppl.errors import PPLError, SelectionError
from ppl.infer import kernels as K
from ppl.infer.mcmc import ConditionalChoiceError, runner

Y_OBS = 5.0


@ppl.gen
def binomial_model(n):
    k = dist.Binomial(total_count=n, probs=0.5) @ "k"
    dist.Normal(k * 1.0, 2.0) @ "y"
    return k


def exact_binomial_posterior(n: int, y: float, size: int) -> np.ndarray:
    """p(k | y) for k = 0..size-1 by enumerating ``assess`` (zero outside 0..n)."""
    logp = []
    for k in range(size):
        if k > n:
            logp.append(-np.inf)
            continue
        lp, _ = binomial_model.assess(ppl.choices({"k": k, "y": y}), (jnp.asarray(n),))
        logp.append(float(lp))
    logp = np.array(logp)
    p = np.exp(logp - logp.max())
    return p / p.sum()


def test_gibbs_support_follows_argument_values_across_runs() -> None:
    """n = 3 then n = 7 through one compiled program: each run enumerates its own support."""
    kernel = K.gibbs("k", support=range(11))  # a static superset; values > n are masked at run time
    compiled = []
    for n in (3, 7):
        r = ppl.infer.run_mcmc(
            jax.random.key(n), kernel, binomial_model, (jnp.asarray(n),), {"y": Y_OBS},
            num_warmup=10, num_samples=2000, num_chains=2, progress_bar=False,
        )  # fmt: skip
        compiled.append(runner._kernel_program._cache_size())
        k = r.samples["k"].reshape(-1).astype(int)
        assert k.max() <= n
        expected = exact_binomial_posterior(n, Y_OBS, 11)[: n + 1]
        counts = np.bincount(k, minlength=n + 1)
        # k is the only latent choice, so each Gibbs step draws exactly from p(k | y), independently of the
        # previous state: the 4000 draws are iid and Pearson's statistic is chi-square with n dof.
        chi2 = np.sum((counts - k.size * expected) ** 2 / (k.size * expected))
        assert chi2 < stats.chi2.ppf(1 - 1e-4, df=n), (n, counts, expected * k.size)
    assert compiled[1] == compiled[0]  # same shapes: the second run reused the compiled program


@pytest.mark.slow
def test_gibbs_kernel_does_not_keep_the_first_support() -> None:
    """Used directly: a trace with n = 7 after one with n = 3 can move to k = 7."""
    kernel = K.gibbs("k")
    tr3, _ = binomial_model.generate(jax.random.key(0), {"y": Y_OBS, "k": 0}, (jnp.asarray(3),))
    kernel.step(jax.random.key(1), kernel.init(tr3))
    # y = 100 puts p(k = 7 | y) / p(k = 6 | y) = exp((94**2 - 93**2) / 8) = e^23: k = 7 is certain
    tr7, _ = binomial_model.generate(jax.random.key(0), {"y": 100.0, "k": 0}, (jnp.asarray(7),))
    state, _ = kernel.step(jax.random.key(2), kernel.init(tr7))
    assert int(state.trace.choices["k"]) == 7
    expected = exact_binomial_posterior(7, 100.0, 8)
    assert expected[7] > 1 - 1e-9


def test_gibbs_traced_support_without_bound_names_the_address() -> None:
    kernel = K.gibbs("k")
    tr, _ = binomial_model.generate(jax.random.key(0), {"y": Y_OBS}, (jnp.asarray(3),))
    state = kernel.init(tr)
    with pytest.raises(SelectionError, match=r"gibbs\('k'\).*depends on traced values.*support="):
        jax.jit(kernel.step)(jax.random.key(1), state)


# ------------------------------------------------------------ switch / mixture
@ppl.gen
def low():
    return dist.Normal(-2.0, 1.0) @ "x"


@ppl.gen
def high():
    return dist.Normal(2.0, 1.0) @ "x"


@ppl.gen
def other():
    return dist.Normal(2.0, 1.0) @ "z"


@ppl.gen
def mixture_model():
    x = ppl.mixture(low, high)(jnp.zeros(2)) @ "m"
    dist.Normal(x, 1.0) @ "y"


def normal_pdf(x: float, mean: float, sd: float) -> float:
    return float(np.exp(-0.5 * ((x - mean) / sd) ** 2) / sd)


def check_mean(draws: np.ndarray, exact: float) -> None:
    # 5 Monte Carlo standard errors (sd / sqrt(ESS) of the mean, autocorrelation included)
    tol = 5 * float(mcse_mean(draws))
    assert abs(float(draws.mean()) - exact) < tol, (float(draws.mean()), exact, tol)


@pytest.mark.slow
def test_run_mcmc_on_a_mixture_with_a_shared_continuous_address() -> None:
    """Both components make ("m", "value", "x"): Gibbs on the component, HMC on x."""
    y = 1.0
    kernel = K.cycle(K.gibbs(("m", "component")), K.hmc(ppl.select(("m", "value", "x")), 0.5, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = ppl.infer.run_mcmc(
            jax.random.key(0), kernel, mixture_model, (), {"y": y},
            num_warmup=200, num_samples=2000, num_chains=4, progress_bar=False,
        )  # fmt: skip
    # closed form: y | k ~ N(mu_k, sqrt 2), x | k, y ~ N((mu_k + y) / 2, sqrt(1/2))
    w = np.array([normal_pdf(y, -2.0, np.sqrt(2)), normal_pdf(y, 2.0, np.sqrt(2))])
    p = w / w.sum()
    check_mean(r.samples["m/component"].astype(float), p[1])
    check_mean(r.samples["m/value/x"], float(p @ (np.array([-2.0, 2.0]) + y) / 2))


@ppl.gen
def cond_model():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    x = ppl.cond(mu > 0, near_low, near_high)() @ "s"
    dist.Normal(x, 1.0) @ "y"


@ppl.gen
def near_low():
    return dist.Normal(-0.5, 1.0) @ "x"


@ppl.gen
def near_high():
    return dist.Normal(0.5, 1.0) @ "x"


@pytest.mark.slow
def test_nuts_on_a_cond_whose_branches_share_their_choice() -> None:
    y = 1.0
    r = ppl.infer.nuts(
        jax.random.key(1), cond_model, (), {"y": y}, num_warmup=500, num_samples=1000, num_chains=4,
        progress_bar=False,
    )  # fmt: skip
    # closed form: P(mu > 0 | y) ∝ P(mu > 0) N(y; -0.5, sqrt 2); E[mu | sign] = ±sqrt(2 / pi)
    w_pos, w_neg = normal_pdf(y, -0.5, np.sqrt(2)), normal_pdf(y, 0.5, np.sqrt(2))
    p_pos = w_pos / (w_pos + w_neg)
    check_mean(r.samples["mu"], (2 * p_pos - 1) * np.sqrt(2 / np.pi))
    check_mean(r.samples["s/x"], p_pos * (-0.5 + y) / 2 + (1 - p_pos) * (0.5 + y) / 2)


@ppl.gen
def branch_specific():
    i = dist.Bernoulli(0.5) @ "i"
    x = ppl.switch(i, low, other)() @ "s"
    dist.Normal(x, 1.0) @ "y"


def test_choices_of_some_branches_only_raise_a_ppl_error_naming_them() -> None:
    opts = dict(num_warmup=10, num_samples=10, num_chains=2, progress_bar=False)
    with pytest.raises(ConditionalChoiceError, match=r"\('s', 'x'\), \('s', 'z'\).*every branch") as e:
        ppl.infer.mh(jax.random.key(0), branch_specific, (), {"y": 1.0}, **opts)
    assert isinstance(e.value, PPLError)
    kernel = K.cycle(K.gibbs("i"), K.hmc(ppl.select(("s", "x"), ("s", "z")), 0.3, 3))
    with pytest.raises(ConditionalChoiceError, match=r"run_mcmc.*\('s', 'x'\)"):
        ppl.infer.run_mcmc(jax.random.key(0), kernel, branch_specific, (), {"y": 1.0}, **opts)


@pytest.mark.slow
def test_observed_index_leaves_the_taken_branch_only() -> None:
    """With i observed, ("s", "x") is never made: NUTS samples ("s", "z") alone."""
    r = ppl.infer.nuts(
        jax.random.key(2), branch_specific, (), {"y": 1.0, "i": 1}, num_warmup=300, num_samples=1000,
        num_chains=2, progress_bar=False,
    )  # fmt: skip
    assert set(r.samples) == {"s/z"}
    check_mean(r.samples["s/z"], 1.5)  # closed form: N(2, 1) prior, N(z, 1) likelihood at y = 1


# ------------------------------------------------------------ convergence warning
@ppl.gen
def bimodal():
    dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.array([0.5, 0.5])), dist.Normal(jnp.array([-10.0, 10.0]), 1.0)
    ) @ "x"


@ppl.gen
def standard_normal():
    dist.Normal(0.0, 1.0) @ "x"


@pytest.mark.slow
def test_chains_in_separate_modes_are_reported() -> None:
    init = {"x": jnp.array([-10.0, -10.0, -10.0, 10.0])}  # chain 3 starts in the other mode
    with pytest.warns(ConvergenceWarning, match=r"R-hat > 1.01 at x .*chain\(s\) \[3\] sit apart"):
        ppl.infer.nuts(
            jax.random.key(0), bimodal, (), None, num_warmup=100, num_samples=200, num_chains=4, init=init,
            progress_bar=False,
        )  # fmt: skip


@pytest.mark.slow
def test_well_mixed_chains_are_not_reported() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = ppl.infer.nuts(
            jax.random.key(0), standard_normal, (), None, num_warmup=300, num_samples=1000, num_chains=4,
            progress_bar=False,
        )  # fmt: skip
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert r.num_chains == 4


def test_chain_disagreement_on_synthetic_draws() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 500, 2))
    x[2, :, 1] += 5.0  # element 1 of chain 2 is shifted by 5 sds
    flagged, apart = chain_disagreement({"theta": x})
    assert [name for name, _ in flagged] == ["theta[1]"]
    assert apart == {2: ["theta[1]"]}
    assert chain_disagreement({"theta": rng.normal(size=(4, 500))}) == ([], {})
    assert chain_disagreement({"theta": x[:1]}) == ([], {})  # one chain: nothing to compare


# ----------------------------------------- models whose captured arrays differ


def _model_with_prior_mean(m0):
    @ppl.gen
    def model():
        mu = dist.Normal(m0, 1.0) @ "mu"
        return dist.Normal(mu, 1.0) @ "y"

    return model


@pytest.mark.slow
def test_runs_on_rebuilt_equal_models_use_each_models_own_captured_values():
    # Both models have the same code and structure (one compiled program), but each
    # captures its own prior mean: the posterior of mu given y = 0 is N(m0 / 2, 1/2).
    for m0 in (0.0, 6.0):
        model = _model_with_prior_mean(jnp.asarray(m0))
        result = ppl.infer.nuts(jax.random.key(0), model, (), {"y": 0.0}, num_warmup=300, num_samples=500, num_chains=2)
        draws = np.asarray(result.samples["mu"]).ravel()
        # tolerance: 5 standard errors with a conservative effective sample size of 200
        assert abs(draws.mean() - m0 / 2) < 5 * np.sqrt(0.5 / 200), (m0, draws.mean())
        prior = ppl.infer.predictive(jax.random.key(1), model, (), num_samples=4000)
        mu = np.asarray(prior["mu"])
        assert abs(mu.mean() - m0) < 5 / np.sqrt(4000), (m0, mu.mean())
