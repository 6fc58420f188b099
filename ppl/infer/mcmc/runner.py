"""MCMC runners: ``nuts``, ``hmc``, ``mala``, ``mh`` and ``run_mcmc`` for any kernel.

Every run -- initialisation, warm-up, sampling, all chains, and mapping the
draws back to constrained space -- is one compiled program: chains are
vectorised with ``vmap`` inside a ``lax.scan`` over iterations. Programs are
``jax.jit`` functions whose static key holds the model, the arguments'
static structure and the run's settings, so a second call with equal shapes
(new data of the same shape, a new key) reuses the compiled code.

Initialisation (Stan's rule): each chain draws its unconstrained position
uniformly from ``(-2, 2)`` (``ppl.unconstrained_init``; improper priors are
never sampled), or starts from the user's ``init`` (constrained values, one
shared set or one per chain with a leading chain axis; choices not given are
drawn as above). A draw whose log density or gradient is not finite is
retried (up to 100 times); if a chain finds no finite point the run raises
:class:`ppl.errors.InitializationError` naming the choices with non-finite
density.

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
from jax.flatten_util import ravel_pytree

from ppl.core import (
    ChoiceMap,
    Selection,
    from_unconstrained,
    select,
    to_unconstrained,
    unconstrained_init,
    unconstrained_log_density,
)
from ppl.core.address import format_address
from ppl.core.choicemap import as_choicemap
from ppl.core.generative_function import check_key
from ppl.errors import ConstraintShapeError, InferenceError, InitializationError, PPLError
from ppl.infer.mcmc import progress
from ppl.infer.mcmc.adaptation import initial_step_size, schedule, window_adaptation
from ppl.infer.mcmc.combinators import cycle
from ppl.infer.mcmc.kernel import MCMCKernel
from ppl.infer.mcmc.metropolis import mh as mh_kernel
from ppl.infer.mcmc.result import MCMCResult, Samples, address_name, check_draws
from ppl.infer.mcmc.space import FlatSpace, space_from_shapes
from ppl.infer.mcmc.structure import (
    Problem,
    Structure,
    make_problem,
    require_continuous,
    require_latent,
    structure,
)

MAX_INIT_TRIES = 100


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


class KernelConfig(NamedTuple):
    num_warmup: int
    num_samples: int
    num_chains: int


# ---------------------------------------------------------------- checks
def _check_counts(num_warmup: Any, num_samples: Any, num_chains: Any) -> None:
    for name, v, low in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1), ("num_chains", num_chains, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


def _shapes_map(entries: tuple) -> ChoiceMap:
    return ChoiceMap({a: jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for a, s in entries}, _trusted=True)


def _space(s: Structure) -> FlatSpace:
    return space_from_shapes(_shapes_map(s.unconstrained))


# ------------------------------------------------------------ user init
def _init_values(problem: Problem, s: Structure, init: Any, num_chains: int) -> ChoiceMap | None:
    """The user's initial values broadcast to a leading chain axis (or None)."""
    if init is None:
        return None
    cm = as_choicemap(init)
    shapes = dict(s.constrained)
    latent = set(s.latent)
    out = {}
    for a, v in cm.flat_dict().items():
        if a not in latent:
            what = "observed" if a in set(s.observed) else "not a choice of the model"
            raise InferenceError(
                f"init gives a value at {format_address(a)}, which is {what}; init takes constrained values of "
                f"latent choices: {', '.join(format_address(x) for x in s.latent[:10])}"
            )
        v = jnp.asarray(v)
        site = shapes[a].shape
        if tuple(v.shape) == site:
            v = jnp.broadcast_to(v, (num_chains, *site))
        elif tuple(v.shape) != (num_chains, *site):
            raise ConstraintShapeError(
                f"init value at {format_address(a)} has shape {tuple(v.shape)}; expected {site} (shared by all "
                f"chains) or {(num_chains, *site)} (one per chain)"
            )
        out[a] = v.astype(jnp.dtype(shapes[a].dtype))
    return ChoiceMap(out, _trusted=True)


@partial(jax.jit, static_argnums=(0, 1))
def _user_positions(problem_static: tuple, continuous: tuple, key: Any, dyn: Any, obs: ChoiceMap, init: ChoiceMap):
    """Flat unconstrained starting points ``[chain, D]`` agreeing with the user's init."""
    model, spec = problem_static
    args = Problem(model, spec, (), obs).args(dyn)
    sel = select(*continuous)

    def one(k: Any, given: ChoiceMap) -> Any:
        u_rest = unconstrained_init(k, model, args, obs | given)
        tr = from_unconstrained(model, u_rest, args, obs | given, key=k)[0]
        return ravel_pytree(to_unconstrained(tr, sel))[0]

    n = jax.tree_util.tree_leaves(init)[0].shape[0]
    return jax.vmap(one)(jax.random.split(key, n), init)


def _user_mask(s: Structure, init: ChoiceMap) -> Any:
    given = set(init.addresses())
    mask = ChoiceMap({a: jnp.full(sh.shape, a in given) for a, sh in s.unconstrained}, _trusted=True)
    return ravel_pytree(mask)[0].astype(bool)


# ------------------------------------------------------ init diagnosis
def _trace_problems(tr: Any) -> str:
    """Which choices (or factors) of a trace have a non-finite log density."""
    addrs = tr.choices.addresses()
    dens = {a: float(tr.project(select(a))) for a in addrs}
    bad = [a for a, v in dens.items() if not np.isfinite(v)]
    if bad:
        return "non-finite log density at " + ", ".join(format_address(a) for a in bad)
    if not np.isfinite(float(tr.score)):
        return "a ppl.factor term is non-finite"
    return ""


def _diagnose(problem: Problem, s: Structure, z: Any) -> str:
    """Which choices have a non-finite log density (or gradient) at ``z``."""
    space = _space(s)
    args = problem.args()
    obs = problem.observations
    parts = []
    try:
        tr = from_unconstrained(problem.model, space.unravel(z), args, obs)[0]
        parts.append(_trace_problems(tr))
        g = jax.grad(lambda x: unconstrained_log_density(problem.model, space.unravel(x), args, obs))(z)
        gm = space.unravel(g)
        badg = [a for a in gm.addresses() if not np.all(np.isfinite(np.asarray(gm[a])))]
        if badg:
            parts.append("non-finite gradient with respect to " + ", ".join(format_address(a) for a in badg))
    except Exception as e:  # the diagnosis must not hide the initialisation error
        parts.append(f"evaluating the model there raised {type(e).__name__}: {e}")
    return "; ".join(p for p in parts if p) or "log density non-finite"


def _init_error(problem: Problem, s: Structure, ok: np.ndarray, z: Any, user: bool) -> InitializationError:
    failed = [int(i) for i in np.flatnonzero(~ok)]
    why = _diagnose(problem, s, z[failed[0]])
    hint = (
        "check the init values you gave (they must lie in each choice's support)"
        if user
        else "check the model's densities and the data (e.g. a scale that can be zero, log of a negative "
        "number), or give init values"
    )
    return InitializationError(
        f"{problem.model.name}: no initial point with a finite log density and gradient for chain(s) {failed} "
        f"after {MAX_INIT_TRIES} tries of Stan's uniform(-2, 2) initialisation; at the last try of chain "
        f"{failed[0]}: {why}. {hint}"
    )


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
def _start_program(
    static: tuple, key: Any, attempt: Any, dyn: Any, obs: ChoiceMap, z_user: Any, mask: Any
) -> tuple[Any, Any]:
    """One initialisation attempt per chain: a state and whether its density and gradient are finite.

    A separate (small) program, so a model whose density is non-finite
    everywhere fails before the sampler is compiled; retries (Stan's rule)
    call it again with the next ``attempt`` for the chains that failed.
    """
    model, spec, s, num_chains = static
    args = Problem(model, spec, (), obs).args(dyn)
    space = _space(s)
    dtype = jnp.result_type(float)

    def logdensity(z: Any) -> Any:
        return unconstrained_log_density(model, space.unravel(z), args, obs)

    def start(k: Any, zu: Any) -> tuple[Any, Any]:
        z = ravel_pytree(unconstrained_init(jax.random.fold_in(k, attempt), model, args, obs))[0].astype(dtype)
        z = z if mask is None else jnp.where(mask, zu, z)
        ld, g = jax.value_and_grad(logdensity)(z)
        ok = jnp.isfinite(ld) & jnp.all(jnp.isfinite(g))
        return blackjax.mcmc.hmc.HMCState(z, ld, g), ok

    zu = jnp.zeros((num_chains, space.size), dtype) if z_user is None else z_user
    return jax.vmap(start)(jax.random.split(key, num_chains), zu)


def _find_starts(problem: Problem, s: Structure, num_chains: int, key: Any, z_user: Any, mask: Any) -> tuple[Any, Any]:
    """Stan's retries: redraw the chains whose start is not finite, at most MAX_INIT_TRIES times."""
    static = (problem.model, problem.spec, s, num_chains)
    states, ok = _start_program(static, key, 0, problem.dyn, problem.observations, z_user, mask)
    ok = np.asarray(ok)
    attempt = 1
    while not ok.all() and attempt < MAX_INIT_TRIES:
        new, new_ok = _start_program(static, key, attempt, problem.dyn, problem.observations, z_user, mask)
        redo = jnp.asarray(~ok)
        states = jax.tree_util.tree_map(
            lambda a, b: jnp.where(redo.reshape((-1,) + (1,) * (a.ndim - 1)), b, a), states, new
        )
        ok = ok | np.asarray(new_ok)
        attempt += 1
    return states, ok


@partial(jax.jit, static_argnums=(0,))
def _gradient_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, states: Any, show: Any) -> dict:
    """Warm-up and sampling of every chain from ``states``, then the constrained draws."""
    model, spec, s, cfg = static
    args = Problem(model, spec, (), obs).args(dyn)
    space = _space(s)
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
        progress.tick(i, total, show)
        warming = i < W
        eps = jnp.where(warming, w.step_size, eps_s)
        imm = jnp.where(warming, w.inverse_mass_matrix, imm_s)
        st, stats = jax.vmap(transition)(jax.random.split(k, C), st, eps, imm)
        w = jax.vmap(adapt_update, in_axes=(0, None, None, 0, 0))(
            w, is_slow, is_end, st.position, stats["acceptance_rate"]
        )
        final = jax.vmap(adapt_final)(w)
        params = jax.tree_util.tree_map(lambda f, p: jnp.where(i == W - 1, f, p), final, (eps_s, imm_s))
        stats["lp"] = st.logdensity
        return (st, w, params), (st.position, stats)

    xs = (
        jnp.arange(total),
        jax.random.split(k_run, total),
        jnp.asarray(np.concatenate([slow, pad])),
        jnp.asarray(np.concatenate([end, pad])),
    )
    (_, _, (step_size, imm)), (positions, stats) = jax.lax.scan(iteration, (states, ws, fixed), xs)
    warm_div = jnp.sum(stats["diverging"][:W], axis=0).astype(jnp.int32)
    positions = jnp.swapaxes(positions[W:], 0, 1)  # [chain, draw, D]
    stats = {k: jnp.swapaxes(v[W:], 0, 1) for k, v in stats.items()}

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
        "warmup_divergences": warm_div,
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
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    problem = make_problem(model, args, observations)
    s = structure(problem)
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
    )
    k_user, k_init, k_run = jax.random.split(key, 3)
    init_cm = _init_values(problem, s, init, cfg.num_chains)
    z_user = mask = None
    if init_cm is not None:
        z_user = _user_positions(
            (problem.model, problem.spec), s.continuous, k_user, problem.dyn, problem.observations, init_cm
        )
        mask = _user_mask(s, init_cm)
    states, ok = _find_starts(problem, s, cfg.num_chains, k_init, z_user, mask)
    if not ok.all():
        raise _init_error(problem, s, ok, np.asarray(states.position), init_cm is not None)
    static = (problem.model, problem.spec, s, cfg)
    label = f"{algorithm} ({cfg.num_chains} chains)"
    if show:
        with progress.ProgressBar(label, cfg.num_warmup, cfg.num_warmup + cfg.num_samples):
            out = jax.block_until_ready(
                _gradient_program(static, k_run, problem.dyn, problem.observations, states, True)
            )
    else:
        out = _gradient_program(static, k_run, problem.dyn, problem.observations, states, False)
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
        warmup_divergences=np.asarray(out["warmup_divergences"]),
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
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
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
def _trace_start_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, init: Any) -> tuple[Any, Any]:
    """Per chain, an initial trace with a finite score (Stan's retries; discrete choices from the prior)."""
    model, spec, num_chains = static
    args = Problem(model, spec, (), obs).args(dyn)

    def start(k: Any, given: Any) -> tuple[Any, Any]:
        cons = obs if given is None else obs | given

        def attempt(i: Any) -> tuple[Any, Any]:
            kk = jax.random.fold_in(k, i)
            u = unconstrained_init(kk, model, args, cons)
            tr = from_unconstrained(model, u, args, cons, key=kk)[0]
            return tr, jnp.isfinite(tr.score)

        tr0, ok0 = attempt(0)

        def body(c: tuple) -> tuple:
            return (c[0] + 1, *attempt(c[0]))

        _, tr, ok = jax.lax.while_loop(lambda c: (~c[2]) & (c[0] < MAX_INIT_TRIES), body, (jnp.int32(1), tr0, ok0))
        return tr, ok

    return jax.vmap(start)(jax.random.split(key, num_chains), init)


@partial(jax.jit, static_argnums=(0,))
def _kernel_program(static: tuple, key: Any, traces: Any, show: Any) -> dict:
    """``num_warmup + num_samples`` steps of every chain in one scan; draws after warm-up."""
    s, kernel, cfg = static
    C, W, S = cfg.num_chains, cfg.num_warmup, cfg.num_samples
    latent = Selection(frozenset(s.latent))
    total = W + S

    def iteration(st: Any, xs: tuple) -> tuple:
        i, k = xs
        progress.tick(i, total, show)
        st, info = jax.vmap(kernel.step)(jax.random.split(k, C), st)
        tr = st.trace
        stats = {
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "accepted": info.accepted,
            "n_steps": info.num_steps,
            "lp": tr.score,
        }
        return st, (tr.choices.filter(latent), tr.deterministics, stats)

    states = jax.vmap(kernel.init)(traces)
    _, (lat, det, stats) = jax.lax.scan(iteration, states, (jnp.arange(total), jax.random.split(key, total)))

    def after_warmup(x: Any) -> Any:
        return jnp.swapaxes(x[W:], 0, 1)

    return {
        "latent": lat.map(after_warmup),
        "deterministic": det.map(after_warmup),
        "stats": {k: after_warmup(v) for k, v in stats.items()},
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
    if not isinstance(kernel, MCMCKernel):
        if not callable(kernel):
            raise PPLError(f"run_mcmc needs an MCMCKernel or a function building one, got {type(kernel).__name__}")
        kernel = kernel(Selection(frozenset(s.latent)))
        if not isinstance(kernel, MCMCKernel):
            raise PPLError(f"the kernel builder returned a {type(kernel).__name__}, not an MCMCKernel")
    show = progress.default_enabled() if progress_bar is None else bool(progress_bar)
    cfg = KernelConfig(int(num_warmup), int(num_samples), int(num_chains))
    init_cm = _init_values(problem, s, init, cfg.num_chains)
    k_init, k_run = jax.random.split(key)
    traces, ok = _trace_start_program(
        (problem.model, problem.spec, cfg.num_chains), k_init, problem.dyn, problem.observations, init_cm
    )
    ok = np.asarray(ok)
    if not ok.all():
        failed = [int(i) for i in np.flatnonzero(~ok)]
        why = _trace_problems(jax.tree_util.tree_map(lambda x: x[failed[0]], traces))
        raise InitializationError(
            f"{problem.model.name}: no initial trace with a finite log density for chain(s) {failed} after "
            f"{MAX_INIT_TRIES} tries; at the last try of chain {failed[0]}: {why}. Check the model's densities "
            "and the data, or give init values"
        )
    static = (s, kernel, cfg)
    name = algorithm or "mcmc"
    if show:
        with progress.ProgressBar(
            f"{name} ({cfg.num_chains} chains)", cfg.num_warmup, cfg.num_warmup + cfg.num_samples
        ):
            out = jax.block_until_ready(_kernel_program(static, k_run, traces, True))
    else:
        out = _kernel_program(static, k_run, traces, False)
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
