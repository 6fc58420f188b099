r"""Posterior draws of summed-out discrete choices: ``ppl.infer.infer_discrete``.

Given values of every other choice (a posterior draw of the continuous
ones from NUTS or a guide, and the observations), draw the discrete choices
that :func:`ppl.infer.marginal_log_density` sums out from their exact
conditional posterior ``p(z | choices)``.

How: the elimination of :mod:`ppl.core.enumeration` accepts *tilts*,
additive terms ``theta`` on the log weight of every summed value (per
element of a ``ppl.vmap``, per pair of consecutive states of a
``ppl.scan``, per joint value at top level). The log marginal ``log Z(theta)``
is a log-partition function, so its gradient at ``theta = 0`` is the
posterior probability of each value:

* ``ppl.vmap``: ``d log Z / d theta_i(v) = p(z_i = v | choices)``; given
  everything else the elements are independent, so each is drawn from its
  own conditional;
* ``ppl.scan``: ``d log Z / d theta_t(u, v) = p(z_{t-1} = u, z_t = v |
  choices)``, the pairwise marginals; drawing ``z_{T-1}`` from its marginal
  and then each ``z_{t-1}`` from ``p(z_{t-1} | z_t, choices) =
  xi_t(z_{t-1}, z_t) / sum_u xi_t(u, z_t)`` going backwards is forward
  filtering, backward sampling (reverse-mode autodiff *is* the backward
  pass);
* top level: one joint value from ``p(v | choices)``.

The draws are random choices of the running program (numpyro
``Categorical`` sites at ``("infer_discrete", ...)``), so inside
``ppl.vi.expectation`` their dependence on the parameters is scored like
any discrete choice's (REINFORCE by default), and the gradient of an
expectation over them is unbiased.

Summed choices at one level per path are supported (a top-level grid around
summed ``ppl.vmap``/``ppl.scan`` levels, or summed levels inside summed
elements, raise :class:`~ppl.errors.EnumerationError`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Categorical

from ppl.core import context, enumeration
from ppl.core.address import format_address
from ppl.core.batching import loop
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_args, check_key
from ppl.core.primitive import sample_value
from ppl.core.selection import Selection, as_selection
from ppl.errors import ArgumentError, EnumerationError


def _levels(model: GenerativeFunction, args: tuple, cm: ChoiceMap, sel: Selection) -> list:
    h = enumeration.Enumerate(sel, record=True)

    def run() -> Any:  # eager: no compiled GFI call may skip the tracing that records the levels
        with context.intercept(h), context.eager(), context.collect(context.effect_channels()):
            return enumeration.sum_top_level(model, args, cm.addresses(), lambda v: model.assess(cm | v, args)[0])

    jax.eval_shape(run)
    return h.levels


def _check_nesting(levels: list) -> None:
    for a in levels:
        for b in levels:
            if a is b:
                continue
            inside = a.kind == "top" or (len(b.prefix) > len(a.prefix) and b.prefix[: len(a.prefix)] == a.prefix)
            if inside:
                raise EnumerationError(
                    "ppl.infer.infer_discrete: summed choices at nested levels ("
                    f"{a.kind} at {format_address(a.prefix) or 'the top level'} around {b.kind} at "
                    f"{format_address(b.prefix)}) are not supported yet; give the outer ones values"
                )


def _probabilities(g: Any) -> Any:
    p = jnp.clip(g, 0.0, None)
    return p / jnp.sum(p, axis=-1, keepdims=True)


def _categorical(key: Any, probs: Any, name: Any) -> Any:
    """A draw that is a random choice of the running program (scored by an enclosing ``ppl.vi.expectation``)."""
    with context.path(("infer_discrete", name)):
        return sample_value(key, Categorical(probs=probs))


def _draw_chain(key: Any, xi: Any) -> Any:
    """Backward sampling from pairwise marginals ``xi[..., t, u, v]`` (row 0 of step 0 holds its marginal)."""
    t = xi.shape[-3]
    k_last, k_rest = jax.random.split(key)
    last_marginal = jnp.sum(xi[..., -1, :, :], axis=-2) if t > 1 else xi[..., 0, 0, :]
    last = _categorical(k_last, _probabilities(last_marginal), "last")
    if t == 1:
        return jnp.expand_dims(last, -1)

    def back(z: Any, inp: tuple) -> tuple:
        k, xi_t = inp  # xi_t: [..., u, v]; the column of the state drawn after this step
        column = jnp.take_along_axis(xi_t, z[..., None, None], axis=-1)[..., 0]
        z_prev = _categorical(k, _probabilities(column), "back")
        return z_prev, z_prev

    steps = jnp.moveaxis(xi[..., 1:, :, :], -3, 0)[::-1]  # t - 1, ..., 1
    _, earlier = loop(back, last, (jax.random.split(k_rest, t - 1), steps), t - 1)
    return jnp.concatenate([jnp.moveaxis(earlier[::-1], 0, -1), jnp.expand_dims(last, -1)], axis=-1)


def infer_discrete(key: Any, model: GenerativeFunction, args: Any, choices: Any, sites: Any = None) -> ChoiceMap:
    """One draw of the selected (default: all) discrete choices missing from ``choices``, from ``p(z | choices)``.

    Returns a choice map of the drawn values (``choices`` not included).
    Vectorise over many draws with ``jax.vmap`` (e.g. over MCMC draws).
    """
    key = check_key(key, "ppl.infer.infer_discrete")
    if not isinstance(model, GenerativeFunction):
        raise ArgumentError(f"ppl.infer.infer_discrete needs a generative function, got {type(model).__name__}")
    args = check_args(model, args)
    cm = as_choicemap(choices)
    sel = Selection(frozenset({()}), False) if sites is None else as_selection(sites)
    levels = _levels(model, args, cm, sel)
    if not levels:
        return ChoiceMap.empty()
    _check_nesting(levels)
    zeros = {lv.prefix + (enumeration.TILT,): jnp.zeros(lv.shape) for lv in levels}

    def log_z(tilts: dict) -> Any:
        full = cm | ChoiceMap(tilts)
        if not context.collecting():
            return enumeration.marginal_log_density(model, full, args, sel)
        # an assess reports nothing an enclosing estimator needs; its frame stays inside jax.grad
        with context.collect(context.effect_channels()):
            return enumeration.marginal_log_density(model, full, args, sel)

    grads = jax.grad(log_z)(zeros)
    out: dict = {}
    for i, lv in enumerate(levels):
        g = grads[lv.prefix + (enumeration.TILT,)]
        k = jax.random.fold_in(key, i)
        with context.path((i,)):
            idx = _draw_chain(k, g) if lv.kind == "scan" else _categorical(k, _probabilities(g), "values")
        for rel, values in lv.sites:
            out[lv.prefix + rel] = jnp.asarray(np.asarray(values))[idx]
    return ChoiceMap(out)


def with_discrete(key: Any, result: Any, sites: Any = None) -> Any:
    """``result`` (an ``MCMCResult``) with a draw of the summed-out discrete choices added to every draw.

    Each of the ``chains x draws`` continuous draws gets one draw of the
    discrete choices from ``p(z | draw, observations)`` (so the pairs are
    draws from the joint posterior); they join ``samples`` (and ArviZ's
    posterior) under their addresses.
    """
    from ppl.infer.mcmc.result import MCMCResult, Samples, address_name

    key = check_key(key, "MCMCResult.infer_discrete")
    c, d = result.num_chains, result.num_draws
    flat = result.latent_choices().map(lambda v: jnp.asarray(v).reshape((c * d, *v.shape[2:])))
    model, args, obs = result.model, result.args, result.observations

    @jax.jit
    def draw(keys: Any, latent: ChoiceMap) -> ChoiceMap:
        return jax.vmap(lambda k, cm: infer_discrete(k, model, args, obs | cm, sites))(keys, latent)

    drawn = draw(jax.random.split(key, c * d), flat)
    samples = Samples(dict(result.samples), masks=dict(result.samples.masks))
    for a in drawn.addresses():
        samples[address_name(a)] = np.asarray(drawn[a]).reshape((c, d, *np.shape(drawn[a])[1:]))
    return MCMCResult(
        result.algorithm,
        samples,
        result.stats,
        model=model,
        args=args,
        observations=obs,
        latent=tuple(result.latent_addresses) + tuple(drawn.addresses()),
        deterministic=result.deterministic_addresses,
        step_size=result.step_size,
        inverse_mass_matrix=result.inverse_mass_matrix,
        warmup_stats=result.warmup_stats,
    )


__all__ = ["infer_discrete", "with_discrete"]
