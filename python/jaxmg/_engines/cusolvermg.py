"""Engine ``cusolvermg``: NVIDIA's cuSOLVERMg over the GPUs of the mesh, driven from one
process (src/gpu/mg_*.c), in the 1D block-cyclic layout reached without moving a byte
between GPUs (docs/design.md, "Layout"). Memory per device O(N² / ndev): what runs when the
matrix does not fit one GPU, and potrs from the measured crossover on.

potri is not cuSOLVERMg's potri, which returns wrong inverses on 2 GPUs: one distributed
factorization and one distributed solve per device (``potri_by_solves``). syevd runs
cuSOLVERMg's syevd, whose tile is limited to 1024. The general solve of
``linalg.solve(assume_a="gen")`` runs cuSOLVERMg's getrf + getrs (``getrs``).
"""

from __future__ import annotations

import functools

from . import _blockcyclic as bc
from ._base import SYEVD_MAX_TILE, Engine, tile_rule


def default_cap(op: str, nloc: int) -> int:
    """The default tile's cap: 2048 for shards of 4096 rows and more, 1024 below (cuSOLVERMg's
    potrs measured 0.5-14 % faster at 2048 than 1024 at every shard from 4096 rows on 2 H200;
    docs/benchmarks.md, "Default tile"), 1024 for syevd (its limit)."""
    if op == "syevd":
        return SYEVD_MAX_TILE
    return 2048 if nloc >= 4096 else 1024


ENGINE = Engine(
    name="cusolvermg",
    platforms=("gpu",),
    bodies={**bc.BODIES, "potri": bc.potri_by_solves, "getrs": bc.getrs,
            "getrs_t": functools.partial(bc.getrs, transposed=True)},
    summary="cuSOLVERMg over every GPU of the mesh, O(N^2 / ndev) memory per device",
    max_devices={"gpu": 16},  # cuSOLVERMg's limit
    tile=tile_rule(default_cap),
)
