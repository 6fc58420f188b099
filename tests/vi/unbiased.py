"""Shared helpers of the unbiasedness tests.

A statistical check averages many independent estimates (``jax.vmap`` over
keys, compiled once) and compares the mean with the exact value within ``Z``
standard errors, ``se = sd / sqrt(n)`` per component. ``Z = 5`` keeps the
chance of a false alarm over a test file far below 1e-3 for an unbiased
estimator while a bias of a few standard errors is caught.
"""

from __future__ import annotations

import jax
import numpy as np

Z = 5.0


def assert_unbiased(samples, exact, what=""):
    """Mean of ``samples`` (leading axis = draws) equals ``exact`` within Z standard errors."""
    samples = np.asarray(samples, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    # Z standard errors of the mean (plus float32 round-off when se is ~0)
    tol = Z * se + 1e-5 * (1.0 + np.abs(exact))
    assert np.all(np.abs(mean - exact) <= tol), f"{what}: mean {mean} vs exact {exact} (se {se})"


def many(fn, n, seed):
    """``fn(key)`` for ``n`` independent keys, compiled once."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))
