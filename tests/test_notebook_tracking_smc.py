"""Execute notebooks/tracking_smc.ipynb (Nile level: particle filter, proposal, rejuvenation) and check its summary."""

import pytest

from .notebooks import run_notebook_summary


@pytest.fixture(scope="module")
def summary():
    return run_notebook_summary("tracking_smc.ipynb")


def test_particle_filter_agrees_with_the_kalman_filter(summary):
    # log Z_hat at N=2000, T=100 on this model has sd ~0.2 (replicate runs); 5 sd
    assert abs(summary["gauss_pf_log_evidence"] - summary["kalman_log_evidence"]) < 1.0
    # filtering means within half a filtering sd in every year (MC error ~ sd / sqrt(ESS))
    assert summary["gauss_mean_gap_in_sds"] < 0.5


def test_proposal_and_rejuvenation(summary):
    # the defensive-mixture proposal cuts the spread of log Z_hat (about 1.0 -> 0.3 over 24 runs)
    assert summary["custom_proposal_sd"] < 0.7 * summary["bootstrap_sd"]
    assert 0.1 < summary["acceptance"] < 0.95
    assert -645 < summary["robust_log_evidence"] < -632


def test_heavy_tailed_model_puts_the_1899_drop_in_one_step(summary):
    # smoothed over the particles' paths: ~160 in one year, against ~50 for the Gaussian RTS smoother
    assert summary["robust_smoothed_drop_1899"] > 2 * summary["gauss_smoothed_drop_1899"]
    assert summary["robust_smoothed_drop_1899"] > 100
