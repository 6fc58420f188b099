"""Importance sampling through ``generate``: ``ppl.infer.importance``.

With observations ``y`` and latent choices ``x``, each of ``N`` particles is

* **prior proposal** (``proposal=None``): ``(t_i, l_i) = model.generate(key_i,
  y, args)``; the latents come from the prior and ``l_i = log p(y | x_i)``
  (the sum of the log densities of the constrained choices, ``generate``'s
  weight);
* **proposal generative function** ``q``: ``u_i ~ q(.; proposal_args)``
  (``simulate``), then ``(t_i, w_i) = model.generate(key_i, u_i | y, args)``
  and ``l_i = w_i - log q(u_i)``. When ``q`` proposes every latent choice,
  ``w_i = log p(x_i, y)``; latents ``q`` leaves out are drawn from the model's
  prior given the rest and cancel in ``w_i``, so a partial proposal is also
  correct.

**Proposal arguments.** By default the proposal is called with
``(observations, *args)``: the observation :class:`~ppl.ChoiceMap` first
(a data-driven proposal reads ``obs["y"]``), then the model's own arguments.
Pass ``proposal_args=(...)`` to call it with exactly those arguments instead.
The proposal's addresses must be latent addresses of the model (proposing an
observed address is an error).

The result is a :class:`~ppl.infer.ParticleCollection`: ``Z_hat = (1/N)
sum_i exp(l_i)`` is an unbiased estimate of ``p(y)`` and ``sum_i w_i f(t_i)``
(normalised weights) a consistent estimate of ``E[f(x) | y]``.

The whole computation is one compiled program, vectorised over particles
(:func:`~ppl.infer.particle_vmap.particle_vmap`), cached across calls with
equal shapes.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.staging import staged
from ppl.errors import InferenceError, UnvisitedConstraintError
from ppl.infer.particle_vmap import particle_vmap
from ppl.infer.particles import ObservedRecord, ParticleCollection, check_weights


class NoLatentChoicesWarning(UserWarning):
    """Every choice of the model is observed: all particles are the same trace."""


def as_observations(observations: Any) -> ChoiceMap:
    """Observations as a :class:`ChoiceMap` of arrays.

    Observed values are data, never shapes: turning Python numbers into
    arrays keeps them traced, so new data values reuse the compiled program.
    """
    cm = as_choicemap(observations)
    values, masks = {}, {}
    for a, v, m in cm.masked_items():
        values[a] = jnp.asarray(v)
        if m is not None:
            masks[a] = jnp.asarray(m)
    return ChoiceMap(values, masks, _trusted=True)


def check_particles(particles: Any, where: str) -> int:
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise InferenceError(f"{where}: particles must be a positive Python int, got {particles!r}")
    return particles


def check_model(model: Any, args: Any, where: str) -> tuple:
    if not isinstance(model, GenerativeFunction):
        raise InferenceError(
            f"{where}: model must be a generative function (a @ppl.gen function), got {type(model).__name__}"
        )
    if not isinstance(args, tuple):
        raise InferenceError(
            f"{where}: args must be a tuple of the model's arguments, got {type(args).__name__}; "
            "for one argument write (x,), for none ()"
        )
    return args


def check_proposal(proposal: Any, proposal_args: Any, where: str) -> None:
    if proposal is not None and not isinstance(proposal, GenerativeFunction):
        raise InferenceError(f"{where}: proposal must be a generative function or None, got {type(proposal).__name__}")
    if proposal_args is not None and not isinstance(proposal_args, tuple):
        raise InferenceError(f"{where}: proposal_args must be a tuple, got {type(proposal_args).__name__}")


def observed_overlap(proposed: ChoiceMap, observations: ChoiceMap, where: str, proposal: Any) -> None:
    """A proposal must not propose observed addresses (the observation would silently win)."""
    obs = set(observations.addresses())
    clash = [a for a in proposed.addresses() if a in obs or any(a[: len(o)] == o for o in obs)]
    if clash:
        names = ", ".join(format_address(a) for a in clash[:6])
        raise InferenceError(
            f"{where}: the proposal {proposal.name} samples the observed address(es) {names}; a proposal "
            "proposes latent choices only"
        )


def with_context(e: UnvisitedConstraintError, where: str, what: str) -> UnvisitedConstraintError:
    return UnvisitedConstraintError(f"{where}: {what} name an address the model does not have. {e}")


def warn_if_no_latents(traces: Any, observations: ChoiceMap, where: str) -> None:
    """Warn (once per compilation) when the model has no latent choice at all."""
    obs = set(observations.addresses())
    latent = [a for a in traces.choices.addresses() if a not in obs]
    if not latent:
        warnings.warn(
            f"{where}: every choice of the model is observed, so there is nothing to infer: all particles "
            "are the same trace and log_marginal_likelihood() is the exact log density of the observations",
            NoLatentChoicesWarning,
            stacklevel=5,
        )


def propose_and_generate(
    key: Any,
    model: GenerativeFunction,
    args: tuple,
    observations: ChoiceMap,
    proposal: GenerativeFunction | None,
    proposal_args: tuple | None,
    where: str,
) -> tuple[Any, Any]:
    """One particle: ``(trace, log_weight)`` from the prior or from ``proposal``."""
    if proposal is None:
        try:
            return model.generate(key, observations, args)
        except UnvisitedConstraintError as e:
            raise with_context(e, where, "the observations") from None
    k_prop, k_gen = jax.random.split(key)
    pargs = (observations, *args) if proposal_args is None else proposal_args
    q = proposal.simulate(k_prop, pargs)
    proposed = q.choices
    observed_overlap(proposed, observations, where, proposal)
    try:
        trace, w = model.generate(k_gen, proposed | observations, args)
    except UnvisitedConstraintError as e:
        raise with_context(e, where, f"the observations or the choices of the proposal {proposal.name}") from None
    return trace, w - q.score


def _importance(key, model, args, observations, particles, proposal, proposal_args):
    where = "ppl.infer.importance"

    def one(k: Any) -> tuple[Any, Any]:
        return propose_and_generate(k, model, args, observations, proposal, proposal_args, where)

    traces, log_weights = particle_vmap(one, particles)(key)
    warn_if_no_latents(traces, observations, where)
    return ParticleCollection(traces=traces, log_weights=log_weights)


def importance(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    observations: Any = None,
    *,
    particles: int = 1000,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple | None = None,
) -> ParticleCollection:
    """Importance sampling of ``model`` given ``observations``.

    Args:
      key: a PRNG key.
      model: the model (a generative function); ``args`` its arguments.
      observations: a :class:`~ppl.ChoiceMap` or nested dict of observed values.
      particles: the number of particles ``N`` (a Python int).
      proposal: ``None`` to propose latents from the prior, or a generative
        function whose choices are latent addresses of the model.
      proposal_args: the proposal's arguments; default ``(observations, *args)``.

    Returns:
      A :class:`ParticleCollection` whose ``traces`` are model traces (observed
      values included) and ``log_weights`` the importance weights ``l_i``;
      ``log_marginal_likelihood()`` is ``log((1/N) sum_i exp(l_i))``.
      ``observed`` records the observed choices (masks included), so the
      collection can be moved on with :func:`ppl.infer.smc.extend`.

    Raises:
      UnvisitedConstraintError: an observation (or proposed choice) names an
        address the model never visits.
      DegenerateWeightsError: every weight is ``-inf`` or NaN.
    """
    where = "ppl.infer.importance"
    key = check_key(key, where)
    args = check_model(model, args, where)
    particles = check_particles(particles, where)
    check_proposal(proposal, proposal_args, where)
    obs = as_observations(observations)
    pc = staged(model, "ppl.infer.importance", _importance, key, model, args, obs, particles, proposal, proposal_args)
    hint = (
        "Check that the observed values are possible under the model (inside the supports of their "
        f"distributions: {', '.join(format_address(a) for a in obs.addresses()[:6]) or 'no observations'})"
        + ("" if proposal is None else f" and that the proposal {proposal.name} proposes values the model allows")
        + "."
    )
    log_weights = check_weights(pc.log_weights, where, hint)
    return ParticleCollection(pc.traces, log_weights, pc.log_normalizer, pc.info, ObservedRecord().add(obs))


__all__ = ["NoLatentChoicesWarning", "importance"]
