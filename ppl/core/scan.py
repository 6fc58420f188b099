"""``ppl.scan``: a kernel unfolded over time (state-space and time-series models).

``ppl.scan(kernel)(init_carry, xs) @ "steps"`` runs ``kernel(carry, x) ->
(carry, y)`` once per time step, like ``jax.lax.scan``. The kernel's choices
are stacked over time: ``("steps", "x")`` has shape ``(T, ...)``. The return
value is ``(final_carry, ys)``; the score is the sum over steps. Each step
gets its own PRNG key. Every GFI method is a ``lax.scan`` of the kernel's,
so a model with 10,000 steps compiles the kernel once.

Constraints carry the time axis in front (``{"y": ys}`` with ``ys.shape[0] ==
T``); use ``ppl.masked(ys, observed)`` for a partly observed series.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import enumeration
from ppl.core.batching import log_total, loop
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.selection import Selection
from ppl.core.trace import Trace, detached
from ppl.core.vmap import check_leading_axis
from ppl.errors import CombinatorError


class ScanTrace(Trace):
    """Trace of a scan: ``inner`` is the kernel's trace stacked over time."""

    _dynamic_fields = ("gen_fn", "score", "inner")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, retval: Any, score: Any, inner: Trace):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = retval
        self.score = score
        self.inner = inner

    @property
    def choices(self) -> ChoiceMap:
        return self.inner.choices

    @property
    def deterministics(self) -> ChoiceMap:
        return self.inner.deterministics

    def project(self, selection: Selection) -> Any:
        return jnp.sum(self.inner.project(selection))


def _strong(x: Any) -> Any:
    """Drop JAX's weak type so the carry keeps one dtype across steps."""
    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


class Scan(GenerativeFunction):
    """``kernel(carry, x) -> (carry, y)`` unfolded over the leading axis of ``xs``."""

    def __init__(self, kernel: GenerativeFunction, length: int | None = None):
        if not isinstance(kernel, GenerativeFunction):
            raise CombinatorError(f"ppl.scan needs a generative function kernel, got {type(kernel).__name__}")
        self.kernel = kernel
        self.length = length
        self.name = f"scan({kernel.name})"

    def _split_args(self, args: tuple) -> tuple[Any, Any, int]:
        if len(args) != 2:
            raise CombinatorError(
                f"{self.name} takes two arguments (init_carry, xs), got {len(args)}; pass xs=None with length=T when there are no inputs"
            )
        carry, xs = args
        lengths = {jnp.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(xs) if jnp.ndim(leaf) > 0}
        if any(jnp.ndim(leaf) == 0 for leaf in jax.tree_util.tree_leaves(xs)):
            raise CombinatorError(f"{self.name}: every leaf of xs needs a leading time axis")
        if self.length is not None:
            lengths.add(self.length)
        if not lengths:
            raise CombinatorError(
                f"{self.name}: xs is None/empty, so pass the number of steps: ppl.scan(kernel, length=T)"
            )
        if len(lengths) > 1:
            raise CombinatorError(
                f"{self.name}: xs leaves and length disagree on the number of steps: {sorted(lengths)}"
            )
        carry = jax.tree_util.tree_map(_strong, carry)
        return carry, xs, lengths.pop()

    def _scan(self, step: Any, carry: Any, seqs: tuple, n: int) -> tuple[Any, Any]:
        """``lax.scan`` of ``step(carry, *slices) -> (carry, out)``, effects forwarded."""

        def checked(c: Any, xs: tuple) -> Any:
            c2, out = step(c, *xs)
            self._check_carry(c, c2)
            return c2, out

        return loop(checked, carry, seqs, n)

    def _check_carry(self, old: Any, new: Any) -> None:
        """The kernel's new carry must have the structure, shapes and dtypes of the one it received."""

        def describe(t: Any) -> str:
            leaves, tree = jax.tree_util.tree_flatten(t)
            return f"{tree} with leaves {[(tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in leaves]}"

        same = jax.tree_util.tree_structure(old) == jax.tree_util.tree_structure(new) and all(
            jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
            for a, b in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new))
        )
        if not same:
            raise CombinatorError(
                f"{self.name}: the kernel must return (new_carry, y) with new_carry of the same structure, shapes "
                f"and dtypes as the carry it received; it received {describe(old)} and returned {describe(new)}"
            )

    def _check_retval(self, tr: Trace) -> tuple[Any, Any]:
        r = tr.retval
        if not (isinstance(r, tuple) and len(r) == 2):
            raise CombinatorError(
                f"{self.name}: the kernel {self.kernel.name} must return a pair (new_carry, y); got {type(r).__name__}"
            )
        return r

    def _trace(self, args: tuple, final: Any, inner: Trace) -> ScanTrace:
        ys = inner.retval[1]
        return ScanTrace(self, args, (final, ys), log_total(inner.score), inner)

    def _simulate(self, key: Any, args: tuple) -> ScanTrace:
        carry, xs, n = self._split_args(args)

        def step(c: Any, k: Any, x: Any) -> Any:
            tr = self.kernel.simulate(k, (c, x))
            return self._check_retval(tr)[0], detached(tr)

        final, inner = self._scan(step, carry, (jax.random.split(key, n), xs), n)
        return self._trace(args, final, inner)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        carry, xs, n = self._split_args(args)
        choices = check_leading_axis(choices, n, self.name)
        summed = enumeration.scan_assess(self, choices, args)  # selected discrete choices: forward algorithm
        if summed is not None:
            return summed

        def step(c: Any, cm: ChoiceMap, x: Any) -> Any:
            w, r = self.kernel.assess(cm, (c, x))
            if not (isinstance(r, tuple) and len(r) == 2):
                raise CombinatorError(f"{self.name}: the kernel must return a pair (new_carry, y)")
            return r[0], (w, r[1])

        final, (ws, ys) = self._scan(step, carry, (choices, xs), n)
        return log_total(ws), (final, ys)

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[ScanTrace, Any]:
        carry, xs, n = self._split_args(args)
        constraints = check_leading_axis(constraints, n, self.name)

        def step(c: Any, k: Any, cm: ChoiceMap, x: Any) -> Any:
            tr, w = self.kernel.generate(k, cm, (c, x))
            return self._check_retval(tr)[0], (detached(tr), w)

        final, (inner, ws) = self._scan(step, carry, (jax.random.split(key, n), constraints, xs), n)
        return self._trace(args, final, inner), log_total(ws)

    def _update(self, key: Any, trace: ScanTrace, constraints: ChoiceMap, args: tuple):
        carry, xs, n = self._split_args(args)
        old_n = jnp.shape(trace.inner.score)[0]
        if old_n != n:
            raise CombinatorError(
                f"{self.name}: update cannot change the number of steps ({old_n} -> {n}); shapes are static"
            )
        constraints = check_leading_axis(constraints, n, self.name)

        def step(c: Any, k: Any, old: Trace, cm: ChoiceMap, x: Any) -> Any:
            tr, w, discard = self.kernel.update(k, old.with_gen_fn(self.kernel), cm, (c, x))
            return self._check_retval(tr)[0], (detached(tr), w, discard)

        final, (inner, ws, discard) = self._scan(
            step, carry, (jax.random.split(key, n), trace.inner, constraints, xs), n
        )
        return self._trace(args, final, inner), log_total(ws), discard

    def _regenerate(self, key: Any, trace: ScanTrace, selection: Selection, args: tuple):
        carry, xs, n = self._split_args(args)

        def step(c: Any, k: Any, old: Trace, x: Any) -> Any:
            tr, w = self.kernel.regenerate(k, old.with_gen_fn(self.kernel), selection, (c, x))
            return self._check_retval(tr)[0], (detached(tr), w)

        final, (inner, ws) = self._scan(step, carry, (jax.random.split(key, n), trace.inner, xs), n)
        return self._trace(args, final, inner), log_total(ws)


def scan(kernel: GenerativeFunction, length: int | None = None) -> Scan:
    """Unfold ``kernel(carry, x) -> (carry, y)`` over time; call as ``scan(k)(init, xs)``."""
    return Scan(kernel, length)
