"""Foreign primitives inside a ppl model are errors, never no-ops.

A ``numpyro.sample``, ``numpyro.plate``, ``numpyro.deterministic``,
``numpyro.factor`` or ``numpyro.param`` inside a ``@ppl.gen`` body would
otherwise run outside ppl's tracer: ``numpyro.sample`` would draw with a
missing key, and ``numpyro.plate`` would do nothing (the model would silently
change shape). While a ppl model body runs, a NumPyro messenger that refuses
every message sits on NumPyro's own handler stack, so the first such call
raises :class:`~ppl.errors.ForeignPrimitiveError` naming it and saying what
to write instead. (The bridge that runs whole NumPyro models under ppl is a
separate, explicit entry point.)
"""

from __future__ import annotations

from typing import Any

from numpyro.primitives import Messenger

from ppl.core import context
from ppl.core.address import format_address
from ppl.errors import ForeignPrimitiveError

_INSTEAD = {
    "sample": 'ppl.sample("addr", d) or d @ "addr" (observed values go in the observations/constraints map, not obs=)',
    "plate": "a batch shape on the distribution (dist.Normal(mu, 1).expand([N])) or ppl.vmap over one element",
    "deterministic": 'ppl.deterministic("addr", value)',
    "param": "an argument of the model (ppl.vi.fit trains float arguments)",
    "plate_stack": "batch shapes or ppl.vmap",
}


class _RefuseNumpyro(Messenger):
    """A NumPyro messenger that turns every NumPyro primitive into a ppl error."""

    def __init__(self, model_name: str):
        super().__init__(fn=None)
        self.model_name = model_name

    def process_message(self, msg: Any) -> None:
        kind = msg.get("type") or "primitive"
        name = msg.get("name")
        where = context.current_path()
        at = f" (inside {format_address(where)})" if where else ""
        instead = _INSTEAD.get(kind, "ppl's own primitives (ppl.sample, ppl.factor, ppl.deterministic, ppl.vmap)")
        raise ForeignPrimitiveError(
            f"numpyro.{kind}({name!r}, ...) was called inside the ppl model {self.model_name}{at}. NumPyro's "
            f"primitives do not take part in a ppl model (a plate would silently do nothing); use {instead}. "
            "To run an existing NumPyro model, translate it to @ppl.gen."
        )


def refuse_foreign(model_name: str) -> _RefuseNumpyro:
    """Context manager: NumPyro primitives raise while a ppl model body runs."""
    return _RefuseNumpyro(model_name)


__all__ = ["refuse_foreign"]
