"""``@ppl.gen``: Python functions as generative functions.

A ``@gen`` function's body runs under a *handler*, one per GFI method. Each
random choice (``ppl.sample(addr, d)`` or ``d @ addr``) and each nested call
(``gf(*args) @ addr``) is a *site*; the handler decides what the site does
(sample, read a constraint, reuse the old value, ...) and accumulates the
score and the weight. This is the whole modelling language: about as small
as numpyro's effect handlers, but the handlers implement the GFI.

Each site gets its own PRNG key, ``fold_in``-derived from the caller's key and
the site's address, so two sites never share randomness and re-running a
program with the same key reproduces every draw.
"""

from __future__ import annotations

import ast
import linecache
import os
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution

from ppl.core import context
from ppl.core.address import Address, fold_key, format_address, is_prefix, normalize
from ppl.core.choicemap import ChoiceMap
from ppl.core.foreign import refuse_foreign
from ppl.core.generative_function import GenCall, GenerativeFunction
from ppl.core.identity import FunctionTree
from ppl.core.primitive import PRIMITIVE, check_distribution
from ppl.core.reparameterize import check_unobserved, rule_for
from ppl.core.selection import Selection
from ppl.core.trace import ChoiceTrace, DeterministicTrace, FactorTrace, GenTrace, Trace
from ppl.errors import (
    ArgumentError,
    DuplicateAddressError,
    NotADistributionError,
    OutsideModelError,
    PPLError,
    TracedControlFlowError,
    UnvisitedConstraintError,
)

# --------------------------------------------------------------------- handlers


class _Handler:
    """Shared bookkeeping: addresses visited, sub-traces, score and weight."""

    method = "run"

    def __init__(self, gen_fn: GenFunction):
        self.gen_fn = gen_fn
        self.subtraces: dict[Address, Trace] = {}
        self.visited: list[Address] = []
        self._score = jnp.zeros(())
        self._weight = jnp.zeros(())
        self._impossible: Any = None  # traced bool, set once some value is found outside its support
        self.values_seen: list[tuple[Address, Any]] = []

    # A value outside its support makes the run's score and weight -inf even when a later
    # term is NaN because the bad value fed another distribution (a negative scale). Only
    # sites that check a given value's support (and nested calls) report, so a run on values
    # in the support by construction (HMC's unconstrained positions) pays nothing.
    def note_impossible(self, flag: Any) -> None:
        self._impossible = flag if self._impossible is None else jnp.logical_or(self._impossible, flag)

    def add_score(self, term: Any) -> None:
        self._score = self._score + term

    def add_weight(self, term: Any) -> None:
        self._weight = self._weight + term

    @property
    def score(self) -> Any:
        return self._score if self._impossible is None else jnp.where(self._impossible, -jnp.inf, self._score)

    @property
    def weight(self) -> Any:
        return self._weight if self._impossible is None else jnp.where(self._impossible, -jnp.inf, self._weight)

    def claim(self, addr: Address) -> None:
        for other in self.visited:
            if other == addr or is_prefix(other, addr) or is_prefix(addr, other):
                full = context.full_address(addr)
                if other == addr:
                    msg = f"address {format_address(full)} was used twice in one run of {self.gen_fn.name}"
                else:
                    msg = (
                        f"address {format_address(full)} clashes with {format_address(context.full_address(other))} "
                        f"in {self.gen_fn.name}: one is a namespace containing the other"
                    )
                raise DuplicateAddressError(
                    msg + "; every choice needs its own address (in a Python loop use (name, i); for many "
                    "independent copies use ppl.vmap, for time steps ppl.scan)"
                )
        self.visited.append(addr)

    def record(self, addr: Address, tr: Trace) -> None:
        self.subtraces[addr] = tr
        self.add_score(tr.score)
        if not isinstance(tr, (ChoiceTrace, FactorTrace)):  # a nested call: impossible inside, impossible here
            self.note_impossible(tr.score == -jnp.inf)

    def site(self, addr: Address, callee: Any, args: Any) -> Any:
        self.claim(addr)
        with context.path(addr):
            if callee is PRIMITIVE:
                value = self.primitive(addr, args)
            else:
                value = self.call(addr, callee, args)
        self.values_seen.append((addr, value))
        return value

    # what to do at each kind of site; overridden per GFI method
    def primitive(self, addr: Address, d: Distribution) -> Any:
        raise NotImplementedError

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        raise NotImplementedError

    def factor(self, addr: Address, lw: Any) -> None:
        self.claim(addr)
        lw = jnp.sum(jnp.asarray(lw))
        self.record(addr, FactorTrace(lw))
        self.add_weight(self.factor_weight(addr, lw))

    def factor_weight(self, addr: Address, lw: Any) -> Any:
        return lw

    def deterministic(self, addr: Address, value: Any) -> None:
        self.claim(addr)
        self.subtraces[addr] = DeterministicTrace(jnp.asarray(value))

    def finish(self) -> None:
        pass


def _check_all_visited(h: _Handler, cm: ChoiceMap, what: str) -> None:
    if cm.is_empty():
        return
    bad = [a for a in cm.addresses() if not any(is_prefix(v, a) for v in h.visited)]
    if bad:
        path = context.current_path()
        names = ", ".join(format_address(path + a) for a in bad[:8])
        seen = ", ".join(format_address(path + v) for v in h.visited[:12]) or "(none)"
        raise UnvisitedConstraintError(
            f"{what} at {names}, which {h.gen_fn.name} never visits in this run; its addresses here are: {seen}"
        )
    for a in cm.addresses():
        site = next(v for v in h.visited if is_prefix(v, a))
        sub = h.subtraces.get(site)
        if isinstance(sub, (DeterministicTrace, FactorTrace)):
            kind = "ppl.deterministic" if isinstance(sub, DeterministicTrace) else "ppl.factor"
            raise UnvisitedConstraintError(
                f"{what} at {format_address(context.current_path() + a)}, which is a {kind} site, not a random choice"
            )


class _Simulate(_Handler):
    method = "simulate"

    def __init__(self, gen_fn: GenFunction, key: Any):
        super().__init__(gen_fn)
        self.key = key

    def primitive(self, addr: Address, d: Distribution) -> Any:
        tr, pv = PRIMITIVE.simulate(fold_key(self.key, addr), d)
        self.record(addr, tr)
        return pv

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        tr = gf.simulate(fold_key(self.key, addr), args)
        self.record(addr, tr)
        return tr.retval


class _Assess(_Handler):
    method = "assess"

    def __init__(self, gen_fn: GenFunction, choices: ChoiceMap):
        super().__init__(gen_fn)
        self.choices = choices

    def primitive(self, addr: Address, d: Distribution) -> Any:
        w, pv = PRIMITIVE.assess(self.choices.get_submap(addr), d)
        self.add_weight(w)
        return pv

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        w, r = gf.assess(self.choices.get_submap(addr), args)
        self.add_weight(w)
        self.note_impossible(w == -jnp.inf)
        return r

    def factor(self, addr: Address, lw: Any) -> None:
        self.claim(addr)
        self.add_weight(jnp.sum(jnp.asarray(lw)))

    def deterministic(self, addr: Address, value: Any) -> None:
        self.claim(addr)

    def finish(self) -> None:
        _check_all_visited(self, self.choices, "choices were given")


class _Generate(_Handler):
    method = "generate"

    def __init__(self, gen_fn: GenFunction, key: Any, constraints: ChoiceMap):
        super().__init__(gen_fn)
        self.key = key
        self.constraints = constraints

    def primitive(self, addr: Address, d: Distribution) -> Any:
        tr, w, pv = PRIMITIVE.generate(fold_key(self.key, addr), self.constraints.get_submap(addr), d)
        self.record(addr, tr)
        self.add_weight(w)
        return pv

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        tr, w = gf.generate(fold_key(self.key, addr), self.constraints.get_submap(addr), args)
        self.record(addr, tr)
        self.add_weight(w)
        return tr.retval

    def finish(self) -> None:
        _check_all_visited(self, self.constraints, "constraints were given")


class _Update(_Handler):
    method = "update"

    def __init__(self, gen_fn: GenFunction, key: Any, old: GenTrace, constraints: ChoiceMap):
        super().__init__(gen_fn)
        self.key = key
        self.old = old.subtrace_map()
        self.constraints = constraints
        self.discard: dict = {}
        self.discard_masks: dict = {}

    def _discard(self, addr: Address, cm: ChoiceMap) -> None:
        for a, v, m in cm.masked_items():
            self.discard[addr + a] = v
            if m is not None:
                self.discard_masks[addr + a] = m

    def primitive(self, addr: Address, d: Distribution) -> Any:
        key = fold_key(self.key, addr)
        sub = self.constraints.get_submap(addr)
        old = self.old.get(addr)
        if isinstance(old, ChoiceTrace):
            tr, w, disc, pv = PRIMITIVE.update(key, old, sub, d)
            self._discard(addr, disc)
        else:
            tr, w, pv = PRIMITIVE.generate(key, sub, d)
            if old is not None:
                w = w - old.score
                self._discard(addr, old.choices)
        self.record(addr, tr)
        self.add_weight(w)
        return pv

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        key = fold_key(self.key, addr)
        sub = self.constraints.get_submap(addr)
        old = self.old.get(addr)
        if old is not None and getattr(old, "gen_fn", None) == gf:
            tr, w, disc = gf.update(key, old, sub, args)
            self._discard(addr, disc)
        else:
            tr, w = gf.generate(key, sub, args)
            if old is not None:
                w = w - old.score
                self._discard(addr, old.choices)
        self.record(addr, tr)
        self.add_weight(w)
        return tr.retval

    def factor_weight(self, addr: Address, lw: Any) -> Any:
        old = self.old.get(addr)
        return lw - old.score if isinstance(old, FactorTrace) else lw

    def finish(self) -> None:
        _check_all_visited(self, self.constraints, "constraints were given")
        for addr, old in self.old.items():
            if addr not in self.subtraces:
                self.add_weight(-old.score)
                self._discard(addr, old.choices)
            elif isinstance(old, FactorTrace) and not isinstance(self.subtraces[addr], FactorTrace):
                self.add_weight(-old.score)


class _Regenerate(_Handler):
    method = "regenerate"

    def __init__(self, gen_fn: GenFunction, key: Any, old: GenTrace, selection: Selection):
        super().__init__(gen_fn)
        self.key = key
        self.old = old.subtrace_map()
        self.selection = selection

    def primitive(self, addr: Address, d: Distribution) -> Any:
        key = fold_key(self.key, addr)
        old = self.old.get(addr)
        if isinstance(old, ChoiceTrace):
            tr, w, pv = PRIMITIVE.regenerate(key, old, self.selection.subselection(addr), d)
        else:
            tr, pv = PRIMITIVE.simulate(key, d)
            w = jnp.zeros(())
        self.record(addr, tr)
        self.add_weight(w)
        return pv

    def call(self, addr: Address, gf: GenerativeFunction, args: tuple) -> Any:
        key = fold_key(self.key, addr)
        old = self.old.get(addr)
        if old is not None and getattr(old, "gen_fn", None) == gf:
            tr, w = gf.regenerate(key, old, self.selection.subselection(addr), args)
        else:
            tr = gf.simulate(key, args)
            w = jnp.zeros(())
        self.record(addr, tr)
        self.add_weight(w)
        return tr.retval

    def factor_weight(self, addr: Address, lw: Any) -> Any:
        old = self.old.get(addr)
        return lw - old.score if isinstance(old, FactorTrace) else lw

    def finish(self) -> None:
        # Choices no longer visited are proposed by the reverse move from their
        # prior and cancel; factors have no proposal and count in the ratio.
        for addr, old in self.old.items():
            if isinstance(old, FactorTrace) and not isinstance(self.subtraces.get(addr), FactorTrace):
                self.add_weight(-old.score)


# ------------------------------------------------------------- the @gen class


class GenFunction(GenerativeFunction):
    """A generative function defined by a Python function (see ``ppl.gen``).

    Its identity is the function's code and static captures; arrays the
    function closes over are leaves (:class:`ppl.core.identity.FunctionTree`),
    so a ``@ppl.gen`` defined inside another model's body (a new closure on
    every run) is the same generative function on every run.
    """

    _fields = ("_fn_tree", "name")

    def __init__(self, fn: Callable[..., Any], name: str | None = None):
        self._fn_tree = _function_tree(fn)
        self.name = name or getattr(fn, "__name__", "gen_fn")

    @property
    def fn(self) -> Callable[..., Any]:
        t = self._fn_tree
        return t.function() if isinstance(t, FunctionTree) else t

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self.fn

    def _run(self, h: _Handler, args: tuple) -> Any:
        with context.handler(h), refuse_foreign(self.name):
            try:
                retval = self.fn(*args)
            except PPLError:
                raise
            except (
                jax.errors.ConcretizationTypeError,
                jax.errors.TracerIntegerConversionError,
                jax.errors.TracerArrayConversionError,
                jax.errors.NonConcreteBooleanIndexError,
            ) as e:
                raise _control_flow_error(self, h, e) from None
            except TypeError as e:
                if _raised_in_jax(e) and _has_traced_int_argument(args):
                    # a traced integer argument used where JAX needs a concrete value (a shape)
                    raise _control_flow_error(self, h, e) from None
                err = _matmul_error(self, e)
                if err is None:
                    raise
                raise err from None
        h.finish()
        return retval

    def _trace(self, h: _Handler, args: tuple, retval: Any) -> GenTrace:
        return GenTrace(self, args, retval, h.score, h.subtraces)

    def _simulate(self, key: Any, args: tuple) -> GenTrace:
        h = _Simulate(self, key)
        retval = self._run(h, args)
        return self._trace(h, args, retval)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        h = _Assess(self, choices)
        retval = self._run(h, args)
        return h.weight, retval

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[GenTrace, Any]:
        h = _Generate(self, key, constraints)
        retval = self._run(h, args)
        return self._trace(h, args, retval), h.weight

    def _update(self, key: Any, trace: GenTrace, constraints: ChoiceMap, args: tuple):
        h = _Update(self, key, trace, constraints)
        retval = self._run(h, args)
        discard = ChoiceMap(h.discard, h.discard_masks, _trusted=True)
        return self._trace(h, args, retval), h.weight, discard

    def _regenerate(self, key: Any, trace: GenTrace, selection: Selection, args: tuple):
        h = _Regenerate(self, key, trace, selection)
        retval = self._run(h, args)
        return self._trace(h, args, retval), h.weight


def _function_tree(fn: Any) -> Any:
    """A plain Python function as a :class:`FunctionTree`; other callables (pytrees, methods) as they are."""
    import types

    return FunctionTree(fn) if isinstance(fn, types.FunctionType) else fn


def gen(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Turn a Python function into a :class:`GenerativeFunction`.

    Inside, ``ppl.sample(addr, d)`` / ``d @ addr`` make random choices,
    ``other(*args) @ addr`` calls another generative function under the
    namespace ``addr``, ``ppl.factor`` adds to the log density and
    ``ppl.deterministic`` records a derived value.

    Python control flow must not depend on random values (use ``ppl.cond``,
    ``ppl.switch``, ``ppl.scan``); Python ints passed as arguments are static
    and may set shapes.
    """
    if fn is None:
        return lambda f: GenFunction(f, name=name)
    if isinstance(fn, GenerativeFunction):
        return fn
    if not callable(fn):
        raise ArgumentError(f"@ppl.gen decorates a function, got {type(fn).__name__}")
    return GenFunction(fn, name=name)


# ---------------------------------------------------------- the site language


def _handler_or_fail(what: str) -> _Handler:
    h = context.current_handler()
    if h is None:
        raise OutsideModelError(
            f"{what} was used outside a @ppl.gen function. Random choices exist only inside a model "
            "run by a GFI method (simulate, generate, ...); to just draw a value use d.sample(key)"
        )
    return h


def sample(addr: Any, d: Any) -> Any:
    """Make the random choice ``addr ~ d`` (or trace a call ``gf(*args)`` at ``addr``).

    Returns the value of the choice (or the callee's return value).
    """
    a = normalize(addr)
    h = _handler_or_fail(f"ppl.sample({format_address(a)}, ...)")
    if isinstance(d, GenCall):
        return h.site(a, d.gen_fn, d.args)
    if isinstance(d, GenerativeFunction):
        raise NotADistributionError(
            f"at address {format_address(context.full_address(a))}: {d.name} is a generative function; "
            f"call it with its arguments first: {d.name}(*args) @ {format_address(a)}"
        )
    d = check_distribution(d, context.full_address(a))
    rule = rule_for(a, d)  # ppl.reparameterize: the choice is made in other coordinates
    if rule is not None:
        check_unobserved(a, h, rule)
        return rule.rewrite(a, d)
    return h.site(a, PRIMITIVE, d)


def factor(addr: Any, log_weight: Any) -> None:
    """Add ``log_weight`` (summed to a scalar) to the model's log density.

    Like Stan's ``target +=`` or ``numpyro.factor``; the term has an address
    so ``update`` can replace it and weights account for its change.
    """
    a = normalize(addr)
    _handler_or_fail(f"ppl.factor({format_address(a)}, ...)").factor(a, log_weight)


def deterministic(addr: Any, value: Any) -> Any:
    """Record ``value`` at ``addr`` in the trace (no density); returns ``value``."""
    a = normalize(addr)
    _handler_or_fail(f"ppl.deterministic({format_address(a)}, ...)").deterministic(a, value)
    return value


def _sample_via_matmul(self: Distribution, addr: Any) -> Any:
    return sample(addr, self)


Distribution.__matmul__ = _sample_via_matmul  # ``d @ "addr"``


# ---------------------------------------------------------------- error help

_PKG_DIRS = tuple(
    os.path.dirname(m.__file__) for m in (jax, __import__("numpyro"), __import__("ppl")) if getattr(m, "__file__", None)
)


def _user_frame(tb: Any) -> Any:
    """The innermost traceback frame outside jax, numpyro and ppl."""
    found = None
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if not fname.startswith(_PKG_DIRS) and "<frozen" not in fname:
            found = tb
        tb = tb.tb_next
    return found


def _source(tb: Any) -> tuple[str, str]:
    code = tb.tb_frame.f_code
    line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno}", line


def _control_flow_error(gf: GenFunction, h: _Handler, e: Exception) -> PPLError:
    tb = _user_frame(e.__traceback__)
    where, line = _source(tb) if tb is not None else ("?", "")
    involved: list[str] = []
    if tb is not None:
        local_values = list(tb.tb_frame.f_locals.values())
        for addr, value in h.values_seen:
            leaves = jax.tree_util.tree_leaves(value)
            if any(any(leaf is lv for lv in local_values) for leaf in leaves) or any(
                value is lv for lv in local_values
            ):
                involved.append(format_address(context.full_address(addr)))
    made = [format_address(context.full_address(a)) for a, _ in h.values_seen]
    if involved:
        about = f"it depends on the random choice(s) at {', '.join(involved)}"
    elif made:
        about = f"the value may depend on the random choices made so far ({', '.join(made[-6:])})"
    else:
        about = "the value is traced (an argument or a random choice)"
    return TracedControlFlowError(
        f"in {gf.name} at {where} (`{line}`): Python control flow or a concrete value was needed from a "
        f"traced value; {about}. A model runs as a traced JAX program, so Python `if`/`while`/`bool()`/`int()` "
        "cannot look at random values: branch with ppl.cond(pred, gf_true, gf_false)(*args) @ addr or "
        "ppl.switch, loop with ppl.scan (or jnp.where for a deterministic choice between values). "
        "If the value is an argument that sets a shape, pass it as a Python int."
    )


def _raised_in_jax(e: Exception) -> bool:
    """Whether the innermost frame of ``e``'s traceback is JAX's code."""
    tb, last = e.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(os.path.dirname(jax.__file__))


def _has_traced_int_argument(args: tuple) -> bool:
    return any(
        isinstance(x, jax.core.Tracer) and x.shape == () and jnp.issubdtype(x.dtype, jnp.integer)
        for x in jax.tree_util.tree_leaves(args)
    )


def _matmul_error(gf: GenFunction, e: Exception) -> PPLError | None:
    """A ``value @ "addr"`` on the failing user line, found from the source (not from JAX's error text).

    Python itself raises the ``TypeError`` of an unsupported ``@`` in the user's frame (JAX's
    operator returns ``NotImplemented`` for a string), so the user frame must be the innermost.
    """
    tb = _user_frame(e.__traceback__)
    if tb is None or tb.tb_next is not None:
        return None
    where, line = _source(tb)
    found = _matmul_operands(line)
    if found is None:
        return None
    left_node, addr = found
    left = _left_kind(left_node, tb.tb_frame.f_locals, e)
    return NotADistributionError(
        f"in {gf.name} at {where} (`{line}`): the left side of `@ {addr}` is a {left}, not a distribution. "
        "Only a distribution (ppl.dist.Normal(...)) or a generative-function call (model(args)) can be "
        f"sampled at an address; to record a plain value use ppl.deterministic({addr}, value)"
    )


def _left_kind(node: Any, local_values: dict, e: Exception) -> str:
    """What the left operand of the failing ``@`` is: from a literal, a local name, or Python's message."""
    value = None
    if isinstance(node, ast.Constant):
        value = node.value
    elif isinstance(node, ast.Name) and node.id in local_values:
        value = local_values[node.id]
    if value is not None:
        return "JAX array" if isinstance(value, jax.Array) else type(value).__name__
    # Python's own operator message: "unsupported operand type(s) for @: 'ArrayImpl' and 'str'"
    found = re.search(r"for @: '([^']+)'", str(e))
    name = found.group(1) if found else "value"
    return "JAX array" if ("Array" in name or "Tracer" in name) else name


def _matmul_operands(line: str) -> tuple[Any, str] | None:
    try:
        tree = ast.parse(line.rstrip(":") if line.endswith(":") else line)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            if isinstance(node.right, (ast.Constant, ast.Tuple)):
                return node.left, ast.unparse(node.right)
    return None
