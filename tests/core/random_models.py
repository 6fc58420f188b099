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

import jax
import jax.numpy as jnp
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
