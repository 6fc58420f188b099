"""Initialisation strategies by name: ``init="prior"``, ``"median"``, ``"uniform"``, ``"multistart"``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import InferenceError
from ppl.infer.mcmc.initialization import MEDIAN_DRAWS, named_init
from ppl.infer.mcmc.structure import make_problem, structure

Y = jnp.array([0.8, 1.4, 0.3])


@ppl.gen
def model():
    mu = dist.Normal(2.0, 1.0) @ "mu"
    s = dist.LogNormal(0.0, 0.5) @ "s"
    dist.Normal(mu, s).expand([3]) @ "y"


def starts(init, key, chains):
    problem = make_problem(model, (), {"y": Y})
    return named_init(problem, structure(problem), init, key, chains, "test")


def test_prior_starts_are_prior_draws_one_per_chain_seeded_by_the_key():
    cm = starts("prior", jax.random.key(0), 400)
    mu, s = np.asarray(cm["mu"]), np.asarray(cm["s"])
    assert mu.shape == (400,) and s.shape == (400,)
    # prior moments (not the posterior: the observations do not move latent draws of generate):
    # 4 standard errors of 400 draws
    assert abs(mu.mean() - 2.0) < 4 * 1.0 / math.sqrt(400)
    assert abs(np.log(s).mean()) < 4 * 0.5 / math.sqrt(400)
    again = starts("prior", jax.random.key(0), 400)
    other = starts("prior", jax.random.key(1), 400)
    np.testing.assert_array_equal(np.asarray(again["mu"]), mu)
    assert not np.allclose(np.asarray(other["mu"]), mu)


def test_median_start_is_the_median_of_prior_draws_for_every_chain():
    cm = starts("median", jax.random.key(2), 4)
    mu = np.asarray(cm["mu"])
    assert mu.shape == (4,) and np.all(mu == mu[0])
    # the median of 15 N(2, 1) draws: sd about 1.2533 / sqrt(15); 4 of those
    assert abs(mu[0] - 2.0) < 4 * 1.2533 / math.sqrt(MEDIAN_DRAWS)
    assert float(np.asarray(cm["s"])[0]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("init", ["prior", "median", "uniform", "multistart"])
def test_every_strategy_runs_nuts_to_the_same_posterior(init):
    r = ppl.infer.nuts(jax.random.key(3), model, (), {"y": Y}, init=init, num_warmup=300, num_samples=500,
                       progress_bar=False)  # fmt: skip
    mu = r.samples["mu"]
    # against a long reference run of the default initialisation: 4 combined standard errors
    ref = reference()
    se = math.hypot(mu.std() / math.sqrt(float(ppl.diagnostics.ess_mean(mu))), ref[1])
    assert abs(mu.mean() - ref[0]) < 4 * se


_REF: list = []


def reference() -> tuple[float, float]:
    if not _REF:
        r = ppl.infer.nuts(jax.random.key(99), model, (), {"y": Y}, num_warmup=500, num_samples=2000,
                           progress_bar=False)  # fmt: skip
        mu = r.samples["mu"]
        _REF.extend([float(mu.mean()), float(mu.std() / math.sqrt(float(ppl.diagnostics.ess_mean(mu))))])
    return _REF[0], _REF[1]


def test_run_mcmc_accepts_prior_and_median_and_refuses_unknown_names():
    kernel = ppl.infer.kernels.cycle(ppl.infer.kernels.mh(ppl.select("mu")), ppl.infer.kernels.mh(ppl.select("s")))
    for init in ("prior", "median", "uniform"):
        r = ppl.infer.run_mcmc(jax.random.key(4), kernel, model, (), {"y": Y}, init=init, num_warmup=10,
                               num_samples=10, progress_bar=False)  # fmt: skip
        assert r.samples["mu"].shape == (4, 10)
    with pytest.raises(InferenceError, match="not an initialisation strategy"):
        ppl.infer.nuts(jax.random.key(0), model, (), {"y": Y}, init="to_median")
    with pytest.raises(ppl.errors.ArgumentValueError, match="gradient runners"):
        ppl.infer.run_mcmc(jax.random.key(0), kernel, model, (), {"y": Y}, init="multistart")
