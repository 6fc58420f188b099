"""Convergence diagnostics for MCMC draws shaped ``(chain, draw, ...)``.

The estimators of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat", as
ArviZ and Stan compute them:

* ``ess_bulk``: ESS of the rank-normalised split chains,
  ``z = Phi^{-1}((rank - 3/8) / (S + 1/4))``;
* ``ess_tail``: the smaller ESS of the indicators ``x <= q05`` and
  ``x <= q95`` over split chains;
* ``ess_mean``: ESS of the raw split chains (the ESS that goes with the
  MCSE of the mean);
* ``rhat``: the larger split R-hat of the rank-normalised draws and of the
  rank-normalised folded draws ``|x - median|``;
* ``mcse_mean = sd / sqrt(ess_mean)``.

The autocorrelation-based ESS itself (Geyer's initial monotone sequence) and
the Gelman-Rubin statistic are numpyro's (``numpyro.diagnostics``); this
module adds splitting, rank normalisation and folding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpyro.diagnostics import effective_sample_size, gelman_rubin
from scipy.special import ndtri

from ppl.errors import ArgumentValueError
from ppl.errors import ConvergenceWarning as ConvergenceWarning  # defined in ppl.errors; old import path kept


def _as_draws(x: Any, for_ranks: bool = False) -> np.ndarray:
    """``x`` as a float64 array; ``for_ranks`` keeps float32 (ranks are the same, and sorting it is faster)."""
    a = np.asarray(x)
    a = a if for_ranks and a.dtype == np.float32 else a.astype(np.float64)
    if a.ndim < 2:
        raise ArgumentValueError(f"draws must be shaped (chain, draw, ...), got shape {a.shape}")
    return a


def split_chains(x: np.ndarray) -> np.ndarray:
    """Each chain cut in two halves (a middle draw of an odd chain is dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks 1..n down each column, tied values given their average rank (vectorised over columns).

    The columns are sorted as contiguous rows with numpy's default (SIMD
    quicksort) kind; a tied run gets the mean of its positions whatever order
    the sort leaves it in, so a stable sort is not needed (about 2.5x faster
    than a stable sort down axis 0). Runs of ties are handled only in the
    columns that have them. The ranks feed every MCMC run's convergence check.
    """
    rows = np.ascontiguousarray(flat.T)
    n = rows.shape[1]
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    tied = ordered[:, 1:] == ordered[:, :-1]  # position j + 1 continues a run of ties
    ranks = np.broadcast_to(np.arange(1.0, n + 1.0), rows.shape)
    if tied.any():
        ranks = ranks.copy()
        for i in np.flatnonzero(tied.any(axis=1)):
            starts = np.flatnonzero(np.concatenate([[True], ~tied[i]]))
            ends = np.append(starts[1:], n)  # exclusive
            ranks[i] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    out = np.empty(rows.shape, dtype=np.float64)
    np.put_along_axis(out, order, ranks, axis=1)
    return out.T


def z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalise ``x`` (all chains and draws pooled, per parameter): ``Phi^-1((r - 3/8) / (n + 1/4))``.

    Average ranks ``r`` are multiples of 1/2 in ``[1, n]``, so ``Phi^-1`` is
    evaluated once per possible rank (``2n - 1`` values) and looked up.
    """
    shape = x.shape
    flat = x.reshape(shape[0] * shape[1], -1)
    n = flat.shape[0]
    ranks = _average_ranks(flat)
    table = ndtri((np.arange(2, 2 * n + 1) / 2.0 - 0.375) / (n + 0.25))
    return table[(2.0 * ranks).astype(np.int64) - 2].reshape(shape)


def _ess(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    const = np.all(x == x.reshape(-1, *x.shape[2:])[0], axis=(0, 1))
    ess = np.asarray(effective_sample_size(x), dtype=np.float64)
    return np.where(const, np.nan, ess)


def ess_bulk(x: Any) -> np.ndarray:
    """Bulk effective sample size (rank-normalised split chains)."""
    return _ess(z_scale(split_chains(_as_draws(x, for_ranks=True))))


def ess_mean(x: Any) -> np.ndarray:
    """Effective sample size for the mean (raw split chains)."""
    return _ess(split_chains(_as_draws(x)))


def ess_tail(x: Any) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the 5% and 95% quantile indicators."""
    a = split_chains(_as_draws(x))
    flat = a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])
    q05, q95 = np.quantile(flat, 0.05, axis=0), np.quantile(flat, 0.95, axis=0)
    lo = _ess(z_scale((a <= q05).astype(np.float64)))
    hi = _ess(z_scale((a <= q95).astype(np.float64)))
    return np.minimum(lo, hi)


def rhat(x: Any) -> np.ndarray:
    """Rank-normalised split R-hat (the larger of the bulk and folded versions)."""
    a = _as_draws(x, for_ranks=True)
    if a.shape[1] < 4:
        raise ArgumentValueError(
            f"R-hat needs at least 4 draws per chain (draws shaped (chain, draw, ...)), got shape {a.shape}"
        )
    med = np.median(a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]), axis=0)
    # the bulk and the folded draws ranked together: one sort, one ndtri, one R-hat call
    both = z_scale(split_chains(np.stack([a, np.abs(a - med)], axis=2)))
    r = np.asarray(gelman_rubin(both))
    return np.maximum(r[0], r[1])


def mcse_mean(x: Any) -> np.ndarray:
    """Monte Carlo standard error of the mean: ``sd / sqrt(ess_mean)``."""
    a = _as_draws(x)
    sd = a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]).std(axis=0, ddof=1)
    return sd / np.sqrt(ess_mean(a))


def hdi(x: Any, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The highest-density interval of the pooled draws: the narrowest interval holding ``prob`` of them.

    ``x`` is shaped ``(chain, draw, ...)``; returns ``(low, high)`` over its
    elements (ArviZ's ``az.hdi`` for unimodal draws).
    """
    if not 0.0 < float(prob) < 1.0:
        raise ArgumentValueError(f"hdi: prob must be in (0, 1), got {prob!r}")
    a = _as_draws(x)
    flat = np.sort(a.reshape(a.shape[0] * a.shape[1], -1), axis=0)
    n = flat.shape[0]
    m = min(n - 1, int(np.floor(prob * n)))
    widths = flat[m:] - flat[: n - m]
    start = np.argmin(widths, axis=0)
    cols = np.arange(flat.shape[1])
    return flat[start, cols].reshape(a.shape[2:]), flat[start + m, cols].reshape(a.shape[2:])


def summary(
    draws: dict[str, Any], quantiles: tuple[float, ...] = (0.05, 0.5, 0.95), hdi_prob: float = 0.9
) -> dict[str, dict[str, np.ndarray]]:
    """Per variable: mean, sd, HDI, quantiles, mcse_mean, ess_bulk, ess_tail, r_hat (arrays over its elements).

    ``ess_bulk``: rank-normalised bulk ESS and ``ess_tail``: the smaller ESS
    of the 5% and 95% quantile indicators (Vehtari et al. 2021, as ArviZ);
    ``r_hat``: rank-normalised split R-hat; ``hdi_low``/``hdi_high``: the
    ``hdi_prob`` highest-density interval.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, x in draws.items():
        a = _as_draws(x)
        if not np.issubdtype(np.asarray(x).dtype, np.number):
            continue
        flat = a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])
        row = {"mean": flat.mean(axis=0), "sd": flat.std(axis=0, ddof=1)}
        row["hdi_low"], row["hdi_high"] = hdi(a, hdi_prob) if a.shape[0] * a.shape[1] > 1 else (flat[0], flat[0])
        for q in quantiles:
            row[f"q{round(q * 100)}"] = np.quantile(flat, q, axis=0)
        enough = a.shape[1] >= 4
        nan = np.full(flat.shape[1:], np.nan)
        row["mcse_mean"] = mcse_mean(a) if enough else nan
        row["ess_bulk"] = ess_bulk(a) if enough else nan
        row["ess_tail"] = ess_tail(a) if enough else nan
        row["r_hat"] = rhat(a) if enough else nan
        out[name] = row
    return out


RHAT_THRESHOLD = 1.01
# A chain "sits apart" when its mean is this many within-chain sds from the median of the other chains' means.
APART_SDS = 3.0


def _label(name: str, idx: tuple) -> str:
    return name + ("[" + ",".join(map(str, idx)) + "]" if idx else "")


def chain_disagreement(
    draws: dict[str, Any], threshold: float = RHAT_THRESHOLD, apart: float = APART_SDS
) -> tuple[list[tuple[str, float]], dict[int, list[str]]]:
    """``(flagged, apart)``: where chains disagree.

    ``flagged``: ``(label, r_hat)`` of every scalar element (``theta[0]``...)
    whose split R-hat (:func:`rhat`) exceeds ``threshold``, worst first;
    ``apart``: ``chain -> labels`` of the flagged elements at which that
    chain's mean lies more than ``apart`` pooled within-chain sds
    (``sqrt(W)``, the root mean of the per-chain variances) from the median
    of the other chains' means. Needs at least 2 chains of 4 draws (else
    nothing is flagged); constant and non-numeric draws are skipped.
    """
    flagged: list[tuple[str, float]] = []
    far: dict[int, list[str]] = {}
    # Every element of every variable as one column of one (chain, draw, K) array per (chain, draw)
    # shape, so the ranks, the normal quantiles and R-hat are a few vectorised calls whatever the
    # number of variables (this check runs after every MCMC run).
    groups: dict[tuple[int, int], list[tuple[str, tuple, np.ndarray]]] = {}
    for name, x in draws.items():
        if not np.issubdtype(np.asarray(x).dtype, np.number) and np.asarray(x).dtype != np.bool_:
            continue
        a = _as_draws(x, for_ranks=True)
        if a.shape[0] < 2 or a.shape[1] < 4:
            continue
        groups.setdefault(a.shape[:2], []).append((name, a.shape[2:], a.reshape(*a.shape[:2], -1)))
    for parts in groups.values():
        a = np.concatenate([p[2] for p in parts], axis=2)
        labels = [_label(name, idx) for name, shape, _ in parts for idx in np.ndindex(*shape)]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.asarray(rhat(a))
        means = a.mean(axis=1, dtype=np.float64)  # (chain, K)
        within = np.sqrt(a.var(axis=1, ddof=1, dtype=np.float64).mean(axis=0))
        for k in np.flatnonzero(np.isfinite(r) & (r > threshold)):
            flagged.append((labels[k], float(r[k])))
            m = means[:, k]
            for c in range(a.shape[0]):
                if abs(m[c] - np.median(np.delete(m, c))) > apart * within[k]:
                    far.setdefault(c, []).append(labels[k])
    flagged.sort(key=lambda t: -t[1])
    return flagged, far


def disagreement_message(flagged: list, far: dict, limit: int = 8) -> str:
    """Text of a :class:`ConvergenceWarning` from :func:`chain_disagreement`'s output."""
    more = f", ... ({len(flagged) - limit} more)" if len(flagged) > limit else ""
    names = ", ".join(f"{n} ({r:.3f})" for n, r in flagged[:limit]) + more
    text = f"the chains disagree: split R-hat > {RHAT_THRESHOLD} at {names}"
    if far:
        parts = []
        for c in sorted(far):
            labels = far[c]
            parts.append(f"chain {c} (at {', '.join(labels[:4])}{', ...' if len(labels) > 4 else ''})")
        text += (
            f"; chain(s) {sorted(far)} sit apart from the others (mean more than {APART_SDS:g} within-chain sds "
            f"from the other chains' median): {'; '.join(parts)}"
        )
    return text + (
        ". The chains may be stuck in different modes or not yet mixed: run longer (more warm-up and draws), "
        "reparameterise, give better init values, or check the posterior for multimodality"
    )


def summary_frame(table: dict[str, dict[str, np.ndarray]]) -> Any:
    """The summary as a ``pandas.DataFrame``, one row per scalar element (``theta[0]``...)."""
    import pandas as pd

    rows, labels = [], []
    for name, stats in table.items():
        for idx in np.ndindex(*np.shape(stats["mean"])):
            labels.append(_label(name, idx))
            rows.append({c: float(np.asarray(v)[idx]) for c, v in stats.items()})
    return pd.DataFrame(rows, index=labels)


def format_summary(table: dict[str, dict[str, np.ndarray]], max_rows: int = 60) -> str:
    """A fixed-width text table, one row per scalar element (``theta[0]``...)."""
    cols = None
    rows = []
    for name, stats in table.items():
        if cols is None:
            cols = list(stats)
        shape = np.shape(stats["mean"])
        for idx in np.ndindex(*shape):
            label = name + ("[" + ",".join(map(str, idx)) + "]" if idx else "")
            rows.append([label] + [float(np.asarray(stats[c])[idx]) for c in cols])
    if cols is None:
        return "(no draws)"
    more = len(rows) - max_rows
    rows = rows[:max_rows]
    width = max([len(r[0]) for r in rows] + [4])
    header = " " * width + "".join(f"{c:>10}" for c in cols)
    lines = [header]
    for r in rows:
        cells = []
        for c, v in zip(cols, r[1:]):
            if c.startswith("ess"):
                cells.append(f"{v:>10.0f}" if np.isfinite(v) else f"{'nan':>10}")
            elif c == "r_hat":
                cells.append(f"{v:>10.3f}")
            else:
                cells.append(f"{v:>10.3g}")
        lines.append(f"{r[0]:<{width}}" + "".join(cells))
    if more > 0:
        lines.append(f"... ({more} more rows)")
    return "\n".join(lines)
