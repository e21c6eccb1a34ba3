"""What a non-Hermitian input means (docs/errors.md): only Hermitian inputs are meaningful;
which triangle is read depends on the engine and the layout. Pinned down here so that the
documentation cannot drift: with one device and the distributed backend the upper triangle
of ``a`` (row-major a[i, j], j >= i) is read; so does potrs's single engine (its one-call body,
JAXMG_OP_POTRS_WHOLE); the single engine's all-gather body (potrs across processes, and
potri) reads the lower triangle."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg


def _herm_from(a, lower):
    t = np.tril(a) if lower else np.triu(a)
    return t + np.conj(np.tril(t, -1) if lower else np.triu(t, 1)).T


def test_which_triangle_is_read(mesh_of):
    rng = np.random.default_rng(3)
    n = 12
    x = rng.standard_normal((n, n))
    a = x @ x.T / n + np.eye(n)
    a_bad = a + np.triu(rng.standard_normal((n, n)) * 0.01, 1)  # upper perturbed only
    b = np.ones((n, 1))
    mesh = mesh_of([0])
    a_s = jax.device_put(a_bad, NamedSharding(mesh, P("x", None)))
    x_mg = np.asarray(jaxmg.potrs(a_s, b, engine="mg"))
    x_single = np.asarray(jaxmg.potrs(a_s, b, engine="single"))
    np.testing.assert_allclose(x_mg, np.linalg.solve(_herm_from(a_bad, lower=False), b),
                               rtol=1e-10)
    np.testing.assert_allclose(x_single, np.linalg.solve(_herm_from(a_bad, lower=False), b),
                               rtol=1e-10)
    inv_single = np.asarray(jaxmg.potri(a_s, engine="single"))
    np.testing.assert_allclose(inv_single, np.linalg.inv(_herm_from(a_bad, lower=True)),
                               rtol=1e-10)
