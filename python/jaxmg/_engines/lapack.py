"""Engine ``lapack``: the distributed tiled LAPACK backend on CPU devices (src/cpu): the same
block-cyclic layout and FFI ops as ``cusolvermg``, each device updating the tiles it owns
with LAPACK/BLAS tile kernels between barriers (owner computes), its eigensolver LAPACK's
divide and conquer on the first device. Memory per device O(N² / ndev). What CPU devices
run: it is what they are for, and what the CPU tests exercise.
"""

from __future__ import annotations

from . import _blockcyclic as bc
from ._base import Engine, tile_rule

CPU_TILE_CAP = 256  # LAPACK tile kernels reach their speed well below it


ENGINE = Engine(
    name="lapack",
    platforms=("cpu",),
    bodies={**bc.BODIES, "potri": bc.potri},
    summary="distributed tiled LAPACK over the CPU devices of the mesh",
    tile=tile_rule(lambda op, nloc: CPU_TILE_CAP),
)
