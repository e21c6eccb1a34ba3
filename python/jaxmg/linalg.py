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

import jax
import jax.numpy as jnp
import numpy as np

from . import _config, _ffi, _plan, _rules
from ._api import potri, potrs, syevd
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
]


# ---- status policy ----------------------------------------------------------------------

def _raise_if_failed(info, op: str, what: str) -> None:
    """``check=True``: LinAlgError on a nonzero info (only with a concrete info)."""
    if isinstance(info, jax.core.Tracer):
        raise ValueError(
            f"jaxmg.linalg.{op}: check=True needs concrete results and cannot be used inside "
            "jit or another transformation; pass return_status=True and test the status "
            "instead"
        )
    code = int(np.asarray(info).reshape(-1)[0])
    if code != 0:
        raise np.linalg.LinAlgError(f"jaxmg.linalg.{op}: {what} (info = {code})")


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
        return (self.n, self.n)

    @property
    def dtype(self):
        return self.factor.dtype

    def __iter__(self):
        return iter((self, self.lower))


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True, *, T_A=None, mesh=None,
               in_specs=None, pad=True, check=False, donate=False) -> CholeskyFactor:
    """Cholesky factorization A = L L^H of a Hermitian positive definite matrix sharded by rows.

    On GPUs cuSOLVERMg's ``potrf``; on CPU devices a distributed tiled LAPACK Cholesky. The
    factor stays distributed (see ``CholeskyFactor``); solve with ``cho_solve``.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows.
      lower, overwrite_a, check_finite: accepted for ``jax.scipy.linalg`` compatibility;
        they change nothing (``donate=True`` is the way to reuse ``a``'s memory).
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
    plan, a, _, _ = _plan.plan("potrf", a, T_A, mesh, in_specs, pad, engine=None,
                               name="cho_factor")
    place, geo = plan.place, plan.geo
    traced = isinstance(a, jax.core.Tracer)
    # Tracers are never donated (donation happens at the jit boundary of concrete arrays),
    # so under a transformation the matrix is always kept and stays differentiable.
    keep = traced or not donate
    a_in = jax.lax.stop_gradient(a) if traced else a
    f, info = _rules.factor_program(place, geo, bool(donate))(a_in)
    out = CholeskyFactor(f, info[0], place, geo, bool(lower), a if keep else None, plan.n)
    if check:
        _raise_if_failed(out.info, "cho_factor", _NOT_PD)
    return out


def _as_factor(c_and_lower, op: str) -> CholeskyFactor:
    if isinstance(c_and_lower, CholeskyFactor):
        return c_and_lower
    if isinstance(c_and_lower, (tuple, list)) and len(c_and_lower) == 2 and isinstance(
        c_and_lower[0], CholeskyFactor
    ):
        return c_and_lower[0]
    raise TypeError(
        f"jaxmg.linalg.{op}: expected the result of jaxmg.linalg.cho_factor (or a "
        f"(factor, lower) pair of it), got {type(c_and_lower).__name__}; a factor from "
        "jax.scipy.linalg.cho_factor cannot be used with jaxmg"
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
      c_and_lower: a ``CholeskyFactor`` or a ``(factor, lower)`` pair.
      b: N or N x k right-hand side (replicated; resharded if needed).
      overwrite_b, check_finite: accepted for compatibility; ignored.
      return_status: also return the factorization's ``info``.
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
    x = x[: fac.n, 0] if vector else x[: fac.n]
    if check:
        _raise_if_failed(fac.info, "cho_solve", _NOT_PD)
    return (x, fac.info) if return_status else x


_POS = {"pos", "positive definite"}
_HER = {"her", "hermitian", "sym", "symmetric"}


def solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True,
          assume_a="pos", *, T_A=None, mesh=None, in_specs=None, pad=True, return_status=False,
          check=False, donate=False):
    """Solves A x = b for Hermitian positive definite A sharded by rows (``jaxmg.potrs``).

    Only positive definite matrices are supported: ``assume_a`` may be ``'pos'`` (the
    default) or ``'her'``/``'sym'``, which are accepted but still need A positive definite
    (an indefinite A gives NaN and info > 0, or LinAlgError with ``check=True``).
    ``'gen'`` and other values raise ValueError: use ``jax.scipy.linalg.solve``.
    ``lower``, ``overwrite_*`` and ``check_finite`` are accepted and ignored.
    """
    del lower, overwrite_a, overwrite_b, check_finite
    kind = str(assume_a).lower()
    if kind not in _POS | _HER:
        raise ValueError(
            f"jaxmg.linalg.solve: assume_a={assume_a!r} is not supported; jaxmg solves "
            "Hermitian positive definite systems only (assume_a='pos', 'her' or 'sym' with a "
            "positive definite matrix). Use jax.scipy.linalg.solve for general matrices."
        )
    x, info = potrs(a, b, T_A=T_A, mesh=mesh, in_specs=in_specs, return_status=True, pad=pad,
                    donate=donate)
    if check:
        _raise_if_failed(info, "solve", _NOT_PD)
    return (x, info) if return_status else x


def inv(a, overwrite_a=False, check_finite=True, *, T_A=None, mesh=None, in_specs=None,
        pad=True, return_status=False, check=False, donate=False):
    """Inverse of a Hermitian positive definite matrix sharded by rows (``jaxmg.potri``);
    the full inverse, sharded like ``a``. For general matrices use ``jnp.linalg.inv``."""
    del overwrite_a, check_finite
    x, info = potri(a, T_A=T_A, mesh=mesh, in_specs=in_specs, return_status=True, pad=pad,
                    donate=donate)
    if check:
        _raise_if_failed(info, "inv", _NOT_PD)
    return (x, info) if return_status else x


def eigh(a, lower=True, eigvals_only=False, overwrite_a=False, check_finite=True, *, UPLO=None,
         T_A=None, mesh=None, in_specs=None, pad=True, return_status=False, check=False,
         donate=False):
    """Eigenvalues (ascending, replicated) and eigenvectors (columns, sharded by rows like
    ``a``) of a Hermitian matrix sharded by rows (``jaxmg.syevd``).

    Returns ``w`` with ``eigvals_only``, else ``(w, v)`` (``jax.scipy.linalg.eigh``'s order);
    ``return_status`` appends LAPACK's ``info``. ``lower`` and ``UPLO`` are accepted and
    ignored: the whole row-sharded matrix is handed to the solver, which reads the triangle
    its layout gives it, so ``a`` must be Hermitian (symmetrize it first if it is not).
    """
    del lower, UPLO, overwrite_a, check_finite
    out = syevd(a, T_A=T_A, mesh=mesh, in_specs=in_specs,
                return_eigenvectors=not eigvals_only, return_status=True, pad=pad, donate=donate)
    info = out[-1]
    if check:
        _raise_if_failed(info, "eigh", "the eigensolver did not converge")
    res = out[0] if eigvals_only else (out[0], out[1])
    return (res, info) if return_status else res


def slogdet(a, *, T_A=None, mesh=None, in_specs=None, pad=True, return_status=False,
            check=False):
    """``(sign, log|det A|)`` of a Hermitian positive definite matrix, from its Cholesky factor:
    log det A = 2 sum_i log L_ii, reduced over the devices that hold the diagonal.

    ``a`` may also be a ``CholeskyFactor`` from ``cho_factor`` (no new factorization).
    ``sign`` is 1 (in ``a``'s dtype). Only positive definite matrices: otherwise both
    outputs are NaN (info > 0), where ``jnp.linalg.slogdet`` would use an LU factorization.

    Derivatives (forward and reverse, any order) w.r.t. ``a``, or w.r.t. the matrix a
    ``CholeskyFactor`` keeps: d log det A = Re tr(A⁻¹ dA), with the row-sharded inverse
    computed from the same factor (one factorization in all); ``sign`` is a constant.
    """
    if isinstance(a, CholeskyFactor):
        fac = a
        _ffi.ensure_backends()
    else:
        fac = cho_factor(a, T_A=T_A, mesh=mesh, in_specs=in_specs, pad=pad)
    if fac.matrix is None:
        value = _rules.logdet_of_factor(fac.placement, fac.geometry, fac.factor)
    else:
        value = _rules.logdet_from_factor(fac.placement, fac.geometry, _config.get_timeout())(
            fac.matrix, fac.factor)
    ok = fac.info == 0
    logabs = jnp.where(ok, value, jnp.nan).astype(value.dtype)
    sign = jnp.where(ok, 1, jnp.nan).astype(fac.factor.dtype)
    if check:
        _raise_if_failed(fac.info, "slogdet", _NOT_PD)
    return ((sign, logabs), fac.info) if return_status else (sign, logabs)


def logdet(a, *, T_A=None, mesh=None, in_specs=None, pad=True, return_status=False,
           check=False):
    """log det A of a Hermitian positive definite matrix (or of a ``CholeskyFactor``'s
    matrix), a real scalar; NaN (info > 0) when A is not positive definite."""
    (_, value), info = slogdet(a, T_A=T_A, mesh=mesh, in_specs=in_specs, pad=pad,
                               return_status=True, check=check)
    return (value, info) if return_status else value
