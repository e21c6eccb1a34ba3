"""Any N: rows that do not split evenly over the devices (or fewer rows than devices) are
padded inside the op to the next multiple of the device count, and the results are those of
the unpadded problem, LAPACK's info included (_plan.pad_to_split)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from _util import from_triangle

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("idx,n", [([0, 1, 2, 3], 13), ([2, 0, 1], 16), ([1, 0], 7),
                                   ([0, 1, 2, 3], 2), ([3, 1, 0], 1)])
def test_every_op_on_an_uneven_split(mesh_of, num, dtype, idx, n):
    mesh = mesh_of(idx)
    a = num.hpd(n, dtype, seed=n)
    b = num.rhs((n, 2), dtype, seed=n + 1)
    a_s = jax.device_put(a, NamedSharding(mesh, P()))  # no row sharding exists for this N
    x, info = jaxmg.potrs(a_s, b, return_status=True)
    assert int(info) == 0 and x.shape == b.shape
    num.assert_solves(a, x, b, dtype)
    inv = jaxmg.potri(a_s)
    assert inv.shape == (n, n)
    num.assert_solves(a, inv, np.eye(n, dtype=dtype), dtype)
    w, v = jaxmg.syevd(a_s)
    assert w.shape == (n,) and v.shape == (n, n)
    a64 = a.astype(np.complex128)
    eps = np.finfo(dtype).eps
    scale = n * eps * np.linalg.norm(a64, 2)
    assert np.abs(np.asarray(w) - np.linalg.eigvalsh(a64)).max() / scale < 30
    v64 = np.asarray(v, np.complex128)
    assert np.abs(a64 @ v64 - v64 * np.asarray(w)).max() / scale < 30
    fac = jaxmg.linalg.cho_factor(a_s)
    assert fac.shape == (n, n)
    num.assert_solves(a, jaxmg.linalg.cho_solve(fac, b), b, dtype)
    np.testing.assert_allclose(float(jaxmg.linalg.logdet(fac)), np.linalg.slogdet(a64)[1],
                               rtol=100 * eps)


@pytest.mark.parametrize("bad", [0, 6, 12])
def test_info_of_an_uneven_split_is_the_unpadded_problems(mesh_of, num, bad):
    mesh = mesh_of([0, 1, 2, 3])
    n = 13
    a = num.hpd(n, np.float64, seed=3)
    a[bad, bad] = -50.0
    a_s = jax.device_put(a, NamedSharding(mesh, P()))
    x, info = jaxmg.potrs(a_s, np.ones(n), return_status=True)
    assert int(info) == bad + 1 and np.isnan(np.asarray(x)).all()
    inv, info = jaxmg.potri(a_s, return_status=True)
    assert int(info) == bad + 1 and np.isnan(np.asarray(inv)).all()


def test_uneven_split_under_jit_and_grad(mesh_of, num):
    """NetKet's 195 parameters on 4 devices: inside jit under the context mesh, and the
    gradient (through the padding) equals the dense one."""
    mesh = mesh_of([0, 1, 2, 3])
    n = 195
    a = num.hpd(n, np.float64, seed=195)
    b = num.rhs((n,), np.float64, seed=196)
    a_s = jax.device_put(a, NamedSharding(mesh, P()))
    with jax.set_mesh(mesh):
        x = jax.jit(lambda m, r: jaxmg.linalg.solve(m, r, assume_a="pos"))(a_s, b)
    num.assert_solves(a, x, b, np.float64)

    def loss(solve):
        return lambda m, r: jnp.sum(jnp.sin(solve(m, r)))

    got = jax.grad(loss(jaxmg.linalg.solve), argnums=(0, 1))(a_s, b)
    # linalg.solve reads the upper triangle (lower=False), as jax.scipy.linalg.solve does; its
    # derivative is that of the function it computes.
    dense = lambda m, r: jnp.linalg.solve(from_triangle(m), r)
    want = jax.grad(loss(dense), argnums=(0, 1))(jnp.asarray(a), jnp.asarray(b))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-8, atol=1e-12)
