"""The handler stack: how every random choice is processed.

Each primitive random choice becomes a :class:`Site` that travels through an
ordered stack of *site handlers* (NumPyro's ``apply_stack`` is the model):

1. ``process(site)`` runs from the innermost handler (the last installed) to
   the outermost; a handler may *provide* the value (a batched particle
   draw, an unconstrained-space substitution, a shape-only placeholder) by
   setting ``site.value``, or stop the walk with ``site.stop = True``;
2. if no handler provided a value, the default runs: a fresh draw
   ``d.sample(key)`` for a ``"sample"`` site, the checked given value for a
   ``"given"`` site (a constraint, or a value being scored);
3. ``postprocess(site)`` runs from the outermost processed handler to the
   innermost: a handler may *transform or score* the value that was provided
   (the gradient estimators of ``ppl.vi`` put ``stop_gradient`` on a
   REINFORCE choice and report its score here, or substitute an enumerated
   alternative).

So a handler that provides a value never hides the site from a handler that
scores or records it: batched particle sampling inside an importance sampler
inside ``ppl.vi.expectation`` is a provider below an estimator, and both
apply. New inference features are new handlers.

Handlers are installed with :func:`ppl.core.context.intercept` for the
dynamic extent of a block; they are part of the compile-cache key, so they
must be hashable (equal handlers give equal programs). A handler may declare
additive effect ``channels`` it reports to with
:func:`ppl.core.context.emit`; every ppl boundary (vmap, scan, switch, a
compiled GFI call) forwards them.

Site fields: ``address`` (the full address), ``dist`` (the distribution, with
estimator tags removed: ``untagged``), ``tagged`` (the distribution as
written, tags included), ``key``, ``kind`` (``"sample"`` or ``"given"``),
``given`` (the raw given value), ``value`` (the value the program sees),
``stored`` (the value recorded in the trace, e.g. an unconstrained one),
``extra`` (a log weight added to the site's weight, e.g. a log-Jacobian),
``in_support`` (the value is in the support by construction: skip the check),
``meta`` (a dict where handlers leave notes for each other, e.g. which of two
nested gradient estimators owns the site).
"""

from __future__ import annotations

from typing import Any

from ppl.core import context


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def untagged(d: Any) -> Any:
    """The distribution that samples and scores for ``d`` (estimator tags removed)."""
    while True:
        base = getattr(type(d), "ppl_untagged", None)
        if base is None:
            return d
        d = base.fget(d) if isinstance(base, property) else base(d)


class Site:
    """One primitive random choice on its way through the handler stack."""

    __slots__ = (
        "address",
        "dist",
        "extra",
        "given",
        "in_support",
        "key",
        "kind",
        "meta",
        "stop",
        "stored",
        "tagged",
        "value",
    )

    def __init__(self, address: tuple, d: Any, kind: str, key: Any = None, given: Any = UNSET):
        self.address = address
        self.tagged = d
        self.dist = untagged(d)
        self.kind = kind
        self.key = key
        self.given = given
        self.value = UNSET
        self.stored = UNSET
        self.extra = None
        self.in_support = False
        self.stop = False
        self.meta: dict = {}

    def provide(self, value: Any, stored: Any = UNSET, extra: Any = None, in_support: bool = False) -> None:
        """Set the value the program sees (and what the trace stores, if different)."""
        self.value = value
        self.stored = value if stored is UNSET else stored
        self.extra = extra
        self.in_support = in_support

    @property
    def provided(self) -> bool:
        return self.value is not UNSET


def _legacy(h: Any, site: Site) -> None:
    """Handlers written with the older ``sample``/``given`` hooks are providers."""
    if site.kind == "sample":
        hook = getattr(h, "sample", None)
        out = None if hook is None else hook(site.address, site.tagged, site.key)
        if out is not None:
            site.provide(out[0], out[1])
    else:
        hook = getattr(h, "given", None)
        out = None if hook is None else hook(site.address, site.tagged, site.given)
        if out is not None:
            site.provide(out[0], out[1], out[2], bool(out[3]) if len(out) > 3 else False)


def apply_stack(site: Site, default: Any) -> Site:
    """Run ``site`` through the installed handlers (see the module docstring)."""
    processed = []
    for h in reversed(context.interceptors()):
        process = getattr(h, "process", None)
        if process is not None:
            process(site)
        elif not site.provided:
            _legacy(h, site)
        processed.append(h)
        if site.stop:
            break
    if not site.provided:
        default(site)
    for h in reversed(processed):
        post = getattr(h, "postprocess", None)
        if post is not None:
            post(site)
    return site


__all__ = ["UNSET", "Site", "apply_stack", "untagged"]
