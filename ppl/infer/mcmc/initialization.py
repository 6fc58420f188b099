"""Initialisation of MCMC chains: Stan's rule, user-given values, retries, diagnosis.

Each chain draws its unconstrained position uniformly from ``(-2, 2)``
(``ppl.unconstrained_init``; improper priors are never sampled) or starts
from the user's ``init`` (constrained values; one shared set, or one per
chain with a leading chain axis; choices not given are drawn as above). A
chain whose log density or gradient is not finite is redrawn, up to
``MAX_INIT_TRIES`` times (Stan: 100); a chain that never finds a finite
point raises :class:`ppl.errors.InitializationError` naming the choices with
a non-finite density (or gradient). Starting points come from small
separate programs, so such a model fails before the sampler is compiled.

**Multi-start (the default for the gradient runners without ``init``).**
Stan's rule alone can leave a chain in a minor mode that warm-up never
leaves (posteriordb's arma11: chains started with ``|theta| > 1`` settle
where the MA recursion explodes). So the runners draw ``max(8, 2 *
num_chains)`` candidates with Stan's rule, run ``OPT_STEPS`` L-BFGS steps
(``optax.lbfgs``, zoom line search) on ``-log pi(z)`` in unconstrained
space from each, all candidates in one vectorised program, and discard the
candidates whose best log density is more than ``LOG_DENSITY_GAP`` nats
below the best candidate's. Each chain then starts from a different kept
candidate (in random order, reused if fewer are kept than chains), not at
its optimum but at the first point of its optimisation path whose log
density is within ``D / 2 + 1`` nats of that optimum (``D`` the number of
unconstrained dimensions: a typical posterior draw lies about ``D / 2``
nats below the mode), so the starts are spread at the posterior's own
scale inside the highest mode's basin. ``init="uniform"`` keeps Stan's
rule alone; user-given ``init`` values are used as given.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax
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
from ppl.errors import ConstraintShapeError, InferenceError, InitializationError
from ppl.infer.mcmc.space import FlatSpace, space_from_shapes, values_only
from ppl.infer.mcmc.structure import Problem, Structure

MAX_INIT_TRIES = 100
OPT_STEPS = 30  # L-BFGS steps per multi-start candidate (enough to tell a negligible mode from the main one)
MAX_LINESEARCH_STEPS = 8  # per L-BFGS step (optax's default, 20, is mostly spent on hopeless candidates)
LOG_DENSITY_GAP = 10.0  # candidates this many nats below the best one are discarded


def num_candidates(num_chains: int) -> int:
    return max(8, 2 * num_chains)


def _shapes_map(entries: tuple) -> ChoiceMap:
    return ChoiceMap({a: jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype)) for a, s in entries}, _trusted=True)


def flat_space(s: Structure) -> FlatSpace:
    """The flat unconstrained space of a model's continuous latent choices."""
    return space_from_shapes(_shapes_map(s.unconstrained))


def init_values(problem: Problem, s: Structure, init: Any, num_chains: int) -> ChoiceMap | None:
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


#: init names the runners accept besides values (see :func:`named_init`)
INIT_NAMES = ("multistart", "uniform", "prior", "median")
MEDIAN_DRAWS = 15  # prior draws behind init="median" (NumPyro's init_to_median default)


def named_init(problem: Problem, s: Structure, init: Any, key: Any, num_chains: int, where: str) -> Any:
    """``init`` with ``"prior"``/``"median"`` turned into constrained values (a chain axis in front).

    ``"prior"``: each chain starts at its own draw of the latent choices from
    the model given the observations (``generate``); ``"median"``: every
    chain at the elementwise median of ``MEDIAN_DRAWS`` such draws. Both are
    seeded from the run's key. Other values pass through.
    """
    if not isinstance(init, str):
        return init
    if init not in INIT_NAMES:
        raise InferenceError(
            f"{where}: init={init!r} is not an initialisation strategy; expected one of {INIT_NAMES} or initial "
            "values (a dict or ChoiceMap of constrained values)"
        )
    if init in ("multistart", "uniform"):
        return init
    n = num_chains if init == "prior" else MEDIAN_DRAWS
    model, args = problem.model_and_args()

    def draw(k: Any) -> ChoiceMap:
        return model.generate(k, problem.observations, args)[0].choices

    try:
        cm = jax.jit(jax.vmap(draw))(jax.random.split(key, n))
    except Exception as e:  # an improper prior cannot be sampled
        raise InitializationError(
            f"{where}: init={init!r} draws the latent choices from the prior, which failed ({type(e).__name__}: "
            f"{e}); use init='uniform' or 'multistart' (which need no prior draws) or give values"
        ) from None
    values = {}
    for a in s.latent:
        v = jnp.asarray(cm[a])
        if init == "median":
            v = jnp.broadcast_to(jnp.median(v, axis=0), (num_chains, *v.shape[1:])).astype(v.dtype)
        values[a] = v
    return ChoiceMap(values, _trusted=True)


@partial(jax.jit, static_argnums=(0, 1))
def user_positions(problem_static: tuple, continuous: tuple, key: Any, dyn: Any, obs: ChoiceMap, init: ChoiceMap):
    """Flat unconstrained starting points ``[chain, D]`` agreeing with the user's init."""
    model, spec = problem_static
    model, args = Problem(model, spec, (), obs).model_and_args(dyn)  # the model's leaves are traced
    sel = select(*continuous)

    def one(k: Any, given: ChoiceMap) -> Any:
        u_rest = unconstrained_init(k, model, args, obs | given)
        tr = from_unconstrained(model, u_rest, args, obs | given, key=k)[0]
        return ravel_pytree(values_only(to_unconstrained(tr, sel)))[0]

    n = jax.tree_util.tree_leaves(init)[0].shape[0]
    return jax.vmap(one)(jax.random.split(key, n), init)


def user_mask(s: Structure, init: ChoiceMap) -> Any:
    given = set(init.addresses())
    mask = ChoiceMap({a: jnp.full(sh.shape, a in given) for a, sh in s.unconstrained}, _trusted=True)
    return ravel_pytree(mask)[0].astype(bool)


# ------------------------------------------------------ init diagnosis
def trace_problems(tr: Any) -> str:
    """Which choices (or factors) of a trace have a non-finite log density."""
    addrs = tr.choices.addresses()
    dens = {a: float(tr.project(select(a))) for a in addrs}
    bad = [a for a, v in dens.items() if not np.isfinite(v)]
    if bad:
        return "non-finite log density at " + ", ".join(format_address(a) for a in bad)
    if not np.isfinite(float(tr.score)):
        return "a ppl.factor term is non-finite"
    return ""


def diagnose(problem: Problem, s: Structure, z: Any) -> str:
    """Which choices have a non-finite log density (or gradient) at ``z``."""
    space = flat_space(s)
    args = problem.args()
    obs = problem.observations
    parts = []
    try:
        tr = from_unconstrained(problem.model, space.unravel(z), args, obs)[0]
        parts.append(trace_problems(tr))
        g = jax.grad(lambda x: unconstrained_log_density(problem.model, space.unravel(x), args, obs))(z)
        gm = space.unravel(g)
        badg = [a for a in gm.addresses() if not np.all(np.isfinite(np.asarray(gm[a])))]
        if badg:
            parts.append("non-finite gradient with respect to " + ", ".join(format_address(a) for a in badg))
    except Exception as e:  # the diagnosis must not hide the initialisation error
        parts.append(f"evaluating the model there raised {type(e).__name__}: {e}")
    return "; ".join(p for p in parts if p) or "log density non-finite"


def init_error(problem: Problem, s: Structure, ok: np.ndarray, z: Any, user: bool) -> InitializationError:
    failed = [int(i) for i in np.flatnonzero(~ok)]
    why = diagnose(problem, s, z[failed[0]])
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


def trace_init_error(problem: Problem, ok: np.ndarray, traces: Any) -> InitializationError:
    failed = [int(i) for i in np.flatnonzero(~ok)]
    why = trace_problems(jax.tree_util.tree_map(lambda x: x[failed[0]], traces))
    return InitializationError(
        f"{problem.model.name}: no initial trace with a finite log density for chain(s) {failed} after "
        f"{MAX_INIT_TRIES} tries; at the last try of chain {failed[0]}: {why}. Check the model's densities "
        "and the data, or give init values"
    )


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
    model, args = Problem(model, spec, (), obs).model_and_args(dyn)  # the model's leaves are traced
    space = flat_space(s)
    dtype = jnp.result_type(float)
    continuous = Selection(frozenset(s.continuous))  # choices of branches ruled out are not in the space

    def logdensity(z: Any) -> Any:
        return unconstrained_log_density(model, space.unravel(z), args, obs)

    def start(k: Any, zu: Any) -> tuple[Any, Any]:
        u = values_only(unconstrained_init(jax.random.fold_in(k, attempt), model, args, obs)).filter(continuous)
        z = ravel_pytree(u)[0].astype(dtype)
        z = z if mask is None else jnp.where(mask, zu, z)
        ld, g = jax.value_and_grad(logdensity)(z)
        ok = jnp.isfinite(ld) & jnp.all(jnp.isfinite(g))
        return blackjax.mcmc.hmc.HMCState(z, ld, g), ok

    zu = jnp.zeros((num_chains, space.size), dtype) if z_user is None else z_user
    return jax.vmap(start)(jax.random.split(key, num_chains), zu)


def _optimise(logdensity: Any, z0: Any, threshold: Any) -> tuple[Any, Any, Any]:
    """``OPT_STEPS`` L-BFGS steps on ``-logdensity`` from ``z0``.

    Returns the best finite point and its log density, and the first point
    of the path whose log density is at least ``threshold`` (``z0`` if none).
    """
    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=MAX_LINESEARCH_STEPS))

    def loss(z: Any) -> Any:
        return -logdensity(z)

    value_and_grad = optax.value_and_grad_from_state(loss)
    ld0 = logdensity(z0)

    def body(carry: tuple, _: Any) -> tuple:
        z, st, best_z, best_ld, hit_z, hit = carry
        v, g = value_and_grad(z, state=st)
        upd, st = opt.update(g, st, z, value=v, grad=g, value_fn=loss)
        z = optax.apply_updates(z, upd)
        ld = logdensity(z)
        good = jnp.isfinite(ld) & jnp.all(jnp.isfinite(z))
        better = good & (ld > best_ld)
        best_z = jnp.where(better, z, best_z)
        best_ld = jnp.where(better, ld, best_ld)
        new_hit = good & ~hit & (ld >= threshold)
        hit_z = jnp.where(new_hit, z, hit_z)
        return (z, st, best_z, best_ld, hit_z, hit | new_hit), None

    hit0 = ld0 >= threshold
    carry = (z0, opt.init(z0), z0, ld0, z0, hit0)
    (_, _, best_z, best_ld, hit_z, _), _ = jax.lax.scan(body, carry, None, length=OPT_STEPS)
    return best_z, best_ld, hit_z


@partial(jax.jit, static_argnums=(0,))
def _multistart_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, candidates: Any) -> tuple[Any, Any, Any]:
    """Optimise every candidate (vectorised), keep the highest mode, pick one start per chain."""
    model, spec, s, num_chains = static
    model, args = Problem(model, spec, (), obs).model_and_args(dyn)  # the model's leaves are traced
    space = flat_space(s)

    def logdensity(z: Any) -> Any:
        return unconstrained_log_density(model, space.unravel(z), args, obs)

    z0 = candidates.position
    never = jnp.full(z0.shape[0], jnp.inf, z0.dtype)
    optimise = jax.vmap(partial(_optimise, logdensity))
    _, ld_opt, _ = optimise(z0, never)
    ld_opt = jnp.where(jnp.isfinite(ld_opt), ld_opt, -jnp.inf)
    # second pass (the same deterministic paths): the first point within D/2 + 1 nats of each optimum
    band = ld_opt - (space.size / 2.0 + 1.0)
    _, _, z_band = optimise(z0, band)
    best = jnp.max(ld_opt)
    keep = jnp.isfinite(ld_opt) & (ld_opt >= best - LOG_DENSITY_GAP)
    order = jnp.argsort(-jnp.where(keep, jax.random.uniform(key, ld_opt.shape), -1.0))
    n_keep = jnp.maximum(jnp.sum(keep), 1)
    chosen = order[jnp.arange(num_chains) % n_keep]
    z = z_band[chosen]
    ld, g = jax.vmap(jax.value_and_grad(logdensity))(z)
    ok = jnp.isfinite(ld) & jnp.all(jnp.isfinite(g), axis=-1)
    return blackjax.mcmc.hmc.HMCState(z, ld, g), ok, (ld_opt, keep)


def multistart(problem: Problem, s: Structure, num_chains: int, key: Any) -> tuple[Any, Any, Any]:
    """Chain starts in the highest-density mode found from ``num_candidates`` Stan draws (module docstring).

    Returns ``(states, ok, (candidate_log_densities, kept))``.
    """
    k_cand, k_pick = jax.random.split(key)
    candidates, ok = find_starts(problem, s, num_candidates(num_chains), k_cand, None, None, multi=False)
    if not ok.all():  # the candidates that never found a finite point: copies of one that did
        good = np.flatnonzero(ok)
        if good.size == 0:
            return candidates, ok, None
        fill = np.where(ok, np.arange(ok.size), good[np.arange(ok.size) % good.size])
        candidates = jax.tree_util.tree_map(lambda x: x[fill], candidates)
    static = (problem.model, problem.spec, s, num_chains)
    states, ok, info = _multistart_program(static, k_pick, problem.dyn, problem.observations, candidates)
    return states, np.asarray(ok), info


def find_starts(
    problem: Problem, s: Structure, num_chains: int, key: Any, z_user: Any, mask: Any, multi: bool = False
) -> tuple[Any, Any]:
    """Stan's retries: redraw the chains whose start is not finite, at most MAX_INIT_TRIES times.

    ``multi``: without user values, start from :func:`multistart` instead
    (falling back to Stan's rule for the chains where it finds no finite point).
    """
    if multi and z_user is None:
        states, ok, _ = multistart(problem, s, num_chains, key)
        if ok.all():
            return states, ok
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
def trace_start_program(static: tuple, key: Any, dyn: Any, obs: ChoiceMap, init: Any) -> tuple[Any, Any]:
    """Per chain, an initial trace with a finite score (Stan's retries; discrete choices from the prior)."""
    model, spec, num_chains = static
    model, args = Problem(model, spec, (), obs).model_and_args(dyn)  # the model's leaves are traced

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
