"""Execute notebooks/programmable_vi.ipynb and check what it reports."""

import pytest

from .notebooks import run_notebook_summary


@pytest.fixture(scope="module")
def summary():
    return run_notebook_summary("programmable_vi.ipynb")


def test_enumeration_removes_the_gradient_noise(summary):
    sd = summary["grad_sd"]
    # the only random choice is enumerated: its gradient is exact, so repeated estimates agree
    assert sd["enumeration"] < 1e-3 * sd["REINFORCE"]


def test_fitted_mixtures_and_the_annealed_objective(summary):
    ll = summary["log_likelihood"]
    base = summary["independent_pixels"]  # one Bernoulli per pixel, no clusters: -24.4 nats/image
    assert -25 < base < -24
    assert all(-30 < v < -15 for v in ll.values())
    # annealing avoids the collapsed solutions of the plain ELBO: about 3 nats/image better in our runs
    # (seeds 0-3: -19.2 to -19.5 against -22.6 to -23.5), and well above the no-cluster reference
    assert ll["annealed ELBO"] > ll["enumeration"] + 1.0
    assert ll["annealed ELBO"] > base + 3.0
