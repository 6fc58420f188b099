"""Every posteriordb posterior in tests/data/posteriordb, sampled with ppl.infer.nuts.

The check is the one the folder's README prescribes: with ``ESS_hat`` the
effective sample size of our draws for the mean (arviz, method="mean"),

    z_mean = (mean_hat - mean_ref) / sqrt(mcse_mean_ref^2 + sd_ref^2 / ESS_hat)
    z_sd   = (sd_hat - sd_ref) / sqrt(mcse_sd_ref^2 + mcse_sd_hat^2)

and every parameter must have |z_mean| <= 4 and |z_sd| <= 4 (for a correct
sampler the z-scores are about standard normal: |z| > 4 almost never
happens by chance); R-hat must be <= 1.01. 4 chains x (1000 warm-up + 1000
draws), NumPyro/Stan defaults except where the README says posteriordb
needed more (diamonds: dense mass matrix; gp_pois_regr: target_accept 0.99),
4 x 2000 draws for the four regressions whose draws mix slowly (so that
R-hat's own noise stays below the 1.01 threshold), and component means
started at data quantiles for the mixture (which has a rare local mode);
see ``posteriordb_models.setup``.

Precision: float32, except gp_pois_regr, whose Stan program adds a jitter of
1e-10 to a nearly singular 11 x 11 covariance before its Cholesky factor:
that needs float64 (``jax.enable_x64`` for that test only).
"""

from __future__ import annotations

import contextlib
import warnings

import arviz as az
import jax
import numpy as np
import pytest

import ppl
from tests.infer import posteriordb_models as P

FLOAT64 = {"gp_pois_regr-gp_pois_regr"}


def z_scores(x: np.ndarray, ref: dict) -> tuple[float, float]:
    """README's z-scores of the pooled mean and sd of draws ``x`` shaped (chain, draw)."""
    ess = float(az.ess(x, method="mean"))
    z_mean = (x.mean() - ref["mean"]) / np.sqrt(ref["mcse_mean"] ** 2 + ref["sd"] ** 2 / ess)
    mcse_sd = float(az.mcse(x, method="sd"))
    z_sd = (x.std(ddof=1) - ref["sd"]) / np.sqrt(ref["mcse_sd"] ** 2 + mcse_sd**2)
    return float(z_mean), float(z_sd)


#: half of the posteriors (by run time) here, the other half in test_posteriordb_more.py, so that the
#: two test workers (pytest-xdist, one file per worker) share them
FIRST_HALF = [
    "gp_pois_regr-gp_pois_regr",
    "diamonds-diamonds",
    "kidiq-kidscore_momiq",
    "low_dim_gauss_mix-low_dim_gauss_mix",
    "eight_schools-eight_schools_noncentered",
]
SECOND_HALF = [n for n in P.NAMES if n not in FIRST_HALF]


@pytest.mark.slow
@pytest.mark.parametrize("name", FIRST_HALF)
def test_posteriordb_nuts_matches_reference(name: str) -> None:
    check_posterior(name)


def check_posterior(name: str) -> None:
    """NUTS on one posteriordb posterior against its reference (the module docstring's check)."""
    precision = jax.enable_x64(True) if name in FLOAT64 else contextlib.nullcontext()
    with precision:
        model, args, observations, options = P.setup(name)
        _, ref = P.load(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ppl.infer.DivergenceWarning)  # counted and checked below
            result = ppl.infer.nuts(jax.random.key(0), model, args, observations, progress_bar=False, **options)
    draws = P.reference_draws(result.samples, ref)
    assert set(draws) == set(ref["parameters"])
    failures = []
    for pname, x in draws.items():
        assert x.shape == (4, options.get("num_samples", 1000)), pname
        z_mean, z_sd = z_scores(x, ref["parameters"][pname])
        rhat = float(az.rhat(x))
        if abs(z_mean) > 4 or abs(z_sd) > 4 or rhat > 1.01:
            failures.append(f"{pname}: z_mean={z_mean:.2f} z_sd={z_sd:.2f} rhat={rhat:.4f}")
    assert not failures, f"{name}: " + "; ".join(failures)
    # A correct sampler on these posteriors diverges rarely if at all (eight schools: a few at 0.8).
    assert result.num_divergences <= 10, f"{name}: {result.num_divergences} divergent transitions"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [14, 45])
def test_arma11_default_init_matches_reference_means(seed: int) -> None:
    """arma11 with the default (multi-start) initialisation: every chain in the main mode.

    With Stan's uniform(-2, 2) rule alone (``init="uniform"``), seeds 14 and
    45 each leave one chain of four in the region where the MA recursion
    explodes (|theta| > 1: a log density of -1e20 and worse that NUTS does
    not leave), and the pooled means miss the reference by 9-50 z-scores
    (docs/benchmarks.md, "arma11: multi-start initialisation").
    """
    name = "arma-arma11"
    model, args, observations, options = P.setup(name)
    _, ref = P.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl.infer.DivergenceWarning)
        result = ppl.infer.nuts(jax.random.key(seed), model, args, observations, progress_bar=False, **options)
    draws = P.reference_draws(result.samples, ref)
    for pname, x in draws.items():
        p = ref["parameters"][pname]
        # every chain near the reference mean (a stuck chain sits tens of sds away)
        assert np.all(np.abs(x.mean(axis=1) - p["mean"]) < 6 * p["sd"]), (pname, x.mean(axis=1), p["mean"])
        z_mean, _ = z_scores(x, p)
        assert abs(z_mean) <= 4, (pname, z_mean)
