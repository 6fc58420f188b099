"""ppl.reparameterize: the same model in other coordinates.

Expected values are closed forms: the rewritten model's density over the new
choices is the original density (``assess`` of the original model at the
mapped values) plus the log-Jacobian of the map, ``log |dx/dz|``, and the
deterministic sites hold the mapped values. Statistical checks use 4 Monte
Carlo standard errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import dist
from ppl.errors import TransformError


@ppl.gen
def funnel():
    v = dist.Normal(0.0, 3.0) @ "v"
    dist.Normal(jnp.zeros(9), jnp.exp(v / 2)) @ "theta"


@pytest.mark.parametrize("c", [0.0, 0.4, 1.0])
def test_loc_scale_density_is_the_original_plus_the_jacobian(c):
    m = ppl.reparameterize(funnel, {"theta": ppl.LocScale(c)})
    tr = m.simulate(jax.random.key(0), ())
    v, z = tr.choices["v"], tr.choices["theta_decentered"]
    scale = jnp.exp(v / 2)
    theta = scale ** (1 - c) * z  # loc = 0
    np.testing.assert_allclose(tr.deterministics["theta"], theta, rtol=1e-5)
    original, _ = funnel.assess({"v": v, "theta": theta}, ())
    # x = loc + scale^(1-c) (z - c loc): log |dx/dz| = (1 - c) log scale per element
    np.testing.assert_allclose(tr.score, original + 9 * (1 - c) * v / 2, rtol=1e-5, atol=1e-5)
    # the new choice has F(c loc, scale^c)
    np.testing.assert_allclose(
        tr.score, nd.Normal(0.0, 3.0).log_prob(v) + nd.Normal(0.0, scale**c).log_prob(z).sum(), rtol=1e-5
    )


@ppl.gen
def wrapped(df):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    tau = dist.HalfNormal(1.0) @ "tau"
    dist.StudentT(df, mu, tau).expand([4]).to_event(1) @ "x"
    return dist.LogNormal(mu, 0.5) @ "r"


def test_wrappers_and_extra_parameters_are_kept_and_transforms_map_to_their_base():
    m = ppl.reparameterize(wrapped, {"x": ppl.LocScale(0.0), "r": ppl.TransformToBase()})
    tr = m.simulate(jax.random.key(1), (3.0,))
    assert set(tr.choices.addresses()) == {("mu",), ("tau",), ("x_decentered",), ("r_base",)}
    mu, tau, z, u = (tr.choices[a] for a in ("mu", "tau", "x_decentered", "r_base"))
    assert z.shape == (4,)
    np.testing.assert_allclose(tr.deterministics["x"], mu + tau * z, rtol=1e-5)
    np.testing.assert_allclose(tr.deterministics["r"], jnp.exp(u), rtol=1e-5)
    np.testing.assert_allclose(tr.retval, jnp.exp(u), rtol=1e-5)
    expected = (
        nd.Normal(0.0, 1.0).log_prob(mu)
        + nd.HalfNormal(1.0).log_prob(tau)
        + nd.StudentT(3.0, 0.0, 1.0).log_prob(z).sum()  # the degrees of freedom travel to the new choice
        + nd.Normal(mu, 0.5).log_prob(u)
    )
    np.testing.assert_allclose(tr.score, expected, rtol=1e-5)


@ppl.gen
def step(x_prev, _):
    x = dist.Normal(0.8 * x_prev, 0.5) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x, None


@ppl.gen
def chain():
    x0 = dist.Normal(0.0, 1.0) @ "x0"
    return ppl.scan(step, length=3)(x0, None) @ "steps"


def test_choices_inside_a_scan_and_a_function_config():
    ys = jnp.array([0.3, -0.2, 0.9])
    for m in (
        ppl.reparameterize(chain, {("steps", "x"): ppl.LocScale(0.0)}),
        ppl.reparameterize(chain, lambda a, d: ppl.LocScale(0.0) if a == ("steps", "x") else None),
    ):
        tr, w = m.generate(jax.random.key(2), {"steps": {"y": ys}}, ())
        z = tr.choices["steps", "x_decentered"]
        x = np.asarray(tr.deterministics["steps", "x"])
        prev = np.concatenate([[float(tr.choices["x0"])], x[:-1]])
        np.testing.assert_allclose(x, 0.8 * prev + 0.5 * np.asarray(z), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(w, nd.Normal(x, 1.0).log_prob(np.asarray(ys)).sum(), rtol=1e-5)
    # every Normal at once: x0 too (the new choices are never rewritten again)
    every = ppl.reparameterize(chain, lambda a, d: ppl.LocScale(0.0) if a[-1] in ("x0", "x") else None)
    tr = every.simulate(jax.random.key(3), ())
    assert {("x0_decentered",), ("steps", "x_decentered"), ("steps", "y")} == set(tr.choices.addresses())


def test_update_and_regenerate_keep_the_new_coordinates():
    m = ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.0)})
    tr = m.simulate(jax.random.key(4), ())
    new, w = m.regenerate(jax.random.key(5), tr, ppl.select("v"))
    # the decentred values are kept; theta follows the new v
    np.testing.assert_array_equal(new.choices["theta_decentered"], tr.choices["theta_decentered"])
    np.testing.assert_allclose(
        new.deterministics["theta"], jnp.exp(new.choices["v"] / 2) * tr.choices["theta_decentered"], rtol=1e-5
    )
    assert float(w) == pytest.approx(0.0, abs=1e-5)  # N(0, 1) on the kept choices does not depend on v
    up, w_up, discard = m.update(jax.random.key(6), tr, {"v": 1.5})
    np.testing.assert_allclose(w_up, up.score - tr.score, rtol=1e-5, atol=1e-5)
    assert float(discard["v"]) == pytest.approx(float(tr.choices["v"]))
    assert isinstance(up, ppl.core.ReparamTrace) and up.gen_fn == m


def test_nuts_on_the_non_centred_funnel_recovers_the_prior_of_v():
    m = ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.0)})
    r = ppl.infer.nuts(jax.random.key(7), m, num_warmup=400, num_samples=400, progress_bar=False)
    assert r.num_divergences == 0
    v = r.samples["v"]
    ess = float(ppl.diagnostics.ess_mean(v))
    # v ~ N(0, 3): mean within 4 Monte Carlo standard errors; theta is reported in its own coordinates
    assert abs(v.mean()) < 4 * 3.0 / math.sqrt(ess)
    assert r.samples["theta"].shape == (4, 400, 9)
    np.testing.assert_allclose(r.samples["theta"], np.exp(v / 2)[..., None] * r.samples["theta_decentered"], 1e-4)


@ppl.gen
def regression(x):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    w = dist.Normal(mu, 2.0) @ "w"
    return dist.Normal(w * x, 1.0) @ "y"


def test_elbo_gradient_of_the_reparameterised_model_is_exact_in_expectation():
    # model after LocScale(0) on w: mu ~ N(0, 1), z ~ N(0, 1), w = mu + 2 z, y ~ N(w, 1) at x = 1;
    # guide q = N(a, 1) N(b, 1) on (mu, z). Closed-form ELBO gradient: d/da = -a + (y - a - 2b),
    # d/db = -b + 2 (y - a - 2b).
    m = ppl.reparameterize(regression, {"w": ppl.LocScale(0.0)})

    @ppl.gen
    def guide(a, b):
        dist.Normal(a, 1.0) @ "mu"
        dist.Normal(b, 1.0) @ "w_decentered"

    y, a, b = 1.3, 0.2, -0.4
    objective = ppl.vi.elbo(m, guide, {"y": y})
    grads = jax.vmap(lambda k: objective.grad_estimate(k, (1.0,), (a, b))[1])(jax.random.split(jax.random.key(8), 4000))
    g = np.stack([np.asarray(grads[0]), np.asarray(grads[1])], axis=-1)
    exact = np.array([-a + (y - a - 2 * b), -b + 2 * (y - a - 2 * b)])
    se = g.std(axis=0, ddof=1) / math.sqrt(len(g))
    assert np.all(np.abs(g.mean(axis=0) - exact) < 4 * se + 1e-6), (g.mean(axis=0), exact, se)


def test_as_a_sub_model_and_under_jit():
    inner = ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.0)})

    @ppl.gen
    def outer():
        inner() @ "sub"

    tr = jax.jit(lambda k: outer.simulate(k, ()))(jax.random.key(9))
    assert ("sub", "theta_decentered") in set(tr.choices.addresses())
    np.testing.assert_allclose(
        tr.deterministics["sub", "theta"],
        jnp.exp(tr.choices["sub", "v"] / 2) * tr.choices["sub", "theta_decentered"],
        rtol=1e-5,
    )
    # equal configurations are the same generative function (one compiled program)
    assert ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.0)}) == inner
    assert ppl.reparameterize(funnel, {"theta": ppl.LocScale(0.5)}) != inner


def test_bad_configurations_and_observed_sites_are_refused():
    with pytest.raises(TransformError, match="location-scale"):
        ppl.reparameterize(wrapped, {"tau": ppl.LocScale(0.0)}).simulate(jax.random.key(0), (3.0,))
    with pytest.raises(TransformError, match="transformed distribution"):
        ppl.reparameterize(wrapped, {"mu": ppl.TransformToBase()}).simulate(jax.random.key(0), (3.0,))
    with pytest.raises(TransformError, match=r"in \[0, 1\]"):
        ppl.LocScale(1.5)
    with pytest.raises(TransformError, match="non-empty dict"):
        ppl.reparameterize(funnel, {})
    with pytest.raises(TransformError, match=r"expected a ppl\.LocScale"):
        ppl.reparameterize(funnel, {"theta": "noncentred"})
    with pytest.raises(TransformError, match="'y' is observed"):
        m = ppl.reparameterize(regression, {"y": ppl.LocScale(0.0)})
        ppl.infer.importance(jax.random.key(0), m, (1.0,), {"y": 0.5}, particles=4)
