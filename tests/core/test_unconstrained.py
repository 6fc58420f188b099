"""Unconstrained views: round trips, Jacobians (against autodiff), dependent supports."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
from numpyro.distributions import constraints

import ppl
from ppl import dist
from ppl.errors import ConstraintShapeError, SelectionError

KEY = jax.random.key(0)
TOL = dict(rtol=1e-5, atol=1e-5)


@ppl.gen
def model():
    s = dist.HalfNormal(1.0) @ "s"
    th = dist.Dirichlet(jnp.ones(3)) @ "th"
    k = dist.Poisson(2.0) @ "k"
    dist.Normal(th[0], s) @ "y"
    return k


def test_round_trip_and_shapes():
    tr, _ = model.generate(KEY, {"y": 0.2}, ())
    u = ppl.to_unconstrained(tr, ppl.select("s", "th"))
    assert u.addresses() == [("s",), ("th",)]
    assert u["th"].shape == (2,)  # stick-breaking: K - 1 free coordinates
    back, _, _ = ppl.from_unconstrained(model, u, (), {"y": 0.2, "k": tr.choices["k"]})
    np.testing.assert_allclose(back.choices["s"], tr.choices["s"], **TOL)
    np.testing.assert_allclose(back.choices["th"], tr.choices["th"], rtol=1e-5, atol=1e-6)
    # by default every continuous choice is moved, discrete ones are skipped
    assert ppl.to_unconstrained(tr).addresses() == [("s",), ("th",), ("y",)]


def test_log_density_includes_the_jacobian():
    obs = {"y": 0.2, "k": 3}
    u = ppl.choices({"s": 0.3, "th": jnp.array([0.1, -0.4])})
    lp = ppl.unconstrained_log_density(model, u, (), obs)
    x_s = jnp.exp(0.3)
    tr, w, lj = ppl.from_unconstrained(model, u, (), obs)
    # s: log|d exp(u)/du| = u; simplex: numpyro's stick-breaking log-det
    t = nd.transforms.biject_to(constraints.simplex)
    expected_lj = 0.3 + t.log_abs_det_jacobian(u["th"], t(u["th"]))
    np.testing.assert_allclose(lj, expected_lj, **TOL)
    np.testing.assert_allclose(lp, model.assess(tr.choices, ())[0] + lj, **TOL)
    np.testing.assert_allclose(w, lp, **TOL)
    np.testing.assert_allclose(tr.choices["s"], x_s, **TOL)
    assert np.isfinite(jax.grad(lambda s: ppl.unconstrained_log_density(model, u | {"s": s}, (), obs))(0.3))


def test_parameter_dependent_support_gets_that_runs_jacobian():
    # garch-style bound: b in (0, 1 - a) with a in (0, 1)
    @ppl.gen
    def bounded():
        a = dist.Uniform(0.0, 1.0) @ "a"
        return dist.ImproperUniform(constraints.interval(0.0, 1.0 - a), (), ()) @ "b"

    ua, ub = 0.4, -0.7
    lp = ppl.unconstrained_log_density(bounded, {"a": ua, "b": ub}, ())
    a = jax.nn.sigmoid(ua)
    b = (1 - a) * jax.nn.sigmoid(ub)
    # log|da/dua| + log|db/dub| with b = (1 - a) * sigmoid(ub)
    expected = jnp.log(a * (1 - a)) + jnp.log(1 - a) + jnp.log(jax.nn.sigmoid(ub) * (1 - jax.nn.sigmoid(ub)))
    np.testing.assert_allclose(lp, expected, rtol=1e-5, atol=1e-5)
    tr, _, _ = ppl.from_unconstrained(bounded, {"a": ua, "b": ub}, ())
    np.testing.assert_allclose(tr.choices["b"], b, rtol=1e-5)


def test_init_is_uniform_in_unconstrained_space_and_never_samples_improper_priors():
    @ppl.gen
    def flat(x):
        beta = dist.ImproperUniform(constraints.real_vector, (), (2,)) @ "beta"
        sigma = dist.ImproperUniform(constraints.positive, (), ()) @ "sigma"
        dist.Normal(beta[0] + beta[1] * x, sigma) @ "y"

    x = jnp.linspace(0, 1, 5)
    us = jax.vmap(lambda k: ppl.unconstrained_init(k, flat, (x,), {"y": jnp.zeros(5)}))(jax.random.split(KEY, 200))
    assert us.addresses() == [("beta",), ("sigma",)]
    for a in us:
        v = np.asarray(us[a])
        assert v.min() >= -2.0 and v.max() <= 2.0 and v.std() > 0.5


def test_vector_sites_inside_vmap_and_scan():
    @ppl.gen
    def step(c, _):
        s = dist.LogNormal(0.0, 1.0) @ "s"
        return c + s, s

    @ppl.gen
    def m():
        return ppl.scan(step, length=4)(0.0, None) @ "t"

    tr = m.simulate(KEY, ())
    u = ppl.to_unconstrained(tr)
    np.testing.assert_allclose(u["t", "s"], jnp.log(tr.choices["t", "s"]), rtol=1e-5)
    lp = ppl.unconstrained_log_density(m, u, ())
    np.testing.assert_allclose(lp, tr.score + jnp.sum(u["t", "s"]), rtol=1e-5)


def test_selection_errors():
    tr, _ = model.generate(KEY, {"y": 0.2}, ())
    with pytest.raises(SelectionError, match=r"'k', a discrete choice"):
        ppl.to_unconstrained(tr, ppl.select("s", "k"))
    with pytest.raises(SelectionError, match=r"names 'nope', which the model never visits"):
        ppl.to_unconstrained(tr, ppl.select("nope"))
    with pytest.raises(ConstraintShapeError, match=r"unconstrained value at 'th' has shape \(3,\).*\(2,\)"):
        ppl.unconstrained_log_density(model, {"s": 0.0, "th": jnp.zeros(3)}, (), {"y": 0.0, "k": 1})
