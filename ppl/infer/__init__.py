"""Monte Carlo inference on the generative function interface.

Importance sampling and SMC (particles), MCMC kernels and runners,
predictive distributions. Algorithms use models only through the GFI.

* ``importance``, ``ParticleCollection``, ``smc`` (and its steps
  ``smc.init/extend/reweight/change_target/resample/rejuvenate``),
  ``particle_filter``, ``tempered`` / ``tempered_smc``, ``resampling``;
* ``kernels`` (``mh``, ``mh_proposal``, ``mala``, ``hmc``, ``nuts``,
  ``gibbs``, ``cycle``, ``mixture``, ``repeat``: pure ``(init, step)`` pairs on
  traces) and the runners ``nuts``, ``hmc``, ``mala``, ``mh``, ``run_mcmc``;
* ``predictive`` for prior and posterior predictive draws;
* ``marginal_log_density`` (finite discrete choices summed out exactly by
  variable elimination) and ``infer_discrete`` (draws of them given the
  rest); the gradient runners sum a model's discrete latents out of their
  target, and ``kernels.gibbs_block`` draws a block from its conditional;
* ``neutra`` (a model reparameterised through a trained flow guide, for
  NUTS in the flow's base space).
"""

from ppl.errors import ConditionalChoiceError, ConvergenceWarning, DegeneracyWarning
from ppl.infer import kernels, resampling
from ppl.infer.discrete import infer_discrete
from ppl.infer.enumerate import marginal_log_density
from ppl.infer.importance import NoLatentChoicesWarning, importance
from ppl.infer.log_likelihood import log_likelihood
from ppl.infer.mcmc import (
    DivergenceWarning,
    MCMCInfo,
    MCMCKernel,
    MCMCResult,
    Samples,
    SamplingWarning,
    hmc,
    mala,
    mh,
    nuts,
    run_mcmc,
)
from ppl.infer.neutra import neutra
from ppl.infer.particle_filter import FilterHistory, particle_filter
from ppl.infer.particles import ParticleCollection
from ppl.infer.predictive import predictive
from ppl.infer.smc import smc
from ppl.infer.tempering import TemperingInfo, tempered, tempered_smc

__all__ = [
    "ConditionalChoiceError",
    "ConvergenceWarning",
    "DegeneracyWarning",
    "DivergenceWarning",
    "FilterHistory",
    "MCMCInfo",
    "MCMCKernel",
    "MCMCResult",
    "NoLatentChoicesWarning",
    "ParticleCollection",
    "Samples",
    "SamplingWarning",
    "TemperingInfo",
    "hmc",
    "importance",
    "infer_discrete",
    "kernels",
    "log_likelihood",
    "mala",
    "marginal_log_density",
    "mh",
    "neutra",
    "nuts",
    "particle_filter",
    "predictive",
    "resampling",
    "run_mcmc",
    "smc",
    "tempered",
    "tempered_smc",
]
