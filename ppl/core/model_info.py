"""``ppl.inspect(model, args, observations)``: what a model is made of, without running inference.

One shape-only run of ``model.generate`` (``jax.eval_shape``: nothing is
computed) records every primitive choice: its address, distribution, shape
(with the axes of every enclosing ``ppl.vmap``/``ppl.scan`` in front),
support, whether it is observed, and the deterministic sites. A second
shape-only trace finds the dependencies: which latent choices each
distribution's parameters are computed from (data flow through the model's
jaxpr; inside a nested ``jax`` primitive such as a scan every output is taken
to depend on every input, so edges there can be more than the true ones).

The result prints as a tree, renders as an HTML table in Jupyter and, when
the ``graphviz`` package is installed, as a graph (``info.to_graphviz()``):
observed choices shaded, the choices of one ``ppl.vmap``/``ppl.scan`` in one
box labelled with its size, edges for the dependencies.
"""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.errors import ArgumentError


class SiteInfo(NamedTuple):
    """One random choice of the model."""

    address: tuple
    distribution: str
    shape: tuple  # with the enclosing vmap/scan axes in front
    batch: tuple  # sizes of the enclosing vmap/scan boundaries, outermost first
    support: str
    observed: bool
    parents: tuple  # latent addresses the distribution's parameters depend on


class _Recorder:
    channels: tuple = ()

    def __init__(self) -> None:
        self.sites: list = []

    def process(self, site: Any) -> None:
        self.sites.append((site.address, site.dist, site.kind, tuple(size for _, size in context.elements())))


def _dist_name(d: Any) -> str:
    """``Normal``, ``Normal.to_event(1)``: the family under ``.expand``, with its event wrapper."""
    import numpyro.distributions as nd

    events = 0
    while isinstance(d, (nd.Independent, nd.ExpandedDistribution)):
        if isinstance(d, nd.Independent):
            events += d.reinterpreted_batch_ndims
        d = d.base_dist
    return type(d).__name__ + (f".to_event({events})" if events else "")


def _support_name(d: Any) -> str:
    s = getattr(d, "support", None)
    return type(s).__name__.lstrip("_").replace("Constraint", "") if s is not None else "?"


def _run(model: GenerativeFunction, args: tuple, cm: ChoiceMap) -> tuple[_Recorder, Any]:
    rec = _Recorder()
    with context.no_interceptors(), context.intercept(rec), context.eager():
        tr, _ = model.generate(jax.random.key(0), cm, args)
    return rec, tr


def _site_score(tr: Any, rest: tuple) -> Any:
    """The score of the choice at ``rest`` below ``tr`` (per element inside vmap/scan)."""
    from ppl.core.scan import ScanTrace
    from ppl.core.trace import ChoiceTrace, GenTrace
    from ppl.core.vmap import VmapTrace

    if isinstance(tr, (VmapTrace, ScanTrace)):
        return _site_score(tr.inner, rest)
    if isinstance(tr, ChoiceTrace) and not rest:
        return tr.score
    if isinstance(tr, GenTrace) and rest and rest[:1] in tr.subtrace_map():
        return _site_score(tr.subtrace_map()[rest[:1]], rest[1:])
    from ppl.core.selection import Selection

    return tr.project(Selection(frozenset({rest})))


def _dependencies(model: GenerativeFunction, args: tuple, obs: ChoiceMap, latent: dict, sites: list) -> list[set]:
    """Per site, the latent addresses its log density depends on (data flow through the jaxpr)."""
    addresses = list(latent)

    def scores(values: list) -> list:
        cm = ChoiceMap(dict(zip(addresses, values)), _trusted=True)
        _, tr = _run(model, args, cm | obs)
        return [jnp.asarray(_site_score(tr, a)) for a in sites]

    closed = jax.make_jaxpr(scores)([jnp.zeros(s.shape, s.dtype) for s in latent.values()])
    jaxpr = closed.jaxpr
    deps: dict = {v: {addresses[i]} for i, v in enumerate(jaxpr.invars)}

    def of(v: Any) -> set:
        return set() if isinstance(v, jax.extend.core.Literal) else deps.get(v, set())

    for eqn in jaxpr.eqns:  # a nested primitive (scan, cond, ...): every output from every input
        found = set().union(*(of(v) for v in eqn.invars)) if eqn.invars else set()
        for v in eqn.outvars:
            deps[v] = found
    return [of(v) for v in jaxpr.outvars]


class ModelInfo:
    """The choices of a model (:func:`inspect`): ``sites``, ``deterministics``; a tree when printed."""

    def __init__(self, name: str, sites: list[SiteInfo], deterministics: list[tuple]):
        self.name = name
        self.sites = sites
        self.deterministics = deterministics

    @property
    def latent(self) -> list[SiteInfo]:
        return [s for s in self.sites if not s.observed]

    @property
    def observed(self) -> list[SiteInfo]:
        return [s for s in self.sites if s.observed]

    def __str__(self) -> str:
        rows = [
            (
                format_address(s.address),
                s.distribution,
                str(s.shape),
                s.support,
                "observed" if s.observed else "latent",
                "x".join(map(str, s.batch)) if s.batch else "",
                ", ".join(format_address(p) for p in s.parents),
            )
            for s in self.sites
        ]
        rows += [(format_address(a), "deterministic", "", "", "", "", "") for a in self.deterministics]
        head = ("address", "distribution", "shape", "support", "kind", "batched", "depends on")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [f"{self.name}: {len(self.latent)} latent, {len(self.observed)} observed choices", fmt.format(*head)]
        lines += [fmt.format(*r).rstrip() for r in rows]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    format_address(s.address),
                    s.distribution,
                    s.shape,
                    s.support,
                    "observed" if s.observed else "latent",
                    "x".join(map(str, s.batch)),
                    ", ".join(format_address(p) for p in s.parents),
                )
            )
            + "</tr>"
            for s in self.sites
        )
        head = "".join(
            f"<th>{h}</th>" for h in ("address", "distribution", "shape", "support", "kind", "batched", "depends on")
        )
        return f"<p><b>{html.escape(self.name)}</b></p><table><tr>{head}</tr>{cells}</table>"

    def to_graphviz(self) -> Any:
        """A ``graphviz.Digraph`` (needs the ``graphviz`` package): plates for vmap/scan, shaded observations."""
        try:
            import graphviz
        except ImportError as e:
            raise ImportError("to_graphviz() needs the graphviz package: pip install graphviz") from e
        g = graphviz.Digraph(self.name)
        plates: dict = {}
        for s in self.sites:
            key = (s.address[:-1], s.batch) if s.batch else None
            plates.setdefault(key, []).append(s)
        for key, members in plates.items():
            target = g if key is None else graphviz.Digraph(name=f"cluster_{format_address(key[0])}")
            if key is not None:
                target.attr(label=f"{format_address(key[0])} x {'x'.join(map(str, key[1]))}")
            for s in members:
                style = {"style": "filled", "fillcolor": "lightgrey"} if s.observed else {}
                target.node(format_address(s.address), f"{format_address(s.address)}\n{s.distribution}", **style)
            if key is not None:
                g.subgraph(target)
        for s in self.sites:
            for p in s.parents:
                g.edge(format_address(p), format_address(s.address))
        return g


def inspect(model: GenerativeFunction, args: tuple = (), observations: Any = None) -> ModelInfo:
    """The model's choices, distributions, shapes, supports, observations and dependencies (see the module docstring)."""
    if not isinstance(model, GenerativeFunction):
        raise ArgumentError(f"ppl.inspect needs a generative function, got {type(model).__name__}")
    obs = as_choicemap(observations)
    args = tuple(args)
    records: list = []

    def probe() -> Any:
        rec, tr = _run(model, args, obs)
        records.append(rec)
        return tr.choices, tr.deterministics

    choices, dets = jax.eval_shape(probe)
    rec = records[0]
    observed = set(obs.addresses())
    latent = {a: s for a, s in choices.flat_dict().items() if a not in observed}
    addrs = [a for a, *_ in rec.sites]
    try:
        parents = _dependencies(model, args, obs, latent, addrs) if latent else [set() for _ in addrs]
    except Exception:  # dependencies are a convenience: never fail the inspection for them
        parents = [set() for _ in addrs]
    full_shapes = choices.flat_dict()
    sites = []
    for (addr, d, _kind, batch), deps in zip(rec.sites, parents):
        shape = tuple(full_shapes[addr].shape) if addr in full_shapes else (*batch, *d.batch_shape, *d.event_shape)
        sites.append(
            SiteInfo(
                addr,
                _dist_name(d),
                shape,
                batch,
                _support_name(d),
                addr in observed,
                tuple(sorted(deps - {addr}, key=str)),
            )
        )
    return ModelInfo(model.name, sites, list(dets.addresses()))


__all__ = ["ModelInfo", "SiteInfo", "inspect"]
