"""Discrete choices summed out by variable elimination (ppl.core.enumeration, issue 8).

Expected values are brute force: the joint density from ``assess`` at every
joint value of the discrete choices, log-sum-exp'd (exact enumeration), and a
hand-written forward algorithm / mixture likelihood for the gradients and
the posterior.
"""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl
from ppl import dist
from ppl.core.enumeration import MAX_JOINT_VALUES, SummedOut
from ppl.errors import EnumerationError, SelectionError

W = jnp.array([0.2, 0.5, 0.3])
MU = jnp.array([-1.0, 0.5, 3.0])
XS = jnp.array([-2.0, 0.3, 4.1, 1.0])


@ppl.gen
def point(w, mu):
    z = dist.Categorical(probs=w) @ "z"
    dist.Normal(mu[z], 1.0) @ "x"


@ppl.gen
def mixture(n):
    w = dist.Dirichlet(jnp.ones(3)) @ "w"
    mu = dist.Normal(jnp.zeros(3), 5.0) @ "mu"
    ppl.vmap(point, in_axes=(None, None), axis_size=n)(w, mu) @ "pts"


def _mixture_choices(mu=MU):
    return ppl.choices({"w": W, "mu": mu, "pts": {"x": XS}})


def _brute(model, cm, args, addr, support, n):
    """log-sum-exp of ``assess`` over every joint value of the ``n`` elements at ``addr``."""
    vals = []
    for zs in itertools.product(support, repeat=n):
        sub = {addr[-1]: jnp.array(zs)}
        for a in reversed(addr[:-1]):
            sub = {a: sub}
        vals.append(model.assess(cm | ppl.choices(sub), args)[0])
    return logsumexp(jnp.array(vals))


def test_vmap_elements_summed_independently_equals_brute_force():
    got = ppl.infer.marginal_log_density(mixture, (4,), _mixture_choices(), ppl.select(("pts", "z")))
    want = _brute(mixture, _mixture_choices(), (4,), ("pts", "z"), range(3), 4)
    np.testing.assert_allclose(got, want, rtol=1e-5)  # equal in exact arithmetic (3^4 terms vs 4 x 3)


def test_vmap_marginal_gradient_matches_hand_written_mixture_likelihood():
    def hand(mu):
        lp = jnp.sum(logsumexp(jnp.log(W) + norm.logpdf(XS[:, None], mu, 1.0), axis=1))
        return lp + jnp.sum(norm.logpdf(mu, 0.0, 5.0)) + dist.Dirichlet(jnp.ones(3)).log_prob(W)

    def ours(mu):
        return ppl.infer.marginal_log_density(mixture, (4,), _mixture_choices(mu), ppl.select(("pts", "z")))

    # equal in exact arithmetic: float32 rounding only
    np.testing.assert_allclose(jax.jit(ours)(MU), hand(MU), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(ours)(MU), jax.grad(hand)(MU), rtol=1e-4, atol=1e-5)


def test_given_discrete_values_are_conditioned_on_not_summed():
    cm = _mixture_choices() | ppl.choices({"pts": {"z": jnp.array([0, 1, 2, 1])}})
    got = ppl.infer.marginal_log_density(mixture, (4,), cm)
    np.testing.assert_allclose(got, mixture.assess(cm, (4,))[0], rtol=1e-6)  # the same sum: float rounding only


TRANS = jnp.array([[0.8, 0.15, 0.05], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
MEANS = jnp.array([-1.0, 1.5, 4.0])
YS = jnp.array([-1.0, 0.2, 1.4, 2.0, 4.5, 3.0])


@ppl.gen
def hmm_step(z_prev, _):
    z = dist.Categorical(probs=TRANS[z_prev]) @ "z"
    dist.Normal(MEANS[z], 1.0) @ "y"
    return z, None


@ppl.gen
def hmm(t):
    ppl.scan(hmm_step, length=t)(jnp.int32(0), None) @ "s"


def _forward(means):
    """Hand-written forward algorithm (independent of ppl)."""
    alpha = jnp.log(TRANS[0]) + norm.logpdf(YS[0], means, 1.0)
    for y in YS[1:]:
        alpha = logsumexp(alpha[:, None] + jnp.log(TRANS), axis=0) + norm.logpdf(y, means, 1.0)
    return logsumexp(alpha)


@ppl.gen
def hmm_means_step(c, _):
    """An HMM step whose carry holds the state and, passed through unchanged, the emission means."""
    z_prev, means = c
    z = dist.Categorical(probs=TRANS[z_prev]) @ "z"
    dist.Normal(means[z], 1.0) @ "y"
    return (z, means), None


def test_scan_forward_algorithm_equals_brute_force_and_hand_forward():
    cm = ppl.choices({"s": {"y": YS}})
    got = ppl.infer.marginal_log_density(hmm, (6,), cm, ppl.select(("s", "z")))
    # equal in exact arithmetic (3^6 terms, and the same recursion written by hand): float32 rounding only
    np.testing.assert_allclose(got, _brute(hmm, cm, (6,), ("s", "z"), range(3), 6), rtol=1e-5)
    np.testing.assert_allclose(got, _forward(MEANS), rtol=1e-5)


def test_scan_marginal_gradient_equals_forward_algorithm_gradient():
    @ppl.gen
    def model():
        means = dist.Normal(jnp.zeros(3), 10.0) @ "means"
        ppl.scan(hmm_means_step, length=6)((jnp.int32(0), means), None) @ "s"

    def ours(m):
        return ppl.infer.marginal_log_density(model, (), {"means": m, "s": {"y": YS}})

    def hand(m):
        return _forward(m) + jnp.sum(norm.logpdf(m, 0.0, 10.0))

    # equal in exact arithmetic: float32 rounding only
    np.testing.assert_allclose(ours(MEANS), hand(MEANS), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(ours)(MEANS), jax.grad(hand)(MEANS), rtol=1e-4, atol=1e-5)


def test_top_level_choices_use_the_joint_grid_around_the_structured_sums():
    @ppl.gen
    def model():
        s = dist.Bernoulli(0.3) @ "regime"
        shift = jnp.where(s == 1, 2.0, 0.0)
        mu = MU + shift
        ppl.vmap(point, in_axes=(None, None), axis_size=4)(W, mu) @ "pts"

    cm = ppl.choices({"pts": {"x": XS}})
    got = ppl.infer.marginal_log_density(model, (), cm)
    terms = []
    for s in (0, 1):
        for zs in itertools.product(range(3), repeat=4):
            full = cm | ppl.choices({"regime": jnp.int32(s), "pts": {"z": jnp.array(zs)}})
            terms.append(model.assess(full, ())[0])
    np.testing.assert_allclose(got, logsumexp(jnp.array(terms)), rtol=1e-5)  # exact enumeration: float rounding only


@pytest.mark.slow
def test_nuts_sums_out_mixture_assignments_and_matches_the_grid_posterior():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, 25), rng.normal(2, 1, 15)]).astype(np.float32)
    w = jnp.array([0.6, 0.4])

    @ppl.gen
    def pt(mu):
        z = dist.Categorical(probs=w) @ "z"
        dist.Normal(mu[z], 1.0) @ "x"

    @ppl.gen
    def mix(n):
        mu = dist.Normal(jnp.array([-2.0, 2.0]), 1.0) @ "mu"
        ppl.vmap(pt, in_axes=None, axis_size=n)(mu) @ "pts"

    r = ppl.infer.nuts(
        jax.random.key(0),
        mix,
        (40,),
        {"pts": {"x": x}},
        num_warmup=400,
        num_samples=800,
        num_chains=2,
        progress_bar=False,
    )
    assert list(r.samples) == ["mu"]  # the assignments are summed out, not sampled
    # exact posterior of (mu_1, mu_2) on a 401 x 401 grid, likelihood written by hand
    g = np.linspace(-5, 5, 401)
    a, b = np.meshgrid(g, g, indexing="ij")
    lp = norm.logpdf(a, -2, 1) + norm.logpdf(b, 2, 1)
    ll = logsumexp(
        jnp.stack(
            [jnp.log(0.6) + norm.logpdf(x[:, None, None], a, 1), jnp.log(0.4) + norm.logpdf(x[:, None, None], b, 1)]
        ),
        axis=0,
    ).sum(0)
    p = np.exp(np.asarray(lp + ll) - np.max(lp + ll))
    p /= p.sum()
    exact = np.array([(p * a).sum(), (p * b).sum()])
    sd = np.sqrt(np.array([(p * a**2).sum(), (p * b**2).sum()]) - exact**2)
    draws = np.asarray(r.samples["mu"]).reshape(-1, 2)
    ess = np.asarray(ppl.diagnostics.ess_bulk(r.samples["mu"]))
    # 5 Monte Carlo standard errors of the posterior mean (sd / sqrt(ESS))
    np.testing.assert_array_less(np.abs(draws.mean(0) - exact), 5 * sd / np.sqrt(ess))

    # the assignments drawn back, one per draw: P(z_i = 1) = E[p(z_i = 1 | mu)] over the grid posterior
    full = r.infer_discrete(jax.random.key(1))
    z = np.asarray(full.samples[("pts", "z")])
    assert z.shape == (2, 800, 40)
    lik = np.stack(
        [np.log(0.6) + norm.logpdf(x[:, None, None], a, 1), np.log(0.4) + norm.logpdf(x[:, None, None], b, 1)]
    )
    p1 = np.sum(p * np.exp(lik[1] - np.logaddexp(lik[0], lik[1])), axis=(1, 2))  # (40,)
    # a mixture of Bernoullis: the draws' frequency has variance <= p(1-p)/n; 5 standard errors of that, with
    # the n draws' autocorrelation accounted for by the smallest ESS of mu
    np.testing.assert_array_less(np.abs(z.mean(axis=(0, 1)) - p1), 5 * np.sqrt(p1 * (1 - p1) / ess.min()) + 1e-3)


def test_value_depending_on_a_summed_choice_cannot_escape_a_vmap_element():
    @ppl.gen
    def point_ret(w, mu):
        z = dist.Categorical(probs=w) @ "z"
        dist.Normal(mu[z], 1.0) @ "x"
        return z

    @ppl.gen
    def model():
        ppl.vmap(point_ret, in_axes=(None, None), axis_size=4)(W, MU) @ "pts"

    with pytest.raises(EnumerationError, match=r"pts.*z|return value"):
        ppl.infer.marginal_log_density(model, (), {"pts": {"x": XS}})


def test_scan_carry_depending_on_more_than_the_current_state_is_refused():
    @ppl.gen
    def step(c, _):
        z_prev, count = c
        z = dist.Categorical(probs=TRANS[z_prev]) @ "z"
        dist.Normal(MEANS[z] + count, 1.0) @ "y"
        return (z, count + z), None

    @ppl.gen
    def model():
        ppl.scan(step, length=6)((jnp.int32(0), jnp.int32(0)), None) @ "s"

    with pytest.raises(EnumerationError, match="forward algorithm"):
        ppl.infer.marginal_log_density(model, (), {"s": {"y": YS}})


def test_final_carry_of_an_enumerated_scan_raises_on_use():
    out = SummedOut("scan(k)")
    with pytest.raises(EnumerationError, match="summed out"):
        out + 1
    with pytest.raises(EnumerationError, match="summed out"):
        jnp.asarray(out)


def test_bad_input_names_the_address():
    @ppl.gen
    def poisson():
        k = dist.Poisson(3.0) @ "k"
        dist.Normal(k, 1.0) @ "y"

    with pytest.raises(EnumerationError, match=r"'k'.*infinite"):
        ppl.infer.marginal_log_density(poisson, (), {"y": 1.0})

    @ppl.gen
    def batched():
        z = dist.Bernoulli(jnp.full(3, 0.5)) @ "z"
        dist.Normal(z, 1.0) @ "y"

    with pytest.raises(EnumerationError, match="batch shape"):
        ppl.infer.marginal_log_density(batched, (), {"y": jnp.zeros(3)})

    @ppl.gen
    def big():
        for i in range(13):
            dist.Bernoulli(0.5) @ ("b", i)
        dist.Normal(0.0, 1.0) @ "y"

    with pytest.raises(EnumerationError, match=f"8192 joint values.*{MAX_JOINT_VALUES}"):
        ppl.infer.marginal_log_density(big, (), {"y": 0.0})

    @ppl.gen
    def traced_support(n):
        k = dist.Binomial(total_count=n, probs=0.5) @ "k"
        dist.Normal(k, 1.0) @ "y"

    with pytest.raises(EnumerationError, match="depends on traced values"):
        jax.jit(lambda n: ppl.infer.marginal_log_density(traced_support, (n,), {"y": 1.0}))(3)


def test_nuts_refuses_a_discrete_latent_it_cannot_sum_out():
    @ppl.gen
    def poisson():
        rate = dist.Gamma(2.0, 1.0) @ "rate"
        k = dist.Poisson(rate) @ "k"
        dist.Normal(k, 1.0) @ "y"

    with warnings.catch_warnings(), pytest.raises(SelectionError, match=r"cannot be summed out.*'k'"):
        ppl.infer.nuts(jax.random.key(0), poisson, (), {"y": 1.0}, num_warmup=10, num_samples=10, progress_bar=False)


def test_marginal_density_inside_an_expectation_has_the_pathwise_gradient():
    """ELBO of the mixture with the assignments summed out and a Normal guide on mu (reparameterised).

    For a fixed key the reparameterised estimate is a deterministic function of the guide's
    parameters, so its gradient must equal jax.grad of the same computation written by hand.
    """

    @ppl.gen
    def guide(loc):
        dist.Normal(loc, 0.5) @ "mu"

    def program(key, loc):
        tr = guide.simulate(key, (loc,))
        mu = tr.choices["mu"]
        cm = ppl.choices({"w": W, "mu": mu, "pts": {"x": XS}})
        return ppl.infer.marginal_log_density(mixture, (4,), cm) - tr.score

    key = jax.random.key(3)
    loc = jnp.array([0.1, -0.2, 0.4])
    got = ppl.vi.expectation(program).grad_estimate(key, loc)[0]

    def by_hand(loc):
        eps = (guide.simulate(key, (jnp.zeros(3),)).choices["mu"]) / 0.5
        m = loc + 0.5 * eps
        lp = jnp.sum(logsumexp(jnp.log(W) + norm.logpdf(XS[:, None], m, 1.0), axis=1))
        lp += jnp.sum(norm.logpdf(m, 0.0, 5.0)) + dist.Dirichlet(jnp.ones(3)).log_prob(W)
        return lp - jnp.sum(norm.logpdf(m, loc, 0.5))

    np.testing.assert_allclose(
        got, jax.grad(by_hand)(loc), rtol=1e-4, atol=1e-5
    )  # the same pathwise computation: float rounding only


# ------------------------------------------------------------------ infer_discrete
def _freq_within(draws, exact, n):
    """Empirical frequencies within 5 binomial standard errors of the exact probabilities."""
    se = np.sqrt(exact * (1 - exact) / n) + 1e-12
    np.testing.assert_array_less(np.abs(draws - exact), 5 * se + 1e-3 / np.sqrt(n))


def test_infer_discrete_draws_mixture_assignments_from_their_exact_conditionals():
    n = 4000
    cm = _mixture_choices()
    draws = jax.vmap(lambda k: ppl.infer.infer_discrete(k, mixture, (4,), cm)[("pts", "z")])(
        jax.random.split(jax.random.key(0), n)
    )
    assert draws.shape == (n, 4)
    exact = jax.nn.softmax(jnp.log(W) + norm.logpdf(XS[:, None], MU, 1.0), axis=1)  # p(z_i | mu, x_i), by hand
    freq = np.stack([(np.asarray(draws) == v).mean(0) for v in range(3)], axis=1)
    _freq_within(freq, np.asarray(exact), n)


def test_infer_discrete_on_an_hmm_draws_whole_paths_from_the_exact_joint_posterior():
    """Forward filtering, backward sampling through the gradient of the forward algorithm.

    T = 4 steps of 3 states: the exact posterior of every one of the 81 paths from ``assess``
    (brute force); the draws' path frequencies must match it, which checks the joint, not only
    the marginals.
    """
    t = 4
    ys = YS[:t]
    cm = ppl.choices({"s": {"y": ys}})
    paths = list(itertools.product(range(3), repeat=t))
    lp = jnp.array([hmm.assess(cm | ppl.choices({"s": {"z": jnp.array(p)}}), (t,))[0] for p in paths])
    exact = np.asarray(jax.nn.softmax(lp))
    n = 6000
    draws = jax.vmap(lambda k: ppl.infer.infer_discrete(k, hmm, (t,), cm)[("s", "z")])(
        jax.random.split(jax.random.key(1), n)
    )
    codes = np.asarray(draws) @ (3 ** np.arange(t)[::-1])
    freq = np.bincount(codes, minlength=len(paths)) / n
    _freq_within(freq, exact, n)


def test_infer_discrete_after_compiled_marginals_still_finds_every_level():
    cm = _mixture_choices()
    jax.jit(lambda c: ppl.infer.marginal_log_density(mixture, (4,), c))(cm)  # compiled programs now cached
    for seed in (0, 1):
        drawn = ppl.infer.infer_discrete(jax.random.key(seed), mixture, (4,), cm)
        assert drawn.addresses() == [("pts", "z")]


def test_infer_discrete_refuses_nested_summed_levels():
    @ppl.gen
    def model():
        s = dist.Bernoulli(0.3) @ "regime"
        ppl.vmap(point, in_axes=(None, None), axis_size=4)(W, MU + 2.0 * s) @ "pts"

    with pytest.raises(EnumerationError, match="nested levels"):
        ppl.infer.infer_discrete(jax.random.key(0), model, (), {"pts": {"x": XS}})


@pytest.mark.slow
def test_gibbs_block_with_nuts_samples_the_hmm_posterior_of_means_and_states():
    """cycle(nuts on the means, gibbs_block on the states) against NUTS with the states summed out.

    Both target the same posterior of the means; the blocked Gibbs chain is a different algorithm, so
    agreement of the posterior means within 5 combined Monte Carlo standard errors checks it.
    """
    ys = jnp.array([-1.0, 0.2, 1.4, 2.0, 4.5, 3.0, -0.8, 1.1, 3.9, 4.2])

    @ppl.gen
    def model():
        means = dist.Normal(jnp.array([-1.0, 1.5, 4.0]), 0.5) @ "means"
        ppl.scan(hmm_means_step, length=10)((jnp.int32(0), means), None) @ "s"

    obs = {"s": {"y": ys}}
    K = ppl.infer.kernels
    kernel = K.cycle(K.nuts(ppl.select("means")), K.gibbs_block(ppl.select(("s", "z"))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gibbs = ppl.infer.run_mcmc(
            jax.random.key(0),
            kernel,
            model,
            (),
            obs,
            num_warmup=300,
            num_samples=1000,
            num_chains=2,
            progress_bar=False,
        )
        summed = ppl.infer.nuts(
            jax.random.key(1), model, (), obs, num_warmup=300, num_samples=1000, num_chains=2, progress_bar=False
        )
    a, b = np.asarray(gibbs.samples["means"]), np.asarray(summed.samples["means"])
    ess_a = np.asarray(ppl.diagnostics.ess_bulk(a))
    ess_b = np.asarray(ppl.diagnostics.ess_bulk(b))
    se = np.sqrt(a.reshape(-1, 3).var(0) / ess_a + b.reshape(-1, 3).var(0) / ess_b)
    np.testing.assert_array_less(np.abs(a.reshape(-1, 3).mean(0) - b.reshape(-1, 3).mean(0)), 5 * se)


def test_infer_discrete_inside_an_expectation_has_an_unbiased_gradient():
    """d/dmu E[z], z ~ p(z | mu, x) drawn by infer_discrete, against the exact gradient of sum_v v p(v | mu, x)."""

    @ppl.gen
    def one(mu):
        z = dist.Categorical(probs=W) @ "z"
        dist.Normal(mu[z], 1.0) @ "x"

    x0 = 0.8

    def program(key, mu):
        return ppl.infer.infer_discrete(key, one, (mu,), {"x": x0})["z"].astype(jnp.float32)

    def exact(mu):
        p = jax.nn.softmax(jnp.log(W) + norm.logpdf(x0, mu, 1.0))
        return jnp.sum(jnp.arange(3) * p)

    e = ppl.vi.expectation(program)
    n = 4000
    grads = jax.jit(jax.vmap(lambda k: e.grad_estimate(k, MU)[0]))(jax.random.split(jax.random.key(2), n))
    grads = np.asarray(grads)
    # REINFORCE: 5 standard errors of the mean gradient, from the draws
    np.testing.assert_array_less(np.abs(grads.mean(0) - jax.grad(exact)(MU)), 5 * grads.std(0) / np.sqrt(n) + 1e-6)
