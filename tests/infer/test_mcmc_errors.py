"""Bad input to the MCMC kernels and runners gets a clear ppl error (never a silent NaN posterior)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import ppl
from ppl import dist
from ppl.errors import (
    ConstraintShapeError,
    InferenceError,
    InitializationError,
    PPLError,
    SelectionError,
    UnvisitedConstraintError,
)
from ppl.infer import kernels as K

KEY = jax.random.key(0)
SHORT = dict(num_warmup=10, num_samples=10, num_chains=2, progress_bar=False)


@ppl.gen
def normal_model(n):
    mu = dist.Normal(0.0, 2.0) @ "mu"
    dist.Normal(jnp.full(n, mu), 1.0) @ "y"


Y = jnp.array([1.0, 2.0, 0.5])


@ppl.gen
def discrete_latent():
    z = dist.Bernoulli(0.5) @ "z"
    dist.Normal(z * 1.0, 1.0) @ "y"


def test_observation_at_unknown_address() -> None:
    with pytest.raises(UnvisitedConstraintError, match=r"'sigma'.*never visits.*'mu', 'y'"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y, "sigma": 1.0}, **SHORT)
    with pytest.raises(UnvisitedConstraintError, match="'sigma'"):
        ppl.infer.mh(KEY, normal_model, (3,), {"y": Y, "sigma": 1.0}, **SHORT)


def test_hmc_selection_naming_a_discrete_choice() -> None:
    tr, _ = discrete_latent.generate(KEY, {"y": 0.3}, ())
    for kernel in (K.hmc(ppl.select("z"), 0.1, 3), K.nuts(ppl.select("z"), 0.1), K.mala(ppl.select("z"), 0.1)):
        with pytest.raises(SelectionError, match=r"'z', a discrete choice"):
            kernel.init(tr)


def test_gradient_runner_on_a_model_with_discrete_latents() -> None:
    with pytest.raises(SelectionError, match=r"nuts moves continuous choices only.*discrete latent choices at 'z'"):
        ppl.infer.nuts(KEY, discrete_latent, (), {"y": 0.3}, **SHORT)


def test_model_with_no_latent_choices() -> None:
    with pytest.raises(InferenceError, match="no latent choices"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y, "mu": 0.0}, **SHORT)
    with pytest.raises(InferenceError, match="no latent choices"):
        ppl.infer.run_mcmc(KEY, K.mh(ppl.select("mu")), normal_model, (3,), {"y": Y, "mu": 0.0}, **SHORT)


def test_density_minus_infinity_everywhere_names_the_choice() -> None:
    @ppl.gen
    def impossible():
        rate = dist.HalfNormal(1.0) @ "rate"
        dist.Exponential(rate) @ "y"

    # y = -1 is outside the Exponential's support for every rate
    with pytest.raises(InitializationError, match=r"non-finite log density at 'y'"):
        ppl.infer.nuts(KEY, impossible, (), {"y": -1.0}, **SHORT)


def test_nan_density_from_a_factor() -> None:
    @ppl.gen
    def nan_factor():
        s = dist.HalfNormal(1.0) @ "s"
        ppl.factor("bad", jnp.log(-s))  # NaN for every s > 0
        dist.Normal(0.0, s) @ "y"

    with pytest.raises(InitializationError, match=r"ppl\.factor term is non-finite"):
        ppl.infer.hmc(KEY, nan_factor, (), {"y": 0.5}, **SHORT)
    with pytest.raises(InitializationError, match="no initial trace with a finite log density"):
        ppl.infer.mh(KEY, nan_factor, (), {"y": 0.5}, **SHORT)


def test_init_outside_the_support() -> None:
    @ppl.gen
    def scale_model():
        s = dist.HalfNormal(1.0) @ "s"
        dist.Normal(0.0, s) @ "y"

    with pytest.raises(InitializationError, match="init values you gave"):
        ppl.infer.nuts(KEY, scale_model, (), {"y": 0.5}, init={"s": -1.0}, **SHORT)


def test_bad_init_values() -> None:
    with pytest.raises(InferenceError, match=r"init gives a value at 'sigma', which is not a choice"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y}, init={"sigma": 1.0}, **SHORT)
    with pytest.raises(InferenceError, match=r"'y', which is observed"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y}, init={"y": Y}, **SHORT)
    with pytest.raises(ConstraintShapeError, match=r"init value at 'mu' has shape \(3,\)"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y}, init={"mu": jnp.zeros(3)}, **SHORT)


def test_bad_run_settings() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y}, num_samples=0)
    with pytest.raises(ValueError, match="target_accept"):
        ppl.infer.nuts(KEY, normal_model, (3,), {"y": Y}, target_accept=1.5)
    with pytest.raises(TypeError, match="PRNG key"):
        ppl.infer.nuts(0, normal_model, (3,), {"y": Y})
    with pytest.raises(TypeError, match="must be a tuple"):
        ppl.infer.nuts(KEY, normal_model, 3, {"y": Y})


def test_bad_kernels() -> None:
    with pytest.raises(PPLError, match="not an MCMCKernel"):
        K.cycle(K.mh("mu"), "nuts")
    with pytest.raises(PPLError, match="weights"):
        K.mixture([K.mh("mu"), K.mh("mu")], [1.0])
    with pytest.raises(PPLError, match="returned a str"):
        ppl.infer.run_mcmc(KEY, lambda latent: "kernel", normal_model, (3,), {"y": Y}, **SHORT)
    tr, _ = normal_model.generate(KEY, {"y": Y}, (3,))
    with pytest.raises(SelectionError, match=r"gibbs\('mu'\).*no finite support"):
        K.gibbs("mu").init(tr)
    with pytest.raises(SelectionError, match=r"gibbs\('w'\).*no choice at that address"):
        K.gibbs("w").init(tr)
    with pytest.raises(ValueError, match=r"inverse_mass_matrix has shape \(3,\)"):
        K.hmc(ppl.select("mu"), 0.1, 2, inverse_mass_matrix=jnp.ones(3)).step(
            KEY, K.hmc(ppl.select("mu"), 0.1, 2).init(tr)
        )
