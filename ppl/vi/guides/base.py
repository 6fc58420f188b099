"""What every automatic guide shares: a generative function over the model's latents.

An automatic guide ``q(z; params)`` is an ordinary ``@ppl.gen`` program whose
choices are exactly the model's latent addresses, in *constrained* space, so
``ppl.vi.elbo(model, guide, observations)`` (or any other objective) treats
it like a hand-written guide. Each latent is drawn in unconstrained space and
pushed through ``T = biject_to(support)``::

    u ~ q_U(u; params),    x = T(u),    log q(x) = log q_U(T^{-1}(x)) - log |det J_T(T^{-1}(x))|

using numpyro's ``TransformedDistribution`` so that the site's log density,
and hence the guide's score, is ``log q(x)`` -- the density the ELBO needs.
The guide's only argument is its parameter pytree: ``guide(params)``; its
initial arguments are ``guide.init_args == (guide.init_params,)``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.gen import GenFunction
from ppl.core.generative_function import GenerativeFunction
from ppl.errors import GuideError
from ppl.vi.guides.layout import LatentLayout, latent_layout


class AutoGuide(GenFunction):
    """Base class: discovers the model's latents and builds the guide program.

    Subclasses define :meth:`_body` (the program, given ``params``) and
    :meth:`_initial_params` (from a flat unconstrained initial location).
    """

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple = (),
        observations: Any = None,
        *,
        key: Any = None,
        init_loc: Any = None,
        init_scale: float = 0.1,
    ):
        kind = type(self).__name__
        self.model = model
        self.layout: LatentLayout = latent_layout(model, args, observations, key=key, kind=kind)
        if not init_scale > 0:
            raise GuideError(f"{kind}: init_scale must be positive, got {init_scale}")
        self.init_scale = float(init_scale)
        self._init_flat = self._initial_location(init_loc)
        super().__init__(self._body, name=f"{kind}({model.name})")

    # ------------------------------------------------------------- parameters
    @property
    def init_params(self) -> Any:
        """Initial parameters (a fresh pytree of arrays each time)."""
        return self._initial_params(jnp.asarray(self._init_flat))

    @property
    def init_args(self) -> tuple:
        """The guide's initial arguments, ``(init_params,)``: use as ``guide_args``."""
        return (self.init_params,)

    def _initial_location(self, init_loc: Any) -> np.ndarray:
        flat = np.array(self.layout.prototype, dtype=np.float32)
        if init_loc is None:
            return flat
        given = as_choicemap(init_loc)
        known = set(self.layout.addresses)
        for a in given.addresses():
            if a not in known:
                raise GuideError(
                    f"{type(self).__name__}: init_loc gives a value at {a!r}, which is not a latent choice of "
                    f"{self.model.name}; its latents are {self.layout.names}"
                )
        for s in self.layout.sites:
            if s.address in given:
                x = jnp.asarray(given[s.address], dtype=jnp.float32)
                if tuple(x.shape) != s.shape:
                    raise GuideError(
                        f"{type(self).__name__}: init_loc at {s.name!r} has shape {tuple(x.shape)}, expected {s.shape}"
                    )
                flat[s.offset : s.offset + s.size] = np.reshape(np.asarray(s.to_unconstrained(x)), (s.size,))
        if not np.all(np.isfinite(flat)):
            raise GuideError(
                f"{type(self).__name__}: init_loc maps to a non-finite unconstrained point (outside the support?)"
            )
        return flat

    def _initial_params(self, flat_loc: Any) -> Any:
        raise NotImplementedError

    def _body(self, params: Any) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ summaries
    def unconstrained_loc(self, params: Any) -> Any:
        """The guide's location in unconstrained space, as a flat vector."""
        raise NotImplementedError

    def median(self, params: Any) -> ChoiceMap:
        """``T(loc)``: the constrained image of the unconstrained location.

        For the normal families this is the median of every latent's marginal
        (``T`` is monotone elementwise; for simplex-valued latents it is the
        image of the mean, not a median); for the delta guide it is the point
        estimate.
        """
        return self.layout.constrain(self.unconstrained_loc(params))

    # --------------------------------------------------------------- checks
    def _check_shape(self, params: Any, path: str, value: Any, expected: tuple) -> Any:
        shape = tuple(jnp.shape(value))
        if shape != tuple(expected):
            raise GuideError(
                f"{self.name}: parameter {path} has shape {shape}, expected {tuple(expected)}; "
                "pass the parameters made by this guide (guide.init_params, or a trained copy of them)"
            )
        return value

    def _entry(self, params: Any, *path: str) -> Any:
        node = params
        for i, p in enumerate(path):
            try:
                node = node[p]
            except (KeyError, TypeError, IndexError):
                where = "".join(f"[{q!r}]" for q in path[: i + 1])
                raise GuideError(
                    f"{self.name}: parameters have no entry params{where}; pass the parameters made by this "
                    "guide (guide.init_params, or a trained copy of them)"
                ) from None
        return node


__all__ = ["AutoGuide"]
