"""Checks and placement: everything a call decides before any program is built.

Bad input gets a clear Python error here, before anything is traced or runs; what is left
is a ``Plan``: the op, the dtype, where it runs (``Placement``), how the matrix is cut
(``Geometry``, the tile chosen by the platform's distributed engine) and which engine runs
it (``_engines.choose``). The arguments come back placed as the plan says (moved or
resharded to its layout where needed).
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from . import _engines, _ffi, _mesh, _spmd
from ._engines import dense
from ._geometry import Geometry, Placement

SUPPORTED_DTYPES = (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)
_SUPPORTED = frozenset(jnp.dtype(d) for d in SUPPORTED_DTYPES)


@dataclasses.dataclass(frozen=True)
class Plan:
    """``n`` is the user's N; ``geo.n`` that of the problem solved, N rounded up to a multiple
    of the row devices (``pad_to_split``)."""

    op: str
    dtype: np.dtype
    place: Placement
    geo: Geometry
    engine: str
    n: int


def check_matrix(a, op: str, name: str = "a"):
    """Rank-2, square, supported dtype; returns the dtype."""
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(f"jaxmg.{op}: '{name}' must be an array, got {type(a).__name__}")
    if len(shape) != 2:
        raise ValueError(f"jaxmg.{op}: '{name}' must be a matrix (rank 2), got shape {tuple(shape)}")
    if shape[0] != shape[1]:
        raise ValueError(f"jaxmg.{op}: '{name}' must be square, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"jaxmg.{op}: '{name}' has 0 rows, fewer than the one a device needs")
    return check_dtype(dtype, op, name)


def check_dtype(dtype, op: str, name: str = "a"):
    dtype = jnp.dtype(dtype)
    if dtype not in _SUPPORTED:
        raise TypeError(
            f"jaxmg.{op}: '{name}' must be float32, float64, complex64 or complex128, got {dtype}"
        )
    return dtype


def in_manual_context() -> bool:
    """Inside a shard_map: the context's abstract mesh has Manual axes."""
    manual = getattr(getattr(jax.sharding, "AxisType", None), "Manual", None)
    mesh = jax.sharding.get_abstract_mesh()
    types = getattr(mesh, "axis_types", None) or ()
    return manual is not None and any(t == manual for t in types)


def closed_over(x):
    """A concrete array captured by a function traced inside shard_map (the tutorial's
    ``partial(custom_solve, b=b_replicated)``), made usable there.

    JAX refuses any operation on a captured array that lives on a mesh with Explicit axes
    (``jax.make_mesh``'s default in recent JAX): "Closing over inputs to shard_map where the
    input is sharded on `Explicit` axes is not implemented". Such an array is copied to the
    host and enters the program as a constant; pass it as an argument of the shard_map
    instead to avoid the copy. Everything else is returned unchanged."""
    if isinstance(x, jax.core.Tracer) or not isinstance(x, jax.Array):
        return x
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding) or not _spmd.explicit_axes(sharding.mesh):
        return x
    if not in_manual_context():
        return x
    return np.asarray(x)


def check_rhs(b, n: int, dtype, op: str):
    """Returns (b, was_vector, dtype): ``b`` (N or N x k) checked against ``a``'s N, and the
    dtype both are solved in: ``a``'s and ``b``'s promoted as ``jnp.linalg.solve`` promotes
    them (``promote``), ``b`` converted to it."""
    b = closed_over(b)
    shape = getattr(b, "shape", None)
    if shape is None or getattr(b, "dtype", None) is None:
        raise TypeError(f"jaxmg.{op}: 'b' must be an array, got {type(b).__name__}")
    if len(shape) not in (1, 2):
        raise ValueError(f"jaxmg.{op}: 'b' must be a vector or a matrix, got shape {tuple(shape)}")
    if shape[0] != n:
        raise ValueError(f"jaxmg.{op}: 'b' must have {n} rows to match 'a', got {shape[0]}")
    dtype = promote(dtype, b.dtype, op)
    if jnp.dtype(b.dtype) != dtype:
        b = b.astype(dtype) if isinstance(b, jax.Array) else jnp.asarray(b, dtype)
    return b, len(shape) == 1, dtype


def promote(a_dtype, b_dtype, op: str):
    """The dtype a solve of ``a`` (a supported dtype) and ``b`` computes in, as
    ``jnp.linalg.solve`` promotes them: the promoted type (float64 disabled: its canonical
    32-bit form), and ``a``'s dtype for an integer or boolean ``b``."""
    a_dtype = jnp.dtype(a_dtype)
    try:
        b_dtype = jnp.dtype(b_dtype)
        if not jnp.issubdtype(b_dtype, jnp.inexact):
            jnp.promote_types(a_dtype, b_dtype)  # refuses what JAX cannot promote
            return a_dtype
        out = jax.dtypes.canonicalize_dtype(jnp.promote_types(a_dtype, b_dtype))
    except (TypeError, ValueError) as e:
        raise TypeError(f"jaxmg.{op}: 'b' of dtype {b_dtype} does not promote with 'a' of "
                        f"dtype {a_dtype}: {e}") from None
    return check_dtype(out, op, "b")


def check_tile(T_A, op: str):
    """``T_A`` as given: None (the engine's default) or a positive integer."""
    if T_A is None:
        return None
    if isinstance(T_A, bool) or not isinstance(T_A, numbers.Integral) or T_A < 1:
        raise ValueError(f"jaxmg.{op}: T_A must be a positive integer, got {T_A!r}")
    return int(T_A)


def check_padding(tile: int, nloc: int, pad: bool, op: str) -> None:
    if nloc % tile and not pad:
        raise ValueError(
            f"jaxmg.{op}: T_A={tile} does not divide the {nloc} rows of each shard and pad=False; "
            "pass pad=True or a T_A that divides the shard"
        )


def even_split(n: int, ndev: int) -> int:
    """N rounded up to a multiple of the row devices: the order of the problem solved."""
    return -(-n // ndev) * ndev


def pad_to_split(a, b, n_even: int, op: str):
    """``a`` (N x N) and ``b`` (N x k or N, or None) padded to order ``n_even``, so that the
    rows split evenly over the devices: A ⊕ D with D diagonal, b with zero rows. D is the
    identity for the Cholesky ops (the solution, the inverse, log det and LAPACK's info of
    the leading block are A's), and for syevd a value above A's spectrum, 2 (||A||_inf +
    ||A||_1) (1 for A = 0; above the spectrum of A's Hermitian part and of the Hermitian
    matrix of either triangle too, which ``jaxmg.linalg.eigh`` may make of it after the
    padding), so that the padding eigenpairs are the last ones and are dropped (a constant
    of the derivatives)."""
    n = a.shape[-1]
    p = n_even - n
    if not p:
        return a, b
    if op == "syevd":
        norm = (jnp.max(jnp.sum(jnp.abs(a), axis=-1), axis=-1)
                + jnp.max(jnp.sum(jnp.abs(a), axis=-2), axis=-1))
        diag = jax.lax.stop_gradient(jnp.where(norm > 0, 2 * norm, jnp.ones_like(norm)))
        diag = diag.astype(a.dtype)[..., None]
    else:
        diag = jnp.ones((), a.dtype)
    lead = ((0, 0),) * (a.ndim - 2)
    a = jnp.pad(a, lead + ((0, p), (0, p)))
    i = jnp.arange(n, n_even, dtype=jnp.int32)
    a = a.at[..., i, i].set(diag)
    if b is not None:
        b = jnp.pad(b, ((0, p),) + ((0, 0),) * (b.ndim - 1))
    return a, b


def geometry(op: str, platform: str, n: int, ndev: int, T_A, pad: bool, name: str) -> Geometry:
    """The call's geometry: the tile from the platform's distributed engine (``T_A`` or its
    default), checked against ``pad``."""
    nloc = n // ndev
    tile = _engines.tile(op, platform, nloc, check_tile(T_A, name))
    check_padding(tile, nloc, pad, name)
    return Geometry(n, ndev, tile)


def plan(op: str, a, T_A, mesh, in_specs, pad: bool, engine="auto", b=None, name=None):
    """Checks a whole-array call of ``op`` and resolves where and how it runs.

    Returns ``(plan, a, b, vector)``: ``a`` (and ``b``, when given) placed as the plan says
    (padded to an order the row devices divide, ``pad_to_split``; ``b`` replicated, a vector
    ``b`` left a vector with ``vector`` True); a ``jax.ShapeDtypeStruct`` is planned for, not
    placed. ``name`` is the op's name in messages (default ``op``)."""
    name = name or op
    dtype = check_matrix(a, name)
    abstract = isinstance(a, jax.ShapeDtypeStruct)
    if not abstract and not isinstance(a, jax.Array):
        a = jnp.asarray(a)  # a NumPy array runs on the default device
    n = a.shape[0]
    vector = False
    if b is not None:
        b, vector, dtype = check_rhs(b, n, dtype, name)
        if not abstract and jnp.dtype(a.dtype) != dtype:
            a = a.astype(dtype)  # b is wider (float64 with a float32 a, complex with a real)
    place = _mesh.resolve(a, mesh, in_specs, name)
    n_even = even_split(n, place.ndev)
    geo = geometry(op, place.platform, n_even, place.ndev, T_A, pad, name)
    _ffi.ensure_registered(place.platform)
    if not abstract:
        a, b = pad_to_split(a, b, n_even, op)
        a = _mesh.place(a, NamedSharding(place.mesh, place.spec))
    if b is not None:
        b = _mesh.place(b, NamedSharding(place.mesh, P()))
    eng = _engines.choose(engine, op, place, n_even, dtype) if engine is not None else None
    return Plan(op, dtype, place, geo, eng, n), a, b, vector


@dataclasses.dataclass(frozen=True)
class ContextPlan:
    """A call inside the user's own shard_map: the row and replica axes of the enclosing
    mesh, the geometry of each platform the program may be lowered for, the shard's N."""

    row_axes: tuple
    group_axes: tuple
    n: int
    ndev: int


def context_axes(axis_name, op: str):
    """(row_axes, group_axes, ndev) inside a user's shard_map."""
    mesh = jax.sharding.get_abstract_mesh()
    names = tuple(getattr(mesh, "axis_names", ()) or ())
    if not names:
        raise ValueError(
            f"jaxmg.{op}_shardmap_ctx must be called inside jax.shard_map (no mesh axes in scope)"
        )
    manual = tuple(getattr(mesh, "manual_axes", names) or names)
    if axis_name is None:
        sized = [ax for ax in manual if mesh.shape[ax] > 1]
        if len(sized) > 1:
            raise ValueError(
                f"jaxmg.{op}_shardmap_ctx: the mesh has several axes {tuple(sized)}; pass "
                "axis_name= naming the axis the rows of 'a' are sharded over"
            )
        axis_name = sized[0] if sized else manual[0]
    rows = tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)
    for ax in rows:
        if ax not in manual:
            raise ValueError(
                f"jaxmg.{op}_shardmap_ctx: axis {ax!r} is not a manual axis of the enclosing "
                f"shard_map (axes {manual})"
            )
    groups = tuple(ax for ax in manual if ax not in rows)
    ndev = int(np.prod([mesh.shape[ax] for ax in rows]))
    return rows, groups, ndev


def context_plan(a, T_A, pad: bool, axis_name, op: str) -> tuple[ContextPlan, dict]:
    """Checks a call inside the user's shard_map from the local shard: the ``ContextPlan``
    and the geometry on each platform (``{"cpu": geo, "gpu": geo}``: which one runs is
    known only when the program is lowered, and each platform's distributed engine has its
    own tile rule)."""
    name = f"{op}_shardmap_ctx"
    rows, groups, ndev = context_axes(axis_name, op)
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"jaxmg.{name}: 'a' must be a matrix shard, got shape {shape}")
    n = shape[1]
    if shape[0] * ndev != n:
        raise ValueError(
            f"jaxmg.{name}: the shard of 'a' must have N / {ndev} = {n // ndev} rows for "
            f"N = {n}, got {shape[0]}"
        )
    check_dtype(a.dtype, name)
    geos = {p: geometry(op, p, n, ndev, T_A, pad, name) for p in _engines.DISTRIBUTED}
    _ffi.ensure_backends()
    return ContextPlan(rows, groups, n, ndev), geos


# ---- status ----------------------------------------------------------------------------------

def raise_if_failed(info, op: str, what: str) -> None:
    """``check=True``: LinAlgError on a nonzero info (only with a concrete info)."""
    if isinstance(info, jax.core.Tracer):
        raise ValueError(
            f"jaxmg.linalg.{op}: check=True needs concrete results and cannot be used inside "
            "jit or another transformation; pass return_status=True and test the status "
            "instead"
        )
    codes = np.asarray(info).reshape(-1)
    code = int(codes[codes != 0][0]) if np.any(codes != 0) else 0
    if code != 0:
        raise np.linalg.LinAlgError(f"jaxmg.linalg.{op}: {what} (info = {code})")


# ---- the gathered dense ops (_engines.dense) -------------------------------------------------

# The gathered route holds its inputs, its outputs and the solver's workspace whole on every
# device: about this many times their bytes. It runs only where that fits in the device.
DENSE_COPIES = 3


def _cut_rows(x, m: int, mesh):
    """The first ``m`` rows of a row-sharded result padded to split evenly (replicated first
    on a mesh with Explicit axes, where JAX refuses an uneven slice of a sharded dimension)."""
    if x.shape[0] == m:
        return x
    if _spmd.explicit_axes(mesh):
        x = _spmd.conform(x, mesh, P())
    return x[:m]


def dense_run(op: str, inputs, *, mesh, in_specs, name: str, kw: tuple = ()):
    """Runs the gathered dense op ``op`` (``_engines.dense.OPS``) on ``inputs`` (arrays in
    the op's order; the placement is read off the first, as for every jaxmg op): the row
    inputs padded to split evenly over the row devices and placed by rows, the others
    replicated; the row outputs cut back to their true sizes. Refuses, before anything runs,
    a problem whose whole matrices do not fit one device."""
    _, in_kinds, out_kinds = dense.OPS[op]
    place = _mesh.resolve(inputs[0], mesh, in_specs, name)
    _ffi.ensure_registered(place.platform)
    shapes = tuple((tuple(x.shape), jnp.dtype(x.dtype)) for x in inputs)
    outs = dense.outputs(op, shapes, kw)
    need = DENSE_COPIES * (sum(int(np.prod(s)) * d.itemsize for s, d in shapes)
                           + sum(int(np.prod(o.shape)) * o.dtype.itemsize for o in outs))
    have = _engines._device_bytes(place.device)
    if place.platform != "cpu" and need > have:
        raise ValueError(
            f"jaxmg.{name}: this op gathers its matrices on every device; it needs about "
            f"{need / 2**30:.1f} GiB per device and the device has {have / 2**30:.1f} GiB")
    args, rows = [], []
    for x, kind in zip(inputs, in_kinds):
        if kind == "rows":
            m = x.shape[0]
            rows.append(m)
            extra = even_split(m, place.ndev) - m
            if extra:
                x = jnp.pad(x, ((0, extra),) + ((0, 0),) * (x.ndim - 1))
            x = _mesh.place(x, NamedSharding(place.mesh, P(place.axis)))
        else:
            x = _mesh.place(x, NamedSharding(place.mesh, P()))
        args.append(x)
    res = dense.program(op, place, tuple(rows), kw)(*args)
    return tuple(_cut_rows(r, o.shape[0], place.mesh) if k == "rows" else r
                 for r, o, k in zip(res, outs, out_kinds))
