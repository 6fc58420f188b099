"""Checkpoint/resume of ``ppl.vi.fit``: exact continuation, atomic writes, mismatches.

Run as a script (``python test_checkpoint.py CKPT``) it trains the problem
below and SIGKILLs itself right after the checkpoint at step 30: the test
then resumes from that file in-process.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import dist
from ppl.errors import FitError

STEPS, CHUNK, EVERY, KILL_AT = 60, 10, 20, 30
YS = jnp.array([0.5, 1.5, 1.0, 2.0])


@ppl.gen
def model(n):
    mu = dist.Normal(0.0, 2.0) @ "mu"
    s = dist.HalfNormal(2.0) @ "s"
    return dist.Normal(mu, s).expand((n,)).to_event(1) @ "y"


OBS = {"y": YS}
GUIDE = ppl.vi.AutoNormal(model, (len(YS),), OBS)
OBJECTIVE = ppl.vi.elbo(model, GUIDE, OBS)
OPTIMIZER = optax.adam(optax.exponential_decay(0.05, 20, 0.5))  # the schedule reads the restored step count
INIT = ((len(YS),), GUIDE.init_args)


def run(**kwargs):
    return ppl.vi.fit(
        jax.random.key(7), OBJECTIVE, INIT, OPTIMIZER, steps=STEPS, chunk_size=CHUNK, progress_bar=False, **kwargs
    )


class Interrupt(Exception):
    pass


def interrupt_at(step):
    def cb(state):
        if state.step == step:
            raise Interrupt

    return cb


def assert_same(a, b):
    for x, y in zip(
        jax.tree_util.tree_leaves((a.params, a.opt_state)), jax.tree_util.tree_leaves((b.params, b.opt_state))
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(a.history, b.history)
    assert a.step == b.step


@pytest.fixture(scope="module")
def uninterrupted():
    return run()


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path, uninterrupted):
    ck = tmp_path / "run.npz"
    with pytest.raises(Interrupt):
        run(checkpoint=ck, checkpoint_every=EVERY, callbacks=[interrupt_at(KILL_AT)])
    trainable = uninterrupted.params[1]
    saved = ppl.vi.load_checkpoint(ck, trainable, OPTIMIZER.init(trainable))
    assert saved.step == 20  # the last multiple of checkpoint_every before the interruption at 30
    np.testing.assert_array_equal(saved.history, uninterrupted.history[:20])
    resumed = run(checkpoint=ck, checkpoint_every=EVERY)
    assert_same(resumed, uninterrupted)
    # the finished run left a final checkpoint: running again returns it without training
    again = run(checkpoint=ck, checkpoint_every=EVERY)
    assert_same(again, uninterrupted)


def test_killed_process_resumes_to_the_same_parameters(tmp_path, uninterrupted):
    ck = tmp_path / "killed.npz"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, __file__, str(ck)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert ck.exists() and not list(tmp_path.glob(".*tmp*"))
    resumed = run(checkpoint=ck, checkpoint_every=CHUNK)
    assert_same(resumed, uninterrupted)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck = tmp_path / "atomic.npz"
    run(checkpoint=ck, callbacks=[lambda s: s.step >= 20])
    before = ck.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ppl.vi.checkpoint.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        run(checkpoint=ck)
    assert ck.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.npz"]


def test_mismatched_checkpoints_are_refused(tmp_path):
    ck = tmp_path / "other.npz"
    run(checkpoint=ck, callbacks=[lambda s: True])
    with pytest.raises(FitError, match="different key"):
        ppl.vi.fit(
            jax.random.key(8),
            OBJECTIVE,
            INIT,
            OPTIMIZER,
            steps=STEPS,
            chunk_size=CHUNK,
            checkpoint=ck,
            progress_bar=False,
        )
    other_guide, other_args = ppl.vi.auto_multivariate_normal(model, (len(YS),), OBS)
    with pytest.raises(FitError, match=r"written by a run with different parameters|written by a different run"):
        ppl.vi.fit(
            jax.random.key(7),
            ppl.vi.elbo(model, other_guide, OBS),
            ((len(YS),), other_args),
            OPTIMIZER,
            steps=STEPS,
            checkpoint=ck,
            progress_bar=False,
        )
    # resume=False starts over and overwrites
    res = run(checkpoint=ck, resume=False, callbacks=[lambda s: True])
    assert res.step == CHUNK
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(FitError, match="cannot read checkpoint"):
        run(checkpoint=tmp_path / "junk.npz")


def test_checkpoint_round_trip_with_a_raw_key(tmp_path):
    params = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2), jnp.float32)}
    opt_state = optax.adam(0.1).init(params)
    key = jax.random.PRNGKey(3)
    ppl.vi.save_checkpoint(
        tmp_path / "c.npz", step=4, trainable=params, opt_state=opt_state, key=key, history=np.arange(4.0)
    )
    ck = ppl.vi.load_checkpoint(tmp_path / "c.npz", params, opt_state)
    assert ck.step == 4
    np.testing.assert_array_equal(ck.key, key)
    np.testing.assert_array_equal(ck.trainable["b"], params["b"])
    np.testing.assert_array_equal(ck.history, np.arange(4.0))
    assert jax.tree_util.tree_structure(ck.opt_state) == jax.tree_util.tree_structure(opt_state)
    with pytest.raises(FitError, match=r"leaf \['b'\] has shape \(2, 2\)"):
        ppl.vi.load_checkpoint(tmp_path / "c.npz", {"a": jnp.arange(3.0), "b": jnp.ones(3)}, opt_state)


if __name__ == "__main__":

    def kill_after_checkpoint(state):
        if state.step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    run(checkpoint=sys.argv[1], checkpoint_every=CHUNK, callbacks=[kill_after_checkpoint])
