"""ppl.log_likelihood and the ArviZ log_likelihood group, against closed forms and NumPyro's log_likelihood."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pytest
from numpyro.infer import log_likelihood as numpyro_log_likelihood

import ppl
from ppl import dist
from ppl.diagnostics.arviz import group_names
from ppl.errors import InferenceError


@ppl.gen
def elem(x):
    return dist.Normal(x, 1.0) @ "z"


@ppl.gen
def step(c, y_scale):
    x = dist.Normal(0.5 * c, 1.0) @ "x"
    dist.Normal(x, y_scale) @ "y"
    return x, None


@ppl.gen
def model(x):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    s = dist.HalfNormal(1.0) @ "s"
    dist.Normal(mu + x, s) @ "y"
    ppl.vmap(elem)(mu + jnp.arange(3.0)) @ "ys"
    dist.Normal(mu, 1.0).expand([2]).to_event(1) @ "pair"  # one observation of two numbers
    ppl.scan(step)(mu, jnp.full(4, 0.5)) @ "steps"


X = jnp.linspace(0.0, 1.0, 5)
OBS = {
    "y": 0.5 * X,
    "ys": {"z": jnp.array([0.1, 0.9, 2.1])},
    "pair": jnp.array([0.3, -0.2]),
    "steps": {"y": jnp.array([0.2, 0.4, -0.1, 0.0])},
}


def test_pointwise_values_are_the_closed_form_densities():
    rng = np.random.default_rng(0)
    draws = {
        "mu": rng.normal(size=(2, 3)),
        "s": rng.uniform(0.5, 2.0, size=(2, 3)),
        "steps/x": rng.normal(size=(2, 3, 4)),
    }
    ll = ppl.log_likelihood(model, (X,), draws, OBS)
    mu, s, xs = (np.asarray(draws[k], np.float32) for k in ("mu", "s", "steps/x"))
    expected = {
        "y": nd.Normal(mu[..., None] + X, s[..., None]).log_prob(0.5 * X),
        "ys/z": nd.Normal(mu[..., None] + jnp.arange(3.0), 1.0).log_prob(OBS["ys"]["z"]),
        "pair": nd.Normal(mu[..., None], 1.0).log_prob(OBS["pair"]).sum(-1),
        "steps/y": nd.Normal(xs, 0.5).log_prob(OBS["steps"]["y"]),
    }
    assert set(ll) == set(expected)
    for k, v in expected.items():
        assert ll[k].shape == v.shape, k
        np.testing.assert_allclose(ll[k], v, rtol=1e-5, atol=1e-5, err_msg=k)


@ppl.gen
def regression(x):
    a = dist.Normal(0.0, 2.0) @ "a"
    b = dist.Normal(0.0, 2.0) @ "b"
    sigma = dist.HalfNormal(1.0) @ "sigma"
    dist.Normal(a + b * x, sigma) @ "y"


def numpyro_regression(x, y=None):
    a = numpyro.sample("a", nd.Normal(0.0, 2.0))
    b = numpyro.sample("b", nd.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", nd.Normal(a + b * x, sigma), obs=y)


def test_mcmc_to_arviz_log_likelihood_agrees_with_numpyro_and_feeds_loo():
    import arviz as az

    x = jnp.linspace(-1.0, 1.0, 20)
    y = 0.3 + 0.8 * x + 0.4 * jax.random.normal(jax.random.key(0), (20,))
    r = ppl.infer.nuts(jax.random.key(1), regression, (x,), {"y": y}, num_warmup=200, num_samples=100,
                       progress_bar=False)  # fmt: skip
    data = r.to_arviz(log_likelihood=True)
    assert "log_likelihood" in group_names(data)
    ours = np.asarray(data["log_likelihood"]["y"])
    assert ours.shape == (4, 100, 20)
    theirs = numpyro_log_likelihood(numpyro_regression, {k: r.samples[k].reshape(-1) for k in "a b sigma".split()},
                                    x, y=y)["y"]  # fmt: skip
    np.testing.assert_allclose(ours.reshape(400, 20), theirs, rtol=1e-4, atol=1e-4)
    elpd = az.loo(data)
    value = float(getattr(elpd, "elpd_loo", getattr(elpd, "elpd", np.nan)))
    assert np.isfinite(value) and value < 0


def test_bad_inputs_are_named():
    draws = {"mu": np.zeros((2, 3)), "s": np.ones((2, 3))}
    with pytest.raises(InferenceError, match="no draws at"):
        ppl.log_likelihood(model, (X,), draws, OBS)
    with pytest.raises(InferenceError, match="no observations"):
        ppl.log_likelihood(model, (X,), draws, {})
    with pytest.raises(InferenceError, match="shape"):
        ppl.log_likelihood(regression, (X,), {"a": np.zeros(3), "b": np.zeros(4), "sigma": np.ones(3)}, {"y": X})


@ppl.gen
def conjugate():
    mu = dist.Normal(0.0, 1.0) @ "mu"
    dist.Normal(mu, 0.5).expand([3]) @ "y"


def test_particles_to_arviz_resample_to_the_posterior():
    ys = jnp.array([0.4, 1.1, 0.7])
    pc = ppl.infer.importance(jax.random.key(2), conjugate, (), {"y": ys}, particles=20_000)
    data = pc.to_arviz(jax.random.key(3))
    assert {"posterior", "observed_data"} <= group_names(data)
    mu = np.asarray(data["posterior"]["mu"])
    assert mu.shape == (1, 20_000)
    np.testing.assert_allclose(np.asarray(data["observed_data"]["y"]), ys)
    # exact posterior N(m, v): v = 1 / (1 + 3 / 0.25), m = v * sum(y) / 0.25
    v = 1.0 / (1.0 + 3 / 0.25)
    m = v * float(ys.sum()) / 0.25
    ess = float(pc.ess)
    # 4 standard errors of a self-normalised mean with the weights' ESS (resampling adds at most as much again)
    assert abs(mu.mean() - m) < 4 * np.sqrt(2 * v / ess)
    attrs = data.attrs if hasattr(data, "attrs") else data["posterior"].attrs
    assert attrs["log_marginal_likelihood"] == pytest.approx(float(pc.log_marginal_likelihood()))
