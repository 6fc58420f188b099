"""Stan's windowed warm-up for HMC and NUTS, from BlackJAX's building blocks.

The schedule (``blackjax.adaptation.window_adaptation.build_schedule``, as in
Stan): a fast window (75 iterations) adapting only the step size, slow
windows doubling in size (25, 50, 100, ...) that also estimate the
(co)variance of the position for the inverse mass matrix, and a final fast
window (50). Step size: Nesterov dual averaging towards the target
acceptance rate (``dual_averaging_adaptation``), restarted after every slow
window; mass matrix: Welford (co)variance of the window's draws, shrunk
towards ``1e-3 I`` as Stan does (``mass_matrix_adaptation``). This is the
same algorithm as ``blackjax.window_adaptation``, written as an
``(init, update, final)`` triple so a runner can put warm-up, sampling and
every chain in one ``lax.scan`` with a progress report. The kernels it
tunes are the lower tier of :mod:`ppl.infer.mcmc.gradient` (parameters
given at every step): the gradient runners call it on the whole model, and
``run_mcmc`` on every tunable kernel inside a combinator
(:class:`ppl.infer.mcmc.kernel.Tuning`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.adaptation.window_adaptation import build_schedule


class WarmupState(NamedTuple):
    dual_averaging: Any
    mass_matrix: Any
    step_size: Any
    inverse_mass_matrix: Any


def schedule(num_warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """``(is_slow, is_window_end)`` for every warm-up iteration (Stan's windows)."""
    if num_warmup == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    with jax.ensure_compile_time_eval():
        s = np.asarray(build_schedule(num_warmup))
    return s[:, 0].astype(bool), s[:, 1].astype(bool)


def window_adaptation(
    dense_mass: bool, target_accept: float, adapt_mass: bool = True
) -> tuple[Callable, Callable, Callable]:
    """``init(position, step_size, imm=None)``, ``update(state, slow, end, position, accept, active=True)``,
    ``final(state) -> (step_size, inverse_mass_matrix)``.

    ``adapt_mass=False`` keeps the inverse mass matrix given to ``init``
    (only the step size is adapted); an update with ``active`` False (a
    kernel of a ``mixture`` not chosen at that step) changes nothing but
    still closes a window that ends there.
    """
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
    mm_init, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)

    def init(position: Any, step_size: Any, inverse_mass_matrix: Any = None) -> WarmupState:
        mm = mm_init(position.shape[-1])
        imm = mm.inverse_mass_matrix if inverse_mass_matrix is None else inverse_mass_matrix
        return WarmupState(da_init(step_size), mm, jnp.asarray(step_size), imm)

    def update(
        state: WarmupState, slow: Any, window_end: Any, position: Any, acceptance_rate: Any, active: Any = True
    ) -> WarmupState:
        # A NaN acceptance (a trajectory starting at a non-finite point) counts as a rejection.
        acceptance_rate = jnp.where(jnp.isnan(acceptance_rate), 0.0, acceptance_rate)
        da = da_update(state.dual_averaging, acceptance_rate)
        da = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), da, state.dual_averaging)
        mm = state.mass_matrix
        if adapt_mass:
            mm = jax.lax.cond(slow & active, lambda m: mm_update(m, position), lambda m: m, mm)
        new = WarmupState(da, mm, jnp.exp(da.log_step_size), state.inverse_mass_matrix)

        def end_window(s: WarmupState) -> WarmupState:
            d = da_init(da_final(s.dual_averaging))
            if not adapt_mass:
                return WarmupState(d, s.mass_matrix, jnp.exp(d.log_step_size), s.inverse_mass_matrix)
            m = mm_final(s.mass_matrix)
            return WarmupState(d, m, jnp.exp(d.log_step_size), m.inverse_mass_matrix)

        return jax.lax.cond(window_end, end_window, lambda s: s, new)

    def final(state: WarmupState) -> tuple[Any, Any]:
        return da_final(state.dual_averaging), state.inverse_mass_matrix

    return init, update, final
