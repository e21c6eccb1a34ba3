"""vmap of every op over leading batch dimensions of ``a`` and/or ``b`` (and of their
gradients) equals a Python loop. The FFI calls run once per batch element
(``vmap_method="sequential"``): every device runs the same loop and the k-th call of a site
meets the k-th calls of the other devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import linalg

ROWS = P("x", None)
BATCH_ROWS = P(None, "x", None)


def _batch(num, n, dtype, count, seed=0):
    a = np.stack([num.hpd(n, dtype, seed=seed + i) for i in range(count)])
    b = np.stack([num.rhs((n, 2), dtype, seed=seed + 100 + i) for i in range(count)])
    return a, b


def _close(got, want, dtype, scale=1.0):
    tol = 1e-10 if np.finfo(dtype).bits >= 64 else 1e-4
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128], ids=["float64", "complex128"])
def test_potrs_batched_a_b_or_both_eager(mesh_of, num, dtype):
    """Eager vmap: the mesh is read off the batched array (batch dimension unsharded)."""
    mesh = mesh_of([2, 0, 3, 1])
    a, b = _batch(num, 8, dtype, 3)
    A = jax.device_put(a, NamedSharding(mesh, BATCH_ROWS))
    A0 = jax.device_put(a[0], NamedSharding(mesh, ROWS))
    _close(jax.vmap(jaxmg.potrs)(A, b), [np.linalg.solve(a[i], b[i]) for i in range(3)], dtype)
    _close(jax.vmap(lambda m: jaxmg.potrs(m, b[0]))(A),
           [np.linalg.solve(a[i], b[0]) for i in range(3)], dtype)
    _close(jax.vmap(lambda r: jaxmg.potrs(A0, r))(b),
           [np.linalg.solve(a[0], b[i]) for i in range(3)], dtype)
    # A batch of vectors, batched along the last axis.
    _close(jax.vmap(lambda r: jaxmg.potrs(A0, r), in_axes=1, out_axes=1)(b[0]),
           np.linalg.solve(a[0], b[0]), dtype)


def test_every_op_under_jit_and_vmap_equals_a_loop(mesh_of, num):
    mesh = mesh_of([0, 1, 2, 3])
    kw = dict(mesh=mesh, in_specs=ROWS, T_A=1)  # several tiles per shard
    dtype = np.complex128
    a, b = _batch(num, 8, dtype, 3, seed=10)

    def ops(m, r):
        w, v = jaxmg.syevd(m, **kw)
        fac = linalg.cho_factor(m, **kw)
        return {
            "potrs": jaxmg.potrs(m, r, **kw),
            "potri": jaxmg.potri(m, **kw),
            "w": w,
            "vvh": (v * w) @ jnp.conj(v).T,  # gauge invariant
            "eigvals": jaxmg.syevd(m, return_eigenvectors=False, **kw),
            "cho_solve": linalg.cho_solve(fac, r),
            "solve": linalg.solve(m, r, **kw),
            "inv": linalg.inv(m, **kw),
            "eigh_w": linalg.eigh(m, **kw)[0],
            "logdet": linalg.logdet(m, **kw),
            "logdet_fac": linalg.logdet(fac),
            "slogdet": linalg.slogdet(m, **kw)[1],
            "info": jaxmg.potrs(m, r, return_status=True, **kw)[1],
        }

    got = jax.jit(jax.vmap(ops))(jax.device_put(a, NamedSharding(mesh, BATCH_ROWS)), b)
    for i in range(a.shape[0]):
        m = a[i].astype(np.complex128)
        ev = np.linalg.eigvalsh(m)
        want = {
            "potrs": np.linalg.solve(m, b[i]), "potri": np.linalg.inv(m), "w": ev,
            "vvh": m, "eigvals": ev, "cho_solve": np.linalg.solve(m, b[i]),
            "solve": np.linalg.solve(m, b[i]), "inv": np.linalg.inv(m), "eigh_w": ev,
            "logdet": np.linalg.slogdet(m)[1], "logdet_fac": np.linalg.slogdet(m)[1],
            "slogdet": np.linalg.slogdet(m)[1], "info": 0,
        }
        for key, value in want.items():
            _close(got[key][i], value, dtype, scale=np.abs(value).max() + 1)


def test_a_failure_inside_a_batch_stays_in_its_element(mesh_of, num):
    mesh = mesh_of([0, 1])
    a, b = _batch(num, 6, np.float64, 3, seed=20)
    a[1, 2, 2] = -5.0  # not positive definite
    x, info = jax.vmap(lambda m, r: jaxmg.potrs(m, r, return_status=True))(
        jax.device_put(a, NamedSharding(mesh, BATCH_ROWS)), b)
    assert [int(i) for i in info] == [0, 3, 0]
    assert np.isnan(np.asarray(x[1])).all()
    for i in (0, 2):
        num.assert_solves(a[i], x[i], b[i], np.float64)


def test_nested_vmap(mesh_of, num):
    mesh = mesh_of([1, 0])
    a, b = _batch(num, 6, np.float64, 4, seed=30)
    a2, b2 = a.reshape(2, 2, 6, 6), b.reshape(2, 2, 6, 2)
    A2 = jax.device_put(a2, NamedSharding(mesh, P(None, None, "x", None)))
    x = jax.vmap(jax.vmap(jaxmg.potrs))(A2, b2)
    _close(x, np.linalg.solve(a2, b2), np.float64)


def test_vmap_of_grad_equals_a_loop(mesh_of, num):
    mesh = mesh_of([3, 2, 1, 0])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a, b = _batch(num, 8, np.complex128, 3, seed=40)
    wgt = np.random.default_rng(41).standard_normal((8, 8))

    def loss(m, r, solve, inv, eigh, logdet):
        ev, v = eigh(m)
        return (jnp.sum(jnp.abs(solve(m, r)) ** 2) + jnp.sum(jnp.real(inv(m)) * wgt)
                + jnp.sum(ev**2) + jnp.sum(jnp.abs(v) ** 2 * wgt) + logdet(m))

    ours = jax.grad(lambda m, r: loss(
        m, r, lambda x, y: jaxmg.potrs(x, y, **kw), lambda x: jaxmg.potri(x, **kw),
        lambda x: jaxmg.syevd(x, **kw), lambda x: linalg.logdet(x, **kw)), argnums=(0, 1))
    dense = jax.grad(lambda m, r: loss(
        m, r, jnp.linalg.solve, jnp.linalg.inv, jnp.linalg.eigh,
        lambda x: jnp.linalg.slogdet(x)[1]), argnums=(0, 1))
    ga, gb = jax.jit(jax.vmap(ours))(jax.device_put(a, NamedSharding(mesh, BATCH_ROWS)), b)
    for i in range(3):
        wa, wb = dense(a[i], b[i])
        _close(ga[i], wa, np.complex128, scale=np.abs(wa).max())
        _close(gb[i], wb, np.complex128, scale=np.abs(wb).max())
    # ... and the gradient of a batched function (vmap inside grad).
    g = jax.jit(jax.grad(lambda m: jnp.sum(jax.vmap(lambda x: linalg.logdet(x, **kw))(m))))(
        jax.device_put(a, NamedSharding(mesh, BATCH_ROWS)))
    for i in range(3):
        w = jax.grad(lambda x: jnp.linalg.slogdet(x)[1])(a[i])
        _close(g[i], w, np.complex128, scale=np.abs(w).max())


def _ffi_calls(fn, *args):
    """(whether the compiled program loops, how many jaxmg FFI calls it contains)."""
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    return "while" in hlo, hlo.count('custom_call_target="jaxmg_')


def test_a_batch_of_right_hand_sides_is_one_call(mesh_of, num):
    """One matrix, many right-hand sides: the batch becomes columns of one call (one
    factorization), for vmap, for the JVP batched by jacfwd and the VJP by jacrev."""
    mesh = mesh_of([0, 1, 2, 3])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a, b = _batch(num, 8, np.float64, 5, seed=50)
    A = jax.device_put(a[0], NamedSharding(mesh, ROWS))
    fac = linalg.cho_factor(A)
    cases = {
        "potrs": (lambda r: jax.vmap(lambda q: jaxmg.potrs(A, q, **kw))(r), b, 1),
        "cho_solve": (lambda r: jax.vmap(lambda q: linalg.cho_solve(fac, q))(r), b, 1),
        # potrf + solve for x + one solve for all the tangents / cotangents
        "jacfwd": (lambda r: jax.jacfwd(lambda q: jaxmg.potrs(A, q, **kw))(r), b[0, :, 0], 3),
        "jacrev": (lambda r: jax.jacrev(lambda q: jaxmg.potrs(A, q, **kw))(r), b[0, :, 0], 2),
    }
    for name, (fn, arg, calls) in cases.items():
        assert _ffi_calls(fn, arg) == (False, calls), name
    inv = np.linalg.inv(a[0])
    _close(jax.jit(cases["potrs"][0])(b), inv @ b, np.float64)
    _close(jax.jit(cases["cho_solve"][0])(b), inv @ b, np.float64)
    _close(jax.jit(cases["jacfwd"][0])(b[0, :, 0]), inv, np.float64)
    _close(jax.jit(cases["jacrev"][0])(b[0, :, 0]), inv, np.float64)
    # A batch of matrices still loops, one call per element.
    looped = lambda m: jax.vmap(lambda x: jaxmg.potrs(x, b[0], **kw))(m)
    assert _ffi_calls(looped, jax.device_put(a, NamedSharding(mesh, BATCH_ROWS)))[0]
