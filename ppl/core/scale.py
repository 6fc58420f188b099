"""``ppl.scale``: multiply every log density of a generative function by a factor.

``ppl.scale(gf, c)`` is ``gf`` with each of its GFI scores and weights
multiplied by ``c``:

=============  ==============================================================
``simulate``   ``t ~ p(.; x)`` as ``gf`` draws it; ``score = c * log p(t; x)``
``assess``     ``c * log p(t; x)``
``generate``   ``w = c * w_gf`` (the scaled log densities of the constrained
               choices)
``update``     ``w = c' * w_gf + (c' - c) * log p(t; x)`` where ``c`` is the
               factor of the old trace and ``c'`` the new one: ``c * w_gf``
               when the factor is unchanged
``regenerate`` ``w = c' * w_gf + (c' - c) * log p(kept)``: as ``update``, but
               only the old choices it keeps (not the selected ones) count
=============  ==============================================================

It is a device for two jobs, both of which only ever compare *scaled log
densities with scaled log densities*:

* **Data subsampling.** A model whose likelihood is a sum over ``N`` data
  points, evaluated on a minibatch of ``B`` of them drawn uniformly without
  replacement, gives an unbiased estimate of the full-data log likelihood when
  the minibatch term is multiplied by ``N / B``::

      E_batch[(N / B) * sum_{i in batch} log p(y_i | z)] = sum_i log p(y_i | z)

  so ``ppl.scale(likelihood, N / B)(batch...) @ "lik"`` inside the model keeps
  an ELBO estimated on minibatches unbiased for the full-data ELBO (local
  latent variables of the scaled block are scaled identically in the model
  and in the guide, as numpyro's ``plate(subsample_size=...)`` does).
* **Annealing / tempering.** ``ppl.scale(likelihood, beta)`` with ``beta`` in
  ``[0, 1]`` gives the tempered target ``p(z) p(y | z)^beta``.

The factor may be a Python number or a traced JAX scalar (an argument of the
enclosing model, e.g. an annealing temperature), so changing it does not
recompile. Fresh choices inside the scaled function are still drawn from
``gf``'s own (unscaled) distributions; as with numpyro's ``scale`` handler,
``generate``'s weight does not add ``(c - 1) * log p(fresh)``, so it is an
importance weight of the tempered target only when every choice inside is
constrained (the subsampled-likelihood case). Effect channels emitted inside
(``ppl.core.context.emit``) pass through unscaled.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction, check_args, check_key
from ppl.core.selection import Selection, as_selection
from ppl.core.trace import Trace
from ppl.errors import ArgumentError, CombinatorError


class ScaleTrace(Trace):
    """Trace of a scaled call: the inner trace and the factor it was scored with."""

    _dynamic_fields = ("inner_gf", "inner", "factor")

    def __init__(self, inner_gf: GenerativeFunction, inner: Trace, factor: Any):
        self.inner_gf = inner_gf
        self.inner = inner
        self.factor = factor

    def _set_gen_fn(self, gen_fn: Any) -> None:
        self.__dict__["inner_gf"] = None if gen_fn is None else gen_fn.gen_fn

    @property
    def gen_fn(self) -> Scale:  # type: ignore[override]
        # Rebuilt from the trace's own (dynamic) factor, so no traced value is
        # ever held in the pytree's static structure.
        return Scale(self.inner_gf, self.factor)

    @property
    def score(self) -> Any:  # type: ignore[override]
        return self.factor * self.inner.score

    @property
    def args(self) -> Any:  # type: ignore[override]
        return self.inner.args

    @property
    def retval(self) -> Any:  # type: ignore[override]
        return self.inner.retval

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices

    @property
    def deterministics(self) -> ChoiceMap:
        return self.inner.deterministics

    def project(self, selection: Selection) -> Any:
        return self.factor * self.inner.project(selection)


def _as_factor(factor: Any) -> Any:
    if isinstance(factor, bool) or factor is None:
        raise CombinatorError(f"ppl.scale needs a real factor (a number or a JAX scalar), got {factor!r}")
    if isinstance(factor, (int, float)):
        return jnp.asarray(float(factor))
    try:
        f = jnp.asarray(factor)
    except TypeError as e:
        raise CombinatorError(f"ppl.scale needs a real factor, got {type(factor).__name__}") from e
    if f.shape != ():
        raise CombinatorError(
            f"ppl.scale needs a scalar factor, got one of shape {f.shape}; scores are scalars, so one factor "
            "multiplies the whole log density (scale elements separately with ppl.vmap over a scaled function)"
        )
    if not jnp.issubdtype(f.dtype, jnp.floating):
        f = f.astype(jnp.result_type(float))
    return f


class Scale(GenerativeFunction):
    """``gen_fn`` with every score and weight multiplied by ``factor``.

    The GFI methods call ``gen_fn``'s (compiled) methods and scale their
    outputs; there is nothing to compile of its own. Two ``Scale`` objects
    over the same ``gen_fn`` compare equal whatever their factors, so a model
    whose factor changes between calls (an annealing schedule) still
    ``update``s its old trace in place.
    """

    def __init__(self, gen_fn: GenerativeFunction, factor: Any):
        if not isinstance(gen_fn, GenerativeFunction):
            raise CombinatorError(
                f"ppl.scale needs a generative function (a @ppl.gen function), got {type(gen_fn).__name__}"
            )
        self.gen_fn = gen_fn
        self.factor = _as_factor(factor)
        self.name = f"scale({gen_fn.name})"

    def simulate(self, key: Any, args: tuple = ()) -> ScaleTrace:
        key = check_key(key, f"{self.name}.simulate")
        args = check_args(self, args)
        return ScaleTrace(self.gen_fn, self.gen_fn.simulate(key, args), self.factor)

    def assess(self, choices: Any, args: tuple = ()) -> tuple[Any, Any]:
        args = check_args(self, args)
        w, retval = self.gen_fn.assess(choices, args)
        return self.factor * w, retval

    def generate(self, key: Any, constraints: Any = None, args: tuple = ()) -> tuple[ScaleTrace, Any]:
        key = check_key(key, f"{self.name}.generate")
        args = check_args(self, args)
        tr, w = self.gen_fn.generate(key, constraints, args)
        return ScaleTrace(self.gen_fn, tr, self.factor), self.factor * w

    def update(self, key: Any, trace: Trace, constraints: Any = None, args: tuple | None = None):
        key = check_key(key, f"{self.name}.update")
        self._check_trace(trace, "update")
        args = None if args is None else check_args(self, args)
        tr, w, discard = self.gen_fn.update(key, trace.inner, constraints, args)
        return ScaleTrace(self.gen_fn, tr, self.factor), self._rescaled(w, trace), discard

    def regenerate(self, key: Any, trace: Trace, selection: Any, args: tuple | None = None):
        key = check_key(key, f"{self.name}.regenerate")
        self._check_trace(trace, "regenerate")
        args = None if args is None else check_args(self, args)
        sel = as_selection(selection)
        tr, w = self.gen_fn.regenerate(key, trace.inner, sel, args)
        # The MH ratio rescores only the kept choices (and factors): the selected old values
        # are proposed afresh and take no part, so the factor change multiplies the old score
        # less their density (exact when the move drops no old choice).
        kept_old = trace.inner.score - trace.inner.project(sel)
        return ScaleTrace(self.gen_fn, tr, self.factor), self.factor * w + (self.factor - trace.factor) * kept_old

    def _check_trace(self, trace: Any, method: str) -> None:
        if not isinstance(trace, ScaleTrace):
            raise ArgumentError(
                f"{self.name}.{method} expects a trace of a scaled function, got {type(trace).__name__}"
            )
        super()._check_trace(trace, method)

    def _rescaled(self, w: Any, old: ScaleTrace) -> Any:
        """``c' * w + (c' - c) * log p(t)``: the change in scaled score."""
        return self.factor * w + (self.factor - old.factor) * old.inner.score


def scale(gen_fn: GenerativeFunction, factor: Any) -> Scale:
    """``gen_fn`` with every GFI score and weight multiplied by ``factor``.

    Use it for data subsampling (``factor = N / B`` on a minibatch likelihood
    keeps the log likelihood, and so the ELBO, unbiased) and for annealing
    (``factor = beta`` tempers a likelihood). See the module docstring for
    the exact weights.
    """
    return Scale(gen_fn, factor)


__all__ = ["Scale", "ScaleTrace", "scale"]
