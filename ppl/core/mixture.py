"""``ppl.mixture``: a finite mixture of generative functions.

``ppl.mixture(gf_0, gf_1, ...)(logits, *args) @ "m"`` draws a component
``k ~ Categorical(logits)`` at ``("m", "component")`` and runs ``gf_k(*args)``
under ``("m", "value")`` (through ``ppl.switch``, so only component ``k``
executes and all GFI methods, including ``update`` of the component, are
exact). Its density is the joint density of ``k`` and the component's
choices; marginalising ``k`` is a job for inference (enumeration, Gibbs).
"""

from __future__ import annotations

from typing import Any

from numpyro.distributions import Categorical

from ppl.core.gen import GenFunction, sample
from ppl.core.generative_function import GenCall, GenerativeFunction
from ppl.core.switch import Switch
from ppl.errors import CombinatorError


class Mixture(GenFunction):
    """Mixture of components; arguments are ``(logits, *args)``."""

    def __init__(self, components: tuple):
        components = tuple(components)
        if len(components) < 1:
            raise CombinatorError("ppl.mixture needs at least one component")
        for i, c in enumerate(components):
            if not isinstance(c, GenerativeFunction):
                raise CombinatorError(
                    f"component {i} of ppl.mixture is a {type(c).__name__}, not a generative function"
                )
        self.components = components
        self.name = "mixture(" + ", ".join(c.name for c in components) + ")"

    _fields = ("components", "name")

    @property
    def fn(self) -> Any:  # type: ignore[override]
        return self._body

    @property
    def _switch(self) -> Switch:
        return Switch(self.components)

    def _body(self, logits: Any, *args: Any) -> Any:
        k = sample("component", Categorical(logits=logits))
        return sample("value", GenCall(self._switch, (k, *args)))


def mixture(*components: GenerativeFunction) -> Mixture:
    """Finite mixture: call as ``ppl.mixture(gf_0, gf_1)(logits, *args) @ addr``."""
    return Mixture(components)
