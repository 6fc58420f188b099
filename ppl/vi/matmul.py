"""Rank-2 matrix products for vectorised objectives (a guarded performance pass).

Vectorising per-particle, per-data-point code with nested ``vmap`` (IWAE's
particles inside a batch of data points) turns a network layer ``z @ W``
into a ``dot_general`` whose left operand has several free dimensions,
``(B, K, L) x (L, H)``, and its gradient into a contraction over two
dimensions, ``(B, K, H) x (B, K, L) -> (H, L)``. XLA's CPU backend runs those
through a transpose-and-copy path several times slower than the rank-2
matrix product a hand-written step gets by reshaping to ``(B*K, L)``: this
alone made a Bernoulli VAE's IWAE step 1.4x slower than hand-written code
(NumPyro's ``RenyiELBO`` pays the same).

:func:`rank2_dots` re-evaluates a function's jaxpr with every such
``dot_general`` (no batch dimensions; each operand's contracting and free
dimensions are contiguous runs in order) replaced by reshape, rank-2
``dot_general``, reshape: the same arithmetic, as a plain matrix product.
Nested ``jit`` calls are inlined; every other equation is bound as it is.
Products inside ``lax.scan``, ``lax.cond``/``switch`` and ``while`` bodies are
reached by rewriting those bodies the same way (an SMC sweep's proposal
network). Each re-bound equation keeps its source information (file, line
and name stack), so profiles and error messages still point at user code.

The pass runs only when the default backend is the CPU (GPU and TPU
libraries run these products well as they are). This is an optimisation
only: the estimators never depend on it; it touches JAX internals (jaxpr
equations, ``jax._src.source_info_util``) behind guards, and if the
re-evaluation fails for any reason (a JAX release changing how equations
are bound) the function runs unchanged, with one warning. Turn it off with
``ppl.vi.matmul.ENABLED = False``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
from jax import lax

try:  # guarded internal: keeps each re-bound equation's source information
    from jax._src import source_info_util as _source_info
except ImportError:  # pragma: no cover - a JAX release that moved it
    _source_info = None

#: set to False to turn the pass off everywhere
ENABLED = True
_warned: list = []


def _as_rank2(x: Any, contract: tuple) -> tuple[Any, int, list] | None:
    """``x`` reshaped to (free, contract) or (contract, free), or None if the dims are not two contiguous runs."""
    contract = list(contract)
    free = [d for d in range(x.ndim) if d not in contract]
    if not free or not contract or contract != sorted(contract):
        return None
    runs = (contract + free, free + contract)
    if list(range(x.ndim)) not in [list(r) for r in runs]:
        return None
    f = math.prod(x.shape[d] for d in free)
    c = math.prod(x.shape[d] for d in contract)
    free_shape = [x.shape[d] for d in free]
    if free[0] < contract[0]:
        return x.reshape(f, c), 1, free_shape
    return x.reshape(c, f), 0, free_shape


def _runs(ndim: int, contract: tuple) -> bool:
    contract = list(contract)
    free = [d for d in range(ndim) if d not in contract]
    if not free or not contract or contract != sorted(contract):
        return False
    return list(range(ndim)) in (contract + free, free + contract)


def _is_candidate(lhs_ndim: int, rhs_ndim: int, params: dict) -> bool:
    """Whether a ``dot_general`` with these operand ranks and parameters is rewritten."""
    (lc, rc), (lb, rb) = params["dimension_numbers"]
    if lb or rb or (lhs_ndim + rhs_ndim <= 4 and max(lhs_ndim, rhs_ndim) <= 2):
        return False
    extra = {k: v for k, v in params.items() if k not in ("dimension_numbers", "precision", "preferred_element_type")}
    if any(v is not None for v in extra.values()):
        return False
    return _runs(lhs_ndim, lc) and _runs(rhs_ndim, rc)


def _rank2_dot(lhs: Any, rhs: Any, params: dict) -> Any | None:
    if not _is_candidate(lhs.ndim, rhs.ndim, params):
        return None
    (lc, rc), _ = params["dimension_numbers"]
    a, b = _as_rank2(lhs, lc), _as_rank2(rhs, rc)
    if a is None or b is None:
        return None
    out = lax.dot_general(
        a[0],
        b[0],
        (([a[1]], [b[1]]), ([], [])),
        precision=params.get("precision"),
        preferred_element_type=params.get("preferred_element_type"),
    )
    return out.reshape(*a[2], *b[2])


def _contains_candidate(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` (or a body nested in it) has a product the pass rewrites."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            if _is_candidate(len(lhs.shape), len(rhs.shape), eqn.params):
                return True
        for sub in _sub_jaxprs(eqn):
            if _contains_candidate(sub.jaxpr):
                return True
    return False


#: parameters holding the bodies of control-flow primitives (closed jaxprs), per primitive
_BODIES = {"scan": ("jaxpr",), "while": ("cond_jaxpr", "body_jaxpr"), "cond": ("branches",)}


def _sub_jaxprs(eqn: Any) -> list:
    out = []
    for name in _BODIES.get(eqn.primitive.name, ()):
        v = eqn.params.get(name)
        out.extend(v if isinstance(v, (tuple, list)) else [v])
    return [c for c in out if hasattr(c, "jaxpr") and hasattr(c, "consts")]


def _rewrite_closed(closed: Any) -> Any | None:
    """A closed jaxpr with its products rewritten (None when it has none, or keeps constants)."""
    if not _contains_candidate(closed.jaxpr):
        return None
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
    new = jax.make_jaxpr(lambda *a: _evaluate(closed.jaxpr, closed.consts, list(a)))(*avals)
    if new.consts or [a.shape for a in new.out_avals] != [a.shape for a in closed.out_avals]:
        return None
    return new


def _rewritten_params(eqn: Any) -> dict | None:
    """The equation's parameters with its control-flow bodies rewritten, or None if nothing changes."""
    names = _BODIES.get(eqn.primitive.name)
    if not names:
        return None
    params, changed = dict(eqn.params), False
    for name in names:
        v = params.get(name)
        if isinstance(v, (tuple, list)):
            new = [_rewrite_closed(b) for b in v]
            if any(n is not None for n in new):
                params[name] = type(v)(n if n is not None else b for n, b in zip(new, v))
                changed = True
        elif v is not None:
            new = _rewrite_closed(v)
            if new is not None:
                params[name] = new
                changed = True
    return params if changed else None


def _source_context(eqn: Any) -> Any:
    if _source_info is None:
        return contextlib.nullcontext()
    return _source_info.user_context(eqn.source_info.traceback, name_stack=eqn.source_info.name_stack)


def _evaluate(jaxpr: Any, consts: list, args: list) -> list:
    from jax.extend.core import Literal

    env: dict = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        out = None
        params = eqn.params
        with _source_context(eqn):
            if name == "dot_general":
                single = _rank2_dot(*invals, eqn.params)
                out = None if single is None else [single]
            elif name in ("pjit", "jit"):
                closed = eqn.params["jaxpr"]
                out = _evaluate(closed.jaxpr, closed.consts, invals)
            else:
                params = _rewritten_params(eqn) or eqn.params
            if out is None:
                with eqn.ctx.manager:
                    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
                if not eqn.primitive.multiple_results:
                    out = [out]
        env.update(zip(eqn.outvars, out))
    return [read(v) for v in jaxpr.outvars]


def rank2_dots(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its matrix products over several free dimensions run as rank-2 products."""

    def wrapped(*args: Any) -> Any:
        if not ENABLED or jax.default_backend() != "cpu":
            return fn(*args)
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        try:
            flat = _evaluate(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args))
        except Exception as e:  # an optimisation only: never let it break a program
            if not _warned:
                _warned.append(True)
                warnings.warn(
                    f"ppl.vi: the rank-2 matrix-product pass failed ({type(e).__name__}: {e}); running unoptimised",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return fn(*args)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), flat)

    return wrapped


__all__ = ["ENABLED", "rank2_dots"]
