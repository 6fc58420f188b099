"""examples/vae.py trains per-image bounds: a short run gives sensible, ordered numbers."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("vae_example", Path(__file__).parents[1] / "examples" / "vae.py")
vae = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vae)


@pytest.mark.slow
def test_short_training_run_and_bound_ordering(tmp_path):
    results = vae.main(["--steps", "300", "--out", str(tmp_path / "vae.png")])
    assert (tmp_path / "vae.png").exists()
    _, x_test = vae.load()
    params = results["IWAE K=8"].params
    history = np.asarray(results["IWAE K=8"].history)
    assert history[-50:].mean() > history[:50].mean() + 5  # training helps: nats per image
    # on the same model, the K=256 per-image IWAE bound is at least the ELBO; both are averages over
    # 297 images (per-image Monte Carlo sd < 1 nat), so the ordering is far outside their noise
    elbo = float(vae.ELBO.estimate(jax.random.key(5), (params[0], x_test), (params[1], x_test)))
    iwae = vae.test_bound(params, x_test, jax.random.key(6))
    assert iwae > elbo
    assert -40 < elbo < -10
