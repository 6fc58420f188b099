"""Diagnostics for Monte Carlo output: ESS, R-hat, MCSE, summaries, ArviZ export, calibration (SBC, TARP)."""

from ppl.diagnostics.calibration_plots import plot_ecdf_difference, plot_rank_histogram, plot_tarp
from ppl.diagnostics.convergence import (
    ess_bulk,
    ess_mean,
    ess_tail,
    format_summary,
    hdi,
    mcse_mean,
    rhat,
    split_chains,
    summary,
    summary_frame,
    z_scale,
)
from ppl.diagnostics.coverage_calibration import TARPResult, tarp_coverage
from ppl.diagnostics.rank_calibration import SBCResult, posterior_draws, sbc, sbc_ranks
from ppl.diagnostics.uniformity import ECDFBand, chi2_pvalue, ecdf_band, ecdf_pvalue
from ppl.errors import ConvergenceWarning

#: ``ppl.diagnostics.tarp``: the TARP coverage test (``tarp_coverage``)
tarp = tarp_coverage

__all__ = [
    "ConvergenceWarning",
    "ECDFBand",
    "SBCResult",
    "TARPResult",
    "chi2_pvalue",
    "ecdf_band",
    "ecdf_pvalue",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "format_summary",
    "hdi",
    "mcse_mean",
    "plot_ecdf_difference",
    "plot_rank_histogram",
    "plot_tarp",
    "posterior_draws",
    "rhat",
    "sbc",
    "sbc_ranks",
    "split_chains",
    "summary",
    "summary_frame",
    "tarp",
    "tarp_coverage",
    "z_scale",
]
