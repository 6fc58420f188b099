"""Gradient estimators, chosen per random choice by wrapping its distribution.

``ppl.vi.reparam(d)``, ``ppl.vi.reinforce(d, baseline=b)``, ``ppl.vi.enum(d)``
and ``ppl.vi.mvd(d)`` return a distribution that samples and scores exactly
like ``d`` (so the program means the same thing under every GFI method, with
or without ``ppl.vi``) and carries a tag saying how ``ppl.vi.expectation``
differentiates the choice::

    z = ppl.vi.reinforce(dist.Bernoulli(p), baseline=b) @ "z"

An untagged choice gets the default: reparameterised where the distribution
has a reparameterised sampler (``d.has_rsample``), otherwise REINFORCE.

This module holds the tags and the per-distribution rules that enumeration
and the measure-valued derivative need (the alternative values substituted
into the re-runs and their coefficients); the transformation itself is in
:mod:`ppl.vi.expectation`, whose docstring derives each estimator.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, Independent, Normal

from ppl.core.address import format_address
from ppl.core.primitive import describe, is_discrete
from ppl.errors import ArgumentValueError, EstimatorError, NotADistributionError

REPARAM = "reparam"
REINFORCE = "reinforce"
ENUM = "enum"
MVD = "mvd"


# ---------------------------------------------------------------- the tags
class _Tagged(Distribution):
    """``base`` with a gradient estimator attached; samples and scores as ``base``."""

    estimator: str = ""
    arg_constraints: ClassVar[dict] = {}
    pytree_data_fields = ("base", "baseline")
    pytree_aux_fields = ()

    def __init__(self, base: Distribution, baseline: Any = None):
        if not isinstance(base, Distribution):
            raise NotADistributionError(
                f"ppl.vi.{self.estimator} wraps a distribution (e.g. ppl.dist.Normal(0, 1)); got {type(base).__name__}"
            )
        if isinstance(base, _Tagged):  # re-tagging: the outer estimator wins
            base = base.base
        self.base = base
        self.baseline = baseline
        super().__init__(base.batch_shape, base.event_shape)

    @property
    def ppl_untagged(self) -> Distribution:
        """The distribution that samples and scores for this one (see ppl.core.handlers.untagged)."""
        return self.base

    # everything observable is the base distribution's
    @property
    def support(self) -> Any:  # type: ignore[override]
        return self.base.support

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base.has_rsample

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base.has_enumerate_support

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return self.base.is_discrete

    @property
    def mean(self) -> Any:
        return self.base.mean

    @property
    def variance(self) -> Any:
        return self.base.variance

    def sample(self, key: Any, sample_shape: tuple = ()) -> Any:
        return self.base.sample(key, sample_shape)

    def sample_with_intermediates(self, key: Any, sample_shape: tuple = ()) -> Any:
        return self.base.sample_with_intermediates(key, sample_shape)

    def log_prob(self, value: Any, intermediates: Any = None) -> Any:
        return self.base.log_prob(value)

    def enumerate_support(self, expand: bool = True) -> Any:
        return self.base.enumerate_support(expand)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("base", "baseline"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __repr__(self) -> str:
        return f"ppl.vi.{self.estimator}({self.base!r})"


class Reparam(_Tagged):
    """Pathwise (reparameterisation) gradient: the sample is a differentiable function of the parameters."""

    estimator = REPARAM


class Reinforce(_Tagged):
    """Score-function (REINFORCE) gradient, optionally with a baseline."""

    estimator = REINFORCE


class Enumerate(_Tagged):
    """Exact sum over a finite support (one re-run of the program per alternative value)."""

    estimator = ENUM


class MeasureValued(_Tagged):
    """Measure-valued derivative (weak derivative): coupled re-runs per parameter."""

    estimator = MVD


def reparam(d: Distribution) -> Reparam:
    """Differentiate the choice pathwise: ``x = T(eps, theta)``, gradients flow through ``x``.

    Needs a reparameterised sampler (``d.has_rsample``); a discrete choice
    cannot be reparameterised (an :class:`~ppl.errors.EstimatorError` names the address).
    """
    return Reparam(d)


def reinforce(d: Distribution, baseline: Any = None) -> Reinforce:
    """Differentiate with the score function: ``(f - b) * grad log q(x)``.

    ``baseline`` is a scalar or an array broadcastable to the choice's batch
    shape (one baseline per element), computed by the program *before* this
    choice is made (a constant, a running mean passed in as an argument, a
    network's output): anything not depending on the value of this choice
    keeps the estimator unbiased. If the baseline depends on parameters, their
    gradient is that of ``-(f - b)^2 / 2`` summed over elements (the baseline
    is fitted to the objective by the same optimiser step).
    """
    return Reinforce(d, baseline)


def enum(d: Distribution) -> Enumerate:
    """Sum the choice out exactly over its finite support.

    Needs a finite, scalar-valued support (``d.has_enumerate_support``, event
    shape ``()``): Bernoulli, Categorical, Binomial with a fixed count, ...
    """
    return Enumerate(d)


def mvd(d: Distribution) -> MeasureValued:
    """Measure-valued derivative: the weak derivative of ``d`` as a difference of two distributions.

    Implemented for finite discrete supports (Bernoulli, Categorical, ...),
    and for Normal (also under ``to_event``): see :mod:`ppl.vi.expectation`.
    """
    return MeasureValued(d)


def estimator_of(addr: tuple, d: Distribution) -> tuple[str, Distribution, Any]:
    """``(estimator, base distribution, baseline)`` for the choice at ``addr``.

    Applies the default (reparameterise when possible, else REINFORCE) and
    checks the choice can use the estimator asked for.
    """
    if isinstance(d, _Tagged):
        kind, base, baseline = d.estimator, d.base, d.baseline
    else:
        kind = REPARAM if (d.has_rsample and not is_discrete(d)) else REINFORCE
        base, baseline = d, None
    if kind == REPARAM:
        if is_discrete(base):
            raise EstimatorError(
                f"ppl.vi.reparam at {format_address(addr)}: {describe(base)} is discrete, so its samples "
                "cannot be differentiated; use ppl.vi.reinforce, ppl.vi.enum or ppl.vi.mvd for this choice"
            )
        if not base.has_rsample:
            raise EstimatorError(
                f"ppl.vi.reparam at {format_address(addr)}: {describe(base)} has no reparameterised sampler "
                "(has_rsample is False); use ppl.vi.reinforce (or ppl.vi.mvd for a Normal)"
            )
    return kind, base, baseline


# ----------------------------------------------- re-run rules (enum and mvd)
class RerunRule(NamedTuple):
    """How the re-runs of an enumerated or MVD choice are made.

    ``shape`` is the grid of elements (each element gets its own re-runs),
    ``variants`` the number of re-runs per element; ``alternative(x, key, j)``
    returns, for every element at once, the value to substitute in re-run
    ``j`` and its coefficient: the probability of that value (enum) or the
    signed weak-derivative coefficient, a zero-valued term carrying the
    gradient (mvd).
    """

    shape: tuple
    variants: int
    alternative: Any


def _finite_support(addr: tuple, base: Distribution, what: str) -> Any:
    if not is_discrete(base) or not base.has_enumerate_support:
        kind = "a continuous" if not is_discrete(base) else "an infinite"
        raise EstimatorError(
            f"ppl.vi.{what} at {format_address(addr)}: {describe(base)} has {kind} support, which cannot be "
            f"{'enumerated' if what == ENUM else 'handled by re-running each value'}; use ppl.vi.reinforce"
            + (" or ppl.vi.reparam" if kind == "a continuous" else "")
            + " for this choice"
        )
    if tuple(base.event_shape) != ():
        raise EstimatorError(
            f"ppl.vi.{what} at {format_address(addr)}: {describe(base)} has event shape {tuple(base.event_shape)}; "
            "only scalar-valued discrete choices (batches of them included) can be enumerated"
        )
    try:
        values = jnp.reshape(base.enumerate_support(expand=False), (-1,))
    except Exception as e:  # e.g. a Binomial whose total count is traced
        raise EstimatorError(
            f"ppl.vi.{what} at {format_address(addr)}: the support of {describe(base)} is not known when the "
            f"program is traced ({type(e).__name__}: {e}); its size must not depend on traced values"
        ) from None
    return values


def _support_alternative(base: Distribution, values: Any, x: Any, j: Any) -> Any:
    """The value ``j + 1`` steps after ``x`` in the (cyclic) support: all alternatives as ``j`` runs."""
    n = values.shape[0]
    index = jnp.argmax(x[..., None] == values.astype(x.dtype), axis=-1)
    return values[(index + 1 + j) % n].astype(x.dtype)


def enum_rule(addr: tuple, base: Distribution) -> RerunRule:
    """Re-run with every other value ``v`` of the support; coefficient ``q(v)`` (differentiable)."""
    values = _finite_support(addr, base, ENUM)

    def alternative(x: Any, key: Any, j: Any) -> tuple[Any, Any]:
        v = _support_alternative(base, values, x, j)
        return v, jnp.exp(base.log_prob(v))

    return RerunRule(tuple(base.batch_shape), int(values.shape[0]) - 1, alternative)


def _normal_parts(base: Distribution) -> tuple[Any, Any, tuple] | None:
    d, shape = base, tuple(base.batch_shape) + tuple(base.event_shape)
    while isinstance(d, Independent):
        d = d.base_dist
    if type(d) is not Normal:
        return None
    return jnp.broadcast_to(d.loc, shape), jnp.broadcast_to(d.scale, shape), shape


_SQRT_2PI = math.sqrt(2.0 * math.pi)


def mvd_rule(addr: tuple, base: Distribution) -> RerunRule:
    """Weak-derivative re-runs for ``base`` (see :mod:`ppl.vi.expectation` for the derivation)."""
    normal = _normal_parts(base)
    if normal is not None:
        loc, scale, shape = normal

        def alternative(x: Any, key: Any, j: Any) -> tuple[Any, Any]:
            k_r, k_m, k_s = jax.random.split(jax.random.fold_in(key, 0x6D7664), 3)
            # Rayleigh(1) for the mean's two parts; double-sided Maxwell for the scale's positive part
            rayleigh = jnp.sqrt(-2.0 * jnp.log1p(-jax.random.uniform(k_r, shape)))
            chi3 = jnp.sqrt(jnp.sum(jax.random.normal(k_m, (3, *shape)) ** 2, axis=0))
            maxwell = jnp.where(jax.random.bernoulli(k_s, 0.5, shape), chi3, -chi3)
            s = jax.lax.stop_gradient(scale)
            m = jax.lax.stop_gradient(loc)
            value = jnp.select([j == 0, j == 1], [m + s * rayleigh, m - s * rayleigh], m + s * maxwell)
            d_loc = (loc - m) / (s * _SQRT_2PI)
            d_scale = (scale - s) / s
            coef = jnp.select([j == 0, j == 1], [d_loc, -d_loc], d_scale)
            return value.astype(x.dtype), coef

        return RerunRule(shape, 3, alternative)
    if is_discrete(base):
        values = _finite_support(addr, base, MVD)

        def alternative(x: Any, key: Any, j: Any) -> tuple[Any, Any]:
            v = _support_alternative(base, values, x, j)
            p = jnp.exp(base.log_prob(v))
            return v, p - jax.lax.stop_gradient(p)

        return RerunRule(tuple(base.batch_shape), int(values.shape[0]) - 1, alternative)
    raise EstimatorError(
        f"ppl.vi.mvd at {format_address(addr)}: the measure-valued derivative is implemented for Normal choices "
        f"(also under to_event) and finite discrete ones (Bernoulli, Categorical, ...); got {describe(base)}. "
        "Use ppl.vi.reparam or ppl.vi.reinforce for this choice"
    )


# ------------------------------------------------------------- baselines
class RunningMeanState(NamedTuple):
    """Exponential moving average of the objective: ``total / weight`` is the (debiased) mean."""

    total: Any
    weight: Any

    @property
    def mean(self) -> Any:
        return jnp.where(self.weight > 0, self.total / jnp.maximum(self.weight, 1e-30), 0.0)


class RunningMean(NamedTuple):
    """A running-mean baseline as a pure ``(init, update)`` pair (its state is explicit).

    ::

        rm = ppl.vi.running_mean(0.9)
        state = rm.init()
        value, grads = objective.value_and_grad_estimate(key, params, state.mean)
        state = rm.update(state, value)

    where the program passes its argument on as ``ppl.vi.reinforce(d, baseline=b)``.
    """

    decay: float

    def init(self) -> RunningMeanState:
        return RunningMeanState(jnp.zeros(()), jnp.zeros(()))

    def update(self, state: RunningMeanState, value: Any) -> RunningMeanState:
        value = jax.lax.stop_gradient(jnp.asarray(value))
        return RunningMeanState(
            self.decay * state.total + (1.0 - self.decay) * value,
            self.decay * state.weight + (1.0 - self.decay),
        )


def running_mean(decay: float = 0.9) -> RunningMean:
    """Exponential moving average of the objective, debiased like Adam's moments."""
    if not 0.0 <= decay < 1.0:
        raise ArgumentValueError(f"ppl.vi.running_mean: decay must be in [0, 1), got {decay!r}")
    return RunningMean(float(decay))


__all__ = [
    "ENUM",
    "MVD",
    "REINFORCE",
    "REPARAM",
    "Enumerate",
    "MeasureValued",
    "Reinforce",
    "Reparam",
    "RerunRule",
    "RunningMean",
    "RunningMeanState",
    "enum",
    "enum_rule",
    "estimator_of",
    "mvd",
    "mvd_rule",
    "reinforce",
    "reparam",
    "running_mean",
]
