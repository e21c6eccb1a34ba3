"""The general dense ops (LU, QR, SVD, polar, least squares, the Cholesky factor itself and
the generalized Hermitian eigenproblem) over a row-sharded matrix, on any platform and any
number of devices: every device of the group gathers the matrices (one all-gather each) and
runs XLA's own single-device solver on them (LAPACK on CPU devices, cuSOLVER on GPUs), then
keeps its own rows of every output that is sharded by rows. The route of engine ``gather``,
for the ops the distributed engines do not implement.

Each op is a function of the whole matrices (``OPS``: the function, which inputs and outputs
are sharded by rows, the others replicated). ``program`` puts it inside one ``jax.shard_map``
with the varying-axes check on, so JAX differentiates and batches it exactly: the gather's
transpose is a reduce-scatter, and a device's rows of an output are a slice of a value every
device holds. Memory O(M N) per device: the whole matrices and outputs live on every device
of the group.

Numerical failure follows jaxmg's policy: LAPACK's ``info`` (the first zero pivot of U for
LU, the first non-positive pivot for Cholesky, N + k for a ``b`` of the generalized problem
that is not positive definite at its order-k leading minor) and NaN in the outputs that
depend on the failed factorization.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from .. import _ffi, _spmd
from .._geometry import Placement
from ._base import nan_where

_tri = jax.lax.linalg.triangular_solve


# ---- pieces --------------------------------------------------------------------------------

def first_bad_pivot(h):
    """LAPACK potrf's info for the Hermitian matrix ``h``: 0, or
    the 1-based index of the first pivot that is not positive (or not finite). An unblocked
    elimination in a loop, run only where the fast factorization failed."""
    n = h.shape[-1]
    idx = jnp.arange(n)

    def step(k, carry):
        m, info = carry
        d = jnp.real(m[k, k])
        bad = (info == 0) & ~(d > 0)
        info = jnp.where(bad, k + 1, info)
        safe = jnp.where(d > 0, d, 1).astype(m.dtype)
        col = jnp.where(idx > k, m[:, k], 0)
        m = m - jnp.outer(col, jnp.conj(col)) / safe
        return m, info

    _, info = jax.lax.fori_loop(0, n, step, (h, jnp.zeros((), jnp.int32)))
    return info


def cholesky_info(h, L):
    """(failed, info) of XLA's Cholesky ``L`` of ``h`` (XLA fills a failed factor with NaN)."""
    failed = ~jnp.all(jnp.isfinite(jnp.real(jnp.diagonal(L))))
    info = jax.lax.cond(failed, first_bad_pivot, lambda h: jnp.zeros((), jnp.int32), h)
    return failed, info


def hermitian(a, reads: str):
    """The Hermitian matrix ``a`` stands for: its Hermitian part, or that of one triangle."""
    if reads == "hermitian":
        return (a + jnp.conj(a).T) / 2
    t = jnp.tril(a) if reads == "lower" else jnp.triu(a)
    d = jnp.real(jnp.diagonal(a)).astype(a.dtype)
    strict = t - jnp.diag(jnp.diagonal(t))
    return strict + jnp.conj(strict).T + jnp.diag(d)


def lu_info(lu):
    """getrf's info: 0, or the 1-based index of the first exactly zero diagonal entry of U."""
    zero = jnp.diagonal(lu) == 0
    return jnp.where(jnp.any(zero), jnp.argmax(zero) + 1, 0).astype(jnp.int32)


def _cpu_share() -> int:
    """How many devices of the enclosing shard_map compute at once (the size of the
    context's mesh, 1 outside one): the CPU backend gives each that share of the cores."""
    return max(1, int(jax.sharding.get_abstract_mesh().size))


def _syevx(h, lo: int, hi: int, vectors: bool):
    """jaxmg's device-local subset eigensolver (``jaxmg_syevx``: LAPACK ?syevr on CPU,
    cuSOLVER Xsyevdx on GPU) on the whole Hermitian ``h``: ``(w, v, info)``, eigenpairs
    lo..hi-1, v (N x (hi - lo), or N x 0 without vectors). The solver reads ``h``
    column-major (``conj(h)``, the same eigenvalues, conjugate vectors). Every device of the
    enclosing shard_map computes at once: the CPU backend gives each its share of the
    cores (``parts``, the size of the context's mesh; 1 outside one)."""
    parts = _cpu_share()
    n, k = h.shape[-1], hi - lo
    real = jnp.finfo(h.dtype).dtype
    finite = jnp.all(jnp.isfinite(h))
    safe = jnp.where(finite, h, jnp.eye(n, dtype=h.dtype))
    shapes = (jax.ShapeDtypeStruct((n, n), h.dtype), jax.ShapeDtypeStruct((k,), real),
              jax.ShapeDtypeStruct((k if vectors else 0, n), h.dtype),
              jax.ShapeDtypeStruct((), jnp.int32))
    call = jax.ffi.ffi_call("jaxmg_syevx", shapes, input_output_aliases={0: 0},
                            vmap_method="sequential")
    _, w, z, info = call(safe, lo=np.int64(lo), hi=np.int64(hi), vectors=np.int64(vectors),
                         parts=np.int64(parts))
    info = jnp.where(finite, info, 1).astype(jnp.int32)
    return w, jnp.conj(z).T, info


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def subset_eigh(h, lo: int, hi: int, vectors: bool):
    """Eigenpairs lo..hi-1 (ascending) of the Hermitian ``h``, at the cost of the
    tridiagonal reduction and k = hi - lo eigenpairs: ``(w, v, info)`` (v: N x 0 without
    vectors). Derivatives: of the eigenvalues dλ = Re diag(Vᴴ dH V) from the same subset;
    of the eigenvectors JAX's rule for the full decomposition (it sums over every other
    eigenpair), so differentiating the vectors costs a full ``eigh``."""
    return _syevx(h, lo, hi, vectors)


@subset_eigh.defjvp
def _subset_eigh_jvp(lo, hi, vectors, primals, tangents):
    (h,), (dh,) = primals, tangents
    zero_info = np.zeros((), dtype=jax.dtypes.float0)
    if vectors:
        def full(h):
            v, w = jax.lax.linalg.eigh(h, lower=True, symmetrize_input=False)
            return w[lo:hi], v[:, lo:hi]

        (w, v), (dw, dv) = jax.jvp(full, (h,), (dh,))
        info = jnp.where(jnp.all(jnp.isfinite(w)), 0, 1).astype(jnp.int32)
        return (w, v, info), (dw, dv, zero_info)
    w, v, info = _syevx(h, lo, hi, True)
    dw = jnp.real(jnp.sum(jnp.conj(v) * (dh @ v), axis=0)).astype(w.dtype)
    empty = jnp.zeros((h.shape[-1], 0), h.dtype)
    return (w, empty, info), (dw, empty, zero_info)


def two_stage_eigh(a, vectors: bool = True, band: int | None = None):
    """Every eigenpair of the Hermitian ``a`` (its lower triangle is read) on the device that
    holds it, by jaxmg's two-stage eigensolver (``jaxmg_syev2s``, CPU only for now): dense
    to band with ``band`` sub-diagonals (None: the solver's default, 32; at most N - 1) by
    blocked Householder QR, band to real tridiagonal by bulge chasing, LAPACK ?stedc
    (?sterf without vectors), then the back-transformation. Returns ``(w, v, info)``:
    eigenvalues ascending, eigenvectors in the columns of v (None without ``vectors``), and
    info 0, or > 0 where the input is not finite or ?stedc failed; then w and v are NaN.
    Inside a shard_map every device computes at once, each with its share of the cores."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"jaxmg.two_stage_eigh: a must be a square matrix, got shape {a.shape}")
    if band is not None and int(band) < 1:
        raise ValueError(f"jaxmg.two_stage_eigh: band must be >= 1 or None, got {band}")
    a = jnp.asarray(a)
    if a.dtype not in (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128):
        raise ValueError("jaxmg.two_stage_eigh: a must be float32, float64, complex64 or "
                         f"complex128, got {a.dtype}")
    _ffi.ensure_registered("cpu")
    parts = _cpu_share()
    n = a.shape[-1]
    real = jnp.finfo(a.dtype).dtype
    shapes = (jax.ShapeDtypeStruct((n, n), a.dtype), jax.ShapeDtypeStruct((n,), real),
              jax.ShapeDtypeStruct((n if vectors else 0, n), a.dtype),
              jax.ShapeDtypeStruct((), jnp.int32))
    call = jax.ffi.ffi_call("jaxmg_syev2s", shapes, input_output_aliases={0: 0},
                            vmap_method="sequential")
    # The solver reads column-major storage: a.T is a with its lower triangle where the
    # solver reads one, and z's rows are the eigenvectors.
    _, w, z, info = call(a.T, band=np.int64(band or 0), vectors=np.int64(vectors),
                         parts=np.int64(parts))
    bad = info != 0
    w = nan_where(bad, w)
    return w, (nan_where(bad, z.T) if vectors else None), info


# ---- the ops, as functions of the whole matrices --------------------------------------------

def lu_factor(a):
    lu, piv, _ = jax.lax.linalg.lu(a)
    return lu, piv.astype(jnp.int32), lu_info(lu)


def lu_solve(lu, piv, b, *, trans: int):
    return (jax.scipy.linalg.lu_solve((lu, piv), b, trans=trans),)


def solve_gen(a, b):
    lu, piv, info = lu_factor(a)
    x = jax.scipy.linalg.lu_solve((lu, piv), b)
    return nan_where(info != 0, x), info


def det(a):
    return (jnp.linalg.det(a),)


def slogdet_gen(a):
    sign, logabs = jnp.linalg.slogdet(a)
    return sign, logabs


def cholesky(a, *, lower: bool):
    h = hermitian(a, "lower" if lower else "upper")
    L = jax.lax.linalg.cholesky(h, symmetrize_input=False)
    failed, info = cholesky_info(h, L)
    L = jnp.tril(L)
    c = L if lower else jnp.conj(L).T
    return nan_where(failed, c), info


def qr(a, *, mode: str):
    q, r = jnp.linalg.qr(a, mode=mode)
    return q, r


def qr_r(a):
    return (jnp.linalg.qr(a, mode="r"),)


def svd(a, *, full_matrices: bool):
    u, s, vh = jnp.linalg.svd(a, full_matrices=full_matrices)
    return u, s, vh


def svd_values(a):
    return (jnp.linalg.svd(a, compute_uv=False),)


def polar(a, *, side: str, method: str):
    u, p = jax.scipy.linalg.polar(a, side=side, method=method)
    return u, p


def lstsq(a, b, *, rcond):
    x, resid, rank, s = jnp.linalg.lstsq(a, b, rcond=rcond)
    return x, resid, rank.astype(jnp.int32), s


def eigh_gen(a, b, *, reads: str, subset, vectors: bool):
    """A v = λ B v: B = L Lᴴ, C = L⁻¹ A L⁻ᴴ, C = W Λ Wᴴ, V = L⁻ᴴ W (B-orthonormal)."""
    n = a.shape[-1]
    h = hermitian(a, reads)
    hb = hermitian(b, reads)
    L = jax.lax.linalg.cholesky(hb, symmetrize_input=False)
    failed, info = cholesky_info(hb, L)
    L = jnp.tril(jnp.where(failed, jnp.eye(n, dtype=L.dtype), L))
    y = _tri(L, h, left_side=True, lower=True)
    c = _tri(L, jnp.conj(y).T, left_side=True, lower=True)  # L⁻¹ (L⁻¹ A)ᴴ = L⁻¹ A L⁻ᴴ
    c = (c + jnp.conj(c).T) / 2
    if subset is None:
        v, w = jax.lax.linalg.eigh(c, lower=True, symmetrize_input=False)
        einfo = jnp.where(jnp.all(jnp.isfinite(w)), 0, 1)
    else:
        w, v, einfo = subset_eigh(c, subset[0], subset[1], vectors)
    info = jnp.where(failed, n + info, einfo)
    bad = info != 0
    w = nan_where(bad, w)
    if not vectors:
        return w, info.astype(jnp.int32)
    v = _tri(L, v, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
    return w, nan_where(bad, v), info.astype(jnp.int32)


def eigh_subset(a, *, reads: str, subset, vectors: bool):
    """Eigenpairs subset = (lo, hi) of the standard problem, by the subset eigensolver."""
    w, v, info = subset_eigh(hermitian(a, reads), subset[0], subset[1], vectors)
    bad = info != 0
    if not vectors:
        return nan_where(bad, w), info
    return nan_where(bad, w), nan_where(bad, v), info


# name -> (function, input kinds, output kinds): "rows" sharded by rows, "rep" replicated
OPS = {
    "lu_factor": (lu_factor, ("rows",), ("rows", "rep", "rep")),
    "lu_solve": (lu_solve, ("rows", "rep", "rep"), ("rep",)),
    "solve_gen": (solve_gen, ("rows", "rep"), ("rep", "rep")),
    "det": (det, ("rows",), ("rep",)),
    "slogdet_gen": (slogdet_gen, ("rows",), ("rep", "rep")),
    "cholesky": (cholesky, ("rows",), ("rows", "rep")),
    "qr": (qr, ("rows",), ("rows", "rep")),
    "qr_r": (qr_r, ("rows",), ("rep",)),
    "svd": (svd, ("rows",), ("rows", "rep", "rep")),
    "svd_values": (svd_values, ("rows",), ("rep",)),
    "polar_right": (polar, ("rows",), ("rows", "rep")),
    "polar_left": (polar, ("rows",), ("rows", "rows")),
    "lstsq": (lstsq, ("rows", "rep"), ("rep", "rep", "rep", "rep")),
    "eigh_gen": (eigh_gen, ("rows", "rows"), ("rep", "rows", "rep")),
    "eigvalsh_gen": (eigh_gen, ("rows", "rows"), ("rep", "rep")),
    "eigh_subset": (eigh_subset, ("rows",), ("rep", "rows", "rep")),
    "eigvalsh_subset": (eigh_subset, ("rows",), ("rep", "rep")),
}


def _mine(x, axis, ndev: int):
    """This device's rows of ``x`` (held whole by every device), zero rows padding the
    last devices' shares to the same count."""
    per = -(-x.shape[0] // ndev)
    x = jnp.pad(x, ((0, per * ndev - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(axis).astype(jnp.int32) * per, per, axis=0)


@functools.lru_cache(maxsize=256)
def program(op: str, place: Placement, rows: tuple, kw: tuple = ()):
    """``op`` as one jitted program over the mesh of ``place``: its row inputs padded with
    zero rows to a multiple of the row devices (``rows``: their true row counts, in order),
    its row outputs likewise padded (cut by the caller); ``kw``: the op's static keywords
    as sorted (name, value) pairs."""
    fn, in_kinds, out_kinds = OPS[op]
    fn = functools.partial(fn, **dict(kw))
    axis, ndev = place.axis, place.ndev

    def body(*args):
        whole, it = [], iter(rows)
        for x, kind in zip(args, in_kinds):
            if kind == "rows":
                g = jax.lax.all_gather(x, axis, axis=0, tiled=True, to="invarying")
                x = g[: next(it)]
            whole.append(x)
        outs = fn(*whole)
        return tuple(_mine(o, axis, ndev) if k == "rows" else o
                     for o, k in zip(outs, out_kinds))

    in_specs = tuple(P(place.axis) if k == "rows" else P() for k in in_kinds)
    out_specs = tuple(P(place.axis) if k == "rows" else P() for k in out_kinds)
    return jax.jit(_spmd.shard_map(body, place.mesh, in_specs, out_specs, check_vma=True))


@functools.lru_cache(maxsize=512)
def outputs(op: str, shapes: tuple, kw: tuple = ()) -> tuple:
    """The outputs of ``op`` on inputs of ``shapes`` ((shape, dtype) pairs) as
    ``jax.ShapeDtypeStruct``s, with their true sizes (before any padding); cached."""
    fn = functools.partial(OPS[op][0], **dict(kw))
    return tuple(jax.eval_shape(fn, *(jax.ShapeDtypeStruct(s, d) for s, d in shapes)))
