"""Derivatives and vmap of every op on 2 GPUs (cuSOLVERMg for the primal and the factor
solves, NCCL rings for the tangent products): the checks of tests/python/test_autodiff.py and
test_vmap.py, small and quick.

Run: ``python -m pytest tests/gpu/test_gpu_grads.py`` (or ``tests/gpu/run_gpu.sh``). Every
test is marked ``gpu`` and skipped cleanly without 2 GPUs (tests/gpu/conftest.py).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

import jaxmg
from jaxmg import linalg

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu

ROWS = P("x", None)
DTYPES = [np.float64, np.complex128]
DTYPE_IDS = ["f64", "c128"]


@pytest.fixture
def mesh(need_gpus):
    return Mesh(np.array(need_gpus(2), dtype=object), ("x",))


def _herm(m):
    return (m + jnp.conj(m).T) / 2


def _problem(n, dtype, seed=0):
    """Q diag(linspace(1, 3)) Qᴴ (well conditioned, eigenvalues well apart) and a right-hand
    side, on the host."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, n))
    b = rng.standard_normal((n, 2))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        z = z + 1j * rng.standard_normal((n, n))
        b = b + 1j * rng.standard_normal((n, 2))
    q, _ = np.linalg.qr(z)
    a = (q * np.linspace(1.0, 3.0, n)) @ q.conj().T
    return ((a + a.conj().T) / 2).astype(dtype), b.astype(dtype)


def _functions(kw):
    def vectors(m, eigh):  # gauge invariant
        w, v = eigh(_herm(m))
        return (v * jnp.sin(w)) @ jnp.conj(v).T

    return {
        "potrs": (lambda m, b: jaxmg.potrs(_herm(m), b, **kw),
                  lambda m, b: jnp.linalg.solve(_herm(m), b), True),
        "potri": (lambda m: jaxmg.potri(_herm(m), **kw),
                  lambda m: jnp.linalg.inv(_herm(m)), False),
        "syevd_values": (lambda m: jaxmg.syevd(_herm(m), return_eigenvectors=False, **kw),
                         lambda m: jnp.linalg.eigvalsh(_herm(m)), False),
        "syevd_vectors": (lambda m: vectors(m, lambda h: jaxmg.syevd(h, **kw)),
                          lambda m: vectors(m, jnp.linalg.eigh), False),
        "cho_solve": (lambda m, b: linalg.cho_solve(linalg.cho_factor(_herm(m), **kw), b),
                      lambda m, b: jnp.linalg.solve(_herm(m), b), True),
        "logdet": (lambda m: linalg.logdet(_herm(m), **kw),
                   lambda m: jnp.linalg.slogdet(_herm(m))[1], False),
    }


NAMES = list(_functions({}))


def _put(x, mesh, spec=ROWS):
    return jax.device_put(x, NamedSharding(mesh, spec))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_check_grads(mesh, dtype, name):
    kw = dict(mesh=mesh, in_specs=ROWS)
    fn, _, takes_b = _functions(kw)[name]
    a, b = _problem(16, dtype)
    args = (_put(a, mesh), _put(b, mesh, P())) if takes_b else (_put(a, mesh),)
    check_grads(jax.jit(fn), args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("dtype", DTYPES + [np.float32, np.complex64],
                         ids=DTYPE_IDS + ["f32", "c64"])
@pytest.mark.parametrize("name", NAMES)
def test_gradient_equals_dense(mesh, dtype, name):
    """Gradients equal the dense jnp.linalg ones (computed on the CPU in double precision;
    single precision checks that the ring products keep full float32 accuracy on GPUs)."""
    kw = dict(mesh=mesh, in_specs=ROWS)
    fn, dense, takes_b = _functions(kw)[name]
    a, b = _problem(32, dtype, seed=1)

    def loss_of(f):
        def loss(*args):
            total = 0.0
            for o in jax.tree_util.tree_leaves(f(*args)):
                w = np.random.default_rng(o.size).standard_normal(o.shape)
                total = total + jnp.sum(jnp.real(o) * w) + jnp.sum(jnp.imag(o) ** 2)
            return total
        return loss

    argnums = (0, 1) if takes_b else (0,)
    ours = jax.jit(jax.grad(loss_of(fn), argnums=argnums))(
        *((_put(a, mesh), _put(b, mesh, P())) if takes_b else (_put(a, mesh),)))
    wide = np.complex128 if np.iscomplexobj(a) else np.float64
    with jax.default_device(jax.devices("cpu")[0]):
        want = jax.grad(loss_of(dense), argnums=argnums)(
            *((a.astype(wide), b.astype(wide)) if takes_b else (a.astype(wide),)))
    tol = 1e-9 if np.finfo(dtype).bits == 64 else 2e-3
    for g, w in zip(ours, want):
        w = np.asarray(w)
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=tol * np.abs(w).max())


def test_vmap_and_vmap_of_grad(mesh):
    kw = dict(mesh=mesh, in_specs=ROWS)
    probs = [_problem(16, np.complex128, seed=s) for s in range(3)]
    a = np.stack([p[0] for p in probs])
    b = np.stack([p[1] for p in probs])
    A = _put(a, mesh, P(None, "x", None))
    x = jax.jit(jax.vmap(lambda m, r: jaxmg.potrs(m, r, **kw)))(A, b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    w = jax.jit(jax.vmap(lambda m: jaxmg.syevd(m, return_eigenvectors=False, **kw)))(A)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), rtol=1e-10, atol=1e-12)
    inv = jax.jit(jax.vmap(lambda m: jaxmg.potri(m, **kw)))(A)
    np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(a), rtol=1e-10, atol=1e-12)

    def loss(m, solve, inv, eigh):
        ev, v = eigh(m)
        return (jnp.sum(jnp.abs(solve(m)) ** 2) + jnp.sum(jnp.real(inv(m)))
                + jnp.sum(jnp.abs(v[:, :3]) ** 2 * ev[:3]))

    g = jax.jit(jax.vmap(jax.grad(lambda m, r: loss(
        m, lambda x: jaxmg.potrs(x, r, **kw), lambda x: jaxmg.potri(x, **kw),
        lambda x: jaxmg.syevd(x, **kw)))))(A, b)
    with jax.default_device(jax.devices("cpu")[0]):
        for i in range(3):
            want = jax.grad(lambda m: loss(m, lambda x: jnp.linalg.solve(x, b[i]),
                                           jnp.linalg.inv, jnp.linalg.eigh))(a[i])
            np.testing.assert_allclose(np.asarray(g[i]), np.asarray(want), rtol=0,
                                       atol=1e-9 * np.abs(np.asarray(want)).max())


_COLLECTIVE = re.compile(
    r"=\s*(\(?[^=]*?\)?)\s(all-gather|all-reduce|all-to-all|collective-permute|"
    r"reduce-scatter|collective-broadcast)(-start)?\("
)
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def test_compiled_gradients_never_gather_the_matrix(mesh):
    # The distributed engine: the "single" engine gathers the matrix by design (its primal
    # runs XLA's solver on the whole matrix); the derivative rules themselves never do.
    n = 64
    kw = dict(mesh=mesh, in_specs=ROWS)
    ekw = dict(kw, engine="mg")
    a = _put(_problem(n, np.float64)[0], mesh)
    w = _put(np.random.default_rng(2).standard_normal((n, n)), mesh)
    b = np.ones((n, 2))
    losses = {
        "potrs": lambda m, w: jnp.sum(jaxmg.potrs(m, b, **ekw) ** 2),
        "potri": lambda m, w: jnp.sum(jaxmg.potri(m, **ekw) * w),
        "syevd": lambda m, w: (lambda ev, v: jnp.sum(ev**3) + jnp.sum(v**2 * w))(
            *jaxmg.syevd(m, **ekw)),
        "logdet": lambda m, w: linalg.logdet(m, **kw),
    }
    for name, loss in losses.items():
        for mode, fn in {
            "rev": jax.grad(loss),
            "fwd": lambda m, w, loss=loss: jax.jvp(lambda x: loss(x, w), (m,), (w,))[1],
        }.items():
            hlo = jax.jit(fn).lower(a, w).compile().as_text()
            for m in _COLLECTIVE.finditer(hlo):
                for dims in _SHAPE.findall(m.group(1)):
                    size = int(np.prod([int(d) for d in dims.split(",") if d]))
                    assert size <= n * n // 2, (name, mode, m.group(2), dims)
