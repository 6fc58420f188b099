r"""Neural posterior estimation (NPE): a conditional flow trained on a model's own simulations.

Papamakarios & Murray (2016), Greenberg, Nonnenmacher & Macke (2019), as in
the ``sbi`` package's NPE. From simulations ``(theta_i, x_i) ~ p(theta)
p(x | theta)``, ``i = 1..N`` (:func:`~ppl.amortized.simulate_dataset`),
maximise

.. math::

    \frac{1}{N} \sum_i \log q_\phi(\theta_i \mid s_\psi(x_i))
    \;\approx\; \mathbb{E}_{p(x)}\!\left[-\mathrm{KL}(p(\theta \mid x) \,\|\, q_\phi(\theta \mid s_\psi(x)))\right]
      + \text{const},

the "sleep phase" (forward KL, maximum likelihood): its maximiser over a
rich enough family is the posterior ``p(theta | x)`` for every ``x`` at
once, so one training run gives posteriors for any number of data sets
(amortisation). ``q_phi`` is a conditional flow of :mod:`ppl.flows` over the
parameters' unconstrained vector ``u`` (:mod:`ppl.amortized.layout`; the
Jacobian of ``biject_to`` makes ``log_prob`` a density of the constrained
parameters), ``s_psi`` an optional summary network trained jointly (without
one the context is the flat observation vector itself).

**Standardisation.** Inside the estimator both ``u`` and ``x`` are z-scored
componentwise with the mean and standard deviation of the kept simulations
(a constant component keeps scale 1): the flow models ``v = (u - m_u) /
s_u`` given ``z = (x - m_x) / s_x``, and ``log q(u | x) = log q(v | z) -
sum log s_u``. The summary network, if any, reads ``z`` (reshaped to the
observed values' shapes), never the raw ``x``. ``standardize=False`` turns
both off.

**Training** runs :func:`ppl.vi.fit` on the expectation
``E_i[log q(v_i | z_i)]``: each step draws ``batch_size`` simulations
uniformly *with* replacement from that step's key (an unbiased estimate of
the full-data mean and of its gradient), inside the compiled loop. (Drawing
without replacement, ``fit(data=...)``, sorts all ``N`` indices every step:
at ``N = 10^4`` that is about 15 times the cost of a step of a small flow on
a CPU.) ``result.history`` is that minibatch mean of ``log q(v | z)`` per
step. ``checkpoint=`` is passed to ``fit``: a run started again with the same
key, model, simulations and checkpoint re-simulates the same data set and
resumes where the checkpoint left off.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ppl.amortized.layout import SimulationLayout
from ppl.amortized.simulation import SimulatedData, _positive_int, simulate_dataset
from ppl.core.address import format_address
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.errors import AmortizedError
from ppl.flows import Flow, maf
from ppl.vi.expectation import expectation
from ppl.vi.fit import FitResult, fit

# ------------------------------------------------------------------ the estimator


def contexts(summary: Any, layout: SimulationLayout, z: Any) -> Any:
    """Contexts ``[..., C]`` of standardised flat observations ``z`` ``[..., D_x]``."""
    if summary is None:
        return z
    batch = z.shape[:-1]
    flat = jnp.reshape(z, (-1, z.shape[-1]))
    c = jax.vmap(lambda zi: summary(layout.structure_x(zi)))(flat)
    return jnp.reshape(c, batch + c.shape[-1:])


class NeuralPosterior(eqx.Module):
    """``q(theta | x)``: a conditional flow over standardised unconstrained parameters (module docstring).

    ``flow`` (a conditional :class:`ppl.flows.Flow`) and ``summary`` (an
    equinox module or ``None``) are trained; ``theta_loc``/``theta_scale``
    ``[D]`` and ``x_loc``/``x_scale`` ``[D_x]`` are the standardisation, fixed
    from the simulations; ``layout`` maps vectors to the model's addresses.
    All methods take one flat observation ``x`` ``[D_x]`` and are pure (run
    them inside ``jit``).
    """

    flow: Flow
    summary: Any
    theta_loc: Any
    theta_scale: Any
    x_loc: Any
    x_scale: Any
    layout: SimulationLayout

    def context(self, x: Any) -> Any:
        """The flow's context ``[C]`` for a flat observation ``x`` ``[D_x]``."""
        return contexts(self.summary, self.layout, (x - self.x_loc) / self.x_scale)

    def conditional(self, x: Any) -> Flow:
        """The flow over ``v = (u - theta_loc) / theta_scale`` given ``x``."""
        return self.flow.given(self.context(x))

    def log_prob_unconstrained(self, u: Any, x: Any) -> Any:
        """``log q(u | x)`` for unconstrained vectors ``u`` ``[..., D]``."""
        v = (u - self.theta_loc) / self.theta_scale
        return self.conditional(x).log_prob(v) - jnp.sum(jnp.log(self.theta_scale))

    def sample_unconstrained(self, key: Any, x: Any, n: int) -> tuple[Any, Any]:
        """``(u [n, D], log q(u | x) [n])`` from one forward pass of the flow."""
        v, lp = self.conditional(x).sample_and_log_prob(key, (n,))
        return self.theta_loc + self.theta_scale * v, lp - jnp.sum(jnp.log(self.theta_scale))

    def sample(self, key: Any, x: Any, n: int) -> tuple[list, Any]:
        """``(values, log q(theta | x) [n])``: ``values[i]`` ``[n, *shape]`` for ``layout.parameters[i]``."""
        u, lq = self.sample_unconstrained(key, x, n)
        values, log_det = jax.vmap(self.layout.constrain)(u)
        return values, lq - log_det

    def log_prob(self, values: Sequence[Any], x: Any) -> Any:
        """``log q(theta | x)`` ``[n]`` of constrained ``values`` (one ``[n, *shape]`` array per parameter)."""

        def one(vals: Sequence[Any]) -> tuple[Any, Any]:
            u = self.layout.unconstrain(vals)
            return u, self.layout.constrain(u)[1]

        u, log_det = jax.vmap(one)(list(values))
        return self.log_prob_unconstrained(u, x) - log_det


# -------------------------------------------------------------------- training


def _mean_log_q(key: Any, nets: tuple, frozen: tuple) -> Any:
    """``mean log q(v_i | z_i)`` over ``batch_size`` simulations drawn with replacement (standardised)."""
    flow, summary = nets
    v, z, layout, batch_size = frozen
    idx = jax.random.randint(key, (batch_size,), 0, v.shape[0])
    return jnp.mean(flow.given(contexts(summary, layout, z[idx])).log_prob(v[idx]))


#: one objective for every run, so that ``fit`` reuses its compiled chunk across runs of equal shapes
_OBJECTIVE = expectation(_mean_log_q)


@functools.lru_cache(maxsize=16)
def default_optimizer(steps: int, learning_rate: float = 1e-3) -> optax.GradientTransformation:
    """Adam with a cosine decay from ``learning_rate`` to a tenth of it over ``steps``, gradients clipped at
    global norm 5 (as ``sbi``). Cached, so equal runs share one compiled training program."""
    schedule = optax.cosine_decay_schedule(learning_rate, max(steps, 1), alpha=0.1)
    return optax.chain(optax.clip_by_global_norm(5.0), optax.adam(schedule))


def _standardizer(a: Any, standardize: bool) -> tuple[Any, Any]:
    if not standardize:
        return jnp.zeros(a.shape[1:], a.dtype), jnp.ones(a.shape[1:], a.dtype)
    loc, scale = jnp.mean(a, axis=0), jnp.std(a, axis=0)
    return loc, jnp.where(scale > 1e-8 * (1.0 + jnp.abs(loc)), scale, 1.0)


def _context_size(summary: Any, layout: SimulationLayout) -> int:
    if summary is None:
        return layout.x_dim
    if not callable(summary):
        raise AmortizedError(
            f"npe: summary must be callable (an equinox module mapping one observation to a context vector, e.g. "
            f"ppl.amortized.deep_set(...)), got {type(summary).__name__}"
        )
    example = layout.structure_x(jnp.zeros((layout.x_dim,), jnp.float32))
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), example)
    try:
        out = jax.eval_shape(lambda e: summary(e), example)
    except Exception as e:
        raise AmortizedError(f"npe: the summary network fails on one observation (shapes {shapes}): {e}") from e
    if not hasattr(out, "shape") or len(out.shape) != 1:
        raise AmortizedError(
            f"npe: the summary network must return a context vector [C] for one observation (shapes {shapes}); it "
            f"returned {jax.tree_util.tree_map(lambda a: tuple(a.shape), out)}"
        )
    return int(out.shape[0])


def _build_flow(flow: Any, key: Any, layout: SimulationLayout, size: int, summary: Any) -> Flow:
    d = layout.theta_dim
    if flow is None:
        flow = maf(key, d, context_dim=size, layers=5, width=50)
    elif not isinstance(flow, Flow):
        if not callable(flow):
            raise AmortizedError(
                f"npe: flow must be a conditional ppl.flows.Flow or a constructor flow(key, dim, context_dim=...), "
                f"got {type(flow).__name__}"
            )
        flow = flow(key, d, context_dim=size)
        if not isinstance(flow, Flow):
            raise AmortizedError(f"npe: the flow constructor returned {type(flow).__name__}, not a ppl.flows.Flow")
    if flow.context_shape is None:
        raise AmortizedError("npe: the flow is unconditional; NPE needs a conditional flow (context_dim=...)")
    if flow.dim != d:
        raise AmortizedError(
            f"npe: the flow has dimension {flow.dim}, but the parameters have {d} unconstrained dimensions "
            f"({layout.describe()})"
        )
    if flow.context_shape != (size,):
        what = (
            f"the summary network outputs contexts of size {size}"
            if summary is not None
            else f"the observations flatten to vectors of size {size} (D_x)"
        )
        raise AmortizedError(f"npe: the flow is conditioned on contexts of shape {flow.context_shape}, but {what}")
    return flow


# ---------------------------------------------------------------------- result


@dataclass
class NPEResult:
    """A trained amortized posterior: ``result.posterior(x_obs)`` for any observation.

    ``estimator``: the :class:`NeuralPosterior`; ``fit``: the
    :class:`~ppl.vi.fit.FitResult` of training; ``num_simulations`` run and
    ``num_skipped`` of them left out (non-finite).
    """

    estimator: NeuralPosterior
    model: GenerativeFunction
    args: tuple
    fit: FitResult
    num_simulations: int
    num_skipped: int

    @property
    def layout(self) -> SimulationLayout:
        return self.estimator.layout

    @property
    def history(self) -> Any:
        """Minibatch mean of ``log q(v | z)`` (standardised space) at every training step."""
        return self.fit.history

    @property
    def proposal(self) -> Any:
        """``q`` as a generative function over the parameter addresses (:class:`AmortizedProposal`)."""
        from ppl.amortized.posterior import AmortizedProposal

        return AmortizedProposal(self.estimator, f"NPE({self.model.name})")

    def posterior(self, x_obs: Any) -> Any:
        """The amortized posterior ``q(theta | x_obs)`` (:class:`AmortizedPosterior`).

        ``x_obs``: a ``ChoiceMap`` or dict at the observed addresses (or, with
        one observed address, its value alone), shaped as the model's.
        """
        from ppl.amortized.posterior import AmortizedPosterior

        return AmortizedPosterior(self, x_obs)

    def __repr__(self) -> str:
        last = f", final mean log q {self.history[-1]:.4g}" if len(self.history) else ""
        return (
            f"NPEResult({self.model.name}: {self.layout.describe()}; {self.num_simulations - self.num_skipped} "
            f"simulations, {self.fit.step} steps{last})"
        )


def npe(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    *,
    parameters: Any,
    observed: Any,
    simulations: int = 10_000,
    dataset: SimulatedData | None = None,
    flow: Any = None,
    summary: Any = None,
    standardize: bool = True,
    steps: int = 5000,
    batch_size: int = 256,
    optimizer: optax.GradientTransformation | None = None,
    chunk_size: int = 500,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    callbacks: Sequence[Callable[[Any], Any]] = (),
    progress_bar: bool = True,
) -> NPEResult:
    """Train an amortized posterior ``q(parameters | observed)`` on simulations of ``model`` (module docstring).

    Args:
      key: PRNG key (simulations, network initialisation and training derive from it).
      model, args: the model and its arguments. Only ``model.simulate`` is used.
      parameters: addresses (or namespaces) of the continuous choices to infer.
      observed: addresses (or namespaces) of the data: choices or ``ppl.deterministic`` values.
      simulations: number of simulations (ignored with ``dataset``).
      dataset: simulations made before (:func:`simulate_dataset` with the same parameters and observed).
      flow: a conditional :class:`ppl.flows.Flow` of dimension ``D`` with context ``[C]``, or a constructor
        ``flow(key, D, context_dim=C)``; default ``ppl.flows.maf(key, D, context_dim=C, layers=5, width=50)``.
      summary: ``None`` (the context is the flat observation, ``C = D_x``) or a summary network: a callable
        (an equinox module, trained jointly) from one standardised observation (the value of the one observed
        address, or ``{name: value}``) to a vector ``[C]``.
      standardize: z-score parameters and observations inside the estimator.
      steps, batch_size: training steps and simulations per step (drawn with replacement).
      optimizer: an optax optimiser; default :func:`default_optimizer` ``(steps)``.
      chunk_size: steps per compiled chunk of ``ppl.vi.fit`` (a last, shorter chunk compiles once more).
      checkpoint, checkpoint_every, resume, callbacks, progress_bar: as in :func:`ppl.vi.fit`.

    Returns:
      an :class:`NPEResult`.

    Raises:
      AmortizedError: an address the model does not make, a discrete parameter, a flow or summary network
        that does not fit the parameters and observations.
      NonFiniteObjectiveError: training met a non-finite loss or gradient (from ``ppl.vi.fit``).
    """
    key = check_key(key, "ppl.amortized.npe")
    k_sim, k_flow, k_fit = jax.random.split(key, 3)
    steps = steps if steps == 0 else _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    if dataset is None:
        dataset = simulate_dataset(
            k_sim, model, args, parameters=parameters, observed=observed, simulations=simulations
        )
    elif not isinstance(dataset, SimulatedData):
        raise AmortizedError(
            f"npe: dataset must come from ppl.amortized.simulate_dataset, got {type(dataset).__name__}"
        )
    else:
        from ppl.amortized.layout import simulation_layout

        expected = simulation_layout(model, args, parameters, observed, jax.random.fold_in(k_sim, 0x4C41594F))
        if (expected.parameter_addresses, expected.observed_addresses) != (
            dataset.layout.parameter_addresses,
            dataset.layout.observed_addresses,
        ):
            raise AmortizedError(
                f"npe: the dataset simulates {dataset.layout.describe()}, but parameters and observed name "
                f"{', '.join(map(format_address, expected.parameter_addresses))} and "
                f"{', '.join(map(format_address, expected.observed_addresses))}"
            )
    layout = dataset.layout
    size = _context_size(summary, layout)
    flow = _build_flow(flow, k_flow, layout, size, summary)

    theta_loc, theta_scale = _standardizer(dataset.theta, standardize)
    x_loc, x_scale = _standardizer(dataset.x, standardize)
    v = (dataset.theta - theta_loc) / theta_scale
    z = (dataset.x - x_loc) / x_scale
    optimizer = default_optimizer(steps) if optimizer is None else optimizer
    fitted = fit(
        k_fit,
        _OBJECTIVE,
        ((flow, summary), (v, z, layout, batch_size)),
        optimizer,
        steps,
        trainable=(True, False),
        chunk_size=chunk_size,
        callbacks=callbacks,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        progress_bar=progress_bar,
    )
    trained_flow, trained_summary = fitted.params[0]
    estimator = NeuralPosterior(trained_flow, trained_summary, theta_loc, theta_scale, x_loc, x_scale, layout)
    return NPEResult(estimator, model, args, fitted, dataset.num_simulations, dataset.num_skipped)


__all__ = ["NPEResult", "NeuralPosterior", "default_optimizer", "npe"]
