"""Reparameterisation: change a model's geometry without rewriting it (``ppl.reparameterize``).

``ppl.reparameterize(model, config)`` returns a generative function whose
body is ``model``'s with some random choices rewritten as a draw of another
variable followed by a deterministic map (NumPyro's ``reparam`` handler with
``LocScaleReparam`` / ``TransformReparam``):

* :class:`LocScale` ``(centered=c)``, for a location-scale family
  ``x ~ F(loc, scale)`` (Normal, StudentT, Cauchy, Laplace, Logistic,
  Gumbel, ...)::

      z ~ F(c * loc, scale ** c)       at "<name>_decentered"
      x = loc + scale ** (1 - c) * (z - c * loc)     recorded at "<name>"

  ``c = 0`` is the fully non-centred form (``z ~ F(0, 1)``), ``c = 1``
  leaves the site as it was, values in between are partial centring
  (Papaspiliopoulos, Roberts and Skold 2007). The funnel's centred model
  samples like its non-centred form with one line::

      ncp = ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.0)})

* :class:`TransformToBase` for a transformed distribution
  ``x ~ TransformedDistribution(base, [t_1, ..., t_k])``::

      u ~ base     at "<name>_base"
      x = t_k(... t_1(u))     recorded at "<name>"

``x`` has the distribution it had: the rewritten model is the same model in
other coordinates, so expectations of ``x`` (a deterministic of every trace,
``result.samples``) are unchanged; only the latent space that inference
moves in changes. Wrappers (``.expand``, ``.to_event``) around the family are
kept around the new site.

``config`` maps addresses (full addresses below the model, e.g.
``("steps", "x")`` for a choice inside a ``ppl.scan`` at ``"steps"``, which
rewrites it at every time step) to reparameterisers, or is a function
``(address, distribution) -> reparameteriser | None`` applied to every
primitive choice (rewrite several at once: ``lambda a, d: ppl.LocScale(0.0)
if isinstance(d, dist.Normal) else None``). Observed choices cannot be
rewritten (the data are values of ``x``, not of the new variable): an
observation or constraint at a rewritten address raises
:class:`~ppl.errors.TransformError`.

Not to be confused with :func:`ppl.vi.reparam`, the *gradient estimator*
that differentiates a VI objective through a choice's sampling path; this
transformation changes the model's coordinates for any algorithm (NUTS,
VI, SMC) and leaves gradient estimation alone.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpyro.distributions as nd

from ppl.core import context
from ppl.core.address import format_address, normalize
from ppl.core.generative_function import GenerativeFunction
from ppl.core.trace import Trace
from ppl.errors import TransformError

_state = threading.local()


class Reparameterizer:
    """Base class: ``rewrite(address, d)`` makes the new choice and returns the value of the old one."""

    suffix = "reparam"

    def new_address(self, addr: tuple) -> tuple:
        last = addr[-1]
        if not isinstance(last, str):
            raise TransformError(
                f"{format_address(addr)}: a rewritten choice needs a string name (its new choice is "
                f"'<name>_{self.suffix}'), got {last!r}"
            )
        return (*addr[:-1], f"{last}_{self.suffix}")

    def rewrite(self, addr: tuple, d: Any) -> Any:
        raise NotImplementedError


def _unwrap(d: Any) -> tuple[Any, tuple, int]:
    """``(family, expand_shape, event_dim)``: ``d`` without its ``.expand``/``.to_event`` wrappers."""
    shape = tuple(d.batch_shape) + tuple(d.event_shape)
    event_dim = len(d.event_shape)
    while isinstance(d, (nd.Independent, nd.ExpandedDistribution)):
        d = d.base_dist
    return d, shape[: len(shape) - len(d.event_shape)], event_dim


def _wrap(d: Any, expand_shape: tuple, event_dim: int) -> Any:
    """``d`` expanded to ``expand_shape`` (its batch part) with ``event_dim`` event dimensions."""
    batch = expand_shape[: len(expand_shape) - len(d.event_shape)]
    if tuple(d.batch_shape) != tuple(batch):
        d = d.expand(batch)
    if event_dim > len(d.event_shape):
        d = d.to_event(event_dim - len(d.event_shape))
    return d


def _sample(addr: tuple, d: Any) -> Any:
    from ppl.core.gen import sample

    _state.exempt = True  # the new choice itself is never rewritten again
    try:
        return sample(addr, d)
    finally:
        _state.exempt = False


def _record(addr: tuple, value: Any) -> Any:
    from ppl.core.gen import deterministic

    return deterministic(addr, value)


@dataclasses.dataclass(frozen=True)
class LocScale(Reparameterizer):
    """Location-scale (de)centring: ``z ~ F(c loc, scale^c)``, ``x = loc + scale^(1-c) (z - c loc)``.

    ``centered``: ``c`` in ``[0, 1]``; ``0`` (the default) is the fully
    non-centred parameterisation. The new choice is ``"<name>_decentered"``.
    """

    centered: float = 0.0
    suffix = "decentered"

    def __post_init__(self) -> None:
        c = self.centered
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= float(c) <= 1.0:
            raise TransformError(f"LocScale: centered must be a number in [0, 1], got {c!r}")
        object.__setattr__(self, "centered", float(c))

    def rewrite(self, addr: tuple, d: Any) -> Any:
        family, expand_shape, event_dim = _unwrap(d)
        params = getattr(type(family), "arg_constraints", {})
        if not {"loc", "scale"} <= set(params):
            raise TransformError(
                f"{format_address(context.full_address(addr))}: LocScale needs a location-scale family (a "
                f"distribution with loc and scale parameters), got {type(family).__name__}"
            )
        c = self.centered
        loc, scale = family.loc, family.scale
        kwargs = {name: getattr(family, name) for name in params if name not in ("loc", "scale")}
        kwargs.update(loc=c * loc, scale=scale**c)
        try:
            decentred = type(family)(**kwargs)
        except TypeError as e:
            raise TransformError(
                f"{format_address(context.full_address(addr))}: LocScale cannot rebuild "
                f"{type(family).__name__} from its parameters ({e})"
            ) from None
        z = _sample(self.new_address(addr), _wrap(decentred, expand_shape, event_dim))
        return _record(addr, loc + scale ** (1.0 - c) * (z - c * loc))


@dataclasses.dataclass(frozen=True)
class TransformToBase(Reparameterizer):
    """A transformed distribution as its base: ``u ~ base``, ``x = t_k(...t_1(u))``; new choice ``"<name>_base"``."""

    suffix = "base"

    def rewrite(self, addr: tuple, d: Any) -> Any:
        family, expand_shape, event_dim = _unwrap(d)
        if not isinstance(family, nd.TransformedDistribution):
            raise TransformError(
                f"{format_address(context.full_address(addr))}: TransformToBase needs a transformed "
                f"distribution (numpyro's TransformedDistribution, e.g. LogNormal), got {type(family).__name__}"
            )
        base_event_dim = event_dim
        for t in reversed(family.transforms):
            base_event_dim += t.domain.event_dim - t.codomain.event_dim
        u = _sample(self.new_address(addr), _wrap(family.base_dist, expand_shape, base_event_dim))
        for t in family.transforms:
            u = t(u)
        return _record(addr, u)


# ------------------------------------------------------------- the rewrite stack
@dataclasses.dataclass(frozen=True)
class Rewrites:
    """The rules of one ``ppl.reparameterize`` in force below ``root`` (hashable: part of compile keys)."""

    root: tuple
    rules: tuple  # ((address, Reparameterizer), ...)
    chooser: Any = None  # (address, d) -> Reparameterizer | None

    def rule(self, full: tuple, d: Any) -> Reparameterizer | None:
        if full[: len(self.root)] != self.root:
            return None
        rel = full[len(self.root) :]
        for a, r in self.rules:
            if a == rel:
                return r
        if self.chooser is not None:
            r = self.chooser(rel, d)
            if r is not None and not isinstance(r, Reparameterizer):
                raise TransformError(
                    f"the reparameterize config returned {type(r).__name__} for {format_address(rel)}; "
                    "expected a ppl.LocScale, ppl.TransformToBase (a Reparameterizer) or None"
                )
            return r
        return None


def rule_for(addr: tuple, d: Any) -> Reparameterizer | None:
    """The reparameteriser for the primitive choice ``addr ~ d`` being made now, if any."""
    s = context.rewrites()
    if not s or getattr(_state, "exempt", False):
        return None
    full = context.full_address(addr)
    for r in reversed(s):
        found = r.rule(full, d)
        if found is not None:
            return found
    return None


def check_unobserved(addr: tuple, handler: Any, rule: Reparameterizer) -> None:
    """A rewritten choice must not be constrained (observed) in this run."""
    constraints = getattr(handler, "constraints", None)
    if constraints is None:
        return
    sub = constraints.get_submap(addr)
    if not sub.is_empty() or addr in set(constraints.addresses()):
        full = format_address(context.full_address(addr))
        raise TransformError(
            f"{full} is observed (or constrained) but reparameterize rewrites it as "
            f"{format_address(context.full_address(rule.new_address(addr)))}: observed choices cannot be "
            f"reparameterised (the data are values of {full}); leave it out of the config"
        )


# ------------------------------------------------------------- the generative function
class ReparamTrace(Trace):
    """Trace of a reparameterised model: the inner trace (new choices, old ones as deterministics)."""

    _static_fields = ("rewrites",)
    _dynamic_fields = ("inner_gf", "inner")

    def __init__(self, inner_gf: GenerativeFunction | None, inner: Trace, rewrites: Rewrites):
        self.inner_gf = inner_gf
        self.inner = inner
        self.rewrites = rewrites

    def _set_gen_fn(self, gen_fn: Any) -> None:
        self.__dict__["inner_gf"] = None if gen_fn is None else gen_fn.gen_fn

    @property
    def gen_fn(self) -> Reparameterized | None:  # type: ignore[override]
        if self.inner_gf is None:
            return None
        return Reparameterized._build(self.inner_gf, self.rewrites)

    score = property(lambda self: self.inner.score)  # type: ignore[assignment]
    args = property(lambda self: self.inner.args)  # type: ignore[assignment]
    retval = property(lambda self: self.inner.retval)  # type: ignore[assignment]
    choices = property(lambda self: self.inner.choices)
    observations = property(lambda self: self.inner.observations)
    deterministics = property(lambda self: self.inner.deterministics)

    def project(self, selection: Any) -> Any:
        return self.inner.project(selection)


class Reparameterized(GenerativeFunction):
    """``gen_fn`` with some choices rewritten in new coordinates (see the module docstring)."""

    _fields = ("gen_fn", "rewrites", "name")

    def __init__(self, gen_fn: GenerativeFunction, rewrites: Rewrites):
        self.gen_fn = gen_fn
        self.rewrites = rewrites
        self.name = f"reparameterize({gen_fn.name})"

    @classmethod
    def _build(cls, gen_fn: GenerativeFunction, rewrites: Rewrites) -> Reparameterized:
        obj = object.__new__(cls)
        obj.__dict__.update(gen_fn=gen_fn, rewrites=rewrites, name=f"reparameterize({gen_fn.name})")
        return obj

    @contextmanager
    def _rules(self) -> Iterator[None]:
        root = context.current_path()
        r = self.rewrites if root == self.rewrites.root else dataclasses.replace(self.rewrites, root=root)
        with context.rewriting(r):
            yield

    def _wrap(self, tr: Trace) -> ReparamTrace:
        return ReparamTrace(self.gen_fn, tr, self.rewrites)

    def _simulate(self, key: Any, args: tuple) -> ReparamTrace:
        with self._rules():
            return self._wrap(self.gen_fn.simulate(key, args))

    def _assess(self, choices: Any, args: tuple) -> tuple[Any, Any]:
        with self._rules():
            return self.gen_fn.assess(choices, args)

    def _generate(self, key: Any, constraints: Any, args: tuple) -> tuple[ReparamTrace, Any]:
        with self._rules():
            tr, w = self.gen_fn.generate(key, constraints, args)
        return self._wrap(tr), w

    def _update(self, key: Any, trace: ReparamTrace, constraints: Any, args: tuple):
        with self._rules():
            tr, w, discard = self.gen_fn.update(key, trace.inner, constraints, args)
        return self._wrap(tr), w, discard

    def _regenerate(self, key: Any, trace: ReparamTrace, selection: Any, args: tuple):
        with self._rules():
            tr, w = self.gen_fn.regenerate(key, trace.inner, selection, args)
        return self._wrap(tr), w

    def _check_trace(self, trace: Any, method: str) -> None:
        if not isinstance(trace, ReparamTrace):
            raise TransformError(f"{self.name}.{method} expects a trace of {self.name}, got {type(trace).__name__}")
        super()._check_trace(trace, method)


def reparameterize(
    gen_fn: GenerativeFunction,
    config: dict | Callable[[tuple, Any], Reparameterizer | None],
) -> Reparameterized:
    """``gen_fn`` with the choices named in ``config`` rewritten in new coordinates.

    ``config``: ``{address: reparameteriser}`` (``ppl.LocScale(centered)``,
    ``ppl.TransformToBase()``), or a function ``(address, distribution) ->
    reparameteriser | None`` called at every primitive choice. See
    :mod:`ppl.core.reparameterize`.
    """
    if not isinstance(gen_fn, GenerativeFunction):
        raise TransformError(
            f"ppl.reparameterize needs a generative function (a @ppl.gen function), got {type(gen_fn).__name__}"
        )
    if callable(config) and not isinstance(config, dict):
        return Reparameterized(gen_fn, Rewrites((), (), config))
    if not isinstance(config, dict) or not config:
        raise TransformError(
            "ppl.reparameterize: config must be a non-empty dict {address: ppl.LocScale(...) | "
            "ppl.TransformToBase()} or a function (address, distribution) -> reparameteriser | None; "
            f"got {config!r}"
        )
    rules = []
    for a, r in config.items():
        if not isinstance(r, Reparameterizer):
            raise TransformError(
                f"ppl.reparameterize: the config gives {type(r).__name__} for {a!r}; expected a "
                "ppl.LocScale(...) or ppl.TransformToBase()"
            )
        rules.append((normalize(a), r))
    return Reparameterized(gen_fn, Rewrites((), tuple(rules)))


__all__ = [
    "LocScale",
    "ReparamTrace",
    "Reparameterized",
    "Reparameterizer",
    "TransformToBase",
    "reparameterize",
]
