"""MCMC kernels on traces, BlackJAX-style ``(init, step)`` pairs, and their combinators.

Gradient kernels come in BlackJAX's two tiers: the lower tier
``build_nuts(selection, max_tree_depth)``, ``build_hmc(selection,
num_steps)``, ``build_mala(selection)`` is a :class:`GradientKernel` whose
``step(key, state, step_size, inverse_mass_matrix)`` takes the parameters
at every call (returning a :class:`GradientInfo`); the upper tier below
fixes them. MALA's ``step_size`` is BlackJAX's Langevin time step ``eps``:
proposal ``N(z + eps A grad log pi(z), 2 eps A)``, ``A`` the inverse mass
matrix. An upper-tier gradient kernel built without ``step_size``
(``nuts(select("mu"))``) is adapted by ``ppl.infer.run_mcmc`` during
warm-up, also inside ``cycle``/``mixture``/``repeat``.

    kernel = ppl.infer.kernels.nuts(ppl.select("mu", "tau"), step_size=0.3)
    state = kernel.init(trace)                 # a pytree with .trace
    state, info = kernel.step(key, state)      # pure: jit, vmap, lax.scan

``mh(selection)``, ``mh_proposal(proposal, proposal_args_fn)``,
``mala(selection, step_size)``, ``hmc(selection, step_size, num_steps,
inverse_mass_matrix)``, ``nuts(selection, step_size, inverse_mass_matrix,
max_tree_depth)``, ``gibbs(address)``, ``gibbs_block(sites)`` (a whole
block of discrete choices from its exact conditional: FFBS along a scan); ``cycle(*kernels)``,
``mixture(kernels, weights)``, ``repeat(kernel, n)``. Every step returns an
:class:`MCMCInfo` (``accepted``, ``acceptance_rate``, ``is_divergent``,
``num_steps``).

A trace holds the observations as choices too: a kernel's ``selection``
(or ``address``) must name latent choices only. Gradient kernels move the
selected continuous choices in unconstrained space (``ppl.to_unconstrained``
/ ``ppl.from_unconstrained``), holding every other choice of the trace
fixed; naming a discrete choice raises ``SelectionError``.
"""

from ppl.infer.mcmc.blocked_gibbs import gibbs_block
from ppl.infer.mcmc.combinators import cycle, mixture, repeat
from ppl.infer.mcmc.gibbs import gibbs
from ppl.infer.mcmc.gradient import (
    GradientInfo,
    GradientKernel,
    GradientParams,
    GradientState,
    build_hmc,
    build_mala,
    build_nuts,
    hmc,
    mala,
    nuts,
)
from ppl.infer.mcmc.kernel import MCMCInfo, MCMCKernel, TraceState, Tuning
from ppl.infer.mcmc.metropolis import mh, mh_proposal

__all__ = [
    "GradientInfo",
    "GradientKernel",
    "GradientParams",
    "GradientState",
    "MCMCInfo",
    "MCMCKernel",
    "TraceState",
    "Tuning",
    "build_hmc",
    "build_mala",
    "build_nuts",
    "cycle",
    "gibbs",
    "gibbs_block",
    "hmc",
    "mala",
    "mh",
    "mh_proposal",
    "mixture",
    "nuts",
    "repeat",
]
