"""Gradient-based kernels on traces: MALA, HMC and NUTS from BlackJAX, in two tiers.

Each moves the selected continuous choices of a trace in unconstrained
space (see :mod:`ppl.infer.mcmc.space`): the target is
``log pi(z) = log p(T(z), rest) + log |det J_T(z)|`` with the rest of the
trace held fixed. The transitions themselves are BlackJAX's kernels
(``blackjax.hmc``, ``blackjax.nuts``: multinomial NUTS with the generalised
U-turn criterion); ppl only supplies the log density and maps positions
back to traces.

As in BlackJAX there are two tiers:

* the **lower tier** takes the parameters at every call, so warm-up can
  change them between steps:

  - on flat vectors, :func:`flat_step` ``(algorithm, ...)`` gives
    ``step(key, state, logdensity, step_size, inverse_mass_matrix) ->
    (state, GradientInfo)`` on BlackJAX's ``HMCState``; this is the one
    place where ppl calls BlackJAX's kernels, and the runners
    (``ppl.infer.nuts/hmc/mala``) and the adaptation use it;
  - on traces, :func:`build_nuts`, :func:`build_hmc`, :func:`build_mala`
    give a :class:`GradientKernel` ``(init, step)`` with
    ``state = init(trace)`` and ``step(key, state, step_size,
    inverse_mass_matrix) -> (GradientState, GradientInfo)``;

* the **upper tier** (:func:`nuts`, :func:`hmc`, :func:`mala`) fixes the
  parameters and is an :class:`MCMCKernel` ``(init, step)`` that composes
  with ``cycle``/``mixture``/``repeat``. Built without a ``step_size`` it
  is *tunable*: ``run_mcmc`` adapts its step size (and, without an
  ``inverse_mass_matrix``, a diagonal or dense mass matrix) in Stan's
  windows during warm-up, wherever it sits in a combinator.

``inverse_mass_matrix`` is a vector (diagonal) or a matrix (dense) over the
flattened unconstrained choices (addresses in canonical order, each
flattened row-major); ``None`` means the identity.

**MALA's step size** is BlackJAX's (``blackjax.mala``): the Langevin time
step ``eps`` of the proposal

    z' ~ N(z + eps * A grad log pi(z), 2 eps A),     A = inverse_mass_matrix,

accepted with the Metropolis-Hastings ratio of this asymmetric proposal.
It is computed as one leapfrog step of BlackJAX's HMC kernel with step size
``sqrt(2 eps)`` (one leapfrog step with a fresh momentum *is* this proposal,
and the HMC acceptance ratio equals MALA's), which also gives the
preconditioned form that ``blackjax.mala`` lacks. The same ``eps`` is used
by ``kernels.mala``, ``build_mala``, the ``ppl.infer.mala`` runner (its
``result.step_size``) and the adaptation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from ppl.core.selection import as_selection
from ppl.errors import ArgumentValueError, PPLError
from ppl.infer.mcmc.kernel import MCMCKernel, Tuning, make_info, memoized
from ppl.infer.mcmc.space import flat_space, unvalidated

TARGET_ACCEPT = {"nuts": 0.8, "hmc": 0.8, "mala": 0.574}


class GradientState(NamedTuple):
    """A trace plus BlackJAX's state at its unconstrained position."""

    trace: Any
    position: Any
    logdensity: Any
    logdensity_grad: Any

    def blackjax_state(self) -> Any:
        return blackjax.mcmc.hmc.HMCState(self.position, self.logdensity, self.logdensity_grad)


class GradientInfo(NamedTuple):
    """What one lower-tier transition did: :class:`MCMCInfo`'s fields plus the energy and tree depth.

    ``tree_depth``: NUTS's number of trajectory doublings (0 for HMC and MALA).
    """

    accepted: Any
    acceptance_rate: Any
    is_divergent: Any
    num_steps: Any
    energy: Any
    tree_depth: Any

    def mcmc_info(self) -> Any:
        return make_info(self.accepted, self.acceptance_rate, self.is_divergent, self.num_steps)


class GradientParams(NamedTuple):
    """The parameters of a lower-tier gradient step (what warm-up adapts)."""

    step_size: Any
    inverse_mass_matrix: Any


class GradientKernel(NamedTuple):
    """Lower tier: ``init(trace) -> GradientState``, ``step(key, state, step_size, inverse_mass_matrix)``."""

    init: Callable[[Any], GradientState]
    step: Callable[..., tuple[GradientState, GradientInfo]]


# ------------------------------------------------- flat lower tier (BlackJAX)
def flat_step(algorithm: str, *, max_tree_depth: int = 10, num_steps: int = 1, jitter_steps: bool = False) -> Callable:
    """``step(key, state, logdensity, step_size, inverse_mass_matrix) -> (HMCState, GradientInfo)``.

    ``algorithm``: ``"nuts"`` (``max_tree_depth`` doublings at most),
    ``"hmc"`` (``num_steps`` leapfrog steps; with ``jitter_steps`` a number
    drawn uniformly from ``[num_steps / 2, 3 num_steps / 2]`` at every
    transition, independently of the state) or ``"mala"`` (step size
    ``eps`` as in the module docstring).
    """
    if algorithm == "nuts":
        kernel = blackjax.nuts.build_kernel()

        def nuts_step(key: Any, s: Any, logdensity: Callable, eps: Any, imm: Any) -> tuple[Any, GradientInfo]:
            new, info = kernel(key, s, logdensity, eps, imm, max_num_doublings=max_tree_depth)
            moved = jnp.any(new.position != s.position)
            return new, GradientInfo(
                moved,
                info.acceptance_rate,
                info.is_divergent,
                jnp.asarray(info.num_integration_steps, jnp.int32),
                info.energy,
                jnp.asarray(info.num_trajectory_expansions, jnp.int32),
            )

        return nuts_step
    kernel = blackjax.hmc.build_kernel()
    if algorithm == "mala":

        def mala_step(key: Any, s: Any, logdensity: Callable, eps: Any, imm: Any) -> tuple[Any, GradientInfo]:
            new, info = kernel(key, s, logdensity, jnp.sqrt(2.0 * eps), imm, 1)
            return new, _hmc_info(info)

        return mala_step
    if algorithm != "hmc":
        raise ArgumentValueError(f"unknown gradient algorithm {algorithm!r}: expected 'nuts', 'hmc' or 'mala'")
    # A fixed trajectory length can be nearly periodic for near-Gaussian
    # targets (the chain then returns close to where it started); a random
    # one, chosen independently of the state, keeps every transition
    # reversible and breaks the resonance.
    low = max(1, (num_steps + 1) // 2) if jitter_steps else num_steps
    high = max(low, (3 * num_steps) // 2) if jitter_steps else num_steps

    def hmc_step(key: Any, s: Any, logdensity: Callable, eps: Any, imm: Any) -> tuple[Any, GradientInfo]:
        if high > low:
            k_len, key = jax.random.split(key)
            n = jax.random.randint(k_len, (), low, high + 1)
        else:
            n = low
        new, info = kernel(key, s, logdensity, eps, imm, n)
        return new, _hmc_info(info)

    return hmc_step


def _hmc_info(info: Any) -> GradientInfo:
    return GradientInfo(
        info.is_accepted,
        info.acceptance_rate,
        info.is_divergent,
        jnp.asarray(info.num_integration_steps, jnp.int32),
        info.energy,
        jnp.zeros((), jnp.int32),
    )


def leapfrog_to_step_size(algorithm: str, h: Any) -> Any:
    """The step size of ``algorithm`` whose first leapfrog step has size ``h`` (MALA: ``h**2 / 2``)."""
    return h * h / 2.0 if algorithm == "mala" else h


def initial_step_size(key: Any, state: Any, logdensity: Callable, inverse_mass_matrix: Any, algorithm: str) -> Any:
    """Stan's heuristic: double or halve the leapfrog step from 1 until one step's acceptance crosses 0.8.

    Returned in ``algorithm``'s convention (see :func:`leapfrog_to_step_size`).
    """
    from blackjax.adaptation.step_size import find_reasonable_step_size

    one_leapfrog = flat_step("hmc", num_steps=1)

    def kernel_for(h: Any) -> Callable:
        return lambda k, s: one_leapfrog(k, s, logdensity, h, inverse_mass_matrix)

    one = jnp.ones((), dtype=state.position.dtype)
    h = find_reasonable_step_size(key, kernel_for, state, one, target_accept=0.8)
    h = jnp.where(jnp.isfinite(h) & (h > 0), h, one)
    return leapfrog_to_step_size(algorithm, h)


def _inverse_mass(inverse_mass_matrix: Any, size: int) -> Any:
    if inverse_mass_matrix is None:
        return jnp.ones(size)
    imm = jnp.asarray(inverse_mass_matrix)
    if imm.shape not in ((size,), (size, size)):
        raise ArgumentValueError(
            f"inverse_mass_matrix has shape {imm.shape}; the selected choices have {size} unconstrained "
            f"dimensions, so it must have shape ({size},) (diagonal) or ({size}, {size}) (dense)"
        )
    return imm


# ------------------------------------------------- trace lower tier
def _logdensity_at(trace: Any, sel: Any) -> tuple[Any, Callable]:
    """The flat space of ``sel`` in ``trace`` and the target's log density on it."""
    space = flat_space(trace, sel)
    return space, space.log_density(trace.gen_fn, trace.args, space.fixed(trace))


def _trace_kernel(selection: Any, transition: Callable) -> GradientKernel:
    sel = as_selection(selection)

    def init(trace: Any) -> GradientState:
        space, logdensity = _logdensity_at(trace, sel)
        s = blackjax.mcmc.hmc.init(space.flatten(trace, sel), logdensity)
        return GradientState(trace, s.position, s.logdensity, s.logdensity_grad)

    def step(key: Any, state: GradientState, step_size: Any, inverse_mass_matrix: Any = None) -> tuple:
        trace = state.trace
        space, logdensity = _logdensity_at(trace, sel)
        imm = _inverse_mass(inverse_mass_matrix, space.size)
        with unvalidated():
            new, info = transition(key, state.blackjax_state(), logdensity, step_size, imm)
        new_trace = space.to_trace(trace.gen_fn, new.position, trace.args, space.fixed(trace))
        return GradientState(new_trace, new.position, new.logdensity, new.logdensity_grad), info

    return GradientKernel(init, step)


@memoized
def build_nuts(selection: Any, max_tree_depth: int = 10) -> GradientKernel:
    """Lower-tier NUTS on ``selection``: ``step(key, state, step_size, inverse_mass_matrix)``.

    ``max_tree_depth`` bounds the trajectory at ``2**max_tree_depth`` leapfrog
    steps; ``info.accepted`` is whether the position changed.
    """
    return _trace_kernel(selection, flat_step("nuts", max_tree_depth=max_tree_depth))


@memoized
def build_hmc(selection: Any, num_steps: int) -> GradientKernel:
    """Lower-tier HMC on ``selection``: ``num_steps`` leapfrog steps, then a Metropolis test."""
    return _trace_kernel(selection, flat_step("hmc", num_steps=num_steps))


@memoized
def build_mala(selection: Any) -> GradientKernel:
    """Lower-tier preconditioned MALA on ``selection``; ``step_size`` is ``eps`` (see the module docstring)."""
    return _trace_kernel(selection, flat_step("mala"))


# ------------------------------------------------- upper tier
def _upper(algorithm: str, selection: Any, lower: GradientKernel, step_size: Any, imm: Any, tuning: dict) -> MCMCKernel:
    if step_size is not None:

        def step(key: Any, state: GradientState) -> tuple[GradientState, Any]:
            new, info = lower.step(key, state, step_size, imm)
            return new, info.mcmc_info()

        return MCMCKernel(lower.init, step)

    target = tuning.get("target_accept")
    target = TARGET_ACCEPT[algorithm] if target is None else float(target)
    if not 0.0 < target < 1.0:
        raise ArgumentValueError(f"kernels.{algorithm}: target_accept must be in (0, 1), got {target!r}")

    def untuned_step(key: Any, state: GradientState) -> tuple[GradientState, Any]:
        raise PPLError(
            f"kernels.{algorithm} was built without a step_size, so its step size is adapted during warm-up: "
            f"run it with ppl.infer.run_mcmc (which adapts it, inside cycle/mixture/repeat too), or give "
            f"step_size=... to step it directly"
        )

    adaptation = _gradient_tuning(algorithm, as_selection(selection), lower, imm, target, bool(tuning["dense_mass"]))
    return MCMCKernel(lower.init, untuned_step, adaptation)


def _gradient_tuning(algorithm: str, sel: Any, lower: GradientKernel, fixed_imm: Any, target: float, dense: bool):
    """Stan's window adaptation of one gradient kernel (see :mod:`ppl.infer.mcmc.adaptation`)."""
    from ppl.infer.mcmc.adaptation import window_adaptation

    adapt_init, adapt_update, adapt_final = window_adaptation(dense, target, adapt_mass=fixed_imm is None)

    def tstep(key: Any, state: GradientState, params: Any) -> tuple:
        eps, imm = params
        new, info = lower.step(key, state, eps, imm)
        return new, info.mcmc_info(), (new.position, info.acceptance_rate, jnp.ones((), bool))

    def start(key: Any, state: GradientState) -> Any:
        size = state.position.shape[-1]
        dtype = state.position.dtype
        if fixed_imm is None:
            imm = jnp.eye(size, dtype=dtype) if dense else jnp.ones(size, dtype)
        else:
            imm = _inverse_mass(fixed_imm, size).astype(dtype)
        _, logdensity = _logdensity_at(state.trace, sel)
        with unvalidated():
            eps0 = initial_step_size(key, state.blackjax_state(), logdensity, imm, algorithm)
        return adapt_init(state.position, eps0, imm)

    def params(ws: Any) -> GradientParams:
        return GradientParams(ws.step_size, ws.inverse_mass_matrix)

    def final(ws: Any) -> GradientParams:
        return GradientParams(*adapt_final(ws))

    def update(ws: Any, slow: Any, end: Any, feedback: Any) -> Any:
        position, rate, active = feedback
        return adapt_update(ws, slow, end, position, rate, active)

    return Tuning(tstep, start, params, update, final)


_TUNING_DOC = """
    Without ``step_size`` the kernel is tunable: ``ppl.infer.run_mcmc``
    adapts its step size towards ``target_accept`` (default {target}) and,
    unless ``inverse_mass_matrix`` is given, a diagonal (``dense_mass=False``)
    or dense inverse mass matrix in Stan's windows during warm-up (also
    inside ``cycle``/``mixture``/``repeat``, e.g. with ``gibbs`` moves);
    stepping it directly then raises. With a ``step_size`` the parameters
    are used as given."""


@memoized
def mala(
    selection: Any,
    step_size: Any = None,
    inverse_mass_matrix: Any = None,
    *,
    target_accept: float | None = None,
    dense_mass: bool = False,
) -> MCMCKernel:
    """Metropolis-adjusted Langevin on ``selection``.

    Proposal ``z' ~ N(z + eps A grad log pi(z), 2 eps A)`` with ``eps =
    step_size`` (BlackJAX's convention) and ``A = inverse_mass_matrix``
    (identity by default), accepted with the Metropolis-Hastings ratio of
    this asymmetric proposal.
    """
    tuning = {"target_accept": target_accept, "dense_mass": dense_mass}
    return _upper("mala", selection, build_mala(selection), step_size, inverse_mass_matrix, tuning)


@memoized
def hmc(
    selection: Any,
    step_size: Any = None,
    num_steps: int = 16,
    inverse_mass_matrix: Any = None,
    *,
    target_accept: float | None = None,
    dense_mass: bool = False,
) -> MCMCKernel:
    """Hamiltonian Monte Carlo on ``selection``: ``num_steps`` leapfrog steps, then MH (BlackJAX's ``hmc``)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ArgumentValueError(f"kernels.hmc: num_steps must be a positive int, got {num_steps!r}")
    tuning = {"target_accept": target_accept, "dense_mass": dense_mass}
    return _upper("hmc", selection, build_hmc(selection, num_steps), step_size, inverse_mass_matrix, tuning)


@memoized
def nuts(
    selection: Any,
    step_size: Any = None,
    inverse_mass_matrix: Any = None,
    max_tree_depth: int = 10,
    *,
    target_accept: float | None = None,
    dense_mass: bool = False,
) -> MCMCKernel:
    """The No-U-Turn sampler on ``selection`` (BlackJAX's multinomial ``nuts``).

    ``max_tree_depth`` bounds the trajectory at ``2**max_tree_depth`` leapfrog
    steps. ``info.accepted`` is whether the position changed.
    """
    tuning = {"target_accept": target_accept, "dense_mass": dense_mass}
    return _upper("nuts", selection, build_nuts(selection, max_tree_depth), step_size, inverse_mass_matrix, tuning)


for _f, _t in ((mala, 0.574), (hmc, 0.8), (nuts, 0.8)):
    _f.__doc__ = (_f.__doc__ or "").rstrip() + "\n" + _TUNING_DOC.format(target=_t)
