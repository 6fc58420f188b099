"""The objective library: unbiased gradients, bound orderings, and training to known answers.

Statistical checks compare the mean of many estimates (``jax.vmap`` over
keys) with an exact value within ``Z = 5`` standard errors of that mean,
``se = sd / sqrt(n)`` (see tests/vi/test_estimators.py for the reasoning).
Training tests use a few hundred Adam steps inside one ``lax.scan`` and
compare with exact posteriors or exact log-likelihoods.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import ppl
from ppl import dist
from ppl.errors import EstimatorError, GuideError, PPLError
from tests.vi.unbiased import Z, assert_unbiased, many


def mean_se(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(), x.std(ddof=1) / np.sqrt(len(x))


def train(objective, params, steps, lr, seed, average_last=0, fixed_model=False):
    """Adam ascent on the objective; returns the final (or tail-averaged) ``(model_args, guide_args)``.

    With ``fixed_model`` only the guide's arguments are trained.
    """
    opt = optax.adam(lr)
    model_args = params[0]

    def grads_of(key, p):
        if fixed_model:
            return (model_args, objective.value_and_grad_estimate(key, model_args, p[1])[1][1])
        return objective.value_and_grad_estimate(key, *p)[1]

    def step(carry, key):
        p, s = carry
        g = grads_of(key, p)
        g = jax.tree_util.tree_map(lambda x: -x, g)
        if fixed_model:
            g = (jax.tree_util.tree_map(jnp.zeros_like, model_args), g[1])
        updates, s = opt.update(g, s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    keys = jax.random.split(jax.random.key(seed), steps)
    (final, _), path = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), keys))(params)
    if average_last:
        return jax.tree_util.tree_map(lambda x: jnp.mean(x[-average_last:], axis=0), path)
    return final


# ------------------------------------------------------------ normal-normal
Y, SY = 1.3, 0.5
OBS = ppl.choices(y=Y)


@ppl.gen
def nn_model(prior_mean):
    z = dist.Normal(prior_mean, 1.0) @ "z"
    dist.Normal(z, SY) @ "y"


@ppl.gen
def nn_guide(m, log_s):
    dist.Normal(m, jnp.exp(log_s)) @ "z"


def nn_exact_elbo(prior_mean, m, log_s):
    s2 = jnp.exp(2 * log_s)
    l2p = math.log(2 * math.pi)
    prior = -0.5 * l2p - 0.5 * ((m - prior_mean) ** 2 + s2)
    lik = -0.5 * l2p - math.log(SY) - ((Y - m) ** 2 + s2) / (2 * SY**2)
    entropy = 0.5 * (l2p + 1.0) + log_s
    return prior + lik + entropy


def nn_log_z(prior_mean):
    return norm.logpdf(Y, prior_mean, math.sqrt(1 + SY**2))


def test_elbo_gradient_is_unbiased_for_model_and_guide_parameters():
    e = ppl.vi.elbo(nn_model, nn_guide, OBS)
    args = ((0.2,), (0.4, -0.5))
    value, grads = many(lambda k: e.value_and_grad_estimate(k, *args), 6000, 0)
    exact = jax.grad(nn_exact_elbo, argnums=(0, 1, 2))(0.2, 0.4, -0.5)
    assert_unbiased(value, nn_exact_elbo(0.2, 0.4, -0.5), "value")
    assert_unbiased(np.stack([grads[0][0], grads[1][0], grads[1][1]], -1), exact, "gradient")


def test_batch_sum_gives_per_data_point_bounds():
    @ppl.gen
    def point_model(prior_mean, y):
        z = dist.Normal(prior_mean, 1.0) @ "z"
        dist.Normal(z, SY) @ "y"

    @ppl.gen
    def point_guide(m, log_s):  # one (m, log_s) per data point, mapped with the data
        dist.Normal(m, jnp.exp(log_s)) @ "z"

    ys = jnp.array([1.3, -0.4, 2.0])
    per_point = ppl.vi.elbo(point_model, point_guide, lambda model_args: {"y": model_args[1]})
    total = ppl.vi.batch_sum(per_point, in_axes=((None, 0), 0))
    m, log_s = jnp.array([0.4, 0.0, 1.0]), jnp.array([-0.5, -0.2, 0.1])
    value, grads = many(lambda k: total.value_and_grad_estimate(k, (0.2, ys), (m, log_s)), 4000, 19)

    def exact(prior, m, log_s):
        s2 = jnp.exp(2 * log_s)
        l2p = math.log(2 * math.pi)
        lik = -0.5 * l2p - math.log(SY) - ((ys - m) ** 2 + s2) / (2 * SY**2)
        return jnp.sum(-0.5 * l2p - 0.5 * ((m - prior) ** 2 + s2) + lik + 0.5 * (l2p + 1.0) + log_s)

    assert_unbiased(value, exact(0.2, m, log_s), "value")
    g_prior, g_m, g_s = jax.grad(exact, argnums=(0, 1, 2))(0.2, m, log_s)
    assert_unbiased(grads[0][0], g_prior, "prior mean")
    assert_unbiased(np.concatenate([grads[1][0], grads[1][1]], -1), jnp.concatenate([g_m, g_s]), "guide")


def test_optimised_mean_field_elbo_recovers_the_exact_posterior():
    e = ppl.vi.elbo(nn_model, nn_guide, OBS)
    init = ((jnp.array(0.0),), (jnp.array(0.0), jnp.array(0.0)))
    params = train(e, init, steps=1500, lr=0.02, seed=1, average_last=500, fixed_model=True)
    (_,), (m, log_s) = params
    precision = 1.0 + 1.0 / SY**2
    assert float(m) == pytest.approx((Y / SY**2) / precision, abs=0.03)
    assert float(jnp.exp(log_s)) == pytest.approx(1.0 / math.sqrt(precision), abs=0.03)


def test_iwae_bound_is_above_the_elbo_and_grows_towards_log_z():
    guide_args = (0.0, 0.5)  # a poor guide: wide and off-centre
    log_z = float(nn_log_z(0.2))
    means = []
    for k in (1, 8, 64):
        e = ppl.vi.iwae(nn_model, nn_guide, OBS, particles=k)
        means.append(mean_se(many(lambda key, e=e: e.estimate(key, (0.2,), guide_args), 3000, 2)))
    (m1, s1), (m8, s8), (m64, s64) = means
    assert m1 == pytest.approx(float(nn_exact_elbo(0.2, *guide_args)), abs=Z * s1)  # K = 1 is the ELBO
    assert m1 + Z * s1 < m8 and m8 + Z * s8 < m64  # strictly increasing in K
    assert m64 <= log_z + Z * s64  # a lower bound
    assert log_z - m64 < 0.1 * (log_z - m1)  # and close to log Z


def test_renyi_bound_interpolates_between_elbo_and_iwae():
    args = ((0.2,), (0.0, 0.5))
    key = jax.random.key(3)
    iwae = ppl.vi.iwae(nn_model, nn_guide, OBS, particles=8)
    r0 = ppl.vi.renyi(nn_model, nn_guide, OBS, alpha=0.0, particles=8)
    np.testing.assert_allclose(r0.estimate(key, *args), iwae.estimate(key, *args), rtol=1e-6)
    r1 = ppl.vi.renyi(nn_model, nn_guide, OBS, alpha=1.0, particles=8)
    r_half = ppl.vi.renyi(nn_model, nn_guide, OBS, alpha=0.5, particles=8)
    m1, s1 = mean_se(many(lambda k: r1.estimate(k, *args), 1000, 4))
    mh, sh = mean_se(many(lambda k: r_half.estimate(k, *args), 1000, 4))
    mi, _ = mean_se(many(lambda k: iwae.estimate(k, *args), 1000, 4))
    assert m1 == pytest.approx(float(nn_exact_elbo(0.2, 0.0, 0.5)), abs=Z * s1)  # alpha = 1: the ELBO
    assert m1 + Z * s1 < mh and mh + Z * sh < mi


# ------------------------------------------------- a categorical latent
C = 3
X_OBS = 0.7


@ppl.gen
def cat_model(means):
    c = dist.Categorical(logits=jnp.zeros(C)) @ "c"
    dist.Normal(means[c], 1.0) @ "x"


def cat_guide_with(tag):
    @ppl.gen
    def guide(logits):
        tag(dist.Categorical(logits=logits)) @ "c"

    return guide


def cat_log_w(means, logits):
    """log p(x, c) - log q(c) for each c."""
    return -math.log(C) + norm.logpdf(X_OBS, means, 1.0) - jax.nn.log_softmax(logits)


@functools.partial(jax.jit, static_argnums=2)
def cat_exact_iwae(means, logits, k):
    lw, lq = cat_log_w(means, logits), jax.nn.log_softmax(logits)
    total = 0.0
    for combo in itertools.product(range(C), repeat=k):
        idx = jnp.array(combo)
        total = total + jnp.exp(jnp.sum(lq[idx])) * (logsumexp(lw[idx]) - math.log(k))
    return total


CAT_ARGS = ((jnp.array([-1.0, 0.5, 2.0]),), (jnp.array([0.3, -0.2, 0.1]),))
CAT_OBS = ppl.choices(x=X_OBS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [
        lambda g: (ppl.vi.elbo(cat_model, g, CAT_OBS), 1),
        lambda g: (ppl.vi.iwae(cat_model, g, CAT_OBS, particles=3), 3),
        lambda g: (ppl.vi.vimco(cat_model, g, CAT_OBS, particles=3), 3),
    ],
    ids=["elbo", "iwae", "vimco"],
)
def test_discrete_latent_objective_gradients_are_unbiased(objective):
    e, k = objective(cat_guide_with(ppl.vi.reinforce))
    value, grads = many(lambda key: e.value_and_grad_estimate(key, *CAT_ARGS), 8000, 5)
    (means,), (logits,) = CAT_ARGS
    exact_value = cat_exact_iwae(means, logits, k)
    exact_means, exact_logits = jax.grad(cat_exact_iwae, argnums=(0, 1))(means, logits, k)
    assert_unbiased(value, exact_value, "value")
    assert_unbiased(grads[0][0], exact_means, "model gradient")
    assert_unbiased(grads[1][0], exact_logits, "guide gradient")


def test_enumerated_elbo_is_exact():
    e = ppl.vi.elbo(cat_model, cat_guide_with(ppl.vi.enum), CAT_OBS)
    value, grads = many(lambda key: e.value_and_grad_estimate(key, *CAT_ARGS), 10, 6)
    (means,), (logits,) = CAT_ARGS
    exact = jax.value_and_grad(cat_exact_iwae, argnums=(0, 1))(means, logits, 1)
    np.testing.assert_allclose(value, np.full(10, exact[0]), rtol=1e-5)
    np.testing.assert_allclose(grads[0][0], np.tile(exact[1][0], (10, 1)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1][0], np.tile(exact[1][1], (10, 1)), rtol=1e-4, atol=1e-6)


# ------------------------------------ a Gaussian mixture with discrete assignments
def _mixture_data(n=24):
    rng = np.random.default_rng(0)
    z = rng.integers(0, 2, n)
    return jnp.asarray(np.where(z == 1, 2.0, -2.0) + rng.normal(size=n), jnp.float32)


GMM_X = _mixture_data()
GMM_OBS = ppl.choices(x=GMM_X)


@ppl.gen
def gmm_model(means):
    z = dist.Categorical(logits=jnp.zeros((GMM_X.shape[0], 2))) @ "z"
    dist.Normal(means[z], 1.0) @ "x"


@ppl.gen
def gmm_guide(logits):
    dist.Categorical(logits=logits) @ "z"  # discrete: REINFORCE by default


def gmm_log_likelihood(means):
    per_point = logsumexp(norm.logpdf(GMM_X[:, None], means[None, :], 1.0), axis=1) - math.log(2)
    return jnp.sum(per_point)


def _best_log_likelihood():
    opt = optax.adam(0.05)
    p = jnp.array([-0.5, 0.5])
    s = opt.init(p)

    def step(carry, _):
        p, s = carry
        u, s = opt.update(-jax.grad(gmm_log_likelihood)(p), s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (p, s), None, length=800)
    return float(gmm_log_likelihood(p))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ppl.vi.vimco(gmm_model, gmm_guide, GMM_OBS, particles=6),
        lambda: ppl.vi.rws(gmm_model, gmm_guide, GMM_OBS, particles=6),
    ],
    ids=["vimco", "rws"],
)
def test_discrete_latent_mixture_trains_to_the_exact_log_likelihood(make):
    init = ((jnp.array([-0.5, 0.5]),), (jnp.zeros((GMM_X.shape[0], 2)),))
    start = float(gmm_log_likelihood(init[0][0]))
    (means,), _ = train(make(), init, steps=300, lr=0.05, seed=7)
    best = _best_log_likelihood()
    reached = float(gmm_log_likelihood(means))
    # from ~18 nats below the maximum to within 1 nat of it
    assert best - start > 10.0
    assert reached > best - 1.0


# ------------------------------------------- hierarchical variational families
# z in R^2 with prior N(0, I); y_i ~ N(z1 + z2, 0.3): the posterior is strongly correlated.
HY = jnp.array([1.0, 1.4, 0.8])
H_OBS = ppl.choices(y=HY)


@ppl.gen
def h_model():
    z = dist.Normal(jnp.zeros(2), 1.0).to_event(1) @ "z"
    dist.Normal(jnp.full(3, z[0] + z[1]), 0.3) @ "y"


def h_log_z():
    cov = jnp.ones((3, 3)) * 2.0 + 0.09 * jnp.eye(3)
    return jax.scipy.stats.multivariate_normal.logpdf(HY, jnp.zeros(3), cov)


@ppl.gen
def h_mean_field(loc, log_scale):
    dist.Normal(loc, jnp.exp(log_scale)).to_event(1) @ "z"


@ppl.gen
def h_hierarchical(loc, direction, log_scale, r_params):
    psi = dist.Normal(0.0, 1.0) @ "psi"  # auxiliary: z = loc + psi * direction + noise
    dist.Normal(loc + psi * direction, jnp.exp(log_scale)).to_event(1) @ "z"


@ppl.gen
def h_reverse(z_choices, loc, direction, log_scale, r_params):
    w, b, log_s = r_params
    dist.Normal(jnp.dot(w, z_choices["z"]) + b, jnp.exp(log_s)) @ "psi"


@pytest.mark.slow
def test_hierarchical_family_beats_mean_field_on_a_correlated_posterior():
    mf = ppl.vi.elbo(h_model, h_mean_field, H_OBS)
    mf_params = train(mf, ((), (jnp.zeros(2), jnp.full(2, -1.0))), steps=500, lr=0.05, seed=8, average_last=100)
    hvi = ppl.vi.hvi(h_model, h_hierarchical, H_OBS, aux="psi", reverse=h_reverse)
    h_init = ((), (jnp.zeros(2), jnp.array([0.3, -0.3]), jnp.full(2, -1.0), (jnp.zeros(2), 0.0, 0.0)))
    h_params = train(hvi, h_init, steps=500, lr=0.05, seed=9, average_last=100)

    mf_bound = mean_se(many(lambda k: mf.estimate(k, *mf_params), 2000, 10))
    h_bound = mean_se(many(lambda k: hvi.estimate(k, *h_params), 2000, 10))
    log_z = float(h_log_z())
    assert mf_bound[0] < log_z and h_bound[0] < log_z + Z * h_bound[1]
    # the mean-field gap is large (the posterior correlation is ~-0.99); the hierarchical one is small
    assert h_bound[0] - Z * h_bound[1] > mf_bound[0] + Z * mf_bound[1] + 0.5

    # importance weighting makes up for a poor reverse model: with the trained guide and an untrained
    # reverse model, HVI < IWHVI (K = 8) < DIWHVI (8 x 8) <= log Z
    poor = (h_params[0], (*h_params[1][:3], (jnp.zeros(2), 0.0, 0.0)))
    iw = ppl.vi.iwhvi(h_model, h_hierarchical, H_OBS, aux="psi", reverse=h_reverse, particles=8)
    diw = ppl.vi.diwhvi(h_model, h_hierarchical, H_OBS, aux="psi", reverse=h_reverse, particles=8, samples=8)
    b0 = mean_se(many(lambda k: hvi.estimate(k, *poor), 2000, 11))
    b1 = mean_se(many(lambda k: iw.estimate(k, *poor), 2000, 11))
    b2 = mean_se(many(lambda k: diw.estimate(k, *poor), 500, 12))
    assert b0[0] + Z * b0[1] < b1[0] - Z * b1[1]
    assert b1[0] + Z * b1[1] < b2[0] < log_z + Z * b2[1]


# ------------------------------------------------- marginal and normalize
@ppl.gen
def two_level():
    psi = dist.Normal(0.0, 1.0) @ "psi"
    dist.Normal(psi, 1.0) @ "z"  # marginally z ~ N(0, 2)


@ppl.gen
def psi_given_z(z_choices):
    dist.Normal(z_choices["z"] / 2.0, math.sqrt(0.5) * 1.3) @ "psi"


@pytest.mark.parametrize("proposal", [None, psi_given_z], ids=["prior", "reverse"])
def test_marginal_density_estimates_are_unbiased(proposal):
    m = ppl.vi.marginal(two_level, "psi", proposal, particles=3)
    z = 0.8
    weights = many(lambda k: m.generate(k, ppl.choices(z=z))[1], 6000, 12)
    # exp(weight) is an unbiased estimate of q(z)
    assert_unbiased(np.exp(weights), float(jnp.exp(norm.logpdf(z, 0.0, math.sqrt(2.0)))), "q(z)")
    # simulate: exp(-score) is unbiased for 1/q(z), i.e. E[q(z) exp(-score)] = 1
    traces = many(lambda k: m.simulate(k), 6000, 13)
    ratio = np.exp(norm.logpdf(traces.choices["z"], 0.0, math.sqrt(2.0)) - traces.score)
    assert_unbiased(ratio, 1.0, "1/q(z)")
    with pytest.raises(PPLError, match="generate"):
        m.assess(ppl.choices(z=z))


def test_elbo_with_a_sir_guide_is_the_iwae_bound():
    sir = ppl.vi.normalize(nn_model, OBS, nn_guide, particles=8)
    with_sir = ppl.vi.elbo(nn_model, sir, OBS)
    iwae = ppl.vi.iwae(nn_model, nn_guide, OBS, particles=8)
    guide_args = (0.0, 0.5)
    a = mean_se(many(lambda k: with_sir.estimate(k, (0.2,), ((0.2,), guide_args)), 3000, 14))
    b = mean_se(many(lambda k: iwae.estimate(k, (0.2,), guide_args), 3000, 15))
    assert abs(a[0] - b[0]) < Z * math.hypot(a[1], b[1])


# --------------------------------------------------------------- RWS sleep
SX = 0.6


@ppl.gen
def sleep_model():
    z = dist.Normal(0.0, 1.0) @ "z"
    dist.Normal(z, SX) @ "x"


@ppl.gen
def amortised(a, b, log_s, x):
    dist.Normal(a * x + b, jnp.exp(log_s)) @ "z"


def test_sleep_phi_gradient_is_unbiased():
    e = ppl.vi.rws(
        sleep_model,
        amortised,
        ppl.choices(x=0.0),
        particles=2,
        mode="sleep-phi",
        sleep_guide_args=lambda args, sim: (*args[:3], sim["x"]),
    )
    a, b, log_s = 0.4, 0.2, -0.3

    def exact(a, b, log_s):  # E_{(z,x)~p}[log q(z | x)], z - a x = (1 - a) z - a eps
        sq = (1 - a) ** 2 + a**2 * SX**2 + b**2
        return -0.5 * math.log(2 * math.pi) - log_s - sq / (2 * jnp.exp(2 * log_s))

    value, grads = many(lambda k: e.value_and_grad_estimate(k, (), (a, b, log_s, 0.0)), 6000, 16)
    assert_unbiased(value, exact(a, b, log_s), "value")
    assert_unbiased(np.stack(grads[1][:3], -1), jax.grad(exact, argnums=(0, 1, 2))(a, b, log_s), "gradient")


# ------------------------------------------------------- SMC bounds (FIVO)
T_SSM = 6
SSM_Y = jnp.array([0.3, -0.5, 1.2, 0.8, 0.1, -0.7])


@ppl.gen
def ssm_step(z_prev, _):
    z = dist.Normal(0.9 * z_prev, 1.0) @ "z"
    dist.Normal(z, 0.5) @ "y"
    return z, None


@ppl.gen
def ssm_guide_step(carry, inputs):
    y, scale = inputs
    z = dist.Normal(0.5 * (0.9 * carry) + 0.5 * y, scale) @ "z"
    return z, None


def kalman_log_z():
    m, v, total = 0.0, 0.0, 0.0
    for y in np.asarray(SSM_Y):
        m, v = 0.9 * m, 0.81 * v + 1.0
        s = v + 0.25
        total += float(norm.logpdf(y, m, math.sqrt(s)))
        k = v / s
        m, v = m + k * (y - m), (1 - k) * v
    return total


@pytest.mark.slow
def test_fivo_bound_is_below_log_z_and_tightens_with_particles():
    model = ppl.scan(ssm_step)
    guide = ppl.scan(ssm_guide_step)
    obs = ppl.choices(y=SSM_Y)
    model_args = (0.0, jnp.zeros(T_SSM))
    guide_args = (0.0, (SSM_Y, jnp.full(T_SSM, 0.8)))
    log_z = kalman_log_z()
    bounds = []
    for k in (1, 16):
        e = ppl.vi.fivo(model, guide, obs, particles=k)
        bounds.append(mean_se(many(lambda key, e=e: e.estimate(key, model_args, guide_args), 1000, 17)))
    (b1, s1), (b16, s16) = bounds
    assert b1 + Z * s1 < b16 < log_z + Z * s16
    assert log_z - b16 < 0.25 * (log_z - b1)
    # K = 1 is the ELBO of the whole sequence
    elbo = ppl.vi.elbo(model, guide, obs)
    be = mean_se(many(lambda key: elbo.estimate(key, model_args, guide_args), 1000, 18))
    assert abs(be[0] - b1) < Z * math.hypot(be[1], s1)
    # gradients flow to the proposal scale (and are finite); VSMC resamples every step
    v = ppl.vi.vsmc(model, guide, obs, particles=4)
    _, grads = v.value_and_grad_estimate(jax.random.key(0), model_args, guide_args)
    assert np.isfinite(float(grads[1][1][1][0])) and float(jnp.sum(jnp.abs(grads[1][1][1]))) > 0
    # with the ancestors' score terms (unbiased for grad E[log Z_hat]) the gradient changes but stays finite
    u = ppl.vi.vsmc(model, guide, obs, particles=4, resampling_gradient=True)
    value_u, grads_u = u.value_and_grad_estimate(jax.random.key(0), model_args, guide_args)
    assert np.isfinite(float(value_u)) and np.all(np.isfinite(np.asarray(grads_u[1][1][1])))
    assert not np.allclose(np.asarray(grads_u[1][1][1]), np.asarray(grads[1][1][1]))


# ------------------------------------------------------------------- errors
def test_guide_and_model_disagreements_are_named():
    @ppl.gen
    def extra(m, log_s):
        dist.Normal(m, jnp.exp(log_s)) @ "z"
        dist.Normal(0.0, 1.0) @ "w"

    @ppl.gen
    def missing():
        return 0.0

    with pytest.raises(GuideError, match="'w'"):
        ppl.vi.elbo(nn_model, extra, OBS).estimate(jax.random.key(0), (0.0,), (0.0, 0.0))
    with pytest.raises(GuideError, match=r"'z'.*neither observed nor sampled"):
        ppl.vi.elbo(nn_model, missing, OBS).estimate(jax.random.key(0), (0.0,), ())


def test_bad_objective_arguments_are_rejected():
    with pytest.raises(EstimatorError, match="particles"):
        ppl.vi.iwae(nn_model, nn_guide, OBS, particles=0)
    with pytest.raises(EstimatorError, match="particles >= 2"):
        ppl.vi.vimco(nn_model, nn_guide, OBS, particles=1)
    with pytest.raises(EstimatorError, match="sleep_guide_args"):
        ppl.vi.rws(nn_model, nn_guide, OBS, particles=2, mode="wake-sleep")
    with pytest.raises(EstimatorError, match="mode"):
        ppl.vi.rws(nn_model, nn_guide, OBS, particles=2, mode="dream")
    with pytest.raises(EstimatorError, match=r"ppl\.scan"):
        ppl.vi.fivo(nn_model, nn_guide, OBS, particles=2)
