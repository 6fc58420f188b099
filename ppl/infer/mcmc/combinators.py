"""Kernel combinators: cycle, mixture, repeat.

If each kernel leaves the target ``pi`` invariant, so does

* ``cycle(k1, ..., kn)``: ``k1``, then ``k2``, ..., then ``kn`` (composition);
* ``mixture([k1, ..., kn], weights)``: one kernel chosen at random with
  probabilities ``weights`` (a convex combination of kernels);
* ``repeat(k, n)``: ``k`` applied ``n`` times.

Kernels keep caches in their states (gradient kernels keep the log density
and its gradient), which go stale when another kernel changes the trace;
``cycle`` and ``mixture`` therefore carry only the trace and rebuild each
kernel's state from it (``k.init(trace)``) before its step. ``repeat`` keeps
the kernel's own state between its steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ppl.errors import PPLError
from ppl.infer.mcmc.kernel import MCMCInfo, MCMCKernel, TraceState, combine_infos, memoized


def _check_kernels(name: str, kernels: Sequence[Any]) -> tuple[MCMCKernel, ...]:
    if not kernels:
        raise PPLError(f"{name} needs at least one kernel")
    for i, k in enumerate(kernels):
        if not isinstance(k, MCMCKernel):
            raise PPLError(
                f"{name}: argument {i} is a {type(k).__name__}, not an MCMCKernel "
                "(build kernels with ppl.infer.kernels.mh, nuts, gibbs, ...)"
            )
    return tuple(kernels)


def _init(trace: Any) -> TraceState:
    return TraceState(trace)


@memoized
def cycle(*kernels: MCMCKernel) -> MCMCKernel:
    """Apply ``kernels`` one after the other (each from the trace the previous one left)."""
    ks = _check_kernels("cycle", kernels)

    def step(key: Any, state: Any) -> tuple[TraceState, MCMCInfo]:
        trace = state.trace
        infos = []
        for k, sub in zip(ks, jax.random.split(key, len(ks))):
            s, info = k.step(sub, k.init(trace))
            trace = s.trace
            infos.append(info)
        return TraceState(trace), combine_infos(infos)

    return MCMCKernel(_init, step)


def mixture(kernels: Sequence[MCMCKernel], weights: Any = None) -> MCMCKernel:
    """Apply one of ``kernels``, chosen with probabilities proportional to ``weights`` (uniform by default)."""
    ks = _check_kernels("mixture", list(kernels))
    if weights is None:
        weights = (1.0,) * len(ks)
    if isinstance(weights, (list, tuple)) and all(isinstance(x, (int, float)) for x in weights):
        if len(weights) != len(ks) or min(weights) < 0 or sum(weights) <= 0:
            raise PPLError(
                f"mixture: {len(ks)} kernels need {len(ks)} non-negative weights with a positive sum, got {weights}"
            )
        return _mixture_hashable(ks, tuple(float(x) for x in weights))
    w = jnp.asarray(weights, dtype=jnp.result_type(float))
    if w.shape != (len(ks),):
        raise PPLError(f"mixture: {len(ks)} kernels but weights of shape {tuple(w.shape)}")
    return _mixture(ks, w)


@memoized
def _mixture_hashable(kernels: tuple, weights: tuple) -> MCMCKernel:
    return _mixture(kernels, jnp.asarray(weights))


def _mixture(ks: tuple, w: Any) -> MCMCKernel:
    logits = jnp.log(w)

    def step(key: Any, state: Any) -> tuple[TraceState, MCMCInfo]:
        k_choose, k_step = jax.random.split(key)
        i = jax.random.categorical(k_choose, logits)
        branches = [lambda tr, k=k: _traced_step(k, k_step, tr) for k in ks]
        return jax.lax.switch(i, branches, state.trace)

    return MCMCKernel(_init, step)


def _traced_step(kernel: MCMCKernel, key: Any, trace: Any) -> tuple[TraceState, MCMCInfo]:
    s, info = kernel.step(key, kernel.init(trace))
    return TraceState(s.trace), info


@memoized
def repeat(kernel: MCMCKernel, n: int) -> MCMCKernel:
    """Apply ``kernel`` ``n`` times (its state kept between steps)."""
    (k,) = _check_kernels("repeat", [kernel])
    if not isinstance(n, int) or n < 1:
        raise PPLError(f"repeat needs a positive int number of steps, got {n!r}")

    def step(key: Any, state: Any) -> tuple[Any, MCMCInfo]:
        def body(s: Any, sub: Any) -> tuple[Any, MCMCInfo]:
            return k.step(sub, s)

        state, infos = jax.lax.scan(body, state, jax.random.split(key, n))
        info = MCMCInfo(
            jnp.any(infos.accepted),
            jnp.mean(infos.acceptance_rate),
            jnp.any(infos.is_divergent),
            jnp.sum(infos.num_steps).astype(jnp.int32),
        )
        return state, info

    return MCMCKernel(k.init, step)
