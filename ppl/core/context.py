"""Dynamic state of a running model: handler stack, address path, interceptors.

Three stacks live here, all thread-local and all touched only while Python
runs a model body (at trace time, never inside compiled code):

* the *handler* stack: the GFI method currently interpreting a ``@gen`` body
  (``simulate``, ``generate``, ...); ``ppl.sample`` dispatches to its top;
* the *address path*: the namespace of the site being run, for error messages
  that name the full address (``('sub', 'z')`` rather than ``'z'``);
* the *interceptors*: site transformations that apply to every primitive
  choice in their dynamic extent, nested calls and combinators included (the
  unconstrained-space view used by HMC and guides, the VI estimators). They
  are hashable and part of the compilation cache key.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from ppl.core.address import Address

_state = threading.local()


def _get(name: str) -> list:
    stack = getattr(_state, name, None)
    if stack is None:
        stack = []
        setattr(_state, name, stack)
    return stack


# --------------------------------------------------------------------- handlers
def current_handler() -> Any | None:
    stack = _get("handlers")
    return stack[-1] if stack else None


@contextlib.contextmanager
def handler(h: Any) -> Iterator[Any]:
    stack = _get("handlers")
    stack.append(h)
    try:
        yield h
    finally:
        stack.pop()


# ------------------------------------------------------------------ address path
def current_path() -> Address:
    return tuple(c for part in _get("path") for c in part)


def full_address(addr: Address) -> Address:
    return current_path() + tuple(addr)


@contextlib.contextmanager
def path(addr: Address) -> Iterator[None]:
    stack = _get("path")
    stack.append(tuple(addr))
    try:
        yield
    finally:
        stack.pop()


@contextlib.contextmanager
def fresh_path() -> Iterator[None]:
    """Run with an empty address path (a new top-level program)."""
    stack = _get("path")
    old = list(stack)
    stack.clear()
    try:
        yield
    finally:
        stack[:] = old


# ------------------------------------------------------------------ interceptors
def interceptors() -> tuple:
    return tuple(_get("interceptors"))


@contextlib.contextmanager
def intercept(*objs: Any) -> Iterator[None]:
    """Apply site interceptors to every primitive choice made inside."""
    stack = _get("interceptors")
    stack.extend(objs)
    try:
        yield
    finally:
        del stack[len(stack) - len(objs) :]


@contextlib.contextmanager
def no_interceptors() -> Iterator[None]:
    """Run with no site handlers installed (the stack is emptied and restored in place)."""
    stack = _get("interceptors")
    old = list(stack)
    stack.clear()
    try:
        yield
    finally:
        stack[:] = old


# ------------------------------------------------------------------ rewrites
def rewrites() -> tuple:
    """The ``ppl.reparameterize`` rules in force (outermost first); part of every compiled program's key.

    Kept apart from the interceptors: structure probes that run with no
    interceptors still see the model in its rewritten coordinates.
    """
    return tuple(_get("rewrites"))


@contextlib.contextmanager
def rewriting(r: Any) -> Iterator[None]:
    stack = _get("rewrites")
    stack.append(r)
    try:
        yield
    finally:
        stack.pop()


# ------------------------------------------------------------------ staging flag
def staging_enabled() -> bool:
    return getattr(_state, "staging", True)


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Run GFI methods op by op instead of compiling them (for debugging).

    Inside ``ppl.eager()`` a model body runs on concrete values, so ``print``
    shows numbers and a debugger can step through it; Python ``if`` on random
    values is then *not* caught (it silently fixes one branch), so use this
    only to debug, never for inference.
    """
    old = staging_enabled()
    _state.staging = False
    try:
        yield
    finally:
        _state.staging = old


# ------------------------------------------------------------- element index
@contextlib.contextmanager
def element(index: Any, size: int) -> Iterator[None]:
    """Mark the body of a batched boundary: element ``index`` (traced) of ``size``.

    ``ppl.vmap`` (one entry per batch element) and ``ppl.scan`` (one per time
    step) push their index while their body is traced, so an interceptor can
    tell which element of a site it is running for (``ppl.vi`` uses it to
    substitute a value at a single element of a batched site).
    """
    stack = _get("elements")
    stack.append((index, size))
    try:
        yield
    finally:
        stack.pop()


def elements() -> tuple:
    """``((index, size), ...)`` of the enclosing batched boundaries, outermost first."""
    return tuple(_get("elements"))


# ------------------------------------------------------------- additive effects
def _trace_state() -> Any:
    from jax.extend.core import get_opaque_trace_state

    return get_opaque_trace_state()


class _Frame:
    __slots__ = ("names", "totals", "trace_state")

    def __init__(self, names: tuple):
        self.names = names
        self.totals: dict = {}
        self.trace_state = _trace_state()

    def add(self, name: str, value: Any) -> None:
        import jax.numpy as jnp

        if name not in self.names:
            from ppl.errors import PPLError

            raise PPLError(
                f"effect channel {name!r} is not open (open: {self.names}); a handler emitted to a "
                "channel it did not declare in its `channels`"
            )
        if _trace_state() != self.trace_state:
            from ppl.core.address import format_address
            from ppl.errors import PPLError

            where = current_path()
            at = f" (at {format_address(where)})" if where else ""
            raise PPLError(
                f"a random choice{at} reported its {name!r} effect from inside a JAX transformation "
                "(jax.vmap, jax.lax.scan/map/cond, jax.jit, ...) that ppl cannot see, so the value would "
                "escape it. Batch or loop over random choices with ppl's boundaries instead: ppl.vmap / "
                "ppl.scan / ppl.cond inside models, ppl.vi.vmap / ppl.vi.scan inside objectives."
            )
        value = jnp.sum(value)
        self.totals[name] = self.totals[name] + value if name in self.totals else value

    def filled(self) -> dict:
        import jax.numpy as jnp

        return {n: self.totals.get(n, jnp.zeros(())) for n in self.names}


def effect_channels() -> tuple:
    """Names of the additive effect channels the active interceptors declare."""
    names: list = []
    for ic in interceptors():
        for n in getattr(ic, "channels", ()):
            if n not in names:
                names.append(n)
    return tuple(names)


def emit(name: str, value: Any) -> None:
    """Add ``value`` (summed to a scalar) to the effect channel ``name``.

    Effects are how an interceptor reports a quantity from deep inside a model
    (inside ``ppl.vmap``, ``ppl.scan``, ``ppl.cond`` or a compiled GFI call)
    to the code that installed it: every such boundary returns the totals of
    its body as extra outputs and re-emits them outside, summed.
    """
    stack = _get("frames")
    if not stack:
        from ppl.errors import PPLError

        raise PPLError(f"emit({name!r}) with no effect collector open (emit only from a site handler)")
    stack[-1].add(name, value)


def collecting() -> bool:
    """Whether an effect collector is open (somebody outside gathers emitted effects)."""
    return bool(_get("frames"))


@contextlib.contextmanager
def collect(names: tuple | None = None) -> Iterator[_Frame]:
    """Open a frame that gathers emitted effects (all declared channels)."""
    frame = _Frame(effect_channels() if names is None else tuple(names))
    stack = _get("frames")
    stack.append(frame)
    try:
        yield frame
    finally:
        stack.pop()


def run_collecting(fn: Any, *args: Any) -> tuple[Any, dict]:
    """``fn(*args)`` plus the totals of every open channel it emitted to."""
    names = effect_channels()
    if not names:
        return fn(*args), {}
    with collect(names) as frame:
        out = fn(*args)
    return out, frame.filled()


def reemit(totals: dict) -> None:
    """Emit totals gathered inside a boundary into the enclosing frame."""
    for n, v in totals.items():
        emit(n, v)
