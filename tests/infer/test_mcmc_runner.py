"""The MCMC runners: results, compiled-program reuse, init, diagnostics, export."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.diagnostics import ess_bulk, ess_mean, ess_tail, mcse_mean, rhat
from ppl.diagnostics.arviz import group_names
from ppl.infer.mcmc import runner

J = 4
SIGMA = jnp.array([10.0, 12.0, 8.0, 15.0])
Y = jnp.array([12.0, -3.0, 6.0, 20.0])


@ppl.gen
def schools(sigma):
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    z = dist.Normal(jnp.zeros(J), 1.0) @ "z"
    ppl.deterministic("theta", mu + tau * z)
    dist.Normal(mu + tau * z, sigma) @ "y"


def run(key=0, y=Y, **kw):
    opts = dict(num_warmup=200, num_samples=200, num_chains=2, progress_bar=False)
    opts.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl.infer.DivergenceWarning)
        return ppl.infer.nuts(jax.random.key(key), schools, (SIGMA,), {"y": y}, **opts)


@pytest.fixture(scope="module")
def result():
    return run()


@pytest.mark.slow
def test_result_holds_constrained_draws_and_deterministic_sites(result) -> None:
    s = result.samples
    assert set(s) == {"mu", "tau", "z", "theta"}
    assert s["z"].shape == (2, 200, J) and s["mu"].shape == (2, 200)
    assert np.all(s["tau"] > 0)  # constrained space
    np.testing.assert_allclose(s["theta"], s["mu"][..., None] + s["tau"][..., None] * s["z"], rtol=1e-5, atol=1e-5)
    assert result.num_chains == 2 and result.num_draws == 200


def test_per_draw_diagnostics(result) -> None:
    st = result.stats
    for k in ("diverging", "acceptance_rate", "n_steps", "tree_depth", "energy", "lp"):
        assert st[k].shape == (2, 200), k
    assert st["diverging"].dtype == bool
    assert np.all((st["acceptance_rate"] >= 0) & (st["acceptance_rate"] <= 1 + 1e-5))  # float32 rounding
    # NUTS takes 2^depth - 1 or fewer leapfrog steps, at least one
    assert np.all(st["n_steps"] >= 1) and np.all(st["n_steps"] <= 2 ** st["tree_depth"])
    assert result.step_size.shape == (2,) and np.all(result.step_size > 0)
    assert result.inverse_mass_matrix.shape == (2, J + 2)
    assert result.num_divergences == int(st["diverging"].sum())
    warm = result.warmup_stats
    assert set(warm) == {"diverging", "acceptance_rate", "n_steps", "step_size"}
    assert warm["n_steps"].shape == (2, 200) and np.all(warm["step_size"] > 0)


def test_to_arviz_and_summary(result) -> None:
    idata = result.to_arviz()
    assert group_names(idata) >= {"posterior", "sample_stats", "observed_data"}
    assert idata.posterior["z"].shape == (2, 200, J)
    for k in ("diverging", "acceptance_rate", "n_steps", "step_size", "lp", "tree_depth"):
        assert k in idata.sample_stats, k
    import arviz as az

    summ = az.summary(idata, var_names=["mu", "tau"])
    assert {"r_hat", "ess_bulk"} <= set(summ.columns)
    table = result.summary()
    assert set(table["mu"]) >= {"mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean"}
    np.testing.assert_allclose(table["mu"]["mean"], result.samples["mu"].mean(), rtol=1e-6)
    text = str(result)
    assert "r_hat" in text and "ess_bulk" in text and "divergent" in text


def test_hdi_and_summary_frame_agree_with_arviz() -> None:
    import arviz as az

    from ppl.diagnostics import hdi, summary, summary_frame
    from ppl.diagnostics.arviz import arviz_major

    x = np.random.default_rng(0).gamma(2.0, size=(4, 1000, 2))  # skewed: HDI differs from the central interval
    low, high = hdi(x, 0.9)
    ref = az.hdi(x, prob=0.9, axis=(0, 1)) if arviz_major(az) >= 1 else az.hdi(x, hdi_prob=0.9)
    np.testing.assert_allclose(np.stack([low, high], -1), np.asarray(ref), rtol=1e-12)
    assert np.all(high - low < np.quantile(x, 0.95, axis=(0, 1)) - np.quantile(x, 0.05, axis=(0, 1)))
    frame = summary_frame(summary({"g": x}))
    assert list(frame.index) == ["g[0]", "g[1]"] and {"hdi_low", "hdi_high", "ess_bulk", "r_hat"} <= set(frame)
    np.testing.assert_allclose(frame["hdi_low"], low)


def test_same_shapes_reuse_the_compiled_program() -> None:
    run(key=1)
    n = runner._gradient_program._cache_size()
    r = run(key=2, y=Y + 1.0)  # new data and key, same shapes: no new compilation
    assert runner._gradient_program._cache_size() == n
    assert r.samples["mu"].shape == (2, 200)


def test_user_init_shared_and_per_chain() -> None:
    # no warm-up, one draw, trees of at most 2 leapfrog steps: the chains stay near their starting points
    init = {"mu": jnp.array([-50.0, 50.0]), "tau": 2.0, "z": jnp.zeros(J)}  # per chain, shared, shared
    r = run(num_warmup=0, num_samples=1, init=init, max_tree_depth=1)
    assert r.samples["mu"][0, 0] < -30 and r.samples["mu"][1, 0] > 30
    assert np.all(np.abs(r.samples["z"]) < 3.0)


def test_dense_mass_matrix() -> None:
    r = run(dense_mass=True)
    assert r.inverse_mass_matrix.shape == (2, J + 2, J + 2)
    np.testing.assert_allclose(r.inverse_mass_matrix, np.swapaxes(r.inverse_mass_matrix, 1, 2), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_divergences_are_counted_and_reported() -> None:
    @ppl.gen
    def funnel():
        v = dist.Normal(0.0, 3.0) @ "v"
        dist.Normal(jnp.zeros(5), jnp.exp(v / 2)) @ "x"

    with pytest.warns(ppl.infer.DivergenceWarning, match="diverged"):
        r = ppl.infer.nuts(jax.random.key(0), funnel, (), None, num_warmup=300, num_samples=300, progress_bar=False)
    assert r.num_divergences > 0
    assert r.num_divergences == int(r.diverging.sum())


def test_progress_bar_reports_to_stderr(capsys) -> None:
    run(progress_bar=True)
    err = capsys.readouterr().err
    assert "warm-up" in err and "sampling" in err and "done 400/400" in err


def test_traces_rebuild_scores(result) -> None:
    tr = result.traces
    assert tr.score.shape == (2, 200)
    one = jax.tree_util.tree_map(lambda x: x[1, 7], tr)
    expected, _ = schools.assess(one.choices, (SIGMA,))
    np.testing.assert_allclose(one.score, expected, rtol=1e-5)
    np.testing.assert_allclose(one.choices["mu"], result.samples["mu"][1, 7])


def test_run_mcmc_with_gibbs_and_nuts_on_a_mixed_model() -> None:
    """Discrete + continuous latents: cycle(gibbs, nuts) through run_mcmc."""

    @ppl.gen
    def mixed():
        z = dist.Bernoulli(0.4) @ "z"
        mu = dist.Normal(0.0, 1.0) @ "mu"
        dist.Normal(mu + 3.0 * z, 1.0) @ "y"

    k = ppl.infer.kernels
    kernel = k.cycle(k.gibbs("z"), k.nuts(ppl.select("mu"), 0.8))
    r = ppl.infer.run_mcmc(
        jax.random.key(3), kernel, mixed, (), {"y": 2.0}, num_warmup=100, num_samples=1000, progress_bar=False
    )
    assert r.samples["z"].shape == (4, 1000)
    # exact p(z = 1 | y): y | z ~ N(3 z, sqrt(2))
    from scipy.stats import norm

    l1, l0 = 0.4 * norm.pdf(2.0, 3.0, np.sqrt(2)), 0.6 * norm.pdf(2.0, 0.0, np.sqrt(2))
    p1 = l1 / (l1 + l0)
    zbar = r.samples["z"].astype(float)
    # 4 standard errors: se = sd / sqrt(ess)
    assert abs(zbar.mean() - p1) <= 4 * np.sqrt(p1 * (1 - p1) / float(ess_mean(zbar)))
    assert r.stats["accepted"].shape == (4, 1000)


def test_diagnostics_agree_with_arviz() -> None:
    import arviz as az

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(4, 300)), axis=1) * 0.2 + rng.normal(size=(4, 300))
    # the same estimators (Vehtari et al. 2021); numpyro's autocovariance differs from ArviZ's in the last digits
    np.testing.assert_allclose(ess_bulk(x), az.ess(x, method="bulk"), rtol=0.03)
    # prob spelled out: ArviZ 1.x's array interface has no default for it (0.x: the same (0.05, 0.95))
    np.testing.assert_allclose(ess_tail(x), az.ess(x, method="tail", prob=(0.05, 0.95)), rtol=0.03)
    np.testing.assert_allclose(ess_mean(x), az.ess(x, method="mean"), rtol=0.03)
    np.testing.assert_allclose(rhat(x), az.rhat(x), rtol=1e-4)
    np.testing.assert_allclose(mcse_mean(x), az.mcse(x, method="mean"), rtol=0.03)
    ties = np.round(x)
    np.testing.assert_allclose(rhat(ties), az.rhat(ties), rtol=1e-4)
    # float32 draws (ranked as float32) and several elements at once (one vectorised pass) give the same
    x32 = np.stack([x, ties, 3 * x + 1], axis=-1).astype(np.float32)
    expected = [az.rhat(x32[..., j].astype(np.float64)) for j in range(3)]
    np.testing.assert_allclose(rhat(x32), expected, rtol=1e-4)
    np.testing.assert_allclose(ess_bulk(x32), [az.ess(x32[..., j], method="bulk") for j in range(3)], rtol=0.03)
