"""Choice maps: address -> value, as JAX pytrees.

A :class:`ChoiceMap` is a flat mapping from addresses (tuples of ``str``/``int``)
to array values. It passes through ``jit``, ``vmap``, ``grad`` and
``lax.scan`` like any pytree: the addresses are static structure, the values
(and masks, below) are the leaves.

A value may carry a boolean *mask*: the choice is present only where the mask
is true. Masks are how ppl keeps shapes static while the set of choices
changes at run time (the untaken branch of ``ppl.cond``; a partly observed
time series given to ``generate``). Build one with ``ppl.masked(value, mask)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core.address import Address, format_address, is_prefix, normalize, sort_key
from ppl.errors import AddressError, ArgumentError, MaskedEntriesError, MissingAddressError


class Masked:
    """A value that is present only where ``mask`` is true (leading batch dims)."""

    __slots__ = ("mask", "value")

    def __init__(self, value: Any, mask: Any):
        self.value = value
        self.mask = mask

    def __repr__(self) -> str:
        return f"Masked(value={self.value!r}, mask={self.mask!r})"


def masked(value: Any, mask: Any) -> Masked:
    """Mark ``value`` as present only where ``mask`` is true (for ``ppl.choices``)."""
    return Masked(value, mask)


def _check_no_prefix_clash(addrs: list[Address]) -> None:
    ordered = sorted(addrs, key=sort_key)
    for a, b in itertools.pairwise(ordered):
        if is_prefix(a, b):
            raise AddressError(
                f"address {format_address(a)} holds a value and is also the prefix of "
                f"{format_address(b)}; an address is either a choice or a namespace"
            )


@jax.tree_util.register_pytree_node_class
class ChoiceMap(Mapping):
    """Flat map from addresses to values, with optional presence masks.

    ``cm["w"]`` returns a value, ``cm["sub"]`` the sub-map under ``"sub"``,
    ``cm["sub", "z"]`` a nested value; ``"w" in cm``, ``cm | other`` (right
    wins), ``cm.to_dict()`` and iteration over addresses work as for dicts.
    """

    __slots__ = ("_masks", "_values")
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, values: Mapping | None = None, masks: Mapping | None = None, *, _trusted: bool = False):
        if _trusted:
            self._values = dict(values or {})
            self._masks = dict(masks or {})
            return
        vals: dict[Address, Any] = {}
        msks: dict[Address, Any] = {}
        for addr, v in (values or {}).items():
            a = normalize(addr, allow_empty=True)
            if isinstance(v, Masked):
                vals[a] = v.value
                msks[a] = v.mask
            else:
                vals[a] = v
        for addr, m in (masks or {}).items():
            a = normalize(addr, allow_empty=True)
            if a not in vals:
                raise AddressError(f"mask given for {format_address(a)}, which has no value")
            if m is not None:
                msks[a] = m
        _check_no_prefix_clash(list(vals))
        self._values = vals
        self._masks = msks

    # ------------------------------------------------------------------ build
    @staticmethod
    def empty() -> ChoiceMap:
        return ChoiceMap(_trusted=True)

    @staticmethod
    def from_dict(d: Mapping | ChoiceMap | None) -> ChoiceMap:
        """Build from nested dicts (``{"sub": {"z": 1.0}}``) or tuple keys."""
        if d is None:
            return ChoiceMap.empty()
        if isinstance(d, ChoiceMap):
            return d
        if not isinstance(d, Mapping):
            raise ArgumentError(f"expected a dict or ChoiceMap of choices, got {type(d).__name__}")
        flat: dict[Address, Any] = {}

        def walk(prefix: Address, node: Mapping) -> None:
            for k, v in node.items():
                a = prefix + normalize(k)
                if isinstance(v, ChoiceMap):
                    for sub, val in v._items_raw():
                        flat[a + sub] = val
                elif isinstance(v, Mapping):
                    walk(a, v)
                else:
                    flat[a] = v

        walk((), d)
        return ChoiceMap(flat)

    @staticmethod
    def value_at_root(value: Any, mask: Any = None) -> ChoiceMap:
        """A map holding one value at the empty address (a single choice)."""
        return ChoiceMap({(): value}, {(): mask} if mask is not None else None, _trusted=True)

    def _items_raw(self):
        for a, v in self._values.items():
            yield a, (Masked(v, self._masks[a]) if a in self._masks else v)

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self):
        keys = tuple(sorted(self._values, key=sort_key))
        mkeys = tuple(k for k in keys if k in self._masks)
        children = tuple(self._values[k] for k in keys) + tuple(self._masks[k] for k in mkeys)
        return children, (keys, mkeys)

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, mkeys = aux
        n = len(keys)
        values = dict(zip(keys, children[:n]))
        masks = dict(zip(mkeys, children[n:]))
        return cls(values, masks, _trusted=True)

    # ------------------------------------------------------------------ query
    def __getitem__(self, addr: Any) -> Any:
        a = normalize(addr, allow_empty=True)
        if a in self._values:
            return self._values[a]
        sub = self.get_submap(a)
        if sub.is_empty():
            raise MissingAddressError(f"no choice at address {format_address(a)}; present: {self._address_summary()}")
        return sub

    def __contains__(self, addr: object) -> bool:
        try:
            a = normalize(addr, allow_empty=True)
        except AddressError:
            return False
        return a in self._values or any(is_prefix(a, k) for k in self._values)

    def __iter__(self) -> Iterator[Address]:
        return iter(sorted(self._values, key=sort_key))

    def __len__(self) -> int:
        return len(self._values)

    def __or__(self, other: Any) -> ChoiceMap:
        other = ChoiceMap.from_dict(other)
        values = {
            k: v for k, v in self._values.items() if not any(is_prefix(k, o) or is_prefix(o, k) for o in other._values)
        }
        masks = {k: m for k, m in self._masks.items() if k in values}
        values.update(other._values)
        masks.update(other._masks)
        return ChoiceMap(values, masks, _trusted=True)

    def __repr__(self) -> str:
        if not self._values:
            return "ChoiceMap({})"
        parts = []
        for a in self:
            v = self._values[a]
            desc = _describe(v)
            if a in self._masks:
                desc += f" (mask {_describe(self._masks[a])})"
            parts.append(f"{format_address(a) if a else '()'}: {desc}")
        return "ChoiceMap({" + ", ".join(parts) + "})"

    def _address_summary(self, limit: int = 8) -> str:
        addrs = [format_address(a) if a else "()" for a in self]
        if not addrs:
            return "(none)"
        more = f", ... ({len(addrs) - limit} more)" if len(addrs) > limit else ""
        return ", ".join(addrs[:limit]) + more

    def addresses(self) -> list[Address]:
        """All addresses holding a value, in canonical order."""
        return list(self)

    def is_empty(self) -> bool:
        return not self._values

    def has_value(self) -> bool:
        """Whether this map holds a value at the empty address (a leaf)."""
        return () in self._values

    def value(self) -> Any:
        return self._values[()]

    def mask(self, addr: Any = ()) -> Any:
        """The mask at ``addr``, or ``None`` when the value is always present."""
        return self._masks.get(normalize(addr, allow_empty=True))

    def get_value(self, addr: Any, default: Any = None) -> Any:
        return self._values.get(normalize(addr, allow_empty=True), default)

    def get_submap(self, addr: Any) -> ChoiceMap:
        """The map under the prefix ``addr`` (prefix removed); empty if none."""
        p = normalize(addr, allow_empty=True)
        if not p:
            return self
        n = len(p)
        values = {k[n:]: v for k, v in self._values.items() if k[:n] == p}
        masks = {k[n:]: m for k, m in self._masks.items() if k[:n] == p}
        return ChoiceMap(values, masks, _trusted=True)

    def top_level_keys(self) -> set:
        """First components of all addresses (what a generative function visits)."""
        return {k[0] for k in self._values if k}

    def nest(self, addr: Any) -> ChoiceMap:
        """This map placed under the prefix ``addr``."""
        p = normalize(addr, allow_empty=True)
        return ChoiceMap(
            {p + k: v for k, v in self._values.items()},
            {p + k: m for k, m in self._masks.items()},
            _trusted=True,
        )

    def filter(self, selection: Any) -> ChoiceMap:
        """The choices whose addresses ``selection`` contains."""
        keep = [k for k in self._values if selection.contains(k)]
        return ChoiceMap(
            {k: self._values[k] for k in keep},
            {k: self._masks[k] for k in keep if k in self._masks},
            _trusted=True,
        )

    def without(self, selection: Any) -> ChoiceMap:
        """The choices whose addresses ``selection`` does not contain."""
        keep = [k for k in self._values if not selection.contains(k)]
        return ChoiceMap(
            {k: self._values[k] for k in keep},
            {k: self._masks[k] for k in keep if k in self._masks},
            _trusted=True,
        )

    def with_masks(self, masks: Mapping[Address, Any]) -> ChoiceMap:
        new = dict(self._masks)
        for k, m in masks.items():
            if m is None:
                new.pop(k, None)
            else:
                new[k] = m
        return ChoiceMap(self._values, new, _trusted=True)

    def map(self, fn) -> ChoiceMap:
        """Apply ``fn`` to every value (masks kept)."""
        return ChoiceMap({k: fn(v) for k, v in self._values.items()}, self._masks, _trusted=True)

    def masked_items(self):
        """``(address, value, mask_or_None)`` for every entry, canonical order."""
        for a in self:
            yield a, self._values[a], self._masks.get(a)

    def to_dict(self) -> dict:
        """Nested dicts; masked entries come out as :class:`Masked` values."""
        out: dict = {}
        for a, v in self._items_raw():
            if not a:
                return {(): v}
            node = out
            for c in a[:-1]:
                node = node.setdefault(c, {})
            node[a[-1]] = v
        return out

    def flat_dict(self) -> dict:
        """``{address_tuple: value}`` (masks dropped: use :meth:`masked_items`)."""
        if self._masks:
            raise MaskedEntriesError(
                "this choice map has masked entries at "
                + ", ".join(format_address(a) for a in self._masks)
                + "; use masked_items() to see the masks"
            )
        return {a: self._values[a] for a in self}


def _describe(v: Any) -> str:
    shape = getattr(v, "shape", None)
    dtype = getattr(v, "dtype", None)
    if shape is None:
        return repr(v)
    if shape == ():
        try:
            return repr(v.item())
        except Exception:
            pass
    return f"{dtype}{list(shape)}"


def choices(d: Mapping | ChoiceMap | None = None, **kwargs: Any) -> ChoiceMap:
    """Build a :class:`ChoiceMap` from nested dicts and/or keyword arguments.

    ``ppl.choices({"w": 1.0, "sub": {"z": 2.0}})``, ``ppl.choices(w=1.0)`` and
    ``ppl.choices({("sub", "z"): 2.0})`` all work; values may be
    ``ppl.masked(value, mask)`` for choices present only where ``mask`` holds.
    """
    base = ChoiceMap.from_dict(d)
    if kwargs:
        base = base | ChoiceMap.from_dict(kwargs)
    return base


def as_choicemap(x: Any) -> ChoiceMap:
    if isinstance(x, ChoiceMap):
        return x
    if x is None:
        return ChoiceMap.empty()
    if isinstance(x, Mapping):
        return ChoiceMap.from_dict(x)
    raise ArgumentError(f"expected a ChoiceMap or dict of choices, got {type(x).__name__}")


def combine_masks(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return jnp.logical_and(a, b)
