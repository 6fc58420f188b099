"""Minibatches for ``ppl.vi.fit``: what the objective's arguments are built from each step.

With ``data`` an array (or a pytree of arrays sharing a leading axis of
length ``N``), each step draws ``B = batch_size`` indices uniformly *without
replacement*, inside the compiled loop, from that step's key. Every point is
then in the batch with probability ``B / N``, so for any per-point terms
``l_i``

    E[(N / B) * sum_{i in batch} l_i] = sum_{i=1}^N l_i,

which is why a minibatch likelihood must be multiplied by ``scale = N / B``
(``ppl.scale(likelihood, batch.scale)`` in the model): the minibatch
objective is then an unbiased estimate of the full-data objective, and its
gradient of the full-data gradient.

With ``data`` an iterator, each step takes the next batch as it comes (a
pytree of arrays, the same shapes every step); ``scale`` is
``data_size / (leading axis length)`` when ``data_size`` is given, else 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Minibatch(NamedTuple):
    """One step's data, passed to ``batch_fn(params, batch)``.

    ``data``: the batch (same pytree structure as the data, leading axis B);
    ``scale``: ``N / B``, the factor that makes sums over the batch unbiased
    for sums over the data set; ``indices``: the rows drawn (``None`` for an
    iterator).
    """

    data: Any
    scale: Any
    indices: Any = None


def leading_size(data: Any, what: str = "data") -> int:
    """The common leading-axis length of every leaf of ``data``."""
    from ppl.errors import FitError

    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise FitError(f"{what} has no arrays")
    sizes = {tuple(jnp.shape(x))[:1] for x in leaves}
    if len(sizes) != 1 or () in sizes:
        shapes = [tuple(jnp.shape(x)) for x in leaves]
        raise FitError(
            f"every array in {what} needs the same leading axis (one row per data point); got shapes {shapes[:6]}"
        )
    return sizes.pop()[0]


def sample_batch(key: Any, data: Any, size: int, batch_size: int) -> Minibatch:
    """``batch_size`` rows of ``data`` drawn uniformly without replacement, with ``scale = N / B``."""
    idx = jax.random.choice(key, size, (batch_size,), replace=False)
    batch = jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), data)
    return Minibatch(batch, jnp.asarray(size / batch_size, jnp.float32), idx)


def given_batch(batch: Any, data_size: int | None) -> Minibatch:
    """A batch from an iterator, scaled by ``data_size / B`` when the data set size is known."""
    if data_size is None:
        return Minibatch(batch, jnp.asarray(1.0, jnp.float32), None)
    b = jnp.shape(jax.tree_util.tree_leaves(batch)[0])[0]
    return Minibatch(batch, jnp.asarray(data_size / b, jnp.float32), None)


__all__ = ["Minibatch", "given_batch", "leading_size", "sample_batch"]
