r"""Exact summation of finite discrete choices by variable elimination.

``marginal_log_density(model, choices, args, sites)`` is

    log sum_{v} p(choices, z = v)

over every joint value ``v`` of the choices selected by ``sites`` that
``choices`` does not give (finite supports: Bernoulli, Categorical, ...).
It is computed from the model's structure, never by enumerating the whole
joint space when the structure allows better:

* **inside ``ppl.vmap``** (independent elements): each element sums its own
  choices, ``sum_i log sum_{v_i} p_i(choices_i, z_i = v_i)``, all elements
  and values in one vectorised call: ``O(N K)`` element evaluations for
  ``N`` elements and ``K`` joint values per element (instead of ``K^N``);
* **inside ``ppl.scan``** (a Markov chain through the carry): the forward
  algorithm. With ``alpha_t(v) = log p(choices_{1:t}, z_t = v)``,

      alpha_t(v) = logsumexp_u [ alpha_{t-1}(u) + log p_t(choices_t, z_t = v | carry_{t-1}(u)) ],

  ``O(T K^2)`` kernel evaluations; the result is ``logsumexp_v alpha_T(v)``.
  This needs the carry after step ``t`` to depend on the enumerated values
  of step ``t`` only (``carry_t(v)``, e.g. the hidden state itself), which is
  checked while tracing;
* **anywhere else** (choices of the top-level body): the joint grid of their
  values, each value one run of the rest of the model (``K`` runs), with
  the vmap/scan eliminations above applied inside every run.

Selected choices that ``choices`` does give are not summed (they are
conditioned on), so the same selection serves a model run with some of its
discrete values observed.

Values that depend on a summed choice must not leave the place where it is
summed: a ``ppl.vmap`` element's return value, a ``ppl.scan`` step's output
``y`` and the scan's final carry are not defined once the choice is summed
out. The first two are checked while tracing (:class:`EnumerationError`
naming the address); the final carry of an enumerated scan is returned as a
placeholder that raises on any use.

Implementation: the elimination is a handler on the stack
(:class:`Enumerate`, part of every compile key) that ``Vmap._assess`` and
``Scan._assess`` consult; the choices each level owns and their supports
are found by tracing the body once, shape only (a recording handler).
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.batching import log_total, loop
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.selection import Selection, as_selection
from ppl.errors import EnumerationError

#: the largest number of joint values one level may enumerate (K for a vmap element or scan step, the grid at top level)
MAX_JOINT_VALUES = 4096


#: address component under which a choice map carries *tilts*: additive terms on the log weight of every
#: summed value of one level (``ppl.infer.infer_discrete`` differentiates the log marginal with respect to them)
TILT = "__ppl_tilt__"


class Level(NamedTuple):
    """One place where choices are summed: ``kind`` ("vmap", "scan", "top"), its address, its tilt's shape."""

    kind: str
    prefix: tuple
    shape: tuple  # full shape of the tilt entry at prefix + (TILT,): enclosing boundaries' sizes first
    sites: tuple  # ((relative address, values (K, *value_shape)), ...), in grid order


class Enumerate:
    """Handler marking the selected choices to be summed out wherever they are missing.

    With ``record=True`` every level that sums records a :class:`Level` in
    ``levels`` while it is traced (used by ``ppl.infer.infer_discrete``;
    recording is not part of the handler's identity).
    """

    channels: tuple = ()

    def __init__(self, sites: Selection, record: bool = False):
        self.sites = sites
        self.levels: list[Level] | None = [] if record else None

    def note(self, kind: str, shape: tuple, sites: list, values: ChoiceMap) -> None:
        if self.levels is None:
            return
        prefix = context.current_path()
        if any(lv.prefix == prefix for lv in self.levels):
            return
        outer = tuple(size for _, size in context.elements())
        recs = tuple((st.address, np.asarray(st.values)) for st in sites)
        self.levels.append(Level(kind, prefix, outer + tuple(shape), recs))

    def __hash__(self) -> int:
        return hash(("ppl.enumerate", self.sites))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Enumerate) and other.sites == self.sites


def active() -> Enumerate | None:
    """The innermost :class:`Enumerate` handler installed, or None."""
    for h in reversed(context.interceptors()):
        if isinstance(h, Enumerate):
            return h
    return None


class EnumSite(NamedTuple):
    address: tuple  # relative to the level that sums it
    values: np.ndarray  # (K, *value_shape)


class _Record:
    """Shape-only recording of every site: full address, distribution, batching depth."""

    channels: tuple = ()

    def __init__(self) -> None:
        self.sites: list = []

    def process(self, site: Any) -> None:
        self.sites.append((site.address, site.dist, len(context.elements())))


def _support(addr: tuple, d: Any) -> np.ndarray:
    where = format_address(addr)
    if not getattr(d.support, "is_discrete", False) or not getattr(d, "has_enumerate_support", False):
        raise EnumerationError(
            f"the choice at {where} ({type(d).__name__}) cannot be summed out: its support is "
            + ("infinite" if getattr(d.support, "is_discrete", False) else "continuous")
            + "; only finite discrete choices (Bernoulli, Categorical, Binomial with a fixed total_count, ...) "
            "can be enumerated (use a gradient kernel, a REINFORCE/MVD estimator, or leave it out of the selection)"
        )
    if tuple(d.batch_shape):
        raise EnumerationError(
            f"the choice at {where} has batch shape {tuple(d.batch_shape)}: only scalar discrete choices are "
            "summed out; put the independent copies in ppl.vmap so each element sums its own"
        )
    try:
        with jax.ensure_compile_time_eval():
            values = d.enumerate_support(expand=False)
            values = np.asarray(values)
    except jax.errors.ConcretizationTypeError as e:
        raise EnumerationError(
            f"the support of the choice at {where} ({type(d).__name__}) depends on traced values (e.g. a "
            "total_count that is a latent or an argument under jit), so it cannot be enumerated at compile time"
        ) from e
    return values.reshape((values.shape[0], *tuple(d.event_shape)))


def owned_sites(run_body: Any, prefix: tuple, given: Any, depth: int) -> list[EnumSite]:
    """The selected choices missing from ``given`` that the level at ``prefix`` sums itself.

    ``run_body()`` simulates the level's body (traced shape-only here); a site
    belongs to the level when no deeper ``ppl.vmap``/``ppl.scan`` lies between
    (batching depth ``depth``). Addresses in the result are relative to ``prefix``.
    """
    h = active()
    if h is None:
        return []
    rec = _Record()

    def probe() -> None:  # only the recorder: the handlers outside (and their effect channels) stay out
        with context.no_interceptors(), context.intercept(rec), context.eager():
            run_body()

    jax.eval_shape(probe)
    out = []
    for addr, d, d_depth in rec.sites:
        if d_depth != depth or not h.sites.contains(addr) or addr[: len(prefix)] != prefix:
            continue
        rel = addr[len(prefix) :]
        if rel in given:
            continue
        out.append(EnumSite(rel, _support(addr, d)))
    return out


def grid(sites: list[EnumSite], where: str) -> ChoiceMap:
    """Stacked choice maps of every joint value (leading axis: the joint index)."""
    sizes = [s.values.shape[0] for s in sites]
    total = int(np.prod(sizes, dtype=np.int64))
    if total > MAX_JOINT_VALUES:
        raise EnumerationError(
            f"{where}: summing out {', '.join(format_address(s.address) for s in sites)} needs {total} joint "
            f"values at one level (more than ppl.core.enumeration.MAX_JOINT_VALUES = {MAX_JOINT_VALUES}); put "
            "independent choices in ppl.vmap or chain them through ppl.scan so they are summed separately"
        )
    idx = np.asarray(list(itertools.product(*[range(k) for k in sizes])), dtype=np.int64).reshape(total, len(sites))
    values = {s.address: jnp.asarray(s.values[idx[:, j]]) for j, s in enumerate(sites)}
    return ChoiceMap(values)


def grid_sites(sites: list[EnumSite]) -> list[EnumSite]:
    """``sites`` with their values listed per joint value (the grid's order), for recording."""
    sizes = [s.values.shape[0] for s in sites]
    idx = np.asarray(list(itertools.product(*[range(k) for k in sizes])), dtype=np.int64).reshape(-1, len(sites))
    return [EnumSite(s.address, s.values[idx[:, j]]) for j, s in enumerate(sites)]


def split_tilt(choices: ChoiceMap) -> tuple[ChoiceMap, Any]:
    """``(choices without this level's tilt, the tilt or None)``."""
    if (TILT,) not in choices:
        return choices, None
    return choices.without(Selection(frozenset({(TILT,)}))), choices[(TILT,)]


def vmap_values(fn: Any, values: ChoiceMap, out_axes: Any = 0) -> Any:
    """``jax.vmap(fn, out_axes=out_axes)(values)`` with the open effect channels collected per value.

    A summed evaluation is an ``assess``: its sites are given values, and
    what handlers report from them (the log-Jacobian of an unconstrained
    view; nothing for the ``ppl.vi`` estimators, which act on draws) does not
    depend on the summed values, so the first value's reports are re-emitted
    once.
    """
    names = context.effect_channels() if context.collecting() else ()
    if not names:
        return jax.vmap(fn, out_axes=out_axes)(values)

    def one(v: ChoiceMap) -> Any:
        return context.run_collecting(fn, v)

    out, totals = jax.vmap(one, out_axes=(out_axes, 0))(values)
    context.reemit({n: t[0] for n, t in totals.items()})
    return out


def _names(values: ChoiceMap, prefix: tuple) -> str:
    return ", ".join(format_address(prefix + a) for a in values.addresses())


def _element_marginal(
    assess: Any, values: ChoiceMap, choices: ChoiceMap, where: str, tilt: Any = None
) -> tuple[Any, Any]:
    """``logsumexp_v [assess(choices | v) + tilt(v)]``; the return value must not depend on ``v``."""

    def one(v: ChoiceMap) -> tuple[Any, Any]:
        return assess(choices | v)

    try:
        ws, retval = vmap_values(one, values, out_axes=(0, None))
    except ValueError as e:  # jax.vmap: an output with out_axes=None is batched
        raise EnumerationError(
            f"{where}: the return value depends on a choice that is summed out "
            f"({_names(values, context.current_path())}); return values that do not depend on it, "
            "or give the choice a value"
        ) from e
    return logsumexp(ws if tilt is None else ws + tilt), retval


def vmap_assess(vm: Any, choices: ChoiceMap, args: tuple) -> tuple[Any, Any] | None:
    """``Vmap._assess`` with the elements' own selected choices summed out (None: nothing to sum here)."""
    if active() is None:
        return None
    prefix = context.current_path()
    depth = len(context.elements()) + 1
    body = vm.gen_fn
    key = jax.random.key(0)
    choices, tilt = split_tilt(choices)
    given0 = set(choices.addresses())
    sites = owned_sites(lambda: vm._vmap(lambda a: body.simulate(key, a), args), prefix, given0, depth)
    if not sites:
        return None
    values = grid(sites, vm.name)
    h = active()
    h.note("vmap", (vm.batch_size(args), jnp.shape(values[values.addresses()[0]])[0]), grid_sites(sites), values)
    if tilt is None:
        w, r = vm._vmap(
            lambda c, a: _element_marginal(lambda cm: body.assess(cm, a), values, c, vm.name), args, choices
        )
    else:
        w, r = vm._vmap(
            lambda c, t, a: _element_marginal(lambda cm: body.assess(cm, a), values, c, vm.name, t),
            args,
            choices,
            tilt,
        )
    return log_total(w), r


class SummedOut:
    """Stands for a value that depends on a choice summed out (an enumerated scan's final carry)."""

    def __init__(self, where: str):
        self._where = where

    def _fail(self, *_: Any, **__: Any) -> Any:
        raise EnumerationError(
            f"{self._where}: this value may depend on choices that are summed out (an enumerated scan's final "
            "carry, a model's return value), so it has no single value after enumeration; do not use it (or give "
            "those choices values)"
        )

    __array__ = __jax_array__ = __getitem__ = __iter__ = __len__ = __bool__ = __float__ = __int__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _fail
    __matmul__ = __rmatmul__ = __pow__ = __neg__ = __lt__ = __le__ = __gt__ = __ge__ = _fail

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._fail()

    def __repr__(self) -> str:
        return f"SummedOut({self._where})"


def scan_assess(sc: Any, choices: ChoiceMap, args: tuple) -> tuple[Any, Any] | None:
    """``Scan._assess`` with the steps' own selected choices summed out by the forward algorithm."""
    if active() is None:
        return None
    carry, xs, n = sc._split_args(args)
    prefix = context.current_path()
    depth = len(context.elements()) + 1
    kernel = sc.kernel
    key = jax.random.key(0)
    x0 = jax.tree_util.tree_map(lambda leaf: leaf[0], xs)
    choices, tilt = split_tilt(choices)
    given0 = set(choices.addresses())

    def run_step() -> Any:
        with context.element(jnp.int32(0), n):
            return kernel.simulate(key, (carry, x0))

    sites = owned_sites(run_step, prefix, given0, depth)
    if not sites:
        return None
    values = grid(sites, sc.name)
    where = sc.name
    g = jnp.shape(values[values.addresses()[0]])[0]
    active().note("scan", (n, g, g), grid_sites(sites), values)
    if tilt is None:
        tilt = jnp.zeros((n, g, g))

    def kernel_step(cm: ChoiceMap, c: Any, x: Any) -> tuple[Any, Any, Any]:
        w, r = kernel.assess(cm, (c, x))
        if not (isinstance(r, tuple) and len(r) == 2):
            raise EnumerationError(f"{where}: the kernel must return a pair (new_carry, y)")
        return w, r[0], r[1]

    first_cm = jax.tree_util.tree_map(lambda leaf: leaf[0], choices)
    # Which leaves of the new carry depend on the step's enumerated values (the hidden state) and which
    # pass through unchanged for every value (parameters, counters): only the former are kept per value.
    leaves, treedef = jax.tree_util.tree_flatten(carry)

    def depends(i: int) -> bool:
        def leaf_i(v: ChoiceMap) -> Any:
            with context.element(jnp.int32(0), n):
                return jax.tree_util.tree_leaves(kernel_step(first_cm | v, carry, x0)[1])[i]

        def probe() -> Any:  # reports made while probing are discarded
            if not context.collecting():
                return vmap_values(leaf_i, values, out_axes=None)
            with context.collect(context.effect_channels()):
                return vmap_values(leaf_i, values, out_axes=None)

        try:
            jax.eval_shape(probe)
        except ValueError:
            return True
        return False

    axes = jax.tree_util.tree_unflatten(treedef, [0 if depends(i) else None for i in range(len(leaves))])

    def escape(e: Exception, what: str) -> EnumerationError:
        return EnumerationError(
            f"{where}: {what}, so the forward algorithm does not apply: the carry after a step may depend on "
            f"the summed-out choices only through their values at that step ({_names(values, prefix)}, e.g. "
            "the hidden state itself), and the step output y not at all"
        )

    def transition(prev: Any, prev_axes: Any, cm: ChoiceMap, x: Any) -> tuple[Any, Any, Any]:
        """``(w[u, v], carry[v], y)`` for every previous state ``u`` and joint value ``v``."""

        def for_v(v: ChoiceMap) -> Any:
            if prev_axes is None:  # the initial carry: one previous state
                w, c2, y = kernel_step(cm | v, prev, x)
                return jnp.expand_dims(w, 0), c2, y
            try:
                return jax.vmap(lambda c: kernel_step(cm | v, c, x), in_axes=(prev_axes,), out_axes=(0, None, None))(
                    prev
                )
            except ValueError as e:
                raise escape(e, "the new carry or y depends on the previous step's summed-out values") from e

        try:
            return vmap_values(for_v, values, out_axes=(1, axes, None))
        except ValueError as e:
            raise escape(e, "y (or a carry leaf that passes through at the first step) depends on them") from e

    with context.element(jnp.int32(0), n):
        w0, carries, y0 = transition(carry, None, first_cm, x0)
    alpha = w0[0] + tilt[0, 0]  # one initial state (row 0 of the first step's tilt)
    rest_cm = jax.tree_util.tree_map(lambda leaf: leaf[1:], choices)
    rest_xs = jax.tree_util.tree_map(lambda leaf: leaf[1:], xs)

    def step(state: tuple, inp: tuple) -> tuple:
        a, cs = state
        cm, x, th = inp
        w, cs2, y = transition(cs, axes, cm, x)
        return (logsumexp(a[:, None] + w + th, axis=0), cs2), y

    if n > 1:
        (alpha, _), ys_rest = loop(step, (alpha, carries), (rest_cm, rest_xs, tilt[1:]), n - 1)
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([jnp.expand_dims(a, 0), b]), y0, ys_rest)
    else:
        ys = jax.tree_util.tree_map(lambda a: jnp.expand_dims(a, 0), y0)
    return logsumexp(alpha), (SummedOut(sc.name), ys)


def sum_top_level(gen_fn: Any, args: tuple, given: Any, log_density: Any, tilt: Any = None) -> Any:
    """``logsumexp_v log_density(v)`` over the joint values ``v`` (a choice map) of the selected choices
    missing from ``given`` that no ``ppl.vmap``/``ppl.scan`` of ``gen_fn`` sums itself; ``log_density(empty)``
    when there are none. Call with an :class:`Enumerate` handler installed."""
    key = jax.random.key(0)
    top = owned_sites(lambda: gen_fn.simulate(key, args), context.current_path(), set(given), len(context.elements()))
    if not top:
        return log_density(ChoiceMap.empty())
    values = grid(top, gen_fn.name)
    active().note("top", (jnp.shape(values[values.addresses()[0]])[0],), grid_sites(top), values)
    ws = vmap_values(log_density, values)
    return logsumexp(ws if tilt is None else ws + tilt)


def marginal_log_density(gen_fn: Any, choices: Any, args: tuple = (), sites: Any = None) -> Any:
    """``log sum_v p(choices, sites = v)`` over the selected discrete choices that ``choices`` lacks.

    ``sites``: a selection (or addresses) of the choices to sum out; None
    selects every choice (only missing ones are summed). See the module
    docstring for the cost in each structure.
    """
    sel = Selection(frozenset({()}), False) if sites is None else as_selection(sites)
    cm, tilt = split_tilt(as_choicemap(choices))
    h = active()
    handler = h if h is not None and h.sites == sel and h.levels is not None else Enumerate(sel)
    with context.intercept(handler):
        return sum_top_level(gen_fn, args, cm.addresses(), lambda v: gen_fn.assess(cm | v, args)[0], tilt)


__all__ = [
    "MAX_JOINT_VALUES",
    "TILT",
    "Enumerate",
    "Level",
    "EnumerationError",
    "SummedOut",
    "marginal_log_density",
    "sum_top_level",
]
