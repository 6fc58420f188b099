"""Tempered posteriors as generative functions, and adaptive tempered SMC.

**The tempered model.** ``tempered(model)`` is a generative function over the
*latent* choices of ``model`` whose (unnormalised) density is

    gamma_beta(x) = p(x) * p(y | x)^beta,      args = (beta, observations, *model_args)

where ``y`` are the observed choices and ``p(y | x)`` (the *likelihood*) is
the product of their densities. It is a model transformation, not a new
algorithm: every GFI method runs ``model``'s with the observations as
constraints and adds ``(beta - 1) * log p(y | x)`` to the score and weights.
So any MCMC kernel built on the GFI (``regenerate`` for MH, ``assess`` and
``generate`` for HMC/NUTS in unconstrained space) targets the tempered
posterior when run on its traces, with no change to the kernel. Observed
addresses are not choices of the tempered model: kernels cannot move them
(``regenerate`` removes them from any selection). At ``beta = 1`` it is the
posterior, so the same wrapper conditions a model on data.

Only observed *choices* are tempered; ``ppl.factor`` terms count as prior.
Observed addresses must be fully observed (no masks).

**Tempered SMC** (:func:`tempered_smc`) moves ``N`` particles from the prior
(``beta = 0``) to the posterior (``beta = 1``) through ``0 = beta_0 < beta_1
< ... < beta_K = 1``. At each stage

1. the next temperature is chosen by bisection so that the effective sample
   size of the incremental weights ``(beta' - beta) log p(y | x_i)`` is
   ``target_ess * N`` (Jasra et al. 2011; 1 if that is already reached);
2. particles are reweighted through ``update`` with the new ``beta``;
3. they are resampled; the log mean weight goes into the running log
   normaliser, so ``exp(log_marginal_likelihood())`` is an unbiased
   estimate of ``p(y) = prod_k (1/N) sum_i w_i^(k)``;
4. each particle is moved by ``mcmc_steps`` steps of the kernel, which
   leaves ``gamma_{beta'}`` invariant because it acts on tempered traces.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.batching import batch, loop
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.selection import Selection
from ppl.core.staging import staged
from ppl.core.trace import Trace
from ppl.errors import (
    DegeneracyWarning,
    DegenerateWeightsError,
    InferenceError,
    MissingChoiceError,
    UnvisitedConstraintError,
)
from ppl.infer import resampling as resampling_mod
from ppl.infer.importance import as_observations, check_model, check_particles, with_context
from ppl.infer.particle_vmap import particle_vmap
from ppl.infer.particles import (
    ParticleCollection,
    checked_collection,
    is_traced,
    log_marginal_likelihood_np,
)
from ppl.infer.smc import _rejuvenate

# ------------------------------------------------------------ selections


@jax.tree_util.register_pytree_node_class
class SelectionWithout(Selection):
    """``base`` minus ``removed``: what ``regenerate`` may move in a tempered model."""

    __slots__ = ("base", "removed")

    def __init__(self, base: Selection, removed: Selection):
        self.base = base
        self.removed = removed
        self.prefixes = base.prefixes
        self.complemented = base.complemented

    def tree_flatten(self):
        return (), (self.base, self.removed)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SelectionWithout) and (self.base, self.removed) == (other.base, other.removed)

    def __hash__(self) -> int:
        return hash(("without", self.base, self.removed))

    def __repr__(self) -> str:
        return f"({self.base!r} - {self.removed!r})"

    def contains(self, addr: Any) -> bool:
        return self.base.contains(addr) and not self.removed.contains(addr)

    __call__ = contains

    def __contains__(self, addr: Any) -> bool:
        return self.contains(addr)

    def subselection(self, component: Any) -> Selection:
        return SelectionWithout(self.base.subselection(component), self.removed.subselection(component))

    def is_empty(self) -> bool:
        return self.base.is_empty() or self.removed.is_all()

    def is_all(self) -> bool:
        return self.base.is_all() and self.removed.is_empty()


def _observed_selection(observations: ChoiceMap) -> Selection:
    return Selection(frozenset(observations.addresses()))


# ------------------------------------------------------- the tempered model


class TemperedTrace(Trace):
    """Trace of ``tempered(model)``: the model's trace plus its log likelihood.

    ``score = inner.score - (1 - beta) * log_likelihood``; ``choices`` are the
    model's latent choices (observations excluded); ``inner`` is the model's
    own trace (observations included, ``inner.score`` the full log joint).
    """

    _dynamic_fields = ("gen_fn", "score", "inner", "log_likelihood")
    _partitioned_fields = ("args",)

    def __init__(self, gen_fn: Any, args: Any, score: Any, inner: Trace, log_likelihood: Any):
        self.gen_fn = gen_fn
        self.args = args
        self.score = score
        self.inner = inner
        self.log_likelihood = log_likelihood

    @property
    def beta(self) -> Any:
        return self.args[0]

    @property
    def observations(self) -> ChoiceMap:
        return as_choicemap(self.args[1])

    @property
    def retval(self) -> Any:  # type: ignore[override]
        return self.inner.retval

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices.without(_observed_selection(self.observations))

    @property
    def deterministics(self) -> ChoiceMap:
        return self.inner.deterministics

    def project(self, selection: Selection) -> Any:
        return self.inner.project(SelectionWithout(selection, _observed_selection(self.observations)))


class Tempered(GenerativeFunction):
    """``p(x) p(y | x)^beta`` over the latents ``x`` of ``model``; args ``(beta, observations, *model_args)``."""

    def __init__(self, model: GenerativeFunction):
        if not isinstance(model, GenerativeFunction):
            raise InferenceError(f"tempered() needs a generative function, got {type(model).__name__}")
        self.model = model
        self.name = f"tempered({model.name})"

    # ---------------------------------------------------------------- helpers
    def _split(self, args: tuple) -> tuple[Any, ChoiceMap, tuple, Selection]:
        if len(args) < 2:
            raise InferenceError(f"{self.name} takes (beta, observations, *model_args); got {len(args)} argument(s)")
        beta, obs, *margs = args
        obs = as_choicemap(obs)
        masked = [a for a, _, m in obs.masked_items() if m is not None]
        if masked:
            raise InferenceError(
                f"{self.name}: the observation(s) at {', '.join(format_address(a) for a in masked)} are masked; "
                "tempering needs fully observed addresses"
            )
        return jnp.asarray(beta), obs, tuple(margs), _observed_selection(obs)

    def _check_latent(self, cm: ChoiceMap, obs: ChoiceMap, what: str) -> None:
        observed = set(obs.addresses())
        clash = [a for a in cm.addresses() if a in observed]
        if clash:
            raise InferenceError(
                f"{self.name}: {what} at the observed address(es) {', '.join(format_address(a) for a in clash)}; "
                "observed values are part of the arguments, not choices"
            )

    def _trace(self, args: tuple, beta: Any, inner: Trace, sel: Selection) -> tuple[TemperedTrace, Any]:
        loglik = inner.project(sel)
        score = inner.score - (1.0 - beta) * loglik
        return TemperedTrace(self, args, score, inner, loglik), loglik

    def _generate_inner(self, key: Any, cm: ChoiceMap, obs: ChoiceMap, margs: tuple) -> tuple[Trace, Any]:
        try:
            return self.model.generate(key, cm | obs, margs)
        except UnvisitedConstraintError as e:
            raise with_context(e, self.name, "the observations or given choices") from None

    # -------------------------------------------------------------------- GFI
    def _simulate(self, key: Any, args: tuple) -> TemperedTrace:
        beta, obs, margs, sel = self._split(args)
        inner, _ = self._generate_inner(key, ChoiceMap.empty(), obs, margs)
        return self._trace(args, beta, inner, sel)[0]

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        beta, obs, margs, sel = self._split(args)
        self._check_latent(choices, obs, "choices were given")
        inner, w = self._generate_inner(jax.random.key(0), choices, obs, margs)
        given = set(choices.addresses())
        missing = [a for a in inner.choices.addresses() if a not in given and not sel.contains(a)]
        if missing:
            raise MissingChoiceError(
                f"{self.name}.assess needs a value for every latent choice; none given at "
                + ", ".join(format_address(a) for a in missing[:8])
            )
        loglik = inner.project(sel)
        return w - (1.0 - beta) * loglik, inner.retval

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[TemperedTrace, Any]:
        beta, obs, margs, sel = self._split(args)
        self._check_latent(constraints, obs, "constraints were given")
        inner, w = self._generate_inner(key, constraints, obs, margs)
        tr, loglik = self._trace(args, beta, inner, sel)
        return tr, w - (1.0 - beta) * loglik

    def _update(self, key: Any, trace: TemperedTrace, constraints: ChoiceMap, args: tuple):
        beta, obs, margs, sel = self._split(args)
        self._check_latent(constraints, obs, "constraints were given")
        old_beta = jnp.asarray(trace.args[0])
        inner, w, discard = self.model.update(key, trace.inner, constraints | obs, margs)
        tr, loglik = self._trace(args, beta, inner, sel)
        w = w - (1.0 - beta) * loglik + (1.0 - old_beta) * trace.log_likelihood
        return tr, w, discard.without(sel)

    def _regenerate(self, key: Any, trace: TemperedTrace, selection: Selection, args: tuple):
        beta, _, margs, sel = self._split(args)
        old_beta = jnp.asarray(trace.args[0])
        inner, w = self.model.regenerate(key, trace.inner, SelectionWithout(selection, sel), margs)
        tr, loglik = self._trace(args, beta, inner, sel)
        w = w - (1.0 - beta) * loglik + (1.0 - old_beta) * trace.log_likelihood
        return tr, w


def tempered(model: GenerativeFunction) -> Tempered:
    """The tempered model ``p(x) p(y | x)^beta``, called with ``(beta, observations, *model_args)``.

    One object per model (kept on the model, so it lives as long as the model
    and reuses its compiled GFI programs across calls).
    """
    if not isinstance(model, GenerativeFunction):
        raise InferenceError(f"tempered() needs a generative function, got {type(model).__name__}")
    gf = model.__dict__.get("_ppl_tempered")
    if gf is None:
        gf = model.__dict__["_ppl_tempered"] = Tempered(model)
    return gf


# ------------------------------------------------------------ tempered SMC


class TemperingInfo(NamedTuple):
    """Diagnostics of :func:`tempered_smc` (arrays of length ``max_stages``, padded past ``num_stages``).

    ``betas[k]``: the temperature reached at stage ``k`` (padded with 1);
    ``ess[k]``: the ESS of the stage's weights before resampling;
    ``acceptance_rate[k]``: the kernel's mean acceptance rate at stage ``k``;
    ``num_stages``: how many stages ran; ``forced``: whether the last stage
    jumped to ``beta = 1`` because ``max_stages`` was reached;
    ``num_unique``: how many distinct particles the final cloud holds (by
    their continuous latent choices; all latents when none is continuous);
    ``step_sizes[k]``: the default kernel's HMC step size at stage ``k``
    (0 with a user kernel).
    """

    betas: Any
    ess: Any
    acceptance_rate: Any
    num_stages: Any
    forced: Any
    num_unique: Any = None
    step_sizes: Any = None


def next_temperature(log_weights: Any, log_likelihood: Any, beta: Any, target_ess: Any, iterations: int = 40) -> Any:
    """The largest ``beta' <= 1`` with ``ESS(log_weights + (beta' - beta) L) >= target_ess`` (bisection).

    The ESS is non-increasing in the step for the usual case; bisection on
    the step ``d`` in ``[0, 1 - beta]`` keeps the invariant ``ESS(lo) >= target``.
    """
    loglik = jnp.where(jnp.isnan(log_likelihood), -jnp.inf, log_likelihood)

    def ess_at(d: Any) -> Any:
        return resampling_mod.ess(log_weights + d * loglik)

    span = 1.0 - beta

    def body(_: int, bounds: tuple) -> tuple:
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = ess_at(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, body, (jnp.zeros_like(span), span))
    step = jnp.where(ess_at(span) >= target_ess, span, lo)
    return jnp.minimum(beta + step, 1.0)


# ------------------------------------------------- the default move kernel
# HMC on the continuous latents in unconstrained space, preconditioned by the
# particle cloud (diagonal inverse mass matrix = the cloud's variances, the
# usual SMC-sampler adaptation: Chopin & Papaspiliopoulos 2020, ch. 17), with
# its step size tuned between stages towards an acceptance rate of 0.65;
# discrete latents are resampled from their prior by MH (regenerate). A
# kernel proposing from the prior (the old default) is rejected almost
# always once the likelihood is sharp, and resampling then collapses the
# cloud onto a few particles.
_LEAPFROG_STEPS = 5
_TARGET_ACCEPTANCE = 0.65


def _latent_split(trace: Trace) -> tuple[tuple, tuple]:
    """``(continuous, discrete)`` latent addresses of one tempered trace (shapes only)."""
    from ppl.core import to_unconstrained

    continuous = tuple(jax.eval_shape(lambda t: to_unconstrained(t), trace).addresses())
    discrete = tuple(a for a in trace.choices.addresses() if a not in set(continuous))
    return continuous, discrete


def _unconstrained_cloud(traces: Trace, continuous: tuple) -> Any:
    """``(N, D)``: every particle's continuous latents, flattened in unconstrained space."""
    from jax.flatten_util import ravel_pytree

    from ppl.core import to_unconstrained

    sel = Selection(frozenset(continuous))
    return jax.vmap(lambda t: ravel_pytree(to_unconstrained(t, sel))[0])(traces)


def _default_move(traces: Trace, continuous: tuple, discrete: tuple, step_scale: Any) -> tuple[Any, Any]:
    """The default kernel for this stage, adapted to the cloud ``traces``; and its step size."""
    from ppl.infer.kernels import cycle, hmc, mh

    kernels = []
    step = jnp.zeros(())
    if continuous:
        z = _unconstrained_cloud(traces, continuous)
        var = jnp.var(z, axis=0)
        var = jnp.where(jnp.isfinite(var) & (var > 0), var, 1.0)
        d = z.shape[1]
        step = step_scale * d ** (-0.25)
        kernels.append(hmc(Selection(frozenset(continuous)), step, _LEAPFROG_STEPS, var))
    if discrete:
        kernels.append(mh(Selection(frozenset(discrete))))
    return (kernels[0] if len(kernels) == 1 else cycle(*kernels)), step


def _num_unique(traces: Trace, continuous: tuple) -> Any:
    """How many distinct particles (by a random projection of their latents)."""
    if continuous:
        z = _unconstrained_cloud(traces, continuous)
    else:
        leaves = [
            jnp.reshape(v, (v.shape[0], -1)).astype(jnp.float32) for v in jax.tree_util.tree_leaves(traces.choices)
        ]
        z = jnp.concatenate(leaves, axis=1)
    proj = jax.random.normal(jax.random.key(0), (z.shape[1],), z.dtype)
    h = jnp.sort(z @ proj)
    return 1 + jnp.sum(h[1:] != h[:-1])


def _tempered_smc(key, model, args, obs, n, kernel, mcmc_steps, target_ess, method, max_stages):
    where = "ppl.infer.tempered_smc"
    gf = tempered(model)
    k_init, k_loop = jax.random.split(key)
    traces = particle_vmap(lambda k: gf.simulate(k, (0.0, obs, *args)), n)(k_init)
    if not traces.choices.addresses():
        raise InferenceError(f"{where}: {model.name} has no latent choices given these observations; nothing to temper")
    one_trace = jax.tree_util.tree_map(lambda v: v[0], traces)
    continuous, discrete = _latent_split(one_trace)
    dtype = traces.log_likelihood.dtype
    pc = ParticleCollection(traces=traces, log_weights=jnp.zeros((n,), dtype))
    history = TemperingInfo(
        betas=jnp.ones((max_stages,), dtype),
        ess=jnp.zeros((max_stages,), dtype),
        acceptance_rate=jnp.zeros((max_stages,), dtype),
        num_stages=jnp.zeros((), jnp.int32),
        forced=jnp.zeros((), bool),
        num_unique=jnp.zeros((), jnp.int32),
        step_sizes=jnp.zeros((max_stages,), dtype),
    )

    def cond(state: tuple) -> Any:
        _, beta, _, info, _ = state
        return (beta < 1.0) & (info.num_stages < max_stages)

    def body(state: tuple) -> tuple:
        pc, beta, key, info, scale = state
        key, k_res, k_move = jax.random.split(key, 3)
        stage = info.num_stages
        last = stage == max_stages - 1
        proposed = next_temperature(pc.log_weights, pc.traces.log_likelihood, beta, target_ess * n)
        new_beta = jnp.where(last, 1.0, proposed).astype(dtype)
        traces, w, _ = batch(lambda t: gf.update(k_res, t, ChoiceMap.empty(), (new_beta, obs, *args)))(pc.traces)[0]
        w = jnp.where(jnp.isnan(w), -jnp.inf, w)
        pc = ParticleCollection(traces=traces, log_weights=pc.log_weights + w, log_normalizer=pc.log_normalizer)
        ess = pc.ess
        pc = pc.resample(k_res, method=method)
        step = jnp.zeros((), dtype)
        if mcmc_steps == 0:
            acceptance = jnp.zeros((), dtype)
        else:
            if kernel is None:
                # adapted to the resampled cloud at this temperature (a function of
                # the current particles only, so every particle's move leaves
                # gamma_beta invariant); the step size jittered per stage
                k_move, k_jit = jax.random.split(k_move)
                jitter = jax.random.uniform(k_jit, (), dtype, 0.8, 1.2)
                move_kernel, step = _default_move(pc.traces, continuous, discrete, scale * jitter)
            else:
                move_kernel = kernel
            pc, move = _rejuvenate(k_move, pc, move_kernel, mcmc_steps)
            acceptance = jnp.mean(move.acceptance_rate).astype(dtype)
        if kernel is None and continuous and mcmc_steps > 0:
            # towards the target acceptance; bounded above by leapfrog stability
            # (eps < 2 for a preconditioned Gaussian) so one good stage cannot
            # make the next diverge
            scale = jnp.clip(scale * jnp.exp(acceptance - _TARGET_ACCEPTANCE), 0.05, 1.3)
        info = info._replace(
            betas=info.betas.at[stage].set(new_beta),
            ess=info.ess.at[stage].set(ess),
            acceptance_rate=info.acceptance_rate.at[stage].set(acceptance),
            num_stages=stage + 1,
            forced=info.forced | (last & (proposed < 1.0)),
            step_sizes=info.step_sizes.at[stage].set(jnp.asarray(step, dtype)),
        )
        return pc, new_beta, key, info, scale

    init = (pc, jnp.zeros((), dtype), k_loop, history, jnp.ones((), dtype))
    if context.effect_channels():
        # Inside a ppl.vi.expectation: the stages' random choices (resampling ancestors,
        # moves) report to the estimator, so the loop must forward effects and be
        # differentiable: all max_stages stages in ppl's loop, the finished ones kept as
        # they are. (A finished stage's draws are discarded; their scores have mean zero.)
        def stage(state: tuple, _: Any) -> tuple:
            new = body(state)
            active = cond(state)
            keep = lambda a, b: jnp.where(active, a, b)  # noqa: E731
            pc_, beta_, _, info_, scale_ = jax.tree_util.tree_map(
                keep, (new[0], new[1], None, new[3], new[4]), (state[0], state[1], None, state[3], state[4])
            )
            return (pc_, beta_, new[2], info_, scale_), None

        (pc, _, _, info, _), _ = loop(stage, init, None, max_stages)
    else:
        pc, _, _, info, _ = jax.lax.while_loop(cond, body, init)
    info = info._replace(num_unique=_num_unique(pc.traces, continuous).astype(jnp.int32))
    return ParticleCollection(
        traces=pc.traces.inner, log_weights=pc.log_weights, log_normalizer=pc.log_normalizer, info=info
    )


def tempered_smc(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    observations: Any = None,
    *,
    particles: int = 1000,
    kernel: Any = None,
    mcmc_steps: int = 5,
    target_ess: float = 0.5,
    resampling: str = "systematic",
    max_stages: int = 100,
) -> ParticleCollection:
    """Adaptive tempered SMC from the prior to the posterior of ``model`` given ``observations``.

    Args:
      key: a PRNG key; ``model``, ``args``: the model and its arguments.
      observations: the observed choices (a ChoiceMap or nested dict).
      particles: number of particles ``N``.
      kernel: an MCMC kernel ``(init, step)`` moving the latent choices
        (e.g. ``ppl.infer.kernels.mh(ppl.select("mu"))`` or a HMC/NUTS kernel);
        it is run on traces of ``tempered(model)``, so it targets each
        tempered posterior. Default (``None``): at each stage, HMC
        (5 leapfrog steps) on the continuous latents in unconstrained space
        with a diagonal mass matrix from the particle cloud's variances and
        a step size tuned between stages towards acceptance 0.65
        (``info.step_sizes``), plus MH from the prior on discrete latents.
      mcmc_steps: kernel steps per particle per stage.
      target_ess: the ESS fraction each new temperature aims for (0 < t < 1).
      resampling: resampling scheme (see :mod:`ppl.infer.resampling`).
      max_stages: at most this many temperatures; the last one jumps to 1
        (``info.forced`` says so, with a warning when run eagerly).

    Returns:
      A :class:`ParticleCollection` of model traces at ``beta = 1`` (equal
      weights after the last resampling), ``log_marginal_likelihood()`` the
      log of an unbiased estimate of ``p(observations)``, and ``info`` a
      :class:`TemperingInfo`.

    Warns:
      DegeneracyWarning: (eager calls) the final cloud holds fewer than
        ``N / 10`` distinct particles, or the last stage's moves were
        (almost) never accepted: the kernel does not mix at the posterior,
        and the posterior estimates come from a few particles.
    """
    where = "ppl.infer.tempered_smc"
    key = check_key(key, where)
    args = check_model(model, args, where)
    n = check_particles(particles, where)
    if not 0.0 < float(target_ess) < 1.0:
        raise InferenceError(f"{where}: target_ess must be in (0, 1), got {target_ess!r}")
    if not isinstance(mcmc_steps, int) or mcmc_steps < 0:
        raise InferenceError(f"{where}: mcmc_steps must be a non-negative int, got {mcmc_steps!r}")
    if not isinstance(max_stages, int) or max_stages < 1:
        raise InferenceError(f"{where}: max_stages must be a positive int, got {max_stages!r}")
    resampling_mod.get_resampler(resampling)
    obs = as_observations(observations)
    if obs.is_empty():
        raise InferenceError(
            f"{where}: no observations given; tempering moves from the prior to the posterior given data"
        )
    pc = staged(
        model,
        "ppl.infer.tempered_smc",
        _tempered_smc,
        key,
        model,
        args,
        obs,
        n,
        kernel,
        mcmc_steps,
        jnp.asarray(target_ess),
        resampling,
        max_stages,
    )
    if is_traced(pc.log_weights):
        return checked_collection(pc, where, _HINT)
    if not np.isfinite(log_marginal_likelihood_np(pc)):
        raise DegenerateWeightsError(
            f"{where}: the estimate of the marginal likelihood is 0: at some temperature every one of the {n} "
            f"particles had log weight -inf or NaN. {_HINT}"
        )
    if bool(pc.info.forced):
        warnings.warn(
            f"{where}: the temperatures did not reach 1 within max_stages={max_stages}; the last stage jumped "
            "to beta = 1, so the estimates may be poor. Raise max_stages or lower target_ess.",
            RuntimeWarning,
            stacklevel=2,
        )
    _warn_if_degenerate(pc, where, n, kernel is None)
    return pc


def _warn_if_degenerate(pc: ParticleCollection, where: str, n: int, default_kernel: bool) -> None:
    info: TemperingInfo = pc.info
    unique = int(info.num_unique)
    stages = int(info.num_stages)
    acceptance = float(info.acceptance_rate[stages - 1])
    if unique >= max(2, n // 10) and acceptance >= 0.01:
        return
    kernel = "the default kernel" if default_kernel else "the kernel"
    warnings.warn(
        f"{where}: the final particle cloud has collapsed: {unique} distinct particles out of {n}, last-stage "
        f"acceptance rate {acceptance:.3f}. {kernel} does not mix at the posterior, so the posterior "
        "estimates (and the evidence) rest on a few particles. Use a kernel that moves at high beta (HMC/NUTS "
        "on the continuous latents), more mcmc_steps, a higher target_ess, or more particles.",
        DegeneracyWarning,
        stacklevel=3,
    )


_HINT = "The observations are impossible under every particle (check their values against the supports)."


__all__ = [
    "SelectionWithout",
    "Tempered",
    "TemperedTrace",
    "TemperingInfo",
    "next_temperature",
    "tempered",
    "tempered_smc",
]
