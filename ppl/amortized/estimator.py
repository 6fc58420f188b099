r"""The amortized posterior itself: ``q(theta | x)`` as a flow over standardised unconstrained parameters.

With ``u`` the parameters' flat unconstrained vector
(:mod:`ppl.amortized.layout`) and ``x`` the flat observation,

.. math::

    v = (u - m_u) / s_u, \qquad z = (x - m_x) / s_x, \qquad c = s_\psi(z)\ \text{(or } c = z\text{)},

    \log q(\theta \mid x) = \log q_\phi(v \mid c) - \sum_i \log s_{u,i}
        - \sum_a \log\left|\det J_{T_a}(u_a)\right|,

``q_phi`` a conditional flow of :mod:`ppl.flows`, ``s_psi`` an optional
summary network reading ``z`` reshaped to the observed values' shapes,
``m``/``s`` the componentwise means and standard deviations of the
simulations NPE trained on (:func:`~ppl.amortized.npe`), ``T_a =
biject_to(support_a)``. :class:`NeuralPosterior` is an equinox module (a
pytree): it goes through ``jit`` and into generative functions as leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl.amortized.layout import SimulationLayout
from ppl.flows import Flow


def contexts(summary: Any, layout: SimulationLayout, z: Any) -> Any:
    """Contexts ``[..., C]`` of standardised flat observations ``z`` ``[..., D_x]``."""
    if summary is None:
        return z
    batch = z.shape[:-1]
    flat = jnp.reshape(z, (-1, z.shape[-1]))
    c = jax.vmap(lambda zi: summary(layout.structure_x(zi)))(flat)
    return jnp.reshape(c, batch + c.shape[-1:])


class NeuralPosterior(eqx.Module):
    """``q(theta | x)``: a conditional flow over standardised unconstrained parameters (see the module docstring).

    ``flow`` (a conditional :class:`ppl.flows.Flow`) and ``summary`` (an
    equinox module or ``None``) are trained; ``theta_loc``/``theta_scale``
    ``[D]`` and ``x_loc``/``x_scale`` ``[D_x]`` are the standardisation, fixed
    from the simulations; ``layout`` maps vectors to the model's addresses.
    All methods take one flat observation ``x`` ``[D_x]`` and are pure (run
    them inside ``jit``).
    """

    flow: Flow
    summary: Any
    theta_loc: Any
    theta_scale: Any
    x_loc: Any
    x_scale: Any
    layout: SimulationLayout

    def context(self, x: Any) -> Any:
        """The flow's context ``[C]`` for a flat observation ``x`` ``[D_x]``."""
        return contexts(self.summary, self.layout, (x - self.x_loc) / self.x_scale)

    def conditional(self, x: Any) -> Flow:
        """The flow over ``v = (u - theta_loc) / theta_scale`` given ``x``."""
        return self.flow.given(self.context(x))

    def log_prob_unconstrained(self, u: Any, x: Any) -> Any:
        """``log q(u | x)`` for unconstrained vectors ``u`` ``[..., D]``."""
        v = (u - self.theta_loc) / self.theta_scale
        return self.conditional(x).log_prob(v) - jnp.sum(jnp.log(self.theta_scale))

    def sample_unconstrained(self, key: Any, x: Any, n: int) -> tuple[Any, Any]:
        """``(u [n, D], log q(u | x) [n])`` from one forward pass of the flow."""
        v, lp = self.conditional(x).sample_and_log_prob(key, (n,))
        return self.theta_loc + self.theta_scale * v, lp - jnp.sum(jnp.log(self.theta_scale))

    def sample(self, key: Any, x: Any, n: int) -> tuple[list, Any]:
        """``(values, log q(theta | x) [n])``: ``values[i]`` ``[n, *shape]`` for ``layout.parameters[i]``."""
        u, lq = self.sample_unconstrained(key, x, n)
        values, log_det = jax.vmap(self.layout.constrain)(u)
        return values, lq - log_det

    def log_prob(self, values: Sequence[Any], x: Any) -> Any:
        """``log q(theta | x)`` ``[n]`` of constrained ``values`` (one ``[n, *shape]`` array per parameter)."""

        def one(vals: Sequence[Any]) -> tuple[Any, Any]:
            u = self.layout.unconstrain(vals)
            return u, self.layout.constrain(u)[1]

        u, log_det = jax.vmap(one)(list(values))
        return self.log_prob_unconstrained(u, x) - log_det


__all__ = ["NeuralPosterior", "contexts"]
