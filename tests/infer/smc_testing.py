"""Shared pieces for the SMC tests: a linear Gaussian state-space model, its Kalman filter, a tiny MH kernel."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

import ppl
from ppl import dist

# ----------------------------------------------------------------- conjugate models

Y_NORMAL = np.array([0.9, 1.8, 1.2, 0.4, 1.5], np.float32)
M0, S0, S = 0.0, 1.0, 0.8  # mu ~ N(M0, S0), y_i ~ N(mu, S)


@ppl.gen
def normal_normal():
    mu = dist.Normal(M0, S0) @ "mu"
    dist.Normal(mu * jnp.ones(len(Y_NORMAL)), S) @ "y"


def normal_normal_exact(ys: np.ndarray = Y_NORMAL) -> tuple[float, float, float]:
    n = len(ys)
    prec = 1 / S0**2 + n / S**2
    mean = (M0 / S0**2 + ys.sum() / S**2) / prec
    cov = S**2 * np.eye(n) + S0**2 * np.ones((n, n))
    logz = stats.multivariate_normal(M0 * np.ones(n), cov).logpdf(ys)
    return mean, 1 / prec, logz


BB_A, BB_B, N_TRIALS, K = 2.0, 3.0, 20, 7  # p ~ Beta(BB_A, BB_B), k ~ Binomial(N_TRIALS, p)


@ppl.gen
def beta_binomial():
    p = dist.Beta(BB_A, BB_B) @ "p"
    dist.Binomial(N_TRIALS, p) @ "k"


def beta_binomial_exact() -> tuple[float, float, float]:
    a, b = BB_A + K, BB_B + N_TRIALS - K
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    logz = math.log(special.comb(N_TRIALS, K)) + special.betaln(a, b) - special.betaln(BB_A, BB_B)
    return mean, var, logz


ALPHA, RATE = 3.0, 1.0  # lam ~ Gamma(ALPHA, RATE), y_i ~ Poisson(lam)
Y_POISSON = np.array([2, 4, 3, 5, 1])


@ppl.gen
def gamma_poisson():
    lam = dist.Gamma(ALPHA, RATE) @ "lam"
    dist.Poisson(lam * jnp.ones(len(Y_POISSON))) @ "y"


def gamma_poisson_exact() -> tuple[float, float, float]:
    a, r = ALPHA + Y_POISSON.sum(), RATE + len(Y_POISSON)
    logz = (
        ALPHA * math.log(RATE)
        - special.gammaln(ALPHA)
        + special.gammaln(a)
        - a * math.log(r)
        - special.gammaln(Y_POISSON + 1).sum()
    )
    return a / r, a / r**2, logz


CONJUGATE = {
    "normal-normal": (normal_normal, {"y": Y_NORMAL}, "mu", normal_normal_exact),
    "beta-binomial": (beta_binomial, {"k": K}, "p", beta_binomial_exact),
    "gamma-poisson": (gamma_poisson, {"y": Y_POISSON}, "lam", gamma_poisson_exact),
}


# ------------------------------------------------------- linear Gaussian SSM
# x_0 ~ N(0, 1); x_t = A x_{t-1} + N(0, Q); y_t = x_t + N(0, R), t = 1..T
A, Q, R = 0.9, 1.0, 0.25
T = 25


@ppl.gen
def lg_step(x_prev, _):
    x = dist.Normal(A * x_prev, np.sqrt(Q)) @ "x"
    dist.Normal(x, np.sqrt(R)) @ "y"
    return x, None


@ppl.gen
def lg_model(num_steps):
    x0 = dist.Normal(0.0, 1.0) @ "x0"
    return ppl.scan(lg_step, length=num_steps)(x0, None) @ "steps"


def simulate_lg(seed: int = 0, num_steps: int = T) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, ys = rng.normal(), []
    for _ in range(num_steps):
        x = A * x + np.sqrt(Q) * rng.normal()
        ys.append(x + np.sqrt(R) * rng.normal())
    return np.asarray(ys, np.float32)


def kalman(ys: np.ndarray, m0: float = 0.0, p0: float = 1.0, observed: np.ndarray | None = None):
    """Exact ``log p(y_{1:T})`` and filtering means/variances of ``x_t``."""
    m, p, ll = m0, p0, 0.0
    means, variances = [], []
    for t, y in enumerate(ys):
        m, p = A * m, A * A * p + Q
        if observed is None or observed[t]:
            s = p + R
            ll += -0.5 * (np.log(2 * np.pi * s) + (y - m) ** 2 / s)
            k = p / s
            m, p = m + k * (y - m), (1 - k) * p
        means.append(m)
        variances.append(p)
    return ll, np.asarray(means), np.asarray(variances)


@ppl.gen
def locally_optimal(x_prev, _, obs_t):
    """p(x_t | x_{t-1}, y_t) for the linear Gaussian model: the optimal proposal."""
    prior_mean = A * x_prev
    var = 1.0 / (1.0 / Q + 1.0 / R)
    mean = var * (prior_mean / Q + obs_t["y"] / R)
    dist.Normal(mean, jnp.sqrt(var)) @ "x"


# ----------------------------------------------------------- a tiny MH kernel
class State(NamedTuple):
    trace: Any


class Info(NamedTuple):
    accepted: Any
    acceptance_rate: Any


class Kernel(NamedTuple):
    init: Any
    step: Any


def prior_mh(selection: Any) -> Kernel:
    """MH resampling ``selection`` from its prior through ``regenerate`` (the MCMC kernel protocol)."""

    def init(trace: Any) -> State:
        return State(trace)

    def step(key: Any, state: State) -> tuple[State, Info]:
        k_prop, k_acc = jax.random.split(key)
        proposed, log_alpha = state.trace.gen_fn.regenerate(k_prop, state.trace, selection)
        log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
        accept = jnp.log(jax.random.uniform(k_acc)) < log_alpha
        trace = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), proposed, state.trace)
        return State(trace), Info(accept, jnp.exp(jnp.minimum(log_alpha, 0.0)))

    return Kernel(init, step)
