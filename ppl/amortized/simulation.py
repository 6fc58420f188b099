"""The training set of neural posterior estimation: joint draws ``(theta, x)`` from a model's simulator.

``simulate_dataset`` runs ``model.simulate`` for ``simulations`` keys,
``jax.random.split(key, simulations)`` (simulation ``i`` uses key ``i``,
whatever the chunking), vectorised with ``jax.vmap`` in compiled chunks of
``chunk_size``. From each trace it keeps the flat unconstrained parameter
vector ``u`` and the flat observation vector ``x``
(:class:`~ppl.amortized.layout.SimulationLayout`).

Only ``simulate`` is used, so any model that can be run forward works, also
one whose observations have no tractable density (a simulator; see
``docs/modeling.md``). A simulation whose ``u`` or ``x`` holds a NaN or an
infinity (a simulator that fails for some parameters, a parameter at the
edge of its support) is skipped; the number skipped is reported on the
result (``num_skipped``) and by a :class:`SkippedSimulationsWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl.amortized.layout import SimulationLayout, address_key, simulation_layout
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.errors import AmortizedError


class SkippedSimulationsWarning(UserWarning):
    """Some simulations gave non-finite parameters or observations and were left out of the training set."""


@dataclass(frozen=True)
class SimulatedData:
    """Finite simulations: ``theta`` ``[N, D]`` (unconstrained, flat) and ``x`` ``[N, D_x]`` (flat).

    ``num_simulations`` were run and ``num_skipped`` of them left out, so
    ``N = num_simulations - num_skipped``; ``layout`` says which addresses
    the columns come from.
    """

    layout: SimulationLayout
    theta: Any
    x: Any
    num_simulations: int
    num_skipped: int

    @property
    def size(self) -> int:
        """``N``: the number of simulations kept."""
        return int(self.theta.shape[0])

    def parameters(self) -> dict:
        """The kept parameter values, constrained, at the model's addresses: ``{address: [N, ...]}``."""
        values = jax.vmap(lambda u: self.layout.constrain(u)[0])(self.theta)
        return {address_key(s.address): v for s, v in zip(self.layout.parameters, values)}

    def __repr__(self) -> str:
        return (
            f"SimulatedData({self.layout.model_name}: {self.size} of {self.num_simulations} simulations kept, "
            f"theta {tuple(self.theta.shape)}, x {tuple(self.x.shape)})"
        )


@eqx.filter_jit
def _simulate_chunk(model: GenerativeFunction, args: tuple, layout: SimulationLayout, keys: Any) -> tuple[Any, Any]:
    def one(k: Any) -> tuple[Any, Any]:
        tr = model.simulate(k, args)
        theta = layout.unconstrain([tr[s.address] for s in layout.parameters])
        x = layout.flatten_x([tr[s.address] for s in layout.observed])
        return theta, x

    return jax.vmap(one)(keys)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AmortizedError(f"npe: {what} must be a positive int, got {value!r}")
    return value


def simulate_dataset(
    key: Any,
    model: GenerativeFunction,
    args: tuple = (),
    *,
    parameters: Any,
    observed: Any,
    simulations: int = 10_000,
    chunk_size: int = 1000,
) -> SimulatedData:
    """Simulate ``simulations`` joint draws of ``parameters`` and ``observed`` from ``model`` (module docstring).

    Args:
      key: PRNG key; simulation ``i`` uses ``jax.random.split(key, simulations)[i]``.
      model: a generative function; ``args`` its arguments (a tuple).
      parameters: addresses (or namespaces) of the continuous random choices to infer.
      observed: addresses (or namespaces) of the data: random choices or ``ppl.deterministic`` values.
      simulations: number of simulations to run.
      chunk_size: simulations per compiled, vectorised chunk.

    Raises:
      AmortizedError: an address the model does not make, a discrete parameter, a support that changes
        between simulations, or no finite simulation at all.
    """
    key = check_key(key, "ppl.amortized.simulate_dataset")
    layout = simulation_layout(model, args, parameters, observed, layout_key(key))
    return simulate_layout(key, model, args, layout, simulations, chunk_size)


def layout_key(key: Any) -> Any:
    """The key the layout discovery of a run with ``key`` uses (so npe and simulate_dataset agree)."""
    return jax.random.fold_in(key, 0x4C41594F)


def simulate_layout(
    key: Any, model: GenerativeFunction, args: tuple, layout: SimulationLayout, simulations: int, chunk_size: int = 1000
) -> SimulatedData:
    """:func:`simulate_dataset` for a layout found before."""
    simulations = _positive_int(simulations, "simulations")
    chunk_size = min(_positive_int(chunk_size, "chunk_size"), simulations)
    keys = jax.random.split(key, simulations)
    pad = -simulations % chunk_size
    if pad:  # one compiled chunk shape: pad with repeated keys and drop their results
        keys = jnp.concatenate([keys, keys[:pad]])
    thetas, xs = [], []
    for start in range(0, simulations + pad, chunk_size):
        t, x = _simulate_chunk(model, args, layout, keys[start : start + chunk_size])
        thetas.append(np.asarray(t))
        xs.append(np.asarray(x))
    theta = np.concatenate(thetas)[:simulations]
    x = np.concatenate(xs)[:simulations]
    finite = np.all(np.isfinite(theta), axis=1) & np.all(np.isfinite(x), axis=1)
    skipped = int(simulations - finite.sum())
    if skipped == simulations:
        raise AmortizedError(
            f"npe: all {simulations} simulations of {model.name} gave a NaN or infinite value ({layout.describe()}); "
            "check the simulator"
        )
    if skipped:
        warnings.warn(
            f"npe: {skipped} of {simulations} simulations of {model.name} gave a NaN or infinite parameter or "
            "observation and were skipped (result.num_skipped)",
            SkippedSimulationsWarning,
            stacklevel=3,
        )
    return SimulatedData(layout, jnp.asarray(theta[finite]), jnp.asarray(x[finite]), simulations, skipped)


__all__ = ["SimulatedData", "SkippedSimulationsWarning", "simulate_dataset"]
