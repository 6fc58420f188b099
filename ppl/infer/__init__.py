"""Monte Carlo inference on the generative function interface.

Importance sampling and SMC (particles), MCMC kernels and runners,
predictive distributions. Algorithms use models only through the GFI.
"""

# --- SMC / importance sampling (ppl.infer.importance, smc, particle_filter) ---
from ppl.infer import resampling as resampling
from ppl.infer.importance import NoLatentChoicesWarning as NoLatentChoicesWarning
from ppl.infer.importance import importance as importance
from ppl.infer.particle_filter import FilterHistory as FilterHistory
from ppl.infer.particle_filter import particle_filter as particle_filter
from ppl.infer.particles import ParticleCollection as ParticleCollection
from ppl.infer.smc import smc as smc
from ppl.infer.tempering import TemperingInfo as TemperingInfo
from ppl.infer.tempering import tempered as tempered
from ppl.infer.tempering import tempered_smc as tempered_smc

# --- MCMC (kernels, runners, predictive) ---
from ppl.infer import kernels as kernels
from ppl.infer.mcmc import DivergenceWarning as DivergenceWarning
from ppl.infer.mcmc import MCMCInfo as MCMCInfo
from ppl.infer.mcmc import MCMCKernel as MCMCKernel
from ppl.infer.mcmc import MCMCResult as MCMCResult
from ppl.infer.mcmc import Samples as Samples
from ppl.infer.mcmc import SamplingWarning as SamplingWarning
from ppl.infer.mcmc import hmc as hmc
from ppl.infer.mcmc import mala as mala
from ppl.infer.mcmc import mh as mh
from ppl.infer.mcmc import nuts as nuts
from ppl.infer.mcmc import run_mcmc as run_mcmc
from ppl.infer.predictive import predictive as predictive
