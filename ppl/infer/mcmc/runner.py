"""MCMC runners: ``nuts``, ``hmc``, ``mala``, ``mh`` and ``run_mcmc`` for any kernel.

Warm-up, sampling, all chains, and mapping the draws back to constrained
space are one compiled program: chains are vectorised with ``vmap`` inside a
single ``lax.scan`` over the warm-up and sampling iterations (so the kernel
is compiled once). Programs are ``jax.jit`` functions whose static key holds
the model, the arguments' static structure and the run's settings, so a
second call with equal shapes (new data of the same shape, a new key, with
or without a progress bar) reuses the compiled code. Starting points come
first, from a small separate program (:mod:`ppl.infer.mcmc.initialization`:
Stan's uniform(-2, 2) rule or the user's ``init``, with retries).

Gradient runners (``nuts``, ``hmc``, ``mala``) adapt the step size (dual
averaging towards ``target_accept``) and a diagonal or dense inverse mass
matrix in Stan's windows during ``num_warmup`` iterations
(:mod:`ppl.infer.mcmc.adaptation`), per chain. ``mala`` is HMC with one
leapfrog step, which is exactly MALA preconditioned by the mass matrix
(Langevin step ``eps**2 / 2``); its default target acceptance is 0.574.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import blackjax
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
from ppl.infer.mcmc.adaptation import initial_step_size, schedule, window_adaptation
from ppl.infer.mcmc.combinators import cycle
from ppl.infer.mcmc.initialization import (
    find_starts,
    flat_space,
    init_error,
    init_values,
    trace_init_error,
    trace_start_program,
    user_mask,
    user_positions,
)
from ppl.infer.mcmc.kernel import MCMCKernel
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
    """``(key, state, step_size, inverse_mass_matrix) -> (state, stats)`` from BlackJAX."""
    if cfg.algorithm == "nuts":
        kernel = blackjax.nuts.build_kernel()

        def nuts_step(key: Any, s: Any, eps: Any, imm: Any) -> tuple[Any, dict]:
            new, info = kernel(key, s, logdensity, eps, imm, max_num_doublings=cfg.max_tree_depth)
            return new, {
                "diverging": info.is_divergent,
                "acceptance_rate": info.acceptance_rate,
                "n_steps": info.num_integration_steps,
                "tree_depth": info.num_trajectory_expansions,
                "energy": info.energy,
            }

        return nuts_step
    kernel = blackjax.hmc.build_kernel()
    # Static HMC: the number of leapfrog steps is drawn uniformly from
    # [L/2, 3L/2] (mean L) at every transition. A fixed trajectory length can
    # be nearly periodic for near-Gaussian targets (the chain then returns
    # close to where it started); a random one, chosen independently of the
    # state, keeps every transition reversible and breaks the resonance.
    low = max(1, (cfg.num_steps + 1) // 2)
    high = max(low, (3 * cfg.num_steps) // 2)

    def hmc_step(key: Any, s: Any, eps: Any, imm: Any) -> tuple[Any, dict]:
        k_len, key = jax.random.split(key)
        n = jax.random.randint(k_len, (), low, high + 1) if high > low else low
        new, info = kernel(key, s, logdensity, eps, imm, n)
        return new, {
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "n_steps": jnp.asarray(info.num_integration_steps, jnp.int32),
            "accepted": info.is_accepted,
            "energy": info.energy,
        }

    return hmc_step


@partial(jax.jit, static_argnums=(0,))
def _gradient_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, states: Any) -> dict:
    """Warm-up and sampling of every chain from ``states``, then the constrained draws."""
    model, spec, s, cfg = static
    args = Problem(model, spec, (), obs).args(dyn)
    space = flat_space(s)
    dtype = jnp.result_type(float)
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples

    def logdensity(z: Any) -> Any:
        return unconstrained_log_density(model, space.unravel(z), args, obs)

    transition = _transition(cfg, logdensity)
    k_eps, k_run = jax.random.split(key)
    identity = jnp.eye(space.size, dtype=dtype) if cfg.dense_mass else jnp.ones(space.size, dtype)
    eps0 = jax.vmap(lambda k, st: initial_step_size(k, st, logdensity, identity))(jax.random.split(k_eps, C), states)

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
    require_continuous(s, problem.model, algorithm)
    require_fixed_dimension(s, problem.model, f"ppl.infer.{algorithm}")
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
    )
    k_user, k_init, k_run = jax.random.split(key, 3)
    init_cm = init_values(problem, s, init, cfg.num_chains)
    z_user = mask = None
    if init_cm is not None:
        z_user = user_positions(
            (problem.model, problem.spec), s.continuous, k_user, problem.dyn, problem.observations, init_cm
        )
        mask = user_mask(s, init_cm)
    with unvalidated():
        states, ok = find_starts(problem, s, cfg.num_chains, k_init, z_user, mask)
    if not ok.all():
        raise init_error(problem, s, ok, np.asarray(states.position), init_cm is not None)
    static = (problem.model, problem.spec, s, cfg)
    label = f"{algorithm} ({cfg.num_chains} chains)"
    with unvalidated():
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
    gives one value per chain). ``progress_bar``: ``None`` shows progress
    only on an interactive terminal.

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
    """Sample with preconditioned MALA (HMC with one leapfrog step; see the module docstring).

    The proposal is ``z' = z + (eps**2 / 2) M^{-1} grad log pi(z) + eps M^{-1/2} xi``;
    warm-up adapts ``eps`` towards ``target_accept`` (0.574, optimal for MALA)
    and the inverse mass matrix ``M^{-1}``.
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
        num_steps=1,
        progress_bar=progress_bar,
    )


# ------------------------------------------------------ any kernel
@partial(jax.jit, static_argnums=(0,))
def _kernel_program(static: tuple, key: Any, traces: Any) -> dict:
    """``num_warmup + num_samples`` steps of every chain in one scan; draws after warm-up."""
    s, kernel, cfg = static
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples
    latent = Selection(frozenset(s.latent))
    total = W + S

    def iteration(st: Any, xs: tuple) -> tuple:
        i, k = xs
        progress.tick(i, total, cfg.progress)
        st, info = jax.vmap(kernel.step)(jax.random.split(k, C), st)
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
        return st, (cm.filter(latent), tr.deterministics, stats, present)

    states = jax.vmap(kernel.init)(traces)
    _, (lat, det, stats, present) = jax.lax.scan(iteration, states, (jnp.arange(total), jax.random.split(key, total)))

    def after_warmup(x: Any) -> Any:
        return jnp.swapaxes(x[W:], 0, 1)

    return {
        "latent": lat.map(after_warmup),
        "deterministic": det.map(after_warmup),
        "stats": {k: after_warmup(v) for k, v in stats.items()},
        # per masked latent address: present in every draw of every chain (warm-up included)
        "present": tuple(jnp.all(p) for p in present),
    }


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
    0.1)``). No adaptation: the kernel's parameters are used as given.
    Initial traces: Stan-style uniform(-2, 2) for continuous latent choices,
    prior draws for discrete ones, ``init`` values where given. Reuse the
    same kernel object to reuse the compiled program.
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
    init_cm = init_values(problem, s, init, cfg.num_chains)
    k_init, k_run = jax.random.split(key)
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
