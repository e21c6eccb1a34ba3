"""Engine ``one_device``: the whole problem solved by one device of the group, in one jaxmg
call (``jaxmg_potrs_whole``, ``jaxmg_syevd_whole``, ``jaxmg_syevd_n_whole``; src/gpu/whole.c,
src/cpu/cpu_whole.c, src/cpu/cpu_syevd.c).

Position 0 copies from its peers only the part of the matrix a lower Cholesky or
eigensolver reads (on 2 GPUs N²/8 elements from the other device, against N²/2 for an
all-gather), solves alone with cuSOLVER (LAPACK on CPU devices) and the others copy their
results from it: x and info for potrs; w, info and their rows of V for syevd. LAPACK's info
is the solver's own, the exact pivot. Memory: N² plus the solver's workspace on position 0,
from XLA's allocator. It reads the other devices' shards directly, so every device of the
mesh must be in this process. No potri: the inverse's output is N² on every device anyway,
and ``gather`` computes each device's rows where they are kept.

The eigensolver runs in cuSOLVER's non-deterministic mode (about 10 % faster on an H200,
results differ by rounding from run to run) unless ``JAXMG_DETERMINISTIC=1`` is set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _call
from .._geometry import Geometry
from ._base import Engine, conj, nan_where

_INFO = jax.ShapeDtypeStruct((1,), jnp.int32)

# potrs computes float32 problems in float64 on GPUs for N in this range (inclusive), when
# float64 is enabled: cuSOLVER's float64 Cholesky is faster than its float32 one there on an
# H200 (FP64 tensor cores; potrf + potrs 8.26 against 8.69 ms at 8192, 19.2 against 20.3 at
# 12288, 38.5 against 41.9 at 16384; float32 is faster at 6144 and below; docs/benchmarks.md,
# "float32 in float64"), converting costs less than the difference, and x is rounded to
# float32 once, so it is more accurate. Not above the measured range: the float64 copy
# doubles the engine's memory, which the auto rule's estimate does not count.
POTRS_UPCAST = {"float32": ("float64", 8192, 16384)}
UPCAST_PLATFORMS = ("gpu",)


def potrs_compute_dtype(platform: str, n: int, dtype):
    """The dtype potrs computes in: ``dtype``, or a wider one where that was measured
    faster (``POTRS_UPCAST``; float64 must be enabled)."""
    dtype = jnp.dtype(dtype)
    wide, min_n, max_n = POTRS_UPCAST.get(dtype.name, (None, 0, 0))
    if wide and platform in UPCAST_PLATFORMS and min_n <= n <= max_n and (
            jax.dtypes.canonicalize_dtype(jnp.dtype(wide)) == jnp.dtype(wide)):
        return jnp.dtype(wide)
    return dtype


def potrs(a_loc, b, *, geo: Geometry, row_axes, group_axes, keep_factor=False,
          platform="gpu"):
    """(x, info[1]), x replicated; with ``keep_factor`` also ``a_loc`` (unchanged: the
    whole-matrix op reads the shards and writes none)."""
    dtype = a_loc.dtype
    wide = potrs_compute_dtype(platform, geo.n, dtype)
    xt, info = _call.call(
        "jaxmg_potrs_whole",
        (jax.ShapeDtypeStruct((b.shape[1], geo.n), wide), _INFO),
        (a_loc.astype(wide), conj(b).T.astype(wide)), geo.whole, row_axes, group_axes,
    )
    x = nan_where(info[0] > 0, conj(xt.T).astype(dtype))
    return (x, info, a_loc) if keep_factor else (x, info)


def syevd(a_loc, *, geo: Geometry, row_axes, group_axes, vectors: bool):
    """(w, rows of V or None, info[1]); on failure w and V are NaN."""
    s, w, info = _call.call(
        "jaxmg_syevd_whole" if vectors else "jaxmg_syevd_n_whole",
        (jax.ShapeDtypeStruct(a_loc.shape, a_loc.dtype),
         jax.ShapeDtypeStruct((geo.n,), jnp.finfo(a_loc.dtype).dtype), _INFO),
        (a_loc,), geo.whole, row_axes, group_axes, aliases={0: 0},
    )
    failed = info[0] != 0
    w = nan_where(failed, w)
    if not vectors:
        return w, None, info
    # s holds rows [r nloc, (r + 1) nloc) of V_M, the column-major eigenvectors of
    # M = conj(A), as an N x nloc row-major block: V's rows are its conjugate transpose.
    v = conj(s.reshape(geo.n, geo.nloc)).T
    return w, nan_where(failed, v), info


ENGINE = Engine(
    name="one_device",
    platforms=("cpu", "gpu"),
    bodies={"potrs": potrs, "syevd": syevd},
    summary="the first device of the group gathers what the solver reads and solves alone",
    one_process=True,
    max_devices={"gpu": 16},  # the peers position 0 pulls from (src/gpu/whole.c)
    options=lambda op, platform: {"platform": platform} if op == "potrs" else {},
)
