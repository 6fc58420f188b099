"""``ppl.vi.fit``: recovery of exact posteriors, minibatch unbiasedness, equinox parameters, bad input.

Tolerances for fitted parameters come from the optimiser's residual noise:
after the learning rate has decayed to its floor, the iterates fluctuate
around the optimum with a stationary spread; we record them over the last
``TAIL`` steps and require the final estimate to be within 4 of their
standard deviations (plus 1e-3 for float32 rounding and the small bias left
by the decayed learning rate) of the exact answer.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import dist
from ppl.core.scale import scale
from ppl.errors import FitError
from ppl.vi.minibatch import sample_batch

CHUNK = 10


def tail_recorder(read, start):
    """A callback storing ``read(params)`` after every chunk from step ``start`` on."""
    seen = []

    def cb(state):
        if state.step > start:
            seen.append(np.asarray(read(state.params), np.float64))

    return cb, seen


def check_recovered(tail, exact, what):
    tail = np.stack(tail)
    est, sd = tail.mean(0), tail.std(0)
    err = np.abs(est - np.asarray(exact))
    tol = 4 * sd + 1e-3
    assert np.all(err < tol), f"{what}: estimate {est}, exact {exact}, error {err}, tolerance {tol}"
    assert np.all(np.abs(tail[-1] - exact) < 4 * sd + 1e-3), f"{what}: final iterate {tail[-1]}, exact {exact}"


# ------------------------------------------------ conjugate normal, mean-field


@ppl.gen
def conjugate(n):
    mu = dist.Normal(0.0, 2.0) @ "mu"
    return dist.Normal(mu, 1.0).expand((n,)).to_event(1) @ "y"


YS = jnp.array([0.5, 1.5, 1.0, 2.0, 0.7, -0.3])
PREC = 1 / 4 + len(YS)
POST_MEAN, POST_SD = float(YS.sum() / PREC), PREC**-0.5


def test_mean_field_elbo_recovers_the_exact_posterior():
    obs = {"y": YS}
    guide, guide_args = ppl.vi.auto_normal(conjugate, (len(YS),), obs)
    lr = optax.linear_schedule(0.05, 0.003, 1500)
    cb, tail = tail_recorder(lambda p: [p[1][0]["loc"]["mu"], jnp.exp(p[1][0]["log_scale"]["mu"])], 1500)
    res = ppl.vi.fit(
        jax.random.key(0),
        ppl.vi.elbo(conjugate, guide, obs),
        ((len(YS),), guide_args),
        optax.adam(lr),
        steps=2500,
        chunk_size=CHUNK,
        callbacks=[cb],
        progress_bar=False,
    )
    assert res.step == 2500 and res.history.shape == (2500,)
    check_recovered(tail, [POST_MEAN, POST_SD], "posterior mean and sd")
    # at the optimum q is the posterior and every ELBO estimate equals log Z
    cov = np.eye(len(YS)) + 4.0 * np.ones((len(YS), len(YS)))
    log_z = -0.5 * (len(YS) * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + YS @ np.linalg.solve(cov, YS))
    late = res.history[-500:]
    assert abs(late.mean() - log_z) < 4 * late.std() / np.sqrt(len(late)) + 1e-3
    assert res.history[:50].mean() < late.mean()
    # the result keeps init's structure: model args untouched
    assert res.params[0] == (len(YS),)


# ------------------------------------------------ correlated Gaussian, full rank


@ppl.gen
def linear_gaussian(A):
    a = dist.Normal(0.0, 1.0) @ "a"
    c = dist.Normal(jnp.zeros(2), 1.0).to_event(1) @ "c"
    theta = jnp.concatenate([a[None], c])
    return dist.Normal(A @ theta, 0.5).to_event(1) @ "y"


A = jnp.array([[1.0, 1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.5, -0.5]])
Y4 = jnp.array([0.8, -0.4, 1.1, 0.3])


def test_full_rank_guide_recovers_a_correlated_posterior():
    obs = {"y": Y4}
    prec = np.eye(3) + np.asarray(A).T @ np.asarray(A) / 0.25
    cov = np.linalg.inv(prec)
    mean = cov @ (np.asarray(A).T @ np.asarray(Y4) / 0.25)
    assert np.min(np.abs(cov[np.triu_indices(3, 1)])) > 0.02  # genuinely correlated
    guide, guide_args = ppl.vi.auto_multivariate_normal(linear_gaussian, (A,), obs, init_loc={"a": 0.0})
    lr = optax.linear_schedule(0.03, 0.002, 2000)

    def read(p):
        q = p[1][0]
        return jnp.concatenate([q["loc"], guide.covariance(q)[np.triu_indices(3)]])

    cb, tail = tail_recorder(read, 2000)
    ppl.vi.fit(
        jax.random.key(1),
        ppl.vi.elbo(linear_gaussian, guide, obs),
        ((A,), guide_args),
        optax.adam(lr),
        trainable=(False, True),  # A is data, not a parameter
        steps=3000,
        chunk_size=CHUNK,
        callbacks=[cb],
        progress_bar=False,
    )
    check_recovered(tail, np.concatenate([mean, cov[np.triu_indices(3)]]), "posterior mean and covariance")


# ------------------------------------------------ minibatches


@ppl.gen
def batch_likelihood(mu, b):
    return dist.Normal(mu, 1.0).expand((b,)).to_event(1) @ "y"


@ppl.gen
def batch_model(factor, b):
    mu = dist.Normal(0.0, 1.0) @ "mu"
    return scale(batch_likelihood, factor)(mu, b) @ "lik"


@ppl.gen
def mu_guide(m, log_s):
    return dist.Normal(m, jnp.exp(log_s)) @ "mu"


def minibatch_elbo_program(key, model_args, guide_args, ys):
    obs = ppl.choices({("lik", "y"): ys})
    return ppl.vi.log_weight(key, batch_model, mu_guide, obs, model_args, guide_args)


MINIBATCH_ELBO = ppl.vi.expectation(minibatch_elbo_program)
DATA = jnp.linspace(-1.0, 3.0, 20) ** 2 / 3.0
B = 5


def full_data_elbo(m, s, ys):
    """Exact ELBO of q = N(m, s^2) for mu ~ N(0, 1), y_i ~ N(mu, 1)."""
    ys = np.asarray(ys, np.float64)
    e_lik = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * ((ys - m) ** 2 + s**2))
    e_prior = -0.5 * np.log(2 * np.pi) - 0.5 * (m**2 + s**2)
    entropy = 0.5 * np.log(2 * np.pi * np.e * s**2)
    return e_lik + e_prior + entropy


@pytest.mark.parametrize("scaled", [True, False])
def test_scaled_minibatch_objective_is_unbiased_for_the_full_data_objective(scaled):
    m, log_s = 1.0, np.log(0.3)

    def batch_fn(params, batch):
        factor = batch.scale if scaled else 1.0
        return ((factor, B), params, batch.data)

    # a zero learning rate keeps the parameters fixed: the history is a sample of minibatch estimates
    res = ppl.vi.fit(
        jax.random.key(2),
        MINIBATCH_ELBO,
        (jnp.asarray(m), jnp.asarray(log_s)),
        optax.sgd(0.0),
        steps=3000,
        data=DATA,
        batch_size=B,
        batch_fn=batch_fn,
        chunk_size=1000,
        progress_bar=False,
    )
    exact = full_data_elbo(m, 0.3, DATA)
    se = res.history.std() / np.sqrt(len(res.history))  # draws are independent (fresh key each step)
    if scaled:
        assert abs(res.history.mean() - exact) < 4 * se  # 4 standard errors
    else:
        assert abs(res.history.mean() - exact) > 20 * se  # the test can tell a missing N/B apart


def test_minibatches_are_drawn_without_replacement_and_scaled():
    mb = sample_batch(jax.random.key(0), {"x": jnp.arange(20) * 1.0}, 20, 5)
    assert len(set(np.asarray(mb.indices).tolist())) == 5
    np.testing.assert_allclose(mb.data["x"], np.asarray(mb.indices) * 1.0)
    assert float(mb.scale) == 4.0
    # each point is in the batch with probability B / N = 1/4: 4 standard errors, se = sqrt(p(1-p)/n)
    idx = jax.vmap(lambda k: sample_batch(k, jnp.arange(20), 20, 5).indices)(jax.random.split(jax.random.key(1), 2000))
    freq = np.bincount(np.asarray(idx).ravel(), minlength=20) / 2000
    assert np.all(np.abs(freq - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 2000))


def test_iterator_data_with_data_size_and_early_end():
    seen_scales = []

    def batches():
        for i in range(35):
            yield DATA[(i % 4) * B : (i % 4 + 1) * B]

    def batch_fn(params, batch):
        seen_scales.append(batch.scale)  # traced inside the compiled loop; check the value it was built from
        return ((batch.scale, B), params, batch.data)

    res = ppl.vi.fit(
        jax.random.key(3),
        MINIBATCH_ELBO,
        (jnp.asarray(0.5), jnp.asarray(-1.0)),
        optax.adam(0.01),
        steps=100,
        data=batches(),
        data_size=20,
        batch_fn=batch_fn,
        chunk_size=50,  # one chunk: the iterator runs out after 35
        progress_bar=False,
    )
    assert res.step == 35 and res.history.shape == (35,)  # the iterator ran out
    assert len(seen_scales) >= 1
    assert float(ppl.vi.minibatch.given_batch(DATA[:B], 20).scale) == 4.0
    assert float(ppl.vi.minibatch.given_batch(DATA[:B], None).scale) == 1.0


# ------------------------------------------------ equinox parameters (an amortised guide)


@ppl.gen
def point(x):
    z = dist.Normal(0.0, 1.0) @ "z"
    return dist.Normal(z, 1.0) @ "x"


XS = jnp.linspace(-2.0, 2.0, 8)
points = ppl.vmap(point)


@ppl.gen
def encoder_guide(enc, xs):
    out = jax.vmap(enc)(xs[:, None])
    return ppl.vmap(lambda_guide)(out[:, 0], out[:, 1]) @ "pts"


@ppl.gen
def lambda_guide(loc, log_s):
    return dist.Normal(loc, jnp.exp(log_s)) @ "z"


@ppl.gen
def points_model(xs):
    return points(xs) @ "pts"


def test_equinox_encoder_trains_to_the_exact_amortised_posterior():
    # z | x ~ Normal(x / 2, 1/2): a linear encoder represents it exactly
    enc = eqx.nn.Linear(1, 2, key=jax.random.key(4))
    obs = {("pts", "x"): XS}
    lr = optax.linear_schedule(0.05, 0.003, 1500)

    def read(p):
        lin = p[1][0]
        return [lin.weight[0, 0], lin.bias[0], lin.weight[1, 0], lin.bias[1]]

    cb, tail = tail_recorder(read, 1500)
    res = ppl.vi.fit(
        jax.random.key(5),
        ppl.vi.elbo(points_model, encoder_guide, obs),
        ((XS,), (enc, XS)),
        optax.adam(lr),
        trainable=(False, (True, False)),  # train the encoder, not the data
        steps=2000,
        chunk_size=CHUNK,
        callbacks=[cb],
        progress_bar=False,
    )
    trained = res.params[1][0]
    assert isinstance(trained, eqx.nn.Linear) and trained.in_features == 1
    np.testing.assert_array_equal(res.params[1][1], XS)  # frozen by `trainable`
    np.testing.assert_array_equal(res.params[0][0], XS)
    check_recovered(tail, [0.5, 0.0, 0.0, 0.5 * np.log(0.5)], "encoder weights")


# ------------------------------------------------ stopping, callbacks, bad input


class Ramp:
    """A deterministic objective: value theta (NaN once theta > 4.5), gradient 1."""

    def value_and_grad_estimate(self, key, theta):
        return jnp.where(theta < 4.5, theta, jnp.nan), (jnp.ones_like(theta),)


class Vector:
    def value_and_grad_estimate(self, key, theta):
        return jnp.ones(3) * theta, (jnp.ones_like(theta),)


def test_non_finite_objective_stops_naming_the_step(tmp_path):
    ck = tmp_path / "run.npz"
    with pytest.raises(ppl.errors.NonFiniteObjectiveError, match="not finite at step 5") as info:
        ppl.vi.fit(
            jax.random.key(0), Ramp(), (0.0,), optax.sgd(1.0), steps=20, chunk_size=3, checkpoint=ck, progress_bar=False
        )
    err = info.value
    assert err.step == 5
    # theta_t = t: the parameters reached before step 5 are kept, history has steps 0..4
    assert float(err.result.params[0]) == 5.0 and err.result.step == 5
    np.testing.assert_array_equal(err.result.history, [0.0, 1.0, 2.0, 3.0, 4.0])
    saved = ppl.vi.load_checkpoint(ck, (jnp.zeros(()),), optax.sgd(1.0).init((jnp.zeros(()),)))
    assert saved.step == 5 and float(saved.trainable[0]) == 5.0


def test_callback_can_stop_and_sees_progress():
    steps_seen = []

    def cb(state):
        steps_seen.append(state.step)
        return state.step >= 6

    res = ppl.vi.fit(
        jax.random.key(0), Ramp(), (-10.0,), optax.sgd(1.0), steps=50, chunk_size=3, callbacks=[cb], progress_bar=False
    )
    assert steps_seen == [3, 6] and res.step == 6 and float(res.params[0]) == -4.0


def test_progress_bar_runs(capsys):
    res = ppl.vi.fit(jax.random.key(0), Ramp(), (-10.0,), optax.sgd(1.0), steps=6, chunk_size=3, progress_bar=True)
    assert res.step == 6
    assert "objective" in capsys.readouterr().err


@ppl.gen
def two_latents():
    a = dist.Normal(0.0, 1.0) @ "a"
    b = dist.Normal(a, 1.0) @ "b"
    return dist.Normal(b, 1.0) @ "y"


@ppl.gen
def guide_without_b(m):
    return dist.Normal(m, 1.0) @ "a"


def test_a_guide_missing_a_latent_stops_fit_naming_it():
    objective = ppl.vi.elbo(two_latents, guide_without_b, {"y": 0.3})
    with pytest.raises(ppl.errors.GuideError, match="'b'"):
        ppl.vi.fit(jax.random.key(0), objective, ((), (0.0,)), optax.sgd(0.1), steps=2, progress_bar=False)


def test_bad_input_is_reported():
    key = jax.random.key(0)
    with pytest.raises(FitError, match=r"shape \(3,\).*scalar"):
        ppl.vi.fit(key, Vector(), (0.0,), optax.sgd(1.0), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="tuple of the objective's arguments"):
        ppl.vi.fit(key, Ramp(), 0.0, optax.sgd(1.0), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="no float arrays"):
        ppl.vi.fit(key, Ramp(), (3,), optax.sgd(1.0), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="value_and_grad_estimate"):
        ppl.vi.fit(key, lambda k, t: t, (0.0,), optax.sgd(1.0), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="optax GradientTransformation"):
        ppl.vi.fit(key, Ramp(), (0.0,), "adam", steps=2, progress_bar=False)
    with pytest.raises(FitError, match="give batch_fn"):
        ppl.vi.fit(key, Ramp(), (0.0,), optax.sgd(1.0), steps=2, data=DATA, batch_size=5, progress_bar=False)
    with pytest.raises(FitError, match="batch_size must be an int between 1 and the data size 20"):
        ppl.vi.fit(
            key, Ramp(), (0.0,), optax.sgd(1.0), data=DATA, batch_size=50, batch_fn=lambda p, b: p, progress_bar=False
        )
    with pytest.raises(FitError, match="frozen"):
        ppl.vi.fit(key, Ramp(), (0.0,), optax.sgd(1.0), trainable=(False,), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="prefix of init"):
        ppl.vi.fit(key, Ramp(), (0.0,), optax.sgd(1.0), trainable=(True, False), steps=2, progress_bar=False)
    with pytest.raises(FitError, match="PRNG key"):
        ppl.vi.fit(None, Ramp(), (0.0,), optax.sgd(1.0), steps=2, progress_bar=False)
