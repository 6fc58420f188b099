"""The latent space of a model, as automatic guides see it.

An automatic guide needs, for every latent (unobserved) choice of the model:
its address, its shape, its support and the bijection
``T = biject_to(support)`` from unconstrained space. :func:`latent_layout`
finds them with a *prototype run*:

1. ``u0 = ppl.unconstrained_init(key, model, args, observations)`` -- Stan's
   uniform(-2, 2) draw in unconstrained space (improper priors are never
   sampled);
2. ``ppl.from_unconstrained`` maps ``u0`` to a complete trace, and the model
   is run once more with every choice given, under an interceptor that
   records each site's distribution. This run is only traced
   (``jax.eval_shape``), not compiled.

Supports built from constants are then known. A support computed from the
model's arguments or from other choices holds traced values; for those the
run is repeated eagerly on concrete values, at two different prototype
points. A support that depends on other latent values (``Uniform(0, a)``
with ``a`` random) would need a different bijection at every point, so it
is reported as a :class:`~ppl.errors.GuideError` (write a custom guide for
it); supports that depend only on the model's arguments are fixed at the
arguments the guide was built with.

The unconstrained values of all latents, flattened and concatenated in
program order, form one vector of length :attr:`LatentLayout.size`; the
joint guides (full-rank and low-rank normal, Laplace) are distributions over
that vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import ComposeTransform, IdentityTransform, ReshapeTransform, Transform, biject_to

from ppl.core import context
from ppl.core.address import Address, format_address, is_prefix
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import describe, is_discrete, is_real_support
from ppl.core.staging import combine, partition
from ppl.core.unconstrained import from_unconstrained, unconstrained_init
from ppl.errors import ArgumentError, GuideError


@dataclass(frozen=True)
class LatentSite:
    """One latent choice: where it is and how it maps to unconstrained space.

    ``shape`` is the value's shape (with the leading axes of ``ppl.vmap`` /
    ``ppl.scan`` when the site is inside one), ``unconstrained_shape`` the
    shape of ``T^{-1}(value)``, ``offset``/``size`` its slice of the flat
    unconstrained vector.
    """

    address: Address
    name: str
    shape: tuple
    unconstrained_shape: tuple
    transform: Transform | None  # None: the support is all of R^k
    offset: int
    size: int

    def to_constrained(self, u: Any) -> Any:
        """``T(u)`` for this site's unconstrained value ``u``."""
        return u if self.transform is None else self.transform(u)

    def to_unconstrained(self, x: Any) -> Any:
        """``T^{-1}(x)``."""
        return x if self.transform is None else self.transform.inv(x)

    def transforms(self, flat: bool = False) -> list[Transform]:
        """Transforms taking an unconstrained sample (flat ``(size,)`` if ``flat``) to a value."""
        out: list[Transform] = []
        if flat and self.unconstrained_shape != (self.size,):
            out.append(ReshapeTransform(self.unconstrained_shape, (self.size,)))
        if self.transform is not None:
            out.append(self.transform)
        return out


@dataclass(frozen=True, eq=False)
class LatentLayout:
    """The latent sites of a model, in program order, and the flat vector they make.

    ``prototype`` is the flat unconstrained point of the prototype run
    (Stan-style uniform(-2, 2) draws), the default initial location of guides.
    """

    model_name: str
    sites: tuple[LatentSite, ...]
    observed: tuple[Address, ...]
    prototype: Any

    @property
    def size(self) -> int:
        """Length of the flat unconstrained vector."""
        return sum(s.size for s in self.sites)

    @property
    def addresses(self) -> list[Address]:
        return [s.address for s in self.sites]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    def flatten(self, u: Any) -> Any:
        """Per-site unconstrained values (a dict by name or a ChoiceMap) -> flat vector."""
        parts = [jnp.reshape(self._get(u, s), (s.size,)) for s in self.sites]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def unflatten(self, flat: Any) -> dict[str, Any]:
        """Flat unconstrained vector -> ``{name: unconstrained value}``."""
        return {s.name: jnp.reshape(flat[s.offset : s.offset + s.size], s.unconstrained_shape) for s in self.sites}

    def unconstrained_choices(self, flat: Any) -> ChoiceMap:
        """Flat unconstrained vector -> ChoiceMap of unconstrained values (for ``ppl.from_unconstrained``)."""
        return ChoiceMap({s.address: v for s, v in zip(self.sites, self.unflatten(flat).values())})

    def constrain(self, u: Any) -> ChoiceMap:
        """Per-site unconstrained values (dict by name, ChoiceMap or flat vector) -> ChoiceMap of ``T(u)``."""
        if not isinstance(u, (dict, ChoiceMap)):
            u = self.unflatten(u)
        return ChoiceMap({s.address: s.to_constrained(self._get(u, s)) for s in self.sites})

    def unconstrain(self, x: Any) -> dict[str, Any]:
        """Constrained values (ChoiceMap or dict by name) -> ``{name: T^{-1}(x)}``."""
        return {s.name: s.to_unconstrained(jnp.asarray(self._get(x, s))) for s in self.sites}

    def _get(self, values: Any, s: LatentSite) -> Any:
        if isinstance(values, ChoiceMap):
            if s.address not in values:
                raise GuideError(f"no value given for the latent choice {format_address(s.address)}")
            return values[s.address]
        if s.name not in values:
            raise GuideError(f"no value given for the latent choice {s.name!r}; expected keys {self.names}")
        return values[s.name]


def site_name(addr: Address) -> str:
    """The string naming ``addr`` in parameter dicts and ArviZ: components joined by ``/``."""
    return "/".join(str(c) for c in addr)


# --------------------------------------------------------------- the prototype


class _SiteRecorder:
    """Interceptor that records the distribution at every site given a value."""

    channels: tuple = ()

    def __init__(self) -> None:
        self.sites: dict[Address, Any] = {}

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return other is self

    def given(self, addr: Address, d: Any, value: Any) -> None:
        if addr not in self.sites:
            self.sites[addr] = d
        return None


def _is_observed(addr: Address, observed: list[Address]) -> bool:
    return any(is_prefix(o, addr) for o in observed)


def _record(key: Any, model: GenerativeFunction, args: tuple, obs: ChoiceMap, u0: ChoiceMap, eager: bool) -> tuple:
    """Run the model with every choice given (the prototype point), recording each site's distribution.

    Without ``eager`` the run is only traced (``jax.eval_shape``: nothing is
    compiled), so supports built from constants come out concrete and
    supports built from arguments or other choices hold tracers; ``eager``
    runs op by op on concrete values instead (slower, used only then).
    """
    rec = _SiteRecorder()

    def run(u0: ChoiceMap, args: tuple) -> ChoiceMap:
        tr, _, _ = from_unconstrained(model, u0, args, obs, key=key)
        with context.intercept(rec):
            model.generate(key, tr.choices, args)
        return tr.choices

    if eager:
        with context.eager():
            values = run(u0, args)
        shapes = {a: tuple(jnp.shape(v)) for a, v in values.flat_dict().items()}
    else:
        dyn, spec = partition(args)
        out = jax.eval_shape(lambda u, d: run(u, combine(list(d), spec)), u0, dyn)
        shapes = {a: tuple(v.shape) for a, v in out.flat_dict().items()}
    return rec.sites, shapes


def _has_tracer(d: Any) -> bool:
    if is_discrete(d) or is_real_support(d.support):
        return False
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(d.support))


def _transform_of(addr: Address, d: Any, model_name: str) -> Transform | None:
    if is_real_support(d.support):
        return None
    t = biject_to(d.support)
    if isinstance(t, IdentityTransform):
        return None
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(t)):
        raise GuideError(
            f"the support of {format_address(addr)} in {model_name} ({d.support}) depends on values inside "
            "ppl.vmap/ppl.scan, so no single transform to unconstrained space fits every element; automatic "
            "guides fix one transform per address: write a custom guide (a @ppl.gen function) for this model"
        )
    return t


def _same_transform(a: Transform | None, b: Transform | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb or len(la) != len(lb):
        return False
    return all(np.shape(x) == np.shape(y) and np.allclose(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def latent_layout(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, *, key: Any = None, kind: str = "guide"
) -> LatentLayout:
    """Discover the latent choices of ``model`` given ``observations`` (see the module docstring).

    Finite discrete latent choices are left out of the layout: the objectives
    sum them out of the model exactly (``ppl.vi.objectives.common.log_density``),
    so an automatic guide covers the continuous ones. Raises
    :class:`~ppl.errors.GuideError` for a discrete latent choice with an
    infinite support, for a support that depends on other latent values, and
    for a model with no (continuous) latents.
    """
    if not isinstance(model, GenerativeFunction):
        raise ArgumentError(f"{kind}: expected a generative function (a @ppl.gen model), got {type(model).__name__}")
    if not isinstance(args, tuple):
        raise ArgumentError(f"{kind}: model args must be a tuple, got {type(args).__name__}")
    obs = as_choicemap(observations)
    key = jax.random.key(0) if key is None else key
    k_init, k_run, k_init2 = jax.random.split(key, 3)
    u0 = unconstrained_init(k_init, model, args, obs)
    dists, shapes = _record(k_run, model, args, obs, u0, eager=False)
    dists2 = dists
    if any(_has_tracer(d) for d in dists.values()):
        # Supports computed from arguments or other choices: read them at two
        # concrete points, so that a support moving with other latents is caught.
        dists, shapes = _record(k_run, model, args, obs, u0, eager=True)
        u1 = unconstrained_init(k_init2, model, args, obs)
        dists2, _ = _record(k_run, model, args, obs, u1, eager=True)
    observed = list(obs.addresses())

    sites: list[LatentSite] = []
    summed: list[Address] = []
    offset = 0
    names: dict[str, Address] = {}
    for addr, d in dists.items():
        if _is_observed(addr, observed):
            continue
        if is_discrete(d):
            if getattr(d, "has_enumerate_support", False):
                summed.append(addr)  # left to the objective, which sums it out exactly (ppl.core.enumeration)
                continue
            raise GuideError(
                f"{kind}: the latent choice {format_address(addr)} of {model.name} is discrete ({describe(d)}) with "
                "an infinite support; automatic guides are densities on unconstrained real space and sum out only "
                "finite discrete choices. Observe it, or write a custom guide (a @ppl.gen function) that samples "
                "it (ppl.vi.reinforce)"
            )
        t = _transform_of(addr, d, model.name)
        if not _same_transform(t, _transform_of(addr, dists2[addr], model.name) if addr in dists2 else t):
            raise GuideError(
                f"{kind}: the support of {format_address(addr)} in {model.name} changes with the values of other "
                f"latent choices ({d.support} at one point, {dists2[addr].support} at another); automatic guides "
                "fix one transform per address: write a custom guide for this choice"
            )
        shape = shapes[addr]
        ushape = tuple(t.inverse_shape(shape)) if t is not None else shape
        size = math.prod(ushape)
        name = site_name(addr)
        if name in names:
            raise GuideError(
                f"{kind}: addresses {format_address(names[name])} and {format_address(addr)} both print as "
                f"{name!r}; rename one of them"
            )
        names[name] = addr
        sites.append(LatentSite(addr, name, shape, ushape, t, offset, size))
        offset += size
    if not sites:
        if summed:
            raise GuideError(
                f"{kind}: every latent choice of {model.name} is finite and discrete "
                f"({', '.join(map(format_address, summed))}); an automatic guide would be empty. Their exact "
                "posterior follows from ppl.infer.marginal_log_density and ppl.infer.infer_discrete"
            )
        raise GuideError(f"{kind}: {model.name} has no latent choices given these observations; nothing to infer")
    prototype = np.concatenate([np.reshape(np.asarray(u0[s.address]), (s.size,)) for s in sites])
    return LatentLayout(model.name, tuple(sites), tuple(observed), prototype)


def flat_transform(site: LatentSite) -> Transform | None:
    """One transform from the site's flat ``(size,)`` unconstrained vector to its value."""
    ts = site.transforms(flat=True)
    if not ts:
        return None
    return ts[0] if len(ts) == 1 else ComposeTransform(ts)


__all__ = ["LatentLayout", "LatentSite", "flat_transform", "latent_layout", "site_name"]
