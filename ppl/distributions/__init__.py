"""Distributions: numpyro's, plus helpers for user-defined ones."""

from ppl.distributions.custom import make_distribution

__all__ = ["make_distribution"]
