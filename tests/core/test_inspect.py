"""ppl.inspect: the model's choices, shapes, supports, observations and dependencies."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import ppl
from ppl import dist
from ppl.errors import ArgumentError


@ppl.gen
def schools(sigma):
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    theta = dist.Normal(mu, tau).expand([8]).to_event(1) @ "theta"
    ppl.deterministic("mean_theta", theta.mean())
    dist.Normal(theta, sigma) @ "y"


@ppl.gen
def elem(mu):
    return dist.Poisson(jnp.exp(mu)) @ "count"


@ppl.gen
def step(c, _):
    x = dist.Normal(0.9 * c, 1.0) @ "x"
    dist.Normal(x, 0.5) @ "y"
    return x, None


@ppl.gen
def mixed():
    s = dist.HalfNormal(1.0) @ "s"
    x0 = dist.Normal(0.0, s) @ "x0"
    ppl.vmap(elem)(x0 + jnp.zeros(3)) @ "counts"
    return ppl.scan(step, length=5)(x0, None) @ "steps"


def test_sites_shapes_supports_observations_and_parents():
    info = ppl.inspect(schools, (jnp.ones(8),), {"y": jnp.zeros(8)})
    by = {s.address: s for s in info.sites}
    assert list(by) == [("mu",), ("tau",), ("theta",), ("y",)]
    assert by[("theta",)].distribution == "Normal.to_event(1)" and by[("theta",)].shape == (8,)
    assert by[("tau",)].support == "Positive" and not by[("tau",)].observed
    assert by[("y",)].observed and [s.address for s in info.observed] == [("y",)]
    assert set(by[("theta",)].parents) == {("mu",), ("tau",)}
    assert by[("y",)].parents == (("theta",),)  # sigma is an argument, not a choice
    assert by[("mu",)].parents == ()
    assert info.deterministics == [("mean_theta",)]
    text = str(info)
    assert "HalfCauchy" in text and "observed" in text and "mean_theta" in text
    assert "<table>" in info._repr_html_()


def test_batched_choices_carry_their_axes():
    info = ppl.inspect(mixed, (), {"steps": {"y": jnp.zeros(5)}})
    by = {s.address: s for s in info.sites}
    assert by[("counts", "count")].shape == (3,) and by[("counts", "count")].batch == (3,)
    assert by[("counts", "count")].support == "IntegerNonnegative"
    assert by[("steps", "x")].shape == (5,) and by[("steps", "x")].batch == (5,)
    assert by[("steps", "y")].observed
    assert ("x0",) in by[("counts", "count")].parents and ("s",) in by[("x0",)].parents
    assert ("steps", "x") in by[("steps", "y")].parents


def test_graph_and_errors():
    graphviz = pytest.importorskip("graphviz")
    g = ppl.inspect(schools, (jnp.ones(8),), {"y": jnp.zeros(8)}).to_graphviz()
    assert isinstance(g, graphviz.Digraph) and "mu" in g.source and "->" in g.source


def test_not_a_generative_function():
    with pytest.raises(ArgumentError, match="generative function"):
        ppl.inspect(lambda: None)
