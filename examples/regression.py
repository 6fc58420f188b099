"""Bayesian linear regression on scikit-learn's diabetes data.

The model (Normal-Inverse-Gamma, so the exact posterior is known and the
Monte Carlo answer can be checked):

    sigma^2 ~ InverseGamma(a0, b0)
    w | sigma ~ Normal(0, sigma^2 / lambda0 * I)     (intercept + 3 slopes)
    y_i ~ Normal(x_i . w, sigma)

The script shows the three basic uses of a generative function:
``simulate`` (draws from the prior predictive), ``generate`` (a trace that
agrees with the observed targets, with its importance weight), and a
posterior by self-normalised importance sampling from the prior written
directly on ``generate`` in a few lines. It prints posterior means against
the exact ones and saves a plot to examples/out/regression.png.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_diabetes

import ppl
from ppl import dist

FEATURES = ["bmi", "bp", "s5"]
N_PATIENTS = 60  # importance sampling from the prior needs a vague posterior
PARTICLES = 400_000
A0, B0, LAMBDA0 = 2.0, 1.0, 1.0


def load_data() -> tuple[jnp.ndarray, jnp.ndarray]:
    data = load_diabetes(scaled=False)
    cols = [data.feature_names.index(f) for f in FEATURES]
    x = data.data[:N_PATIENTS, cols]
    y = data.target[:N_PATIENTS]
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    design = np.column_stack([np.ones(len(x)), x])
    return jnp.asarray(design, jnp.float32), jnp.asarray(y, jnp.float32)


@ppl.gen
def regression(design):
    var = dist.InverseGamma(A0, B0) @ "var"
    w = dist.Normal(jnp.zeros(design.shape[1]), jnp.sqrt(var / LAMBDA0)) @ "w"
    return dist.Normal(design @ w, jnp.sqrt(var)) @ "y"


def importance_posterior(key, design, y, n):
    """Self-normalised importance sampling from the prior, on ``generate``."""
    keys = jax.random.split(key, n)
    traces, log_w = jax.vmap(lambda k: regression.generate(k, {"y": y}, (design,)))(keys)
    weights = jax.nn.softmax(log_w)
    log_evidence = jax.scipy.special.logsumexp(log_w) - jnp.log(n)
    return traces, weights, log_evidence


def exact_posterior(design, y):
    """Normal-Inverse-Gamma conjugate update.

    Returns the posterior mean of ``w``, of ``sigma^2``, and the exact log
    evidence ``log p(y) = log G(a_n) - log G(a_0) + a_0 log b_0 - a_n log b_n
    + (log|L_0| - log|L_n|) / 2 - (n / 2) log(2 pi)``.
    """
    from scipy.special import gammaln

    x, n = np.asarray(design, np.float64), len(y)
    y = np.asarray(y, np.float64)
    prior_precision = LAMBDA0 * np.eye(x.shape[1])
    precision = x.T @ x + prior_precision
    mean_w = np.linalg.solve(precision, x.T @ y)
    a_n = A0 + n / 2
    b_n = B0 + 0.5 * (y @ y - mean_w @ precision @ mean_w)
    log_z = (
        gammaln(a_n)
        - gammaln(A0)
        + A0 * np.log(B0)
        - a_n * np.log(b_n)
        + 0.5 * (np.linalg.slogdet(prior_precision)[1] - np.linalg.slogdet(precision)[1])
        - 0.5 * n * np.log(2 * np.pi)
    )
    return mean_w, b_n / (a_n - 1), log_z


def main() -> None:
    design, y = load_data()
    key = jax.random.key(0)

    prior = jax.vmap(lambda k: regression.simulate(k, (design,)))(jax.random.split(key, 200))
    print(f"simulate: 200 prior predictive data sets, y shape {prior.choices['y'].shape}")

    trace, log_w = regression.generate(key, {"y": y}, (design,))
    print(
        f"generate: one trace agreeing with the {len(y)} targets, log weight {float(log_w):.1f}, "
        f"sigma^2 drawn from the prior: {float(trace['var']):.2f}"
    )

    traces, weights, log_z = jax.jit(importance_posterior, static_argnums=3)(key, design, y, PARTICLES)
    ess = 1.0 / jnp.sum(weights**2)
    post_w = jnp.einsum("n,nd->d", weights, traces.choices["w"])
    post_var = jnp.sum(weights * traces.choices["var"])
    exact_w, exact_var, exact_log_z = exact_posterior(design, y)
    print(f"importance sampling: {PARTICLES:,} particles, ESS {float(ess):.0f}")
    print(f"log evidence: {float(log_z):.2f} (exact {exact_log_z:.2f})")
    print(f"{'':>10} {'IS mean':>9} {'exact':>9}")
    for name, est, ex in zip(["intercept", *FEATURES, "sigma^2"], [*post_w, post_var], [*exact_w, exact_var]):
        print(f"{name:>10} {float(est):9.3f} {float(ex):9.3f}")
    plot(design, y, traces, weights, exact_w)


def plot(design, y, traces, weights, exact_w) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    idx = np.asarray(jax.random.choice(jax.random.key(1), len(weights), (300,), p=weights))
    ws = np.asarray(traces.choices["w"])[idx]
    fig, axes = plt.subplots(1, 1 + len(FEATURES), figsize=(4 * (1 + len(FEATURES)), 3.5))
    pred = np.asarray(design) @ ws.T
    axes[0].scatter(pred.mean(1), np.asarray(y), s=12)
    axes[0].plot([-2, 2], [-2, 2], "k--", lw=1)
    axes[0].set(xlabel="posterior mean prediction", ylabel="observed (standardised)", title="fit")
    for j, name in enumerate(FEATURES, start=1):
        axes[j].hist(ws[:, j], bins=30, density=True, alpha=0.7, label="importance resample")
        axes[j].axvline(exact_w[j], color="k", ls="--", label="exact posterior mean")
        axes[j].set(title=f"slope of {name}")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "regression.png", dpi=100)
    print(f"plot saved to {out / 'regression.png'}")


if __name__ == "__main__":
    main()
