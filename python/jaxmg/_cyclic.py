"""The original JAXMg API's layout helpers: the 1D block-cyclic row layout that cuSOLVERMg
reads, made visible, and the padding arithmetic around it.

These helpers show and check the layout; the solvers never call them. jaxmg's ops reach the
same layout without moving rows between devices (see docs/design.md); ``cyclic_1d`` here
gathers the matrix on every device, which is simple and good enough for inspection and tests.

The layout (``get_cols_cyclic``): row j of an ``N_rows``-row matrix sharded over
``ndev`` devices belongs to tile t = j // T_A, which goes to device t % ndev, at local
position (t // ndev) * T_A + j % T_A of that device's ``N_batch = shard + padding`` rows.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from . import _spmd


def _positive_int(value, what: str, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"jaxmg.{op}: {what} must be a positive integer, got {value!r}")
    return int(value)


def calculate_padding(shard_size: int, T_A: int) -> int:
    """Rows to add to a shard of ``shard_size`` rows so that tiles of ``T_A`` rows cover it:
    ``(-shard_size) % T_A``."""
    T_A = _positive_int(T_A, "T_A", "calculate_padding")
    return (-int(shard_size)) % T_A


def pad_rows(a, padding: int):
    """``a`` with ``padding`` rows of zeros appended (per shard when used in shard_map)."""
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"jaxmg.pad_rows: padding must be >= 0, got {padding}")
    zero = jnp.zeros((), a.dtype)
    return jax.lax.pad(a, zero, ((0, padding, 0),) + ((0, 0, 0),) * (a.ndim - 1))


def unpad_rows(a, padding: int):
    """``a`` without its last ``padding`` rows (inverse of ``pad_rows``; ``padding=0`` returns
    ``a`` unchanged, where the original helper returned an empty array)."""
    padding = int(padding)
    if padding < 0 or padding > a.shape[0]:
        raise ValueError(
            f"jaxmg.unpad_rows: padding must be in [0, {a.shape[0]}], got {padding}"
        )
    return a[: a.shape[0] - padding]


def _cyclic_dst(n_rows: int, n_batch: int, T_A: int, ndev: int) -> np.ndarray:
    """dst[j]: row of the cyclic layout that original row j goes to."""
    j = np.arange(n_rows, dtype=np.int64)
    t = j // T_A
    return (t % ndev) * n_batch + (t // ndev) * T_A + j % T_A


def get_cols_cyclic(N, N_batch, T_A, num_devices):
    """The column map of the 1D block-cyclic layout: a list of ``(col, src, dst)``, one
    per original column (row of the row-major shards) ``col`` in 0..N-1, where ``src`` is its
    index once every shard of ``N // num_devices`` rows is padded to ``N_batch`` rows and
    ``dst`` its index in the block-cyclic layout with ``N_batch`` rows per device."""
    N = int(N)
    N_batch = int(N_batch)
    T_A = _positive_int(T_A, "T_A", "get_cols_cyclic")
    num_devices = _positive_int(num_devices, "num_devices", "get_cols_cyclic")
    shard = N // num_devices
    if shard < 1:
        raise ValueError(
            f"jaxmg.get_cols_cyclic: N={N} must be at least num_devices={num_devices}"
        )
    col = np.arange(N, dtype=np.int64)
    src = col + (N_batch - shard) * (col // shard)
    dst = _cyclic_dst(N, N_batch, T_A, num_devices)
    return [(int(c), int(s), int(d)) for c, s, d in zip(col, src, dst)]


def _single_spec(in_specs, op: str) -> P:
    if isinstance(in_specs, (list, tuple)) and not isinstance(in_specs, P):
        if len(in_specs) != 1:
            raise ValueError(
                f"jaxmg.{op}: in_specs must be a single PartitionSpec or a 1-element "
                f"list/tuple, got {len(in_specs)} entries"
            )
        in_specs = in_specs[0]
    if not isinstance(in_specs, P):
        raise TypeError(
            f"jaxmg.{op}: in_specs must be a PartitionSpec or a 1-element list/tuple "
            f"containing one, got {in_specs!r}"
        )
    return in_specs


def _row_axes(spec: P, mesh: Mesh, op: str) -> tuple:
    rows = spec[0] if len(spec) >= 1 else None
    cols = spec[1] if len(spec) >= 2 else None
    if rows is None or cols is not None or len(spec) > 2:
        raise ValueError(
            f"jaxmg.{op}: 'a' must be sharded along the rows with PartitionSpec P(axis, None), "
            f"got {spec}"
        )
    axes = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
    for ax in axes:
        if ax not in mesh.axis_names:
            raise ValueError(
                f"jaxmg.{op}: the spec {spec} names mesh axis {ax!r}, but the mesh has axes "
                f"{tuple(mesh.axis_names)}"
            )
    return axes


@functools.lru_cache(maxsize=64)
def _cyclic_program(mesh: Mesh, axes: tuple, rows_src: tuple, n_batch: int):
    index = np.asarray(rows_src, dtype=np.int32)
    axis = axes if len(axes) > 1 else axes[0]
    spec = P(axis, None)

    def body(a_loc):
        # A helper for inspection: gather everything, keep this device's rows.
        full = jax.lax.all_gather(a_loc, axis, axis=0, tiled=True)
        full = jnp.concatenate([full, jnp.zeros((1,) + full.shape[1:], full.dtype)])
        mine = jax.lax.dynamic_slice_in_dim(
            jnp.asarray(index), jax.lax.axis_index(axis) * n_batch, n_batch
        )
        return full[mine]  # index len(full) - 1: a padding row of zeros

    return jax.jit(_spmd.shard_map(body, mesh, in_specs=(spec,), out_specs=spec))


def cyclic_1d(a, T_A, mesh, in_specs, pad=True):
    """``a`` (sharded by rows) rearranged into the 1D block-cyclic row layout with tile ``T_A``.

    Row j goes to row ``dst(j)`` of the result (see ``get_cols_cyclic``); every device's
    shard of the result holds ``N_batch = shard + calculate_padding(shard, T_A)`` rows, the
    unused ones zero, so the result has ``ndev * N_batch`` rows (the padding is kept, as in
    the original JAXMg API). A ``T_A`` of at least the shard size leaves ``a`` as it is. The
    result is sharded like ``a``; ``verify_cyclic`` checks it. This helper gathers the whole
    matrix on every device (it is for inspection and tests); jaxmg's solvers reach the same
    layout without moving any row between devices.

    Args:
      a: matrix (N_rows x N), sharded by rows.
      T_A: tile size (rows per tile).
      mesh: the mesh ``a`` lives on.
      in_specs: ``P(axis, None)`` or a one-element tuple/list holding it.
      pad: with False, a ``T_A`` that does not divide the shard raises instead of padding.
    """
    op = "cyclic_1d"
    T_A = _positive_int(T_A, "T_A", op)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"jaxmg.{op}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    spec = _single_spec(in_specs, op)
    axes = _row_axes(spec, mesh, op)
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"jaxmg.{op}: 'a' must be a 2D array, got shape {shape}")
    ndev = math.prod(mesh.shape[ax] for ax in axes)
    n_rows = shape[0]
    if n_rows % ndev:
        raise ValueError(
            f"jaxmg.{op}: the {n_rows} rows of 'a' do not split evenly over {ndev} devices"
        )
    shard = n_rows // ndev
    padding = calculate_padding(shard, T_A)
    if T_A >= shard:
        # One tile per device at most: the layout is the row sharding itself.
        T_A, padding = shard, 0
    if padding and not pad:
        raise ValueError(
            f"jaxmg.{op}: pad=False, but T_A={T_A} does not divide the {shard} rows of each "
            f"shard (needs {padding} rows of padding per device)"
        )
    n_batch = shard + padding
    dst = _cyclic_dst(n_rows, n_batch, T_A, ndev)
    rows_src = np.full(ndev * n_batch, n_rows, dtype=np.int64)
    rows_src[dst] = np.arange(n_rows)
    return _cyclic_program(mesh, axes, tuple(rows_src.tolist()), n_batch)(a)


def _row_devices(arr) -> int | None:
    sharding = getattr(arr, "sharding", None)
    if isinstance(sharding, NamedSharding) and len(sharding.spec) >= 1 and sharding.spec[0]:
        rows = sharding.spec[0]
        axes = tuple(rows) if isinstance(rows, (tuple, list)) else (rows,)
        return math.prod(sharding.mesh.shape[ax] for ax in axes)
    return None


def verify_cyclic(A, A_cyclic, T_A, *, ndev=None):
    """Checks that ``A_cyclic`` is ``cyclic_1d(A, T_A, ...)``: raises AssertionError naming the
    first row of ``A`` that is not where the layout puts it.

    ``ndev`` (devices along the rows) defaults to that of ``A_cyclic``'s sharding, else
    ``jax.device_count()`` as in the original JAXMg API.
    """
    T_A = _positive_int(T_A, "T_A", "verify_cyclic")
    if ndev is None:
        ndev = _row_devices(A_cyclic) or jax.device_count()
    a = np.asarray(A)
    c = np.asarray(A_cyclic)
    n = a.shape[0]
    shard = n // ndev
    if shard < 1:
        raise AssertionError(f"jaxmg.verify_cyclic: {n} rows cannot be split over {ndev} devices")
    if T_A >= shard:
        T_A = shard
    n_batch = shard + calculate_padding(shard, T_A)
    dst = np.array([d for _, _, d in get_cols_cyclic(n, n_batch, T_A, ndev)], dtype=np.int64)
    if c.ndim != a.ndim or c.shape[1:] != a.shape[1:] or c.shape[0] <= dst.max():
        raise AssertionError(
            f"jaxmg.verify_cyclic: A_cyclic has shape {c.shape}; expected "
            f"({ndev * n_batch}, {', '.join(map(str, a.shape[1:]))}) for A of shape {a.shape}, "
            f"T_A={T_A} and {ndev} devices"
        )
    same = np.isclose(c[dst], a).all(axis=tuple(range(1, a.ndim)))
    if not same.all():
        j = int(np.argmin(same))
        raise AssertionError(
            f"jaxmg.verify_cyclic: row {j} of A should be row {int(dst[j])} of A_cyclic "
            f"(T_A={T_A}, {ndev} devices), but they differ"
        )


def block_cyclic_owners(N: int, T_A: int, ndev: int):
    """Owner (device id, ``ndev`` for padding) of every column before and after the
    block-cyclic redistribution, as drawn by ``plot_block_to_cyclic``: two int arrays of
    ``ndev * (shard + padding)`` entries."""
    N = _positive_int(N, "N", "plot_block_to_cyclic")
    T_A = _positive_int(T_A, "T_A", "plot_block_to_cyclic")
    ndev = _positive_int(ndev, "ndev", "plot_block_to_cyclic")
    shard = N // ndev
    if shard < 1:
        raise ValueError(f"jaxmg.plot_block_to_cyclic: N={N} must be at least ndev={ndev}")
    pad = calculate_padding(shard, T_A)
    batch = shard + pad
    total = ndev * batch
    before = np.full(total, ndev, dtype=np.int64)
    for d in range(ndev):
        before[d * batch : d * batch + shard] = d
    after = (np.arange(total) // T_A) % ndev
    after[ndev * shard :] = ndev
    return before, after


def plot_block_to_cyclic(N: int, T_A: int, ndev: int, N_rows: int = 8):
    """Draws which device owns each column before (contiguous blocks of ``N // ndev``) and
    after (tiles of ``T_A`` dealt round-robin) the 1D block-cyclic redistribution; padding
    in grey. Returns ``(fig, axs)``. Needs matplotlib (imported here, not by jaxmg)."""
    before, after = block_cyclic_owners(N, T_A, ndev)
    N_rows = _positive_int(N_rows, "N_rows", "plot_block_to_cyclic")
    try:
        import matplotlib.pyplot as plt
        from matplotlib.colors import BoundaryNorm, ListedColormap
        from matplotlib.patches import Patch
    except ImportError as e:
        raise ImportError(
            "jaxmg.plot_block_to_cyclic needs matplotlib, which jaxmg does not depend on; "
            "install it with `pip install matplotlib` (or `pip install jaxmg[plot]`)"
        ) from e
    shard = N // ndev
    pad = calculate_padding(shard, T_A)
    colors = [plt.cm.tab20(i % 20) for i in range(ndev)] + [(0.85, 0.85, 0.85, 1.0)]
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(list(range(ndev + 2)), cmap.N)
    fig, axs = plt.subplots(2, 1, figsize=(8, 6), constrained_layout=True)
    panels = (
        (before, f"Row-sharded blocks (shard={shard}, padding per device={pad})"),
        (after, f"1D block-cyclic (T_A={T_A})"),
    )
    for ax, (owners, title) in zip(axs, panels):
        ax.imshow(np.tile(owners, (N_rows, 1)), aspect="auto", interpolation="nearest",
                  cmap=cmap, norm=norm)
        ax.set_title(title)
        ax.set_xlabel("column")
        ax.set_yticks([])
    for d in range(1, ndev):
        axs[0].axvline(d * (shard + pad) - 0.5, lw=1.2, ls="--", color="k")
    for t in range(1, len(after) // T_A + (len(after) % T_A > 0)):
        axs[1].axvline(t * T_A - 0.5, lw=0.8, ls=":", color="k", alpha=0.5)
    handles = [Patch(facecolor=colors[d], edgecolor="k", label=f"device {d}") for d in range(ndev)]
    handles.append(Patch(facecolor=colors[-1], edgecolor="k", label="padding"))
    axs[1].legend(handles=handles, loc="upper right")
    fig.suptitle(f"N={N}, ndev={ndev}")
    return fig, np.asarray(axs)
