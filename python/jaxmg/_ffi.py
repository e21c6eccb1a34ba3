"""Loading the native libraries and registering their FFI targets, once and lazily.

Nothing happens at import: the first op traced on a platform loads the library of that
platform and registers its targets with XLA. The CPU library links no LAPACK; it receives
the function pointers of SciPy's ``cython_lapack``/``cython_blas`` (the way jaxlib obtains
LAPACK), so it works wherever SciPy does. The CUDA library of the CUDA version JAX uses
(``libjaxmg_cuda<major>.so``) and the CUDA libraries it links by soname are found and
loaded by ``_cuda_libs`` (no LD_LIBRARY_PATH needed).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import jax
from scipy.linalg import cython_blas, cython_lapack

from . import _cuda_libs

_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}
_REGISTERED: set[str] = set()

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find_library(stem: str) -> str | None:
    for cand in (os.path.join(_HERE, f"lib{stem}.so"),):
        if os.path.exists(cand):
            return cand
    hits = sorted(h for h in glob.glob(os.path.join(_HERE, f"lib{stem}*.so"))
                  if "_cuda" not in os.path.basename(h)[len(stem) + 3:])
    return hits[0] if hits else None


def _load(stem: str) -> ctypes.CDLL:
    lib = _LIBS.get(stem)
    if lib is None:
        path = _find_library(stem)
        if path is None:
            raise RuntimeError(
                f"jaxmg: the native library lib{stem}.so is missing from {_HERE}; "
                "reinstall jaxmg with `pip install .`"
            )
        lib = ctypes.CDLL(path)
        _LIBS[stem] = lib
    return lib


def core() -> ctypes.CDLL:
    """The CPU library (also holds the layout planner and the test switches)."""
    with _LOCK:
        lib = _load("jaxmg")
    return lib


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype = ctypes.c_void_p
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get_ptr(capsule, get_name(capsule))


def _register_lapack(lib: ctypes.CDLL) -> None:
    lib.jaxmg_cpu_lapack_names.restype = ctypes.c_char_p
    lib.jaxmg_cpu_set_lapack.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    names = [n for n in lib.jaxmg_cpu_lapack_names().decode().split(",") if n]
    for name in names:
        table = cython_lapack.__pyx_capi__ if name in cython_lapack.__pyx_capi__ else cython_blas.__pyx_capi__
        if name not in table:
            continue  # reported by the backend if an op needs it
        rc = lib.jaxmg_cpu_set_lapack(name.encode(), _capsule_pointer(table[name]))
        if rc != 0:
            raise RuntimeError(f"jaxmg: could not register LAPACK routine {name}")
    setter = _blas_threads_setter(_capsule_pointer(cython_lapack.__pyx_capi__["dpotrf"]))
    lib.jaxmg_cpu_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.jaxmg_cpu_set_threads(setter, len(os.sched_getaffinity(0)))


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


# Thread-local thread counts of the BLASes SciPy may be built with (each returns the calling
# thread's previous count).
_THREADS_LOCAL = ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local",
                  "MKL_Set_Num_Threads_Local", "mkl_set_num_threads_local")


def _blas_threads_setter(lapack_fn: int) -> int | None:
    """The address of the thread-local thread count setter of the BLAS behind SciPy's LAPACK
    (found from the library that holds ``lapack_fn`` and its dependencies), or None: then the
    CPU backend leaves the BLAS's threading as it is (docs/design.md, "CPU backend")."""
    info = _DlInfo()
    try:
        libc = ctypes.CDLL(None)
        if not libc.dladdr(ctypes.c_void_p(lapack_fn), ctypes.byref(info)) or not info.dli_fname:
            return None
        holder = ctypes.CDLL(info.dli_fname.decode())
    except (OSError, AttributeError):
        return None
    for name in _THREADS_LOCAL:
        fn = getattr(holder, name, None)
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value
    return None


def _load_cuda() -> ctypes.CDLL:
    """The CUDA library (called with _LOCK held or from a caller that tolerates a race):
    the backend matching the CUDA JAX uses, its CUDA libraries found as _cuda_libs says
    (already loaded, NVIDIA's pip wheels, the system's, a toolkit; JAXMG_CUDA_LIBS)."""
    lib = _LIBS.get("jaxmg_cuda")
    if lib is None:
        try:
            lib = _cuda_libs.load_backend(_HERE)
        except OSError as e:
            raise RuntimeError(f"jaxmg: {e}") from None
        _LIBS["jaxmg_cuda"] = lib
    return lib


def cuda() -> ctypes.CDLL:
    """The CUDA library."""
    with _LOCK:
        return _load_cuda()


def targets(lib: ctypes.CDLL) -> list[str]:
    """The FFI targets a native library has kernels for ("jaxmg_potrs", ...): its op table
    (src/common/ops.h) says so, through ``jaxmg_ffi_targets``."""
    lib.jaxmg_ffi_targets.restype = ctypes.c_char_p
    return [t for t in lib.jaxmg_ffi_targets().decode().split(",") if t]


def ensure_registered(platform: str) -> None:
    """Registers jaxmg's FFI targets for ``platform`` ("cpu" or "gpu"/"cuda"): every target
    of the platform's library, handler ``jaxmg_ffi_<op>_<cpu|cuda>``."""
    key = "cpu" if platform == "cpu" else "cuda"
    if key in _REGISTERED:
        return
    with _LOCK:
        if key in _REGISTERED:
            return
        if key == "cpu":
            lib = _load("jaxmg")
            _register_lapack(lib)
            xla_platform = "cpu"
        else:
            lib = _load_cuda()
            xla_platform = "CUDA"
        for target in targets(lib):
            stem = target.removeprefix("jaxmg_")
            handler = jax.ffi.pycapsule(getattr(lib, f"jaxmg_ffi_{stem}_{key}"))
            if key == "cpu" and _register_stages(target, handler, xla_platform):
                continue
            jax.ffi.register_ffi_target(target, handler, platform=xla_platform)
        _REGISTERED.add(key)


def ensure_backends() -> None:
    """Registers the targets of every platform present (for calls inside a user's shard_map,
    whose platform is only known when the program is lowered)."""
    ensure_registered("cpu")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if gpus:
        ensure_registered("gpu")


def _register_stages(target: str, handler, xla_platform: str) -> bool:
    """Registers ``handler`` for XLA's INSTANTIATE and EXECUTE stages (one native function
    serves both): each jaxmg custom call of a compiled program then gets an instance id, the
    same on every CPU device running the program, and the rendezvous keys on it
    (docs/design.md, "Rendezvous"). False where this jaxlib takes no stage bundle; the
    calls then have no instance."""
    try:
        jax.ffi.register_ffi_target(
            target, {"instantiate": handler, "execute": handler}, platform=xla_platform
        )
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


def set_fault(point: int, rank: int, count: int = 1, platform: str = "cpu") -> None:
    """Test-only: makes the participant at mesh position ``rank`` fail (see jaxmg.h)."""
    libs = [core()]
    if platform != "cpu":
        with _LOCK:
            libs.append(_load_cuda())
    for lib in libs:
        lib.jaxmg_set_fault.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.jaxmg_set_fault(point, rank, count)


def live_sessions(platform: str = "cpu") -> int:
    if platform == "cpu":
        lib = core()
    else:
        with _LOCK:
            lib = _load_cuda()
    lib.jaxmg_live_sessions.restype = ctypes.c_int64
    return int(lib.jaxmg_live_sessions())


def instance_count() -> int:
    """Number of call instances the CPU library has given (one per jaxmg custom call of each
    program XLA compiled; 0 where the runtime offers no per-call state)."""
    lib = core()
    lib.jaxmg_ffi_instances.restype = ctypes.c_int64
    return int(lib.jaxmg_ffi_instances())


def cuda_plan_count() -> int:
    """Number of cuSOLVERMg plans the CUDA backend has cached (for tests of plan reuse)."""
    with _LOCK:
        lib = _load_cuda()
    lib.jaxmg_cuda_plan_count.restype = ctypes.c_int64
    return int(lib.jaxmg_cuda_plan_count())
