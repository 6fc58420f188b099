r"""A normalizing flow as a distribution: usable at any address of a model or a guide.

A flow is a base density :math:`p_E` pushed through a learned bijection
:math:`f_\theta` (optionally conditioned on a context :math:`c`):

.. math::

    x = f_\theta(\varepsilon; c),\quad \varepsilon \sim p_E, \qquad
    \log q_\theta(x \mid c) = \log p_E(f_\theta^{-1}(x; c))
        + \log\left|\det \partial f_\theta^{-1}(x; c) / \partial x\right|.

:class:`Flow` wraps a flowjax distribution (an equinox module: the flow's
parameters are its float leaves) as a numpyro ``Distribution`` so that
``flow @ "z"`` works in any ``@ppl.gen`` program, and so that a flow is a
pytree that ``ppl.vi.fit`` trains like any other parameter. A conditional
flow is given its context with :meth:`Flow.given`; a context with leading
batch dimensions gives a batch of flows.

Sampling is reparameterised (the draw is a differentiable function of the
parameters). The log density of a value the flow has just drawn comes from
the same forward pass (``sample_and_log_prob``), so a flow built for fast
sampling (an IAF, a planar flow) never runs its inverse in a VI guide; a value
from elsewhere is scored through the inverse.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from ppl.errors import FlowError


def typed_key(key: Any) -> Any:
    """flowjax wants new-style typed keys; ppl passes either kind."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _is_flowjax(obj: Any) -> bool:
    try:
        from flowjax.distributions import AbstractDistribution
    except ImportError:  # pragma: no cover - flowjax is a dependency
        return False
    return isinstance(obj, AbstractDistribution)


class Flow(Distribution):
    """A flowjax distribution as a numpyro distribution (see the module docstring).

    Args:
      flow: a ``flowjax.distributions.AbstractDistribution`` with a 1-D
        ``shape`` (the flows of :mod:`ppl.flows` and of ``flowjax.flows``).
      condition: the context of a conditional flow, shape
        ``batch_shape + flow.cond_shape``; ``None`` for an unconditional one.
    """

    pytree_data_fields = ("flow", "condition")
    arg_constraints: dict = {}  # noqa: RUF012 - numpyro's class-level convention
    has_rsample = True
    reparametrized_params: list = []  # noqa: RUF012

    def __init__(self, flow: Any, condition: Any = None, *, validate_args: Any = None):
        if isinstance(flow, Flow):
            flow = flow.flow
        if not _is_flowjax(flow):
            raise FlowError(
                f"ppl.flows.Flow wraps a flowjax distribution (e.g. from ppl.flows.maf or flowjax.flows); "
                f"got {type(flow).__name__}"
            )
        shape = tuple(flow.shape)
        if len(shape) != 1:
            raise FlowError(f"ppl.flows.Flow: flows over vectors only; this flow's shape is {shape}")
        cond_shape = None if flow.cond_shape is None else tuple(flow.cond_shape)
        batch_shape: tuple = ()
        if cond_shape is None and condition is not None:
            raise FlowError("ppl.flows.Flow: this flow is unconditional, but a context was given")
        if condition is not None:
            condition = jnp.asarray(condition)
            n = len(cond_shape)
            if condition.ndim < n or tuple(condition.shape[condition.ndim - n :]) != cond_shape:
                raise FlowError(
                    f"ppl.flows.Flow: the context has shape {tuple(condition.shape)}; this flow is conditioned on "
                    f"contexts of shape {cond_shape} (with any leading batch dimensions)"
                )
            batch_shape = tuple(condition.shape[: condition.ndim - n])
        self.flow = flow
        self.condition = condition
        self._cache: tuple | None = None
        super().__init__(batch_shape=batch_shape, event_shape=shape, validate_args=validate_args)

    # --------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Dimension of one draw."""
        return int(self.event_shape[0])

    @property
    def context_shape(self) -> tuple | None:
        """Shape of the context of a conditional flow (``None``: unconditional)."""
        c = self.flow.cond_shape
        return None if c is None else tuple(c)

    @property
    def support(self) -> Any:
        return constraints.real_vector

    def given(self, condition: Any) -> Flow:
        """This flow conditioned on ``condition`` (shape ``[..., *context_shape]``)."""
        if self.context_shape is None:
            raise FlowError("ppl.flows.Flow.given: this flow is unconditional; it takes no context")
        return Flow(self.flow, condition)

    def _check_context(self, where: str) -> None:
        if self.context_shape is not None and self.condition is None:
            raise FlowError(
                f"ppl.flows.Flow.{where}: this flow is conditional on a context of shape {self.context_shape}; "
                "give it one with flow.given(context)"
            )

    # --------------------------------------------------------------- sampling
    def sample(self, key: Any, sample_shape: tuple = ()) -> Any:
        self._check_context("sample")
        x, lp = self.flow.sample_and_log_prob(typed_key(key), tuple(sample_shape), self.condition)
        self._cache = (x, lp)
        return x

    def sample_and_log_prob(self, key: Any, sample_shape: tuple = ()) -> tuple[Any, Any]:
        """``(x, log q(x))`` from one forward pass."""
        x = self.sample(key, sample_shape)
        return x, self._cache[1]

    def log_prob(self, value: Any) -> Any:
        self._check_context("log_prob")
        cache = self._cache
        if cache is not None and value is cache[0]:
            return cache[1]
        value = jnp.asarray(value)
        if value.ndim < 1 or value.shape[-1] != self.dim:
            raise FlowError(
                f"ppl.flows.Flow.log_prob: value of shape {tuple(value.shape)}; this flow is over vectors of "
                f"dimension {self.dim}"
            )
        return self.flow.log_prob(value, self.condition)

    def tree_flatten(self):
        return (self.flow, self.condition), (tuple(self.batch_shape), tuple(self.event_shape))

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> Flow:
        d = cls.__new__(cls)
        d.flow, d.condition = children
        d._cache = None
        Distribution.__init__(d, batch_shape=aux[0], event_shape=aux[1], validate_args=False)
        return d

    def __repr__(self) -> str:
        name = type(self.flow).__name__
        ctx = "" if self.context_shape is None else f", context={self.context_shape}"
        return f"ppl.flows.Flow({name}, dim={self.dim}{ctx}, batch_shape={tuple(self.batch_shape)})"


__all__ = ["Flow", "typed_key"]
