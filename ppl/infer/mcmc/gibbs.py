"""Gibbs kernel for a discrete choice with finite support, by enumeration.

For a choice ``x`` at ``address`` with support ``{v_1, ..., v_K}``, the full
conditional is

    p(x = v_k | rest) ∝ p(t[x := v_k]),

and ``update`` gives exactly ``w_k = log p(t[x := v_k]) - log p(t)``, so the
kernel computes ``w_k`` for every ``k`` (one batched ``update``), draws
``k ~ Categorical(softmax(w))`` and moves to that trace. A choice holding an
array of discrete values (a ``Categorical`` with a batch shape) is swept
element by element in a fixed order, each element drawn from its full
conditional given the others: a systematic-scan Gibbs sweep.

The kernel is exact when changing ``x`` does not change which other choices
the model makes (no fresh choices are drawn by ``update``). The support is
read from the distribution at ``address`` (numpyro's ``enumerate_support``)
and must be known when the program is traced (``Categorical``,
``Bernoulli``, ``Binomial`` or ``DiscreteUniform`` with constant bounds...).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import choices, context
from ppl.core.address import format_address, normalize
from ppl.errors import SelectionError
from ppl.infer.mcmc.kernel import MCMCKernel, TraceState, make_info, memoized


class _CaptureSupport:
    """Interceptor that records the finite support of the distribution at one address."""

    def __init__(self, address: tuple):
        self.address = address
        self.support: np.ndarray | None = None
        self.found = False

    def given(self, addr: tuple, d: Any, value: Any) -> None:
        if addr != self.address:
            return None
        self.found = True
        if not getattr(d.support, "is_discrete", False) or not getattr(d, "has_enumerate_support", False):
            raise SelectionError(
                f"gibbs({format_address(addr)}): the choice there is drawn from {type(d).__name__}, which has no "
                "finite support to enumerate (Gibbs by enumeration needs a discrete distribution such as "
                "Categorical, Bernoulli, Binomial or DiscreteUniform)"
            )
        try:
            with jax.ensure_compile_time_eval():
                values = d.enumerate_support(expand=False)
            values = np.asarray(values)
        except Exception as e:
            raise SelectionError(
                f"gibbs({format_address(addr)}): the support of {type(d).__name__} there depends on traced values "
                "and cannot be enumerated when the program is traced; give the distribution constant bounds"
            ) from e
        k = values.shape[0]
        if values.size != k:
            raise SelectionError(
                f"gibbs({format_address(addr)}): elements of the choice have different supports "
                f"(enumerated support of shape {values.shape}); Gibbs by enumeration needs one support for all"
            )
        self.support = values.reshape(k)
        return None


def finite_support(trace: Any, address: tuple) -> np.ndarray:
    """The support values of the discrete choice at ``address`` of ``trace`` (static)."""
    cap = _CaptureSupport(address)
    with jax.ensure_compile_time_eval(), context.eager(), context.intercept(cap):
        trace.gen_fn.assess(trace.choices, trace.args)
    if not cap.found:
        raise SelectionError(
            f"gibbs({format_address(address)}): the model makes no choice at that address; "
            f"its choices are {trace.choices._address_summary()}"
        )
    assert cap.support is not None
    return cap.support


@memoized
def gibbs(address: Any) -> MCMCKernel:
    """Gibbs update of the discrete choice at ``address`` by enumerating its support."""
    addr = normalize(address)
    support_cache: dict = {}

    def support_of(trace: Any) -> np.ndarray:
        key = (trace.gen_fn, jax.tree_util.tree_structure(trace))
        if key not in support_cache:
            support_cache[key] = finite_support(trace, addr)
        return support_cache[key]

    def init(trace: Any) -> TraceState:
        support_of(trace)
        return TraceState(trace)

    def conditional_draw(key: Any, trace: Any, candidates: Any) -> Any:
        k_upd, k_draw = jax.random.split(key)

        def moved(value: Any) -> tuple[Any, Any]:
            new, w, _ = trace.gen_fn.update(k_upd, trace, choices({addr: value}))
            return new, w

        traces, w = jax.vmap(moved)(candidates)
        w = jnp.where(jnp.isnan(w), -jnp.inf, w)
        k = jax.random.categorical(k_draw, w)
        return jax.tree_util.tree_map(lambda x: x[k], traces)

    def step(key: Any, state: TraceState) -> tuple[TraceState, Any]:
        trace = state.trace
        support = support_of(trace)
        current = trace.choices[addr]
        values = jnp.asarray(support, dtype=current.dtype)
        n = int(np.prod(current.shape))
        if current.shape == ():
            new = conditional_draw(key, trace, values)
        else:

            def sweep(tr: Any, xs: Any) -> tuple[Any, None]:
                i, k = xs
                flat = tr.choices[addr].reshape(-1)
                candidates = jax.vmap(lambda v: flat.at[i].set(v).reshape(current.shape))(values)
                return conditional_draw(k, tr, candidates), None

            new, _ = jax.lax.scan(sweep, trace, (jnp.arange(n), jax.random.split(key, n)))
        moved = jnp.any(new.choices[addr] != current)
        return TraceState(new), make_info(moved, 1.0, False, n * len(support))

    return MCMCKernel(init, step)
