"""Plots for calibration checks: SBC rank histograms, ECDF differences, TARP coverage.

matplotlib is imported inside each function, so ``ppl.diagnostics`` does not
need it. Every function draws on ``ax`` (a new figure when ``None``) and
returns the Axes it drew on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from ppl.diagnostics.uniformity import rank_bins
from ppl.errors import ArgumentValueError

if TYPE_CHECKING:
    from ppl.diagnostics.coverage_calibration import TARPResult
    from ppl.diagnostics.rank_calibration import SBCResult


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def plot_rank_histogram(
    result: SBCResult, ax: Any = None, *, parameter: str | None = None, bins: int | None = None, level: float = 0.99
) -> Any:
    """Histogram of one component's ranks on the chi-square test's bins.

    The shaded region is the central ``level`` interval of each bin's count
    under uniformity, ``Binomial(S, p_b)`` with ``p_b`` the bin's share of
    the ``L + 1`` rank values; the line is the expected count ``S p_b``.
    ``parameter`` may be omitted when the result has one component.
    """
    if parameter is None:
        if len(result.ranks) != 1:
            raise ArgumentValueError(
                f"plot_rank_histogram: pass parameter=, one of {', '.join(result.ranks)} (one histogram per Axes)"
            )
        parameter = next(iter(result.ranks))
    if parameter not in result.ranks:
        raise ArgumentValueError(f"plot_rank_histogram: no component {parameter!r}; have {', '.join(result.ranks)}")
    ax = _axes(ax)
    S, L = result.num_simulations, result.num_draws
    bin_of_rank, p = rank_bins(S, L, bins)
    starts = np.searchsorted(bin_of_rank, np.arange(len(p)))
    widths = p * (L + 1)
    counts = np.bincount(bin_of_rank[result.ranks[parameter]], minlength=len(p))
    lo = stats.binom.ppf((1 - level) / 2, S, p)
    hi = stats.binom.ppf((1 + level) / 2, S, p)
    edges = np.append(starts, L + 1)
    ax.fill_between(
        edges, np.append(lo, lo[-1]), np.append(hi, hi[-1]), step="post", color="0.85", label=f"{level:.0%}"
    )
    ax.bar(starts, counts, width=widths, align="edge", edgecolor="white", color="C0")
    ax.stairs(S * p, edges, color="0.4", linestyle="--")
    ax.set_xlim(0, L + 1)
    ax.set_xlabel(f"rank of {parameter} among {L} draws")
    ax.set_ylabel("simulations")
    return ax


def plot_ecdf_difference(
    result: SBCResult, ax: Any = None, *, parameters: Sequence[str] | None = None, alpha: float = 0.05
) -> Any:
    """``F_hat(z) - z`` of the fractional ranks, one line per component, with the simultaneous ``1 - alpha`` band.

    The band (Säilynoja et al. 2022, :func:`~ppl.diagnostics.ecdf_band`) holds
    the whole curve of a uniform sample with probability ``1 - alpha``; it is
    the same for every component (it depends on ``S`` and ``L`` only).
    """
    ax = _axes(ax)
    band = result.ecdf_band(alpha)
    z = np.concatenate([[0.0], band.z, [1.0]])
    ax.fill_between(band.z, band.lower, band.upper, step="mid", color="0.85", label=f"{1 - alpha:.0%} band")
    for name in parameters or list(result.ranks):
        diff = np.concatenate([[0.0], result.ecdf(name, band) - band.z, [0.0]])
        ax.step(z, diff, where="mid", label=name)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fractional rank z")
    ax.set_ylabel("ECDF difference F(z) - z")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_tarp(result: TARPResult, ax: Any = None) -> Any:
    """TARP's expected coverage against credibility, the diagonal, and +-1, 2 bootstrap sd bands if computed."""
    ax = _axes(ax)
    if result.ecp_bootstrap is not None:
        mean, sd = result.ecp_mean, result.ecp_std
        for k, shade in ((2, "0.9"), (1, "0.75")):
            ax.fill_between(result.alpha, mean - k * sd, mean + k * sd, color=shade, label=f"{k} sd (bootstrap)")
    ax.plot([0, 1], [0, 1], color="0.4", linestyle="--", label="calibrated")
    ax.plot(result.alpha, result.ecp, color="C0", label="TARP")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage")
    ax.legend(loc="upper left", fontsize="small")
    return ax
