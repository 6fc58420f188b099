"""The objective library, each objective written with the public constructs of ``ppl.vi``.

Every objective takes a model, a guide and observations and returns an
:class:`~ppl.vi.Expectation` over ``(model_args, guide_args)``: model
parameters (decoders) and guide parameters (encoders) train together.
"""

from ppl.vi.objectives.common import log_density, log_mean_exp, log_weight, observations_fn
from ppl.vi.objectives.elbo import elbo
from ppl.vi.objectives.hvi import diwhvi, hvi, iwhvi
from ppl.vi.objectives.iwae import iwae
from ppl.vi.objectives.renyi import renyi
from ppl.vi.objectives.rws import rws
from ppl.vi.objectives.smc import fivo, vsmc
from ppl.vi.objectives.vimco import leave_one_out_baselines, vimco

__all__ = [
    "diwhvi",
    "elbo",
    "fivo",
    "hvi",
    "iwae",
    "iwhvi",
    "leave_one_out_baselines",
    "log_density",
    "log_mean_exp",
    "log_weight",
    "observations_fn",
    "renyi",
    "rws",
    "vimco",
    "vsmc",
]
