"""Shared test configuration."""

import os

# XLA compiles most of this suite's time away (the programs are small; each runs briefly). Its CPU backend at
# optimisation level 1 compiles faster and runs these programs about as fast: measured on the MCMC runner and
# conjugate tests, 112 s -> 96 s wall; level 0 gained nothing more. Set before jax starts its backend (the
# notebook kernels inherit it); a level given in XLA_FLAGS by the user wins. Benchmarks (bench/) keep XLA's default.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()
