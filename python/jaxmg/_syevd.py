"""Hermitian eigendecomposition: ``syevd`` (cuSOLVERMg ``cusolverMgSyevd`` on GPUs; LAPACK's
divide and conquer ``?syevd``/``?heevd`` on one CPU device of the mesh)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from . import _core, _engine, _mesh, _mpmd, _rules
from ._geometry import Geometry, pad_shard

MAX_TILE = 1024  # cusolverMgSyevd rejects larger tiles; the seeds enforced the same bound


def _axis(row_axes):
    return row_axes if len(row_axes) > 1 else row_axes[0]


def padding_shift(a_loc, row_axes):
    """A value strictly above every eigenvalue of A: 2 ||A||_inf (1 for A = 0).

    Padding with it keeps the padded spectrum that of A plus (n_pad - n) copies of the
    shift at the top, so the padding eigenpairs are the last ones and are dropped. Identity
    padding would add eigenvalue 1, which may fall inside (or repeat) A's spectrum. No
    constant is added to the norm, so a tiny A keeps its relative accuracy."""
    rows = jnp.sum(jnp.abs(a_loc), axis=1)
    norm = jax.lax.pmax(jnp.max(rows), _axis(row_axes))
    return jnp.where(norm > 0, 2 * norm, jnp.ones_like(norm))


def eigvec_rows(s_loc, geo: Geometry, row_axes):
    """This device's rows of V (nloc x n) from the backend's output.

    Row c of device d's padded shard holds conj(v_e) for the eigenvector index
    e = dst(d * nloc_pad + c), its components in the padded original order. Stacked, the
    shards form S with S[src[e]] = conj(v_e), so V = conj(S[src]).T: one all-to-all (each
    device gets the columns of S that are its rows of V), then a local gather + transpose.
    """
    t = s_loc
    if geo.ndev > 1:
        # (nloc_pad, n_pad) -> (n_pad, nloc_pad): column block d of S, from every device.
        t = jax.lax.all_to_all(t, _axis(row_axes), split_axis=1, concat_axis=0, tiled=True)
    e = geo.src[: geo.n] if not geo.identity_layout else slice(0, geo.n)
    v = jnp.conj(t[e, : geo.nloc]).T if jnp.iscomplexobj(t) else t[e, : geo.nloc].T
    return v


def syevd_local(a_loc, geo: Geometry, row_axes, group_axes, vectors: bool):
    """Per-device body: (w, V_local or None, info[1])."""
    ids = _core.mesh_ids(row_axes, group_axes)
    if geo.padded:
        a_p = pad_shard(a_loc, geo, ids[1], diag=padding_shift(a_loc, row_axes))
    else:
        a_p = a_loc
    real = _core.real_dtype(a_loc.dtype)
    s, w, info = _core.call(
        "jaxmg_syevd" if vectors else "jaxmg_syevd_n",
        (
            jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype),
            jax.ShapeDtypeStruct((geo.n_pad,), real),
            jax.ShapeDtypeStruct((1,), jnp.int32),
        ),
        (a_p, ids),
        geo,
        aliases={0: 0},
        axes=(row_axes, group_axes),
    )
    w = w[: geo.n]
    v = eigvec_rows(s, geo, row_axes) if vectors else None
    return w, v, info


def syevd_single(a_loc, geo: Geometry, row_axes, group_axes, vectors: bool):
    """Per-device body of the single engine (see _engine.py): every device runs XLA's
    eigensolver on the gathered matrix and keeps its rows of V."""
    a = _engine.gather(a_loc, row_axes)
    v, w = jax.lax.linalg.eigh(a, lower=True, symmetrize_input=False)
    failed = _engine.agree_failed(~jnp.all(jnp.isfinite(w)), row_axes)
    info = jnp.where(failed, 1, 0).astype(jnp.int32).reshape(1)
    w = jnp.where(failed, jnp.nan, w)
    if not vectors:
        return w, None, info
    rank = jax.lax.axis_index(_engine._axis(row_axes))
    rows = _engine.my_rows(v, geo.nloc, rank)
    return w, jnp.where(failed, jnp.full_like(rows, jnp.nan), rows), info


def syevd_whole(a_loc, geo: Geometry, row_axes, group_axes, vectors: bool):
    """Per-device body of the single engine when the mesh lives in this process: one jaxmg
    call (``JAXMG_OP_SYEVD_WHOLE``) in which position 0 copies from its peers only the part of
    the matrix a lower eigensolver reads, runs cuSOLVER's ``syevd`` alone (in its
    non-deterministic mode, about 10 % faster, unless ``JAXMG_DETERMINISTIC`` is set; LAPACK
    on CPU devices) and every device copies w, info and its rows of V from it. info is the
    solver's; on failure w and V are NaN. Memory: N x N and the solver's workspace on
    position 0 only. (w, V_local or None, info[1])."""
    ids = _core.mesh_ids(row_axes, group_axes)
    s, w, info = _core.call(
        "jaxmg_syevd_whole" if vectors else "jaxmg_syevd_n_whole",
        (
            jax.ShapeDtypeStruct(a_loc.shape, a_loc.dtype),
            jax.ShapeDtypeStruct((geo.n,), _core.real_dtype(a_loc.dtype)),
            jax.ShapeDtypeStruct((1,), jnp.int32),
        ),
        (a_loc, ids),
        geo.whole,
        aliases={0: 0},
        axes=(row_axes, group_axes),
    )
    failed = info[0] != 0
    w = jnp.where(failed, jnp.nan, w)
    if not vectors:
        return w, None, info
    # s holds rows [r nloc, (r + 1) nloc) of V_M, the column-major eigenvectors of
    # M = conj(A), as an N x nloc row-major block: V's rows are its conjugate transpose.
    t = s.reshape(geo.n, geo.nloc)
    v = (jnp.conj(t) if jnp.iscomplexobj(t) else t).T
    return w, jnp.where(failed, jnp.full_like(v, jnp.nan), v), info


# The single engine runs syevd_whole (one jaxmg call) when the mesh lives in this process and
# this is True; else (or across processes) every device gathers and runs XLA's eigh
# (syevd_single).
USE_WHOLE = True


@functools.lru_cache(maxsize=256)
def _program(place: _mesh.Placement, geo: Geometry, vectors: bool, donate: bool, timeout: float,
             engine: str = "mg"):
    del timeout  # part of the cache key: read by _core.call at trace time
    local = syevd_local
    if engine == "single":
        local = syevd_whole if USE_WHOLE and _mpmd.in_this_process(place.mesh) else syevd_single

    def body(a_loc):
        w, v, info = local(a_loc, geo, place.row_axes, place.group_axes, vectors)
        return (w, v, info) if vectors else (w, info)

    out_specs = (P(), place.spec, P()) if vectors else (P(), P())
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=out_specs)
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def _differentiable(place: _mesh.Placement, geo: Geometry, vectors: bool, donate: bool,
                    timeout: float, engine: str = "mg"):
    """``a -> (w, V, info[1])`` (``(w, info[1])`` without ``vectors``), differentiable
    (forward and reverse, any order).

    Undifferentiated, the program itself. The JVP follows ``jnp.linalg.eigh``
    (``_rules.eigh_tangent``) with the eigenvectors of the same decomposition; a values-only
    call computes the eigenvectors in its JVP (dw_j = v_jᴴ dA v_j needs them)."""

    @jax.custom_jvp
    def eig(a):
        return tuple(_program(place, geo, vectors, donate, timeout, engine)(a))

    @eig.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        w, v, info = _differentiable(place, geo, True, False, timeout, engine)(a)
        dw, dv = _rules.eigh_tangent(place, w, v, da, vectors)
        zero = _rules.float0_like(info)
        if vectors:
            return (w, v, info), (dw, dv, zero)
        return (w, info), (dw, zero)

    return eig


def syevd(a, T_A=None, mesh=None, in_specs=None, return_eigenvectors=True, return_status=False,
          pad=True, *, donate=False, engine="auto"):
    """Eigenvalues (and eigenvectors) of a Hermitian matrix sharded by rows over several devices.

    The math: A = V diag(w) V^H with w ascending and V unitary, its columns the
    eigenvectors (as ``jnp.linalg.eigh``). On GPUs this is cuSOLVERMg's ``syevd``; on CPU
    devices LAPACK's ``?syevd``/``?heevd`` run on the first device of the mesh (the
    CPU eigensolver is not distributed).

    Args:
      a: N x N Hermitian matrix, sharded by rows (``P('x', None)``). Only Hermitian inputs
        are meaningful: which triangle is read depends on the layout.
      T_A: tile size, at most 1024 (cuSOLVERMg's limit; larger values are clamped to 1024
        where the original JAXMg raised). Default: the largest divisor of the shard up to 256
        (CPU) or 1024 (GPU). A tile that does not divide the shard is padded when ``pad``.
      mesh, in_specs: as for ``potri``; inferred from ``a.sharding`` when omitted.
      return_eigenvectors: also compute V (else the values-only solver runs).
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, > 0 when
        the eigensolver did not converge.
      pad: pad shards that ``T_A`` does not divide, else raise. The padding holds
        2 ||A||_inf on its diagonal, above A's spectrum; its eigenpairs are dropped.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      engine: ``"auto"`` (default), ``"mg"`` (cuSOLVERMg on GPUs, the distributed backend on
        CPU devices; O(N^2 / ndev) memory per device) or ``"single"`` (the first device of
        the mesh gathers the matrix and runs cuSOLVER's syevd, LAPACK on CPU devices, alone;
        every device copies its rows of V; O(N^2) memory on that device). ``"auto"``:
        ``"mg"`` on CPU devices; on GPUs ``"single"`` when the matrix fits one device
        comfortably, else ``"mg"``. The single engine runs cuSOLVER in its
        non-deterministic mode (about 10 % faster, results differ by rounding from run to
        run) unless the environment sets ``JAXMG_DETERMINISTIC=1``.

    Returns:
      ``w``, ``(w, V)``, ``(w, info)`` or ``(w, V, info)`` as in the seeds: ``w`` (N reals,
      ascending) replicated, ``V`` (N x N) sharded by rows like ``a``. On failure w and V
      are NaN and info > 0, on every device.

    Differentiable (forward and reverse, any order) with ``jnp.linalg.eigh``'s rule and
    conventions (Hermitian part of the tangent; eigenvector derivatives not finite for equal
    eigenvalues), by distributed ring products; batched by ``vmap``. See docs/ops/syevd.md.
    """
    dtype, place, geo = _core.plan(a, T_A, mesh, in_specs, pad, "syevd", max_tile=MAX_TILE)
    a = _mesh.place(a, jax.sharding.NamedSharding(place.mesh, place.spec))
    vectors = bool(return_eigenvectors)
    eng = _engine.choose(engine, "syevd", place, geo.n, dtype)
    fn = _differentiable(place, geo, vectors, bool(donate), _core.get_timeout(), eng)
    *out, info = _core.run_entry(fn, bool(donate), (a,), platform=place.platform)
    out = tuple(out)
    if return_status:
        return (*out, info)
    return out if vectors else out[0]


def syevd_shardmap_ctx(a, T_A=None, return_eigenvectors=True, pad=True, *, axis_name=None):
    """``syevd`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded Hermitian matrix;
    ``axis_name`` names the mesh axis (or tuple of axes) the rows are sharded over and may be
    omitted when only one axis of the mesh has more than one device.

    Returns ``(w, V_local, status)`` (``(w, status)`` without eigenvectors): ``w`` the N
    eigenvalues, ascending, the same on every device (``out_specs=P()``); ``V_local`` this
    device's rows of V (same shape as ``a``, so ``out_specs=P(axis, None)`` assembles V with
    the eigenvectors as columns); ``status`` an int32 array of shape (1,) with LAPACK's info.
    Getting rows of V costs one ``all_to_all`` over the row axes inside the shard_map. (The
    original JAXMg returned a column block of V here instead.) Use ``check_vma=False`` on the
    enclosing shard_map.
    """
    rows, groups, geo = _core.context_plan(a, T_A, pad, axis_name, "syevd", max_tile=MAX_TILE)
    vectors = bool(return_eigenvectors)
    w, v, info = syevd_local(a, geo, rows, groups, vectors)
    return (w, v, info) if vectors else (w, info)
