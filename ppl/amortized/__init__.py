"""Amortized inference: neural posterior estimation (NPE) for any model that can be simulated.

``result = ppl.amortized.npe(key, model, args, parameters=[...], observed=[...])``
simulates the model, trains a conditional flow ``q(theta | x)`` on the
simulations by maximum likelihood, and returns an :class:`NPEResult`;
``result.posterior(x_obs)`` is the amortized posterior for any observation
(draws, densities, an importance-sampling correction, MCMC starting
values). Only ``model.simulate`` is used to train, so observations need no
tractable density.

Modules: :mod:`~ppl.amortized.layout` (parameters and observations as flat
vectors, the unconstraining transforms), :mod:`~ppl.amortized.simulation`
(the training set), :mod:`~ppl.amortized.estimator` (``q(theta | x)``),
:mod:`~ppl.amortized.npe` (training it), :mod:`~ppl.amortized.posterior` (using it),
:mod:`~ppl.amortized.summary` (summary networks).
"""

from ppl.amortized.estimator import NeuralPosterior
from ppl.amortized.layout import ObservedSite, ParameterSite, SimulationLayout
from ppl.amortized.npe import NPEResult, default_flow, default_optimizer, npe
from ppl.amortized.posterior import PROPOSAL_ADDRESS, AmortizedPosterior, AmortizedProposal
from ppl.amortized.simulation import SimulatedData, SkippedSimulationsWarning, simulate_dataset
from ppl.amortized.summary import DeepSet, MLPSummary, deep_set, mlp_summary

__all__ = [
    "PROPOSAL_ADDRESS",
    "AmortizedPosterior",
    "AmortizedProposal",
    "DeepSet",
    "MLPSummary",
    "NPEResult",
    "NeuralPosterior",
    "ObservedSite",
    "ParameterSite",
    "SimulatedData",
    "SimulationLayout",
    "SkippedSimulationsWarning",
    "deep_set",
    "default_flow",
    "default_optimizer",
    "mlp_summary",
    "npe",
    "simulate_dataset",
]
