"""One process per device (MPMD) on one node: what the Python layer adds.

When the devices of a mesh belong to several processes of a job (``jax.distributed``), every
FFI call carries the attribute ``mp_procs``: the process index of each (replica group,
position along the row axes), in the order of ``_call.mesh_ids``. The native layer then
meets the other processes through shared memory (docs/mpmd.md, src/ffi/mpmd.c).

Before the first such call the job is configured once per process and library: a job token
(a uuid4 written by the first process to reach this point into JAX's distributed key-value
store, read by the others) scopes the names of the shared-memory segments, and the host
name, boot id and pid of every process of the mesh are exchanged through the same store, so
that a group spanning nodes is refused with a clear error and a crashed peer is noticed.
Nothing happens at import.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import json
import os
import socket
import threading
import uuid

import jax
import numpy as np
from jax.sharding import Mesh

from . import _ffi, _spmd
from ._geometry import abstract_of, concrete_context_mesh

# JAX's private module behind the distributed runtime's client: optional, since private
# modules move between JAX versions.
try:
    from jax._src import distributed as _jax_distributed
except ImportError:  # pragma: no cover
    _jax_distributed = None

_KEY = "jaxmg/mpmd/v1"
_LOCK = threading.Lock()
_CONFIGURED: dict[str, tuple] = {}  # library key -> (token, process index)
_HOSTS: dict[int, dict] = {}
_TOKEN: str | None = None
_SITE_COUNTS: dict[str, itertools.count] = {}


def _current_mesh(op: str):
    """The concrete mesh of the call being traced (None: a mesh of this process's devices)."""
    mesh = _spmd.tracing_mesh()
    if mesh is not None:
        mesh = _concrete(mesh)
        if mesh is not None:
            return mesh
    else:
        concrete = concrete_context_mesh()
        if concrete is not None:
            return concrete
    if jax.process_count() > 1:
        raise ValueError(
            f"jaxmg.{op}: with several processes (jax.distributed), jaxmg must know the "
            "concrete mesh of a call made inside jit or your own shard_map; run it under "
            "`with jax.set_mesh(mesh):` (or jax.sharding.use_mesh(mesh))"
        )
    return None


def _concrete(mesh):
    """A Mesh for ``mesh`` (itself, or for an AbstractMesh the context's matching one), or
    None where only an AbstractMesh is known."""
    if isinstance(mesh, Mesh):
        return mesh
    concrete = concrete_context_mesh()
    return concrete if concrete is not None and abstract_of(concrete) == mesh else None


def _axes_order(mesh, row_axes, group_axes):
    names = tuple(mesh.axis_names)
    return [names.index(ax) for ax in tuple(group_axes) + tuple(row_axes)]


def _owners(mesh) -> np.ndarray:
    return np.vectorize(lambda d: d.process_index, otypes=[np.int64])(np.asarray(mesh.devices))


@functools.lru_cache(maxsize=256)
def in_this_process(mesh) -> bool:
    """Every device of the mesh belongs to this process (``one_device`` needs every shard in
    one process). Cached: every call's engine choice asks, and a mesh's devices do not move.
    An AbstractMesh (inside jit) is in this process when the job has one process, or when
    the context's concrete mesh for it is."""
    concrete = _concrete(mesh)
    if concrete is None:
        return jax.process_count() == 1
    return bool(np.all(_owners(concrete) == jax.process_index()))


def procs_table(mesh, row_axes, group_axes) -> np.ndarray | None:
    """int32[ngroups * nparts]: the process of each (group, position), or None when every
    device of the mesh belongs to this process."""
    owners = _owners(mesh)
    if np.all(owners == jax.process_index()):
        return None
    order = _axes_order(mesh, row_axes, group_axes)
    nparts = int(np.prod([mesh.shape[ax] for ax in row_axes])) if row_axes else 1
    table = np.transpose(owners, order).reshape(-1, nparts)
    return np.ascontiguousarray(table.reshape(-1).astype(np.int32))


def _client():
    global_state = getattr(_jax_distributed, "global_state", None)
    client = getattr(global_state, "client", None)
    if client is None:
        raise RuntimeError(
            "jaxmg: this mesh holds devices of several processes, but jax.distributed is not "
            "initialized in this process; call jax.distributed.initialize(...) first "
            "(docs/mpmd.md)"
        )
    return client


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _exchange(procs: set, timeout_s: float) -> tuple[str, dict]:
    """The job token and {process: {host, boot, pid}} of ``procs`` (blocking)."""
    global _TOKEN
    client = _client()
    me = jax.process_index()
    ms = max(1000, int(timeout_s * 1000))
    if _TOKEN is None:
        try:  # the first writer wins; the others' set fails because the key exists
            client.key_value_set(f"{_KEY}/token", uuid.uuid4().hex)
        except Exception:
            pass
        _TOKEN = str(client.blocking_key_value_get(f"{_KEY}/token", ms))
    if me not in _HOSTS:
        info = {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid()}
        client.key_value_set(f"{_KEY}/host/{me}", json.dumps(info), allow_overwrite=True)
        _HOSTS[me] = info
    for p in sorted(procs):
        if p not in _HOSTS:
            try:
                _HOSTS[p] = json.loads(client.blocking_key_value_get(f"{_KEY}/host/{p}", ms))
            except Exception as e:
                raise RuntimeError(
                    f"jaxmg: process {p} did not register with jaxmg within {timeout_s:.0f} s "
                    f"({type(e).__name__}: {e}); every process of the mesh must run the same "
                    "jaxmg calls"
                ) from None
    return _TOKEN, _HOSTS


def check_one_node(table: np.ndarray, nparts: int, op: str, timeout_s: float) -> None:
    """Raises unless the processes of each replica group run on this node (and can see
    each other's pids)."""
    me = jax.process_index()
    groups = table.reshape(-1, nparts)
    _, hosts = _exchange(set(int(p) for p in table.reshape(-1)), timeout_s)
    mine = hosts[me]
    for g, row in enumerate(groups):
        procs = sorted(set(int(p) for p in row))
        if len(procs) < 2 or me not in procs:
            continue
        where = {p: (hosts[p]["host"], hosts[p]["boot"]) for p in procs}
        if len(set(where.values())) > 1:
            raise NotImplementedError(
                f"jaxmg.{op}: a mesh whose rows are sharded over devices of several nodes is "
                f"not supported yet: group {g} spans processes {procs} on hosts "
                f"{sorted(set(h for h, _ in where.values()))}. Shard the rows over the devices "
                "of one node and put the nodes on another mesh axis (each node then solves its "
                "own replica), see docs/mpmd.md"
            )
        for p in procs:
            if p == me:
                continue
            pid = int(hosts[p]["pid"])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise RuntimeError(
                    f"jaxmg.{op}: process {p} (pid {pid} on {mine['host']}) is not visible from "
                    f"process {me}: the processes of one node must share a PID namespace and "
                    "/dev/shm (run them in the same container)"
                ) from None
            except PermissionError:
                pass


def configure(platform: str, timeout_s: float) -> None:
    """Configures the native library of ``platform`` for this job (once)."""
    key = "cpu" if platform == "cpu" else "cuda"
    me = jax.process_index()
    with _LOCK:
        token, hosts = _exchange(set(), timeout_s)
        if _CONFIGURED.get(key) == (token, me, len(hosts)):
            return
        lib = _ffi.core() if key == "cpu" else _ffi.cuda()
        n = jax.process_count()
        pids = (ctypes.c_int64 * n)(*[int(hosts.get(p, {}).get("pid", 0)) for p in range(n)])
        lib.jaxmg_mp_configure.argtypes = [
            ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
        lib.jaxmg_mp_configure.restype = ctypes.c_int
        rc = lib.jaxmg_mp_configure(token[:16].encode(), me, n, pids)
        if rc != 0:
            raise RuntimeError(f"jaxmg: configuring one process per device failed (status {rc})")
        _CONFIGURED[key] = (token, me, len(hosts))


def site_id(target: str, geo, table: np.ndarray, operands) -> int:
    """A call-site id that every process computes alike: a digest of what the call is, plus
    how many calls with that digest this process has traced before (the same program traces
    the same calls in the same order in every process, whatever else each one traces)."""
    shapes = tuple((tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", ""))) for x in operands)
    text = repr((target, geo.n, geo.ndev, geo.tile, shapes, table.tobytes()))
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    with _LOCK:
        counter = _SITE_COUNTS.setdefault(digest, itertools.count())
        k = next(counter)
    # 40 bits of digest and 20 of count: positive, distinct from the single-process sites' range.
    return (1 << 62) | (int(digest[:10], 16) << 20) | (k & 0xFFFFF)


def call_attrs(target: str, geo, operands, axes, op: str, timeout_s: float):
    """Extra attributes (mp_procs) and the site id for a call traced now, or ({}, None)."""
    op = op.removeprefix("jaxmg_")
    mesh = _current_mesh(op)
    if mesh is None:
        return {}, None
    row_axes, group_axes = (tuple(a) for a in axes)
    table = procs_table(mesh, row_axes, group_axes)
    if table is None:
        return {}, None
    nparts = int(np.prod([mesh.shape[ax] for ax in row_axes]))
    platform = mesh.devices.flat[0].platform
    if platform == "cpu":
        impl = getattr(jax.config, "jax_cpu_collectives_implementation", None)
        if impl in (None, "", "none"):
            raise RuntimeError(
                f"jaxmg.{op}: CPU devices in several processes need cross-process collectives; "
                "call jax.config.update('jax_cpu_collectives_implementation', 'gloo') before "
                "jax.distributed.initialize"
            )
    check_one_node(table, nparts, op, timeout_s)
    configure(platform, timeout_s)
    return {"mp_procs": table}, site_id(target, geo, table, operands)


def cleanup() -> int:
    """Unlinks the shared-memory segments this process still holds (failed calls); the
    native libraries also do it when the process exits normally."""
    n = 0
    for key in list(_CONFIGURED):
        lib = _ffi.core() if key == "cpu" else _ffi.cuda()
        n += int(lib.jaxmg_mp_cleanup())
    return n
