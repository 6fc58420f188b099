"""``ppl.vmap``: a batch of independent calls of one generative function.

``ppl.vmap(gf, in_axes=0)(*args) @ "xs"`` runs ``gf`` once per slice of the
batched arguments. Its choices are ``gf``'s choices with a leading batch axis
(``("xs", "z")`` has shape ``(N, ...)``), its score is the sum of the
per-element scores, and every GFI method is ``jax.vmap`` of ``gf``'s, with one
independent PRNG key per element. Constraints given to ``generate``,
``update`` and ``assess`` must carry the same leading axis (masks too, to
constrain only some elements).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import context, enumeration
from ppl.core.address import format_address
from ppl.core.batching import axes_of, batch, batch_size, log_total
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.selection import Selection
from ppl.core.trace import Trace, detached
from ppl.errors import CombinatorError, ConstraintShapeError


class VmapTrace(Trace):
    """Trace of a vmapped call: ``inner`` is the batched trace of the element."""

    _dynamic_fields = ("gen_fn", "score", "inner")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, retval: Any, score: Any, inner: Trace):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = retval
        self.score = score
        self.inner = inner

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices

    @property
    def deterministics(self) -> ChoiceMap:
        return self.inner.deterministics

    def project(self, selection: Selection) -> Any:
        return jnp.sum(self.inner.project(selection))


def check_leading_axis(cm: ChoiceMap, n: int, what: str) -> ChoiceMap:
    """Every value (and mask) in ``cm`` must have a leading axis of length ``n``.

    Returns ``cm`` with each scalar mask (the whole address present or not, as
    ``ppl.switch`` makes for the addresses of a branch) broadcast to ``(n,)``.
    """
    path = context.current_path()
    scalar_masks = {}
    for a, v, m in cm.masked_items():
        if m is not None and jnp.ndim(m) == 0:
            m = scalar_masks[a] = jnp.broadcast_to(m, (n,))
        for label, x in (("value", v), ("mask", m)):
            if x is None:
                continue
            shape = tuple(jnp.shape(x))
            if not shape or shape[0] != n:
                raise ConstraintShapeError(
                    f"{label} given at {format_address(path + a)} has shape {shape}; inside {what} every "
                    f"value needs a leading axis of length {n} (one entry per element)"
                )
    return cm.with_masks(scalar_masks) if scalar_masks else cm


class Vmap(GenerativeFunction):
    """Independent calls of ``gen_fn`` over a leading axis of its arguments."""

    def __init__(self, gen_fn: GenerativeFunction, in_axes: Any = 0, axis_size: int | None = None):
        if not isinstance(gen_fn, GenerativeFunction):
            raise CombinatorError(
                f"ppl.vmap needs a generative function (a @ppl.gen function), got {type(gen_fn).__name__}"
            )
        if not (in_axes is None or isinstance(in_axes, (int, tuple))):
            raise CombinatorError(
                f"in_axes must be an int, None or a tuple with one entry (a pytree prefix) per argument; "
                f"got {in_axes!r}"
            )
        self.gen_fn = gen_fn
        self.in_axes = in_axes
        self.axis_size = axis_size
        self.name = f"vmap({gen_fn.name})"

    def _axes(self, args: tuple) -> tuple:
        return axes_of(self.in_axes, len(args), self.name)

    def batch_size(self, args: tuple) -> int:
        return batch_size(args, self._axes(args), self.axis_size, self.name)

    def _vmap(self, fn: Any, args: tuple, *batched: Any) -> Any:
        """``jax.vmap(fn)(*batched, args)`` through the effect-forwarding batch primitive."""
        nb = len(batched)
        run = batch(
            lambda *xs: fn(*xs[:nb], xs[nb:]),
            in_axes=(0,) * nb + self._axes(args),
            axis_size=self.batch_size(args),
            where=self.name,
        )
        return run(*batched, *args)[0]

    def _trace(self, args: tuple, inner: Trace) -> VmapTrace:
        return VmapTrace(self, args, inner.retval, log_total(inner.score), inner)

    def _simulate(self, key: Any, args: tuple) -> VmapTrace:
        keys = jax.random.split(key, self.batch_size(args))
        inner = self._vmap(lambda k, a: detached(self.gen_fn.simulate(k, a)), args, keys)
        return self._trace(args, inner)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        n = self.batch_size(args)
        choices = check_leading_axis(choices, n, self.name)
        summed = enumeration.vmap_assess(self, choices, args)  # selected discrete choices summed out per element
        if summed is not None:
            return summed
        w, r = self._vmap(lambda c, a: self.gen_fn.assess(c, a), args, choices)
        return log_total(w), r

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[VmapTrace, Any]:
        n = self.batch_size(args)
        constraints = check_leading_axis(constraints, n, self.name)
        keys = jax.random.split(key, n)
        inner, w = self._vmap(lambda k, c, a: detached(self.gen_fn.generate(k, c, a)), args, keys, constraints)
        return self._trace(args, inner), log_total(w)

    def _update(self, key: Any, trace: VmapTrace, constraints: ChoiceMap, args: tuple):
        n = self.batch_size(args)
        old_n = jnp.shape(trace.inner.score)[0]
        if old_n != n:
            raise CombinatorError(
                f"{self.name}: update cannot change the batch size ({old_n} -> {n}); shapes are static"
            )
        constraints = check_leading_axis(constraints, n, self.name)
        keys = jax.random.split(key, n)
        inner, w, discard = self._vmap(
            lambda k, t, c, a: detached(self.gen_fn.update(k, t.with_gen_fn(self.gen_fn), c, a)),
            args,
            keys,
            trace.inner,
            constraints,
        )
        return self._trace(args, inner), log_total(w), discard

    def _regenerate(self, key: Any, trace: VmapTrace, selection: Selection, args: tuple):
        n = self.batch_size(args)
        keys = jax.random.split(key, n)
        inner, w = self._vmap(
            lambda k, t, a: detached(self.gen_fn.regenerate(k, t.with_gen_fn(self.gen_fn), selection, a)),
            args,
            keys,
            trace.inner,
        )
        return self._trace(args, inner), log_total(w)


def vmap(gen_fn: GenerativeFunction, in_axes: Any = 0, axis_size: int | None = None) -> Vmap:
    """Batch of independent calls of ``gen_fn``; choices get a leading axis.

    ``in_axes`` follows ``jax.vmap`` (an int or None for all arguments, or one
    entry per argument); ``axis_size`` is needed when no argument is mapped.
    """
    return Vmap(gen_fn, in_axes, axis_size)
