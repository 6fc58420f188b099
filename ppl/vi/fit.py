"""``ppl.vi.fit``: maximise a variational objective with an optax optimiser.

An objective (``ppl.vi.elbo(...)``, ``ppl.vi.iwae(...)``, any
``ppl.vi.expectation``) is a bound to *maximise*; each step takes one
unbiased estimate of its value and gradient,

    v_t, g_t = objective.value_and_grad_estimate(key_t, *args(theta_t)),

and applies the optimiser to ``-g_t`` (optax minimises). ``theta`` is the
set of float array leaves of ``init`` (equinox filtering,
``eqx.partition(init, eqx.is_inexact_array)``): every other leaf (ints,
functions, static fields) is held fixed. Python floats and NumPy float
arrays in ``init`` are made JAX arrays first, so they train too. Float
arrays that are *data* rather than parameters (covariates among the model's
arguments) look the same: freeze them with ``trainable`` (e.g.
``trainable=(False, True)`` trains only the guide's arguments), or pass
them through ``data=`` / ``batch_fn``.

**Arguments.** Without data, the objective's arguments are the parameters
themselves: ``init`` is the tuple of its arguments, e.g.
``(model_args, guide_args)``. With ``data``, a user function builds them
each step, ``args = batch_fn(params, batch)`` (``batch`` a
:class:`~ppl.vi.minibatch.Minibatch` with ``.data``, ``.scale = N / B`` and
``.indices``); gradients with respect to ``args`` are pulled back to
``params`` through ``batch_fn`` with a VJP, so ``batch_fn`` may place
parameters anywhere in the arguments.

**Loop.** Steps run in compiled chunks (``lax.scan`` over ``chunk_size``
steps, one compilation reused across chunks and across calls with the same
objective and optimiser); between chunks the host updates the progress bar,
records the history, writes checkpoints and calls callbacks. Step ``t``'s
key is ``fold_in(key, t)``, so the run is the same whatever the chunking and
the step number is the whole RNG state.

**Checkpoints** (``checkpoint="run.npz"``) are written atomically every
``checkpoint_every`` steps and at the end; a run started with an existing
checkpoint resumes from it (``resume=True``) with parameters, optimiser
state, history and key intact, and ends with exactly the parameters of an
uninterrupted run.

**Non-finite values.** If the objective or its gradient is not finite at
step ``t``, the update of step ``t`` is not applied, the checkpoint is
written from the parameters reached before it, and
:class:`~ppl.errors.NonFiniteObjectiveError` is raised naming ``t``; its
``.result`` holds those parameters, the optimiser state and the history.
"""

from __future__ import annotations

import collections.abc
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.errors import FitError, NonFiniteObjectiveError
from ppl.vi.checkpoint import load_checkpoint, save_checkpoint
from ppl.vi.minibatch import Minibatch, given_batch, leading_size, sample_batch


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    ``params``: ``init`` with its float leaves trained (same structure);
    ``history``: the objective's estimate at every step (``history[t]`` at
    the parameters before update ``t``); ``opt_state``: the optimiser state;
    ``step``: steps taken in all (resumed runs included).
    """

    params: Any
    history: np.ndarray
    opt_state: Any
    step: int

    def __repr__(self) -> str:
        last = f", last objective {self.history[-1]:.6g}" if len(self.history) else ""
        return f"FitResult(step={self.step}{last})"


@dataclass
class FitState:
    """What a callback sees after each chunk: ``step`` reached, ``params``, ``opt_state``, ``history`` so far."""

    step: int
    params: Any
    opt_state: Any
    history: np.ndarray


class _Spec:
    """The static part of the compiled chunk: compared by identity of its parts (a jit cache key)."""

    def __init__(
        self, objective: Any, optimizer: Any, batch_fn: Any, mode: str, size: int, batch_size: int, data_size: Any
    ):
        self.objective = objective
        self.optimizer = optimizer
        self.batch_fn = batch_fn
        self.mode = mode  # "none" | "array" | "iterator"
        self.size = size
        self.batch_size = batch_size
        self.data_size = data_size

    def _key(self) -> tuple:
        return (
            id(self.objective),
            id(self.optimizer),
            id(self.batch_fn),
            self.mode,
            self.size,
            self.batch_size,
            self.data_size,
        )

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Spec)
            and self.objective is other.objective
            and self.optimizer is other.optimizer
            and self.batch_fn is other.batch_fn
            and self._key() == other._key()
        )


# ------------------------------------------------------------ the compiled chunk


def _cotangent(args: tuple, grads: Any) -> Any:
    """Align the objective's gradients with ``args``: zeros where it gave none, ``None`` at non-float leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    try:
        g_leaves = treedef.flatten_up_to(grads)
    except (ValueError, TypeError) as e:
        raise FitError(
            "the objective's gradient does not have the structure of its arguments (one entry per argument, "
            f"pytrees matching): {e}"
        ) from None
    out = []
    for a, g in zip(leaves, g_leaves):
        if not eqx.is_inexact_array(a):
            out.append(None)
            continue
        if g is None or getattr(g, "dtype", None) == jax.dtypes.float0:
            out.append(jnp.zeros_like(a))
            continue
        g = jnp.asarray(g)
        if g.shape != a.shape:
            raise FitError(f"the objective's gradient has shape {g.shape} for an argument of shape {a.shape}")
        out.append(g.astype(a.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def _check_args(args: Any) -> tuple:
    if not isinstance(args, tuple):
        raise FitError(
            f"batch_fn must return the objective's arguments as a tuple (e.g. (model_args, guide_args)), got "
            f"{type(args).__name__}"
        )
    return args


def _step(spec: _Spec, key: Any, static: Any, data: Any, carry: tuple, xs: tuple) -> tuple:
    trainable, opt_state, ok, bad = carry
    step, batch = xs
    k_obj, k_batch = jax.random.split(jax.random.fold_in(key, step))
    if spec.mode == "array":
        mb = sample_batch(k_batch, data, spec.size, spec.batch_size)
    elif spec.mode == "iterator":
        mb = given_batch(batch, spec.data_size)
    else:
        mb = None

    def make_args(tp: Any) -> tuple:
        params = eqx.combine(tp, static)
        args = params if spec.batch_fn is None else _check_args(spec.batch_fn(params, mb))
        return eqx.partition(args, eqx.is_inexact_array)

    args_diff, pullback, args_static = jax.vjp(make_args, trainable, has_aux=True)
    args = eqx.combine(args_diff, args_static)
    value, grads = spec.objective.value_and_grad_estimate(k_obj, *args)
    if jnp.shape(value) != ():
        raise FitError(
            f"the objective's estimate has shape {jnp.shape(value)}; fit maximises a scalar objective: sum or "
            "average the per-element values inside the objective"
        )
    (g,) = pullback(_cotangent(args, grads))
    finite = jnp.isfinite(value)
    for leaf in jax.tree_util.tree_leaves(g):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    neg = jax.tree_util.tree_map(jnp.negative, g)
    good = ok & finite

    def update(_: Any) -> tuple:
        updates, new_opt = spec.optimizer.update(neg, opt_state, trainable)
        return optax.apply_updates(trainable, updates), new_opt

    # a branch, not a select: the update is computed (and paid for) only when it is applied
    new_trainable, new_opt = jax.lax.cond(good, update, lambda _: (trainable, opt_state), None)
    bad = jnp.where(ok & ~finite, step, bad)
    return (new_trainable, new_opt, good, bad), jnp.asarray(value, jnp.float32)


@eqx.filter_jit
def _run_chunk(spec: _Spec, key: Any, trainable: Any, static: Any, opt_state: Any, data: Any, steps: Any, batches: Any):
    carry = (trainable, opt_state, jnp.asarray(True), jnp.asarray(-1, steps.dtype))
    carry, values = jax.lax.scan(lambda c, x: _step(spec, key, static, data, c, x), carry, (steps, batches))
    trainable, opt_state, ok, bad = carry
    return trainable, opt_state, values, ok, bad


# ------------------------------------------------------------------ the host loop


def _as_key(key: Any) -> Any:
    if key is None:
        raise FitError("fit needs a PRNG key (jax.random.key(0)) as its first argument")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise FitError(f"fit needs a single PRNG key, got a key array of shape {key.shape}")
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return key
    raise FitError(f"fit: expected a PRNG key (jax.random.key(seed)), got dtype {key.dtype} shape {key.shape}")


def _floats_to_arrays(tree: Any) -> Any:
    def conv(x: Any) -> Any:
        if isinstance(x, float):
            return jnp.asarray(x, jnp.float32)
        if isinstance(x, (np.ndarray, np.generic)) and np.issubdtype(np.asarray(x).dtype, np.inexact):
            return jnp.asarray(x)
        return x

    return jax.tree_util.tree_map(conv, tree)


def _filter_spec(trainable: Any, init: tuple) -> Any:
    """``trainable`` (bools / predicates, a prefix of ``init``) combined with "is a float array"."""

    def leaf(f: Any) -> Any:
        if isinstance(f, bool):
            return eqx.is_inexact_array if f else False
        if callable(f):
            return lambda x: eqx.is_inexact_array(x) and bool(f(x))
        raise FitError(f"trainable must hold bools or predicates (as equinox's filter_spec), got {type(f).__name__}")

    spec = jax.tree_util.tree_map(leaf, trainable, is_leaf=lambda x: isinstance(x, bool) or callable(x))
    try:
        jax.tree_util.tree_structure(spec).flatten_up_to(init) if jax.tree_util.tree_leaves(spec) else None
    except (ValueError, TypeError) as e:
        raise FitError(f"trainable must be a pytree prefix of init (e.g. (False, True)): {e}") from None
    return spec


def _same_key(a: Any, b: Any) -> bool:
    def data(k: Any) -> np.ndarray:
        return np.asarray(jax.random.key_data(k) if jax.dtypes.issubdtype(k.dtype, jax.dtypes.prng_key) else k)

    return np.array_equal(data(a), data(b))


class _Progress:
    """A tqdm bar when tqdm is installed, else a line every ~10% of the run."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.bar = None
        self.enabled = enabled
        self.total = total
        self.last_print = initial
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, desc="fit", unit="step", dynamic_ncols=True)

    def update(self, step: int, n: int, value: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(objective=f"{value:.5g}", refresh=False)
            self.bar.update(n)
        elif step - self.last_print >= max(1, self.total // 10) or step == self.total:
            print(f"fit: step {step}/{self.total}  objective {value:.6g}", flush=True)
            self.last_print = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _take(it: collections.abc.Iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _stack(batches: list, step: int) -> Any:
    structs = [jax.tree_util.tree_structure(b) for b in batches]
    for i, s in enumerate(structs):
        if s != structs[0]:
            raise FitError(f"the data iterator's batch at step {step + i} has structure {s}, not {structs[0]}")
    shapes0 = [jnp.shape(x) for x in jax.tree_util.tree_leaves(batches[0])]
    for i, b in enumerate(batches):
        shapes = [jnp.shape(x) for x in jax.tree_util.tree_leaves(b)]
        if shapes != shapes0:
            raise FitError(
                f"the data iterator's batch at step {step + i} has shapes {shapes}, but earlier batches {shapes0}: "
                "every batch must have the same shapes (drop the last incomplete batch)"
            )
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *batches)


def fit(
    key: Any,
    objective: Any,
    init: tuple,
    optimizer: optax.GradientTransformation,
    steps: int = 1000,
    *,
    data: Any = None,
    batch_size: int | None = None,
    batch_fn: Callable[[Any, Minibatch], tuple] | None = None,
    data_size: int | None = None,
    trainable: Any = True,
    chunk_size: int = 100,
    callbacks: Sequence[Callable[[FitState], Any]] = (),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress_bar: bool = True,
) -> FitResult:
    """Maximise ``objective`` over the float leaves of ``init`` (see the module docstring).

    Args:
      key: PRNG key of the run; step ``t`` uses ``fold_in(key, t)``.
      objective: has ``value_and_grad_estimate(key, *args) -> (value, grads)``
        with one gradient entry per argument (an ``ppl.vi`` objective).
      init: the objective's arguments (without data), e.g. ``(model_args,
        guide_args)``; with data, the parameters ``batch_fn`` reads.
      optimizer: an optax ``GradientTransformation`` (schedules included).
      steps: total number of steps (a resumed run continues up to it).
      data: an array / pytree of arrays with a leading data axis (sampled
        ``batch_size`` rows per step without replacement), or an iterator of
        batches.
      batch_fn: ``batch_fn(params, batch) -> args``; required with ``data``.
      data_size: for an iterator, the data set size ``N`` (sets ``batch.scale``).
      trainable: which float leaves of ``init`` to train: a pytree prefix of
        ``init`` of bools (or predicates on leaves), as equinox's
        ``filter_spec``; e.g. ``(False, True)`` trains the guide's arguments
        and freezes float data among the model's. Default: every float leaf.
      chunk_size: steps per compiled chunk (progress, callbacks, checkpoints
        happen between chunks).
      callbacks: called after each chunk with a :class:`FitState`; a
        callback returning ``True`` stops the run.
      checkpoint: path of the checkpoint file (``.npz``); ``None`` for none.
      checkpoint_every: steps between checkpoints (default: every chunk).
      resume: continue from ``checkpoint`` when it exists.
      progress_bar: show a progress bar with the objective (as ``ppl.infer.nuts``).

    Returns:
      a :class:`FitResult` with ``.params``, ``.history``, ``.opt_state``, ``.step``.
    """
    key = _as_key(key)
    if not callable(getattr(objective, "value_and_grad_estimate", None)):
        raise FitError(
            f"fit needs an objective with value_and_grad_estimate(key, *args) (e.g. ppl.vi.elbo(model, guide, obs)), "
            f"got {type(objective).__name__}"
        )
    if not isinstance(init, tuple):
        raise FitError(
            f"init must be the tuple of the objective's arguments, e.g. (model_args, guide_args); got "
            f"{type(init).__name__} (for a single argument write (arg,))"
        )
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise FitError(
            f"optimizer must be an optax GradientTransformation (optax.adam(1e-2)), got {type(optimizer).__name__}"
        )
    if not isinstance(steps, int) or steps < 0:
        raise FitError(f"steps must be a non-negative int, got {steps!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise FitError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise FitError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")

    mode, size, iterator = "none", 0, None
    if data is None:
        if batch_fn is not None or batch_size is not None:
            raise FitError("batch_fn and batch_size are for minibatch training: pass data= as well")
    else:
        if batch_fn is None:
            raise FitError(
                "with data= give batch_fn(params, batch) -> the objective's arguments; batch.data is the minibatch "
                "and batch.scale = N / B the factor for its likelihood (ppl.scale)"
            )
        if isinstance(data, collections.abc.Iterator):
            mode, iterator, data = "iterator", data, None
            if batch_size is not None:
                raise FitError("batch_size is for array data; an iterator's batches come with their own size")
        else:
            mode = "array"
            data = jax.tree_util.tree_map(jnp.asarray, data)
            size = leading_size(data)
            if not isinstance(batch_size, int) or not 1 <= batch_size <= size:
                raise FitError(f"batch_size must be an int between 1 and the data size {size}, got {batch_size!r}")
    spec = _Spec(objective, optimizer, batch_fn, mode, size, batch_size or 0, data_size)

    init = _floats_to_arrays(init)
    trainable, static = eqx.partition(init, _filter_spec(trainable, init))
    if not jax.tree_util.tree_leaves(trainable):
        raise FitError("init has no float arrays to train (every leaf is an int, a function, static or frozen)")
    opt_state = optimizer.init(trainable)
    history = np.zeros((0,), np.float64)
    step = 0
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        ck = load_checkpoint(checkpoint, trainable, opt_state)
        if not _same_key(ck.key, key):
            raise FitError(
                f"checkpoint {checkpoint} was written by a run with a different key; resume with the same key, "
                "or pass resume=False to start over"
            )
        trainable, opt_state, history, step = ck.trainable, ck.opt_state, ck.history, ck.step
        if len(history) != step:
            raise FitError(f"checkpoint {checkpoint} is inconsistent: step {step} but {len(history)} history entries")

    def result() -> FitResult:
        return FitResult(eqx.combine(trainable, static), history, opt_state, step)

    saved = [step]

    def save() -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, step=step, trainable=trainable, opt_state=opt_state, key=key, history=history)
            saved[0] = step

    every = checkpoint_every or chunk_size
    bar = _Progress(progress_bar, steps, step)
    try:
        while step < steps:
            end = min(steps, (step // chunk_size + 1) * chunk_size)
            n = end - step
            batches = None
            if iterator is not None:
                pulled = _take(iterator, n)
                if not pulled:
                    break
                n, end = len(pulled), step + len(pulled)
                batches = _stack(pulled, step)
            idx = jnp.arange(step, end, dtype=jnp.int32)
            new_tr, new_opt, values, ok, bad = _run_chunk(spec, key, trainable, static, opt_state, data, idx, batches)
            values = np.asarray(values, np.float64)
            if not bool(ok):
                bad = int(bad)
                history = np.concatenate([history, values[: bad - step]])
                trainable, opt_state, step = new_tr, new_opt, bad
                save()
                raise NonFiniteObjectiveError(
                    f"the objective or its gradient is not finite at step {bad} (objective estimate "
                    f"{values[bad - step + 0]:.6g}); stopped with the parameters reached before that step "
                    f"(in .result{', and in the checkpoint ' + str(checkpoint) if checkpoint is not None else ''}). "
                    "Lower the learning rate, check the model's supports and initial values, or look for "
                    "log(0) / division by zero in the model or guide",
                    bad,
                    result(),
                )
            trainable, opt_state, step = new_tr, new_opt, end
            history = np.concatenate([history, values])
            if end == steps or math.floor(end / every) > math.floor((end - n) / every):
                save()
            bar.update(step, n, float(np.mean(values)))
            stop = False
            for cb in callbacks:
                stop = bool(cb(FitState(step, eqx.combine(trainable, static), opt_state, history))) or stop
            if stop:
                break
        if saved[0] != step:
            save()
    finally:
        bar.close()
    return result()


__all__ = ["FitResult", "FitState", "fit"]
