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
import jax.numpy as jnp
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
from ppl.errors import ConditionalChoiceError, InferenceError, PPLError, SelectionError


class Problem(NamedTuple):
    """A model and its arguments split into traced leaves and static structure.

    The model is part of the split: its captured arrays (a closure's data, a
    scale factor) are traced leaves like the arguments', so a compiled program
    keyed by the model's static structure never bakes in another model's values.
    """

    model: GenerativeFunction
    spec: Any  # StaticSpec of (model, args): hashable, part of compilation keys
    dyn: tuple  # traced leaves of the model and the arguments
    observations: ChoiceMap

    def model_and_args(self, dyn: Any = None) -> tuple[GenerativeFunction, tuple]:
        return tuple(combine(list(self.dyn if dyn is None else dyn), self.spec))

    def args(self, dyn: Any = None) -> tuple:
        return self.model_and_args(dyn)[1]


def make_problem(model: Any, args: Any, observations: Any) -> Problem:
    from ppl.core.choicemap import as_choicemap

    if not isinstance(model, GenerativeFunction):
        raise PPLError(f"expected a generative function (a @ppl.gen model), got {type(model).__name__}")
    args = check_args(model, args)
    dyn, spec = partition((model, args))
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
    masked: tuple = ()  # latent addresses that carry a presence mask (inside ppl.switch/cond/mixture)
    conditional: tuple = ()  # masked latent addresses seen absent: present in some branches only


def _entries(cm: ChoiceMap) -> list:
    """``(address, value)`` of every entry, masked ones included (their masks are traced)."""
    return [(a, v) for a, v, _ in cm.masked_items()]


def _masked_addresses(cm: ChoiceMap) -> list:
    return [a for a, _, m in cm.masked_items() if m is not None]


def _avals(tree: Any) -> tuple:
    """``(shape, dtype)`` of every leaf: the part of a cache key that values do not change."""
    return tuple(
        (tuple(np.shape(x)), str(x.dtype) if hasattr(x, "dtype") else type(x).__name__)
        for x in jax.tree_util.tree_leaves(tree)
    )


_CACHE: dict = {}

# Starting points drawn to find out which masked choices exist in some branches only.
PRESENCE_PROBES = 64


def _presence(trace_once: Any, problem: Problem, masked: tuple) -> tuple[tuple, tuple]:
    """``(sometimes, never)``: masked latent addresses absent in some / all of ``PRESENCE_PROBES`` starts.

    A choice inside ``ppl.switch``/``ppl.mixture`` carries a mask: one made
    in every branch (same shape and dtype) is always present, one made in
    some branches only is present exactly when such a branch is taken. The
    masks are traced values, so this draws starting points the way the
    runners do (Stan's rule for continuous choices, the prior for discrete
    ones, branch indices included) and reads them. A choice absent from
    every start (its branch is ruled out, e.g. by an observed index) is not
    a latent choice of this posterior. Only models with masked choices pay
    for the probe; a branch taken with tiny prior probability from every
    start may go unnoticed (``run_mcmc`` checks the draws again).
    """
    if not masked:
        return (), ()

    def present(k: Any) -> tuple:
        _, cm, _ = trace_once(k, problem.dyn, problem.observations)
        return tuple(jnp.all(cm.mask(a)) for a in masked)

    keys = jax.random.split(jax.random.key(0), PRESENCE_PROBES)
    seen = [np.asarray(p) for p in jax.jit(jax.vmap(present))(keys)]
    sometimes = tuple(a for a, p in zip(masked, seen) if p.any() and not p.all())
    never = tuple(a for a, p in zip(masked, seen) if not p.any())
    return sometimes, never


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
    masked = tuple(a for a in _masked_addresses(cm) if a not in obs_set)
    sometimes, never = _presence(trace_once, problem, masked)
    gone = set(never) | obs_set
    latent = tuple(a for a in latent if a not in gone)
    masked = tuple(a for a in masked if a not in gone)
    continuous = tuple(a for a in u.addresses() if a not in gone)
    cont_set = set(continuous)
    discrete = tuple(a for a in latent if a not in cont_set)
    s = Structure(
        observed=observed,
        latent=latent,
        continuous=continuous,
        discrete=discrete,
        deterministic=tuple(det.addresses()),
        unconstrained=tuple((a, Shape(tuple(v.shape), str(v.dtype))) for a, v in _entries(u) if a not in gone),
        constrained=tuple(
            (a, Shape(tuple(v.shape), str(v.dtype))) for a, v in _entries(cm) + _entries(det) if a not in gone
        ),
        masked=masked,
        conditional=sometimes,
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


def require_fixed_dimension(s: Structure, model: GenerativeFunction, algorithm: str) -> None:
    """Raise :class:`ConditionalChoiceError` if a latent choice exists only in some branches."""
    if s.conditional:
        raise ConditionalChoiceError(conditional_message(s.conditional, model, algorithm))


def conditional_message(addrs: tuple, model: GenerativeFunction, algorithm: str) -> str:
    return (
        f"{algorithm} on {model.name}: the latent choice(s) at {_names(addrs)} are made in some branches of a "
        "ppl.switch/ppl.cond/ppl.mixture only, so whether they exist depends on the branch taken; MCMC moves a "
        "fixed set of choices. Make the same choice (same address, shape and dtype) in every branch (a branch "
        "that does not use it can still sample it, e.g. from its prior), observe the branch index, or "
        "marginalise it out with a log-sum-exp ppl.factor"
    )


def require_continuous(s: Structure, model: GenerativeFunction, algorithm: str) -> None:
    require_latent(s, model)
    if s.discrete:
        raise SelectionError(
            f"{algorithm} moves continuous choices only, but {model.name} has discrete latent choices at "
            f"{_names(s.discrete)}; observe them, marginalise them out (e.g. with a log-sum-exp factor), or "
            "combine a gradient kernel with Gibbs on them: ppl.infer.run_mcmc(key, cycle(nuts(...), gibbs(addr)), ...)"
        )
