"""Posterior draws, posterior predictive and ArviZ export from a guide."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.diagnostics.arviz import group_names
from ppl.errors import PPLError


@ppl.gen
def model(x):
    w = dist.Normal(0.0, 1.0) @ "w"
    s = dist.HalfNormal(1.0) @ "s"
    ppl.deterministic("w2", 2.0 * w)
    return dist.Normal(w * x, s).to_event(1) @ "y"


X = jnp.linspace(-1.0, 1.0, 5)
OBS = {"y": 0.8 * X + 0.1}
GUIDE = ppl.vi.AutoNormal(model, (X,), OBS)
PARAMS = {
    "loc": {"w": jnp.asarray(0.8), "s": jnp.asarray(np.log(0.2))},
    "log_scale": {"w": jnp.asarray(np.log(0.1)), "s": jnp.asarray(np.log(0.05))},
}
S = 2000


@pytest.fixture(scope="module")
def draws():
    return ppl.vi.sample_posterior(jax.random.key(0), GUIDE, (PARAMS,), S)


def test_sample_posterior_draws_from_the_guide(draws):
    assert set(draws) == {"w", "s"}
    assert draws["w"].shape == (S,) and draws["s"].shape == (S,)
    # 4 standard errors: se = sd / sqrt(S)
    assert abs(draws["w"].mean() - 0.8) < 4 * 0.1 / np.sqrt(S)
    assert abs(draws["w"].std() - 0.1) < 4 * 0.1 / np.sqrt(2 * S)
    # s = exp(u), u ~ N(log 0.2, 0.05): log s is normal
    assert abs(np.log(draws["s"]).mean() - np.log(0.2)) < 4 * 0.05 / np.sqrt(S)
    assert np.all(draws["s"] > 0)


@pytest.fixture(scope="module")
def pred():
    return ppl.vi.posterior_predictive(jax.random.key(1), model, (X,), GUIDE, (PARAMS,), S)


def test_posterior_predictive_runs_the_model_on_each_draw(pred):
    assert pred["y"].shape == (S, 5) and pred["w2"].shape == (S,)
    np.testing.assert_allclose(pred["w2"], 2.0 * pred["w"], rtol=1e-6)
    # y | w, s ~ Normal(w x, s): standardised residuals are N(0, 1); 4 standard errors
    z = (pred["y"] - pred["w"][:, None] * X) / pred["s"][:, None]
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.std() - 1.0) < 4 / np.sqrt(2 * z.size)


def test_to_arviz_groups(draws, pred):
    idata = ppl.vi.to_arviz(draws, predictive=pred, observations=OBS)
    assert group_names(idata) >= {"posterior", "posterior_predictive", "observed_data"}
    assert idata.posterior["w"].shape == (1, S)
    assert "w2" in idata.posterior  # the model's deterministic site joins the posterior
    assert idata.posterior_predictive["y"].shape[:2] == (1, S)
    np.testing.assert_allclose(idata.observed_data["y"], OBS["y"])
    with pytest.raises(PPLError, match="no entry for the observed"):
        ppl.vi.to_arviz(draws, predictive={"w2": pred["w2"]}, observations=OBS)


def test_bad_arguments():
    with pytest.raises(PPLError, match="num_samples must be a positive int"):
        ppl.vi.sample_posterior(jax.random.key(0), GUIDE, (PARAMS,), 0)
    with pytest.raises(PPLError, match="guide_args must be the tuple"):
        ppl.vi.sample_posterior(jax.random.key(0), GUIDE, PARAMS, 10)
    with pytest.raises(PPLError, match="needs the guide"):
        ppl.vi.sample_posterior(jax.random.key(0), model.fn, (PARAMS,), 10)
