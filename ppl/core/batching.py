"""The one batching and looping primitive that forwards effects.

``ppl.vmap``, ``ppl.scan``, the objectives' ``ppl.vi.vmap``/``ppl.vi.scan`` and
particle batching (``ppl.infer.particle_vmap``) are all built on
:func:`batch` and :func:`loop`. Each

* publishes the element index of its body (``context.element``), so a handler
  can act on one element of a batched site (enumeration re-runs);
* collects the additive effects its body reports (``context.emit``: the
  REINFORCE scores of ``ppl.vi``, log-Jacobians, ...) and re-emits their totals
  outside, so a report from inside ``jax.vmap``/``lax.scan`` reaches whoever
  installed the handler instead of escaping the transformation;
* speaks one ``in_axes`` dialect, JAX's: an int or ``None`` for every
  argument, or a tuple with one entry per argument, each entry a pytree
  prefix of its argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import context
from ppl.errors import CombinatorError


def log_total(terms: Any) -> Any:
    """``sum(terms)`` of per-element log densities, ``-inf`` if any term is ``-inf``.

    An element outside its support (``-inf``) that feeds a later element (a
    negative scale in the next step of a scan) makes that element NaN; the
    total is still ``-inf``, so one impossible trace never poisons a weight
    with NaN.
    """
    return jnp.where(jnp.any(terms == -jnp.inf), -jnp.inf, jnp.sum(terms))


def axes_of(in_axes: Any, n_args: int, where: str) -> tuple:
    """``in_axes`` as one entry per argument."""
    if isinstance(in_axes, tuple):
        if len(in_axes) != n_args:
            raise CombinatorError(f"{where}: in_axes has {len(in_axes)} entries but {n_args} arguments were given")
        return in_axes
    if not (in_axes is None or isinstance(in_axes, int)):
        raise CombinatorError(
            f"{where}: in_axes must be an int, None, or a tuple with one entry (a pytree prefix) per argument; "
            f"got {in_axes!r}"
        )
    return (in_axes,) * n_args


def batch_size(args: tuple, axes: tuple, axis_size: int | None, where: str) -> int:
    """The common length of the mapped axes (each entry of ``axes`` a pytree prefix of its argument)."""
    sizes: dict[int, list] = {}

    def visit(i: int, ax: Any, sub: Any) -> None:
        if ax is None:
            return
        if not isinstance(ax, int):
            raise CombinatorError(f"{where}: in_axes entries must be ints or None at their leaves, got {ax!r}")
        for leaf in jax.tree_util.tree_leaves(sub):
            shape = jnp.shape(leaf)
            if len(shape) <= ax:
                raise CombinatorError(f"{where}: argument {i} has a leaf of shape {shape}, no axis {ax} to map over")
            sizes.setdefault(shape[ax], []).append(i)

    for i, (a, ax) in enumerate(zip(args, axes)):
        jax.tree_util.tree_map(lambda x, s, i=i: visit(i, x, s), ax, a, is_leaf=lambda x: x is None)
    if axis_size is not None:
        sizes.setdefault(axis_size, []).append("axis_size")
    if not sizes:
        raise CombinatorError(f"{where}: no argument is mapped (in_axes all None); pass axis_size=N")
    if len(sizes) > 1:
        detail = "; ".join(f"size {n} from {'/'.join(map(str, who))}" for n, who in sizes.items())
        raise CombinatorError(f"{where}: mapped arguments disagree on the batch size: {detail}")
    return next(iter(sizes))


def batch(
    fn: Callable[..., Any],
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    axis_name: str | None = None,
    where: str = "ppl.vmap",
) -> Callable[..., tuple[Any, dict]]:
    """``jax.vmap(fn)`` that forwards effects; returns ``(out, per_element_totals)``.

    The totals of every open effect channel are summed over the batch and
    re-emitted outside; the per-element totals are returned as well (for
    per-particle REINFORCE baselines).
    """

    def run(*args: Any) -> tuple[Any, dict]:
        axes = axes_of(in_axes, len(args), where)
        n = batch_size(args, axes, axis_size, where)
        names = context.effect_channels()

        def body(index: Any, *a: Any) -> Any:
            with context.element(index, n):
                if not names:
                    return fn(*a), {}
                with context.collect(names) as frame:
                    out = fn(*a)
                return out, frame.filled()

        out, totals = jax.vmap(body, in_axes=(0, *axes), out_axes=(out_axes, 0), axis_size=n, axis_name=axis_name)(
            jnp.arange(n, dtype=jnp.int32), *args
        )
        if totals:
            context.reemit({k: jnp.sum(v) for k, v in totals.items()})
        return out, totals

    return run


def loop(step: Callable[..., Any], carry: Any, xs: Any, length: int) -> tuple[Any, Any]:
    """``lax.scan(step, carry, xs)`` that forwards effects and publishes the step index."""
    names = context.effect_channels()

    def body(c: Any, inp: Any) -> Any:
        t, x = inp
        with context.element(t, length):
            if not names:
                c2, y = step(c, x)
                return c2, (y, {})
            with context.collect(names) as frame:
                c2, y = step(c, x)
            return c2, (y, frame.filled())

    final, (ys, totals) = jax.lax.scan(body, carry, (jnp.arange(length, dtype=jnp.int32), xs), length=length)
    if totals:
        context.reemit({k: jnp.sum(v) for k, v in totals.items()})
    return final, ys


__all__ = ["axes_of", "batch", "batch_size", "log_total", "loop"]
