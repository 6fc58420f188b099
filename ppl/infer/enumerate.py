"""Exact log marginal likelihoods of models with finite discrete latent choices.

``ppl.infer.marginal_log_density(model, args, choices, sites=None)`` sums the
selected discrete choices that ``choices`` does not give out of the model's
joint density by variable elimination (:mod:`ppl.core.enumeration`):
independently per element inside ``ppl.vmap`` (``O(N K)``), by the forward
algorithm inside ``ppl.scan`` (``O(T K^2)``), over the joint grid of the
remaining ones (each grid value one run). With every latent choice discrete
and summed out it is the exact ``log p(observations)``; with continuous
choices given it is ``log p(continuous, observations)`` with the discrete
ones marginalised (the target ``ppl.infer.nuts`` uses for such models). It
is differentiable and can be compiled.
"""

from __future__ import annotations

from typing import Any

from ppl.core import enumeration
from ppl.core.choicemap import as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_args
from ppl.errors import ArgumentError


def marginal_log_density(model: GenerativeFunction, args: Any, choices: Any, sites: Any = None) -> Any:
    """``log sum_z p(choices, z)`` over the selected (default: all) discrete choices missing from ``choices``."""
    if not isinstance(model, GenerativeFunction):
        raise ArgumentError(f"ppl.infer.marginal_log_density needs a generative function, got {type(model).__name__}")
    args = check_args(model, args)
    return enumeration.marginal_log_density(model, as_choicemap(choices), args, sites)


__all__ = ["marginal_log_density"]
