"""MH, MALA, HMC and NUTS runners recover exact conjugate posteriors.

One model holds three independent conjugate pairs, so one run (one compiled
program) per algorithm checks all three posteriors:

* normal-normal:  mu ~ N(1, 2),  y_i ~ N(mu, 1.5)      -> mu | y normal
* beta-binomial:  p ~ Beta(2, 3),  k ~ Binomial(20, p)  -> p | k ~ Beta(2 + k, 3 + 20 - k)
* gamma-poisson:  lam ~ Gamma(3, 2),  c_i ~ Poisson(lam) -> lam | c ~ Gamma(3 + sum c, 2 + n)

Tolerances come from the Monte Carlo standard error of each estimate with
our ESS: |mean_hat - mean| <= 4 sd / sqrt(ESS) and
|var_hat - var| <= 4 var sqrt((kurtosis_excess + 2) / ESS) (the standard
error of a sample variance), ESS the bulk ESS of the draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.diagnostics import ess_bulk

Y = np.array([2.1, 0.3, 1.7, 2.9, 1.2])
K, N_TRIALS = 7, 20
COUNTS = np.array([3, 1, 4, 2, 2, 5])


@ppl.gen
def conjugate(n_trials):
    mu = dist.Normal(1.0, 2.0) @ "mu"
    dist.Normal(jnp.full(Y.shape, mu), 1.5) @ "y"
    p = dist.Beta(2.0, 3.0) @ "p"
    dist.Binomial(n_trials, p) @ "k"
    lam = dist.Gamma(3.0, 2.0) @ "lam"
    dist.Poisson(jnp.full(COUNTS.shape, lam)) @ "c"


OBS = {"y": jnp.asarray(Y, jnp.float32), "k": jnp.asarray(K), "c": jnp.asarray(COUNTS)}


def exact_posteriors() -> dict:
    prec = 1 / 2.0**2 + len(Y) / 1.5**2
    mean = (1.0 / 2.0**2 + Y.sum() / 1.5**2) / prec
    return {
        "mu": stats.norm(mean, prec**-0.5),
        "p": stats.beta(2 + K, 3 + N_TRIALS - K),
        "lam": stats.gamma(3 + COUNTS.sum(), scale=1 / (2 + len(COUNTS))),
    }


def assert_matches(draws: np.ndarray, exact) -> None:
    ess = float(ess_bulk(draws))
    mean, var = exact.mean(), exact.var()
    kurt = float(exact.stats(moments="k"))
    x = draws.reshape(-1)
    # 4 standard errors: se(mean) = sd / sqrt(ess), se(var) = var * sqrt((kurtosis_excess + 2) / ess)
    assert abs(x.mean() - mean) <= 4 * np.sqrt(var / ess), (x.mean(), mean, ess)
    assert abs(x.var() - var) <= 4 * var * np.sqrt((kurt + 2) / ess), (x.var(), var, ess)


RUNNERS = {
    "nuts": ppl.infer.nuts,
    "hmc": ppl.infer.hmc,
    "mala": ppl.infer.mala,
    "mh": ppl.infer.mh,
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(RUNNERS))
def test_runner_recovers_conjugate_posteriors(algorithm: str) -> None:
    result = RUNNERS[algorithm](
        jax.random.key(11), conjugate, (N_TRIALS,), OBS, num_warmup=500, num_samples=1000, progress_bar=False
    )
    assert set(result.samples) == {"mu", "p", "lam"}
    for name, exact in exact_posteriors().items():
        draws = result.samples[name]
        assert draws.shape == (4, 1000)
        assert ess_bulk(draws) > 100, (name, ess_bulk(draws))  # the chains mix
        assert_matches(draws, exact)
    assert result.num_divergences == 0
