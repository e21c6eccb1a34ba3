"""jaxmg.potrs and jaxmg.potrs_shardmap_ctx on virtual CPU devices.

Every solve is checked against NumPy with the scaled residual ratio
||b - A x|| / (n ||A|| ||x|| eps) (eps of the dtype) on random Hermitian positive definite
matrices that are far from diagonal. Layouts: tiles that divide the shard and tiles that
need padding, 1 to 4 devices in any order, 2D meshes with a replicated axis (the seeds'
multi-node MinSR pattern) and flattened 2D meshes.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
ROWS = P("x", None)
REPL = P(None, None)


def dtype_id(dtype):
    return np.dtype(dtype).name


def put(x, mesh, spec):
    return jax.device_put(x, NamedSharding(mesh, spec))


def mesh_devices(mesh):
    return list(mesh.devices.flat)


def _record_tiles(monkeypatch):
    tiles = []
    real = jaxmg._engines.tile

    def spy(op, platform, nloc, T_A):
        tile = real(op, platform, nloc, T_A)
        tiles.append((nloc, tile))
        return tile

    monkeypatch.setattr(jaxmg._engines, "tile", spy)
    return tiles


# Backend compiles seen by JAX in this process (counted to prove that nothing recompiles).
_COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: _COMPILES.append(name) if "backend_compile" in name else None
)


# ---- numerics over dtypes and layouts ------------------------------------------------------

LAYOUTS = [
    # (device ids in mesh order, N, T_A)
    pytest.param([0, 1, 2, 3], 32, 4, id="4dev-T4-divides"),
    pytest.param([3, 0, 2], 30, 4, id="3dev-scrambled-T4-pads"),
]


@pytest.mark.parametrize("ids,n,tile", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_solves_every_dtype(mesh_of, num, dtype, ids, n, tile):
    mesh = mesh_of(ids)
    a = num.hpd(n, dtype, seed=n)
    b = num.rhs((n, 3), dtype)
    x = jaxmg.potrs(put(a, mesh, ROWS), put(b, mesh, REPL), T_A=tile, mesh=mesh,
                    in_specs=(ROWS, REPL))
    num.assert_solves(a, x, b, dtype)
    num.assert_on_every_device(x, mesh_devices(mesh))


@pytest.mark.parametrize(
    "b_shape",
    [pytest.param((24,), id="b-1d"), pytest.param((24, 1), id="nrhs-1"),
     pytest.param((24, 300), id="nrhs-300")],
)
@pytest.mark.parametrize("dtype", [np.float64, np.complex64], ids=dtype_id)
def test_right_hand_sides(mesh_of, num, dtype, b_shape):
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(24, dtype, seed=3)
    b = num.rhs(b_shape, dtype)
    x, info = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=4, mesh=mesh, in_specs=(ROWS,),
                          return_status=True)  # shard of 6 rows, tile 4: padded
    assert x.shape == b.shape
    assert int(info) == 0
    num.assert_solves(a, x, b, dtype)


@pytest.mark.parametrize(
    "ids,tile",
    [
        pytest.param([3, 2, 1, 0], 4, id="reversed-4dev-pads"),
        pytest.param([3, 0, 2], 4, id="partial-3dev-scrambled"),
        pytest.param([0, 2, 3], 2, id="partial-3dev-many-tiles"),
        pytest.param([2, 1], 4, id="partial-2dev-reversed"),
        pytest.param([1], 4, id="single-device-1"),
        pytest.param([0, 1, 2, 3], 1, id="4dev-tile-1"),
        pytest.param([0, 1, 2, 3], 6, id="4dev-one-tile-per-device"),
        pytest.param([1, 3], 100, id="tile-larger-than-shard"),
    ],
)
def test_device_orders_subsets_and_tiles(mesh_of, num, ids, tile):
    n = 24
    mesh = mesh_of(ids)
    a = num.hpd(n, np.float64, seed=len(ids) + tile)
    b = num.rhs((n, 2), np.float64)
    x = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=tile, mesh=mesh, in_specs=(ROWS, REPL))
    num.assert_solves(a, x, b, np.float64)
    num.assert_on_every_device(x, mesh_devices(mesh))


@pytest.mark.parametrize(
    "ids,n",
    [pytest.param([0, 1, 2, 3], 4, id="one-row-per-device"),
     pytest.param([2], 1, id="1x1"),
     pytest.param([1, 0, 3], 3, id="3dev-one-row-each")],
)
def test_tiny_sizes(mesh_of, num, ids, n):
    mesh = mesh_of(ids)
    a = num.hpd(n, np.complex128, seed=n)
    b = num.rhs((n,), np.complex128)
    x, info = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=2, return_status=True)  # tile clamped
    assert int(info) == 0
    num.assert_solves(a, x, b, np.complex128)


def test_default_tile_that_pads(mesh_of, num, monkeypatch):
    """A prime shard larger than the CPU cap: the default tile is the cap, with padding."""
    n = 4 * 257
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(n, np.float32, seed=30)
    b = num.rhs((n, 2), np.float32)
    tiles = _record_tiles(monkeypatch)
    x, info = jaxmg.potrs(put(a, mesh, ROWS), b, return_status=True)
    assert tiles == [(257, 256)]
    assert int(info) == 0
    num.assert_solves(a, x, b, np.float32)


@pytest.mark.parametrize(
    "in_specs",
    [P("x", None), P("x"), (P("x"),), [P("x", None), P(None, None)], (P("x", None), None)],
    ids=["bare-spec", "bare-short-spec", "tuple-short-spec", "list", "tuple-with-None"],
)
def test_accepted_in_specs_forms(mesh_of, num, in_specs):
    mesh = mesh_of([1, 2, 3, 0])
    a = num.hpd(16, np.float64, seed=31)
    b = num.rhs((16, 1), np.float64)
    x = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=2, mesh=mesh, in_specs=in_specs)
    num.assert_solves(a, x, b, np.float64)


@pytest.mark.parametrize("explicit", [False, True], ids=["auto-axes", "explicit-axes"])
def test_inputs_placed_elsewhere_are_moved(cpus, mesh_of, num, explicit):
    """a on other devices than the mesh, b sharded or on one device: both are moved."""
    mesh = mesh_of([3, 2], explicit=explicit)
    other = mesh_of([0, 1], explicit=explicit)
    a = num.hpd(16, np.float64, seed=32)
    b = num.rhs((16, 2), np.float64)
    for b_in in (jax.device_put(b, cpus[0]), put(b, mesh, ROWS)):
        x = jaxmg.potrs(put(a, other, ROWS), b_in, T_A=4, mesh=mesh, in_specs=(ROWS, REPL))
        num.assert_solves(a, x, b, np.float64)
        num.assert_on_every_device(x, mesh_devices(mesh))


# ---- 2D meshes -----------------------------------------------------------------------------

@pytest.mark.parametrize("explicit", [False, True], ids=["auto-axes", "explicit-axes"])
def test_2d_mesh_replicated_axis_minsr(mesh_of, num, explicit):
    """The seeds' multi-node pattern: rows sharded over "T" (within a node), replicated over
    "S" (across nodes); the input comes sharded over both axes, as in MinSR."""
    n = 24
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2), explicit=explicit)
    t_reg = put(num.hpd(n, np.float64, seed=5), mesh, P(("S", "T"), None))
    e_loc = num.rhs((n,), np.float64)
    v = jaxmg.potrs(t_reg, e_loc[:, None], T_A=4, mesh=mesh, in_specs=(P("T", None), REPL))
    num.assert_solves(np.asarray(t_reg), v, e_loc[:, None], np.float64)
    num.assert_on_every_device(v, mesh_devices(mesh))  # both replica groups


@pytest.mark.parametrize(
    "ids,tile",
    [pytest.param([0, 1, 2, 3], 3, id="flat-T3"),
     pytest.param([2, 0, 3, 1], 4, id="scrambled-pads")],
)
def test_2d_mesh_flattened(mesh_of, num, ids, tile):
    n = 24
    mesh = mesh_of(ids, names=("S", "T"), shape=(2, 2))
    spec = P(("S", "T"), None)
    a = num.hpd(n, np.complex128, seed=6)
    b = num.rhs((n, 2), np.complex128)
    x = jaxmg.potrs(put(a, mesh, spec), b, T_A=tile, mesh=mesh, in_specs=(spec, REPL))
    num.assert_solves(a, x, b, np.complex128)
    num.assert_on_every_device(x, mesh_devices(mesh))


# ---- inferred arguments ----------------------------------------------------------------

@pytest.mark.parametrize(
    "layout",
    ["rows-3dev", "replicated-4dev", "2d-both-axes", "explicit-4dev"],
)
def test_mesh_spec_and_tile_inferred(mesh_of, num, monkeypatch, layout):
    n = 48
    if layout == "rows-3dev":
        mesh, spec = mesh_of([3, 0, 2]), ROWS
    elif layout == "replicated-4dev":  # an unsharded layout: rows go over every mesh axis
        mesh, spec = mesh_of([0, 1, 2, 3]), REPL
    elif layout == "2d-both-axes":
        mesh, spec = mesh_of([1, 0, 3, 2], names=("S", "T"), shape=(2, 2)), P(("S", "T"), None)
    else:
        mesh, spec = mesh_of([0, 1, 2, 3], explicit=True), ROWS
    tiles = _record_tiles(monkeypatch)
    a = num.hpd(n, np.float64, seed=7)
    b = num.rhs((n,), np.float64)
    x = jaxmg.potrs(put(a, mesh, spec), b)
    num.assert_solves(a, x, b, np.float64)
    num.assert_on_every_device(x, mesh_devices(mesh))
    [(nloc, tile)] = tiles
    assert nloc == n // mesh.devices.size
    assert 1 <= tile <= nloc and nloc % tile == 0  # a small shard is one tile, unpadded


def test_unsharded_input_runs_on_its_device(cpus, num):
    n = 20
    a = num.hpd(n, np.complex64, seed=8)
    b = num.rhs((n, 2), np.complex64)
    x, info = jaxmg.potrs(jax.device_put(a, cpus[2]), jax.device_put(b, cpus[2]),
                          return_status=True)
    assert int(info) == 0
    assert x.devices() == {cpus[2]}
    num.assert_solves(a, x, b, np.complex64)


def test_numpy_input(num):
    n = 16
    a = num.hpd(n, np.float64, seed=9)
    b = num.rhs((n,), np.float64)
    num.assert_solves(a, jaxmg.potrs(a, b), b, np.float64)


def test_return_status_success(mesh_of, num):
    mesh = mesh_of([2, 3])
    a = num.hpd(16, np.float32, seed=10)
    b = num.rhs((16,), np.float32)
    out = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=4, return_status=True)
    assert isinstance(out, tuple) and len(out) == 2
    x, info = out
    assert info.shape == () and info.dtype == np.int32 and int(info) == 0
    num.assert_solves(a, x, b, np.float32)
    plain = jaxmg.potrs(put(a, mesh, ROWS), b, T_A=4)
    assert not isinstance(plain, tuple)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(x))


# ---- numerical failure -------------------------------------------------------------------

def _break_row(a, row):
    """A copy of a that is positive definite in its leading minors up to `row` and fails
    exactly at minor row + 1 (a negative diagonal entry; every principal submatrix without
    that row is untouched, so the failure is caused by that row in any elimination order)."""
    bad = np.array(a)
    bad[row, row] = -1.0
    return bad


NOT_SPD_CASES = [
    # (dtype, device ids, N, T_A, failing row): the row lies on the last device of the mesh
    pytest.param(np.float64, [0, 1, 2, 3], 32, 4, 29, id="f64-4dev"),
    pytest.param(np.complex64, [3, 0, 2], 30, 4, 27, id="c64-scrambled-padded"),
    pytest.param(np.float32, [1, 2], 16, 8, 8, id="f32-first-row-of-last-device"),
    pytest.param(np.complex128, [2, 1, 0, 3], 24, 6, 23, id="c128-last-row"),
]


@pytest.mark.parametrize("dtype,ids,n,tile,row", NOT_SPD_CASES)
def test_not_positive_definite_gives_info_and_nan(mesh_of, num, dtype, ids, n, tile, row):
    mesh = mesh_of(ids)
    bad = _break_row(num.hpd(n, dtype, seed=11), row)
    assert num.lapack_info(bad) == row + 1  # the reference agrees on the failing minor
    b = num.rhs((n, 2), dtype)
    x, info = jaxmg.potrs(put(bad, mesh, ROWS), b, T_A=tile, mesh=mesh, in_specs=(ROWS, REPL),
                          return_status=True)
    assert int(info) == row + 1
    for shard in info.addressable_shards:
        assert int(np.asarray(shard.data)) == row + 1
    shards = x.addressable_shards
    assert {s.device for s in shards} >= set(mesh_devices(mesh))
    for shard in shards:
        assert np.all(np.isnan(np.asarray(shard.data))), f"not all NaN on {shard.device}"


def test_good_solve_after_a_failure(mesh_of, num):
    """A failed factorisation leaves nothing behind that spoils the next call."""
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(16, np.float64, seed=12)
    b = num.rhs((16,), np.float64)
    args = dict(T_A=2, mesh=mesh, in_specs=(ROWS,), return_status=True)
    _, info = jaxmg.potrs(put(_break_row(a, 15), mesh, ROWS), b, **args)
    assert int(info) == 16
    x, info = jaxmg.potrs(put(a, mesh, ROWS), b, **args)
    assert int(info) == 0
    num.assert_solves(a, x, b, np.float64)


# ---- caching, jit, donation --------------------------------------------------------------

def test_repeated_calls_do_not_retrace_or_recompile(mesh_of, num, monkeypatch):
    traces = []
    real_call = jaxmg._call.call

    def counting_call(*args, **kwargs):
        traces.append(args[0])
        return real_call(*args, **kwargs)

    monkeypatch.setattr(jaxmg._call, "call", counting_call)
    mesh = mesh_of([1, 0])
    n = 20  # a shape no other test uses, so the first call below must trace
    args = dict(T_A=5, mesh=mesh, in_specs=(ROWS, REPL))
    a1, a2 = num.hpd(n, np.float64, seed=13), num.hpd(n, np.float64, seed=14)
    b1, b2 = num.rhs((n, 2), np.float64, seed=15), num.rhs((n, 2), np.float64, seed=16)

    num.assert_solves(a1, jaxmg.potrs(put(a1, mesh, ROWS), b1, **args), b1, np.float64)
    assert len(traces) == 1
    info0 = jaxmg._engines.program.cache_info()
    compiles0 = len(_COMPILES)

    A2 = put(a2, mesh, ROWS)
    for _ in range(3):  # new values, same shapes: the cached program runs
        num.assert_solves(a2, jaxmg.potrs(A2, b2, **args), b2, np.float64)
    info1 = jaxmg._engines.program.cache_info()
    assert len(traces) == 1, "potrs traced again for a repeated call"
    assert len(_COMPILES) == compiles0, "a repeated call compiled again"
    # The program is not even looked up again: the call's jitted entry (_api._entry) runs.
    assert info1.misses == info0.misses

    # The counters can fail: another number of right-hand sides traces and compiles again.
    b3 = num.rhs((n, 3), np.float64)
    num.assert_solves(a2, jaxmg.potrs(A2, b3, **args), b3, np.float64)
    assert len(traces) == 2
    assert len(_COMPILES) > compiles0


def test_vector_rhs_is_one_program(mesh_of, num):
    """An eager potrs with a vector b compiles and runs one program: the column b[:, None] is
    made inside the op's jitted entry, not by an eager op of its own (a program dispatch
    more, 0.1-0.3 ms on a GPU). Its x is the vector the N x 1 call returns as a column."""
    mesh = mesh_of([2, 0, 1])
    n = 57  # a length no other test uses: no program of it is compiled yet
    a = put(num.hpd(n, np.float64, seed=31), mesh, ROWS)
    b = put(num.rhs((n,), np.float64, seed=32), mesh, P())
    compiles0 = len(_COMPILES)
    x = jaxmg.potrs(a, b)
    assert len(_COMPILES) == compiles0 + 1, _COMPILES[compiles0:]
    assert x.shape == (n,)
    num.assert_solves(np.asarray(a), x, np.asarray(b), np.float64)
    x2 = jaxmg.potrs(a, b[:, None])
    np.testing.assert_array_equal(np.asarray(x2)[:, 0], np.asarray(x))
    # under the user's jit (and with donate) the column is made before the op's body
    f = jax.jit(lambda a, b: jaxmg.potrs(a, b, mesh=mesh, in_specs=(ROWS, REPL)))
    np.testing.assert_array_equal(np.asarray(f(a, b)), np.asarray(x))


def test_composes_inside_user_jit(mesh_of, num):
    n = 24
    mesh = mesh_of([3, 1, 2, 0])
    a = num.hpd(n, np.float64, seed=17)
    b = num.rhs((n, 2), np.float64)

    @jax.jit
    def step(a, b):
        shifted = 2.0 * a + jnp.eye(n, dtype=a.dtype)
        x = jaxmg.potrs(shifted, b, T_A=4, mesh=mesh, in_specs=(ROWS, REPL))
        y = jaxmg.potrs(shifted, x, T_A=4, mesh=mesh, in_specs=(ROWS, REPL))  # a 2nd call site
        return x, y, jnp.sum(x * x)

    x, y, sq = step(put(a, mesh, ROWS), b)
    shifted = 2.0 * a + np.eye(n)
    num.assert_solves(shifted, x, b, np.float64)
    num.assert_solves(shifted, y, np.asarray(x), np.float64)
    np.testing.assert_allclose(float(sq), float(np.sum(np.asarray(x) ** 2)), rtol=1e-12)


def test_inside_jit_in_a_loop(mesh_of, num):
    """One call site executed several times (scan): the k-th executions meet each other."""
    n = 16
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(n, np.complex128, seed=18)
    bs = num.rhs((5, n), np.complex128)

    @jax.jit
    def solve_all(a, bs):
        def body(carry, b):
            x = jaxmg.potrs(a, b, T_A=2, mesh=mesh, in_specs=(ROWS, P(None)))
            return carry, x
        return jax.lax.scan(body, 0, bs)[1]

    xs = solve_all(put(a, mesh, ROWS), bs)
    for b, x in zip(bs, np.asarray(xs)):
        num.assert_solves(a, x, b, np.complex128)


@pytest.mark.parametrize("explicit", [False, True], ids=["auto-axes", "explicit-axes"])
def test_jit_equals_eager(mesh_of, num, explicit):
    n = 32
    mesh = mesh_of([2, 0, 3, 1], explicit=explicit)
    a = put(num.hpd(n, np.float64, seed=19), mesh, ROWS)
    b = num.rhs((n, 3), np.float64)
    solve = functools.partial(jaxmg.potrs, T_A=4, mesh=mesh, in_specs=(ROWS, REPL),
                              return_status=True)
    x_eager, info_eager = solve(a, b)
    x_jit, info_jit = jax.jit(solve)(a, b)
    assert int(info_eager) == int(info_jit) == 0
    np.testing.assert_allclose(np.asarray(x_jit), np.asarray(x_eager), rtol=1e-13, atol=0)
    num.assert_solves(np.asarray(a), x_jit, b, np.float64)


def test_jit_reshards_input_on_explicit_mesh(mesh_of, num):
    """Inside jit on an Explicit mesh, a replicated input is resharded to the rows spec."""
    n = 16
    mesh = mesh_of([0, 1, 2, 3], explicit=True)
    a = num.hpd(n, np.float32, seed=20)
    b = num.rhs((n,), np.float32)
    fn = jax.jit(lambda a, b: jaxmg.potrs(a, b, T_A=2, mesh=mesh, in_specs=(ROWS,)))
    num.assert_solves(a, fn(put(a, mesh, REPL), put(b, mesh, P("x"))), b, np.float32)


@pytest.mark.parametrize("tile", [4, 5], ids=["divides", "pads"])
def test_donate(mesh_of, num, tile):
    n = 40
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(n, np.float64, seed=21)
    b = num.rhs((n, 2), np.float64)
    A = put(a, mesh, ROWS)
    x = jaxmg.potrs(A, b, T_A=tile, donate=True)
    num.assert_solves(a, x, b, np.float64)
    assert A.is_deleted(), "donate=True did not consume the buffer of 'a'"


def test_no_donate_leaves_input_intact(mesh_of, num):
    n = 40
    mesh = mesh_of([0, 1, 2, 3])
    a = num.hpd(n, np.float64, seed=22)
    b = num.rhs((n,), np.float64)
    A = put(a, mesh, ROWS)
    num.assert_solves(a, jaxmg.potrs(A, b, T_A=4), b, np.float64)
    assert not A.is_deleted()
    np.testing.assert_array_equal(np.asarray(A), a)


# ---- the seeds' call forms -----------------------------------------------------------------

@pytest.mark.parametrize("in_specs", [(P("x", None),), (P("x", None), P(None, None))],
                         ids=["one-spec", "two-specs"])
def test_seeds_readme_example(cpus, in_specs):
    N = 12
    T_A = 3
    dtype = jnp.float64
    A = jnp.diag(jnp.arange(N, dtype=dtype) + 1)
    b = jnp.ones((N, 1), dtype=dtype)
    mesh = jax.make_mesh((4,), ("x",), devices=cpus[:4])  # the seeds' mesh (Explicit axes)
    A = jax.device_put(A, NamedSharding(mesh, P("x", None)))
    b = jax.device_put(b, NamedSharding(mesh, P(None, None)))
    out = jaxmg.potrs(A, b, T_A=T_A, mesh=mesh, in_specs=in_specs)
    expected_out = 1.0 / (jnp.arange(N, dtype=dtype) + 1)
    assert out.shape == (N, 1)
    np.testing.assert_allclose(np.asarray(out).ravel(), np.asarray(expected_out), rtol=1e-14)


# ---- potrs_shardmap_ctx --------------------------------------------------------------------

def test_shardmap_ctx_seeds_tutorial(mesh_of, num):
    """The seeds' tutorial: custom pre-processing, then potrs_shardmap_ctx in the user's
    shard_map with b closed over; returns (x, status). (On a mesh with Explicit axes, the
    default of jax.make_mesh, jax.shard_map cannot close over b: see test_bad_input.py.)"""
    n = 32
    mesh = mesh_of([0, 1, 2, 3])
    some_scaling_factor = 3.0
    a = num.hpd(n, np.float64, seed=23)
    b_replicated = put(num.rhs((n, 2), np.float64), mesh, REPL)
    A_sharded = put(a, mesh, ROWS)

    def custom_solve(local_A, b):
        local_A = local_A * some_scaling_factor
        x, status = jaxmg.potrs_shardmap_ctx(local_A, b, T_A=256)
        return x, status

    x, status = jax.shard_map(
        functools.partial(custom_solve, b=b_replicated),
        mesh=mesh,
        in_specs=P("x", None),
        out_specs=(P(None, None), P(None)),
        check_vma=False,
    )(A_sharded)
    assert status.shape == (1,) and status.dtype == np.int32 and int(status[0]) == 0
    num.assert_solves(some_scaling_factor * a, x, np.asarray(b_replicated), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128], ids=dtype_id)
def test_shardmap_ctx_explicit_mesh_under_jit(mesh_of, num, dtype):
    n = 30
    mesh = mesh_of([3, 0, 2], explicit=True)
    a = num.hpd(n, dtype, seed=24)
    b = num.rhs((n,), dtype)

    @jax.jit
    def solve(a, b):
        return jax.shard_map(
            lambda la, lb: jaxmg.potrs_shardmap_ctx(la, lb, T_A=4),  # 10-row shards: padded
            mesh=mesh, in_specs=(ROWS, P(None)), out_specs=(P(None), P(None)), check_vma=False,
        )(a, b)

    x, status = solve(put(a, mesh, ROWS), put(b, mesh, P(None)))
    assert int(status[0]) == 0
    num.assert_solves(a, x, b, dtype)


@pytest.mark.parametrize(
    "spec,axis_name,tile",
    [pytest.param(P("T", None), "T", 4, id="rows-over-T-replicated-S"),
     pytest.param(P(("S", "T"), None), ("S", "T"), 3, id="rows-over-both")],
)
def test_shardmap_ctx_2d_mesh(mesh_of, num, spec, axis_name, tile):
    n = 24
    mesh = mesh_of([2, 0, 3, 1], names=("S", "T"), shape=(2, 2))
    a = num.hpd(n, np.complex64, seed=25)
    b = num.rhs((n, 2), np.complex64)
    x, status = jax.shard_map(
        lambda la, lb: jaxmg.potrs_shardmap_ctx(la, lb, T_A=tile, axis_name=axis_name),
        mesh=mesh, in_specs=(spec, REPL), out_specs=(REPL, P(None)), check_vma=False,
    )(put(a, mesh, spec), put(b, mesh, REPL))
    assert int(status[0]) == 0
    num.assert_solves(a, x, b, np.complex64)
    num.assert_on_every_device(x, mesh_devices(mesh))


def test_shardmap_ctx_not_positive_definite(mesh_of, num):
    n = 24
    mesh = mesh_of([1, 2, 3])
    bad = _break_row(num.hpd(n, np.float64, seed=26), 21)
    b = num.rhs((n, 1), np.float64)
    x, status = jax.shard_map(
        lambda la, lb: jaxmg.potrs_shardmap_ctx(la, lb, T_A=4),
        mesh=mesh, in_specs=(ROWS, REPL), out_specs=(REPL, P(None)), check_vma=False,
    )(put(bad, mesh, ROWS), put(b, mesh, REPL))
    assert int(status[0]) == 22
    for shard in x.addressable_shards:
        assert np.all(np.isnan(np.asarray(shard.data)))


# ---- dtypes as jnp.linalg.solve promotes them -----------------------------------------------

@pytest.mark.parametrize("a_dtype,b_dtype", [
    (np.float64, np.float32), (np.float32, np.float64), (np.float64, np.complex128),
    (np.complex64, np.float64), (np.float32, np.int32), (np.float32, np.float16),
    (np.complex128, np.bool_)])
def test_rhs_promotes_as_jnp_linalg_solve(mesh_of, num, a_dtype, b_dtype):
    """x has jnp.linalg.solve's result dtype and solves the promoted problem, through potrs,
    potrs_shardmap_ctx and linalg.solve / cho_solve (a wider b widens the factor)."""
    mesh = mesh_of([1, 0])
    n = 12
    a = num.hpd(n, a_dtype, seed=21)
    b = (np.arange(2 * n).reshape(n, 2) % 3).astype(b_dtype)
    want = jnp.linalg.solve(jnp.asarray(a), jnp.asarray(b))
    a_s = put(a, mesh, ROWS)
    for x in (jaxmg.potrs(a_s, b), jaxmg.linalg.solve(a_s, b)):
        assert x.dtype == want.dtype, (x.dtype, want.dtype)
        num.assert_solves(a.astype(want.dtype), x, b.astype(want.dtype), want.dtype)
    # A kept factor has a's precision, as jax.scipy.linalg.cho_solve's: x has the promoted
    # dtype, its accuracy is the factor's.
    x = jaxmg.linalg.cho_solve(jaxmg.linalg.cho_factor(a_s), b)
    assert x.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(x), np.asarray(want),
                               rtol=100 * np.finfo(a_dtype).eps)
    ctx = jax.jit(jax.shard_map(lambda a, b: jaxmg.potrs_shardmap_ctx(a, b), mesh=mesh,
                                in_specs=(ROWS, REPL), out_specs=(REPL, P()), check_vma=False))
    x, info = ctx(a_s, jax.device_put(b, NamedSharding(mesh, REPL)))
    assert x.dtype == want.dtype and int(np.asarray(info)[0]) == 0
    num.assert_solves(a.astype(want.dtype), x, b.astype(want.dtype), want.dtype)
