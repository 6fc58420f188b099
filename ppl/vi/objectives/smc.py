"""SMC-based bounds for ``ppl.scan`` models: FIVO (Maddison et al., 2017) / VSMC (Naesseth et al., 2018).

The model is ``ppl.scan(p_kernel)`` with arguments ``(init_carry, xs)``, the
guide ``ppl.scan(q_kernel)`` with ``(init_carry_q, xs_q)``: at step ``t`` the
guide kernel proposes the step's latent choices (the same addresses as the
model kernel's latents; put the observations in ``xs_q`` for an
amortised proposal) and the model kernel scores them with the step's
observations. With ``K`` particles and incremental weights

    w_t^k = p(z_t^k, y_t | carry_{t-1}^k) / q(z_t^k | carry_{t-1}^k),

the particle filter's estimate ``Z_hat = prod over resampling epochs of
(1/K) sum_k prod_t w_t^k`` is unbiased for ``p(y_{1:T})``, so ``E[log Z_hat]
<= log p(y_{1:T})`` is a bound that tightens with ``K`` (``K = 1`` is the
ELBO). Particles are resampled (ancestors from :mod:`ppl.infer.resampling`)
when the effective sample size falls below ``ess_threshold * K``
(FIVO's adaptive rule; ``vsmc`` resamples at every step).

Gradients: proposals and model steps are differentiated as their choices
ask (reparameterised by default). The ancestor indices' own score terms
are dropped, as in FIVO and VSMC (``resampling_gradient=False``): the
gradient is then biased for ``grad E[log Z_hat]`` but has far lower
variance. ``resampling_gradient=True`` draws the ancestors as a REINFORCE
choice (multinomial resampling), which makes it unbiased.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from numpyro.distributions import Categorical

from ppl.core import context
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import sample_value
from ppl.core.scan import Scan
from ppl.errors import EstimatorError
from ppl.vi.estimators import reinforce
from ppl.vi.expectation import Expectation, expectation, scan, vmap
from ppl.vi.objectives.common import log_density, observations_fn
from ppl.vi.objectives.iwae import check_particles


def _ancestors(key: Any, log_weights: Any, k: int, method: str, gradient: bool) -> Any:
    if gradient:
        logits = jnp.broadcast_to(log_weights, (k, k))
        with context.path(("ancestors",)):
            return sample_value(key, reinforce(Categorical(logits=logits)))
    from ppl.infer.resampling import resample_indices

    return resample_indices(key, jax.lax.stop_gradient(log_weights), k, method)


def fivo(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    particles: int,
    ess_threshold: float = 0.5,
    resampling: str = "systematic",
    resampling_gradient: bool = False,
) -> Expectation:
    """The FIVO bound ``E[log Z_hat]`` of a particle filter, over ``(model_args, guide_args)``."""
    for what, gf in (("model", model), ("guide", guide)):
        if not isinstance(gf, Scan):
            raise EstimatorError(
                f"ppl.vi.fivo: the {what} must be a ppl.scan(kernel) generative function, got {type(gf).__name__}"
            )
    obs_of = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.fivo")
    threshold = float(ess_threshold)
    if resampling_gradient and resampling != "multinomial":
        resampling = "multinomial"

    def fivo(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        carry_p, xs_p, n = model._split_args(model_args)
        carry_q, xs_q, n_q = guide._split_args(guide_args)
        if n != n_q:
            raise EstimatorError(f"ppl.vi.fivo: the model runs {n} steps but the guide {n_q}")
        many = lambda c: jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (k, *jnp.shape(x))), c)  # noqa: E731

        def particle(key: Any, cp: Any, cq: Any, x_p: Any, x_q: Any, obs_t: Any) -> Any:
            k_q, k_p = jax.random.split(key)
            q = guide.kernel.simulate(k_q, (cq, x_q))
            log_p, (cp_new, _) = log_density(k_p, model.kernel, q.choices | obs_t, (cp, x_p))
            return log_p - q.score, cp_new, q.retval[0]

        def step(state: Any, inputs: Any) -> Any:
            cp, cq, log_w, log_z = state
            key_t, x_p, x_q, obs_t = inputs
            k_move, k_resample = jax.random.split(key_t)
            inc, cp, cq = vmap(particle, in_axes=(0, 0, 0, None, None, None))(
                jax.random.split(k_move, k), cp, cq, x_p, x_q, obs_t
            )
            new_w = log_w + inc
            log_z = log_z + logsumexp(new_w) - logsumexp(log_w)
            ess = jnp.exp(2.0 * logsumexp(new_w) - logsumexp(2.0 * new_w))
            resample = ess <= threshold * k
            a = _ancestors(k_resample, new_w, k, resampling, resampling_gradient)
            pick = lambda x: jnp.where(  # noqa: E731
                jnp.reshape(resample, (1,) * jnp.ndim(x)), x[a], x
            )
            cp, cq = jax.tree_util.tree_map(pick, cp), jax.tree_util.tree_map(pick, cq)
            log_w = jnp.where(resample, jnp.zeros_like(new_w), new_w)
            return (cp, cq, log_w, log_z), None

        init = (many(carry_p), many(carry_q), jnp.zeros(k), jnp.zeros(()))
        obs = obs_of(model_args)
        (_, _, _, log_z), _ = scan(step, init, (jax.random.split(key, n), xs_p, xs_q, obs), length=n)
        return log_z

    return expectation(fivo)


def vsmc(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    particles: int,
    resampling: str = "systematic",
    resampling_gradient: bool = False,
) -> Expectation:
    """The VSMC bound: :func:`fivo` resampling at every step."""
    e = fivo(
        model,
        guide,
        observations,
        particles=particles,
        ess_threshold=1.0,
        resampling=resampling,
        resampling_gradient=resampling_gradient,
    )
    return Expectation(e.program, "vsmc")


__all__ = ["fivo", "vsmc"]
