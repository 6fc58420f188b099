"""Sequential Monte Carlo as small composable steps on a :class:`ParticleCollection`.

Each step is a pure function ``(key, particles, ...) -> particles`` (in the
style of optax / BlackJAX), compiled and vectorised over particles, so an SMC
algorithm is a few lines:

    pc = smc.init(key, model, (0,), obs_0, particles=1000)
    for t in range(1, T):
        pc = smc.extend(k1, pc, (t,), obs_t)             # new target via update
        pc = smc.resample_adaptive(k2, pc, ess_threshold=0.5)
        pc, info = smc.rejuvenate(k3, pc, kernels.mh(ppl.select("x")), num_steps=2)

**Weights.** With targets ``gamma_k(t) = p(t, y_{1:k}; args_k)``:

* ``init`` is importance sampling (``l_i = log gamma_0(t_i) - log q(t_i)``);
* ``extend`` moves each trace to the next target with ``update(trace,
  observations, args)`` (new observations as constraints, new arguments,
  any newly reachable choices drawn from the prior or from ``proposal``) and
  adds the incremental weight ``log gamma_k(t') - log gamma_{k-1}(t) -
  log q(new choices)``, plus ``log p_old(v)`` for every sampled value ``v``
  the update overwrote with data or dropped (its discard; the backward
  kernel proposes ``v`` from its old conditional);
* ``reweight`` adds any ``log_weight_fn(trace)`` (change of target without
  moving the traces); ``change_target`` re-scores each trace under another
  model (``log p_new(t) - log p_old(t)``);
* ``resample`` / ``resample_adaptive`` draw ancestors and move the log mean
  weight into the log normaliser, so ``log_marginal_likelihood()`` stays the
  log of an unbiased estimate of ``Z_k`` (adaptive resampling decides from
  the ESS, which does not bias the estimate);
* ``rejuvenate`` applies an MCMC kernel (``kernel.init(trace)``,
  ``kernel.step(key, state)``) to every particle; it must leave the current
  target invariant (any ``ppl.infer.kernels`` kernel on the model's latent
  addresses does), so weights are unchanged.

:func:`smc` packages the loop over a sequence of ``(args, observations)``
targets. For ``ppl.scan`` state-space models use
:func:`~ppl.infer.particle_filter`, which runs the time steps inside one
``lax.scan`` in O(T) instead of updating whole traces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import context
from ppl.core.address import Address, format_address
from ppl.core.batching import batch, loop
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.selection import Selection
from ppl.core.staging import staged
from ppl.core.trace import Trace
from ppl.errors import InferenceError, UnvisitedConstraintError
from ppl.infer import resampling as resampling_mod
from ppl.infer.importance import (
    as_observations,
    check_particles,
    check_proposal,
    importance,
    observed_overlap,
    with_context,
)
from ppl.infer.particle_vmap import particle_vmap
from ppl.infer.particles import ObservedRecord, ParticleCollection, check_weights, is_traced, runtime_check

_CACHE = SimpleNamespace()  # owner of the compiled steps


def _replace(pc: ParticleCollection, **changes: Any) -> ParticleCollection:
    fields = {
        "traces": pc.traces,
        "log_weights": pc.log_weights,
        "log_normalizer": pc.log_normalizer,
        "info": pc.info,
        "observed": pc.observed,
    }
    fields.update(changes)
    return ParticleCollection(**fields)


# ------------------------------------------------------- observed choices
def _sampled_discard(discard: ChoiceMap, observed: ObservedRecord) -> list[tuple[Address, Any]]:
    """``(address, mask)`` of the discarded values that were sampled, not observed (``mask`` True: all of it)."""
    out = []
    for a, _, m in discard.masked_items():
        seen = observed.mask_of(a)
        if seen is True:
            continue
        overwritten = True if m is None else jnp.asarray(m, bool)
        if seen is None:
            out.append((a, overwritten))
        else:
            out.append((a, jnp.logical_and(overwritten, jnp.logical_not(seen))))
    return out


def _log_density_of_discard(keys: Any, old: Trace, sampled: list[tuple[Address, Any]]) -> tuple[Any, Any]:
    """``log p_old(discarded sampled values)``, scored as in the old trace, and whether that failed.

    Computed through ``generate`` on the old trace's choices with the
    discarded elements left unconstrained: ``old.score`` minus that weight
    is their log density, provided nothing else in the old trace depends on
    them (they are leaves, as observations are). Two keys tell: if the fresh
    draws there change the weight, other choices or factors depend on them
    and the flag is set.
    """
    gen_fn = old.gen_fn
    choices = old.choices
    drop = [a for a, m in sampled if m is True]
    partial = {a: m for a, m in sampled if m is not True}
    masks = {}
    for a, m in partial.items():
        keep = jnp.logical_not(m)
        prior = choices.mask(a)
        masks[a] = keep if prior is None else jnp.logical_and(prior, keep)
    cm = choices.without(Selection(frozenset(drop))).with_masks(masks)
    _, w1 = gen_fn.generate(keys[0], cm, old.args)
    _, w2 = gen_fn.generate(keys[1], cm, old.args)
    failed = jnp.abs(w1 - w2) > 1e-5 * (1.0 + jnp.abs(w1))
    return old.score - w1, failed


# ------------------------------------------------------------------- init
def init(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    observations: Any = None,
    *,
    particles: int = 1000,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple | None = None,
) -> ParticleCollection:
    """The first SMC step: importance sampling (see :func:`ppl.infer.importance`).

    The collection also records the observed choices (``pc.observed``, filled
    by :func:`~ppl.infer.importance`), which :func:`extend` needs to weight
    data that overwrite sampled values.
    """
    return importance(
        key, model, args, observations, particles=particles, proposal=proposal, proposal_args=proposal_args
    )


# ----------------------------------------------------------------- extend
def _extend(key, pc, args, obs, proposal, proposal_args):
    where = "ppl.infer.smc.extend"
    gen_fn = pc.traces.gen_fn
    observed = pc.observed

    def one(k: Any, trace: Trace) -> tuple[Any, Any, Any]:
        new_args = trace.args if args is None else args
        k_prop, k_upd, k_disc = jax.random.split(k, 3)
        if proposal is None:
            constraints, q_score, what = obs, 0.0, "the new observations"
        else:
            pargs = (trace, obs, *new_args) if proposal_args is None else proposal_args
            q = proposal.simulate(k_prop, pargs)
            observed_overlap(q.choices, obs, where, proposal)
            constraints, q_score = q.choices | obs, q.score
            what = f"the new observations or the choices of {proposal.name}"
        try:
            tr, w, discard = gen_fn.update(k_upd, trace, constraints, new_args)
        except UnvisitedConstraintError as e:
            raise with_context(e, where, what) from None
        w = w - q_score
        if discard.is_empty():
            return tr, w, jnp.zeros((), bool)
        if observed is None:
            raise InferenceError(
                f"{where}: the update overwrote or dropped the choices at "
                f"{', '.join(format_address(a) for a in discard.addresses()[:6])}, and this ParticleCollection "
                "does not record which choices were observed so far (it was not made by ppl.infer.importance, "
                "smc.init or smc.extend), so the weight cannot tell sampled values (whose density must be added back) "
                "from data given again; start the run with smc.init"
            )
        sampled = _sampled_discard(discard, observed)
        if not sampled:
            return tr, w, jnp.zeros((), bool)
        # Backward kernel: the overwritten (or dropped) sampled values are
        # proposed again from their old conditionals, so the incremental
        # weight gains their old log density (masked elements only).
        log_p_discard, failed = _log_density_of_discard(jax.random.split(k_disc), trace, sampled)
        return tr, w + log_p_discard, failed

    traces, w, failed = particle_vmap(one, pc.num_particles)(key, pc.traces)
    new_observed = None if observed is None else observed.add(obs)
    return _replace(pc, traces=traces, log_weights=pc.log_weights + w, observed=new_observed), jnp.any(failed)


def _discard_error(pc: ParticleCollection, obs: ChoiceMap) -> str:
    return (
        "ppl.infer.smc.extend: the update overwrote sampled values (at the addresses of "
        f"{', '.join(format_address(a) for a in obs.addresses()[:6]) or 'the proposal'}) that other choices or "
        "factors of the model depend on; their old density cannot be scored alone, so the SMC weight cannot "
        "account for the discard. Observe only choices nothing depends on when revealing data over time, or "
        "add the new addresses as new choices (grow the model's arguments) instead of overwriting"
    )


def extend(
    key: Any,
    particles: ParticleCollection,
    args: tuple | None = None,
    observations: Any = None,
    *,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple | None = None,
) -> ParticleCollection:
    """Move every particle to the next target: ``update(trace, observations, args)``.

    ``args=None`` keeps each trace's arguments. New choices the model makes
    under the new arguments come from the prior, or from ``proposal``
    (called with ``(old_trace, observations, *args)`` unless ``proposal_args``
    is given); its choices must be latent addresses of the model. The
    incremental weight ``w = log p(t'; args') - log p(t; args) - log q(new)``
    is added to each particle's log weight.

    **Overwritten values** (``update``'s discard). When the observations
    (or the proposal) give a value for a choice the traces had *sampled*
    (data revealed over time with ``ppl.masked(ys, jnp.arange(T) < t)``, or
    an observation of an address earlier targets left latent), the old value
    is proposed back by a backward kernel from its old conditional, so ``w``
    also gains its old log density (masked elements only). Data given again
    (``pc.observed`` records what was observed, from :func:`init` or
    :func:`~ppl.infer.importance` on) adds
    nothing. Such values must be leaves (nothing else in the model depends
    on them, as for observations); otherwise their density cannot be scored
    alone and ``InferenceError`` is raised (at run time under ``jit``). A
    collection without the record (not made by :func:`init`,
    :func:`~ppl.infer.importance` or :func:`extend`) raises when
    ``update`` discards anything.
    """
    where = "ppl.infer.smc.extend"
    key = check_key(key, where)
    if args is not None and not isinstance(args, tuple):
        raise InferenceError(f"{where}: args must be a tuple (or None to keep each trace's), got {type(args).__name__}")
    check_proposal(proposal, proposal_args, where)
    obs = as_observations(observations)
    pc, failed = staged(_CACHE, "extend", _extend, key, particles, args, obs, proposal, proposal_args)
    msg = _discard_error(pc, obs)
    if is_traced(failed):
        zero = runtime_check(failed, msg)
        return _replace(pc, log_weights=pc.log_weights + zero)
    if bool(failed):
        raise InferenceError(msg)
    return pc


# ---------------------------------------------------------- change target
def _reweight(pc, log_weight_fn):
    w = jax.vmap(log_weight_fn)(pc.traces)
    return _replace(pc, log_weights=pc.log_weights + w)


def reweight(particles: ParticleCollection, log_weight_fn: Callable[[Trace], Any]) -> ParticleCollection:
    """Add ``log_weight_fn(trace)`` to every particle's log weight (importance reweighting).

    Moves the target from ``pi`` to ``pi'(t) ∝ pi(t) exp(log_weight_fn(t))``;
    the log normaliser estimate follows.
    """
    if not callable(log_weight_fn):
        raise InferenceError(f"reweight needs a function trace -> log weight, got {type(log_weight_fn).__name__}")
    return staged(_CACHE, "reweight", _reweight, particles, log_weight_fn)


def _change_target(key, pc, model, args, obs):
    where = "ppl.infer.smc.change_target"

    def one(k: Any, trace: Trace) -> tuple[Any, Any]:
        try:
            tr, w = model.generate(k, trace.choices | obs, args)
        except UnvisitedConstraintError as e:
            raise with_context(
                e, where, f"the particles' choices (or the observations) given to {model.name}"
            ) from None
        return tr, w - trace.score

    traces, w = particle_vmap(one, pc.num_particles)(key, pc.traces)
    return _replace(pc, traces=traces, log_weights=pc.log_weights + w)


def change_target(
    key: Any, particles: ParticleCollection, model: GenerativeFunction, args: tuple = (), observations: Any = None
) -> ParticleCollection:
    """Re-target the particles to ``model`` (with ``args``, ``observations``).

    Each trace's choices (plus the observations, which win) are given to
    ``model.generate``; the weight gains ``log p_new(t) - log p_old(t)``
    (choices the new model adds are drawn from its prior and cancel).
    """
    where = "ppl.infer.smc.change_target"
    key = check_key(key, where)
    if not isinstance(args, tuple):
        raise InferenceError(f"{where}: args must be a tuple, got {type(args).__name__}")
    return staged(_CACHE, "change_target", _change_target, key, particles, model, args, as_observations(observations))


# -------------------------------------------------------------- resampling
def resample(
    key: Any, particles: ParticleCollection, *, method: str | Callable = "systematic", n: int | None = None
) -> ParticleCollection:
    """Resample (see :meth:`ParticleCollection.resample`)."""
    resampling_mod.get_resampler(method)
    return particles.resample(key, n, method)


def _resample_adaptive(key, pc, threshold, method):
    if context.interceptors():
        # under a handler (ppl.vi.expectation) no lax.cond around the ancestor
        # draw (its score could not leave the cond): draw, use it only when
        # resampling (an unused draw scores 0)
        resampled = pc.ess < threshold * pc.num_particles
        n = pc.num_particles
        drawn = resampling_mod.draw_ancestors(key, pc.log_weights, n, method, active=resampled)
        idx = jnp.where(resampled, drawn, jnp.arange(n, dtype=jnp.int32))
        lw = pc.log_weights
        return _replace(
            pc,
            traces=jax.tree_util.tree_map(lambda v: v[idx], pc.traces),
            log_weights=jnp.where(resampled, jnp.zeros_like(lw), lw),
            log_normalizer=jnp.where(
                resampled, pc.log_normalizer + resampling_mod.log_mean_weight(lw), pc.log_normalizer
            ),
        )
    return jax.lax.cond(
        pc.ess < threshold * pc.num_particles,
        lambda p: p.resample(key, method=method),
        lambda p: p,
        pc,
    )


def resample_adaptive(
    key: Any, particles: ParticleCollection, *, ess_threshold: float = 0.5, method: str | Callable = "systematic"
) -> ParticleCollection:
    """Resample only when ``ESS < ess_threshold * N`` (decided inside the compiled program).

    The decision depends only on the current weights, so the log normaliser
    stays unbiased either way.
    """
    resampling_mod.get_resampler(method)
    return staged(_CACHE, "resample_adaptive", _resample_adaptive, key, particles, jnp.asarray(ess_threshold), method)


# ------------------------------------------------------------- rejuvenation
def mcmc_moves(key: Any, kernel: Any, traces: Any, n: int, num_steps: int) -> tuple[Any, Any]:
    """``num_steps`` steps of ``kernel`` on each of the ``n`` traces: ``(states, info (num_steps, n))``.

    Vectorised and looped with ppl's :func:`~ppl.core.batching.batch` /
    :func:`~ppl.core.batching.loop` rather than bare ``jax.vmap`` /
    ``lax.scan``: the kernel's random choices (``regenerate`` in MH) then
    report their effects (the REINFORCE scores of an enclosing
    ``ppl.vi.expectation``) through the boundaries instead of escaping them.
    """
    states = jax.vmap(kernel.init)(traces)

    def body(states: Any, k: Any) -> tuple[Any, Any]:
        return batch(kernel.step, where="ppl.infer.smc.rejuvenate")(jax.random.split(k, n), states)[0]

    return loop(body, states, jax.random.split(key, num_steps), num_steps)


def _rejuvenate(key, pc, kernel, num_steps):
    states, info = mcmc_moves(key, kernel, pc.traces, pc.num_particles, num_steps)
    return _replace(pc, traces=states.trace), info


def rejuvenate(
    key: Any, particles: ParticleCollection, kernel: Any, num_steps: int = 1
) -> tuple[ParticleCollection, Any]:
    """``num_steps`` MCMC steps of ``kernel`` on every particle; weights unchanged.

    ``kernel`` follows the MCMC kernel protocol (``state = kernel.init(trace)``
    with ``state.trace``; ``new_state, info = kernel.step(key, state)``) and
    must leave the particles' target invariant. Returns the moved particles
    and the kernel's ``info`` stacked as ``(num_steps, N)``.
    """
    key = check_key(key, "ppl.infer.smc.rejuvenate")
    if not (hasattr(kernel, "init") and hasattr(kernel, "step")):
        raise InferenceError(
            f"rejuvenate needs an MCMC kernel with init(trace) and step(key, state) (ppl.infer.kernels.*), "
            f"got {type(kernel).__name__}"
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise InferenceError(f"rejuvenate: num_steps must be a positive int, got {num_steps!r}")
    return staged(_CACHE, "rejuvenate", _rejuvenate, key, particles, kernel, num_steps)


# --------------------------------------------------------------- the driver
def smc(
    key: Any,
    model: GenerativeFunction,
    steps: Sequence[tuple[tuple, Any]],
    *,
    particles: int = 1000,
    proposal: GenerativeFunction | None = None,
    resampling: str | Callable = "systematic",
    ess_threshold: float = 0.5,
    rejuvenation: Any = None,
    rejuvenation_steps: int = 1,
) -> ParticleCollection:
    """SMC through a sequence of targets ``[(args_0, obs_0), (args_1, obs_1), ...]``.

    Target ``k`` is ``model`` with ``args_k`` conditioned on ``obs_0 .. obs_k``
    (observations accumulate in the traces). Step 0 is importance sampling;
    every later step resamples when ``ESS < ess_threshold * N`` (on the
    weights so far; ``ess_threshold >= 1`` resamples every step, ``<= 0``
    never), then ``extend`` (with ``proposal`` for newly reachable choices,
    see :func:`extend`), then ``rejuvenation_steps`` steps of the
    ``rejuvenation`` kernel if given (it must move latent addresses only:
    the traces hold the observed values too).
    Each step is compiled once per distinct shapes; this generic loop updates
    whole traces (cost grows with the trace), so for ``ppl.scan`` models
    :func:`~ppl.infer.particle_filter` is the O(T) way.
    """
    where = "ppl.infer.smc"
    key = check_key(key, where)
    n = check_particles(particles, where)
    steps = list(steps)
    if not steps:
        raise InferenceError(f"{where}: steps is empty; give at least one (args, observations) pair")
    for i, s in enumerate(steps):
        if not (isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], tuple)):
            raise InferenceError(f"{where}: steps[{i}] must be a pair (args_tuple, observations), got {s!r:.80}")
    resampling_mod.get_resampler(resampling)
    keys = jax.random.split(key, 3 * len(steps))
    (args0, obs0) = steps[0]
    pc = init(keys[0], model, args0, obs0, particles=n)
    for i, (args_k, obs_k) in enumerate(steps[1:], start=1):
        if ess_threshold >= 1.0:
            pc = resample(keys[3 * i], pc, method=resampling)
        elif ess_threshold > 0.0:
            pc = resample_adaptive(keys[3 * i], pc, ess_threshold=ess_threshold, method=resampling)
        pc = extend(keys[3 * i + 1], pc, args_k, obs_k, proposal=proposal)
        if rejuvenation is not None:
            pc, _ = rejuvenate(keys[3 * i + 2], pc, rejuvenation, rejuvenation_steps)
    hint = "No particle is consistent with all observations so far (check their values against the supports)."
    lw = check_weights(pc.log_weights, where, hint)
    return _replace(pc, log_weights=lw)


# ``ppl.infer.smc`` is the driver function; the steps are reachable from it too.
smc.init = init  # type: ignore[attr-defined]
smc.extend = extend  # type: ignore[attr-defined]
smc.reweight = reweight  # type: ignore[attr-defined]
smc.change_target = change_target  # type: ignore[attr-defined]
smc.resample = resample  # type: ignore[attr-defined]
smc.resample_adaptive = resample_adaptive  # type: ignore[attr-defined]
smc.rejuvenate = rejuvenate  # type: ignore[attr-defined]

__all__ = [
    "ObservedRecord",
    "change_target",
    "extend",
    "init",
    "rejuvenate",
    "resample",
    "resample_adaptive",
    "reweight",
    "smc",
]
