"""Derivatives of every op (forward and reverse mode, first and second order) on virtual CPU
devices: numerical checks (``jax.test_util.check_grads``), gradients equal to those of the
dense ``jnp.linalg`` functions, a MinSR-style loss, and the compiled gradients checked for
gathered matrices.

The ops read one triangle of ``a`` (which one depends on the layout), so a finite difference
in a non-Hermitian direction measures nothing meaningful: the functions handed to
``check_grads`` take any square matrix and pass its Hermitian part to the op, as a user
differentiating with respect to a Hermitian parameter does.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

import jaxmg
from jaxmg import linalg
from _util import from_triangle

ROWS = P("x", None)
DTYPES = [np.float64, np.complex128]


def _dtype_id(dtype):
    return np.dtype(dtype).name


def herm(m):
    return (m + jnp.conj(m).T) / 2


def put(x, mesh, spec=ROWS):
    return jax.device_put(x, NamedSharding(mesh, spec))


def with_spectrum(w, dtype, seed=0):
    """Q diag(w) Qᴴ for a random unitary Q: a Hermitian matrix with the given eigenvalues."""
    rng = np.random.default_rng(seed)
    n = len(w)
    z = rng.standard_normal((n, n))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        z = z + 1j * rng.standard_normal((n, n))
    q, _ = np.linalg.qr(z)
    a = (q * np.asarray(w)) @ q.conj().T
    return ((a + a.conj().T) / 2).astype(dtype)


def _functions(kw):
    """name -> (jaxmg function, its dense jnp twin, takes b). The eigenvector function is
    invariant under the eigenvectors' phases (gauge), as any meaningful one is."""

    def eig_vectors(m, eigh):  # V diag(sin w) Vᴴ: both w and V, no phase
        w, v = eigh(herm(m))
        return (v * jnp.sin(w)) @ jnp.conj(v).T

    return {
        "potrs": (lambda m, b: jaxmg.potrs(herm(m), b, **kw),
                  lambda m, b: jnp.linalg.solve(herm(m), b), True),
        "potri": (lambda m: jaxmg.potri(herm(m), **kw),
                  lambda m: jnp.linalg.inv(herm(m)), False),
        "syevd_values": (
            lambda m: jaxmg.syevd(herm(m), return_eigenvectors=False, **kw),
            lambda m: jnp.linalg.eigvalsh(herm(m)), False),
        "syevd_vectors": (
            lambda m: eig_vectors(m, lambda h: jaxmg.syevd(h, **kw)),
            lambda m: eig_vectors(m, jnp.linalg.eigh), False),
        "cho_solve": (
            lambda m, b: linalg.cho_solve(linalg.cho_factor(herm(m), **kw), b),
            lambda m, b: jnp.linalg.solve(herm(m), b), True),
        "slogdet": (lambda m: linalg.slogdet(herm(m), **kw)[1],
                    lambda m: jnp.linalg.slogdet(herm(m))[1], False),
    }


_NAMES = list(_functions({}))


def _real_loss(o):
    """A real scalar that depends on every real and imaginary part of ``o``."""
    w = np.random.default_rng(o.size).standard_normal(o.shape)
    return jnp.sum(jnp.real(o) * w) + jnp.sum(jnp.imag(o) ** 2)


def _problem(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    # Well conditioned, spectrum spread well apart (eigenvector derivatives divide by gaps).
    a = with_spectrum(np.linspace(1.0, 3.0, n), dtype, seed)
    b = rng.standard_normal((n, 2))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        b = b + 1j * rng.standard_normal((n, 2))
    return a, b.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name", _NAMES)
def test_check_grads_orders_1_and_2(mesh_of, dtype, name):
    """Forward and reverse mode, first and second order, against finite differences."""
    mesh = mesh_of([1, 0])
    kw = dict(mesh=mesh, in_specs=ROWS)
    fn, _, takes_b = _functions(kw)[name]
    a, b = _problem(6, dtype)
    args = (put(a, mesh), b) if takes_b else (put(a, mesh),)
    check_grads(jax.jit(fn), args, order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name", _NAMES)
def test_gradient_equals_dense_jnp_linalg(mesh_of, dtype, name):
    """jit(grad) of a real loss of each output equals JAX's gradient of the dense twin,
    complex convention included (w.r.t. a and, for solves, b)."""
    mesh = mesh_of([2, 0, 3, 1])
    kw = dict(mesh=mesh, in_specs=ROWS)
    fn, dense, takes_b = _functions(kw)[name]
    a, b = _problem(12, dtype, seed=1)

    def loss_of(f):
        def loss(*args):
            return sum(_real_loss(o) for o in jax.tree_util.tree_leaves(f(*args)))
        return loss

    argnums = (0, 1) if takes_b else (0,)
    args = (put(a, mesh), b) if takes_b else (put(a, mesh),)
    got = jax.jit(jax.grad(loss_of(fn), argnums=argnums))(*args)
    want = jax.grad(loss_of(dense), argnums=argnums)(*((a, b) if takes_b else (a,)))
    for g, w in zip(got, want):
        scale = np.abs(np.asarray(w)).max()
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=1e-10 * scale)


def test_linalg_wrappers_and_logdet_of_a_factor(mesh_of):
    """solve / inv / eigh / logdet (of a matrix and of a CholeskyFactor) differentiate like
    the ops behind them: first order, both modes, complex."""
    mesh = mesh_of([3, 1])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a, b = _problem(6, np.complex128, seed=3)
    fns = [
        (lambda m, r: linalg.solve(herm(m), r, **kw), (a, b)),
        (lambda m: linalg.inv(herm(m), **kw), (a,)),
        (lambda m: linalg.eigh(herm(m), eigvals_only=True, **kw), (a,)),
        (lambda m: (lambda w, v: (v * w) @ jnp.conj(v).T)(*linalg.eigh(herm(m), **kw)), (a,)),
        (lambda m: linalg.logdet(linalg.cho_factor(herm(m), **kw)), (a,)),
    ]
    for fn, args in fns:
        check_grads(jax.jit(fn), (put(args[0], mesh),) + args[1:], order=1, modes=("fwd", "rev"))


def test_eager_grad_infers_the_mesh(mesh_of):
    """Outside jit, grad and jvp read the mesh off the concrete array behind the tracer."""
    mesh = mesh_of([0, 1, 2, 3])
    a, b = _problem(8, np.float64, seed=4)
    A = put(a, mesh)
    g = jax.grad(lambda m: jnp.sum(jaxmg.potrs(m, b) ** 2) + linalg.logdet(m))(A)
    want = jax.grad(lambda m: jnp.sum(jnp.linalg.solve(m, b) ** 2) + jnp.linalg.slogdet(m)[1])(a)
    np.testing.assert_allclose(np.asarray(g), np.asarray(want), rtol=1e-10, atol=1e-12)
    assert g.sharding.is_equivalent_to(NamedSharding(mesh, ROWS), 2)  # stays row-sharded
    _, t = jax.jvp(lambda m: jaxmg.potri(m), (A,), (A,))
    np.testing.assert_allclose(np.asarray(t), -np.linalg.inv(a), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", [P("T", None), P(("S", "T"), None), P(("T", "S"), None)],
                         ids=["replica-groups", "both-axes", "both-axes-reversed"])
def test_2d_meshes(mesh_of, spec):
    """Rings over a tuple of axes in either order (JAX's ppermute numbers such a tuple in mesh
    order; the rings do not depend on it) and over one axis with replica groups."""
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    kw = dict(mesh=mesh, in_specs=spec, T_A=2)
    a, b = _problem(12, np.complex128, seed=5)
    w = np.random.default_rng(6).standard_normal((12, 12))

    def loss(m, inv, eigh):
        ev, v = eigh(m)
        return jnp.sum(jnp.real(inv(m)) * w) + jnp.sum(jnp.abs(v) ** 2 * w) + jnp.sum(ev**2)

    got = jax.jit(jax.grad(lambda m: loss(m, lambda x: jaxmg.potri(x, **kw),
                                          lambda x: jaxmg.syevd(x, **kw))))(put(a, mesh, spec))
    want = jax.grad(lambda m: loss(m, jnp.linalg.inv, jnp.linalg.eigh))(a)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                               atol=1e-10 * np.abs(np.asarray(want)).max())


def test_padded_tiles(mesh_of):
    """A tile that does not divide the shard (padded factor) changes nothing: the inverse and
    the solves from the factor are restricted back."""
    mesh = mesh_of([1, 2])
    kw = dict(mesh=mesh, in_specs=ROWS, T_A=4)  # shards of 5 rows, padded to 8
    a, b = _problem(10, np.float64, seed=7)
    fn = lambda m, r: (linalg.logdet(m, **kw), jaxmg.potrs(m, r, **kw),
                       linalg.cho_solve(linalg.cho_factor(m, **kw), r))
    dense = lambda m, r: (jnp.linalg.slogdet(m)[1], jnp.linalg.solve(m, r),
                          jnp.linalg.solve(from_triangle(m), r))  # cho_factor's triangle
    loss = lambda f: lambda m, r: sum(jnp.sum(o * o) for o in f(m, r))
    got = jax.jit(jax.grad(loss(fn), argnums=(0, 1)))(put(a, mesh), b)
    want = jax.grad(loss(dense), argnums=(0, 1))(a, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10, atol=1e-12)


def test_factor_keeps_the_matrix_unless_donated(mesh_of):
    mesh = mesh_of([0, 1])
    a, b = _problem(6, np.float64, seed=8)

    def solve_loss(m, r, donate):
        fac = linalg.cho_factor(m, donate=donate)
        return jnp.sum(linalg.cho_solve(fac, r) ** 2)

    ga, gb = jax.grad(solve_loss, argnums=(0, 1))(put(a, mesh), b, False)
    wa, wb = jax.grad(lambda m, r: jnp.sum(jnp.linalg.solve(from_triangle(m), r) ** 2),
                      argnums=(0, 1))(a, b)
    np.testing.assert_allclose(np.asarray(ga), np.asarray(wa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gb), np.asarray(wb), rtol=1e-10, atol=1e-12)
    # A donated matrix is gone: the factor is a constant, b is still differentiable.
    fac = linalg.cho_factor(put(a, mesh), donate=True)
    assert fac.matrix is None
    gb2 = jax.grad(lambda r: jnp.sum(linalg.cho_solve(fac, r) ** 2))(b)
    np.testing.assert_allclose(np.asarray(gb2), np.asarray(wb), rtol=1e-10, atol=1e-12)


def test_degenerate_eigenvalues_follow_jnp_linalg_eigh(mesh_of):
    """Equal eigenvalues: functions of the eigenvalues differentiate fine; the eigenvector
    derivative divides by zero gaps and is not finite, as for jnp.linalg.eigh."""
    mesh = mesh_of([0, 1])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a = with_spectrum([1.0, 2.0, 2.0, 2.0, 3.0, 4.0], np.float64, seed=9)
    values = lambda f: lambda m: jnp.sum(f(m) ** 3)
    got = jax.jit(jax.grad(values(lambda m: jaxmg.syevd(m, return_eigenvectors=False, **kw))))(
        put(a, mesh))
    want = jax.grad(values(jnp.linalg.eigvalsh))(a)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-10)
    # The eigenvector of the simple eigenvalue 1 has a well-defined derivative: the same as
    # jnp's. One of the triple eigenvalue 2 has none: the 1/gap terms are infinite or (the
    # equal eigenvalues come out a few ulps apart) astronomically large, for both.
    vectors = lambda f, k: lambda m: jnp.sum(f(m)[1][:, k])
    blown_up = lambda g: not np.all(np.isfinite(g)) or np.abs(g).max() > 1e8
    for k in (0, 2):
        g_v = jax.jit(jax.grad(vectors(lambda m: jaxmg.syevd(m, **kw), k)))(put(a, mesh))
        w_v = np.asarray(jax.grad(vectors(jnp.linalg.eigh, k))(a))
        if k == 0:
            np.testing.assert_allclose(np.asarray(g_v), w_v, rtol=1e-8, atol=1e-10)
        else:
            assert blown_up(w_v) and blown_up(np.asarray(g_v))


def test_minsr_loss_gradient(mesh_of):
    """L(X) = ||Xᴴ (X Xᴴ + λI)⁻¹ e||², the solve through jaxmg.potrs on the samples' rows, vs
    the dense version (X: samples x parameters, complex)."""
    mesh = mesh_of([0, 1, 2, 3])
    n_s, n_p, lam = 16, 24, 1e-2
    rng = np.random.default_rng(10)
    x = (rng.standard_normal((n_s, n_p)) + 1j * rng.standard_normal((n_s, n_p))) / np.sqrt(n_s)
    e = rng.standard_normal(n_s) + 1j * rng.standard_normal(n_s)

    def loss(o, solve):
        t = o @ jnp.conj(o).T + lam * jnp.eye(n_s)
        return jnp.sum(jnp.abs(jnp.conj(o).T @ solve(t, e)) ** 2)

    kw = dict(mesh=mesh, in_specs=ROWS)
    got = jax.jit(jax.grad(lambda o: loss(o, lambda t, r: jaxmg.potrs(t, r, **kw))))(
        put(x, mesh))
    want = jax.grad(lambda o: loss(o, jnp.linalg.solve))(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10,
                               atol=1e-12 * np.abs(np.asarray(want)).max())


# ---- the compiled gradients gather no matrix --------------------------------------------

_COLLECTIVE = re.compile(
    r"=\s*(\(?[^=]*?\)?)\s(all-gather|all-reduce|all-to-all|collective-permute|"
    r"reduce-scatter|collective-broadcast|all-gather-start|all-reduce-start|"
    r"collective-permute-start)\("
)
_SHAPE = re.compile(r"[a-z]+[0-9]*\[([0-9,]*)\]")


def _collective_shapes(hlo: str):
    out = []
    for m in _COLLECTIVE.finditer(hlo):
        for dims in _SHAPE.findall(m.group(1)):
            out.append((m.group(2), tuple(int(d) for d in dims.split(",") if d)))
    return out


def test_compiled_gradients_never_gather_the_matrix(mesh_of):
    """On 4 devices, the compiled reverse- and forward-mode derivatives of potrs, potri,
    syevd and logdet hold no collective result of more than N·N/4 elements (the rings move
    one block of N/4 rows at a time), and their temporaries stay a few shards per device
    (the dense N x N would be 4 shards)."""
    n = 32
    mesh = mesh_of([0, 1, 2, 3])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a = put(with_spectrum(np.linspace(1, 2, n), np.float64), mesh)
    w = put(np.random.default_rng(11).standard_normal((n, n)), mesh)
    b = np.ones((n, 2))
    losses = {
        "potrs": lambda m, w: jnp.sum(jaxmg.potrs(m, b, **kw) ** 2),
        "potri": lambda m, w: jnp.sum(jaxmg.potri(m, **kw) * w),
        "syevd": lambda m, w: (lambda ev, v: jnp.sum(ev**3) + jnp.sum(v**2 * w))(
            *jaxmg.syevd(m, **kw)),
        "logdet": lambda m, w: linalg.logdet(m, **kw),
    }
    shard = n * n // 4
    seen = set()
    for name, loss in losses.items():
        modes = {
            "rev": jax.grad(loss),
            "fwd": lambda m, w, loss=loss: jax.jvp(lambda x: loss(x, w), (m,), (w,))[1],
        }
        for mode, fn in modes.items():
            compiled = jax.jit(fn).lower(a, w).compile()
            for kind, shape in _collective_shapes(compiled.as_text()):
                seen.add(kind)
                assert int(np.prod(shape)) <= shard, (name, mode, kind, shape)
            temp = compiled.memory_analysis().temp_size_in_bytes
            assert temp <= 12 * shard * 8, (name, mode, temp / (shard * 8))
    assert {"collective-permute", "all-to-all"} <= seen  # the parser does see the rings


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_second_derivatives_in_every_direction_equal_dense(mesh_of, dtype):
    """Second derivatives in non-Hermitian directions too (the rules are exact for any X,
    where a shortcut through Xᴴ = X would only hold on Hermitian directions): forward over
    forward, and forward over reverse, vs the dense jnp.linalg twins (eigh: of the Hermitian
    part, as jnp.linalg.eigh's default symmetrization)."""
    mesh = mesh_of([1, 3])
    kw = dict(mesh=mesh, in_specs=ROWS)
    a, b = _problem(6, dtype, seed=12)
    rng = np.random.default_rng(13)
    u, v = (_problem(6, dtype, seed=s)[0] + rng.standard_normal((6, 6)) for s in (14, 15))
    wgt = rng.standard_normal((6, 6))

    def loss(m, solve, inv, eigvalsh, logdet):
        return (jnp.sum(jnp.abs(solve(m, b)) ** 2) + jnp.sum(jnp.real(inv(m)) * wgt)
                + jnp.sum(jnp.abs(inv(m)) ** 2) + jnp.sum(eigvalsh(m) ** 3) + logdet(m))

    ours = lambda m: loss(m, lambda x, r: jaxmg.potrs(x, r, **kw), lambda x: jaxmg.potri(x, **kw),
                          lambda x: jaxmg.syevd(x, return_eigenvectors=False, **kw),
                          lambda x: linalg.logdet(x, **kw))
    dense = lambda m: loss(m, jnp.linalg.solve, jnp.linalg.inv, jnp.linalg.eigvalsh,
                           lambda x: jnp.linalg.slogdet(x)[1])

    def fwd_fwd(f):
        return lambda m: jax.jvp(lambda x: jax.jvp(f, (x,), (u,))[1], (m,), (v,))[1]

    def fwd_rev(f):
        return lambda m: jax.jvp(jax.grad(f), (m,), (v,))[1]

    got = jax.jit(fwd_fwd(ours))(put(a, mesh))
    want = fwd_fwd(dense)(a)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-9)
    got = jax.jit(fwd_rev(ours))(put(a, mesh))
    want = fwd_rev(dense)(a)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                               atol=1e-9 * np.abs(np.asarray(want)).max())


def test_explicit_mesh(mesh_of):
    """Explicit mesh axes (jax.make_mesh's default): under jit, and eagerly inside
    jax.set_mesh (JAX's own requirement for eager gradients there), with a right-hand side
    that is sharded by rows and has to be resharded."""
    mesh = mesh_of([0, 1, 2, 3], explicit=True)
    a, b = _problem(8, np.complex128, seed=16)
    wgt = np.random.default_rng(17).standard_normal((8, 8))

    def loss(m, r, solve, cho, inv, eigh, logdet):
        ev, v = eigh(m)
        return (jnp.sum(jnp.abs(solve(m, r)) ** 2) + jnp.sum(jnp.abs(cho(m, r)) ** 2)
                + jnp.sum(jnp.real(inv(m)) * wgt) + jnp.sum(jnp.abs(v) ** 2 * wgt)
                + jnp.sum(ev**2) + logdet(m))

    def ours(**kw):
        return lambda m, r: loss(
            m, r, lambda x, y: jaxmg.potrs(x, y, **kw),
            lambda x, y: linalg.cho_solve(linalg.cho_factor(x, **kw), y),
            lambda x: jaxmg.potri(x, **kw), lambda x: jaxmg.syevd(x, **kw),
            lambda x: linalg.logdet(x, **kw))

    dense = lambda m, r: loss(m, r, jnp.linalg.solve,
                              lambda x, y: jnp.linalg.solve(from_triangle(x), y), jnp.linalg.inv,
                              jnp.linalg.eigh, lambda x: jnp.linalg.slogdet(x)[1])
    want = jax.grad(dense, argnums=(0, 1))(a, b)
    A, B = put(a, mesh), put(b, mesh)  # b sharded by rows too
    got_jit = jax.jit(jax.grad(ours(mesh=mesh, in_specs=ROWS), argnums=(0, 1)))(A, B)
    with jax.set_mesh(mesh):
        got_eager = jax.grad(ours(), argnums=(0, 1))(A, B)
    for got in (got_jit, got_eager):
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0,
                                       atol=1e-10 * np.abs(np.asarray(w)).max())
