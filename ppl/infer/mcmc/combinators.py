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

A combinator holding a tunable kernel (a gradient kernel built without a
step size) is tunable itself: its :class:`Tuning` has one entry per kernel
(``None`` for fixed ones), so ``run_mcmc`` adapts every tunable kernel
inside it during warm-up. In a ``mixture`` only the kernel chosen at a step
learns from that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ppl.errors import PPLError
from ppl.infer.mcmc.kernel import MCMCInfo, MCMCKernel, TraceState, Tuning, combine_infos, memoized


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


def _sub_step(k: MCMCKernel, key: Any, trace: Any, params: Any) -> tuple[Any, MCMCInfo, Any]:
    """One step of ``k`` from ``trace``: with ``params`` through its tuning if it has one."""
    if k.tuning is None:
        s, info = k.step(key, k.init(trace))
        return s, info, None
    return k.tuning.step(key, k.init(trace), params)


def _tuple_tuning(ks: tuple, step: Any) -> Tuning | None:
    """A tuning made of the tunings of ``ks`` (``None`` when none is tunable), with combinator ``step``."""
    if all(k.tuning is None for k in ks):
        return None

    def start(key: Any, state: Any) -> tuple:
        subs = jax.random.split(key, len(ks))
        return tuple(None if k.tuning is None else k.tuning.start(sub, k.init(state.trace)) for k, sub in zip(ks, subs))

    def params(a: tuple) -> tuple:
        return tuple(None if k.tuning is None else k.tuning.params(x) for k, x in zip(ks, a))

    def update(a: tuple, slow: Any, end: Any, feedback: tuple) -> tuple:
        return tuple(None if k.tuning is None else k.tuning.update(x, slow, end, f) for k, x, f in zip(ks, a, feedback))

    def final(a: tuple) -> tuple:
        return tuple(None if k.tuning is None else k.tuning.final(x) for k, x in zip(ks, a))

    return Tuning(step, start, params, update, final)


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

    def tuned_step(key: Any, state: Any, params: tuple) -> tuple[TraceState, MCMCInfo, tuple]:
        trace = state.trace
        infos, feedback = [], []
        for k, sub, p in zip(ks, jax.random.split(key, len(ks)), params):
            s, info, f = _sub_step(k, sub, trace, p)
            trace = s.trace
            infos.append(info)
            feedback.append(f)
        return TraceState(trace), combine_infos(infos), tuple(feedback)

    return MCMCKernel(_init, step, _tuple_tuning(ks, tuned_step))


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

    def tuned_step(key: Any, state: Any, params: tuple) -> tuple[TraceState, MCMCInfo, tuple]:
        k_choose, k_step = jax.random.split(key)
        i = jax.random.categorical(k_choose, logits)
        trace = state.trace

        def run(j: int) -> tuple:
            s, info, f = _sub_step(ks[j], k_step, trace, params[j])
            return TraceState(s.trace), info, f

        # the kernels not chosen report zero feedback (their "ran" flag False): they learn nothing
        shapes = [jax.eval_shape(lambda j=j: run(j)[2]) for j in range(len(ks))]

        def branch(j: int) -> Any:
            def go(_: Any) -> tuple:
                st, info, f = run(j)
                zeros = [jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), sh) for sh in shapes]
                return st, info, tuple(f if m == j else zeros[m] for m in range(len(ks)))

            return go

        return jax.lax.switch(i, [branch(j) for j in range(len(ks))], None)

    return MCMCKernel(_init, step, _tuple_tuning(ks, tuned_step))


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
        return state, _repeat_info(infos)

    tuning = None
    if k.tuning is not None:

        def tuned_step(key: Any, state: Any, params: Any) -> tuple[Any, MCMCInfo, Any]:
            def body(s: Any, sub: Any) -> tuple[Any, tuple]:
                s, info, f = k.tuning.step(sub, s, params)
                return s, (info, f)

            state, (infos, feedback) = jax.lax.scan(body, state, jax.random.split(key, n))
            return state, _repeat_info(infos), jax.tree_util.tree_map(lambda x: x[-1], feedback)

        tuning = k.tuning._replace(step=tuned_step)
    return MCMCKernel(k.init, step, tuning)


def _repeat_info(infos: MCMCInfo) -> MCMCInfo:
    return MCMCInfo(
        jnp.any(infos.accepted),
        jnp.mean(infos.acceptance_rate),
        jnp.any(infos.is_divergent),
        jnp.sum(infos.num_steps).astype(jnp.int32),
    )
