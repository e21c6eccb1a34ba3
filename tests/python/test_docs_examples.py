"""Every ```python block of README.md and docs/**/*.md, run.

The convention the pages follow:

- A ```python block is a complete program: it runs as pasted into a fresh interpreter (it
  makes its own data, imports what it uses, enables x64 itself if it needs float64). Each
  runs here in a fresh namespace, with ``jax_enable_x64`` switched back off before it, so a
  block that leans on an earlier one fails.
- A block whose first line is ``# docs-test: continued`` continues the block above it on the
  same page: it runs in that block's namespace, after it.
- ``# docs-test: skip (<reason>)`` as the first line: not run; the reason is required. Used
  only where this machine cannot run the block: docs/mpmd.md's GPU launch (one process per
  GPU, needs GPUs).
- ``# docs-test: processes=<k>``: a program for ``k`` processes of one ``jax.distributed``
  job; it is run as ``k`` processes here, each with its process id as ``sys.argv[1]`` (the
  coordinator's ``localhost:12345`` is replaced by a free port).
- ``# docs-test: needs <module>``: skipped when ``<module>`` is not installed (NetKet, an
  optional dependency); run in a process of its own (NetKet sets a global mesh on import).

One subprocess per page, its blocks in order, with 4 virtual CPU devices (``XLA_FLAGS``),
``JAX_PLATFORMS=cpu`` and ``PYTHONPATH`` naming the jaxmg package under test. Tracebacks name
the page and its line numbers. Other fences (```bash, ```text) are not run.
"""

import _util  # noqa: F401  (devices and x64 before JAX starts)

import glob
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

import jaxmg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(jaxmg.__file__)))
MARKER = re.compile(r"#\s*docs-test:\s*(.*)$")
KNOWN = re.compile(r"^(continued|skip \(.+\)|processes=\d+|needs [A-Za-z_][\w.]*)$")
TIMEOUT_S = 240


def pages():
    found = [os.path.join(ROOT, "README.md")]
    found += sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    return [os.path.relpath(p, ROOT) for p in found]


def blocks(page):
    """The ```python blocks of ``page``: ``(first code line number, marker or None, code)``."""
    out, code, start = [], None, 0
    with open(os.path.join(ROOT, page), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if code is None:
            if stripped == "```python":
                code, start = [], i + 1
        elif stripped.startswith("```"):
            text = textwrap.dedent("\n".join(code))
            first = text.lstrip().splitlines()[0] if text.strip() else ""
            m = MARKER.match(first.strip())
            out.append((start, m.group(1).strip() if m else None, text))
            code = None
        else:
            code.append(line)
    assert code is None, f"{page}: a ```python block is not closed"
    return out


def chains(page):
    """The blocks of ``page`` grouped into programs: a block and the ``continued`` ones after
    it. Each: ``{"marker": ..., "parts": [(line, code), ...]}``."""
    out = []
    for line, marker, code in blocks(page):
        assert marker is None or KNOWN.match(marker), f"{page}:{line}: unknown marker {marker!r}"
        if marker == "continued":
            assert out, f"{page}:{line}: 'continued' without a block above"
            out[-1]["parts"].append((line, code))
        else:
            out.append({"marker": marker, "parts": [(line, code)]})
    return out


# Runs a page's programs in order; each in a namespace of its own.
_DRIVER = r"""
import json, sys
page, programs = sys.argv[1], json.loads(sys.stdin.read())
for prog in programs:
    if "jax" in sys.modules:
        sys.modules["jax"].config.update("jax_enable_x64", False)
    ns = {"__name__": "__main__"}
    for line, code in prog:
        print(f"--- {page}:{line}", flush=True)
        exec(compile("\n" * (line - 1) + code, page, "exec"), ns)
print("--- done", flush=True)
"""


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON_DIR, env.get("PYTHONPATH")) if p)
    return env


def _run_programs(page, programs):
    proc = subprocess.run([sys.executable, "-c", _DRIVER, page], input=json.dumps(programs),
                          env=_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert proc.returncode == 0 and "--- done" in proc.stdout, (
        f"{page} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_processes(page, parts, k, tmp_path):
    code = "\n\n".join(c for _, c in parts).replace("localhost:12345", f"localhost:{_free_port()}")
    script = tmp_path / f"block_{parts[0][0]}.py"
    script.write_text(code)
    env = _env()
    env["XLA_FLAGS"] = ""                  # each process chooses its own device count
    env.setdefault("JAXMG_TIMEOUT", "60")
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(k)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=TIMEOUT_S))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"{page}:{parts[0][0]} process {i}:\n{out[-2000:]}\n{err[-4000:]}"


PAGES = [p for p in pages() if blocks(p)]


def test_every_page_with_python_is_collected():
    # The pages this file is expected to run; a page that loses its examples fails here.
    for page in ("README.md", "docs/ops/potrs.md", "docs/ops/potri.md", "docs/ops/syevd.md",
                 "docs/ops/linalg.md", "docs/netket.md", "docs/mpmd.md"):
        assert page in PAGES, page


def test_skips_are_few_and_give_a_reason():
    skipped = [(p, c["parts"][0][0], c["marker"]) for p in PAGES for c in chains(p)
               if (c["marker"] or "").startswith("skip")]
    assert len(skipped) <= 2, skipped


@pytest.mark.parametrize("page", PAGES)
def test_page(page, tmp_path):
    local, own = [], []
    for chain in chains(page):
        marker = chain["marker"] or ""
        if marker.startswith("skip"):
            continue
        if marker.startswith("needs "):
            if importlib.util.find_spec(marker.split()[1]) is None:
                continue
            own.append(chain["parts"])
        elif marker.startswith("processes="):
            _run_processes(page, chain["parts"], int(marker.split("=")[1]), tmp_path)
        else:
            local.append(chain["parts"])
    if local:
        _run_programs(page, local)
    for parts in own:
        _run_programs(page, [parts])
