r"""Radial flow layers (Rezende and Mohamed 2015, "Variational Inference with Normalizing Flows").

One layer contracts or expands space around a centre :math:`z_0`:

.. math::

    f(z) = z + \beta\, h(\alpha, r)\,(z - z_0), \qquad r = \lVert z - z_0 \rVert,\quad
    h(\alpha, r) = \frac{1}{\alpha + r},

    \log\left|\det \partial f / \partial z\right|
      = (d - 1) \log(1 + \beta h) + \log(1 + \beta h + \beta h'(\alpha, r)\, r),
    \qquad h' = -\frac{1}{(\alpha + r)^2}.

It is invertible when :math:`\beta \ge -\alpha` (Rezende and Mohamed,
appendix A.2); the parameters are unconstrained with
:math:`\alpha = \mathrm{softplus}(\hat\alpha)` and
:math:`\beta = -\alpha + \mathrm{softplus}(\hat\beta)`. The inverse is in
closed form: ``r_y = |y - z_0| = r (1 + beta / (alpha + r))`` is a quadratic
in ``r`` with one non-negative root,

.. math::

    r = \tfrac12\left(-(\alpha + \beta - r_y) + \sqrt{(\alpha + \beta - r_y)^2 + 4 \alpha r_y}\right),
    \qquad z = z_0 + (y - z_0) / (1 + \beta h(\alpha, r)).

flowjax has planar but no radial layers; this one is a flowjax bijection so it
chains with theirs.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr
from flowjax.bijections import AbstractBijection, Scan
from flowjax.distributions import StandardNormal, Transformed


class Radial(AbstractBijection):
    """One radial layer over vectors of dimension ``dim`` (see the module docstring)."""

    shape: tuple[int, ...]
    cond_shape: ClassVar[None] = None
    centre: jax.Array
    raw_alpha: jax.Array
    raw_beta: jax.Array

    def __init__(self, key: jax.Array, *, dim: int):
        self.shape = (dim,)
        self.centre = 0.1 * jr.normal(key, (dim,))
        self.raw_alpha = jnp.zeros(())
        self.raw_beta = jnp.zeros(())  # softplus(0) = alpha: beta = 0, the identity

    def _alpha_beta(self) -> tuple[jax.Array, jax.Array]:
        alpha = jax.nn.softplus(self.raw_alpha)
        return alpha, -alpha + jax.nn.softplus(self.raw_beta)

    def transform_and_log_det(self, x: jax.Array, condition: jax.Array | None = None):
        alpha, beta = self._alpha_beta()
        diff = x - self.centre
        r = jnp.sqrt(jnp.sum(diff**2))
        h = 1.0 / (alpha + r)
        y = x + beta * h * diff
        d = self.shape[0]
        log_det = (d - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * r * h**2)
        return y, log_det

    def inverse_and_log_det(self, y: jax.Array, condition: jax.Array | None = None):
        alpha, beta = self._alpha_beta()
        diff = y - self.centre
        r_y = jnp.sqrt(jnp.sum(diff**2))
        b = alpha + beta - r_y
        r = 0.5 * (-b + jnp.sqrt(b**2 + 4.0 * alpha * r_y))
        h = 1.0 / (alpha + r)
        x = self.centre + diff / (1.0 + beta * h)
        d = self.shape[0]
        log_det = (d - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * r * h**2)
        return x, -log_det


def radial_flow(key: jax.Array, dim: int, *, layers: int = 8) -> Transformed:
    """A standard normal pushed through ``layers`` radial layers (a flowjax distribution)."""
    import equinox as eqx

    stack = eqx.filter_vmap(lambda k: Radial(k, dim=dim))(jr.split(key, layers))
    return Transformed(StandardNormal((dim,)), Scan(stack))


__all__ = ["Radial", "radial_flow"]
