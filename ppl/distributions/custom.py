"""User-defined distributions from a sampler and a log density.

Any subclass of ``numpyro.distributions.Distribution`` works in a ppl model.
:func:`make_distribution` writes that subclass for you::

    Skellam = ppl.dist.make_distribution(
        "Skellam", params=("mu1", "mu2"), support=ppl.dist.constraints.integer,
        sample=lambda key, mu1, mu2: (
            jax.random.poisson(jax.random.fold_in(key, 1), mu1)
            - jax.random.poisson(jax.random.fold_in(key, 2), mu2)),
        log_prob=lambda k, mu1, mu2: ...,   # elementwise log density
    )
    k = Skellam(2.0, 3.0) @ "k"

The parameters' broadcast shape is the batch shape; ``event_shape`` (default
scalar) is the shape of one draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from ppl.errors import ArgumentError


def make_distribution(
    name: str,
    *,
    sample: Callable[..., Any],
    log_prob: Callable[..., Any],
    params: Sequence[str] = (),
    support: Any = constraints.real,
    event_shape: tuple = (),
    reparameterized: bool = False,
) -> type[Distribution]:
    """Make a ``Distribution`` subclass named ``name``.

    Args:
      sample: ``sample(key, *params) -> value``, one draw of shape
        ``batch_shape + event_shape`` (``batch_shape`` = broadcast of params).
      log_prob: ``log_prob(value, *params) -> array of shape batch_shape``.
      params: parameter names (for keyword construction and ``repr``).
      support: a ``ppl.dist.constraints`` constraint (values outside it score
        ``-inf`` in ppl).
      event_shape: shape of one draw.
      reparameterized: whether ``sample`` is differentiable in the params (so
        VI may use the reparameterisation gradient).
    """
    param_names = tuple(params)

    def __init__(self, *args: Any, validate_args: Any = None, **kwargs: Any) -> None:
        values = list(args)
        for n in param_names[len(values) :]:
            if n not in kwargs:
                raise ArgumentError(f"{name}: missing parameter {n!r}; it takes {param_names}")
            values.append(kwargs.pop(n))
        if kwargs:
            raise ArgumentError(f"{name}: unknown parameter(s) {sorted(kwargs)}; it takes {param_names}")
        if param_names and len(values) != len(param_names):
            raise ArgumentError(f"{name} takes {len(param_names)} parameters {param_names}, got {len(values)}")
        self._params = tuple(jnp.asarray(v) for v in values)
        batch_shape = jnp.broadcast_shapes(*(jnp.shape(p) for p in self._params)) if self._params else ()
        Distribution.__init__(
            self, batch_shape=batch_shape, event_shape=tuple(event_shape), validate_args=validate_args
        )

    def _sample(self, key: Any, sample_shape: tuple = ()) -> Any:
        shape = tuple(self.batch_shape) + tuple(self.event_shape)
        if sample_shape:
            n = 1
            for s in sample_shape:
                n *= s
            keys = jax.random.split(key, n)
            draws = jax.vmap(lambda k: jnp.broadcast_to(sample(k, *self._params), shape))(keys)
            return draws.reshape(tuple(sample_shape) + shape)
        return jnp.broadcast_to(sample(key, *self._params), shape)

    def _log_prob(self, value: Any) -> Any:
        return log_prob(value, *self._params)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in zip(param_names or range(len(self._params)), self._params))
        return f"{name}({inner})"

    namespace = {
        "__init__": __init__,
        "sample": _sample,
        "log_prob": _log_prob,
        "__repr__": __repr__,
        "support": support,
        "arg_constraints": {},
        "reparametrized_params": list(param_names) if reparameterized else [],
        "has_rsample": bool(reparameterized),
        "__doc__": f"User-defined distribution {name}{param_names}.",
    }
    for i, n in enumerate(param_names):
        namespace[n] = property(lambda self, i=i: self._params[i])
    return type(name, (Distribution,), namespace)
