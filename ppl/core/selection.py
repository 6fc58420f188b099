"""Selections: static sets of addresses.

A selection names the choices an operation acts on (``regenerate``'s
resampled choices, the continuous block an HMC kernel moves). Selecting an
address selects everything under it: ``select("sub")`` contains
``("sub", "z")``. Selections are pytrees without leaves, so they pass through
``jit`` as static structure.
"""

from __future__ import annotations

from typing import Any

import jax

from ppl.core.address import Address, format_address, is_prefix, normalize, sort_key
from ppl.errors import SelectionError


@jax.tree_util.register_pytree_node_class
class Selection:
    """A set of address prefixes, or its complement."""

    __slots__ = ("complemented", "prefixes")

    def __init__(self, prefixes: frozenset = frozenset(), complemented: bool = False):
        self.prefixes = frozenset(prefixes)
        self.complemented = bool(complemented)

    # pytree with no leaves: selections are static
    def tree_flatten(self):
        return (), (self.prefixes, self.complemented)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selection) and (self.prefixes, self.complemented) == (
            other.prefixes,
            other.complemented,
        )

    def __hash__(self) -> int:
        return hash((self.prefixes, self.complemented))

    def __repr__(self) -> str:
        inner = ", ".join(format_address(a) if a else "<all>" for a in sorted(self.prefixes, key=sort_key))
        return f"~select({inner})" if self.complemented else f"select({inner})"

    def contains(self, addr: Any) -> bool:
        """Whether the choice at ``addr`` is selected."""
        a = normalize(addr, allow_empty=True)
        hit = any(is_prefix(p, a) for p in self.prefixes)
        return hit != self.complemented

    __call__ = contains

    def __contains__(self, addr: Any) -> bool:
        return self.contains(addr)

    def subselection(self, component: Any) -> Selection:
        """The selection seen from inside the namespace ``component``."""
        head = normalize(component, allow_empty=True)
        if any(is_prefix(p, head) for p in self.prefixes):
            inner = frozenset({()})
        else:
            n = len(head)
            inner = frozenset(p[n:] for p in self.prefixes if p[:n] == head)
        return Selection(inner, self.complemented)

    def is_empty(self) -> bool:
        """True when nothing at all is selected."""
        return not self.complemented and not self.prefixes

    def is_all(self) -> bool:
        return (() in self.prefixes and not self.complemented) or (self.complemented and not self.prefixes)

    def complement(self) -> Selection:
        return Selection(self.prefixes, not self.complemented)

    __invert__ = complement

    def __or__(self, other: Selection) -> Selection:
        if not self.complemented and not other.complemented:
            return Selection(self.prefixes | other.prefixes)
        raise SelectionError(
            "union of complemented selections is not supported; build the union first, then complement"
        )

    def addresses(self) -> list[Address]:
        """The explicitly named prefixes (of the un-complemented set)."""
        return sorted(self.prefixes, key=sort_key)


def select(*addrs: Any) -> Selection:
    """``ppl.select("w", ("sub", "z"))``: the selection of those addresses."""
    return Selection(frozenset(normalize(a) for a in addrs))


def select_all() -> Selection:
    return Selection(frozenset({()}))


def select_none() -> Selection:
    return Selection(frozenset())


def as_selection(x: Any) -> Selection:
    if isinstance(x, Selection):
        return x
    if x is None:
        return select_none()
    if isinstance(x, (str, int, tuple)):
        return select(x)
    if isinstance(x, (list, set, frozenset)):
        return select(*x)
    raise SelectionError(f"expected a Selection (ppl.select(...)), got {type(x).__name__}")
