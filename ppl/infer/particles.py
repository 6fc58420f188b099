"""``ParticleCollection``: weighted traces, the currency of importance sampling and SMC.

A collection of ``N`` particles ``(t_i, l_i)`` (traces with log weights)
and a running log normaliser ``log_normalizer`` represents a target
``pi(t) = gamma(t) / Z`` in the usual way: for any function ``f``,

    sum_i w_i f(t_i),   w_i = exp(l_i) / sum_j exp(l_j)

estimates ``E_pi[f]`` (self-normalised importance sampling), and

    Z_hat = exp(log_normalizer) * (1/N) sum_i exp(l_i)

is an unbiased estimate of ``Z`` (the marginal likelihood ``p(y)`` when
``gamma(t) = p(t, y)``). Resampling keeps ``Z_hat`` unbiased by moving the
factor ``(1/N) sum_i exp(l_i)`` into ``log_normalizer`` before the weights
are reset to zero (Del Moral 2004; Naesseth et al. 2019, section 3).

The collection is an equinox module (a pytree): it goes through ``jit``,
``vmap`` and ``lax.scan``; ``traces`` is one batched trace whose leaves have
a leading particle axis. Every method is a whole-array ``jnp`` operation, so
particles may be sharded across devices.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.core import context
from ppl.core.address import Address, format_address, is_prefix, sort_key
from ppl.core.choicemap import ChoiceMap
from ppl.core.trace import Trace
from ppl.errors import DegenerateWeightsError
from ppl.infer import resampling


class ParticleCollection(eqx.Module):
    """Weighted particles: ``traces`` (leading particle axis), ``log_weights`` and a log normaliser.

    Attributes:
      traces: a batched :class:`~ppl.Trace`; every leaf has a leading axis of
        length ``num_particles``.
      log_weights: ``(N,)`` unnormalised log importance weights ``l_i``.
      log_normalizer: scalar, ``sum`` over past resampling steps of the log
        mean weight at that step (0 if never resampled).
      info: algorithm-specific diagnostics (a particle filter's per-step
        history, tempered SMC's temperatures), or ``None``.
      observed: which choices the target has observed so far (an
        :class:`ObservedRecord`, filled by ``importance``, ``smc.init`` and
        ``smc.extend``), or ``None`` when unknown. ``smc.extend`` needs it to
        tell data it overwrites again from sampled values it overwrites.
    """

    traces: Any
    log_weights: jax.Array
    log_normalizer: jax.Array = eqx.field(default_factory=lambda: jnp.zeros(()))
    info: Any = None
    observed: Any = None

    # ------------------------------------------------------------- weights
    @property
    def num_particles(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def normalized_weights(self) -> jax.Array:
        """``w_i = exp(l_i) / sum_j exp(l_j)`` (uniform if every weight is ``-inf``)."""
        return _normalized_weights(self.log_weights)

    @property
    def ess(self) -> jax.Array:
        """Effective sample size ``(sum_i w_i)^2 / sum_i w_i^2``, between 1 and N (0 if all weights vanish)."""
        return _ess(self.log_weights)

    def log_marginal_likelihood(self) -> jax.Array:
        """``log Z_hat = log_normalizer + log((1/N) sum_i exp(l_i))``.

        ``Z_hat`` is an unbiased estimate of the target's normalising constant
        (``p(observations)`` for a model conditioned on data); its log is
        biased downwards by about ``Var(Z_hat / Z) / 2``.
        """
        return _log_marginal_likelihood(self.log_weights, self.log_normalizer)

    # ---------------------------------------------------------- resampling
    def resample(self, key: Any, n: int | None = None, method: str | resampling.Resampler = "systematic"):
        """``n`` (default ``N``) equally weighted particles drawn by ``method``.

        ``method`` is one of ``"systematic"``, ``"stratified"``, ``"residual"``,
        ``"multinomial"`` or a function ``(key, log_weights, n) -> indices``.
        The log mean weight moves into ``log_normalizer``, so
        :meth:`log_marginal_likelihood` stays unbiased.
        """
        n = self.num_particles if n is None else int(n)
        resampling.get_resampler(method)
        return _resample(self, key, n, method)

    # --------------------------------------------------------- expectations
    def expectation(self, fn: Callable[[Trace], Any]) -> Any:
        """Self-normalised estimate of ``E[fn(trace)]``: ``sum_i w_i fn(t_i)``.

        ``fn`` maps one (unbatched) trace to a pytree of arrays; it is
        vectorised over particles with ``jax.vmap`` (and compiled once per
        ``fn`` object).
        """
        return _expectation(self, fn)

    def mean(self, addr: Any) -> Any:
        """Weighted mean of the choice (or deterministic value) at ``addr``."""
        return _moments(self, addr)[0]

    def variance(self, addr: Any) -> Any:
        """Weighted variance (elementwise) of the choice at ``addr``."""
        return _moments(self, addr)[1]

    # ------------------------------------------------------------- samples
    @property
    def choices(self) -> ChoiceMap:
        """The particles' choices (and deterministic values), leading particle axis, unweighted."""
        return self.traces.choices | self.traces.deterministics

    def sample(self, key: Any, n: int | None = None) -> ChoiceMap:
        """``n`` (default ``N``) draws from the weighted particles (multinomial).

        Returns a :class:`ChoiceMap` whose values have a leading axis of
        length ``n``: approximate posterior samples, ``cm["x"]``.
        """
        n = self.num_particles if n is None else int(n)
        return _sample(self, key, n)

    def to_arviz(self, key: Any = None, num_draws: int | None = None, method: str = "systematic") -> Any:
        """ArviZ data of the weighted particles (``InferenceData`` under ArviZ 0.x, ``DataTree`` under 1.x).

        ArviZ has no notion of weights, so the ``posterior`` group holds
        ``num_draws`` (default ``N``) equally weighted draws resampled with
        ``method`` (systematic by default, the lowest-variance scheme) from
        ``key`` (default ``jax.random.key(0)``), as one chain; the observed
        choices go to ``observed_data``. The root attributes carry the log
        marginal likelihood estimate, the effective sample size of the
        weights before resampling and the number of particles.
        """
        from ppl.diagnostics.arviz import to_inference_data
        from ppl.infer.mcmc.result import address_name

        key = jax.random.key(0) if key is None else key
        drawn = self.resample(key, num_draws, method)
        observed = set(self.observed.full) if self.observed is not None else set()
        posterior, data = {}, {}
        for a, v in drawn.choices.flat_dict().items():
            if a in observed:
                data[address_name(a)] = np.asarray(v[0])
            else:
                posterior[address_name(a)] = np.asarray(v)[None]
        attrs = {
            "inference_library": "ppl",
            "algorithm": "weighted particles (resampled)",
            "log_marginal_likelihood": float(self.log_marginal_likelihood()),
            "ess": float(self.ess),
            "num_particles": self.num_particles,
        }
        return to_inference_data(posterior, observed_data=data or None, attrs=attrs)

    def __repr__(self) -> str:
        return f"ParticleCollection(num_particles={self.num_particles}, choices={self.traces.choices!r})"


def check_weights(log_weights: jax.Array, where: str, hint: str = "") -> jax.Array:
    """Fail loudly when no particle has a finite log weight.

    Eagerly this raises :class:`DegenerateWeightsError` (and warns when some,
    not all, weights are NaN); under the caller's ``jit`` the same message
    becomes a runtime error through ``equinox.error_if``. Never returns a
    collection whose every weight is ``-inf``/NaN, which would make every
    posterior estimate NaN.
    """
    n = log_weights.shape[0]
    msg = (
        f"{where}: all {n} particles have log weight -inf or NaN, so no particle is consistent with the "
        f"target and every estimate would be NaN. {hint}".rstrip()
    )
    if isinstance(log_weights, jax.core.Tracer):
        return log_weights + runtime_check(~jnp.any(jnp.isfinite(log_weights)), msg)
    lw = np.asarray(log_weights)
    if not np.any(np.isfinite(lw)):
        raise DegenerateWeightsError(msg)
    bad = int(np.isnan(lw).sum())
    if bad:
        warnings.warn(
            f"{where}: {bad} of {n} log weights are NaN (a log density evaluated to NaN); those particles get weight 0",
            RuntimeWarning,
            stacklevel=3,
        )
    return log_weights


def runtime_check(failed: jax.Array, msg: str) -> jax.Array:
    """A scalar 0 that raises ``msg`` at run time when ``failed`` (``equinox.error_if``).

    Add it to the arrays the check guards: the check runs whenever they are
    used, and costs a scalar callback rather than a pass over them.
    """
    return eqx.error_if(jnp.zeros(()), failed, msg)


def checked_collection(pc: ParticleCollection, where: str, hint: str) -> ParticleCollection:
    """``pc`` guarded (under ``jit``) against a non-finite log marginal likelihood estimate."""
    msg = (
        f"{where}: the estimate of the marginal likelihood is 0 or NaN: at some step all "
        f"{pc.num_particles} particles had log weight -inf or NaN. {hint}".rstrip()
    )
    zero = runtime_check(~jnp.isfinite(pc.log_marginal_likelihood()), msg)
    return ParticleCollection(pc.traces, pc.log_weights + zero, pc.log_normalizer + zero, pc.info, pc.observed)


def is_traced(x: Any) -> bool:
    """Whether ``x`` is a tracer (we are inside the caller's ``jit``/``vmap``)."""
    return isinstance(x, jax.core.Tracer)


def log_marginal_likelihood_np(pc: ParticleCollection) -> float:
    """``pc.log_marginal_likelihood()`` computed with NumPy on concrete arrays (no compilation)."""
    lw = np.asarray(pc.log_weights, np.float64)
    top = np.max(lw)
    if not np.isfinite(top):
        return float(top) if not np.isnan(top) else float("nan")
    return float(np.asarray(pc.log_normalizer) + top + np.log(np.mean(np.exp(lw - top))))


def gather(x: jax.Array, idx: jax.Array) -> jax.Array:
    """``x[idx]`` along the particle axis for indices known to be in range (no bounds handling)."""
    return x.at[idx].get(mode="promise_in_bounds")


def _take(tree: Any, idx: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda x: gather(x, idx), tree)


# Compiled once per shape (and static argument): eager calls on a collection
# should not dispatch dozens of small operations.
_normalized_weights = jax.jit(resampling.normalized_weights)
_ess = jax.jit(resampling.ess)


@jax.jit
def _log_marginal_likelihood(log_weights: jax.Array, log_normalizer: jax.Array) -> jax.Array:
    return log_normalizer + logsumexp(log_weights) - jnp.log(log_weights.shape[0])


def _resample_impl(pc: ParticleCollection, key: Any, n: int, method: Any) -> ParticleCollection:
    # the ancestors are a random choice (resampling.draw_ancestors): inside a
    # ppl.vi.expectation their score enters the gradient estimate
    idx = resampling.draw_ancestors(key, pc.log_weights, n, method)
    return ParticleCollection(
        traces=_take(pc.traces, idx),
        log_weights=jnp.zeros((n,), pc.log_weights.dtype),
        log_normalizer=pc.log_normalizer + resampling.log_mean_weight(pc.log_weights),
        info=pc.info,
        observed=pc.observed,
    )


_resample_jit = functools.partial(jax.jit, static_argnums=(2, 3))(_resample_impl)


def _resample(pc: ParticleCollection, key: Any, n: int, method: Any) -> ParticleCollection:
    # under a handler (a ppl.vi.expectation) the draw must not sit inside a
    # bare jax.jit, whose boundary its reports cannot cross
    if context.interceptors():
        return _resample_impl(pc, key, n, method)
    return _resample_jit(pc, key, n, method)


def _weighted_sum(w: jax.Array, v: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.tensordot(w, x.astype(w.dtype), axes=(0, 0)), v)


@functools.partial(jax.jit, static_argnums=(1,))
def _expectation(pc: ParticleCollection, fn: Callable) -> Any:
    return _weighted_sum(resampling.normalized_weights(pc.log_weights), jax.vmap(fn)(pc.traces))


@functools.partial(jax.jit, static_argnums=(1,))
def _moments(pc: ParticleCollection, addr: Any) -> tuple[Any, Any]:
    w = resampling.normalized_weights(pc.log_weights)
    v = pc.traces[addr]
    m = _weighted_sum(w, v)
    return m, _weighted_sum(w, (v.astype(w.dtype) - m) ** 2)


@functools.partial(jax.jit, static_argnums=(2,))
def _sample(pc: ParticleCollection, key: Any, n: int) -> ChoiceMap:
    return _take(pc.choices, resampling.multinomial(key, pc.log_weights, n))


# ------------------------------------------------------- observed choices
@jax.tree_util.register_pytree_node_class
class ObservedRecord:
    """The choices the particles' target has observed so far.

    ``full`` (static) holds the addresses observed as a whole; ``masks``
    the partly observed ones (``ppl.masked`` observations: a boolean mask per
    address, true where observed, the OR over all steps so far). Everything
    else in the traces was sampled (from the prior or a proposal).
    ``smc.extend`` reads it to tell a value it overwrites with data that was
    data already (no correction) from a sampled value (whose old density
    enters the weight).
    """

    __slots__ = ("full", "masks")

    def __init__(self, full: frozenset = frozenset(), masks: dict | None = None):
        self.full = frozenset(full)
        self.masks = dict(masks or {})

    def tree_flatten(self):
        keys = tuple(sorted(self.masks, key=sort_key))
        return tuple(self.masks[k] for k in keys), (self.full, keys)

    @classmethod
    def tree_unflatten(cls, aux, children):
        full, keys = aux
        return cls(full, dict(zip(keys, children)))

    def add(self, observations: ChoiceMap) -> ObservedRecord:
        """The record after also observing ``observations``."""
        full, masks = set(self.full), dict(self.masks)
        for a, _, m in observations.masked_items():
            if a in full:
                continue
            if m is None:
                full.add(a)
                masks.pop(a, None)
            else:
                m = jnp.asarray(m, bool)
                masks[a] = jnp.logical_or(masks[a], m) if a in masks else m
        return ObservedRecord(frozenset(full), masks)

    def mask_of(self, addr: Address) -> Any:
        """``True`` (wholly observed), a boolean mask, or ``None`` (never observed) for ``addr``."""
        if any(is_prefix(a, addr) for a in self.full):
            return True
        for a, m in self.masks.items():
            if is_prefix(a, addr):
                return m
        return None

    def __repr__(self) -> str:
        return f"ObservedRecord(full={sorted(map(format_address, self.full))}, masked={list(map(format_address, self.masks))})"


__all__ = [
    "ObservedRecord",
    "ParticleCollection",
    "check_weights",
    "checked_collection",
    "gather",
    "is_traced",
    "log_marginal_likelihood_np",
    "runtime_check",
]
