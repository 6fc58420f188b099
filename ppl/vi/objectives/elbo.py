"""The evidence lower bound.

    ELBO(theta, phi) = E_{z ~ q_phi}[ log p_theta(x, z) - log q_phi(z) ] <= log p_theta(x)

with equality when ``q_phi(z) = p_theta(z | x)``. Its gradient estimator
is whatever the guide's choices ask for (reparameterised where possible,
REINFORCE for discrete choices by default, or ``ppl.vi.enum`` / ``mvd``).
"""

from __future__ import annotations

from typing import Any

from ppl.core.generative_function import GenerativeFunction
from ppl.vi.expectation import Expectation, expectation
from ppl.vi.objectives.common import log_weight, observations_fn


def elbo(model: GenerativeFunction, guide: GenerativeFunction, observations: Any = None) -> Expectation:
    """The ELBO as an :class:`~ppl.vi.Expectation` over ``(model_args, guide_args)``.

    ``observations``: choices, or a function of ``model_args`` returning them
    (see :func:`ppl.vi.objectives.common.observations_fn`).
    """
    obs = observations_fn(observations)

    def elbo(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        return log_weight(key, model, guide, obs(model_args), model_args, guide_args)

    return expectation(elbo)


__all__ = ["elbo"]
