"""The expectation transformation's mechanics: composition, argument handling, errors.

Statistical checks: mean of many estimates within Z = 5 standard errors
(``se = sd / sqrt(n)``) of the exact value, as in test_estimators.py.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import EstimatorError, NotADistributionError, PPLError
from tests.vi.unbiased import assert_unbiased, many


@ppl.gen
def coin(p):
    return dist.Bernoulli(p) @ "z"


def test_value_and_grad_agree_with_estimate_and_jax_grad_of_estimate():
    e = ppl.vi.expectation(lambda key, p: 2.0 * coin.simulate(key, (p,)).retval)
    key = jax.random.key(0)
    value, (grad,) = e.value_and_grad_estimate(key, 0.3)
    assert float(value) == pytest.approx(float(e.estimate(key, 0.3)))
    # the estimate is a surrogate: its JAX gradient is the gradient estimate
    assert float(jax.grad(e.estimate, argnums=1)(key, 0.3)) == pytest.approx(float(grad))
    assert float(e.grad_estimate(key, 0.3)[0]) == pytest.approx(float(grad))
    # and everything composes with the user's jit
    jitted = jax.jit(e.value_and_grad_estimate)(key, 0.3)
    assert float(jitted[0]) == pytest.approx(float(value))


def test_a_generative_function_is_an_expectation_of_its_return_value():
    e = ppl.vi.expectation(coin)
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, 0.3), 4000, 1)
    assert_unbiased(grad, 1.0, "d/dp E[z]")


def test_nested_expectations_compose():
    inner = ppl.vi.expectation(lambda key, p: 2.0 * coin.simulate(key, (p,)).retval)

    def outer(key, p):
        k1, k2 = jax.random.split(key)
        return inner.estimate(k1, p) ** 2 + inner.estimate(k2, p)

    e = ppl.vi.expectation(outer)
    # E[(2 z)^2 + 2 z'] = 4 p + 2 p: the inner estimates are choices of the outer program
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, 0.3), 6000, 2)
    assert_unbiased(grad, 6.0, "nested")


def test_gradients_follow_the_structure_of_pytree_and_equinox_arguments():
    class Params(eqx.Module):
        w: jax.Array
        n: int
        act: object

    @ppl.gen
    def program(params, extra):
        x = dist.Normal(params.w, 1.0) @ "x"
        return jnp.sum(params.act(x)) * params.n + extra["a"] * jnp.sum(extra["i"])

    e = ppl.vi.expectation(program)
    params = Params(jnp.array([0.5, 1.0]), 3, jnp.tanh)
    (g_params, g_extra) = e.grad_estimate(jax.random.key(0), params, {"a": 1.5, "i": jnp.arange(3)})
    assert isinstance(g_params, Params) and g_params.w.shape == (2,)
    assert g_params.n is None and g_params.act is None  # non-float leaves get None
    assert float(g_extra["a"]) == pytest.approx(3.0) and g_extra["i"] is None


def test_particles_helper_and_scan_helper_transform_choices():
    # IWAE-like objective with a REINFORCE choice per particle, and an SMC-like scan
    def program(key, p):
        k1, k2 = jax.random.split(key)
        zs = ppl.vi.vmap(lambda k: coin.simulate(k, (p,)).retval)(jax.random.split(k1, 4))

        def step(total, k):
            return total + coin.simulate(k, (p,)).retval, None

        total, _ = ppl.vi.scan(step, jnp.zeros((), jnp.int32), jax.random.split(k2, 3))
        return jnp.sum(zs) * total

    e = ppl.vi.expectation(program)
    # E[S4 * S3] = 4p * 3p (independent sums): d/dp = 24 p
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, 0.3), 6000, 3)
    assert_unbiased(grad, 24 * 0.3, "vmap+scan")


def test_enumeration_inside_the_particles_helper_and_in_cond_branches():
    @ppl.gen
    def branchy(p, q):
        z = ppl.vi.enum(dist.Bernoulli(p)) @ "z"
        return ppl.cond(z == 1, coin_enum, coin_plain)(q) @ "b"

    @ppl.gen
    def coin_enum(q):
        return (ppl.vi.enum(dist.Bernoulli(q)) @ "w").astype(jnp.float32) * 2.0

    @ppl.gen
    def coin_plain(q):
        return (dist.Bernoulli(q) @ "w").astype(jnp.float32)

    def program(key, p, q):
        return jnp.sum(ppl.vi.vmap(lambda k: branchy.simulate(k, (p, q)).retval)(jax.random.split(key, 2)))

    e = ppl.vi.expectation(program)

    # E = 2 (p * 2q + (1 - p) q) = 2 q (1 + p)
    def exact(p, q):
        return 2.0 * q * (1.0 + p)

    value, grads = many(lambda k: e.value_and_grad_estimate(k, 0.3, 0.6), 4000, 4)
    assert_unbiased(value, exact(0.3, 0.6), "value")
    assert_unbiased(np.stack(grads, -1), jax.grad(exact, argnums=(0, 1))(0.3, 0.6), "gradient")


def test_per_particle_baselines_keep_the_gradient_unbiased():
    def program(key, p):
        zs, scores = ppl.vi.vmap(lambda k: coin.simulate(k, (p,)).retval, scores=True)(jax.random.split(key, 3))
        zs = zs.astype(jnp.float32)
        f = jnp.sum(zs) + 5.0
        # leave-one-out baseline: depends only on the other particles
        ppl.vi.subtract_baseline(scores, f - zs - 0.3)
        return f

    e = ppl.vi.expectation(program)
    _, (grad,) = many(lambda k: e.value_and_grad_estimate(k, 0.3), 4000, 5)
    assert_unbiased(grad, 3.0, "loo")


# ------------------------------------------------------------------- errors
def test_reparameterising_a_discrete_choice_names_the_address():
    @ppl.gen
    def program():
        return ppl.vi.reparam(dist.Bernoulli(0.3)) @ ("layer", "z")

    with pytest.raises(EstimatorError, match=r"\('layer', 'z'\).*discrete"):
        ppl.vi.expectation(program).grad_estimate(jax.random.key(0))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ppl.vi.enum(dist.Poisson(2.0)), "'n'.*infinite support"),
        (lambda: ppl.vi.enum(dist.Normal(0.0, 1.0)), "'n'.*continuous support"),
        (lambda: ppl.vi.enum(dist.Categorical(logits=jnp.zeros((2, 3))).to_event(1)), "'n'.*event shape"),
        (lambda: ppl.vi.mvd(dist.Gamma(2.0, 1.0)), "'n'.*measure-valued derivative"),
        (lambda: ppl.vi.reparam(dist.Poisson(2.0)), "'n'.*discrete"),
    ],
    ids=["enum-poisson", "enum-normal", "enum-event", "mvd-gamma", "reparam-poisson"],
)
def test_unsupported_estimator_choices_are_named(make, message):
    @ppl.gen
    def program():
        return jnp.sum(make() @ "n")

    with pytest.raises(EstimatorError, match=message):
        ppl.vi.expectation(program).estimate(jax.random.key(0))


def test_non_scalar_program_and_bad_tags_are_rejected():
    with pytest.raises(EstimatorError, match=r"shape \(3,\).*scalar"):
        ppl.vi.expectation(lambda key: jnp.ones(3)).estimate(jax.random.key(0))
    with pytest.raises(NotADistributionError, match="reinforce"):
        ppl.vi.reinforce(coin)
    with pytest.raises(TypeError, match="key"):
        ppl.vi.expectation(coin).estimate(None, 0.3)

    @ppl.gen
    def bad_baseline(p):
        return ppl.vi.reinforce(dist.Bernoulli(jnp.full(3, p)), baseline=jnp.ones(2)) @ "z"

    with pytest.raises(EstimatorError, match="baseline given at 'z'"):
        ppl.vi.expectation(lambda k, p: jnp.sum(bad_baseline.simulate(k, (p,)).retval)).estimate(jax.random.key(0), 0.3)


def test_a_plain_jax_vmap_around_sampling_code_fails_loudly():
    def program(key, p):
        return jnp.sum(jax.vmap(lambda k: coin.simulate(k, (p,)).retval)(jax.random.split(key, 3)))

    with pytest.raises(PPLError, match=r"ppl.vi.vmap"):
        ppl.vi.expectation(program).grad_estimate(jax.random.key(0), 0.3)


def test_tagged_distributions_behave_like_their_base_outside_vi():
    d = ppl.vi.reinforce(dist.Normal(1.0, 2.0), baseline=0.5)
    assert d.batch_shape == () and d.support is dist.Normal(1.0, 2.0).support
    assert float(d.log_prob(0.3)) == pytest.approx(float(dist.Normal(1.0, 2.0).log_prob(0.3)))
    assert float(d.mean) == 1.0 and d.has_rsample
    leaves, treedef = jax.tree_util.tree_flatten(d)
    assert type(jax.tree_util.tree_unflatten(treedef, leaves)) is type(d)

    @ppl.gen
    def model():
        return ppl.vi.enum(dist.Bernoulli(0.5)) @ "z"

    tr = model.simulate(jax.random.key(0))
    assert float(tr.score) == pytest.approx(float(np.log(0.5)))


def test_rank2_matmul_pass_preserves_values_and_removes_batched_contractions():
    from ppl.vi import matmul

    w = jax.random.normal(jax.random.key(1), (3, 5))

    @ppl.gen
    def layer(w):
        z = dist.Normal(jnp.zeros(3), 1.0).to_event(1) @ "z"
        return jnp.sum(jnp.tanh(z @ w))

    def program(key, w):  # particles x data points: z @ w becomes a (4, 6, 3) x (3, 5) product
        keys = jax.random.split(key, (4, 6))
        inner = lambda ks: ppl.vi.vmap(lambda k: layer.simulate(k, (w,)).retval)(ks)  # noqa: E731
        return jnp.sum(ppl.vi.vmap(inner)(keys))

    e = ppl.vi.expectation(program)
    key = jax.random.key(0)
    optimised = e.value_and_grad_estimate(key, w)
    jaxpr = jax.make_jaxpr(lambda k, w: e.value_and_grad_estimate(k, w))(key, w)

    def dots(jx, out):
        for eqn in jx.eqns:
            if eqn.primitive.name == "dot_general":
                out.append(max(v.aval.ndim for v in eqn.invars))
            for p in eqn.params.values():
                if hasattr(p, "jaxpr") and hasattr(p.jaxpr, "eqns"):
                    dots(p.jaxpr, out)
        return out

    assert dots(jaxpr.jaxpr, []) and max(dots(jaxpr.jaxpr, [])) == 2
    matmul.ENABLED = False
    try:
        plain = ppl.vi.expectation(program).value_and_grad_estimate(key, w)
    finally:
        matmul.ENABLED = True
    np.testing.assert_allclose(optimised[0], plain[0], rtol=1e-5)
    np.testing.assert_allclose(optimised[1][0], plain[1][0], rtol=1e-4, atol=1e-6)


def test_rank2_matmul_pass_reaches_scan_bodies_and_keeps_source_information():
    from jax._src import source_info_util

    from ppl.vi.matmul import rank2_dots

    w = jax.random.normal(jax.random.key(0), (5, 7))

    def f(z):
        def body(c, x):
            return c, jnp.tanh(x @ w)  # x: (4, 6, 5), a product with two free dimensions

        return jax.lax.scan(body, 0.0, z)[1].sum()

    z = jax.random.normal(jax.random.key(1), (3, 4, 6, 5))
    g = rank2_dots(jax.grad(f))
    np.testing.assert_allclose(g(z), jax.grad(f)(z), rtol=1e-5, atol=1e-6)
    found = []

    def dots(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "dot_general":
                found.append((max(v.aval.ndim for v in eqn.invars), source_info_util.summarize(eqn.source_info)))
            for p in eqn.params.values():
                for c in p if isinstance(p, (tuple, list)) else [p]:
                    if hasattr(c, "jaxpr") and hasattr(c.jaxpr, "eqns"):
                        dots(c.jaxpr)

    dots(jax.make_jaxpr(g)(z).jaxpr)
    assert found and max(n for n, _ in found) == 2  # forward and transposed products inside both scans
    assert all("test_expectation.py" in where for _, where in found)


def test_batch_sum_enumerates_each_point_with_its_own_program():
    # per point: z ~ enum(Bernoulli(p_i)), f_i = w_i z; 70,000 points x 1 alternative would be too many
    # re-runs of the whole batch's program, but each point's evaluation re-runs only its own.
    @ppl.gen
    def point(logit, w):
        return w * (ppl.vi.enum(dist.Bernoulli(logits=logit)) @ "z")

    per_point = ppl.vi.expectation(point)
    total = ppl.vi.batch_sum(per_point)
    logits = jnp.linspace(-2.0, 2.0, 70000)
    w = jnp.cos(logits)
    value, (grad, _) = total.value_and_grad_estimate(jax.random.key(0), logits, w)

    def exact(lg):
        return jnp.sum(w * jax.nn.sigmoid(lg))

    np.testing.assert_allclose(value, exact(logits), rtol=1e-4)
    np.testing.assert_allclose(grad, jax.grad(exact)(logits), rtol=1e-4, atol=1e-6)


def test_too_many_reruns_is_an_error_naming_the_choice():
    @ppl.gen
    def program():
        return jnp.sum(ppl.vi.enum(dist.Categorical(logits=jnp.zeros((40000, 3)))) @ "labels")

    with pytest.raises(EstimatorError, match=r"'labels'.*80000 re-runs"):
        ppl.vi.expectation(program).grad_estimate(jax.random.key(0))
