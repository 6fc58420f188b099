"""``ppl.core.scale.scale``: every score and weight is exactly ``factor`` times the inner one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.core.scale import Scale, ScaleTrace, scale
from ppl.errors import CombinatorError


@ppl.gen
def lik(mu, ys):
    z = dist.Normal(mu, 1.0) @ "z"
    dist.Normal(z, 0.5).expand(ys.shape).to_event(1) @ "y"
    return z


YS = jnp.array([0.3, -1.2, 2.0])
ARGS = (0.4, YS)
C = 2.5


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_simulate_and_assess_scale_the_score():
    key = jax.random.key(0)
    inner = lik.simulate(key, ARGS)
    tr = scale(lik, C).simulate(key, ARGS)
    assert isinstance(tr, ScaleTrace)
    close(tr.choices["z"], inner.choices["z"])
    close(tr.score, C * inner.score)
    w, r = scale(lik, C).assess(inner.choices, ARGS)
    w0, _ = lik.assess(inner.choices, ARGS)
    close(w, C * w0)
    close(r, inner.retval)
    close(tr.project(ppl.select("y")), C * inner.project(ppl.select("y")))


def test_generate_weight_is_factor_times_inner():
    key = jax.random.key(1)
    obs = ppl.choices({"y": YS})
    tr, w = scale(lik, C).generate(key, obs, ARGS)
    tr0, w0 = lik.generate(key, obs, ARGS)
    close(w, C * w0)
    close(tr.score, C * tr0.score)
    assert tr.gen_fn == scale(lik, 7.0)  # equality ignores the factor


def test_update_and_regenerate_weights():
    key = jax.random.key(2)
    g = scale(lik, C)
    tr, _ = g.generate(key, ppl.choices({"y": YS}), ARGS)
    new = ppl.choices({"z": 0.7})
    tr2, w, discard = g.update(jax.random.key(3), tr, new)
    _, w0, discard0 = lik.update(jax.random.key(3), tr.inner, new)
    close(w, C * w0)
    close(discard["z"], discard0["z"])
    close(tr2.score - tr.score, w)  # no fresh choices: weight = change in scaled score
    # a new factor: the weight is the change in scaled score, c' log p(t') - c log p(t)
    tr3, w3, _ = scale(lik, 0.5).update(jax.random.key(3), tr, new)
    close(w3, 0.5 * tr2.inner.score - C * tr.inner.score)
    close(tr3.score, 0.5 * tr2.inner.score)
    tr4, w4 = g.regenerate(jax.random.key(4), tr, ppl.select("z"))
    _, w40 = lik.regenerate(jax.random.key(4), tr.inner, ppl.select("z"))
    close(w4, C * w40)
    close(tr4.choices["z"], lik.regenerate(jax.random.key(4), tr.inner, ppl.select("z"))[0].choices["z"])


@ppl.gen
def model(beta, ys):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return scale(lik, beta)(mu, ys) @ "lik"


def test_inside_a_model_with_a_traced_factor():
    cm = ppl.choices({"mu": 0.2, ("lik", "z"): -0.1, ("lik", "y"): YS})
    w_prior = dist.Normal(0.0, 1.0).log_prob(0.2)
    w_lik, _ = lik.assess(cm.get_submap("lik"), (0.2, YS))

    @jax.jit
    def logp(beta):
        return model.assess(cm, (beta, YS))[0]

    for beta in (0.0, 0.3, 4.0):  # one compilation: the factor is traced
        close(logp(beta), w_prior + beta * w_lik)
    # update through the model: the scaled call keeps its trace
    tr, _ = model.generate(jax.random.key(0), cm, (0.3, YS))
    tr2, w, _ = model.update(jax.random.key(1), tr, ppl.choices({"mu": 0.5}), (0.3, YS))
    close(w, tr2.score - tr.score)
    close(tr2.choices["lik", "z"], -0.1)
    # the annealing temperature changes between calls: the weight follows the scaled scores
    tr3, w3, _ = model.update(jax.random.key(1), tr, ppl.choices({}), (0.9, YS))
    close(w3, tr3.score - tr.score)
    close(tr3.score - tr.score, (0.9 - 0.3) * w_lik)


def test_bad_factor_and_bad_function():
    with pytest.raises(CombinatorError, match="scalar factor"):
        scale(lik, jnp.ones(3))
    with pytest.raises(CombinatorError, match="generative function"):
        scale(lambda x: x, 2.0)
    with pytest.raises(CombinatorError, match="real factor"):
        scale(lik, None)
    assert isinstance(scale(lik, 3), Scale)
