r"""A normalizing flow over a model's whole unconstrained latent space (the generic flow guide).

With ``u`` the model's latents flattened into one unconstrained vector
(:class:`~ppl.vi.guides.layout.LatentLayout`) and each latent
``x_a = T_a(u_a)``, ``T_a = biject_to(support_a)``, the guide is

.. math::

    u = \ell + v,\quad v \sim q_\theta \ (\text{a flow}), \qquad
    \log q(x) = \log q_\theta(u - \ell) - \sum_a \log\left|\det J_{T_a}(u_a)\right|,

``\ell`` a learned location (initialised at the model's Stan-style prototype
point, or ``init_loc``). Any flow of :mod:`ppl.flows` of dimension
``layout.size`` fits; the default is an IAF (fast sampling: a guide samples).
Its parameters are ``{"flow": Flow, "loc": (D,)}``, a pytree that
``ppl.vi.fit`` trains with every objective.

A flow couples all coordinates, so the guide is one joint draw rather than a
product of per-site conditionals: :class:`AutoFlow` is its own generative
function class. ``simulate`` makes one reparameterised draw of ``v`` (a
random choice the gradient estimators see, at the hidden address
``__ppl_flow__``) and records the model's addresses with their constrained
values; ``assess``/``generate`` with every latent given map them back
(``T^{-1}`` and the flow's inverse) and score them; ``update`` moves to new
values or arguments with the exact density ratio. A joint flow has no
tractable conditionals, so ``generate`` with some latents given and
``regenerate`` of some of them are refused (a ``GuideError`` naming them);
``regenerate`` of all of them is a fresh draw.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import context
from ppl.core.address import format_address
from ppl.core.choicemap import ChoiceMap, as_choicemap
from ppl.core.generative_function import GenerativeFunction
from ppl.core.primitive import sample_value
from ppl.core.selection import Selection
from ppl.core.trace import Trace
from ppl.errors import GuideError
from ppl.vi.guides.layout import LatentLayout, latent_layout

#: the address of the flow's own draw (not a model address; it never leaves the guide)
FLOW_ADDRESS = ("__ppl_flow__",)


def all_or_none(choices: ChoiceMap, known: list, where: str, error: type, noun: str) -> str:
    """``"none"`` or ``"all"`` of the ``known`` addresses given in ``choices``, for a joint draw.

    A joint flow has no tractable conditionals, so anything in between (some
    addresses, some elements of one, a traced mask, an unknown address) raises
    ``error`` naming the addresses.
    """
    extra = [a for a in choices.addresses() if a not in known]
    if extra:
        raise error(
            f"{where}: {', '.join(map(format_address, extra))} are not {noun} choices "
            f"(the choices are {', '.join(map(format_address, known))})"
        )
    present = []
    for a, _, m in choices.masked_items():
        if m is None:
            present.append(a)
            continue
        if isinstance(m, jax.core.Tracer):
            raise error(f"{where}: a traced mask at {format_address(a)}; give whole values")
        m = np.asarray(m)
        if m.all():
            present.append(a)
        elif m.any():
            raise error(f"{where}: the mask at {format_address(a)} keeps only some elements")
    if not present:
        return "none"
    missing = [a for a in known if a not in present]
    if missing:
        raise error(
            f"{where}: values given for {', '.join(map(format_address, present))} but not for "
            f"{', '.join(map(format_address, missing))}; a joint flow has no tractable conditionals, so give "
            f"every {noun} choice or none"
        )
    return "all"


class FlowTrace(Trace):
    """Trace of :class:`AutoFlow`: the model's latents (constrained) and ``log q`` of them."""

    _dynamic_fields = ("gen_fn", "score", "stored_choices")
    _partitioned_fields = ("args", "retval")

    def __init__(self, gen_fn: Any, args: Any, score: Any, choices: ChoiceMap):
        self.gen_fn = gen_fn
        self.args = args
        self.retval = None
        self.score = score
        self.stored_choices = choices

    @property
    def choices(self) -> ChoiceMap:
        return self.stored_choices


class AutoFlow(GenerativeFunction):
    """A flow guide over ``model``'s unconstrained latent space (see the module docstring).

    Its identity (``==``, the compile-cache key) is its latent layout: the
    flow's parameters are the guide's argument, never part of the guide.

    ``AutoFlow(model, args, observations, flow=None, key=None, init_loc=None)``:
    ``flow`` is a :class:`ppl.flows.Flow` of dimension ``D`` (the number of
    unconstrained latent dimensions), or a constructor ``flow(key, D)``
    (e.g. ``functools.partial(ppl.flows.spline_coupling, knots=10)``), or
    ``None`` for ``ppl.flows.iaf(key, D, layers=4)``.
    """

    _fields = ("layout", "name")

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple = (),
        observations: Any = None,
        *,
        flow: Any = None,
        key: Any = None,
        init_loc: Any = None,
    ):
        from ppl.flows import Flow, iaf

        self.layout: LatentLayout = latent_layout(model, args, observations, key=key, kind="AutoFlow")
        self.name = f"AutoFlow({model.name})"
        d = self.layout.size
        fkey = jax.random.fold_in(jax.random.key(0) if key is None else key, 0x466C6F77)
        if flow is None:
            flow = iaf(fkey, d, layers=4)
        elif not isinstance(flow, Flow):
            if not callable(flow):
                raise GuideError(f"AutoFlow: flow must be a ppl.flows.Flow or a constructor, got {type(flow).__name__}")
            flow = flow(fkey, d)
        if not isinstance(flow, Flow):
            raise GuideError(f"AutoFlow: the flow constructor returned {type(flow).__name__}, not a ppl.flows.Flow")
        if flow.context_shape is not None:
            raise GuideError(
                f"AutoFlow: the flow is conditional (context shape {flow.context_shape}); a guide over a fixed "
                "model needs an unconditional flow (amortized guides: see ppl.amortized)"
            )
        if flow.dim != d:
            raise GuideError(
                f"AutoFlow: the flow has dimension {flow.dim}, but {model.name}'s unconstrained latent space has "
                f"dimension {d} ({', '.join(f'{s.name}: {s.size}' for s in self.layout.sites)})"
            )
        self._ppl_init = (flow, self._initial_location(init_loc))

    # ------------------------------------------------------------- parameters
    @property
    def init_params(self) -> dict:
        """``{"flow": the initial flow, "loc": the initial location (D,)}``."""
        init = self.__dict__.get("_ppl_init")
        if init is None:
            raise GuideError(f"{self.name}: this copy of the guide was rebuilt from a trace; use the original guide")
        return {"flow": init[0], "loc": jnp.asarray(init[1])}

    @property
    def init_args(self) -> tuple:
        return (self.init_params,)

    def _initial_location(self, init_loc: Any) -> np.ndarray:
        flat = np.array(self.layout.prototype, dtype=np.float32)
        if init_loc is None:
            return flat
        given = as_choicemap(init_loc)
        known = {s.address: s for s in self.layout.sites}
        for a in given.addresses():
            if a not in known:
                raise GuideError(f"AutoFlow: init_loc gives {format_address(a)}, which is not a latent choice")
            s = known[a]
            flat[s.offset : s.offset + s.size] = np.reshape(np.asarray(s.to_unconstrained(jnp.asarray(given[a]))), -1)
        return flat

    def _parts(self, params: Any) -> tuple[Any, Any]:
        from ppl.flows import Flow

        if not isinstance(params, dict) or "flow" not in params or "loc" not in params:
            raise GuideError(f"{self.name}: parameters must be {{'flow': Flow, 'loc': array}}, as guide.init_params")
        flow, loc = params["flow"], params["loc"]
        if not isinstance(flow, Flow) or flow.dim != self.layout.size:
            raise GuideError(f"{self.name}: params['flow'] must be a ppl.flows.Flow of dimension {self.layout.size}")
        if tuple(jnp.shape(loc)) != (self.layout.size,):
            raise GuideError(f"{self.name}: params['loc'] has shape {jnp.shape(loc)}, expected ({self.layout.size},)")
        return flow, loc

    # ------------------------------------------------------------------ math
    def _constrain(self, u: Any) -> tuple[ChoiceMap, Any]:
        """``(choices T(u), sum_a log|det J_{T_a}(u_a)|)``."""
        values, log_det = {}, jnp.zeros(())
        for s in self.layout.sites:
            ua = jnp.reshape(u[s.offset : s.offset + s.size], s.unconstrained_shape)
            x = s.to_constrained(ua)
            if s.transform is not None:
                log_det = log_det + jnp.sum(s.transform.log_abs_det_jacobian(ua, x))
            values[s.address] = x
        return ChoiceMap(values), log_det

    def _score(self, params: Any, choices: ChoiceMap) -> Any:
        flow, loc = self._parts(params)
        u = self.layout.flatten(self.layout.unconstrain(choices))
        _, log_det = self._constrain(u)
        return flow.log_prob(u - loc) - log_det

    def _check_given(self, choices: ChoiceMap, method: str) -> str:
        """``"none"`` / ``"all"`` latents given (else a GuideError naming them)."""
        return all_or_none(choices, self.layout.addresses, f"{self.name}.{method}", GuideError, "latent")

    # ------------------------------------------------------------------- GFI
    def _simulate(self, key: Any, args: tuple) -> FlowTrace:
        (params,) = args
        flow, loc = self._parts(params)
        with context.path(FLOW_ADDRESS):
            v = sample_value(key, flow)
        u = loc + v
        choices, log_det = self._constrain(u)
        return FlowTrace(self, args, flow.log_prob(v) - log_det, choices)

    def _assess(self, choices: ChoiceMap, args: tuple) -> tuple[Any, Any]:
        self._check_given(choices, "assess")
        missing = [a for a in self.layout.addresses if a not in choices]
        if missing:
            raise GuideError(f"{self.name}.assess: no value given at {', '.join(map(format_address, missing))}")
        return self._score(args[0], choices), None

    def _generate(self, key: Any, constraints: ChoiceMap, args: tuple) -> tuple[FlowTrace, Any]:
        if self._check_given(constraints, "generate") == "none":
            return self._simulate(key, args), jnp.zeros(())
        chosen = ChoiceMap({a: constraints[a] for a in self.layout.addresses})
        score = self._score(args[0], chosen)
        return FlowTrace(self, args, score, chosen), score

    def _update(self, key: Any, trace: Trace, constraints: ChoiceMap, args: tuple):
        known = set(self.layout.addresses)
        extra = [a for a in constraints.addresses() if a not in known]
        if extra:
            raise GuideError(f"{self.name}.update: {', '.join(map(format_address, extra))} are not latent choices")
        old = trace.choices
        new_values, discard_values, discard_masks = {}, {}, {}
        for a in self.layout.addresses:
            if a in constraints:
                m = constraints.mask(a)
                v = jnp.asarray(constraints[a])
                if m is None:
                    new_values[a] = v
                    discard_values[a] = old[a]
                else:
                    m = jnp.asarray(m)
                    mv = jnp.reshape(m, m.shape + (1,) * (jnp.ndim(v) - m.ndim))
                    new_values[a] = jnp.where(mv, v, old[a])
                    discard_values[a], discard_masks[a] = old[a], m
            else:
                new_values[a] = old[a]
        chosen = ChoiceMap(new_values)
        score = self._score(args[0], chosen)
        return FlowTrace(self, args, score, chosen), score - trace.score, ChoiceMap(discard_values, discard_masks)

    def _regenerate(self, key: Any, trace: Trace, selection: Selection, args: tuple):
        chosen = [a for a in self.layout.addresses if selection.contains(a)]
        if len(chosen) != len(self.layout.addresses):
            raise GuideError(
                f"{self.name}.regenerate: a joint flow can only redraw all of its latents at once "
                f"(selected: {', '.join(map(format_address, chosen)) or 'none'})"
            )
        return self._simulate(key, args), jnp.zeros(())


def auto_flow(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoFlow, tuple]:
    """``(guide, guide_args)``: a flow guide for ``model`` and its initial arguments (see :class:`AutoFlow`)."""
    guide = AutoFlow(model, args, observations, **kwargs)
    return guide, guide.init_args


__all__ = ["FLOW_ADDRESS", "AutoFlow", "FlowTrace", "all_or_none", "auto_flow"]
