"""The importance-weighted bound (IWAE; Burda et al., 2016).

    L_K = E[ log (1/K) sum_k p(x, z_k) / q(z_k) ],  z_1..z_K ~ q independently.

``L_1`` is the ELBO, ``L_K <= L_{K+1} <= log p(x)`` and ``L_K -> log p(x)``
as ``K`` grows: the average of ``K`` weights is an unbiased estimate of
``p(x)``, and the log of an unbiased estimate is a lower bound (Jensen)
whose gap shrinks with the estimate's variance.

The weights are those of the whole model: for a batch of independent data
points in one model they are products over the batch, and the bound is of
the batch's joint density (much looser per point). For the usual
per-data-point bound, write a one-point model and sum over the batch with
:func:`ppl.vi.batch_sum`.
"""

from __future__ import annotations

from typing import Any

from ppl.core.generative_function import GenerativeFunction
from ppl.errors import EstimatorError
from ppl.vi.expectation import Expectation, expectation
from ppl.vi.expectation import particles as shared_key_particles
from ppl.vi.objectives.common import log_mean_exp, log_weight, observations_fn


def check_particles(particles: Any, what: str) -> int:
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < 1:
        raise EstimatorError(
            f"{what}: particles must be a positive int (a static number of samples), got {particles!r}"
        )
    return particles


def iwae(
    model: GenerativeFunction, guide: GenerativeFunction, observations: Any = None, *, particles: int
) -> Expectation:
    """IWAE bound with ``particles`` samples, an :class:`~ppl.vi.Expectation` over ``(model_args, guide_args)``."""
    obs = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.iwae")

    def iwae(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        one = lambda key: log_weight(key, model, guide, obs(model_args), model_args, guide_args)  # noqa: E731
        return log_mean_exp(shared_key_particles(one, k)(key))

    return expectation(iwae)


__all__ = ["iwae"]
