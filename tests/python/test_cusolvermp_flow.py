"""The cuSOLVERMp engine's data flow on CPU devices: its bodies (the exchange to the 2D
block-cyclic layout, the right-hand side's local blocks, the psum of the solution, the
factor and eigenvectors moved back to rows, info over the ranks) with the two FFI calls
replaced by a stand-in that does what cuSOLVERMp documents, in JAX: it assembles the whole
matrix from every rank's local blocks, factors or diagonalizes it, and returns each rank's
local blocks of the results. The real calls run in tests/gpu/test_cusolvermp.py."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import hpd, herm, need_devices

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import _spmd
from jaxmg._engines import _grid2d, cusolvermp
from jaxmg._geometry import Geometry, Placement

# stand-ins for an engine or its FFI: nothing built with them outlives a test
pytestmark = pytest.mark.usefixtures("forget_jaxmg_caches")


def _assemble(local_t, lay, tb, n, m):
    """Inside shard_map: the whole n x m matrix from every rank's local blocks (given as the
    column-major buffers: shape (local columns, lld))."""
    every = jax.lax.all_gather(local_t.T, "x")         # (P, mloc, nloc_padded)
    whole = jnp.zeros((n, m), local_t.dtype)
    for r in range(lay.nprocs):
        rows, cols = lay.rows(r), lay.cols(r)
        whole = whole.at[np.ix_(rows, cols)].set(every[r][:rows.size, :cols.size])
    return whole


def _local(whole, lay, tb, shape_t):
    """This rank's local blocks of ``whole`` as a column-major buffer of shape ``shape_t``."""
    me = jax.lax.axis_index("x")
    blocks = []
    for r in range(lay.nprocs):
        rows, cols = lay.rows(r), lay.cols(r)
        loc = jnp.zeros((shape_t[1], shape_t[0]), whole.dtype)
        loc = loc.at[:rows.size, :cols.size].set(whole[np.ix_(rows, cols)])
        blocks.append(loc.T)
    return jnp.stack(blocks)[me]


def _fake_ffi(geo, grid):
    p, q = grid
    real_call = jax.ffi.ffi_call

    def ffi_call(name, shapes, **kw):
        if not name.startswith("jaxmg_dist_"):
            return real_call(name, shapes, **kw)
        g = cusolvermp._grid(geo.n, geo.ndev, p, q, cusolvermp.block(geo.nloc))
        lay, tb = g.lay, g.tb

        def run(*args, **attrs):
            if name == "jaxmg_dist_qr":
                m, n = int(attrs["m"]), int(attrs["n"])
                rl = cusolvermp._grid(m, geo.ndev, p, q, int(attrs["nb"]), n).lay
                whole = _assemble(args[0], rl, None, m, n)
                qm, rm = jnp.linalg.qr(whole)
                after = jnp.zeros((m, n), whole.dtype).at[:n].set(rm)  # R where Geqrf leaves it
                return (_local(qm, rl, None, shapes[0].shape), _local(after, rl, None, shapes[1].shape),
                        jnp.zeros((1,), jnp.int32))
            assert attrs["n"] == geo.n and attrs["mb"] == lay.mb == attrs["nb"]
            a = _assemble(args[0], lay, tb, geo.n, geo.n)
            if name == "jaxmg_dist_getrs":
                nrhs = int(attrs["nrhs"])
                blay = _grid2d.Layout(geo.n, nrhs, lay.mb, int(attrs["nbb"]), p, q)
                b = _assemble(args[1], blay, None, geo.n, nrhs)
                x = jnp.linalg.solve(a, b)
                return (args[0], _local(x, blay, None, shapes[1].shape), jnp.zeros((2,), jnp.int32))
            if name == "jaxmg_dist_sygvd":
                bm = _assemble(args[1], lay, tb, geo.n, geo.n)
                L = jnp.linalg.cholesky(bm)
                tri = jax.lax.linalg.triangular_solve
                y = tri(L, a, left_side=True, lower=True)
                c = tri(L, jnp.conj(y).T, left_side=True, lower=True)   # L⁻¹ A L⁻ᴴ
                w, v = jnp.linalg.eigh((c + jnp.conj(c).T) / 2)
                z = tri(L, v, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
                return (args[0], args[1], _local(z, lay, tb, shapes[2].shape), w,
                        jnp.zeros((1,), jnp.int32))
            if name == "jaxmg_dist_potrs":
                nrhs = int(attrs["nrhs"])
                blay = _grid2d.Layout(geo.n, nrhs, lay.mb, int(attrs["nbb"]), p, q)
                # factor = 0: A holds L already (its lower triangle is read)
                L = jnp.tril(jax.lax.linalg.cholesky(a, symmetrize_input=False)
                             if attrs["factor"] else a)
                if not attrs["solve"]:
                    return (_local(L, lay, tb, shapes[0].shape), args[1], jnp.zeros((2,), jnp.int32))
                b = _assemble(args[1], blay, None, geo.n, nrhs)
                x = jax.scipy.linalg.cho_solve((L, True), b)
                return (_local(L, lay, tb, shapes[0].shape), _local(x, blay, None, shapes[1].shape),
                        jnp.zeros((2,), jnp.int32))
            w, v = jnp.linalg.eigh(a)
            return (args[0], _local(v, lay, tb, shapes[1].shape), w, jnp.zeros((1,), jnp.int32))

        return run

    return ffi_call


@pytest.mark.parametrize("ndev,n,block", [(1, 8, 4), (2, 12, 4), (4, 16, 4), (4, 24, 3),
                                          (3, 18, 4), (2, 20, 512)])
def test_potrs_and_syevd_bodies(monkeypatch, ndev, n, block):
    need_devices(ndev)
    monkeypatch.setenv("JAXMG_MP_BLOCK", str(block))
    mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
    place = Placement(mesh, ("x",), ())
    geo = Geometry(n, ndev, n // ndev)
    grid = _grid2d.choose_grid(ndev)
    monkeypatch.setattr(jax.ffi, "ffi_call", _fake_ffi(geo, grid))
    rng = np.random.default_rng(n)
    a = hpd(n, np.float64, rng)
    b = rng.standard_normal((n, 3))
    kw = dict(geo=geo, row_axes=("x",), group_axes=(), key=1, grid=grid)

    def potrs(a_loc, b):
        return cusolvermp.potrs(a_loc, b, keep_factor=True, **kw)

    prog = _spmd.shard_map(potrs, mesh, (P("x", None), P()), (P(), P(), P("x", None)))
    x, info, factor = jax.jit(prog)(jax.device_put(a, NamedSharding(mesh, P("x", None))), b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-10)
    assert int(info[0]) == 0
    np.testing.assert_allclose(np.tril(np.asarray(factor)), np.linalg.cholesky(a), atol=1e-12)

    def potri(a_loc):
        return cusolvermp.potri(a_loc, **kw)

    prog = _spmd.shard_map(potri, mesh, (P("x", None),), (P("x", None), P()))
    inv, info = jax.jit(prog)(jax.device_put(a, NamedSharding(mesh, P("x", None))))
    np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(a), atol=1e-10)
    assert int(info[0]) == 0

    g = rng.standard_normal((n, n)) + n * np.eye(n)

    def gen(a_loc, b):
        return cusolvermp.solve_gen(a_loc, b, geo=geo, row_axes=("x",), key=1, grid=grid)

    prog = _spmd.shard_map(gen, mesh, (P("x", None), P()), (P(), P()))
    x, info = jax.jit(prog)(jax.device_put(g, NamedSharding(mesh, P("x", None))), b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(g, b), rtol=1e-10)

    h = herm(n, np.float64, rng)
    s = hpd(n, np.float64, rng)

    def gen_eig(a_loc, b_loc):
        return cusolvermp.eigh_gen(a_loc, b_loc, geo=geo, row_axes=("x",), key=1, grid=grid)

    prog = _spmd.shard_map(gen_eig, mesh, (P("x", None), P("x", None)), (P(), P("x", None), P()))
    put = lambda m: jax.device_put(m, NamedSharding(mesh, P("x", None)))  # noqa: E731
    w, v, info = jax.jit(prog)(put(h), put(s))
    np.testing.assert_allclose(np.asarray(w), sl.eigh(h, s, eigvals_only=True), atol=1e-10)
    v = np.asarray(v)
    np.testing.assert_allclose(h @ v, s @ v * np.asarray(w), atol=1e-9)
    np.testing.assert_allclose(v.T @ s @ v, np.eye(n), atol=1e-9)

    def syevd(a_loc):
        return cusolvermp.syevd(a_loc, vectors=True, **kw)

    prog = _spmd.shard_map(syevd, mesh, (P("x", None),), (P(), P("x", None), P()))
    w, v, info = jax.jit(prog)(jax.device_put(h, NamedSharding(mesh, P("x", None))))
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(h), atol=1e-12)
    v = np.asarray(v)
    np.testing.assert_allclose(h @ v, v * np.asarray(w), atol=1e-10)


@pytest.mark.parametrize("ndev,n,block", [(1, 8, 4), (2, 12, 4), (3, 18, 4), (4, 24, 3)])
def test_factor_bodies(monkeypatch, ndev, n, block):
    """potrf, then solve, inverse and logdet with the kept factor (the ops of
    ``linalg.cho_factor`` and of the derivative rules on this engine)."""
    need_devices(ndev)
    monkeypatch.setenv("JAXMG_MP_BLOCK", str(block))
    mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
    geo = Geometry(n, ndev, n // ndev)
    grid = _grid2d.choose_grid(ndev)
    monkeypatch.setattr(jax.ffi, "ffi_call", _fake_ffi(geo, grid))
    rng = np.random.default_rng(n + 1)
    a = hpd(n, np.float64, rng)
    b = rng.standard_normal((n, 2))
    kw = dict(geo=geo, row_axes=("x",), group_axes=(), key=1, grid=grid)
    rows, rep = P("x", None), P()
    put = lambda m: jax.device_put(m, NamedSharding(mesh, rows))  # noqa: E731

    def prog(body, ins, outs):
        return jax.jit(_spmd.shard_map(lambda *x: body(*x, **kw), mesh, ins, outs))

    fac, info = prog(cusolvermp.potrf, (rows,), (rows, rep))(put(a))
    assert int(info[0]) == 0
    np.testing.assert_allclose(np.tril(np.asarray(fac)), np.linalg.cholesky(a), atol=1e-12)
    x = prog(cusolvermp.solve, (rows, rep), rep)(fac, b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-10)
    inv = prog(cusolvermp.inverse, (rows,), rows)(fac)
    np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(a), atol=1e-10)
    ld = prog(cusolvermp.logdet, (rows,), rep)(fac)
    np.testing.assert_allclose(float(ld), np.linalg.slogdet(a)[1], rtol=1e-12)


def test_several_processes_run_on_this_engine(monkeypatch):
    """On GPUs of several processes, ``auto`` and the factors of cho_factor and of the
    derivative rules go to cuSOLVERMp where it is installed, to cuSOLVERMg where not; in one
    process nothing changes."""
    from jaxmg import _engines

    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    place = Placement(mesh, ("x",), ())
    monkeypatch.setattr(Placement, "platform", property(lambda self: "gpu"))
    monkeypatch.setattr(Placement, "device", property(lambda self: jax.devices()[0]))
    monkeypatch.setattr(cusolvermp, "available", lambda: None)
    in_one = {"v": True}
    monkeypatch.setattr(_engines._mpmd, "in_this_process", lambda m: in_one["v"])
    assert _engines.factor_engine(place) == "cusolvermg"
    assert _engines.auto("potrs", place, 64, np.float64) != "cusolvermp"
    in_one["v"] = False
    for op in ("potrs", "potri", "syevd"):
        assert _engines.auto(op, place, 64, np.float64) == "cusolvermp"
    assert _engines.factor_engine(place) == "cusolvermp"
    monkeypatch.setattr(cusolvermp, "available", lambda: "not installed")
    assert _engines.factor_engine(place) == "cusolvermg"
    assert _engines.auto("potrs", place, 64, np.float64) != "cusolvermp"


@pytest.fixture
def engine_on_cpu(monkeypatch):
    """The public ops on this engine over CPU devices: the engine let onto them, its set-up
    replaced (the group attribute carries the rank count to the stand-in) and its FFI calls
    stood in (``_fake_ffi``, with the layout of each call's own shape)."""
    import dataclasses

    from jaxmg import _engines

    real_call = jax.ffi.ffi_call

    def ffi_call(name, shapes, **kw):
        if not name.startswith("jaxmg_dist_"):
            return real_call(name, shapes, **kw)

        def run(*args, **attrs):
            nd = int(attrs["group"])
            m = int(attrs.get("m", attrs["n"]))
            fake = _fake_ffi(Geometry(m, nd, m // nd), _grid2d.choose_grid(nd))
            return fake(name, shapes, **kw)(*args, **attrs)

        return run

    def prepare(op, place, geo):
        return {"key": place.ndev, "grid": _grid2d.choose_grid(place.ndev)}

    monkeypatch.setattr(jax.ffi, "ffi_call", ffi_call)
    monkeypatch.setitem(_engines.ENGINES, "cusolvermp", dataclasses.replace(
        cusolvermp.ENGINE, platforms=("cpu", "gpu"), check=None, prepare=prepare))
    monkeypatch.setattr(cusolvermp, "prepare", prepare)
    return _engines


def test_linalg_and_derivative_rules_on_this_engine(engine_on_cpu, monkeypatch):
    """The public ops end to end on this engine, as on GPUs of several processes: cho_factor
    / cho_solve / logdet / solve and their derivatives (the rules' factors are this
    engine's: potrf, then solve / inverse with the kept factor). The engine is let onto
    CPU devices (``engine_on_cpu``)."""
    from jax.test_util import check_grads

    from jaxmg import linalg

    monkeypatch.setattr(engine_on_cpu, "multi_process", lambda place: True)
    for ndev, n in ((2, 12), (3, 10)):
        mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
        a = hpd(n, np.float64, np.random.default_rng(n))
        b = np.random.default_rng(1).standard_normal((n, 2))
        arg = jax.device_put(a, NamedSharding(mesh, P("x", None))) if n % ndev == 0 else a
        place = Placement(mesh, ("x",), ())
        assert engine_on_cpu.factor_engine(place) == "cusolvermp"
        fac = linalg.cho_factor(arg, mesh=mesh)
        np.testing.assert_allclose(np.asarray(linalg.cho_solve(fac, b)), np.linalg.solve(a, b),
                                   rtol=1e-10)
        np.testing.assert_allclose(float(linalg.logdet(arg, mesh=mesh)), np.linalg.slogdet(a)[1],
                                   rtol=1e-12)
        np.testing.assert_allclose(np.asarray(linalg.inv(arg, mesh=mesh)), np.linalg.inv(a),
                                   atol=1e-10)

        def sym(m):
            return (m + m.T) / 2

        kw = dict(order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
        check_grads(lambda m: linalg.solve(sym(m), b, assume_a="pos", mesh=mesh), (a,), **kw)
        check_grads(lambda m: linalg.logdet(sym(m), mesh=mesh), (a,), **kw)
        hlo = jax.jit(jax.grad(lambda m: linalg.logdet(sym(m), mesh=mesh))).lower(a).as_text()
        # the stand-in leaves no custom call of this engine in the program; the platform's
        # own factor ops must not be there either
        assert "jaxmg_potrf" not in hlo and "jaxmg_solve" not in hlo


def test_general_solve_and_its_derivative_on_this_engine(engine_on_cpu, monkeypatch):
    """``linalg.solve(assume_a="gen", engine="cusolvermp")`` end to end (the engine let onto
    CPU devices, its set-up and FFI stood in as above), and its derivative: a sharded product
    and this engine's solves with A and Aᵀ, never the gathered matrix."""
    from jax.test_util import check_grads

    from jaxmg import linalg

    for ndev, n in ((2, 12), (3, 10)):
        mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
        rng = np.random.default_rng(n)
        a = rng.standard_normal((n, n)) + 3 * np.eye(n)
        b = rng.standard_normal((n, 2))

        def f(a, b):
            return linalg.solve(a, b, assume_a="gen", mesh=mesh, engine="cusolvermp")

        np.testing.assert_allclose(np.asarray(f(a, b)), np.linalg.solve(a, b), rtol=1e-10)
        check_grads(f, (a, b), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
        hlo = jax.jit(jax.grad(lambda a: jnp.sum(f(a, b) ** 2))).lower(a).as_text()
        gathers = [ln for ln in hlo.splitlines() if "all_gather" in ln]
        assert gathers and not [ln for ln in gathers if f"-> tensor<{n}x{n}x" in ln]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_generalized_eigh_derivatives_on_this_engine(engine_on_cpu, dtype):
    """``linalg.eigh(a, b, engine="cusolvermp")``: eigenvalues and eigenvectors (up to their
    phase) differentiate like the gathered route's, through ring products (no gathered
    matrix); values only too."""
    from jax.test_util import check_grads

    from jaxmg import linalg

    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    rng = np.random.default_rng(4)
    n = 6
    h, s = herm(n, dtype, rng), hpd(n, dtype, rng)

    def both(h, s, engine):
        w, v = linalg.eigh(h, s, mesh=mesh, engine=engine)
        return w, jnp.abs(v) ** 2

    kw = dict(order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
    check_grads(lambda h, s: both(h, s, "cusolvermp"), (h, s), **kw)
    check_grads(lambda h, s: linalg.eigh(h, s, eigvals_only=True, mesh=mesh,
                                         engine="cusolvermp"), (h, s), **kw)
    dh, ds = herm(n, dtype, rng), herm(n, dtype, rng)
    got = jax.jvp(lambda h, s: both(h, s, "cusolvermp"), (h, s), (dh, ds))[1]
    want = jax.jvp(lambda h, s: both(h, s, "gather"), (h, s), (dh, ds))[1]
    for g, r in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_qr_and_its_derivative_on_this_engine(engine_on_cpu, dtype):
    """``linalg.qr(a, engine="cusolvermp")`` of tall matrices (rows that do and do not split
    evenly; the stand-in FFI as above): Q R = A, QᴴQ = I, R upper triangular, and the
    derivative (JAX's rule with only N x N pieces replicated) against the gathered route."""
    from jax.test_util import check_grads

    from jaxmg import linalg

    for ndev, m, n in ((2, 12, 5), (3, 10, 4), (4, 16, 16)):
        need_devices(ndev)
        mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
        rng = np.random.default_rng(m * n)
        a = rng.standard_normal((m, n))
        if np.issubdtype(dtype, np.complexfloating):
            a = a + 1j * rng.standard_normal((m, n))
        a = a.astype(dtype)
        q, r = linalg.qr(a, mesh=mesh, engine="cusolvermp")
        assert q.shape == (m, n) and r.shape == (n, n)
        np.testing.assert_allclose(np.asarray(q) @ np.asarray(r), a, atol=1e-12)
        np.testing.assert_allclose(np.asarray(q).conj().T @ np.asarray(q), np.eye(n), atol=1e-12)
        assert np.all(np.tril(np.asarray(r), -1) == 0)
        r_only = linalg.qr(a, mode="r", mesh=mesh, engine="cusolvermp")
        np.testing.assert_allclose(np.asarray(r_only), np.asarray(r), atol=1e-12)
        f = lambda a: linalg.qr(a, mesh=mesh, engine="cusolvermp")  # noqa: E731
        check_grads(f, (a,), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
        da = rng.standard_normal((m, n)).astype(dtype)
        got = jax.jvp(f, (a,), (da,))[1]
        want = jax.jvp(lambda a: linalg.qr(a, mesh=mesh, engine="gather"), (a,), (da,))[1]
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(np.asarray(g_), np.asarray(w_), atol=1e-10)
    with pytest.raises(ValueError, match="tall matrix"):
        linalg.qr(np.ones((4, 8)), mesh=Mesh(np.array(jax.devices()[:2]), ("x",)),
                  engine="cusolvermp")


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_svd_polar_lstsq_through_the_qr_on_this_engine(engine_on_cpu, dtype):
    """svd / polar / lstsq of tall matrices on this engine (the distributed QR, then the
    N x N SVD of R) give what the gathered route gives, derivatives included."""
    from jax.test_util import check_grads

    from jaxmg import linalg

    for ndev, m, n in ((2, 12, 5), (3, 10, 4)):
        mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
        rng = np.random.default_rng(m + n)
        a = rng.standard_normal((m, n))
        b = rng.standard_normal((m, 2))
        if np.issubdtype(dtype, np.complexfloating):
            a = a + 1j * rng.standard_normal((m, n))
        a = a.astype(dtype)
        mp = dict(mesh=mesh, engine="cusolvermp")
        u, s, vh = linalg.svd(a, full_matrices=False, **mp)
        np.testing.assert_allclose(np.asarray(s), np.linalg.svd(a, compute_uv=False), rtol=1e-12)
        np.testing.assert_allclose((np.asarray(u) * np.asarray(s)) @ np.asarray(vh), a, atol=1e-12)
        np.testing.assert_allclose(np.asarray(u).conj().T @ np.asarray(u), np.eye(n), atol=1e-12)
        np.testing.assert_allclose(np.asarray(linalg.svd(a, compute_uv=False, **mp)),
                                   np.asarray(s), rtol=1e-12)
        up, p = linalg.polar(a, **mp)
        u_ref, p_ref = sl.polar(a)
        np.testing.assert_allclose(np.asarray(up), u_ref, atol=1e-10)
        np.testing.assert_allclose(np.asarray(p), p_ref, atol=1e-10)
        for rcond in (None, 0.5):
            got = linalg.lstsq(a, b, rcond, **mp)
            want = jnp.linalg.lstsq(a, b, rcond=rcond)
            for g_, w_ in zip(got, want):
                np.testing.assert_allclose(np.asarray(g_), np.asarray(w_), atol=1e-10)
        assert linalg.lstsq(a, b[:, 0], **mp)[0].shape == (n,)
        kw = dict(order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
        check_grads(lambda a: linalg.svd(a, compute_uv=False, **mp), (a,), **kw)
        check_grads(lambda a: linalg.polar(a, **mp)[1], (a,), **kw)
        check_grads(lambda a: linalg.lstsq(a, b, **mp)[0], (a,), **kw)
    with pytest.raises(ValueError, match="tall matrix"):
        linalg.svd(np.ones((8, 8)), mesh=mesh, engine="cusolvermp")  # full_matrices=True
