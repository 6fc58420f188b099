"""MCMC runners: ``nuts``, ``hmc``, ``mala``, ``mh`` and ``run_mcmc`` for any kernel.

Warm-up, sampling, all chains, and mapping the draws back to constrained
space are one compiled program: chains are vectorised with ``vmap`` inside a
single ``lax.scan`` over the warm-up and sampling iterations (so the kernel
is compiled once). Programs are ``jax.jit`` functions whose static key holds
the model, the arguments' static structure and the run's settings, so a
second call with equal shapes (new data of the same shape, a new key, with
or without a progress bar) reuses the compiled code. Starting points come
first, from small separate programs (:mod:`ppl.infer.mcmc.initialization`:
a multi-start L-BFGS from Stan's uniform(-2, 2) draws keeping the
highest-density mode, Stan's rule alone with ``init="uniform"``, or the
user's ``init``, with retries).

Gradient runners (``nuts``, ``hmc``, ``mala``) adapt the step size (dual
averaging towards ``target_accept``) and a diagonal or dense inverse mass
matrix in Stan's windows during ``num_warmup`` iterations
(:mod:`ppl.infer.mcmc.adaptation`), per chain. ``mala`` is MALA preconditioned by the mass
matrix, with BlackJAX's step-size convention (``eps`` is the Langevin time
step: ``z' ~ N(z + eps M^{-1} grad, 2 eps M^{-1})``, see
:mod:`ppl.infer.mcmc.gradient`; ``result.step_size`` is that ``eps``); its
default target acceptance is 0.574. All three step through the lower tier
of :mod:`ppl.infer.mcmc.gradient` on the model's flat unconstrained vector.

``run_mcmc`` runs any kernel; tunable kernels (gradient kernels built
without a ``step_size``, alone or inside ``cycle``/``mixture``/``repeat``,
e.g. ``cycle(nuts(select("mu")), gibbs("k"))``) are adapted in the same
Stan windows during warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import (
    ChoiceMap,
    Selection,
    from_unconstrained,
    select,
    unconstrained_log_density,
)
from ppl.core.generative_function import check_key
from ppl.errors import ArgumentValueError, PPLError
from ppl.infer.mcmc import progress
from ppl.infer.mcmc.adaptation import schedule, window_adaptation
from ppl.infer.mcmc.combinators import cycle
from ppl.infer.mcmc.gradient import GradientParams, flat_step, initial_step_size
from ppl.infer.mcmc.initialization import (
    find_starts,
    flat_space,
    init_error,
    init_values,
    named_init,
    trace_init_error,
    trace_start_program,
    user_mask,
    user_positions,
)
from ppl.infer.mcmc.kernel import MCMCKernel
from ppl.infer.mcmc.marginalize import summed_structure, summing
from ppl.infer.mcmc.metropolis import mh as mh_kernel
from ppl.infer.mcmc.result import MCMCResult, Samples, address_name, check_draws
from ppl.infer.mcmc.space import unvalidated
from ppl.infer.mcmc.structure import (
    ConditionalChoiceError,
    Problem,
    Structure,
    conditional_message,
    make_problem,
    require_continuous,
    require_fixed_dimension,
    require_latent,
    structure,
)


class GradientConfig(NamedTuple):
    """Static settings of a gradient-based run (part of the compilation key)."""

    algorithm: str  # "nuts" | "hmc" | "mala"
    num_warmup: int
    num_samples: int
    num_chains: int
    target_accept: float
    dense_mass: bool
    max_tree_depth: int
    num_steps: int
    progress: bool
    summed: tuple = ()  # discrete latent addresses summed out of the target (ppl.infer.mcmc.marginalize)


WARMUP_STATS = ("diverging", "acceptance_rate", "n_steps", "step_size")


class KernelConfig(NamedTuple):
    num_warmup: int
    num_samples: int
    num_chains: int
    progress: bool


# ---------------------------------------------------------------- checks
def _check_counts(num_warmup: Any, num_samples: Any, num_chains: Any) -> None:
    for name, v, low in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1), ("num_chains", num_chains, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise ArgumentValueError(f"{name} must be an int >= {low}, got {v!r}")


# ------------------------------------------------------ the programs
def _transition(cfg: GradientConfig, logdensity: Callable) -> Callable:
    """``(key, state, step_size, inverse_mass_matrix) -> (state, stats)``: the lower tier on the model's flat vector."""
    if cfg.algorithm == "hmc":
        # Static HMC with a jittered number of leapfrog steps (see gradient.flat_step).
        step = flat_step("hmc", num_steps=cfg.num_steps, jitter_steps=True)
    else:
        step = flat_step(cfg.algorithm, max_tree_depth=cfg.max_tree_depth)

    def transition(key: Any, s: Any, eps: Any, imm: Any) -> tuple[Any, dict]:
        new, info = step(key, s, logdensity, eps, imm)
        stats = {
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "n_steps": info.num_steps,
            "energy": info.energy,
        }
        if cfg.algorithm == "nuts":
            stats["tree_depth"] = info.tree_depth
        else:
            stats["accepted"] = info.accepted
        return new, stats

    return transition


@partial(jax.jit, static_argnums=(0,))
def _gradient_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, states: Any) -> dict:
    """Warm-up and sampling of every chain from ``states``, then the constrained draws."""
    model, spec, s, cfg = static
    model, args = Problem(model, spec, (), obs).model_and_args(dyn)  # the model's leaves are traced
    space = flat_space(s)
    dtype = jnp.result_type(float)
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples

    def logdensity(z: Any) -> Any:
        return unconstrained_log_density(model, space.unravel(z), args, obs)

    transition = _transition(cfg, logdensity)
    k_eps, k_run = jax.random.split(key)
    identity = jnp.eye(space.size, dtype=dtype) if cfg.dense_mass else jnp.ones(space.size, dtype)
    eps0 = jax.vmap(lambda k, st: initial_step_size(k, st, logdensity, identity, cfg.algorithm))(
        jax.random.split(k_eps, C), states
    )

    # -- warm-up (Stan's windows, per chain) and sampling in one scan, so the
    # kernel is traced and compiled once: iterations i < W use and adapt the
    # warm-up parameters; at i = W - 1 the final step size and mass matrix
    # are fixed for the sampling iterations.
    adapt_init, adapt_update, adapt_final = window_adaptation(cfg.dense_mass, cfg.target_accept)
    ws = jax.vmap(adapt_init)(states.position, eps0)
    slow, end = schedule(W)
    pad = np.zeros(S, bool)
    fixed = (eps0, jnp.broadcast_to(identity, (C, *identity.shape)))
    total = W + S

    def iteration(carry: tuple, xs: tuple) -> tuple:
        st, w, (eps_s, imm_s) = carry
        i, k, is_slow, is_end = xs
        progress.tick(i, total, cfg.progress)
        warming = i < W
        eps = jnp.where(warming, w.step_size, eps_s)
        imm = jnp.where(warming, w.inverse_mass_matrix, imm_s)
        st, stats = jax.vmap(transition)(k, st, eps, imm)

        def adapt(carry: tuple) -> tuple:
            w, params = carry
            w = jax.vmap(adapt_update, in_axes=(0, None, None, 0, 0))(
                w, is_slow, is_end, st.position, stats["acceptance_rate"]
            )
            final = jax.vmap(adapt_final)(w)
            return w, jax.tree_util.tree_map(lambda f, p: jnp.where(i == W - 1, f, p), final, params)

        # sampling iterations skip the adaptation entirely
        w, params = jax.lax.cond(warming, adapt, lambda c: c, (w, (eps_s, imm_s)))
        stats["lp"] = st.logdensity
        stats["step_size"] = eps
        return (st, w, params), (st.position, stats)

    xs = (
        jnp.arange(total),
        jax.random.split(k_run, total * C).reshape(total, C),  # keys split once, outside the loop
        jnp.asarray(np.concatenate([slow, pad])),
        jnp.asarray(np.concatenate([end, pad])),
    )
    (_, _, (step_size, imm)), (positions, stats) = jax.lax.scan(iteration, (states, ws, fixed), xs)
    warmup = {k: jnp.swapaxes(v[:W], 0, 1) for k, v in stats.items() if k in WARMUP_STATS}
    positions = jnp.swapaxes(positions[W:], 0, 1)  # [chain, draw, D]
    stats = {k: jnp.swapaxes(v[W:], 0, 1) for k, v in stats.items() if k != "step_size"}

    # -- constrained draws and deterministic sites
    latent = Selection(frozenset(s.latent))

    def constrain(z: Any) -> tuple[ChoiceMap, ChoiceMap]:
        tr = from_unconstrained(model, space.unravel(z), args, obs)[0]
        return tr.choices.filter(latent), tr.deterministics

    lat, det = jax.vmap(constrain)(positions.reshape(C * S, space.size))
    unflat = partial(_unflatten, C, S)
    return {
        "latent": lat.map(unflat),
        "deterministic": det.map(unflat),
        "stats": stats,
        "step_size": step_size,
        "inverse_mass_matrix": imm,
        "warmup_stats": warmup,
    }


def _unflatten(c: int, s: int, x: Any) -> Any:
    return x.reshape((c, s, *x.shape[1:]))


def _samples(s: Structure, latent: ChoiceMap, det: ChoiceMap) -> Samples:
    out = Samples()
    for a in s.latent:
        out[address_name(a)] = np.asarray(latent[a])
    for a in s.deterministic:
        out[address_name(a)] = np.asarray(det[a])
    return out


def _gradient_run(
    algorithm: str,
    key: Any,
    model: Any,
    args: tuple,
    observations: Any,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    init: Any,
    target_accept: float,
    dense_mass: bool,
    max_tree_depth: int,
    num_steps: int,
    progress_bar: bool | None,
) -> MCMCResult:
    key = check_key(key, f"ppl.infer.{algorithm}")
    _check_counts(num_warmup, num_samples, num_chains)
    if not 0.0 < float(target_accept) < 1.0:
        raise ArgumentValueError(f"ppl.infer.{algorithm}: target_accept must be in (0, 1), got {target_accept!r}")
    problem = make_problem(model, args, observations)
    s = structure(problem)
    require_fixed_dimension(s, problem.model, f"ppl.infer.{algorithm}")
    s, summed = summed_structure(problem, s, f"ppl.infer.{algorithm}")  # finite discrete latents summed out
    require_continuous(s, problem.model, algorithm)
    show = progress.default_enabled() if progress_bar is None else bool(progress_bar)
    cfg = GradientConfig(
        algorithm,
        int(num_warmup),
        int(num_samples),
        int(num_chains),
        float(target_accept),
        bool(dense_mass),
        int(max_tree_depth),
        int(num_steps),
        show,
        summed,
    )
    k_user, k_init, k_run = jax.random.split(key, 3)
    init = named_init(problem, s, init, jax.random.fold_in(k_user, 1), cfg.num_chains, f"ppl.infer.{algorithm}")
    uniform_only = isinstance(init, str) and init == "uniform"
    init_cm = init_values(problem, s, None if isinstance(init, str) else init, cfg.num_chains)
    z_user = mask = None
    if init_cm is not None:
        z_user = user_positions(
            (problem.model, problem.spec), s.continuous, k_user, problem.dyn, problem.observations, init_cm
        )
        mask = user_mask(s, init_cm)
    with unvalidated(), summing(summed):
        states, ok = find_starts(problem, s, cfg.num_chains, k_init, z_user, mask, multi=not uniform_only)
    if not ok.all():
        raise init_error(problem, s, ok, np.asarray(states.position), init_cm is not None)
    static = (problem.model, problem.spec, s, cfg)
    label = f"{algorithm} ({cfg.num_chains} chains)"
    with unvalidated(), summing(summed):
        if show:
            with progress.ProgressBar(label, cfg.num_warmup, cfg.num_warmup + cfg.num_samples):
                out = jax.block_until_ready(_gradient_program(static, k_run, problem.dyn, problem.observations, states))
        else:
            out = _gradient_program(static, k_run, problem.dyn, problem.observations, states)
    stats = {k: np.asarray(v) for k, v in out["stats"].items()}
    result = MCMCResult(
        algorithm,
        _samples(s, out["latent"], out["deterministic"]),
        stats,
        model=problem.model,
        args=problem.args(),
        observations=problem.observations,
        latent=s.latent,
        deterministic=s.deterministic,
        step_size=np.asarray(out["step_size"]),
        inverse_mass_matrix=np.asarray(out["inverse_mass_matrix"]),
        warmup_stats={k: np.asarray(v) for k, v in out["warmup_stats"].items()},
    )
    check_draws(result)
    return result


# ------------------------------------------------------------ public
def nuts(
    key: Any,
    model: Any,
    args: tuple = (),
    observations: Any = None,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    init: Any = None,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    progress_bar: bool | None = None,
) -> MCMCResult:
    """Sample ``p(latent | observations)`` with NUTS (BlackJAX's multinomial NUTS kernel).

    Warm-up adapts the step size towards ``target_accept`` and a diagonal
    (``dense_mass=False``) or dense inverse mass matrix in Stan's windows;
    trajectories stop at ``2**max_tree_depth`` leapfrog steps. Every latent
    choice must be continuous. ``init``: optional constrained starting
    values (a ``ChoiceMap`` or dict; a leading axis of length ``num_chains``
    gives one value per chain) or a strategy by name, seeded from ``key``:
    ``None``/``"multistart"`` (the default) starts chains in the
    highest-density mode found by a short multi-start L-BFGS from Stan's
    uniform(-2, 2) draws (:mod:`ppl.infer.mcmc.initialization`),
    ``"uniform"`` keeps Stan's rule alone, ``"prior"`` starts each chain at
    its own draw from the prior (given the observations), ``"median"`` every
    chain at the elementwise median of 15 prior draws (NumPyro's
    ``init_to_median``); the same names work for ``hmc``/``mala``.
    ``progress_bar``: ``None`` shows progress only on an interactive terminal.

    Returns an :class:`MCMCResult`; divergent transitions after warm-up
    raise a :class:`DivergenceWarning`.
    """
    return _gradient_run(
        "nuts",
        key,
        model,
        args,
        observations,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        init=init,
        target_accept=target_accept,
        dense_mass=dense_mass,
        max_tree_depth=max_tree_depth,
        num_steps=0,
        progress_bar=progress_bar,
    )


def hmc(
    key: Any,
    model: Any,
    args: tuple = (),
    observations: Any = None,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    init: Any = None,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    num_steps: int = 16,
    progress_bar: bool | None = None,
) -> MCMCResult:
    """Sample with HMC: about ``num_steps`` leapfrog steps per draw, then a Metropolis test.

    Each transition integrates a number of leapfrog steps drawn uniformly
    from ``[num_steps / 2, 3 num_steps / 2]`` (a fixed trajectory length can
    be periodic on near-Gaussian targets). Warm-up as for :func:`nuts`.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ArgumentValueError(f"ppl.infer.hmc: num_steps must be a positive int, got {num_steps!r}")
    return _gradient_run(
        "hmc",
        key,
        model,
        args,
        observations,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        init=init,
        target_accept=target_accept,
        dense_mass=dense_mass,
        max_tree_depth=0,
        num_steps=num_steps,
        progress_bar=progress_bar,
    )


def mala(
    key: Any,
    model: Any,
    args: tuple = (),
    observations: Any = None,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    init: Any = None,
    target_accept: float = 0.574,
    dense_mass: bool = False,
    progress_bar: bool | None = None,
) -> MCMCResult:
    """Sample with preconditioned MALA (see the module docstring).

    The proposal is ``z' = z + eps M^{-1} grad log pi(z) + sqrt(2 eps) M^{-1/2} xi``
    (BlackJAX's convention: ``eps`` is the Langevin time step);
    warm-up adapts ``eps`` towards ``target_accept`` (0.574, optimal for MALA)
    and the inverse mass matrix ``M^{-1}``; ``result.step_size`` is ``eps``.
    """
    return _gradient_run(
        "mala",
        key,
        model,
        args,
        observations,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        init=init,
        target_accept=target_accept,
        dense_mass=dense_mass,
        max_tree_depth=0,
        num_steps=0,
        progress_bar=progress_bar,
    )


# ------------------------------------------------------ any kernel
@partial(jax.jit, static_argnums=(0,))
def _kernel_program(static: tuple, key: Any, traces: Any) -> dict:
    """``num_warmup + num_samples`` steps of every chain in one scan; draws after warm-up.

    A tunable kernel (``kernel.tuning``) is stepped with the parameters of
    its adaptation state during warm-up (Stan's windows, per chain) and with
    the final ones afterwards.
    """
    s, kernel, cfg = static
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples
    latent = Selection(frozenset(s.latent))
    total = W + S
    tuning = kernel.tuning
    slow, end = schedule(W)
    pad = np.zeros(S, bool)

    def record(st: Any, info: Any) -> tuple:
        tr = st.trace
        stats = {
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "accepted": info.accepted,
            "n_steps": info.num_steps,
            "lp": tr.score,
        }
        cm = tr.choices
        present = tuple(jnp.all(cm.mask(a).reshape(C, -1), axis=1) for a in s.masked)
        return cm.filter(latent), tr.deterministics, stats, present

    def iteration(carry: tuple, xs: tuple) -> tuple:
        st, a, fixed = carry
        i, k, is_slow, is_end = xs
        progress.tick(i, total, cfg.progress)
        keys = jax.random.split(k, C)
        if tuning is None:
            st, info = jax.vmap(kernel.step)(keys, st)
            return (st, a, fixed), (*record(st, info), ())
        warming = i < W
        params = jax.tree_util.tree_map(lambda w, f: jnp.where(warming, w, f), jax.vmap(tuning.params)(a), fixed)
        st, info, feedback = jax.vmap(tuning.step)(keys, st, params)

        def adapt(c: tuple) -> tuple:
            a, fixed = c
            a = jax.vmap(tuning.update, in_axes=(0, None, None, 0))(a, is_slow, is_end, feedback)
            final = jax.vmap(tuning.final)(a)
            return a, jax.tree_util.tree_map(lambda f, p: jnp.where(i == W - 1, f, p), final, fixed)

        a, fixed = jax.lax.cond(warming, adapt, lambda c: c, (a, fixed))
        return (st, a, fixed), (*record(st, info), _step_sizes(params))

    k_start, k_run = jax.random.split(key)
    states = jax.vmap(kernel.init)(traces)
    if tuning is None:
        a = fixed = ()
    else:
        a = jax.vmap(tuning.start)(jax.random.split(k_start, C), states)
        fixed = jax.vmap(tuning.params)(a)  # used when there is no warm-up
    xs = (
        jnp.arange(total),
        jax.random.split(k_run, total),
        jnp.asarray(np.concatenate([slow, pad])),
        jnp.asarray(np.concatenate([end, pad])),
    )
    (_, _, fixed), (lat, det, stats, present, eps) = jax.lax.scan(iteration, (states, a, fixed), xs)

    def after_warmup(x: Any) -> Any:
        return jnp.swapaxes(x[W:], 0, 1)

    return {
        "latent": lat.map(after_warmup),
        "deterministic": det.map(after_warmup),
        "stats": {k: after_warmup(v) for k, v in stats.items()},
        # per masked latent address: present in every draw of every chain (warm-up included)
        "present": tuple(jnp.all(p) for p in present),
        "params": _leaf_params(fixed),
        "warmup_step_size": tuple(jnp.swapaxes(e[:W], 0, 1) for e in eps),
    }


def _leaf_params(params: Any) -> tuple:
    """Every tunable gradient kernel's ``(step_size, inverse_mass_matrix)``, in kernel order."""
    if params is None:
        return ()
    if isinstance(params, GradientParams):
        return (params,)
    if isinstance(params, tuple):
        return tuple(p for x in params for p in _leaf_params(x))
    return ()


def _step_sizes(params: Any) -> tuple:
    return tuple(p[0] for p in _leaf_params(params))


def run_mcmc(
    key: Any,
    kernel: MCMCKernel | Callable[[Selection], MCMCKernel],
    model: Any,
    args: tuple = (),
    observations: Any = None,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    init: Any = None,
    progress_bar: bool | None = None,
    algorithm: str | None = None,
) -> MCMCResult:
    """Run any kernel on ``p(latent | observations)``: ``num_warmup`` discarded steps, then ``num_samples`` draws.

    ``kernel`` is an :class:`MCMCKernel` or a builder called with the
    selection of the model's latent choices (``lambda latent: nuts(latent,
    0.1)``). Parameters given to a kernel are used as given; gradient
    kernels built without a ``step_size`` (``cycle(nuts(select("mu")),
    gibbs("k"))``) are adapted during warm-up: the step size by dual
    averaging towards the kernel's ``target_accept``, and (unless the kernel
    was given one) the inverse mass matrix, in Stan's windows, per chain.
    Then ``result.adapted`` lists each adapted kernel's final
    ``(step_size [chain], inverse_mass_matrix [chain, ...])`` in kernel
    order, ``result.warmup_stats["step_size"]`` holds the first one's step
    size per warm-up iteration, and with one adapted kernel
    ``result.step_size`` / ``result.inverse_mass_matrix`` are its values.
    Initial traces: Stan-style uniform(-2, 2) for continuous latent choices,
    prior draws for discrete ones, ``init`` values where given; ``init`` may
    also name a strategy (``"uniform"``, the default; ``"prior"``: each
    chain at its own prior draw; ``"median"``: the median of 15 prior
    draws), seeded from ``key``. Reuse the same kernel object to reuse the
    compiled program.
    """
    key = check_key(key, "ppl.infer.run_mcmc")
    _check_counts(num_warmup, num_samples, num_chains)
    problem = make_problem(model, args, observations)
    s = structure(problem)
    require_latent(s, problem.model)
    require_fixed_dimension(s, problem.model, f"ppl.infer.{algorithm or 'run_mcmc'}")
    if not isinstance(kernel, MCMCKernel):
        if not callable(kernel):
            raise PPLError(f"run_mcmc needs an MCMCKernel or a function building one, got {type(kernel).__name__}")
        kernel = kernel(Selection(frozenset(s.latent)))
        if not isinstance(kernel, MCMCKernel):
            raise PPLError(f"the kernel builder returned a {type(kernel).__name__}, not an MCMCKernel")
    show = progress.default_enabled() if progress_bar is None else bool(progress_bar)
    cfg = KernelConfig(int(num_warmup), int(num_samples), int(num_chains), show)
    k_init, k_run = jax.random.split(key)
    init = named_init(
        problem, s, init, jax.random.fold_in(k_init, 1), cfg.num_chains, f"ppl.infer.{algorithm or 'run_mcmc'}"
    )
    if isinstance(init, str) and init == "multistart":
        raise ArgumentValueError(
            f"ppl.infer.{algorithm or 'run_mcmc'}: init='multistart' is for the gradient runners (nuts, hmc, mala); "
            "run_mcmc starts from Stan's rule ('uniform', the default), 'prior', 'median' or values"
        )
    init_cm = init_values(problem, s, None if isinstance(init, str) else init, cfg.num_chains)
    traces, ok = trace_start_program(
        (problem.model, problem.spec, cfg.num_chains), k_init, problem.dyn, problem.observations, init_cm
    )
    ok = np.asarray(ok)
    if not ok.all():
        raise trace_init_error(problem, ok, traces)
    static = (s, kernel, cfg)
    name = algorithm or "mcmc"
    if show:
        with progress.ProgressBar(
            f"{name} ({cfg.num_chains} chains)", cfg.num_warmup, cfg.num_warmup + cfg.num_samples
        ):
            out = jax.block_until_ready(_kernel_program(static, k_run, traces))
    else:
        out = _kernel_program(static, k_run, traces)
    absent = tuple(a for a, p in zip(s.masked, out["present"]) if not bool(p))
    if absent:  # a branch no presence probe took (structure.PRESENCE_PROBES) was taken during the run
        raise ConditionalChoiceError(conditional_message(absent, problem.model, f"ppl.infer.{name}"))
    result = MCMCResult(
        name,
        _samples(s, out["latent"], out["deterministic"]),
        {k: np.asarray(v) for k, v in out["stats"].items()},
        model=problem.model,
        args=problem.args(),
        observations=problem.observations,
        latent=s.latent,
        deterministic=s.deterministic,
    )
    adapted = [GradientParams(np.asarray(p.step_size), np.asarray(p.inverse_mass_matrix)) for p in out["params"]]
    result.adapted = adapted
    if out["warmup_step_size"]:
        result.warmup_stats = {"step_size": np.asarray(out["warmup_step_size"][0])}
    if len(adapted) == 1:
        result.step_size, result.inverse_mass_matrix = adapted[0]
    check_draws(result)
    return result


def mh(
    key: Any,
    model: Any,
    args: tuple = (),
    observations: Any = None,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    init: Any = None,
    progress_bar: bool | None = None,
) -> MCMCResult:
    """Single-site Metropolis-Hastings with prior proposals.

    Each iteration cycles over the latent choices, resampling one at a time
    from its prior given the others (``regenerate``) and accepting with the
    MH ratio. Needs proper priors on every latent choice; warm-up
    iterations are discarded (no adaptation).
    """
    problem = make_problem(model, args, observations)
    s = structure(problem)
    require_latent(s, problem.model)
    kernel = cycle(*(mh_kernel(select(a)) for a in s.latent))
    return run_mcmc(
        key,
        kernel,
        model,
        args,
        observations,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        init=init,
        progress_bar=progress_bar,
        algorithm="mh",
    )
