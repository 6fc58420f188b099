"""``ppl.switch`` / ``ppl.cond``: stochastic branching with static shapes.

``ppl.switch(index, gf_0, gf_1, ...)(*args) @ "b"`` runs ``gf_index(*args)``
where ``index`` may be a random value; ``ppl.cond(pred, gf_true,
gf_false)(*args)`` is the two-branch case. Only the taken branch is executed
(``lax.switch``). The trace keeps one slot per branch (the untaken ones hold
zeros), so its shape does not depend on the branch taken; ``trace.choices``
merges them into one choice map whose entries carry *masks*: an address
shared by several branches (same shape and dtype) appears once, with the
value of the taken branch; an address of one branch only is present exactly
when that branch is taken.

Weights are exact, including when ``update``/``regenerate`` change the
branch: the new branch is generated afresh, keeping the old values of the
addresses it shares with the old branch (an MH move on the index then only
proposes what really changes). Constraints that name an address of a branch
that is not taken have probability zero: the weight is ``-inf``.

All branches take the same arguments and must return values of the same
structure, shapes and dtypes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import context
from ppl.core.address import Address, format_address
from ppl.core.choicemap import ChoiceMap
from ppl.core.generative_function import GenCall, GenerativeFunction
from ppl.core.primitive import is_discrete, value_shape
from ppl.core.selection import Selection
from ppl.core.trace import Trace
from ppl.errors import CombinatorError, MissingChoiceError, UnvisitedConstraintError


class _ShapeOnly:
    """Interceptor for shape discovery: 'samples' zeros, never a real draw."""

    def __hash__(self) -> int:
        return hash("ppl.ShapeOnly")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ShapeOnly)

    def sample(self, addr: Address, d: Any, key: Any) -> tuple[Any, Any]:
        dtype = jnp.int32 if is_discrete(d) else jnp.result_type(float)
        x = jnp.zeros(value_shape(d), dtype)
        return x, x


def _shape_of(fn: Any, *args: Any) -> Any:
    """``jax.eval_shape`` of ``fn`` with sampling replaced by zeros."""

    def run(*a: Any) -> Any:
        return context.run_collecting(fn, *a)[0]

    with context.intercept(_ShapeOnly()):
        return jax.eval_shape(run, *args)


def _zeros_like(template: Any) -> Any:
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), template)


def _expand(cond: Any, v: Any) -> Any:
    c = jnp.asarray(cond)
    return c.reshape(c.shape + (1,) * (jnp.ndim(v) - c.ndim))


class SwitchTrace(Trace):
    """One slot per branch; ``index`` says which one holds the real execution."""

    _dynamic_fields = ("gen_fn", "score", "index", "branches")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, retval: Any, score: Any, index: Any, branches: tuple):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = retval
        self.score = score
        self.index = index
        self.branches = tuple(branches)

    def _merge(self, maps: list[ChoiceMap]) -> ChoiceMap:
        entries: dict[Address, list] = {}
        for j, cm in enumerate(maps):
            for a, v, m in cm.masked_items():
                entries.setdefault(a, []).append((j, v, m))
        values: dict = {}
        masks: dict = {}
        for a, items in entries.items():
            j0, v0, _ = items[0]
            for j, v, _ in items[1:]:
                if jnp.shape(v) != jnp.shape(v0) or jnp.result_type(v) != jnp.result_type(v0):
                    raise CombinatorError(
                        f"branches {j0} and {j} of {self.gen_fn.name} both make a choice at "
                        f"{format_address(context.current_path() + a)} but with shapes/dtypes "
                        f"{jnp.shape(v0)}/{jnp.result_type(v0)} and {jnp.shape(v)}/{jnp.result_type(v)}; "
                        "use different addresses"
                    )
            value = v0
            mask = None
            for j, v, m in items:
                active = self.index == j
                if m is not None:
                    active = jnp.logical_and(active, m)
                if j != j0:
                    value = jnp.where(_expand(self.index == j, v), v, value)
                mask = active if mask is None else jnp.logical_or(mask, active)
            values[a] = value
            masks[a] = mask
        return ChoiceMap(values, masks, _trusted=True)

    @property
    def choices(self) -> ChoiceMap:
        return self._merge([b.choices for b in self.branches])

    @property
    def deterministics(self) -> ChoiceMap:
        return self._merge([b.deterministics for b in self.branches])

    def project(self, selection: Selection) -> Any:
        total = jnp.zeros(jnp.shape(self.index))
        for j, b in enumerate(self.branches):
            total = total + jnp.where(self.index == j, b.project(selection), 0.0)
        return total


class Switch(GenerativeFunction):
    """Branch between generative functions; arguments are ``(index, *args)``."""

    def __init__(self, branches: tuple):
        branches = tuple(branches)
        if len(branches) < 1:
            raise CombinatorError("ppl.switch needs at least one branch")
        for i, b in enumerate(branches):
            if not isinstance(b, GenerativeFunction):
                raise CombinatorError(f"branch {i} of ppl.switch is a {type(b).__name__}, not a generative function")
        self.branches = branches
        self.name = "switch(" + ", ".join(b.name for b in branches) + ")"

    # ------------------------------------------------------------- helpers
    def _split(self, args: tuple) -> tuple[Any, tuple]:
        if not args:
            raise CombinatorError(f"{self.name} takes (index, *args); got no arguments")
        index = jnp.asarray(args[0])
        if index.shape != ():
            raise CombinatorError(f"{self.name}: the branch index must be a scalar, got shape {index.shape}")
        if index.dtype == jnp.bool_ or not jnp.issubdtype(index.dtype, jnp.integer):
            if jnp.issubdtype(index.dtype, jnp.floating):
                raise CombinatorError(f"{self.name}: the branch index must be an integer or bool, got {index.dtype}")
        return index.astype(jnp.int32), tuple(args[1:])

    def _addresses(self, key: Any, args: tuple) -> list[set]:
        """Choice addresses of each branch (shape discovery, no real sampling)."""
        out = []
        for b in self.branches:
            tr = _shape_of(lambda k, a, b=b: b.simulate(k, a), key, args)
            out.append(set(tr.choices.addresses()))
        return out

    def _restrict(self, cm: ChoiceMap, addrs: list[set], what: str) -> list[tuple[ChoiceMap, Any]]:
        """Per branch: the entries it visits, and whether others are present."""
        union = set().union(*addrs)
        stray = [a for a in cm.addresses() if a not in union]
        if stray:
            path = context.current_path()
            raise UnvisitedConstraintError(
                f"{what} at {', '.join(format_address(path + a) for a in stray)}, which no branch of {self.name} visits"
            )
        out = []
        for s in addrs:
            inside = {}
            inside_m = {}
            present = jnp.zeros((), bool)
            for a, v, m in cm.masked_items():
                if a in s:
                    inside[a] = v
                    if m is not None:
                        inside_m[a] = m
                else:
                    present = jnp.logical_or(present, True if m is None else jnp.any(m))
            out.append((ChoiceMap(inside, inside_m, _trusted=True), present))
        return out

    def _run(self, index: Any, ops: list, template_fns: list) -> Any:
        """``lax.switch`` over per-branch ops ``op_i() -> (trace_i, extras)``.

        Each branch returns all branch slots (its own trace, zeros elsewhere)
        and its extras; effects emitted inside are forwarded.
        """
        templates = [_shape_of(f) for f in template_fns]

        def make(i: int) -> Any:
            def branch(_: Any) -> Any:
                (tr, extras), totals = context.run_collecting(ops[i])
                slots = tuple(tr if j == i else _zeros_like(templates[j][0]) for j in range(len(ops)))
                return slots, extras, totals

            return branch

        try:
            slots, extras, totals = jax.lax.switch(index, [make(i) for i in range(len(ops))], None)
        except TypeError as e:
            raise CombinatorError(
                f"{self.name}: all branches must return values of the same structure, shapes and dtypes; "
                f"JAX reports: {e}"
            ) from None
        context.reemit(totals)
        return slots, extras

    # ------------------------------------------------------------- GFI
    def _simulate(self, key: Any, args: tuple) -> SwitchTrace:
        index, a = self._split(args)
        ops = [lambda b=b: (lambda tr: (tr, (tr.score, tr.retval)))(b.simulate(key, a)) for b in self.branches]
        tfs = [lambda b=b: (b.simulate(key, a), None) for b in self.branches]
        slots, (score, retval) = self._run(index, ops, tfs)
        return SwitchTrace(self, args, retval, score, index, slots)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        index, a = self._split(args)
        key = jax.random.key(0)
        addrs = self._addresses(key, a)
        parts = self._restrict(choices, addrs, "choices were given")
        retval_t = _shape_of(lambda: self.branches[0].simulate(key, a).retval)
        fns = []
        failures = []
        for b, (cm, present) in zip(self.branches, parts):
            try:
                _shape_of(lambda b=b, cm=cm: b.assess(cm, a))
            except MissingChoiceError as e:
                failures.append(e)
                fns.append(lambda: (jnp.asarray(-jnp.inf), _zeros_like(retval_t)))
                continue
            fns.append(lambda b=b, cm=cm, present=present: _assess_or_neginf(b, cm, a, present))
        if len(failures) == len(self.branches):
            raise failures[0]
        try:
            (w, r), totals = jax.lax.switch(index, [lambda _, f=f: context.run_collecting(f) for f in fns], None)
        except TypeError as e:
            raise CombinatorError(
                f"{self.name}: all branches must return values of the same structure; JAX reports: {e}"
            ) from None
        context.reemit(totals)
        return w, r

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[SwitchTrace, Any]:
        index, a = self._split(args)
        parts = self._restrict(constraints, self._addresses(key, a), "constraints were given")

        def op(b: GenerativeFunction, cm: ChoiceMap, present: Any) -> Any:
            tr, w = b.generate(key, cm, a)
            return tr, (tr.score, tr.retval, jnp.where(present, -jnp.inf, w))

        ops = [lambda b=b, p=p: op(b, *p) for b, p in zip(self.branches, parts)]
        tfs = [lambda b=b, p=p: (b.generate(key, p[0], a)[0], None) for b, p in zip(self.branches, parts)]
        slots, (score, retval, w) = self._run(index, ops, tfs)
        return SwitchTrace(self, args, retval, score, index, slots), w

    def _update(self, key: Any, trace: SwitchTrace, constraints: ChoiceMap, args: tuple):
        index, a = self._split(args)
        addrs = self._addresses(key, a)
        parts = self._restrict(constraints, addrs, "constraints were given")
        old_choices = trace.choices
        old_addrs = old_choices.addresses()

        def uniform_discard(disc: ChoiceMap) -> ChoiceMap:
            values, masks = {}, {}
            for x in old_addrs:
                old_v = old_choices.get_value(x)
                if x in disc:
                    values[x] = disc.get_value(x)
                    m = disc.mask(x)
                    masks[x] = jnp.ones(jnp.shape(trace.index), bool) if m is None else m
                else:
                    values[x] = old_v
                    masks[x] = jnp.zeros(jnp.shape(trace.index), bool)
            return ChoiceMap(values, masks, _trusted=True)

        def fitted(disc: ChoiceMap) -> ChoiceMap:
            # lax.cond/lax.switch need one discard mask shape per address from every path: a
            # vmapped branch masks elementwise where another masks the whole address.
            def shape(x: Any) -> tuple:
                ms = [m for m in (old_choices.mask(x), constraints.mask(x)) if m is not None]
                return jnp.broadcast_shapes((), *(jnp.shape(m) for m in ms))

            return disc.with_masks({x: jnp.broadcast_to(disc.mask(x), shape(x)) for x in disc.addresses()})

        def op(i: int) -> Any:
            b = self.branches[i]
            cm, present = parts[i]
            shared = [x for x in old_addrs if x in addrs[i]]

            def same(_: Any) -> Any:
                tr, w, disc = b.update(key, trace.branches[i], cm, a)
                return tr, w, fitted(uniform_discard(disc))

            def other(_: Any) -> Any:
                # A shared value is kept wherever no constraint is present there: a masked-out
                # constraint is not a constraint (the contract), so the old value stays.
                values, masks, dmask = dict(cm._values), dict(cm._masks), {}
                for x in old_addrs:
                    old_m = old_choices.mask(x)
                    old_m = jnp.ones((), bool) if old_m is None else old_m
                    if x not in shared:
                        dmask[x] = old_m
                        continue
                    old_v = old_choices.get_value(x)
                    if x in cm:
                        m = cm.mask(x)
                        m = jnp.ones((), bool) if m is None else jnp.asarray(m)
                        values[x] = jnp.where(_expand(m, old_v), cm.get_value(x), old_v)
                        masks[x] = jnp.logical_or(m, old_m)
                        dmask[x] = jnp.logical_and(old_m, m)
                    else:
                        values[x] = old_v
                        masks[x] = old_m
                        dmask[x] = jnp.zeros_like(old_m)
                merged = ChoiceMap(values, masks, _trusted=True)
                tr, w = b.generate(key, merged, a)
                return tr, w - trace.score, fitted(ChoiceMap(old_choices._values, dmask, _trusted=True))

            tr, w, disc = jax.lax.cond(trace.index == i, same, other, None)
            return tr, (tr.score, tr.retval, jnp.where(present, -jnp.inf, w), disc)

        ops = [lambda i=i: op(i) for i in range(len(self.branches))]
        tfs = [lambda i=i: (self.branches[i].generate(key, parts[i][0], a)[0], None) for i in range(len(self.branches))]
        slots, (score, retval, w, discard) = self._run(index, ops, tfs)
        return SwitchTrace(self, args, retval, score, index, slots), w, discard

    def _regenerate(self, key: Any, trace: SwitchTrace, selection: Selection, args: tuple):
        index, a = self._split(args)
        addrs = self._addresses(key, a)
        old_choices = trace.choices
        old_addrs = old_choices.addresses()

        def op(i: int) -> Any:
            b = self.branches[i]
            retained = frozenset(x for x in old_addrs if x in addrs[i] and not selection.contains(x))

            def same(_: Any) -> Any:
                return b.regenerate(key, trace.branches[i], selection, a)

            def other(_: Any) -> Any:
                keep = old_choices.filter(Selection(retained))
                tr, w = b.generate(key, keep, a)
                dropped = Selection(retained).complement()
                return tr, w - trace.score + trace.project(dropped)

            tr, w = jax.lax.cond(trace.index == i, same, other, None)
            return tr, (tr.score, tr.retval, w)

        ops = [lambda i=i: op(i) for i in range(len(self.branches))]
        tfs = [lambda i=i: (self.branches[i].simulate(key, a), None) for i in range(len(self.branches))]
        slots, (score, retval, w) = self._run(index, ops, tfs)
        return SwitchTrace(self, args, retval, score, index, slots), w


def _assess_or_neginf(b: GenerativeFunction, cm: ChoiceMap, a: tuple, present: Any) -> Any:
    w, r = b.assess(cm, a)
    return jnp.where(present, -jnp.inf, w), r


class _BoundSwitch:
    """``ppl.switch(index, *gfs)``: call it with the branches' arguments."""

    __slots__ = ("gen_fn", "index")

    def __init__(self, gen_fn: Switch, index: Any):
        self.gen_fn = gen_fn
        self.index = index

    def __call__(self, *args: Any) -> GenCall:
        return GenCall(self.gen_fn, (self.index, *args))

    def __matmul__(self, addr: Any) -> Any:
        return GenCall(self.gen_fn, (self.index,)) @ addr


def switch(index: Any, *branches: GenerativeFunction) -> _BoundSwitch:
    """Run ``branches[index]``: ``ppl.switch(i, gf_0, gf_1)(*args) @ "addr"``.

    Choices are addressed as in the taken branch (``("addr", "x")``);
    ``index`` may be a random integer. The branches take the same arguments.
    """
    return _BoundSwitch(Switch(branches), index)


def cond(pred: Any, gf_true: GenerativeFunction, gf_false: GenerativeFunction) -> _BoundSwitch:
    """Run ``gf_true`` if ``pred`` else ``gf_false``: ``ppl.cond(p, t, f)(*args) @ "addr"``."""
    index = jnp.asarray(pred).astype(jnp.int32)
    return _BoundSwitch(Switch((gf_false, gf_true)), index)
