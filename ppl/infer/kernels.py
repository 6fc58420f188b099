"""MCMC kernels on traces, BlackJAX-style ``(init, step)`` pairs, and their combinators.

    kernel = ppl.infer.kernels.nuts(ppl.select("mu", "tau"), step_size=0.3)
    state = kernel.init(trace)                 # a pytree with .trace
    state, info = kernel.step(key, state)      # pure: jit, vmap, lax.scan

``mh(selection)``, ``mh_proposal(proposal, proposal_args_fn)``,
``mala(selection, step_size)``, ``hmc(selection, step_size, num_steps,
inverse_mass_matrix)``, ``nuts(selection, step_size, inverse_mass_matrix,
max_tree_depth)``, ``gibbs(address)``; ``cycle(*kernels)``,
``mixture(kernels, weights)``, ``repeat(kernel, n)``. Every step returns an
:class:`MCMCInfo` (``accepted``, ``acceptance_rate``, ``is_divergent``,
``num_steps``).

A trace holds the observations as choices too: a kernel's ``selection``
(or ``address``) must name latent choices only. Gradient kernels move the
selected continuous choices in unconstrained space (``ppl.to_unconstrained``
/ ``ppl.from_unconstrained``), holding every other choice of the trace
fixed; naming a discrete choice raises ``SelectionError``.
"""

from ppl.infer.mcmc.combinators import cycle, mixture, repeat
from ppl.infer.mcmc.gibbs import gibbs
from ppl.infer.mcmc.gradient import GradientState, hmc, mala, nuts
from ppl.infer.mcmc.kernel import MCMCInfo, MCMCKernel, TraceState
from ppl.infer.mcmc.metropolis import mh, mh_proposal

__all__ = [
    "GradientState",
    "MCMCInfo",
    "MCMCKernel",
    "TraceState",
    "cycle",
    "gibbs",
    "hmc",
    "mala",
    "mh",
    "mh_proposal",
    "mixture",
    "nuts",
    "repeat",
]
