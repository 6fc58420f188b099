"""Hierarchical variational inference and its importance-weighted forms.

A hierarchical (semi-implicit) guide ``q(z) = integral q(z | psi) q(psi) dpsi``
has no tractable density. With a *reverse model* ``r(psi | z)`` (a
generative function called as ``reverse(z_choices, *guide_args)`` that
samples the auxiliary addresses ``aux``):

* **HVI** (Ranganath et al., 2016): ``E[log p(x, z) + log r(psi | z) -
  log q(z, psi)]``, the ELBO of the extended model, <= ELBO <= log p(x);
* **IWHVI** (Sobolev & Vetrov, 2019): ``log q(z)`` replaced by ``log
  (1/(K+1)) sum_{k=0}^{K} q(z, psi_k) / r(psi_k | z)`` with ``psi_0`` the
  draw that produced ``z`` and ``psi_1..K ~ r``; its expectation is >= log
  q(z), so the bound stays below the ELBO and tightens with ``K`` (``K = 0``
  is HVI);
* **DIWHVI**: IWAE over ``samples`` draws of ``z``, each weighted with the
  IWHVI estimate of ``q(z)``.

Each is an existing objective applied to :func:`ppl.vi.marginal` of the
guide: the marginal's score is that density estimate.
"""

from __future__ import annotations

from typing import Any

from ppl.core.generative_function import GenerativeFunction
from ppl.vi.expectation import Expectation
from ppl.vi.marginal import marginal
from ppl.vi.objectives.elbo import elbo
from ppl.vi.objectives.iwae import iwae


def hvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    aux: Any,
    reverse: GenerativeFunction,
) -> Expectation:
    """Hierarchical VI bound with reverse model ``reverse``; over ``(model_args, guide_args)``."""
    return Expectation(elbo(model, marginal(guide, aux, reverse, particles=0), observations).program, "hvi")


def iwhvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    aux: Any,
    reverse: GenerativeFunction,
    particles: int,
) -> Expectation:
    """Importance-weighted HVI with ``particles`` reverse samples per ``z``."""
    return Expectation(elbo(model, marginal(guide, aux, reverse, particles=particles), observations).program, "iwhvi")


def diwhvi(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: Any = None,
    *,
    aux: Any,
    reverse: GenerativeFunction,
    particles: int,
    samples: int,
) -> Expectation:
    """Doubly importance-weighted HVI: ``samples`` draws of ``z``, ``particles`` reverse samples each."""
    guide_marginal = marginal(guide, aux, reverse, particles=particles)
    return Expectation(iwae(model, guide_marginal, observations, particles=samples).program, "diwhvi")


__all__ = ["diwhvi", "hvi", "iwhvi"]
