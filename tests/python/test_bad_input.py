"""Contract violations raise a clear Python exception before anything runs.

Each test asserts the exception type and that the message names the problem; the fixture
`nothing_runs` checks that no program was built or traced and no FFI call was staged.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg

N = 16


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fails the test if jaxmg got as far as building a program or staging an FFI call."""
    staged = []
    real_call = jaxmg._call.call

    def recording_call(*args, **kwargs):
        staged.append(args[0])
        return real_call(*args, **kwargs)

    monkeypatch.setattr(jaxmg._call, "call", recording_call)
    before = jaxmg._engines.program.cache_info()
    yield
    after = jaxmg._engines.program.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses), "a program was built"
    assert staged == [], f"FFI calls were staged: {staged}"


@pytest.fixture
def mesh4(mesh_of):
    return mesh_of([0, 1, 2, 3])


@pytest.fixture
def a4(mesh4):
    """A valid 16 x 16 SPD matrix sharded by rows over 4 devices."""
    a = np.eye(N) * 2.0 + 0.1
    return jax.device_put(a, NamedSharding(mesh4, P("x", None)))


def raises(exc, *words):
    """pytest.raises whose message must contain every one of `words` (case-insensitive)."""
    pattern = "".join(f"(?=.*{re.escape(w)})" for w in words)
    return pytest.raises(exc, match=re.compile(pattern, re.IGNORECASE | re.DOTALL))


# ---- shapes and dtypes ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(N,), (2, N, N)], ids=["rank-1", "rank-3"])
def test_a_of_wrong_rank(nothing_runs, shape):
    with raises(ValueError, "'a'", "rank 2", str(shape)):
        jaxmg.potrs(np.ones(shape), np.ones(N))


def test_a_not_square(nothing_runs):
    with raises(ValueError, "'a'", "square", "(16, 8)"):
        jaxmg.potrs(np.ones((N, 8)), np.ones(N))


def test_a_not_an_array(nothing_runs):
    with raises(TypeError, "'a'", "array", "list"):
        jaxmg.potrs([[1.0]], [1.0])


@pytest.mark.parametrize("rows", [N - 4, N + 4])
def test_b_rows_differ_from_n(nothing_runs, a4, rows):
    with raises(ValueError, "'b'", f"{N} rows", f"got {rows}"):
        jaxmg.potrs(a4, np.ones((rows, 2)))


def test_b_of_wrong_rank(nothing_runs, a4):
    with raises(ValueError, "'b'", "vector or a matrix", "(16, 1, 1)"):
        jaxmg.potrs(a4, np.ones((N, 1, 1)))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.float16],
                         ids=["int32", "int64", "bool", "float16"])
def test_unsupported_dtype(nothing_runs, dtype):
    with raises(TypeError, "'a'", "float32, float64, complex64 or complex128",
                np.dtype(dtype).name):
        jaxmg.potrs(np.eye(N, dtype=dtype), np.ones(N, dtype=dtype))


def test_rhs_of_a_non_numeric_dtype(nothing_runs, a4):
    """b promotes with a as in jnp.linalg.solve (tests/python/test_potrs.py); a b that
    cannot promote is refused before anything runs."""
    with raises(TypeError, "'b'", "array"):
        jaxmg.potrs(a4, "not an array")
    with raises(TypeError, "'b'", "promote", "<U1"):
        jaxmg.potrs(a4, np.array(["x"] * N))


# ---- T_A and pad ---------------------------------------------------------------------------

@pytest.mark.parametrize("tile", [0, -1, 2.5, True, "8", np.int64(0)],
                         ids=["zero", "negative", "float", "bool", "str", "np-zero"])
def test_tile_not_a_positive_integer(nothing_runs, a4, tile):
    with raises(ValueError, "T_A", "positive integer", repr(tile)):
        jaxmg.potrs(a4, np.ones(N), T_A=tile)


def test_pad_false_with_tile_not_dividing_shard(nothing_runs, a4):
    with raises(ValueError, "T_A=3", "does not divide", "4 rows", "pad=False"):
        jaxmg.potrs(a4, np.ones(N), T_A=3, pad=False)


# ---- meshes and specs ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", [P(None, None), P(None, "x")], ids=["replicated", "columns"])
def test_spec_that_does_not_shard_rows(nothing_runs, mesh4, a4, spec):
    with raises(ValueError, "sharded by rows", str(spec)):
        jaxmg.potrs(a4, np.ones(N), mesh=mesh4, in_specs=(spec,))


def test_spec_that_shards_columns_too(nothing_runs, mesh_of, a4):
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    with raises(ValueError, "rows only", "shards the columns"):
        jaxmg.potrs(a4, np.ones(N), mesh=mesh, in_specs=(P("S", "T"),))


def test_spec_axis_not_in_mesh(nothing_runs, mesh4, a4):
    with raises(ValueError, "'y'", "mesh has axes", "('x',)"):
        jaxmg.potrs(a4, np.ones(N), mesh=mesh4, in_specs=(P("y", None), P(None, None)))


@pytest.mark.parametrize(
    "in_specs",
    ["x", ("x", None), (P("x", None),) * 3, (), {"a": P("x", None)}],
    ids=["str", "tuple-of-str", "three-specs", "empty", "dict"],
)
def test_in_specs_of_wrong_type(nothing_runs, mesh4, a4, in_specs):
    with raises(TypeError, "in_specs", "PartitionSpec"):
        jaxmg.potrs(a4, np.ones(N), mesh=mesh4, in_specs=in_specs)


def test_mesh_of_wrong_type(nothing_runs, a4):
    with raises(TypeError, "mesh", "jax.sharding.Mesh", "str"):
        jaxmg.potrs(a4, np.ones(N), mesh="x", in_specs=(P("x", None),))


def test_abstract_mesh_outside_jit(nothing_runs, a4, mesh4):
    """An AbstractMesh names no devices: outside jit the concrete mesh must be known."""
    other = jax.make_mesh((2,), ("y",), devices=jax.devices("cpu")[:2])
    b = np.ones(N)
    with raises(ValueError, "AbstractMesh", "names no devices", "jax.set_mesh"):
        jaxmg.potrs(np.eye(N), b, mesh=other.abstract_mesh, in_specs=(P("y", None),))


# ---- potrs_shardmap_ctx --------------------------------------------------------------------

def _in_shard_map(mesh, spec, fn, *args):
    return jax.shard_map(fn, mesh=mesh, in_specs=(spec,) + (P(),) * (len(args) - 1),
                         out_specs=(P(None), P(None)), check_vma=False)(*args)


def test_ctx_outside_shard_map_is_the_global_form(nothing_runs):
    """Outside a shard_map potrs_shardmap_ctx is JAXMg 1.4's global form
    (tests/python/test_api_generations.py), with its arguments checked the same way."""
    with raises(TypeError, "mesh", "jax.sharding.Mesh", "str"):
        jaxmg.potrs_shardmap_ctx(np.eye(N), np.ones(N), 4, "x")
    with raises(TypeError, "unexpected keyword", "axis_name"):
        jaxmg.potrs_shardmap_ctx(np.eye(N), np.ones(N), axis_name="x")


def test_ctx_several_axes_without_axis_name(nothing_runs, mesh_of):
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    with raises(ValueError, "several axes", "axis_name="):
        _in_shard_map(mesh, P("T", None), lambda a: jaxmg.potrs_shardmap_ctx(a, np.ones(N)),
                      np.eye(N))


def test_ctx_axis_name_not_in_mesh(nothing_runs, mesh_of):
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    fn = functools.partial(jaxmg.potrs_shardmap_ctx, b=np.ones(N), axis_name="y")
    with raises(ValueError, "'y'", "manual axis"):
        _in_shard_map(mesh, P("T", None), fn, np.eye(N))


def test_ctx_shard_does_not_match_axis(nothing_runs, mesh_of):
    """Rows sharded over both axes but axis_name names one: the shard has the wrong height."""
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    fn = functools.partial(jaxmg.potrs_shardmap_ctx, b=np.ones(N), axis_name="S")
    with raises(ValueError, "shard of 'a'", "8 rows", "got 4"):
        _in_shard_map(mesh, P(("S", "T"), None), fn, np.eye(N))


def test_ctx_bad_dtype_rhs_and_tile(nothing_runs, mesh4):
    a = np.eye(N)
    with raises(TypeError, "'a'", "int32"):
        _in_shard_map(mesh4, P("x", None),
                      lambda s: jaxmg.potrs_shardmap_ctx(s, np.ones(N, np.int32)),
                      a.astype(np.int32))
    with raises(ValueError, "'b'", f"{N} rows", "got 8"):
        _in_shard_map(mesh4, P("x", None), lambda s: jaxmg.potrs_shardmap_ctx(s, np.ones(8)), a)
    with raises(ValueError, "T_A", "positive integer"):
        _in_shard_map(mesh4, P("x", None),
                      lambda s: jaxmg.potrs_shardmap_ctx(s, np.ones(N), T_A=-2), a)




def test_zero_size_matrix(nothing_runs):
    """Empty matrices are rejected before anything runs (there is no shard to give a device)."""
    with raises(ValueError, "0 rows", "fewer than"):
        jaxmg.potrs(np.zeros((0, 0)), np.zeros((0,)))
