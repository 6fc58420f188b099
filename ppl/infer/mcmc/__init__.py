"""MCMC: pure ``(init, step)`` kernels on traces, combinators, warm-up and runners.

* kernels (:mod:`ppl.infer.kernels`): ``mh``, ``mh_proposal``, ``mala``,
  ``hmc``, ``nuts``, ``gibbs``; combinators ``cycle``, ``mixture``, ``repeat``;
* runners: ``nuts``, ``hmc``, ``mala``, ``mh``, ``run_mcmc`` -> :class:`MCMCResult`;
  after a run with 2 or more chains a :class:`ConvergenceWarning` names the
  choices whose split R-hat exceeds 1.01 and the chains that sit apart.
"""

from ppl.infer.mcmc.combinators import cycle, mixture, repeat
from ppl.infer.mcmc.gibbs import gibbs
from ppl.infer.mcmc.gradient import GradientState
from ppl.infer.mcmc.gradient import hmc as hmc_kernel
from ppl.infer.mcmc.gradient import mala as mala_kernel
from ppl.infer.mcmc.gradient import nuts as nuts_kernel
from ppl.infer.mcmc.kernel import MCMCInfo, MCMCKernel, TraceState
from ppl.infer.mcmc.metropolis import mh as mh_kernel
from ppl.infer.mcmc.metropolis import mh_proposal
from ppl.infer.mcmc.result import ConvergenceWarning, DivergenceWarning, MCMCResult, Samples, SamplingWarning
from ppl.infer.mcmc.runner import hmc, mala, mh, nuts, run_mcmc
from ppl.infer.mcmc.structure import ConditionalChoiceError

__all__ = [
    "ConditionalChoiceError",
    "ConvergenceWarning",
    "DivergenceWarning",
    "GradientState",
    "MCMCInfo",
    "MCMCKernel",
    "MCMCResult",
    "Samples",
    "SamplingWarning",
    "TraceState",
    "cycle",
    "gibbs",
    "hmc",
    "hmc_kernel",
    "mala",
    "mala_kernel",
    "mh",
    "mh_kernel",
    "mh_proposal",
    "mixture",
    "nuts",
    "nuts_kernel",
    "repeat",
    "run_mcmc",
]
