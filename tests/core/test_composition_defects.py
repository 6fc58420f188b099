"""Regression tests for silent wrong results when correct pieces are combined (issue: composition).

Each expected value is derived independently of the code under test: exact
enumeration, closed forms, or brute force from ``assess``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ppl
from ppl import dist
from ppl.errors import ForeignPrimitiveError

# ------------------------------------------------------------ importance inside an expectation


@ppl.gen
def _bernoulli_model(logit):
    z = dist.Bernoulli(logits=logit) @ "z"
    return dist.Normal(2.0 * z, 1.0) @ "y"


def _exact_expected_log_z(logit, y=1.8, n=3):
    """E[log Z_hat] for n prior-proposal particles, by enumerating all 2^n particle values."""
    p1 = jax.nn.sigmoid(logit)
    total = 0.0
    for zs in itertools.product([0, 1], repeat=n):
        zs = jnp.array(zs)
        prob = jnp.prod(jnp.where(zs == 1, p1, 1 - p1))
        lw = dist.Normal(2.0 * zs, 1.0).log_prob(y)
        total = total + prob * (jax.scipy.special.logsumexp(lw) - jnp.log(n))
    return total


def test_importance_inside_expectation_has_the_exact_gradient_in_expectation():
    objective = ppl.vi.expectation(
        lambda key, logit: ppl.infer.importance(
            key, _bernoulli_model, (logit,), {"y": 1.8}, particles=3
        ).log_marginal_likelihood()
    )
    logit = 0.3
    keys = jax.random.split(jax.random.key(0), 20000)
    value, grads = jax.vmap(lambda k: objective.value_and_grad_estimate(k, logit))(keys)
    g = grads[0]
    exact_grad = jax.grad(_exact_expected_log_z)(logit)
    assert abs(float(exact_grad)) > 0.1  # the defect returned exactly 0
    # tolerance: 5 standard errors of the mean of the per-key estimates
    np.testing.assert_allclose(g.mean(), exact_grad, atol=5 * g.std() / np.sqrt(g.size))
    np.testing.assert_allclose(value.mean(), _exact_expected_log_z(logit), atol=5 * value.std() / np.sqrt(value.size))


# ------------------------------------------------------------- generative functions as arguments


@ppl.gen
def _inner():
    return dist.Normal(0.0, 1.0) @ "x"


@ppl.gen
def _outer(g):
    return g() @ "a"


def test_scaled_model_passed_as_argument_uses_its_own_factor():
    cm = ppl.choices({"a": {"x": 0.3}})
    base = dist.Normal(0.0, 1.0).log_prob(0.3)
    lp_half = _outer.assess(cm, (ppl.scale(_inner, 0.5),))[0]
    lp_two = _outer.assess(cm, (ppl.scale(_inner, 2.0),))[0]
    # equal in exact arithmetic: float32 round-off only
    np.testing.assert_allclose(lp_half, 0.5 * base, rtol=1e-6)
    np.testing.assert_allclose(lp_two, 2.0 * base, rtol=1e-6)


def test_scaled_functions_with_other_factors_are_the_same_function():
    assert ppl.scale(_inner, 0.5) == ppl.scale(_inner, 2.0)
    assert hash(ppl.scale(_inner, 0.5)) == hash(ppl.scale(_inner, 2.0))
    assert ppl.vmap(_inner, axis_size=3) != ppl.vmap(_inner, axis_size=4)


# ------------------------------------------------------------------- closures in model bodies


@ppl.gen
def _random_walk(T):
    sigma = dist.HalfNormal(1.0) @ "sigma"

    @ppl.gen
    def step(c, _):
        x = dist.Normal(c, sigma) @ "x"
        return x, x

    return ppl.scan(step, length=T)(0.0, None) @ "steps"


def _walk_log_lik(sigma, xs):
    prev = jnp.concatenate([jnp.zeros(1), xs[:-1]])
    return jnp.sum(dist.Normal(prev, sigma).log_prob(xs))


def test_regenerate_keeps_values_of_a_kernel_defined_in_the_body():
    tr = _random_walk.simulate(jax.random.key(0), (5,))
    new, w = _random_walk.regenerate(jax.random.key(1), tr, ppl.select("sigma"))
    np.testing.assert_array_equal(new["steps", "x"], tr["steps", "x"])
    # exact MH log ratio of a prior proposal for sigma: the likelihood ratio of the kept xs
    exact = _walk_log_lik(new["sigma"], tr["steps", "x"]) - _walk_log_lik(tr["sigma"], tr["steps", "x"])
    np.testing.assert_allclose(w, exact, rtol=1e-5)
    assert abs(float(exact)) > 1e-3


def test_update_keeps_values_of_a_kernel_defined_in_the_body():
    tr = _random_walk.simulate(jax.random.key(0), (5,))
    new, w, discard = _random_walk.update(jax.random.key(2), tr, {"sigma": 0.7})
    np.testing.assert_array_equal(new["steps", "x"], tr["steps", "x"])
    np.testing.assert_allclose(w, _random_walk.assess(new.choices, (5,))[0] - tr.score, rtol=1e-5)
    assert set(discard.addresses()) == {("sigma",)}


def test_closures_rebuilt_equal_are_the_same_generative_function():
    def make(scale):
        @ppl.gen
        def m():
            return dist.Normal(0.0, scale) @ "x"

        return m

    a, b = make(jnp.asarray(1.0)), make(jnp.asarray(3.0))
    assert a == b  # same code, captured arrays are leaves
    tr = a.simulate(jax.random.key(0), ())
    # b's own captured scale is used when b scores a's trace
    _, w, _ = b.update(jax.random.key(1), tr, {})
    np.testing.assert_allclose(
        w, dist.Normal(0.0, 3.0).log_prob(tr["x"]) - dist.Normal(0.0, 1.0).log_prob(tr["x"]), rtol=1e-5
    )
    assert make(1.0) != make(2.0)  # Python scalars captured by a closure are static configuration


# -------------------------------------------------------------------------- switch and masks


@ppl.gen
def _branch_a():
    return dist.Normal(0.0, 1.0) @ "x"


@ppl.gen
def _branch_b():
    return dist.Normal(1.0, 2.0) @ "x"


@ppl.gen
def _switched(i):
    return ppl.switch(i, _branch_a, _branch_b)() @ "s"


def test_switch_update_keeps_a_shared_value_under_a_masked_out_constraint():
    tr = _switched.simulate(jax.random.key(0), (0,))
    x0 = tr["s", "x"]
    new, w, discard = _switched.update(jax.random.key(1), tr, {"s": {"x": ppl.masked(5.0, False)}}, (1,))
    np.testing.assert_allclose(new["s", "x"], x0)
    exact = dist.Normal(1.0, 2.0).log_prob(x0) - dist.Normal(0.0, 1.0).log_prob(x0)
    np.testing.assert_allclose(w, exact, rtol=1e-5)
    assert not bool(discard.mask(("s", "x")))  # nothing was overwritten
    # a present constraint is one
    new, w, discard = _switched.update(jax.random.key(1), tr, {"s": {"x": ppl.masked(5.0, True)}}, (1,))
    np.testing.assert_allclose(new["s", "x"], 5.0)
    np.testing.assert_allclose(w, dist.Normal(1.0, 2.0).log_prob(5.0) - dist.Normal(0.0, 1.0).log_prob(x0), rtol=1e-5)
    assert bool(discard.mask(("s", "x")))


# ------------------------------------------------------------------- out-of-support values


@ppl.gen
def _gamma_scale(mu):
    s = dist.Gamma(2.0, 2.0) @ "s"
    return dist.Normal(mu, s) @ "y"


@ppl.gen
def _gamma_step(c, _):
    s = dist.Gamma(2.0, 2.0) @ "s"
    return c, dist.Normal(c, s) @ "y"


@ppl.gen
def _gamma_scan():
    return ppl.scan(_gamma_step, length=3)(0.0, None) @ "t"


def test_out_of_support_value_feeding_a_later_distribution_scores_minus_inf_not_nan():
    assert _gamma_scale.assess({"s": -1.0, "y": 0.5}, (0.0,))[0] == -jnp.inf
    _, w = _gamma_scale.generate(jax.random.key(0), {"s": -1.0, "y": 0.5}, (0.0,))
    assert w == -jnp.inf
    tr = _gamma_scale.simulate(jax.random.key(0), (0.0,))
    _, w, _ = _gamma_scale.update(jax.random.key(1), tr, {"s": -1.0})
    assert w == -jnp.inf
    lp = _gamma_scan.assess({"t": {"s": jnp.array([1.0, -1.0, 1.0]), "y": jnp.zeros(3)}}, ())[0]
    assert lp == -jnp.inf


def test_one_impossible_particle_does_not_poison_the_collection():
    @ppl.gen
    def proposal(obs, mu):
        return dist.Normal(1.0, 1.0) @ "s"  # proposes s < 0 (outside Gamma's support) 16% of the time

    n = 20000
    pc = ppl.infer.importance(jax.random.key(0), _gamma_scale, (0.0,), {"y": 0.3}, particles=n, proposal=proposal)
    assert not jnp.any(jnp.isnan(pc.log_weights))
    assert jnp.any(pc.log_weights == -jnp.inf)
    # p(y) by quadrature over s (independent of ppl)
    s = np.linspace(1e-4, 20.0, 400001)
    dens = np.exp(dist.Gamma(2.0, 2.0).log_prob(s) + dist.Normal(0.0, s).log_prob(0.3))
    z = np.trapezoid(dens, s) if hasattr(np, "trapezoid") else np.trapz(dens, s)
    w = np.exp(np.asarray(pc.log_weights, dtype=np.float64))
    # Z_hat is the mean of the weights: tolerance 5 standard errors of that mean
    np.testing.assert_allclose(w.mean(), z, atol=5 * w.std() / np.sqrt(n))


# --------------------------------------------------------------------- foreign primitives


def test_numpyro_plate_inside_a_model_is_an_error():
    @ppl.gen
    def m(x):
        w = dist.Normal(0.0, 1.0) @ "w"
        with numpyro.plate("N", x.shape[0]):
            return dist.Normal(w * x, 1.0) @ "y"

    with pytest.raises(ForeignPrimitiveError, match=r"numpyro\.plate\('N'.*ppl\.vmap"):
        m.simulate(jax.random.key(0), (jnp.ones(3),))


def test_numpyro_sample_inside_a_model_is_an_error():
    @ppl.gen
    def m():
        return numpyro.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ForeignPrimitiveError, match=r"numpyro\.sample\('a'"):
        m.simulate(jax.random.key(0), ())
