"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari, Gelman 2018).

Draw ``theta_s ~ p(theta)``, ``y_s ~ p(y | theta_s)`` (``s = 1..S``), run the
sampler on ``y_s`` and take ``L`` draws ``theta_s^(1..L)``. If the sampler is
exact, ``theta_s`` and its draws are exchangeable given ``y_s``, so the rank

    r_s = #{l : theta_s^(l) < theta_s}    (ties broken uniformly at random)

is uniform on ``{0, ..., L}`` for every scalar component. Departures have
shapes: a U-shaped rank histogram means an over-confident posterior, a hump
an over-dispersed one, a slope a biased one. MCMC draws must be (close to)
independent: thin them to about their effective sample size first, or the
ranks are not uniform even for a correct sampler (Talts et al., section 5).

Uniformity is checked per component by a chi-square test on rank bins and
by the simultaneous ECDF band of Säilynoja, Bürkner and Vehtari (2022)
(:mod:`ppl.diagnostics.uniformity` has the details); :meth:`SBCResult.passes`
applies a Bonferroni correction over both tests of every component.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ppl.core.address import Address, format_address, is_prefix, normalize
from ppl.core.choicemap import ChoiceMap
from ppl.core.selection import select
from ppl.diagnostics.uniformity import ECDFBand, chi2_pvalue, ecdf_band, ecdf_counts, ecdf_pvalue
from ppl.errors import ArgumentError, ArgumentValueError, MissingAddressError, MissingDrawsError

# ----------------------------------------------------------------- ranks


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def component_names(name: str, shape: tuple) -> list[str]:
    """``['theta[0]', 'theta[1]', ...]`` for the scalar components of a parameter (``[name]`` if scalar)."""
    if shape == ():
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


def _ranks(truths: np.ndarray, draws: np.ndarray, rng: np.random.Generator, what: str) -> np.ndarray:
    t, d = np.asarray(truths), np.asarray(draws)
    if t.ndim < 1 or d.ndim != t.ndim + 1 or d.shape[0] != t.shape[0] or d.shape[2:] != t.shape[1:]:
        raise ArgumentValueError(
            f"{what}: draws must be shaped [S, L, *truth shape] for truths shaped [S, ...]; "
            f"got truths {t.shape} and draws {d.shape}"
        )
    if d.shape[1] < 1:
        raise ArgumentValueError(f"{what}: need L >= 1 draws per simulation, got draws of shape {d.shape}")
    for arr, arg in ((t, "truths"), (d, "draws")):
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            raise ArgumentValueError(f"{what}: {arg} (shape {arr.shape}) hold non-finite values")
    less = np.sum(d < t[:, None], axis=1)
    ties = np.sum(d == t[:, None], axis=1)
    return less + rng.integers(0, ties + 1)


def sbc_ranks(
    truths: np.ndarray | Mapping[str, Any], draws: np.ndarray | Mapping[str, Any], *, rng: Any = 0
) -> np.ndarray | dict[str, np.ndarray]:
    """Ranks ``r = #{draws < truth} + U{0..#{draws == truth}}`` in ``{0, ..., L}``.

    ``truths`` ``[S, ...]`` and ``draws`` ``[S, L, ...]`` (simulations first),
    giving ranks ``[S, ...]``; or dicts ``{name: array}`` of those, giving
    ``{component: ranks [S]}`` with each parameter's trailing shape flattened
    into components named ``theta[1]`` (row-major). Ties are broken with the
    numpy Generator ``rng`` (or a Generator seeded with the int ``rng``).
    """
    gen = _rng(rng)
    if not isinstance(truths, Mapping):
        return _ranks(truths, draws, gen, "sbc_ranks")
    if not isinstance(draws, Mapping):
        raise ArgumentError(f"sbc_ranks: truths is a dict, so draws must be one too, got {type(draws).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, t in truths.items():
        if name not in draws:
            raise MissingDrawsError(f"sbc_ranks: no draws for {name!r}; draws has {', '.join(map(str, draws))}")
        r = _ranks(t, draws[name], gen, f"sbc_ranks[{name!r}]")
        for comp, col in zip(component_names(str(name), r.shape[1:]), r.reshape(r.shape[0], -1).T):
            out[comp] = col
    return out


# ----------------------------------------------------------------- result


@dataclass
class SBCResult:
    """Ranks ``{component: [S]}`` in ``{0..num_draws}`` and the simulated truths ``{component: [S]}``."""

    ranks: dict[str, np.ndarray]
    num_draws: int
    truths: dict[str, np.ndarray]

    @property
    def num_simulations(self) -> int:
        return len(next(iter(self.ranks.values())))

    def test(self, bins: int | None = None) -> dict[str, dict[str, float]]:
        """``{component: {"chi2": p, "ecdf": p}}``: p-values of the two uniformity tests."""
        return {
            c: {"chi2": chi2_pvalue(r, self.num_draws, bins), "ecdf": ecdf_pvalue(r, self.num_draws)}
            for c, r in self.ranks.items()
        }

    def passes(self, alpha: float = 0.01) -> bool:
        """No p-value below ``alpha / (2 m)`` (Bonferroni over both tests of all ``m`` components)."""
        pvals = [p for t in self.test().values() for p in t.values() if not np.isnan(p)]
        return all(p > alpha / (2 * len(self.ranks)) for p in pvals)

    def ecdf_band(self, alpha: float = 0.05) -> ECDFBand:
        return ecdf_band(self.num_simulations, self.num_draws, alpha)

    def ecdf(self, component: str, band: ECDFBand | None = None) -> np.ndarray:
        """``F_hat(z)`` at the band's grid: the fraction of ranks below ``z (L + 1)``."""
        z = (band or self.ecdf_band()).z
        k = np.round(z * (self.num_draws + 1)).astype(int)
        return ecdf_counts(self.ranks[component], k) / self.num_simulations

    def leaves_band(self, alpha: float = 0.05) -> dict[str, bool]:
        """``{component: whether its ECDF leaves the simultaneous 1 - alpha band}``."""
        band = self.ecdf_band(alpha)
        return {c: not band.contains(self.ecdf(c, band)) for c in self.ranks}

    def plot(self, kind: str = "hist", ax: Any = None, **kwargs: Any) -> Any:
        """``kind="hist"``: :func:`plot_rank_histogram`; ``"ecdf_diff"``: :func:`plot_ecdf_difference`."""
        from ppl.diagnostics import calibration_plots as cp

        plots = {"hist": cp.plot_rank_histogram, "ecdf_diff": cp.plot_ecdf_difference}
        if kind not in plots:
            raise ArgumentValueError(f"SBCResult.plot: kind must be 'hist' or 'ecdf_diff', got {kind!r}")
        return plots[kind](self, ax=ax, **kwargs)


# ------------------------------------------------------------ the loop


def _name(addr: Address) -> str:
    return "/".join(str(c) for c in addr)


def _thin(out: dict[Address, np.ndarray], n: int | None) -> dict[Address, np.ndarray]:
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        shapes = {format_address(a): v.shape for a, v in out.items()}
        raise ArgumentValueError(f"posterior_draws: draws have different leading lengths: {shapes}")
    L = lengths.pop() if lengths else 0
    if n is None or not out:
        return out
    if n > L:
        raise ArgumentValueError(f"posterior_draws: draws={n} asked for, but the result has only {L} draws")
    idx = np.round(np.linspace(0, L - 1, n)).astype(int)  # evenly spaced: thinning
    return {a: v[idx] for a, v in out.items()}


def posterior_draws(result: Any, key: Any = None, n: int | None = None) -> dict[Address, np.ndarray]:
    """``{address: draws [L, ...]}`` from a sampler's output.

    * a dict (nested, or keyed by address) or ``ChoiceMap`` of ``[L, ...]``
      arrays; ``n`` thins to ``n`` evenly spaced draws;
    * an :class:`~ppl.infer.MCMCResult`: chains flattened (``[chain * draw,
      ...]``), then thinned to ``n``; thin autocorrelated draws to about
      their ESS for SBC;
    * a :class:`~ppl.infer.ParticleCollection`: ``n`` (default: the number
      of particles) equally weighted draws resampled with ``key``.
    """
    if isinstance(result, Mapping):
        flat = ChoiceMap.from_dict(result).flat_dict()
        return _thin({a: np.asarray(v) for a, v in flat.items()}, n)
    from ppl.infer.mcmc.result import MCMCResult
    from ppl.infer.particles import ParticleCollection

    if isinstance(result, MCMCResult):
        out = {}
        for a in (*result.latent_addresses, *result.deterministic_addresses):
            v = np.asarray(result.samples[a])
            out[a] = v.reshape((-1, *v.shape[2:]))
        return _thin(out, n)
    if isinstance(result, ParticleCollection):
        if key is None:
            raise ArgumentError("posterior_draws: resampling a ParticleCollection needs a PRNG key")
        return {a: np.asarray(v) for a, v in result.sample(key, n).flat_dict().items()}
    raise ArgumentError(
        "posterior_draws: expected a dict or ChoiceMap of draws, an MCMCResult or a ParticleCollection, "
        f"got {type(result).__name__}"
    )


def _expand(addrs: Any, cm: ChoiceMap, arg: str) -> list[Address]:
    """The value addresses of ``cm`` at or under each address in ``addrs`` (a namespace selects its choices)."""
    addrs = [addrs] if isinstance(addrs, (str, int, tuple)) else list(addrs)
    out: list[Address] = []
    for a in map(normalize, addrs):
        hits = [k for k in cm.addresses() if is_prefix(a, k)]
        if not hits:
            raise MissingAddressError(
                f"sbc: {arg} names {format_address(a)}, which the model does not have; "
                f"its choices: {', '.join(format_address(k) for k in cm.addresses())}"
            )
        out += [k for k in hits if k not in out]
    return out


def sbc(
    key: Any,
    model: Any,
    args: tuple,
    infer: Callable[[Any, ChoiceMap], Any],
    *,
    observed: Sequence[Any],
    parameters: Sequence[Any] | None = None,
    simulations: int = 100,
    draws: int | None = None,
) -> SBCResult:
    """Run simulation-based calibration of ``infer`` on ``model``.

    For ``s = 1..simulations``: ``trace = model.simulate(key_s, args)``; the
    choices at (or under) the ``observed`` addresses form the dataset
    ``y_s``; ``infer(key_s', y_s)`` returns draws in any form
    :func:`posterior_draws` reads (``draws``: thin or resample to that many);
    the rank of each ``parameters`` choice (default: every unobserved
    choice) among its draws is recorded. Keys come from ``jax.random.split``
    of ``key``; ties are broken by a numpy Generator seeded from ``key``.
    """
    if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 1:
        raise ArgumentValueError(f"sbc: simulations must be a positive int, got {simulations!r}")
    if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int) or draws < 1):
        raise ArgumentValueError(f"sbc: draws must be None or an int >= 1 (L), got {draws!r}")
    k_loop, k_ties = jax.random.split(key)
    truths: dict[Address, list] = {}
    samples: dict[Address, list] = {}
    for s, k in enumerate(jax.random.split(k_loop, simulations)):
        k_sim, k_inf, k_draw = jax.random.split(k, 3)
        cm = model.simulate(k_sim, args).choices
        if s == 0:
            obs_addrs = _expand(observed, cm, "observed")
            if parameters is None:
                params = [a for a in cm.addresses() if a not in obs_addrs]
            else:
                params = _expand(parameters, cm, "parameters")
            if clash := [format_address(a) for a in params if a in obs_addrs]:
                raise ArgumentValueError(f"sbc: {', '.join(clash)} are both observed and parameters")
            if not params:
                raise ArgumentValueError("sbc: no parameters to check: every choice of the model is observed")
        got = posterior_draws(infer(k_inf, cm.filter(select(*obs_addrs))), k_draw, draws)
        for a in params:
            d = got.get(a, got.get((_name(a),)))
            if d is None:
                raise MissingDrawsError(
                    f"sbc: infer returned no draws for parameter {format_address(a)}; "
                    f"it returned {', '.join(format_address(b) for b in got) or '(nothing)'}"
                )
            t = np.asarray(cm[a])
            if d.shape[1:] != t.shape or len(d) < 1 or (samples.get(a) and len(samples[a][0]) != len(d)):
                raise ArgumentValueError(
                    f"sbc: draws of {format_address(a)} from infer have shape {d.shape}; expected [L, *{t.shape}] "
                    f"with L >= 1 and the same L in every simulation (simulation {s})"
                )
            truths.setdefault(a, []).append(t)
            samples.setdefault(a, []).append(d)
    rng = np.random.default_rng(np.asarray(jax.random.bits(k_ties, (4,))).tolist())
    names = {a: _name(a) for a in params}
    stacked_t = {names[a]: np.stack(v) for a, v in truths.items()}
    ranks = sbc_ranks(stacked_t, {names[a]: np.stack(v) for a, v in samples.items()}, rng=rng)
    flat_t = {
        c: col for n, t in stacked_t.items() for c, col in zip(component_names(n, t.shape[1:]), t.reshape(len(t), -1).T)
    }
    return SBCResult(ranks, len(samples[params[0]][0]), flat_t)
