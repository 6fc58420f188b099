"""Building blocks shared by the objectives (public: users write objectives with them).

* :func:`log_density` -- ``log p(choices; args)`` of a complete set of choices,
  through ``generate`` so that generative functions whose density is itself
  estimated by sampling (:func:`ppl.vi.marginal`) work too, with clear
  errors when a guide's choices and a model's latents disagree;
* :func:`log_weight` -- one importance weight ``log p(x, z) - log q(z)``
  with ``z ~ q``: the integrand of the ELBO and of every multi-sample bound;
* :func:`log_mean_exp` -- ``log (1/K) sum_k exp(l_k)``;
* :func:`observations_fn` -- observations given as choices, or as a function
  of the model's arguments (data passed as an argument: minibatches).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl.core import context, enumeration
from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.selection import Selection
from ppl.errors import EnumerationError, GuideError, UnvisitedConstraintError

#: ``fold_in`` data deriving the model's key from the key of one importance weight
MODEL_STREAM = 0xED6F646C  # >= 2**31: never equal to an address hash (those are < 2**31)


def observations_fn(observations: Any) -> Callable[[tuple], ChoiceMap]:
    """``model_args -> ChoiceMap`` from an objective's ``observations`` argument.

    ``observations`` is a choice map (or nested dict, or ``None``) of observed
    values, fixed when the objective is built; or a function
    ``observations(model_args) -> choices`` when the data are an argument of
    the model (a minibatch changes every step: ``lambda args: {"x": args[1]}``).
    """
    if callable(observations) and not isinstance(observations, ChoiceMap):
        return lambda model_args: as_choicemap(observations(model_args))
    fixed = as_choicemap(observations)
    return lambda model_args: fixed


def log_density(key: Any, gen_fn: GenerativeFunction, choices: Any, args: tuple) -> tuple[Any, Any]:
    """``(log p(choices; args), retval)`` for choices that fix every random choice of ``gen_fn``.

    Uses ``gen_fn.generate`` (its weight is the log density when every
    choice is given); ``key`` only matters for a generative function that
    estimates its density by sampling, whose weight is then the log of an
    unbiased estimate (a lower bound on ``log p`` in expectation).
    Finite discrete choices that are missing (a mixture's assignments, an
    HMM's states, which the guide does not sample) are summed out exactly
    (:func:`ppl.infer.marginal_log_density`: per element inside ``ppl.vmap``,
    by the forward algorithm inside ``ppl.scan``), so the ELBO and every
    multi-sample bound become bounds on the marginal ``log p(x)`` with those
    choices enumerated, as with Pyro's ``TraceEnum_ELBO``; the return value
    is then a placeholder (it may depend on the summed choices).
    Raises :class:`~ppl.errors.GuideError` naming the address when a choice
    is given that ``gen_fn`` does not make, or one it makes is missing and
    cannot be summed out.
    """
    choices = as_choicemap(choices)
    missing = _missing(gen_fn, choices, args)
    if missing:
        names = ", ".join(format_address(a) for a in missing[:8])
        try:
            summed = enumeration.marginal_log_density(gen_fn, choices, args, Selection(frozenset(missing)))
        except EnumerationError as e:
            raise GuideError(
                f"{gen_fn.name} makes the choice(s) {names}, which are neither observed nor sampled by the guide; "
                "a guide must sample every continuous latent choice of the model (or observe it), and finite "
                f"discrete ones it leaves out are summed out, which is not possible here: {e}"
            ) from None
        return summed, enumeration.SummedOut(f"{gen_fn.name} (with {names} summed out)")
    trace, weight = gen_fn.generate(key, choices, args)
    return weight, trace.retval


_MISSING: dict = {}


def _missing(gen_fn: GenerativeFunction, choices: ChoiceMap, args: tuple) -> list:
    """Addresses ``gen_fn`` makes that ``choices`` lacks, from a shape-only run with no handlers installed.

    No handler sees this run, so choices it draws are not random choices of an
    enclosing ``ppl.vi.expectation`` (they would add score terms to its
    gradient); cached by the model's structure and the shapes of the inputs.
    """
    from ppl.core.staging import partition

    dyn, spec = partition((gen_fn, choices, args))
    cache_key = (spec, tuple((jnp.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in dyn))
    hit = _MISSING.get(cache_key)
    if hit is not None:
        return hit

    def probe() -> Any:
        with context.no_interceptors():
            return gen_fn.generate(jax.random.key(0), choices, args)[0].choices

    try:
        made = jax.eval_shape(probe)
    except UnvisitedConstraintError as e:
        raise GuideError(
            f"{gen_fn.name} was given choices it does not make (a guide samples an address the model lacks, "
            f"or an observation is misnamed): {e}"
        ) from None
    out = [a for a in made.addresses() if a not in choices]
    _MISSING[cache_key] = out
    return out


def log_weight(
    key: Any,
    model: GenerativeFunction,
    guide: GenerativeFunction,
    observations: ChoiceMap,
    model_args: tuple,
    guide_args: tuple,
) -> Any:
    """``log p(x, z; model_args) - log q(z; guide_args)`` with ``z ~ q``: one importance weight."""
    q = guide.simulate(key, guide_args)
    # the model's key (used only by models that estimate their density by sampling) is a separate
    # stream derived from the same key: computed only when used, so a plain model costs no hashing
    log_p, _ = log_density(jax.random.fold_in(key, MODEL_STREAM), model, q.choices | observations, model_args)
    return log_p - q.score


def log_mean_exp(log_values: Any, axis: int = 0) -> Any:
    """``log((1/K) sum_k exp(l_k))`` along ``axis``, computed stably."""
    return logsumexp(log_values, axis=axis) - math.log(log_values.shape[axis])


__all__ = ["log_density", "log_mean_exp", "log_weight", "observations_fn"]
