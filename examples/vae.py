"""A Bernoulli variational autoencoder on scikit-learn's handwritten digits.

The 8x8 digits (1,797 images, bundled with scikit-learn) are binarised
(pixel > 8) and modelled as

    z_i ~ Normal(0, I_16),    x_i | z_i ~ Bernoulli(logits = decoder(z_i)),   i = 1..B,

with an amortised guide ``z_i | x_i ~ Normal(encoder(x_i))``; encoder
(64-256-relu-32) and decoder (16-256-relu-64) are equinox MLPs, trained
together with ``ppl.vi.fit``: the decoder is an argument of the model, the
encoder an argument of the guide, and the objective's gradient reaches both.

The model and guide describe one image; the objectives are per-image bounds
(the observations are read from the model's arguments) summed over each
minibatch with ``ppl.vi.batch_sum``. Two models are trained, one on the ELBO
and one on the IWAE bound with K = 8 particles per image; both are scored on
held-out digits by the per-image IWAE bound with K = 256 (a tight lower
bound on log p(x)).

    python examples/vae.py [--steps 3000]

writes ``examples/out/vae.png`` (test digits, reconstructions, samples).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import ppl
from ppl import dist

LATENT, HIDDEN, PIXELS, BATCH = 16, 256, 64, 128
OUT = Path(__file__).resolve().parent / "out"


# ---------------------------------------------------------------- model and guide


@ppl.gen
def model(decoder, x):
    """p(z, x) for one image: a 16-dimensional standard normal code, Bernoulli pixels.

    ``x`` is an argument only so the objective can read the observed pixels
    from the model's arguments (one image per evaluation, see ``bound``).
    """
    z = dist.Normal(jnp.zeros(LATENT), 1.0).to_event(1) @ "z"
    return dist.Bernoulli(logits=decoder(z)).to_event(1) @ "x"


@ppl.gen
def guide(encoder, x):
    """q(z | x) for one image: a diagonal normal, mean and log scale from the encoder."""
    out = encoder(x.astype(jnp.float32))
    loc, log_scale = out[:LATENT], out[LATENT:]
    return dist.Normal(loc, jnp.exp(log_scale)).to_event(1) @ "z"


def bound(objective):
    """A per-image bound summed over a batch, reported in nats per image.

    ``objective(model, guide, observations)`` is a bound on log p(x) of one
    image; ``ppl.vi.batch_sum`` evaluates it independently for every image of
    the batch (IWAE's log-mean-exp must be taken per image, not over the
    batch's joint weights). Arguments: ``(decoder, x)`` and ``(encoder, x)``.
    """
    per_point = objective(model, guide, lambda model_args: {"x": model_args[1]})
    summed = ppl.vi.batch_sum(per_point, in_axes=((None, 0), (None, 0)))

    def per_image(key, model_args, guide_args):
        return summed.estimate(key, model_args, guide_args) / model_args[1].shape[0]

    return ppl.vi.expectation(per_image)


ELBO = bound(ppl.vi.elbo)
IWAE8 = bound(lambda m, g, obs: ppl.vi.iwae(m, g, obs, particles=8))
IWAE256 = bound(lambda m, g, obs: ppl.vi.iwae(m, g, obs, particles=256))


# ---------------------------------------------------------------- data and training


def load() -> tuple[np.ndarray, np.ndarray]:
    images = load_digits().data  # (1797, 64), values 0..16
    x = (images > 8).astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(x))
    x = x[perm]
    return x[:1500], x[1500:]


def networks(key):
    k1, k2 = jax.random.split(key)
    encoder = eqx.nn.MLP(PIXELS, 2 * LATENT, HIDDEN, depth=1, activation=jax.nn.relu, key=k1)
    decoder = eqx.nn.MLP(LATENT, PIXELS, HIDDEN, depth=1, activation=jax.nn.relu, key=k2)
    return decoder, encoder


def batch_fn(params, batch):
    decoder, encoder = params
    return (decoder, batch.data), (encoder, batch.data)


def train(objective, x_train, steps, seed):
    decoder, encoder = networks(jax.random.key(seed))
    return ppl.vi.fit(
        jax.random.key(seed + 1),
        objective,
        (decoder, encoder),
        optax.adam(optax.cosine_decay_schedule(2e-3, steps, alpha=0.1)),
        steps=steps,
        data=x_train,
        batch_size=BATCH,
        batch_fn=batch_fn,
        chunk_size=250,
    )


def test_bound(params, x_test, key):
    decoder, encoder = params
    x = jnp.asarray(x_test)
    return float(IWAE256.estimate(key, (decoder, x), (encoder, x)))


# ---------------------------------------------------------------- pictures


def reconstruct(params, x):
    decoder, encoder = params
    out = jax.vmap(encoder)(jnp.asarray(x, jnp.float32))
    return jax.nn.sigmoid(jax.vmap(decoder)(out[:, :LATENT]))


def plot(x_test, recon_elbo, recon_iwae, samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("test digits", x_test),
        ("ELBO VAE", recon_elbo),
        ("IWAE VAE", recon_iwae),
        ("samples (ELBO VAE)", samples),
    ]
    fig, axes = plt.subplots(len(rows), 12, figsize=(12, 4.6))
    for r, (label, imgs) in enumerate(rows):
        for c in range(12):
            ax = axes[r, c]
            ax.imshow(np.asarray(imgs[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Bernoulli VAE on binarised 8x8 digits: pixel probabilities")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=OUT / "vae.png")
    args = parser.parse_args(argv)

    x_train, x_test = load()
    print(f"digits: {len(x_train)} training and {len(x_test)} test images, {PIXELS} binary pixels")
    results = {}
    for name, objective, seed in (("ELBO", ELBO, 0), ("IWAE K=8", IWAE8, 10)):
        t0 = time.perf_counter()
        res = train(objective, x_train, args.steps, seed)
        seconds = time.perf_counter() - t0
        bound = test_bound(res.params, x_test, jax.random.key(99))
        results[name] = res
        late = res.history[-250:].mean()
        print(
            f"{name:9s} trained {res.step} steps in {seconds:5.1f} s; training objective (last 250 steps) "
            f"{late:7.2f} nats/image; test log p(x) >= {bound:7.2f} (IWAE, K=256)"
        )

    decoder = results["ELBO"].params[0]
    z = jax.random.normal(jax.random.key(3), (12, LATENT))
    samples = jax.nn.sigmoid(jax.vmap(decoder)(z))
    plot(
        x_test[:12],
        reconstruct(results["ELBO"].params, x_test[:12]),
        reconstruct(results["IWAE K=8"].params, x_test[:12]),
        samples,
        args.out,
    )
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
