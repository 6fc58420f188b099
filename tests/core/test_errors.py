"""Bad input: each mistake raises a ppl error whose message names the address at fault."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import (
    CombinatorError,
    ConstraintDtypeError,
    ConstraintShapeError,
    DuplicateAddressError,
    MissingChoiceError,
    NotADistributionError,
    OutsideModelError,
    PPLError,
    TracedControlFlowError,
    UnvisitedConstraintError,
)

KEY = jax.random.key(0)


@ppl.gen
def inner():
    return dist.Normal(0.0, 1.0) @ "z"


@ppl.gen
def model():
    x = dist.Normal(0.0, 1.0) @ "x"
    inner() @ "sub"
    k = dist.Poisson(3.0) @ "k"
    return dist.Normal(jnp.full(3, x), 1.0) @ "v", k


def test_same_address_twice():
    @ppl.gen
    def twice():
        dist.Normal(0.0, 1.0) @ "x"
        dist.Normal(0.0, 1.0) @ "x"

    with pytest.raises(DuplicateAddressError, match=r"address 'x' was used twice in one run of twice"):
        twice.simulate(KEY, ())


def test_same_address_twice_in_a_nested_call_names_the_full_address():
    @ppl.gen
    def dup_inner():
        dist.Normal(0.0, 1.0) @ "z"
        dist.Normal(0.0, 1.0) @ "z"

    @ppl.gen
    def outer():
        dup_inner() @ "sub"

    with pytest.raises(DuplicateAddressError, match=r"\('sub', 'z'\) was used twice"):
        outer.simulate(KEY, ())


def test_address_clash_between_value_and_namespace():
    @ppl.gen
    def clash():
        dist.Normal(0.0, 1.0) @ "a"
        dist.Normal(0.0, 1.0) @ ("a", "b")

    with pytest.raises(DuplicateAddressError, match="namespace"):
        clash.simulate(KEY, ())


def test_constraint_at_unvisited_address():
    with pytest.raises(UnvisitedConstraintError, match=r"'xx', which model never visits.*'x', 'sub', 'k', 'v'"):
        model.generate(KEY, {"xx": 1.0}, ())
    with pytest.raises(UnvisitedConstraintError, match=r"\('sub', 'q'\), which inner never visits"):
        model.generate(KEY, {"sub": {"q": 1.0}}, ())
    tr = model.simulate(KEY, ())
    with pytest.raises(UnvisitedConstraintError, match="'nope'"):
        model.update(KEY, tr, {"nope": 1.0})


def test_constraint_below_a_single_choice():
    with pytest.raises(UnvisitedConstraintError, match=r"\('x', 'y'\).*'x' is a single choice"):
        model.generate(KEY, {("x", "y"): 1.0}, ())


def test_assess_with_missing_choice():
    with pytest.raises(MissingChoiceError, match=r"none given at \('sub', 'z'\)"):
        model.assess({"x": 1.0, "k": 2, "v": jnp.zeros(3)}, ())


def test_constraint_shape_mismatch():
    with pytest.raises(ConstraintShapeError, match=r"'v' has shape \(4,\).*expects shape \(3,\)"):
        model.generate(KEY, {"v": jnp.zeros(4)}, ())
    with pytest.raises(ConstraintShapeError, match=r"'x' has shape \(1,\).*expects shape \(\)"):
        model.assess({"x": jnp.zeros(1), "sub": {"z": 0.0}, "k": 1, "v": jnp.zeros(3)}, ())


def test_constraint_dtype_mismatch():
    with pytest.raises(ConstraintDtypeError, match=r"'k' has dtype float32.*Poisson is a discrete"):
        model.generate(KEY, {"k": 2.5}, ())
    with pytest.raises(ConstraintDtypeError, match=r"'v' has dtype complex64"):
        model.generate(KEY, {"v": jnp.zeros(3, jnp.complex64)}, ())
    # integer data for a continuous choice is fine (cast to float)
    _, w = model.generate(KEY, {"x": 1}, ())
    assert np.isfinite(w)


def test_python_if_on_random_value_points_to_cond():
    @ppl.gen
    def branching():
        x = dist.Normal(0.0, 1.0) @ "x"
        if x > 0:
            dist.Normal(x, 1.0) @ "y"
        return x

    with pytest.raises(TracedControlFlowError, match=r"depends on the random choice\(s\) at 'x'.*ppl\.cond"):
        branching.simulate(KEY, ())
    with pytest.raises(TracedControlFlowError, match=r"`if x > 0:`"):
        jax.jit(lambda k: branching.simulate(k, ()))(KEY)


def test_python_while_on_random_value_points_to_scan():
    @ppl.gen
    def looping():
        n = dist.Poisson(3.0) @ "n"
        i = 0
        while i < n:
            i += 1
        return i

    with pytest.raises(TracedControlFlowError, match=r"'n'.*ppl\.scan"):
        looping.simulate(KEY, ())


def test_shape_from_traced_argument_says_pass_an_int():
    @ppl.gen
    def sized(n):
        return dist.Normal(jnp.zeros(n), 1.0) @ "x"

    assert sized.simulate(KEY, (3,)).choices["x"].shape == (3,)
    with pytest.raises(TracedControlFlowError, match="pass it as a Python int"):
        jax.jit(lambda n: sized.simulate(KEY, (n,)))(3)


@pytest.mark.parametrize(
    "body, kind",
    [
        (lambda: 3.0 @ "y", "float"),
        (lambda: jnp.ones(3) @ "y", "JAX array"),
    ],
)
def test_non_distribution_left_of_matmul(body, kind):
    @ppl.gen
    def bad():
        dist.Normal(0.0, 1.0) @ "x"
        body()

    with pytest.raises(NotADistributionError, match=rf"left side of `@ 'y'` is a {kind}"):
        bad.simulate(KEY, ())


def test_non_distribution_in_sample():
    @ppl.gen
    def bad():
        ppl.sample("w", 1.0)

    with pytest.raises(NotADistributionError, match=r"at address 'w': expected a distribution"):
        bad.simulate(KEY, ())

    @ppl.gen
    def uncalled():
        return ppl.sample("sub", inner)

    with pytest.raises(NotADistributionError, match=r"call it with its arguments first: inner\(\*args\) @ 'sub'"):
        uncalled.simulate(KEY, ())


def test_call_without_address_used_as_value():
    @ppl.gen
    def forgot():
        return inner() + 1.0

    with pytest.raises(PPLError, match="without an address"):
        forgot.simulate(KEY, ())


def test_out_of_support_constraint_gives_minus_inf_and_finite_gradients():
    @ppl.gen
    def m(scale):
        s = dist.HalfNormal(scale) @ "s"
        dist.Binomial(5, 0.3) @ "b"
        dist.Dirichlet(jnp.ones(3)) @ "p"
        return s

    good = {"s": 1.0, "b": 2, "p": jnp.array([0.2, 0.3, 0.5])}
    assert np.isfinite(m.assess(good, (1.0,))[0])
    for bad in ({"s": -1.0}, {"b": 7}, {"p": jnp.array([0.5, 0.5, 0.5])}):
        w, _ = m.assess({**good, **bad}, (1.0,))
        assert w == -np.inf
        _, gw = m.generate(KEY, {**good, **bad}, (1.0,))
        assert gw == -np.inf
        grad = jax.grad(lambda sc, bad=bad: m.assess({**good, **bad}, (sc,))[0])(1.0)
        assert np.isfinite(grad)


def test_args_must_be_a_tuple_and_keys_must_be_keys():
    with pytest.raises(TypeError, match=r"args of model must be a tuple.*\(x,\)"):
        model.simulate(KEY, 3.0)
    with pytest.raises(TypeError, match="PRNG key"):
        model.simulate(3, ())


def test_sample_outside_a_model():
    with pytest.raises(OutsideModelError, match=r"outside a @ppl\.gen function"):
        dist.Normal(0.0, 1.0) @ "x"


def test_vmap_batch_mismatches():
    @ppl.gen
    def elem(a, b):
        return dist.Normal(a + b, 1.0) @ "z"

    with pytest.raises(CombinatorError, match="disagree on the batch size"):
        ppl.vmap(elem).simulate(KEY, (jnp.zeros(3), jnp.zeros(4)))
    with pytest.raises(ConstraintShapeError, match=r"'z' has shape \(2,\); inside vmap\(elem\).*length 3"):
        ppl.vmap(elem).generate(KEY, {"z": jnp.zeros(2)}, (jnp.zeros(3), jnp.zeros(3)))


def test_scan_kernel_must_keep_the_carry_type():
    @ppl.gen
    def grows(c, _):
        x = dist.Normal(0.0, 1.0) @ "x"
        return jnp.stack([c, x]), x

    with pytest.raises(CombinatorError, match="new_carry of the same structure"):
        ppl.scan(grows, length=3).simulate(KEY, (0.0, None))


def test_switch_branches_must_return_the_same_type():
    @ppl.gen
    def scalar():
        return dist.Normal(0.0, 1.0) @ "x"

    @ppl.gen
    def vector():
        return dist.Normal(jnp.zeros(2), 1.0) @ "x"

    @ppl.gen
    def m():
        b = dist.Bernoulli(0.5) @ "b"
        return ppl.cond(b, scalar, vector)() @ "c"

    with pytest.raises(CombinatorError, match="same structure, shapes and dtypes"):
        m.simulate(KEY, ())


def test_improper_prior_cannot_be_simulated_but_can_be_assessed():
    @ppl.gen
    def flat():
        return dist.ImproperUniform(dist.constraints.positive, (), ()) @ "s"

    with pytest.raises(PPLError, match=r"ImproperUniform.*'s' cannot be sampled"):
        flat.simulate(KEY, ())
    assert flat.assess({"s": 2.0}, ())[0] == 0.0
    assert flat.assess({"s": -2.0}, ())[0] == -np.inf
