"""The result of an MCMC run: draws, per-draw diagnostics, ArviZ export, summary."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np

from ppl.core import ChoiceMap, choices
from ppl.core.address import normalize
from ppl.diagnostics import format_summary, summary
from ppl.diagnostics.arviz import to_inference_data
from ppl.diagnostics.convergence import chain_disagreement, disagreement_message
from ppl.errors import AddressError, ConvergenceWarning, MissingDrawsError


def address_name(addr: tuple) -> str:
    """The key of an address in result dicts: ``'mu'``, or ``'sub/z'`` for ``('sub', 'z')``."""
    return "/".join(str(c) for c in addr)


class _ByAddress(dict):
    """``name -> array``, also indexable by address (``d['sub', 'z']`` is ``d['sub/z']``)."""

    def _key(self, key: Any) -> Any:
        if isinstance(key, str) and dict.__contains__(self, key):
            return key
        try:
            return address_name(normalize(key))
        except AddressError:  # not an address: looked up (and reported missing) as given
            return key

    def __getitem__(self, key: Any) -> Any:
        k = self._key(key)
        if not dict.__contains__(self, k):
            raise MissingDrawsError(f"no draws for {key!r}; available: {', '.join(self) or '(none)'}")
        return dict.__getitem__(self, k)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, self._key(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return dict.get(self, self._key(key), default)


class Samples(_ByAddress):
    """``name -> array`` of draws; also indexable by address (``s['sub', 'z']`` is ``s['sub/z']``).

    ``masks``: for choices made in some draws only (inside ``ppl.switch``,
    ``ppl.cond``, ``ppl.mixture``), ``name -> bool array`` (the draws' leading
    axes, then the mask's own shape), true where the choice was made; the
    values there are filled as :func:`fill_absent` says. Empty when every
    entry is present in every draw.
    """

    def __init__(self, *args: Any, masks: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.masks = _ByAddress(masks or {})


def fill_absent(value: Any, mask: Any) -> np.ndarray:
    """``value`` where ``mask`` (a prefix of its shape) is true; NaN elsewhere (0 / False for integer and bool dtypes)."""
    v = np.asarray(value)
    m = np.asarray(mask, bool)
    m = np.broadcast_to(m.reshape(m.shape + (1,) * (v.ndim - m.ndim)), v.shape)
    fill = np.nan if np.issubdtype(v.dtype, np.inexact) else 0
    return np.where(m, v, np.asarray(fill).astype(v.dtype))


def samples_from(cm: ChoiceMap, batch: tuple, out: Samples | None = None) -> Samples:
    """Add the entries of ``cm`` (leaves with one leading axis of ``prod(batch)`` draws) to ``out``, shaped ``batch + ...``.

    Masked entries (choices made in some draws only) keep their masks in
    ``out.masks`` and their values where present (:func:`fill_absent` elsewhere).
    """
    out = Samples() if out is None else out
    for a, v, m in cm.masked_items():
        name = address_name(a)
        v = np.asarray(v).reshape((*batch, *np.shape(v)[1:]))
        if m is None:
            out[name] = v
            continue
        m = np.asarray(m, bool).reshape((*batch, *np.shape(m)[1:]))
        out[name] = fill_absent(v, m)
        out.masks[name] = m
    return out


# Fewer draws per chain than this: split R-hat is too noisy to say chains disagree at 1.01, no warning.
MIN_DRAWS_FOR_RHAT = 100


class DivergenceWarning(UserWarning):
    """Some transitions after warm-up diverged: the draws may be biased."""


class SamplingWarning(UserWarning):
    """A run finished but its draws look unreliable (non-finite values, ...)."""


class MCMCResult:
    """Draws and diagnostics of an MCMC run.

    * ``samples``: ``name -> array [chain, draw, ...]`` of every latent choice
      (constrained space) and every ``ppl.deterministic`` site;
    * ``stats``: per-draw diagnostics ``name -> array [chain, draw]``:
      ``diverging``, ``acceptance_rate``, ``n_steps`` (gradient evaluations
      or updates), and for HMC/NUTS ``energy``, ``lp`` (log density in
      unconstrained space), ``tree_depth`` (NUTS);
    * ``step_size`` ``[chain]`` and ``inverse_mass_matrix`` ``[chain, ...]``
      after warm-up, and ``warmup_stats`` (``diverging``, ``acceptance_rate``,
      ``n_steps``, ``step_size`` per warm-up iteration, ``[chain, iteration]``)
      (gradient runners);
    * ``to_arviz()``, ``summary()``, ``print_summary()``, ``traces``;
    * ``infer_discrete(key)``: draws of the discrete choices a gradient
      runner summed out, added to every draw.
    """

    def __init__(
        self,
        algorithm: str,
        samples: Samples,
        stats: dict[str, np.ndarray],
        *,
        model: Any,
        args: tuple,
        observations: ChoiceMap,
        latent: tuple,
        deterministic: tuple,
        step_size: np.ndarray | None = None,
        inverse_mass_matrix: np.ndarray | None = None,
        warmup_stats: dict[str, np.ndarray] | None = None,
    ):
        self.algorithm = algorithm
        self.samples = samples
        self.stats = stats
        self.model = model
        self.args = args
        self.observations = observations
        self.latent_addresses = latent
        self.deterministic_addresses = deterministic
        self.step_size = step_size
        self.inverse_mass_matrix = inverse_mass_matrix
        self.warmup_stats = warmup_stats or {}
        self._traces = None

    # ----------------------------------------------------------- shapes
    @property
    def num_chains(self) -> int:
        return int(next(iter(self.stats.values())).shape[0])

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.stats.values())).shape[1])

    # ------------------------------------------------------ diagnostics
    @property
    def diverging(self) -> np.ndarray:
        """``[chain, draw]``: whether the transition to each draw diverged."""
        return self.stats["diverging"]

    @property
    def num_divergences(self) -> int:
        return int(np.sum(self.stats["diverging"]))

    @property
    def acceptance_rate(self) -> np.ndarray:
        return self.stats["acceptance_rate"]

    @property
    def num_steps(self) -> np.ndarray:
        return self.stats["n_steps"]

    @property
    def tree_depth(self) -> np.ndarray | None:
        return self.stats.get("tree_depth")

    def get_samples(self, group_by_chain: bool = True) -> Samples:
        """The draws, ``[chain, draw, ...]`` or pooled ``[chain * draw, ...]``."""
        if group_by_chain:
            return self.samples
        return Samples({k: v.reshape((-1, *v.shape[2:])) for k, v in self.samples.items()})

    def summary(self, hdi_prob: float = 0.9) -> dict[str, dict[str, np.ndarray]]:
        """Per variable: mean, sd, HDI, 5/50/95% quantiles, MCSE, bulk and tail ESS, R-hat.

        See :func:`ppl.diagnostics.summary` for which ESS and R-hat these are.
        """
        return summary(self.samples, hdi_prob=hdi_prob)

    def summary_frame(self, hdi_prob: float = 0.9) -> Any:
        """:meth:`summary` as a ``pandas.DataFrame``, one row per scalar element."""
        from ppl.diagnostics.convergence import summary_frame

        return summary_frame(self.summary(hdi_prob))

    def _repr_html_(self) -> str:
        """Jupyter: the header line and the summary table."""
        import html

        head = html.escape(self._summary_text().splitlines()[0])
        return f"<p><b>{head}</b></p>" + self.summary_frame().to_html(float_format=lambda v: f"{v:.3g}")

    def print_summary(self) -> None:
        print(self._summary_text())

    def _summary_text(self) -> str:
        text = format_summary(self.summary())
        n = self.num_divergences
        head = f"{self.algorithm}: {self.num_chains} chains x {self.num_draws} draws"
        if "diverging" in self.stats:
            head += f", {n} divergent transition{'s' if n != 1 else ''}"
        note = (
            "(hdi: 90% highest-density interval; ess: rank-normalised bulk and tail ESS; r_hat: rank-normalised split)"
        )
        return head + "\n" + text + "\n" + note

    def __repr__(self) -> str:
        names = ", ".join(self.samples)
        return (
            f"MCMCResult({self.algorithm}, chains={self.num_chains}, draws={self.num_draws}, "
            f"divergences={self.num_divergences}, samples: {names})"
        )

    def __str__(self) -> str:
        return self._summary_text()

    # ---------------------------------------------------------- export
    def to_arviz(self, posterior_predictive: dict[str, Any] | None = None, log_likelihood: bool = False) -> Any:
        """An ``arviz.InferenceData``: ``posterior`` (the samples), ``sample_stats``, ``observed_data``.

        ``posterior_predictive``: optional draws shaped ``[chain, draw, ...]``
        (``ppl.infer.predictive(key, model, args, result)``); only the
        observed addresses are kept, under the observations' names.
        ``log_likelihood=True`` adds the pointwise log likelihood of every
        observation under every draw (:func:`ppl.log_likelihood`), so
        ``az.loo`` and ``az.waic`` work on the result.
        """
        stats = {k: v for k, v in self.stats.items()}
        if self.step_size is not None:
            stats["step_size"] = np.broadcast_to(self.step_size[:, None], self.stats["diverging"].shape)
        observed = {address_name(a): np.asarray(v) for a, v in self.observations.flat_dict().items()} or None
        predictive = None
        if posterior_predictive is not None:
            predictive = {k: np.asarray(posterior_predictive[k]) for k in (observed or {}) if k in posterior_predictive}
        pointwise = None
        if log_likelihood:
            from ppl.infer.log_likelihood import log_likelihood as pointwise_log_likelihood

            pointwise = pointwise_log_likelihood(self.model, self.args, self.samples, self.observations)
        return to_inference_data(
            self.samples,
            sample_stats=stats,
            observed_data=observed,
            posterior_predictive=predictive or None,
            attrs={"inference_library": "ppl", "algorithm": self.algorithm},
            log_likelihood=pointwise,
        )

    # ---------------------------------------------------------- traces
    @property
    def traces(self) -> Any:
        """One batched trace per draw (leading axes ``[chain, draw]``), built on first use.

        Each is ``model.generate`` with the observations and the draw's latent
        choices as constraints, so scores and return values are available.
        """
        if self._traces is None:
            self._traces = _traces(self)
        return self._traces

    def infer_discrete(self, key: Any, sites: Any = None) -> MCMCResult:
        """This result with a draw of the discrete choices NUTS/HMC summed out added to every draw.

        See :func:`ppl.infer.infer_discrete` (one draw from ``p(z | draw,
        observations)`` per draw, so each pair is a joint posterior draw).
        """
        from ppl.infer.discrete import with_discrete

        return with_discrete(key, self, sites)

    def latent_choices(self) -> ChoiceMap:
        """The latent draws as a choice map with leading axes ``[chain, draw]``."""
        return choices({a: self.samples[address_name(a)] for a in self.latent_addresses})


def _traces(result: MCMCResult) -> Any:
    import jax.numpy as jnp

    latent = result.latent_choices()
    c, d = result.num_chains, result.num_draws
    flat = latent.map(lambda v: jnp.asarray(v).reshape((c * d, *v.shape[2:])))
    model, args, obs = result.model, result.args, result.observations

    @jax.jit
    def build(flat: ChoiceMap, obs: ChoiceMap) -> Any:
        return jax.vmap(lambda cm: model.generate(jax.random.key(0), obs | cm, args)[0])(flat)

    tr = build(flat, obs)
    return jax.tree_util.tree_map(lambda x: x.reshape((c, d, *x.shape[1:])), tr)


def check_draws(result: MCMCResult) -> None:
    """Warn about divergences, non-finite draws (never a silent NaN posterior) and chains that disagree."""
    n = result.num_divergences if "diverging" in result.stats else 0
    if n > 0:
        per_chain = np.sum(result.stats["diverging"], axis=1).tolist()
        warnings.warn(
            f"{result.algorithm}: {n} of {result.num_chains * result.num_draws} transitions after warm-up "
            f"diverged (per chain: {per_chain}); the draws may be biased. Try target_accept closer to 1 "
            "(e.g. 0.95), a non-centred parameterisation, or dense_mass=True",
            DivergenceWarning,
            stacklevel=3,
        )
    bad = [k for k, v in result.samples.items() if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v))]
    if bad:
        warnings.warn(
            f"{result.algorithm}: non-finite draws (NaN or inf) at {', '.join(bad)}; the posterior is not usable",
            SamplingWarning,
            stacklevel=3,
        )
    check_convergence(result)


def check_convergence(result: MCMCResult) -> None:
    """One :class:`ConvergenceWarning` naming latent elements with split R-hat > 1.01 and chains apart.

    Runs on the host after the compiled run, once per run; only with at
    least 2 chains of ``MIN_DRAWS_FOR_RHAT`` draws.
    """
    if result.num_chains < 2 or result.num_draws < MIN_DRAWS_FOR_RHAT:
        return
    latent = {name: result.samples[name] for name in map(address_name, result.latent_addresses)}
    latent = {k: v for k, v in latent.items() if np.all(np.isfinite(np.asarray(v, float)))}
    flagged, far = chain_disagreement(latent)
    if flagged:
        warnings.warn(f"{result.algorithm}: {disagreement_message(flagged, far)}", ConvergenceWarning, stacklevel=4)
