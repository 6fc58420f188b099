"""The MCMC kernel protocol: pure ``(init, step)`` pairs on traces.

A kernel is a :class:`MCMCKernel` ``(init, step)`` in the style of BlackJAX:

* ``state = kernel.init(trace)`` builds the kernel's state from a trace of
  the target (a model with its observations already in the trace); every
  state is a pytree with a ``.trace`` attribute;
* ``new_state, info = kernel.step(key, state)`` makes one transition that
  leaves the posterior ``p(latent | rest of the trace)`` invariant; it is
  pure, so it runs under ``jit``, ``vmap`` (chains, particles) and
  ``lax.scan``.

Every kernel returns the same :class:`MCMCInfo`, so kernels compose
(``cycle``, ``mixture``, ``repeat``) and runners record the same per-draw
diagnostics whatever the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class MCMCKernel(NamedTuple):
    """A transition kernel: ``init(trace) -> state``, ``step(key, state) -> (state, info)``.

    ``tuning`` is ``None`` for a kernel whose parameters are fixed, or a
    :class:`Tuning` for one with parameters adapted during warm-up (a
    gradient kernel built without a step size, or a combinator holding
    one): ``ppl.infer.run_mcmc`` then steps it through ``tuning.step`` with
    the current parameters.
    """

    init: Callable[[Any], Any]
    step: Callable[[Any, Any], tuple[Any, MCMCInfo]]
    tuning: Tuning | None = None


class Tuning(NamedTuple):
    """How warm-up adapts a kernel's parameters (a pytree ``params``), one chain at a time.

    * ``step(key, state, params) -> (state, info, feedback)``: a transition
      with the given parameters (the lower tier) and what adaptation needs
      from it (for a gradient kernel: the new position, the acceptance
      rate, whether it ran);
    * ``start(key, state) -> a``: the adaptation state at the first state;
    * ``params(a)``: the parameters to use now;
    * ``update(a, is_slow, is_window_end, feedback) -> a``: after a step;
    * ``final(a)``: the parameters to sample with after warm-up.

    Combinators hold a tuple with one entry per kernel (``None`` for fixed
    kernels).
    """

    step: Callable[[Any, Any, Any], tuple[Any, Any, Any]]
    start: Callable[[Any, Any], Any]
    params: Callable[[Any], Any]
    update: Callable[[Any, Any, Any, Any], Any]
    final: Callable[[Any], Any]


class MCMCInfo(NamedTuple):
    """What one transition did (the same fields for every kernel).

    ``accepted``: whether the chain moved; ``acceptance_rate``: the
    Metropolis-Hastings acceptance probability ``min(1, exp(log_alpha))`` (for
    NUTS the mean over the trajectory, for Gibbs 1); ``is_divergent``: a
    Hamiltonian trajectory diverged; ``num_steps``: gradient evaluations
    (leapfrog steps) or model updates made.
    """

    accepted: Any
    acceptance_rate: Any
    is_divergent: Any
    num_steps: Any


class TraceState(NamedTuple):
    """State of kernels that need nothing but the trace (MH, Gibbs, combinators)."""

    trace: Any


def make_info(accepted: Any, acceptance_rate: Any, is_divergent: Any = False, num_steps: Any = 0) -> MCMCInfo:
    """An :class:`MCMCInfo` with fixed dtypes (bool, float, bool, int32)."""
    return MCMCInfo(
        jnp.asarray(accepted, bool),
        jnp.asarray(acceptance_rate, jnp.result_type(float)),
        jnp.asarray(is_divergent, bool),
        jnp.asarray(num_steps, jnp.int32),
    )


def combine_infos(infos: list[MCMCInfo]) -> MCMCInfo:
    """One info for several transitions: moved if any moved, mean acceptance, total steps."""
    return make_info(
        jnp.any(jnp.stack([i.accepted for i in infos])),
        jnp.mean(jnp.stack([i.acceptance_rate for i in infos])),
        jnp.any(jnp.stack([i.is_divergent for i in infos])),
        sum(i.num_steps for i in infos),
    )


def metropolis_accept(key: Any, log_alpha: Any, proposed: Any, current: Any) -> tuple[Any, MCMCInfo]:
    """Accept ``proposed`` with probability ``min(1, exp(log_alpha))``.

    A NaN ratio counts as ``-inf`` (reject), so a proposal outside the
    support never enters the chain. The decision is a random choice
    (``Bernoulli(min(1, exp(log_alpha)))`` at address ``"accept"`` under the
    current path): inside ``ppl.vi.expectation`` its score enters the
    gradient estimate, so expectations of MH output (MH moves as SMC
    rejuvenation, a chain inside an objective) get unbiased gradients of how
    the parameters change what is accepted. Outside an expectation it is
    the usual test ``u < min(1, exp(log_alpha))``, ``u ~ Uniform(0, 1)``.
    """
    from numpyro.distributions import Bernoulli

    from ppl.core import context
    from ppl.core.primitive import sample_value

    log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
    rate = jnp.exp(jnp.minimum(log_alpha, 0.0))
    with context.path(("accept",)):
        accept = sample_value(key, Bernoulli(probs=rate)).astype(bool)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), proposed, current)
    return new, make_info(accept, rate)


def memoized(constructor: Callable[..., MCMCKernel]) -> Callable[..., MCMCKernel]:
    """Return the same kernel object for equal (hashable) constructor arguments.

    Kernels are compared by identity in compilation caches (runners key their
    compiled programs on the kernel), so building ``mh(select("x"))`` twice
    should give one kernel and one compiled program. Arguments that cannot be
    hashed (arrays) simply skip the memo.
    """
    memo: dict = {}

    def build(*args: Any, **kwargs: Any) -> MCMCKernel:
        try:
            key = (args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:
            return constructor(*args, **kwargs)
        kernel = memo.get(key)
        if kernel is None:
            kernel = memo[key] = constructor(*args, **kwargs)
        return kernel

    build.__name__ = constructor.__name__
    build.__qualname__ = constructor.__qualname__
    build.__doc__ = constructor.__doc__
    build.__wrapped__ = constructor  # type: ignore[attr-defined]
    return build
