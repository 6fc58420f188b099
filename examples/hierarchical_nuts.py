"""A hierarchical model with NUTS: the eight schools, centred and non-centred.

Eight schools ran the same SAT coaching programme; school j reports an
estimated effect y_j with a known standard error sigma_j (Rubin 1981; data
from posteriordb, shipped in ``examples/data/eight_schools``). The
hierarchical model pools the schools towards a common mean:

    mu ~ Normal(0, 5),  tau ~ HalfCauchy(5),
    theta_j ~ Normal(mu, tau),  y_j ~ Normal(theta_j, sigma_j).

Written like this (*centred*) the posterior has a funnel: when tau is small
the theta_j are squeezed together and NUTS cannot take the curvature with
one step size, so it reports divergent transitions and under-explores small
tau. The *non-centred* version samples theta_j = mu + tau * eta_j with
eta_j ~ Normal(0, 1): the same model, a geometry NUTS handles. The script
runs both with ``ppl.infer.nuts``, compares divergences and the posterior of
tau, draws posterior predictive replicates of y with ``ppl.infer.predictive``
and saves ArviZ plots:

    python examples/hierarchical_nuts.py [--draws 1000]

writes ``examples/out/hierarchical_nuts.png`` (trace of tau, forest plot of
theta, pair plot of (log tau, theta_1) with divergences, predictive check).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl import dist

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "eight_schools" / "data.json"
OUT = HERE / "out"


@ppl.gen
def centred(sigma):
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    theta = dist.Normal(jnp.full(sigma.shape, mu), tau) @ "theta"
    return dist.Normal(theta, sigma) @ "y"


@ppl.gen
def non_centred(sigma):
    mu = dist.Normal(0.0, 5.0) @ "mu"
    tau = dist.HalfCauchy(5.0) @ "tau"
    eta = dist.Normal(jnp.zeros(sigma.shape), 1.0) @ "eta"
    theta = ppl.deterministic("theta", mu + tau * eta)
    return dist.Normal(theta, sigma) @ "y"


def load() -> tuple[jax.Array, jax.Array]:
    d = json.loads(DATA.read_text())
    return jnp.asarray(d["y"], jnp.float32), jnp.asarray(d["sigma"], jnp.float32)


def fit(model, y, sigma, draws: int, seed: int) -> ppl.infer.MCMCResult:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl.infer.DivergenceWarning)  # reported below
        return ppl.infer.nuts(
            jax.random.key(seed), model, (sigma,), {"y": y}, num_warmup=draws, num_samples=draws, num_chains=4
        )


def plot(results: dict, idata, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for name, r in results.items():
        tau = r.samples["tau"]
        axes[0, 0].hist(
            np.log(tau.reshape(-1)), bins=60, density=True, alpha=0.5, label=f"{name} ({r.num_divergences} div.)"
        )
    axes[0, 0].set_xlabel("log tau")
    axes[0, 0].set_title("posterior of log tau: the centred chains miss the funnel's neck")
    axes[0, 0].legend()
    # a forest plot drawn here: ArviZ 1.x's az.plot_forest makes its own figure (no ax=)
    theta = idata.posterior["theta"].values.reshape(-1, idata.posterior["theta"].shape[-1])
    lo, mid, hi = np.quantile(theta, [0.03, 0.5, 0.97], axis=0)
    school = np.arange(theta.shape[1])
    axes[0, 1].errorbar(mid, school, xerr=[mid - lo, hi - mid], fmt="o", capsize=4)
    axes[0, 1].set_yticks(school, [f"theta[{j}]" for j in school])
    axes[0, 1].invert_yaxis()
    axes[0, 1].set_title("theta_j (non-centred): medians, central 94% intervals")
    c = results["centred"]
    div = c.diverging.reshape(-1)
    lt, t1 = np.log(c.samples["tau"].reshape(-1)), c.samples["theta"][..., 0].reshape(-1)
    axes[1, 0].scatter(t1[~div], lt[~div], s=3, alpha=0.3, label="draws")
    axes[1, 0].scatter(t1[div], lt[div], s=12, color="red", label="divergent")
    axes[1, 0].set_xlabel("theta_1")
    axes[1, 0].set_ylabel("log tau")
    axes[1, 0].set_title("centred: divergences sit in the funnel")
    axes[1, 0].legend()
    rep = idata.posterior_predictive["y"].values.reshape(-1, idata.observed_data["y"].size)
    lo, mid, hi = np.quantile(rep, [0.05, 0.5, 0.95], axis=0)
    j = np.arange(rep.shape[1])
    axes[1, 1].errorbar(j, mid, yerr=[mid - lo, hi - mid], fmt="o", color="C1", capsize=4, label="replicated y_j (90%)")
    axes[1, 1].scatter(j, idata.observed_data["y"].values, color="black", zorder=3, label="observed y_j")
    axes[1, 1].set_xlabel("school j")
    axes[1, 1].set_title("posterior predictive check (non-centred)")
    axes[1, 1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=1000, help="warm-up iterations and draws per chain")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    y, sigma = load()
    results = {}
    for name, model in (("centred", centred), ("non-centred", non_centred)):
        t = time.perf_counter()
        results[name] = r = fit(model, y, sigma, a.draws, a.seed)
        print(f"\n== {name}: {time.perf_counter() - t:.1f} s (compilation included)")
        print(r)
    c, n = results["centred"], results["non-centred"]
    print(
        f"\ndivergent transitions: centred {c.num_divergences}, non-centred {n.num_divergences}; "
        f"P(tau < 1): centred {np.mean(c.samples['tau'] < 1):.3f}, non-centred {np.mean(n.samples['tau'] < 1):.3f}"
    )
    replicates = ppl.infer.predictive(jax.random.key(a.seed + 1), non_centred, (sigma,), n)
    idata = n.to_arviz(posterior_predictive=replicates)
    p_value = np.mean(replicates["y"].max(axis=-1) >= float(y.max()))
    print(f"posterior predictive p-value of max_j y_j: {p_value:.2f}")
    path = OUT / "hierarchical_nuts.png"
    plot(results, idata, path)
    print(f"plots: {path}")


if __name__ == "__main__":
    main()
