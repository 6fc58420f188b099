"""Using a trained guide: posterior draws, posterior predictive, ArviZ export.

After ``fit``, the guide ``q(z; params)`` *is* the approximate posterior:

* :func:`sample_posterior` -- ``z_s ~ q(.; params)``, ``s = 1..S``, as
  ``name -> array [S, ...]`` (the same :class:`~ppl.infer.mcmc.result.Samples`
  dict MCMC returns: ``'mu'``, ``'sub/z'``, also indexable by address);
* :func:`posterior_predictive` -- one run of the model per draw with ``z_s``
  fixed and every other choice (the observed addresses in particular) drawn
  afresh, ``y_s ~ p(y | z_s; args)``, through ``ppl.infer.predictive``; the
  model's ``ppl.deterministic`` sites are recomputed for each draw;
* :func:`to_arviz` -- an ``arviz.InferenceData`` with ``posterior`` (one
  chain of ``S`` independent draws), ``posterior_predictive`` and
  ``observed_data`` groups.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ppl.core.choicemap import as_choicemap
from ppl.core.generative_function import GenerativeFunction, check_key
from ppl.errors import PPLError

# ppl.infer (and with it BlackJAX) is imported on first use, not with ppl.vi.


def _check_num(num_samples: Any) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise PPLError(f"num_samples must be a positive int, got {num_samples!r}")
    return num_samples


def sample_posterior(key: Any, guide: GenerativeFunction, guide_args: tuple, num_samples: int) -> Any:
    """``num_samples`` independent draws from the guide: ``name -> array [num_samples, ...]``.

    A guide choice made in some draws only (inside ``ppl.switch``/``ppl.mixture``)
    comes with its presence mask in ``.masks`` (as :func:`ppl.infer.predictive` reports them).
    """
    key = check_key(key, "ppl.vi.sample_posterior")
    num_samples = _check_num(num_samples)
    if not isinstance(guide, GenerativeFunction):
        raise PPLError(f"sample_posterior needs the guide (a generative function), got {type(guide).__name__}")
    if not isinstance(guide_args, tuple):
        raise PPLError(
            f"guide_args must be the tuple of the guide's arguments, e.g. (params,), got {type(guide_args).__name__}"
        )
    from ppl.infer.mcmc.result import samples_from

    draws = jax.vmap(lambda k: guide.simulate(k, guide_args).choices)(jax.random.split(key, num_samples))
    return samples_from(draws, (num_samples,))  # choices of some branches only: values and .masks


def posterior_predictive(
    key: Any,
    model: GenerativeFunction,
    model_args: tuple,
    guide: GenerativeFunction,
    guide_args: tuple,
    num_samples: int,
) -> Any:
    """Model runs with the latents drawn from the guide: every choice and deterministic, ``[num_samples, ...]``."""
    key = check_key(key, "ppl.vi.posterior_predictive")
    from ppl.infer.predictive import predictive

    k_post, k_pred = jax.random.split(key)
    draws = sample_posterior(k_post, guide, guide_args, num_samples)
    return predictive(k_pred, model, model_args, draws)


def to_arviz(samples: Any, *, predictive: Any = None, observations: Any = None) -> Any:
    """An ``arviz.InferenceData`` from guide draws (and, optionally, posterior predictive draws).

    ``samples``: from :func:`sample_posterior` (``[S, ...]``), becoming one
    chain of ``S`` draws. ``predictive``: from :func:`posterior_predictive`;
    its observed addresses (those in ``observations``) form the
    ``posterior_predictive`` group and its other non-latent entries (the
    model's deterministic sites) join ``posterior``. Without
    ``observations``, every predictive entry that is not a latent goes to
    ``posterior_predictive``.
    """
    from ppl.diagnostics.arviz import to_inference_data
    from ppl.infer.mcmc.result import address_name

    post = {k: np.asarray(v)[None] for k, v in dict(samples).items()}
    obs = as_choicemap(observations)
    observed = {address_name(a): np.asarray(v) for a, v in obs.flat_dict().items()} if not obs.is_empty() else None
    pp = None
    if predictive is not None:
        pp = {}
        for k, v in dict(predictive).items():
            if k in post:
                continue
            if observed is None or k in observed:
                pp[k] = np.asarray(v)[None]
            else:
                post[k] = np.asarray(v)[None]
        missing = [k for k in (observed or {}) if k not in pp]
        if missing:
            raise PPLError(
                f"to_arviz: the predictive draws have no entry for the observed {missing}; pass the output of "
                "posterior_predictive for the same model"
            )
    return to_inference_data(
        post,
        observed_data=observed,
        posterior_predictive=pp,
        attrs={"inference_library": "ppl", "algorithm": "variational inference"},
    )


__all__ = ["posterior_predictive", "sample_posterior", "to_arviz"]
