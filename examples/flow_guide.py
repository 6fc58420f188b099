"""A flow guide and NeuTra on a funnel from real data: the eight schools, centred.

The centred eight-schools posterior (data from posteriordb, shipped in
``examples/data/eight_schools``; the model is ``centred`` in
``examples/hierarchical_nuts.py``) is a funnel in ``(log tau, theta)``. This
script compares, on that one model:

1. a mean-field normal guide (``ppl.vi.auto_normal``) and a flow guide
   (``ppl.vi.auto_flow``, an inverse autoregressive flow over all ten
   unconstrained latents) trained with the ELBO: the flow reaches a higher
   bound and puts mass down the funnel's neck;
2. plain NUTS on the centred model, which diverges in the neck;
3. NeuTra (``ppl.infer.neutra``): NUTS in the base space of a flow guide
   trained by reweighted wake-sleep (mass-covering), with the model's
   latents recorded at their own addresses. Exact MCMC, easier geometry.

    python examples/flow_guide.py [--steps 4000] [--draws 1000]

writes ``examples/out/flow_guide.png`` (draws of (log tau, theta_1) under each
method) and prints a table: ELBO, divergences, ESS of log tau, mean and sd of
log tau.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import jax
import numpy as np
import optax

import ppl

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))
from hierarchical_nuts import centred, load


def elbo_of(model, guide, obs, model_args, params, n: int = 4000) -> tuple[float, float]:
    est = ppl.vi.elbo(model, guide, obs)
    vals = np.asarray(jax.vmap(lambda k: est.estimate(k, model_args, params))(jax.random.split(jax.random.key(9), n)))
    return float(vals.mean()), float(vals.std() / np.sqrt(n))


def guide_draws(guide, params, n: int) -> dict:
    return ppl.vi.sample_posterior(jax.random.key(11), guide, params, n)


def run_nuts(model, args, obs, draws: int, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divergences are reported in the table
        return ppl.infer.nuts(
            jax.random.key(seed), model, args, obs, num_warmup=draws, num_samples=draws, num_chains=4,
            target_accept=0.9, progress_bar=False,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps per guide")
    p.add_argument("--draws", type=int, default=1000, help="NUTS warm-up and draws per chain")
    p.add_argument("--out", default=str(OUT / "flow_guide.png"))
    a = p.parse_args(argv)

    y, sigma = load()
    obs = {"y": y}
    args = (sigma,)
    summary: dict = {}
    draws: dict = {}
    t0 = time.perf_counter()

    opt = optax.adam(optax.linear_schedule(3e-3, 3e-4, a.steps))
    normal, nargs = ppl.vi.auto_normal(centred, args, obs)
    fit_n = ppl.vi.fit(jax.random.key(0), ppl.vi.elbo(centred, normal, obs), (args, nargs), opt, steps=a.steps,
                       trainable=(False, True), progress_bar=False)  # fmt: skip
    flow = lambda k, d: ppl.flows.iaf(k, d, layers=3, width=32)  # noqa: E731
    fguide, fargs = ppl.vi.auto_flow(centred, args, obs, flow=flow)
    fit_f = ppl.vi.fit(jax.random.key(0), ppl.vi.elbo(centred, fguide, obs), (args, fargs), opt, steps=a.steps,
                       trainable=(False, True), progress_bar=False)  # fmt: skip
    for name, g, res in (("mean-field ELBO", normal, fit_n), ("flow ELBO", fguide, fit_f)):
        summary[name] = {"elbo": elbo_of(centred, g, obs, args, res.params[1])[0]}
        d = guide_draws(g, res.params[1], 4 * a.draws)
        draws[name] = (np.log(np.asarray(d["tau"])), np.asarray(d["theta"])[:, 0])

    rguide, rargs = ppl.vi.auto_flow(centred, args, obs, flow=flow)
    fit_r = ppl.vi.fit(jax.random.key(1), ppl.vi.rws(centred, rguide, obs, particles=16), (args, rargs), opt,
                       steps=a.steps, trainable=(False, True), progress_bar=False)  # fmt: skip
    plain = run_nuts(centred, args, obs, a.draws, 2)
    neutra = run_nuts(ppl.infer.neutra(centred, obs, rguide, fit_r.params[1][0]), args, None, a.draws, 2)
    for name, r in (("NUTS", plain), ("NeuTra NUTS", neutra)):
        log_tau = np.log(np.asarray(r.samples["tau"]))
        summary[name] = {"divergences": int(r.num_divergences), "ess_log_tau": float(az.ess(log_tau))}
        draws[name] = (log_tau.ravel(), np.asarray(r.samples["theta"])[..., 0].ravel())
    for name, (lt, _) in draws.items():
        summary[name].update(mean_log_tau=float(lt.mean()), sd_log_tau=float(lt.std()))

    print(f"{'method':<16} {'ELBO':>8} {'divergences':>12} {'ESS log tau':>12} {'mean log tau':>13} {'sd':>6}")
    for name, s in summary.items():
        elbo = f"{s['elbo']:8.2f}" if "elbo" in s else f"{'':8}"
        div = f"{s['divergences']:12d}" if "divergences" in s else f"{'':12}"
        ess = f"{s['ess_log_tau']:12.0f}" if "ess_log_tau" in s else f"{'':12}"
        print(f"{name:<16} {elbo} {div} {ess} {s['mean_log_tau']:13.2f} {s['sd_log_tau']:6.2f}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    plot(draws, Path(a.out))
    return summary


def plot(draws: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(draws), figsize=(4 * len(draws), 3.6), sharex=True, sharey=True)
    for ax, (name, (lt, th)) in zip(axes, draws.items()):
        ax.scatter(th[:2000], lt[:2000], s=3, alpha=0.3)
        ax.set_title(name)
        ax.set_xlabel("theta_1")
    axes[0].set_ylabel("log tau")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
