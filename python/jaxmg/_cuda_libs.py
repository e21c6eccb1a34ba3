"""Finding and loading the CUDA backend (``libjaxmg_cuda<major>.so``) and the CUDA
libraries it needs, without LD_LIBRARY_PATH. Nothing here runs at import: ``load_backend``
is called when jaxmg's GPU targets are first registered.

A backend is linked by soname alone (``libcudart.so.13``, ``libcusolver.so.12``,
``libcusolverMg.so.12`` for CUDA 13), with no RPATH. Before it is loaded each of those
sonames is loaded by full path (RTLD_GLOBAL), from the first place that has it:

1. the process: a library of that soname already loaded is used as it is (JAX's CUDA
   plugin loads libcudart and libcusolver before jaxmg's GPU targets are registered), and
   the folders of the CUDA libraries already loaded are searched first for the others
   (libcusolverMg then comes from next to the libcusolver JAX uses);
2. NVIDIA's pip wheels (``site-packages/nvidia/cu13/lib`` for CUDA 13,
   ``nvidia/<component>/lib`` for CUDA 12), installed by ``jax[cuda13]``/``jax[cuda12]``
   and ``jaxmg[cuda13]``/``jaxmg[cuda12]``: JAX's own first choice (its plugin loads them
   before the system's), so both use the same libraries;
3. the system's search (LD_LIBRARY_PATH, the ldconfig cache);
4. a CUDA toolkit: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, /usr/local/cuda-<major>*
   (``lib64``, ``lib``, ``targets/<arch>-linux/lib``).

``JAXMG_CUDA_LIBS`` restricts this to one source: ``auto`` (the default, the order above),
``wheels``, ``toolkit``, ``system`` (the dynamic loader alone, no preloading) or a list of
folders (``os.pathsep``-separated). With a restricted source, a needed library already
loaded from elsewhere is an error (one process holds one copy of each soname).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import platform
import re
import struct
import sys

ENV = "JAXMG_CUDA_LIBS"

# Provided by glibc and the compiler runtime: never searched for.
_SYSTEM = re.compile(r"^(ld-linux.*|lib(c|m|dl|rt|pthread|util|gcc_s|stdc\+\+)\.so(\.\d+)*)$")
# The CUDA libraries whose folders say where this process's CUDA came from.
_CUDA_FAMILY = re.compile(
    r"^lib(cudart|cusolver|cusolverMg|cublas|cublasLt|cusparse|nvJitLink|cufft|cupti|nvrtc)"
    r"\.so\.\d+")
# "libcublas.so.13: cannot open shared object file" -> the soname the loader missed.
_MISSING = re.compile(r"(lib[^\s:/]+\.so(?:\.[0-9]+)*): cannot open shared object file")
_BACKEND = re.compile(r"^libjaxmg_cuda(\d*)\.so$")

# soname -> (path, source) of what load_backend loaded or found loaded, for reports.
LOADED: dict[str, tuple[str, str]] = {}


# ---------------------------------------------------------------- ELF: DT_NEEDED

def elf_needed(path: str) -> list[str]:
    """The DT_NEEDED sonames of an ELF shared library (empty if it is not one)."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2):
            return []
        end = "<" if ident[5] == 1 else ">"
        wide = ident[4] == 2
        if wide:
            shoff, = struct.unpack_from(end + "Q", ident, 0x28)
            shentsize, shnum = struct.unpack_from(end + "HH", ident, 0x3A)
            shfmt, dynfmt = end + "IIQQQQIIQQ", end + "qQ"
        else:
            shoff, = struct.unpack_from(end + "I", ident, 0x20)
            shentsize, shnum = struct.unpack_from(end + "HH", ident, 0x2E)
            shfmt, dynfmt = end + "IIIIIIIIII", end + "iI"

        def section(i):
            f.seek(shoff + i * shentsize)
            _, typ, _, _, off, size, link, _, _, _ = struct.unpack(shfmt, f.read(struct.calcsize(shfmt)))
            return typ, off, size, link

        for i in range(shnum):
            typ, off, size, link = section(i)
            if typ != 6:  # SHT_DYNAMIC
                continue
            _, stroff, strsize, _ = section(link)
            f.seek(stroff)
            strtab = f.read(strsize)
            f.seek(off)
            dyn = f.read(size)
            step = struct.calcsize(dynfmt)
            out = []
            for j in range(0, len(dyn) - step + 1, step):
                tag, val = struct.unpack_from(dynfmt, dyn, j)
                if tag == 0:  # DT_NULL
                    break
                if tag == 1:  # DT_NEEDED
                    out.append(strtab[val:strtab.index(b"\0", val)].decode())
            return out
    return []


# ---------------------------------------------------------------- where libraries are

def mapped_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (from /proc/self/maps)."""
    out: list[str] = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    path = parts[5].strip()
                    if path not in out:
                        out.append(path)
    except OSError:
        pass
    return out


def loaded_cuda_libraries() -> list[str]:
    """The CUDA libraries (cudart, cuSOLVER, cuBLAS, ...) mapped into this process."""
    return [p for p in mapped_libraries() if _CUDA_FAMILY.match(os.path.basename(p))]


def _is_file_of(path: str, soname: str) -> bool:
    base = os.path.basename(path)
    return base == soname or base.startswith(soname + ".")


def _loaded_path(soname: str) -> str | None:
    """Where the library of ``soname`` is loaded from, or None if it is not loaded."""
    try:
        ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    hits = [p for p in mapped_libraries() if _is_file_of(p, soname)]
    return hits[0] if hits else "(loaded)"


def _nvidia_roots() -> list[str]:
    """The ``nvidia`` folders of NVIDIA's pip wheels on this Python's path."""
    roots: list[str] = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        roots += list(spec.submodule_search_locations or [])
    for entry in sys.path:
        cand = os.path.join(entry or os.getcwd(), "nvidia")
        if os.path.isdir(cand):
            roots.append(cand)
    out: list[str] = []
    for r in roots:
        r = os.path.abspath(r)
        if r not in out:
            out.append(r)
    return out


def wheel_dirs(major: int | None = None) -> list[str]:
    """The lib/ folders of NVIDIA's pip wheels: nvidia/cu<N>/lib (CUDA 13 on, every
    component in one folder) and nvidia/<component>/lib (CUDA 12: cuda_runtime, cusolver,
    cublas, ...); for ``major``, its cu<major> folder first, then the per-component ones."""
    dirs: list[str] = []
    for root in _nvidia_roots():
        for d in sorted(glob.glob(os.path.join(root, "*", "lib"))):
            if d not in dirs:
                dirs.append(d)
    if major is not None:
        def rank(d):
            m = re.match(r"^cu(\d+)$", os.path.basename(os.path.dirname(d)))
            return 0 if m and int(m.group(1)) == major else (2 if m else 1)
        dirs.sort(key=rank)
    return dirs


def toolkit_dirs(major: int | None = None) -> list[str]:
    """The library folders of the CUDA toolkits found ($CUDA_HOME, $CUDA_PATH,
    /usr/local/cuda, /usr/local/cuda-<major>*, /opt/cuda)."""
    roots = [os.environ.get(v) for v in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "CUDAToolkit_ROOT")]
    roots.append("/usr/local/cuda")
    if major is not None:
        roots += sorted(glob.glob(f"/usr/local/cuda-{major}*"), reverse=True)
    roots.append("/opt/cuda")
    arch = f"targets/{platform.machine()}-linux/lib"
    out: list[str] = []
    for r in filter(None, roots):
        for sub in ("lib64", "lib", arch):
            d = os.path.realpath(os.path.join(r, sub))
            if os.path.isdir(d) and d not in out:
                out.append(d)
    return out


def source() -> str:
    """The source JAXMG_CUDA_LIBS asks for: auto, wheels, toolkit, system, or folders."""
    value = os.environ.get(ENV, "").strip()
    return value.lower() if value.lower() in ("", "auto", "wheels", "toolkit", "system") else value


def search_plan(major: int | None) -> list[tuple[str, list[str] | None]]:
    """The places to look in, in order, as (source name, folders); folders None stands for
    the system's own search."""
    want = source() or "auto"
    if want == "auto":
        process = []
        for p in loaded_cuda_libraries():
            d = os.path.dirname(p)
            if d not in process:
                process.append(d)
        return [("process", process), ("wheels", wheel_dirs(major)), ("system", None),
                ("toolkit", toolkit_dirs(major))]
    if want == "wheels":
        return [("wheels", wheel_dirs(major))]
    if want == "toolkit":
        return [("toolkit", toolkit_dirs(major))]
    if want == "system":
        return [("system", None)]
    return [("folders", [d for d in want.split(os.pathsep) if d])]


# ---------------------------------------------------------------- loading

class LoadError(OSError):
    pass


def _under(path: str, dirs: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(os.path.dirname(real) == os.path.realpath(d) for d in dirs)


def _dlopen(path: str, dirs: list[str], depth: int = 0,
            mode: int = ctypes.RTLD_GLOBAL) -> ctypes.CDLL:
    """dlopen ``path`` (RTLD_GLOBAL unless ``mode`` says otherwise). Its own CUDA dependencies not yet loaded are loaded
    first from its folder or ``dirs`` (the folders of the same source), so that neither
    LD_LIBRARY_PATH (which beats a DT_RUNPATH of $ORIGIN) nor the ldconfig cache slips
    another copy in; one the loader still cannot find (a toolkit library has no RPATH to
    its siblings) is looked up there too and the load retried."""
    here = ([os.path.dirname(path)] if os.sep in path else []) + dirs
    if os.sep in path and depth < 8:
        for dep in elf_needed(path):
            if _SYSTEM.match(dep) or _loaded_path(dep) is not None:
                continue
            hit = next((os.path.join(d, dep) for d in here if os.path.exists(os.path.join(d, dep))), None)
            if hit is not None:
                _dlopen(hit, dirs, depth + 1)
                LOADED.setdefault(dep, (hit, "dependency"))
    tried: set[str] = set()
    while True:
        try:
            return ctypes.CDLL(path, mode=mode)
        except OSError as e:
            m = _MISSING.search(str(e))
            missing = m.group(1) if m else None
            if depth > 8 or missing is None or missing in tried or os.path.basename(path) == missing:
                raise
            tried.add(missing)
            hit = next((os.path.join(d, missing) for d in here
                        if os.path.exists(os.path.join(d, missing))), None)
            if hit is None:
                raise
            _dlopen(hit, dirs, depth + 1)
            LOADED.setdefault(missing, (hit, "dependency"))


def preload(soname: str, plan: list[tuple[str, list[str] | None]]) -> tuple[str, str]:
    """Loads ``soname`` from the first place of ``plan`` that has it; returns (path, source).
    A library of that soname already in the process is kept (source "loaded"); "process"
    is the folder of another CUDA library already loaded."""
    restricted = source() not in ("", "auto")
    loaded = _loaded_path(soname)
    if loaded is not None:
        if restricted and plan[0][1] is not None and not _under(loaded, plan[0][1]):
            raise LoadError(
                f"{ENV}={os.environ.get(ENV)} asks for {soname} from {plan[0][0]} "
                f"({', '.join(plan[0][1]) or 'none found'}), but this process already has it "
                f"from {loaded} (JAX loaded it; one process holds one copy). Unset {ENV}, or "
                "make JAX use the same CUDA libraries.")
        return loaded, "loaded"
    errors = []
    for name, dirs in plan:
        if dirs is None:
            try:
                _dlopen(soname, [])
            except OSError as e:
                errors.append(f"system: {e}")
                continue
            return (_loaded_path(soname) or soname), name
        for d in dirs:
            path = os.path.join(d, soname)
            if os.path.exists(path):
                try:
                    _dlopen(path, dirs)
                except OSError as e:
                    errors.append(f"{name}: {e}")
                    continue
                return path, name
        errors.append(f"{name}: not in {', '.join(dirs) if dirs else '(no folders found)'}")
    raise LoadError(f"cannot load {soname}: " + "; ".join(errors))


def backend_major(path: str) -> int | None:
    """The CUDA major version a backend was built for: its libcudart.so.<major>."""
    for name in elf_needed(path):
        m = re.match(r"^libcudart\.so\.(\d+)$", name)
        if m:
            return int(m.group(1))
    m = _BACKEND.match(os.path.basename(path))
    return int(m.group(1)) if m and m.group(1) else None


def backends(folder: str) -> list[tuple[int | None, str]]:
    """The CUDA backends of an installation: (major, path), newest CUDA first."""
    out = []
    for path in glob.glob(os.path.join(folder, "libjaxmg_cuda*.so")):
        if _BACKEND.match(os.path.basename(path)):
            out.append((backend_major(path), path))
    return sorted(out, key=lambda mp: -(mp[0] or 0))


def jax_cuda_major() -> int | None:
    """The CUDA major version JAX uses in this process: that of the libcudart it loaded,
    else of its CUDA plugin (imported, else installed)."""
    for p in loaded_cuda_libraries():
        m = re.match(r"^libcudart\.so\.(\d+)", os.path.basename(p))
        if m:
            return int(m.group(1))
    for name in sorted(sys.modules):
        m = re.match(r"^jax_plugins\.xla_cuda(\d+)$", name) or re.match(r"^jax_cuda(\d+)_plugin$", name)
        if m:
            return int(m.group(1))
    for major in (13, 12):
        try:
            if importlib.util.find_spec(f"jax_cuda{major}_plugin") is not None:
                return major
        except (ImportError, ValueError):
            pass
    return None


def load_backend_file(path: str, major: int | None) -> ctypes.CDLL:
    """Loads one backend: its CUDA sonames first (``search_plan``), then the library."""
    plan = search_plan(major)
    if plan != [("system", None)]:
        for soname in elf_needed(path):
            if not _SYSTEM.match(soname):
                LOADED[soname] = preload(soname, plan)
    # The backend itself local, as libjaxmg.so is: both export the same jaxmg_* names.
    return _dlopen(path, [d for _, dirs in plan for d in (dirs or [])], mode=ctypes.DEFAULT_MODE)


def load_backend(folder: str) -> ctypes.CDLL:
    """Loads the CUDA backend of the installation in ``folder`` that matches the CUDA JAX
    uses (the newest whose libraries load where JAX's CUDA is not known)."""
    found = backends(folder)
    if not found:
        raise LoadError(
            f"this installation has no CUDA backend (libjaxmg_cuda<major>.so in {folder}); it "
            "was built without CUDA. Install a jaxmg wheel with it (pip install "
            "'jaxmg[cuda13]' or 'jaxmg[cuda12]'), or build with the CUDA toolkit or NVIDIA's "
            "wheels present, or run on CPU devices.")
    major = jax_cuda_major()
    if major is not None:
        mine = [(m, p) for m, p in found if m == major]
        if not mine:
            raise LoadError(
                f"JAX uses CUDA {major} but this jaxmg has CUDA backends for "
                f"{sorted(m for m, _ in found if m)} only ({folder}).")
        found = mine
    errors = []
    for m, path in found:
        try:
            return load_backend_file(path, m)
        except OSError as e:
            errors.append(f"{os.path.basename(path)}: {e}")
    raise LoadError(
        "cannot load the CUDA backend: " + " | ".join(errors) + ". It needs the CUDA runtime, "
        "cuSOLVER and cuSOLVERMg (with cuBLAS) of the CUDA major version it was built for, "
        "from NVIDIA's pip wheels (pip install 'jaxmg[cuda13]' / 'jaxmg[cuda12]') or a CUDA "
        f"toolkit ({ENV} picks one: auto, wheels, toolkit, system, or folders).")


def report() -> str:
    """What was loaded, for logs: one line per CUDA library mapped into the process, with
    the source load_backend took it from where it took it."""
    by_path = {os.path.realpath(p): (s, src) for s, (p, src) in LOADED.items() if p.startswith("/")}
    lines = []
    for p in loaded_cuda_libraries() + [q for q in mapped_libraries() if "libjaxmg" in q]:
        s, src = by_path.get(os.path.realpath(p), ("", ""))
        lines.append(f"{p}" + (f"  [{s} from {src}]" if src else ""))
    return "\n".join(lines)
