"""Flows as distributions: change of variables, normalisation, contexts, bad input.

Expected values are independent of the code under test: the log density of
``x = f(eps)`` is recomputed as ``log N(eps) - log|det J_f(eps)|`` with a
brute-force Jacobian (``jax.jacfwd``) of the flow's forward map, and
normalisation is checked by quadrature of ``exp(log q)`` on a grid.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import paramax
import pytest

import ppl
import ppl.flows as pf
from ppl import dist
from ppl.errors import FlowError

FAMILIES = {
    "planar(leaky)": lambda k, d: pf.planar(k, d, layers=2, leaky_slope=0.3),
    "radial": lambda k, d: pf.radial(k, d, layers=2),
    "affine_coupling": lambda k, d: pf.affine_coupling(k, d, layers=2, width=8),
    "maf": lambda k, d: pf.maf(k, d, layers=2, width=8),
    "iaf": lambda k, d: pf.iaf(k, d, layers=2, width=8),
    "spline_coupling": lambda k, d: pf.spline_coupling(k, d, layers=2, width=8, knots=5),
    "spline_autoregressive": lambda k, d: pf.spline_autoregressive(k, d, layers=2, width=8, knots=5),
    "bnaf": lambda k, d: pf.block_neural_autoregressive(k, d, block_dim=4, fast="density"),
}
ONE_DIM = ["planar(leaky)", "radial", "maf", "bnaf"]
#: the families a VI guide samples from: their fresh draws are scored from the sampling pass
SAMPLING_FAMILIES = {"iaf", "spline_coupling", "planar(leaky)"}
#: flowjax's methods run op by op when called eagerly; compiled, as inside any ppl program
log_prob = eqx.filter_jit(lambda flow, x: flow.log_prob(x))


def perturbed(flow: pf.Flow, seed: int, scale: float = 0.3) -> pf.Flow:
    """The flow with every float parameter moved by N(0, scale^2): far from the identity it starts near."""
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    moved = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return eqx.combine(jax.tree_util.tree_unflatten(tree, moved), static)


@eqx.filter_jit
def brute_log_density(flow: pf.Flow, eps):
    """``log N(eps; 0, I) - log|det d f(eps)/d eps|`` with the Jacobian by forward-mode AD."""
    bij = paramax.unwrap(flow.flow).bijection
    J = jax.jacfwd(lambda e: bij.transform(e))(eps)
    return jnp.sum(jax.scipy.stats.norm.logpdf(eps)) - jnp.linalg.slogdet(J)[1], bij.transform(eps)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_log_density_is_the_change_of_variables_with_a_brute_force_jacobian(name):
    flow = perturbed(FAMILIES[name](jax.random.key(1), 3), seed=2)
    eps = jax.random.normal(jax.random.key(3), (5, 3))
    expected, x = jax.vmap(lambda e: brute_log_density(flow, e))(eps)
    # float32: the same quantity in exact arithmetic; BNAF's inverse is a bisection to ~1e-5
    np.testing.assert_allclose(log_prob(flow, x), expected, rtol=1e-3, atol=2e-3)
    if name not in SAMPLING_FAMILIES:
        return

    @eqx.filter_jit
    def fresh(f):
        x = f.sample(jax.random.key(4), (5,))
        return x, f.log_prob(x)  # the sampling pass's own density, no inverse

    draws, lp_fresh = fresh(flow)
    assert draws.shape == (5, 3)
    np.testing.assert_allclose(lp_fresh, log_prob(flow, draws), rtol=1e-3, atol=2e-3)


def test_planar_tanh_scores_its_own_draws_without_an_inverse():
    flow = perturbed(pf.planar(jax.random.key(0), 2, layers=2), seed=1)
    d = flow
    x, lp = eqx.filter_jit(lambda f: (f.sample(jax.random.key(5)), f.log_prob(f.sample(jax.random.key(5)))))(d)
    bij = paramax.unwrap(flow.flow).bijection
    # the draw is f(eps) for the base draw eps flowjax makes from the same key
    eps = paramax.unwrap(flow.flow).base_dist._sample(jax.random.split(jax.random.key(5), 1).reshape(()))
    np.testing.assert_allclose(x, bij.transform(eps), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lp, brute_log_density(flow, eps)[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(NotImplementedError):
        log_prob(d, x)  # a value from elsewhere needs the inverse, which tanh planar layers lack


@pytest.mark.slow
@pytest.mark.parametrize("name", ONE_DIM)
def test_one_dimensional_densities_integrate_to_one(name):
    flow = perturbed(FAMILIES[name](jax.random.key(7), 1), seed=8, scale=0.2)
    grid = jnp.linspace(-300.0, 300.0, 600001)
    dens = jnp.exp(log_prob(flow, grid[:, None]))
    # trapezoid rule, spacing 1e-3 (error O(h) = 1e-3 times the jump at the kinks of leaky-ReLU planar
    # layers, O(h^2) elsewhere); BNAF's leaky-tanh tails are heavy, so the grid reaches |x| = 300,
    # beyond which the mass is below 1e-4: total error well under 2e-3
    np.testing.assert_allclose(float(jnp.trapezoid(dens, grid)), 1.0, atol=2e-3)


@pytest.mark.parametrize("name", ["affine_coupling", "spline_coupling"])
def test_two_dimensional_densities_integrate_to_one(name):
    flow = perturbed(FAMILIES[name](jax.random.key(9), 2), seed=10, scale=0.2)
    g = jnp.linspace(-10.0, 10.0, 401)
    X, Y = jnp.meshgrid(g, g)
    dens = jnp.exp(log_prob(flow, jnp.stack([X.ravel(), Y.ravel()], -1))).reshape(X.shape)
    total = jnp.trapezoid(jnp.trapezoid(dens, g, axis=1), g)
    # 2-D trapezoid, spacing 0.05 on [-10, 10]^2: quadrature and tail error below 1e-2
    np.testing.assert_allclose(float(total), 1.0, atol=1e-2)


def test_conditional_flow_takes_a_batch_of_contexts():
    flow = pf.maf(jax.random.key(0), 2, layers=2, width=8, context_dim=3)
    assert flow.context_shape == (3,)
    ctx = jax.random.normal(jax.random.key(1), (4, 3))
    d = flow.given(ctx)
    assert d.batch_shape == (4,) and d.event_shape == (2,)
    x = d.sample(jax.random.key(2))
    assert x.shape == (4, 2)
    lp = log_prob(d, x)
    # each element is the flow conditioned on its own context
    one = jnp.stack([log_prob(flow.given(ctx[i]), x[i]) for i in range(4)])
    np.testing.assert_allclose(lp, one, rtol=1e-5, atol=1e-5)


def test_flow_is_a_choice_in_a_model_and_scores_like_its_log_prob():
    flow = perturbed(pf.affine_coupling(jax.random.key(0), 2, layers=2, width=8), seed=3)

    @ppl.gen
    def model(f):
        z = f @ "z"
        return dist.Normal(z.sum(), 1.0) @ "y"

    tr = model.simulate(jax.random.key(1), (flow,))
    z = tr.choices["z"]
    expected = log_prob(flow, z) + dist.Normal(z.sum(), 1.0).log_prob(tr.choices["y"])
    np.testing.assert_allclose(tr.score, expected, rtol=1e-5, atol=1e-5)
    w, _ = model.assess(tr.choices, (flow,))
    np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-5)


def test_flow_parameters_get_gradients_through_an_expectation():
    flow = pf.iaf(jax.random.key(0), 2, layers=2, width=8)

    @ppl.gen
    def guide(f):
        return f @ "z"

    obj = ppl.vi.expectation(lambda key, f: -jnp.sum(guide.simulate(key, (f,)).choices["z"] ** 2))
    (g,) = obj.grad_estimate(jax.random.key(1), flow)
    leaves = jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_inexact_array))
    assert leaves and all(np.all(np.isfinite(x)) for x in leaves)
    assert any(float(jnp.abs(x).max()) > 0 for x in leaves)


# ------------------------------------------------------------------ bad input


def test_bad_input_names_the_shapes():
    with pytest.raises(FlowError, match="dim must be a positive int"):
        pf.maf(jax.random.key(0), 0)
    with pytest.raises(FlowError, match="coupling needs dim >= 2"):
        pf.affine_coupling(jax.random.key(0), 1)
    with pytest.raises(FlowError, match="fast must be"):
        pf.spline_autoregressive(jax.random.key(0), 2, fast="quick")
    cond = pf.maf(jax.random.key(0), 2, layers=1, width=4, context_dim=3)
    with pytest.raises(FlowError, match=r"context has shape \(4, 2\).*shape \(3,\)"):
        cond.given(jnp.zeros((4, 2)))
    with pytest.raises(FlowError, match=r"conditional on a context of shape \(3,\)"):
        cond.sample(jax.random.key(0))
    plain = pf.maf(jax.random.key(0), 2, layers=1, width=4)
    with pytest.raises(FlowError, match="unconditional"):
        plain.given(jnp.zeros(3))
    with pytest.raises(FlowError, match=r"value of shape \(3,\).*dimension 2"):
        plain.log_prob(jnp.zeros(3))
    with pytest.raises(FlowError, match="wraps a flowjax distribution"):
        pf.Flow(dist.Normal(0.0, 1.0))
