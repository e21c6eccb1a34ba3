"""Engine ``lapack``: the distributed tiled LAPACK backend on CPU devices (src/cpu): the same
block-cyclic layout and FFI ops as ``cusolvermg``, each device updating the tiles it owns
with LAPACK/BLAS tile kernels between barriers (owner computes), its eigensolver LAPACK's
divide and conquer on the first device. Memory per device O(N² / ndev). What CPU devices
run: it is what they are for, and what the CPU tests exercise.
"""

from __future__ import annotations

from . import _blockcyclic as bc
from ._base import SYEVD_MAX_TILE, Engine, largest_tile

CPU_TILE_CAP = 256  # LAPACK tile kernels reach their speed well below it


def tile(op: str, nloc: int, T_A) -> int:
    """The user's ``T_A`` (at most the shard; for syevd at most 1024, as on GPUs), else the
    largest divisor of the shard up to 256."""
    if T_A is None:
        return largest_tile(nloc, CPU_TILE_CAP)
    t = min(int(T_A), nloc)
    return min(t, SYEVD_MAX_TILE) if op == "syevd" else t


ENGINE = Engine(
    name="lapack",
    platforms=("cpu",),
    bodies={
        "potrs": bc.potrs,
        "potri": bc.potri,
        "syevd": bc.syevd,
        "potrf": bc.potrf,
        "solve": bc.solve,
        "inverse": bc.inverse,
        "logdet": bc.logdet,
    },
    summary="distributed tiled LAPACK over the CPU devices of the mesh",
    tile=tile,
)
