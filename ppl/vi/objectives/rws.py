"""Reweighted wake-sleep (Bornschein & Bengio, 2015; Le et al., 2019).

With ``z_1..z_K ~ q_phi`` (sampled with ``phi`` held fixed), log weights
``l_k = log p_theta(x, z_k) - log q_phi(z_k)`` and self-normalised weights
``wbar_k = softmax(l)_k``:

* **wake-theta** ascends ``log p_theta(x)`` through ``sum_k wbar_k grad_theta
  log p_theta(x, z_k)``: exactly the gradient of the IWAE bound
  ``log (1/K) sum_k exp(l_k)`` w.r.t. ``theta``;
* **wake-phi** descends ``KL(p_theta(z|x) || q_phi)`` through ``sum_k wbar_k
  grad_phi log q_phi(z_k)`` (self-normalised, so biased for finite ``K``,
  consistent as ``K`` grows);
* **sleep-phi** descends the same KL averaged over the model's data: ``z, x ~
  p_theta`` (``theta`` fixed), ascend ``log q_phi(z | x)``; unbiased for
  ``E_{p(x)} KL(p(z|x) || q(z|x))``.

The gradients are not those of one expectation over both parameter sets, so
each mode is an expectation whose *gradient* is the update and whose value
is what the update ascends: the sampling distributions are
``stop_gradient``-ed (no score terms arise from them), and zero-valued terms
``X - sg(X)`` carry the phi updates. ``mode`` picks the combination:

=============== ============================== ==================================
mode            value                          gradient (theta, phi)
=============== ============================== ==================================
``"wake"``      IWAE estimate of log p(x)      wake-theta, wake-phi (the default)
``"wake-theta"`` IWAE estimate of log p(x)      wake-theta, 0
``"wake-phi"``  sum_k wbar_k log q(z_k)        0, wake-phi
``"sleep-phi"`` log q_phi(z | x), (z, x) ~ p   0, sleep-phi
``"wake-sleep"`` IWAE estimate of log p(x)      wake-theta, sleep-phi
=============== ============================== ==================================

Sleep needs the guide's arguments for simulated data: pass
``sleep_guide_args(guide_args, simulated_observations) -> guide_args`` (an
amortised guide takes the data as an argument; the function puts the
simulated data in its place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core.generative_function import GenerativeFunction
from ppl.core.selection import Selection
from ppl.errors import EstimatorError
from ppl.vi.expectation import Expectation, expectation
from ppl.vi.expectation import particles as shared_key_particles
from ppl.vi.objectives.common import log_density, log_mean_exp, observations_fn
from ppl.vi.objectives.iwae import check_particles

MODES = ("wake", "wake-theta", "wake-phi", "sleep-phi", "wake-sleep")


def sg(tree: Any) -> Any:
    """``stop_gradient`` on the array leaves of a pytree (other leaves kept as they are)."""
    return jax.tree_util.tree_map(lambda x: jax.lax.stop_gradient(x) if isinstance(x, jax.Array) else x, tree)


def _zero_valued(x: Any) -> Any:
    """``x - sg(x)``: adds the gradient of ``x`` and nothing to the value."""
    return x - sg(x)


def rws(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    particles: int,
    mode: str = "wake",
    sleep_guide_args: Callable[[tuple, Any], tuple] | None = None,
) -> Expectation:
    """Reweighted wake-sleep updates as an :class:`~ppl.vi.Expectation` over ``(model_args, guide_args)``."""
    obs_of = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.rws")
    if mode not in MODES:
        raise EstimatorError(f"ppl.vi.rws: mode must be one of {MODES}, got {mode!r}")
    if "sleep" in mode and sleep_guide_args is None:
        raise EstimatorError(
            f"ppl.vi.rws(mode={mode!r}) needs sleep_guide_args(guide_args, simulated_observations) -> guide_args "
            "to run the guide on data simulated from the model"
        )

    def wake(key: Any, model_args: tuple, guide_args: tuple) -> tuple[Any, Any]:
        """(IWAE estimate with theta live, sum_k wbar_k log q_phi(z_k) with phi live)."""
        obs = obs_of(model_args)

        def particle(key: Any) -> tuple[Any, Any]:
            k_q, k_p = jax.random.split(key)
            q = guide.simulate(k_q, sg(guide_args))  # z ~ q_phi, phi held fixed
            log_p, _ = log_density(k_p, model, q.choices | obs, model_args)
            log_q, _ = guide.assess(sg(q.choices), guide_args)  # phi live
            return log_p - q.score, log_q

        logw, log_q = shared_key_particles(particle, k)(key)
        wbar = sg(jax.nn.softmax(logw))
        return log_mean_exp(logw), jnp.sum(wbar * log_q)

    def sleep(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        """log q_phi(z | x) for (z, x) ~ p_theta with theta held fixed."""
        observed = Selection(frozenset(obs_of(model_args).addresses()))
        p = model.simulate(key, sg(model_args))
        choices = sg(p.choices)
        args = sleep_guide_args(guide_args, choices.filter(observed))
        log_q, _ = guide.assess(choices.without(observed), args)
        return log_q

    def objective(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        k_wake, k_sleep = jax.random.split(key)
        if mode == "sleep-phi":
            return sleep(k_sleep, model_args, guide_args)
        bound, phi_term = wake(k_wake, sg(model_args) if mode == "wake-phi" else model_args, guide_args)
        if mode == "wake":
            return bound + _zero_valued(phi_term)
        if mode == "wake-theta":
            return bound
        if mode == "wake-phi":
            return phi_term
        return bound + _zero_valued(sleep(k_sleep, model_args, guide_args))

    objective.__name__ = f"rws_{mode.replace('-', '_')}"
    return expectation(objective)


__all__ = ["MODES", "rws"]
