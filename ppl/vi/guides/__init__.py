"""Guides: automatic variational families built from a model's latent space, and checks.

A guide is any generative function whose choices are the model's latent
addresses; its parameters are its arguments. The automatic guides here
discover the latents (addresses, shapes, supports) with a prototype run of
the model and are densities in unconstrained space pushed through
``biject_to(support)``:

=================================  ================================================
``AutoNormal`` / ``auto_normal``   mean-field normal (ADVI)
``AutoMultivariateNormal``         full-rank normal
``AutoLowRankMultivariateNormal``  low-rank-plus-diagonal normal
``AutoDelta`` / ``auto_delta``     point mass (MAP)
``AutoLaplace`` / ``auto_laplace`` normal at the mode with the inverse Hessian
``AutoFlow`` / ``auto_flow``       a normalizing flow over all latents (``ppl.flows``)
=================================  ================================================
"""

from ppl.vi.guides.base import AutoGuide
from ppl.vi.guides.check import check_guide
from ppl.vi.guides.flow import AutoFlow, auto_flow
from ppl.vi.guides.laplace import AutoLaplace, auto_laplace
from ppl.vi.guides.layout import LatentLayout, LatentSite, latent_layout, site_name
from ppl.vi.guides.mvn import (
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    auto_low_rank_multivariate_normal,
    auto_multivariate_normal,
)
from ppl.vi.guides.normal import AutoDelta, AutoNormal, auto_delta, auto_normal

__all__ = [
    "AutoDelta",
    "AutoFlow",
    "AutoGuide",
    "AutoLaplace",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
    "LatentLayout",
    "LatentSite",
    "auto_delta",
    "auto_flow",
    "auto_laplace",
    "auto_low_rank_multivariate_normal",
    "auto_multivariate_normal",
    "auto_normal",
    "check_guide",
    "latent_layout",
    "site_name",
]
