"""GFI conformance: one suite run against every generative-function class.

The suite is parametrised over :data:`CASES`. A :class:`Case` is a
generative function, its arguments (and the arguments ``update`` /
``regenerate`` move to), the GFI methods it defines, and a *reference*:
a function ``ref(choices, args) -> {address: Entry}`` that recomputes the
elementwise log density of every choice and ``ppl.factor`` term directly
with numpyro, and says which elements are present (a branch-only address of
an untaken branch is not). A new class joins the suite by adding one case.

For every case, with constraints and selections drawn at random from the
case's own addresses (masks on some elements, fully masked-out entries,
constraints on untaken branches):

* ``simulate``'s score = the reference total = ``assess`` of its choices;
* ``generate``'s weight = the sum of the constrained log densities plus the
  factors (``-inf`` when a constraint names an absent element); with every
  choice constrained it is ``assess``;
* ``update``: unconstrained, still-present values are unchanged; the weight
  is ``log p(t'; x') - log p(t; x) - log q(fresh)`` from the reference;
  ``discard`` holds exactly the overwritten and dropped old elements, with
  their old values;
* a masked-out constraint is no constraint (``generate``/``update`` give what
  they give without it);
* ``regenerate``: unselected, still-present values are unchanged; the weight
  is the MH log ratio of prior proposals, ``sum over kept choices of
  log p_new(v) - log p_old(v)`` plus the change in factors;
* traces round-trip through ``jax.jit`` and ``jax.vmap`` unchanged, with
  ``trace.gen_fn == gf``, and the GFI works on the round-tripped trace;
* undefined methods raise a ``PPLError``.

Identity (DESIGN.md, "a generative function is a value"): closures defined
in a model body, rebuilt-equal functions and generative functions passed as
arguments behave exactly like equivalent module-level models under every
method, and equality/hash follow the static configuration.

Tolerances are float32 round-off (the quantities are equal in exact
arithmetic), except the one Monte Carlo check of ``ppl.vi.marginal``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpyro.distributions.transforms import biject_to

import ppl
from ppl import dist
from ppl.core.mixture import Mixture
from ppl.core.switch import Switch

from .random_models import (
    branch_a,
    branch_b,
    branch_c,
    build_extended,
    closure_kernel,
    elem,
    elem_cond,
    elem_cond_entries,
    entry,
    extended_specs,
    kernel,
    kernel_entries,
    nest_entries,
    reference_entries,
    scaled_entries,
    sub,
    switch_entries,
)

TOL = dict(rtol=1e-4, atol=2e-3)
# CI runs a fixed, derandomised set of examples; PPL_PROPERTY_EXAMPLES=200 explores more.
EXAMPLES = int(os.environ.get("PPL_PROPERTY_EXAMPLES", "3"))
DRAWS = 2  # random constraint/selection draws per case and property
# the references evaluate densities at the placeholder values of absent elements too (then unused)
pytestmark = pytest.mark.filterwarnings("ignore:Out-of-support values:UserWarning")
ALL = frozenset({"simulate", "assess", "generate", "generate_full", "update", "regenerate"})


# ===================================================================== cases


@dataclass(frozen=True)
class Case:
    id: str
    gf: ppl.GenerativeFunction
    args: tuple
    ref: Callable[[ppl.ChoiceMap, tuple], dict]
    new_args: tuple | None = None  # what update/regenerate move the args to (None: unchanged)
    methods: frozenset = ALL
    #: regenerate is checked with the same args only (see test_scale_regenerate_with_a_new_factor)
    regenerate_same_args: bool = False
    notes: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return self.id


# --- top-level combinators and their references ---------------------------------

XS = jnp.array([0.1, -0.4, 0.7])


def vmap_ref(cm, args):
    (xs,) = args
    return {("z",): entry(nd.Normal(xs, 1.0).log_prob(cm["z"]))}


def vmap_cond_ref(cm, args):
    return elem_cond_entries(cm, np.asarray(args[0]))


def scan_ref(cm, args):
    return kernel_entries(cm, args[0], 3)[0]


def switch_ref(cm, args):
    index, p = args
    return switch_entries(int(index), cm, p)


def mixture_ref(cm, args):
    logits, p = args
    k = np.asarray(cm["component"])
    out = {("component",): entry(nd.Categorical(logits=logits).log_prob(k))}
    out.update(nest_entries("value", switch_entries(k, cm["value"], p, branches=(0, 1))))
    return out


@ppl.gen
def scaled_inner(a):
    mu = dist.Normal(a, 1.0) @ "mu"
    ppl.factor("pen", -0.1 * mu**2)
    ppl.scan(kernel, length=3)(mu, None) @ "t"
    return mu


def scaled_inner_ref(cm, args):
    mu = cm["mu"]
    out = {("mu",): entry(nd.Normal(args[0], 1.0).log_prob(mu)), ("pen",): entry(-0.1 * mu**2, kind="factor")}
    out.update(nest_entries("t", kernel_entries(cm["t"], mu, 3)[0]))
    return out


def scale_ref(cm, args):
    return scaled_entries(scaled_inner_ref(cm, args), 0.5)


def vmap_scale_ref(cm, args):
    return scaled_entries(vmap_ref(cm, args), 0.25)


def vmap_scan_ref(cm, args):
    c0s = np.asarray(args[0], np.float32)
    xs, ys = np.asarray(cm["x"]), np.asarray(cm["y"])
    prev = np.concatenate([c0s[:, None], xs[:, :-1]], axis=1)
    return {
        ("x",): entry(nd.Normal(0.5 * prev, 1.0).log_prob(xs)),
        ("y",): entry(nd.Normal(xs, 0.5).log_prob(ys)),
    }


@ppl.gen
def elem_wide(x):
    z = dist.Normal(x, 2.0) @ "z"
    dist.Normal(z, 1.0) @ "u"
    return z


def switch_of_vmaps_ref(cm, args):
    index, xs = int(args[0]), args[1]
    z = cm["z"]
    lz = np.where(index == 0, nd.Normal(xs, 1.0).log_prob(z), nd.Normal(xs, 2.0).log_prob(z))
    return {("z",): entry(lz), ("u",): entry(nd.Normal(z, 1.0).log_prob(cm["u"]), index == 1)}


@ppl.gen
def kernel_wide(c, _):
    x = dist.Normal(0.5 * c, 2.0) @ "x"
    dist.Normal(x, 0.5) @ "y"
    return x, x


def mixture_of_scans_ref(cm, args):
    logits, c0 = args[0], args[1]
    k = int(cm["component"])
    xs, ys = np.asarray(cm["value", "x"]), np.asarray(cm["value", "y"])
    prev = np.concatenate([[np.float32(c0)], xs[:-1]])
    sx = 1.0 if k == 0 else 2.0
    return {
        ("component",): entry(nd.Categorical(logits=logits).log_prob(k)),
        ("value", "x"): entry(nd.Normal(0.5 * prev, sx).log_prob(xs)),
        ("value", "y"): entry(nd.Normal(xs, 0.5).log_prob(ys)),
    }


@ppl.gen
def obs_model(a):
    mu = dist.Normal(a, 1.0) @ "mu"
    s = dist.HalfNormal(1.0) @ "s"
    dist.Normal(mu, s) @ "y1"
    ppl.vmap(elem)(mu + jnp.arange(3.0)) @ "ys"
    k = dist.Bernoulli(0.5) @ "k"
    return ppl.cond(k, branch_b, branch_a)(mu) @ "br"


OBS = ppl.choices({"y1": 0.5, "ys": {"z": jnp.array([0.2, 1.1, 2.5])}})


def tempered_ref(cm, args):
    beta, obs, a = args
    beta = float(beta)
    mu, s, k = cm["mu"], cm["s"], np.asarray(cm["k"])
    out = {
        ("mu",): entry(nd.Normal(a, 1.0).log_prob(mu)),
        ("s",): entry(nd.HalfNormal(1.0).log_prob(s)),
        ("k",): entry(nd.Bernoulli(0.5).log_prob(k)),
        # the observations are not choices: they are tempered likelihood terms
        ("y1",): entry(beta * nd.Normal(mu, s).log_prob(obs["y1"]), kind="factor"),
        ("ys", "z"): entry(beta * nd.Normal(mu + jnp.arange(3.0), 1.0).log_prob(obs["ys", "z"]), kind="factor"),
    }
    out.update(nest_entries("br", switch_entries(k, cm["br"], mu, branches=(0, 1))))
    return out


def conditioned_ref(cm, args):
    # ppl.condition(obs_model, OBS): the data are not choices; their density is a factor
    return tempered_ref(cm, (1.0, OBS, args[0]))


def intervened_ref(cm, args):
    # ppl.do(obs_model, {"s": 0.8}): s leaves the model with its density; y1 sees s = 0.8
    (a,) = args
    mu, k = cm["mu"], np.asarray(cm["k"])
    out = {
        ("mu",): entry(nd.Normal(a, 1.0).log_prob(mu)),
        ("y1",): entry(nd.Normal(mu, 0.8).log_prob(cm["y1"])),
        ("ys", "z"): entry(nd.Normal(mu + jnp.arange(3.0), 1.0).log_prob(cm["ys", "z"])),
        ("k",): entry(nd.Bernoulli(0.5).log_prob(k)),
    }
    out.update(nest_entries("br", switch_entries(k, cm["br"], mu, branches=(0, 1))))
    return out


@ppl.gen
def reparam_inner(a):
    mu = dist.Normal(a, 2.0) @ "mu"
    s = dist.LogNormal(0.0, 0.5) @ "s"
    ppl.vmap(elem)(mu + jnp.arange(3.0)) @ "ys"
    return dist.Normal(mu, s) @ "y1"


REPARAM = ppl.reparameterize(
    reparam_inner, {"mu": ppl.LocScale(0.3), "s": ppl.TransformToBase(), ("ys", "z"): ppl.LocScale(0.0)}
)


def reparam_ref(cm, args):
    # the new choices: mu_decentered ~ N(0.3 a, 2^0.3), mu = a + 2^0.7 (zm - 0.3 a); s_base ~ N(0, 0.5),
    # s = exp(s_base); ys/z_decentered ~ N(0, 1), z = mu + i + zd; y1 ~ N(mu, s) as before
    (a,) = args
    zm, u = cm["mu_decentered"], cm["s_base"]
    mu = a + 2.0**0.7 * (zm - 0.3 * a)
    return {
        ("mu_decentered",): entry(nd.Normal(0.3 * a, 2.0**0.3).log_prob(zm)),
        ("s_base",): entry(nd.Normal(0.0, 0.5).log_prob(u)),
        ("ys", "z_decentered"): entry(nd.Normal(0.0, 1.0).log_prob(cm["ys", "z_decentered"])),
        ("y1",): entry(nd.Normal(mu, jnp.exp(u)).log_prob(cm["y1"])),
    }


# --- ppl.vi.marginal / normalize: density *estimates*, exact in these cases --------


@ppl.gen
def joint_independent():
    z = dist.Normal(0.0, 1.0) @ "z"
    dist.Normal(0.5, 1.0) @ "psi"
    dist.Normal(z, 1.0) @ "y"
    return z


@ppl.gen
def psi_prior(z_choices):
    return dist.Normal(0.5, 1.0) @ "psi"


def marginal_ref(cm, args):
    z = cm["z"]
    return {("z",): entry(nd.Normal(0.0, 1.0).log_prob(z)), ("y",): entry(nd.Normal(z, 1.0).log_prob(cm["y"]))}


@ppl.gen
def conjugate():
    z = dist.Normal(0.0, 1.0) @ "z"
    return dist.Normal(z, 1.0) @ "y"


@ppl.gen
def exact_posterior():
    # p(z | y = 1) for conjugate(): N(1/2, sqrt(1/2))
    return dist.Normal(0.5, jnp.sqrt(0.5)) @ "z"


def normalize_ref(cm, args):
    return {("z",): entry(nd.Normal(0.5, np.sqrt(0.5)).log_prob(cm["z"]))}


# --- ppl.vi.auto_flow: one joint flow over all latents ----------------------------


@ppl.gen
def flow_target():
    m = dist.Normal(0.0, 1.0) @ "m"
    dist.HalfNormal(1.0) @ "s"
    dist.Uniform(-1.0, 2.0) @ "w"
    return dist.Normal(m, 1.0) @ "y"


FLOW_GUIDE, (FLOW_PARAMS,) = ppl.vi.auto_flow(
    flow_target, (), {"y": 0.4}, flow=lambda k, d: ppl.flows.affine_coupling(k, d, layers=2, width=8)
)
FLOW_PARAMS_NEW = jax.tree_util.tree_map(lambda x: x + 0.05 if eqx.is_inexact_array(x) else x, FLOW_PARAMS)


def flow_guide_ref(cm, args):
    """log q(x) = log q_flow(T^{-1}(x) - loc) + log|dT^{-1}/dx| by numpyro's transforms, all at the first address."""
    (params,) = args
    ts = [biject_to(c) for c in (nd.constraints.real, nd.constraints.positive, nd.constraints.interval(-1.0, 2.0))]
    xs = [jnp.asarray(cm[a], jnp.float32) for a in ("m", "s", "w")]
    u = jnp.stack([t.inv(x) for t, x in zip(ts, xs)])
    log_det_inv = sum(-t.log_abs_det_jacobian(ui, x) for t, ui, x in zip(ts, u, xs))
    log_q = eqx.filter_jit(lambda f, z: f.log_prob(z))(params["flow"], u - params["loc"]) + log_det_inv
    return {("m",): entry(log_q), ("s",): entry(0.0), ("w",): entry(0.0)}


def gen_case(spec: list[str]) -> Case:
    return Case(
        "gen[" + ",".join(spec) + "]",
        build_extended(spec),
        (0.3,),
        lambda cm, args, spec=spec: reference_entries(spec, cm, args[0]),
        new_args=(0.5,),
    )


CASES = [
    # every kind of site once (random combinations: test_random_gen_models_conform)
    gen_case(["switch3", "factor", "vmapcond"]),
    gen_case(["halfnormal", "mixture", "scale", "closure", "det"]),
    gen_case(["call", "cond", "scan", "vmap", "dirichlet"]),
    gen_case(["normal", "poisson", "bern", "cat", "vecnormal"]),
    Case("vmap", ppl.vmap(elem), (XS,), vmap_ref, new_args=(XS + 0.3,)),
    Case("vmap(gen with cond)", ppl.vmap(elem_cond), (XS,), vmap_cond_ref, new_args=(XS - 0.5,)),
    Case("scan", ppl.scan(kernel, length=3), (jnp.float32(0.3), None), scan_ref, new_args=(jnp.float32(0.8), None)),
    Case(
        "switch",
        Switch((branch_a, branch_b, branch_c)),
        (jnp.int32(1), 0.4),
        switch_ref,
        new_args=(jnp.int32(2), 0.1),
    ),
    Case("switch(same branch)", Switch((branch_a, branch_b, branch_c)), (jnp.int32(1), 0.4), switch_ref),
    Case(
        "mixture",
        Mixture((branch_a, branch_b)),
        (jnp.array([0.2, -0.3]), 0.4),
        mixture_ref,
        new_args=(jnp.array([-0.5, 0.5]), 0.1),
    ),
    Case(
        "scale",
        ppl.scale(scaled_inner, 0.5),
        (0.3,),
        scale_ref,
        new_args=(0.6,),
    ),
    Case("vmap(scale)", ppl.vmap(ppl.scale(elem, 0.25)), (XS,), vmap_scale_ref, new_args=(XS + 0.3,)),
    Case(
        "vmap(scan)",
        ppl.vmap(ppl.scan(kernel, length=3), in_axes=(0, None)),
        (jnp.array([0.3, -0.6]), None),
        vmap_scan_ref,
        new_args=(jnp.array([0.1, 0.9]), None),
    ),
    Case(
        "switch(vmap, vmap)",
        Switch((ppl.vmap(elem), ppl.vmap(elem_wide))),
        (jnp.int32(0), XS),
        switch_of_vmaps_ref,
        new_args=(jnp.int32(1), XS + 0.2),
    ),
    Case(
        "mixture(scan, scan)",
        Mixture((ppl.scan(kernel, length=3), ppl.scan(kernel_wide, length=3))),
        (jnp.array([0.3, -0.2]), jnp.float32(0.4), None),
        mixture_of_scans_ref,
        new_args=(jnp.array([-0.4, 0.4]), jnp.float32(-0.1), None),
    ),
    Case(
        "tempered",
        ppl.infer.tempered(obs_model),
        (jnp.float32(0.3), OBS, 0.2),
        tempered_ref,
        new_args=(jnp.float32(0.7), OBS, 0.4),
    ),
    Case("condition", ppl.condition(obs_model, OBS), (0.2,), conditioned_ref, new_args=(0.6,)),
    Case("do", ppl.do(obs_model, {"s": jnp.float32(0.8)}), (0.2,), intervened_ref, new_args=(-0.3,)),
    Case("reparameterize", REPARAM, (0.2,), reparam_ref, new_args=(0.7,)),
    Case(
        "marginal",
        ppl.vi.marginal(joint_independent, "psi", particles=3),
        (),
        marginal_ref,
        methods=frozenset({"simulate", "generate_full"}),
    ),
    Case(
        "marginal(proposal)",
        ppl.vi.marginal(joint_independent, "psi", psi_prior, particles=2),
        (),
        marginal_ref,
        methods=frozenset({"simulate", "generate_full"}),
    ),
    Case(
        "normalize",
        ppl.vi.normalize(conjugate, {"y": 1.0}, exact_posterior, particles=4),
        ((), ()),
        normalize_ref,
        methods=frozenset({"simulate"}),
    ),
]
CASES.append(
    Case(
        "auto_flow",
        FLOW_GUIDE,
        (FLOW_PARAMS,),
        flow_guide_ref,
        new_args=(FLOW_PARAMS_NEW,),
        # one joint draw: no tractable conditionals, so no partial generate or regenerate
        methods=frozenset({"simulate", "assess", "generate_full", "update"}),
    )
)
IDS = [c.id for c in CASES]


#: compositions of classes that each have their own case, and two of the four gen[...] cases (random gen models
#: run in both tiers too): marked slow, so the py312 run (which leaves slow tests out) checks every class once
SLOW_CASES = frozenset(
    {
        "gen[halfnormal,mixture,scale,closure,det]",
        "gen[call,cond,scan,vmap,dirichlet]",
        "vmap(gen with cond)",
        "switch(same branch)",
        "vmap(scale)",
        "vmap(scan)",
        "switch(vmap, vmap)",
        "mixture(scan, scan)",
        "marginal(proposal)",
    }
)
assert SLOW_CASES <= set(IDS), SLOW_CASES - set(IDS)


def cases_with(*methods: str) -> list:
    return [
        pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW_CASES else [])
        for c in CASES
        if set(methods) <= c.methods
    ]


# ================================================================ helpers


def total(entries: dict) -> float:
    return float(sum(np.sum(np.where(e.present, e.logp, 0.0)) for e in entries.values()))


def factors(entries: dict) -> float:
    return float(sum(np.sum(np.where(e.present, e.logp, 0.0)) for e in entries.values() if e.kind == "factor"))


def choice_entries(entries: dict) -> dict:
    return {a: e for a, e in entries.items() if e.kind == "choice"}


def expand(mask, value):
    mask = np.asarray(mask)
    return mask.reshape(mask.shape + (1,) * (np.ndim(value) - mask.ndim))


def assert_close(got, expected, what: str) -> None:
    got, expected = float(got), float(expected)
    if np.isinf(expected):
        assert got == expected, f"{what}: got {got}, expected {expected}"
        return
    np.testing.assert_allclose(got, expected, **TOL, err_msg=what)


def assert_values_where(got, expected, where, what: str) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    w = np.broadcast_to(expand(where, got), got.shape)
    np.testing.assert_array_equal(np.where(w, got, 0), np.where(w, expected, 0), err_msg=what)


def keys(seed: int, n: int = 6):
    return jax.random.split(jax.random.key(seed), n)


def draw_constraints(rng, entries: dict, cm, other_entries: dict, other_cm, p: float = 0.5):
    """Random constraints over the choices of ``entries``, values from ``other_cm``.

    Each address is constrained with probability ``p``: as a whole, or
    through a random element mask, sometimes fully masked out. Only
    elements present in one of the two traces are constrained (an absent
    element holds a placeholder value). Returns ``(constraints, C)`` with
    ``C[a]`` the elementwise mask of what is really constrained.
    """
    values, constrained = {}, {}
    for a, e in choice_entries(entries).items():
        if rng.random() >= p:
            continue
        po, pt = other_entries[a].present, e.present
        avail = po | pt
        if not avail.any():
            continue
        ov, tv = np.asarray(other_cm[a]), np.asarray(cm[a])
        value = jnp.asarray(np.where(expand(po, ov), ov, tv))
        r = rng.random()
        if r < 0.4 and avail.all():
            values[a] = value
            constrained[a] = np.ones(e.logp.shape, bool)
        else:
            m = (rng.random(e.logp.shape) < 0.5) & avail
            if r > 0.85:
                m = np.zeros(e.logp.shape, bool)
            values[a] = ppl.masked(value, jnp.asarray(m))
            constrained[a] = m
    return ppl.choices(values), constrained


def draw_selection(rng, entries: dict, p: float = 0.4):
    addrs = [a for a in choice_entries(entries) if rng.random() < p]
    if addrs and rng.random() < 0.3:
        addrs[0] = addrs[0][:1]  # a namespace selects everything under it
    return (ppl.select(*addrs) if addrs else ppl.select_none()), addrs


def assert_same_choices(a: ppl.ChoiceMap, b: ppl.ChoiceMap, what: str, exact: bool = True) -> None:
    ia, ib = list(a.masked_items()), list(b.masked_items())
    assert [x[0] for x in ia] == [x[0] for x in ib], f"{what}: addresses {[x[0] for x in ia]} != {[x[0] for x in ib]}"
    for (addr, va, ma), (_, vb, mb) in zip(ia, ib):
        assert (ma is None) == (mb is None), f"{what}: mask at {addr}"
        if ma is not None:
            np.testing.assert_array_equal(np.asarray(ma), np.asarray(mb), err_msg=f"{what}: mask at {addr}")
        if exact:
            np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=f"{what}: value at {addr}")
        else:
            np.testing.assert_allclose(np.asarray(va), np.asarray(vb), **TOL, err_msg=f"{what}: value at {addr}")


# ====================================================== the properties (per case)


def check_simulate(case: Case, key) -> ppl.Trace:
    tr = case.gf.simulate(key, case.args)
    ref = case.ref(tr.choices, case.args)
    assert_close(tr.score, total(ref), f"{case.id}: simulate score vs reference")
    assert tr.gen_fn == case.gf
    if "assess" in case.methods:
        w, _ = case.gf.assess(tr.choices, case.args)
        assert_close(w, total(ref), f"{case.id}: assess of simulate's choices")
    return tr


def check_generate(case: Case, rng, key, tr, other) -> None:
    ref_t = case.ref(tr.choices, case.args)
    ref_o = case.ref(other.choices, case.args)
    cons, C = draw_constraints(rng, ref_t, tr.choices, ref_o, other.choices)
    new, w = case.gf.generate(key, cons, case.args)
    ref_n = case.ref(new.choices, case.args)
    if any((C[a] & ~ref_n[a].present).any() for a in C):
        assert_close(w, -np.inf, f"{case.id}: generate with a constraint on an absent element")
        return
    expected = factors(ref_n) + sum(float(np.sum(np.where(C[a], ref_n[a].logp, 0.0))) for a in C)
    assert_close(w, expected, f"{case.id}: generate weight = constrained log densities + factors")
    assert_close(new.score, total(ref_n), f"{case.id}: generate score")
    for a, m in C.items():
        assert_values_where(new.choices[a], cons[a], m, f"{case.id}: generate keeps the constraint at {a}")
    # the same constraints without their masked-out entries: the same run
    check_masked_out_generate(case, key, cons, C, new, w)


def without_masked_out(cons: ppl.ChoiceMap, C: dict) -> ppl.ChoiceMap:
    return ppl.choices({a: (v if m is None else ppl.masked(v, m)) for a, v, m in cons.masked_items() if C[a].any()})


def check_masked_out_generate(case, key, cons, C, new, w) -> None:
    kept = without_masked_out(cons, C)
    if len(kept) == len(cons):
        return
    new2, w2 = case.gf.generate(key, kept, case.args)
    assert_close(w2, w, f"{case.id}: generate weight with masked-out constraints dropped")
    # values that are constrained or drawn afresh agree; the masked-out entries must not act as constraints
    ref_n = case.ref(new.choices, case.args)
    for a in C:
        if not C[a].any():
            assert_values_where(new.choices[a], new2.choices[a], ref_n[a].present, f"{case.id}: masked-out at {a}")


def check_update(case: Case, rng, key, tr, other) -> None:
    args = case.args
    new_args = case.new_args or args
    ref_t = case.ref(tr.choices, args)
    ref_o = case.ref(other.choices, args)
    cons, C = draw_constraints(rng, ref_t, tr.choices, ref_o, other.choices)
    new, w, discard = case.gf.update(key, tr, cons, new_args)
    assert new.gen_fn == case.gf
    ref_n = case.ref(new.choices, new_args)
    if any((C[a] & ~ref_n[a].present).any() for a in C):
        assert_close(w, -np.inf, f"{case.id}: update with a constraint on an absent element")
        return
    zeros = {a: np.zeros(e.logp.shape, bool) for a, e in ref_t.items()}
    Ca = {a: C.get(a, zeros[a]) for a in choice_entries(ref_t)}
    fresh = sum(
        float(np.sum(np.where(e.present & ~ref_t[a].present & ~Ca[a], e.logp, 0.0)))
        for a, e in choice_entries(ref_n).items()
    )
    expected = total(ref_n) - total(ref_t) - fresh
    assert_close(w, expected, f"{case.id}: update weight = new - old - fresh (constraints {cons})")
    assert_close(new.score, total(ref_n), f"{case.id}: update score")
    for a, e in choice_entries(ref_n).items():
        kept = e.present & ref_t[a].present & ~Ca[a]
        assert_values_where(new.choices[a], tr.choices[a], kept, f"{case.id}: update keeps the old value at {a}")
        assert_values_where(new.choices[a], cons[a] if a in C else 0, Ca[a], f"{case.id}: update constraint at {a}")
    check_discard(case, discard, tr, ref_t, ref_n, Ca)
    check_masked_out_update(case, key, tr, cons, C, new_args, new, w)


def check_discard(case, discard, tr, ref_t, ref_n, Ca) -> None:
    """``discard`` = the old elements overwritten by a constraint or no longer present, old values."""
    for a, e in choice_entries(ref_t).items():
        expected = e.present & (Ca[a] | ~ref_n[a].present)
        if a in discard and discard.get_value(a) is not None:
            m = discard.mask(a)
            got = np.broadcast_to(np.asarray(True if m is None else m), e.logp.shape)
            assert_values_where(discard[a], tr.choices[a], expected, f"{case.id}: discarded value at {a}")
        else:
            got = np.zeros(e.logp.shape, bool)
        np.testing.assert_array_equal(got, expected, err_msg=f"{case.id}: discard mask at {a} ({discard})")
    for a, _, m in discard.masked_items():
        if a not in choice_entries(ref_t):
            assert m is not None and not np.asarray(m).any(), f"{case.id}: discard holds {a}, not an old choice"


def check_masked_out_update(case, key, tr, cons, C, new_args, new, w) -> None:
    kept = without_masked_out(cons, C)
    if len(kept) == len(cons):
        return
    new2, w2, _ = case.gf.update(key, tr, kept, new_args)
    assert_close(w2, w, f"{case.id}: update weight with masked-out constraints dropped")
    assert_same_choices(new.choices, new2.choices, f"{case.id}: update with masked-out constraints dropped")


def check_regenerate(case: Case, rng, key, tr) -> None:
    args = case.args
    new_args = args if case.regenerate_same_args else (case.new_args or args)
    ref_t = case.ref(tr.choices, args)
    sel, _ = draw_selection(rng, ref_t)
    new, w = case.gf.regenerate(key, tr, sel, new_args)
    assert new.gen_fn == case.gf
    ref_n = case.ref(new.choices, new_args)
    expected = factors(ref_n) - factors(ref_t)
    for a, e in choice_entries(ref_n).items():
        if sel.contains(a):
            continue
        kept = e.present & ref_t[a].present
        expected += float(np.sum(np.where(kept, e.logp - ref_t[a].logp, 0.0)))
        assert_values_where(new.choices[a], tr.choices[a], kept, f"{case.id}: regenerate keeps unselected {a}")
    assert_close(w, expected, f"{case.id}: regenerate weight = MH log ratio ({sel})")
    assert_close(new.score, total(ref_n), f"{case.id}: regenerate score")


def check_undefined(case: Case, key, tr) -> None:
    calls = {
        "assess": lambda: case.gf.assess(tr.choices, case.args),
        "update": lambda: case.gf.update(key, tr, ppl.choices(), case.args),
        "regenerate": lambda: case.gf.regenerate(key, tr, ppl.select_none(), case.args),
    }
    for method, call in calls.items():
        if method not in case.methods:
            with pytest.raises(ppl.PPLError):
                call()


# ================================================================== the tests


@pytest.mark.parametrize("case", cases_with("simulate"))
def test_simulate_score_is_reference_and_assess(case):
    for i in range(DRAWS):
        tr = check_simulate(case, jax.random.key(10 + i))
    check_undefined(case, jax.random.key(0), tr)


@pytest.mark.parametrize("case", cases_with("generate_full"))
def test_generate_with_every_choice_constrained_is_assess(case):
    k1, k2 = keys(1, 2)
    tr = case.gf.simulate(k1, case.args)
    new, w = case.gf.generate(k2, tr.choices, case.args)
    ref = case.ref(tr.choices, case.args)
    assert_close(w, total(ref), f"{case.id}: generate with all choices = reference")
    if "assess" in case.methods:
        assert_close(w, case.gf.assess(tr.choices, case.args)[0], f"{case.id}: generate with all choices = assess")
    assert_same_choices(new.choices, tr.choices, f"{case.id}: generate with all choices", exact=False)


@pytest.mark.parametrize("case", cases_with("generate"))
def test_generate_weight_is_constrained_density(case):
    rng = np.random.default_rng(0)
    for i in range(DRAWS):
        k1, k2, k3 = keys(100 + i, 3)
        check_generate(case, rng, k3, case.gf.simulate(k1, case.args), case.gf.simulate(k2, case.args))


@pytest.mark.parametrize("case", cases_with("update"))
def test_update_weight_values_and_discard(case):
    rng = np.random.default_rng(1)
    for i in range(DRAWS):
        k1, k2, k3 = keys(200 + i, 3)
        check_update(case, rng, k3, case.gf.simulate(k1, case.args), case.gf.simulate(k2, case.args))


@pytest.mark.parametrize("case", cases_with("update"))
def test_update_with_nothing_given_and_everything_masked_out(case):
    k1, k2 = keys(3, 2)
    tr = case.gf.simulate(k1, case.args)
    new, w, discard = case.gf.update(k2, tr, ppl.choices(), case.args)
    assert_close(w, 0.0, f"{case.id}: update with no change")
    assert_same_choices(new.choices, tr.choices, f"{case.id}: update with no change")
    assert all(m is not None and not np.asarray(m).any() for _, _, m in discard.masked_items()), discard
    # every choice given under a False mask: still no change
    ref = choice_entries(case.ref(tr.choices, case.args))
    masked_out = ppl.choices({a: ppl.masked(tr.choices[a], jnp.zeros(e.logp.shape, bool)) for a, e in ref.items()})
    new, w, discard = case.gf.update(k2, tr, masked_out, case.args)
    assert_close(w, 0.0, f"{case.id}: update with every constraint masked out")
    assert_same_choices(new.choices, tr.choices, f"{case.id}: update with every constraint masked out")
    assert all(m is not None and not np.asarray(m).any() for _, _, m in discard.masked_items()), discard


@pytest.mark.parametrize("case", cases_with("regenerate"))
def test_regenerate_weight_is_mh_ratio(case):
    rng = np.random.default_rng(2)
    for i in range(DRAWS):
        k1, k2 = keys(300 + i, 2)
        check_regenerate(case, rng, k2, case.gf.simulate(k1, case.args))


@pytest.mark.parametrize("case", cases_with("simulate"))
def test_traces_round_trip_through_jit_and_vmap(case):
    gf, args = case.gf, case.args
    k1, k2 = keys(4, 2)
    tr = gf.simulate(k1, args)
    regen = "regenerate" in case.methods

    # one compiled program (compiles dominate this suite): the trace and the generative function go in as
    # arguments, a trace simulated inside comes out, and a regenerate of nothing runs on the argument trace
    @jax.jit
    def through_jit(g, t, k):
        w = g.regenerate(k2, t, ppl.select_none(), args)[1] if regen else jnp.zeros(())
        return t, g.simulate(k, args), g, w

    passed, inside, g_out, w_regen = through_jit(gf, tr, k1)
    assert g_out == gf
    if regen:
        assert_close(w_regen, 0.0, f"{case.id}: jitted regenerate of nothing")
    for moved in (passed, inside):
        assert type(moved) is type(tr)
        assert jax.tree_util.tree_structure(moved) == jax.tree_util.tree_structure(tr)
        assert moved.gen_fn == gf and hash(moved.gen_fn) == hash(gf)
        assert_close(moved.score, tr.score, f"{case.id}: score after jit")
        assert_same_choices(moved.choices, tr.choices, f"{case.id}: choices after jit", exact=False)
    # the GFI works on a trace that came out of jit
    if "update" in case.methods:
        _, w, _ = gf.update(k2, inside, ppl.choices(), args)
        assert_close(w, 0.0, f"{case.id}: update of a trace that went through jit")
    if regen:
        assert_close(gf.regenerate(k2, inside, ppl.select_none(), args)[1], 0.0, f"{case.id}: regenerate after jit")
    ks = jax.random.split(k2, 2)
    batched = jax.vmap(lambda t: t)(jax.vmap(lambda k: gf.simulate(k, args))(ks))
    for i in range(2):
        one = jax.tree_util.tree_map(lambda x, i=i: x[i], batched)
        single = gf.simulate(ks[i], args)
        assert one.gen_fn == gf
        assert_close(one.score, single.score, f"{case.id}: vmapped simulate, element {i}")
        assert_same_choices(one.choices, single.choices, f"{case.id}: vmapped simulate, element {i}", exact=False)


# ------------------------------------------------------- random @gen models (hypothesis)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=extended_specs, seed=st.integers(0, 2**16))
def test_random_gen_models_conform(spec, seed):
    ppl.clear_caches()  # throw-away models: release their compiled programs
    case = gen_case(spec)
    rng = np.random.default_rng(seed)
    k = keys(seed, 6)
    tr = check_simulate(case, k[0])
    other = case.gf.simulate(k[1], case.args)
    check_generate(case, rng, k[2], tr, other)
    check_update(case, rng, k[3], tr, other)
    check_regenerate(case, rng, k[4], tr)


# ------------------------------------------------------------------ special cases


def test_marginal_of_a_dependent_auxiliary_estimates_the_marginal_density():
    """z ~ N(psi, 1), psi ~ N(0, 1): q(z) = N(0, sqrt 2); the weight is log of an unbiased estimate."""

    @ppl.gen
    def joint():
        psi = dist.Normal(0.0, 1.0) @ "psi"
        return dist.Normal(psi, 1.0) @ "z"

    m = ppl.vi.marginal(joint, "psi", particles=4000)
    _, w = m.generate(jax.random.key(0), {"z": 0.7}, ())
    # Monte Carlo: sd of log(mean of 4000 weights) is about 0.012 here
    np.testing.assert_allclose(float(w), float(nd.Normal(0.0, np.sqrt(2.0)).log_prob(0.7)), atol=0.06)
    with pytest.raises(ppl.PPLError):
        m.generate(jax.random.key(0), {"psi": 0.1, "z": 0.7}, ())


def test_scale_regenerate_with_a_new_factor():
    """Regenerate moving the factor c -> c': the MH ratio of scaled densities over kept choices.

    ``w = c' log p(kept; new) - c log p(kept; old)``: the selected old values'
    density takes no part (as for update, where ``(c' - c) * log p(t)`` covers
    every old choice because none is resampled).
    """

    @ppl.gen
    def inner():
        x = dist.Normal(0.0, 1.0) @ "x"
        return dist.Normal(x, 1.0) @ "y"

    @ppl.gen
    def outer(c):
        return ppl.scale(inner, c)() @ "s"

    tr = outer.simulate(jax.random.key(0), (0.5,))
    new, w = outer.regenerate(jax.random.key(1), tr, ppl.select(("s", "x")), (2.0,))
    x0, x1, y = tr["s", "x"], new["s", "x"], tr["s", "y"]
    expected = 2.0 * nd.Normal(x1, 1.0).log_prob(y) - 0.5 * nd.Normal(x0, 1.0).log_prob(y)
    np.testing.assert_allclose(float(w), float(expected), **TOL)


# ================================================================== identity


def assert_same_behaviour(g1, a1, g2, a2, cons, sel, new1=None, new2=None, what: str = "") -> None:
    """Every GFI method of (g1, a1) and (g2, a2) gives the same values and weights for the same keys."""
    k = keys(7, 5)
    t1, t2 = g1.simulate(k[0], a1), g2.simulate(k[0], a2)
    assert_same_choices(t1.choices, t2.choices, f"{what}: simulate", exact=False)
    assert_close(t1.score, t2.score, f"{what}: simulate score")
    assert_close(g1.assess(t1.choices, a1)[0], g2.assess(t2.choices, a2)[0], f"{what}: assess")
    (n1, w1), (n2, w2) = g1.generate(k[1], cons, a1), g2.generate(k[1], cons, a2)
    assert_same_choices(n1.choices, n2.choices, f"{what}: generate", exact=False)
    assert_close(w1, w2, f"{what}: generate weight")
    (n1, w1, d1), (n2, w2, d2) = g1.update(k[2], t1, cons, new1), g2.update(k[2], t2, cons, new2)
    assert_same_choices(n1.choices, n2.choices, f"{what}: update", exact=False)
    assert_same_choices(d1, d2, f"{what}: update discard", exact=False)
    assert_close(w1, w2, f"{what}: update weight")
    assert abs(float(w1)) > 1e-4  # the update really changed something
    (n1, w1), (n2, w2) = g1.regenerate(k[3], t1, sel, new1), g2.regenerate(k[3], t2, sel, new2)
    assert_same_choices(n1.choices, n2.choices, f"{what}: regenerate", exact=False)
    assert_close(w1, w2, f"{what}: regenerate weight")
    assert abs(float(w1)) > 1e-4


# --- a kernel defined in the model body, closing over a latent ---------------------


@ppl.gen
def walk_closure(a):
    sigma = dist.HalfNormal(1.0) @ "sigma"

    @ppl.gen
    def step(c, _):
        x = dist.Normal(c, sigma) @ "x"
        return x, x

    return ppl.scan(step, length=3)(a, None) @ "steps"


@ppl.gen
def step_module(c, s):
    x = dist.Normal(c, s) @ "x"
    return x, x


@ppl.gen
def walk_module(a):
    sigma = dist.HalfNormal(1.0) @ "sigma"
    return ppl.scan(step_module)(a, jnp.full(3, sigma)) @ "steps"


@ppl.gen
def vmap_closure(a):
    mu = dist.Normal(a, 1.0) @ "mu"

    @ppl.gen
    def one(x):
        return dist.Normal(mu + x, 1.0) @ "z"

    return ppl.vmap(one)(jnp.arange(3.0)) @ "zs"


@ppl.gen
def one_module(x, mu):
    return dist.Normal(mu + x, 1.0) @ "z"


@ppl.gen
def vmap_module(a):
    mu = dist.Normal(a, 1.0) @ "mu"
    return ppl.vmap(one_module, in_axes=(0, None))(jnp.arange(3.0), mu) @ "zs"


@ppl.gen
def cond_closure(a):
    mu = dist.Normal(a, 1.0) @ "mu"

    @ppl.gen
    def left():
        return dist.Normal(mu, 1.0) @ "x"

    @ppl.gen
    def right():
        x = dist.Normal(-mu, 2.0) @ "x"
        dist.HalfNormal(1.0) @ "e"
        return x

    k = dist.Bernoulli(0.5) @ "k"
    return ppl.cond(k, right, left)() @ "br"


@ppl.gen
def left_module(mu):
    return dist.Normal(mu, 1.0) @ "x"


@ppl.gen
def right_module(mu):
    x = dist.Normal(-mu, 2.0) @ "x"
    dist.HalfNormal(1.0) @ "e"
    return x


@ppl.gen
def cond_module(a):
    mu = dist.Normal(a, 1.0) @ "mu"
    k = dist.Bernoulli(0.5) @ "k"
    return ppl.cond(k, right_module, left_module)(mu) @ "br"


@pytest.mark.parametrize(
    ("closure", "module", "cons", "sel"),
    [
        (
            walk_closure,
            walk_module,
            {"sigma": 0.7, "steps": {"x": ppl.masked(jnp.ones(3), jnp.array([1, 0, 1]) > 0)}},
            "sigma",
        ),
        (vmap_closure, vmap_module, {"mu": 0.9}, "mu"),
        (cond_closure, cond_module, {"mu": 0.9, "k": 1}, "mu"),
    ],
    ids=["scan kernel", "vmap element", "cond branches"],
)
def test_closure_in_the_body_behaves_like_a_module_level_model(closure, module, cons, sel):
    # the closures of two runs (other captured latents) are the same generative function
    t1, t2 = (closure.simulate(k, (0.3,)) for k in keys(9, 2))
    inner = [t.get_subtrace(t.keys[-1]).gen_fn for t in (t1, t2)]
    assert inner[0] == inner[1] and hash(inner[0]) == hash(inner[1])
    assert_same_behaviour(
        closure, (0.3,), module, (0.3,), ppl.choices(cons), ppl.select(sel), (0.5,), (0.5,), what=closure.name
    )


# --- rebuilt-equal functions: same code, other captured arrays -----------------------


def make_model(scale):
    @ppl.gen
    def m(a):
        x = dist.Normal(a, scale) @ "x"
        return ppl.scan(closure_kernel(0.1 * scale), length=2)(x, None) @ "t"

    return m


@ppl.gen
def model_with_scale(a, scale):
    x = dist.Normal(a, scale) @ "x"
    return ppl.scan(closure_kernel(0.1 * scale), length=2)(x, None) @ "t"


def test_rebuilt_equal_functions_are_the_same_function():
    m1, m2 = make_model(jnp.float32(1.0)), make_model(jnp.float32(3.0))
    assert m1 == m2 and hash(m1) == hash(m2)  # captured arrays are leaves
    assert make_model(1.0) != make_model(2.0)  # captured Python scalars are static configuration
    cons = ppl.choices({"x": 0.4, "t": {"y": ppl.masked(jnp.zeros(2), jnp.array([True, False]))}})
    sel = ppl.select("x")
    # each behaves like the module-level model with its array as an argument
    for s, m in ((1.0, m1), (3.0, m2)):
        assert_same_behaviour(
            m,
            (0.3,),
            model_with_scale,
            (0.3, jnp.float32(s)),
            cons,
            sel,
            (0.5,),
            (0.5, jnp.float32(s)),
            what=f"make_model({s})",
        )
    # m2 moves a trace of m1 with its own leaves: as the module model moving its argument 1 -> 3
    k = keys(8, 3)
    t1 = m1.simulate(k[0], (0.3,))
    tm = model_with_scale.simulate(k[0], (0.3, jnp.float32(1.0)))
    (n1, w1, d1), (n2, w2, d2) = (
        m2.update(k[1], t1, cons, (0.3,)),
        model_with_scale.update(k[1], tm, cons, (0.3, jnp.float32(3.0))),
    )
    assert_same_choices(n1.choices, n2.choices, "rebuilt update")
    assert_same_choices(d1, d2, "rebuilt update discard")
    assert_close(w1, w2, "rebuilt update weight")
    (n1, w1), (n2, w2) = (
        m2.regenerate(k[2], t1, sel),
        model_with_scale.regenerate(k[2], tm, sel, (0.3, jnp.float32(3.0))),
    )
    assert_same_choices(n1.choices, n2.choices, "rebuilt regenerate")
    assert_close(w1, w2, "rebuilt regenerate weight")
    assert n1.gen_fn == m1 == m2


# --- generative functions passed as arguments ------------------------------------------


@ppl.gen
def call_arg(g, a):
    return g(a) @ "sub"


@ppl.gen
def call_sub(a):
    return sub(a) @ "sub"


@ppl.gen
def call_scaled_sub(a, c):
    return ppl.scale(sub, c)(a) @ "sub"


@ppl.gen
def call_vmapped(a):
    return ppl.vmap(elem)(a + jnp.arange(3.0)) @ "sub"


@ppl.gen
def shifted_elems(a):
    return ppl.vmap(elem)(a + jnp.arange(3.0)) @ "v"


def test_generative_functions_passed_as_arguments_behave_like_fixed_ones():
    cons = ppl.choices({"sub": {"z": 0.8}})
    sel = ppl.select(("sub", "w"))  # z is kept and rescored under the new argument
    assert_same_behaviour(
        call_arg, (sub, 0.3), call_sub, (0.3,), cons, sel, (sub, 0.6), (0.6,), what="sub as an argument"
    )
    half, two = ppl.scale(sub, 0.5), ppl.scale(sub, 2.0)
    assert_same_behaviour(
        call_arg,
        (half, 0.3),
        call_scaled_sub,
        (0.3, 0.5),
        cons,
        sel,
        (half, 0.6),
        (0.6, 0.5),
        what="scale as an argument",
    )
    # the argument changes to an equal function with another factor: as the module model's factor 0.5 -> 2
    assert_same_behaviour(
        call_arg,
        (half, 0.3),
        call_scaled_sub,
        (0.3, 0.5),
        cons,
        ppl.select_none(),
        (two, 0.3),
        (0.3, 2.0),
        what="scale argument 0.5 -> 2",
    )
    vm = ppl.vmap(shifted_elems)
    cons_v = ppl.choices({"sub": {"v": {"z": ppl.masked(jnp.ones((2, 3)), jnp.eye(2, 3) > 0)}}})
    assert_same_behaviour(
        call_arg,
        (vm, jnp.array([0.1, 0.2])),
        call_arg,
        (ppl.vmap(shifted_elems), jnp.array([0.1, 0.2])),
        cons_v,
        ppl.select_none(),
        (vm, jnp.array([0.5, 0.2])),
        (ppl.vmap(shifted_elems), jnp.array([0.5, 0.2])),
        what="vmap built twice",
    )


def test_equality_follows_static_configuration():
    k1, k2 = make_model(jnp.float32(1.0)), make_model(jnp.float32(2.0))
    equal = [
        (ppl.vmap(elem), ppl.vmap(elem)),
        (ppl.vmap(k1, in_axes=(0,)), ppl.vmap(k2, in_axes=(0,))),
        (ppl.scan(kernel, length=3), ppl.scan(kernel, length=3)),
        (ppl.scan(closure_kernel(jnp.float32(0.1)), 3), ppl.scan(closure_kernel(jnp.float32(0.7)), 3)),
        (Switch((branch_a, branch_b)), ppl.cond(True, branch_b, branch_a).gen_fn),
        (Mixture((branch_a, branch_b)), ppl.mixture(branch_a, branch_b)),
        (ppl.scale(sub, 0.5), ppl.scale(sub, 2.0)),
        (ppl.scale(k1, 0.5), ppl.scale(k2, jnp.float32(3.0))),
        (ppl.infer.tempered(obs_model), ppl.infer.tempering.Tempered(obs_model)),
        (
            ppl.vi.marginal(joint_independent, "psi", particles=2),
            ppl.vi.marginal(joint_independent, "psi", particles=2),
        ),
        (
            ppl.vi.normalize(conjugate, {"y": 1.0}, exact_posterior, particles=4),
            ppl.vi.normalize(conjugate, {"y": -2.0}, exact_posterior, particles=4),
        ),
    ]
    for a, b in equal:
        assert a == b and hash(a) == hash(b), (a, b)
    unequal = [
        (ppl.vmap(elem, axis_size=3), ppl.vmap(elem, axis_size=4)),
        (ppl.vmap(elem), ppl.vmap(elem_cond)),
        (ppl.vmap(elem), ppl.scan(elem)),
        (ppl.scan(kernel, length=3), ppl.scan(kernel, length=4)),
        (ppl.scan(kernel, length=3), ppl.scan(kernel_wide, length=3)),
        (Switch((branch_a, branch_b)), Switch((branch_b, branch_a))),
        (Switch((branch_a, branch_b)), Switch((branch_a, branch_b, branch_c))),
        (Mixture((branch_a, branch_b)), Switch((branch_a, branch_b))),
        (ppl.scale(sub, 0.5), sub),
        (ppl.scale(sub, 0.5), ppl.scale(elem, 0.5)),
        (ppl.infer.tempered(obs_model), ppl.infer.tempered(conjugate)),
        (
            ppl.vi.marginal(joint_independent, "psi", particles=2),
            ppl.vi.marginal(joint_independent, "psi", particles=3),
        ),
        (ppl.vi.marginal(joint_independent, "psi", particles=2), ppl.vi.marginal(joint_independent, "z", particles=2)),
        (
            ppl.vi.normalize(conjugate, {"y": 1.0}, exact_posterior, particles=4),
            ppl.vi.normalize(conjugate, {"y": 1.0}, exact_posterior, particles=5),
        ),
        (make_model(1.0), make_model(2.0)),
        (walk_closure, walk_module),
    ]
    for a, b in unequal:
        assert a != b, (a, b)
