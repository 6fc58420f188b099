"""What a model's posterior looks like before sampling: latent choices, their shapes, kinds.

Computed once per (model, argument shapes, observation shapes) with
``jax.eval_shape`` (tracing only, no computation) and cached. Bad input is
reported here, before anything is compiled: an observation at an address
the model never visits (``UnvisitedConstraintError`` from ``generate``), a
model with no latent choices, discrete latent choices for a gradient-based
sampler.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from ppl.core import (
    ChoiceMap,
    GenerativeFunction,
    from_unconstrained,
    unconstrained_init,
)
from ppl.core.address import format_address
from ppl.core.generative_function import check_args
from ppl.core.staging import combine, partition
from ppl.errors import InferenceError, PPLError, SelectionError


class Problem(NamedTuple):
    """A model with its arguments split into traced leaves and static structure."""

    model: GenerativeFunction
    spec: Any  # StaticSpec of the arguments: hashable, part of compilation keys
    dyn: tuple  # traced leaves of the arguments
    observations: ChoiceMap

    def args(self, dyn: Any = None) -> tuple:
        return combine(list(self.dyn if dyn is None else dyn), self.spec)


def make_problem(model: Any, args: Any, observations: Any) -> Problem:
    from ppl.core.choicemap import as_choicemap

    if not isinstance(model, GenerativeFunction):
        raise PPLError(f"expected a generative function (a @ppl.gen model), got {type(model).__name__}")
    args = check_args(model, args)
    dyn, spec = partition(args)
    obs = as_choicemap(observations)
    obs = obs.map(lambda v: v if isinstance(v, jax.Array) else np.asarray(v))
    return Problem(model, spec, tuple(dyn), obs)


class Shape(NamedTuple):
    shape: tuple
    dtype: str


class Structure(NamedTuple):
    """Addresses and shapes of a model's choices given its observations."""

    observed: tuple  # observed addresses
    latent: tuple  # every unobserved choice
    continuous: tuple  # latent choices moved in unconstrained space
    discrete: tuple  # latent choices with a discrete distribution
    deterministic: tuple  # ppl.deterministic sites
    unconstrained: tuple  # (address, Shape) of each continuous latent in unconstrained space
    constrained: tuple  # (address, Shape) of each latent and deterministic value


def _avals(tree: Any) -> tuple:
    """``(shape, dtype)`` of every leaf: the part of a cache key that values do not change."""
    return tuple(
        (tuple(np.shape(x)), str(x.dtype) if hasattr(x, "dtype") else type(x).__name__)
        for x in jax.tree_util.tree_leaves(tree)
    )


_CACHE: dict = {}


def structure(problem: Problem) -> Structure:
    """The :class:`Structure` of ``problem`` (cached by model and shapes)."""
    obs = problem.observations
    key = (
        problem.model,
        problem.spec,
        jax.tree_util.tree_structure((problem.dyn, obs)),
        _avals((problem.dyn, obs)),
    )
    hit = _CACHE.get(key)
    if hit is not None:
        return hit

    def trace_once(k: Any, dyn: Any, obs: ChoiceMap) -> Any:
        args = problem.args(dyn)
        u = unconstrained_init(k, problem.model, args, obs)
        tr, _, _ = from_unconstrained(problem.model, u, args, obs, key=k)
        return u, tr.choices, tr.deterministics

    u, cm, det = jax.eval_shape(trace_once, jax.random.key(0), problem.dyn, obs)
    observed = tuple(obs.addresses())
    obs_set = set(observed)
    latent = tuple(a for a in cm.addresses() if a not in obs_set)
    continuous = tuple(u.addresses())
    cont_set = set(continuous)
    discrete = tuple(a for a in latent if a not in cont_set)
    s = Structure(
        observed=observed,
        latent=latent,
        continuous=continuous,
        discrete=discrete,
        deterministic=tuple(det.addresses()),
        unconstrained=tuple((a, Shape(tuple(v.shape), str(v.dtype))) for a, v in u.flat_dict().items()),
        constrained=tuple(
            (a, Shape(tuple(v.shape), str(v.dtype)))
            for a, v in list(cm.flat_dict().items()) + list(det.flat_dict().items())
            if a not in obs_set
        ),
    )
    _CACHE[key] = s
    return s


def _names(addrs: tuple, limit: int = 10) -> str:
    more = f", ... ({len(addrs) - limit} more)" if len(addrs) > limit else ""
    return ", ".join(format_address(a) for a in addrs[:limit]) + more


def require_latent(s: Structure, model: GenerativeFunction) -> None:
    if not s.latent:
        raise InferenceError(
            f"{model.name} has no latent choices given these observations: every choice "
            f"({_names(s.observed)}) is observed, so there is nothing to sample"
        )


def require_continuous(s: Structure, model: GenerativeFunction, algorithm: str) -> None:
    require_latent(s, model)
    if s.discrete:
        raise SelectionError(
            f"{algorithm} moves continuous choices only, but {model.name} has discrete latent choices at "
            f"{_names(s.discrete)}; observe them, marginalise them out (e.g. with a log-sum-exp factor), or "
            "combine a gradient kernel with Gibbs on them: ppl.infer.run_mcmc(key, cycle(nuts(...), gibbs(addr)), ...)"
        )
