#!/usr/bin/env python3
"""Run the Python examples of JAXMg 1.4's README, unchanged, against *our* jaxmg.

The README is third-party text: it is read at run time from the PyPI wheel of JAXMg 1.4.x
(its METADATA holds the README) and never copied into this repository. Each ```python block
runs in fresh subprocesses, in one or more launch modes:

  plain   one process, 4 virtual CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=4),
          no launcher environment: what ``python block.py`` does on a laptop;
  single  the same process, but under a 1-process launcher environment (SLURM-style variables,
          coordinator on localhost) so that the README's bare ``jax.distributed.initialize()``
          works; process_count() == 1, so the README's mesh (process_count, 1) is 1 device;
  mpmd    N processes (default 4), one CPU device each, gloo collectives, the same launcher
          environment with SLURM_NTASKS=N: the README's model (one process per device), on CPUs;
  gpu     one process on the GPU (only when a GPU is visible), with the 1-process launcher env.

See README.md beside this file for how fragments are handled and what the launcher sets.

Usage:
  python run_readme.py [--wheel PATH | --readme PATH] [--version 1.4.1]
                       [--modes plain,single,mpmd,gpu] [--nprocs 4] [--timeout 600]
                       [--pythonpath DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import ast
import builtins
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

CACHE = Path("/tmp/jaxmg14")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


# ---------------------------------------------------------------------------------------------
# Getting the README

def find_or_download_wheel(version: str) -> Path:
    # /tmp/jaxmg14 (this machine's cache), then the repository's git-ignored /.whl/ (how a
    # wheel travels to the device machine: `carry: [".whl"]`; it has no package index).
    for d in (CACHE, REPO / ".whl"):
        found = sorted(glob.glob(str(d / f"jaxmg-{version}-*.whl")))
        if found:
            return Path(found[-1])
    pattern = str(CACHE / f"jaxmg-{version}-*.whl")
    CACHE.mkdir(parents=True, exist_ok=True)
    # JAXMg 1.4 requires Python >= 3.12: ask for a 3.12 wheel so pip does not skip it on 3.11.
    cmd = [sys.executable, "-m", "pip", "download", f"jaxmg=={version}", "--no-deps",
           "--only-binary=:all:", "--python-version", "3.12", "--platform",
           "manylinux_2_28_x86_64", "-d", str(CACHE)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    found = sorted(glob.glob(pattern))
    if not found:
        raise SystemExit(f"no wheel matching {pattern} after pip download")
    return Path(found[-1])


def readme_from_wheel(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = z.read(name).decode("utf-8")
    # METADATA: RFC 822 headers, a blank line, then the long description (the README).
    head, sep, body = meta.partition("\n\n")
    if not sep:
        raise SystemExit(f"{wheel}: METADATA has no description body")
    return body


def readme_from_sdist(sdist: Path) -> str:
    import tarfile
    with tarfile.open(sdist) as t:
        m = next(m for m in t.getmembers() if re.search(r"^[^/]+/README\.md$", m.name))
        return t.extractfile(m).read().decode("utf-8")


# ---------------------------------------------------------------------------------------------
# Code blocks

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\n`]*)$")
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def code_blocks(md: str):
    """All fenced blocks: dicts with lang, code, line (1-based, of the opening fence) and the
    prose between the previous block and this one."""
    lines = md.split("\n")
    out, i, prose_start = [], 0, 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        lang = (m["info"].strip().split() or [""])[0].lower()
        j, body = i + 1, []
        while j < len(lines) and not lines[j].strip().startswith(fence[:3]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append({"lang": lang, "code": "\n".join(body) + "\n", "line": i + 1,
                    "prose": "\n".join(lines[prose_start:i])})
        i = prose_start = j + 1
    return out


def free_names(code: str) -> list[str]:
    """Module-level names a block reads without defining them (nor importing, nor builtins):
    a non-empty answer means the block is a fragment that needs values from its reader."""
    tree = ast.parse(code)
    loaded = []
    # A name counts as free if some load of it comes before any store, in source order.
    first_store, first_load = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):               # a function's parameters
            first_store.setdefault(node.arg, (0, 0))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first_store[node.name] = min(first_store.get(node.name, (node.lineno, 0)),
                                         (node.lineno, 0))
        if isinstance(node, ast.Name):
            key = (node.lineno, node.col_offset)
            d = first_store if isinstance(node.ctx, ast.Store) else first_load
            if node.id not in d or key < d[node.id]:
                d[node.id] = key
    for name, pos in sorted(first_load.items(), key=lambda kv: kv[1]):
        if name in dir(builtins):
            continue
        imported = any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                       any((a.asname or a.name).split(".")[0] == name for a in n.names)
                       for n in ast.walk(tree))
        if imported:
            continue
        if name not in first_store:
            loaded.append(name)
        else:
            # Assignment statements store after evaluating their right-hand side: a load on
            # the same line as the first store (x = f(x)) is still a free read.
            if pos[0] < first_store[name][0] or (pos[0] == first_store[name][0]
                                                   and pos[1] > first_store[name][1]):
                loaded.append(name)
    return loaded


def has_placeholder(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return True
    return any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(tree))


def expected_output(blocks, k):
    """The README's printed output of python block k: a non-python block right after it whose
    prose says 'On <n> ranks, this gives'. Returns (n_ranks, text) or None."""
    if k + 1 >= len(blocks) or blocks[k + 1]["lang"] == "python":
        return None
    m = re.search(r"[Oo]n (\w+) (?:ranks|processes|GPUs)[^\n]*gives", blocks[k + 1]["prose"])
    if not m:
        return None
    n = m[1].lower()
    n = NUMBER_WORDS.get(n, int(n) if n.isdigit() else None)
    return (n, blocks[k + 1]["code"]) if n else None


# ---------------------------------------------------------------------------------------------
# Runner-supplied code around a fragment (ours, not the README's). The prelude must not touch
# JAX's backends: the README calls jax.distributed.initialize() first, which has to come
# before any JAX computation.

PRELUDES = {
    # The README's first example starts from "JAX arrays A and b". Give it an SPD matrix and a
    # right-hand side as NumPy arrays (the same in every process: a fixed seed), N = two of the
    # README's tiles (T_A=256) per process.
    frozenset({"A", "b"}): textwrap.dedent("""\
        # --- prelude supplied by run_readme.py (the README leaves A and b to the reader) ---
        import os as _os, numpy as _np
        _N = 512 * int(_os.environ.get("JAXMG_README_NPROCS", "1"))
        _rng = _np.random.default_rng(0)
        _M = _rng.standard_normal((_N, _N))
        # Elementwise only (no BLAS): bit-identical in every process, which jax.device_put
        # of a host array to a multi-process sharding checks. Spectrum within 3 +- ~1.5.
        # float32, the dtype JAX arrays have by default: with x64 off, jax 0.10.2's
        # multi-process device_put of a float64 host array fails its own equality check
        # (it compares the float64 input with the float32 all-gather), a JAX issue, not jaxmg's.
        A = ((_M + _M.T) / (2 * _np.sqrt(_N)) + 3 * _np.eye(_N)).astype(_np.float32)
        b = _rng.standard_normal((_N, 1)).astype(_np.float32)
        _A_host, _b_host = A.copy(), b.copy()
        # --- end of prelude; the README block follows unchanged ---
        """),
}

EPILOGUES = {
    frozenset({"A", "b"}): textwrap.dedent("""\
        # --- check supplied by run_readme.py ---
        import numpy as _np
        from jax.experimental import multihost_utils as _mu
        _x = _np.asarray(_mu.process_allgather(x, tiled=True))
        _ld = float(_np.asarray(_mu.process_allgather(logdet, tiled=True)).reshape(-1)[0])
        _xr = _np.linalg.solve(_A_host, _b_host)
        _ldr = _np.linalg.slogdet(_A_host)[1]
        _ex = float(_np.abs(_x - _xr).max() / _np.abs(_xr).max())
        print(f"RUNNER_CHECK x.shape={_x.shape} x.dtype={_x.dtype} rel_err_x={_ex:.3e} "
              f"logdet={_ld:.10g} ref={_ldr:.10g}", flush=True)
        _tol = 1e-4 if _x.dtype == _np.float32 else 1e-9
        assert _x.shape == _b_host.shape, ("x shape", _x.shape, _b_host.shape)
        assert _ex < _tol and abs(_ld - _ldr) < _tol * max(1, abs(_ldr)) * 10, "wrong result"
        print("RUNNER_CHECK_OK", flush=True)
        """),
}


def wrap_block(code: str):
    names = free_names(code)
    if not names:
        return code, None
    key = frozenset(names)
    if key not in PRELUDES:
        return None, f"fragment: reads undefined names {names}, no prelude known for them"
    return PRELUDES[key] + code + EPILOGUES.get(key, ""), f"fragment: prelude defines {sorted(key)}"


# ---------------------------------------------------------------------------------------------
# Launching

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def gpu_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return r.returncode == 0 and "GPU" in r.stdout


def launcher_env(nprocs: int, rank: int, port: int) -> dict:
    """What a launcher must set for the README's bare jax.distributed.initialize():
    JAX reads only the coordinator address from JAX_COORDINATOR_ADDRESS; the process count and
    id come from a cluster it detects (SLURM, Open MPI, k8s, TPU). Outside such a cluster we
    pose as a one-node SLURM step. SLURM_LOCALID also becomes local_device_ids=[rank]."""
    return {
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
        "SLURM_JOB_ID": str(port),
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_STEP_NUM_NODES": "1",
        "SLURM_NTASKS": str(nprocs),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
    }


def base_env(pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR"))}
    env.pop("XLA_FLAGS", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"]
                                          if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_procs(script: Path, envs: list[dict], timeout: float, cwd: str):
    procs = []
    for e in envs:
        procs.append(subprocess.Popen([sys.executable, str(script)], env=e, cwd=cwd,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True))
    deadline, outs, timed_out = time.time() + timeout, [None] * len(procs), False
    for i, p in enumerate(procs):
        try:
            outs[i], _ = p.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            timed_out = True
            for q in procs:
                if q.poll() is None:
                    try:
                        os.killpg(q.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            outs[i], _ = p.communicate()
    for i, p in enumerate(procs):
        if outs[i] is None:
            outs[i], _ = p.communicate()
    return [p.returncode for p in procs], outs, timed_out


def mode_envs(mode: str, nprocs: int, pythonpath):
    port = free_port()
    if mode == "plain":
        e = base_env(pythonpath)
        e.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
                 JAXMG_README_NPROCS="1")
        return [e]
    if mode == "single":
        e = base_env(pythonpath)
        e.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
                 JAXMG_README_NPROCS="1", **launcher_env(1, 0, port))
        return [e]
    if mode == "mpmd":
        envs = []
        for r in range(nprocs):
            e = base_env(pythonpath)
            e.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
                     JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                     JAXMG_README_NPROCS=str(nprocs), **launcher_env(nprocs, r, port))
            envs.append(e)
        return envs
    if mode == "gpu":
        e = base_env(pythonpath)
        e.update(JAXMG_README_NPROCS="1", XLA_PYTHON_CLIENT_PREALLOCATE="false",
                 **launcher_env(1, 0, port))
        return [e]
    raise SystemExit(f"unknown mode {mode}")


def numbers(text: str):
    return [float(t) for t in re.findall(r"[-+]?\d+\.\d*(?:[eE][-+]?\d+)?|[-+]?\d+(?![\w.])", text)]


def compare_output(got: str, want: str) -> str:
    g = [l for l in got.splitlines() if not l.startswith("RUNNER_")]
    gw, ww = " ".join(g).split(), want.split()
    # The last printed lines, aligned from the end (jax may print warnings first).
    gn, wn = numbers(" ".join(gw)), numbers(" ".join(ww))
    gb, wb = [t for t in gw if t in ("True", "False")], [t for t in ww if t in ("True", "False")]
    if len(gn) < len(wn):
        return f"differs: {len(gn)} numbers printed, README shows {len(wn)}"
    gn = gn[len(gn) - len(wn):]
    bad = [(a, b) for a, b in zip(gn, wn) if abs(a - b) > 1e-6 * max(1.0, abs(b))]
    if bad or gb[-len(wb):] != wb:
        return f"differs: {bad[:3]} booleans {gb[-len(wb):]} vs {wb}"
    return "matches the README's printed output"


def first_error(out: str) -> str:
    lines = [l for l in out.splitlines() if l.strip()]
    # The last exception line of a traceback (ignore the JAX-internal frames filter note).
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", lines[i]) or \
           lines[i].startswith(("jax.errors.", "jaxlib.")):
            return lines[i][:400]
    return (lines[-1] if lines else "(no output)")[:400]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wheel", type=Path, help="a JAXMg 1.4.x wheel (or sdist) to read the README from")
    src.add_argument("--readme", type=Path, help="a README.md file (outside this repository)")
    ap.add_argument("--version", default="1.4.1", help="JAXMg version to download if no wheel is given")
    ap.add_argument("--modes", default=None,
                    help="comma-separated of plain,single,mpmd,gpu (default: plain,single,mpmd "
                         "and gpu when a GPU is visible)")
    ap.add_argument("--nprocs", type=int, default=4, help="processes in mpmd mode")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per block and mode")
    ap.add_argument("--pythonpath", default=None,
                    help="prepended to PYTHONPATH of the blocks (e.g. a --target install of our jaxmg)")
    ap.add_argument("--blocks", default=None, help="comma-separated 1-based python block numbers")
    ap.add_argument("--keep", type=Path, default=None,
                    help="write the scripts and logs here (outside the repository, e.g. /tmp/...)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()

    if args.readme:
        md, origin = args.readme.read_text(), str(args.readme)
    else:
        wheel = args.wheel or find_or_download_wheel(args.version)
        md = readme_from_sdist(wheel) if str(wheel).endswith((".tar.gz", ".zip")) and \
            not str(wheel).endswith(".whl") else readme_from_wheel(wheel)
        origin = str(wheel)

    blocks = code_blocks(md)
    py = [(k, b) for k, b in enumerate(blocks) if b["lang"] in ("python", "py", "python3")]
    modes = args.modes.split(",") if args.modes else \
        ["plain", "single", "mpmd"] + (["gpu"] if gpu_present() else [])
    if "gpu" in modes and not gpu_present():
        print("note: no GPU visible, skipping mode gpu")
        modes.remove("gpu")
    want = {int(x) for x in args.blocks.split(",")} if args.blocks else None

    # Which jaxmg the blocks import.
    probe = subprocess.run([sys.executable, "-c", "import jaxmg, jax; print(jaxmg.__file__, "
                            "getattr(jaxmg, '__version__', '?'), jax.__version__)"],
                           env={**base_env(args.pythonpath), "JAX_PLATFORMS": "cpu"},
                           capture_output=True, text=True)
    print(f"README: {origin} ({len(blocks)} fenced blocks, {len(py)} python)")
    print(f"jaxmg under test / jax: {probe.stdout.strip() or probe.stderr.strip()[-300:]}")
    print(f"python: {sys.executable}; modes: {modes}; mpmd processes: {args.nprocs}\n")

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="jaxmg14_readme_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if HERE in workdir.resolve().parents or workdir.resolve() == HERE:
        raise SystemExit("--keep must be outside the repository (the README is third-party)")

    results = []
    for n, (k, blk) in enumerate(py, 1):
        if want and n not in want:
            continue
        code, note = wrap_block(blk["code"])
        if has_placeholder(blk["code"]):
            note = (note + "; " if note else "") + "contains '...' placeholder"
        exp = expected_output(blocks, k)
        script = workdir / f"block{n}.py"
        if code is None:
            results.append(dict(block=n, line=blk["line"], mode="-", ok=False, error=note))
            continue
        script.write_text(code)
        for mode in modes:
            envs = mode_envs(mode, args.nprocs, args.pythonpath)
            t0 = time.time()
            rcs, outs, timed_out = run_procs(script, envs, args.timeout, str(workdir))
            dt = time.time() - t0
            (workdir / f"block{n}.{mode}.log").write_text(
                "\n".join(f"===== process {i} rc={rc}\n{o}" for i, (rc, o) in enumerate(zip(rcs, outs))))
            ok = all(rc == 0 for rc in rcs) and not timed_out
            if ok and EPILOGUES.get(frozenset(free_names(blk["code"]))):
                ok = all("RUNNER_CHECK_OK" in o for o in outs)
            err = ""
            if timed_out:
                err = f"timed out after {args.timeout:.0f} s"
            elif not ok:
                i = next(i for i, rc in enumerate(rcs) if rc != 0) if any(rcs) else 0
                err = f"process {i}: " + first_error(outs[i])
            check = next((l for l in outs[0].splitlines() if l.startswith("RUNNER_CHECK ")), "")
            cmp = ""
            if ok and exp and len(envs) == exp[0]:
                cmp = compare_output(outs[0], exp[1])
            results.append(dict(block=n, line=blk["line"], mode=mode, nprocs=len(envs), ok=ok,
                                seconds=round(dt, 1), error=err, note=note or "", check=check,
                                expected=cmp, log=str(workdir / f"block{n}.{mode}.log")))
            r = results[-1]
            print(f"block {n} (README line {blk['line']}) [{mode}, {len(envs)} proc] "
                  f"{'PASS' if ok else 'FAIL'} {dt:.1f}s"
                  + (f"\n    note: {note}" if note else "")
                  + (f"\n    error: {err}" if err else "")
                  + (f"\n    {check}" if check else "")
                  + (f"\n    output: {cmp}" if cmp else "")
                  + f"\n    log: {r['log']}", flush=True)

    print("\nsummary:")
    for r in results:
        print(f"  block {r['block']} {r['mode']:>6}: {'PASS' if r['ok'] else 'FAIL'}"
              + (f"  {r['error']}" if r["error"] else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
