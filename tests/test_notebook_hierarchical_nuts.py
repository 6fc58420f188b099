"""Execute notebooks/hierarchical_nuts.ipynb and check what it reports."""

import json
from pathlib import Path

import pytest

from .notebooks import run_notebook_summary

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "posteriordb" / "eight_schools-eight_schools_noncentered" / "reference.json"


@pytest.fixture(scope="module")
def summary():
    return run_notebook_summary("hierarchical_nuts.ipynb")


def test_centred_funnel_diverges_and_non_centred_fixes_it(summary):
    div = summary["divergences"]
    assert div["centred"] >= 10  # the funnel: dozens in our runs
    assert div["non_centred"] <= 5
    # the funnel makes the centred chains sticky in tau: a fraction of the non-centred ESS
    assert summary["ess_tau"]["centred"] < 0.5 * summary["ess_tau"]["non_centred"]
    assert 0.0 <= summary["p_tau_below_1"]["centred"] <= 1.0
    assert summary["max_rhat_non_centred"] < 1.01
    assert summary["min_ess_non_centred"] > 400


def test_non_centred_posterior_matches_posteriordb(summary):
    ref = json.loads(REFERENCE.read_text())["parameters"]["mu"]
    # 4 standard errors of the difference of two Monte Carlo means
    se = (summary["mu_mcse"] ** 2 + ref["mcse_mean"] ** 2) ** 0.5
    assert abs(summary["mu_mean"] - ref["mean"]) <= 4 * se


def test_predictive_check_and_arviz_groups(summary):
    assert {"posterior", "sample_stats", "observed_data", "posterior_predictive"} <= set(summary["ppc_groups"])
    assert 0.05 < summary["p_max"] < 0.95
