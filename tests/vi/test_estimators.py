"""Unbiasedness of every gradient estimator on problems with analytic answers.

Each statistical test averages many independent estimates (``jax.vmap`` over
keys, one compiled function per test) and checks the mean against the exact
value within ``Z`` standard errors, ``se = sd / sqrt(n)`` of the estimates
(per component). ``Z = 5`` keeps the chance of a false alarm over the whole
file far below 1e-3 for an unbiased estimator while a bias of a few standard
errors is caught. Seeds are fixed.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from tests.vi.unbiased import assert_unbiased, many


# ---------------------------------------------------------------- keys
def test_two_independent_sites_get_independent_keys():
    @ppl.gen
    def pair():
        x = dist.Normal(0.0, 1.0) @ "x"
        y = dist.Normal(0.0, 1.0) @ "y"
        return (x - y) ** 2

    e = ppl.vi.expectation(pair)
    values = many(lambda k: e.estimate(k), 4000, 0)
    # E[(x - y)^2] = 2 for independent standard normals (0 if they shared a key)
    assert_unbiased(values, 2.0, "E[(x-y)^2]")
    assert float(np.std(values)) > 1.0


# ----------------------------------------------- a Normal choice, every estimator
MU, SIGMA, A = 1.2, 0.7, 0.5


@pytest.mark.parametrize(
    "tag",
    [
        None,
        ppl.vi.reparam,
        ppl.vi.reinforce,
        lambda d: ppl.vi.reinforce(d, baseline=MU**2),
        ppl.vi.mvd,
    ],
    ids=["default", "reparam", "reinforce", "reinforce-baseline", "mvd"],
)
def test_normal_choice_gradient_is_unbiased(tag):
    @ppl.gen
    def program(mu, sigma):
        d = dist.Normal(mu, sigma)
        x = (d if tag is None else tag(d)) @ "x"
        return (x - A) ** 2

    e = ppl.vi.expectation(program)
    value, (g_mu, g_sigma) = many(lambda k: e.value_and_grad_estimate(k, MU, SIGMA), 6000, 1)
    # E[(x - a)^2] = (mu - a)^2 + sigma^2
    assert_unbiased(value, (MU - A) ** 2 + SIGMA**2, "value")
    assert_unbiased(np.stack([g_mu, g_sigma], -1), [2 * (MU - A), 2 * SIGMA], "gradient")


def test_normal_mvd_under_to_event_and_batch():
    locs = jnp.array([0.3, -0.4, 1.0])

    @ppl.gen
    def program(loc, log_scale):
        x = ppl.vi.mvd(dist.Normal(loc, jnp.exp(log_scale)).to_event(1)) @ "x"
        return jnp.sum(jnp.sin(x))

    e = ppl.vi.expectation(program)
    _, (g_loc, g_ls) = many(lambda k: e.value_and_grad_estimate(k, locs, -0.3), 6000, 2)

    # E[sin(x)] = sin(mu) exp(-s^2/2) for x ~ N(mu, s)
    def exact(loc, log_scale):
        return jnp.sum(jnp.sin(loc) * jnp.exp(-0.5 * jnp.exp(2 * log_scale)))

    ex_loc, ex_ls = jax.grad(exact, argnums=(0, 1))(locs, -0.3)
    assert_unbiased(g_loc, ex_loc, "loc")
    assert_unbiased(g_ls, ex_ls, "log scale")


# --------------------------------------------- Bernoulli and categorical choices
def _categorical_exact(logits, table):
    return jnp.sum(jax.nn.softmax(logits) * table)


TABLE = jnp.array([1.0, -2.0, 3.5])
LOGITS = jnp.array([0.2, -0.3, 0.5])


def _categorical_program(tag):
    @ppl.gen
    def program(logits):
        k = tag(dist.Categorical(logits=logits)) @ "k"
        return TABLE[k]

    return ppl.vi.expectation(program)


def test_enumeration_is_exact_for_a_categorical_choice():
    e = _categorical_program(ppl.vi.enum)
    value, (grad,) = many(lambda k: e.value_and_grad_estimate(k, LOGITS), 50, 3)
    exact_value = _categorical_exact(LOGITS, TABLE)
    exact_grad = jax.grad(_categorical_exact)(LOGITS, TABLE)
    # every single estimate is exact, not just their mean
    np.testing.assert_allclose(value, np.full(50, exact_value), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, np.tile(exact_grad, (50, 1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tag", [ppl.vi.reinforce, ppl.vi.mvd], ids=["reinforce", "mvd"])
def test_categorical_gradient_is_unbiased(tag):
    e = _categorical_program(tag)
    value, (grad,) = many(lambda k: e.value_and_grad_estimate(k, LOGITS), 6000, 4)
    assert_unbiased(value, _categorical_exact(LOGITS, TABLE), "value")
    assert_unbiased(grad, jax.grad(_categorical_exact)(LOGITS, TABLE), "gradient")


def test_bernoulli_with_a_continuous_downstream_choice():
    # z ~ Bern(p), x ~ N(2z - 1, s): E[x^2] = 1 + s^2 for every p; the gradient in p is 0 exactly,
    # in s it is 2s. f also depends on p directly: f = x^2 + 3p -> dE/dp = 3.
    def program(tag):
        @ppl.gen
        def prog(p, s):
            z = tag(dist.Bernoulli(p)) @ "z"
            x = dist.Normal(2.0 * z - 1.0, s) @ "x"
            return x**2 + 3.0 * p

        return ppl.vi.expectation(prog)

    for tag, seed in ((ppl.vi.reinforce, 5), (ppl.vi.enum, 6), (ppl.vi.mvd, 7)):
        e = program(tag)
        value, grads = many(lambda k, e=e: e.value_and_grad_estimate(k, 0.3, 0.8), 6000, seed)
        assert_unbiased(value, 1.0 + 0.64 + 0.9, f"{tag.__name__} value")
        assert_unbiased(np.stack(grads, -1), [3.0, 1.6], f"{tag.__name__} gradient")


# ---------------------------------------- infinite supports under REINFORCE
def test_poisson_choice_under_reinforce():
    @ppl.gen
    def program(log_rate):
        n = dist.Poisson(jnp.exp(log_rate)) @ "n"  # default for a discrete choice: REINFORCE
        return n.astype(jnp.float32) ** 2

    e = ppl.vi.expectation(program)
    rate = 1.5
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, jnp.log(rate)), 8000, 8)
    # E[n^2] = lam + lam^2, d/dlog(lam) = lam (1 + 2 lam)
    assert_unbiased(grad, rate * (1 + 2 * rate), "poisson")


def test_geometric_choice_under_reinforce_with_baseline():
    @ppl.gen
    def program(p):
        n = ppl.vi.reinforce(dist.Geometric(probs=p), baseline=1.0) @ "n"
        return n.astype(jnp.float32)

    e = ppl.vi.expectation(program)
    p = 0.4
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, p), 8000, 9)
    # numpyro's Geometric counts failures before the first success: E[n] = (1 - p) / p
    assert_unbiased(grad, -1.0 / p**2, "geometric")


# ---------------------------------------- sites inside ppl.vmap and ppl.scan
SCAN_BIAS = jnp.array([0.3, -0.2, 0.1])
SCAN_WEIGHTS = jnp.array([1.0, -2.0, 3.0])


@ppl.gen
def _chain_step(tag_index, carry, bias):
    tag = (ppl.vi.reinforce, ppl.vi.enum, ppl.vi.mvd)[tag_index]
    z = tag(dist.Bernoulli(jax.nn.sigmoid(bias + 1.5 * carry))) @ "z"
    return z.astype(jnp.float32), z


def _chain_f(zs):
    zs = zs.astype(jnp.float32)
    return jnp.sum(SCAN_WEIGHTS * zs) + 2.0 * zs[0] * zs[2]  # not additive over steps


def _chain_exact(bias):
    total = 0.0
    for path in itertools.product([0, 1], repeat=3):
        carry, logp = 0.0, 0.0
        for t, z in enumerate(path):
            p = jax.nn.sigmoid(bias[t] + 1.5 * carry)
            logp = logp + jnp.log(p if z else 1 - p)
            carry = float(z)
        total = total + jnp.exp(logp) * _chain_f(jnp.array(path))
    return total


@pytest.mark.parametrize("tag_index", [0, 1, 2], ids=["reinforce", "enum", "mvd"])
def test_choices_inside_scan_are_transformed(tag_index):
    @ppl.gen
    def kernel(carry, bias):
        return _chain_step(tag_index, carry, bias) @ "step"

    chain = ppl.scan(kernel)

    def program(key, bias):
        return _chain_f(chain.simulate(key, (0.0, bias)).retval[1])

    e = ppl.vi.expectation(program)
    value, (grad,) = many(lambda k: e.value_and_grad_estimate(k, SCAN_BIAS), 6000, 10 + tag_index)
    assert_unbiased(value, _chain_exact(SCAN_BIAS), "value")
    assert_unbiased(grad, jax.grad(_chain_exact)(SCAN_BIAS), "gradient")


def test_enumerated_choices_inside_vmap_are_exact_for_additive_objectives():
    # f = sum_i w_i z_i over independent z_i: enumerating each element gives the exact gradient.
    w = jnp.array([1.0, -2.0, 0.5, 4.0])

    @ppl.gen
    def element(logit):
        return ppl.vi.enum(dist.Bernoulli(logits=logit)) @ "z"

    batch = ppl.vmap(element)

    def program(key, logits):
        return jnp.sum(w * batch.simulate(key, (logits,)).retval)

    e = ppl.vi.expectation(program)
    logits = jnp.array([0.1, -1.0, 2.0, 0.3])
    value, (grad,) = many(lambda k: e.value_and_grad_estimate(k, logits), 20, 12)
    exact = lambda lg: jnp.sum(w * jax.nn.sigmoid(lg))  # noqa: E731
    np.testing.assert_allclose(value, np.full(20, exact(logits)), rtol=1e-5)
    np.testing.assert_allclose(grad, np.tile(jax.grad(exact)(logits), (20, 1)), rtol=1e-5, atol=1e-6)


def test_batched_reinforce_and_mvd_inside_vmap_with_interactions():
    # z_i ~ Bern(p_i) in a ppl.vmap; f = (sum_i z_i)^2 couples the elements.
    def exact(p):
        mean = jnp.sum(p)
        return jnp.sum(p * (1 - p)) + mean**2

    p = jnp.array([0.2, 0.6, 0.45])
    for tag, seed in ((ppl.vi.reinforce, 13), (ppl.vi.mvd, 14), (ppl.vi.enum, 15)):

        @ppl.gen
        def element(q, tag=tag):
            return tag(dist.Bernoulli(q)) @ "z"

        batch = ppl.vmap(element)

        def program(key, p, batch=batch):
            return jnp.sum(batch.simulate(key, (p,)).retval.astype(jnp.float32)) ** 2

        e = ppl.vi.expectation(program)
        value, (grad,) = many(lambda k, e=e: e.value_and_grad_estimate(k, p), 6000, seed)
        assert_unbiased(value, exact(p), f"{tag.__name__} value")
        assert_unbiased(grad, jax.grad(exact)(p), f"{tag.__name__} gradient")


# ---------------------------------------------------------------- baselines
def test_baseline_reduces_variance_and_is_fitted():
    @ppl.gen
    def program(logits, b):
        k = ppl.vi.reinforce(dist.Categorical(logits=logits), baseline=b) @ "k"
        return TABLE[k] + 10.0  # a large offset: the baseline's job

    e = ppl.vi.expectation(program)
    exact_mean = _categorical_exact(LOGITS, TABLE) + 10.0
    _, (g0, gb0) = many(lambda k: e.value_and_grad_estimate(k, LOGITS, 0.0), 6000, 16)
    _, (g1, _) = many(lambda k: e.value_and_grad_estimate(k, LOGITS, exact_mean), 6000, 16)
    exact_grad = jax.grad(_categorical_exact)(LOGITS, TABLE)
    assert_unbiased(g0, exact_grad, "no baseline")
    assert_unbiased(g1, exact_grad, "baseline")
    assert np.all(np.var(g1, axis=0) < 0.2 * np.var(g0, axis=0))
    # the baseline's own gradient fits it to the objective: d/db = f - b, mean E[f] - b
    assert_unbiased(gb0, exact_mean, "baseline fit")


def test_running_mean_baseline_state_is_explicit():
    rm = ppl.vi.running_mean(0.5)
    state = rm.init()
    assert float(state.mean) == 0.0
    state = rm.update(state, 4.0)
    assert float(state.mean) == pytest.approx(4.0)  # debiased: the first value itself
    state = rm.update(state, 1.0)
    assert float(state.mean) == pytest.approx((0.5 * 0.5 * 4.0 + 0.5 * 1.0) / (0.5 * 0.5 + 0.5))
    with pytest.raises(ValueError, match="decay"):
        ppl.vi.running_mean(1.0)
