"""The engines, and the one rule that chooses among them.

An engine is one module of this package (``_base.Engine``: the platforms it runs on and a
per-device body for each op it implements); ``ENGINES`` registers it. Every op of every
engine becomes a program here (``program``): the body inside ``jax.shard_map`` over the
call's mesh, jitted and cached. The derivative rules (``jaxmg._rules``) stand above, and
the FFI call (``jaxmg._call``) below: an engine knows neither autodiff nor XLA's FFI.

======================  ==========  ===========================================================
engine                  platforms   what it does
======================  ==========  ===========================================================
``cusolvermg``          gpu         cuSOLVERMg over every GPU of the mesh, O(N²/ndev) per device
``lapack``              cpu         distributed tiled LAPACK over the CPU devices
``one_device``          cpu, gpu    position 0 gathers what the solver reads and solves alone
``gather``              cpu, gpu    every device gathers the matrix, XLA's solver on each
``cusolvermp``          gpu         cuSOLVERMp, one rank per GPU, any number of processes/nodes
======================  ==========  ===========================================================

``engine="mg"`` names the platform's distributed engine (``cusolvermg`` or ``lapack``) and
``engine="single"`` the single-device route (``one_device`` where it implements the op and
the mesh is in this process, else ``gather``): the names of earlier releases.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from .. import _mpmd, _spmd
from .._geometry import Geometry, Placement
from . import cusolvermg, cusolvermp, gather, lapack, one_device
from ._base import OPS, Engine

ENGINES: dict[str, Engine] = {
    e.name: e for e in (cusolvermg.ENGINE, lapack.ENGINE, one_device.ENGINE, gather.ENGINE,
                        cusolvermp.ENGINE)
}

# The distributed engine of each platform: it lays the matrix out in tiles (its tile rule
# gives every call its geometry), keeps Cholesky factors between calls, computes the
# derivative rules' factorizations and the exact info of the engines that gather.
DISTRIBUTED = {"gpu": "cusolvermg", "cpu": "lapack"}

NAMES = ("auto", *ENGINES, "mg", "single")

# ---- the auto rule, and the measurements behind it (docs/benchmarks.md) ----------------------
# From this N on, potrs on 2+ GPUs is faster through cuSOLVERMg than through one_device
# (2 H200, "potrs engine crossover"). Per dtype: the complex types have 4x the arithmetic
# per element, so cuSOLVERMg pays off at smaller N. Measured on 2 GPUs; with more,
# cuSOLVERMg gains and one_device does not, so these are upper bounds there.
POTRS_MG_MIN_N = {"float64": 20480, "float32": 16384, "complex128": 8192, "complex64": 12288}
# The single-device engines need about this many matrices' worth of memory on a device
# (the gathered matrix, its factor or eigenvectors, workspace); they run only where that
# fits in 80 % of one device.
SINGLE_COPIES = 4
SINGLE_FRACTION = 0.8


@functools.lru_cache(maxsize=64)
def _device_bytes(device) -> int:
    """The device's memory limit as XLA's allocator sees it (queried once per device)."""
    try:
        stats = device.memory_stats() or {}
        return int(stats.get("bytes_limit", 0)) or 64 << 30
    except Exception:
        return 64 << 30


def multi_process(place: Placement) -> bool:
    """The GPUs of ``place`` belong to several processes and the cuSOLVERMp engine can run
    there: its engine then runs the call (and keeps the Cholesky factors of the derivative
    rules), the only one that reaches GPUs of other nodes."""
    return (place.platform == "gpu" and not _mpmd.in_this_process(place.mesh)
            and ENGINES["cusolvermp"].refuses("potrs", place, False) is None)


def auto(op: str, place: Placement, n: int, dtype) -> str:
    """The engine ``engine="auto"`` runs: on CPU devices the distributed LAPACK backend (what
    they are for, and what CI exercises); on GPUs of several processes cuSOLVERMp where it is
    installed (``multi_process``); on GPUs a single-device engine when the matrix
    fits one device comfortably and, for potrs on several GPUs, N is below the measured
    crossover; else cuSOLVERMg. cuSOLVERMg on 2 GPUs is slower than cuSOLVER on one for
    potri and syevd at every size measured, and for potrs below the crossover."""
    if place.platform == "cpu":
        return DISTRIBUTED["cpu"]
    if multi_process(place):
        return "cusolvermp"
    dtype = jnp.dtype(dtype)
    if not fits_one_device(place, n, dtype) or (op == "potrs" and place.ndev > 1 and n >= POTRS_MG_MIN_N[dtype.name]):
        return DISTRIBUTED["gpu"]
    return _single(op, place)


def fits_one_device(place: Placement, n: int, dtype) -> bool:
    """The single-device engines' memory rule: ``SINGLE_COPIES`` N x N matrices of ``dtype``
    within ``SINGLE_FRACTION`` of one device of ``place``."""
    need = SINGLE_COPIES * n * n * jnp.dtype(dtype).itemsize
    return need < SINGLE_FRACTION * _device_bytes(place.device)


def _single(op: str, place: Placement) -> str:
    one = ENGINES["one_device"]
    if one.refuses(op, place, _mpmd.in_this_process(place.mesh)) is None:
        return one.name
    return "gather"


def choose(engine, op: str, place: Placement, n: int, dtype) -> str:
    """The name of the engine that runs ``op`` on ``place``: ``engine`` (an engine's name,
    "auto", or "mg"/"single"), checked; ValueError, naming why, when it cannot run there."""
    if engine is None:
        engine = "auto"
    if engine not in NAMES:
        raise ValueError(f"jaxmg.{op}: engine must be one of {NAMES}, got {engine!r}")
    if engine == "auto":
        engine = auto(op, place, n, dtype)
    elif engine == "mg":
        engine = DISTRIBUTED.get(place.platform, "cusolvermg")
    elif engine == "single":
        engine = _single(op, place)
    why = ENGINES[engine].refuses(op, place, _mpmd.in_this_process(place.mesh))
    if why:
        raise ValueError(f"jaxmg.{op}: {why}")
    return engine


def distributed(platform: str) -> Engine:
    """The distributed engine of ``platform`` (see ``DISTRIBUTED``)."""
    return ENGINES[DISTRIBUTED.get(platform, "cusolvermg")]


def factor_engine(place: Placement) -> str:
    """The engine whose Cholesky factors ``place`` keeps (``linalg.cho_factor``, the
    derivative rules): cuSOLVERMp on GPUs of several processes (``multi_process``), else the
    platform's distributed engine. A function of the placement alone, so a factor and every
    later solve with it agree."""
    return "cusolvermp" if multi_process(place) else distributed(place.platform).name


def tile(op: str, platform: str, nloc: int, T_A) -> int:
    """The tile of a call on ``platform``: its distributed engine's rule (``T_A`` validated
    by the caller, or None for the default)."""
    return distributed(platform).tile(op, nloc, T_A)


# ---- programs --------------------------------------------------------------------------------

def body(engine: str, op: str, geo: Geometry, row_axes, group_axes, platform: str, **kw):
    """The per-device body of ``op`` on ``engine``, bound to its geometry and axes (for a
    call inside the user's own shard_map)."""
    eng = ENGINES[engine]
    if eng.prepare:
        raise ValueError(f"jaxmg.{op}: engine '{engine}' sets itself up from the concrete mesh "
                         "and cannot run inside your own shard_map; call the op outside it")
    opts = eng.options(op, platform) if eng.options else {}
    return functools.partial(eng.bodies[op], geo=geo, row_axes=tuple(row_axes),
                             group_axes=tuple(group_axes), **opts, **kw)


def _specs(op: str, place: Placement, donate: bool, vectors: bool):
    rows, rep = place.spec, P()
    return {
        "potrs": ((rows, rep), (rep, rep) + ((rows,) if donate else ())),
        "potri": ((rows,), (rows, rep)),
        "syevd": ((rows,), (rep, rows, rep) if vectors else (rep, rep)),
        "potrf": ((rows,), (rows, rep)),
        "solve": ((rows, rep), rep),
        "inverse": ((rows,), rows),
        "logdet": ((rows,), rep),
        "getrs": ((rows, rep), (rep, rep)),
        "getrs_t": ((rows, rep), (rep, rep)),
    }[op]


@functools.lru_cache(maxsize=512)
def program(engine: str, op: str, place: Placement, geo: Geometry, donate: bool = False,
            vectors: bool = True, timeout: float = 0.0):
    """``op`` of ``engine`` as one jitted program over the mesh of ``place`` (arguments and
    results as in ``_base``, x and w replicated, everything N x N sharded by rows; syevd
    without ``vectors`` returns (w, info[1])). ``donate``: the caller's ``a`` may be reused
    (potrs then also returns the factor it wrote there, which XLA needs as an output to
    alias). ``timeout`` is part of the cache key only: the FFI call reads it at trace time."""
    del timeout
    assert op in OPS, op
    eng = ENGINES[engine]
    opts = eng.options(op, place.platform) if eng.options else {}
    if eng.prepare:
        opts = {**opts, **eng.prepare(op, place, geo)}
    fn = functools.partial(eng.bodies[op], geo=geo, row_axes=place.row_axes,
                           group_axes=place.group_axes, **opts)
    if op == "potrs":
        fn = functools.partial(fn, keep_factor=donate)
    elif op == "syevd":
        bound = functools.partial(fn, vectors=vectors)

        def fn(a_loc):
            w, v, info = bound(a_loc)
            return (w, v, info) if vectors else (w, info)

    in_specs, out_specs = _specs(op, place, donate, vectors)
    mapped = _spmd.shard_map(fn, place.mesh, in_specs=in_specs, out_specs=out_specs)
    return jax.jit(mapped, donate_argnums=(0,) if donate else ())
