"""Combinators: each GFI method agrees with its definition written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import dist

KEY = jax.random.key(0)
TOL = dict(rtol=1e-5, atol=1e-4)


@ppl.gen
def elem(mu, scale):
    z = dist.Normal(mu, scale) @ "z"
    b = dist.Bernoulli(logits=z) @ "b"
    return z + b


def test_vmap_is_a_loop_over_split_keys():
    mus = jnp.array([0.0, 1.0, -2.0, 3.0])
    tr = ppl.vmap(elem, in_axes=(0, None)).simulate(KEY, (mus, 2.0))
    keys = jax.random.split(KEY, 4)
    for i in range(4):
        single = elem.simulate(keys[i], (mus[i], 2.0))
        np.testing.assert_allclose(tr.choices["z"][i], single.choices["z"], **TOL)
        assert tr.choices["b"][i] == single.choices["b"]
        np.testing.assert_allclose(tr.retval[i], single.retval, **TOL)
    np.testing.assert_allclose(tr.score, sum(elem.simulate(keys[i], (mus[i], 2.0)).score for i in range(4)), **TOL)


def test_vmap_partial_constraints_with_masks():
    mus = jnp.zeros(4)
    obs = jnp.array([0.5, -0.5, 1.0, 2.0])
    seen = jnp.array([True, False, True, False])
    g = ppl.vmap(elem, in_axes=(0, None))
    tr, w = g.generate(KEY, ppl.choices(z=ppl.masked(obs, seen)), (mus, 1.0))
    np.testing.assert_allclose(tr.choices["z"][seen], obs[seen])
    np.testing.assert_allclose(w, jnp.sum(nd.Normal(0.0, 1.0).log_prob(obs[seen])), **TOL)


@ppl.gen
def ar_step(x, u):
    x2 = dist.Normal(0.9 * x + u, 1.0) @ "x"
    dist.Normal(x2, 0.5) @ "y"
    return x2, 2 * x2


def test_scan_is_an_unrolled_loop():
    us = jnp.linspace(-1, 1, 5)
    tr = ppl.scan(ar_step).simulate(KEY, (0.3, us))
    keys = jax.random.split(KEY, 5)
    c, score = 0.3, 0.0
    for t in range(5):
        st = ar_step.simulate(keys[t], (c, us[t]))
        np.testing.assert_allclose(tr.choices["x"][t], st.choices["x"], **TOL)
        np.testing.assert_allclose(tr.choices["y"][t], st.choices["y"], **TOL)
        c, score = st.retval[0], score + st.score
    np.testing.assert_allclose(tr.retval[0], c, **TOL)
    np.testing.assert_allclose(tr.retval[1], 2 * tr.choices["x"], **TOL)
    np.testing.assert_allclose(tr.score, score, **TOL)


def test_scan_with_missing_observations():
    @ppl.gen
    def ssm(T):
        return ppl.scan(ar_step, length=T)(0.0, jnp.zeros(T)) @ "s"

    ys = jnp.arange(6.0)
    seen = jnp.arange(6) % 3 != 1
    tr, w = ssm.generate(KEY, ppl.choices({"s": {"y": ppl.masked(ys, seen)}}), (6,))
    xs = tr.choices["s", "x"]
    expected = jnp.sum(jnp.where(seen, nd.Normal(xs, 0.5).log_prob(ys), 0.0))
    np.testing.assert_allclose(w, expected, **TOL)
    np.testing.assert_allclose(tr.choices["s", "y"][seen], ys[seen])


@ppl.gen
def leaf(p):
    return dist.Normal(p, 1.0) @ "v"


@ppl.gen
def other_leaf(p):
    v = dist.Normal(-p, 3.0) @ "v"
    dist.Exponential(1.0) @ "rate"
    return v


@ppl.gen
def cond_kernel(c, _):
    k = dist.Bernoulli(0.5) @ "k"
    v = ppl.cond(k, other_leaf, leaf)(c) @ "br"
    return v, v


@ppl.gen
def nested(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return ppl.vmap(ppl.scan(cond_kernel, length=3), in_axes=(0, None))(mu + jnp.arange(n), None) @ "rows"


def test_nested_vmap_scan_cond_all_methods_agree_with_assess():
    tr = nested.simulate(KEY, (2,))
    assert tr.choices["rows", "br", "v"].shape == (2, 3)
    assert tr.choices.mask(("rows", "br", "rate")).shape == (2, 3)
    np.testing.assert_allclose(nested.assess(tr.choices, (2,))[0], tr.score, **TOL)
    _, w = nested.generate(KEY, tr.choices, (2,))
    np.testing.assert_allclose(w, tr.score, **TOL)
    # move mu: every kept choice is re-scored, nothing is fresh
    new, w, _ = nested.update(KEY, tr, {"mu": 0.7})
    np.testing.assert_allclose(w, nested.assess(new.choices, (2,))[0] - tr.score, **TOL)
    # regenerate mu: MH ratio = new - old density of everything but mu
    new, w = nested.regenerate(jax.random.key(3), tr, ppl.select("mu"))
    mu_term = nd.Normal(0.0, 1.0).log_prob(new.choices["mu"]) - nd.Normal(0.0, 1.0).log_prob(tr.choices["mu"])
    np.testing.assert_allclose(w, nested.assess(new.choices, (2,))[0] - tr.score - mu_term, **TOL)


def test_mixture_density_is_weight_times_component():
    mix = ppl.mixture(leaf, other_leaf)
    logits = jnp.log(jnp.array([0.25, 0.75]))
    tr = mix.simulate(KEY, (logits, 1.0))
    k = int(tr.choices["component"])
    v = tr.choices["value", "v"]
    comp = (
        nd.Normal(1.0, 1.0).log_prob(v)
        if k == 0
        else nd.Normal(-1.0, 3.0).log_prob(v) + nd.Exponential(1.0).log_prob(tr.choices["value", "rate"])
    )
    np.testing.assert_allclose(tr.score, jnp.log(jnp.array([0.25, 0.75])[k]) + comp, **TOL)
    np.testing.assert_allclose(mix.assess(tr.choices, (logits, 1.0))[0], tr.score, **TOL)


def test_switch_with_three_branches_and_constraints_on_untaken_branch():
    @ppl.gen
    def m():
        i = dist.Categorical(probs=jnp.ones(3) / 3) @ "i"
        return ppl.switch(i, leaf, other_leaf, leaf)(0.5) @ "s"

    _, w = m.generate(KEY, {"i": 0, "s": {"rate": 1.0}}, ())
    assert w == -np.inf  # 'rate' exists only in branch 1, which is not taken
    tr, w = m.generate(KEY, {"i": 1, "s": {"rate": 1.0}}, ())
    assert np.isfinite(w) and tr.choices["s", "rate"] == 1.0


def test_factor_and_deterministic():
    @ppl.gen
    def m(a):
        x = dist.Normal(0.0, 1.0) @ "x"
        ppl.factor("pen", -a * x**2)
        ppl.deterministic("x2", 2 * x)
        return x

    tr = m.simulate(KEY, (1.0,))
    x = tr.choices["x"]
    np.testing.assert_allclose(tr.score, nd.Normal(0.0, 1.0).log_prob(x) - x**2, **TOL)
    assert tr.deterministics["x2"] == 2 * x and tr["x2"] == 2 * x
    assert "x2" not in tr.choices
    np.testing.assert_allclose(m.assess({"x": x}, (1.0,))[0], tr.score, **TOL)
    _, w, _ = m.update(KEY, tr, None, (3.0,))
    np.testing.assert_allclose(w, -2 * x**2, **TOL)
    new, w = m.regenerate(KEY, tr, ppl.select("x"), (1.0,))
    np.testing.assert_allclose(w, -(new.choices["x"] ** 2) + x**2, **TOL)
    with pytest.raises(ppl.errors.UnvisitedConstraintError, match="deterministic"):
        m.generate(KEY, {"x2": 1.0}, (1.0,))


def test_independent_sites_get_independent_keys():
    @ppl.gen
    def two():
        x = dist.Normal(0.0, 1.0) @ "x"
        y = dist.Normal(0.0, 1.0) @ "y"
        return (x - y) ** 2

    d = jax.vmap(lambda k: two.simulate(k, ()).retval)(jax.random.split(KEY, 20000))
    # E[(x - y)^2] = 2 with sd 2*sqrt(2): 4 standard errors of the mean
    assert abs(float(d.mean()) - 2.0) < 4 * 2 * np.sqrt(2) / np.sqrt(20000)
    # and the same key reproduces every draw
    np.testing.assert_array_equal(two.simulate(KEY, ()).choices["x"], two.simulate(KEY, ()).choices["x"])


def test_user_defined_distribution():
    Laplace2 = ppl.dist.make_distribution(
        "Laplace2",
        params=("loc", "scale"),
        sample=lambda key, loc, scale: loc + scale * jax.random.laplace(key, jnp.shape(loc)),
        log_prob=lambda x, loc, scale: -jnp.abs(x - loc) / scale - jnp.log(2 * scale),
        reparameterized=True,
    )

    @ppl.gen
    def m():
        return Laplace2(jnp.zeros(3), 2.0) @ "x"

    tr = m.simulate(KEY, ())
    np.testing.assert_allclose(tr.score, jnp.sum(nd.Laplace(0.0, 2.0).log_prob(tr.choices["x"])), **TOL)
    d = Laplace2(loc=1.0, scale=2.0)
    assert d.loc == 1.0 and d.batch_shape == () and d.sample(KEY, (5,)).shape == (5,)


def test_traces_pass_through_jit_vmap_scan_and_grad():
    tr = jax.jit(lambda k: nested.simulate(k, (2,)))(KEY)
    np.testing.assert_allclose(tr.score, nested.simulate(KEY, (2,)).score, **TOL)
    trs = jax.vmap(lambda k: nested.simulate(k, (2,)))(jax.random.split(KEY, 3))
    assert trs.score.shape == (3,)
    final, _ = jax.lax.scan(
        lambda t, k: (nested.regenerate(k, t, ppl.select("mu"))[0], None), tr, jax.random.split(KEY, 4)
    )
    assert final.score.shape == ()
    g = jax.grad(lambda m: nested.assess(tr.choices | {"mu": m}, (2,))[0])(0.1)
    assert np.isfinite(g)
