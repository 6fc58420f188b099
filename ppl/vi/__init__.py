"""Programmable variational inference: objectives as programs, gradient estimators by transformation."""

# Re-exports in two sections (each owner keeps theirs); the sections are not one sorted block.
# ruff: noqa: F401, I001

# --- expectations, gradient estimators, marginals, objectives ---
from ppl.vi.estimators import (
    RunningMean,
    RunningMeanState,
    enum,
    mvd,
    reinforce,
    reparam,
    running_mean,
)
from ppl.vi.expectation import Expectation, batch_sum, expectation, particles, scan, subtract_baseline, vmap
from ppl.vi.marginal import Marginal, Normalized, marginal, normalize
from ppl.vi.objectives import (
    diwhvi,
    elbo,
    fivo,
    hvi,
    iwae,
    iwhvi,
    leave_one_out_baselines,
    log_density,
    log_mean_exp,
    log_weight,
    observations_fn,
    renyi,
    rws,
    vimco,
    vsmc,
)

# --- guides and training ---
from ppl.vi.checkpoint import load_checkpoint, save_checkpoint
from ppl.vi.fit import FitResult, FitState, fit
from ppl.vi.guides import (
    AutoDelta,
    AutoFlow,
    AutoGuide,
    AutoLaplace,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
    auto_delta,
    auto_flow,
    auto_laplace,
    auto_low_rank_multivariate_normal,
    auto_multivariate_normal,
    auto_normal,
    check_guide,
)
from ppl.vi.minibatch import Minibatch
from ppl.vi.posterior import posterior_predictive, sample_posterior, to_arviz
