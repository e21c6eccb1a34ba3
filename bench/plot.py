"""The benchmark plots of the documentation, from the raw result files under bench/results/.

    python bench/plot.py [--out docs/img] [--page docs/plots.md]

Writes one PNG per figure into ``--out`` and the page that shows them (``--page``), with a
sentence per figure naming what was measured: the script (as the result folder's README.md
names it), the device, the jax version and the date, the last three read from the records.
Needs matplotlib (the ``plot`` extra). The figures and the files they read are listed in
``FIGURES``; docs/benchmarks.md discusses the same measurements by their source ids (S1, ...).

Engine names: the 2026-11-22 records name engines as their code did then: ``mg`` is today's
``cusolvermg``; ``single`` is today's ``gather`` in the per-op suite and the scaling runs,
and today's ``one_device`` in the potrs crossover runs (bench/results/2026-11-22-h200x2/
README.md). The plots use today's names.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
DPI = 110

H200X2 = "2026-11-22-h200x2"
H200X4 = "2026-11-22-h200x4"


def load(*paths):
    recs = []
    for p in paths:
        with open(os.path.join(RESULTS, p)) as fh:
            for line in fh:
                if line.strip().startswith("{"):
                    r = json.loads(line)
                    # Records without a date (netket_iterations) take their folder's.
                    r.setdefault("date", os.path.dirname(p)[:10])
                    recs.append(r)
    return recs


def engine(r, single):
    """Today's name of the engine a record ran (``single``: what 'single' meant then)."""
    eng = r.get("engine_used") or r.get("engine") or ""
    return {"mg": "cusolvermg", "single": single}.get(eng, eng)


def label(r, single):
    if r["impl"] == "native_jax":
        return "native JAX, 1 GPU"
    if r["impl"] == "raw_cusolvermg":
        return f"raw cuSOLVERMg, {r['ndev']} GPU"
    how = "auto" if r["impl"] == "jaxmg" else "forced"
    return f"jaxmg {how} ({engine(r, single)}), {r['ndev']} GPU"


def about(recs):
    """(device, jax version, dates) of the records, for the page's sentence."""
    devices = sorted({r["device"] for r in recs})
    jaxes = sorted({r["jax"] for r in recs})
    dates = sorted({r["date"][:10] for r in recs})
    ndev = max(r.get("ndev", r.get("devices", 1)) for r in recs)
    return devices, jaxes, dates, ndev


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path, legend=7):
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    fig.clf()


def time_vs_n(recs, single, title, path):
    """Seconds against N, log-log, one line per implementation and GPU count; the best tile
    per point."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = collections.defaultdict(dict)
    for r in recs:
        if not r.get("seconds"):
            continue  # a failed run (out of memory, ...) has an error instead
        pts = series[label(r, single)]
        pts[r["n"]] = min(pts.get(r["n"], float("inf")), r["seconds"])
    for name, pts in sorted(series.items()):
        ns = sorted(pts)
        ax.plot(ns, [pts[n] for n in ns], marker="o", label=name,
                ls="--" if name.startswith("native") else "-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("seconds (best tile)")
    ax.set_title(title, fontsize=10)
    _save(fig, ax, path)
    plt.close(fig)


def time_vs_gpus(recs, single, title, path):
    """Seconds against the number of GPUs, one line per (implementation, N); native JAX on
    one GPU as a dashed line per N."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = collections.defaultdict(dict)
    for r in recs:
        if r.get("seconds") and r["impl"] != "native_jax":
            name = label(r, single).rsplit(",", 1)[0] + f", N={r['n']}"
            series[name][r["ndev"]] = r["seconds"]
    colors = {}
    for name, pts in sorted(series.items()):
        ks = sorted(pts)
        line, = ax.plot(ks, [pts[k] for k in ks], marker="o", label=name)
        colors[name] = line.get_color()
    for r in recs:
        if r["impl"] == "native_jax" and r.get("seconds"):
            ax.axhline(r["seconds"], ls="--", lw=1, color="gray")
            ax.annotate(f"native JAX, 1 GPU, N={r['n']}", (1, r["seconds"]), fontsize=7,
                        va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["ndev"] for r in recs}))
    ax.set_xticklabels([str(k) for k in sorted({r["ndev"] for r in recs})])
    ax.set_xlabel("GPUs")
    ax.set_ylabel("seconds")
    ax.set_title(title, fontsize=10)
    _save(fig, ax, path, legend=6)
    plt.close(fig)


def auto_vs_native(recs, title, path):
    """jaxmg (engine auto) over native JAX, median of paired runs with the quartiles, against
    N, one line per (op, dtype)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = collections.defaultdict(list)
    for r in recs:
        series[f"{r['op']} {r['dtype']} ({r['engine']})"].append(r)
    for name, rs in sorted(series.items()):
        rs.sort(key=lambda r: r["n"])
        med = [r["ratio_median"] for r in rs]
        ax.errorbar([r["n"] for r in rs], med, marker="o", capsize=3, label=name,
                    yerr=[[m - r["ratio_q1"] for m, r in zip(med, rs)],
                          [r["ratio_q3"] - m for m, r in zip(med, rs)]])
    ax.axhline(1.0, color="gray", lw=1, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N")
    ax.set_ylabel("jaxmg time / native JAX time")
    ax.set_title(title, fontsize=10)
    _save(fig, ax, path)
    plt.close(fig)


def netket_bars(recs, title, path):
    """Median time per NetKet VMC_SR iteration for each solver, with the quartiles."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = [r["solver"] for r in recs]
    med = [1e3 * r["iteration_median_s"] for r in recs]
    err = [[m - 1e3 * r["iteration_q1_s"] for m, r in zip(med, recs)],
           [1e3 * r["iteration_q3_s"] - m for m, r in zip(med, recs)]]
    ax.barh(range(len(recs)), med, xerr=err, capsize=4, color="tab:blue")
    ax.set_yticks(range(len(recs)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    for i, (m, hi) in enumerate(zip(med, err[1])):  # right of the upper quartile's whisker
        ax.annotate(f"{m:.0f} ms", (m + hi, i), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_xlim(0, 1.15 * max(m + hi for m, hi in zip(med, err[1])))
    ax.set_xlabel("ms per iteration (median, quartiles)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _suite(op, dtype, short):
    return dict(png=f"bench_{op}_{dtype}.png", files=[f"{H200X2}/{op}_{short}.jsonl"],
                kind="n", single="gather", script="bash bench/run_bench_gpu.sh",
                heading=f"{op} {dtype}: time against N on {{gpus}} GPUs",
                what=f"`{op}` {dtype}, the per-op suite on {{gpus}} GPUs: jaxmg with engine auto "
                     "(and cuSOLVERMg forced), raw cuSOLVERMg, native JAX on one GPU; seconds "
                     "against N, best tile per point",
                source="S1")


def _scaling(op, dtype):
    return dict(png=f"scaling_{op}_{dtype}.png", kind="gpus", single="gather",
                files=[f"{H200X4}/scaling_4gpu.jsonl"], select=lambda r: r["op"] == op,
                script='bash bench/run_multi_gpu.sh "$OUT" scaling',
                heading=f"{op} {dtype}: scaling over 1, 2, 4 GPUs",
                what=f"`{op}` {dtype} on 1, 2 and 4 GPUs, N = 8192 and 16384: jaxmg with engine "
                     "auto (gather) and cusolvermg, raw cuSOLVERMg; native JAX on one GPU dashed",
                source="S17")


FIGURES = [
    _suite("potrs", "float64", "f64"),
    _suite("potrs", "float32", "f32"),
    _suite("potri", "float64", "f64"),
    _suite("potri", "complex128", "c128"),
    _suite("syevd", "float64", "f64"),
    _suite("syevd", "complex128", "c128"),
    dict(png="potrs_crossover_2gpu.png", kind="n", single="one_device",
         files=[f"{H200X2}/crossover_f64_f32.jsonl", f"{H200X2}/crossover_f64_20480-28672.jsonl"],
         select=lambda r: r["dtype"] == "float64",
         script="bench/bench_ops.py --op potrs --ndev 2 --engine single|mg",
         heading="potrs float64: the engine crossover on 2 GPUs",
         what="`potrs` float64 on 2 GPUs, engine one_device against cusolvermg (T_A 2048, one "
              "right-hand side), native JAX on one GPU: where cuSOLVERMg's distributed "
              "factorization overtakes one GPU (the crossover engine auto uses)",
         source="S11"),
    _scaling("potri", "complex128"),
    _scaling("syevd", "float64"),
    dict(png="auto_vs_native_1gpu.png", kind="ratio",
         files=["2026-12-07-h100x1/auto_vs_native.jsonl"],
         select=lambda r: r["label"] == "new",
         script='bash bench/run_compare_gpu.sh "$OUT" .old abd06e0 --budget 2',
         heading="engine auto against native JAX on one GPU",
         what="jaxmg with engine auto against native JAX on one GPU, potrs, potri and syevd in "
              "float32 and float64: the median ratio of paired runs with its quartiles",
         source=None),
    dict(png="netket_iterations_cpu.png", kind="netket",
         files=["2026-12-07-cpu2/netket_iterations.jsonl"],
         script="XLA_FLAGS=--xla_force_host_platform_device_count=4 "
                "python3 bench/netket_iterations.py --iters 10",
         heading="NetKet: time per VMC_SR iteration on CPU devices",
         what="Time per NetKet VMC_SR (MinSR) iteration, 12-site Ising chain, 1024 samples, "
              "on a 2-core machine: NetKet's dense solver, its "
              "cholesky_distributed on jaxmg, and a bare jaxmg.linalg.solve",
         source=None),
]


def title_of(fig, recs):
    devices, jaxes, dates, ndev = about(recs)
    op = fig["png"][:-4]
    return f"{op} ({', '.join(devices)}, jax {', '.join(jaxes)}, {', '.join(dates)})"


def make(fig, outdir):
    recs = load(*fig["files"])
    recs = [r for r in recs if fig.get("select", lambda r: True)(r)]
    assert recs, fig["png"]
    path = os.path.join(outdir, fig["png"])
    title = title_of(fig, recs)
    kind = fig["kind"]
    if kind == "n":
        time_vs_n(recs, fig["single"], title, path)
    elif kind == "gpus":
        time_vs_gpus(recs, fig["single"], title, path)
    elif kind == "ratio":
        auto_vs_native(recs, title, path)
    else:
        netket_bars(recs, title, path)
    return recs


def fill(text, recs):
    """``text`` with ``{gpus}`` the GPU counts the records ran on ("1 and 2", "2")."""
    ks = [str(k) for k in sorted({r.get("ndev", 1) for r in recs if r.get("impl") != "native_jax"})]
    return text.format(gpus=" and ".join([", ".join(ks[:-1]), ks[-1]]) if len(ks) > 1 else ks[0])


def sentence(fig, recs):
    devices, jaxes, dates, ndev = about(recs)
    if devices == ["cpu"]:
        where = f"{ndev} virtual CPU devices"
    else:
        where = f"{ndev} × {' / '.join(devices)}"
    files = ", ".join(f"`bench/results/{f}`" for f in fig["files"])
    src = f" (docs/benchmarks.md, {fig['source']})" if fig.get("source") else ""
    text = (f"{fill(fig['what'], recs)}. Measured by `{fig['script']}` on {where}, jax "
            f"{', '.join(jaxes)}, {', '.join(dates)}; raw records: {files}{src}.")
    return "\n".join(textwrap.wrap(text, 95, break_long_words=False, break_on_hyphens=False))


PAGE_HEAD = """# Benchmark plots

The measurements of [Benchmarks](benchmarks.md) as plots. This page and its images are made
by `python bench/plot.py` from the raw result files under `bench/results/` (each folder's
README.md names the machine, the script and the commit that ran). The engine names are
today's (`cusolvermg`, `gather`, `one_device`; the records of 2026-11-22 spell some of them
differently, see `bench/plot.py`).
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    p.add_argument("--page", default=os.path.join(ROOT, "docs", "plots.md"))
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rel = os.path.relpath(args.out, os.path.dirname(os.path.abspath(args.page)))
    parts = [PAGE_HEAD]
    for fig in FIGURES:
        recs = make(fig, args.out)
        name = fig["png"][:-4]
        parts.append(f"## {fill(fig['heading'], recs)}\n\n{sentence(fig, recs)}\n\n"
                     f"![{name}]({rel}/{fig['png']})\n")
        print("wrote", os.path.join(args.out, fig["png"]))
    with open(args.page, "w") as fh:
        fh.write("\n".join(parts))
    print("wrote", args.page)


if __name__ == "__main__":
    main()
