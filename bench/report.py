"""Tables and plots from the JSON lines of bench/bench_ops.py.

    python bench/report.py bench/results/<run>/*.jsonl --plots docs/img --md /tmp/tables.md
    python bench/report.py bench/results/<run>/scaling_*.jsonl --scaling docs/img

For every (op, dtype): one row per (N, ndev, tile) with the time of each implementation,
jaxmg's ratio to raw cuSOLVERMg (same N, devices and tile) and to native JAX (same N, one
GPU), TFLOP/s, the fraction of peak, and XLA's peak memory on a device. The engine column is
the one the record names (``engine_used``: ``cusolvermg``, ``one_device``, ``gather``, ...).
"""

from __future__ import annotations

import argparse
import collections
import json
import os


def load(paths):
    recs = []
    for p in paths:
        with open(p) as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("{"):
                    recs.append(json.loads(line))
    return recs


def fmt(v, spec="{:.4g}"):
    return "" if v is None else spec.format(v)


def tables(recs):
    by = collections.defaultdict(list)
    for r in recs:
        by[(r["op"], r["dtype"])].append(r)
    out = []
    for (op, dtype), rs in sorted(by.items()):
        meta = rs[0]
        native = {r["n"]: r for r in rs if r["impl"] == "native_jax"}
        raw = {(r["n"], r["ndev"], r["tile"]): r for r in rs if r["impl"] == "raw_cusolvermg"}
        out.append(f"\n### {op} {dtype} ({meta['device']}, jax {meta['jax']}, {meta['date'][:10]})\n")
        out.append("| N | GPUs | T_A | engine | jaxmg s | raw Mg s | native s | jaxmg/raw "
                   "| jaxmg/native | TFLOP/s | of peak | peak GB |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        rows = sorted((r for r in rs if r["impl"].startswith("jaxmg")),
                      key=lambda r: (r["n"], r["ndev"], r["tile"]))
        for r in rows:
            rw = raw.get((r["n"], r["ndev"], r["tile"]), {})
            nt = native.get(r["n"], {})
            js, rws, nts = r.get("seconds"), rw.get("seconds"), nt.get("seconds")
            eng = r.get("engine_used") or r["impl"].replace("jaxmg", "").strip("[]") or "auto"
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r["n"], r["ndev"], r["tile"] or "auto", eng,
                fmt(js) if js else r.get("error", "")[:40],
                fmt(rws) if rws else rw.get("error", "")[:40],
                fmt(nts) if nts else nt.get("error", "")[:40],
                fmt(js / rws, "{:.3f}") if js and rws else "",
                fmt(js / nts, "{:.3f}") if js and nts else "",
                fmt(r.get("tflops"), "{:.2f}"),
                fmt(r.get("peak_fraction"), "{:.0%}"),
                fmt(r.get("peak_bytes", 0) / 1e9 if r.get("peak_bytes") else None, "{:.1f}"),
            ))
    return "\n".join(out) + "\n"


def _finish(plt, fig, ax, xlabel, ylabel, title, legend_size, path):
    """Log-log axes, labels, legend and grid; saves the figure to ``path`` and returns it."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot(outdir):
    """matplotlib's pyplot without a display, and the output folder made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    return plt


def _timed_groups(recs):
    """The records that have a time, grouped by (op, dtype), in order."""
    by = collections.defaultdict(list)
    for r in recs:
        if r.get("seconds"):
            by[(r["op"], r["dtype"])].append(r)
    return sorted(by.items())


def plots(recs, outdir):
    plt = _pyplot(outdir)
    files = []
    for (op, dtype), rs in _timed_groups(recs):
        fig, ax = plt.subplots(figsize=(6, 4))
        series = collections.defaultdict(dict)
        for r in rs:
            label = r["impl"] if r["impl"] == "native_jax" else f"{r['impl']} {r['ndev']} GPU"
            t = series[label].get(r["n"])
            series[label][r["n"]] = min(t, r["seconds"]) if t else r["seconds"]  # best tile
        for label, pts in sorted(series.items()):
            ns = sorted(pts)
            ax.plot(ns, [pts[n] for n in ns], marker="o", label=label)
        files.append(_finish(plt, fig, ax, "N", "seconds (best tile)",
                             f"{op} {dtype} on {rs[0]['device']}", 7,
                             os.path.join(outdir, f"bench_{op}_{dtype}.png")))
    return files


def scaling_plots(recs, outdir):
    """Time against the number of GPUs, one line per (implementation, N); native JAX on one
    GPU as a dashed horizontal line per N."""
    plt = _pyplot(outdir)
    files = []
    for (op, dtype), rs in _timed_groups(recs):
        if len({r["ndev"] for r in rs}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        series = collections.defaultdict(dict)
        for r in rs:
            if r["impl"] == "native_jax":
                continue
            eng = r.get("engine_used") or ""
            label = f"{r['impl'].replace('jaxmg[mg]', 'jaxmg')} {eng} N={r['n']}".replace("  ", " ")
            series[label][r["ndev"]] = r["seconds"]
        for label, pts in sorted(series.items()):
            ks = sorted(pts)
            ax.plot(ks, [pts[k] for k in ks], marker="o", label=label)
        for r in rs:
            if r["impl"] == "native_jax":
                ax.axhline(r["seconds"], ls="--", lw=1, color="gray")
                ax.annotate(f"native 1 GPU N={r['n']}", (1, r["seconds"]), fontsize=6,
                            va="bottom")
        files.append(_finish(plt, fig, ax, "GPUs", "seconds",
                             f"{op} {dtype}: scaling on {rs[0]['device']}", 6,
                             os.path.join(outdir, f"scaling_{op}_{dtype}.png")))
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--plots", default=None)
    ap.add_argument("--md", default=None)
    ap.add_argument("--scaling", default=None, help="folder for time-against-GPUs plots")
    args = ap.parse_args()
    recs = load(args.files)
    text = tables(recs)
    if args.md:
        with open(args.md, "w") as fh:
            fh.write(text)
    else:
        print(text)
    if args.plots:
        for f in plots(recs, args.plots):
            print("wrote", f)
    if args.scaling:
        for f in scaling_plots(recs, args.scaling):
            print("wrote", f)


if __name__ == "__main__":
    main()
