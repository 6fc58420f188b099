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


@pytest.mark.slow
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


# ------------------------------------------- choices made in some branches only
@ppl.gen
def low():
    return dist.Normal(-2.0, 1.0) @ "x"


@ppl.gen
def high():
    return dist.Normal(2.0, 1.0) @ "x"


@ppl.gen
def other():
    return dist.Normal(2.0, 1.0) @ "z"


@ppl.gen
def mixture_model():
    x = ppl.mixture(low, high)(jnp.zeros(2)) @ "m"  # x ~ N(-2, 1) or N(2, 1), equal weights
    dist.Normal(x, 1.0) @ "y"


@ppl.gen
def branch_specific():
    i = dist.Bernoulli(0.5) @ "i"
    x = ppl.switch(i, low, other)() @ "s"  # ("s", "x") when i = 0, ("s", "z") when i = 1
    dist.Normal(x, 1.0) @ "y"


def check_normal(draws: np.ndarray, mean: float, var: float) -> None:
    # 4 standard errors: se(mean) = sd / sqrt(n), se(var) = var * sqrt(2 / n) (normal draws)
    n = len(draws)
    assert abs(draws.mean() - mean) <= 4 * np.sqrt(var / n), (draws.mean(), mean)
    assert abs(draws.var() - var) <= 4 * var * np.sqrt(2 / n), (draws.var(), var)


def test_prior_predictive_of_a_mixture() -> None:
    n = 4000
    pp = ppl.infer.predictive(jax.random.key(5), mixture_model, (), num_samples=n)
    assert set(pp) == {"m/component", "m/value/x", "y"}
    k, x = pp["m/component"], pp["m/value/x"]
    assert k.shape == x.shape == pp["y"].shape == (n,)
    # both components make ("m", "value", "x"): present in every draw
    assert np.all(pp.masks.get("m/value/x", True))
    assert abs(k.mean() - 0.5) <= 4 * np.sqrt(0.25 / n)
    check_normal(x[k == 0], -2.0, 1.0)
    check_normal(x[k == 1], 2.0, 1.0)
    check_normal(pp["y"], 0.0, 4.0 + 1.0 + 1.0)  # Var y = Var E[x | k] + E Var[x | k] + 1


def test_prior_predictive_of_a_switch_reports_which_draws_made_each_choice() -> None:
    n = 4000
    pp = ppl.infer.predictive(jax.random.key(6), branch_specific, (), num_samples=n)
    i = pp["i"]
    assert set(pp.masks) == {"s/x", "s/z"}
    np.testing.assert_array_equal(pp.masks["s/x"], i == 0)
    np.testing.assert_array_equal(pp.masks["s", "z"], i == 1)  # indexable by address too
    # values where made, NaN where the other branch ran
    assert np.all(np.isnan(pp["s/x"][i == 1])) and np.all(np.isnan(pp["s/z"][i == 0]))
    check_normal(pp["s/x"][i == 0], -2.0, 1.0)
    check_normal(pp["s/z"][i == 1], 2.0, 1.0)
    check_normal(pp["y"][i == 0], -2.0, 2.0)
    check_normal(pp["y"][i == 1], 2.0, 2.0)


def test_posterior_predictive_of_a_mixture_from_exact_draws() -> None:
    # closed form given y = 1: P(k = 1 | y) from N(y; -/+2, sqrt 2), x | k, y ~ N((mu_k + y) / 2, sqrt(1/2));
    # posterior predictive y_new | y ~ mixture of N((mu_k + y) / 2, 1/2 + 1)
    y, n = 1.0, 4000
    lik = np.exp(-0.25 * (y - np.array([-2.0, 2.0])) ** 2)
    p1 = lik[1] / lik.sum()
    rng = np.random.default_rng(0)
    k = (rng.uniform(size=n) < p1).astype(np.int32)
    x = (np.where(k == 1, 2.0, -2.0) + y) / 2 + np.sqrt(0.5) * rng.normal(size=n)
    draws = {"m/component": k, "m/value/x": x.astype(np.float32)}
    pp = ppl.infer.predictive(jax.random.key(7), mixture_model, (), draws)
    np.testing.assert_array_equal(pp["m/component"], k)  # latent draws kept
    np.testing.assert_allclose(pp["m/value/x"], x, rtol=1e-6)
    mean_x = p1 * (2.0 + y) / 2 + (1 - p1) * (-2.0 + y) / 2
    var_x = 0.5 + p1 * (1 - p1) * 2.0**2
    check_normal(pp["y"] - x, 0.0, 1.0)  # y_new | x ~ N(x, 1), exactly
    assert abs(pp["y"].mean() - mean_x) <= 4 * np.sqrt((var_x + 1.0) / n)


def test_posterior_predictive_takes_masked_draws_back() -> None:
    # a predictive result with masks is a valid posterior: absent entries are no constraints, present ones kept
    prior = ppl.infer.predictive(jax.random.key(8), branch_specific, (), num_samples=500)
    again = ppl.infer.predictive(jax.random.key(9), branch_specific, (), prior)
    np.testing.assert_array_equal(again["i"], prior["i"])
    for name in ("s/x", "s/z"):
        np.testing.assert_array_equal(again.masks[name], prior.masks[name])
        present = prior.masks[name]
        np.testing.assert_array_equal(again[name][present], prior[name][present])
    # the same draws as a dict of ppl.masked values, subsampled
    draws = {
        "i": prior["i"],
        "s/x": ppl.masked(np.nan_to_num(prior["s/x"]), prior.masks["s/x"]),
        "s/z": ppl.masked(np.nan_to_num(prior["s/z"]), prior.masks["s/z"]),
    }
    sub = ppl.infer.predictive(jax.random.key(10), branch_specific, (), draws, num_samples=100)
    assert sub["i"].shape == sub.masks["s/x"].shape == (100,)
    np.testing.assert_array_equal(sub.masks["s/x"], sub["i"] == 0)
    assert np.all(np.isin(sub["s/x"][sub["i"] == 0], prior["s/x"][prior["i"] == 0]))
