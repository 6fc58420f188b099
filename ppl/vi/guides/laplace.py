"""The Laplace approximation: a normal at the mode, covariance from the curvature.

Let ``f(u) = log p(T(u), y) + log |det J_T(u)|`` be the model's log density in
unconstrained space (``ppl.unconstrained_log_density``). The Laplace
approximation is the second-order Taylor expansion of ``f`` at its mode,

    u* = argmax_u f(u),    q(u) = N(u*, (-H)^{-1}),    H = grad^2 f(u*),

exact when the posterior of ``u`` is Gaussian. ``AutoLaplace`` finds ``u*``
with L-BFGS (optax's zoom line search) from the guide's initial location,
takes the exact Hessian with ``jax.hessian`` and returns a full-rank normal
guide (:class:`~ppl.vi.guides.mvn.AutoMultivariateNormal`) whose initial
parameters are that normal, ready to sample from or to refine with ``fit``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from ppl.core.choicemap import as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.unconstrained import unconstrained_log_density
from ppl.errors import GuideError
from ppl.vi.guides.mvn import AutoMultivariateNormal


def _lbfgs_maximise(f: Any, x0: Any, max_steps: int, tol: float) -> tuple[Any, Any, Any]:
    """``argmax f`` by L-BFGS; returns ``(x, gradient norm, iterations)``."""
    neg = lambda x: -f(x)  # noqa: E731
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(neg)

    def step(carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=neg)
        return optax.apply_updates(x, updates), state

    def going(carry):
        _, state = carry
        n = otu.tree_get(state, "count")
        err = otu.tree_norm(otu.tree_get(state, "grad"))
        return (n == 0) | ((n < max_steps) & (err >= tol))

    @jax.jit
    def run(x0):
        x, state = jax.lax.while_loop(going, step, (x0, opt.init(x0)))
        return x, jnp.linalg.norm(jax.grad(neg)(x)), otu.tree_get(state, "count")

    return run(x0)


class AutoLaplace(AutoMultivariateNormal):
    """Full-rank normal guide set to the Laplace approximation (see the module docstring).

    ``AutoLaplace(model, args, observations, key=None, init_loc=None,
    max_steps=1000, tol=1e-4)``. ``.mode`` is the unconstrained mode,
    ``.hessian`` the Hessian of ``f`` there; ``init_params`` are the Laplace
    normal's parameters.
    """

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple = (),
        observations: Any = None,
        *,
        max_steps: int = 1000,
        tol: float = 1e-4,
        **kwargs: Any,
    ):
        super().__init__(model, args, observations, **kwargs)
        layout = self.layout
        obs = as_choicemap(observations)

        def log_density(flat: Any) -> Any:
            return unconstrained_log_density(model, layout.unconstrained_choices(flat), args, obs)

        x0 = jnp.asarray(self._init_flat)
        if not np.isfinite(float(log_density(x0))):
            raise GuideError(f"AutoLaplace: the log density of {model.name} is not finite at the initial point")
        mode, gnorm, n = _lbfgs_maximise(log_density, x0, max_steps, tol)
        if not bool(jnp.all(jnp.isfinite(mode))):
            raise GuideError(f"AutoLaplace: the mode search for {model.name} diverged (non-finite point)")
        if float(gnorm) >= tol:
            warnings.warn(
                f"AutoLaplace: the mode search stopped after {int(n)} L-BFGS steps with gradient norm "
                f"{float(gnorm):.3g} >= tol={tol}; the approximation is centred at a point that may not be the mode",
                stacklevel=2,
            )
        hessian = np.asarray(jax.hessian(log_density)(mode), dtype=np.float64)
        precision = -0.5 * (hessian + hessian.T)
        eig = np.linalg.eigvalsh(precision)
        if not np.all(np.isfinite(eig)) or eig.min() <= 0:
            worst = int(np.argmin(np.diag(precision)))
            site = next(s for s in layout.sites if s.offset <= worst < s.offset + s.size)
            raise GuideError(
                f"AutoLaplace: the Hessian of the log density of {model.name} at the mode is not negative definite "
                f"(smallest curvature {eig.min():.3g}, e.g. along {site.name!r}); the posterior has no Gaussian "
                "approximation there (a flat direction, an improper posterior, or a saddle point)"
            )
        self.mode = mode
        self.hessian = jnp.asarray(hessian, jnp.float32)
        self._laplace_params = self.params_from_gaussian(mode, np.linalg.inv(precision))

    @property
    def init_params(self) -> Any:
        return jax.tree_util.tree_map(jnp.array, self._laplace_params)


def auto_laplace(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoLaplace, tuple]:
    """``(guide, guide_args)``: the Laplace approximation of ``model``'s posterior as a full-rank normal guide."""
    guide = AutoLaplace(model, args, observations, **kwargs)
    return guide, guide.init_args


__all__ = ["AutoLaplace", "auto_laplace"]
