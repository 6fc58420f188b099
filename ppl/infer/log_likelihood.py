"""Pointwise log likelihood of observations under posterior draws: ``ppl.log_likelihood``.

For every draw ``theta_s`` of the latent choices and every observed address
``y``, the log density of each *observation* ``y_i`` given the draw:

    log p(y_i | theta_s)

where an observation is one element of the site's batch shape (a
``dist.Normal(mu, s) @ "y"`` with ``y`` of shape ``(N,)`` gives ``N``; a
``.to_event(1)`` site is one observation; inside ``ppl.vmap``/``ppl.scan``
every element or time step is one). This is what LOO-CV and WAIC need
(ArviZ's ``log_likelihood`` group: ``az.loo(idata)``).

Top-level observed choices are scored elementwise by a site handler that
records ``d.log_prob(value)`` before it is summed; choices inside
combinators come from the per-element scores the batched traces keep.
Draws are processed in chunks (``jax.lax.map`` with ``batch_size``), so
memory stays flat in the number of draws.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import context
from ppl.core.address import format_address, normalize
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import _log_prob
from ppl.core.scan import ScanTrace
from ppl.core.trace import ChoiceTrace, GenTrace
from ppl.core.vmap import VmapTrace
from ppl.errors import InferenceError
from ppl.infer.mcmc.result import address_name

WHERE = "ppl.log_likelihood"


class _Pointwise:
    """Records the elementwise log density of the observed top-level choices (keyed by full address)."""

    def __init__(self, observed: frozenset):
        self.observed = observed
        self.values: dict = {}

    def postprocess(self, site: Any) -> None:
        if site.kind == "given" and site.address in self.observed and not context.elements():
            self.values[site.address] = _log_prob(site.dist, site.value)

    def __hash__(self) -> int:
        return hash((type(self), self.observed))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.observed == self.observed  # type: ignore[attr-defined]


def _per_element(tr: Any, rest: tuple) -> Any:
    """The score of the choice at ``rest`` below ``tr``, unsummed over enclosing vmap/scan axes."""
    if isinstance(tr, (VmapTrace, ScanTrace)):
        return _per_element(tr.inner, rest)
    if isinstance(tr, ChoiceTrace) and not rest:
        return tr.score
    if isinstance(tr, GenTrace) and rest:
        sub = tr.subtrace_map().get(rest[:1])
        if sub is not None:
            return _per_element(sub, rest[1:])
    from ppl.core.selection import Selection

    return tr.project(Selection(frozenset({rest})))  # any other trace: the summed density below it


def _pointwise_fn(model: GenerativeFunction, args: tuple, obs: ChoiceMap, addresses: tuple):
    observed = frozenset(addresses)

    def one(latent: ChoiceMap) -> dict:
        rec = _Pointwise(observed)
        with context.intercept(rec):
            tr, _ = model.generate(jax.random.key(0), latent | obs, args)
        return {a: rec.values[a] if a in rec.values else _per_element(tr, a) for a in addresses}

    return one


def log_likelihood(
    model: GenerativeFunction,
    args: tuple,
    samples: Any,
    observations: Any,
    *,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """``{observed name: log p(y_i | theta_s)}`` shaped ``(*draw_axes, *observation_shape)``.

    Args:
      model, args: the model and its arguments.
      samples: latent draws with leading draw axes (``result.samples`` of
        an MCMC run, shaped ``(chain, draw, ...)``, or any dict/ChoiceMap of
        address -> array); entries that are not latent choices of the model
        (deterministics) are ignored.
      observations: the observed values.
      batch_size: draws evaluated at once.
    """
    if not isinstance(model, GenerativeFunction):
        raise InferenceError(f"{WHERE}: model must be a generative function, got {type(model).__name__}")
    obs = as_choicemap(observations)
    if obs.is_empty():
        raise InferenceError(f"{WHERE}: no observations were given, so there is no likelihood to evaluate")
    args = tuple(args)
    shapes = jax.eval_shape(lambda k: model.generate(k, obs, args)[0].choices, jax.random.key(0))
    latent = {a: s for a, s in shapes.flat_dict().items() if a not in set(obs.addresses())}
    given = {normalize(a) if not isinstance(a, tuple) else a: v for a, v in _flat(samples).items()}
    missing = [a for a in latent if a not in given]
    if missing:
        raise InferenceError(
            f"{WHERE}: the samples have no draws at {', '.join(format_address(a) for a in missing[:6])}, latent "
            "choices of the model (pass result.samples, or a dict of every latent address)"
        )
    first = next(iter(latent)) if latent else None
    batch = () if first is None else tuple(np.shape(given[first]))[: np.ndim(given[first]) - len(latent[first].shape)]
    for a, s in latent.items():
        if tuple(np.shape(given[a])) != (*batch, *s.shape):
            raise InferenceError(
                f"{WHERE}: the draws at {format_address(a)} have shape {tuple(np.shape(given[a]))}; expected "
                f"{(*batch, *s.shape)} (draw axes {batch} then the choice's shape {tuple(s.shape)})"
            )
    n = int(np.prod(batch)) if batch else 1
    flat = ChoiceMap(
        {a: jnp.asarray(given[a], s.dtype).reshape((n, *s.shape)) for a, s in latent.items()}, _trusted=True
    )
    addresses = tuple(obs.addresses())
    one = _pointwise_fn(model, args, obs, addresses)
    out = jax.jit(lambda f: jax.lax.map(one, f, batch_size=min(int(batch_size), n)))(flat)
    return {address_name(a): np.asarray(out[a]).reshape((*batch, *np.shape(out[a])[1:])) for a in addresses}


def _flat(samples: Any) -> dict:
    if isinstance(samples, ChoiceMap):
        return samples.flat_dict()
    if isinstance(samples, dict):
        out = {}
        for k, v in samples.items():
            key = tuple(k.split("/")) if isinstance(k, str) else normalize(k)
            out[key] = v
        return out
    raise InferenceError(f"{WHERE}: samples must be a dict or ChoiceMap of draws, got {type(samples).__name__}")


__all__ = ["log_likelihood"]
