"""Derivative and batching rules: every op's differentiable function, above the engines.

Each op is a ``jax.custom_jvp`` around its engine's program. Undifferentiated, the program
runs as it is (one FFI call, ``donate`` honoured). The JVP rule computes the primal with
differentiable functions (so a second derivative differentiates the rule again) and a
tangent that is linear in the input tangents and built only from pieces JAX can transpose:
``lax.custom_linear_solve`` for solves, ``ppermute``/``all_to_all`` rings (``_dist``) for
products. JAX's transposition of that linear computation is the reverse mode, so there is no
``custom_vjp`` (which would lose forward mode) and no hand-written transpose to keep in sync.
The tangents use jaxmg's own distributed ops, reusing the primal's factorization, so that no
device ever holds a whole N x N matrix; the factorizations of the rules are the platform's
distributed engine's (``_engines.DISTRIBUTED``; cuSOLVERMp's on GPUs of several processes,
``_engines.factor_engine``) whatever engine ran the primal.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from . import _config, _dist, _engines, _spmd
from ._engines._base import conj as _conj


def float0_like(x):
    """The tangent of an integer output (``info``)."""
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


def columns_vmap(fn, n: int):
    """``fn(m, b)`` (m: a matrix or factor, b: N x k) made to batch a batch of right-hand sides
    with one matrix as one call, the batch as columns (one factorization, or one solve call,
    instead of one per element); a batch of matrices runs one call per element, in a loop
    (as ``vmap_method="sequential"`` would). ``fn`` returns ``x`` or ``(x, info)``."""

    @jax.custom_batching.custom_vmap
    def batched(m, b):
        return fn(m, b)

    @batched.def_vmap
    def _rule(axis_size, in_batched, m, b):
        m_batched, b_batched = in_batched
        if not m_batched:
            k = b.shape[-1]
            out = batched(m, jnp.moveaxis(b, 0, 1).reshape(n, axis_size * k))
            x, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
            x = jnp.moveaxis(x.reshape(n, axis_size, k), 1, 0)
            if rest is None:
                return x, True
            return (x, *rest), (True,) + (False,) * len(rest)
        if not b_batched:
            b = jnp.broadcast_to(b, (axis_size,) + b.shape)
        out = jax.lax.map(lambda mb: batched(*mb), (m, b))
        return out, (jax.tree_util.tree_map(lambda _: True, out))

    return batched


# ---- the ops ----------------------------------------------------------------------------------

READS = ("hermitian", "lower", "upper")


@functools.lru_cache(maxsize=256)
def hermitian_input(place, reads: str, donate: bool = False):
    """The Hermitian matrix that ``jaxmg.linalg`` hands to the solver, made from a
    row-sharded A as JAX's functions of the same name read it: ``"lower"``/``"upper"``, the
    Hermitian matrix of that triangle (``jax.scipy.linalg.cho_factor``'s ``lower``; the
    ``lower``/``UPLO`` of ``eigh`` without symmetrization); ``"hermitian"``, (A + Aᴴ) / 2
    (``eigh``'s ``symmetrize_input``). One ``all_to_all`` of the shard; differentiable
    (linear), so derivatives are those of the function actually computed. ``donate`` lets
    the program reuse A's buffer."""
    if reads not in READS:
        raise ValueError(f"reads must be one of {READS}, got {reads!r}")
    ax, nd = place.axis, place.ndev
    if reads == "hermitian":
        body = functools.partial(_dist.hermitian_part, axis=ax, ndev=nd)
    else:
        body = functools.partial(_dist.from_triangle, axis=ax, ndev=nd, lower=reads == "lower")
    fn = _spmd.shard_map(body, place.mesh, place.spec, place.spec, check_vma=True)
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def potrs(engine: str, place, geo, donate: bool, timeout: float):
    """``(a, b) -> (x, info[1])``, differentiable w.r.t. both (forward and reverse, any order).

    Undifferentiated, the engine's program (one call, ``donate`` honoured); under ``vmap``
    with only ``b`` batched still one call, the batch as columns. Its JVP factors A once and
    runs the solves with that factor through ``custom_linear_solve`` (``solve``): x and
    dx = A⁻¹ (db − dA x) cost one factorization and two solves; the reverse mode reuses the
    same factor for b̄ = A⁻ᵀ x̄ and forms Ā = −b̄ xᵀ row by row."""
    program = _engines.program(engine, "potrs", place, geo, donate, timeout=timeout)

    def call(a, b):
        x, info = program(a, b)[:2]
        return x, info

    fused = columns_vmap(call, geo.n)

    @jax.custom_jvp
    def fn(a, b):
        return fused(a, b)

    @fn.defjvp
    def _jvp(primals, tangents):
        a, b = primals
        fac, info = factor(place, geo, a)
        x, dx = jax.jvp(lambda a, b: solve(place, geo, fac, a, b), (a, b), tangents)
        return (x, info), (dx, float0_like(info))

    return fn


@functools.lru_cache(maxsize=256)
def potri(engine: str, place, geo, donate: bool, timeout: float):
    """``a -> (inv(A), info[1])``, differentiable (forward and reverse, any order).

    Undifferentiated, the engine's program. Its JVP is d(A⁻¹) = −X dA X with X = A⁻¹ from the
    same call (two ring products, ``inverse_tangent``); the reverse mode is the transpose of
    those rings, Ā = −Xᵀ X̄ Xᵀ. One factorization either way."""
    program = _engines.program(engine, "potri", place, geo, donate, timeout=timeout)

    @jax.custom_jvp
    def fn(a):
        x, info = program(a)
        return x, info

    @fn.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        # The rule's primal through the non-donating twin: its result is differentiable
        # again (second derivatives), and the rule never consumes the caller's buffer.
        x, info = potri(engine, place, geo, False, timeout)(a)
        return (x, info), (inverse_tangent(place, x, da), float0_like(info))

    return fn


@functools.lru_cache(maxsize=256)
def syevd(engine: str, place, geo, vectors: bool, donate: bool, timeout: float):
    """``a -> (w, V, info[1])`` (``(w, info[1])`` without ``vectors``), differentiable
    (forward and reverse, any order).

    Undifferentiated, the engine's program. The JVP follows ``jnp.linalg.eigh``
    (``eigh_tangent``) with the eigenvectors of the same decomposition; a values-only call
    computes the eigenvectors in its JVP (dw_j = v_jᴴ dA v_j needs them)."""
    program = _engines.program(engine, "syevd", place, geo, donate, vectors, timeout)

    @jax.custom_jvp
    def fn(a):
        return tuple(program(a))

    @fn.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        w, v, info = syevd(engine, place, geo, True, False, timeout)(a)
        dw, dv = eigh_tangent(place, w, v, da, vectors)
        zero = float0_like(info)
        if vectors:
            return (w, v, info), (dw, dv, zero)
        return (w, info), (dw, zero)

    return fn


# ---- solves with a kept factor ----------------------------------------------------------------

def _from_factor(op: str, place, geo, timeout: float, donate: bool = False):
    """The program of ``op`` ("potrf", "solve", "inverse", "logdet") on the engine that keeps
    the factors of ``place`` (``_engines.factor_engine``)."""
    return _engines.program(_engines.factor_engine(place), op, place, geo, donate,
                            timeout=timeout)


def factor_program(place, geo, donate: bool):
    """``a -> (factor, info[1])``: the distributed Cholesky factor (``linalg.cho_factor``)."""
    return _from_factor("potrf", place, geo, _config.get_timeout(), donate)


def factor(place, geo, a):
    """(factor, info[1]) of A, as a constant: the factor is not differentiated as a matrix;
    derivatives w.r.t. A go through A itself (see ``solve``)."""
    if isinstance(a, jax.core.Tracer):
        a = jax.lax.stop_gradient(a)
    return factor_program(place, geo, False)(a)


def _solver(place, geo, timeout: float):
    """The solve with a factor, batching a batch of right-hand sides into one call
    (``columns_vmap``): ``jax.jacfwd``/``jacrev`` of a solve, or ``vmap`` over right-hand
    sides, cost one solve. Cached per engine too: which engine keeps the factors of a
    placement is decided at each call (``_engines.factor_engine``)."""
    return _solver_on(_engines.factor_engine(place), place, geo, timeout)


@functools.lru_cache(maxsize=256)
def _solver_on(engine: str, place, geo, timeout: float):
    return columns_vmap(_engines.program(engine, "solve", place, geo, timeout=timeout), geo.n)


@functools.lru_cache(maxsize=256)
def matvec_program(place):
    """``(a, x) -> A x`` for a row-sharded A and a replicated x (N x k): the sharded product
    that the rules' ``custom_linear_solve`` differentiate through."""
    body = functools.partial(_dist.matvec, axis=place.axis)
    return _dist.shard_map(lambda a, x: body(a, x), place, (place.spec, P()), P())


def solve(place, geo, fac, a, b):
    """x = A⁻¹ b (b: N x k, replicated) from the factor ``fac`` of A, differentiable w.r.t.
    ``a`` and ``b``: ``lax.custom_linear_solve`` with the sharded product A x as the matvec
    and the distributed solve with ``fac`` for both solves. JAX's JVP of it is
    dx = A⁻¹ (db − dA x) and its transpose b̄ = A⁻ᵀ x̄, Ā = −b̄ xᵀ (a row-sharded outer
    product): one solve each, never a new factorization. ``a`` may be None (a factor whose
    matrix was donated): then only ``b`` is differentiable."""
    program = _solver(place, geo, _config.get_timeout())
    fac = jax.lax.stop_gradient(fac)
    # Replicated like the matvec's result: on Explicit meshes the types (shardings) must
    # match for JAX to transpose the matvec.
    b = _spmd.conform(b, place.mesh, P())

    def sol(_, r):
        return program(fac, r)

    def sol_t(_, r):  # A⁻ᵀ r = conj(A⁻¹ conj(r)) for Hermitian A
        return _conj(program(fac, _conj(r)))

    if a is None:
        # No matrix, no derivative w.r.t. it: custom_linear_solve only differentiates the
        # matvec's closed-over values, and an identity placeholder closes over none. It is
        # never evaluated (the solves are given).
        def matvec(x):
            return x
    else:
        mv = matvec_program(place)

        def matvec(x):
            return mv(a, x)

    # symmetric=False even for real A: with symmetric=True JAX would also take the matvec as
    # its own transpose when differentiating the transposed solve (forward over reverse), which
    # is wrong in non-symmetric directions dA; this way JAX transposes A x itself.
    return jax.lax.custom_linear_solve(matvec, b, sol, sol_t, symmetric=False)


# ---- inverse ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _inverse_tangent(place):
    ax, nd = place.axis, place.ndev
    ct = functools.partial(_dist.conj_transpose, axis=ax, ndev=nd)

    def body(x, da):
        # −X dA X with the tangent always the operand that travels (see _dist):
        # W = dA X = (Xᴴ dAᴴ)ᴴ by the reduce-scatter ring, then −X W by the all-gather ring.
        # Exact for any X, not only Hermitian: second derivatives differentiate this w.r.t. X
        # in the direction dX = −X dA' X, Hermitian only when dA' is.
        w = ct(_dist.matmul_h(x, ct(da), ax, nd))
        return -_dist.matmul(x, w, ax, nd)

    return _dist.shard_map(body, place, (place.spec, place.spec), place.spec)


def inverse_tangent(place, x, da):
    """d(A⁻¹) = −X dA X for X = A⁻¹ (Hermitian): two ring products and two all_to_alls;
    reverse mode is JAX's transpose of the same (Ā = −Xᵀ X̄ Xᵀ)."""
    return _inverse_tangent(place)(x, da)


@functools.lru_cache(maxsize=256)
def inverse_from_factor(place, geo, timeout):
    """A⁻¹ (row-sharded) from the factor of A, differentiable w.r.t. ``a`` (the factor's
    tangent is ignored): ``inverse(a, fac)``."""

    @jax.custom_jvp
    def inverse(a, fac):
        del a
        return _from_factor("inverse", place, geo, timeout)(jax.lax.stop_gradient(fac))

    @inverse.defjvp
    def _jvp(primals, tangents):
        a, fac = primals
        da, _ = tangents
        x = inverse(a, fac)
        return x, inverse_tangent(place, x, da)

    return inverse


# ---- log det ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _trace_product(place):
    ax, nd = place.axis, place.ndev

    def body(x, da):
        # Re tr(X dA) = Re sum(Xᵀ ∘ dA), row by row. Xᵀ = conj(X) when X is Hermitian, but
        # second derivatives move X off the Hermitian matrices, so the rows of Xᵀ come from
        # an all_to_all of X (not of the tangent).
        xt = _conj(_dist.conj_transpose(x, ax, nd))
        return jax.lax.psum(jnp.real(jnp.sum(xt * da)), ax)

    return _dist.shard_map(body, place, (place.spec, place.spec), P())


def logdet_of_factor(place, geo, fac):
    """log det A from the factor alone (a factor that keeps no matrix: not differentiable)."""
    return _from_factor("logdet", place, geo, _config.get_timeout())(jax.lax.stop_gradient(fac))


@functools.lru_cache(maxsize=256)
def logdet_from_factor(place, geo, timeout):
    """log det A from the factor of A, differentiable w.r.t. ``a``: ``logdet(a, fac)``.
    d log det A = Re tr(A⁻¹ dA), with A⁻¹ from the same factor (``inverse_from_factor``)."""

    @jax.custom_jvp
    def logdet(a, fac):
        del a
        return _from_factor("logdet", place, geo, timeout)(jax.lax.stop_gradient(fac))

    @logdet.defjvp
    def _jvp(primals, tangents):
        a, fac = primals
        da, _ = tangents
        x = inverse_from_factor(place, geo, timeout)(a, fac)
        return logdet(a, fac), _trace_product(place)(x, da)

    return logdet


# ---- Hermitian eigendecomposition -----------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _eigh_tangent(place, vectors: bool):
    ax, nd = place.axis, place.ndev
    ct = functools.partial(_dist.conj_transpose, axis=ax, ndev=nd)

    def values_only(v, da):
        # dw_j = Re (Vᴴ dA V)_jj = Re sum_i (Vᴴ dA)_ji V_ij: G = Vᴴ dA by the reduce-scatter
        # ring (the tangent stays put, partial sums travel), then row j of G against row j
        # of Vᵀ (an all_to_all of the primal V).
        g = _dist.matmul_h(v, da, ax, nd)
        vt = _conj(ct(v))
        dw_loc = jnp.real(jnp.sum(g * vt, axis=1))
        return jax.lax.all_gather(dw_loc, ax, tiled=True, to="invarying")

    def both(w, v, da):
        das = _dist.hermitian_part(da, ax, nd)
        # S = Vᴴ das V, Hermitian: G = Vᴴ das, then S = Vᴴ Gᴴ (Gᴴ = das V).
        gh = ct(_dist.matmul_h(v, das, ax, nd))
        s_loc = _dist.matmul_h(v, gh, ax, nd)
        dw = jax.lax.psum(jnp.real(jnp.sum(_conj(v) * gh, axis=0)), ax)  # Re diag(S)
        nloc = v.shape[0]
        i = jax.lax.axis_index(ax) * nloc + jnp.arange(nloc, dtype=jnp.int32)
        eye = (i[:, None] == jnp.arange(w.shape[0], dtype=jnp.int32)[None, :]).astype(w.dtype)
        # jnp.linalg.eigh's convention: F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it
        # (infinite for equal eigenvalues).
        f = 1 / (eye + w[None, :] - w[i][:, None]) - eye
        dv = _dist.matmul(v, (f.astype(s_loc.dtype) * s_loc).astype(v.dtype), ax, nd)
        return dw, dv

    if vectors:
        return _dist.shard_map(both, place, (P(), place.spec, place.spec), (P(), place.spec))
    return _dist.shard_map(values_only, place, (place.spec, place.spec), P())


def eigh_tangent(place, w, v, da, vectors: bool):
    """(dw, dV) (dV None without ``vectors``) of A = V diag(w) Vᴴ, as ``jnp.linalg.eigh``:
    with S = Vᴴ sym(dA) V and sym(dA) = (dA + dAᴴ)/2 (``jnp.linalg.eigh`` symmetrizes its
    input by default, so its derivative sees the Hermitian part of dA),
    dw = Re diag(S), dV = V (F ∘ S), F_ij = 1/(w_j − w_i) (i ≠ j), F_ii = 0.
    Three ring products and two all_to_alls (values only: one ring, one all_to_all)."""
    if vectors:
        return _eigh_tangent(place, True)(w, v, da)
    return _eigh_tangent(place, False)(v, da), None


# ---- generalized Hermitian eigendecomposition ------------------------------------------------

@functools.lru_cache(maxsize=256)
def _gen_eigh_tangent(place):
    ax, nd = place.axis, place.ndev
    ct = functools.partial(_dist.conj_transpose, axis=ax, ndev=nd)

    def body(w, v, da, db):
        # S_A = Vᴴ dA V and S_B = Vᴴ dB V, row-sharded, each as in _eigh_tangent (G = Vᴴ dX
        # by the reduce-scatter ring, then Vᴴ Gᴴ); the tangents are Hermitian (the op reads
        # the Hermitian matrices of its inputs).
        def sandwich(dx):
            gh = ct(_dist.matmul_h(v, dx, ax, nd))
            return _dist.matmul_h(v, gh, ax, nd), gh

        sa, gha = sandwich(da)
        sb, ghb = sandwich(db)
        da_d = jax.lax.psum(jnp.real(jnp.sum(_conj(v) * gha, axis=0)), ax)  # Re diag(S_A)
        db_d = jax.lax.psum(jnp.real(jnp.sum(_conj(v) * ghb, axis=0)), ax)  # Re diag(S_B)
        dw = da_d - w * db_d
        nloc = v.shape[0]
        i = jax.lax.axis_index(ax) * nloc + jnp.arange(nloc, dtype=jnp.int32)
        eye = (i[:, None] == jnp.arange(w.shape[0], dtype=jnp.int32)[None, :]).astype(w.dtype)
        # C_ij = (S_A - S_B Λ)_ij / (λ_j - λ_i) off the diagonal, C_ii = -(S_B)_ii / 2 (the
        # B-normalization VᴴBV = I; its imaginary part 0, as jnp.linalg.eigh's convention).
        f = 1 / (eye + w[None, :] - w[i][:, None]) - eye
        m = sa - sb * w[None, :].astype(sb.dtype)
        c = f.astype(m.dtype) * m - 0.5 * eye.astype(m.dtype) * jnp.real(sb).astype(m.dtype)
        return dw, _dist.matmul(v, c.astype(v.dtype), ax, nd)

    return _dist.shard_map(body, place, (P(), place.spec, place.spec, place.spec),
                           (P(), place.spec))


@functools.lru_cache(maxsize=256)
def generalized_eigh(place, vectors_program, values_program=None):
    """``(a, b) -> (w, V, info)`` (or ``(w, info)`` with ``values_program``) of A v = λ B v for
    Hermitian A and B (B positive definite) sharded by rows, from distributed programs that
    compute them, differentiable: with S_X = Vᴴ dX V (ring products, never a gathered
    matrix), dλ = Re diag(S_A) − λ Re diag(S_B) and dV = V C, C_ij = (S_A − S_B Λ)_ij /
    (λ_j − λ_i), C_ii = −(S_B)_ii / 2. Values only, the tangent needs the vectors: the
    vectors' program runs in the JVP."""
    tangent = _gen_eigh_tangent(place)

    @jax.custom_jvp
    def fn(a, b):
        return (values_program or vectors_program)(a, b)

    @fn.defjvp
    def _jvp(primals, tangents):
        a, b = primals
        da, db = tangents
        if values_program is None:
            w, v, info = fn(a, b)
        else:
            w, v, info = vectors_program(a, b)
        dw, dv = tangent(w, v, da, db)
        if values_program is None:
            return (w, v, info), (dw, dv, float0_like(info))
        return (w, info), (dw, float0_like(info))

    return fn


# ---- QR of a tall matrix ------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _qr_tangent(place):
    ax = place.axis

    def body(q, r, da):
        # JAX's rule of the reduced QR, with every N x N-sized piece of it n x n: dA R⁻¹ row
        # by row (a local triangular solve), Qᴴ (dA R⁻¹) by one psum.
        tri = jax.lax.linalg.triangular_solve
        dx_rinv = tri(r, da, left_side=False, lower=False)
        qt = jax.lax.psum(_conj(q).T @ dx_rinv, ax)
        low = jnp.tril(qt, -1)
        do = low - _conj(low).T
        if jnp.iscomplexobj(qt):
            do = do + jnp.eye(qt.shape[0], dtype=qt.dtype) * (qt - jnp.real(qt))
        dq = q @ (do - qt) + dx_rinv
        dr = (qt - do) @ r
        return dq, dr

    return _dist.shard_map(body, place, (place.spec, P(), place.spec), (place.spec, P()))


@functools.lru_cache(maxsize=256)
def qr(place, program):
    """``a -> (Q, R, info[1])`` of a tall A (M >= N) sharded by rows, from a distributed
    program, differentiable as ``jnp.linalg.qr``: dQ = Q (dΩ − Qᴴ dA R⁻¹) + dA R⁻¹,
    dR = (Qᴴ dA R⁻¹ − dΩ) R (dΩ the skew part of the strictly lower triangle of Qᴴ dA R⁻¹),
    with only N x N pieces replicated: no device holds the M x N matrix whole."""
    tangent = _qr_tangent(place)

    @jax.custom_jvp
    def fn(a):
        return program(a)

    @fn.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        q, r, info = fn(a)
        dq, dr = tangent(q, r, da)
        return (q, r, info), (dq, dr, float0_like(info))

    return fn
