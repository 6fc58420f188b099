"""ppl: a probabilistic programming language embedded in JAX.

Models are Python functions decorated with ``@ppl.gen``; every inference
algorithm talks to them through the generative function interface
(simulate, assess, generate, update, regenerate).
"""

from ppl import dist, errors
from ppl.core import (
    ChoiceMap,
    GenCall,
    GenerativeFunction,
    LocScale,
    Masked,
    Selection,
    Trace,
    TransformToBase,
    choices,
    cond,
    condition,
    deterministic,
    do,
    eager,
    factor,
    from_unconstrained,
    gen,
    inspect,
    masked,
    mixture,
    reparameterize,
    sample,
    scale,
    scan,
    select,
    select_all,
    select_none,
    substitute,
    switch,
    to_unconstrained,
    unconstrained_init,
    unconstrained_log_density,
    vmap,
)
from ppl.core.staging import clear_caches
from ppl.errors import PPLError

__version__ = "0.1.0"

_SUBPACKAGES = ("infer", "vi", "diagnostics", "flows", "amortized")


def __getattr__(name: str):
    """Import the inference subpackages on first use (``ppl.infer``, ``ppl.vi``)."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"ppl.{name}")
    if name == "log_likelihood":
        from ppl.infer.log_likelihood import log_likelihood

        return log_likelihood
    raise AttributeError(f"module 'ppl' has no attribute {name!r}")


__all__ = [
    "ChoiceMap",
    "GenCall",
    "GenerativeFunction",
    "LocScale",
    "Masked",
    "PPLError",
    "Selection",
    "Trace",
    "choices",
    "clear_caches",
    "cond",
    "condition",
    "deterministic",
    "do",
    "dist",
    "eager",
    "errors",
    "factor",
    "from_unconstrained",
    "gen",
    "inspect",
    "infer",
    "log_likelihood",
    "masked",
    "mixture",
    "sample",
    "scale",
    "scan",
    "select",
    "select_all",
    "select_none",
    "reparameterize",
    "substitute",
    "switch",
    "TransformToBase",
    "to_unconstrained",
    "unconstrained_init",
    "unconstrained_log_density",
    "vi",
    "vmap",
]
