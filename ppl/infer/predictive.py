"""Prior and posterior predictive draws.

* Prior predictive (no posterior given): ``num_samples`` independent runs of
  the model, ``t ~ p(.; args)``.
* Posterior predictive: for each posterior draw ``theta_s`` (an
  :class:`MCMCResult`, or a dict of draws of latent choices), one run of
  the model with ``theta_s`` fixed and every other choice -- the observed
  addresses in particular -- drawn afresh: ``y_s ~ p(y | theta_s; args)``.
  ``args`` may differ from the fit's (new covariates); ``resample`` names
  latent choices to draw afresh instead of keeping (e.g. new group effects).

The result maps every choice and ``ppl.deterministic`` site to an array
with the draws' leading axes (``[num_samples, ...]`` for the prior,
``[chain, draw, ...]`` for an MCMC result). One compiled, vectorised program.

**Choices made in some draws only** (inside ``ppl.switch``, ``ppl.cond``,
``ppl.mixture``): the result's ``masks`` maps each of them to a boolean array
(the draws' leading axes), true in the draws that made it; its values hold
the choice there and NaN elsewhere (0 / ``False`` for integer and boolean
choices, so read ``masks`` for those). Posterior draws may carry masks the
same way (a result of ``predictive`` or ``ppl.vi.sample_posterior``, a
:class:`~ppl.ChoiceMap` with masks, or ``ppl.masked(values, mask)`` values
in a dict): an absent entry is not a constraint, so that draw makes the
choice afresh if its branch is taken.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import ChoiceMap, Masked
from ppl.core.address import format_address, normalize
from ppl.core.generative_function import check_key
from ppl.core.selection import as_selection
from ppl.errors import InferenceError
from ppl.infer.mcmc.result import MCMCResult, Samples, address_name, samples_from
from ppl.infer.mcmc.structure import Problem, make_problem


@partial(jax.jit, static_argnums=(0,))
def _program(spec: Any, model: Any, keys: Any, dyn: Any, draws: Any) -> tuple[ChoiceMap, ChoiceMap]:
    # the model is a pytree argument: its captured arrays are inputs, its structure part of the key
    model, args = Problem(model, spec, (), ChoiceMap.empty()).model_and_args(dyn)

    def one(k: Any, given: Any) -> tuple[ChoiceMap, ChoiceMap]:
        tr, _ = model.generate(k, ChoiceMap.empty() if given is None else given, args)
        return tr.choices, tr.deterministics

    return jax.vmap(one)(keys, draws)


def _prototype(problem: Problem) -> tuple[dict, set]:
    """``{address: shape}`` of the model's choices (masked ones included) and its deterministic addresses."""

    def run(k: Any, dyn: Any) -> Any:
        tr = problem.model.simulate(k, problem.args(dyn))
        return tr.choices, tr.deterministics

    cm, det = jax.eval_shape(run, jax.random.key(0), problem.dyn)
    return {a: tuple(v.shape) for a, v, _ in cm.masked_items()}, set(det.addresses())


def _raw_draws(posterior: Any) -> tuple[dict, dict]:
    """``({key: values}, {key: mask})`` of the posterior draws as given (keys: names or addresses)."""
    if isinstance(posterior, MCMCResult):
        return {a: posterior.samples[address_name(a)] for a in posterior.latent_addresses}, {}
    if isinstance(posterior, ChoiceMap):
        values, masks = {}, {}
        for a, v, m in posterior.masked_items():
            values[a] = v
            if m is not None:
                masks[a] = m
        return values, masks
    if isinstance(posterior, dict):
        values, masks = {}, dict(getattr(posterior, "masks", {}))
        for k, v in posterior.items():
            if isinstance(v, Masked):
                values[k], masks[k] = v.value, v.mask
            else:
                values[k] = v
        return values, masks
    raise InferenceError(
        f"predictive: expected an MCMCResult, a dict or a ChoiceMap of posterior draws, got {type(posterior).__name__}"
    )


def _posterior_draws(problem: Problem, posterior: Any) -> tuple[dict, dict, tuple]:
    """``({address: array}, {address: mask}, batch)``: latent draws to condition on, and the draws' batch shape."""
    shapes, dets = _prototype(problem)
    raw, raw_masks = _raw_draws(posterior)
    by_name = {address_name(a): a for a in list(shapes) + sorted(dets, key=str)}
    items, masks = {}, {}
    for k, v in raw.items():
        a = by_name.get(k) if isinstance(k, str) else None
        a = a if a is not None else normalize(k)
        if a in dets:
            continue  # deterministic values are recomputed by the model
        if a not in shapes:
            raise InferenceError(
                f"predictive: the draws name {format_address(a)}, which is not a choice of "
                f"{problem.model.name}; its choices are {', '.join(format_address(x) for x in list(shapes)[:10])}"
            )
        items[a] = v
        if k in raw_masks:
            masks[a] = raw_masks[k]
    batch = None
    for a, v in items.items():
        v = np.shape(v)
        site = shapes[a]
        if len(v) < len(site) or tuple(v[len(v) - len(site) :]) != site:
            raise InferenceError(
                f"predictive: draws at {format_address(a)} have shape {v}, which does not end in the choice's "
                f"shape {site}"
            )
        b = tuple(v[: len(v) - len(site)])
        if batch is not None and b != batch:
            raise InferenceError(
                f"predictive: draws have different leading shapes ({batch} and {b} at {format_address(a)})"
            )
        batch = b
    if batch is None:
        raise InferenceError("predictive: the posterior holds no draws of latent choices")
    for a, m in masks.items():
        m_shape = np.shape(m)
        if tuple(m_shape[: len(batch)]) != batch or len(m_shape) > len(np.shape(items[a])):
            raise InferenceError(
                f"predictive: the mask of the draws at {format_address(a)} has shape {m_shape}; it must start "
                f"with the draws' leading shape {batch} (one presence flag per draw, or per element)"
            )
    return items, masks, batch


def predictive(
    key: Any,
    model: Any,
    args: tuple = (),
    samples_or_result: Any = None,
    *,
    num_samples: int | None = None,
    resample: Any = None,
) -> Samples:
    """Prior (no posterior given) or posterior predictive draws (see the module docstring).

    ``num_samples``: how many prior draws; with a posterior, optionally a
    number of posterior draws picked at random (without replacement), the
    result then shaped ``[num_samples, ...]``.

    Returns a :class:`~ppl.infer.Samples` dict; its ``masks`` say which draws
    made the choices that exist in some branches only (see the module
    docstring for the values elsewhere).
    """
    key = check_key(key, "ppl.infer.predictive")
    problem = make_problem(model, args, None)
    if samples_or_result is None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise InferenceError(f"prior predictive needs num_samples, a positive int (got {num_samples!r})")
        batch: tuple = (num_samples,)
        flat = None
    else:
        items, masks, batch = _posterior_draws(problem, samples_or_result)
        if resample is not None:
            sel = as_selection(resample)
            items = {a: v for a, v in items.items() if not sel.contains(a)}
        n_total = int(np.prod(batch))

        def flatten(v: Any) -> Any:
            return jnp.asarray(v).reshape((n_total, *np.shape(v)[len(batch) :]))

        flat = ChoiceMap(
            {a: flatten(v) for a, v in items.items()},
            {a: flatten(jnp.asarray(m, bool)) for a, m in masks.items() if a in items},
            _trusted=True,
        )
        if num_samples is not None:
            if not isinstance(num_samples, int) or not 1 <= num_samples <= n_total:
                raise InferenceError(
                    f"num_samples must be an int in [1, {n_total}] (the number of draws), got {num_samples!r}"
                )
            key, k_pick = jax.random.split(key)
            idx = jax.random.choice(k_pick, n_total, (num_samples,), replace=False)
            flat = ChoiceMap(
                {a: v[idx] for a, v, _ in flat.masked_items()},
                {a: m[idx] for a, _, m in flat.masked_items() if m is not None},
                _trusted=True,
            )
            batch = (num_samples,)
    n = int(np.prod(batch))
    cm, det = _program(problem.spec, problem.model, jax.random.split(key, n), problem.dyn, flat)
    out = samples_from(cm, batch)
    return samples_from(det, batch, out)


__all__ = ["predictive"]
