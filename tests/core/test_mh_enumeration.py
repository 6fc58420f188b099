"""MH built from ``regenerate`` converges to the exact posterior (chi-square test).

Two small discrete models with an observed continuous value; the exact
posterior is computed by enumerating every complete choice map with
``assess``. Chains start from the prior, run a cycle of single-site
regenerate moves, and their final states (independent across chains) are
compared with the exact posterior by Pearson's chi-square test. With a
fixed seed, the test fails when the statistic exceeds the 0.999 quantile of
chi-square with (cells - 1) degrees of freedom: a correct sampler passes
this 999 times in 1000, a wrong weight (e.g. a missing Jacobian of the
branch change) fails it by orders of magnitude.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist

Y = 1.2
CHAINS = 4000
SWEEPS = 30


@ppl.gen
def chain_model(y):
    z1 = dist.Categorical(probs=jnp.array([0.2, 0.5, 0.3])) @ "z1"
    z2 = dist.Bernoulli(logits=z1 - 1.0) @ "z2"
    dist.Normal(z1 + z2, 1.0) @ "y"
    return z1


@ppl.gen
def branch_a():
    return dist.Categorical(probs=jnp.array([0.2, 0.8])) @ "x"


@ppl.gen
def branch_b():
    x = dist.Categorical(probs=jnp.array([0.5, 0.5])) @ "x"
    e = dist.Bernoulli(0.7) @ "e"
    return x + 2 * e


@ppl.gen
def switch_model(y):
    p = dist.Bernoulli(0.4) @ "p"
    v = ppl.cond(p, branch_b, branch_a)() @ "c"
    dist.Normal(v, 1.0) @ "y"
    return v


def mh_chain(model, selections, key, y):
    obs = ppl.choices(y=y)

    def step(tr, key):
        for i, sel in enumerate(selections):
            k1, k2 = jax.random.split(jax.random.fold_in(key, i))
            new, w = model.regenerate(k1, tr, sel)
            accept = jnp.log(jax.random.uniform(k2)) < w
            tr = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, tr)
        return tr, None

    tr0, _ = model.generate(key, obs, (y,))
    tr, _ = jax.lax.scan(step, tr0, jax.random.split(key, SWEEPS))
    return tr


def chi_square_check(states, probs):
    counts = np.array([np.sum(np.all(states == np.array(s), axis=1)) for s in probs])
    assert counts.sum() == len(states), "every sample must fall in an enumerated state"
    expected = np.array(list(probs.values())) * len(states)
    stat = float(np.sum((counts - expected) ** 2 / expected))
    assert stat < stats.chi2.ppf(0.999, len(probs) - 1), (stat, counts, expected)


def exact(model, complete_maps):
    logps = np.array([float(model.assess(ppl.choices(c) | ppl.choices(y=Y), (Y,))[0]) for c in complete_maps])
    p = np.exp(logps - logps.max())
    return p / p.sum()


def test_mh_on_discrete_chain_matches_enumeration():
    states = list(itertools.product(range(3), range(2)))
    probs = exact(chain_model, [{"z1": a, "z2": b} for a, b in states])
    run = jax.jit(jax.vmap(lambda k: mh_chain(chain_model, [ppl.select("z1"), ppl.select("z2")], k, Y)))
    tr = run(jax.random.split(jax.random.key(0), CHAINS))
    samples = np.stack([np.asarray(tr.choices["z1"]), np.asarray(tr.choices["z2"])], axis=1)
    chi_square_check(samples, dict(zip(states, probs)))


@pytest.mark.slow
def test_mh_through_a_branch_change_matches_enumeration():
    # states: (p, x, e) with e = 0 (absent) in branch a
    complete = [({"p": 0, "c": {"x": x}}, (0, x, 0)) for x in range(2)]
    complete += [({"p": 1, "c": {"x": x, "e": e}}, (1, x, e)) for x in range(2) for e in range(2)]
    probs = exact(switch_model, [c for c, _ in complete])
    sels = [ppl.select("p"), ppl.select(("c", "x")), ppl.select(("c", "e"))]
    run = jax.jit(jax.vmap(lambda k: mh_chain(switch_model, sels, k, Y)))
    tr = run(jax.random.split(jax.random.key(1), CHAINS))
    cm = tr.choices
    e = np.where(np.asarray(cm.mask(("c", "e"))), np.asarray(cm["c", "e"]), 0)
    samples = np.stack([np.asarray(cm["p"]), np.asarray(cm["c", "x"]), e], axis=1)
    chi_square_check(samples, dict(zip([s for _, s in complete], probs)))
