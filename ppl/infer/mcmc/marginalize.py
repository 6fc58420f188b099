"""Discrete latent choices summed out of a gradient sampler's target.

NUTS, HMC and MALA move continuous choices. A model whose discrete latent
choices all have finite supports (mixture assignments, HMM states, change
points) is sampled with those choices summed out exactly (NumPyro's
enumerated HMC), by :mod:`ppl.core.enumeration`: per element inside
``ppl.vmap`` (``O(N K)``), by the forward algorithm inside ``ppl.scan``
(``O(T K^2)``), over their joint grid elsewhere. The target is then the
marginal posterior of the continuous choices,

    log pi(theta) = log sum_z p(theta, z, observations),

and the draws hold the continuous choices only: the discrete ones have no
draws (recover them afterwards with their conditional posterior given each
draw). ``ppl.deterministic`` sites are not reported either (they may
depend on the summed choices), with a warning naming them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import jax

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.enumeration import Enumerate
from ppl.core.selection import Selection
from ppl.core.unconstrained import unconstrained_init, unconstrained_log_density
from ppl.errors import EnumerationError, SelectionError
from ppl.infer.mcmc.structure import Problem, Structure


def summed_structure(problem: Problem, s: Structure, algorithm: str) -> tuple[Structure, tuple]:
    """``(structure without the discrete latents, their addresses)``; raises if one cannot be summed out."""
    if not s.discrete:
        return s, ()
    summed = tuple(s.discrete)
    if not s.continuous:
        raise SelectionError(
            f"{algorithm.split('.')[-1]} moves continuous choices only, and the only latent choices of "
            f"{problem.model.name} are discrete latent choices at {', '.join(map(format_address, summed))}: summed "
            "out, nothing is left to move. Their exact posterior follows from ppl.infer.marginal_log_density "
            "(the evidence) and assess; or sample them with ppl.infer.run_mcmc(key, gibbs(addr), ...)"
        )
    sel = Selection(frozenset(summed))
    gone = set(summed)
    kept_latent = tuple(a for a in s.latent if a not in gone)
    out = s._replace(
        latent=kept_latent,
        discrete=(),
        deterministic=(),
        constrained=tuple((a, sh) for a, sh in s.constrained if a in set(kept_latent)),
    )

    def target(k: Any, dyn: Any, obs: Any) -> Any:
        args = problem.args(dyn)
        u = unconstrained_init(k, problem.model, args, obs).filter(Selection(frozenset(s.continuous)))
        return unconstrained_log_density(problem.model, u, args, obs)

    try:
        with context.intercept(Enumerate(sel)):
            jax.eval_shape(target, jax.random.key(0), problem.dyn, problem.observations)
    except EnumerationError as e:
        names = ", ".join(map(format_address, summed))
        raise SelectionError(
            f"{algorithm} moves continuous choices and sums finite discrete ones out, but the discrete latent "
            f"choices of {problem.model.name} ({names}) cannot be summed out: {e}. Observe them, or combine a "
            "gradient kernel with Gibbs on them: ppl.infer.run_mcmc(key, cycle(nuts(...), gibbs(addr)), ...)"
        ) from e
    if s.deterministic:
        warnings.warn(
            f"{algorithm}: the discrete latent choices {', '.join(map(format_address, summed))} are summed out, so "
            f"the deterministic sites {', '.join(map(format_address, s.deterministic))} (which may depend on them) "
            "are not reported",
            UserWarning,
            stacklevel=4,
        )
    return out, summed


@contextlib.contextmanager
def summing(summed: tuple) -> Iterator[None]:
    """Install the handler that sums ``summed`` out of every log density traced in the block."""
    if not summed:
        yield
        return
    with context.intercept(Enumerate(Selection(frozenset(summed)))):
        yield


__all__ = ["summed_structure", "summing"]
