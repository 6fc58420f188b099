"""The variational Renyi bound (Li & Turner, 2016), estimated with K samples.

    L_alpha = 1/(1 - alpha) E[ log (1/K) sum_k (p(x, z_k) / q(z_k))^(1 - alpha) ]

``alpha = 0`` is the IWAE bound, ``alpha -> 1`` the ELBO (the mean of the log
weights; ``alpha = 1`` is computed that way). For ``alpha >= 0`` the
K-sample estimate is a lower bound on ``log p(x)``; for ``alpha < 0`` it can
exceed it (an upper bound in the limit of many samples).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from ppl.core.generative_function import GenerativeFunction
from ppl.vi.expectation import Expectation, expectation
from ppl.vi.expectation import particles as shared_key_particles
from ppl.vi.objectives.common import log_mean_exp, log_weight, observations_fn
from ppl.vi.objectives.iwae import check_particles


def renyi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    alpha: float,
    particles: int,
) -> Expectation:
    """Renyi alpha-bound with ``particles`` samples, over ``(model_args, guide_args)``."""
    obs = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.renyi")
    alpha = float(alpha)

    def renyi(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        one = lambda key: log_weight(key, model, guide, obs(model_args), model_args, guide_args)  # noqa: E731
        logw = shared_key_particles(one, k)(key)
        if math.isclose(alpha, 1.0):
            return jnp.mean(logw)
        return log_mean_exp((1.0 - alpha) * logw) / (1.0 - alpha)

    return expectation(renyi)


__all__ = ["renyi"]
