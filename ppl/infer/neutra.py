r"""NeuTra: a model reparameterised through a trained flow guide (Hoffman et al. 2019).

After fitting a flow guide ``q`` (:class:`ppl.vi.AutoFlow`) to ``p(x | y)``,
the map ``x = g(z) = T(\ell + f_\theta(z))`` (flow bijection ``f_\theta``,
location ``\ell``, support transforms ``T``) pushes the flow's base
``N(0, I)`` to ``q``. In ``z`` the posterior is

.. math::

    \pi(z) \propto p(g(z), y)\, \left|\det J_g(z)\right|, \qquad
    \log|\det J_g(z)| = \log|\det J_{f_\theta}(z)| + \sum_a \log|\det J_{T_a}(u_a)|,

which is close to ``N(0, I)`` where ``q`` is close to the posterior: funnels
and bananas become nearly isotropic, and NUTS with a diagonal mass matrix
mixes in them. :func:`neutra` builds this as a generative function,

    z ~ N(0, I)  (address ``"neutra_z"``),
    factor("neutra_target", log p(g(z), y) + log|det J_g(z)| - log N(z; 0, I)),
    deterministic(a, x_a) for every latent a of the model,

so every runner (``ppl.infer.nuts``, ``hmc``, ``mala``, ``run_mcmc``) samples
it with its adaptation, chains and diagnostics, and each draw carries the
model's latents, in constrained space and at their own addresses, as
deterministic values. The result is exact MCMC for ``p(x | y)``: the guide only
changes the geometry.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from numpyro.distributions import Normal

from ppl.core.choicemap import as_choicemap
from ppl.core.gen import deterministic, factor, gen
from ppl.core.generative_function import GenerativeFunction
from ppl.errors import GuideError

#: the address of the base-space latent of a NeuTra-reparameterised model
NEUTRA_ADDRESS = "neutra_z"


def neutra(model: GenerativeFunction, observations: Any, guide: Any, params: Any) -> GenerativeFunction:
    """``model`` conditioned on ``observations``, reparameterised through the flow guide (see module docstring).

    ``guide`` is a :class:`ppl.vi.AutoFlow` built for ``model`` and these
    observations, ``params`` its trained parameters (``fit(...).params``'s
    guide part). Returns a generative function of the model's arguments
    whose only random choice is ``"neutra_z"``; run any MCMC runner on it with
    no observations, and read the model's latents from the draws'
    deterministic values (``result.samples[name]``).
    """
    import paramax

    from ppl.vi.guides.flow import AutoFlow

    if not isinstance(guide, AutoFlow):
        raise GuideError(f"ppl.infer.neutra needs an AutoFlow guide (ppl.vi.auto_flow), got {type(guide).__name__}")
    if not isinstance(model, GenerativeFunction):
        raise GuideError(f"ppl.infer.neutra: model must be a generative function, got {type(model).__name__}")
    obs = as_choicemap(observations)
    if tuple(guide.layout.observed) != tuple(obs.addresses()):
        raise GuideError(
            f"ppl.infer.neutra: the guide was built with observations at {list(guide.layout.observed)}, but "
            f"{list(obs.addresses())} were given; build the guide and the NeuTra model with the same observations"
        )
    flow, loc = guide._parts(params)
    bijection = paramax.unwrap(flow.flow).bijection
    dim = guide.layout.size

    @gen
    def neutra_model(*args: Any) -> Any:
        z = Normal(jnp.zeros(dim), 1.0).to_event(1) @ NEUTRA_ADDRESS
        v, log_det_flow = bijection.transform_and_log_det(z)
        x, log_det_t = guide._constrain(loc + v)
        log_p, retval = model.assess(x | obs, args)
        base = jnp.sum(Normal(0.0, 1.0).log_prob(z))
        factor("neutra_target", log_p + log_det_flow + log_det_t - base)
        for s in guide.layout.sites:
            deterministic(s.address, x[s.address])
        return retval

    return neutra_model


__all__ = ["NEUTRA_ADDRESS", "neutra"]
