"""The generative function interface (GFI).

A :class:`GenerativeFunction` is a probabilistic program ``p(t; x)`` over
choice maps ``t`` given arguments ``x``. Inference code uses it only through
the five methods below; their weights follow Gen (Cusumano-Towner et al.,
2019). Write ``p(t; x)`` for the joint density of the choices ``t`` (times
any ``ppl.factor`` terms) and ``q`` for the internal proposal, which for
every ppl generative function is the prior: unconstrained choices are drawn
from their distribution at the point the program reaches them.

=============  =============================================================
``simulate``   ``t ~ p(.; x)``; ``trace.score = log p(t; x)``
``assess``     ``log p(t; x)`` for a complete ``t``
``generate``   ``t ~ q(.; x, c)`` agreeing with constraints ``c``;
               ``w = log p(t; x) - log q(t; x, c)``: the sum of the log
               densities of the constrained choices (fresh draws cancel)
``update``     new trace ``t'`` from ``t`` with new args ``x'`` and
               constraints ``c``; ``w = log p(t'; x') - log p(t; x)
               - log q(fresh choices)``; ``discard`` holds the old values
               that were overwritten or are no longer visited
``regenerate`` resample the selected choices (and newly reachable ones)
               from the prior; ``w = log p(t'; x')/p(t; x) -
               log q(t' <- t)/q(t <- t')``, which is
               ``sum over kept, unselected choices of
               log p_new(v) - log p_old(v)`` (plus changes in factors): the
               Metropolis-Hastings log acceptance ratio of the move
=============  =============================================================

Calling a generative function, ``gf(*args)``, does not run it: it makes a
:class:`GenCall` that a model traces under an address with ``gf(*args) @ "a"``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.selection import Selection, as_selection
from ppl.core.staging import compiled, partition
from ppl.core.trace import Trace
from ppl.errors import ArgumentError, PPLError


def check_args(gf: GenerativeFunction, args: Any) -> tuple:
    if not isinstance(args, tuple):
        raise ArgumentError(
            f"args of {gf.name} must be a tuple of its arguments, got {type(args).__name__}; "
            "for one argument write (x,), for none ()"
        )
    return args


def check_key(key: Any, method: str) -> Any:
    if key is None:
        raise ArgumentError(f"{method} needs a PRNG key (jax.random.key(0)), got None")
    if not isinstance(key, jax.Array):
        try:
            key = jnp.asarray(key)
        except TypeError as e:
            raise ArgumentError(
                f"{method}: expected a PRNG key (jax.random.key(seed)), got {type(key).__name__}"
            ) from e
    is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not is_typed and not (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)):
        raise ArgumentError(
            f"{method}: expected a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got an array of dtype {key.dtype} and shape {key.shape}"
        )
    return key


def _call_method(method: str, gf: GenerativeFunction, *args: Any) -> Any:
    """``gf._<method>(*args)``: what every compiled GFI program runs (``gf`` rebuilt from its leaves)."""
    return getattr(gf, method)(*args)


def _flatten_gf(gf: GenerativeFunction) -> tuple[tuple, Any]:
    flat = gf.__dict__.get("_ppl_flat")
    if flat is None:
        names = gf._field_names()
        dyn, spec = partition(tuple(gf.__dict__[n] for n in names))
        flat = (tuple(dyn), (names, spec))
        gf.__dict__["_ppl_flat"] = flat
    return flat


def _unflatten_gf(cls: type, aux: Any, dyn: tuple) -> GenerativeFunction:
    from ppl.core.staging import combine

    obj = object.__new__(cls)
    names, spec = aux
    d = obj.__dict__
    d.update(zip(names, combine(list(dyn), spec)))
    d["_ppl_flat"] = (tuple(dyn), aux)
    obj._rebuilt()
    return obj


class GenerativeFunction:
    """Base class: public GFI methods validate, then run compiled ``_impl`` methods.

    Subclasses implement ``_simulate``, ``_assess``, ``_generate``, ``_update``
    and ``_regenerate`` with the same signatures as the public methods but
    already-normalised arguments.

    **A generative function is a pytree value** (see :mod:`ppl.core.identity`):
    its *fields* (every instance attribute set in ``__init__``, or the names in
    the class attribute ``_fields``) are flattened with their arrays as leaves
    and everything else (code, ints, strings, other static configuration) as
    static structure. Equality and hashing compare the static structure only,
    so a rebuilt-equal function (a closure defined in a model body, a
    ``ppl.scale`` with another factor) is the same function for
    ``update``/``regenerate``; the compile cache is keyed the same way and
    takes the leaves as inputs. Fields are set once, in ``__init__``;
    derived attributes are properties.
    """

    name: str = "generative_function"
    #: field names; ``None``: every instance attribute set in ``__init__``
    _fields: tuple[str, ...] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, _flatten_gf, lambda aux, dyn, cls=cls: _unflatten_gf(cls, aux, dyn))

    # --------------------------------------------------------------- identity
    def _field_names(self) -> tuple[str, ...]:
        if self._fields is not None:
            return tuple(self._fields)
        return tuple(sorted(k for k in self.__dict__ if not k.startswith("_ppl_")))

    def _rebuilt(self) -> None:
        """Hook: recompute derived state after fields were decoded from leaves."""

    def static_key(self) -> Any:
        """The hashable static part: code, static configuration, tree structure."""
        return (type(self), _flatten_gf(self)[1])

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return isinstance(other, GenerativeFunction) and self.static_key() == other.static_key()

    def __hash__(self) -> int:
        return hash(self.static_key())

    # ----------------------------------------------------------------- calls
    def __call__(self, *args: Any) -> GenCall:
        return GenCall(self, args)

    # ------------------------------------------------------------------- GFI
    def simulate(self, key: Any, args: tuple = ()) -> Trace:
        """Run forward: ``t ~ p(.; args)``; returns a trace with ``score = log p(t; args)``."""
        key = check_key(key, f"{self.name}.simulate")
        args = check_args(self, args)
        return compiled(_call_method, "_simulate", self, key, args)

    def assess(self, choices: Any, args: tuple = ()) -> tuple[Any, Any]:
        """``(log p(choices; args), retval)`` for a complete set of choices."""
        args = check_args(self, args)
        return compiled(_call_method, "_assess", self, as_choicemap(choices), args)

    def log_density(self, choices: Any, args: tuple = ()) -> Any:
        """``log p(choices; args)``: the first output of :meth:`assess`."""
        return self.assess(choices, args)[0]

    def generate(self, key: Any, constraints: Any = None, args: tuple = ()) -> tuple[Trace, Any]:
        """Importance-sample a trace agreeing with ``constraints``.

        Returns ``(trace, w)`` with ``w = log p(t; args) - log q(t; args, c)``,
        i.e. the sum of the log densities of the constrained choices.
        """
        key = check_key(key, f"{self.name}.generate")
        args = check_args(self, args)
        return compiled(_call_method, "_generate", self, key, as_choicemap(constraints), args)

    def update(self, key: Any, trace: Trace, constraints: Any = None, args: tuple | None = None):
        """Move ``trace`` to new ``args`` and ``constraints``.

        Returns ``(new_trace, w, discard)`` with
        ``w = log p(t'; x') - log p(t; x) - log q(fresh choices)``.
        """
        key = check_key(key, f"{self.name}.update")
        self._check_trace(trace, "update")
        args = trace.args if args is None else check_args(self, args)
        return compiled(_call_method, "_update", self, key, trace, as_choicemap(constraints), args)

    def regenerate(self, key: Any, trace: Trace, selection: Any, args: tuple | None = None):
        """Resample the selected choices from the prior (an MH proposal).

        Returns ``(new_trace, w)`` where ``w`` is the Metropolis-Hastings log
        acceptance ratio of the move: the sum over kept, unselected choices of
        ``log p_new(v) - log p_old(v)``, plus changes in factors.
        """
        key = check_key(key, f"{self.name}.regenerate")
        self._check_trace(trace, "regenerate")
        args = trace.args if args is None else check_args(self, args)
        sel = as_selection(selection)
        return compiled(_call_method, "_regenerate", self, key, trace, sel, args)

    def _check_trace(self, trace: Any, method: str) -> None:
        if not isinstance(trace, Trace):
            raise ArgumentError(f"{self.name}.{method} expects a Trace, got {type(trace).__name__}")
        if trace.gen_fn != self:
            other = getattr(trace.gen_fn, "name", trace.gen_fn)
            raise PPLError(f"{self.name}.{method} was given a trace of {other}, not of {self.name}")

    # ------------------------------------------------------- implementations
    def _simulate(self, key: Any, args: tuple) -> Trace:
        raise NotImplementedError

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        raise NotImplementedError

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[Trace, Any]:
        raise NotImplementedError

    def _update(self, key: Any, trace: Trace, constraints: ChoiceMap, args: tuple):
        raise NotImplementedError

    def _regenerate(self, key: Any, trace: Trace, selection: Selection, args: tuple):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _no_value(op: str):
    def fail(self: GenCall, *a: Any, **k: Any) -> Any:
        raise PPLError(
            f"{self.gen_fn.name}(...) was used as a value ({op}) without an address: inside a model "
            f'write `{self.gen_fn.name}(...) @ "addr"` to run it; outside, use .simulate(key, args)'
        )

    return fail


class GenCall:
    """``gf(*args)``: a call waiting for an address (``gf(*args) @ "addr"``)."""

    __slots__ = ("args", "gen_fn")

    def __init__(self, gen_fn: GenerativeFunction, args: tuple):
        self.gen_fn = gen_fn
        self.args = args

    def __matmul__(self, addr: Any) -> Any:
        from ppl.core.gen import sample

        return sample(addr, self)

    def simulate(self, key: Any) -> Trace:
        return self.gen_fn.simulate(key, self.args)

    def __repr__(self) -> str:
        return f"GenCall({self.gen_fn.name}, {len(self.args)} args)"

    for _op in (
        "add",
        "radd",
        "sub",
        "rsub",
        "mul",
        "rmul",
        "truediv",
        "rtruediv",
        "pow",
        "neg",
        "getitem",
        "float",
        "int",
        "bool",
        "array",
        "jax_array",
        "iter",
        "len",
    ):
        locals()[f"__{_op}__"] = _no_value(_op)
    del _op
