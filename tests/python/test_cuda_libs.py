"""How the CUDA backend finds its CUDA libraries (jaxmg._cuda_libs), without a GPU: stand-in
libraries with CUDA-like sonames (libcudart.so.77, libcusolver.so.76, ...) built with the C
compiler in fake NVIDIA wheel, toolkit, system and "already loaded by JAX" folders, and a
stand-in backend libjaxmg_cuda77.so linked to them by soname. Each load runs in a fresh
process (one process holds one copy of each soname)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import jaxmg
from jaxmg import _cuda_libs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(jaxmg.__file__)))
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    for k in ("JAXMG_CUDA_LIBS", "CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "CUDAToolkit_ROOT",
              "LD_LIBRARY_PATH"):
        env.pop(k, None)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def _run(code, **extra):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(**extra),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_import_loads_no_cuda_library():
    out = _run("""
        import json, sys
        import jaxmg
        from jaxmg import _cuda_libs
        print("RESULT" + json.dumps({
            "cuda": _cuda_libs.loaded_cuda_libraries(),
            "jaxmg_libs": [p for p in _cuda_libs.mapped_libraries() if "libjaxmg" in p],
            "nvidia_imported": any(m == "nvidia" or m.startswith("nvidia.") for m in sys.modules),
            "loaded": _cuda_libs.LOADED,
        }))
    """)
    assert out == {"cuda": [], "jaxmg_libs": [], "nvidia_imported": False, "loaded": {}}


def test_wheel_dirs_from_a_fake_site(tmp_path, monkeypatch):
    for sub in ("cu13/lib", "cusolver/lib", "cuda_runtime/lib", "cu13/include"):
        (tmp_path / "site" / "nvidia" / sub).mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    nv = str(tmp_path / "site" / "nvidia")
    dirs = _cuda_libs.wheel_dirs(13)
    mine = [d for d in dirs if d.startswith(nv)]
    assert mine == [os.path.join(nv, "cu13", "lib"), os.path.join(nv, "cuda_runtime", "lib"),
                    os.path.join(nv, "cusolver", "lib")]
    assert dirs[0] == os.path.join(nv, "cu13", "lib")  # the major's folder first
    assert _cuda_libs.wheel_dirs(12)[0] != os.path.join(nv, "cu13", "lib")


def test_source_and_plan(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXMG_CUDA_LIBS", raising=False)
    assert [n for n, _ in _cuda_libs.search_plan(13)] == ["process", "wheels", "system", "toolkit"]
    for value, names in (("wheels", ["wheels"]), ("TOOLKIT", ["toolkit"]), ("system", ["system"]),
                         (f"{tmp_path}{os.pathsep}/x", ["folders"])):
        monkeypatch.setenv("JAXMG_CUDA_LIBS", value)
        plan = _cuda_libs.search_plan(13)
        assert [n for n, _ in plan] == names
    assert plan[0][1] == [str(tmp_path), "/x"]
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    (tmp_path / "lib64").mkdir()
    monkeypatch.setenv("JAXMG_CUDA_LIBS", "toolkit")
    assert _cuda_libs.search_plan(13)[0][1][0] == str(tmp_path / "lib64")


def test_elf_needed_of_the_cpu_library():
    lib = os.path.join(os.path.dirname(jaxmg.__file__), "libjaxmg.so")
    if not os.path.exists(lib):
        pytest.skip("libjaxmg.so not built")
    needed = _cuda_libs.elf_needed(lib)
    assert "libc.so.6" in needed
    assert not [n for n in needed if "cuda" in n or "cusolver" in n]
    assert _cuda_libs.elf_needed(__file__) == []


# ---------------------------------------------------------------- stand-in libraries

def _cc(args):
    subprocess.run([CC, *args], check=True, capture_output=True, text=True)


def _fake_lib(folder, soname, deps=(), rpath_origin=False):
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / (soname + ".c")
    fn = soname.split(".")[0].replace("lib", "tag_", 1)
    src.write_text(f'const char *{fn}(void) {{ return "{folder.name}"; }}\n')
    args = ["-shared", "-fPIC", "-o", str(folder / soname), str(src), f"-Wl,-soname,{soname}"]
    args.append("-Wl,--no-as-needed")
    args += [str(folder / d) for d in deps]
    if rpath_origin:
        args.append("-Wl,-rpath,$ORIGIN")
    _cc(args)


def _fake_cuda(folder, rpath_origin):
    """A CUDA-77 stand-in: cudart, cublas, and cusolver/cusolverMg needing cublas (found
    through $ORIGIN in a wheel, through nothing in a toolkit)."""
    _fake_lib(folder, "libcudart.so.77")
    _fake_lib(folder, "libcublas.so.77")
    _fake_lib(folder, "libcusolver.so.76", ["libcublas.so.77"], rpath_origin)
    _fake_lib(folder, "libcusolverMg.so.76", ["libcublas.so.77"], rpath_origin)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    root = tmp_path_factory.mktemp("cudalibs")
    wheels = root / "site" / "nvidia" / "cu77" / "lib"
    _fake_cuda(wheels, rpath_origin=True)
    toolkit = root / "toolkit" / "lib64"
    _fake_cuda(toolkit, rpath_origin=False)
    _fake_cuda(root / "system", rpath_origin=True)
    _fake_cuda(root / "jax", rpath_origin=True)
    pkg = root / "pkg"
    pkg.mkdir()
    src = pkg / "backend.c"
    src.write_text("int jaxmg_fake_backend(void) { return 77; }\n")
    _cc(["-shared", "-fPIC", "-o", str(pkg / "libjaxmg_cuda77.so"), str(src),
         "-Wl,--no-as-needed", str(wheels / "libcudart.so.77"), str(wheels / "libcusolver.so.76"),
         str(wheels / "libcusolverMg.so.76")])
    return root


_LOAD = """
    import ctypes, json, os, sys
    from jaxmg import _cuda_libs
    root = sys.argv[1] if len(sys.argv) > 1 else None
    pre = os.environ.get("FAKE_PRELOAD")
    if pre:  # what JAX's plugin would have loaded already
        for so in ("libcudart.so.77", "libcusolver.so.76"):
            ctypes.CDLL(os.path.join(pre, so))
    out = {}
    try:
        folder = os.environ["FAKE_PKG"]
        assert _cuda_libs.backends(folder) == [(77, os.path.join(folder, "libjaxmg_cuda77.so"))]
        lib = _cuda_libs.load_backend_file(os.path.join(folder, "libjaxmg_cuda77.so"), 77)
        out["backend"] = lib.jaxmg_fake_backend()
    except OSError as e:
        out["error"] = str(e)
    where = {}
    for p in _cuda_libs.mapped_libraries():
        b = os.path.basename(p)
        if b.endswith((".77", ".76")):
            where[b] = os.path.relpath(os.path.dirname(p), os.environ["FAKE_ROOT"])
    out["where"] = where
    out["sources"] = {k: v[1] for k, v in _cuda_libs.LOADED.items()}
    print("RESULT" + json.dumps(out))
"""


def _load(fake, site=True, **env):
    code = _LOAD if not site else _LOAD.replace(
        "from jaxmg import _cuda_libs", f"sys.path.insert(0, {str(fake / 'site')!r})\n    "
                                        "from jaxmg import _cuda_libs")
    return _run(code, FAKE_PKG=str(fake / "pkg"), FAKE_ROOT=str(fake), **env)


WHEEL = "site/nvidia/cu77/lib"


def test_wheels_before_system_and_toolkit(fake):
    out = _load(fake, CUDA_HOME=str(fake / "toolkit"), LD_LIBRARY_PATH=str(fake / "system"))
    assert out.get("backend") == 77, out
    assert out["where"] == {"libcudart.so.77": WHEEL, "libcusolver.so.76": WHEEL,
                            "libcusolverMg.so.76": WHEEL, "libcublas.so.77": WHEEL}
    # libcublas: loaded from the wheel first, though LD_LIBRARY_PATH has one too and the
    # wheel's libcusolver finds its own only through a DT_RUNPATH of $ORIGIN.
    assert out["sources"] == {"libcudart.so.77": "wheels", "libcusolver.so.76": "wheels",
                              "libcusolverMg.so.76": "wheels", "libcublas.so.77": "dependency"}


def test_system_before_toolkit(fake):
    out = _load(fake, site=False, CUDA_HOME=str(fake / "toolkit"),
                LD_LIBRARY_PATH=str(fake / "system"))
    assert out.get("backend") == 77, out
    assert set(out["where"].values()) == {"system"}


def test_toolkit_last_and_its_siblings(fake):
    # A toolkit's libcusolverMg has no RPATH to the libcublas beside it: found all the same.
    out = _load(fake, site=False, CUDA_HOME=str(fake / "toolkit"))
    assert out.get("backend") == 77, out
    assert set(out["where"].values()) == {"toolkit/lib64"}
    assert set(out["sources"].values()) == {"toolkit", "dependency"}


def test_forced_toolkit(fake):
    out = _load(fake, CUDA_HOME=str(fake / "toolkit"), JAXMG_CUDA_LIBS="toolkit")
    assert out.get("backend") == 77, out
    assert set(out["where"].values()) == {"toolkit/lib64"}


def test_forced_folders(fake):
    out = _load(fake, JAXMG_CUDA_LIBS=str(fake / "system"))
    assert out.get("backend") == 77, out
    assert set(out["where"].values()) == {"system"}


def test_already_loaded_wins_and_its_folder_first(fake):
    # JAX loaded cudart and cusolver from its own folder: jaxmg keeps them and takes
    # libcusolverMg from there too, not from the wheels.
    out = _load(fake, FAKE_PRELOAD=str(fake / "jax"), CUDA_HOME=str(fake / "toolkit"))
    assert out.get("backend") == 77, out
    assert set(out["where"].values()) == {"jax"}, out
    assert out["sources"] == {"libcudart.so.77": "loaded", "libcusolver.so.76": "loaded",
                              "libcusolverMg.so.76": "process"}


def test_forced_wheels_refuses_another_copy(fake):
    out = _load(fake, FAKE_PRELOAD=str(fake / "jax"), JAXMG_CUDA_LIBS="wheels")
    assert "already has it" in out.get("error", ""), out


def test_forced_wheels_without_wheels(fake):
    out = _load(fake, site=False, JAXMG_CUDA_LIBS="wheels", CUDA_HOME=str(fake / "toolkit"))
    assert "cannot load libcudart.so.77" in out.get("error", ""), out
    assert out["where"] == {}


def test_load_backend_picks_jax_major(fake, monkeypatch):
    monkeypatch.setattr(_cuda_libs, "jax_cuda_major", lambda: 13)
    with pytest.raises(_cuda_libs.LoadError, match="JAX uses CUDA 13"):
        _cuda_libs.load_backend(str(fake / "pkg"))
    with pytest.raises(_cuda_libs.LoadError, match="no CUDA backend"):
        _cuda_libs.load_backend(str(fake / "toolkit"))
