"""Composition matrix: every inference entry point run inside ``ppl.vi.expectation``.

Each row runs an algorithm of ``ppl.infer`` (or an objective) as (part of) the
program of an expectation and compares the mean over independent seeds of the
estimate and of the gradient estimate with a value derived independently of
the code under test: exact enumeration of every particle value and every
resampling outcome (discrete latents), closed forms (Gaussian ELBOs,
conjugate evidences). Tolerances are ``Z = 5`` standard errors of the mean
over seeds (``tests/vi/unbiased.py``: ``se = sd / sqrt(n)``); seeds are fixed
and estimates are vectorised over keys with ``jax.vmap`` (compiled once).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

import ppl
from ppl import dist
from ppl.infer import kernels, smc
from tests.vi.unbiased import assert_unbiased, many


def lme(lw):
    """``log (1/N) sum_i exp(lw_i)``."""
    return logsumexp(lw) - jnp.log(lw.shape[0])


def bern(x, p):
    return jnp.prod(jnp.where(x == 1, p, 1 - p))


def value_and_grads(objective, n, seed, *args):
    """``n`` independent ``(estimate, grad_estimate)`` pairs."""
    return many(lambda k: objective.value_and_grad_estimate(k, *args), n, seed)


# ============================================================ row 1: importance sampling
Y1 = 1.8


@ppl.gen
def bernoulli_model(logit):
    z = dist.Bernoulli(logits=logit) @ "z"
    return dist.Normal(2.0 * z, 1.0) @ "y"


@ppl.gen
def bernoulli_proposal(phi):
    return dist.Bernoulli(logits=phi) @ "z"


def exact_importance_discrete(logit, phi, n=2):
    """E[log Z_hat] for n particles from Bernoulli(sigmoid(phi)), enumerating all 2^n particle values."""
    p, q = jax.nn.sigmoid(logit), jax.nn.sigmoid(phi)
    total = 0.0
    for zs in itertools.product([0, 1], repeat=n):
        zs = jnp.array(zs, jnp.float32)
        log_p = jnp.where(zs == 1, jnp.log(p), jnp.log1p(-p)) + dist.Normal(2.0 * zs, 1.0).log_prob(Y1)
        log_q = jnp.where(zs == 1, jnp.log(q), jnp.log1p(-q))
        total = total + bern(zs, q) * lme(log_p - log_q)
    return total


def test_importance_with_a_discrete_proposal_has_the_exact_gradient_in_expectation():
    # REINFORCE through the proposal's draws (phi) and the model's density (logit)
    objective = ppl.vi.expectation(
        lambda key, logit, phi: ppl.infer.importance(
            key, bernoulli_model, (logit,), {"y": Y1}, particles=2, proposal=bernoulli_proposal, proposal_args=(phi,)
        ).log_marginal_likelihood()
    )
    logit, phi = 0.5, -1.5
    value, (g_logit, g_phi) = value_and_grads(objective, 8000, 1, logit, phi)
    exact = jax.grad(exact_importance_discrete, argnums=(0, 1))(logit, phi)
    assert min(abs(float(e)) for e in exact) > 0.05
    assert_unbiased(value, exact_importance_discrete(logit, phi), "E[log Z_hat]")
    assert_unbiased(np.stack([g_logit, g_phi], 1), np.array(exact), "gradient")


@ppl.gen
def gaussian_model(mu):
    z = dist.Normal(mu, 1.0) @ "z"
    return dist.Normal(z, 0.5) @ "y"


@ppl.gen
def gaussian_proposal(m, log_s):
    return dist.Normal(m, jnp.exp(log_s)) @ "z"


def gaussian_elbo(mu, m, log_s, y=Y1, sy=0.5):
    """E_q[log p(y, z) - log q(z)] in closed form (q = N(m, s^2))."""
    s2 = jnp.exp(2 * log_s)
    prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * ((m - mu) ** 2 + s2)
    lik = -0.5 * jnp.log(2 * jnp.pi * sy**2) - ((y - m) ** 2 + s2) / (2 * sy**2)
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s2)
    return prior + lik + entropy


def test_importance_with_a_reparameterised_proposal_is_the_elbo_and_its_pathwise_gradient():
    # one particle: E[log Z_hat] is the ELBO
    objective = ppl.vi.expectation(
        lambda key, mu, m, log_s: ppl.infer.importance(
            key, gaussian_model, (mu,), {"y": Y1}, particles=1, proposal=gaussian_proposal, proposal_args=(m, log_s)
        ).log_marginal_likelihood()
    )
    args = (0.2, 0.9, -0.7)
    value, grads = value_and_grads(objective, 4000, 2, *args)
    assert_unbiased(value, gaussian_elbo(*args), "ELBO")
    assert_unbiased(np.stack(grads, 1), np.array(jax.grad(gaussian_elbo, argnums=(0, 1, 2))(*args)), "gradient")


# ============================================== row 2: SMC steps, particle filter, FIVO
# A two-state HMM, T = 2 steps, 2 particles: x_t ~ Bernoulli(sigmoid(th + 1.5 x_{t-1} - 0.5)),
# y_t ~ N(2 x_t + th, 1), x_0 = 0. The weights depend on th, so resampling's
# dependence on th is part of the gradient. The latents are enumerated
# (ppl.vi.enum) to keep the variance low; resampling is then the main noise.
YS = jnp.array([1.5, 0.2])
TH = 0.4


def p_on(c, th):
    return jax.nn.sigmoid(th + 1.5 * c - 0.5)


@ppl.gen
def hmm_step(c, th):
    x = ppl.vi.enum(dist.Bernoulli(logits=th + 1.5 * c - 0.5)) @ "x"
    dist.Normal(2.0 * x + th, 1.0) @ "y"
    return x * 1.0, None


hmm = ppl.scan(hmm_step)


@ppl.gen
def hmm_prior_step(c, th):
    """The HMM's transition alone: a bootstrap proposal for FIVO."""
    x = ppl.vi.enum(dist.Bernoulli(logits=th + 1.5 * c - 0.5)) @ "x"
    return x * 1.0, None


@ppl.gen
def hmm_loop(n, th):
    """The same HMM written with a Python loop: SMC over n = 1, 2 through trace updates."""
    c = 0.0
    for t in range(n):
        x = ppl.vi.enum(dist.Bernoulli(logits=th + 1.5 * c - 0.5)) @ ("x", t)
        dist.Normal(2.0 * x + th, 1.0) @ ("y", t)
        c = x * 1.0


def ancestor_laws(w, method):
    """Every (sorted) ancestor vector of 2 particles and its probability, for normalised weights w."""
    if method == "multinomial":
        return [((0, 0), w[0] ** 2), ((0, 1), 2 * w[0] * w[1]), ((1, 1), w[1] ** 2)]
    # systematic, points U/2 and (1 + U)/2 against the cumulative weight w0
    return [
        ((0, 0), jnp.maximum(2 * w[0] - 1, 0.0)),
        ((0, 1), 1 - jnp.abs(2 * w[0] - 1)),
        ((1, 1), jnp.maximum(1 - 2 * w[0], 0.0)),
    ]


def exact_hmm(th, method=None, stop_ancestors=False):
    """E[log Z_hat] of the bootstrap filter by enumerating particle values and ancestors (method None: no resampling)."""
    total = 0.0
    for x1 in itertools.product([0, 1], repeat=2):
        x1 = jnp.array(x1, jnp.float32)
        lw1 = dist.Normal(2 * x1 + th, 1.0).log_prob(YS[0])
        w = jnp.exp(lw1 - logsumexp(lw1))
        if stop_ancestors:
            w = jax.lax.stop_gradient(w)
        laws = [((0, 1), 1.0)] if method is None else ancestor_laws(w, method)
        for a, pa in laws:
            c = x1[jnp.array(a)]
            for x2 in itertools.product([0, 1], repeat=2):
                x2 = jnp.array(x2, jnp.float32)
                lw2 = dist.Normal(2 * x2 + th, 1.0).log_prob(YS[1])
                lz = lme(lw1 + lw2) if method is None else lme(lw1) + lme(lw2)
                total = total + bern(x1, p_on(0.0, th)) * pa * bern(x2, p_on(c, th)) * lz
    return total


def check_against_exact(objective, method, n, seed):
    value, (g,) = value_and_grads(objective, n, seed, TH)
    assert_unbiased(value, exact_hmm(TH, method), "E[log Z_hat]")
    assert_unbiased(g, jax.grad(exact_hmm)(TH, method), "d/dth E[log Z_hat]")


@pytest.mark.slow
@pytest.mark.parametrize("method", [None, "multinomial", "systematic"])
def test_particle_filter_gradient_is_exact_in_expectation(method):
    if method is not None:
        # resampling matters: dropping the ancestors' score would give this instead
        biased = jax.grad(exact_hmm)(TH, method, stop_ancestors=True)
        assert abs(float(biased - jax.grad(exact_hmm)(TH, method))) > 0.1
    objective = ppl.vi.expectation(
        lambda key, th: ppl.infer.particle_filter(
            key,
            hmm,
            (0.0, jnp.full(2, th)),
            {"y": YS},
            particles=2,
            resampling=method or "systematic",
            ess_threshold=0.0 if method is None else 1.0,
        ).log_marginal_likelihood()
    )
    check_against_exact(objective, method, 4000, 3)


def smc_program(key, th, resample):
    k0, k1, k2 = jax.random.split(key, 3)
    pc = smc.init(k0, hmm_loop, (1, th), {("y", 0): YS[0]}, particles=2)
    if resample == "adaptive":
        pc = smc.resample_adaptive(k1, pc, ess_threshold=1.01, method="multinomial")  # ESS <= N: always
    elif resample:
        pc = smc.resample(k1, pc, method="multinomial")
    pc = smc.extend(k2, pc, (2, th), {("y", 1): YS[1]})
    return pc.log_marginal_likelihood()


@pytest.mark.slow
@pytest.mark.parametrize("resample", [False, True, "adaptive"])
def test_smc_steps_gradient_is_exact_in_expectation(resample):
    objective = ppl.vi.expectation(lambda key, th: smc_program(key, th, resample))
    check_against_exact(objective, "multinomial" if resample else None, 4000, 4)


@pytest.mark.slow
@pytest.mark.parametrize("resampling_gradient", [False, True])
def test_fivo_agrees_with_the_particle_filter(resampling_gradient):
    fivo = ppl.vi.fivo(
        hmm,
        ppl.scan(hmm_prior_step),
        {"y": YS},
        particles=2,
        ess_threshold=1.0,
        resampling="multinomial",
        resampling_gradient=resampling_gradient,
    )
    objective = ppl.vi.expectation(lambda key, th: fivo.estimate(key, (0.0, jnp.full(2, th)), (0.0, jnp.full(2, th))))
    value, (g,) = value_and_grads(objective, 4000, 5, TH)
    # same bound as the bootstrap particle filter (the guide is the transition)
    assert_unbiased(value, exact_hmm(TH, "multinomial"), "FIVO value")
    # FIVO drops the ancestors' score unless asked (documented); with it, the exact gradient
    exact = jax.grad(exact_hmm)(TH, "multinomial", stop_ancestors=not resampling_gradient)
    assert_unbiased(g, exact, "FIVO gradient")


# ============================================================ row 2b: MH inside an expectation
@ppl.gen
def mh_target(th):
    x = dist.Normal(th, 1.0) @ "x"
    dist.Normal(x, 0.7) @ "y"


X0, Y_MH = 0.4, 1.1


def exact_mh_expectation(th):
    """E[x_1] after one prior-proposal MH step from x_0 = X0: x' ~ N(th, 1), accepted with
    alpha(x') = min(1, N(y; x', 0.7) / N(y; x_0, 0.7)); by Gauss-Hermite quadrature over x'."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    xp = th + jnp.asarray(nodes)
    lik = lambda x: -0.5 * ((Y_MH - x) / 0.7) ** 2  # noqa: E731
    alpha = jnp.exp(jnp.minimum(lik(xp) - lik(X0), 0.0))
    return jnp.sum(jnp.asarray(weights) * (alpha * xp + (1 - alpha) * X0)) / jnp.sqrt(2 * jnp.pi)


def mh_program(key, th):
    k0, k1 = jax.random.split(key)
    tr, _ = mh_target.generate(k0, {"x": X0, "y": Y_MH}, (th,))
    state, _ = kernels.mh(ppl.select("x")).step(k1, kernels.mh(ppl.select("x")).init(tr))
    return state.trace["x"]


@pytest.mark.slow
def test_mh_step_inside_an_expectation_has_the_exact_gradient():
    # the accept/reject decision is a random choice: without its score the gradient would miss how th
    # changes the acceptance probability
    objective = ppl.vi.expectation(mh_program)
    th = 0.2
    value, (g,) = value_and_grads(objective, 4000, 6, th)
    assert_unbiased(value, exact_mh_expectation(th), "E[x_1]")
    assert_unbiased(g, jax.grad(exact_mh_expectation)(th), "d/dth E[x_1]")


@ppl.gen
def gibbs_target(logit):
    k = dist.Bernoulli(logits=logit) @ "k"
    dist.Normal(2.0 * k, 1.0) @ "y"


def exact_gibbs_expectation(logit, y=0.3):
    """P(k = 1 | y) after one Gibbs step: the exact conditional, whatever the start."""
    p1 = jax.nn.sigmoid(logit) * jnp.exp(-0.5 * (y - 2.0) ** 2)
    p0 = (1 - jax.nn.sigmoid(logit)) * jnp.exp(-0.5 * y**2)
    return p1 / (p0 + p1)


def gibbs_program(key, logit):
    k0, k1 = jax.random.split(key)
    tr, _ = gibbs_target.generate(k0, {"k": 0, "y": 0.3}, (logit,))
    g = kernels.gibbs("k")
    state, _ = g.step(k1, g.init(tr))
    return state.trace["k"].astype(jnp.float32)


@pytest.mark.slow
def test_gibbs_step_inside_an_expectation_has_the_exact_gradient():
    objective = ppl.vi.expectation(gibbs_program)
    value, (g,) = value_and_grads(objective, 4000, 7, 0.5)
    assert_unbiased(value, exact_gibbs_expectation(0.5), "P(k = 1 | y)")
    assert_unbiased(g, jax.grad(exact_gibbs_expectation)(0.5), "d/dlogit P(k = 1 | y)")


# ============================================================ row 3: tempered SMC
Y3 = jnp.array([0.3, 0.5, 0.1])


@ppl.gen
def tempered_model(m0):
    mu = dist.Normal(m0, 1.0) @ "mu"
    return dist.Normal(mu, 0.5).expand([3]).to_event(1) @ "y"


def tempered_log_z(m0):
    """Exact log evidence: y ~ N(m0 1, 0.25 I + 1 1^T)."""
    cov = 0.25 * jnp.eye(3) + jnp.ones((3, 3))
    return jax.scipy.stats.multivariate_normal.logpdf(Y3, m0 * jnp.ones(3), cov)


def _tempered(key, m0):
    return ppl.infer.tempered_smc(
        key,
        tempered_model,
        (m0,),
        {"y": Y3},
        particles=16,
        kernel=kernels.mh(ppl.select("mu")),
        mcmc_steps=2,
        max_stages=5,
    ).log_marginal_likelihood()


@pytest.mark.slow
def test_tempered_smc_inside_an_expectation():
    objective = ppl.vi.expectation(_tempered)
    # the same estimate as outside an expectation, key for key
    for seed in range(3):
        key = jax.random.key(10 + seed)
        np.testing.assert_allclose(objective.estimate(key, 0.1), _tempered(key, 0.1), rtol=1e-5)
    values, grads = value_and_grads(objective, 400, 1, 0.1)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads[0]))
    # Z_hat is unbiased for Z (tolerance: Z standard errors of the mean of exp(log Z_hat))
    assert_unbiased(np.exp(values), np.exp(tempered_log_z(0.1)), "tempered Z_hat")


# ================================================================ row 5: nested expectations
inner = ppl.vi.expectation(
    lambda key, logit, phi: ppl.infer.importance(
        key, bernoulli_model, (logit,), {"y": Y1}, particles=2, proposal=bernoulli_proposal, proposal_args=(phi,)
    ).log_marginal_likelihood()
)


@ppl.gen
def coin(th):
    return dist.Bernoulli(logits=th) @ "a"


def test_nested_expectation_gradient_is_exact_in_expectation():
    # outer value: a ~ Bernoulli(sigmoid(th)), then the inner estimate at (th (1 + a), -th)
    def outer(key, th):
        k1, k2 = jax.random.split(key)
        a = coin.simulate(k1, (th,)).retval
        return inner.estimate(k2, th * (1.0 + a), -th)

    def exact(th):
        p = jax.nn.sigmoid(th)
        return (1 - p) * exact_importance_discrete(th, -th) + p * exact_importance_discrete(2 * th, -th)

    objective = ppl.vi.expectation(outer)
    value, (g,) = value_and_grads(objective, 8000, 6, 0.5)
    assert abs(float(jax.grad(exact)(0.5))) > 0.05
    assert_unbiased(value, exact(0.5), "nested value")
    assert_unbiased(g, jax.grad(exact)(0.5), "nested gradient")


# ================================================ row 6: generative functions as arguments
@ppl.gen
def likelihood(mu):
    return dist.Normal(mu, 0.5) @ "y"


@ppl.gen
def model_with_likelihood(lik):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return lik(mu) @ "obs"


@ppl.gen
def mu_guide(m, log_s):
    return dist.Normal(m, jnp.exp(log_s)) @ "mu"


def scaled_elbo(c, m, log_s, y=Y1):
    """E_q[log N(mu; 0, 1) + c log N(y; mu, 0.5) - log q(mu)] in closed form."""
    s2 = jnp.exp(2 * log_s)
    prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * (m**2 + s2)
    lik = -0.5 * jnp.log(2 * jnp.pi * 0.25) - ((y - m) ** 2 + s2) / (2 * 0.25)
    return prior + c * lik + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s2)


@pytest.mark.parametrize("entry", ["elbo", "importance"])
def test_scaled_likelihood_as_a_model_argument_has_the_exact_gradient(entry):
    obs = {"obs": {"y": Y1}}
    if entry == "elbo":
        elbo = ppl.vi.elbo(model_with_likelihood, mu_guide, obs)
        objective = ppl.vi.expectation(
            lambda key, c, m, log_s: elbo.estimate(key, (ppl.scale(likelihood, c),), (m, log_s))
        )
    else:
        objective = ppl.vi.expectation(
            lambda key, c, m, log_s: ppl.infer.importance(
                key,
                model_with_likelihood,
                (ppl.scale(likelihood, c),),
                obs,
                particles=1,
                proposal=mu_guide,
                proposal_args=(m, log_s),
            ).log_marginal_likelihood()
        )
    args = (0.6, 0.5, -0.5)
    value, grads = value_and_grads(objective, 4000, 7, *args)
    exact = jax.grad(scaled_elbo, argnums=(0, 1, 2))(*args)
    assert_unbiased(value, scaled_elbo(*args), "scaled ELBO")
    assert_unbiased(np.stack(grads, 1), np.array(exact), "gradient")


def test_scaled_function_passed_as_an_argument_gets_its_own_gradient_leaf():
    # the factor is a leaf of the generative-function argument: grad_estimate returns it there
    elbo = ppl.vi.elbo(model_with_likelihood, mu_guide, {"obs": {"y": Y1}})
    g_model, _ = many(lambda k: elbo.grad_estimate(k, (ppl.scale(likelihood, 0.6),), (0.5, -0.5)), 4000, 8)
    leaves = [x for x in jax.tree_util.tree_leaves(g_model) if x is not None]
    assert len(leaves) == 1
    assert_unbiased(leaves[0], jax.grad(scaled_elbo)(0.6, 0.5, -0.5), "d/dc through the argument")


# ========================================= row 4: MCMC kernels as SMC rejuvenation
# mu ~ N(0, 1), z ~ Bernoulli(0.3), y_i ~ N(mu + z, 0.8): SMC over n = 1, 3
# observations with a rejuvenation move in between, run inside an expectation.
YR = np.array([0.9, 1.8, 1.2], np.float32)
P_Z, S_Y = 0.3, 0.8


@ppl.gen
def shifted(n):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    z = dist.Bernoulli(P_Z) @ "z"
    for i in range(n):
        dist.Normal(mu + z, S_Y) @ ("y", i)


def shifted_exact():
    """(Z, E[mu | y]) by summing over z of the Gaussian marginal and posterior of mu."""
    from scipy import stats

    n = len(YR)
    zs, post = [], []
    for z, pz in ((0, 1 - P_Z), (1, P_Z)):
        cov = S_Y**2 * np.eye(n) + np.ones((n, n))
        zs.append(pz * stats.multivariate_normal(z * np.ones(n), cov).pdf(YR))
        prec = 1 + n / S_Y**2
        post.append(((YR - z).sum() / S_Y**2) / prec)
    zs = np.array(zs)
    return zs.sum(), float((zs * np.array(post)).sum() / zs.sum())


def rejuvenated(key, kernel):
    k0, k1, k2, k3 = jax.random.split(key, 4)
    pc = smc.init(k0, shifted, (1,), {("y", 0): YR[0]}, particles=64)
    pc = smc.resample(k1, pc)
    pc, _ = smc.rejuvenate(k2, pc, kernel, num_steps=2)
    pc = smc.extend(k3, pc, (3,), {("y", 1): YR[1], ("y", 2): YR[2]})
    w = jax.nn.softmax(pc.log_weights)
    return jnp.exp(pc.log_marginal_likelihood()), jnp.sum(w * pc.traces.choices["mu"])


KERNELS = {
    "mh": lambda: kernels.mh(ppl.select("mu", "z")),
    "hmc+gibbs": lambda: kernels.cycle(kernels.hmc(ppl.select("mu"), 0.4, 4), kernels.gibbs("z")),
    "mala+gibbs": lambda: kernels.cycle(kernels.mala(ppl.select("mu"), 0.5), kernels.gibbs("z")),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERNELS))
def test_rejuvenation_inside_an_expectation_keeps_z_hat_unbiased(name):
    kernel = KERNELS[name]()
    z_hat = ppl.vi.expectation(lambda key: rejuvenated(key, kernel)[0])
    post_mean = ppl.vi.expectation(lambda key: rejuvenated(key, kernel)[1])
    z, mean = shifted_exact()
    assert_unbiased(many(z_hat.estimate, 400, 9), z, "Z_hat")
    m = np.asarray(many(post_mean.estimate, 400, 9), np.float64)
    # a self-normalised estimate: 5 standard errors plus its O(1/N) bias (N = 64 particles)
    assert abs(m.mean() - mean) < 5 * m.std(ddof=1) / np.sqrt(m.size) + 0.02, (m.mean(), mean)


def test_particle_filter_inside_an_expectation_leaves_no_handler_installed():
    # the filter discovers the model's structure with its handlers set aside; they must all
    # come back, and the expectation's handler must be gone afterwards
    from ppl.core import context

    objective = ppl.vi.expectation(
        lambda key, th: ppl.infer.particle_filter(
            key, hmm, (0.0, jnp.full(2, th)), {"y": YS}, particles=2
        ).log_marginal_likelihood()
    )
    objective.estimate(jax.random.key(0), TH)
    assert context.interceptors() == ()
