"""Each kernel leaves its target invariant.

Start M independent chains from *exact* posterior draws of a conjugate
model, apply the kernel a few times, and test that the draws still have the
posterior's moments: an invariant kernel maps exact draws to exact draws
(still independent across chains), so each mean has standard error
sd / sqrt(M) and we allow 4 of them. A kernel with a wrong acceptance ratio
or Jacobian shifts the moments by far more (see the control test at the end).

Target: z_i ~ Bernoulli(0.3) (i = 1..3), mu ~ N(0, 1), lam ~ Gamma(3, 2),
y_i ~ N(mu + 2 z_i, 1), c_j ~ Poisson(lam). Given the data, lam is
independent of (z, mu), lam | c is Gamma, and (z, mu) is exact by
enumerating the 8 values of z: y | z ~ N(2 z, I + 1 1^T) with mu integrated
out, mu | z, y ~ N(sum(y - 2 z) / 4, 1 / 4).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist
from ppl.infer import kernels as K

M = 4000  # chains started from exact draws
STEPS = 5
Y = np.array([0.4, 2.6, 1.9])
C = np.array([1, 3, 2, 2])


@ppl.gen
def target():
    z = dist.Bernoulli(jnp.full(3, 0.3)) @ "z"
    mu = dist.Normal(0.0, 1.0) @ "mu"
    lam = dist.Gamma(3.0, 2.0) @ "lam"
    dist.Normal(mu + 2.0 * z, 1.0) @ "y"
    dist.Poisson(jnp.full(C.shape, lam)) @ "c"


OBS = ppl.choices(y=jnp.asarray(Y, jnp.float32), c=jnp.asarray(C))
LAM = stats.gamma(3 + C.sum(), scale=1 / (2 + len(C)))


CONFIGS = np.array(list(itertools.product([0, 1], repeat=3)))


def config_weights() -> np.ndarray:
    """p(z | y) for the 8 values of z (mu integrated out: y | z ~ N(2 z, I + 1 1^T))."""
    cov = np.eye(3) + np.ones((3, 3))
    logw = np.array(
        [
            np.sum(z * np.log(0.3) + (1 - z) * np.log(0.7)) + stats.multivariate_normal(2 * z, cov).logpdf(Y)
            for z in CONFIGS
        ]
    )
    w = np.exp(logw - logw.max())
    return w / w.sum()


W = config_weights()
MU_MEAN = np.sum(Y - 2 * CONFIGS, axis=1) / 4  # E[mu | z, y]; Var[mu | z, y] = 1/4


def exact_draws(seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(CONFIGS), size=n, p=W)
    return {"z": CONFIGS[idx], "mu": rng.normal(MU_MEAN[idx], 0.5), "lam": LAM.rvs(size=n, random_state=rng)}


def exact_moments() -> dict:
    """Exact posterior mean and sd of z_i, mu, mu^2, lam and lam^2."""
    pz = W @ CONFIGS
    m, v = MU_MEAN, 0.25
    e1, e2 = W @ m, W @ (m**2 + v)
    e4 = W @ (m**4 + 6 * m**2 * v + 3 * v**2)
    l1, l2, l4 = LAM.moment(1), LAM.moment(2), LAM.moment(4)
    return {
        "z": (pz, np.sqrt(pz * (1 - pz))),
        "mu": (e1, np.sqrt(e2 - e1**2)),
        "mu2": (e2, np.sqrt(e4 - e2**2)),
        "lam": (l1, np.sqrt(l2 - l1**2)),
        "lam2": (l2, np.sqrt(l4 - l2**2)),
    }


MOMENTS = exact_moments()


def start_traces(seed: int):
    d = exact_draws(seed, M)
    latent = ppl.choices(
        z=jnp.asarray(d["z"], jnp.int32), mu=jnp.asarray(d["mu"], jnp.float32), lam=jnp.asarray(d["lam"], jnp.float32)
    )
    build = jax.jit(jax.vmap(lambda cm: target.generate(jax.random.key(0), OBS | cm, ())[0]))
    return build(latent)


def run_kernel(kernel, traces, key):
    @jax.jit
    def run(traces, key):
        def chain(tr, k):
            state = kernel.init(tr)

            def body(s, kk):
                s, info = kernel.step(kk, s)
                return s, info

            state, infos = jax.lax.scan(body, state, jax.random.split(k, STEPS))
            return state.trace, infos

        return jax.vmap(chain)(traces, jax.random.split(key, M))

    return run(traces, key)


def assert_invariant(traces) -> None:
    cm = traces.choices
    z = np.asarray(cm["z"], float)
    mu = np.asarray(cm["mu"], float)
    lam = np.asarray(cm["lam"], float)
    for name, x in (("z", z), ("mu", mu), ("mu2", mu**2), ("lam", lam), ("lam2", lam**2)):
        mean, sd = MOMENTS[name]
        tol = 4 * sd / np.sqrt(M)  # 4 standard errors of a mean of M independent exact draws
        assert np.all(np.abs(x.mean(axis=0) - mean) <= tol), (name, x.mean(axis=0), mean, tol)


MU = ppl.select("mu")
CONT = ppl.select("mu", "lam")

KERNELS = {
    "mh(mu)": lambda: K.mh(MU),
    "mh(z)": lambda: K.mh(ppl.select("z")),
    "mala": lambda: K.mala(CONT, 0.05),
    "hmc": lambda: K.hmc(CONT, 0.25, 5),
    "hmc dense": lambda: K.hmc(CONT, 0.25, 5, inverse_mass_matrix=jnp.array([[1.0, 0.2], [0.2, 0.5]])),
    "nuts": lambda: K.nuts(CONT, 0.4),
    "gibbs(z)": lambda: K.gibbs("z"),
    "cycle": lambda: K.cycle(K.gibbs("z"), K.nuts(CONT, 0.4)),
    "mixture": lambda: K.mixture([K.gibbs("z"), K.hmc(CONT, 0.25, 5), K.mh(MU)], [0.3, 0.5, 0.2]),
    "repeat": lambda: K.repeat(K.mh(ppl.select("lam")), 3),
}


@ppl.gen
def random_walk(trace):
    """Custom proposal: a Gaussian random walk on mu and a log-normal one on lam."""
    dist.Normal(trace["mu"], 0.7) @ "mu"
    dist.LogNormal(jnp.log(trace["lam"]), 0.3) @ "lam"


KERNELS["mh_proposal"] = lambda: K.mh_proposal(random_walk)


@pytest.fixture(scope="module")
def start():
    return start_traces(0)


def test_exact_start_has_posterior_moments(start) -> None:
    assert_invariant(start)  # the reference draws themselves pass the check


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_leaves_posterior_invariant(name: str, start) -> None:
    kernel = KERNELS[name]()
    traces, infos = run_kernel(kernel, start, jax.random.key(1))
    assert_invariant(traces)
    assert infos.accepted.shape == (M, STEPS)
    rate = float(np.mean(infos.acceptance_rate))
    assert 0.05 < rate <= 1.0, rate  # the kernel moves
    assert float(np.mean(infos.accepted)) > 0.05


def test_wrong_kernel_is_detected(start) -> None:
    """Control: a random walk that forgets the proposal's asymmetry (the log-normal
    Jacobian on lam) is not invariant, and the check catches it."""

    def biased_step(key, state):
        tr = state.trace
        k1, k2 = jax.random.split(key)
        lam = tr.choices["lam"] * jnp.exp(0.5 * jax.random.normal(k1))
        new, w, _ = target.update(k1, tr, ppl.choices(lam=lam))
        accept = jnp.log(jax.random.uniform(k2)) < w  # missing log(lam'/lam)
        new_tr = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, tr)
        return K.TraceState(new_tr), K.MCMCInfo(accept, jnp.minimum(1.0, jnp.exp(w)), False, 0)

    kernel = K.MCMCKernel(lambda tr: K.TraceState(tr), biased_step)
    traces, _ = run_kernel(kernel, start, jax.random.key(2))
    with pytest.raises(AssertionError):
        assert_invariant(traces)


def test_kernels_compose_with_vmap_and_jit_in_smc_style() -> None:
    """init/step work on a batch of traces under jit, as SMC rejuvenation uses them."""
    trs = start_traces(5)
    kernel = K.nuts(CONT, 0.3)
    states = jax.jit(jax.vmap(kernel.init))(trs)
    assert isinstance(states, K.GradientState)
    new, info = jax.jit(jax.vmap(kernel.step))(jax.random.split(jax.random.key(6), M), states)
    assert new.trace.choices["mu"].shape == (M,)
    assert info.num_steps.shape == (M,) and int(info.num_steps.min()) >= 1
