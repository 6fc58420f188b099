"""The README's main example gives the exact conjugate posterior within Monte Carlo error."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

spec = importlib.util.spec_from_file_location(
    "regression_example", Path(__file__).parents[1] / "examples" / "regression.py"
)
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)


def test_importance_posterior_matches_exact_conjugate_posterior():
    design, y = example.load_data()
    traces, weights, log_z = jax.jit(example.importance_posterior, static_argnums=3)(
        jax.random.key(3), design, y, 200_000
    )
    exact_w, exact_var, exact_log_z = example.exact_posterior(design, y)
    ess = float(1.0 / jnp.sum(weights**2))
    assert ess > 30
    ws = np.asarray(traces.choices["w"])
    w = np.asarray(weights)
    mean = w @ ws
    sd = np.sqrt(w @ (ws - mean) ** 2)
    # self-normalised IS: standard error ~ posterior sd / sqrt(ESS); allow 5 of them
    np.testing.assert_array_less(np.abs(mean - exact_w), 5 * sd / np.sqrt(ess))
    var = np.asarray(traces.choices["var"])
    var_mean, var_sd = w @ var, np.sqrt(w @ (var - w @ var) ** 2)
    assert abs(var_mean - exact_var) < 5 * var_sd / np.sqrt(ess)
    # log of the mean weight: its error is ~ sqrt(1/ESS) in relative terms
    assert abs(float(log_z) - exact_log_z) < 5 / np.sqrt(ess)
