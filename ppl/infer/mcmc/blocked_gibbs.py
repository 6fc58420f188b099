"""Blocked Gibbs on discrete choices: one exact draw of a whole block from its conditional.

``gibbs_block(sites)`` replaces every selected discrete choice of the trace
by a draw from ``p(z | rest)`` (:func:`ppl.infer.infer_discrete`), all at
once: per element inside ``ppl.vmap``, and by forward filtering, backward
sampling along a ``ppl.scan`` (an HMM's whole state path in ``O(T K^2)``,
where :func:`~ppl.infer.mcmc.gibbs.gibbs` sweeps site by site with ``T``
model runs per element). The draw is from the exact full conditional, so
the move is always accepted (a Gibbs step). Combine it with a gradient
kernel for the continuous choices: ``cycle(nuts(select("means")),
gibbs_block("states"))``.
"""

from __future__ import annotations

from typing import Any

import jax

from ppl.core.selection import as_selection
from ppl.infer.mcmc.kernel import MCMCKernel, TraceState, make_info, memoized


def gibbs_block(sites: Any) -> MCMCKernel:
    """Kernel drawing the discrete choices selected by ``sites`` jointly from their full conditional."""
    return _gibbs_block(as_selection(sites))


@memoized
def _gibbs_block(sel: Any) -> MCMCKernel:
    from ppl.infer.discrete import infer_discrete  # infer builds on the kernels' module

    def init(trace: Any) -> TraceState:
        return TraceState(trace)

    def step(key: Any, state: TraceState) -> tuple[TraceState, Any]:
        tr = state.trace
        k_draw, k_update = jax.random.split(key)
        drawn = infer_discrete(k_draw, tr.gen_fn, tr.args, tr.choices.without(sel), sel)
        new, _, _ = tr.gen_fn.update(k_update, tr, drawn, tr.args)
        return TraceState(new), make_info(True, 1.0, False, 1)

    return MCMCKernel(init, step)


__all__ = ["gibbs_block"]
