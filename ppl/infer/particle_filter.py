"""Particle filtering for ``ppl.scan`` state-space models: ``ppl.infer.particle_filter``.

**Supported models.** Either a scan itself, ``model = ppl.scan(kernel)``
with ``args = (init_carry, xs)``, or a ``@ppl.gen`` model whose body makes
some choices (typically a prior on the initial state and static parameters)
and then, as its last random site, calls a scan at the top level::

    @ppl.gen
    def step(x_prev, u):                    # the scan kernel: (carry, x) -> (carry, y)
        x = dist.Normal(0.9 * x_prev, 1.0) @ "x"
        dist.Normal(x, 0.5) @ "y"
        return x, None

    @ppl.gen
    def model(T):
        x0 = dist.Normal(0.0, 1.0) @ "x0"
        return ppl.scan(step, length=T)(x0, None) @ "steps"

    obs = {"steps": {"y": ys}}              # leading time axis T
    pc = ppl.infer.particle_filter(key, model, (T,), obs, particles=1000)

Deterministic sites may follow the scan; random ones may not (they would
need the whole path). ``scan_address`` picks the scan when there are several.
Observations under the scan address carry the time axis in front (use
``ppl.masked`` for missing time steps); observations of the initial choices
weight the initial particles.

**Algorithm** (bootstrap filter; Gordon et al. 1993, with the auxiliary
bookkeeping of Naesseth et al. 2019). The initial choices (everything before
the scan) come from ``model.generate`` given their observations, from the
prior or from ``initial_proposal``: ``N`` particles, each weighted with
``generate``'s weight (observed initial choices and ``ppl.factor`` terms
before the scan; minus the proposal's log density) and giving the scan's
initial carry ``c_0``. Then,
for ``t = 1..T``, inside one ``lax.scan``:

1. *resample* the carries when ``ESS < ess_threshold * N`` (``>= 1``: every
   step, ``<= 0``: never), adding ``log((1/N) sum_i exp(l_i))`` to the log
   normaliser and resetting the weights;
2. *propagate* with the kernel's own ``generate``: ``(tau_i, w_i) =
   kernel.generate(key, u_i | y_t, (c_i, x_t))`` where ``u_i`` is empty
   (bootstrap: the state is drawn from the kernel's prior) or drawn from
   ``proposal`` (``w_i`` minus its log density), and ``l_i += w_i``;
3. *rejuvenate* (optional): MCMC on the step's trace ``tau_i`` given ``c_i``
   (the kernel's latent choices at time ``t``; observations cannot move),
   which leaves ``p(x_{1:t} | y_{1:t})`` invariant;
4. ``c_i = tau_i.retval[0]``.

Each step costs O(N), independent of ``t`` (updating whole traces would be
O(t)). ``exp(log_marginal_likelihood())`` is an unbiased estimate of
``p(y_{1:T})``. The final particles' full paths are rebuilt from the stored
steps and ancestor indices (genealogy tracing, O(NT)) and turned into model
traces with one ``generate``; when only the log marginal likelihood is used
under ``jit``, XLA drops that work.

**Custom proposals** are generative functions called with ``(c, x_t,
obs_t)``: the previous carry, the scan input at ``t`` and the observations of
step ``t`` as a :class:`~ppl.ChoiceMap` of kernel addresses (``obs_t["y"]``);
their choices are latent addresses of the kernel. A proposal may also be a
``ppl.scan`` of its own (with ``proposal_args``), whose carry travels and is
resampled with each particle: the learned proposals of FIVO/VSMC, which
:func:`ppl.vi.fivo` trains by running this filter inside an expectation.

Particles are vectorised with one batched random draw per site
(:mod:`ppl.infer.particle_vmap`) and resampled in O(N) (:mod:`ppl.infer.resampling`),
so the filter runs at the speed of a hand-written ``lax.scan`` filter.
"""

from __future__ import annotations

import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.core import context
from ppl.core.address import format_address, normalize
from ppl.core.batching import loop
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.scan import Scan, ScanTrace
from ppl.core.selection import Selection, select_all
from ppl.core.staging import staged
from ppl.core.trace import DeterministicTrace, GenTrace
from ppl.errors import DegenerateWeightsError, InferenceError, UnvisitedConstraintError
from ppl.infer import resampling as resampling_mod
from ppl.infer.importance import (
    as_observations,
    check_model,
    check_particles,
    check_proposal,
    observed_overlap,
    warn_if_no_latents,
    with_context,
)
from ppl.infer.particle_vmap import particle_vmap
from ppl.infer.particles import (
    ParticleCollection,
    checked_collection,
    is_traced,
    log_marginal_likelihood_np,
)
from ppl.infer.particles import gather as _gather
from ppl.infer.smc import mcmc_moves
from ppl.infer.tempering import tempered

WHERE = "ppl.infer.particle_filter"


class FilterHistory(eqx.Module):
    """Per-step record of a particle filter (time axis first, then particles).

    Attributes:
      choices: the step's choices at full model addresses, values ``(T, N, ...)``,
        as propagated (and rejuvenated) at step ``t``, *before* resampling at
        ``t + 1``: with ``log_weights[t]`` they represent the filtering
        distribution ``p(x_t | y_{1:t})``.
      log_weights: ``(T, N)`` log weights after reweighting at step ``t``.
      ancestors: ``(T, N)`` ancestor indices drawn at the start of step ``t``
        (``arange(N)`` when that step did not resample).
      resampled: ``(T,)`` whether step ``t`` resampled.
      log_marginal_likelihoods: ``(T,)`` running estimates of ``log p(y_{1:t})``.
      acceptance_rate: ``(T,)`` mean rejuvenation acceptance rate (0 without rejuvenation).
      num_nan: ``(T,)`` how many incremental weights were NaN (counted as ``-inf``).
      initial_log_weights: ``(N,)`` log weights of the initial particles
        (``generate``'s weight of the choices before the scan: their
        observations and ``ppl.factor`` terms, minus the log density of
        ``initial_proposal``; zeros if none).
    """

    choices: ChoiceMap
    log_weights: jax.Array
    ancestors: jax.Array
    resampled: jax.Array
    log_marginal_likelihoods: jax.Array
    acceptance_rate: jax.Array
    num_nan: jax.Array
    initial_log_weights: jax.Array

    @property
    def ess(self) -> jax.Array:
        """``(T,)`` effective sample size after reweighting at each step."""
        return jax.vmap(resampling_mod.ess)(self.log_weights)

    def mean(self, addr: Any) -> jax.Array:
        """Filtering means ``E[v_t | y_{1:t}]`` of the choice at ``addr``, shape ``(T, ...)``."""
        w = jax.vmap(resampling_mod.normalized_weights)(self.log_weights)
        v = self.choices[addr]
        return jnp.einsum("tn,tn...->t...", w, v.astype(w.dtype))

    def variance(self, addr: Any) -> jax.Array:
        """Filtering variances of the choice at ``addr``, shape ``(T, ...)``."""
        w = jax.vmap(resampling_mod.normalized_weights)(self.log_weights)
        v = self.choices[addr].astype(w.dtype)
        m = jnp.einsum("tn,tn...->t...", w, v)
        return jnp.einsum("tn,tn...->t...", w, (v - m[:, None]) ** 2)


# ------------------------------------------------------------------ structure


def _shape_trace(model: GenerativeFunction, obs: ChoiceMap, args: tuple) -> Any:
    """The structure of a trace of ``model`` (shapes only, ``jax.eval_shape``).

    Run with no interceptors: this is structure discovery, not part of the
    filter's computation, so an enclosing handler (a ``ppl.vi.expectation``
    reporting REINFORCE scores) must not see these sites; their reports
    would escape the ``eval_shape`` (and fail loudly).
    """
    with context.no_interceptors():
        return jax.eval_shape(lambda k: model.generate(k, obs, args)[0], jax.random.key(0))


def find_scan(model: GenerativeFunction, args: tuple, obs: ChoiceMap, scan_address: Any) -> tuple[tuple, Scan, int]:
    """``(scan_address, scan, T)`` of a supported model, or a clear error."""
    if isinstance(model, Scan):
        try:
            tr = _shape_trace(model, obs, args)
        except UnvisitedConstraintError as e:
            raise with_context(e, WHERE, "the observations") from None
        warn_if_no_latents(tr, obs, WHERE)
        return (), model, int(tr.inner.score.shape[0])
    try:
        tr = _shape_trace(model, obs, args)
    except UnvisitedConstraintError as e:
        raise with_context(e, WHERE, "the observations") from None
    if not isinstance(tr, GenTrace):
        raise InferenceError(
            f"{WHERE} runs ppl.scan models: a ppl.scan(kernel) or a @ppl.gen model calling "
            f"ppl.scan(kernel)(init, xs) @ addr; got {model.name} ({type(model).__name__})"
        )
    scans = [(k, t) for k, t in zip(tr.keys, tr.subtraces) if isinstance(t, ScanTrace)]
    if scan_address is not None:
        want = normalize(scan_address)
        scans = [(k, t) for k, t in scans if k == want]
        if not scans:
            raise InferenceError(f"{WHERE}: {model.name} has no ppl.scan call at {format_address(want)}")
    if not scans:
        raise InferenceError(
            f"{WHERE}: {model.name} calls no ppl.scan at its top level, so there are no time steps to filter; "
            "write the dynamics as ppl.scan(kernel)(init, xs) @ 'steps', or use ppl.infer.smc for a "
            "sequence of targets"
        )
    if len(scans) > 1:
        names = ", ".join(format_address(k) for k, _ in scans)
        raise InferenceError(f"{WHERE}: {model.name} has several ppl.scan calls ({names}); pass scan_address=")
    addr, scan_tr = scans[0]
    warn_if_no_latents(tr, obs, WHERE)
    after = tr.keys[tr.keys.index(addr) + 1 :]
    for k in after:
        if not isinstance(tr.get_subtrace(k), DeterministicTrace):
            raise InferenceError(
                f"{WHERE}: {model.name} has a random site or factor at {format_address(k)} after the scan at "
                f"{format_address(addr)}; the filter needs the scan to be the model's last random site (move it "
                "into the kernel or before the scan)"
            )
    return addr, scan_tr.gen_fn, int(scan_tr.inner.score.shape[0])


def _strong(x: Any) -> Any:
    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


# -------------------------------------------------------------------- filter


def _particle_filter(
    key,
    model,
    args,
    obs,
    n,
    scan_addr,
    scan,
    num_steps,
    proposal,
    method,
    mode,
    threshold,
    kernel,
    ksteps,
    initial_proposal,
    initial_proposal_args,
    proposal_args,
    resampling_gradient,
):
    resampler = resampling_mod.get_resampler(method)
    kernel_gf = scan.kernel
    scan_sel = Selection(frozenset({scan_addr})) if scan_addr else None
    step_obs = obs.get_submap(scan_addr) if scan_addr else obs
    prefix_obs = obs.without(scan_sel) if scan_addr else ChoiceMap.empty()
    k_prefix, k_steps, k_final = jax.random.split(key, 3)

    # ---- initial particles: the prefix of the model, up to the scan's arguments
    if not scan_addr:
        init, xs = args
        carry = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(_strong(v), (n, *jnp.shape(v))), init)
        lw0 = jnp.zeros((n,))
        prefix_choices = ChoiceMap.empty()
        xs_batched = False
    else:

        def prefix(k: Any) -> tuple:
            # generate's weight counts the prefix's factors and constrained
            # choices (observed or proposed); the scan runs unconstrained here,
            # so its only share of the weight is its own factors, which the
            # time steps count again: take them out (score - project).
            proposed, q_score = ChoiceMap.empty(), 0.0
            if initial_proposal is not None:
                k, k_q = jax.random.split(k)
                pargs = (prefix_obs, *args) if initial_proposal_args is None else initial_proposal_args
                q = initial_proposal.simulate(k_q, pargs)
                proposed, q_score = q.choices, q.score
                observed_overlap(proposed, prefix_obs, WHERE, initial_proposal)
                under_scan = [a for a in proposed.addresses() if scan_sel.contains(a)]
                if under_scan:
                    raise InferenceError(
                        f"{WHERE}: the initial proposal {initial_proposal.name} samples "
                        f"{', '.join(format_address(a) for a in under_scan[:4])} under the scan at "
                        f"{format_address(scan_addr)}; it proposes the choices made before the scan only "
                        "(use proposal= for the time steps)"
                    )
            try:
                tr, w = model.generate(k, proposed | prefix_obs, args)
            except UnvisitedConstraintError as e:
                what = "the observations" + (
                    "" if initial_proposal is None else f" or the choices of {initial_proposal.name}"
                )
                raise with_context(e, WHERE, what) from None
            scan_tr = tr.get_subtrace(scan_addr)
            scan_factors = scan_tr.score - scan_tr.project(select_all())
            init, xs = scan_tr.args
            return init, w - scan_factors - q_score, tr.choices.without(scan_sel), xs

        try:
            carry, lw0, prefix_choices, xs = particle_vmap(prefix, n, out_axes=(0, 0, 0, None))(k_prefix)
            xs_batched = False
        except ValueError:
            # jax.vmap refuses out_axes=None for an output that varies over the
            # particles: here the scan's xs depend on the particle's prefix
            # choices, so keep one copy per particle. (Any other ValueError
            # is raised again by this second run of the same program.)
            carry, lw0, prefix_choices, xs = particle_vmap(prefix, n)(k_prefix)
            xs_batched = True
        carry = jax.tree_util.tree_map(_strong, carry)
    lw0 = jnp.where(jnp.isnan(lw0), -jnp.inf, lw0)
    if xs_batched:
        xs = jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), xs)

    conditioned = tempered(kernel_gf) if kernel is not None else None
    scan_proposal = isinstance(proposal, Scan)
    if scan_proposal:
        q_carry, q_xs, q_steps = proposal._split_args(proposal_args)
        if q_steps != num_steps:
            raise InferenceError(
                f"{WHERE}: the proposal {proposal.name} runs {q_steps} steps but the model's scan runs {num_steps}"
            )
        q_carry = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(_strong(v), (n, *jnp.shape(v))), q_carry)
    else:
        q_carry, q_xs = (), jnp.zeros((num_steps, 0))

    def propagate(k: Any, c: Any, x_t: Any, obs_t: ChoiceMap, cq: Any, xq_t: Any) -> tuple[Any, Any, Any]:
        proposed, q_score = ChoiceMap.empty(), 0.0
        if proposal is not None:
            k, k_q = jax.random.split(k)
            if scan_proposal:  # the proposal's own kernel, with its own carry
                q = proposal.kernel.simulate(k_q, (cq, xq_t))
                cq = q.retval[0]
            else:
                q = proposal.simulate(k_q, (c, x_t, obs_t))
            proposed, q_score = q.choices, q.score
            observed_overlap(proposed, obs_t, WHERE, proposal)
        try:
            if conditioned is None:
                tr, w = kernel_gf.generate(k, proposed | obs_t, (c, x_t))
            else:
                tr, w = conditioned.generate(k, proposed, (1.0, obs_t, c, x_t))
        except UnvisitedConstraintError as e:
            what = "the observations" + ("" if proposal is None else f" or the choices of {proposal.name}")
            raise with_context(e, WHERE, what) from None
        return tr, w - q_score, cq

    propagate_all = particle_vmap(propagate, n, in_axes=(0, 0 if xs_batched else None, None, 0, None))

    def draw(k: Any, lw: Any, active: Any = True) -> Any:
        if resampling_gradient:
            # a random choice (resampling.draw_ancestors), so an enclosing ppl.vi.expectation
            # scores it: without that the gradient of E[log Z_hat] misses how the parameters
            # change which particles survive
            return resampling_mod.draw_ancestors(k, lw, n, method, active=active)
        return resampler(k, jax.lax.stop_gradient(lw), n)  # FIVO's choice: no score, lower variance

    def step(state: tuple, inp: tuple) -> tuple:
        carry, cq, lw, lnorm, origin = state
        k, obs_t, x_t, xq_t = inp
        k_res, k_prop, k_move = jax.random.split(k, 3)
        # 1. resample
        if mode == "always":
            idx = draw(k_res, lw)
            lnorm = lnorm + resampling_mod.log_mean_weight(lw)
            lw = jnp.zeros_like(lw)
            resampled = jnp.array(True)
        elif mode == "adaptive":
            resampled = resampling_mod.ess(lw) < threshold * n
            if context.interceptors() and resampling_gradient:
                # no lax.cond around a random choice (its reports could not leave the cond):
                # draw, use only when resampling (an unused draw scores 0)
                drawn = draw(k_res, lw, active=resampled)
                idx = jnp.where(resampled, drawn, jnp.arange(n, dtype=jnp.int32))
            else:
                idx = jax.lax.cond(resampled, lambda: draw(k_res, lw), lambda: jnp.arange(n, dtype=jnp.int32))
            lnorm = jnp.where(resampled, lnorm + resampling_mod.log_mean_weight(lw), lnorm)
            lw = jnp.where(resampled, jnp.zeros_like(lw), lw)
        else:
            idx = jnp.arange(n, dtype=jnp.int32)
            resampled = jnp.array(False)
        if mode != "never":
            carry, cq = jax.tree_util.tree_map(lambda v: _gather(v, idx), (carry, cq))
            origin = _gather(origin, idx)
        if xs_batched:
            # per-particle xs belong to the particle's prefix: follow its lineage back to it
            x_t = jax.tree_util.tree_map(lambda v: _gather(v, origin), x_t)
        # 2. propagate and reweight
        tr, w, cq = propagate_all(k_prop, carry, x_t, obs_t, cq, xq_t)
        nan = jnp.isnan(w)
        lw = lw + jnp.where(nan, -jnp.inf, w)
        # 3. rejuvenate
        if kernel is not None:
            states, info = mcmc_moves(k_move, kernel, tr, n, ksteps)
            tr = states.trace
            acceptance = jnp.mean(info.acceptance_rate)
            tr = tr.inner
        else:
            acceptance = jnp.zeros(())
        # 4. next carry
        carry = jax.tree_util.tree_map(_strong, tr.retval[0])
        out = (
            idx,
            tr.choices,
            lw,
            resampled,
            lnorm + logsumexp(lw) - jnp.log(n),
            acceptance,
            jnp.sum(nan, dtype=jnp.int32),
        )
        return (carry, cq, lw, lnorm, origin), out

    seq = (jax.random.split(k_steps, num_steps), step_obs, xs, q_xs)
    # ppl's loop (not a bare lax.scan): it forwards the effects the sites report
    # from inside the time steps (the REINFORCE scores of an enclosing
    # ppl.vi.expectation), which would otherwise escape the scan
    init_state = (carry, q_carry, lw0, jnp.zeros(()), jnp.arange(n, dtype=jnp.int32))
    (carry, _, lw, lnorm, _), hist = loop(step, init_state, seq, num_steps)
    ancestors, step_choices, log_weights, resampled, logzs, acceptance, num_nan = hist

    # ---- genealogy: the full path of every final particle
    def back(a: Any, inp: tuple) -> tuple:
        idx_t, ch_t = inp
        return _gather(idx_t, a), jax.tree_util.tree_map(lambda v: _gather(v, a), ch_t)

    a0, path = jax.lax.scan(back, jnp.arange(n, dtype=jnp.int32), (ancestors, step_choices), reverse=True)
    path = jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), path)
    if scan_addr:
        initial = jax.tree_util.tree_map(lambda v: _gather(v, a0), prefix_choices)
        full = initial | path.nest(scan_addr)
        history_choices = step_choices.nest(scan_addr)
    else:
        full = path
        history_choices = step_choices
    traces = particle_vmap(lambda k, ch: model.generate(k, ch, args)[0], n)(k_final, full)
    history = FilterHistory(
        choices=history_choices,
        log_weights=log_weights,
        ancestors=ancestors,
        resampled=resampled,
        log_marginal_likelihoods=logzs,
        acceptance_rate=acceptance,
        num_nan=num_nan,
        initial_log_weights=lw0,
    )
    return ParticleCollection(traces=traces, log_weights=lw, log_normalizer=lnorm, info=history)


def particle_filter(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    observations: Any = None,
    *,
    particles: int = 1000,
    proposal: GenerativeFunction | None = None,
    proposal_args: tuple | None = None,
    resampling: str = "systematic",
    ess_threshold: float = 1.0,
    resampling_gradient: bool = True,
    rejuvenation: Any = None,
    rejuvenation_steps: int = 1,
    scan_address: Any = None,
    initial_proposal: GenerativeFunction | None = None,
    initial_proposal_args: tuple | None = None,
) -> ParticleCollection:
    """Filter a ``ppl.scan`` state-space model through its observations, one time step at a time.

    Args:
      key: a PRNG key; ``model``, ``args``: see the module docstring for the
        supported shape.
      observations: observed choices; under the scan's address with a leading
        time axis (``{"steps": {"y": ys}}``).
      particles: number of particles ``N``.
      proposal: ``None`` (bootstrap), a generative function ``q(c, x_t,
        obs_t)`` proposing the kernel's latent choices at each step, or a
        ``ppl.scan(q_kernel)`` with its own carry (an RNN state, say): step
        ``t`` runs ``q_kernel(cq_{t-1}, xq_t)``, which returns ``(cq_t, _)``;
        its carry is resampled with the particle's.
      proposal_args: the scan proposal's ``(init_carry, xs)`` (its ``xs`` have
        the model scan's number of steps; put observations there for an
        amortised proposal). Only with a scan proposal.
      resampling: ``"systematic"`` (O(N)), ``"stratified"``, ``"residual"``,
        ``"multinomial"`` or a function ``(key, log_weights, n) -> indices``.
      ess_threshold: resample when ``ESS < ess_threshold * N``; ``1.0`` (the
        default) resamples every step, ``0`` never.
      resampling_gradient: inside ``ppl.vi.expectation``, whether the
        ancestor draws are random choices whose score enters the gradient
        (``True``: unbiased for ``grad E[log Z_hat]``) or are drawn from
        stopped weights without a score (``False``: FIVO's and VSMC's biased,
        lower-variance gradient; :func:`ppl.vi.fivo` is this filter inside an
        expectation). No effect outside an expectation.
      rejuvenation: an MCMC kernel (``ppl.infer.kernels.*``) applied after each
        step to the kernel's trace at that step (addresses of the kernel,
        e.g. ``mh(ppl.select("x"))``); observed addresses cannot move.
        Observations must not be masked when rejuvenating.
      rejuvenation_steps: kernel steps per time step.
      scan_address: which top-level scan to filter when the model has several.
      initial_proposal: ``None`` (the choices made before the scan come from
        the prior) or a generative function proposing some of them (latent
        addresses outside the scan), called with ``(prefix_observations,
        *args)`` unless ``initial_proposal_args`` is given. The initial
        particles are weighted with ``model.generate``'s weight (observed
        prefix choices and ``ppl.factor`` terms before the scan included)
        minus the proposal's log density.

    Returns:
      A :class:`ParticleCollection` of full model traces (final particles with
      their ancestral paths), ``log_weights`` after the last step,
      ``log_marginal_likelihood()`` the log of an unbiased estimate of
      ``p(observations)``, and ``info`` a :class:`FilterHistory` with the
      filtering distributions at every step (``pc.info.mean(("steps", "x"))``).
    """
    key = check_key(key, WHERE)
    args = check_model(model, args, WHERE)
    n = check_particles(particles, WHERE)
    check_proposal(proposal, proposal_args, WHERE)
    if isinstance(proposal, Scan) and proposal_args is None:
        raise InferenceError(
            f"{WHERE}: the proposal {proposal.name} is a scan: give its (init_carry, xs) as proposal_args"
        )
    if proposal_args is not None and not isinstance(proposal, Scan):
        raise InferenceError(
            f"{WHERE}: proposal_args is only for a ppl.scan proposal (which carries its own state); a proposal "
            "q(c, x_t, obs_t) gets its arguments from the filter"
        )
    if not isinstance(resampling_gradient, bool):
        raise InferenceError(f"{WHERE}: resampling_gradient must be a bool, got {resampling_gradient!r}")
    resampling_mod.get_resampler(resampling)
    threshold = float(ess_threshold)
    mode = "always" if threshold >= 1.0 else ("never" if threshold <= 0.0 else "adaptive")
    if rejuvenation is not None and not (hasattr(rejuvenation, "init") and hasattr(rejuvenation, "step")):
        raise InferenceError(
            f"{WHERE}: rejuvenation must be an MCMC kernel with init(trace) and step(key, state) "
            f"(ppl.infer.kernels.*), got {type(rejuvenation).__name__}"
        )
    if not isinstance(rejuvenation_steps, int) or rejuvenation_steps < 1:
        raise InferenceError(f"{WHERE}: rejuvenation_steps must be a positive int, got {rejuvenation_steps!r}")
    check_proposal(initial_proposal, initial_proposal_args, WHERE)
    obs = as_observations(observations)
    scan_addr, scan, num_steps = find_scan(model, args, obs, scan_address)
    if initial_proposal is not None and not scan_addr:
        raise InferenceError(
            f"{WHERE}: initial_proposal was given, but {model.name} is a scan: there are no choices before the "
            "time steps to propose"
        )
    pc = staged(
        model,
        "ppl.infer.particle_filter",
        _particle_filter,
        key,
        model,
        args,
        obs,
        n,
        scan_addr,
        scan,
        num_steps,
        proposal,
        resampling,
        mode,
        jnp.asarray(threshold),
        rejuvenation,
        rejuvenation_steps,
        initial_proposal,
        initial_proposal_args,
        proposal_args,
        resampling_gradient,
    )
    return _checked(pc)


def _checked(pc: ParticleCollection) -> ParticleCollection:
    """Raise if some step left every particle with weight ``-inf``; warn on NaN weights."""
    hist: FilterHistory = pc.info
    if is_traced(pc.log_weights):
        return checked_collection(pc, WHERE, _HINT)
    if not np.isfinite(log_marginal_likelihood_np(pc)):
        lw = np.asarray(hist.log_weights)
        n = lw.shape[1]
        if not np.any(np.isfinite(np.asarray(hist.initial_log_weights))):
            raise DegenerateWeightsError(
                f"{WHERE}: every one of the {n} initial particles has log weight -inf or NaN: the observations "
                "of the choices before the scan (or the factors there) are impossible under their prior"
            )
        dead = np.flatnonzero(~np.any(np.isfinite(lw), axis=1))
        where = f"at time step {int(dead[0])} (0-based)" if dead.size else "at some step"
        raise DegenerateWeightsError(
            f"{WHERE}: {where} every one of the {n} particles got log weight -inf or NaN, so the estimate of "
            f"the marginal likelihood is 0 and the filter cannot continue. {_HINT}"
        )
    bad = int(np.sum(np.asarray(hist.num_nan)))
    if bad:
        warnings.warn(
            f"{WHERE}: {bad} incremental log weights were NaN (a log density evaluated to NaN); those "
            "particles got weight 0",
            RuntimeWarning,
            stacklevel=3,
        )
    return pc


_HINT = (
    "The observation at that step is impossible for every particle: check its value against the support of "
    "its distribution, use more particles, or a proposal that looks at the observation."
)

__all__ = ["FilterHistory", "find_scan", "particle_filter"]
