"""Simulation-based calibration: ranks, the loop over a ppl model, the uniformity tests and the ECDF band.

The conjugate model ``mu ~ N(0, 1)``, ``y_i ~ N(mu, 0.5)`` (``i = 1..5``) has
the posterior ``mu | y ~ N(sum(y) / 0.25 / P, 1 / P)`` with precision
``P = 1 + 5 / 0.25 = 21``. Exact posterior draws must pass SBC; draws with the
posterior sd halved or the mean shifted by one sd must fail it.
"""

from __future__ import annotations

import jax
import matplotlib
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.diagnostics import SBCResult, ecdf_band, posterior_draws, sbc, sbc_ranks
from ppl.diagnostics.uniformity import rank_bins
from ppl.errors import ArgumentValueError, MissingAddressError, MissingDrawsError

matplotlib.use("Agg")

NOISE, N_OBS = 0.5, 5
PREC = 1.0 + N_OBS / NOISE**2
L = 99


@ppl.gen
def model():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(mu, NOISE).expand([N_OBS]) @ "y"


def posterior_sampler(scale: float = 1.0, shift: float = 0.0, n: int = L):
    """Draws from the closed-form posterior, sd multiplied by ``scale``, mean moved by ``shift`` sd."""

    def infer(key, obs):
        mean = float(np.sum(obs["y"])) / NOISE**2 / PREC
        sd = PREC**-0.5
        return {"mu": mean + shift * sd + scale * sd * np.asarray(jax.random.normal(key, (n,)))}

    return infer


def run_sbc(infer, simulations: int = 200, **kw) -> SBCResult:
    return sbc(jax.random.key(0), model, (), infer, observed=["y"], simulations=simulations, **kw)


# ----------------------------------------------------------------- ranks


def test_ranks_match_a_brute_force_count() -> None:
    rng = np.random.default_rng(1)
    truths, draws = rng.normal(size=(6, 3)), rng.normal(size=(6, 7, 3))
    expected = np.array([[sum(1 for d in draws[s, :, j] if d < truths[s, j]) for j in range(3)] for s in range(6)])
    np.testing.assert_array_equal(sbc_ranks(truths, draws), expected)


def test_ties_give_ranks_uniform_over_the_tie_range() -> None:
    # truth 1 among draws (0, 1, 1, 2): one draw below, two tied -> rank uniform on {1, 2, 3}
    n = 3000
    ranks = sbc_ranks(np.ones(n, int), np.tile([0, 1, 1, 2], (n, 1)), rng=np.random.default_rng(2))
    assert set(np.unique(ranks)) == {1, 2, 3}
    freq = np.bincount(ranks, minlength=4)[1:] / n
    # each frequency has sd sqrt((1/3)(2/3)/n) ~ 0.0086; 4 sd
    np.testing.assert_allclose(freq, 1 / 3, atol=4 * np.sqrt(2 / 9 / n))
    # the same seed gives the same ranks
    np.testing.assert_array_equal(ranks, sbc_ranks(np.ones(n, int), np.tile([0, 1, 1, 2], (n, 1)), rng=2))


def test_dict_ranks_name_the_components() -> None:
    rng = np.random.default_rng(3)
    truths = {"mu": rng.normal(size=4), "theta": rng.normal(size=(4, 2))}
    draws = {"mu": rng.normal(size=(4, 5)), "theta": rng.normal(size=(4, 5, 2))}
    ranks = sbc_ranks(truths, draws)
    assert list(ranks) == ["mu", "theta[0]", "theta[1]"]
    np.testing.assert_array_equal(ranks["theta[1]"], np.sum(draws["theta"][:, :, 1] < truths["theta"][:, None, 1], 1))


def test_rank_bins_divide_the_ranks() -> None:
    bin_of_rank, p = rank_bins(200, 99)  # min(20, 100, 40) = 20 divides 100
    assert len(p) == 20 and np.allclose(p, 0.05) and len(bin_of_rank) == 100
    _, p = rank_bins(30, 99)  # min(20, 100, 6) = 6: 5 divides 100
    assert len(p) == 5
    _, p = rank_bins(200, 36)  # 37 is prime: 20 bins of 1 or 2 ranks, exact probabilities
    assert len(p) == 20 and np.isclose(p.sum(), 1.0) and set(np.round(p * 37)) == {1, 2}


# ---------------------------------------------------------- the SBC loop


def test_exact_posterior_passes() -> None:
    result = run_sbc(posterior_sampler())
    assert result.num_simulations == 200 and result.num_draws == L and list(result.ranks) == ["mu"]
    assert np.all((result.ranks["mu"] >= 0) & (result.ranks["mu"] <= L))
    # truths are prior draws: mean 0, sd 1 (4 standard errors)
    assert abs(np.mean(result.truths["mu"])) < 4 / np.sqrt(200)
    # Bonferroni over the two tests of the one component: a correct sampler fails with probability
    # at most 0.01 over seeds; with the fixed seed the outcome is deterministic.
    assert result.passes(alpha=0.01), result.test()
    assert not result.leaves_band()["mu"]


@pytest.mark.parametrize("kind", ["overconfident", "biased"])
def test_miscalibrated_posterior_is_flagged(kind: str) -> None:
    infer = posterior_sampler(scale=0.5) if kind == "overconfident" else posterior_sampler(shift=1.0)
    result = run_sbc(infer)
    p = result.test()["mu"]
    assert p["chi2"] < 1e-3 and p["ecdf"] < 1e-3, p
    assert result.leaves_band()["mu"]
    assert not result.passes()


def test_importance_sampling_particles_pass() -> None:
    # prior proposal, posterior sd 0.22: ESS ~ 0.4 N, so 5000 particles give a nearly exact posterior
    def infer(key, obs):
        return ppl.infer.importance(key, model, (), obs, particles=5000)

    result = run_sbc(infer, draws=L)
    assert result.num_draws == L
    assert result.passes(alpha=0.01), result.test()


@pytest.mark.slow
def test_nuts_result_adapter_runs() -> None:
    def infer(key, obs):
        # 2 chains x 50 draws: fewer draws per chain than the runner's R-hat check needs, so no warning
        return ppl.infer.nuts(key, model, (), obs, num_warmup=50, num_samples=50, num_chains=2, progress_bar=False)

    result = run_sbc(infer, simulations=30, draws=20)  # thinned: 100 pooled draws, every 5th kept
    assert result.num_draws == 20
    assert np.all((result.ranks["mu"] >= 0) & (result.ranks["mu"] <= 20))


def test_posterior_draws_adapter() -> None:
    d = posterior_draws({"a": np.arange(10.0), "sub": {"z": np.ones((10, 2))}}, n=4)
    assert set(d) == {("a",), ("sub", "z")}
    np.testing.assert_array_equal(d[("a",)], [0.0, 3.0, 6.0, 9.0])
    assert d[("sub", "z")].shape == (4, 2)
    assert posterior_draws(ppl.choices({"a": np.zeros(3)}))[("a",)].shape == (3,)
    with pytest.raises(ArgumentValueError, match="draws=11"):
        posterior_draws({"a": np.arange(10.0)}, n=11)
    with pytest.raises(ppl.PPLError, match="list"):
        posterior_draws([1, 2])


# ------------------------------------------------------------- ECDF band


def test_ecdf_band_coverage_on_fresh_samples() -> None:
    S, L_, alpha, n_mc = 100, 49, 0.05, 10_000
    band = ecdf_band(S, L_, alpha, n_mc=n_mc, seed=0)
    ranks = np.random.default_rng(123).integers(0, L_ + 1, size=(4000, S))  # uniform ranks, another seed
    k = np.round(band.z * (L_ + 1)).astype(int)
    inside = [band.contains(np.sum(r[:, None] < k, axis=0) / S) for r in ranks]
    # the coverage estimate has binomial sd sqrt(a(1-a)/N); gamma itself is a quantile of n_mc
    # simulated samples, which adds variance a(1-a)/n_mc to the coverage it achieves
    se = np.sqrt(alpha * (1 - alpha) * (1 / len(ranks) + 1 / n_mc))
    assert abs(np.mean(inside) - (1 - alpha)) < 3 * se
    assert np.all(band.lower <= 0) and np.all(band.upper >= 0)


def test_ecdf_band_pointwise_level_is_an_alpha_quantile() -> None:
    # at one grid point the band is the central pointwise interval at level gamma
    band = ecdf_band(50, 1, 0.05)
    assert band.z.tolist() == [0.5]
    lo, hi = (band.lower[0] + 0.5) * 50, (band.upper[0] + 0.5) * 50
    # with one point the simultaneous band is the pointwise one: P(outside) <= alpha, and close to it
    outside = stats.binom.cdf(lo - 1, 50, 0.5) + stats.binom.sf(hi, 50, 0.5)
    assert outside <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 10_000)


# ------------------------------------------------------------------ errors


def test_bad_input_raises() -> None:
    with pytest.raises(ArgumentValueError, match=r"truths \(5,\) and draws \(5, 10, 2\)"):
        sbc_ranks(np.zeros(5), np.zeros((5, 10, 2)))
    with pytest.raises(ArgumentValueError, match=r"L >= 1.*\(5, 0\)"):
        sbc_ranks(np.zeros(5), np.zeros((5, 0)))
    with pytest.raises(MissingAddressError, match=r"observed names 'z'.*'mu', 'y'"):
        sbc(jax.random.key(0), model, (), posterior_sampler(), observed=["z"], simulations=2)
    with pytest.raises(MissingAddressError, match="parameters names 'sigma'"):
        run_sbc(posterior_sampler(), simulations=2, parameters=["sigma"])
    with pytest.raises(MissingDrawsError, match="no draws for parameter 'mu'"):
        run_sbc(lambda key, obs: {"nu": np.zeros(5)}, simulations=2)
    with pytest.raises(ArgumentValueError, match=r"'mu' from infer have shape \(5, 2\)"):
        run_sbc(lambda key, obs: {"mu": np.zeros((5, 2))}, simulations=2)
    with pytest.raises(ArgumentValueError, match="simulations"):
        run_sbc(posterior_sampler(), simulations=0)
    for err in (ArgumentValueError, MissingAddressError, MissingDrawsError):
        assert issubclass(err, ppl.PPLError)


# ------------------------------------------------------------------- plots


def test_plots_return_axes() -> None:
    import matplotlib.pyplot as plt

    result = run_sbc(posterior_sampler(), simulations=40)
    ax = result.plot("hist")
    n_bins = len(rank_bins(40, L)[1])
    assert len(ax.patches) == n_bins + 1  # bars and the expected-count stairs
    assert len(ax.collections) == 1  # the binomial interval
    ax = result.plot("ecdf_diff")
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # the ECDF difference, the zero line; the band
    with pytest.raises(ArgumentValueError, match="kind"):
        result.plot("violin")
    plt.close("all")
