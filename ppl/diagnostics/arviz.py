"""Export of MCMC draws to ArviZ's ``InferenceData``.

ArviZ is an optional dependency (``pip install arviz``, or ppl's
``examples``/``test`` extras); it is imported only when an export is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def import_arviz() -> Any:
    try:
        import arviz
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_arviz() needs ArviZ: pip install arviz (or install ppl with the 'examples' extra)") from e
    return arviz


def to_inference_data(
    posterior: dict[str, Any],
    sample_stats: dict[str, Any] | None = None,
    observed_data: dict[str, Any] | None = None,
    posterior_predictive: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
) -> Any:
    """An ``arviz.InferenceData`` from dicts of arrays shaped ``(chain, draw, ...)``."""
    az = import_arviz()

    def arrays(d: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
        return None if d is None else {k: np.asarray(v) for k, v in d.items()}

    return az.from_dict(
        posterior=arrays(posterior),
        sample_stats=arrays(sample_stats),
        observed_data=arrays(observed_data),
        posterior_predictive=arrays(posterior_predictive),
        attrs=attrs or {},
    )
