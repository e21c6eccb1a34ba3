"""A ``jax.scipy.linalg``-style face over jaxmg's distributed ops.

Every function takes a matrix sharded by rows (``P(axis, None)``; mesh and spec inferred
from ``a.sharding`` like ``jaxmg.potrs``, or given with ``mesh=``/``in_specs=``) and follows
jaxmg's failure policy: a matrix that is not positive definite (or an eigensolver that does
not converge) is not an exception but NaN in the outputs, with LAPACK's ``info`` available
through ``return_status=True``. ``check=True`` turns a nonzero ``info`` into
``numpy.linalg.LinAlgError``; it needs concrete results, so it is refused at trace time
inside ``jit`` (test ``info`` from ``return_status=True`` there instead).

- ``cho_factor`` / ``cho_solve``: factor once, solve many times; the factor stays on the
  devices in the solver's block-cyclic layout, as a pytree that passes through ``jit``.
- ``solve`` (``assume_a='pos'``), ``inv``, ``eigh``, ``slogdet``, ``logdet``.

Every function is differentiable (forward and reverse, any order, with the rule of its dense
twin; derivatives stay distributed and reuse the primal's factorization) and batches under
``vmap``. See docs/ops/linalg.md.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _api, _config, _ffi, _general, _plan, _rules
from ._api import potri
from ._general import (QRResult, SVDResult, cholesky, det, lstsq, lu_factor, lu_solve, polar,
                       qr, svd)
from ._geometry import Geometry, Placement

__all__ = [
    "CholeskyFactor",
    "cho_factor",
    "cho_solve",
    "solve",
    "inv",
    "eigh",
    "slogdet",
    "logdet",
    "EighResult",
    "SlogdetResult",
    "eigvalsh",
    "lu_factor",
    "lu_solve",
    "det",
    "cholesky",
    "qr",
    "svd",
    "polar",
    "lstsq",
    "QRResult",
    "SVDResult",
]


# ---- status policy ----------------------------------------------------------------------

_raise_if_failed = _plan.raise_if_failed


_NOT_PD = "the matrix is not positive definite"


# ---- the distributed Cholesky factor --------------------------------------------------

@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["factor", "info", "matrix"],
    meta_fields=["placement", "geometry", "lower", "order"],
)
@dataclasses.dataclass(frozen=True, eq=False)
class CholeskyFactor:
    """The Cholesky factor of a Hermitian positive definite matrix, left on the devices.

    ``factor`` is the distributed factor in the solver's own block-cyclic layout (padded to
    ``geometry.n_pad`` rows and columns, sharded by rows over ``placement``): it is an
    input to ``cho_solve``/``logdet``, not the matrix ``L`` of ``jax.scipy.linalg``.
    ``info`` is LAPACK's status of the factorization (int32 scalar; 0 = success, k > 0 = not
    positive definite at original row k, and then ``factor`` is NaN). ``lower`` is kept for
    ``jax.scipy.linalg`` compatibility and changes nothing.

    ``matrix`` is the factored matrix A itself (a reference, not a copy; None when
    ``cho_factor`` was called with ``donate=True``). It is what makes ``cho_solve`` and
    ``logdet`` differentiable w.r.t. A: their derivative rules use A (for A x) and the
    factor (for the solves); the factor array itself is never differentiated. Holding the
    reference keeps A alive as long as the factor lives.

    ``order`` is A's N; the factored matrix is A padded to ``geometry.n`` rows (a multiple of
    the row devices) with the identity, whose factor solves and logs A's (``matrix`` is that
    padded matrix).

    A pytree: the arrays are leaves and the layout is static, so factors pass in and out of
    ``jit``. Unpacking it like scipy's ``(c, lower)`` pair gives the factor itself and
    ``lower``, so ``c, low = cho_factor(a); cho_solve((c, low), b)`` works.
    """

    factor: jax.Array
    info: jax.Array
    placement: Placement
    geometry: Geometry
    lower: bool = False
    matrix: jax.Array | None = None
    order: int | None = None

    @property
    def n(self) -> int:
        return self.geometry.n if self.order is None else self.order

    @property
    def shape(self) -> tuple:
        """(N, N), or (..., N, N) for the factors of a batch of matrices."""
        return tuple(self.factor.shape[:-2]) + (self.n, self.n)

    @property
    def dtype(self):
        return self.factor.dtype

    def __iter__(self):
        return iter((self, self.lower))

    def _not_dense(self, *args, **kwargs):
        raise TypeError(
            "a jaxmg CholeskyFactor is not the dense triangular factor of "
            "jax.scipy.linalg.cho_factor (it is the factor of a permuted matrix, in the "
            "solver's block-cyclic layout, spread over the devices) and cannot be used as "
            "an array: solve with jaxmg.linalg.cho_solve, or take the log-determinant with "
            "jaxmg.linalg.logdet"
        )

    # jnp.asarray / np.asarray of a factor (e.g. inside jax.scipy.linalg.cho_solve).
    __jax_array__ = _not_dense
    __array__ = _not_dense


class EighResult(NamedTuple):
    """``eigh``'s ``(w, v)``, named as ``jnp.linalg.eigh``'s result."""

    eigenvalues: jax.Array
    eigenvectors: jax.Array


class SlogdetResult(NamedTuple):
    """``slogdet``'s ``(sign, logabsdet)``, named as ``jnp.linalg.slogdet``'s result."""

    sign: jax.Array
    logabsdet: jax.Array


# ---- inputs as JAX takes them ------------------------------------------------------------

def _matrix(a, op: str):
    """``a`` as a JAX function takes it (``_general.as_matrix``), square: (..., N, N), of a
    supported dtype (checked before anything else, empty matrices included)."""
    if isinstance(a, CholeskyFactor):
        raise TypeError(f"jaxmg.linalg.{op}: expected a matrix, got a CholeskyFactor")
    return _general.as_matrix(a, op, square=True)


def _rhs(b, a, op: str):
    """(b, vector, batch shape): ``b`` an array, N (or ..., N, with a batched ``a`` of one
    more dimension) or ..., N, k as ``jax.scipy.linalg.solve`` reads it; the batch shape
    that of ``a`` and ``b`` broadcast together."""
    if not isinstance(b, (jax.Array, jax.core.Tracer)):
        b = jnp.asarray(b)
    vector = b.ndim == 1 or b.ndim == a.ndim - 1
    b_batch = b.shape[:-1] if vector else b.shape[:-2]
    try:
        batch = np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b_batch))
    except ValueError:
        raise ValueError(f"jaxmg.linalg.{op}: the batch dimensions of 'a' {tuple(a.shape)} "
                         f"and 'b' {tuple(b.shape)} do not broadcast") from None
    return b, vector, batch


_over_batch = _general.over_batch


def _triangle(lower) -> str:
    return "lower" if lower else "upper"


# ---- empty inputs ------------------------------------------------------------------------
# A 0 x 0 matrix, a batch of none, or a right-hand side without columns: nothing to compute,
# so no engine runs (a device cannot hold a share of 0 rows) and the results are those of
# JAX's functions: empty arrays of the right shapes and dtypes, det = 1, info = 0.

_is_empty = _general.is_empty


def _ok(batch) -> jax.Array:
    return jnp.zeros(tuple(batch), jnp.int32)


def _real(dtype):
    return jnp.finfo(dtype).dtype


# ---- the Cholesky factor and its solves ----------------------------------------------------

def cho_factor(a, lower=False, overwrite_a=False, check_finite=True, *, T_A=None, mesh=None,
               in_specs=None, pad=True, check=False, donate=False) -> CholeskyFactor:
    """Cholesky factorization A = L L^H of a Hermitian positive definite matrix sharded by rows.

    On GPUs cuSOLVERMg's ``potrf``; on CPU devices a distributed tiled LAPACK Cholesky. The
    factor stays distributed (see ``CholeskyFactor``); solve with ``cho_solve``.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows (or ..., N, N: a batch,
        one factorization per matrix).
      lower: which triangle of ``a`` is read, as in ``jax.scipy.linalg.cho_factor``: the
        lower one (True) or the upper one (False, the default); the other is never read.
        The factor itself is always jaxmg's (see ``CholeskyFactor``), whatever ``lower``.
      overwrite_a, check_finite: accepted for ``jax.scipy.linalg`` compatibility; they
        change nothing (``donate=True`` is the way to reuse ``a``'s memory).
      T_A, mesh, in_specs, pad, donate: as for ``jaxmg.potrs``. With ``donate=True`` (on
        a concrete array) the factor does not keep ``a``, and ``cho_solve``/``logdet`` of it
        are differentiable w.r.t. ``b`` only.
      check: raise ``numpy.linalg.LinAlgError`` when A is not positive definite (outside
        jit only). Otherwise the failure is ``factor.info > 0`` and a NaN factor.

    Derivatives: the factor is a constant; ``cho_solve(cho_factor(a), b)`` and
    ``logdet(cho_factor(a))`` are differentiable w.r.t. ``a`` through the ``matrix`` the
    factor keeps (see ``CholeskyFactor``).
    """
    del overwrite_a, check_finite
    a = _matrix(a, "cho_factor")
    if _is_empty(a):
        return CholeskyFactor(a, _ok(a.shape[:-2]), None, None, bool(lower), a, a.shape[-1])
    fn = functools.partial(factor, lower=bool(lower), reads=_triangle(lower), T_A=T_A,
                           mesh=mesh, in_specs=in_specs, pad=pad, donate=donate)
    out = _over_batch(fn, a.ndim - 2, a)
    if check:
        _raise_if_failed(out.info, "cho_factor", _NOT_PD)
    return out


def factor(a, *, lower=False, reads=None, T_A=None, mesh=None, in_specs=None, pad=True,
           donate=False) -> CholeskyFactor:
    """``cho_factor`` of one matrix, read as ``reads`` says (``_rules.hermitian_input``;
    None: as given, as the ops read it)."""
    plan, a, _, _ = _plan.plan("potrf", a, T_A, mesh, in_specs, pad, engine=None,
                               name="cho_factor")
    place, geo = plan.place, plan.geo
    traced = isinstance(a, jax.core.Tracer)
    if reads is not None:
        a = _rules.hermitian_input(place, reads, bool(donate) and not traced)(a)
    # Tracers are never donated (donation happens at the jit boundary of concrete arrays),
    # so under a transformation the matrix is always kept and stays differentiable.
    keep = traced or not donate
    a_in = jax.lax.stop_gradient(a) if traced else a
    f, info = _rules.factor_program(place, geo, bool(donate))(a_in)
    return CholeskyFactor(f, info[0], place, geo, bool(lower), a if keep else None, plan.n)


def _as_factor(c_and_lower, op: str):
    """A ``CholeskyFactor``, or ``(c, lower)`` with ``c`` a dense array (a factor from
    ``jax.scipy.linalg.cho_factor``)."""
    if isinstance(c_and_lower, CholeskyFactor):
        return c_and_lower
    if isinstance(c_and_lower, (tuple, list)) and len(c_and_lower) == 2:
        c, lower = c_and_lower
        if isinstance(c, CholeskyFactor):
            return c
        if hasattr(c, "shape") and hasattr(c, "dtype"):
            return (c, bool(lower))
    raise TypeError(
        f"jaxmg.linalg.{op}: expected the result of jaxmg.linalg.cho_factor, a (factor, "
        f"lower) pair of it, or the (c, lower) pair of jax.scipy.linalg.cho_factor; got "
        f"{type(c_and_lower).__name__}"
    )


@functools.lru_cache(maxsize=256)
def _cho_solve_program(place: Placement, geo: Geometry, timeout: float):
    del timeout  # part of the cache key: read at trace time
    return jax.jit(lambda f, a, b: _rules.solve(place, geo, f, a, b))


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True, *, return_status=False,
              check=False):
    """Solves A x = b given the factor of A from ``cho_factor`` (one factorization, any
    number of solves; the factor is only read).

    Args:
      c_and_lower: a ``CholeskyFactor`` or a ``(factor, lower)`` pair. The ``(c, lower)``
        pair of ``jax.scipy.linalg.cho_factor`` (a dense triangular ``c``) is solved as
        ``jax.scipy.linalg.cho_solve`` solves it (dense triangular solves where ``c`` is).
      b: N or N x k right-hand side (replicated; resharded if needed); with a batched
        factor, ..., N or ..., N, k.
      overwrite_b, check_finite: accepted for compatibility; ignored.
      return_status: also return the factorization's ``info`` (0 for a dense ``c``).
      check: raise ``numpy.linalg.LinAlgError`` when the factorization had failed.

    Returns:
      x with the shape of ``b``, replicated (NaN when the factorization failed);
      ``(x, info)`` with ``return_status``.

    Derivatives w.r.t. ``b`` and w.r.t. the factored matrix (kept by the factor), forward
    and reverse: dx = A⁻¹ (db − dA x), b̄ = A⁻ᵀ x̄, Ā = −b̄ xᵀ, every solve with the same
    factor (no new factorization).
    """
    del overwrite_b, check_finite
    fac = _as_factor(c_and_lower, "cho_solve")
    if isinstance(fac, tuple):  # jax.scipy.linalg's dense factor
        x = jax.scipy.linalg.cho_solve(fac, b)
        return (x, jnp.zeros((), jnp.int32)) if return_status else x
    nbatch = fac.factor.ndim - 2
    b = b if isinstance(b, (jax.Array, jax.core.Tracer)) else jnp.asarray(b)
    vector = b.ndim == nbatch + 1
    lead = b.shape[: b.ndim - (1 if vector else 2)]
    if nbatch and tuple(lead) != tuple(fac.factor.shape[:nbatch]):
        b = jnp.broadcast_to(b, tuple(fac.factor.shape[:nbatch]) + b.shape[len(lead):])
    if fac.geometry is None or _is_empty(b):  # an empty factor or no right-hand side
        if b.ndim < nbatch + 1 or b.shape[nbatch] != fac.n:
            raise ValueError(f"jaxmg.cho_solve: 'b' must have {fac.n} rows to match 'a', "
                             f"got shape {tuple(b.shape)}")
        x = jnp.zeros(b.shape, _plan.promote(fac.factor.dtype, b.dtype, "cho_solve"))
        if check:
            _raise_if_failed(fac.info, "cho_solve", _NOT_PD)
        return (x, fac.info) if return_status else x
    x = _over_batch(_solve_one, nbatch, fac, b)
    if check:
        _raise_if_failed(fac.info, "cho_solve", _NOT_PD)
    return (x, fac.info) if return_status else x


def _solve_one(fac: CholeskyFactor, b):
    b2, vector, dtype = _plan.check_rhs(b, fac.n, fac.factor.dtype, "cho_solve")
    if vector:
        b2 = b2[:, None]
    n_solved = fac.geometry.n
    if n_solved != fac.n:  # the padded matrix's solution is A's, padded with zeros
        b2 = jnp.pad(b2, ((0, n_solved - fac.n), (0, 0)))
    factor, matrix = fac.factor, fac.matrix
    if jnp.dtype(factor.dtype) != dtype:  # b is wider: the solve runs in b's precision
        factor = factor.astype(dtype)
        matrix = None if matrix is None else matrix.astype(dtype)
    _ffi.ensure_backends()
    x = _cho_solve_program(fac.placement, fac.geometry, _config.get_timeout())(
        factor, matrix, b2)
    return x[: fac.n, 0] if vector else x[: fac.n]


# ---- solve, inv, eigh ----------------------------------------------------------------------

_POS = {"pos", "positive definite"}
_HER = {"her", "hermitian"}
_SYM = {"sym", "symmetric"}
_GEN = {"gen", "general"}


def solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True,
          assume_a="pos", *, T_A=None, mesh=None, in_specs=None, pad=True, return_status=False,
          check=False, donate=False, engine="auto"):
    """Solves A x = b for Hermitian positive definite A sharded by rows (``jaxmg.potrs``).

    As ``jax.scipy.linalg.solve(a, b, lower, assume_a="pos")``: the triangle of ``a`` that
    ``lower`` names is read (the upper one by default); ``b`` is N or N x k, or with a
    batch of matrices (..., N, N) a batch of right-hand sides (..., N or ..., N, k, batch
    dimensions broadcast), promoted with ``a`` as ``jnp.linalg.solve`` promotes.

    ``assume_a='gen'`` solves a general matrix by LU with partial pivoting (the gathered
    route, ``jaxmg.linalg.lu_factor``; a singular matrix gives NaN and info > 0, the first
    zero pivot). Otherwise A must be positive definite: ``assume_a`` may be ``'pos'`` (the
    default, where JAX's is ``'gen'``), ``'her'``, or ``'sym'`` for a real matrix, which are
    accepted but still need A positive definite (an indefinite A gives NaN and info > 0, or
    LinAlgError with ``check=True``, where JAX would use LU). ``'sym'`` with a complex
    matrix (complex symmetric, A = Aᵀ) and other values raise ValueError.
    ``overwrite_*`` and ``check_finite`` are accepted and ignored.

    ``engine`` as in ``jaxmg.potrs`` for positive definite matrices; for ``assume_a='gen'``
    ``"auto"`` (the gathered route; cuSOLVERMp's LU on a GPU mesh over several processes
    where that engine is installed; cuSOLVERMg's LU over the GPUs of one process where the
    gathered matrix would not fit a GPU), ``"gather"``, ``"cusolvermp"`` or ``"cusolvermg"``
    (``T_A`` is its tile there).
    """
    del overwrite_a, overwrite_b, check_finite
    kind = str(assume_a).lower()
    if kind not in _POS | _HER | _SYM | _GEN:
        raise ValueError(
            f"jaxmg.linalg.solve: assume_a={assume_a!r} is not supported; jaxmg solves "
            "general systems (assume_a='gen') and Hermitian positive definite ones "
            "(assume_a='pos', 'her', or 'sym' for a real matrix, with a positive definite "
            "matrix)."
        )
    a = _matrix(a, "solve")
    if kind in _SYM and jnp.issubdtype(a.dtype, jnp.complexfloating):
        raise ValueError(
            "jaxmg.linalg.solve: assume_a='sym' with a complex matrix means complex symmetric "
            "(A = Aᵀ), which jaxmg does not solve as such; for a Hermitian positive definite "
            "matrix pass assume_a='pos' (or 'her'), for a complex symmetric one "
            "assume_a='gen' (LU)"
        )
    b, vector, batch = _rhs(b, a, "solve")
    if _is_empty(a) or _is_empty(b):
        if b.shape[-1 if vector else -2] != a.shape[-1]:
            raise ValueError(f"jaxmg.linalg.solve: 'b' must have {a.shape[-1]} rows to match "
                             f"'a', got shape {tuple(b.shape)}")
        tail = b.shape[-1:] if vector else b.shape[-2:]
        x = jnp.zeros(batch + tail, _plan.promote(a.dtype, b.dtype, "linalg.solve"))
        return (x, _ok(batch)) if return_status else x
    if batch:
        a = jnp.broadcast_to(a, batch + a.shape[-2:])
        b = jnp.broadcast_to(b, batch + (b.shape[-1:] if vector else b.shape[-2:]))
    if kind in _GEN:
        return _general.solve_gen(a, b, len(batch), mesh=mesh, in_specs=in_specs,
                                  return_status=return_status, check=check, engine=engine,
                                  T_A=T_A)
    one = functools.partial(_api.solve_call, T_A=T_A, mesh=mesh, in_specs=in_specs,
                            return_status=True, pad=pad, donate=donate, engine=engine,
                            reads=_triangle(lower), name="linalg.solve")
    x, info = _over_batch(one, len(batch), a, b)
    if check:
        _raise_if_failed(info, "solve", _NOT_PD)
    return (x, info) if return_status else x


def inv(a, overwrite_a=False, check_finite=True, *, T_A=None, mesh=None, in_specs=None,
        pad=True, return_status=False, check=False, donate=False):
    """Inverse of a Hermitian positive definite matrix sharded by rows (``jaxmg.potri``);
    the full inverse, sharded like ``a`` (a batch ..., N, N: one inverse per matrix).

    ``a`` goes to the solver as given and must be Hermitian positive definite (``jnp.linalg``
    and ``jax.scipy.linalg`` invert any nonsingular matrix); the derivative is that of the
    inverse, -X dA X, in every direction. For general matrices use ``jnp.linalg.inv``."""
    del overwrite_a, check_finite
    a = _matrix(a, "inv")
    if _is_empty(a):
        x = jnp.zeros(a.shape, a.dtype)
        return (x, _ok(a.shape[:-2])) if return_status else x
    fn = functools.partial(potri, T_A=T_A, mesh=mesh, in_specs=in_specs, return_status=True,
                           pad=pad, donate=donate)
    x, info = _over_batch(fn, a.ndim - 2, a)
    if check:
        _raise_if_failed(info, "inv", _NOT_PD)
    return (x, info) if return_status else x


def eigh(a, b=None, lower=True, eigvals_only=False, overwrite_a=False, overwrite_b=False,
         turbo=True, eigvals=None, type=1, check_finite=True, *, subset_by_index=None,
         UPLO=None, symmetrize_input=True, T_A=None, mesh=None, in_specs=None, pad=True,
         return_status=False, check=False, donate=False, engine="auto"):
    """Eigenvalues (ascending, replicated) and eigenvectors (columns, sharded by rows like
    ``a``) of a Hermitian matrix sharded by rows (``jaxmg.syevd``), with the signature of
    ``jax.scipy.linalg.eigh`` and the keywords of ``jnp.linalg.eigh``.

    Returns ``w`` with ``eigvals_only``, else ``EighResult(eigenvalues, eigenvectors)`` (a
    named tuple, ``(w, v)`` in ``jax.scipy.linalg.eigh``'s order); ``return_status``
    appends LAPACK's ``info``. A batch (..., N, N) gives one decomposition per matrix.

    Which entries are read, as in JAX: with ``symmetrize_input=True`` (the default) the
    Hermitian part (A + Aᴴ) / 2 (so ``lower`` changes nothing, as in JAX); with
    ``symmetrize_input=False`` the triangle that ``UPLO`` (``'L'``/``'U'``) or, without it,
    ``lower`` names. Derivatives are those of that function of ``a``.

    ``b`` (Hermitian positive definite, the same shape, read the same way as ``a``) gives
    the generalized problem A v = λ B v, eigenvectors B-orthonormal (Vᴴ B V = I), as
    ``scipy.linalg.eigh(a, b)`` (which JAX does not implement): B = L Lᴴ, the standard
    problem of L⁻¹ A L⁻ᴴ, V = L⁻ᴴ W, on the gathered route (docs/ops/linalg.md); a ``b``
    that is not positive definite gives NaN and info = N + k (LAPACK's, k its first
    failing pivot). ``subset_by_index=(lo, hi)`` (SciPy's, inclusive; ``eigvals`` is its
    older name) keeps eigenpairs lo..hi only: the eigenvalues ``hi - lo + 1`` and the
    matching columns of V. ``type`` other than 1 raises NotImplementedError;
    ``overwrite_*``, ``turbo`` and ``check_finite`` change nothing. ``engine``: as in
    ``jaxmg.syevd`` for the standard problem; for the generalized one ``"auto"``,
    ``"gather"`` or ``"cusolvermp"`` (cuSOLVERMp's Sygvd, distributed; ``auto`` takes it on
    a GPU mesh over several processes where it is installed).
    """
    del overwrite_a, overwrite_b, turbo, check_finite
    if type != 1:
        raise NotImplementedError("jaxmg.linalg.eigh: only the type=1 case is implemented")
    if eigvals is not None and subset_by_index is not None:
        raise ValueError("jaxmg.linalg.eigh: pass subset_by_index or eigvals, not both")
    subset = subset_by_index if subset_by_index is not None else eigvals
    if UPLO is not None:
        if UPLO not in ("L", "U"):
            raise ValueError(f"jaxmg.linalg.eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
        lower = UPLO == "L"
    reads = "hermitian" if symmetrize_input else _triangle(lower)
    a = _matrix(a, "eigh")
    keep = _subset(subset, a.shape[-1], "eigh")
    if _is_empty(a):
        w = jnp.zeros(a.shape[:-1], _real(a.dtype))
        res = w if eigvals_only else EighResult(w, jnp.zeros(a.shape, a.dtype))
        return (res, _ok(a.shape[:-2])) if return_status else res
    if b is not None:
        b = _matrix(b, "eigh")
        out = _general.eigh_gen(a, b, reads, keep, not eigvals_only, mesh=mesh,
                                in_specs=in_specs, engine=engine)
    elif keep is not None:
        out = _general.eigh_subset(a, reads, keep, not eigvals_only, mesh=mesh,
                                   in_specs=in_specs)
    else:
        fn = functools.partial(_api.eigh_call, T_A=T_A, mesh=mesh, in_specs=in_specs,
                               return_eigenvectors=not eigvals_only, return_status=True,
                               pad=pad, donate=donate, engine=engine, reads=reads,
                               name="linalg.eigh")
        out = _over_batch(fn, a.ndim - 2, a)
    info = out[-1]
    if check:
        what = "the eigensolver did not converge, or 'b' is not positive definite"
        _raise_if_failed(info, "eigh", what)
    res = out[0] if eigvals_only else EighResult(out[0], out[1])
    return (res, info) if return_status else res


def _subset(subset, n: int, op: str):
    """SciPy's inclusive ``subset_by_index=(lo, hi)`` as a half-open (lo, hi + 1), checked."""
    if subset is None:
        return None
    try:
        lo, hi = (int(i) for i in subset)
    except (TypeError, ValueError):
        raise ValueError(f"jaxmg.linalg.{op}: subset_by_index must be a pair (lo, hi) of "
                         f"indices, got {subset!r}") from None
    if not 0 <= lo <= hi < n:
        raise ValueError(f"jaxmg.linalg.{op}: subset_by_index=(lo, hi) needs "
                         f"0 <= lo <= hi < N = {n}, got {subset!r}")
    return lo, hi + 1


def eigvalsh(a, UPLO="L", *, symmetrize_input=True, subset_by_index=None, T_A=None, mesh=None,
             in_specs=None, pad=True, return_status=False, check=False, donate=False):
    """Eigenvalues of a Hermitian matrix sharded by rows, ascending and replicated, as
    ``jnp.linalg.eigvalsh`` (``eigh(..., eigvals_only=True)``: no eigenvectors computed);
    ``subset_by_index=(lo, hi)`` (inclusive, SciPy's) keeps those only."""
    return eigh(a, eigvals_only=True, UPLO=UPLO, symmetrize_input=symmetrize_input,
                subset_by_index=subset_by_index, T_A=T_A, mesh=mesh, in_specs=in_specs,
                pad=pad, return_status=return_status, check=check, donate=donate)


# ---- slogdet, logdet ---------------------------------------------------------------------

_SLOGDET_METHODS = (None, "lu", "qr")


def slogdet(a, *, method=None, T_A=None, mesh=None, in_specs=None, pad=True,
            return_status=False, check=False):
    """``SlogdetResult(sign, logabsdet)`` of a Hermitian positive definite matrix, from its
    Cholesky factor: log det A = 2 sum_i log L_ii, reduced over the devices that hold the
    diagonal. A batch (..., N, N) gives one pair per matrix.

    ``a`` may also be a ``CholeskyFactor`` from ``cho_factor`` (no new factorization).
    ``sign`` is 1 (in ``a``'s dtype). Only positive definite matrices, taken as given:
    otherwise both outputs are NaN (info > 0), where ``jnp.linalg.slogdet`` would use an LU
    factorization. ``method`` is accepted with ``jnp.linalg.slogdet``'s values (None,
    ``'lu'``, ``'qr'``): ``'lu'`` takes any square matrix and computes through LU with
    partial pivoting (the gathered route, as ``jaxmg.linalg.det``; a singular matrix gives
    sign 0 and -inf, as JAX), None and ``'qr'`` through the Cholesky factor (positive
    definite matrices only); others raise ValueError as in JAX.

    Derivatives (forward and reverse, any order) w.r.t. ``a``, or w.r.t. the matrix a
    ``CholeskyFactor`` keeps: d log det A = Re tr(A⁻¹ dA), with the row-sharded inverse
    computed from the same factor (one factorization in all); ``sign`` is a constant.
    """
    if method not in _SLOGDET_METHODS:
        raise ValueError(f"jaxmg.linalg.slogdet: unknown slogdet method {method!r}; "
                         f"supported methods are {_SLOGDET_METHODS[1:]} (and None)")
    if method == "lu" and not isinstance(a, CholeskyFactor):  # any square matrix
        a = _matrix(a, "slogdet")
        sign, logabs = _general.slogdet_gen(a, mesh=mesh, in_specs=in_specs)
        res = SlogdetResult(sign, logabs)
        return (res, _ok(a.shape[:-2])) if return_status else res
    if not isinstance(a, CholeskyFactor):
        a = _matrix(a, "slogdet")
        if _is_empty(a):
            a = cho_factor(a)
    if isinstance(a, CholeskyFactor) and a.geometry is None:  # an empty matrix: det = 1
        batch = a.factor.shape[:-2]
        res = SlogdetResult(jnp.ones(batch, a.dtype), jnp.zeros(batch, _real(a.dtype)))
        return (res, a.info) if return_status else res
    if isinstance(a, CholeskyFactor):
        fac = a
    else:
        fn = functools.partial(factor, T_A=T_A, mesh=mesh, in_specs=in_specs, pad=pad)
        fac = _over_batch(fn, a.ndim - 2, a)
    _ffi.ensure_backends()
    sign, logabs = _over_batch(_slogdet_one, fac.factor.ndim - 2, fac)
    if check:
        _raise_if_failed(fac.info, "slogdet", _NOT_PD)
    res = SlogdetResult(sign, logabs)
    return (res, fac.info) if return_status else res


def _slogdet_one(fac: CholeskyFactor):
    if fac.matrix is None:
        value = _rules.logdet_of_factor(fac.placement, fac.geometry, fac.factor)
    else:
        value = _rules.logdet_from_factor(fac.placement, fac.geometry, _config.get_timeout())(
            fac.matrix, fac.factor)
    ok = fac.info == 0
    logabs = jnp.where(ok, value, jnp.nan).astype(value.dtype)
    sign = jnp.where(ok, 1, jnp.nan).astype(fac.factor.dtype)
    return sign, logabs


def logdet(a, *, T_A=None, mesh=None, in_specs=None, pad=True, return_status=False,
           check=False):
    """log det A of a Hermitian positive definite matrix (or of a ``CholeskyFactor``'s
    matrix), a real scalar (one per matrix of a batch); NaN (info > 0) when A is not
    positive definite."""
    (_, value), info = slogdet(a, T_A=T_A, mesh=mesh, in_specs=in_specs, pad=pad,
                               return_status=True, check=check)
    return (value, info) if return_status else value
