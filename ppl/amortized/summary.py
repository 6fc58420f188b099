"""Summary networks: learned maps from one observation to the context vector of NPE's flow.

A summary network is any callable from one (standardised) observation to a
vector ``[C]``; an equinox module's float arrays are trained jointly with
the flow by ``ppl.amortized.npe(..., summary=...)``. Two common shapes:

* :func:`mlp_summary`: flatten the observation, then a multilayer
  perceptron (for a fixed-size observation with no structure to exploit);
* :func:`deep_set` (Zaheer et al. 2017): ``rho(mean_j phi(x_j))`` over the
  leading axis, invariant to permutations of exchangeable (i.i.d.)
  observations ``x_1..x_n``; the summary a conjugate model's sufficient
  statistic (a sample mean) is of this form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl.errors import AmortizedError


def _check(name: str, **ints: Any) -> None:
    for arg, v in ints.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise AmortizedError(f"ppl.amortized.{name}: {arg} must be a positive int, got {v!r}")


def _shape(name: str, shape: Any) -> tuple:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(s, int) and s >= 1 for s in shape):
        raise AmortizedError(f"ppl.amortized.{name}: a shape of positive ints is needed, got {shape!r}")
    return shape


class MLPSummary(eqx.Module):
    """``mlp(flatten(x))``: a perceptron on the flattened observation."""

    mlp: eqx.nn.MLP

    def __call__(self, x: Any) -> Any:
        return self.mlp(jnp.reshape(jnp.asarray(x), (-1,)))


class DeepSet(eqx.Module):
    """``rho(mean_j phi(x_j))`` over the leading axis of ``x`` (``x_j`` flattened)."""

    phi: eqx.nn.MLP
    rho: eqx.nn.MLP

    def __call__(self, x: Any) -> Any:
        x = jnp.asarray(x)
        elements = jnp.reshape(x, (x.shape[0], -1))
        return self.rho(jnp.mean(jax.vmap(self.phi)(elements), axis=0))


def mlp_summary(
    key: Any, shape: Any, size: int, *, width: int = 64, depth: int = 2, activation: Callable = jax.nn.gelu
) -> MLPSummary:
    """An :class:`MLPSummary` for observations of ``shape`` with contexts of ``size``."""
    shape = _shape("mlp_summary", shape)
    _check("mlp_summary", size=size, width=width, depth=depth)
    mlp = eqx.nn.MLP(math.prod(shape), size, width, depth, activation=activation, key=key)
    return MLPSummary(mlp)


def deep_set(
    key: Any,
    element_shape: Any,
    size: int,
    *,
    width: int = 64,
    depth: int = 2,
    element_size: int | None = None,
    activation: Callable = jax.nn.gelu,
) -> DeepSet:
    """A :class:`DeepSet` for observations ``[n, *element_shape]`` with contexts of ``size``.

    ``phi`` maps each element to ``element_size`` features (default
    ``width``), ``rho`` maps their mean to the context; both are perceptrons
    with ``depth`` hidden layers of ``width`` units.
    """
    element_shape = _shape("deep_set", element_shape)
    features = width if element_size is None else element_size
    _check("deep_set", size=size, width=width, depth=depth, element_size=features)
    k1, k2 = jax.random.split(key)
    phi = eqx.nn.MLP(math.prod(element_shape), features, width, depth, activation=activation, key=k1)
    rho = eqx.nn.MLP(features, size, width, depth, activation=activation, key=k2)
    return DeepSet(phi, rho)


__all__ = ["DeepSet", "MLPSummary", "deep_set", "mlp_summary"]
