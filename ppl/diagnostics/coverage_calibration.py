"""TARP coverage: Lemos, Coogan, Hezaveh, Perreault-Levasseur (2023), "Sampling-Based Accuracy Testing of
Posterior Estimators for General Inference" (ICML).

For simulations ``s = 1..S`` with true parameters ``theta_s`` (``[D]``) and
``L`` posterior draws ``x_s^(l)``, pick a reference point ``r_s``
independently of the draws (uniform in the bounding box of the truths) and
count the draws closer to it than the truth:

    f_s = #{l : d(x_s^(l), r_s) < d(theta_s, r_s)} / L.

``f_s < alpha`` says the truth lies in the ball around ``r_s`` holding the
fraction ``alpha`` of the posterior draws: a credible region of level
``alpha``. The expected coverage probability

    ECP(alpha) = #{s : f_s < alpha} / S

equals ``alpha`` for every ``alpha`` when the estimator is calibrated, and
TARP's coverage is necessary and sufficient for calibration over random
references (Lemos et al., theorem 3). Under calibration the truth and the
draws are exchangeable, so the number ``k_s = L f_s`` of closer draws is
uniform on ``{0..L}`` and ``(k_s + U_s) / (L + 1)`` with ``U_s ~ U(0, 1)``
(ties broken at random) is exactly Uniform(0, 1): its Kolmogorov-Smirnov
p-value is the test statistic to use (``ks_pvalue``).

Conventions: ``draws`` are ``[S, L, D]`` (simulations first, as in
:func:`~ppl.diagnostics.sbc_ranks`); the ``tarp`` package takes
``samples`` as ``[L, S, D]`` (``np.swapaxes(draws, 0, 1)``). With
``norm=True`` every dimension is mapped by ``(v - low) / (high - low)``,
``low``/``high`` the truths' minimum and maximum, before distances are taken
(as the ``tarp`` package does, without its ``1e-10`` in the denominator);
``norm="draws"`` uses the draws' range. ``references`` are points in
parameter space (the coordinates of the truths), mapped the same way; drawn
references are uniform in the truths' bounding box whether or not ``norm``
is set (the ``tarp`` package draws them in the unit cube, which is the same
box when ``norm=True``). Because the box depends on all truths, the
references are not quite independent of ``theta_s``: an ``O(1/S)`` effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ppl.diagnostics.rank_calibration import component_names
from ppl.errors import ArgumentValueError, MissingDrawsError


def _columns(draws: Any, truths: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(draws [S, L, D], truths [S, D], names)``; dicts are flattened in the order of ``truths``' keys."""
    if isinstance(truths, Mapping):
        if not isinstance(draws, Mapping):
            raise ArgumentValueError(
                f"tarp_coverage: truths is a dict, so draws must be one, got {type(draws).__name__}"
            )
        cols_t, cols_d, names = [], [], []
        for name, t in truths.items():
            if name not in draws:
                raise MissingDrawsError(f"tarp_coverage: no draws for {name!r}; draws has {', '.join(map(str, draws))}")
            t, d = np.asarray(t, np.float64), np.asarray(draws[name], np.float64)
            if t.ndim < 1 or d.ndim != t.ndim + 1 or d.shape[:1] + d.shape[2:] != t.shape:
                raise ArgumentValueError(
                    f"tarp_coverage: draws[{name!r}] must be [S, L, *{t.shape[1:]}] for truths[{name!r}] "
                    f"of shape {t.shape}; got {d.shape}"
                )
            cols_t.append(t.reshape(len(t), -1))
            cols_d.append(d.reshape(*d.shape[:2], -1))
            names += component_names(str(name), t.shape[1:])
        return np.concatenate(cols_d, axis=-1), np.concatenate(cols_t, axis=-1), names
    d, t = np.asarray(draws, np.float64), np.asarray(truths, np.float64)
    if t.ndim == 1 and d.ndim == 2:
        d, t = d[..., None], t[:, None]
    if d.ndim != 3 or t.ndim != 2 or d.shape[0] != t.shape[0] or d.shape[2] != t.shape[1]:
        raise ArgumentValueError(
            f"tarp_coverage: draws must be [S, L, D] and truths [S, D] (simulations first); "
            f"got draws {np.shape(draws)} and truths {np.shape(truths)}"
        )
    return d, t, [f"theta[{i}]" for i in range(t.shape[1])]


def _distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "euclidean":
        return np.sqrt(np.sum((b - a) ** 2, axis=-1))
    return np.sum(np.abs(b - a), axis=-1)


@dataclass
class TARPResult:
    """TARP's expected coverage ``ecp`` on the credibility grid ``alpha``.

    ``coverage`` is ``f_s`` per simulation, ``references`` the reference
    points (parameter space, ``[S, D]``), ``names`` the ``D`` columns;
    ``ecp_bootstrap`` ``[num_bootstrap, len(alpha)]`` holds the ECP of
    simulations resampled with replacement (``None`` without bootstrap).
    """

    alpha: np.ndarray
    ecp: np.ndarray
    coverage: np.ndarray
    ks_pvalue: float
    references: np.ndarray
    num_draws: int
    names: list[str]
    ecp_bootstrap: np.ndarray | None = None

    @property
    def num_simulations(self) -> int:
        return len(self.coverage)

    @property
    def ecp_mean(self) -> np.ndarray | None:
        return None if self.ecp_bootstrap is None else self.ecp_bootstrap.mean(axis=0)

    @property
    def ecp_std(self) -> np.ndarray | None:
        return None if self.ecp_bootstrap is None else self.ecp_bootstrap.std(axis=0)

    @property
    def max_deviation(self) -> float:
        """``max_alpha |ECP(alpha) - alpha|`` over the grid."""
        return float(np.max(np.abs(self.ecp - self.alpha)))

    def dkw_tolerance(self, level: float = 0.01) -> float:
        """Deviation exceeded with probability at most ``level`` under calibration.

        DKW: ``P(sup |ECP - F| > eps) <= 2 exp(-2 S eps^2)``, so ``eps =
        sqrt(log(2 / level) / (2 S))``; ``F(alpha) = P(f < alpha)`` of the
        discrete ``f`` differs from ``alpha`` by at most ``1 / (L + 1)``.
        """
        return float(np.sqrt(np.log(2 / level) / (2 * self.num_simulations)) + 1 / (self.num_draws + 1))

    def passes(self, tolerance: float | None = None, *, level: float = 0.01) -> bool:
        """``max_deviation <= tolerance`` (default: :meth:`dkw_tolerance` at ``level``)."""
        return self.max_deviation <= (self.dkw_tolerance(level) if tolerance is None else tolerance)

    def plot(self, ax: Any = None) -> Any:
        """ECP against credibility with the diagonal: :func:`~ppl.diagnostics.plot_tarp`."""
        from ppl.diagnostics.calibration_plots import plot_tarp

        return plot_tarp(self, ax=ax)


def tarp_coverage(
    draws: Any,
    truths: Any,
    *,
    references: Any = None,
    metric: str = "euclidean",
    norm: bool | str = True,
    alpha: Any = None,
    bootstrap: bool = False,
    num_bootstrap: int = 100,
    seed: int = 0,
) -> TARPResult:
    """TARP expected coverage of ``draws [S, L, D]`` for ``truths [S, D]`` (module docstring).

    Dicts ``{name: [S, L, ...]}`` / ``{name: [S, ...]}`` are accepted too,
    flattened into columns in the order of ``truths``' keys (each name's
    trailing shape row-major). ``metric``: ``"euclidean"`` or
    ``"manhattan"``; ``norm``: ``True``/``"truths"``, ``"draws"`` or
    ``False``; ``alpha``: the credibility grid (default 101 points on
    ``[0, 1]``); ``references`` ``[S, D]`` in parameter space (default:
    uniform in the truths' box, numpy seed ``seed``); ``bootstrap``: also
    the ECP of ``num_bootstrap`` resamples of the simulations.
    """
    x, t, names = _columns(draws, truths)
    S, L, D = x.shape
    if L < 1:
        raise ArgumentValueError(f"tarp_coverage: need L >= 1 draws per simulation, got draws of shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t))):
        raise ArgumentValueError(f"tarp_coverage: draws {x.shape} or truths {t.shape} hold non-finite values")
    if metric not in ("euclidean", "manhattan"):
        raise ArgumentValueError(f"tarp_coverage: metric must be 'euclidean' or 'manhattan', got {metric!r}")
    if norm not in (True, False, "truths", "draws"):
        raise ArgumentValueError(f"tarp_coverage: norm must be True, False, 'truths' or 'draws', got {norm!r}")
    rng = np.random.default_rng(seed)
    low, high = t.min(axis=0), t.max(axis=0)
    if references is None:
        ref = low + rng.uniform(size=(S, D)) * (high - low)
    else:
        ref = np.asarray(references, np.float64)
        if ref.shape != (S, D):
            raise ArgumentValueError(f"tarp_coverage: references must be [S, D] = {(S, D)}, got {ref.shape}")
    if norm:
        if norm == "draws":
            low, high = x.min(axis=(0, 1)), x.max(axis=(0, 1))
        scale = np.where(high > low, high - low, 1.0)
        x, t, r = (x - low) / scale, (t - low) / scale, (ref - low) / scale
    else:
        r = ref
    d_draws = _distance(x, r[:, None, :], metric)  # [S, L]
    d_truth = _distance(t, r, metric)  # [S]
    closer = np.sum(d_draws < d_truth[:, None], axis=1)
    ties = np.sum(d_draws == d_truth[:, None], axis=1)
    f = closer / L
    u = (closer + rng.integers(0, ties + 1) + rng.uniform(size=S)) / (L + 1)  # exactly U(0, 1) if calibrated
    grid = np.linspace(0.0, 1.0, 101) if alpha is None else np.asarray(alpha, np.float64)
    ecp = np.mean(f[:, None] < grid[None, :], axis=0)
    boot = None
    if bootstrap:
        idx = rng.integers(0, S, size=(num_bootstrap, S))
        boot = np.stack([np.mean(f[i][:, None] < grid[None, :], axis=0) for i in idx])
    ks = float(stats.kstest(u, "uniform").pvalue)
    return TARPResult(grid, ecp, f, ks, ref, L, names, boot)
