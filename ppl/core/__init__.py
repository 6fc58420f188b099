"""The modelling language and the generative function interface."""

from ppl.core.address import format_address, normalize
from ppl.core.choicemap import ChoiceMap, Masked, choices, masked
from ppl.core.context import eager
from ppl.core.fixed import Fixed, FixedTrace, condition, do, substitute
from ppl.core.gen import GenFunction, deterministic, factor, gen, sample
from ppl.core.generative_function import GenCall, GenerativeFunction
from ppl.core.mixture import Mixture, mixture
from ppl.core.model_info import ModelInfo, SiteInfo, inspect
from ppl.core.reparameterize import (
    LocScale,
    Reparameterized,
    Reparameterizer,
    ReparamTrace,
    TransformToBase,
    reparameterize,
)
from ppl.core.scale import Scale, scale
from ppl.core.scan import Scan, ScanTrace, scan
from ppl.core.selection import Selection, select, select_all, select_none
from ppl.core.switch import Switch, SwitchTrace, cond, switch
from ppl.core.trace import ChoiceTrace, DeterministicTrace, FactorTrace, GenTrace, Trace
from ppl.core.unconstrained import (
    from_unconstrained,
    to_unconstrained,
    unconstrained_init,
    unconstrained_log_density,
)
from ppl.core.vmap import Vmap, VmapTrace, vmap

__all__ = [
    "ChoiceMap",
    "ChoiceTrace",
    "DeterministicTrace",
    "FactorTrace",
    "Fixed",
    "FixedTrace",
    "GenCall",
    "GenFunction",
    "GenTrace",
    "GenerativeFunction",
    "Masked",
    "Mixture",
    "Scale",
    "Scan",
    "ScanTrace",
    "Selection",
    "Switch",
    "SwitchTrace",
    "Trace",
    "Vmap",
    "VmapTrace",
    "choices",
    "cond",
    "condition",
    "inspect",
    "ModelInfo",
    "SiteInfo",
    "LocScale",
    "Reparameterized",
    "Reparameterizer",
    "ReparamTrace",
    "TransformToBase",
    "reparameterize",
    "deterministic",
    "do",
    "eager",
    "factor",
    "format_address",
    "from_unconstrained",
    "gen",
    "masked",
    "mixture",
    "normalize",
    "sample",
    "scale",
    "scan",
    "select",
    "select_all",
    "select_none",
    "substitute",
    "switch",
    "to_unconstrained",
    "unconstrained_init",
    "unconstrained_log_density",
    "vmap",
]
