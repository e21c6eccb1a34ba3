"""Derivative rules shared by the ops: every tangent is computed with jaxmg's distributed
ops (reusing the primal's factorization) and the ring products of ``_dist``, so that no
device ever holds a whole N x N matrix. Linear in the tangents and built from transposable
pieces (``custom_linear_solve`` for solves, ``ppermute``/``all_to_all`` rings for products),
each rule gives the reverse mode by JAX's transposition; the primal values the rules use
come from differentiable functions, so derivatives of any order work."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from . import _cholesky, _core, _dist
from ._dist import axis_of


def _conj(x):
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def float0_like(x):
    """The tangent of an integer output (``info``)."""
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


# ---- solves with a kept factor ------------------------------------------------------------

def factor(place, geo, a):
    """(factor, info[1]) of A, as a constant: the factor is not differentiated as a matrix;
    derivatives w.r.t. A go through A itself (see ``solve``)."""
    if isinstance(a, jax.core.Tracer):
        a = jax.lax.stop_gradient(a)
    return _cholesky.factor_program(place, geo, False, _core.get_timeout())(a)


@functools.lru_cache(maxsize=256)
def _matvec(place):
    body = functools.partial(_dist.matvec, axis=axis_of(place.row_axes))
    return _dist.shard_map(lambda a, x: body(a, x), place, (place.spec, P()), P())


def solve(place, geo, fac, a, b):
    """x = A⁻¹ b (b: N x k, replicated) from the factor ``fac`` of A, differentiable w.r.t.
    ``a`` and ``b``: ``lax.custom_linear_solve`` with the sharded product A x as the matvec
    and the distributed solve with ``fac`` for both solves. JAX's JVP of it is
    dx = A⁻¹ (db − dA x) and its transpose b̄ = A⁻ᵀ x̄, Ā = −b̄ xᵀ (a row-sharded outer
    product): one solve each, never a new factorization. ``a`` may be None (a factor whose
    matrix was donated): then only ``b`` is differentiable."""
    program = _cholesky.solver(place, geo, _core.get_timeout())
    fac = jax.lax.stop_gradient(fac)
    # Replicated like the matvec's result: on Explicit meshes the types (shardings) must
    # match for JAX to transpose the matvec.
    b = _core.conform(b, place.mesh, P())

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
        mv = _matvec(place)

        def matvec(x):
            return mv(a, x)

    # symmetric=False even for real A: with symmetric=True JAX would also take the matvec as
    # its own transpose when differentiating the transposed solve (forward over reverse), which
    # is wrong in non-symmetric directions dA; this way JAX transposes A x itself.
    return jax.lax.custom_linear_solve(matvec, b, sol, sol_t, symmetric=False)


# ---- inverse ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _inverse_tangent(place):
    ax, nd = axis_of(place.row_axes), place.ndev
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
        return _cholesky.inverse_program(place, geo, timeout)(jax.lax.stop_gradient(fac))

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
    ax, nd = axis_of(place.row_axes), place.ndev

    def body(x, da):
        # Re tr(X dA) = Re sum(Xᵀ ∘ dA), row by row. Xᵀ = conj(X) when X is Hermitian, but
        # second derivatives move X off the Hermitian matrices, so the rows of Xᵀ come from
        # an all_to_all of X (not of the tangent).
        xt = _conj(_dist.conj_transpose(x, ax, nd))
        return jax.lax.psum(jnp.real(jnp.sum(xt * da)), ax)

    return _dist.shard_map(body, place, (place.spec, place.spec), P())


@functools.lru_cache(maxsize=256)
def logdet_from_factor(place, geo, timeout):
    """log det A from the factor of A, differentiable w.r.t. ``a``: ``logdet(a, fac)``.
    d log det A = Re tr(A⁻¹ dA), with A⁻¹ from the same factor (``inverse_from_factor``)."""

    @jax.custom_jvp
    def logdet(a, fac):
        del a
        return _cholesky.logdet_program(place, geo)(jax.lax.stop_gradient(fac))

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
    ax, nd = axis_of(place.row_axes), place.ndev
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
        i = jax.lax.axis_index(ax) * nloc + jnp.arange(nloc)
        eye = (i[:, None] == jnp.arange(w.shape[0])[None, :]).astype(w.dtype)
        # jnp.linalg.eigh's convention: F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it
        # (infinite for equal eigenvalues).
        f = 1 / (eye + w[None, :] - w[i][:, None]) - eye
        dv = _dist.matmul(v, (f * s_loc).astype(v.dtype), ax, nd)
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
