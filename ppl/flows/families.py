"""The flow families, each a constructor returning a :class:`~ppl.flows.Flow`.

=============================  ==========================================  =============
constructor                    family                                      fast direction
=============================  ==========================================  =============
``planar``                     planar layers (Rezende & Mohamed 2015)      sampling
``radial``                     radial layers (Rezende & Mohamed 2015)      both
``affine_coupling``            RealNVP affine coupling (Dinh et al. 2017)  both
``maf``                        masked autoregressive (Papamakarios 2017)   density
``iaf``                        inverse autoregressive (Kingma 2016)        sampling
``spline_coupling``            rational-quadratic spline coupling (NSF)    both
``spline_autoregressive``      rational-quadratic spline autoregressive    ``fast=``
``block_neural_autoregressive``  BNAF (De Cao et al. 2019)                 ``fast=``
=============================  ==========================================  =============

"Fast direction": autoregressive flows compute one direction in one pass and
the other with ``dim`` sequential passes (BNAF: by bisection). A VI guide
samples, so wants fast sampling (``iaf``, ``fast="sample"``); density
estimation scores data, so wants fast density (``maf``, ``fast="density"``).
A flow scores its own fresh draws from the sampling pass either way
(:class:`~ppl.flows.Flow`). Planar layers with ``tanh`` have no inverse:
they can score only their own draws (give ``leaky_slope`` for an invertible
leaky-ReLU planar flow).

Every constructor takes ``key`` and ``dim`` (the dimension of a draw) and
``context_dim`` for a conditional flow (``None``: unconditional; radial
layers are unconditional only). The layers are flowjax's
(``flowjax.flows``), except radial, written here.
"""

from __future__ import annotations

from typing import Any

import jax.nn as jnn
from flowjax import flows as fjf
from flowjax.bijections import Affine, RationalQuadraticSpline
from flowjax.distributions import StandardNormal

from ppl.errors import FlowError
from ppl.flows.distribution import Flow, typed_key
from ppl.flows.radial import radial_flow

_FAST = ("sample", "density")


def _check(name: str, dim: Any, context_dim: Any, fast: str | None = None, **positive: Any) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise FlowError(f"ppl.flows.{name}: dim must be a positive int, got {dim!r}")
    if context_dim is not None and (not isinstance(context_dim, int) or context_dim < 1):
        raise FlowError(f"ppl.flows.{name}: context_dim must be None or a positive int, got {context_dim!r}")
    if fast is not None and fast not in _FAST:
        raise FlowError(f"ppl.flows.{name}: fast must be 'sample' or 'density', got {fast!r}")
    for arg, v in positive.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise FlowError(f"ppl.flows.{name}: {arg} must be a positive int, got {v!r}")


def _base(dim: int) -> StandardNormal:
    return StandardNormal((dim,))


def planar(
    key: Any, dim: int, *, layers: int = 8, context_dim: int | None = None, leaky_slope: float | None = None
) -> Flow:
    """Planar flow: ``layers`` layers ``x + u tanh(w.x + b)`` (leaky ReLU with ``leaky_slope``)."""
    _check("planar", dim, context_dim, layers=layers)
    f = fjf.planar_flow(
        typed_key(key),
        base_dist=_base(dim),
        cond_dim=context_dim,
        flow_layers=layers,
        invert=False,
        negative_slope=leaky_slope,
    )
    return Flow(f)


def radial(key: Any, dim: int, *, layers: int = 8) -> Flow:
    """Radial flow: ``layers`` radial contractions/expansions (see :mod:`ppl.flows.radial`)."""
    _check("radial", dim, None, layers=layers)
    return Flow(radial_flow(typed_key(key), dim, layers=layers))


def affine_coupling(
    key: Any,
    dim: int,
    *,
    layers: int = 8,
    width: int = 50,
    depth: int = 1,
    context_dim: int | None = None,
    activation: Any = jnn.relu,
) -> Flow:
    """RealNVP: affine coupling layers (half the coordinates scale-and-shift the other half), permuted."""
    _check("affine_coupling", dim, context_dim, layers=layers, width=width, depth=depth)
    if dim < 2:
        raise FlowError("ppl.flows.affine_coupling: coupling needs dim >= 2 (use maf or spline_autoregressive)")
    f = fjf.coupling_flow(
        typed_key(key),
        base_dist=_base(dim),
        transformer=Affine(),
        cond_dim=context_dim,
        flow_layers=layers,
        nn_width=width,
        nn_depth=depth,
        nn_activation=activation,
    )
    return Flow(f)


def _autoregressive(
    name: str, key: Any, dim: int, transformer: Any, fast: str, layers: int, width: int, depth: int, context_dim: Any
) -> Flow:
    _check(name, dim, context_dim, fast, layers=layers, width=width, depth=depth)
    f = fjf.masked_autoregressive_flow(
        typed_key(key),
        base_dist=_base(dim),
        transformer=transformer,
        cond_dim=context_dim,
        flow_layers=layers,
        nn_width=width,
        nn_depth=depth,
        invert=fast == "density",
    )
    return Flow(f)


def maf(
    key: Any, dim: int, *, layers: int = 8, width: int = 50, depth: int = 1, context_dim: int | None = None
) -> Flow:
    """Masked autoregressive flow (affine): density in one pass, sampling in ``dim`` passes."""
    return _autoregressive("maf", key, dim, None, "density", layers, width, depth, context_dim)


def iaf(
    key: Any, dim: int, *, layers: int = 8, width: int = 50, depth: int = 1, context_dim: int | None = None
) -> Flow:
    """Inverse autoregressive flow (affine): sampling in one pass, the density of other values in ``dim``."""
    return _autoregressive("iaf", key, dim, None, "sample", layers, width, depth, context_dim)


def spline_coupling(
    key: Any,
    dim: int,
    *,
    layers: int = 8,
    knots: int = 8,
    interval: float = 4.0,
    width: int = 50,
    depth: int = 1,
    context_dim: int | None = None,
) -> Flow:
    """Neural spline flow, coupling form: monotone rational-quadratic splines on ``[-interval, interval]``.

    Outside the interval each coordinate passes through unchanged (linear tails).
    """
    _check("spline_coupling", dim, context_dim, layers=layers, knots=knots, width=width, depth=depth)
    if dim < 2:
        raise FlowError("ppl.flows.spline_coupling: coupling needs dim >= 2 (use spline_autoregressive)")
    f = fjf.coupling_flow(
        typed_key(key),
        base_dist=_base(dim),
        transformer=RationalQuadraticSpline(knots=knots, interval=interval),
        cond_dim=context_dim,
        flow_layers=layers,
        nn_width=width,
        nn_depth=depth,
    )
    return Flow(f)


def spline_autoregressive(
    key: Any,
    dim: int,
    *,
    layers: int = 8,
    knots: int = 8,
    interval: float = 4.0,
    width: int = 50,
    depth: int = 1,
    context_dim: int | None = None,
    fast: str = "density",
) -> Flow:
    """Neural spline flow, autoregressive form (a MAF whose transformer is a rational-quadratic spline)."""
    _check("spline_autoregressive", dim, context_dim, fast, knots=knots)
    spline = RationalQuadraticSpline(knots=knots, interval=interval)
    return _autoregressive("spline_autoregressive", key, dim, spline, fast, layers, width, depth, context_dim)


def block_neural_autoregressive(
    key: Any,
    dim: int,
    *,
    layers: int = 1,
    block_dim: int = 8,
    depth: int = 1,
    context_dim: int | None = None,
    fast: str = "sample",
) -> Flow:
    """Block neural autoregressive flow: the other direction is found by bisection."""
    _check("block_neural_autoregressive", dim, context_dim, fast, layers=layers, block_dim=block_dim, depth=depth)
    f = fjf.block_neural_autoregressive_flow(
        typed_key(key),
        base_dist=_base(dim),
        cond_dim=context_dim,
        nn_depth=depth,
        nn_block_dim=block_dim,
        flow_layers=layers,
        invert=fast == "density",
    )
    return Flow(f)


__all__ = [
    "affine_coupling",
    "block_neural_autoregressive",
    "iaf",
    "maf",
    "planar",
    "radial",
    "spline_autoregressive",
    "spline_coupling",
]
