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
the model makes (no fresh choices are drawn by ``update``).

**Candidates and support.** The candidate values must have a static number
(shapes are fixed when the kernel is traced); which of them lie in the
support is decided from the values of the current run. At every step the
kernel reads the distribution at ``address`` from the trace it is given and
takes as candidates

* ``support``, when given: a static superset of the support (e.g.
  ``range(0, 51)`` for ``Binomial(total_count=n)`` with ``n <= 50`` an
  argument of the model);
* otherwise values derived from the distribution when they do not depend
  on traced values: numpyro's ``enumerate_support`` (``Categorical``,
  ``Bernoulli``, ``Binomial`` with a constant count...) or the integers
  between the smallest lower and the largest upper bound of a constant
  ``integer_interval`` (inhomogeneous bounds across a batch included).

Each candidate is then checked against the distribution's support *at run
time* (``d.support(v)`` with the current parameters) and gets probability
zero outside it. Nothing is cached between calls, so a second run with other
argument values (``n = 7`` after ``n = 3``) enumerates its own support. When
the support depends on traced values and no ``support`` is given, the kernel
raises :class:`ppl.errors.SelectionError` naming the address. Values of the
support outside the given candidates are never proposed: ``support`` must
cover every value the support can take in the run.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Categorical
from numpyro.distributions import constraints as C

from ppl.core import choices, context
from ppl.core.address import format_address, normalize
from ppl.core.primitive import sample_value
from ppl.errors import SelectionError
from ppl.infer.mcmc.kernel import MCMCKernel, TraceState, make_info, memoized


class _CaptureDistribution:
    """Interceptor that records the distribution at one address (its parameters as traced now)."""

    def __init__(self, address: tuple):
        self.address = address
        self.dist: Any = None
        self.found = False

    def given(self, addr: tuple, d: Any, value: Any) -> None:
        if addr == self.address:
            self.found = True
            self.dist = d
        return None


def distribution_at(trace: Any, address: tuple) -> Any:
    """The distribution at ``address`` in ``trace``, parameters computed from the trace's values.

    The model is re-run inline (``assess``, not compiled separately), so under
    ``jit`` the parameters are tracers of the caller's program: nothing
    about them is fixed by an earlier call. Parameters computed from
    constants alone stay concrete (``ensure_compile_time_eval``), so a
    support they fix has a static size.
    """
    cap = _CaptureDistribution(address)
    with jax.ensure_compile_time_eval(), context.eager(), context.intercept(cap):
        trace.gen_fn.assess(trace.choices, trace.args)
    if not cap.found:
        raise SelectionError(
            f"gibbs({format_address(address)}): the model makes no choice at that address; "
            f"its choices are {trace.choices._address_summary()}"
        )
    return cap.dist


def _check_discrete(addr: tuple, d: Any) -> None:
    if not getattr(d.support, "is_discrete", False) or not getattr(d, "has_enumerate_support", False):
        raise SelectionError(
            f"gibbs({format_address(addr)}): the choice there is drawn from {type(d).__name__}, which has no "
            "finite support to enumerate (Gibbs by enumeration needs a discrete distribution such as "
            "Categorical, Bernoulli, Binomial or DiscreteUniform)"
        )


def _concrete(x: Any) -> np.ndarray | None:
    if isinstance(x, jax.core.Tracer):  # not known when the program is traced
        return None
    return np.asarray(x)


def _static_candidates(addr: tuple, d: Any) -> np.ndarray:
    """Candidate values of ``d`` that do not depend on traced values (1-D), or raise."""
    support = d.support
    if isinstance(support, C.independent):
        support = support.base_constraint
    if isinstance(support, C._IntegerInterval):
        lo, hi = _concrete(support.lower_bound), _concrete(support.upper_bound)
        if lo is not None and hi is not None:
            return np.arange(int(np.min(lo)), int(np.max(hi)) + 1)
    try:
        with jax.ensure_compile_time_eval():
            values = np.asarray(d.enumerate_support(expand=False))
    except Exception as e:
        raise SelectionError(
            f"gibbs({format_address(addr)}): the support of {type(d).__name__} there depends on traced values "
            "(e.g. a Binomial whose total_count is an argument of the model), so its size is not known when "
            "the program is traced; give a static superset of it, e.g. "
            f"gibbs({format_address(addr)}, support=range(0, max_count + 1)): values outside the support at "
            "run time get probability zero"
        ) from e
    k = values.shape[0]
    if values.size != k:
        # per-element supports (a batch of distributions): their union, masked per element at run time
        values = np.unique(values)
    return values.reshape(-1)


def _normalize_support(support: Any) -> tuple | None:
    if support is None:
        return None
    values = np.asarray(list(support) if isinstance(support, range) else support).reshape(-1)
    if values.size == 0:
        raise SelectionError("gibbs(..., support=...): the candidate values are empty")
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise SelectionError(f"gibbs(..., support=...): candidate values must be numbers, got dtype {values.dtype}")
    return tuple(values.tolist())


def gibbs(address: Any, support: Any = None) -> MCMCKernel:
    """Gibbs update of the discrete choice at ``address`` by enumerating its support.

    ``support``: optional static candidate values (a sequence, ``range`` or
    1-D array) that contain every value the choice's support can take in
    the run; needed when the support depends on traced values (a
    ``Binomial`` whose ``total_count`` is a model argument). Candidates
    outside the support at run time get probability zero. See the module
    docstring.
    """
    return _gibbs(normalize(address), _normalize_support(support))


@memoized
def _gibbs(addr: tuple, given: tuple | None) -> MCMCKernel:
    def candidates(trace: Any) -> tuple[Any, Any]:
        """``(d, values)``: the distribution at ``addr`` now and the candidate values (static count)."""
        d = distribution_at(trace, addr)
        _check_discrete(addr, d)
        values = np.asarray(given) if given is not None else _static_candidates(addr, d)
        return d, values

    def init(trace: Any) -> TraceState:
        candidates(trace)  # errors (no such choice, no finite support) before anything runs
        return TraceState(trace)

    def conditional_draw(key: Any, trace: Any, proposals: Any, ok: Any) -> Any:
        k_upd, k_draw = jax.random.split(key)

        def moved(value: Any) -> tuple[Any, Any]:
            new, w, _ = trace.gen_fn.update(k_upd, trace, choices({addr: value}))
            return new, w

        traces, w = jax.vmap(moved)(proposals)
        w = jnp.where(jnp.isnan(w) | ~ok, -jnp.inf, w)
        # a random choice, so an enclosing ppl.vi.expectation scores it (the conditional depends on the
        # parameters); outside one it is jax.random.categorical(k_draw, w), key for key
        with context.path(("gibbs",)):
            k = sample_value(k_draw, Categorical(logits=w))
        return jax.tree_util.tree_map(lambda x: x[k], traces)

    def step(key: Any, state: TraceState) -> tuple[TraceState, Any]:
        trace = state.trace
        d, support = candidates(trace)
        current = trace.choices[addr]
        values = jnp.asarray(support, dtype=current.dtype)
        n = int(np.prod(current.shape))
        if current.shape == ():
            ok = jax.vmap(lambda v: jnp.all(d.support(v)))(values)
            new = conditional_draw(key, trace, values, ok)
        else:

            def sweep(tr: Any, xs: Any) -> tuple[Any, None]:
                i, k = xs
                flat = tr.choices[addr].reshape(-1)
                proposals = jax.vmap(lambda v: flat.at[i].set(v).reshape(current.shape))(values)
                # element i of each candidate in element i's support (its parameters at run time)
                ok = jax.vmap(lambda x: jnp.broadcast_to(d.support(x), current.shape).reshape(-1)[i])(proposals)
                return conditional_draw(k, tr, proposals, ok), None

            new, _ = jax.lax.scan(sweep, trace, (jnp.arange(n), jax.random.split(key, n)))
        moved = jnp.any(new.choices[addr] != current)
        return TraceState(new), make_info(moved, 1.0, False, n * len(support))

    return MCMCKernel(init, step)
