"""Gradient-based kernels on traces: MALA, HMC and NUTS from BlackJAX.

Each moves the selected continuous choices of a trace in unconstrained
space (see :mod:`ppl.infer.mcmc.space`): the target is
``log pi(z) = log p(T(z), rest) + log |det J_T(z)|`` with the rest of the
trace held fixed. The transitions themselves are BlackJAX's kernels
(``blackjax.mala``, ``blackjax.hmc``, ``blackjax.nuts``: multinomial NUTS
with the generalised U-turn criterion); ppl only supplies the log density
and maps positions back to traces.

``inverse_mass_matrix`` is a vector (diagonal) or a matrix (dense) over the
flattened unconstrained choices (addresses in canonical order, each
flattened row-major); ``None`` means the identity.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax.numpy as jnp

from ppl.core.selection import as_selection
from ppl.errors import ArgumentValueError
from ppl.infer.mcmc.kernel import MCMCKernel, make_info, memoized
from ppl.infer.mcmc.space import flat_space, unvalidated


class GradientState(NamedTuple):
    """A trace plus BlackJAX's state at its unconstrained position."""

    trace: Any
    position: Any
    logdensity: Any
    logdensity_grad: Any

    def blackjax_state(self) -> Any:
        return blackjax.mcmc.hmc.HMCState(self.position, self.logdensity, self.logdensity_grad)


def _gradient_kernel(selection: Any, transition: Any) -> MCMCKernel:
    """A trace kernel from ``transition(key, bj_state, logdensity, D) -> (bj_state, MCMCInfo)``."""
    sel = as_selection(selection)

    def init(trace: Any) -> GradientState:
        space = flat_space(trace, sel)
        z = space.flatten(trace, sel)
        logdensity = space.log_density(trace.gen_fn, trace.args, space.fixed(trace))
        s = blackjax.mcmc.hmc.init(z, logdensity)
        return GradientState(trace, s.position, s.logdensity, s.logdensity_grad)

    def step(key: Any, state: GradientState) -> tuple[GradientState, Any]:
        trace = state.trace
        space = flat_space(trace, sel)
        fixed = space.fixed(trace)
        logdensity = space.log_density(trace.gen_fn, trace.args, fixed)
        with unvalidated():
            new, info = transition(key, state.blackjax_state(), logdensity, space.size)
        new_trace = space.to_trace(trace.gen_fn, new.position, trace.args, fixed)
        return GradientState(new_trace, new.position, new.logdensity, new.logdensity_grad), info

    return MCMCKernel(init, step)


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


@memoized
def mala(selection: Any, step_size: float) -> MCMCKernel:
    """Metropolis-adjusted Langevin on ``selection`` (BlackJAX's ``mala``).

    Proposal ``z' = z + eps * grad log pi(z) + sqrt(2 eps) * xi``, accepted
    with the Metropolis-Hastings ratio of this asymmetric proposal.
    """
    kernel = blackjax.mala.build_kernel()

    def transition(key: Any, s: Any, logdensity: Any, size: int) -> tuple[Any, Any]:
        start = blackjax.mcmc.mala.MALAState(s.position, s.logdensity, s.logdensity_grad)
        new, info = kernel(key, start, logdensity, step_size)
        new = blackjax.mcmc.hmc.HMCState(new.position, new.logdensity, new.logdensity_grad)
        return new, make_info(info.is_accepted, info.acceptance_rate, False, 1)

    return _gradient_kernel(selection, transition)


@memoized
def hmc(selection: Any, step_size: float, num_steps: int, inverse_mass_matrix: Any = None) -> MCMCKernel:
    """Hamiltonian Monte Carlo on ``selection``: ``num_steps`` leapfrog steps, then MH (BlackJAX's ``hmc``)."""
    kernel = blackjax.hmc.build_kernel()

    def transition(key: Any, s: Any, logdensity: Any, size: int) -> tuple[Any, Any]:
        imm = _inverse_mass(inverse_mass_matrix, size)
        new, info = kernel(key, s, logdensity, step_size, imm, num_steps)
        return new, make_info(info.is_accepted, info.acceptance_rate, info.is_divergent, info.num_integration_steps)

    return _gradient_kernel(selection, transition)


@memoized
def nuts(selection: Any, step_size: float, inverse_mass_matrix: Any = None, max_tree_depth: int = 10) -> MCMCKernel:
    """The No-U-Turn sampler on ``selection`` (BlackJAX's multinomial ``nuts``).

    ``max_tree_depth`` bounds the trajectory at ``2**max_tree_depth`` leapfrog
    steps. ``info.accepted`` is whether the position changed.
    """
    kernel = blackjax.nuts.build_kernel()

    def transition(key: Any, s: Any, logdensity: Any, size: int) -> tuple[Any, Any]:
        imm = _inverse_mass(inverse_mass_matrix, size)
        new, info = kernel(key, s, logdensity, step_size, imm, max_num_doublings=max_tree_depth)
        moved = jnp.any(new.position != s.position)
        return new, make_info(moved, info.acceptance_rate, info.is_divergent, info.num_integration_steps)

    return _gradient_kernel(selection, transition)
