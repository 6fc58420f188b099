"""VIMCO (Mnih & Rezende, 2016): the IWAE bound with leave-one-out baselines.

The bound is IWAE's, ``f = log (1/K) sum_k w_k``. The REINFORCE choices of
particle ``k`` (discrete latents) get the learning signal ``f - b_k`` with

    b_k = log (1/K) ( sum_{j != k} w_j + w_hat_{-k} ),
    w_hat_{-k} = exp( mean_{j != k} log w_j ),

the bound recomputed with particle ``k`` replaced by the geometric mean of
the others. ``b_k`` depends only on the other particles, which are
independent of particle ``k``, so the gradient stays unbiased; it removes
most of the variance the shared signal ``f`` would carry.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl.core.generative_function import GenerativeFunction
from ppl.errors import EstimatorError
from ppl.vi.expectation import Expectation, expectation, subtract_baseline
from ppl.vi.expectation import particles as shared_key_particles
from ppl.vi.objectives.common import log_mean_exp, log_weight, observations_fn
from ppl.vi.objectives.iwae import check_particles


def leave_one_out_baselines(log_weights: Any) -> Any:
    """VIMCO's ``b_k`` for every particle ``k`` (shape ``(K,)``), from the log weights."""
    k = log_weights.shape[0]
    lw = jax.lax.stop_gradient(log_weights)
    mean_others = (jnp.sum(lw) - lw) / (k - 1)
    # replace particle k's log weight by mean_others[k], for every k at once
    eye = jnp.eye(k, dtype=bool)
    replaced = jnp.where(eye, mean_others[:, None], lw[None, :])
    return logsumexp(replaced, axis=1) - jnp.log(k)


def vimco(
    model: GenerativeFunction, guide: GenerativeFunction, observations: Any = None, *, particles: int
) -> Expectation:
    """VIMCO: IWAE bound, per-particle leave-one-out baselines; over ``(model_args, guide_args)``."""
    obs = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.vimco")
    if k < 2:
        raise EstimatorError("ppl.vi.vimco needs particles >= 2 (its baselines leave one particle out)")

    def vimco(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        one = lambda key: log_weight(key, model, guide, obs(model_args), model_args, guide_args)  # noqa: E731
        logw, scores = shared_key_particles(one, k, scores=True)(key)
        subtract_baseline(scores, leave_one_out_baselines(logw))
        return log_mean_exp(logw)

    return expectation(vimco)


__all__ = ["leave_one_out_baselines", "vimco"]
