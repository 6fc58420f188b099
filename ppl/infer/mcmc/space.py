"""Selected continuous choices of a trace as one flat vector in unconstrained space.

Gradient kernels (MALA, HMC, NUTS) move a vector ``z`` in ``R^D``: the
selected continuous choices ``x`` mapped through ``T^{-1}`` (numpyro's
``biject_to(support)``, taken as the program runs) and concatenated. The
target is

    log pi(z) = log p(T(z), rest) + log |det J_T(z)|

(``ppl.unconstrained_log_density``), where ``rest`` are the trace's other
choices (observations, choices other kernels move), held fixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
from jax.flatten_util import ravel_pytree

from ppl.core import (
    ChoiceMap,
    Selection,
    from_unconstrained,
    to_unconstrained,
    unconstrained_log_density,
)


def values_only(cm: ChoiceMap) -> ChoiceMap:
    """``cm`` without its masks, so that flattening it gives its values alone.

    Choices inside ``ppl.switch``/``ppl.mixture`` carry masks (pytree leaves
    too); a flat space is made of values only. Runners check that every
    latent choice they move is present in every branch
    (:func:`ppl.infer.mcmc.structure.require_fixed_dimension`).
    """
    return ChoiceMap({a: v for a, v, _ in cm.masked_items()}, _trusted=True)


class FlatSpace(NamedTuple):
    """How a trace's selected choices map to and from a flat vector."""

    addresses: tuple
    unravel: Callable[[Any], ChoiceMap]
    size: int

    def fixed(self, trace: Any) -> ChoiceMap:
        """The choices of ``trace`` that stay fixed (everything not in the space)."""
        return trace.choices.without(Selection(frozenset(self.addresses)))

    def flatten(self, trace: Any, selection: Selection) -> Any:
        """The selected choices of ``trace`` as a flat unconstrained vector."""
        return ravel_pytree(values_only(to_unconstrained(trace, selection)))[0]

    def log_density(self, gen_fn: Any, args: tuple, fixed: ChoiceMap) -> Callable[[Any], Any]:
        """``z -> log p(T(z), fixed; args) + log |det J_T(z)|``."""

        def logdensity(z: Any) -> Any:
            return unconstrained_log_density(gen_fn, self.unravel(z), args, fixed)

        return logdensity

    def to_trace(self, gen_fn: Any, z: Any, args: tuple, fixed: ChoiceMap) -> Any:
        """The trace with the selected choices at ``T(z)`` and the rest at ``fixed``."""
        return from_unconstrained(gen_fn, self.unravel(z), args, fixed)[0]


def flat_space(trace: Any, selection: Selection) -> FlatSpace:
    """The flat space of ``trace``'s selected continuous choices.

    Only shapes are computed (``jax.eval_shape``), so this costs nothing at
    run time. A selection naming a discrete choice raises ``SelectionError``.
    """
    shapes = jax.eval_shape(lambda t: to_unconstrained(t, selection), trace)
    return space_from_shapes(shapes)


def space_from_shapes(shapes: ChoiceMap) -> FlatSpace:
    """A :class:`FlatSpace` from a choice map of shapes (``ShapeDtypeStruct`` values)."""
    zeros = values_only(shapes).map(lambda s: jnp.zeros(s.shape, s.dtype))
    flat, _ = ravel_pytree(zeros)
    return FlatSpace(tuple(zeros.addresses()), _slicing_unravel(zeros, flat.dtype), int(flat.size))


def _slicing_unravel(template: ChoiceMap, dtype: Any) -> Callable[[Any], ChoiceMap]:
    """``z -> ChoiceMap`` cutting ``z`` into ``template``'s leaves with static slices.

    The inverse of ``ravel_pytree`` (same order and dtypes); slices instead
    of ``jnp.split`` because the gradient of a slice is a pad that XLA fuses
    into its consumer, whereas the gradient of a split is a concatenate that
    keeps each site's reduction a separate kernel (about 6 more kernels per
    leapfrog step of a small model).
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    cuts, start = [], 0
    for leaf in leaves:
        cuts.append((start, leaf.size, leaf.shape, leaf.dtype))
        start += leaf.size

    def unravel(z: Any) -> ChoiceMap:
        z = jnp.asarray(z, dtype)
        parts = [jax.lax.slice_in_dim(z, a, a + n).reshape(shape).astype(dt) for a, n, shape, dt in cuts]
        return jax.tree_util.tree_unflatten(treedef, parts)

    return unravel


@contextlib.contextmanager
def unvalidated() -> Iterator[None]:
    """Trace densities without numpyro's per-site sample validation.

    numpyro (validation on by default) wraps every ``log_prob`` in
    ``where(value in support, log_prob, -inf)``. Values mapped from
    unconstrained space lie in the support by construction, and ppl's core
    checks non-trivial supports itself, so inside gradient-based samplers
    this masking is redundant work (about 2x the operations of a small
    model's gradient). Only tracing is affected: use it around the calls
    that trace a sampler's log density.
    """
    with numpyro.validation_enabled(False):
        yield
