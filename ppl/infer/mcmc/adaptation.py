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
every chain in one ``lax.scan`` with a progress report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
from blackjax.adaptation.step_size import dual_averaging_adaptation, find_reasonable_step_size
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


def window_adaptation(dense_mass: bool, target_accept: float) -> tuple[Callable, Callable, Callable]:
    """``init(position, step_size)``, ``update(state, slow, end, position, accept)``, ``final(state)``."""
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
    mm_init, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)

    def init(position: Any, step_size: Any) -> WarmupState:
        mm = mm_init(position.shape[-1])
        return WarmupState(da_init(step_size), mm, jnp.asarray(step_size), mm.inverse_mass_matrix)

    def update(state: WarmupState, slow: Any, window_end: Any, position: Any, acceptance_rate: Any) -> WarmupState:
        # A NaN acceptance (a trajectory starting at a non-finite point) counts as a rejection.
        acceptance_rate = jnp.where(jnp.isnan(acceptance_rate), 0.0, acceptance_rate)
        da = da_update(state.dual_averaging, acceptance_rate)
        mm = jax.lax.cond(slow, lambda m: mm_update(m, position), lambda m: m, state.mass_matrix)
        new = WarmupState(da, mm, jnp.exp(da.log_step_size), state.inverse_mass_matrix)

        def end_window(s: WarmupState) -> WarmupState:
            m = mm_final(s.mass_matrix)
            d = da_init(da_final(s.dual_averaging))
            return WarmupState(d, m, jnp.exp(d.log_step_size), m.inverse_mass_matrix)

        return jax.lax.cond(window_end, end_window, lambda s: s, new)

    def final(state: WarmupState) -> tuple[Any, Any]:
        return da_final(state.dual_averaging), state.inverse_mass_matrix

    return init, update, final


def initial_step_size(key: Any, state: Any, logdensity: Callable, inverse_mass_matrix: Any) -> Any:
    """Stan's heuristic: double or halve ``eps`` from 1 until one leapfrog step's acceptance crosses 0.8."""
    import blackjax

    hmc = blackjax.hmc.build_kernel()

    def kernel_for(eps: Any) -> Callable:
        return lambda k, s: hmc(k, s, logdensity, eps, inverse_mass_matrix, 1)

    one = jnp.ones((), dtype=state.position.dtype)
    eps = find_reasonable_step_size(key, kernel_for, state, one, target_accept=0.8)
    return jnp.where(jnp.isfinite(eps) & (eps > 0), eps, one)
