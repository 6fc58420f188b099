"""Addresses: the names of random choices.

An address is a non-empty tuple of components, each a ``str`` or an ``int``.
Users may write a bare string (``"w"``) or int for a one-component address;
``normalize`` turns every accepted form into the tuple form used internally.
"""

from __future__ import annotations

import zlib
from typing import Any

from ppl.errors import AddressError

Component = str | int
Address = tuple  # tuple[Component, ...]


def normalize(addr: Any, *, allow_empty: bool = False) -> Address:
    """Return ``addr`` as a tuple of ``str``/``int`` components, or raise."""
    if isinstance(addr, (str, int)) and not isinstance(addr, bool):
        return (addr,)
    if isinstance(addr, tuple):
        for c in addr:
            if isinstance(c, bool) or not isinstance(c, (str, int)):
                raise AddressError(
                    f"address {addr!r}: component {c!r} is a {type(c).__name__}; address components must be str or int"
                )
        if not addr and not allow_empty:
            raise AddressError("the empty address () cannot name a choice")
        return addr
    raise AddressError(
        f"{addr!r} is not an address: use a string, an int, or a tuple of them (for example 'w' or ('layer', 0, 'w'))"
    )


def format_address(addr: Address) -> str:
    """Human-readable form used in error messages: ``'w'`` or ``('sub', 'z')``."""
    if len(addr) == 1:
        return repr(addr[0])
    return repr(tuple(addr))


def sort_key(addr: Address) -> tuple:
    """A total order on addresses mixing ``str`` and ``int`` components."""
    return tuple((0, c, "") if isinstance(c, int) else (1, 0, c) for c in addr)


def fold_key(key: Any, addr: Address) -> Any:
    """Derive the key of the site at ``addr`` from its caller's key.

    Each component is hashed (CRC-32 of its ``repr``, computed once at trace
    time) and folded into the key, so two different addresses get independent
    streams and re-running the program gives every site the same key.
    """
    import jax

    for c in addr:
        key = jax.random.fold_in(key, zlib.crc32(repr(c).encode()) & 0x7FFFFFFF)
    return key


def is_prefix(prefix: Address, addr: Address) -> bool:
    return len(prefix) <= len(addr) and addr[: len(prefix)] == prefix
