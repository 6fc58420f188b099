"""Automatic guides: discovered latent space, exact densities, Laplace, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import LowRankMultivariateNormal, MultivariateNormal, Normal

import ppl
from ppl import dist
from ppl.errors import GuideError, MissingChoiceError, UnvisitedConstraintError
from ppl.vi.guides import (
    AutoDelta,
    AutoLaplace,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    auto_normal,
    check_guide,
)


@ppl.gen
def local(mu):
    z = dist.Normal(mu, 1.0) @ "z"
    return dist.Normal(z, 0.5) @ "y"


@ppl.gen
def mixed(n):
    """Latents with real, positive, simplex and interval supports, one inside ppl.vmap."""
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.HalfNormal(1.0) @ "s"
    dist.Dirichlet(jnp.ones(3)) @ "p"
    dist.Normal(jnp.zeros(2), 1.0).to_event(1) @ "v"
    dist.Uniform(0.0, 2.0) @ "w"
    return ppl.vmap(local, in_axes=(None,), axis_size=n)(mu) @ "obs"


N = 4
OBS = ppl.choices({("obs", "y"): jnp.array([0.3, -0.2, 1.1, 0.5])})
SITES = [("mu", (), ()), ("s", (), ()), ("p", (3,), (2,)), ("v", (2,), (2,)), ("w", (), ()), ("obs/z", (4,), (4,))]


def log_jacobian(guide, x):
    """sum over sites of log |det J_T(u)| at u = T^{-1}(x), with numpyro's transforms."""
    total = 0.0
    for s in guide.layout.sites:
        if s.transform is None:
            continue
        u = s.transform.inv(x[s.address])
        total = total + jnp.sum(s.transform.log_abs_det_jacobian(u, x[s.address]))
    return total


def flat_u(guide, x):
    return guide.layout.flatten(guide.layout.unconstrain(x))


@pytest.fixture(scope="module")
def full_rank():
    return AutoMultivariateNormal(mixed, (N,), OBS)


def test_layout_discovers_addresses_shapes_and_supports():
    g = AutoNormal(mixed, (N,), OBS)
    lay = g.layout
    assert [(s.name, s.shape, s.unconstrained_shape) for s in lay.sites] == SITES
    assert lay.addresses[-1] == ("obs", "z")
    assert lay.size == 0 + 1 + 1 + 2 + 2 + 1 + 4
    assert lay.observed == (("obs", "y"),)
    kinds = {s.name: type(s.transform).__name__ if s.transform is not None else None for s in lay.sites}
    assert kinds["mu"] is None and kinds["v"] is None and kinds["obs/z"] is None
    assert kinds["s"] == "ExpTransform" and kinds["p"] == "StickBreakingTransform"
    # the prototype point is Stan's uniform(-2, 2) in unconstrained space
    assert np.all(np.abs(lay.prototype) <= 2.0)


@ppl.gen
def ar_step(x_prev, _):
    x = dist.Normal(0.9 * x_prev, 0.5) @ "x"
    dist.Normal(x, 1.0) @ "y"
    return x, None


@ppl.gen
def state_space(T):
    s = dist.HalfNormal(1.0) @ "s"
    x0 = dist.Normal(0.0, s) @ "x0"
    return ppl.scan(ar_step, length=T)(x0, None) @ "steps"


def test_layout_of_a_scan_model_stacks_the_time_axis():
    obs = ppl.choices({("steps", "y"): jnp.sin(jnp.arange(10.0))})
    g, args = auto_normal(state_space, (10,), obs)
    assert [(s.name, s.shape) for s in g.layout.sites] == [("s", ()), ("x0", ()), ("steps/x", (10,))]
    assert np.isfinite(ppl.vi.elbo(state_space, g, obs).estimate(jax.random.key(1), (10,), args))


def random_params(guide, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(0.3 * rng.normal(size=jnp.shape(x)), jnp.float32), guide.init_params
    )


def density_check(g, params, seed, log_q_u):
    """Draw x from the guide; return (x, score, assess, expected) with expected = log q_U(u) - log|J|, one compilation."""

    @jax.jit
    def run(params):
        tr = g.simulate(jax.random.key(seed), (params,))
        x = tr.choices
        expected = log_q_u(params, g.layout.unconstrain(x)) - log_jacobian(g, x)
        return x, tr.score, g.assess(x, (params,))[0], expected

    x, score, assessed, expected = run(params)
    np.testing.assert_allclose(score, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(assessed, expected, rtol=1e-5, atol=1e-4)
    return x


def test_mean_field_density_is_normal_in_u_minus_log_jacobian():
    g = AutoNormal(mixed, (N,), OBS)

    def log_q_u(params, u):
        return sum(
            jnp.sum(Normal(params["loc"][s.name], jnp.exp(params["log_scale"][s.name])).log_prob(u[s.name]))
            for s in g.layout.sites
        )

    x = density_check(g, random_params(g, 1), 2, log_q_u)
    # every value lies in its support and the model accepts the draw
    assert float(x["s"]) > 0 and 0 < float(x["w"]) < 2
    np.testing.assert_allclose(np.sum(x["p"]), 1.0, rtol=1e-6)
    assert np.isfinite(mixed.assess(x | OBS, (N,))[0])


def test_full_rank_density_is_the_joint_normal_by_the_chain_rule(full_rank):
    g = full_rank
    params = random_params(g, 3)

    def log_q_u(params, u):
        return MultivariateNormal(params["loc"], scale_tril=g.scale_tril(params)).log_prob(g.layout.flatten(u))

    density_check(g, params, 4, log_q_u)
    L = np.tril(params["tril"], -1) + np.diag(np.exp(params["log_diag"]))
    np.testing.assert_allclose(g.covariance(params), L @ L.T, rtol=1e-5, atol=1e-6)


def test_low_rank_density_is_the_joint_normal_by_the_chain_rule():
    g = AutoLowRankMultivariateNormal(mixed, (N,), OBS, rank=2)
    assert g.rank == 2 and g.init_params["cov_factor"].shape == (g.layout.size, 2)
    params = random_params(g, 5)

    def joint(params):
        return LowRankMultivariateNormal(params["loc"], params["cov_factor"], jnp.exp(2 * params["log_diag"]))

    density_check(g, params, 6, lambda params, u: joint(params).log_prob(g.layout.flatten(u)))
    W, d = np.asarray(params["cov_factor"]), np.exp(2 * np.asarray(params["log_diag"]))
    np.testing.assert_allclose(g.covariance(params), W @ W.T + np.diag(d), rtol=1e-5, atol=1e-6)


def test_full_rank_draws_have_the_guide_covariance(full_rank):
    g = full_rank
    params = random_params(g, 7)
    n = 4000
    draw = jax.jit(jax.vmap(lambda k: flat_u(g, g.simulate(k, (params,)).choices)))
    u = np.asarray(draw(jax.random.split(jax.random.key(8), n)))
    L = np.tril(params["tril"], -1) + np.diag(np.exp(params["log_diag"]))
    cov = L @ L.T
    sd = np.sqrt(np.diag(cov))
    # 5 standard errors: se(mean_i) = sd_i / sqrt(n); se(cov_ij) = sqrt((cov_ii cov_jj + cov_ij^2) / n)
    assert np.all(np.abs(np.mean(u, 0) - params["loc"]) < 5 * sd / np.sqrt(n))
    se_cov = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / n)
    assert np.all(np.abs(np.cov(u.T) - cov) < 5 * se_cov)


def test_delta_guide_is_a_point_with_log_density_zero():
    g = AutoDelta(mixed, (N,), OBS, init_loc={"s": 2.0, "p": jnp.array([0.2, 0.3, 0.5])})
    params = g.init_params
    tr = g.simulate(jax.random.key(0), (params,))
    assert float(tr.score) == 0.0
    np.testing.assert_allclose(tr.choices["s"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(tr.choices["p"], [0.2, 0.3, 0.5], rtol=1e-5)
    median = g.median(params)
    np.testing.assert_allclose(median["s"], 2.0, rtol=1e-6)


def test_auto_normal_returns_guide_and_args():
    g, args = auto_normal(mixed, (N,), OBS, init_scale=0.5)
    assert isinstance(args, tuple) and len(args) == 1
    np.testing.assert_allclose(jnp.exp(args[0]["log_scale"]["v"]), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(args[0]["loc"]["v"], g.layout.prototype[4:6], rtol=1e-6)
    draw = check_guide(mixed, g, (N,), args, OBS)
    assert set(draw.addresses()) == set(g.layout.addresses)


@ppl.gen
def bounded_by_argument(upper):
    return dist.Uniform(0.0, upper) @ "x"


def test_support_from_an_argument_is_fixed_at_that_argument():
    g = AutoNormal(bounded_by_argument, (3.0,))
    draw = jax.jit(jax.vmap(lambda k: g.simulate(k, g.init_args).choices["x"]))
    xs = draw(jax.random.split(jax.random.key(0), 200))
    assert float(jnp.min(xs)) > 0.0 and float(jnp.max(xs)) < 3.0
    np.testing.assert_allclose(g.layout.sites[0].transform(jnp.asarray(50.0)), 3.0, rtol=1e-6)


# ------------------------------------------------------------------ Laplace


@ppl.gen
def regression(x):
    """Bayesian linear regression with known noise (a correlated Gaussian posterior), and a positive
    parameter the data do not inform, log s ~ Normal(0.3, 0.4): Gaussian in unconstrained space."""
    w = dist.Normal(0.0, 1.0) @ "w"
    b = dist.Normal(jnp.zeros(2), 2.0).to_event(1) @ "b"
    dist.LogNormal(0.3, 0.4) @ "s"
    mean = w * x + b[0] + b[1] * x**2
    return dist.Normal(mean, 0.5).to_event(1) @ "y"


@pytest.mark.slow
def test_laplace_matches_the_analytic_gaussian_posterior():
    x = jnp.linspace(-1.0, 1.0, 7)
    y = 0.7 * x - 0.3 + 0.2 * x**2 + jnp.array([0.1, -0.2, 0.05, 0.0, 0.15, -0.1, 0.02])
    g, (params,) = ppl.vi.auto_laplace(regression, (x,), {"y": y})
    assert isinstance(g, AutoLaplace)
    assert g.layout.names == ["w", "b", "s"]
    # exact posterior of theta = (w, b0, b1): precision = prior + A^T A / sigma^2; u = log s ~ N(0.3, 0.4^2)
    A = np.stack([x, np.ones_like(x), x**2], axis=1).astype(np.float64)
    prec = np.zeros((4, 4))
    prec[:3, :3] = np.diag([1.0, 0.25, 0.25]) + A.T @ A / 0.25
    prec[3, 3] = 1 / 0.16
    cov = np.linalg.inv(prec)
    mean = np.append(cov[:3, :3] @ (A.T @ np.asarray(y, np.float64) / 0.25), 0.3)
    # float32 mode search to gradient norm 1e-4 and a float32 Hessian: agreement to ~1e-4 relative
    np.testing.assert_allclose(params["loc"], mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(g.covariance(params), cov, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g.hessian, -prec, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(g.median(params)["s"], np.exp(0.3), rtol=1e-4)


# ------------------------------------------------------------------ bad input


@ppl.gen
def discrete_latent():
    k = dist.Bernoulli(0.3) @ "k"
    return dist.Normal(k, 1.0) @ "y"


@ppl.gen
def dependent_support():
    a = dist.Uniform(1.0, 2.0) @ "a"
    return dist.Uniform(0.0, a) @ "b"


def test_discrete_latent_is_refused_naming_the_address():
    with pytest.raises(GuideError, match=r"'k'.*discrete"):
        AutoNormal(discrete_latent, (), {"y": 0.5})


def test_support_depending_on_another_latent_is_refused():
    with pytest.raises(GuideError, match=r"support of 'b'.*changes with the values of other"):
        AutoNormal(dependent_support, ())


def test_no_latents_and_bad_init():
    with pytest.raises(GuideError, match="no latent choices"):
        AutoNormal(discrete_latent, (), {"y": 0.5, "k": 1})
    with pytest.raises(GuideError, match=r"init_loc gives a value at .*'nope'"):
        AutoNormal(mixed, (N,), OBS, init_loc={"nope": 1.0})
    with pytest.raises(GuideError, match=r"init_loc at 'v' has shape \(3,\), expected \(2,\)"):
        AutoNormal(mixed, (N,), OBS, init_loc={"v": jnp.zeros(3)})


def test_wrong_parameters_are_named():
    g = AutoNormal(mixed, (N,), OBS)
    params = g.init_params
    params["loc"]["v"] = jnp.zeros(3)
    with pytest.raises(GuideError, match=r"\['loc'\]\['v'\] has shape \(3,\), expected \(2,\)"):
        g.simulate(jax.random.key(0), (params,))
    del params["loc"]["v"]
    with pytest.raises(GuideError, match=r"no entry params\['loc'\]\['v'\]"):
        g.simulate(jax.random.key(0), (params,))


@ppl.gen
def two_latents():
    a = dist.Normal(0.0, 1.0) @ "a"
    b = dist.Normal(a, 1.0) @ "b"
    return dist.Normal(b, 1.0) @ "y"


@ppl.gen
def guide_missing_b(m):
    dist.Normal(m, 1.0) @ "a"


@ppl.gen
def guide_extra(m):
    dist.Normal(m, 1.0) @ "a"
    dist.Normal(m, 1.0) @ "b"
    dist.Normal(m, 1.0) @ "c"


@ppl.gen
def guide_samples_observed(m):
    dist.Normal(m, 1.0) @ "a"
    dist.Normal(m, 1.0) @ "b"
    dist.Normal(m, 1.0) @ "y"


def test_check_guide_names_missing_and_extra_addresses():
    obs = {"y": 0.4}
    with pytest.raises(MissingChoiceError, match=r"no choice at 'b', a latent choice of two_latents"):
        check_guide(two_latents, guide_missing_b, (), (0.0,), obs)
    with pytest.raises(UnvisitedConstraintError, match=r"never visits.*'c'"):
        check_guide(two_latents, guide_extra, (), (0.0,), obs)
    with pytest.raises(UnvisitedConstraintError, match=r"samples 'y', which is observed"):
        check_guide(two_latents, guide_samples_observed, (), (0.0,), obs)
