"""Mean-field guides: an independent normal (or a point) per latent, in unconstrained space.

``AutoNormal`` (ADVI's mean-field family, Kucukelbir et al. 2017): every
unconstrained element is an independent normal,

    u_i ~ Normal(loc_i, exp(log_scale_i)),    x = T(u),

parameters ``{"loc": {name: array}, "log_scale": {name: array}}`` keyed by
site name (``"mu"``, ``"obs/z"``), shaped like each latent's unconstrained
value. The scale is stored as its log so that every real parameter is valid.

``AutoDelta`` is the point-mass family ``x = T(loc)`` with log density 0:
maximising the ELBO with it maximises ``log p(x, y)`` over ``x``, i.e. it finds
the MAP estimate in the model's own (constrained) parameterisation.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from numpyro.distributions import Delta, Normal, TransformedDistribution

from ppl.core.gen import sample
from ppl.core.generative_function import GenerativeFunction
from ppl.vi.guides.base import AutoGuide


class AutoNormal(AutoGuide):
    """Mean-field normal guide in unconstrained space (see the module docstring).

    ``AutoNormal(model, args, observations, key=None, init_loc=None,
    init_scale=0.1)``: ``init_loc`` optionally gives constrained initial
    values for some latents (a dict or ChoiceMap); the others start at the
    prototype's Stan-style uniform(-2, 2) point. Every scale starts at
    ``init_scale``.
    """

    def _initial_params(self, flat_loc: Any) -> Any:
        u = self.layout.unflatten(flat_loc)
        log_s = jnp.log(self.init_scale)
        return {"loc": u, "log_scale": {k: jnp.full(jnp.shape(v), log_s) for k, v in u.items()}}

    def _body(self, params: Any) -> Any:
        for s in self.layout.sites:
            loc = self._check_shape(
                params, f"['loc'][{s.name!r}]", self._entry(params, "loc", s.name), s.unconstrained_shape
            )
            log_scale = self._check_shape(
                params, f"['log_scale'][{s.name!r}]", self._entry(params, "log_scale", s.name), s.unconstrained_shape
            )
            base = Normal(loc, jnp.exp(log_scale))
            if s.unconstrained_shape:
                base = base.to_event(len(s.unconstrained_shape))
            sample(s.address, base if s.transform is None else TransformedDistribution(base, s.transform))
        return None

    def unconstrained_loc(self, params: Any) -> Any:
        return self.layout.flatten(self._entry(params, "loc"))

    def unconstrained_scale(self, params: Any) -> Any:
        """Standard deviations of the unconstrained normals, as a flat vector."""
        return jnp.exp(self.layout.flatten(self._entry(params, "log_scale")))


class AutoDelta(AutoGuide):
    """Point-mass guide ``x = T(loc)`` (log density 0): the ELBO becomes ``log p(x, y)``, its optimum the MAP.

    Parameters ``{"loc": {name: array}}`` in unconstrained space.
    """

    def _initial_params(self, flat_loc: Any) -> Any:
        return {"loc": self.layout.unflatten(flat_loc)}

    def _body(self, params: Any) -> Any:
        for s in self.layout.sites:
            u = self._check_shape(
                params, f"['loc'][{s.name!r}]", self._entry(params, "loc", s.name), s.unconstrained_shape
            )
            sample(s.address, Delta(s.to_constrained(u), event_dim=len(s.shape)))
        return None

    def unconstrained_loc(self, params: Any) -> Any:
        return self.layout.flatten(self._entry(params, "loc"))


def auto_normal(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoNormal, tuple]:
    """``(guide, guide_args)``: a mean-field normal guide for ``model`` and its initial arguments."""
    guide = AutoNormal(model, args, observations, **kwargs)
    return guide, guide.init_args


def auto_delta(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoDelta, tuple]:
    """``(guide, guide_args)``: a point-mass (MAP) guide for ``model`` and its initial arguments."""
    guide = AutoDelta(model, args, observations, **kwargs)
    return guide, guide.init_args


__all__ = ["AutoDelta", "AutoNormal", "auto_delta", "auto_normal"]
