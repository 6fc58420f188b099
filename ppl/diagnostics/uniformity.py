"""Uniformity tests for SBC ranks in ``{0, ..., L}``: chi-square on bins, simultaneous ECDF band.

* Chi-square on ``B`` bins of contiguous ranks (:func:`rank_bins`): ``B =
  min(20, L + 1, S // 5)`` so that every expected count is at least 5,
  lowered to a divisor of ``L + 1`` when one lies in ``[B/2, B]`` so that the
  bins hold equally many rank values; otherwise bin sizes differ by one and
  the expected counts use the exact bin probabilities. The statistic
  ``sum_b (n_b - S p_b)^2 / (S p_b)`` is compared with ``chi^2_{B-1}``.
* The simultaneous ECDF band of Säilynoja, Bürkner and Vehtari (2022),
  "Graphical test for discrete uniformity and its applications in
  goodness-of-fit evaluation and multiple sample comparison". At the lattice
  points ``z_j = k_j / (L + 1)`` the count ``C_j = #{s : r_s < k_j}`` of
  uniform discrete ranks is exactly ``Binomial(S, z_j)``, and the vector
  ``(C_j)`` is distributed as the ECDF counts of ``S`` continuous uniforms
  (``r < k`` iff ``r + V < k`` for ``V ~ U[0, 1)``). Each ``C_j`` has the
  two-sided pointwise p-value ``p_j = min(1, 2 min(P(C <= C_j), P(C >= C_j)))``.
  The pointwise level ``gamma`` is the ``alpha`` quantile of ``min_j p_j``
  under uniformity, found by simulating uniform samples (fixed seed): the
  band at ``z_j`` (the counts with ``p_j >= gamma``) then holds the whole
  ECDF with probability ``1 - alpha``. The ECDF test's p-value is the Monte
  Carlo tail probability of the observed ``min_j p_j``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ppl.errors import ArgumentValueError

__all__ = ["ECDFBand", "chi2_pvalue", "ecdf_band", "ecdf_counts", "ecdf_pvalue", "rank_bins"]

# ----------------------------------------------------------- ECDF band


@dataclass(frozen=True)
class ECDFBand:
    """Simultaneous ``1 - alpha`` band for ``F_hat(z) - z`` at the grid ``z`` (``S`` ranks with ``L`` draws)."""

    z: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    alpha: float
    num_simulations: int

    def contains(self, ecdf: np.ndarray) -> bool:
        """Whether ECDF values ``F_hat(z)`` at ``self.z`` stay inside the band."""
        diff = np.asarray(ecdf) - self.z
        tol = 0.5 / self.num_simulations  # ECDF values are multiples of 1/S
        return bool(np.all(diff >= self.lower - tol) and np.all(diff <= self.upper + tol))


def _grid(L: int, grid: int | None) -> np.ndarray:
    """Lattice points ``k / (L + 1)``: all ``k = 1..L``, or ``grid`` of them evenly spread."""
    n = min(L, 100 if grid is None else int(grid))
    if n < 1:
        raise ArgumentValueError(f"ecdf_band: grid must be a positive int, got {grid!r}")
    return np.unique(np.round(np.linspace(1, L, n)).astype(int))


def _pointwise_p(counts: np.ndarray, S: int, z: np.ndarray) -> np.ndarray:
    """Two-sided binomial p-value ``min(1, 2 min(P(C <= c), P(C >= c)))``, ``C ~ Binomial(S, z)``."""
    return np.minimum(1.0, 2.0 * np.minimum(stats.binom.cdf(counts, S, z), stats.binom.sf(counts - 1, S, z)))


@functools.lru_cache(maxsize=32)
def _null_min_p(S: int, k: tuple, L: int, n_mc: int, seed: int) -> np.ndarray:
    """Sorted minimum pointwise p-values of ``n_mc`` uniform samples of size ``S`` (counts below ``k / (L+1)``)."""
    z = np.asarray(k) / (L + 1)
    cells = np.diff(np.concatenate([[0.0], z, [1.0]]))
    counts = np.cumsum(np.random.default_rng(seed).multinomial(S, cells, size=n_mc), axis=1)[:, :-1]
    return np.sort(np.min(_pointwise_p(counts, S, z), axis=1))


def ecdf_band(
    S: int, L: int, alpha: float = 0.05, grid: int | None = None, *, n_mc: int = 10_000, seed: int = 0
) -> ECDFBand:
    """Säilynoja et al.'s simultaneous band for the ECDF difference of ``S`` ranks in ``{0..L}``.

    Grid: ``z_j = k_j / (L + 1)`` for ``k_j = 1..L`` (``grid`` (default 100)
    evenly spread ``k_j`` when ``L`` is larger). ``gamma`` is the ``alpha``
    quantile of ``min_j p_j`` over ``n_mc`` simulated uniform samples (numpy
    seed ``seed``), where ``p_j`` is the pointwise two-sided binomial p-value
    of ``C_j ~ Binomial(S, z_j)``; the band at ``z_j`` holds the counts with
    ``p_j >= gamma``, as ``c / S - z_j``.
    """
    if S < 1 or L < 1 or not 0 < alpha < 1:
        raise ArgumentValueError(f"ecdf_band: need S >= 1, L >= 1 and 0 < alpha < 1; got S={S}, L={L}, alpha={alpha}")
    k = _grid(L, grid)
    z = k / (L + 1)
    null = _null_min_p(S, tuple(k.tolist()), L, n_mc, seed)
    gamma = float(null[int(np.floor(alpha * n_mc))])  # P(min p < gamma) <= alpha
    c = np.arange(S + 1)[:, None]
    inside = _pointwise_p(c, S, z[None, :]) >= gamma
    lower = np.argmax(inside, axis=0) / S - z
    upper = (S - np.argmax(inside[::-1], axis=0)) / S - z
    return ECDFBand(z, lower, upper, gamma, alpha, S)


def ecdf_counts(ranks: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``C_j = #{s : r_s < k_j}``: ``S`` times the ECDF of the fractional ranks at ``z_j = k_j / (L + 1)``."""
    return np.sum(np.asarray(ranks)[:, None] < k[None, :], axis=0)


def ecdf_pvalue(ranks: np.ndarray, L: int, grid: int | None = None, *, n_mc: int = 10_000, seed: int = 0) -> float:
    """Monte Carlo p-value ``(1 + #{null min p <= observed min p}) / (n_mc + 1)`` of the ECDF test."""
    S, k = len(ranks), _grid(L, grid)
    observed = np.min(_pointwise_p(ecdf_counts(ranks, k), S, k / (L + 1)))
    null = _null_min_p(S, tuple(k.tolist()), L, n_mc, seed)
    return float((1 + np.searchsorted(null, observed, side="right")) / (n_mc + 1))


# ------------------------------------------------------------- chi-square


def rank_bins(S: int, L: int, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(bin_of_rank [L+1], probability [B])`` for the chi-square test (module docstring)."""
    top = min(20, L + 1, S // 5) if bins is None else int(bins)
    if bins is None:
        divisors = [b for b in range(max(1, (top + 1) // 2), top + 1) if (L + 1) % b == 0]
        top = max(divisors) if divisors else top
    B = min(max(top, 1), L + 1)
    bin_of_rank = np.concatenate([np.full(len(g), i) for i, g in enumerate(np.array_split(np.arange(L + 1), B))])
    return bin_of_rank, np.bincount(bin_of_rank, minlength=B) / (L + 1)


def chi2_pvalue(ranks: np.ndarray, L: int, bins: int | None = None) -> float:
    """Pearson chi-square p-value of uniformity of ranks on ``B`` bins (``B - 1`` degrees of freedom); NaN if ``B < 2``."""
    bin_of_rank, p = rank_bins(len(ranks), L, bins)
    if len(p) < 2:
        return float("nan")
    counts = np.bincount(bin_of_rank[np.asarray(ranks)], minlength=len(p))
    expected = len(ranks) * p
    return float(stats.chi2.sf(np.sum((counts - expected) ** 2 / expected), len(p) - 1))
