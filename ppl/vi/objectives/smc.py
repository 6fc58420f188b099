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
(FIVO's adaptive rule; ``vsmc`` resamples at every step). The sweep is
``ppl.infer.particle_filter`` with the guide as its proposal, run inside
``ppl.vi.expectation`` (not a copy of it).

Gradients: proposals and model steps are differentiated as their choices
ask (reparameterised by default). The ancestor indices' own score terms
are dropped, as in FIVO and VSMC (``resampling_gradient=False``): the
gradient is then biased for ``grad E[log Z_hat]`` but has far lower
variance. ``resampling_gradient=True`` draws the ancestors as a REINFORCE
choice (the probability of the whole ancestor vector under the chosen
scheme, :mod:`ppl.infer.resampling`), which makes it unbiased.
"""

from __future__ import annotations

from typing import Any

from ppl.core.generative_function import GenerativeFunction
from ppl.core.scan import Scan
from ppl.errors import EstimatorError
from ppl.vi.expectation import Expectation, expectation
from ppl.vi.objectives.common import observations_fn
from ppl.vi.objectives.iwae import check_particles


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
    """The FIVO bound ``E[log Z_hat]`` of a particle filter, over ``(model_args, guide_args)``.

    The program is ``ppl.infer.particle_filter(key, model, model_args,
    observations, proposal=guide, proposal_args=guide_args, ...)
    .log_marginal_likelihood()`` inside ``ppl.vi.expectation``: the same
    filter, so everything it supports (adaptive resampling, every resampling
    scheme, masked observations) holds here, and its estimate is the same
    key for key.
    """
    for what, gf in (("model", model), ("guide", guide)):
        if not isinstance(gf, Scan):
            raise EstimatorError(
                f"ppl.vi.fivo: the {what} must be a ppl.scan(kernel) generative function, got {type(gf).__name__}"
            )
    from ppl.infer.particle_filter import particle_filter

    obs_of = observations_fn(observations)
    k = check_particles(particles, "ppl.vi.fivo")
    threshold = float(ess_threshold)

    def fivo(key: Any, model_args: tuple, guide_args: tuple) -> Any:
        n, n_q = model._split_args(model_args)[2], guide._split_args(guide_args)[2]
        if n != n_q:
            raise EstimatorError(f"ppl.vi.fivo: the model runs {n} steps but the guide {n_q}")
        return particle_filter(
            key,
            model,
            model_args,
            obs_of(model_args),
            particles=k,
            proposal=guide,
            proposal_args=guide_args,
            resampling=resampling,
            ess_threshold=threshold,
            resampling_gradient=resampling_gradient,
        ).log_marginal_likelihood()

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
