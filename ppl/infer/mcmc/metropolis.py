"""Metropolis-Hastings kernels on traces: prior proposals and custom proposals.

**Prior proposal** (``mh(selection)``): ``regenerate`` resamples the selected
choices from their prior given the rest of the trace; its weight is exactly
the log acceptance ratio

    log alpha = log [p(t') q(t | t')] / [p(t) q(t' | t)]
              = sum over kept, unselected choices v of log p'(v) - log p(v)

(see :meth:`GenerativeFunction.regenerate`), so the move is accepted with
probability ``min(1, exp(w))``.

**Custom proposal** (``mh_proposal(proposal, proposal_args_fn)``): a
generative function ``q`` whose choices are addresses of the model. With
``a(t) = proposal_args_fn(t)`` (default ``(t,)``: the proposal sees the
current trace):

1. ``u ~ q(.; a(t))`` (``simulate``; forward score ``log q(u; a(t))``);
2. ``(t', w, d) = model.update(t, u)``: ``w = log p(t') - log p(t)`` (minus
   the log density of any choice ``update`` had to draw afresh), ``d`` the
   old values of the addresses ``u`` overwrote;
3. the reverse move proposes ``d`` from ``t'``: ``log q(d; a(t'))`` by
   ``assess``;
4. ``log alpha = w + log q(d; a(t')) - log q(u; a(t))``.

This is the standard MH ratio when ``q`` proposes the same set of addresses
from every trace (so ``d`` is a complete set of proposal choices).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from ppl.core import GenerativeFunction
from ppl.core.selection import as_selection
from ppl.errors import PPLError
from ppl.infer.mcmc.kernel import MCMCKernel, TraceState, memoized, metropolis_accept


@memoized
def mh(selection: Any) -> MCMCKernel:
    """Metropolis-Hastings that resamples ``selection`` from its prior (through ``regenerate``)."""
    sel = as_selection(selection)

    def init(trace: Any) -> TraceState:
        return TraceState(trace)

    def step(key: Any, state: TraceState) -> tuple[TraceState, Any]:
        k_prop, k_acc = jax.random.split(key)
        trace = state.trace
        proposed, log_alpha = trace.gen_fn.regenerate(k_prop, trace, sel)
        new, info = metropolis_accept(k_acc, log_alpha, proposed, trace)
        return TraceState(new), info

    return MCMCKernel(init, step)


def _default_proposal_args(trace: Any) -> tuple:
    return (trace,)


@memoized
def mh_proposal(proposal: GenerativeFunction, proposal_args_fn: Callable[[Any], tuple] | None = None) -> MCMCKernel:
    """Metropolis-Hastings with a proposal generative function (see the module docstring).

    ``proposal_args_fn(trace)`` gives the proposal's arguments (a tuple);
    by default the proposal is called with the current trace, ``(trace,)``.
    """
    if not isinstance(proposal, GenerativeFunction):
        raise PPLError(f"mh_proposal needs a generative function (a @ppl.gen proposal), got {type(proposal).__name__}")
    args_fn = _default_proposal_args if proposal_args_fn is None else proposal_args_fn

    def proposal_args(trace: Any) -> tuple:
        a = args_fn(trace)
        if not isinstance(a, tuple):
            raise PPLError(f"proposal_args_fn must return a tuple of the proposal's arguments, got {type(a).__name__}")
        return a

    def init(trace: Any) -> TraceState:
        return TraceState(trace)

    def step(key: Any, state: TraceState) -> tuple[TraceState, Any]:
        k_fwd, k_upd, k_acc = jax.random.split(key, 3)
        trace = state.trace
        forward = proposal.simulate(k_fwd, proposal_args(trace))
        proposed, w, discard = trace.gen_fn.update(k_upd, trace, forward.choices)
        backward_score, _ = proposal.assess(discard, proposal_args(proposed))
        log_alpha = w + backward_score - forward.score
        new, info = metropolis_accept(k_acc, log_alpha, proposed, trace)
        return TraceState(new), info

    return MCMCKernel(init, step)
