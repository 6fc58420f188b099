"""Model transformations that fix choices: ``condition``, ``substitute``, ``do``.

Each returns a new generative function built from ``gen_fn`` and a map of
values ``v`` at some of its addresses ``S``. The fixed addresses are no
longer random choices of the result (they are not in ``trace.choices``,
cannot be constrained, selected or moved by a kernel); the program sees the
given value there. They differ only in what the fixed values contribute:

==================  ===================================  ==================================
transformation      ``log p~(t; x)`` of the free choices  the fixed values are
==================  ===================================  ==================================
``condition``       ``log p(t, v; x)``                    observations (``trace.observations``)
``substitute``      ``log p(t, v; x)``                    plugged-in values (``deterministics``)
``do``              ``log p(t, v; x) - log p(v | ...)``   interventions (``deterministics``)
==================  ===================================  ==================================

So ``condition(model, data)`` is the unnormalised posterior: any algorithm
run on it with no observations targets ``p(t | data)`` (the density of the
data enters as a factor, exactly like ``ppl.factor``). ``substitute`` scores
the plugged-in values too, so running inference on the rest gives the
conditional posterior ``p(t | v)`` (NumPyro's ``substitute`` handler keeps
their log density in the trace the same way); the difference to
``condition`` is bookkeeping only (``substitute``'d values are reported as
deterministics, not as observed data). ``do`` is Pearl's intervention: the
edges into the fixed addresses are cut, so their density is dropped and the
result is the mutilated model ``p(t; x | do(v))``. NumPyro's ``do`` also
draws a counterfactual copy of each intervened site; here the site simply
leaves the model (draw it yourself at another address if you need it).

The fixed values are leaves of the generative function (arrays, possibly
traced), so ``condition(model, data)`` for new data of the same shapes
reuses the compiled programs, and ``update`` of an old trace to the new
values rescores them (sequential data, a conditioned sub-model whose data
depend on earlier choices). Every GFI method is computed from ``gen_fn``'s
own methods with the fixed values as constraints:

* ``simulate``/``generate``: ``gen_fn.generate`` with ``v`` added to the
  constraints; weights and scores drop ``log p(v | ...)`` for ``do``;
* ``assess``: ``gen_fn.assess`` on ``t | v`` (``condition``/``substitute``);
  ``do`` scores with ``generate`` on the complete map and subtracts the
  projection on ``S``;
* ``update``: ``gen_fn.update`` with ``v'`` (the new values) added to the
  constraints; the old fixed values leave the discard;
* ``regenerate``: ``gen_fn.update`` to ``v'`` (skipped when the values are
  the trace's own Python objects), then ``gen_fn.regenerate`` of the
  selection less ``S``; the weight is corrected so that it is the MH ratio
  over kept choices, ``sum_kept log p'(t') - log p(t)``.

Masked entries (``ppl.masked``) cannot be fixed: pass partly observed data
to an algorithm's ``observations`` argument, whose masks are honoured.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl.core.address import format_address, is_prefix
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.selection import Selection
from ppl.core.trace import Trace
from ppl.errors import TransformError

MODES = ("condition", "substitute", "do")


def _fixed_selection(values: ChoiceMap) -> Selection:
    return Selection(frozenset(values.addresses()))


def _touching(cm: ChoiceMap, values: ChoiceMap) -> list:
    fixed = values.addresses()
    return [a for a in cm.addresses() if any(is_prefix(f, a) or is_prefix(a, f) for f in fixed)]


def _free_selection(selection: Selection, values: ChoiceMap, name: str) -> Selection:
    """``selection`` less the fixed addresses (they are not choices, so never selected)."""
    fixed = frozenset(values.addresses())
    if selection.complemented:
        return Selection(selection.prefixes | fixed, complemented=True)
    clash = [p for p in selection.prefixes if any(is_prefix(p, f) for f in fixed)]
    if clash:
        names = ", ".join(format_address(p) if p else "<all>" for p in clash)
        raise TransformError(
            f"the selection names {names}, which contains values fixed by {name}; fixed values are not "
            "random choices, so select the free addresses themselves (or use ppl.select_all())"
        )
    return selection


class FixedTrace(Trace):
    """Trace of a transformed call: the inner trace and the values it fixed."""

    _static_fields = ("mode",)
    _dynamic_fields = ("inner_gf", "inner", "values")

    def __init__(self, inner_gf: GenerativeFunction | None, inner: Trace, values: ChoiceMap, mode: str):
        self.inner_gf = inner_gf
        self.inner = inner
        self.values = values
        self.mode = mode

    def _set_gen_fn(self, gen_fn: Any) -> None:
        self.__dict__["inner_gf"] = None if gen_fn is None else gen_fn.gen_fn

    @property
    def gen_fn(self) -> Fixed | None:  # type: ignore[override]
        if self.inner_gf is None:
            return None
        return Fixed._build(self.inner_gf, self.values, self.mode)

    @property
    def fixed_log_density(self) -> Any:
        """``log p(v | ...)``: the density the fixed values have in the inner model."""
        return self.inner.project(_fixed_selection(self.values))

    @property
    def score(self) -> Any:  # type: ignore[override]
        if self.mode == "do":
            return self.inner.score - self.fixed_log_density
        return self.inner.score

    @property
    def args(self) -> Any:  # type: ignore[override]
        return self.inner.args

    @property
    def retval(self) -> Any:  # type: ignore[override]
        return self.inner.retval

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices.without(_fixed_selection(self.values))

    @property
    def observations(self) -> ChoiceMap:
        """The conditioned values (``condition``); empty for ``substitute`` and ``do``."""
        return self.values if self.mode == "condition" else ChoiceMap.empty()

    @property
    def deterministics(self) -> ChoiceMap:
        det = self.inner.deterministics
        return det if self.mode == "condition" else det | self.values

    def project(self, selection: Selection) -> Any:
        """Log density of the selected free choices (the fixed values are never selected)."""
        if selection.complemented:
            return self.inner.project(Selection(selection.prefixes | frozenset(self.values.addresses()), True))
        covered = frozenset(a for a in self.values.addresses() if selection.contains(a))
        return self.inner.project(selection) - self.inner.project(Selection(covered))


class Fixed(GenerativeFunction):
    """``gen_fn`` with the values ``values`` fixed (see the module docstring for the three modes)."""

    _fields = ("gen_fn", "values", "mode", "name")

    def __init__(self, gen_fn: GenerativeFunction, values: Any, mode: str):
        if mode not in MODES:
            raise TransformError(f"unknown transformation {mode!r}; expected one of {MODES}")
        if not isinstance(gen_fn, GenerativeFunction):
            raise TransformError(
                f"ppl.{mode} needs a generative function (a @ppl.gen function), got {type(gen_fn).__name__}"
            )
        try:
            cm = as_choicemap(values)
        except Exception as e:  # any malformed map is the user input
            raise TransformError(f"ppl.{mode}: the values must be a dict or ChoiceMap of addresses: {e}") from e
        if cm.is_empty():
            raise TransformError(f"ppl.{mode}({gen_fn.name}, ...) was given no values to fix")
        masked = [a for a, _, m in cm.masked_items() if m is not None]
        if masked:
            raise TransformError(
                f"ppl.{mode} cannot fix the masked entries at {', '.join(format_address(a) for a in masked)}: "
                "a value that is only partly given stays partly random; pass partly observed data to the "
                "algorithm's observations argument instead, which honours masks"
            )
        cm = cm.map(lambda v: v if isinstance(v, jax.Array) else jnp.asarray(v))
        self.gen_fn = gen_fn
        self.values = cm
        self.mode = mode
        self.name = f"{mode}({gen_fn.name})"

    @classmethod
    def _build(cls, gen_fn: GenerativeFunction, values: ChoiceMap, mode: str) -> Fixed:
        obj = object.__new__(cls)
        obj.__dict__.update(gen_fn=gen_fn, values=values, mode=mode, name=f"{mode}({gen_fn.name})")
        return obj

    # ------------------------------------------------------------- helpers
    @property
    def _sel(self) -> Selection:
        return _fixed_selection(self.values)

    def _free(self, cm: ChoiceMap, what: str) -> ChoiceMap:
        bad = _touching(cm, self.values)
        if bad:
            raise TransformError(
                f"{what} at {', '.join(format_address(a) for a in bad)}, which {self.name} fixes; "
                f"fixed values are not random choices (fixed here: {self.values._address_summary()})"
            )
        return cm

    def _wrap(self, tr: Trace) -> FixedTrace:
        return FixedTrace(self.gen_fn, tr, self.values, self.mode)

    def _dropped(self, tr: Trace) -> Any:
        """What the fixed values take out of the weight: their density for ``do``, else nothing."""
        return tr.project(self._sel) if self.mode == "do" else jnp.zeros(())

    # ------------------------------------------------------------------ GFI
    def _simulate(self, key: Any, args: tuple) -> FixedTrace:
        tr, _ = self.gen_fn.generate(key, self.values, args)
        return self._wrap(tr)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        self._free(choices, "choices were given")
        full = choices | self.values
        if self.mode != "do":
            return self.gen_fn.assess(full, args)
        tr, _ = self.gen_fn.generate(jax.random.key(0), full, args)
        missing = [a for a in tr.choices.addresses() if a not in full]
        if missing:
            raise TransformError(
                f"{self.name}.assess needs every free choice; missing "
                + ", ".join(format_address(a) for a in missing[:8])
            )
        return tr.score - self._dropped(tr), tr.retval

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[FixedTrace, Any]:
        self._free(constraints, "constraints were given")
        tr, w = self.gen_fn.generate(key, constraints | self.values, args)
        return self._wrap(tr), w - self._dropped(tr)

    def _update(self, key: Any, trace: FixedTrace, constraints: ChoiceMap, args: tuple):
        self._free(constraints, "constraints were given")
        old = trace.inner
        tr, w, discard = self.gen_fn.update(key, old, constraints | self.values, args)
        w = w - (self._dropped(tr) - self._dropped(old))
        return self._wrap(tr), w, discard.without(self._sel | _fixed_selection(trace.values))

    def _regenerate(self, key: Any, trace: FixedTrace, selection: Selection, args: tuple):
        sel = _free_selection(selection, self.values, self.name)
        old = trace.inner
        k1, k2 = jax.random.split(key)
        if trace.values is self.values:
            mid, w_mid = old, jnp.zeros(())
        else:
            # new fixed values: move to them first (a deterministic update), then propose. The update
            # rescored the selected old choices too; they take no part in the MH ratio, so take that out.
            mid, w_mid, _ = self.gen_fn.update(k1, old, self.values, args)
            w_mid = w_mid - (mid.project(sel) - old.project(sel))
        tr, w = self.gen_fn.regenerate(k2, mid, sel, args)
        w = w_mid + w - (self._dropped(tr) - self._dropped(old))
        return self._wrap(tr), w

    def _check_trace(self, trace: Any, method: str) -> None:
        if not isinstance(trace, FixedTrace):
            raise TransformError(f"{self.name}.{method} expects a trace of {self.name}, got {type(trace).__name__}")
        super()._check_trace(trace, method)


def condition(gen_fn: GenerativeFunction, data: Any) -> Fixed:
    """``gen_fn`` with ``data`` observed: the unnormalised posterior as a generative function.

    The data addresses leave the random choices; their log density stays in
    every score and weight (as a ``ppl.factor`` would), so inference on the
    result needs no ``observations`` argument. ``trace.observations`` holds
    the data.
    """
    return Fixed(gen_fn, data, "condition")


def substitute(gen_fn: GenerativeFunction, values: Any) -> Fixed:
    """``gen_fn`` with ``values`` plugged in at their addresses, still scored.

    Like :func:`condition` for every score and weight (the plugged-in values'
    log density is kept, so inference on the rest targets ``p(rest | values)``);
    the values are reported as deterministics rather than observed data.
    """
    return Fixed(gen_fn, values, "substitute")


def do(gen_fn: GenerativeFunction, values: Any) -> Fixed:
    """The intervention ``do(values)``: the program sees ``values``; their density is dropped.

    Every edge into an intervened address is cut: ``log p(t | do(v))`` is the
    model's log density without the terms of the intervened values.
    """
    return Fixed(gen_fn, values, "do")


__all__ = ["Fixed", "FixedTrace", "condition", "do", "substitute"]
