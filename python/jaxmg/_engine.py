"""Which engine runs a call, and the "single" engine.

cuSOLVERMg scales poorly: on 2 GPUs its potri and syevd are slower than cuSOLVER on one GPU,
and its potrs only wins for large N (docs/benchmarks.md). So every op takes
``engine="auto" | "mg" | "single"``:

- ``"mg"``: the distributed backend (cuSOLVERMg on GPUs, the tiled LAPACK backend on CPU
  devices), memory per device O(N^2 / ndev);
- ``"single"``: every device of the group gathers the matrix (one all-gather over NVLink) and
  runs XLA's own single-device solver (cuSOLVER on GPUs) on it, computing only the part of
  the output it keeps (its rows of the inverse or of V). The devices compute redundantly
  instead of one computing and broadcasting: the same wall time, no broadcast. Memory per
  device O(N^2). potrs and syevd differ: one jaxmg call in which the first device copies from
  the others only what a lower Cholesky or eigensolver reads and solves alone, the others
  copying their results from it (``_potrs.potrs_whole``, ``_syevd.syevd_whole``; N^2 on that
  device only);
- ``"split"`` (potrs on exactly 2 devices only): a two-device Cholesky with no gather
  (``_split.py``): device 0 factors its diagonal block and streams the off-diagonal block of
  the factor to device 1 chunk by chunk, which forms and factors the Schur complement. Never
  chosen by ``"auto"`` (not yet measured on GPUs);
- ``"auto"``: the distributed backend on CPU devices (it is what they are for, and what CI
  exercises); on GPUs the single engine when the matrix fits comfortably in one device and
  the measured crossover says it is faster, else cuSOLVERMg.

LAPACK ``info`` is kept identical: when the single engine's Cholesky fails, the exact index of
the failing pivot is recomputed by the distributed factorization (only on failure; all
devices agree on failing through a collective, so they take the same branch). The single
eigensolver reports info = 1 when it produced non-finite eigenvalues (XLA's eigh reports no
count); its one-call body reports the solver's info.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

ENGINES = ("auto", "mg", "single", "split")

# Measured crossover (docs/benchmarks.md, "potrs engine crossover"; 2 H200, fifth session,
# the one-call single engine against cuSOLVERMg): from this N on, potrs on 2+ GPUs is faster
# through cuSOLVERMg than through the single engine. Per dtype: the complex types have 4x the
# arithmetic per element, so cuSOLVERMg pays off at smaller N. Measured on 2 GPUs; with more,
# cuSOLVERMg gains and the single engine does not, so these are upper bounds there.
POTRS_MG_MIN_N = {"float64": 20480, "float32": 16384, "complex128": 8192, "complex64": 12288}
# The single engine's potrs computes float32 problems in float64 on GPUs for N in this range
# (inclusive), when float64 is enabled: cuSOLVER's float64 Cholesky is faster than its float32 one there on an
# H200 (FP64 tensor cores; bench/results/2026-11-22-h200x2-sixth/probe_potrf_sizes.jsonl,
# potrf + potrs: 8.26 against 8.69 ms at 8192, 19.2 against 20.3 at 12288, 38.5 against 41.9
# at 16384; float32 is faster at 6144 and below), converting costs less than the difference,
# and x is rounded to float32 once, so it is more accurate. Not above the measured range: the
# float64 copy doubles the single engine's memory, which SINGLE_COPIES does not count.
POTRS_UPCAST = {"float32": ("float64", 8192, 16384)}
UPCAST_PLATFORMS = ("gpu",)
# The single engine needs about this many matrices' worth of memory per device (the gathered
# matrix, its factor or eigenvectors, workspace).
SINGLE_COPIES = 4


@functools.lru_cache(maxsize=64)
def _device_bytes(device) -> int:
    """The device's memory limit (queried once per device: it does not change)."""
    try:
        stats = device.memory_stats() or {}
        return int(stats.get("bytes_limit", 0)) or 64 << 30
    except Exception:
        return 64 << 30


def choose(engine, op: str, place, n: int, dtype) -> str:
    if engine is None:
        engine = "auto"
    if engine not in ENGINES:
        raise ValueError(f"jaxmg.{op}: engine must be one of {ENGINES}, got {engine!r}")
    if engine == "split":
        if op != "potrs":
            raise ValueError(
                f"jaxmg.{op}: engine='split' is only implemented for potrs; use 'auto', 'mg' "
                "or 'single'"
            )
        if place.ndev != 2:
            raise ValueError(
                f"jaxmg.{op}: engine='split' needs the rows of 'a' sharded over exactly 2 "
                f"devices, got {place.ndev}"
            )
    if engine != "auto":
        return engine
    if place.platform == "cpu":
        return "mg"
    fits = SINGLE_COPIES * n * n * jnp.dtype(dtype).itemsize < 0.8 * _device_bytes(
        place.mesh.devices.flat[0])
    if not fits:
        return "mg"
    if op == "potrs" and place.ndev > 1 and n >= POTRS_MG_MIN_N[jnp.dtype(dtype).name]:
        return "mg"
    return "single"


def potrs_compute_dtype(platform: str, n: int, dtype):
    """The dtype the single engine's potrs computes in: ``dtype``, or a wider one where that
    was measured faster (POTRS_UPCAST; float64 must be enabled)."""
    dtype = jnp.dtype(dtype)
    wide, min_n, max_n = POTRS_UPCAST.get(dtype.name, (None, 0, 0))
    if wide and platform in UPCAST_PLATFORMS and min_n <= n <= max_n and (
            jax.dtypes.canonicalize_dtype(jnp.dtype(wide)) == jnp.dtype(wide)):
        return jnp.dtype(wide)
    return dtype


def _axis(row_axes):
    return row_axes if len(row_axes) > 1 else row_axes[0]


def gather(a_loc, row_axes):
    return jax.lax.all_gather(a_loc, _axis(row_axes), axis=0, tiled=True)


def agree_failed(bad, row_axes):
    """True on every device when the computation failed on any (same branch everywhere)."""
    return jax.lax.pmax(bad.astype(jnp.int32), _axis(row_axes)) > 0


def cholesky(a):
    return jax.lax.linalg.cholesky(a, symmetrize_input=False)


def diag_failed(L):
    return ~jnp.all(jnp.isfinite(jnp.real(jnp.diagonal(L))))


def my_rows(x, nloc, rank):
    return jax.lax.dynamic_slice_in_dim(x, rank * nloc, nloc, axis=0)
