"""Traces: the record of one execution of a generative function.

Every trace has ``.choices`` (a :class:`ChoiceMap`), ``.score`` (the log joint
density of its choices plus any ``ppl.factor`` terms, a scalar), ``.retval``,
``.args`` and ``.gen_fn``. Traces are pytrees: the non-array parts of
``args``/``retval`` and of the generative function (itself a pytree, see
:mod:`ppl.core.identity`) are static structure, everything else is leaves, so
traces go through ``jit``, ``vmap`` and ``lax.scan``.

Inside ``ppl.vmap``/``ppl.scan`` the per-element traces are stored
*detached* (``gen_fn`` is ``None``): the element function is the
combinator's, so its captured arrays are not stacked once per element.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from ppl.core.address import Address, format_address
from ppl.core.choicemap import ChoiceMap
from ppl.core.selection import Selection, as_selection
from ppl.core.staging import combine, partition
from ppl.errors import MissingAddressError


class Trace:
    """Base class. Subclasses list their fields; args/retval are partitioned."""

    _static_fields: ClassVar[tuple[str, ...]] = ()
    _dynamic_fields: ClassVar[tuple[str, ...]] = ()
    _partitioned_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for f in cls.__dict__.get("_partitioned_fields", ()):
            setattr(cls, f, _partitioned_property(f))
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    def _flatten(self):
        children = [getattr(self, f) for f in self._dynamic_fields]
        children += [self.__dict__[f"_{f}_dyn"] for f in self._partitioned_fields]
        aux = (
            tuple(getattr(self, f) for f in self._static_fields),
            tuple(self.__dict__[f"_{f}_spec"] for f in self._partitioned_fields),
        )
        return tuple(children), aux

    @classmethod
    def _unflatten(cls, aux, children):
        obj = object.__new__(cls)
        statics, specs = aux
        for f, v in zip(cls._static_fields, statics):
            obj.__dict__[f] = v
        nd = len(cls._dynamic_fields)
        for f, v in zip(cls._dynamic_fields, children[:nd]):
            obj.__dict__[f] = v
        for f, dyn, spec in zip(cls._partitioned_fields, children[nd:], specs):
            obj.__dict__[f"_{f}_dyn"] = dyn
            obj.__dict__[f"_{f}_spec"] = spec
        return obj

    # ----------------------------------------------------------------- interface
    gen_fn: Any = None
    args: Any = ()
    retval: Any = None
    score: Any = 0.0

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.empty()

    def get_choices(self) -> ChoiceMap:
        return self.choices

    @property
    def deterministics(self) -> ChoiceMap:
        """Values recorded with ``ppl.deterministic`` (no density)."""
        return ChoiceMap.empty()

    def project(self, selection: Selection) -> Any:
        """Log density of the selected choices (factors excluded)."""
        return jnp.zeros(())

    def __getitem__(self, addr: Any) -> Any:
        cm = self.choices
        if addr in cm:
            return cm[addr]
        det = self.deterministics
        if addr in det:
            return det[addr]
        raise MissingAddressError(f"no choice or deterministic value at {addr!r}; choices: {cm._address_summary()}")

    def with_gen_fn(self, gen_fn: Any) -> Trace:
        """A shallow copy whose generative function is ``gen_fn`` (``None``: detached)."""
        obj = object.__new__(type(self))
        obj.__dict__.update(self.__dict__)
        obj._set_gen_fn(gen_fn)
        return obj

    def _set_gen_fn(self, gen_fn: Any) -> None:
        if "gen_fn" in type(self)._dynamic_fields or "gen_fn" in type(self)._static_fields:
            self.__dict__["gen_fn"] = gen_fn

    def log_density_of(self, selection: Any) -> Any:
        return self.project(as_selection(selection))

    def __repr__(self) -> str:
        name = getattr(self.gen_fn, "name", None) or type(self).__name__
        return f"{type(self).__name__}({name}, score={_short(self.score)}, choices={self.choices!r})"


def detached(out: Any) -> Any:
    """``out`` (a trace, or a tuple starting with one) with the trace detached from its function."""
    if isinstance(out, Trace):
        return out.with_gen_fn(None)
    if isinstance(out, tuple) and out and isinstance(out[0], Trace):
        return (out[0].with_gen_fn(None), *out[1:])
    return out


def _partitioned_property(name: str) -> property:
    """A field split once, at assignment, into array leaves and static parts.

    Splitting at assignment (not at flatten time) keeps the pytree structure
    fixed whatever JAX puts in the leaves (tracers, shape structs, axis specs).
    """

    def get(self: Trace) -> Any:
        return combine(list(self.__dict__[f"_{name}_dyn"]), self.__dict__[f"_{name}_spec"])

    def set_(self: Trace, value: Any) -> None:
        dyn, spec = partition(value)
        self.__dict__[f"_{name}_dyn"] = tuple(dyn)
        self.__dict__[f"_{name}_spec"] = spec

    return property(get, set_)


def _short(x: Any) -> str:
    try:
        return f"{float(x):.4g}"
    except Exception:
        return f"{getattr(x, 'dtype', '')}{list(getattr(x, 'shape', ()))}"


class ChoiceTrace(Trace):
    """A single primitive choice: its value and log density."""

    _dynamic_fields = ("value", "score")

    def __init__(self, value: Any, score: Any):
        self.value = value
        self.score = score

    @property
    def retval(self) -> Any:  # type: ignore[override]
        return self.value

    @property
    def choices(self) -> ChoiceMap:
        return ChoiceMap.value_at_root(self.value)

    def project(self, selection: Selection) -> Any:
        return self.score if selection.contains(()) else jnp.zeros_like(self.score)


class FactorTrace(Trace):
    """A ``ppl.factor`` term: adds ``score`` to the log density, no choice."""

    _dynamic_fields = ("score",)

    def __init__(self, score: Any):
        self.score = score


class DeterministicTrace(Trace):
    """A ``ppl.deterministic`` value: recorded, no density."""

    _dynamic_fields = ("value",)

    def __init__(self, value: Any):
        self.value = value

    @property
    def score(self) -> Any:  # type: ignore[override]
        return jnp.zeros(())

    @property
    def deterministics(self) -> ChoiceMap:
        return ChoiceMap.value_at_root(self.value)


class GenTrace(Trace):
    """Trace of a ``@gen`` function: one sub-trace per visited address."""

    _static_fields = ("keys",)
    _dynamic_fields = ("gen_fn", "score", "subtraces")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, retval: Any, score: Any, subtraces: dict[Address, Trace]):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = retval
        self.score = score
        self.keys = tuple(subtraces)
        self.subtraces = tuple(subtraces.values())

    def subtrace_map(self) -> dict[Address, Trace]:
        return dict(zip(self.keys, self.subtraces))

    def get_subtrace(self, addr: Any) -> Trace:
        from ppl.core.address import normalize

        a = normalize(addr)
        for k, t in zip(self.keys, self.subtraces):
            if k == a:
                return t
        raise MissingAddressError(f"no call or choice at {format_address(a)}")

    @property
    def choices(self) -> ChoiceMap:
        values: dict = {}
        masks: dict = {}
        for k, t in zip(self.keys, self.subtraces):
            for a, v, m in t.choices.masked_items():
                values[k + a] = v
                if m is not None:
                    masks[k + a] = m
        return ChoiceMap(values, masks, _trusted=True)

    @property
    def deterministics(self) -> ChoiceMap:
        values: dict = {}
        masks: dict = {}
        for k, t in zip(self.keys, self.subtraces):
            for a, v, m in t.deterministics.masked_items():
                values[k + a] = v
                if m is not None:
                    masks[k + a] = m
        return ChoiceMap(values, masks, _trusted=True)

    def project(self, selection: Selection) -> Any:
        total = jnp.zeros(())
        for k, t in zip(self.keys, self.subtraces):
            total = total + t.project(selection.subselection(k))
        return total
