"""Pieces shared by every op: argument checks, configuration, the FFI call, mesh positions."""

from __future__ import annotations

import collections
import functools
import itertools
import math
import numbers
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from . import _ffi
from ._geometry import Geometry, default_tile

SUPPORTED_DTYPES = (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)
_SUPPORTED = frozenset(jnp.dtype(d) for d in SUPPORTED_DTYPES)

_SITES = itertools.count(1)
_SITE_LOCK = threading.Lock()
_DEFAULT_TIMEOUT_S = 300.0
_timeout_s: float | None = None


def set_timeout(seconds: float | None) -> None:
    """Sets how long the per-device calls of one op wait for each other before failing.

    ``None`` restores the default (the ``JAXMG_TIMEOUT`` environment variable if set, else 300
    seconds). The value is read when an op is traced, so it applies to ops traced afterwards.
    """
    global _timeout_s
    if seconds is not None and (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or not 0 < seconds < math.inf
    ):
        raise ValueError(
            f"jaxmg.set_timeout: seconds must be a positive finite number, got {seconds!r}"
        )
    _timeout_s = None if seconds is None else float(seconds)


def get_timeout() -> float:
    if _timeout_s is not None:
        return _timeout_s
    env = os.environ.get("JAXMG_TIMEOUT")
    if env:
        try:
            value = float(env)
            if 0 < value < math.inf:
                return value
        except ValueError:
            pass
    return _DEFAULT_TIMEOUT_S


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
    dtype = jnp.dtype(dtype)
    if dtype not in _SUPPORTED:
        raise TypeError(
            f"jaxmg.{op}: '{name}' must be float32, float64, complex64 or complex128, got {dtype}"
        )
    return dtype


def _in_manual_context() -> bool:
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
    if not isinstance(sharding, NamedSharding) or not _explicit_axes(sharding.mesh):
        return x
    if not _in_manual_context():
        return x
    return np.asarray(x)


def check_rhs(b, n: int, dtype, op: str, expand: bool = True):
    """Returns (b as N x k, was_vector); with ``expand`` False a vector stays a vector (the
    caller adds the column, e.g. inside its jitted program: ``run_entry(vector=True)``)."""
    b = closed_over(b)
    shape = getattr(b, "shape", None)
    if shape is None:
        raise TypeError(f"jaxmg.{op}: 'b' must be an array, got {type(b).__name__}")
    if len(shape) not in (1, 2):
        raise ValueError(f"jaxmg.{op}: 'b' must be a vector or a matrix, got shape {tuple(shape)}")
    if shape[0] != n:
        raise ValueError(f"jaxmg.{op}: 'b' must have {n} rows to match 'a', got {shape[0]}")
    if jnp.dtype(b.dtype) != dtype:
        raise TypeError(f"jaxmg.{op}: 'b' must have the dtype of 'a' ({dtype}), got {jnp.dtype(b.dtype)}")
    vector = len(shape) == 1
    return (b[:, None] if vector and expand else b), vector


def choose_tile(T_A, nloc: int, platform: str, pad: bool, op: str) -> int:
    if T_A is None:
        tile = default_tile(nloc, platform)
    else:
        if isinstance(T_A, bool) or not isinstance(T_A, numbers.Integral) or T_A < 1:
            raise ValueError(f"jaxmg.{op}: T_A must be a positive integer, got {T_A!r}")
        tile = min(int(T_A), nloc)  # a tile never needs to exceed a shard
    if nloc % tile and not pad:
        raise ValueError(
            f"jaxmg.{op}: T_A={tile} does not divide the {nloc} rows of each shard and pad=False; "
            "pass pad=True or a T_A that divides the shard"
        )
    return tile


def check_split(n: int, ndev: int, op: str) -> None:
    if n < ndev:
        raise ValueError(
            f"jaxmg.{op}: 'a' has {n} rows, fewer than the {ndev} devices it is sharded over"
        )
    if n % ndev:
        raise ValueError(
            f"jaxmg.{op}: the {n} rows of 'a' do not split evenly over {ndev} devices"
        )


def real_dtype(dtype):
    return jnp.finfo(dtype).dtype


def ensure_backends() -> None:
    """Registers the targets of every platform present (for use inside a user's shard_map)."""
    _ffi.ensure_registered("cpu")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if gpus:
        _ffi.ensure_registered("gpu")


def mesh_ids(row_axes: tuple, group_axes: tuple) -> jax.Array:
    """int32[2] (replica group, position along the row axes) of this device, in shard_map."""
    rank = jax.lax.axis_index(row_axes if len(row_axes) > 1 else row_axes[0])
    group = (
        jax.lax.axis_index(group_axes if len(group_axes) > 1 else group_axes[0])
        if group_axes
        else jnp.zeros((), jnp.int32)
    )
    return jnp.stack([group, rank]).astype(jnp.int32)


def call(target: str, results, operands, geo: Geometry, aliases=None, axes=None):
    """One jaxmg FFI call, with a call-site id unique to this trace.

    Under ``vmap`` the call runs once per batch element in a loop (``sequential``): every
    device executes the same loop, and the k-th execution of a call meets the k-th
    executions of the other devices. Where JAX places this trace several times into one
    program (the same site id more than once), the copies are told apart by the instance XLA
    gives each custom call on CPU (docs/design.md, "Rendezvous").

    ``axes`` = (row_axes, group_axes) of the call: when the mesh holds devices of several
    processes, the call also carries the process of each position (``_mpmd``) and a site id
    that every process computes alike."""
    from . import _mpmd

    timeout = get_timeout()
    extra, site = {}, None
    if axes is not None:
        extra, site = _mpmd.call_attrs(target, geo, operands, axes, target, timeout)
    if site is None:
        with _SITE_LOCK:
            site = next(_SITES)
    return jax.ffi.ffi_call(
        target, results, input_output_aliases=aliases, vmap_method="sequential"
    )(
        *operands,
        tile=np.int64(geo.tile),
        nparts=np.int64(geo.ndev),
        site=np.int64(site),
        timeout_ms=np.int64(max(1, int(timeout * 1000))),
        **extra,
    )


def _explicit_axes(mesh) -> set:
    kind = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    types = getattr(mesh, "axis_types", None) or ()
    if kind is None:
        return set()
    return {ax for ax, t in zip(mesh.axis_names, types) if t == kind}


def _spec_axes(spec) -> set:
    out = set()
    for entry in spec:
        if entry is None:
            continue
        out.update(entry if isinstance(entry, (tuple, list)) else (entry,))
    return out


def conform(x, mesh, spec):
    """``x`` resharded to ``spec`` on a mesh with Explicit axes (``jax.make_mesh``'s default in
    recent JAX), where shard_map refuses an input whose sharding differs from its in_spec
    (an unsharded matrix, a column-sharded right-hand side). Auto meshes need nothing: the
    shard_map reshards by itself. Call under jit (works on tracers and arrays alike)."""
    explicit = _explicit_axes(mesh)
    if not explicit or not _spec_axes(spec) <= explicit:
        return x
    reshard = getattr(jax.sharding, "reshard", None)
    if reshard is None:  # pragma: no cover - JAX versions without explicit sharding
        return x
    return reshard(x, NamedSharding(mesh, spec))


def shard_map(fn, mesh, in_specs, out_specs):
    """jax.shard_map without the varying-axes check (FFI calls), its inputs first conformed
    to ``in_specs`` (see ``conform``)."""
    from . import _mpmd

    def traced(*args):
        with _mpmd.mesh_context(mesh):
            return fn(*args)

    inner = jax.shard_map(traced, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    specs = in_specs if isinstance(in_specs, tuple) else (in_specs,)

    def run(*args):
        return inner(*(conform(x, mesh, s) for x, s in zip(args, specs)))

    return run


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


def plan(a, T_A, mesh, in_specs, pad: bool, op: str, max_tile: int | None = None):
    """Checks ``a`` and resolves where and how a whole-array op runs: (dtype, placement, geometry).

    ``max_tile`` caps a user's ``T_A`` (cuSOLVERMg's syevd accepts tiles up to 1024)."""
    from . import _mesh

    dtype = check_matrix(a, op)
    n = a.shape[0]
    place = _mesh.resolve(a, mesh, in_specs, op)
    check_split(n, place.ndev, op)
    if max_tile is not None and isinstance(T_A, numbers.Integral) and not isinstance(T_A, bool):
        T_A = min(int(T_A), max_tile)
    tile = choose_tile(T_A, n // place.ndev, place.platform, pad, op)
    _ffi.ensure_registered(place.platform)
    return dtype, place, Geometry(n, place.ndev, tile)


def context_plan(a, T_A, pad: bool, axis_name, op: str, max_tile: int | None = None):
    """The same inside a user's shard_map, from the local shard: (row_axes, group_axes, geometry)."""
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
    check_matrix(jnp.zeros((0, 0), a.dtype), name)
    if max_tile is not None and isinstance(T_A, numbers.Integral) and not isinstance(T_A, bool):
        T_A = min(int(T_A), max_tile)
    tile = choose_tile(T_A, n // ndev, "gpu", pad, name)
    ensure_backends()
    return rows, groups, Geometry(n, ndev, tile)


@functools.lru_cache(maxsize=256)
def entry(fn, vector: bool = False):
    """A public op's call as one jitted program: ``fn`` (a cached differentiable function
    returning ``(*values, info[1])``) plus the indexing of its outputs (``info[0]``). With
    ``vector`` the second argument is a vector right-hand side: it is made the N x 1 column
    ``fn`` takes inside the program (not by an eager op of its own: one program dispatch
    less, about 0.1-0.3 ms on a GPU) and the first value's column is taken out.

    Called eagerly, a ``custom_jvp``/``custom_vmap`` function is re-processed by JAX on every
    call (about 0.4 ms of Python, measured on CPU); under ``jit`` it is traced once and later
    calls take JAX's C++ dispatch path. Not used with ``donate``: the outer program would
    have no output to alias the donated buffer to, so XLA would copy it instead."""

    return jax.jit(lambda *args: _call(fn, args, vector))


def _call(fn, args, vector: bool):
    """``fn(*args)`` as ``(*values, info)``: ``info[0]``, and with ``vector`` the second
    argument made an N x 1 column before and the first value's column taken out after."""
    if vector:
        args = (args[0], args[1][:, None], *args[2:])
    *vals, info = fn(*args)
    if vector:
        vals[0] = vals[0][:, 0]
    return (*vals, info[0])


# Eager calls on CPU devices that may still be running (see run_entry).
_CPU_INFLIGHT_MAX = 1
_cpu_inflight: collections.deque = collections.deque()
_cpu_inflight_lock = threading.Lock()


def run_entry(fn, donate: bool, args, vector: bool = False, platform: str = ""):
    """``entry(fn)(*args)``, or ``fn`` itself when donating (see ``entry``); the same outputs
    either way: ``(*values, info)`` with ``info`` a scalar. ``vector``: the second argument is
    a vector right-hand side (see ``entry``).

    On CPU devices at most ``_CPU_INFLIGHT_MAX`` earlier eager call is left in flight: XLA's CPU
    client runs the per-device parts of queued multi-device programs on a small thread pool
    and bounds each device's queue with a semaphore that it acquires on those same threads;
    with a few dozen calls queued, a device's part of an older call can find no thread while
    the other devices' parts wait for it in a rendezvous (ours or XLA's own collectives), and
    only the rendezvous timeout ends it. Waiting for the oldest call keeps the queue short
    (docs/errors.md).

    Under a trace (the user's jit, grad, vmap) ``fn`` is called directly, as before ``entry``
    existed: a cached ``jax.jit`` would hand the same traced program, hence the same call-site
    id, to two calls of one op inside one outer program. On one process's devices the copies
    of a site are told apart by their XLA instance (CPU) or run in one order on every device
    (GPU), so that is harmless there; across the processes of an MPMD job on CPU it is not
    (docs/design.md, "Rendezvous"), so duplicates are not created here on purpose."""
    traced = any(isinstance(x, jax.core.Tracer) for x in args)
    if not donate and not traced:
        out = entry(fn, vector)(*args)
    else:
        out = _call(fn, args, vector)
    if platform == "cpu" and not traced:
        with _cpu_inflight_lock:
            _cpu_inflight.append(out[-1])
            old = _cpu_inflight.popleft() if len(_cpu_inflight) > _CPU_INFLIGHT_MAX else None
        if old is not None:
            try:
                old.block_until_ready()
            except Exception:  # that call's error is raised to whoever reads its results
                pass
    return out

