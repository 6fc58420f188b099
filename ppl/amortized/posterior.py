r"""Using a trained amortized posterior: draws, densities, an exact importance correction, MCMC starts.

``posterior = result.posterior(x_obs)`` is ``q(theta | x_obs)``:

* ``posterior.sample(key, n)``: ``{address: [n, ...]}``, constrained values
  at the model's addresses (a form ``ppl.diagnostics.sbc`` reads);
* ``posterior.log_prob(theta)``: ``log q(theta | x_obs)`` of constrained
  values (leading batch dimensions allowed), Jacobian of the unconstraining
  transforms included;
* ``posterior.importance(key, particles)``: ``ppl.infer.importance`` on the
  model with ``q`` as the proposal. Self-normalised importance sampling
  corrects ``q``'s approximation error exactly as ``particles`` grows, and
  ``log_marginal_likelihood()`` estimates ``log p(x_obs)`` (unbiased in
  ``p(x_obs)``). It needs the model's density of the observations, so not
  for observations that are ``ppl.deterministic`` values or have no density;
* ``posterior.mcmc_init(key, num_chains)``: one draw per chain, a
  ``ChoiceMap`` for ``ppl.infer.nuts(..., init=...)``.

``q`` as a generative function is :class:`AmortizedProposal`
(``result.proposal``). A flow couples all parameters, so, as
``ppl.vi.AutoFlow``, it makes one joint draw (a reparameterised random
choice at the hidden address ``__ppl_npe__``) and records the model's own
parameter addresses with their constrained values; its score is ``log
q(theta | x)``. Its arguments follow ``ppl.infer.importance``'s convention,
``(observations, *model_args)``: it reads ``x`` from the observations, so
one proposal serves every data set. ``assess``/``generate`` take every
parameter or none (a joint flow has no tractable conditionals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ppl.amortized.layout import address_key
from ppl.core import context
from ppl.core.address import format_address, normalize
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.core.primitive import sample_value
from ppl.core.selection import Selection
from ppl.core.trace import Trace
from ppl.errors import AmortizedError
from ppl.flows.distribution import typed_key
from ppl.vi.guides.flow import FlowTrace

#: the address of the flow's own draw (not a model address; it never leaves the proposal)
PROPOSAL_ADDRESS = ("__ppl_npe__",)


@eqx.filter_jit
def _sample(estimator: Any, key: Any, x: Any, n: int) -> tuple[list, Any]:
    return estimator.sample(typed_key(key), x, n)


@eqx.filter_jit
def _log_prob(estimator: Any, values: list, x: Any) -> Any:
    return estimator.log_prob(values, x)


class AmortizedPosterior:
    """``q(theta | x_obs)`` from an :class:`~ppl.amortized.NPEResult` (see the module docstring)."""

    def __init__(self, result: Any, x_obs: Any):
        self.result = result
        self.estimator = result.estimator
        layout = self.estimator.layout
        self.x = layout.observation(x_obs, "NPEResult.posterior")
        x = np.asarray(self.x)
        #: the observation as a ChoiceMap at the observed addresses
        self.observations = ChoiceMap(
            {s.address: np.reshape(x[s.offset : s.offset + s.size], s.shape) for s in layout.observed}
        )

    @property
    def layout(self) -> Any:
        return self.estimator.layout

    def sample(self, key: Any, n: int) -> dict:
        """``n`` draws: ``{address: [n, ...]}`` (constrained; ``"mu"`` for a one-component address)."""
        return self.sample_and_log_prob(key, n, "sample")[0]

    def sample_and_log_prob(self, key: Any, n: int, where: str = "sample_and_log_prob") -> tuple[dict, Any]:
        """``(draws, log q(draws | x_obs) [n])`` from one pass of the flow."""
        key = check_key(key, f"AmortizedPosterior.{where}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise AmortizedError(f"AmortizedPosterior.{where}: n must be a positive int, got {n!r}")
        values, lq = _sample(self.estimator, key, self.x, n)
        return {address_key(s.address): v for s, v in zip(self.layout.parameters, values)}, lq

    def log_prob(self, theta: Any) -> Any:
        """``log q(theta | x_obs)`` of constrained values: a dict / ChoiceMap at every parameter address,
        each ``[*batch, *shape]`` with the same ``batch``; returns an array of shape ``batch``."""
        cm = as_choicemap(theta)
        values, batch = [], None
        for s in self.layout.parameters:
            if s.address not in cm:
                raise AmortizedError(
                    f"AmortizedPosterior.log_prob: no value at {format_address(s.address)}; give every parameter "
                    f"({', '.join(format_address(a) for a in self.layout.parameter_addresses)})"
                )
            v = jnp.asarray(cm[s.address], jnp.float32)
            k = v.ndim - len(s.shape)
            if k < 0 or tuple(v.shape[k:]) != s.shape or (batch is not None and tuple(v.shape[:k]) != batch):
                raise AmortizedError(
                    f"AmortizedPosterior.log_prob: the value at {format_address(s.address)} has shape "
                    f"{tuple(v.shape)}; expected [*batch, *{s.shape}]"
                    + ("" if batch is None else f" with batch {batch} (as the other parameters)")
                )
            batch = tuple(v.shape[:k])
            values.append(jnp.reshape(v, (-1, *s.shape)))
        lp = _log_prob(self.estimator, values, self.x)
        return jnp.reshape(lp, batch)

    def as_proposal(self) -> AmortizedProposal:
        """``q`` as a proposal generative function (it reads ``x`` from the observations it is given)."""
        return self.result.proposal

    def importance(self, key: Any, particles: int = 1000) -> Any:
        """``ppl.infer.importance`` on the model given ``x_obs``, with ``q`` as the proposal."""
        from ppl.infer.importance import importance

        dets = [format_address(s.address) for s in self.layout.observed if s.deterministic]
        if dets:
            raise AmortizedError(
                f"AmortizedPosterior.importance: {', '.join(dets)} are ppl.deterministic values; importance "
                "sampling needs the model's density of the observations, which such values do not have"
            )
        return importance(
            key,
            self.result.model,
            self.result.args,
            self.observations,
            particles=particles,
            proposal=self.result.proposal,
        )

    def mcmc_init(self, key: Any, num_chains: int) -> ChoiceMap:
        """Starting values for ``num_chains`` MCMC chains: ``{address: [num_chains, ...]}`` draws from ``q``."""
        draws = self.sample(key, num_chains)
        return ChoiceMap({normalize(a): v for a, v in draws.items()})

    def __repr__(self) -> str:
        return f"AmortizedPosterior({self.result.model.name}, {self.layout.describe()})"


# --------------------------------------------------------- q as a generative function


class AmortizedProposal(GenerativeFunction):
    """``q(theta | x)`` as a generative function over the model's parameter addresses (module docstring).

    Arguments: ``(observations, *model_args)``; the model arguments are ignored.
    """

    _fields = ("estimator", "name")

    def __init__(self, estimator: Any, name: str):
        self.estimator = estimator
        self.name = name

    # ------------------------------------------------------------------ math
    def _x(self, args: tuple, method: str) -> Any:
        if not args:
            raise AmortizedError(f"{self.name}.{method}: the first argument must be the observations (a ChoiceMap)")
        obs = args[0]
        if not isinstance(obs, Mapping):
            raise AmortizedError(
                f"{self.name}.{method}: the first argument must be the observations (a ChoiceMap), got "
                f"{type(obs).__name__}"
            )
        return self.estimator.layout.observation(obs, f"{self.name}.{method}")

    def _score(self, args: tuple, choices: ChoiceMap, method: str) -> Any:
        layout = self.estimator.layout
        values = [jnp.asarray(choices[s.address], jnp.float32) for s in layout.parameters]
        return self.estimator.log_prob([v[None] for v in values], self._x(args, method))[0]

    def _check_given(self, choices: ChoiceMap, method: str) -> str:
        """``"none"`` / ``"all"`` parameters given (else an AmortizedError naming them)."""
        from ppl.vi.guides.flow import all_or_none

        known = list(self.estimator.layout.parameter_addresses)
        return all_or_none(choices, known, f"{self.name}.{method}", AmortizedError, "parameter")

    # ------------------------------------------------------------------- GFI
    def _simulate(self, key: Any, args: tuple) -> FlowTrace:
        est = self.estimator
        x = self._x(args, "simulate")
        d = est.conditional(x)
        with context.path(PROPOSAL_ADDRESS):
            v = sample_value(key, d)
        u = est.theta_loc + est.theta_scale * v
        values, log_det = est.layout.constrain(u)
        score = d.log_prob(v) - jnp.sum(jnp.log(est.theta_scale)) - log_det
        choices = ChoiceMap({s.address: val for s, val in zip(est.layout.parameters, values)})
        return FlowTrace(self, args, score, choices)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        if self._check_given(choices, "assess") == "none":
            raise AmortizedError(f"{self.name}.assess: no parameter values given")
        return self._score(args, choices, "assess"), None

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[FlowTrace, Any]:
        if self._check_given(constraints, "generate") == "none":
            return self._simulate(key, args), jnp.zeros(())
        chosen = ChoiceMap({a: constraints[a] for a in self.estimator.layout.parameter_addresses})
        score = self._score(args, chosen, "generate")
        return FlowTrace(self, args, score, chosen), score

    def _update(self, key: Any, trace: Trace, constraints: ChoiceMap, args: tuple):
        known = self.estimator.layout.parameter_addresses
        extra = [a for a in constraints.addresses() if a not in known]
        if extra:
            raise AmortizedError(f"{self.name}.update: {', '.join(map(format_address, extra))} are not choices")
        old = trace.choices
        new_values, discard_values, discard_masks = {}, {}, {}
        for a in known:
            if a not in constraints:
                new_values[a] = old[a]
                continue
            m, v = constraints.mask(a), jnp.asarray(constraints[a])
            if m is None:
                new_values[a], discard_values[a] = v, old[a]
            else:
                new_values[a] = jnp.where(jnp.asarray(m), v, old[a])
                discard_values[a], discard_masks[a] = old[a], jnp.asarray(m)
        chosen = ChoiceMap(new_values)
        score = self._score(args, chosen, "update")
        return FlowTrace(self, args, score, chosen), score - trace.score, ChoiceMap(discard_values, discard_masks)

    def _regenerate(self, key: Any, trace: Trace, selection: Selection, args: tuple):
        known = self.estimator.layout.parameter_addresses
        chosen = [a for a in known if selection.contains(a)]
        if len(chosen) != len(known):
            raise AmortizedError(
                f"{self.name}.regenerate: a joint flow can only redraw all of its parameters at once "
                f"(selected: {', '.join(map(format_address, chosen)) or 'none'})"
            )
        return self._simulate(key, args), jnp.zeros(())


__all__ = ["PROPOSAL_ADDRESS", "AmortizedPosterior", "AmortizedProposal"]
