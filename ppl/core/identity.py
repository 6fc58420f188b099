"""Structural identity: generative functions and Python functions as pytrees.

A generative function is a *value*. Its identity is its code and static
configuration; the arrays it captures (a scale factor, a latent a closure
reads, network weights) are pytree leaves. Two generative functions built
from the same code and static configuration compare equal whatever their
leaves, so

* ``update``/``regenerate`` recognise a kernel defined inside a model body
  (a new Python closure on every run) as the function that made the old
  trace, and keep its values;
* the compile cache (:func:`ppl.core.staging.compiled`) is keyed by the
  static part and the tree structure: a ``ppl.scale(g, 2.0)`` passed as an
  argument after ``ppl.scale(g, 0.5)`` reuses the program with the new
  factor as an input, never a program with the old factor baked in.

:class:`FunctionTree` gives a Python function the same treatment: its code
object, module and Python-scalar captures are static; every captured value
that holds an array (or is itself a function or generative function) is a
child. Rebuilding the tree with new leaves builds a new function object over
fresh closure cells. A cell the function itself writes (``nonlocal x``) is
shared state: it is kept as the same cell and does not take part in
identity.
"""

from __future__ import annotations

import dis
import threading
import types
from typing import Any

import jax
import numpy as np

_building = threading.local()
_WRITTEN_CELLS: dict = {}

#: a cell whose contents the function reads as a leaf
_CHILD = "child"
#: a cell holding a static value (compared by value, or by identity when unhashable)
_STATIC = "static"
#: a cell the function writes (``nonlocal``): shared, not part of identity
_SHARED = "shared"
#: an empty cell (a name bound later in the enclosing function)
_EMPTY = "empty"


def _written_freevars(code: types.CodeType) -> frozenset:
    """Free variables the code assigns (``nonlocal x; x = ...``)."""
    found = _WRITTEN_CELLS.get(code)
    if found is None:
        names = set()
        for ins in dis.get_instructions(code):
            if ins.opname in ("STORE_DEREF", "DELETE_DEREF") and ins.argval in code.co_freevars:
                names.add(ins.argval)
        found = frozenset(names)
        _WRITTEN_CELLS[code] = found
    return found


class _Identity:
    """Wraps an unhashable static object; equal only to itself."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


class _Shared:
    """A shared closure cell: travels with the static part, equal to every other."""

    __slots__ = ("cell",)

    def __init__(self, cell: Any):
        self.cell = cell

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Shared)

    def __hash__(self) -> int:
        return 0


def _static(x: Any) -> Any:
    try:
        hash(x)
    except TypeError:
        return _Identity(x)
    if isinstance(x, (list, dict, set)):  # hashable subclasses of mutable containers
        return _Identity(x)
    return x


def _has_array(x: Any) -> bool:
    try:
        leaves = jax.tree_util.tree_leaves(x)
    except Exception:
        return False
    return any(isinstance(leaf, (jax.Array, np.ndarray, np.generic)) for leaf in leaves)


def as_tree(x: Any) -> tuple[str, Any]:
    """Classify a captured value: ``(kind, payload)`` with payload a child or a static value."""
    from ppl.core.generative_function import GenerativeFunction

    if isinstance(x, types.FunctionType):
        seen = getattr(_building, "ids", None)
        if seen is not None and id(x) in seen:
            return _STATIC, _Identity(x)  # a recursive closure: by identity
        return _CHILD, FunctionTree(x)
    if isinstance(x, GenerativeFunction) or _has_array(x):
        return _CHILD, x
    return _STATIC, _static(x)


class _FnStatic:
    """The static part of a :class:`FunctionTree` (hashable, compared structurally)."""

    __slots__ = ("_hash", "code", "defaults", "globals", "kwdefaults", "layout", "module", "name")

    def __init__(self, code, module, name, globals_, layout, defaults, kwdefaults):
        self.code = code
        self.module = module
        self.name = name
        self.globals = globals_
        self.layout = layout  # per cell: (kind, static value | _Shared | None)
        self.defaults = defaults
        self.kwdefaults = kwdefaults
        self._hash = None

    def _key(self) -> tuple:
        return (self.code, self.module, self.layout, self.defaults, self.kwdefaults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FnStatic) and (self is other or self._key() == other._key())

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._key())
        return self._hash


class FunctionTree:
    """A Python function as a pytree (see the module docstring)."""

    __slots__ = ("_fn", "children", "static")

    def __init__(self, fn: types.FunctionType):
        seen = getattr(_building, "ids", None)
        top = seen is None
        if top:
            seen = _building.ids = set()
        seen.add(id(fn))
        try:
            written = _written_freevars(fn.__code__)
            layout, children = [], []
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
                if name in written:
                    layout.append((_SHARED, _Shared(cell)))
                    continue
                try:
                    contents = cell.cell_contents
                except ValueError:
                    layout.append((_EMPTY, _Shared(cell)))
                    continue
                kind, payload = as_tree(contents)
                if kind == _CHILD:
                    layout.append((_CHILD, None))
                    children.append(payload)
                else:
                    layout.append((_STATIC, payload))
            defaults = self._split_defaults(fn.__defaults__ or (), children)
            kw = fn.__kwdefaults__ or {}
            kwdefaults = tuple(sorted((k, _static(v)) for k, v in kw.items() if not _has_array(v)))
            kw_children = {k: v for k, v in kw.items() if _has_array(v)}
            if kw_children:
                children.append(kw_children)
        finally:
            seen.discard(id(fn))
            if top:
                _building.ids = None
        self.static = _FnStatic(
            fn.__code__, fn.__module__, fn.__name__, fn.__globals__, tuple(layout), defaults, kwdefaults
        )
        self.children = tuple(children)
        self._fn = fn

    @staticmethod
    def _split_defaults(defaults: tuple, children: list) -> tuple:
        out = []
        for v in defaults:
            kind, payload = as_tree(v)
            if kind == _CHILD:
                children.append(payload)
                out.append((_CHILD, None))
            else:
                out.append((_STATIC, payload))
        return tuple(out)

    def function(self) -> types.FunctionType:
        """The Python function this tree stands for (rebuilt over its current leaves)."""
        if self._fn is None:
            self._fn = self._rebuild()
        return self._fn

    def _rebuild(self) -> types.FunctionType:
        st = self.static
        it = iter(self.children)

        def value(kind: str, payload: Any) -> Any:
            if kind == _CHILD:
                v = next(it)
                return v.function() if isinstance(v, FunctionTree) else v
            return payload.obj if isinstance(payload, _Identity) else payload

        cells = []
        for kind, payload in st.layout:
            if kind in (_SHARED, _EMPTY):
                cells.append(payload.cell)
            else:
                cells.append(types.CellType(value(kind, payload)))
        defaults = tuple(value(k, p) for k, p in st.defaults) or None
        fn = types.FunctionType(st.code, st.globals, st.name, defaults, tuple(cells) or None)
        kw = {k: (v.obj if isinstance(v, _Identity) else v) for k, v in st.kwdefaults}
        rest = list(it)
        if rest:
            kw.update(rest[-1])
        if kw:
            fn.__kwdefaults__ = kw
        return fn

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionTree) and same_structure(self, other)

    def __hash__(self) -> int:
        return hash(self.static)


def _flatten_fn(t: FunctionTree) -> tuple[tuple, _FnStatic]:
    return t.children, t.static


def _unflatten_fn(static: _FnStatic, children: tuple) -> FunctionTree:
    t = object.__new__(FunctionTree)
    t.static = static
    t.children = tuple(children)
    t._fn = None
    return t


jax.tree_util.register_pytree_node(FunctionTree, _flatten_fn, _unflatten_fn)


def static_part(tree: Any) -> Any:
    """The hashable static part of a pytree (structure and non-array leaves)."""
    from ppl.core.staging import partition

    return partition(tree)[1]


def same_structure(a: Any, b: Any) -> bool:
    """Whether two values have the same code and static configuration (leaves ignored)."""
    return a is b or static_part(a) == static_part(b)


__all__ = ["FunctionTree", "same_structure", "static_part"]
