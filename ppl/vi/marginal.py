r"""Approximate marginalisation and normalisation as generative functions.

Both constructs return a generative function whose densities are
*estimated by importance sampling* ("stochastic probabilities": the density
of a choice map is not computed but estimated with internal randomness).
They sample through ordinary GFI calls, so under ``ppl.vi.expectation``
their internal choices are transformed like any other (reparameterised,
REINFORCE, ...), and objectives use them exactly like plain guides and
models: :func:`ppl.vi.iwhvi` is ``elbo(model, marginal(guide, aux,
reverse, K))``.

``marginal(gen_fn, aux, proposal, particles=K)``
================================================

``gen_fn`` makes choices ``(z, psi)`` with density ``q(z, psi)``; ``aux``
selects the auxiliary ``psi``. The marginal is the generative function over
``z`` alone, with density ``q(z) = integral q(z, psi) dpsi``. With a
proposal ``r(psi | z)`` (a generative function called as ``proposal(z,
*args)`` that samples the ``aux`` addresses) and weights
``w(psi) = q(z, psi) / r(psi | z)``:

* ``simulate``: ``(z, psi_0) ~ q``, then ``psi_1..psi_K ~ r(. | z)``;
  the score is ``log (1/(K+1)) sum_{k=0}^{K} w(psi_k)``. Because ``psi_0``
  is an exact draw from ``q(psi | z)``, ``exp(-score)`` is an *unbiased
  estimate of 1/q(z)*, so ``E[score] >= log q(z)``: used as ``log q`` in an
  ELBO it gives a lower bound on the ELBO (the IWHVI bound; ``K = 0`` is
  the hierarchical-VI bound with reverse model ``r``). The bound tightens as
  ``K`` grows.
* ``generate(key, z)``: ``psi_1..psi_K ~ r(. | z)``; the weight is
  ``log (1/K) sum_k w(psi_k)``, the *log of an unbiased estimate of q(z)*, so
  ``E[weight] <= log q(z)`` (needs ``K >= 1``). Used as the model's density
  (a model with nuisance variables ``psi``), the ELBO stays a lower bound
  on ``log p(x)``.
* ``assess`` is not defined (a density estimate needs randomness: use
  ``generate``), nor are ``update`` and ``regenerate``.

Without a proposal, ``psi`` is proposed from ``gen_fn`` itself given ``z``
(``gen_fn.generate`` with ``z`` constrained, weight ``q(z | psi)`` when
``psi`` comes first): the semi-implicit / prior-proposal estimator.

``normalize(model, observations, proposal, particles=K)``
=========================================================

Sampling importance resampling: the normalised posterior ``p(z | x)`` of a
model with observations ``x``, approximated with ``K`` particles ``z_k ~
r`` (a proposal generative function over the model's latents) weighted
``w_k = p(x, z_k) / r(z_k)`` and one of them picked with probability
``w_k / sum_j w_j``. ``simulate``'s score is ``log p(x, z) - log Z_hat``
with ``Z_hat = (1/K) sum_k w_k``, an unbiased estimate of ``p(x)``: used as
a guide in the ELBO it gives exactly ``E[log Z_hat]``, the IWAE bound. The
index is a random choice (REINFORCE by default under ``ppl.vi``: in the
ELBO its learning signal ``log Z_hat`` does not depend on it, so it only
adds zero-mean noise). Arguments are ``(model_args, proposal_args)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from numpyro.distributions import Categorical

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import sample_value
from ppl.core.selection import Selection, as_selection
from ppl.core.trace import Trace
from ppl.errors import MissingChoiceError, PPLError
from ppl.vi.expectation import vmap


class EstimatedTrace(Trace):
    """Trace of a generative function whose score is a density *estimate*."""

    _dynamic_fields = ("gen_fn", "score", "stored_choices")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, retval: Any, score: Any, choices: ChoiceMap):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = retval
        self.score = score
        self.stored_choices = choices

    @property
    def choices(self) -> ChoiceMap:
        return self.stored_choices


def _no_method(gf: GenerativeFunction, method: str, hint: str) -> PPLError:
    return PPLError(f"{gf.name}.{method} is not defined: its density is estimated by sampling; {hint}")


def _check_particles(particles: Any, minimum: int, what: str) -> int:
    if not isinstance(particles, int) or isinstance(particles, bool) or particles < minimum:
        raise PPLError(f"{what}: particles must be an int >= {minimum}, got {particles!r}")
    return particles


class Marginal(GenerativeFunction):
    """``gen_fn`` with the ``aux`` choices integrated out by importance sampling (see module docstring)."""

    def __init__(self, gen_fn: GenerativeFunction, aux: Selection, proposal: GenerativeFunction | None, particles: int):
        self.gen_fn = gen_fn
        self.aux = aux
        self.proposal = proposal
        self.particles = particles
        self.name = f"marginal({gen_fn.name})"

    def _weights(self, key: Any, z: ChoiceMap, args: tuple, n: int) -> tuple[Any, Any]:
        """``n`` log weights ``log q(z, psi_k) - log r(psi_k | z)`` with ``psi_k ~ r``, and the first retval."""

        if self.proposal is None:

            def one(k: Any) -> Any:
                tr, w = self.gen_fn.generate(k, z, args)
                extra = [a for a in tr.choices.addresses() if a not in z and not self.aux.contains(a)]
                if extra:
                    raise MissingChoiceError(
                        f"{self.name}: no value given at {', '.join(format_address(a) for a in extra[:8])}, "
                        f"which is not auxiliary ({self.aux}); give every non-auxiliary choice"
                    )
                return w, tr.retval

        else:

            def one(k: Any) -> Any:
                r = self.proposal.simulate(k, (z, *args))
                log_q, retval = self.gen_fn.assess(z | r.choices, args)
                return log_q - r.score, retval

        logw, retvals = vmap(one)(jax.random.split(key, n))
        return logw, jax.tree_util.tree_map(lambda x: x[0], retvals)

    def _first_weight(self, trace: Trace, z: ChoiceMap, args: tuple) -> Any:
        """The weight of the exact draw ``psi_0`` that produced ``z``."""
        if self.proposal is None:
            return trace.project(self.aux.complement())
        psi0 = trace.choices.filter(self.aux)
        log_r, _ = self.proposal.assess(psi0, (z, *args))
        return trace.score - log_r

    def _simulate(self, key: Any, args: tuple) -> EstimatedTrace:
        k0, k1 = jax.random.split(key)
        trace = self.gen_fn.simulate(k0, args)
        z = trace.choices.without(self.aux)
        logw0 = self._first_weight(trace, z, args)
        if self.particles == 0:
            score = logw0
        else:
            logw, _ = self._weights(k1, z, args, self.particles)
            score = logsumexp(jnp.concatenate([logw0[None], logw])) - math.log(self.particles + 1)
        return EstimatedTrace(self, args, trace.retval, score, z)

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[EstimatedTrace, Any]:
        if constraints.is_empty():
            return self._simulate(key, args), jnp.zeros(())
        bad = [a for a in constraints.addresses() if self.aux.contains(a)]
        if bad:
            raise PPLError(
                f"{self.name}: {', '.join(format_address(a) for a in bad)} are auxiliary choices, integrated out; "
                "they cannot be given"
            )
        if self.particles < 1:
            raise PPLError(f"{self.name}: estimating the density of given choices needs particles >= 1")
        logw, retval = self._weights(key, constraints, args, self.particles)
        weight = logsumexp(logw) - math.log(self.particles)
        return EstimatedTrace(self, args, retval, weight, constraints), weight

    def _assess(self, choices: ChoiceMap, args: tuple) -> Any:
        raise _no_method(
            self, "assess", "use generate(key, choices, args), whose weight is the log of an unbiased estimate"
        )

    def _update(self, *a: Any) -> Any:
        raise _no_method(self, "update", "marginals are for objectives (simulate/generate), not MCMC")

    def _regenerate(self, *a: Any) -> Any:
        raise _no_method(self, "regenerate", "marginals are for objectives (simulate/generate), not MCMC")


def marginal(
    gen_fn: GenerativeFunction,
    aux: Any,
    proposal: GenerativeFunction | None = None,
    *,
    particles: int = 1,
) -> Marginal:
    """``gen_fn`` with the choices selected by ``aux`` integrated out by importance sampling.

    ``proposal(z_choices, *args)`` proposes the auxiliary choices given the
    others (``None``: propose them from ``gen_fn`` itself). See
    :mod:`ppl.vi.marginal` for what the score and weights estimate.
    """
    if not isinstance(gen_fn, GenerativeFunction):
        raise PPLError(f"ppl.vi.marginal needs a generative function, got {type(gen_fn).__name__}")
    if proposal is not None and not isinstance(proposal, GenerativeFunction):
        raise PPLError(
            f"ppl.vi.marginal: proposal must be a generative function or None, got {type(proposal).__name__}"
        )
    return Marginal(gen_fn, as_selection(aux), proposal, _check_particles(particles, 0, "ppl.vi.marginal"))


class Normalized(GenerativeFunction):
    """Sampling importance resampling from ``p(z | observations)`` (see module docstring)."""

    def __init__(
        self, model: GenerativeFunction, observations: ChoiceMap, proposal: GenerativeFunction, particles: int
    ):
        self.model = model
        self.observations = observations
        self.proposal = proposal
        self.particles = particles
        self.name = f"normalize({model.name})"

    def _split(self, args: tuple) -> tuple[tuple, tuple]:
        if len(args) != 2 or not all(isinstance(a, tuple) for a in args):
            raise PPLError(f"{self.name} takes (model_args, proposal_args), two tuples; got {len(args)} arguments")
        return args

    def _simulate(self, key: Any, args: tuple) -> EstimatedTrace:
        from ppl.vi.objectives.common import log_density  # the objectives import this module

        model_args, proposal_args = self._split(args)
        k_particles, k_index = jax.random.split(key)

        def one(k: Any) -> Any:
            k_r, k_p = jax.random.split(k)
            r = self.proposal.simulate(k_r, proposal_args)
            log_p, retval = log_density(k_p, self.model, r.choices | self.observations, model_args)
            return log_p - r.score, log_p, r.choices, retval

        logw, log_p, choices, retvals = vmap(one)(jax.random.split(k_particles, self.particles))
        with context.path(("sir_index",)):
            j = sample_value(k_index, Categorical(logits=logw))
        pick = lambda x: x[j]  # noqa: E731
        log_z = logsumexp(logw) - math.log(self.particles)
        score = log_p[j] - log_z
        return EstimatedTrace(self, args, jax.tree_util.tree_map(pick, retvals), score, choices.map(pick))

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[EstimatedTrace, Any]:
        if constraints.is_empty():
            return self._simulate(key, args), jnp.zeros(())
        raise _no_method(self, "generate with constraints", "only simulate is defined for a SIR posterior")

    def _assess(self, choices: ChoiceMap, args: tuple) -> Any:
        raise _no_method(self, "assess", "only simulate is defined for a SIR posterior")

    def _update(self, *a: Any) -> Any:
        raise _no_method(self, "update", "only simulate is defined for a SIR posterior")

    def _regenerate(self, *a: Any) -> Any:
        raise _no_method(self, "regenerate", "only simulate is defined for a SIR posterior")


def normalize(
    model: GenerativeFunction,
    observations: Any,
    proposal: GenerativeFunction,
    *,
    particles: int,
) -> Normalized:
    """The SIR approximation of ``p(z | observations)``; call it with ``(model_args, proposal_args)``."""
    for what, gf in (("model", model), ("proposal", proposal)):
        if not isinstance(gf, GenerativeFunction):
            raise PPLError(f"ppl.vi.normalize: {what} must be a generative function, got {type(gf).__name__}")
    return Normalized(model, as_choicemap(observations), proposal, _check_particles(particles, 1, "ppl.vi.normalize"))


__all__ = ["EstimatedTrace", "Marginal", "Normalized", "marginal", "normalize"]
