"""Diagnostics for Monte Carlo output: ESS, R-hat, MCSE, summaries, ArviZ export."""

from ppl.diagnostics.convergence import (
    ess_bulk,
    ess_mean,
    ess_tail,
    format_summary,
    mcse_mean,
    rhat,
    split_chains,
    summary,
    z_scale,
)
from ppl.errors import ConvergenceWarning

__all__ = [
    "ConvergenceWarning",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "format_summary",
    "mcse_mean",
    "rhat",
    "split_chains",
    "summary",
    "z_scale",
]
