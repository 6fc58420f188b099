"""Random small models for property tests, with an independent reference density.

A model is described by a list of site specs. ``build(spec)`` makes the ppl
model; ``reference_logps(spec, choices, a)`` recomputes the log density of
every choice directly with numpyro's ``log_prob``, without any ppl machinery,
so the two can be compared.

Each site's parameters depend on the running "parent" value (the last
scalar continuous choice, initially the model's argument ``a``), so updates
propagate through the model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
from hypothesis import strategies as st

import ppl
from ppl import dist

KINDS = ["normal", "halfnormal", "bern", "cat", "poisson", "vecnormal", "dirichlet", "call", "vmap", "scan", "cond"]


def site_dist(kind: str, parent):
    if kind == "normal":
        return nd.Normal(parent, 1.0)
    if kind == "halfnormal":
        return nd.HalfNormal(1.0 + 0.1 * jnp.abs(parent))
    if kind == "bern":
        return nd.Bernoulli(probs=jax.nn.sigmoid(parent))
    if kind == "cat":
        return nd.Categorical(logits=jnp.stack([parent, jnp.zeros_like(parent), -parent]))
    if kind == "poisson":
        return nd.Poisson(jnp.exp(jnp.clip(parent, -2.0, 2.0)))
    if kind == "vecnormal":
        return nd.Normal(parent + jnp.zeros(3), 1.0).to_event(1)
    if kind == "dirichlet":
        return nd.Dirichlet(jnp.ones(3) * (1.0 + 0.1 * jnp.abs(parent)))
    raise ValueError(kind)


# --- building blocks for the structured kinds ---------------------------------


@ppl.gen
def sub(p):
    z = dist.Normal(p, 1.0) @ "z"
    dist.Bernoulli(0.3) @ "w"
    return z


@ppl.gen
def elem(x):
    return dist.Normal(x, 1.0) @ "z"


@ppl.gen
def kernel(c, _):
    x = dist.Normal(0.5 * c, 1.0) @ "x"
    dist.Normal(x, 0.5) @ "y"
    return x, x


@ppl.gen
def branch_a(p):
    return dist.Normal(0.0, 1.0) @ "x"


@ppl.gen
def branch_b(p):
    x = dist.Normal(p, 2.0) @ "x"
    dist.HalfNormal(1.0) @ "e"
    return x


def build(spec: list[str]):
    @ppl.gen
    def model(a):
        parent = a
        for i, kind in enumerate(spec):
            name = f"s{i}"
            if kind == "call":
                parent = sub(parent) @ name
            elif kind == "vmap":
                zs = ppl.vmap(elem)(parent + jnp.arange(3.0)) @ name
                parent = zs[0]
            elif kind == "scan":
                final, _ = ppl.scan(kernel, length=3)(parent, None) @ name
                parent = final
            elif kind == "cond":
                p = dist.Bernoulli(0.5) @ (name, "pred")
                parent = ppl.cond(p, branch_b, branch_a)(parent) @ (name, "br")
            else:
                v = site_dist(kind, parent) @ name
                if kind in ("normal", "halfnormal"):
                    parent = v
        return parent

    model.name = "random_model"
    return model


def reference_logps(spec: list[str], cm: ppl.ChoiceMap, a) -> dict:
    """Per-address log density of every *present* choice, recomputed directly."""
    out = {}
    parent = jnp.asarray(a, jnp.float32)
    for i, kind in enumerate(spec):
        name = f"s{i}"
        if kind == "call":
            z, w = cm[name, "z"], cm[name, "w"]
            out[(name, "z")] = nd.Normal(parent, 1.0).log_prob(z)
            out[(name, "w")] = nd.Bernoulli(0.3).log_prob(w)
            parent = z
        elif kind == "vmap":
            zs = cm[name, "z"]
            out[(name, "z")] = jnp.sum(nd.Normal(parent + jnp.arange(3.0), 1.0).log_prob(zs))
            parent = zs[0]
        elif kind == "scan":
            xs, ys = cm[name, "x"], cm[name, "y"]
            c, lx = parent, 0.0
            for t in range(3):
                lx = lx + nd.Normal(0.5 * c, 1.0).log_prob(xs[t])
                c = xs[t]
            out[(name, "x")] = lx
            out[(name, "y")] = jnp.sum(nd.Normal(xs, 0.5).log_prob(ys))
            parent = c
        elif kind == "cond":
            p = cm[name, "pred"]
            out[(name, "pred")] = nd.Bernoulli(0.5).log_prob(p)
            x = cm[name, "br", "x"]
            if int(p) == 1:
                out[(name, "br", "x")] = nd.Normal(parent, 2.0).log_prob(x)
                out[(name, "br", "e")] = nd.HalfNormal(1.0).log_prob(cm[name, "br", "e"])
            else:
                out[(name, "br", "x")] = nd.Normal(0.0, 1.0).log_prob(x)
            parent = x
        else:
            v = cm[name]
            out[(name,)] = jnp.sum(site_dist(kind, parent).log_prob(v))
            if kind in ("normal", "halfnormal"):
                parent = v
    return {k: float(v) for k, v in out.items()}


def present(cm: ppl.ChoiceMap) -> dict:
    """address -> value of the choices that are present (mask true or no mask)."""
    out = {}
    for a, v, m in cm.masked_items():
        if m is None or bool(m):
            out[a] = v
    return out


specs = st.lists(st.sampled_from(KINDS), min_size=1, max_size=5)


# --- the GFI conformance suite (tests/core/test_gfi_conformance.py) -------------
#
# A finer reference than ``reference_logps``: per address, the *elementwise*
# log density (event dimensions summed; one entry per element of a vmap/scan
# address), whether each element is present (a branch-only address of an
# untaken branch is not), and whether the entry is a random choice or a
# ``ppl.factor`` term. Weights of every GFI method are recomputed from these.


class Entry(NamedTuple):
    logp: Any  # elementwise log density, shape = the element shape of the address
    present: Any  # bool, same shape
    kind: str = "choice"  # "choice" or "factor"


def entry(logp, present=True, kind="choice") -> Entry:
    logp = np.asarray(logp, np.float64)
    return Entry(logp, np.broadcast_to(np.asarray(present, bool), logp.shape), kind)


def nest_entries(prefix, entries: dict) -> dict:
    prefix = prefix if isinstance(prefix, tuple) else (prefix,)
    return {prefix + a: e for a, e in entries.items()}


def scaled_entries(entries: dict, c) -> dict:
    return {a: e._replace(logp=float(c) * e.logp) for a, e in entries.items()}


def masked_entries(entries: dict, present) -> dict:
    """The entries present only where ``present`` is (a branch taken or not)."""
    return {a: e._replace(present=np.logical_and(e.present, present)) for a, e in entries.items()}


@ppl.gen
def branch_c(p):
    x = dist.Normal(p, 0.5) @ "x"
    dist.Poisson(1.5) @ "f"
    return x


def branch_entries(j: int, cm, p) -> dict:
    """Entries of branch_a / branch_b / branch_c (j = 0, 1, 2) at the choices ``cm``."""
    x = cm["x"]
    if j == 0:
        return {("x",): entry(nd.Normal(0.0, 1.0).log_prob(x))}
    if j == 1:
        return {("x",): entry(nd.Normal(p, 2.0).log_prob(x)), ("e",): entry(nd.HalfNormal(1.0).log_prob(cm["e"]))}
    return {("x",): entry(nd.Normal(p, 0.5).log_prob(x)), ("f",): entry(nd.Poisson(1.5).log_prob(cm["f"]))}


def switch_entries(index, cm, p, branches=(0, 1, 2)) -> dict:
    """Entries of ``ppl.switch(index, *[branch_a, branch_b, branch_c][branches])(p)``.

    Shared addresses (``x``) are present whichever branch is taken, with the
    taken branch's density; branch-only ones only when their branch is taken.
    ``index`` may be an array (a vmapped switch): everything is elementwise.
    """
    index = np.asarray(index)
    out: dict = {}
    for i, j in enumerate(branches):
        for a, e in branch_entries(j, cm, p).items():
            taken = index == i
            if a in out:
                old = out[a]
                out[a] = Entry(np.where(taken, e.logp, old.logp), np.logical_or(old.present, taken), "choice")
            else:
                out[a] = entry(np.where(taken, e.logp, 0.0), taken)
    return out


def sub_entries(cm, p) -> dict:
    return {("z",): entry(nd.Normal(p, 1.0).log_prob(cm["z"])), ("w",): entry(nd.Bernoulli(0.3).log_prob(cm["w"]))}


def kernel_entries(cm, c0, length: int, shift=0.0) -> tuple[dict, Any]:
    """Entries of ``ppl.scan(kernel)`` (or the closure kernel with ``shift``): per step."""
    xs, ys = np.asarray(cm["x"]), np.asarray(cm["y"])
    prev = np.concatenate([np.reshape(np.asarray(c0, np.float32), (1,)), xs[:-1]])
    lx = nd.Normal(0.5 * prev + shift, 1.0).log_prob(xs)
    ly = nd.Normal(xs, 0.5).log_prob(ys)
    return {("x",): entry(lx), ("y",): entry(ly)}, xs[length - 1]


def closure_kernel(s):
    """A scan kernel closing over ``s`` (a latent of the enclosing model): a new closure on every run."""

    @ppl.gen
    def step(c, _):
        x = dist.Normal(0.5 * c + s, 1.0) @ "x"
        dist.Normal(x, 0.5) @ "y"
        return x, x

    return step


@ppl.gen
def elem_cond(x):
    p = dist.Bernoulli(logits=x) @ "pred"
    return ppl.cond(p, branch_b, branch_a)(x) @ "br"


def elem_cond_entries(cm, x) -> dict:
    pred = np.asarray(cm["pred"])
    out = {("pred",): entry(nd.Bernoulli(logits=x).log_prob(pred))}
    out.update(nest_entries("br", switch_entries(pred, cm["br"], x, branches=(0, 1))))
    return out


EXTRA_KINDS = ["factor", "det", "switch3", "mixture", "scale", "closure", "vmapcond"]
SCALE_FACTOR = 0.5


def build_extended(spec: list[str]):
    """``build`` with the extra kinds: factors, deterministics, 3-way switch, mixture, scale, closures."""

    @ppl.gen
    def model(a):
        parent = a
        for i, kind in enumerate(spec):
            name = f"s{i}"
            if kind == "call":
                parent = sub(parent) @ name
            elif kind == "vmap":
                zs = ppl.vmap(elem)(parent + jnp.arange(3.0)) @ name
                parent = zs[0]
            elif kind == "scan":
                final, _ = ppl.scan(kernel, length=3)(parent, None) @ name
                parent = final
            elif kind == "cond":
                p = dist.Bernoulli(0.5) @ (name, "pred")
                parent = ppl.cond(p, branch_b, branch_a)(parent) @ (name, "br")
            elif kind == "factor":
                ppl.factor(name, -0.5 * parent**2)
            elif kind == "det":
                ppl.deterministic(name, 2.0 * parent)
            elif kind == "switch3":
                idx = dist.Categorical(logits=jnp.zeros(3)) @ (name, "idx")
                parent = ppl.switch(idx, branch_a, branch_b, branch_c)(parent) @ (name, "br")
            elif kind == "mixture":
                parent = ppl.mixture(branch_a, branch_b)(jnp.stack([parent, -parent]), parent) @ name
            elif kind == "scale":
                parent = ppl.scale(sub, SCALE_FACTOR)(parent) @ name
            elif kind == "closure":
                final, _ = ppl.scan(closure_kernel(0.2 * parent), length=2)(parent, None) @ name
                parent = final
            elif kind == "vmapcond":
                xs = ppl.vmap(elem_cond)(parent + jnp.arange(3.0)) @ name
                parent = xs[0]
            else:
                v = site_dist(kind, parent) @ name
                if kind in ("normal", "halfnormal"):
                    parent = v
        return parent

    model.name = "random_model_ext"
    return model


def reference_entries(spec: list[str], cm: ppl.ChoiceMap, a) -> dict:
    """Per-address :class:`Entry` of every choice and factor of ``build_extended(spec)``, directly from numpyro."""
    out: dict = {}
    parent = np.float32(a)
    for i, kind in enumerate(spec):
        name = f"s{i}"
        sub_cm = cm[name] if kind not in ("factor", "det") and name in cm else None
        if kind == "call":
            out.update(nest_entries(name, sub_entries(sub_cm, parent)))
            parent = sub_cm["z"]
        elif kind == "vmap":
            zs = sub_cm["z"]
            out[(name, "z")] = entry(nd.Normal(parent + jnp.arange(3.0), 1.0).log_prob(zs))
            parent = zs[0]
        elif kind == "scan":
            ents, parent = kernel_entries(sub_cm, parent, 3)
            out.update(nest_entries(name, ents))
        elif kind == "cond":
            p = np.asarray(sub_cm["pred"])
            out[(name, "pred")] = entry(nd.Bernoulli(0.5).log_prob(p))
            out.update(nest_entries((name, "br"), switch_entries(p, sub_cm["br"], parent, branches=(0, 1))))
            parent = sub_cm["br", "x"]
        elif kind == "factor":
            out[(name,)] = entry(-0.5 * parent**2, kind="factor")
        elif kind == "det":
            pass
        elif kind == "switch3":
            idx = np.asarray(sub_cm["idx"])
            out[(name, "idx")] = entry(nd.Categorical(logits=jnp.zeros(3)).log_prob(idx))
            out.update(nest_entries((name, "br"), switch_entries(idx, sub_cm["br"], parent)))
            parent = sub_cm["br", "x"]
        elif kind == "mixture":
            k = np.asarray(sub_cm["component"])
            out[(name, "component")] = entry(nd.Categorical(logits=jnp.stack([parent, -parent])).log_prob(k))
            out.update(nest_entries((name, "value"), switch_entries(k, sub_cm["value"], parent, branches=(0, 1))))
            parent = sub_cm["value", "x"]
        elif kind == "scale":
            out.update(nest_entries(name, scaled_entries(sub_entries(sub_cm, parent), SCALE_FACTOR)))
            parent = sub_cm["z"]
        elif kind == "closure":
            ents, parent = kernel_entries(sub_cm, parent, 2, shift=0.2 * parent)
            out.update(nest_entries(name, ents))
        elif kind == "vmapcond":
            out.update(nest_entries(name, elem_cond_entries(sub_cm, parent + np.arange(3.0))))
            parent = sub_cm["br", "x"][0]
        else:
            v = cm[name]
            out[(name,)] = entry(site_dist(kind, parent).log_prob(v))
            if kind in ("normal", "halfnormal"):
                parent = v
        parent = np.float32(parent)
    return out


extended_specs = st.lists(st.sampled_from(KINDS + EXTRA_KINDS), min_size=1, max_size=4)
