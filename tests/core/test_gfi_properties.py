"""Property tests of the GFI over randomly built small models.

Every model mixes continuous and discrete choices, nested calls and the
combinators (vmap, scan, cond). For each we check, against a reference
density computed directly with numpyro (tests/core/random_models.py):

* the score is the sum of the choice log densities;
* ``assess`` gives the same number;
* ``generate`` with every choice constrained returns ``assess``'s density;
* ``update`` with no change has weight 0;
* ``update``'s and ``regenerate``'s weights agree with brute force from the
  reference densities (Gen's definitions, see ppl/core/generative_function.py);
* ``jax.vmap`` of each GFI method equals a Python loop over the unbatched one.

Comparisons are float32 round-off tolerances (the quantities are equal in
exact arithmetic), not statistical ones.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ppl

from .random_models import build, present, reference_logps, specs

A = 0.3
TOL = dict(rtol=1e-4, atol=2e-3)
# CI runs a fixed, derandomised set of examples; PPL_PROPERTY_EXAMPLES=500 explores more.
EXAMPLES = int(os.environ.get("PPL_PROPERTY_EXAMPLES", "6"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def total(d: dict) -> float:
    return float(sum(d.values()))


@pytest.mark.slow
@SETTINGS
@given(spec=specs, seed=st.integers(0, 2**16))
def test_gfi_weights_match_reference(spec, seed):
    ppl.clear_caches()  # hundreds of throw-away models: release their compiled programs
    model = build(spec)
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    tr = model.simulate(k1, (A,))
    ref = reference_logps(spec, tr.choices, A)

    # score = sum of the choice log densities = assess
    np.testing.assert_allclose(float(tr.score), total(ref), **TOL)
    np.testing.assert_allclose(float(model.assess(tr.choices, (A,))[0]), total(ref), **TOL)

    # generate with every choice constrained: weight = assess
    tr_g, w_g = model.generate(k2, tr.choices, (A,))
    np.testing.assert_allclose(float(w_g), total(ref), **TOL)
    np.testing.assert_allclose(float(tr_g.score), float(tr.score), **TOL)

    # update with no change: weight 0, same choices
    tr_u, w_u, discard = model.update(k3, tr, ppl.choices(), (A,))
    np.testing.assert_allclose(float(w_u), 0.0, atol=1e-5)
    assert present(discard) == {}
    for a, v in present(tr.choices).items():
        np.testing.assert_array_equal(np.asarray(tr_u.choices[a]), np.asarray(v))

    # update to another trace's values at a random half of the addresses
    other = model.simulate(k4, (A + 0.5,))
    addrs = [a for a in present(other.choices)]
    rng = np.random.default_rng(seed)
    chosen = [a for a in addrs if rng.random() < 0.5]
    cons = ppl.choices({a: other.choices[a] for a in chosen})
    new_args = (A + 0.2,)
    tr_new, w_new, _ = model.update(k3, tr, cons, new_args)
    ref_old = ref
    ref_new = reference_logps(spec, tr_new.choices, new_args[0])
    old_present = present(tr.choices)
    fresh = [
        a for a in ref_new if a not in chosen and (a not in old_present or not _same(tr_new.choices[a], old_present[a]))
    ]
    expected = total(ref_new) - total(ref_old) - sum(ref_new[a] for a in fresh)
    if any(a not in ref_new for a in chosen):
        # a constraint inside a branch that is not taken has probability zero
        expected = -np.inf
    np.testing.assert_allclose(float(w_new), expected, **TOL)
    np.testing.assert_allclose(float(tr_new.score), total(ref_new), **TOL)
    for a in chosen:
        if a in ref_new:  # a constrained choice inside the taken branch
            np.testing.assert_allclose(np.asarray(tr_new.choices[a]), np.asarray(other.choices[a]))

    # regenerate a random selection: weight = sum over kept unselected choices of new - old
    sel_addrs = [a for a in addrs if rng.random() < 0.4]
    sel = ppl.select(*sel_addrs) if sel_addrs else ppl.select_none()
    tr_r, w_r = model.regenerate(k4, tr, sel, (A,))
    ref_r = reference_logps(spec, tr_r.choices, A)
    kept = [a for a in ref_r if a in ref_old and not sel.contains(a) and _same(tr_r.choices[a], old_present[a])]
    expected_r = sum(ref_r[a] - ref_old[a] for a in kept)
    np.testing.assert_allclose(float(w_r), expected_r, **TOL)
    np.testing.assert_allclose(float(tr_r.score), total(ref_r), **TOL)


def _same(x, y) -> bool:
    return bool(np.all(np.asarray(x) == np.asarray(y)))


@pytest.mark.slow
@settings(
    max_examples=max(3, EXAMPLES // 3), deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(spec=specs)
def test_vmapped_gfi_equals_python_loop(spec):
    ppl.clear_caches()
    model = build(spec)
    keys = jax.random.split(jax.random.key(1), 3)
    args = jnp.array([0.1, -0.4, 0.7])
    batched = jax.vmap(lambda k, a: model.simulate(k, (a,)))(keys, args)
    for i in range(3):
        single = model.simulate(keys[i], (args[i],))
        np.testing.assert_allclose(float(batched.score[i]), float(single.score), **TOL)
        for a, v, m in single.choices.masked_items():
            np.testing.assert_allclose(np.asarray(batched.choices[a][i]), np.asarray(v), **TOL)
            if m is not None:
                assert bool(batched.choices.mask(a)[i]) == bool(m)
    w_batched, _ = jax.vmap(lambda c, a: model.assess(c, (a,)))(batched.choices, args)
    gen_batched = jax.vmap(lambda k, c, a: model.generate(k, c, (a,))[1])(keys, batched.choices, args)
    upd_batched = jax.vmap(lambda k, t, a: model.update(k, t, ppl.choices(), (a + 1.0,))[1])(keys, batched, args)
    for i in range(3):
        cm_i = jax.tree_util.tree_map(lambda x, i=i: x[i], batched.choices)
        tr_i = jax.tree_util.tree_map(lambda x, i=i: x[i], batched)
        np.testing.assert_allclose(float(w_batched[i]), float(model.assess(cm_i, (args[i],))[0]), **TOL)
        np.testing.assert_allclose(float(gen_batched[i]), float(model.generate(keys[i], cm_i, (args[i],))[1]), **TOL)
        np.testing.assert_allclose(
            float(upd_batched[i]), float(model.update(keys[i], tr_i, ppl.choices(), (args[i] + 1.0,))[1]), **TOL
        )
