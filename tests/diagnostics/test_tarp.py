"""TARP expected coverage: calibrated and miscalibrated Gaussian posteriors, agreement with the ``tarp`` package.

Model (D = 2): ``theta ~ N(0, Sigma)`` with correlation 0.6, ``x = theta + N(0, 0.5^2 I)``; the exact
posterior is ``N(C Sigma_n^{-1} x, C)`` with ``C = (Sigma^{-1} + Sigma_n^{-1})^{-1}``.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

import ppl
from ppl.diagnostics import tarp_coverage
from ppl.errors import ArgumentValueError, MissingDrawsError

matplotlib.use("Agg")

PRIOR = np.array([[1.0, 0.6], [0.6, 1.0]])
NOISE = 0.5**2 * np.eye(2)
POST = np.linalg.inv(np.linalg.inv(PRIOR) + np.linalg.inv(NOISE))
L = 200


def simulate(S: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(draws [S, L, 2], truths [S, 2])``: exact posterior draws, means moved by ``shift`` sd, spread times ``scale``."""
    rng = np.random.default_rng(seed)
    theta = rng.multivariate_normal(np.zeros(2), PRIOR, size=S)
    x = theta + rng.normal(size=(S, 2)) * 0.5
    mean = x @ (POST @ np.linalg.inv(NOISE)).T
    z = rng.normal(size=(S, L, 2)) @ np.linalg.cholesky(POST).T
    return mean[:, None] + shift * np.sqrt(np.diag(POST)) + scale * z, theta


def test_calibrated_posterior() -> None:
    S = 300
    r = tarp_coverage(*simulate(S, 0))
    assert r.ks_pvalue > 0.01
    # DKW: P(sup_alpha |ECP - F| > eps) <= 2 exp(-2 S eps^2) = 0.001 for eps = sqrt(log(2000) / (2 S));
    # F(alpha) = P(f < alpha) of f in {0, 1/L, .., 1} is within 1 / (L + 1) of alpha
    bound = np.sqrt(np.log(2 / 0.001) / (2 * S)) + 1 / (L + 1)
    assert r.max_deviation <= bound
    assert r.passes(level=0.001) and np.isclose(r.dkw_tolerance(0.001), bound)
    assert r.alpha.shape == r.ecp.shape == (101,) and r.references.shape == (S, 2) and r.num_draws == L
    assert r.ecp[0] == 0.0 and np.all(np.diff(r.ecp) >= 0)


@pytest.mark.parametrize(
    ("S", "kw"),
    [(1000, {"shift": 1.0}), (300, {"scale": 2.0}), (300, {"scale": 0.5})],
    ids=["biased", "over-dispersed", "under-dispersed"],
)
def test_miscalibrated_posteriors_fail(S: int, kw: dict) -> None:
    # a bias moves f less than a wrong spread does under random references: it needs more simulations
    r = tarp_coverage(*simulate(S, 1, **kw), seed=1)
    assert r.ks_pvalue < 1e-3


@pytest.mark.parametrize(("norm", "metric"), [(True, "euclidean"), (False, "euclidean"), (True, "manhattan")])
def test_agrees_with_the_tarp_package(norm: bool, metric: str) -> None:
    tarp = pytest.importorskip("tarp")
    draws, truths = simulate(200, 2)
    unit = np.random.default_rng(5).uniform(size=(200, 2))
    low, high = truths.min(axis=0), truths.max(axis=0)
    # the package takes references in the coordinates it measures distances in (the unit box when
    # norm=True); ours are in parameter space and go through the same normalisation
    ref_pkg = unit if norm else low + unit * (high - low)
    ecp_pkg, alpha_pkg = tarp.get_tarp_coverage(
        np.swapaxes(draws, 0, 1).copy(), truths.copy(), references=ref_pkg, metric=metric, norm=norm, num_alpha_bins=25
    )
    r = tarp_coverage(draws, truths, references=low + unit * (high - low), metric=metric, norm=norm, alpha=alpha_pkg)
    # Both count the same strict comparisons of the same distances (the package's 1e-10 in the
    # normalisation only rescales them by 1 + O(1e-10)), so ECP(alpha_k) = #{f < alpha_k} / S agrees
    # exactly; the package's cumulative sum of histogram densities adds round-off only. Its last point
    # is 1 (numpy's last histogram bin is closed): ours is #{f < max f} / S there.
    np.testing.assert_allclose(r.ecp[:-1], ecp_pkg[:-1], rtol=0, atol=1e-12)
    assert np.isclose(ecp_pkg[-1], 1.0)
    assert r.ecp[-1] == np.mean(r.coverage < r.coverage.max())


def test_dict_input_and_bootstrap() -> None:
    draws, truths = simulate(100, 3)
    r = tarp_coverage(draws, truths, bootstrap=True, num_bootstrap=50)
    rd = tarp_coverage({"b": draws[..., 1:], "a": draws[..., 0]}, {"a": truths[:, 0], "b": truths[:, 1:]})
    assert rd.names == ["a", "b[0]"]  # columns in the order of the truths' keys
    np.testing.assert_array_equal(rd.ecp, r.ecp)
    assert r.ecp_bootstrap.shape == (50, 101)
    # the bootstrap mean of ECP(alpha) has sd ecp_std / sqrt(50) around ECP(alpha); 5 sd at each point
    assert np.all(np.abs(r.ecp_mean - r.ecp) <= 5 * r.ecp_std / np.sqrt(50) + 1e-12)


def test_bad_input_raises() -> None:
    draws, truths = simulate(20, 4)
    with pytest.raises(ArgumentValueError, match=r"draws \(20, 200, 2\) and truths \(20, 3\)"):
        tarp_coverage(draws, np.zeros((20, 3)))
    with pytest.raises(ArgumentValueError, match=r"draws \(200, 20, 2\)"):
        tarp_coverage(np.swapaxes(draws, 0, 1), truths)  # the tarp package's order
    with pytest.raises(ArgumentValueError, match="L >= 1"):
        tarp_coverage(np.zeros((20, 0, 2)), truths)
    with pytest.raises(ArgumentValueError, match=r"references must be \[S, D\]"):
        tarp_coverage(draws, truths, references=np.zeros((3, 2)))
    with pytest.raises(ArgumentValueError, match="metric"):
        tarp_coverage(draws, truths, metric="cosine")
    with pytest.raises(MissingDrawsError, match="'b'"):
        tarp_coverage({"a": draws[..., 0]}, {"a": truths[:, 0], "b": truths[:, 1]})
    assert issubclass(ArgumentValueError, ppl.PPLError) and issubclass(MissingDrawsError, ppl.PPLError)


def test_plot_returns_axes() -> None:
    import matplotlib.pyplot as plt

    r = tarp_coverage(*simulate(50, 5), bootstrap=True, num_bootstrap=10)
    ax = r.plot()
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # diagonal, ECP; 1 and 2 sd bands
    plt.close("all")
