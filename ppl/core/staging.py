"""Compile every GFI call, holding non-array arguments static.

GFI methods run their model body under ``jax.jit``. Two reasons:

* a Python ``if``/``while`` on a random value always fails loudly (the value
  is a tracer), eagerly as under the user's own ``jit``, so the program means
  the same thing in both; ppl turns JAX's error into one that points at
  ``ppl.cond``/``ppl.scan`` and names the choices involved;
* a model called eagerly in a notebook runs as one compiled program, not op
  by op, and repeated calls with equal shapes reuse the compiled code.

Arguments are split into *dynamic* leaves (JAX and NumPy arrays, Python
floats) that are traced, and *static* leaves (Python ints and bools, strings,
functions, ``None``...) that are part of the cache key. So a Python int that
sets a shape (a number of components, a lag order) just works when passed as
an argument; under the user's own ``jax.jit`` it must be marked static there
(``static_argnums``) or closed over, as with any JAX function.

Inside the user's ``jit``/``grad``/``vmap`` (any argument is a tracer) the
method is traced inline instead: there is nothing to gain from a nested
``jit`` there, and inlining keeps compile times at those of hand-written code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ppl.core import context


def is_dynamic(x: Any) -> bool:
    """Whether a pytree leaf is traced (arrays, Python floats) or static."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, complex, jax.ShapeDtypeStruct))


class _Unhashable:
    """Wrap an unhashable static leaf; compared by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Unhashable) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return _Unhashable(x)


class StaticSpec:
    """Hashable description of a pytree's structure and static leaves."""

    __slots__ = ("_hash", "static", "treedef")

    def __init__(self, treedef: Any, static: tuple):
        self.treedef = treedef
        self.static = static
        self._hash = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticSpec) or self.treedef != other.treedef:
            return False
        if len(self.static) != len(other.static):
            return False
        for a, b in zip(self.static, other.static):
            if (a is None) != (b is None) or type(a) is not type(b):
                return False
            if a is not None and not (a is b or a == b):
                return False
        return True

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.treedef, tuple((type(s), s) for s in self.static)))
        return self._hash


_MISSING = object()


def partition(tree: Any) -> tuple[list, StaticSpec]:
    """Split a pytree into dynamic leaves and a hashable static spec."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dyn = [x if is_dynamic(x) else _MISSING for x in leaves]
    static = tuple(None if is_dynamic(x) else _hashable(x) for x in leaves)
    return [x for x in dyn if x is not _MISSING], StaticSpec(treedef, static)


def combine(dyn: list, spec: StaticSpec) -> Any:
    it = iter(dyn)
    leaves = [next(it) if s is None else (s.obj if isinstance(s, _Unhashable) else s) for s in spec.static]
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


@jax.tree_util.register_pytree_node_class
class Partitioned:
    """A pytree whose non-array leaves travel as static structure.

    Returning ``Partitioned(x)`` from a jitted function keeps ``x``'s Python
    ints, strings and functions as they are instead of failing or turning
    them into arrays. The split happens once, at construction.
    """

    __slots__ = ("dyn", "spec")

    def __init__(self, value: Any):
        dyn, spec = partition(value)
        self.dyn = tuple(dyn)
        self.spec = spec

    @property
    def value(self) -> Any:
        return combine(list(self.dyn), self.spec)

    def tree_flatten(self):
        return self.dyn, self.spec

    @classmethod
    def tree_unflatten(cls, spec, children):
        obj = object.__new__(cls)
        obj.dyn = tuple(children)
        obj.spec = spec
        return obj


def clear_caches() -> None:
    """Free every compiled program (JAX's caches, which hold ppl's too).

    All of ppl's compiled programs live in one place, the cache of
    :func:`compiled` (inside JAX's own jit cache), keyed by static structure.
    A long session that defines many throw-away models can call
    ``ppl.clear_caches()`` to release them.
    """
    jax.clear_caches()


def _run_program(static: tuple, dyn: tuple) -> Any:
    impl, spec, _handlers, _rewrites = static
    out, totals = context.run_collecting(impl, *combine(list(dyn), spec))
    return Partitioned(out), totals


#: the one compile cache: keyed by (implementation, static structure of the arguments, handler stack,
#: the ppl.reparameterize rewrites in force)
_PROGRAMS = jax.jit(_run_program, static_argnums=(0,))


def compiled(impl: Callable[..., Any], *args: Any) -> Any:
    """``impl(*args)``, compiled; non-array leaves of ``args`` are static.

    ``impl`` must be a module-level function (its identity is part of the
    cache key). Generative functions, traces and closures among ``args`` are
    pytrees: their arrays are inputs of the program and their code and static
    configuration are part of the key (:mod:`ppl.core.identity`), so equal
    structure with new values reuses the compiled program. Inside a JAX
    transformation (any leaf is a tracer) or under ``ppl.eager()`` it runs
    inline.
    """
    if not context.staging_enabled():
        return impl(*args)
    dyn, spec = partition(args)
    if any(isinstance(x, jax.core.Tracer) for x in dyn):
        # Already inside a JAX transformation (the user's jit/vmap/grad, or an
        # enclosing GFI call): trace inline; values are tracers either way.
        return impl(*args)
    out, totals = _PROGRAMS((impl, spec, context.interceptors(), context.rewrites()), tuple(dyn))
    context.reemit(totals)
    return out.value


def staged(owner: Any, name: str, impl: Callable[..., Any], *args: Any) -> Any:
    """``compiled(impl, *args)`` (the older spelling; ``owner`` and ``name`` are not part of the key)."""
    return compiled(impl, *args)
