"""Choice maps and selections: access, merging, and passage through JAX transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.errors import AddressError


def test_nested_dict_and_tuple_keys_agree():
    a = ppl.choices({"w": 1.0, "sub": {"z": 2.0}})
    b = ppl.choices({"w": 1.0, ("sub", "z"): 2.0})
    assert a.addresses() == b.addresses() == [("sub", "z"), ("w",)]
    assert a["w"] == 1.0 and a["sub", "z"] == 2.0
    assert a["sub"]["z"] == 2.0
    assert "w" in a and ("sub", "z") in a and "sub" in a and "nope" not in a
    assert a.to_dict() == {"w": 1.0, "sub": {"z": 2.0}}
    assert ppl.choices(w=1.0)["w"] == 1.0


def test_merge_right_wins_and_replaces_namespaces():
    a = ppl.choices({"w": 1.0, "sub": {"z": 2.0, "q": 3.0}})
    b = ppl.choices({"w": 5.0, "sub": {"z": 7.0}})
    m = a | b
    assert m["w"] == 5.0 and m["sub", "z"] == 7.0 and m["sub", "q"] == 3.0
    # a value replaces a namespace of the same name and vice versa
    assert (a | {"sub": 1.0}).addresses() == [("sub",), ("w",)]


def test_missing_address_names_what_is_present():
    with pytest.raises(KeyError, match="present: 'w'"):
        ppl.choices(w=1.0)["x"]


def test_value_and_namespace_clash_is_an_error():
    with pytest.raises(AddressError, match="prefix"):
        ppl.choices({"x": 1.0, ("x", "y"): 2.0})


def test_int_components_and_mixed_sorting():
    cm = ppl.choices({("layer", 1): 1.0, ("layer", 0): 0.0, ("layer", "bias"): 2.0})
    assert cm.addresses() == [("layer", 0), ("layer", 1), ("layer", "bias")]


def test_choicemap_is_a_pytree_through_jit_vmap_grad_scan():
    cm = ppl.choices({"w": jnp.ones(3), "sub": {"z": jnp.zeros(3)}})
    doubled = jax.jit(lambda c: c.map(lambda v: 2 * v))(cm)
    np.testing.assert_allclose(doubled["w"], 2 * np.ones(3))
    rows = jax.vmap(lambda c: c["w"] + c["sub", "z"])(cm)
    assert rows.shape == (3,)
    g = jax.grad(lambda c: jnp.sum(c["w"] ** 2))(cm)
    np.testing.assert_allclose(g["w"], 2 * np.ones(3))
    final, _ = jax.lax.scan(lambda c, _: (c.map(lambda v: v + 1), None), cm, None, length=4)
    np.testing.assert_allclose(final["sub", "z"], 4 * np.ones(3))


def test_masks_travel_and_filter():
    cm = ppl.choices({"y": ppl.masked(jnp.arange(4.0), jnp.array([True, False, True, False]))})
    out = jax.jit(lambda c: c)(cm)
    np.testing.assert_array_equal(out.mask("y"), [True, False, True, False])
    assert isinstance(out.to_dict()["y"], ppl.Masked)
    with pytest.raises(ValueError, match="masked"):
        out.flat_dict()


def test_selection_semantics():
    s = ppl.select("w", ("sub", "z"))
    assert s.contains("w") and s.contains(("sub", "z")) and not s.contains(("sub", "q"))
    assert s.contains(("w", "deeper"))  # selecting an address selects what is under it
    assert s.subselection("sub").contains("z") and not s.subselection("sub").contains("q")
    assert s.subselection("w").contains(())
    c = ~s
    assert not c.contains("w") and c.contains("x") and c.subselection("sub").contains("q")
    assert (ppl.select("a") | ppl.select("b")).contains("b")
    assert ppl.select_all().contains(("any", "thing")) and not ppl.select_none().contains("x")
    # selections are static: no leaves, usable as jit arguments
    assert jax.tree_util.tree_leaves(s) == []
    assert jax.jit(lambda sel, x: x + 1, static_argnums=())(s, 1.0) == 2.0


def test_filter_and_without():
    cm = ppl.choices({"w": 1.0, "sub": {"z": 2.0, "q": 3.0}})
    assert cm.filter(ppl.select("sub")).addresses() == [("sub", "q"), ("sub", "z")]
    assert cm.without(ppl.select("sub")).addresses() == [("w",)]
