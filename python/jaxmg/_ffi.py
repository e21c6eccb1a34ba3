"""Loading the native libraries and registering their FFI targets, once and lazily.

Nothing happens at import: the first op traced on a platform loads the library of that
platform and registers its targets with XLA. The CPU library links no LAPACK; it receives
the function pointers of SciPy's ``cython_lapack``/``cython_blas`` (the way jaxlib obtains
LAPACK), so it works wherever SciPy does.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import jax

_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}
_REGISTERED: set[str] = set()

# Target name -> exported symbol stem; the symbol is f"jaxmg_ffi_{stem}_{suffix}".
TARGETS = {
    "jaxmg_potrf": "potrf",
    "jaxmg_potrs": "potrs",
    "jaxmg_solve": "solve",
    "jaxmg_potri": "potri",
    "jaxmg_syevd": "syevd",
    "jaxmg_syevd_n": "syevd_n",
}

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find_library(stem: str) -> str | None:
    for cand in (os.path.join(_HERE, f"lib{stem}.so"),):
        if os.path.exists(cand):
            return cand
    hits = sorted(glob.glob(os.path.join(_HERE, f"lib{stem}*.so")))
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
    from scipy.linalg import cython_blas, cython_lapack

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


def _preload_cuda_wheels() -> None:
    """Makes NVIDIA's pip-wheel libraries (jax[cuda12]/jax[cuda13]) loadable by soname."""
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return
    roots = list(getattr(nvidia, "__path__", []))
    wanted = ("libcudart.so", "libcublasLt.so", "libcublas.so", "libcusparse.so",
              "libnvJitLink.so", "libcusolver.so", "libcusolverMg.so")
    for want in wanted:
        for root in roots:
            hits = sorted(glob.glob(os.path.join(root, "*", "lib", want + "*")))
            hits += sorted(glob.glob(os.path.join(root, "cu*", "lib", want + "*")))
            if hits:
                try:
                    ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass
                break


def ensure_registered(platform: str) -> None:
    """Registers jaxmg's FFI targets for ``platform`` ("cpu" or "gpu"/"cuda")."""
    key = "cpu" if platform == "cpu" else "cuda"
    if key in _REGISTERED:
        return
    with _LOCK:
        if key in _REGISTERED:
            return
        if key == "cpu":
            lib = _load("jaxmg")
            _register_lapack(lib)
            suffix, xla_platform = "cpu", "cpu"
        else:
            if _find_library("jaxmg_cuda") is None:
                raise RuntimeError(
                    "jaxmg: this installation has no CUDA backend (libjaxmg_cuda.so); it was "
                    "built without the CUDA toolkit. Rebuild with the toolkit installed, or "
                    "run on CPU devices."
                )
            _preload_cuda_wheels()
            try:
                lib = _load("jaxmg_cuda")
            except OSError as e:
                raise RuntimeError(f"jaxmg: cannot load the CUDA backend: {e}") from None
            suffix, xla_platform = "cuda", "CUDA"
        for target, stem in TARGETS.items():
            fn = getattr(lib, f"jaxmg_ffi_{stem}_{suffix}")
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(fn), platform=xla_platform)
        _REGISTERED.add(key)


def set_fault(point: int, rank: int, count: int = 1, platform: str = "cpu") -> None:
    """Test-only: makes the participant at mesh position ``rank`` fail (see jaxmg.h)."""
    libs = [core()]
    if platform != "cpu":
        libs.append(_load("jaxmg_cuda"))
    for lib in libs:
        lib.jaxmg_set_fault.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.jaxmg_set_fault(point, rank, count)


def live_sessions(platform: str = "cpu") -> int:
    lib = core() if platform == "cpu" else _load("jaxmg_cuda")
    lib.jaxmg_live_sessions.restype = ctypes.c_int64
    return int(lib.jaxmg_live_sessions())
