"""Export of MCMC draws to ArviZ.

ArviZ 0.x gives an ``arviz.InferenceData``; ArviZ 1.x gives an
``xarray.DataTree``. Both hold the same groups (``posterior``,
``sample_stats``, ``observed_data``, ``posterior_predictive``, ``log_likelihood``) and both index
as ``data["posterior"]``; :func:`group_names` lists the groups of either.

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


def arviz_major(az: Any | None = None) -> int:
    """The major version of the installed ArviZ (0 or 1, ...)."""
    az = import_arviz() if az is None else az
    return int(str(az.__version__).split(".")[0])


def to_inference_data(
    posterior: dict[str, Any],
    sample_stats: dict[str, Any] | None = None,
    observed_data: dict[str, Any] | None = None,
    posterior_predictive: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    log_likelihood: dict[str, Any] | None = None,
) -> Any:
    """ArviZ data from dicts of arrays shaped ``(chain, draw, ...)`` (``observed_data``: unbatched).

    An ``arviz.InferenceData`` under ArviZ 0.x, an ``xarray.DataTree`` under
    ArviZ 1.x; ``attrs`` become the global (root) attributes.
    """
    az = import_arviz()

    def arrays(d: dict[str, Any] | None) -> dict[str, np.ndarray] | None:
        return None if d is None else {k: np.asarray(v) for k, v in d.items()}

    groups = {
        "posterior": arrays(posterior),
        "sample_stats": arrays(sample_stats),
        "observed_data": arrays(observed_data),
        "posterior_predictive": arrays(posterior_predictive),
        "log_likelihood": arrays(log_likelihood),
    }
    if arviz_major(az) >= 1:
        # ArviZ 1.x: from_dict(data={group: {var: array}}, attrs={group or "/": {...}}) -> DataTree
        data = {g: d for g, d in groups.items() if d is not None}
        return az.from_dict(data, attrs={"/": dict(attrs or {})})
    return az.from_dict(**{g: d for g, d in groups.items() if d is not None}, attrs=attrs or {})


def group_names(data: Any) -> set[str]:
    """The group names of an ``InferenceData`` (ArviZ 0.x) or a ``DataTree`` (ArviZ 1.x)."""
    children = getattr(data, "children", None)
    if children is not None and not callable(children):  # xarray.DataTree
        return set(children)
    return set(data.groups())


__all__ = ["arviz_major", "group_names", "import_arviz", "to_inference_data"]
