#!/usr/bin/env python3
"""Run JAX's own tests of cho_factor, cho_solve, solve, inv, eigh and slogdet with
jaxmg.linalg substituted for JAX's functions (see README.md in this directory).

JAX's test files are third-party and are never copied into this repository: they are
fetched at run time into --src-root/<ref>/tests/ (git clone --depth 1 --branch <ref> of
https://github.com/jax-ml/jax, else ``git show <ref>:tests/<file>`` from a local bare
mirror given by --git-dir).

  run      fetch the tests, run pytest once (one JAX, one device count, one mode), write JSON
  summary  merge result JSONs into the markdown tables of README.md

Examples:
  python run_jax_tests.py run --python /work/venv/bin/python --ref jax-v0.10.2 --devices 1
  python run_jax_tests.py summary results/*.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
FILES = ("linalg_test.py", "eigh_test.py", "custom_linear_solve_test.py", "custom_root_test.py")
FAMILIES = ("cho_factor+cho_solve", "cho_solve", "solve", "inv", "eigh", "slogdet")


def fetch(ref: str, src_root: str, git_dir: str | None) -> str:
    dest = os.path.join(src_root, ref.replace("/", "_"))
    tests = os.path.join(dest, "tests")
    if all(os.path.exists(os.path.join(tests, f)) for f in FILES):
        return dest
    os.makedirs(src_root, exist_ok=True)
    r = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", ref,
                        "https://github.com/jax-ml/jax", dest + ".clone"],
                       capture_output=True, text=True, timeout=600)
    os.makedirs(tests, exist_ok=True)
    if r.returncode == 0:
        for f in FILES:
            os.replace(os.path.join(dest + ".clone", "tests", f), os.path.join(tests, f))
        subprocess.run(["rm", "-rf", dest + ".clone"])
        src = "git clone https://github.com/jax-ml/jax @ " + ref
    else:
        if not git_dir:
            sys.exit(f"git clone failed ({r.stderr.strip()}); pass --git-dir of a jax mirror")
        for f in FILES:
            blob = subprocess.run(["git", "--git-dir", git_dir, "show", f"{ref}:tests/{f}"],
                                  capture_output=True, check=True).stdout
            with open(os.path.join(tests, f), "wb") as fh:
                fh.write(blob)
        commit = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", ref + "^{commit}"],
                                capture_output=True, text=True).stdout.strip()
        src = f"git show {ref}:tests/<file> from {git_dir} (commit {commit})"
    with open(os.path.join(dest, "SOURCE"), "w") as fh:
        fh.write(src + "\n")
    return dest


def run(args) -> int:
    dest = fetch(args.ref, args.src_root, args.git_dir)
    tag = f"{args.label or args.ref}_{args.devices}dev_{args.mode}" + ("_x64" if args.x64 else "") \
        + ("" if not args.baseline else "_baseline")
    os.makedirs(args.out, exist_ok=True)
    result = os.path.abspath(os.path.join(args.out, tag + ".json"))
    log = os.path.abspath(os.path.join(args.out, tag + ".log"))
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "python"), HERE]
                                      + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}",
        "JAX_NUM_CPU_DEVICES": str(args.devices),
        "JAX_ENABLE_X64": "1" if args.x64 else "0",
        "JAXMG_SUBST": "0" if args.baseline else "1",
        "JAXMG_SUBST_MODE": args.mode,
        "JAXMG_RESULTS": result,
    })
    if args.num_cases:
        env["JAX_NUM_GENERATED_CASES"] = str(args.num_cases)
    cmd = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "jaxmg_subst_plugin",
           "-o", "addopts=", "--rootdir", dest, "-rfEs", "--tb=short"]
    cmd += [os.path.join(dest, "tests", f) for f in FILES] + list(args.pytest_args)
    print("+", " ".join(cmd), flush=True)
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(["timeout", str(args.timeout)] + cmd, env=env, cwd=dest,
                                stdout=fh, stderr=subprocess.STDOUT).returncode
        except KeyboardInterrupt:
            rc = 130
    with open(log) as fh:
        tail = fh.read().splitlines()[-3:]
    print("\n".join(tail))
    print(f"rc={rc}; log {log}; results {result}")
    if os.path.exists(result):
        with open(result) as fh:
            data = json.load(fh)
        data["source"] = open(os.path.join(dest, "SOURCE")).read().strip()
        data["label"] = args.label or args.ref
        data["rc"] = rc
        with open(result, "w") as fh:
            json.dump(data, fh, indent=1)
        print(table([data]))
    return rc


# ---- classification ------------------------------------------------------------------------

def classify(t: dict, mode: str = "default") -> str:
    """A first, automatic guess at why a test failed (README.md gives the reviewed one)."""
    calls = t.get("calls", [])
    err = t.get("error") or ""
    where = " ".join(t.get("where") or [])
    if (mode == "rows" and "_CompileAndCheck" in where and any(c.get("sharded") for c in calls)
            and any(c["input"] == "traced" for c in calls)):
        return ("H1 rows mode: _CompileAndCheck compares the eager call (row-sharded, 4 devices) "
                "with the jitted one (a tracer, not sharded: 1 device); the two differ by rounding")
    if any(c["kwargs"].get("assume_a") == "gen" for c in calls) or "assume_a='gen'" in err:
        return "D1 solve: assume_a='gen' refused (general matrices)"
    if "float16" in err or "bfloat16" in err or "half precision" in err:
        return "D5 float16/bfloat16 refused (TypeError, message differs from JAX's)"
    if "0 rows" in err and any(c["input"] == "empty" for c in calls):
        return "B1 N = 0 (empty matrix) refused with ValueError (JAX returns empty results)"
    if "Tuples differ" in err and any(c["fn"] == "jnp.linalg.solve" for c in calls):
        return ("B2 jnp.linalg.solve: b with one dimension less than a read as a stack of "
                "vectors (JAX/NumPy 2: a stack of matrices): result shape differs")
    bad = [c for c in calls if c["input"] in ("not-hermitian", "hermitian-indefinite")]
    if bad:
        fns = sorted({c["fn"].split(".")[-1] for c in bad})
        kinds = sorted({c["input"] for c in bad})
        d = "D1" if fns == ["solve"] else "D2"
        return f"{d} HPD only: {'/'.join(fns)} given {'/'.join(kinds)} matrices"
    return "UNCLASSIFIED"


def table(runs: list[dict]) -> str:
    rows = ["| JAX (tests) | devices | mode | function | passed | failed | skipped | deselected (same function, other API) |",
            "|---|---|---|---|---|---|---|---|"]
    for d in runs:
        per = collections.defaultdict(collections.Counter)
        for t in d["tests"].values():
            per[t["family"]][t["outcome"] or "not-run"] += 1
        exc = collections.Counter()
        for key, n in d["deselected"]["excluded"].items():
            exc[key.split(":")[0]] += n
        name = f"{d['jax']} ({d.get('label', '?')})" + (" x64" if d.get("x64") else "") \
            + ("" if d.get("substituted", True) else " BASELINE (JAX's own functions)")
        for fam in FAMILIES:
            c = per.get(fam, collections.Counter())
            dsel = exc.get(fam, 0)
            rows.append(f"| {name} | {d['devices']} | {d['mode']} | {fam} | {c['passed']} | "
                        f"{c['failed']} | {c['skipped']} | {dsel or ''} |")
        if d["mode"] == "rows":
            sh = collections.Counter(t["family"] for t in d["tests"].values()
                                     if any(c.get("sharded") for c in t["calls"]))
            rows.append(f"| {name} | {d['devices']} | rows | (tests with a row-sharded call) | "
                        + ", ".join(f"{k}: {v}" for k, v in sorted(sh.items())) + " | | | |")
        tot = sum((per[f] for f in per), collections.Counter())
        rows.append(f"| {name} | {d['devices']} | {d['mode']} | **all** | **{tot['passed']}** | "
                    f"**{tot['failed']}** | **{tot['skipped']}** | "
                    f"{sum(exc.values())} (+{d['deselected']['other']} other tests) |")
    return "\n".join(rows)


def per_test(runs: list[dict]) -> str:
    cols = [f"{d['jax']} {d['devices']}dev {d['mode']}" for d in runs]
    keys = []
    for d in runs:
        for t in d["tests"].values():
            k = (t["family"], t["file"], t["class"], t["method"])
            if k not in keys:
                keys.append(k)
    rows = ["| function | test | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for k in sorted(keys, key=lambda k: (FAMILIES.index(k[0]) if k[0] in FAMILIES else 99, k)):
        cells = []
        for d in runs:
            c = collections.Counter(t["outcome"] for t in d["tests"].values()
                                    if (t["family"], t["file"], t["class"], t["method"]) == k)
            cells.append(f"{c['passed']}/{c['failed']}/{c['skipped']}" if c else "–")
        rows.append(f"| {k[0]} | {k[1].replace('_test.py', '')}::{k[2]}.{k[3]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def failures(runs: list[dict]) -> str:
    out = []
    for d in runs:
        groups = collections.defaultdict(list)
        for nid, t in d["tests"].items():
            if t["outcome"] == "failed":
                groups[classify(t, d["mode"])].append(nid.split("::", 1)[1])
        out.append(f"\n### {d['jax']} ({d.get('label')}), {d['devices']} device(s), mode {d['mode']}"
                   + ("" if d.get("substituted", True) else ", BASELINE"))
        for g, ids in sorted(groups.items()):
            out.append(f"- {g}: {len(ids)}: " + ", ".join(sorted(ids)))
    return "\n".join(out)


def summary(args) -> int:
    runs = []
    for p in args.results:
        with open(p) as fh:
            runs.append(json.load(fh))
    print(table(runs))
    print()
    print("passed/failed/skipped per test method:\n")
    print(per_test(runs))
    print("\nfailures, first classification:")
    print(failures(runs))
    if args.details:
        for d in runs:
            for nid, t in sorted(d["tests"].items()):
                if t["outcome"] == "failed" and (args.details == "all" or classify(t, d["mode"]) == "UNCLASSIFIED"):
                    print(f"\n## {d['jax']} {d['devices']}dev {d['mode']} {nid}\n  {classify(t, d['mode'])}\n"
                          f"  error: {t['error']}\n  where: {t.get('where')}")
                    for c in t["calls"][:8]:
                        print("  call:", json.dumps(c))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--python", default=sys.executable, help="interpreter with jax, pytest, absl-py, hypothesis")
    r.add_argument("--ref", required=True, help="JAX git tag or commit of the tests, e.g. jax-v0.10.2")
    r.add_argument("--label", help="name of the results (default: --ref)")
    r.add_argument("--devices", type=int, default=1)
    r.add_argument("--mode", choices=("default", "rows"), default="default",
                   help="rows: shard concrete inputs by rows over all devices first")
    r.add_argument("--x64", action="store_true", help="JAX_ENABLE_X64=1 (default 0)")
    r.add_argument("--baseline", action="store_true", help="same selection, JAX's own functions")
    r.add_argument("--num-cases", type=int, help="JAX_NUM_GENERATED_CASES (JAX's default: 10)")
    r.add_argument("--src-root", default="/tmp/jax_tests_src")
    r.add_argument("--git-dir", help="bare git mirror of jax-ml/jax, used if git clone fails")
    r.add_argument("--out", default="/tmp/jaxmg_jax_tests")
    r.add_argument("--timeout", type=int, default=1800)
    r.add_argument("pytest_args", nargs="*")
    s = sub.add_parser("summary")
    s.add_argument("results", nargs="+")
    s.add_argument("--details", choices=("unclassified", "all"))
    a = p.parse_args()
    sys.exit(run(a) if a.cmd == "run" else summary(a))


if __name__ == "__main__":
    main()
