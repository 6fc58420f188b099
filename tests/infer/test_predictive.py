"""Prior and posterior predictive draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import InferenceError

S0, S = 2.0, 1.0  # prior sd of mu, noise sd


@ppl.gen
def regression(x):
    mu = dist.Normal(0.0, S0) @ "mu"
    ppl.deterministic("mean", mu * x)
    return dist.Normal(mu * x, S) @ "y"


X = jnp.array([1.0, 2.0, -1.0])
Y = jnp.array([1.5, 2.5, -0.5])


def test_prior_predictive_moments() -> None:
    n = 4000
    pp = ppl.infer.predictive(jax.random.key(0), regression, (X,), num_samples=n)
    assert set(pp) == {"mu", "y", "mean"}
    assert pp["y"].shape == (n, 3) and pp["mu"].shape == (n,)
    var = S0**2 * np.asarray(X) ** 2 + S**2  # Var y_i = x_i^2 S0^2 + S^2
    # 4 standard errors: se(mean) = sd / sqrt(n), se(var) = var * sqrt(2 / n) (normal)
    assert np.all(np.abs(pp["y"].mean(0)) <= 4 * np.sqrt(var / n))
    assert np.all(np.abs(pp["y"].var(0) - var) <= 4 * var * np.sqrt(2 / n))
    np.testing.assert_allclose(pp["mean"], pp["mu"][:, None] * np.asarray(X)[None], rtol=1e-6)


@pytest.fixture(scope="module")
def posterior():
    return ppl.infer.nuts(
        jax.random.key(1), regression, (X,), {"y": Y}, num_warmup=300, num_samples=1000, progress_bar=False
    )


def test_posterior_predictive_from_a_result(posterior) -> None:
    x_new = jnp.array([0.5, 3.0])
    pp = ppl.infer.predictive(jax.random.key(2), regression, (x_new,), posterior)
    assert pp["y"].shape == (4, 1000, 2)
    np.testing.assert_array_equal(pp["mu"], posterior.samples["mu"])  # latent draws kept
    # exact posterior predictive: y_new | y ~ N(m x_new, x_new^2 v + S^2)
    xs = np.asarray(X)
    prec = 1 / S0**2 + np.sum(xs**2) / S**2
    m, v = np.sum(xs * np.asarray(Y)) / S**2 / prec, 1 / prec
    x_new = np.asarray(x_new)
    mean, var = m * x_new, x_new**2 * v + S**2
    y = pp["y"].reshape(-1, 2)
    # the predictive draws are as correlated as the mu draws: use a conservative effective size
    n_eff = 1000.0
    assert np.all(np.abs(y.mean(0) - mean) <= 4 * np.sqrt(var / n_eff))
    assert np.all(np.abs(y.var(0) - var) <= 4 * var * np.sqrt(2 / n_eff))


def test_posterior_predictive_from_a_dict_with_subsampling(posterior) -> None:
    draws = {"mu": posterior.samples["mu"], "mean": posterior.samples["mean"]}  # deterministic sites are recomputed
    pp = ppl.infer.predictive(jax.random.key(3), regression, (X,), draws, num_samples=100)
    assert pp["y"].shape == (100, 3) and pp["mean"].shape == (100, 3)
    assert np.all(np.isin(pp["mu"], posterior.samples["mu"]))
    flat = {"mu": posterior.samples["mu"].reshape(-1)}
    assert ppl.infer.predictive(jax.random.key(3), regression, (X,), flat)["y"].shape == (4000, 3)


def test_resample_draws_chosen_latents_afresh(posterior) -> None:
    pp = ppl.infer.predictive(jax.random.key(4), regression, (X,), posterior, resample="mu")
    assert not np.any(pp["mu"] == posterior.samples["mu"])
    assert abs(float(pp["mu"].std()) - S0) < 0.1  # from the prior again


def test_predictive_errors(posterior) -> None:
    with pytest.raises(InferenceError, match="num_samples"):
        ppl.infer.predictive(jax.random.key(0), regression, (X,))
    with pytest.raises(InferenceError, match=r"'w', which is not a choice"):
        ppl.infer.predictive(jax.random.key(0), regression, (X,), {"w": np.zeros(10)})
    with pytest.raises(InferenceError, match=r"does not end in the choice's shape"):
        ppl.infer.predictive(jax.random.key(0), regression, (X,), {"y": np.zeros((10, 2))})
    with pytest.raises(InferenceError, match=r"num_samples must be an int in \[1, 4000\]"):
        ppl.infer.predictive(jax.random.key(0), regression, (X,), posterior, num_samples=5000)
