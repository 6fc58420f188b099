"""Continuous choices in unconstrained space (for HMC, NUTS, MALA, guides, flows).

For a continuous choice ``x ~ d`` with support ``S``, numpyro's
``T = biject_to(S)`` maps ``u in R^k`` onto ``S``. Moving ``u`` instead of
``x`` needs the change of variables

    log p_U(u) = log p_X(T(u)) + log |det J_T(u)|.

The transform is taken from the support *as the program runs*, so a support
that depends on earlier choices (``ImproperUniform(interval(0, 1 - a))``,
garch's ``beta1``) gets the transform and Jacobian of that run, and
everything works through ``ppl.vmap``, ``ppl.scan`` and ``ppl.cond``.

* :func:`to_unconstrained` -- a trace's selected continuous choices as ``u``;
* :func:`from_unconstrained` -- back to a trace, with ``log |det J|``;
* :func:`unconstrained_log_density` -- ``log p(T(u), rest) + log |det J|``,
  the (negative) potential energy of HMC;
* :func:`unconstrained_init` -- Stan-style initial ``u`` drawn uniformly
  from ``(-radius, radius)`` for every selected choice not given, so
  improper priors never need to be sampled.

Which choices are unconstrained: for ``to_unconstrained`` every continuous
choice unless a selection is given; for ``from_unconstrained`` and
``unconstrained_log_density`` the addresses of ``u``; for
``unconstrained_init`` every continuous choice not in ``constraints``.
Naming a discrete address is an error.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from ppl.core import context, enumeration
from ppl.core.address import Address, format_address, is_prefix
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import check_value, describe, is_discrete, value_shape
from ppl.core.selection import Selection, as_selection, select_all
from ppl.core.trace import Trace
from ppl.errors import ConstraintShapeError, SelectionError

LOG_JACOBIAN = "log_jacobian"


class _View:
    """Base: which sites are moved in unconstrained space."""

    kind = "view"
    channels: tuple = ()

    def __init__(self, selection: Selection, explicit: bool, radius: float | None = None):
        self.selection = selection
        self.explicit = explicit
        self.radius = radius

    def __hash__(self) -> int:
        return hash((self.kind, self.selection, self.explicit, self.radius))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.selection, self.explicit, self.radius) == (
            other.selection,  # type: ignore[attr-defined]
            other.explicit,  # type: ignore[attr-defined]
            other.radius,  # type: ignore[attr-defined]
        )

    def applies(self, addr: Address, d: Any) -> bool:
        if not self.selection.contains(addr):
            return False
        if is_discrete(d):
            if self.explicit:
                raise SelectionError(
                    f"the selection names {format_address(addr)}, a discrete choice ({describe(d)}); "
                    "gradient-based kernels and unconstrained views move continuous choices only "
                    "(use Gibbs or MH for discrete ones)"
                )
            return False
        return True


def _transform(d: Any) -> Any:
    return biject_to(d.support)


class _Unconstrain(_View):
    """Given values at selected sites are ``u``; the program sees ``T(u)``."""

    kind = "unconstrain"
    channels = (LOG_JACOBIAN,)

    def given(self, addr: Address, d: Any, u: Any) -> tuple[Any, Any, Any, bool] | None:
        if not self.applies(addr, d):
            return None
        t = _transform(d)
        u = jnp.asarray(u)
        if not jnp.issubdtype(u.dtype, jnp.floating):
            u = u.astype(jnp.result_type(float))
        expected = tuple(t.inverse_shape(value_shape(d)))
        if tuple(u.shape) != expected:
            raise ConstraintShapeError(
                f"unconstrained value at {format_address(addr)} has shape {tuple(u.shape)}, but {describe(d)} "
                f"with support {d.support} has unconstrained shape {expected}"
            )
        x = t(u)
        ladj = jnp.sum(t.log_abs_det_jacobian(u, x))
        context.emit(LOG_JACOBIAN, ladj)
        return x, x, ladj, True  # T(u) lies in the support by construction

    def sample(self, addr: Address, d: Any, key: Any) -> tuple[Any, Any] | None:
        if self.radius is None or not self.applies(addr, d):
            return None
        t = _transform(d)
        shape = tuple(t.inverse_shape(value_shape(d)))
        u = jax.random.uniform(key, shape, minval=-self.radius, maxval=self.radius)
        x = t(u)
        return x, x


class _ToUnconstrained(_View):
    """Given constrained values at selected sites are stored as ``T^{-1}(x)``."""

    kind = "to_unconstrained"

    def given(self, addr: Address, d: Any, x: Any) -> tuple[Any, Any, Any] | None:
        if not self.applies(addr, d):
            return None
        x = check_value(addr, d, x)
        return x, _transform(d).inv(x), jnp.zeros(())


def _selection(selection: Any) -> tuple[Selection, bool]:
    if selection is None:
        return select_all(), False
    return as_selection(selection), True


def _check_selection_visited(sel: Selection, explicit: bool, addresses: list[Address]) -> None:
    if not explicit or sel.complemented:
        return
    missing = [p for p in sel.prefixes if p and not any(is_prefix(p, a) for a in addresses)]
    if missing:
        raise SelectionError(
            "the selection names "
            + ", ".join(format_address(p) for p in missing)
            + ", which the model never visits; its choices are: "
            + ", ".join(format_address(a) for a in addresses[:12])
        )


def _continuous_selected(cm: ChoiceMap, sel: Selection) -> ChoiceMap:
    keep = [
        a for a in cm.addresses() if sel.contains(a) and jnp.issubdtype(jnp.result_type(cm.get_value(a)), jnp.floating)
    ]
    return cm.filter(Selection(frozenset(keep)))


def to_unconstrained(trace: Trace, selection: Any = None) -> ChoiceMap:
    """The selected continuous choices of ``trace`` mapped to unconstrained space."""
    return _to_unconstrained(trace, *_selection(selection))


def _to_unconstrained(trace: Trace, sel: Selection, explicit: bool) -> ChoiceMap:
    gf = trace.gen_fn
    with context.intercept(_ToUnconstrained(sel, explicit)):
        tr, _ = gf.generate(jax.random.key(0), trace.choices, trace.args)
    addrs = tr.choices.addresses()
    _check_selection_visited(sel, explicit, addrs)
    return _continuous_selected(tr.choices, sel)


def from_unconstrained(
    gen_fn: GenerativeFunction,
    unconstrained: Any,
    args: tuple = (),
    constraints: Any = None,
    *,
    key: Any = None,
    selection: Any = None,
) -> tuple[Trace, Any, Any]:
    """Map unconstrained values back: ``(trace, log_weight, log_jacobian)``.

    ``trace`` holds the constrained values ``T(u)`` (and ``constraints``;
    other choices are drawn from the prior with ``key``); ``log_weight`` is
    ``generate``'s weight plus ``log |det J_T(u)|``; ``log_jacobian`` is the
    Jacobian term alone.
    """
    u = as_choicemap(unconstrained)
    sel, explicit = _selection(selection) if selection is not None else (Selection(frozenset(u.addresses())), True)
    cm = u | as_choicemap(constraints)
    key = jax.random.key(0) if key is None else key
    with context.intercept(_Unconstrain(sel, explicit)), context.collect((LOG_JACOBIAN,)) as frame:
        tr, w = gen_fn.generate(key, cm, args)
    _check_selection_visited(sel, explicit, tr.choices.addresses())
    return tr, w, frame.filled()[LOG_JACOBIAN]


def unconstrained_log_density(
    gen_fn: GenerativeFunction, unconstrained: Any, args: tuple = (), constraints: Any = None, *, selection: Any = None
) -> Any:
    """``log p(T(u), constraints) + log |det J_T(u)|``: HMC's negative potential.

    Every choice must be given, the selected continuous ones as ``u``.
    """
    u = as_choicemap(unconstrained)
    sel, explicit = _selection(selection) if selection is not None else (Selection(frozenset(u.addresses())), True)
    cm = u | as_choicemap(constraints)

    def log_density(summed: ChoiceMap) -> Any:
        with context.intercept(_Unconstrain(sel, explicit)), context.collect((LOG_JACOBIAN,)):
            w, _ = gen_fn.assess(cm | summed, args)
        return w

    if enumeration.active() is not None:  # discrete choices summed out (ppl.core.enumeration)
        return enumeration.sum_top_level(gen_fn, args, cm.addresses(), log_density)
    return log_density(ChoiceMap.empty())


def unconstrained_init(
    key: Any,
    gen_fn: GenerativeFunction,
    args: tuple = (),
    constraints: Any = None,
    *,
    selection: Any = None,
    radius: float = 2.0,
) -> ChoiceMap:
    """Initial unconstrained values, uniform on ``(-radius, radius)`` (Stan's rule).

    Choices given in ``constraints`` keep their values; other unselected
    choices are drawn from the prior.
    """
    given = as_choicemap(constraints)
    if selection is None:
        sel, explicit = Selection(frozenset(given.addresses()), complemented=True), False
    else:
        sel, explicit = as_selection(selection), True
    with context.intercept(_Unconstrain(sel, explicit, radius)), context.collect((LOG_JACOBIAN,)):
        tr, _ = gen_fn.generate(key, given, args)
    u = _to_unconstrained(tr, sel, explicit)
    return u.without(Selection(frozenset(given.addresses())))
