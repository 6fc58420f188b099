"""NeuTra: NUTS in the base space of a trained flow guide (``ppl.infer.neutra``).

Neal's funnel, ``v ~ N(0, 3)``, ``x_i | v ~ N(0, exp(v / 2))``: the posterior
of ``v`` is ``N(0, 3)`` exactly. Plain NUTS cannot enter the neck (its draws
of ``v`` have too small an sd, low ESS, divergences); after fitting a flow
guide by reweighted wake-sleep (mass-covering), NUTS on the NeuTra model
recovers ``v``'s moments within their Monte Carlo error, with a fraction of
the divergences and many times the ESS.
"""

from __future__ import annotations

import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
import ppl.flows as pf
from ppl import dist
from ppl.errors import GuideError


@ppl.gen
def funnel():
    v = dist.Normal(0.0, 3.0) @ "v"
    dist.Normal(jnp.zeros(2), jnp.exp(v / 2)).to_event(1) @ "x"


@pytest.fixture(scope="module")
def trained():
    guide, gargs = ppl.vi.auto_flow(funnel, (), None, flow=lambda k, d: pf.iaf(k, d, layers=3, width=32))
    opt = optax.adam(optax.linear_schedule(3e-3, 3e-4, 3000))
    res = ppl.vi.fit(jax.random.key(0), ppl.vi.rws(funnel, guide, None, particles=16), ((), gargs), opt, steps=3000)
    return guide, res.params[1][0]


def run(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divergences and R-hat are what is compared here
        return ppl.infer.nuts(
            jax.random.key(2), model, (), None, num_warmup=300, num_samples=500, num_chains=2,
            init="uniform", target_accept=0.95, progress_bar=False,
        )  # fmt: skip


@pytest.mark.slow
def test_neutra_samples_the_funnel_where_plain_nuts_cannot(trained):
    guide, params = trained
    plain = run(funnel)
    neutra = run(ppl.infer.neutra(funnel, None, guide, params))
    v = np.asarray(neutra.samples["v"])
    assert v.shape == (2, 500) and np.asarray(neutra.samples["x"]).shape == (2, 500, 2)
    ess = float(az.ess(v))
    # v ~ N(0, 3): the mean's standard error is 3 / sqrt(ESS), the sd's about 3 / sqrt(2 ESS); 4 of each
    assert abs(v.mean()) < 4 * 3 / np.sqrt(ess), (v.mean(), ess)
    assert abs(v.std() - 3.0) < 4 * 3 / np.sqrt(2 * ess), (v.std(), ess)
    v_plain = np.asarray(plain.samples["v"])
    ess_plain = float(az.ess(v_plain))
    # seen: ESS 456 against 57 (jax 0.10). Divergence counts of one seed were seen in both orders across runs of
    # the same versions (1 vs 8, then 9 vs 1: the trained flow differs in the last bits between runs), so they
    # are not compared; the mixing gain (ESS) and the exact moments above are what NeuTra must deliver.
    assert ess > 4 * ess_plain, (ess, ess_plain)


@pytest.mark.slow
def test_neutra_is_exact_on_a_gaussian_whatever_the_guide():
    """An untrained flow is a poor guide, but the NeuTra target is still p(x | y) exactly."""

    @ppl.gen
    def gaussian():
        m = dist.Normal(0.0, 1.0) @ "m"
        dist.Normal(m, 0.5).expand([4]).to_event(1) @ "y"

    y = jnp.array([0.2, 0.9, 0.4, 1.1])
    guide, (params,) = ppl.vi.auto_flow(gaussian, (), {"y": y}, flow=lambda k, d: pf.maf(k, d, layers=2, width=8))
    model = ppl.infer.neutra(gaussian, {"y": y}, guide, params)
    r = run(model)
    m = np.asarray(r.samples["m"]).ravel()
    post_var = 1 / (1 + 4 / 0.25)
    post_mean = post_var * float(y.sum()) / 0.25
    ess = float(az.ess(np.asarray(r.samples["m"])))
    # conjugate posterior N(post_mean, post_var): 4 standard errors of the mean
    assert abs(m.mean() - post_mean) < 4 * np.sqrt(post_var / ess)
    assert abs(m.std() - np.sqrt(post_var)) < 4 * np.sqrt(post_var / (2 * ess))


def test_neutra_needs_a_flow_guide_built_with_the_same_observations(trained):
    guide, params = trained
    normal, (nparams,) = ppl.vi.auto_normal(funnel, (), None)
    with pytest.raises(GuideError, match="needs an AutoFlow guide"):
        ppl.infer.neutra(funnel, None, normal, nparams)
    with pytest.raises(GuideError, match=r"built with observations at \[\], but \[\('x',\)\] were given"):
        ppl.infer.neutra(funnel, {"x": jnp.zeros(2)}, guide, params)
