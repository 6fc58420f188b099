r"""What neural posterior estimation learns over: parameters and observations as two flat vectors.

NPE fits ``q(theta | x)`` to simulations ``(theta, x)`` of a model. The
*parameters* ``theta`` are some of the model's random choices (named by
address; a namespace names every choice under it); the *observations* ``x``
are other choices, or values the model records with ``ppl.deterministic``
(the output of a simulator computed from its own internal randomness).
Choices that are neither are nuisance variables: simulation draws them and
NPE marginalises over them.

Each parameter ``a`` with support ``S_a`` is mapped to unconstrained space by
``T_a = biject_to(S_a)`` (numpyro), flattened and concatenated in the order
the addresses were given:

.. math::

    u = (T_1^{-1}(\theta_1), \dots, T_k^{-1}(\theta_k)) \in \mathbb{R}^D, \qquad
    \log q(\theta \mid x) = \log q_U(u \mid x) - \sum_a \log\left|\det J_{T_a}(u_a)\right|,

so a flow over ``u`` is a density over the constrained ``theta``. The
observations are flattened the same way (without a transform) into
``x in R^{D_x}``. :class:`SimulationLayout` records addresses, shapes,
offsets and transforms; it is a pytree (its transforms are the children,
everything else is static), so it travels through ``jit`` and compares by
value.

Supports are read by running the model once under a site recorder
(``jax.eval_shape``: traced, not compiled). A support built from the
model's arguments or other choices holds traced values; those are read
again on concrete values (``ppl.eager``) at two simulations, and a support
that moves with other random choices (``Uniform(0, a)`` with ``a`` random)
is an :class:`~ppl.errors.AmortizedError`: one transform per address must
fit every simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import IdentityTransform, Transform, biject_to

from ppl.core import context
from ppl.core.address import Address, format_address, is_prefix, normalize
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import describe, is_discrete, is_real_support
from ppl.errors import AmortizedError


@dataclass(frozen=True)
class ParameterSite:
    """One parameter: ``shape`` of its value, ``unconstrained_shape`` of ``T^{-1}(value)``, its slice of ``u``."""

    address: Address
    name: str
    shape: tuple
    unconstrained_shape: tuple
    offset: int
    size: int
    transform: Transform | None  # None: the support is all of R^k

    def constrain(self, u: Any) -> tuple[Any, Any]:
        """``(T(u_a), log|det J_T(u_a)|)`` from this site's flat slice ``u_a`` (one draw)."""
        ua = jnp.reshape(u, self.unconstrained_shape)
        if self.transform is None:
            return ua, jnp.zeros(())
        x = self.transform(ua)
        return x, jnp.sum(self.transform.log_abs_det_jacobian(ua, x))

    def unconstrain(self, x: Any) -> Any:
        """``T^{-1}(x)`` flattened to ``(size,)`` (one draw)."""
        x = jnp.asarray(x, jnp.float32)
        u = x if self.transform is None else self.transform.inv(x)
        return jnp.reshape(u, (self.size,))


@dataclass(frozen=True)
class ObservedSite:
    """One observed value (a choice, or a ``ppl.deterministic`` value): its shape and slice of ``x``."""

    address: Address
    name: str
    shape: tuple
    offset: int
    size: int
    deterministic: bool


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class SimulationLayout:
    """Parameters and observations of one model, as NPE flattens them (see the module docstring)."""

    model_name: str
    parameters: tuple[ParameterSite, ...]
    observed: tuple[ObservedSite, ...]

    # ------------------------------------------------------------- pytree
    def tree_flatten(self):
        static = tuple(replace(s, transform=None) for s in self.parameters)
        return tuple(s.transform for s in self.parameters), (self.model_name, static, self.observed)

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Any) -> SimulationLayout:
        name, static, observed = aux
        sites = tuple(replace(s, transform=t) for s, t in zip(static, children))
        return cls(name, sites, observed)

    # ---------------------------------------------------------- summaries
    @property
    def theta_dim(self) -> int:
        """``D``: length of the flat unconstrained parameter vector."""
        return sum(s.size for s in self.parameters)

    @property
    def x_dim(self) -> int:
        """``D_x``: length of the flat observation vector."""
        return sum(s.size for s in self.observed)

    @property
    def parameter_addresses(self) -> list[Address]:
        return [s.address for s in self.parameters]

    @property
    def observed_addresses(self) -> list[Address]:
        return [s.address for s in self.observed]

    def describe(self) -> str:
        ps = ", ".join(f"{format_address(s.address)} {s.shape}" for s in self.parameters)
        xs = ", ".join(f"{format_address(s.address)} {s.shape}" for s in self.observed)
        return f"parameters {ps} (D = {self.theta_dim}); observed {xs} (D_x = {self.x_dim})"

    # -------------------------------------------------------- parameters
    def unconstrain(self, values: Any) -> Any:
        """Constrained parameter values (one draw; a list in the order of ``parameters``) -> flat ``u`` [D].

        (Lists, not dicts keyed by address, cross ``jit``/``vmap``: JAX sorts dict keys, and addresses mixing
        ints and strings do not sort.)
        """
        return jnp.concatenate([s.unconstrain(v) for s, v in zip(self.parameters, values, strict=True)])

    def constrain(self, u: Any) -> tuple[list, Any]:
        """Flat ``u`` (one draw) -> ``([T_a(u_a) for each parameter], sum_a log|det J_{T_a}(u_a)|)``."""
        out, log_det = [], jnp.zeros(())
        for s in self.parameters:
            x, ld = s.constrain(u[s.offset : s.offset + s.size])
            out.append(x)
            log_det = log_det + ld
        return out, log_det

    # ------------------------------------------------------ observations
    def flatten_x(self, values: Any) -> Any:
        """Observed values (one simulation; a list in the order of ``observed``) -> flat ``x`` [D_x]."""
        parts = [
            jnp.reshape(jnp.asarray(v, jnp.float32), (s.size,)) for s, v in zip(self.observed, values, strict=True)
        ]
        return jnp.concatenate(parts)

    def structure_x(self, x: Any) -> Any:
        """Flat ``x`` -> what a summary network reads: the value itself for one observed address, else
        ``{name: value}`` (names: address components joined by ``/``)."""
        parts = {s.name: jnp.reshape(x[s.offset : s.offset + s.size], s.shape) for s in self.observed}
        return next(iter(parts.values())) if len(parts) == 1 else parts

    def observation(self, x_obs: Any, where: str) -> Any:
        """Check a user's observation and flatten it: a ChoiceMap / dict at the observed addresses, or (one
        observed address) its value alone."""
        if isinstance(x_obs, Mapping):
            cm = ChoiceMap.from_dict(x_obs)
            missing = [format_address(s.address) for s in self.observed if s.address not in cm]
            if missing:
                raise AmortizedError(
                    f"{where}: the observation has no value at {', '.join(missing)}; NPE was trained on the "
                    f"observed addresses {', '.join(format_address(a) for a in self.observed_addresses)} "
                    f"(it has {', '.join(format_address(a) for a in cm.addresses()) or 'none'})"
                )
            values = [cm[s.address] for s in self.observed]
        elif len(self.observed) == 1:
            values = [x_obs]
        else:
            raise AmortizedError(
                f"{where}: give the observation as a ChoiceMap or dict at the observed addresses "
                f"{', '.join(format_address(a) for a in self.observed_addresses)}; got {type(x_obs).__name__}"
            )
        for s, v in zip(self.observed, values):
            shape = tuple(jnp.shape(v))
            if shape != s.shape:
                raise AmortizedError(
                    f"{where}: the observation at {format_address(s.address)} has shape {shape}, but the model's "
                    f"{format_address(s.address)} has shape {s.shape} (the shape NPE was trained on)"
                )
        if any(isinstance(v, jax.core.Tracer) for v in values):
            return self.flatten_x(values)
        # concrete values: flatten on the host (no compiled op per shape), one transfer
        return jnp.asarray(np.concatenate([np.reshape(np.asarray(v, np.float32), (-1,)) for v in values]))


# ------------------------------------------------------------ discovery


def site_name(addr: Address) -> str:
    return "/".join(str(c) for c in addr)


def address_key(addr: Address) -> Any:
    """How results key an address: ``"mu"`` for a one-component address, the tuple otherwise."""
    return addr[0] if len(addr) == 1 else addr


class _SupportRecorder:
    """Site handler that records the distribution of every fresh draw (it provides nothing)."""

    channels: tuple = ()

    def __init__(self) -> None:
        self.sites: dict[Address, Any] = {}

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return other is self

    def process(self, site: Any) -> None:
        if site.kind == "sample" and site.address not in self.sites:
            self.sites[site.address] = site.dist


def _expand(addrs: Any, available: list[Address], arg: str, model: GenerativeFunction, kinds: str) -> list[Address]:
    """The addresses in ``available`` at or under each of ``addrs`` (a namespace names all its choices)."""
    if addrs is None:
        raise AmortizedError(f"npe: {arg} must name addresses of {model.name} (e.g. {arg}=['theta']), got None")
    addrs = [addrs] if isinstance(addrs, (str, int, tuple)) else list(addrs)
    if not addrs:
        raise AmortizedError(f"npe: {arg} is empty; name at least one address of {model.name}")
    out: list[Address] = []
    for raw in addrs:
        try:
            a = normalize(raw)
        except Exception as e:
            raise AmortizedError(f"npe: {arg} holds {raw!r}, which is not an address ({e})") from None
        hits = [k for k in available if is_prefix(a, k)]
        if not hits:
            raise AmortizedError(
                f"npe: {arg} names {format_address(a)}, which {model.name} does not make; its {kinds}: "
                f"{', '.join(format_address(k) for k in available) or 'none'}"
            )
        out += [k for k in hits if k not in out]
    return out


def _transform(addr: Address, d: Any, model_name: str) -> Transform | None:
    if is_discrete(d):
        raise AmortizedError(
            f"npe: the parameter {format_address(addr)} of {model_name} is discrete ({describe(d)}); NPE's flows are "
            "densities on real space: make it an observed or a nuisance choice (not a parameter)"
        )
    if is_real_support(d.support):
        return None
    t = biject_to(d.support)
    return None if isinstance(t, IdentityTransform) else t


def _traced(t: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(t))


def _same(a: Any, b: Any) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        return False
    return all(np.shape(x) == np.shape(y) and np.allclose(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _record(model: GenerativeFunction, args: tuple, key: Any, eager: bool) -> tuple[dict, Any]:
    rec = _SupportRecorder()
    with context.intercept(rec):
        if eager:
            with context.eager():
                tr = model.simulate(key, args)
        else:
            tr = jax.eval_shape(lambda k: model.simulate(k, args), key)
    return rec.sites, tr


def simulation_layout(
    model: GenerativeFunction, args: tuple, parameters: Any, observed: Any, key: Any
) -> SimulationLayout:
    """Find the parameters' shapes and transforms and the observations' shapes (see the module docstring)."""
    if not isinstance(model, GenerativeFunction):
        raise AmortizedError(
            f"npe: model must be a generative function (a @ppl.gen function), got {type(model).__name__}"
        )
    if not isinstance(args, tuple):
        raise AmortizedError(
            f"npe: args must be a tuple of the model's arguments, got {type(args).__name__}; for one argument write (x,)"
        )
    k1, k2 = jax.random.split(key)
    dists, tr = _record(model, args, k1, eager=False)
    choice_addrs = list(tr.choices.addresses())
    det_addrs = list(tr.deterministics.addresses())
    params = _expand(parameters, choice_addrs, "parameters", model, "random choices")
    obs = _expand(observed, choice_addrs + det_addrs, "observed", model, "choices and deterministic values")
    clash = [format_address(a) for a in params if a in obs]
    if clash:
        raise AmortizedError(f"npe: {', '.join(clash)} named both as parameters and as observed")

    transforms = {a: _transform(a, dists[a], model.name) for a in params}
    if any(_traced(t) for t in transforms.values()):
        # supports computed from the arguments or from other choices: read them on concrete values, twice
        d1, _ = _record(model, args, k1, eager=True)
        d2, _ = _record(model, args, k2, eager=True)
        for a in params:
            t1, t2 = _transform(a, d1[a], model.name), _transform(a, d2[a], model.name)
            if _traced(t1) or not _same(t1, t2):
                raise AmortizedError(
                    f"npe: the support of the parameter {format_address(a)} in {model.name} changes from one "
                    f"simulation to another ({d1[a].support} in one, {d2[a].support} in another, or it depends on "
                    "values inside ppl.vmap/ppl.scan); NPE maps each parameter to unconstrained space with one fixed "
                    "transform. Reparameterise (e.g. draw a Uniform(0, 1) and scale it by the other choice)"
                )
            transforms[a] = t1

    sites, offset = [], 0
    for a in params:
        shape = tuple(tr.choices[a].shape)
        t = transforms[a]
        ushape = tuple(t.inverse_shape(shape)) if t is not None else shape
        size = math.prod(ushape)
        sites.append(ParameterSite(a, site_name(a), shape, ushape, offset, size, t))
        offset += size
    observed_sites, offset = [], 0
    for a in obs:
        is_det = a not in tr.choices
        value = tr.deterministics[a] if is_det else tr.choices[a]
        shape = tuple(value.shape)
        observed_sites.append(ObservedSite(a, site_name(a), shape, offset, math.prod(shape), is_det))
        offset += math.prod(shape)
    return SimulationLayout(model.name, tuple(sites), tuple(observed_sites))


__all__ = ["ObservedSite", "ParameterSite", "SimulationLayout", "address_key", "simulation_layout"]
