"""The general dense ops of ``jaxmg.linalg``: LU (``lu_factor``, ``lu_solve``, ``det``, and
``solve(assume_a="gen")``), the Cholesky factor itself (``cholesky``), ``qr``, ``svd``,
``polar``, ``lstsq`` and the generalized Hermitian eigenproblem (``eigh(a, b)``), with the
names, arguments and results of ``jax.scipy.linalg`` / ``jnp.linalg``.

They take matrices sharded by rows, as every jaxmg op (mesh and spec inferred, or
``mesh=``/``in_specs=``), and run the gathered route (``_engines.dense``): every device of the
group gathers the matrix and runs XLA's solver, keeping its rows of the outputs sharded by
rows. Derivatives and ``vmap`` are JAX's own rules of the same functions. See
docs/ops/linalg.md ("General matrices").
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from . import _config, _engines, _mesh, _mpmd, _plan, _rules, _spmd
from ._engines import cusolvermp, dense


class QRResult(NamedTuple):
    """``qr``'s ``(Q, R)``, named as ``jnp.linalg.qr``'s result."""

    Q: jax.Array
    R: jax.Array


class SVDResult(NamedTuple):
    """``svd``'s ``(U, S, Vh)``, named as ``jnp.linalg.svd``'s result."""

    U: jax.Array
    S: jax.Array
    Vh: jax.Array


_SINGULAR = "the matrix is singular"
_NOT_PD = "the matrix is not positive definite"


# ---- inputs ---------------------------------------------------------------------------------

def as_matrix(a, op: str, square: bool = False, check_dtype: bool = True):
    """``a`` as a JAX function takes it: NumPy arrays and lists become arrays, integer and
    boolean matrices the default floating dtype (``jnp.linalg``'s promotion); rank ≥ 2 (a
    batch: leading dimensions), square where ``square``; a supported dtype where
    ``check_dtype``."""
    if not isinstance(a, (jax.Array, jax.core.Tracer)):
        a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        a = a.astype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if square and (a.ndim < 2 or a.shape[-1] != a.shape[-2]):
        raise ValueError(f"jaxmg.linalg.{op}: 'a' must be a square matrix (or a stack of "
                         f"them, ..., N, N), got shape {tuple(a.shape)}")
    if a.ndim < 2:
        raise ValueError(f"jaxmg.linalg.{op}: 'a' must be a matrix (or a stack of them, "
                         f"..., M, N), got shape {tuple(a.shape)}")
    if check_dtype:
        _plan.check_dtype(a.dtype, f"linalg.{op}")
    return a


def as_rhs(b, n: int, dtype, op: str, nbatch: int):
    """(b in the solve's dtype, vector): ``b`` of N or N x k (after ``nbatch`` batch
    dimensions), checked against the matrix's N."""
    if not isinstance(b, (jax.Array, jax.core.Tracer)):
        b = jnp.asarray(b)
    vector = b.ndim == nbatch + 1
    if b.ndim not in (nbatch + 1, nbatch + 2) or b.shape[nbatch] != n:
        raise ValueError(f"jaxmg.linalg.{op}: 'b' must have {n} rows to match 'a' (shape "
                         f"..., {n} or ..., {n}, k), got shape {tuple(b.shape)}")
    dtype = _plan.promote(dtype, b.dtype, f"linalg.{op}")
    return b.astype(dtype), vector, dtype


def over_batch(fn, nbatch: int, *args):
    """``fn`` mapped over ``nbatch`` leading dimensions of every argument (``jax.vmap``:
    one call of the op per matrix)."""
    for _ in range(nbatch):
        fn = jax.vmap(fn)
    return fn(*args)


def is_empty(x) -> bool:
    return 0 in tuple(x.shape)


def _finish(out, info, op, what, return_status, check):
    if check:
        _plan.raise_if_failed(info, op, what)
    return (out, info) if return_status else out


def _run(op, inputs, mesh, in_specs, name, **kw):
    return _plan.dense_run(op, inputs, mesh=mesh, in_specs=in_specs, name=f"linalg.{name}",
                           kw=tuple(sorted(kw.items())))


# ---- LU ------------------------------------------------------------------------------------

def lu_factor(a, overwrite_a=False, check_finite=True, *, mesh=None, in_specs=None,
              return_status=False, check=False):
    """LU factorization with partial pivoting, P A = L U, as ``jax.scipy.linalg.lu_factor``:
    ``(lu, piv)``, ``lu`` (M x N, L's unit diagonal implicit) sharded by rows like ``a``,
    ``piv`` (min(M, N), int32, LAPACK's 0-based row interchanges) replicated.

    A singular matrix is factored completely, as LAPACK does; its ``info`` (with
    ``return_status=True``) is the 1-based index of the first zero pivot, and
    ``check=True`` raises ``numpy.linalg.LinAlgError`` for it (outside jit)."""
    del overwrite_a, check_finite
    a = as_matrix(a, "lu_factor")
    if is_empty(a):
        lu, piv = jax.scipy.linalg.lu_factor(a)
        return _finish((lu, piv), jnp.zeros(a.shape[:-2], jnp.int32), "lu_factor",
                       _SINGULAR, return_status, check)

    def one(a):
        return _run("lu_factor", (a,), mesh, in_specs, "lu_factor")

    lu, piv, info = over_batch(one, a.ndim - 2, a)
    return _finish((lu, piv), info, "lu_factor", _SINGULAR, return_status, check)


def lu_solve(lu_and_piv, b, trans=0, overwrite_b=False, check_finite=True, *, mesh=None,
             in_specs=None):
    """Solves A x = b (``trans=0``), Aᵀ x = b (1) or Aᴴ x = b (2) with the factorization of
    ``lu_factor``, as ``jax.scipy.linalg.lu_solve``; x replicated."""
    del overwrite_b, check_finite
    if trans not in (0, 1, 2):
        raise ValueError(f"jaxmg.linalg.lu_solve: trans must be 0, 1 or 2, got {trans!r}")
    lu, piv = lu_and_piv
    lu = as_matrix(lu, "lu_solve", square=True)
    nbatch = lu.ndim - 2
    b, vector, dtype = as_rhs(b, lu.shape[-1], lu.dtype, "lu_solve", nbatch)
    lu = lu.astype(dtype)
    piv = jnp.asarray(piv).astype(jnp.int32)
    if is_empty(lu) or is_empty(b):
        return jax.scipy.linalg.lu_solve((lu, piv), b, trans=trans)

    def one(lu, piv, b):
        return _run("lu_solve", (lu, piv, b), mesh, in_specs, "lu_solve", trans=int(trans))[0]

    return over_batch(one, nbatch, lu, piv, b)


GENERAL_ENGINES = ("auto", "gather", "cusolvermp", "cusolvermg")


def _general_engine(engine, a, mesh, in_specs, op: str) -> str:
    """The route of a general op: ``gather`` (every device gathers; any platform),
    ``cusolvermp`` (distributed over GPUs: asked for, or ``auto`` on a mesh over several
    processes where the engine is available), or ``cusolvermg`` (the general solve over the
    GPUs of one process: asked for, or ``auto`` where the gathered matrix would not fit a
    GPU, by the memory rule of the other ops, ``_engines.SINGLE_COPIES``)."""
    if engine not in GENERAL_ENGINES:
        raise ValueError(f"jaxmg.linalg.{op}: engine for general matrices must be one of "
                         f"{GENERAL_ENGINES}, got {engine!r}")
    if engine == "gather" or (engine == "auto" and op != "solve" and jax.process_count() == 1):
        return "gather"
    place = _mesh.resolve(a, mesh, in_specs, f"linalg.{op}")
    if engine in ("cusolvermp", "cusolvermg"):
        eng = _engines.ENGINES[engine]
        why = (eng.refuses("getrs", place, _mpmd.in_this_process(place.mesh))
               if engine == "cusolvermg" else eng.refuses("potrs", place, True))
        if engine == "cusolvermg" and op != "solve":
            why = why or f"engine 'cusolvermg' runs the general solve only, not {op}"
        if why:
            raise ValueError(f"jaxmg.linalg.{op}: {why}")
        return engine
    if _engines.multi_process(place):
        even = op != "eigh" or a.shape[-1] % place.ndev == 0
        return "cusolvermp" if even else "gather"
    if (op == "solve" and place.platform == "gpu" and place.ndev > 1
            and _mpmd.in_this_process(place.mesh)
            and not _engines.fits_one_device(place, a.shape[-1], a.dtype)):
        return "cusolvermg"
    return "gather"


def _mg_solve(a, b, mesh, in_specs, T_A=None):
    """``solve(a, b, assume_a="gen")`` on the cuSOLVERMg engine: (x, info), A padded with
    the identity to a multiple of the row devices (shards that ``T_A`` does not divide are
    padded too)."""
    plan, a_p, b_p, _ = _plan.plan("getrs", a, T_A, mesh, in_specs, True, "cusolvermg", b=b,
                                   name="linalg.solve")
    timeout = _config.get_timeout()
    fwd = _engines.program("cusolvermg", "getrs", plan.place, plan.geo, timeout=timeout)
    bwd = _engines.program("cusolvermg", "getrs_t", plan.place, plan.geo, timeout=timeout)
    x, info = _solver(fwd, bwd, plan.place)(a_p, b_p)
    return x[:plan.n], info[0]


@functools.lru_cache(maxsize=64)
def _solver(fwd, bwd, place):
    """``(a, b) -> (x, info[1])`` of a general A from the distributed programs ``fwd``
    (A x = b) and ``bwd`` (Aᵀ x = b), differentiable: one factorization undifferentiated;
    the tangent dx = A⁻¹ (db − dA x) through ``lax.custom_linear_solve`` with the sharded
    product A x and the two solves (its transpose, the reverse mode, solves with Aᵀ), so that
    no device ever holds the whole matrix (each of those solves factors again)."""
    mv = _rules.matvec_program(place)

    @jax.custom_jvp
    def solve(a, b):
        return fwd(a, b)

    @solve.defjvp
    def _jvp(primals, tangents):
        a, b = primals
        da, db = tangents
        x, info = solve(a, b)
        r = _spmd.conform(db - mv(da, x), place.mesh, P())
        a0 = jax.lax.stop_gradient(a)
        dx = jax.lax.custom_linear_solve(
            lambda v: mv(a0, v), r, lambda _, y: fwd(a0, y)[0], lambda _, y: bwd(a0, y)[0],
            symmetric=False)
        return (x, info), (dx, _rules.float0_like(info))

    return solve


def _run_distributed(op, a, b, mesh, in_specs, name):
    """``op`` on the cuSOLVERMp engine (``cusolvermp.GENERAL``). For the solve, A padded
    to a multiple of the row devices with the identity (A ⊕ I: the solution of the leading
    block is A's) and b with zero rows; the generalized eigenproblem needs rows that split
    evenly (no padding keeps its spectrum apart: the generalized eigenvalues have no bound
    known in advance). Returns the outputs, cut back, with info as a scalar."""
    place = _mesh.resolve(a, mesh, in_specs, f"linalg.{name}")
    n = a.shape[-1]
    n_even = _plan.even_split(n, place.ndev)
    _, ins, outs = cusolvermp.GENERAL[op]
    if ins[1] == "rows" and n_even != n:
        raise ValueError(f"jaxmg.linalg.{name}: engine 'cusolvermp' needs the {n} rows to "
                         f"split evenly over the {place.ndev} row devices for the generalized "
                         "eigenproblem; pass engine='gather' (or pad the problem)")
    if ins[1] != "rows":
        a, b = _plan.pad_to_split(a, b, n_even, "potrs")
    args = [_mesh.place(x, NamedSharding(place.mesh, place.spec if k == "rows" else P()))
            for x, k in zip((a, b), ins)]
    if op == "solve_gen":
        res = _solver(cusolvermp.general_program("solve_gen", place, n_even),
                      cusolvermp.general_program("solve_gen_t", place, n_even), place)(*args)
    else:
        vec = cusolvermp.general_program("eigh_gen", place, n_even)
        val = cusolvermp.general_program(op, place, n_even) if op == "eigvalsh_gen" else None
        res = _rules.generalized_eigh(place, vec, val)(*args)
    *vals, info = res
    vals = [vals[0][:n], vals[1][:n, :n]] if op == "eigh_gen" else [vals[0][:n]]
    return (*vals, info[0])


def solve_gen(a, b, nbatch: int, *, mesh, in_specs, return_status, check, engine="auto",
              T_A=None):
    """``solve(a, b, assume_a="gen")`` of ``a`` and ``b`` with equal batch dimensions (N or
    N x k after them): LU with partial pivoting; NaN and info > 0 (the first zero pivot)
    for a singular matrix. ``engine``: ``GENERAL_ENGINES``."""
    dtype = _plan.promote(a.dtype, b.dtype, "linalg.solve")
    route = _general_engine(engine, a, mesh, in_specs, "solve")

    def one(a, b):
        if route in ("cusolvermp", "cusolvermg"):
            vec = b.ndim == 1
            b2 = b[:, None] if vec else b
            x, info = (_mg_solve(a, b2, mesh, in_specs, T_A) if route == "cusolvermg" else
                       _run_distributed("solve_gen", a, b2, mesh, in_specs, "solve"))
            return (x[:, 0] if vec else x), info
        return _run("solve_gen", (a, b), mesh, in_specs, "solve")

    x, info = over_batch(one, nbatch, a.astype(dtype), b.astype(dtype))
    return _finish(x, info, "solve", _SINGULAR, return_status, check)


def det(a, overwrite_a=False, check_finite=True, *, mesh=None, in_specs=None):
    """The determinant of a square matrix (LU with partial pivoting), as
    ``jax.scipy.linalg.det``: a scalar in ``a``'s dtype, replicated (0 for a singular
    matrix)."""
    del overwrite_a, check_finite
    a = as_matrix(a, "det", square=True)
    if is_empty(a):
        return jnp.linalg.det(a)
    return over_batch(lambda a: _run("det", (a,), mesh, in_specs, "det")[0], a.ndim - 2, a)


def slogdet_gen(a, *, mesh=None, in_specs=None):
    """``(sign, log|det|)`` of a general square matrix through LU (``jnp.linalg.slogdet``)."""
    if is_empty(a):
        return jnp.linalg.slogdet(a)
    return over_batch(lambda a: _run("slogdet_gen", (a,), mesh, in_specs, "slogdet"),
                    a.ndim - 2, a)


# ---- Cholesky, QR, SVD, polar, least squares -------------------------------------------------

def cholesky(a, lower=False, overwrite_a=False, check_finite=True, *, mesh=None,
             in_specs=None, return_status=False, check=False):
    """The Cholesky factor of a Hermitian positive definite matrix, as
    ``jax.scipy.linalg.cholesky``: U with A = Uᴴ U (``lower=False``, the default) or L with
    A = L Lᴴ, reading only that triangle of ``a``; sharded by rows like ``a``, zero in the
    other triangle. Not positive definite: NaN and info > 0 (LAPACK's first failing
    pivot). ``jaxmg.linalg.cho_factor`` is the factor to solve with (it stays in the
    solver's distributed layout); this is the matrix itself."""
    del overwrite_a, check_finite
    a = as_matrix(a, "cholesky", square=True)
    if is_empty(a):
        return _finish(jax.scipy.linalg.cholesky(a, lower=lower),
                       jnp.zeros(a.shape[:-2], jnp.int32), "cholesky", _NOT_PD,
                       return_status, check)
    c, info = over_batch(lambda a: _run("cholesky", (a,), mesh, in_specs, "cholesky",
                                      lower=bool(lower)), a.ndim - 2, a)
    return _finish(c, info, "cholesky", _NOT_PD, return_status, check)


_QR_MODES = ("reduced", "complete", "r")


def qr(a, mode="reduced", *, mesh=None, in_specs=None, engine="auto"):
    """QR factorization, as ``jnp.linalg.qr``: ``QRResult(Q, R)`` with Q (M x K, K =
    min(M, N); M x M for ``mode="complete"``) sharded by rows like ``a`` and R (K x N)
    replicated; ``mode="r"`` returns R alone. ``"raw"`` raises ValueError.

    ``engine``: ``"auto"`` (the gathered route, or cuSOLVERMp's Geqrf + Orgqr on a GPU mesh
    over several processes where that engine is installed, for a tall ``a``, M >= N, and
    the reduced or R-only modes), ``"gather"``, or ``"cusolvermp"`` (those shapes and
    modes only); on cuSOLVERMp the derivative never gathers the matrix."""
    if mode not in _QR_MODES:
        raise ValueError(f"jaxmg.linalg.qr: mode must be one of {_QR_MODES}, got {mode!r}")
    a = as_matrix(a, "qr")
    if is_empty(a):
        return jnp.linalg.qr(a, mode=mode)
    route = _general_engine(engine, a, mesh, in_specs, "qr")
    fits = mode in ("reduced", "r") and a.shape[-2] >= a.shape[-1]
    if route == "cusolvermp" and not fits:
        if engine == "cusolvermp":
            raise ValueError("jaxmg.linalg.qr: engine 'cusolvermp' computes the reduced QR "
                             f"(or R) of a tall matrix, M >= N; got mode={mode!r} and shape "
                             f"{tuple(a.shape)} (pass engine='gather')")
        route = "gather"
    if route == "cusolvermp":
        q, r = over_batch(lambda a: _qr_distributed(a, mesh, in_specs), a.ndim - 2, a)
        return r if mode == "r" else QRResult(q, r)
    if mode == "r":
        return over_batch(lambda a: _run("qr_r", (a,), mesh, in_specs, "qr")[0], a.ndim - 2, a)
    q, r = over_batch(lambda a: _run("qr", (a,), mesh, in_specs, "qr", mode=mode),
                    a.ndim - 2, a)
    return QRResult(q, r)


def _qr_distributed(a, mesh, in_specs):
    """The reduced QR of a tall ``a`` on cuSOLVERMp: rows padded with zeros to a multiple of
    the row devices (Q of [A; 0] is [Q; 0], R is A's)."""
    place = _mesh.resolve(a, mesh, in_specs, "linalg.qr")
    m, n = a.shape
    m_even = _plan.even_split(m, place.ndev)
    if m_even != m:
        a = jnp.pad(a, ((0, m_even - m), (0, 0)))
    a = _mesh.place(a, NamedSharding(place.mesh, place.spec))
    q, r, _ = _rules.qr(place, cusolvermp.qr_program(place, m_even, n))(a)
    return q[:m], r


def svd(a, full_matrices=True, compute_uv=True, hermitian=False, subset_by_index=None, *,
        mesh=None, in_specs=None, engine="auto"):
    """Singular value decomposition, as ``jnp.linalg.svd``: ``SVDResult(U, S, Vh)`` with U
    (M x M, or M x K with ``full_matrices=False``) sharded by rows like ``a``, S (K,
    descending) and Vh (N x N or K x N) replicated; S alone with ``compute_uv=False``.
    ``hermitian`` changes nothing (the general algorithm runs); ``subset_by_index`` raises
    NotImplementedError, as ``jnp.linalg.svd`` does on CPU and GPU. ``engine``: ``"auto"``,
    ``"gather"`` or ``"cusolvermp"`` (a tall ``a`` and ``full_matrices=False`` or
    ``compute_uv=False``: its distributed QR, then the N x N SVD of R; ``auto`` takes it on
    a GPU mesh over several processes)."""
    del hermitian
    if subset_by_index is not None:
        raise NotImplementedError("jaxmg.linalg.svd: subset_by_index is not implemented")
    a = as_matrix(a, "svd")
    if is_empty(a):
        return jnp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)
    if _tall_route(engine, a, mesh, in_specs, "svd", ok=not (full_matrices and compute_uv)):
        if not compute_uv:
            return over_batch(lambda a: _tall_svd(a, mesh, in_specs, False)[1], a.ndim - 2, a)
        return SVDResult(*over_batch(lambda a: _tall_svd(a, mesh, in_specs, True), a.ndim - 2,
                                     a))
    if not compute_uv:
        return over_batch(lambda a: _run("svd_values", (a,), mesh, in_specs, "svd")[0],
                        a.ndim - 2, a)
    u, s, vh = over_batch(lambda a: _run("svd", (a,), mesh, in_specs, "svd",
                                       full_matrices=bool(full_matrices)), a.ndim - 2, a)
    return SVDResult(u, s, vh)


def polar(a, side="right", *, method="qdwh", eps=None, max_iterations=None, mesh=None,
          in_specs=None, engine="auto"):
    """Polar decomposition, as ``jax.scipy.linalg.polar``: ``(u, p)`` with A = U P
    (``side="right"``, P N x N) or A = P U (``"left"``, P M x M); U (M x N) sharded by rows
    like ``a``, P sharded by rows for ``"left"`` and replicated for ``"right"``.
    ``method`` is ``"qdwh"`` or ``"svd"``; ``eps`` and ``max_iterations`` other than None
    raise NotImplementedError. ``engine`` as in ``svd`` (``side="right"`` of a tall ``a``
    on cuSOLVERMp, through the SVD, whatever ``method``)."""
    if side not in ("right", "left"):
        raise ValueError(f"jaxmg.linalg.polar: side must be 'right' or 'left', got {side!r}")
    if method not in ("qdwh", "svd"):
        raise ValueError(f"jaxmg.linalg.polar: method must be 'qdwh' or 'svd', got {method!r}")
    if eps is not None or max_iterations is not None:
        raise NotImplementedError("jaxmg.linalg.polar: eps and max_iterations are not "
                                  "implemented (the defaults of jax.scipy.linalg.polar run)")
    a = as_matrix(a, "polar")
    if is_empty(a):
        return jax.scipy.linalg.polar(a, side=side, method=method)
    if _tall_route(engine, a, mesh, in_specs, "polar", ok=side == "right"):
        def one(a):
            u, s, vh = _tall_svd(a, mesh, in_specs, True)
            p = (jnp.conj(vh).T * s.astype(vh.dtype)) @ vh
            return u @ vh, (p + jnp.conj(p).T) / 2

        return over_batch(one, a.ndim - 2, a)
    return over_batch(lambda a: _run(f"polar_{side}", (a,), mesh, in_specs, "polar",
                                   side=side, method=method), a.ndim - 2, a)


def lstsq(a, b, rcond=None, *, numpy_resid=False, mesh=None, in_specs=None, engine="auto"):
    """Least-squares solution of A x = b, as ``jnp.linalg.lstsq``: ``(x, resid, rank, s)``,
    all replicated (SVD-based: any shape, any rank; ``rcond`` as there). ``numpy_resid``
    raises NotImplementedError unless False. ``engine`` as in ``svd`` (a tall ``a`` on
    cuSOLVERMp)."""
    if numpy_resid:
        raise NotImplementedError("jaxmg.linalg.lstsq: numpy_resid=True is not implemented")
    a = as_matrix(a, "lstsq")
    if a.ndim != 2:
        raise ValueError(f"jaxmg.linalg.lstsq: 'a' must be a matrix (batches are not "
                         f"supported, as in jnp.linalg.lstsq), got shape {tuple(a.shape)}")
    b, vector, dtype = as_rhs(b, a.shape[0], a.dtype, "lstsq", 0)
    a = a.astype(dtype)
    if is_empty(a) or is_empty(b):
        return jnp.linalg.lstsq(a, b, rcond=rcond)
    rc = None if rcond is None else float(rcond)
    if _tall_route(engine, a, mesh, in_specs, "lstsq"):
        u, s, vh = _tall_svd(a, mesh, in_specs, True)
        b2 = b[:, None] if b.ndim == 1 else b
        x, resid, rank = _lstsq_from_svd(a, b2, u, s, vh, rc)
        return (x[:, 0] if b.ndim == 1 else x), (resid[0] if b.ndim == 1 else resid), rank, s
    x, resid, rank, s = _run("lstsq", (a, b), mesh, in_specs, "lstsq", rcond=rc)
    return x, resid, rank, s


def _tall_route(engine, a, mesh, in_specs, op: str, ok: bool = True) -> bool:
    """Whether ``op`` runs through cuSOLVERMp's QR (``_tall_svd``): ``engine="cusolvermp"``
    (refused with a clear error for a wide ``a`` or an output it cannot give), or
    ``"auto"`` on a GPU mesh over several processes where the engine is installed, for a
    tall ``a`` (M >= N) and outputs it gives (``ok``)."""
    route = _general_engine(engine, a, mesh, in_specs, op)
    tall = a.shape[-2] >= a.shape[-1]
    if route == "cusolvermp" and engine == "cusolvermp" and not (tall and ok):
        raise ValueError(f"jaxmg.linalg.{op}: engine 'cusolvermp' takes a tall matrix "
                         f"(M >= N; got shape {tuple(a.shape)}) and the reduced outputs "
                         "(svd with full_matrices=False or compute_uv=False, polar with "
                         "side='right'); pass engine='gather'")
    return route == "cusolvermp" and tall and ok


def _tall_svd(a, mesh, in_specs, compute_uv: bool):
    """(U, S, Vh) of a tall ``a`` (M >= N) from its distributed QR: A = Q R, R = U_R S Vh
    (N x N, replicated on every device), U = Q U_R (row by row, sharded like Q). Memory
    O(M N / P + N²) per device; the derivative is the QR rule's and JAX's SVD rule of R."""
    q, r = _qr_distributed(a, mesh, in_specs)
    if not compute_uv:
        return None, jnp.linalg.svd(r, compute_uv=False), None
    ur, s, vh = jnp.linalg.svd(r, full_matrices=False)
    return q @ ur, s, vh


def _lstsq_from_svd(a, b, u, s, vh, rcond):
    """``jnp.linalg.lstsq``'s (x, resid, rank) from the SVD of ``a``: singular values below
    rcond s_max (default eps max(M, N)) dropped, x = V S⁺ Uᴴ b, resid = |b - A x|² per
    column."""
    m, n = a.shape
    if rcond is None:
        rcond = float(jnp.finfo(a.dtype).eps) * max(m, n)
    elif rcond < 0:
        rcond = float(jnp.finfo(a.dtype).eps)
    mask = (s > 0) & (s >= jnp.asarray(rcond, s.dtype) * s[0])
    s_inv = jnp.where(mask, 1 / jnp.where(mask, s, 1), 0).astype(a.dtype)[:, None]
    hi = jax.lax.Precision.HIGHEST
    x = jnp.matmul(jnp.conj(vh).T, s_inv * jnp.matmul(jnp.conj(u).T, b, precision=hi),
                   precision=hi)
    resid = jnp.sum(jnp.abs(b - jnp.matmul(a, x, precision=hi)) ** 2, axis=0)
    return x, resid, mask.sum()


# ---- the generalized Hermitian eigenproblem -------------------------------------------------

def eigh_gen(a, b, reads: str, subset, vectors: bool, *, mesh, in_specs, engine="auto"):
    """``eigh(a, b)``: A v = λ B v, B Hermitian positive definite (the same triangle or
    Hermitian part of both read); V B-orthonormal, sharded by rows. Returns ``(w, v or None,
    info)``; info = N + k when B's leading minor of order k is not positive definite.
    ``engine``: ``GENERAL_ENGINES`` (cuSOLVERMp's Sygvd computes the whole spectrum; a
    subset is cut from it)."""
    dtype = _plan.promote(a.dtype, b.dtype, "linalg.eigh")
    a, b = a.astype(dtype), b.astype(dtype)
    if tuple(b.shape) != tuple(a.shape):
        raise ValueError(f"jaxmg.linalg.eigh: 'b' must have the shape of 'a' "
                         f"{tuple(a.shape)}, got {tuple(b.shape)}")
    op = "eigh_gen" if vectors else "eigvalsh_gen"
    route = _general_engine(engine, a, mesh, in_specs, "eigh")

    def one(a, b):
        if route == "cusolvermp":
            h, hb = dense.hermitian(a, reads), dense.hermitian(b, reads)
            out = _run_distributed(op, h, hb, mesh, in_specs, "eigh")
            if subset is not None:
                lo, hi = subset
                out = (out[0][lo:hi], *((out[1][:, lo:hi],) if vectors else ()), out[-1])
            return out if vectors else (out[0], None, out[1])
        out = _run(op, (a, b), mesh, in_specs, "eigh", reads=reads, subset=subset,
                   vectors=bool(vectors))
        return out if vectors else (out[0], None, out[1])

    return over_batch(one, a.ndim - 2, a, b)


def eigh_subset(a, reads: str, subset, vectors: bool, *, mesh, in_specs):
    """``eigh(a, subset_by_index=...)``: eigenpairs subset = (lo, hi) (half-open) of the
    Hermitian ``a`` by the subset eigensolver (the tridiagonal reduction and hi - lo
    eigenpairs only). Returns ``(w, v or None, info)``, V sharded by rows."""
    op = "eigh_subset" if vectors else "eigvalsh_subset"

    def one(a):
        out = _run(op, (a,), mesh, in_specs, "eigh", reads=reads, subset=subset,
                   vectors=bool(vectors))
        return out if vectors else (out[0], None, out[1])

    return over_batch(one, a.ndim - 2, a)
