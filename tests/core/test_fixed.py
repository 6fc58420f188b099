"""``ppl.condition`` / ``ppl.substitute`` / ``ppl.do``: closed forms, brute force from ``assess``, errors.

Model: ``a ~ N(0, 1)``, ``b ~ N(a, 1)``, ``y ~ N(b, 1)``. Every expected value
is computed independently of :mod:`ppl.core.fixed`: from the untransformed
model's ``assess`` (brute force) or from Gaussian closed forms.

Tolerances: ``rtol`` 1e-6 / 1e-5 where the two sides are equal in exact
arithmetic (float32 round-off); Monte Carlo checks use 5 standard errors of
their estimator, computed from the draws themselves (said at each check).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import ppl
from ppl import dist


@ppl.gen
def chain(mu0):
    a = dist.Normal(mu0, 1.0) @ "a"
    b = dist.Normal(a, 1.0) @ "b"
    return dist.Normal(b, 1.0) @ "y"


@ppl.gen
def outer(mu0, y):
    # a conditioned sub-model whose data depend on the caller's argument
    ppl.condition(chain, {"y": y})(mu0) @ "sub"
    return dist.Normal(0.0, 1.0) @ "c"


def joint(a, b, y, mu0=0.0):
    return float(chain.assess({"a": a, "b": b, "y": y}, (mu0,))[0])


def logn(x, m, s=1.0):
    return float(nd.Normal(m, s).log_prob(x))


def test_condition_scores_the_data_and_removes_it_from_the_choices():
    g = ppl.condition(chain, {"y": 1.5})
    tr = g.simulate(jax.random.key(0), (0.2,))
    a, b = float(tr.choices["a"]), float(tr.choices["b"])
    assert set(tr.choices.addresses()) == {("a",), ("b",)}
    assert float(tr.observations["y"]) == 1.5 and "y" not in tr.deterministics
    np.testing.assert_allclose(float(tr.score), joint(a, b, 1.5, 0.2), rtol=1e-6)
    w, ret = g.assess({"a": a, "b": b}, (0.2,))
    np.testing.assert_allclose(float(w), joint(a, b, 1.5, 0.2), rtol=1e-6)
    assert float(ret) == 1.5
    # generate of a free choice: weight = its density plus the data's (the data are a factor)
    tr2, w2 = g.generate(jax.random.key(1), {"b": 0.4}, (0.2,))
    np.testing.assert_allclose(float(w2), logn(0.4, float(tr2.choices["a"])) + logn(1.5, 0.4), rtol=1e-5)


def test_substitute_scores_like_condition_but_reports_deterministics():
    g = ppl.substitute(chain, {"b": 0.3})
    tr = g.simulate(jax.random.key(0), (0.0,))
    a, y = float(tr.choices["a"]), float(tr.choices["y"])
    np.testing.assert_allclose(float(tr.score), joint(a, 0.3, y), rtol=1e-6)
    assert float(tr.deterministics["b"]) == pytest.approx(0.3) and tr.observations.is_empty()


def test_do_drops_the_density_of_the_intervened_value():
    g = ppl.do(chain, {"b": 0.7})
    tr = g.simulate(jax.random.key(0), (0.0,))
    a, y = float(tr.choices["a"]), float(tr.choices["y"])
    # the mutilated model: p(a) p(y | b = 0.7), no term for b | a
    expected = logn(a, 0.0) + logn(y, 0.7)
    np.testing.assert_allclose(float(tr.score), expected, rtol=1e-5)
    np.testing.assert_allclose(float(g.assess({"a": a, "y": y}, (0.0,))[0]), expected, rtol=1e-5)
    _, w = g.generate(jax.random.key(1), {"y": 2.0}, (0.0,))
    np.testing.assert_allclose(float(w), logn(2.0, 0.7), rtol=1e-5)
    with pytest.raises(ppl.PPLError, match="missing"):
        g.assess({"a": a}, (0.0,))


def _is_mean(key, g, n=20_000):
    pc = ppl.infer.importance(key, g, (0.0,), particles=n)
    w = np.exp(np.asarray(pc.log_weights, np.float64) - np.max(pc.log_weights))
    w /= w.sum()
    a = np.asarray(pc.traces.choices["a"], np.float64)
    mean = float(np.sum(w * a))
    ess = 1.0 / np.sum(w**2)
    sd = float(np.sqrt(np.sum(w * (a - mean) ** 2)))
    return pc, mean, sd / np.sqrt(ess)


def test_condition_versus_do_on_the_same_value():
    # condition on b = 0.7: a | b ~ N(0.35, sqrt(1/2)); do(b = 0.7): a keeps its prior N(0, 1)
    pc, mean_c, se_c = _is_mean(jax.random.key(2), ppl.condition(chain, {"b": 0.7}))
    _, mean_d, se_d = _is_mean(jax.random.key(3), ppl.do(chain, {"b": 0.7}))
    assert abs(mean_c - 0.35) < 5 * se_c, (mean_c, se_c)  # 5 importance-sampling standard errors (ESS-based)
    assert abs(mean_d) < 5 * se_d, (mean_d, se_d)
    # the evidence of condition: p(b = 0.7) = N(0.7; 0, sqrt 2); its estimator's SE from the weights
    lw = np.asarray(pc.log_weights, np.float64)
    w = np.exp(lw - lw.max())
    se_log_z = np.std(w) / np.sqrt(w.size) / np.mean(w)
    assert abs(float(pc.log_marginal_likelihood()) - logn(0.7, 0.0, np.sqrt(2.0))) < 5 * se_log_z


@pytest.mark.slow
def test_nuts_on_a_conditioned_model_needs_no_observations():
    # a | y = 1.5 ~ N(0.5, sqrt(2/3)) (prior N(0,1), y | a ~ N(a, sqrt 2) once b is integrated out)
    r = ppl.infer.nuts(
        jax.random.key(4), ppl.condition(chain, {"y": 1.5}), (0.0,), num_warmup=300, num_samples=600, num_chains=2
    )
    a = np.asarray(r.samples["a"])
    import arviz as az

    mcse = float(az.mcse(a))
    assert abs(a.mean() - 0.5) < 5 * mcse, (a.mean(), mcse)  # 5 Monte Carlo standard errors
    assert "y" not in r.samples


def test_update_to_new_data_rescores_and_keeps_the_choices():
    g1 = ppl.condition(chain, {"y": 1.0})
    g2 = ppl.condition(chain, {"y": 2.5})
    tr = g1.simulate(jax.random.key(5), (0.0,))
    a, b = float(tr.choices["a"]), float(tr.choices["b"])
    new, w, discard = g2.update(jax.random.key(6), tr, None, (0.3,))
    assert float(new.choices["a"]) == a and float(new.choices["b"]) == b
    np.testing.assert_allclose(float(w), joint(a, b, 2.5, 0.3) - joint(a, b, 1.0, 0.0), rtol=1e-5)
    assert discard.is_empty(), discard
    # a constraint on a free choice: it lands in the discard with its old value
    new, w, discard = g2.update(jax.random.key(6), tr, {"a": 0.1}, (0.0,))
    np.testing.assert_allclose(float(w), joint(0.1, b, 2.5) - joint(a, b, 1.0), rtol=1e-5)
    assert float(discard["a"]) == a and set(discard.addresses()) == {("a",)}


def test_regenerate_weight_is_the_mh_ratio_by_brute_force():
    g1 = ppl.condition(chain, {"y": 1.0})
    tr = g1.simulate(jax.random.key(7), (0.0,))
    a, b = float(tr.choices["a"]), float(tr.choices["b"])
    for g, y_new in ((g1, 1.0), (ppl.condition(chain, {"y": 2.0}), 2.0)):
        new, w = g.regenerate(jax.random.key(8), tr, ppl.select("a"))
        a2 = float(new.choices["a"])
        assert float(new.choices["b"]) == b and a2 != a
        # MH ratio of a prior proposal for a: the target over the kept part, p(b | a') p(y' | b) / p(b | a) p(y | b)
        expected = (joint(a2, b, y_new) - logn(a2, 0.0)) - (joint(a, b, 1.0) - logn(a, 0.0))
        np.testing.assert_allclose(float(w), expected, rtol=1e-5, atol=1e-5)
    # do: the intervened value's density is in neither target
    gd = ppl.do(chain, {"b": 0.7})
    trd = gd.simulate(jax.random.key(9), (0.0,))
    new, w = gd.regenerate(jax.random.key(10), trd, ppl.select("a"))
    np.testing.assert_allclose(float(w), 0.0, atol=1e-6)  # y | b does not depend on a
    assert float(new.choices["y"]) == float(trd.choices["y"])


def test_a_conditioned_sub_model_and_new_data_under_jit():
    tr = outer.simulate(jax.random.key(11), (0.0, 1.2))
    a, b, c = (float(tr.choices[k]) for k in (("sub", "a"), ("sub", "b"), "c"))
    np.testing.assert_allclose(float(tr.score), joint(a, b, 1.2) + logn(c, 0.0), rtol=1e-5)
    assert ("sub", "y") not in tr.choices.addresses()
    # the data are leaves: a jitted function of the conditioned model takes new data without a new trace of it
    score = jax.jit(lambda g, k: g.simulate(k, (0.0,)).score)
    for y in (0.5, -2.0):
        g = ppl.condition(chain, {"y": jnp.float32(y)})
        t = g.simulate(jax.random.key(12), (0.0,))
        np.testing.assert_allclose(float(score(g, jax.random.key(12))), float(t.score), rtol=1e-6)
        np.testing.assert_allclose(float(t.score), joint(float(t.choices["a"]), float(t.choices["b"]), y), rtol=1e-5)


def test_errors_name_the_fixed_address():
    g = ppl.condition(chain, {"y": 1.0})
    tr = g.simulate(jax.random.key(0), (0.0,))
    with pytest.raises(ppl.errors.TransformError, match=r"given at 'y', which condition\(chain\) fixes"):
        g.generate(jax.random.key(0), {"y": 2.0}, (0.0,))
    with pytest.raises(ppl.errors.TransformError, match="at 'y'"):
        g.update(jax.random.key(0), tr, {"y": 2.0})
    with pytest.raises(ppl.errors.TransformError, match="fixed"):
        g.regenerate(jax.random.key(0), tr, ppl.select("y"))
    with pytest.raises(ppl.errors.TransformError, match="masked"):
        ppl.condition(chain, {"y": ppl.masked(jnp.ones(()), jnp.bool_(True))})
    with pytest.raises(ppl.errors.TransformError, match="no values"):
        ppl.do(chain, {})
    with pytest.raises(ppl.errors.TransformError, match="generative function"):
        ppl.condition(lambda: 0.0, {"y": 1.0})
    with pytest.raises(ppl.errors.TransformError, match="expects a trace"):
        g.update(jax.random.key(0), chain.simulate(jax.random.key(0), (0.0,)), None)
    # an address the model never visits is an error, not silently dropped
    with pytest.raises(ppl.PPLError, match="nope"):
        ppl.condition(chain, {"nope": 1.0}).simulate(jax.random.key(0), (0.0,))


def test_inside_an_expectation_gradients_reach_the_data_and_the_arguments():
    # one prior particle: log Z_hat = log N(y; b, 1), b ~ N(mu0, sqrt 2) once a is integrated out, so
    # E[log Z_hat] = -log(2 pi)/2 - ((y - mu0)^2 + 2)/2 with gradient (-(y - mu0), y - mu0) in (y, mu0)
    def log_z(key, y, mu0):
        g = ppl.condition(chain, {"y": y})
        return ppl.infer.importance(key, g, (mu0,), particles=1).log_marginal_likelihood()

    objective = ppl.vi.expectation(log_z)
    y, mu0 = 1.3, -0.4
    keys = jax.random.split(jax.random.key(13), 4000)
    value, (gy, gm) = jax.vmap(lambda k: objective.value_and_grad_estimate(k, y, mu0))(keys)
    se = lambda x: 5 * float(np.std(x)) / np.sqrt(x.size)  # noqa: E731 - 5 standard errors of a mean of keys
    np.testing.assert_allclose(float(gy.mean()), -(y - mu0), atol=se(gy))
    np.testing.assert_allclose(float(gm.mean()), y - mu0, atol=se(gm))
    exact = -0.5 * np.log(2 * np.pi) - 0.5 * ((y - mu0) ** 2 + 2.0)
    np.testing.assert_allclose(float(value.mean()), exact, atol=se(value))
    # transformations nest: observe y in the model where b is set by intervention; log Z = log N(y; bv, 1) exactly
    nested = ppl.vi.expectation(
        lambda key, bv: ppl.infer.importance(
            key, ppl.condition(ppl.do(chain, {"b": bv}), {"y": y}), (mu0,), particles=1
        ).log_marginal_likelihood()
    )
    v, g = nested.value_and_grad_estimate(jax.random.key(14), 0.25)
    np.testing.assert_allclose(float(v), logn(y, 0.25), rtol=1e-5)  # float32 round-off: exact in real arithmetic
    np.testing.assert_allclose(float(g[0] if isinstance(g, tuple) else g), y - 0.25, rtol=1e-5)
