"""Checkpoints of ``ppl.vi.fit``: one ``.npz`` file, no pickle, written atomically.

A checkpoint holds everything a run needs to continue exactly where it
stopped: the trainable parameters, the optimiser state, the step reached, the
objective history and the run's base PRNG key (each step's key is
``fold_in(key, step)``, so the step number is the whole RNG state). Array
leaves are stored in flattening order as ``param_<i>`` / ``opt_<i>``;
``meta`` is a JSON string (format, version, step, leaf counts, shapes and
dtypes) -- no pytree structure is stored: it comes from the ``init`` and the
optimiser the resumed run is given, and every leaf is checked against it.

Writing goes to a temporary file in the same directory, flushed and
``fsync``-ed, then ``os.replace``-d over the old checkpoint: a run killed at
any moment leaves either the old checkpoint or the new one, never a torn
file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ppl.errors import FitError

FORMAT = "ppl.vi.fit checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    step: int
    trainable: Any
    opt_state: Any
    key: Any
    history: np.ndarray
    meta: dict


def _key_parts(key: Any) -> tuple[np.ndarray, str | None]:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.asarray(key), None


def _key_from(data: np.ndarray, impl: str | None) -> Any:
    if impl is None:
        return jax.numpy.asarray(data)
    return jax.random.wrap_key_data(data, impl=impl)


def _describe(leaves: list) -> list:
    return [[list(np.shape(x)), str(np.asarray(x).dtype)] for x in leaves]


def save_checkpoint(
    path: str | os.PathLike, *, step: int, trainable: Any, opt_state: Any, key: Any, history: Any
) -> None:
    """Write a checkpoint atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p_leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(trainable)]
    o_leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(opt_state)]
    key_data, key_impl = _key_parts(key)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "key_impl": key_impl,
        "params": _describe(p_leaves),
        "opt_state": _describe(o_leaves),
    }
    arrays = {f"param_{i}": x for i, x in enumerate(p_leaves)}
    arrays.update({f"opt_{i}": x for i, x in enumerate(o_leaves)})
    arrays["history"] = np.asarray(history, dtype=np.float64)
    arrays["key"] = key_data
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _restore(kind: str, like: Any, stored: list, path: Path) -> Any:
    like_leaves, treedef = jax.tree_util.tree_flatten(like)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
    if len(stored) != len(like_leaves):
        raise FitError(
            f"checkpoint {path} holds {len(stored)} {kind} arrays but this run has {len(like_leaves)}; it was "
            "written by a run with different parameters or optimiser (delete it, or pass resume=False)"
        )
    out = []
    for p, want, got in zip(paths, like_leaves, stored):
        want_shape, want_dtype = tuple(np.shape(want)), np.asarray(want).dtype
        if tuple(got.shape) != want_shape or got.dtype != want_dtype:
            raise FitError(
                f"checkpoint {path}: {kind} leaf {p or '(root)'} has shape {tuple(got.shape)} and dtype {got.dtype}, "
                f"but this run's is {want_shape} {want_dtype}; it was written by a different run (delete it, or "
                "pass resume=False)"
            )
        out.append(jax.numpy.asarray(got))
    return jax.tree_util.tree_unflatten(treedef, out)


def load_checkpoint(path: str | os.PathLike, like_trainable: Any, like_opt_state: Any) -> Checkpoint:
    """Read a checkpoint, checking every leaf against this run's parameters and optimiser state."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise FitError(f"{path} is not a ppl.vi.fit checkpoint")
            params = [z[f"param_{i}"] for i in range(len(meta["params"]))]
            opt = [z[f"opt_{i}"] for i in range(len(meta["opt_state"]))]
            history = np.array(z["history"])
            key = _key_from(np.array(z["key"]), meta.get("key_impl"))
    except (OSError, KeyError, ValueError) as e:
        raise FitError(f"cannot read checkpoint {path}: {e}") from e
    if meta.get("version") != VERSION:
        raise FitError(f"checkpoint {path} has format version {meta.get('version')}, this ppl reads {VERSION}")
    trainable = _restore("parameter", like_trainable, params, path)
    opt_state = _restore("optimiser-state", like_opt_state, opt, path)
    return Checkpoint(int(meta["step"]), trainable, opt_state, key, history, meta)


__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]
