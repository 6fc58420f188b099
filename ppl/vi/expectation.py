r"""Expected values of programs and unbiased estimators of their gradients.

``E = ppl.vi.expectation(fn)`` wraps a program ``fn(key, *args) -> scalar``
that samples (it calls ``guide.simulate``, ``model.generate``, ``assess``,
other expectations, ...) and returns a number ``f``. Its value is

    E(args) = E_x[ f(x, args) ]      over every random choice x the program makes.

``E.estimate(key, *args)`` is an unbiased estimate of ``E(args)``,
``E.grad_estimate(key, *args)`` an unbiased estimate of its gradient with
respect to every float leaf of every argument (pytrees, equinox modules;
other leaves get ``None``), ``E.value_and_grad_estimate`` both from one pass.
A generative function ``gf`` may be given instead of ``fn``: then ``f`` is its
return value and ``fn(key, *args) = gf.simulate(key, args).retval``.

How it works
============

The transformation uses only JAX's public transformations: it runs the
program under a site handler (:mod:`ppl.core.handlers`) and builds a
*surrogate* ``L`` whose value is the estimate and whose ``jax.grad`` is the
gradient estimate. ``grad_estimate`` is ``jax.grad(L)``; nothing interprets
jaxprs, so ``lax.scan``, ``vmap``, ``cond`` and future JAX releases need no
special support.

Interception. Inside the evaluation every primitive random choice run by any
GFI method of any generative function (nested calls, ``ppl.vmap``,
``ppl.scan``, ``ppl.cond`` included) asks its distribution which estimator
it wants (:mod:`ppl.vi.estimators`: ``reparam``, ``reinforce``, ``enum``,
``mvd``; by default ``reparam`` where ``d.has_rsample`` else ``reinforce``).
Keys are untouched: each site still draws with ``fold_in(caller key,
address)``, so independent sites get independent randomness and re-running
the program with the same key reproduces every draw (*common random
numbers*).

Effect channels. A site reports quantities by ``context.emit`` on additive
channels; every ppl boundary (``ppl.vmap``, ``ppl.scan``, ``ppl.cond``, and
:func:`vmap` / :func:`scan` here for objectives) returns its body's totals
as extra outputs, so a report from inside ``lax.scan`` reaches the
surrogate. Channels are summed scalars and cost one add per site.

The estimators (write ``sg`` for ``stop_gradient``, ``theta`` for the
parameters, ``q`` for a choice's distribution)
-------------------------------------------------------------------------

*Reparameterisation.* ``x = T(eps, theta)`` with ``eps`` independent of
``theta`` (numpyro's samplers are written that way when ``has_rsample``):
``E_x[f(x)] = E_eps[f(T(eps, theta))]`` and, by dominated convergence,
``grad E = E_eps[grad f(T(eps, theta))]``. The site returns the
differentiable sample; autodiff does the rest.

*REINFORCE (score function).* The site returns ``sg(x)`` and emits
``S_i = log q_i(x) - sg(log q_i(x))`` (value 0, gradient
``grad log q_i(x)``). The surrogate is the DiCE form

    L = f + (sum_i S_i) * sg(f) - sum_i S_i * sg(b_i)

whose value is ``f`` and whose gradient is ``grad f + sum_i (f - b_i) grad
log q_i(x_i)``. Unbiased because ``grad E_q[f] = E_q[grad f + f grad log
q]`` (the log-derivative trick, applied site by site in program order) and
``E[b_i grad log q_i(x_i) | everything before i] = b_i * 0 = 0`` whenever
``b_i`` does not depend on ``x_i`` or later choices. Baselines
(``reinforce(d, baseline=b)``) are emitted as ``S_i * sg(b_i)`` per element;
a baseline that depends on parameters also emits ``b_i`` and ``b_i^2`` so the
surrogate adds the zero-valued term ``X - sg(X)``, ``X = sg(f) sum b_i -
sum b_i^2 / 2``: its gradient fits the baseline to ``f`` by least squares
(the objective's value and its gradient for the other parameters are
unchanged). A running-mean baseline is an argument threaded by the user
(:func:`ppl.vi.running_mean`, explicit state). Multi-sample objectives get
per-particle scores from :func:`vmap` (``scores=True``) and give each
particle its own baseline with :func:`subtract_baseline` (VIMCO's
leave-one-out baselines depend only on the *other* particles, so each is
independent of the particle it is subtracted from).

*Enumeration* (``enum``). For a choice with finite support,
``E[f] = sum_v q(v) E[f | x = v]``. The program is a pure function of its
key, so re-running it with the same key and ``x`` replaced by ``v``
(a *substitution*) gives ``f_v``, an unbiased estimate of
``E[f | x = v, choices before x]`` coupled to the original run (every other
site draws with the same key). With ``L`` the surrogate of the original run
and ``L_v`` that of the re-run, the surrogate is

    L_enum = L + sum_{v != x} q(v) (L_v - L).

Because ``sum_v q(v) = 1`` identically, this equals ``sum_v q(v) L_v`` in
value and gradient (with ``L_x = L``): the exact sum over ``x`` given the
rest, the pathwise and score terms of every re-run weighted by ``q(v)``,
and ``sum_v grad q(v) f_v`` for ``x``'s own distribution. For a program
whose only randomness is one enumerated choice the estimate and gradient
are exact. With several enumerated elements ``i`` the corrections add up:
``L + sum_i sum_{v != x_i} q_i(v) (L_{i,v} - L)``; each correction has zero
mean in value and in every gradient term except ``q_i``'s own, which it
supplies, so the whole is unbiased (and exact again when ``f`` is a sum of
per-element terms, e.g. independent assignments in a mixture). The value is
``f + sum q(v) (f_v - f)``.

*Measure-valued derivative* (``mvd``). Write the derivative of the density
w.r.t. a parameter as a signed difference of two distributions,
``d/dtheta q = c(theta) (q+ - q-)``; then ``d/dtheta E[f] = c (E_{q+}[f] -
E_{q-}[f])``. Each part is estimated by a re-run with ``x`` replaced by a
draw from ``q+`` or ``q-`` (common random numbers elsewhere), and the
surrogate gains ``(theta - sg theta) * sg(c (f_+ - f_-))`` per parameter;
the site keeps ``sg(x)`` in the original run. Implemented decompositions:

* finite discrete supports (Bernoulli, Categorical, ...): the derivative of
  ``E[f] = sum_v q(v) f(v)`` is ``sum_v grad q(v) f(v) = sum_{v != x} grad
  q(v) (f_v - f_x)`` (``sum_v grad q(v) = 0``): point masses at each value,
  one re-run per alternative value, forward only. For Bernoulli(p) it is
  ``f(1) - f(0)``, one re-run;
* Normal(mu, sigma), per element: ``d/dmu = 1/(sigma sqrt(2 pi)) (q+ - q-)``
  with ``q+/-`` the law of ``mu +/- sigma R``, ``R ~ Rayleigh(1)`` (the
  positive and negative halves of ``(x - mu) N(x)``); ``d/dsigma = 1/sigma
  (M - N)`` with ``M`` the law of ``mu + sigma D``, ``D`` double-sided
  Maxwell (density ``r^2 phi(r)``), and ``N`` the original distribution,
  whose draw is the original run's ``x``. Three re-runs per element.

Elements. A choice inside ``ppl.vmap``/``ppl.scan``/:func:`vmap` (or with a
batch shape) is many scalar choices. Enumeration and MVD treat each element
on its own: the re-run for element ``e`` substitutes only there, found by
the element index those boundaries publish (``context.elements()``) and a
mask over the site's own batch shape. Cost: one re-run of the whole program
per element and alternative (``elements * (|support| - 1)`` for enum, ``*
3`` for a Normal's MVD), vectorised with ``jax.vmap``; an expectation with
no enum/MVD choice runs the program exactly once. Sites are found while the
original run is traced (a static record, in program order), so the set of
re-runs is fixed at compile time. Choices in untaken ``ppl.cond`` branches
have nothing to substitute, so their correction is zero.

Nesting. ``E.estimate`` called inside another expectation's program runs
its program inline: its choices are choices of the enclosing program, whose
surrogate differentiates the whole (the outer expectation is of the outer
program's value, whatever it does with the inner estimate).
``grad_estimate`` always starts a fresh evaluation, and so does each term of
:func:`batch_sum` (a sum is linear in its terms, so separate surrogates are
unbiased and each term's re-runs are of its own program only).

Cost. An expectation without enum/MVD choices runs its program once; the
surrogate adds a few scalar operations (``S * sg(f)``), and for an
all-reparameterised program the channels are constant zeros that XLA folds
away, so a VAE step costs what the hand-written step costs. The compiled
methods also run :func:`ppl.vi.matmul.rank2_dots`, which turns the
multi-dimensional matrix products that nested vectorisation produces
(particles x data points) into rank-2 products XLA's CPU backend runs
several times faster (an optimisation only; see that module).

Limits, with errors: reparameterising a discrete choice; enumerating a
continuous or infinite support (Poisson, Geometric: use ``reinforce``);
``mvd`` of a distribution without a decomposition here; a program that
returns a non-scalar. Reports from inside a JAX transformation ppl cannot
see (a user's own ``jax.vmap``/``lax.scan`` around sampling code in the
program) would escape it: they fail loudly; use :func:`vmap` / :func:`scan`.
A fresh value drawn for a ``ppl.masked`` constraint that is then replaced
by the given value still reports its REINFORCE score (zero mean: variance
only).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ppl.core import context
from ppl.core.batching import axes_of, batch, batch_size, loop
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.identity import FunctionTree
from ppl.core.staging import combine, compiled, partition
from ppl.errors import ArgumentError, EstimatorError
from ppl.vi import matmul
from ppl.vi.estimators import ENUM, REINFORCE, REPARAM, RerunRule, enum_rule, estimator_of, mvd_rule
from ppl.vi.matmul import rank2_dots

sg = jax.lax.stop_gradient

SCORE = "ppl.vi.score"
SCORE_BASELINE = "ppl.vi.score_baseline"
BASELINE_SUM = "ppl.vi.baseline_sum"
BASELINE_SQUARES = "ppl.vi.baseline_squares"
RERUN = "ppl.vi.rerun"
CHANNELS = (SCORE, SCORE_BASELINE, BASELINE_SUM, BASELINE_SQUARES, RERUN)

#: re-runs are vectorised in blocks of this many (``jax.lax.map`` beyond it) to bound memory
RERUN_BLOCK = 1024
#: more re-runs than this for one choice is an error (each is a run of the whole program)
MAX_RERUNS = 65536


# ------------------------------------------------------------ the evaluation
class _Site:
    """An enumerated or MVD choice found while tracing the original run."""

    __slots__ = ("address", "elements", "index", "kind", "rule")

    def __init__(self, index: int, address: tuple, kind: str, rule: RerunRule, elements: int):
        self.index = index
        self.address = address
        self.kind = kind
        self.rule = rule
        self.elements = elements


class _Target:
    """Which re-run this is: substitute alternative ``variant`` at element ``element`` of site ``site``."""

    __slots__ = ("element", "site", "variant")

    def __init__(self, site: int, element: Any, variant: Any):
        self.site = site
        self.element = element
        self.variant = variant


class _Evaluation:
    """Trace-time record of one run of the program (the original, or one re-run)."""

    def __init__(self, depth: int, target: _Target | None = None):
        self.depth = depth  # element boundaries already open outside the program
        self.target = target
        self.sites: list[_Site] = []

    def element_grid(self) -> tuple[Any, int]:
        """(flat index of the current element of the enclosing boundaries, their total size)."""
        index, size = jnp.zeros((), jnp.int32), 1
        for i, n in context.elements()[self.depth :]:
            index = index * n + i
            size *= n
        return index, size


class _Interceptor:
    """Applies each choice's gradient estimator (see the module docstring)."""

    channels = CHANNELS

    def __init__(self, evaluation: _Evaluation):
        self.evaluation = evaluation

    # identity semantics: never part of a compilation cache (staging is off during evaluations)
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def process(self, site: Any) -> None:
        # the innermost evaluation owns the site (a batch_sum term inside an outer evaluation)
        site.meta.setdefault("ppl.vi.owner", self)

    def postprocess(self, site: Any) -> None:
        """Apply the site's estimator to the value that was drawn (by the default or by a provider above)."""
        if site.kind != "sample" or site.meta.get("ppl.vi.owner") is not self:
            return
        kind, base, baseline = estimator_of(site.address, site.tagged)
        if kind == REPARAM:
            return  # the draw is a differentiable function of the parameters
        x = sg(site.value)
        if kind == REINFORCE:
            _report_score(site.address, base, x, baseline)
        else:
            x = self._rerun_site(site.address, kind, base, site.key, x)
        site.value = x
        site.stored = x

    def _rerun_site(self, addr: tuple, kind: str, base: Any, key: Any, x: Any) -> Any:
        ev = self.evaluation
        rule = enum_rule(addr, base) if kind == ENUM else mvd_rule(addr, base)
        base_index, outer = ev.element_grid()
        local = math.prod(rule.shape)
        site = _Site(len(ev.sites), addr, kind, rule, outer * local)
        ev.sites.append(site)
        target = ev.target
        if target is None or target.site != site.index:
            return x
        ids = base_index * local + jnp.arange(local, dtype=jnp.int32).reshape(rule.shape)
        hit = ids == target.element
        alt, coef = rule.alternative(x, key, target.variant)
        context.emit(RERUN, jnp.sum(jnp.where(hit, coef, 0.0)))
        return jnp.where(hit, alt, x)


def _report_score(addr: tuple, d: Any, x: Any, baseline: Any) -> None:
    log_q = d.log_prob(x)  # one entry per batch element
    score = log_q - sg(log_q)
    context.emit(SCORE, jnp.sum(score))
    if baseline is None:
        return
    b = jnp.asarray(baseline)
    try:
        b = jnp.broadcast_to(b, jnp.shape(log_q)).astype(score.dtype)
    except ValueError:
        from ppl.core.address import format_address

        raise EstimatorError(
            f"baseline given at {format_address(addr)} has shape {jnp.shape(b)}, which does not broadcast to "
            f"the choice's batch shape {jnp.shape(log_q)} (one baseline per element, or a scalar)"
        ) from None
    context.emit(SCORE_BASELINE, jnp.sum(score * sg(b)))
    context.emit(BASELINE_SUM, jnp.sum(b))
    context.emit(BASELINE_SQUARES, jnp.sum(b * b))


def _inside_evaluation() -> bool:
    return any(isinstance(ic, _Interceptor) for ic in context.interceptors())


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def _scalar(f: Any, name: str) -> Any:
    try:
        f = jnp.asarray(f)
    except TypeError:
        raise EstimatorError(
            f"the program of expectation {name!r} returned a {type(f).__name__}; it must return a scalar"
        ) from None
    if f.shape != ():
        raise EstimatorError(
            f"the program of expectation {name!r} returned an array of shape {f.shape}; an expectation's "
            "program must return a scalar (sum or average the terms)"
        )
    if not jnp.issubdtype(f.dtype, jnp.floating):
        f = f.astype(jnp.result_type(float))
    return f


# ------------------------------------------------------------- Expectation
class Expectation:
    """The expected value of a program; see the module docstring for the estimators.

    Build one with :func:`expectation`. All three methods are compiled with
    ``jax.jit`` (Python ints and other non-array leaves of the arguments are
    static), and work under the user's ``jit``/``vmap``.
    """

    def __init__(self, program: Callable[..., Any], name: str | None = None):
        self._program = FunctionTree(program) if isinstance(program, types.FunctionType) else program
        self.name = name or getattr(program, "__name__", "expectation")

    @property
    def program(self) -> Callable[..., Any]:
        p = self._program
        return p.function() if isinstance(p, FunctionTree) else p

    def __repr__(self) -> str:
        return f"Expectation({self.name})"

    # ---------------------------------------------------------------- public
    def estimate(self, key: Any, *args: Any) -> Any:
        """Unbiased estimate of ``E[f(*args)]``.

        Its gradient (``jax.grad`` of this function) is the unbiased gradient
        estimate; inside another expectation's program the program runs
        inline (its choices belong to the enclosing program).
        """
        key = check_key(key, f"{self.name}.estimate")
        if _inside_evaluation():
            return _scalar(self.program(key, *args), self.name)
        return self._call("estimate", key, args)

    def grad_estimate(self, key: Any, *args: Any) -> tuple:
        """Unbiased estimate of the gradient w.r.t. each argument (a tuple, one entry per argument).

        Each entry has the argument's structure, with the gradient at float
        leaves and ``None`` at every other leaf.
        """
        return self.value_and_grad_estimate(key, *args)[1]

    def value_and_grad_estimate(self, key: Any, *args: Any) -> tuple[Any, tuple]:
        """``(estimate, grad_estimate)`` from one evaluation (one forward and one backward pass)."""
        key = check_key(key, f"{self.name}.value_and_grad_estimate")
        return self._call("value_and_grad", key, args)

    def surrogate(self, key: Any, *args: Any) -> Any:
        """The surrogate ``L`` (uncompiled): value = estimate, ``jax.grad`` = gradient estimate."""
        depth = len(context.elements())
        evaluation = _Evaluation(depth)
        f, totals = self._run(evaluation, key, args)
        base = _dice(f, totals)
        fit = sg(f) * totals[BASELINE_SUM] - 0.5 * totals[BASELINE_SQUARES]
        out = base + (fit - sg(fit))
        for site in evaluation.sites:
            f_r, totals_r = self._reruns(site, key, args, depth, len(evaluation.sites))
            if site.kind == ENUM:
                out = out + jnp.sum(totals_r[RERUN] * (_dice(f_r, totals_r) - base))
            else:
                out = out + jnp.sum(totals_r[RERUN] * sg(f_r - f))
        return out

    # -------------------------------------------------------------- machinery
    def _run(self, evaluation: _Evaluation, key: Any, args: tuple) -> tuple[Any, dict]:
        with context.eager(), context.intercept(_Interceptor(evaluation)):
            names = context.effect_channels()
            with context.collect(names) as frame:
                f = self.program(key, *args)
        f = _scalar(f, self.name)
        totals = frame.filled()
        foreign = {n: v for n, v in totals.items() if n not in CHANNELS}
        if foreign and context.collecting():
            context.reemit(foreign)  # channels of handlers outside this evaluation
        return f, totals

    def _reruns(self, site: _Site, key: Any, args: tuple, depth: int, n_sites: int) -> tuple[Any, dict]:
        variants = site.rule.variants
        count = site.elements * variants
        if count > MAX_RERUNS:
            from ppl.core.address import format_address

            raise EstimatorError(
                f"ppl.vi.{site.kind} at {format_address(site.address)}: {site.elements} elements x {variants} "
                f"alternatives = {count} re-runs of the whole program (limit {MAX_RERUNS}); use ppl.vi.reinforce "
                "there, or sum per-data-point objectives with ppl.vi.batch_sum so each re-run is one point's program"
            )

        def rerun(r: Any) -> tuple[Any, dict]:
            target = _Target(site.index, r // variants, r % variants)
            evaluation = _Evaluation(depth, target)
            f, totals = self._run(evaluation, key, args)
            if len(evaluation.sites) != n_sites:
                raise EstimatorError(
                    f"expectation {self.name!r}: a re-run of the program made {len(evaluation.sites)} enumerated/"
                    f"MVD choices where the original made {n_sites}; the program's structure must not change"
                )
            return f, {RERUN: totals[RERUN], SCORE: totals[SCORE], SCORE_BASELINE: totals[SCORE_BASELINE]}

        rs = jnp.arange(count, dtype=jnp.int32)
        if count <= RERUN_BLOCK:
            return jax.vmap(rerun)(rs)
        return jax.lax.map(rerun, rs, batch_size=RERUN_BLOCK)

    def _call(self, method: str, key: Any, args: tuple) -> Any:
        # one compile cache for all of ppl: the expectation is a pytree (its program's captured
        # arrays are inputs), so an objective rebuilt each step reuses the compiled program
        return compiled(_run_expectation, method, self, key, args, matmul.ENABLED)

    def _estimate_impl(self, key: Any, args: tuple) -> Any:
        return self.surrogate(key, *args)

    def _value_and_grad_impl(self, key: Any, args: tuple) -> tuple[Any, tuple]:
        dyn, spec = partition(args)
        mask = [_is_float(x) for x in dyn]

        def of(diff: list) -> Any:
            it = iter(diff)
            leaves = [next(it) if m else x for x, m in zip(dyn, mask)]
            return self.surrogate(key, *combine(leaves, spec))

        value, grads = jax.value_and_grad(of)([x for x, m in zip(dyn, mask) if m])
        g, m = iter(grads), iter(mask)
        leaves = [(next(g) if next(m) else None) if s is None else None for s in spec.static]
        return value, jax.tree_util.tree_unflatten(spec.treedef, leaves)


def _flatten_expectation(e: Expectation) -> tuple[tuple, Any]:
    dyn, spec = partition((e._program, e.name))
    return tuple(dyn), spec


def _unflatten_expectation(spec: Any, dyn: tuple) -> Expectation:
    e = object.__new__(Expectation)
    e._program, e.name = combine(list(dyn), spec)
    return e


jax.tree_util.register_pytree_node(Expectation, _flatten_expectation, _unflatten_expectation)


def _run_expectation(method: str, e: Expectation, key: Any, args: tuple, _matmul_pass: bool) -> Any:
    impl = e._estimate_impl if method == "estimate" else e._value_and_grad_impl
    dyn, spec = partition((key, args))
    return rank2_dots(lambda dyn: impl(*combine(list(dyn), spec)))(tuple(dyn))


def _dice(f: Any, totals: dict) -> Any:
    """``f + S sg(f) - sum S_i sg(b_i)``: value ``f``, gradient ``grad f + sum_i (f - b_i) grad log q_i``."""
    return f + totals[SCORE] * sg(f) - totals[SCORE_BASELINE]


def expectation(fn: Callable[..., Any] | GenerativeFunction, *, name: str | None = None) -> Expectation:
    """The expected value of a program, with unbiased estimators of it and of its gradient.

    ``fn(key, *args)`` samples (through generative functions' GFI methods) and
    returns a scalar; a generative function ``gf`` stands for
    ``lambda key, *args: gf.simulate(key, args).retval``. See
    :mod:`ppl.vi.expectation` for how the gradient estimators work.
    """
    if isinstance(fn, Expectation):
        return fn
    if isinstance(fn, GenerativeFunction):
        gf = fn

        def program(key: Any, *args: Any) -> Any:
            return gf.simulate(key, args).retval

        return Expectation(program, name or gf.name)
    if not callable(fn):
        raise ArgumentError(f"ppl.vi.expectation needs a function fn(key, *args) or a generative function, got {fn!r}")
    return Expectation(fn, name)


def batch_sum(objective: Expectation, in_axes: Any = 0, *, name: str | None = None) -> Expectation:
    """``sum_i E_i``: one expectation per element of a batch of independent data points.

    ``in_axes`` says which leaves of ``objective``'s arguments carry the batch
    (as for ``jax.vmap``: an int, ``None`` or one entry per argument, each
    entry a pytree prefix); every element gets its own key. The standard use
    is a per-data-point bound: IWAE's ``log (1/K) sum_k w_k`` must be taken
    per data point, not over a whole batch (whose weights are products over
    the batch), e.g. with a one-point model ``model1(decoder, x)``::

        per_point = ppl.vi.iwae(model1, guide1, lambda a: {"x": a[1]}, particles=8)
        objective = ppl.vi.batch_sum(per_point, in_axes=((None, 0), (None, 0)))
        objective.value_and_grad_estimate(key, (decoder, xs), (encoder, xs))

    Because the sum is linear in its terms, each element's expectation is its
    own evaluation (its own surrogate, vectorised with :func:`vmap`): the sum
    of unbiased estimates and gradients is unbiased, and an enumerated or MVD
    choice is re-run with one data point's program, not the whole batch's.
    """

    def batched(key: Any, *args: Any) -> Any:
        axes = _axes(in_axes, len(args))
        n = _size(args, axes, None)
        each = vmap(lambda k, *a: objective.surrogate(k, *a), in_axes=(0, *axes))
        return jnp.sum(each(jax.random.split(key, n), *args))

    return Expectation(batched, name or f"batch_sum({objective.name})")


# ------------------------------------------------- vectorisation in objectives
def _axes(in_axes: Any, n_args: int) -> tuple:
    return axes_of(in_axes, n_args, "ppl.vi.vmap")


def _size(args: tuple, axes: tuple, axis_size: int | None) -> int:
    return batch_size(args, axes, axis_size, "ppl.vi.vmap")


def vmap(
    fn: Callable[..., Any],
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    *,
    scores: bool = False,
) -> Callable[..., Any]:
    """``jax.vmap`` for code that samples inside an objective (particles, data points).

    Like ``jax.vmap(fn, in_axes, out_axes, axis_size)`` (``in_axes`` an int,
    ``None`` or one entry per argument, each a pytree prefix), and every random
    choice made inside is transformed by the enclosing expectation: it is
    :func:`ppl.core.batching.batch`, which forwards each element's reports.
    With ``scores=True`` it returns ``(out, scores)``, ``scores[k]`` being
    element ``k``'s REINFORCE score ``sum_i log q_i - sg(log q_i)`` (value 0),
    for per-element baselines with :func:`subtract_baseline`. A plain
    ``jax.vmap`` around sampling code in an objective fails loudly when a
    choice reports from inside it.
    """

    def batched(*args: Any) -> Any:
        n = _size(args, _axes(in_axes, len(args)), axis_size)
        out, totals = batch(fn, in_axes, out_axes, axis_size, where="ppl.vi.vmap")(*args)
        if scores:
            return out, totals.get(SCORE, jnp.zeros(n))
        return out

    return batched


def particles(fn: Callable[..., Any], num: int, *, scores: bool = False) -> Callable[..., Any]:
    """``num`` independent particles of ``fn(key) -> out`` from one key: ``jax.vmap`` over split keys, cheaper.

    ``particles(fn, K)(key)`` equals ``vmap(fn)(jax.random.split(key, K))`` in
    distribution: every particle's choices are independent draws, but each
    site derives its key once and draws all ``K`` particles in one batched call
    (:func:`ppl.infer.particle_vmap.particle_vmap`: one random-number call per
    site instead of a key split, a per-particle ``fold_in`` and a per-particle
    draw). The draws are providers on the handler stack, so every gradient
    estimator applies to them as usual. ``scores=True`` as in :func:`vmap`.
    """
    from ppl.infer.particle_vmap import particle_batch  # vi builds on infer's particle batching

    def run(key: Any) -> Any:
        out, totals = particle_batch(lambda k: fn(k), num, in_axes=())(key)
        if scores:
            return out, totals.get(SCORE, jnp.zeros(num))
        return out

    return run


def scan(f: Callable[..., Any], init: Any, xs: Any = None, length: int | None = None) -> tuple[Any, Any]:
    """``jax.lax.scan`` for code that samples inside an objective (an SMC sweep).

    Random choices made in ``f(carry, x) -> (carry, y)`` are transformed by
    the enclosing expectation (:func:`ppl.core.batching.loop` forwards each
    step's reports).
    """
    leaves = jax.tree_util.tree_leaves(xs)
    n = length if length is not None else (jnp.shape(leaves[0])[0] if leaves else None)
    if n is None:
        raise EstimatorError("ppl.vi.scan: xs is None, so pass length=T")
    return loop(f, init, xs, n)


def subtract_baseline(scores: Any, baseline: Any) -> None:
    """Give the choices behind each entry of ``scores`` its own baseline.

    ``scores`` come from :func:`vmap` with ``scores=True``; ``baseline`` has
    the same shape (or broadcasts to it) and must not depend on the choices
    of the element it is subtracted from (VIMCO's leave-one-out baselines
    depend only on the other particles). The surrogate gains
    ``-sum_k scores_k * sg(baseline_k)``: the learning signal of element
    ``k``'s REINFORCE choices becomes ``f - baseline_k``. Outside an
    expectation this does nothing.
    """
    if SCORE_BASELINE not in context.effect_channels():
        return
    scores = jnp.asarray(scores)
    b = jnp.broadcast_to(jnp.asarray(baseline), scores.shape)
    context.emit(SCORE_BASELINE, jnp.sum(scores * sg(b)))


__all__ = [
    "CHANNELS",
    "Expectation",
    "batch_sum",
    "expectation",
    "particles",
    "scan",
    "subtract_baseline",
    "vmap",
]
