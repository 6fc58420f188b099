"""A single random choice from a distribution, seen through the GFI.

Every ``ppl.sample(addr, d)`` site is run by :data:`PRIMITIVE`, whose methods
mirror the generative function interface with ``d`` as the only argument.
The trace of a site is a :class:`ChoiceTrace` holding the value and its log
density, summed over all elements (scores are scalars).

Log densities here are *support-checked*: a value outside ``d.support``
(a negative scale, a count above a binomial's ``n``, a non-simplex) scores
``-inf`` instead of whatever the density formula happens to return there, and
the formula is then evaluated at a safe in-support point so that gradients
stay finite. Sampled values are in the support by construction and skip the
check.

Every fresh draw and every value given from outside goes through the
handler stack (:mod:`ppl.core.handlers`), so installed handlers can provide,
transform or score it.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.distribution import validation_enabled
from numpyro.distributions.transforms import biject_to

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, Masked
from ppl.core.handlers import Site, apply_stack
from ppl.core.selection import Selection
from ppl.core.trace import ChoiceTrace
from ppl.errors import (
    ConstraintDtypeError,
    ConstraintShapeError,
    MissingChoiceError,
    NotADistributionError,
    PPLError,
    UnvisitedConstraintError,
)


def describe(d: Distribution) -> str:
    return f"{type(d).__name__}(batch_shape={tuple(d.batch_shape)}, event_shape={tuple(d.event_shape)})"


def check_distribution(obj: Any, addr: tuple) -> Distribution:
    if isinstance(obj, Distribution):
        return obj
    raise NotADistributionError(
        f"at address {format_address(addr)}: expected a distribution "
        f"(a numpyro.distributions.Distribution such as ppl.dist.Normal(0, 1)) or a call of a "
        f"generative function (model(args) @ addr); got {type(obj).__name__}: {_brief(obj)}"
    )


def _brief(obj: Any) -> str:
    r = repr(obj)
    return r if len(r) <= 80 else r[:77] + "..."


def value_shape(d: Distribution) -> tuple:
    return tuple(d.batch_shape) + tuple(d.event_shape)


def is_real_support(support: Any) -> bool:
    s = support
    while isinstance(s, constraints._IndependentConstraint):
        s = s.base_constraint
    return isinstance(s, constraints._Real)


def is_discrete(d: Distribution) -> bool:
    return bool(getattr(d.support, "is_discrete", False))


def check_value(addr: tuple, d: Distribution, value: Any) -> Any:
    """Validate a value given for the choice at ``addr`` and cast its dtype."""
    if isinstance(value, Masked):
        raise ConstraintShapeError(f"at {format_address(addr)}: nested ppl.masked values are not allowed")
    try:
        value = jnp.asarray(value)
    except TypeError as e:
        raise ConstraintDtypeError(
            f"value given at {format_address(addr)} is a {type(value).__name__}, not an array or number "
            f"({describe(d)} expects shape {value_shape(d)})"
        ) from e
    dtype = value.dtype
    numeric = jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_
    if not numeric or jnp.issubdtype(dtype, jnp.complexfloating):
        raise ConstraintDtypeError(
            f"value given at {format_address(addr)} has dtype {dtype}; {describe(d)} takes real numbers"
        )
    if is_discrete(d):
        if jnp.issubdtype(dtype, jnp.floating):
            raise ConstraintDtypeError(
                f"value given at {format_address(addr)} has dtype {dtype}, but {type(d).__name__} is a discrete "
                "distribution whose values are integers; cast the data with .astype(int) (or bool)"
            )
    elif not jnp.issubdtype(dtype, jnp.floating):
        value = value.astype(jnp.result_type(float))
    expected = value_shape(d)
    if tuple(value.shape) != expected:
        raise ConstraintShapeError(
            f"value given at {format_address(addr)} has shape {tuple(value.shape)}, but {describe(d)} "
            f"there expects shape {expected} (batch_shape + event_shape); reshape the value, or the "
            "distribution's parameters, so they agree"
        )
    return value


def _safe_default(support: Any, value: Any) -> Any | None:
    """A point inside ``support`` shaped like ``value`` (None if unknown)."""
    try:
        if support.is_discrete:
            lb = getattr(support, "lower_bound", 0)
            return jnp.broadcast_to(jnp.asarray(lb).astype(value.dtype), value.shape)
        t = biject_to(support)
        u = jnp.zeros(t.inverse_shape(value.shape), value.dtype)
        return jnp.broadcast_to(t(u), value.shape).astype(value.dtype)
    except Exception:
        return None


def _log_prob(d: Distribution, value: Any) -> Any:
    """``d.log_prob(value)`` without numpyro's default sample validation.

    numpyro (validation on by default) wraps each ``log_prob`` in
    ``where(value in support, ., -inf)``; ppl checks supports itself, once per
    choice and only where the support is not the whole real line, so the
    second mask is redundant work on every site. A distribution built with an
    explicit ``validate_args=True`` keeps numpyro's check.
    """
    with validation_enabled(False):
        return d.log_prob(value)


def log_density(d: Distribution, value: Any) -> Any:
    """``sum(d.log_prob(value))``, or ``-inf`` when ``value`` is outside the support."""
    support = d.support
    if is_real_support(support):
        return jnp.sum(_log_prob(d, value))
    ok = jnp.all(support(value))
    h = context.current_handler()
    if h is not None and hasattr(h, "note_impossible"):
        h.note_impossible(jnp.logical_not(ok))  # the running model's total is -inf, even if later terms are NaN
    default = _safe_default(support, value)
    safe = value if default is None else jnp.where(ok, value, default)
    lp = jnp.sum(_log_prob(d, safe))
    return jnp.where(ok, lp, -jnp.inf)


def fresh_log_density(d: Distribution, value: Any) -> Any:
    """Log density of a value the distribution itself produced (no support check)."""
    return jnp.sum(_log_prob(d, value))


def _default_sample(site: Site) -> None:
    try:
        x = site.dist.sample(site.key)
    except NotImplementedError as e:
        raise PPLError(
            f"{describe(site.dist)} at {format_address(site.address)} cannot be sampled (an improper prior such as "
            "ImproperUniform has no sampler); give this choice a value (generate with constraints, "
            "or an MCMC/VI initialiser in unconstrained space)"
        ) from e
    site.provide(x)


def _sample(d: Distribution, key: Any) -> tuple[Any, Any]:
    """``(program_value, stored_value)`` of a fresh draw, through the handler stack."""
    site = apply_stack(Site(context.current_path(), d, "sample", key=key), _default_sample)
    return site.value, site.stored


def _default_given(site: Site) -> None:
    value = check_value(site.address, site.tagged, site.given)
    site.provide(value)


def _given(d: Distribution, value: Any) -> tuple[Any, Any, Any, bool]:
    """``(program_value, stored_value, extra_weight, in_support)`` for a given value.

    Handlers see the raw value first (an unconstrained view reads values of
    another shape); by default the value is checked against ``d``. A handler
    that guarantees the program value lies in ``d``'s support (a value mapped
    from unconstrained space) sets ``in_support`` so the check is skipped.
    """
    site = apply_stack(Site(context.current_path(), d, "given", given=value), _default_given)
    extra = jnp.zeros(()) if site.extra is None else site.extra
    return site.value, site.stored, extra, site.in_support


def _score(d: Distribution, value: Any, in_support: bool) -> Any:
    return fresh_log_density(d, value) if in_support else log_density(d, value)


def _leaf(cm: ChoiceMap, d: Distribution) -> tuple[bool, Any, Any]:
    """(has_value, value, mask) of a constraint map seen at a primitive site."""
    if cm.is_empty():
        return False, None, None
    if not cm.has_value() or len(cm) > 1:
        addr = context.current_path()
        extra = [a for a in cm.addresses() if a]
        raise UnvisitedConstraintError(
            f"choices given under {format_address(addr)}: "
            + ", ".join(format_address(addr + a) for a in extra)
            + f"; but {format_address(addr)} is a single choice from {describe(d)}, not a namespace"
        )
    mask = cm.mask()
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != ():
            addr = context.current_path()
            raise ConstraintShapeError(
                f"mask at {format_address(addr)} has shape {mask.shape}; a choice is present or absent as a "
                "whole (mask shape ()), use ppl.vmap to make elements separate choices"
            )
    return True, cm.value(), mask


class _Primitive:
    """GFI of one choice; ``d`` plays the role of the arguments."""

    name = "primitive"

    def simulate(self, key: Any, d: Distribution) -> ChoiceTrace:
        pv, sv = _sample(d, key)
        return ChoiceTrace(sv, fresh_log_density(d, pv)), pv

    def assess(self, cm: ChoiceMap, d: Distribution) -> tuple[Any, Any]:
        has, value, mask = _leaf(cm, d)
        if not has:
            addr = context.current_path()
            raise MissingChoiceError(
                f"assess needs a value for every choice; none given at {format_address(addr)} ({describe(d)})"
            )
        pv, _, extra, ok = _given(d, value)
        w = _score(d, pv, ok) + extra
        if mask is not None:
            w = jnp.where(mask, w, -jnp.inf)
        return w, pv

    def generate(self, key: Any, cm: ChoiceMap, d: Distribution) -> tuple[ChoiceTrace, Any, Any]:
        has, value, mask = _leaf(cm, d)
        if not has:
            tr, pv = self.simulate(key, d)
            return tr, jnp.zeros(()), pv
        pv, sv, extra, ok = _given(d, value)
        if mask is None:
            score = _score(d, pv, ok)
            return ChoiceTrace(sv, score), score + extra, pv
        fresh_pv, fresh_sv = _sample(d, key)
        pv = jnp.where(mask, pv, fresh_pv)
        sv = jnp.where(mask, sv, fresh_sv)
        score = _score(d, pv, ok)
        return ChoiceTrace(sv, score), jnp.where(mask, score + extra, 0.0), pv

    def update(self, key: Any, old: ChoiceTrace, cm: ChoiceMap, d: Distribution):
        has, value, mask = _leaf(cm, d)
        old_value = old.value
        compatible = tuple(jnp.shape(old_value)) == value_shape(d) and (
            jnp.issubdtype(jnp.asarray(old_value).dtype, jnp.floating) != is_discrete(d)
        )
        discard_old = ChoiceMap.value_at_root(old_value)
        if not compatible:
            # The choice changed type or shape: the old value is discarded and
            # the new one generated (fresh draws cancel with their proposal).
            tr, w, pv = self.generate(key, cm, d)
            return tr, w - old.score, discard_old, pv
        if not has:
            score = log_density(d, old_value)
            return ChoiceTrace(old_value, score), score - old.score, ChoiceMap.empty(), old_value
        pv, sv, _, ok = _given(d, value)
        if mask is not None:
            pv = jnp.where(mask, pv, old_value)
            sv = jnp.where(mask, sv, old_value)
            discard = ChoiceMap.value_at_root(old_value, mask)
        else:
            discard = discard_old
        score = _score(d, pv, ok)
        return ChoiceTrace(sv, score), score - old.score, discard, pv

    def regenerate(self, key: Any, old: ChoiceTrace, sel: Selection, d: Distribution):
        if sel.contains(()):
            tr, pv = self.simulate(key, d)
            return tr, jnp.zeros(()), pv
        compatible = tuple(jnp.shape(old.value)) == value_shape(d)
        if not compatible:
            tr, pv = self.simulate(key, d)
            return tr, jnp.zeros(()), pv
        score = log_density(d, old.value)
        return ChoiceTrace(old.value, score), score - old.score, old.value


PRIMITIVE = _Primitive()


def sample_value(key: Any, d: Distribution) -> Any:
    """Draw from ``d`` honouring active interceptors (program-facing value)."""
    return _sample(d, key)[0]


__all__ = [
    "PRIMITIVE",
    "check_distribution",
    "check_value",
    "describe",
    "is_discrete",
    "log_density",
    "sample_value",
    "value_shape",
]
