"""Normalizing flows as distributions: ``flow @ "z"`` in any model or guide.

A :class:`Flow` is a numpyro distribution over vectors wrapping a flowjax
flow (an equinox module, so its parameters train with ``ppl.vi.fit``);
:meth:`Flow.given` conditions a conditional flow on a context. The
constructors build the families of :mod:`ppl.flows.families`;
``ppl.vi.auto_flow`` puts a flow over a model's whole unconstrained latent
space, and :func:`fit_density` fits a flow to data by maximum likelihood.
"""

from ppl.flows.distribution import Flow
from ppl.flows.families import (
    affine_coupling,
    block_neural_autoregressive,
    iaf,
    maf,
    planar,
    radial,
    spline_autoregressive,
    spline_coupling,
)
from ppl.flows.radial import Radial

__all__ = [
    "Flow",
    "Radial",
    "affine_coupling",
    "block_neural_autoregressive",
    "iaf",
    "maf",
    "planar",
    "radial",
    "spline_autoregressive",
    "spline_coupling",
]
