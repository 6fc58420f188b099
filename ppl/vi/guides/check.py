"""Does a guide propose exactly the model's latent choices?

A guide for ``p(z, y)`` given observations ``y`` must make a choice at every
latent address of the model and at nothing else: an extra address would be
"observed" by the model (or rejected by it), and a missing latent would make
the model's density of the guide's draw incomplete, so the ELBO would be
estimating something else. :func:`check_guide` runs both once and compares.
"""

from __future__ import annotations

from typing import Any

import jax

from ppl.core.address import format_address, is_prefix
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.unconstrained import from_unconstrained, unconstrained_init
from ppl.errors import MissingChoiceError, UnvisitedConstraintError


def _names(addrs: list) -> str:
    return ", ".join(format_address(a) for a in addrs[:8]) + (" ..." if len(addrs) > 8 else "")


def check_guide(
    model: GenerativeFunction,
    guide: GenerativeFunction,
    model_args: tuple = (),
    guide_args: tuple = (),
    observations: Any = None,
    *,
    key: Any = None,
) -> ChoiceMap:
    """Raise if ``guide``'s choices differ from ``model``'s latent choices; return one guide draw.

    * an address the guide samples but the model never visits:
      :class:`~ppl.errors.UnvisitedConstraintError`;
    * an address the guide samples that is observed:
      :class:`~ppl.errors.UnvisitedConstraintError`;
    * a latent the model has and the guide misses:
      :class:`~ppl.errors.MissingChoiceError`.

    Each message names the addresses. The model's missing latents are found
    without sampling its prior (Stan-style initial values), so improper
    priors are fine.
    """
    key = jax.random.key(0) if key is None else key
    k_guide, k_init, k_run = jax.random.split(key, 3)
    obs = as_choicemap(observations)
    proposed = guide.simulate(k_guide, guide_args).choices
    observed = list(obs.addresses())
    clash = [a for a in proposed.addresses() if any(is_prefix(o, a) or is_prefix(a, o) for o in observed)]
    if clash:
        raise UnvisitedConstraintError(
            f"the guide {guide.name} samples {_names(clash)}, which {'is' if len(clash) == 1 else 'are'} observed in "
            f"{model.name}; a guide proposes only the latent (unobserved) choices"
        )
    given = proposed | obs
    try:
        u = unconstrained_init(k_init, model, model_args, given)
        tr, _, _ = from_unconstrained(model, u, model_args, given, key=k_run)
    except UnvisitedConstraintError as e:
        raise UnvisitedConstraintError(
            f"the guide {guide.name} samples an address that {model.name} never visits: {e}"
        ) from None
    missing = [a for a in tr.choices.addresses() if a not in proposed and not any(is_prefix(o, a) for o in observed)]
    if missing:
        raise MissingChoiceError(
            f"the guide {guide.name} makes no choice at {_names(missing)}, a latent choice of {model.name}; "
            f"a guide must propose every latent (its choices: {_names(list(proposed.addresses())) or '(none)'})"
        )
    return proposed


__all__ = ["check_guide"]
