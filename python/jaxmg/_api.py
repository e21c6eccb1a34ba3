"""The public ops: ``potrs``, ``potri``, ``syevd`` on whole row-sharded arrays, and their
``*_shardmap_ctx`` forms called inside the user's own ``jax.shard_map``.

Each public call runs one pass down the layers: checks and placement (``_plan``), the
differentiable function of the op (``_rules``), the engine's program (``_engines``), the FFI
call (``_call``). Called eagerly, the differentiable function runs as one jitted program
(``_run``).
"""

from __future__ import annotations

import collections
import functools
import threading

import jax
import jax.numpy as jnp

from . import _config, _engines, _mesh, _plan, _rules, _spmd

_ENGINE_DOC = """engine: ``"auto"`` (default) or an engine: ``"cusolvermg"`` (cuSOLVERMg over every GPU
        of the mesh, O(N^2 / ndev) memory per device), ``"lapack"`` (the distributed tiled
        LAPACK backend on CPU devices), ``"one_device"`` (the first device gathers what the
        solver reads and solves alone with cuSOLVER / LAPACK, the others receive their part
        of the result; O(N^2) on that device; every device of the mesh in this process) or
        ``"gather"`` (every device gathers the matrix and runs XLA's solver; O(N^2) per
        device). ``"mg"`` names the platform's distributed engine and ``"single"``
        ``one_device`` where it implements the op and the mesh is in this process, else
        ``gather``. ``"auto"``: ``lapack`` on CPU devices; on GPUs a single-device engine
        when the matrix fits one device comfortably (and for potrs on several GPUs N is below
        the measured crossover: docs/design.md, "Engines", and docs/benchmarks.md, "potrs
        engine crossover"), else ``cusolvermg``."""


# ---- eager calls ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _entry(fn, vector: bool = False):
    """A public op's call as one jitted program: ``fn`` (a cached differentiable function
    returning ``(*values, info[1])``) plus the indexing of its outputs (``info[0]``). With
    ``vector`` the second argument is a vector right-hand side: it is made the N x 1 column
    ``fn`` takes inside the program (not by an eager op of its own: one program dispatch
    less, about 0.1-0.3 ms on a GPU) and the first value's column is taken out.

    Called eagerly, a ``custom_jvp``/``custom_vmap`` function is re-processed by JAX on every
    call (about 0.4 ms of Python, measured on CPU); under ``jit`` it is traced once and later
    calls take JAX's C++ dispatch path. Not used with ``donate``: the outer program would
    have no output to alias the donated buffer to, so XLA would copy it instead."""
    return jax.jit(lambda *args: _outputs(fn, args, vector))


def _outputs(fn, args, vector: bool):
    """``fn(*args)`` as ``(*values, info)``: ``info[0]``, and with ``vector`` the second
    argument made an N x 1 column before and the first value's column taken out after."""
    if vector:
        args = (args[0], args[1][:, None], *args[2:])
    *vals, info = fn(*args)
    if vector:
        vals[0] = vals[0][:, 0]
    return (*vals, info[0])


# Eager calls on CPU devices that may still be running (see _run).
_CPU_INFLIGHT_MAX = 1
_cpu_inflight: collections.deque = collections.deque()
_cpu_inflight_lock = threading.Lock()


def _run(fn, donate: bool, args, vector: bool = False, platform: str = ""):
    """``_entry(fn)(*args)``, or ``fn`` itself when donating (see ``_entry``); the same outputs
    either way: ``(*values, info)`` with ``info`` a scalar. ``vector``: the second argument is
    a vector right-hand side (see ``_entry``).

    On CPU devices at most ``_CPU_INFLIGHT_MAX`` earlier eager call is left in flight: XLA's CPU
    client runs the per-device parts of queued multi-device programs on a small thread pool
    and bounds each device's queue with a semaphore that it acquires on those same threads;
    with a few dozen calls queued, a device's part of an older call can find no thread while
    the other devices' parts wait for it in a rendezvous (ours or XLA's own collectives), and
    only the rendezvous timeout ends it. Waiting for the oldest call keeps the queue short
    (docs/errors.md).

    Under a trace (the user's jit, grad, vmap) ``fn`` is called directly: a cached
    ``jax.jit`` would hand the same traced program, hence the same call-site id, to two calls
    of one op inside one outer program. On one process's devices the copies of a site are
    told apart by their XLA instance (CPU) or run in one order on every device (GPU), so that
    is harmless there; across the processes of an MPMD job on CPU it is not (docs/design.md,
    "Rendezvous"), so duplicates are not created here on purpose."""
    traced = any(isinstance(x, jax.core.Tracer) for x in args)
    if not donate and not traced:
        out = _entry(fn, vector)(*args)
    else:
        out = _outputs(fn, args, vector)
    if platform == "cpu" and not traced:
        with _cpu_inflight_lock:
            _cpu_inflight.append(out[-1])
            old = _cpu_inflight.popleft() if len(_cpu_inflight) > _CPU_INFLIGHT_MAX else None
        if old is not None:
            try:
                old.block_until_ready()
            except Exception:  # that call's error is raised to whoever reads its results
                pass
    return out


# ---- inside the user's shard_map --------------------------------------------------------------

_XLA_PLATFORM = {"cpu": "cpu", "gpu": "cuda"}


def _in_context(op: str, ctx: _plan.ContextPlan, geos: dict, *args, **kw):
    """``op``'s per-device body on the distributed engine of the platform the program is
    lowered for (``jax.lax.platform_dependent``: the branch of every other platform is
    traced but not lowered), each with its platform's geometry."""
    branches = {
        _XLA_PLATFORM[p]: _engines.body(_engines.DISTRIBUTED[p], op, geo, ctx.row_axes,
                                        ctx.group_axes, p, **kw)
        for p, geo in geos.items()
    }
    return jax.lax.platform_dependent(*args, **branches)


# ---- potrs ------------------------------------------------------------------------------------

def _hermitian(plan, a, reads, donate: bool):
    """``a`` as the solver is to read it (``_rules.hermitian_input``; None: as given)."""
    if reads is None or isinstance(a, jax.ShapeDtypeStruct):
        return a
    donate = donate and not isinstance(a, jax.core.Tracer)
    return _rules.hermitian_input(plan.place, reads, donate)(a)


def potrs(a, b, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False, engine="auto"):
    return solve_call(a, b, T_A, mesh, in_specs, return_status, pad, donate, engine)


def solve_call(a, b, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True,
               donate=False, engine="auto", reads=None, name="potrs"):
    """``potrs``, with ``a`` first made Hermitian as ``reads`` says (``_hermitian``)."""
    plan, a, b, vector = _plan.plan("potrs", a, T_A, mesh, in_specs, pad, engine, b=b,
                                    name=name)
    a = _hermitian(plan, a, reads, bool(donate))
    fn = _rules.potrs(plan.engine, plan.place, plan.geo, bool(donate), _config.get_timeout())
    x, info = _run(fn, bool(donate), (a, b), vector=vector, platform=plan.place.platform)
    x = x[: plan.n] if plan.n != plan.geo.n else x
    return (x, info) if return_status else x


potrs.__doc__ = f"""Solves A x = b for Hermitian positive definite A sharded by rows over several devices.

    The math: A = L L^H (Cholesky), then x = L^-H L^-1 b: on GPUs cuSOLVERMg's ``potrf`` +
    ``potrs`` (or cuSOLVER's on one GPU of the mesh, ``engine``); on CPU devices a
    distributed tiled Cholesky over LAPACK kernels.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows (``P('x', None)``).
        Only Hermitian inputs are meaningful: which entries are read depends on the layout.
      b: right-hand side, N or N x k (any k), replicated (resharded if it is not).
      T_A: tile size of the 1D block-cyclic layout; default: the largest divisor of the
        shard up to 256 (CPU), or on GPUs up to 2048 for shards of 4096 rows or more and 1024
        below (measured fastest). A tile that does not divide the shard is padded when
        ``pad`` is True.
      mesh, in_specs: the mesh and ``(P(row_axes, None), P(None, None))`` (or
        ``P(row_axes, None)``, ``(P(row_axes, None),)``), as in the original JAXMg API;
        inferred from ``a.sharding`` when omitted. Mesh axes that do not shard the rows
        replicate the problem: each replica group solves it independently.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        elimination broke down at the pivot of original row k (1-based); equal to the leading
        minor of LAPACK whenever the failure is caused by that row.
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      {_ENGINE_DOC}
        On GPUs ``one_device`` solves float32 problems with 8192 <= N <= 16384 in float64
        (faster there on an H200; x is rounded to float32 once) when float64 is enabled.

    Returns:
      x with the shape of ``b``, replicated; ``(x, info)`` with ``return_status``. On a
      numerical failure x is NaN and info > 0, on every device.

    Differentiable w.r.t. ``a`` and ``b`` (forward and reverse, any order; as
    ``jnp.linalg.solve``: dx = A⁻¹(db − dA x), Ā = −b̄ xᵀ) with one factorization, and
    batched by ``vmap`` (one call per element). See docs/ops/potrs.md.
    """


def potrs_shardmap_ctx(a, b, T_A=None, pad=True, *, axis_name=None):
    """``potrs`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded matrix, ``b`` the replicated
    right-hand side (N or N x k). ``axis_name`` names the mesh axis (or tuple of axes) the
    rows are sharded over; it may be omitted when only one axis of the mesh has more than
    one device. Runs on the platform's distributed engine (cuSOLVERMg, or tiled LAPACK on
    CPU devices), with that platform's default tile. Returns ``(x, status)`` with x
    replicated and status an int32 array of shape (1,) holding LAPACK's info. Use
    ``check_vma=False`` on the enclosing shard_map.
    """
    ctx, geos = _plan.context_plan(a, T_A, pad, axis_name, "potrs")
    b, vector, dtype = _plan.check_rhs(b, ctx.n, jnp.dtype(a.dtype), "potrs_shardmap_ctx")
    x, info = _in_context("potrs", ctx, geos, a.astype(dtype), b[:, None] if vector else b)
    return (x[:, 0] if vector else x), info


# ---- potri ------------------------------------------------------------------------------------

def potri(a, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False, engine="auto"):
    plan, a, _, _ = _plan.plan("potri", a, T_A, mesh, in_specs, pad, engine)
    fn = _rules.potri(plan.engine, plan.place, plan.geo, bool(donate), _config.get_timeout())
    out, info = _run(fn, bool(donate), (a,), platform=plan.place.platform)
    out = _spmd.cut(out, plan.n, plan.place.mesh) if plan.n != plan.geo.n else out
    return (out, info) if return_status else out


potri.__doc__ = f"""Inverse of a Hermitian positive definite matrix sharded by rows over several devices.

    The math: A = L L^H (Cholesky), then inv(A) = L^-H L^-1. On GPUs the distributed inverse
    is cuSOLVERMg's ``potrf`` plus one distributed ``potrs`` per device for the identity
    columns of its rows (cuSOLVERMg's own ``potri`` returns wrong inverses on 2 GPUs); on
    CPU devices a distributed tiled Cholesky and inverse over LAPACK kernels.

    Unlike the original JAXMg, which returned one triangle and symmetrized it afterwards,
    the result is the full Hermitian inverse; ``potri_symmetrize`` is not needed.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows (``P('x', None)``).
        Only Hermitian inputs are meaningful: which entries are read depends on the layout.
      T_A: tile size; default: the largest divisor of the shard up to 256 (CPU), or on GPUs
        up to 2048 for shards of 4096 rows or more and 1024 below (measured fastest). A tile
        that does not divide the shard is padded when ``pad`` is True.
      mesh, in_specs: the mesh and ``P(row_axes, None)`` (or ``(P(row_axes, None),)``), as in
        the original JAXMg API; inferred from ``a.sharding`` when omitted. Mesh axes that do
        not shard the rows replicate the problem.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        the Cholesky factorization broke down at the pivot of original row k (1-based).
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      {_ENGINE_DOC}
        ``one_device`` has no potri (``"single"`` runs ``gather``).

    Returns:
      inv(A), N x N, sharded by rows like ``a``; ``(inv(A), info)`` with ``return_status``.
      When A is not positive definite, inv(A) is NaN and info > 0, on every device.

    Differentiable (forward and reverse, any order; d(A⁻¹) = −X dA X by distributed ring
    products, no matrix gathered) and batched by ``vmap``. See docs/ops/potri.md.
    """


def potri_shardmap_ctx(a, T_A=None, pad=True, *, axis_name=None):
    """``potri`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded Hermitian positive definite
    matrix; ``axis_name`` names the mesh axis (or tuple of axes) the rows are sharded over
    and may be omitted when only one axis of the mesh has more than one device. Runs on the
    platform's distributed engine, as ``potri(engine="mg")`` does. Returns
    ``(inv_local, status)``: this device's rows of the full inverse (same shape as ``a``,
    so ``out_specs=P(axis, None)`` assembles inv(A); no symmetrization needed) and an int32
    array of shape (1,) holding LAPACK's info. Use ``check_vma=False`` on the enclosing
    shard_map.
    """
    ctx, geos = _plan.context_plan(a, T_A, pad, axis_name, "potri")
    return _in_context("potri", ctx, geos, a)


@jax.jit
def _symmetrize(a):
    """Elementwise selects between ``a`` and its conjugate transpose. On a mesh with
    Explicit axes the transpose and the masks are first given ``a``'s sharding (there the
    sharding is part of the type, and a select of differently sharded operands is refused)."""
    n = a.shape[0]
    row = jax.lax.broadcasted_iota(jnp.int32, (n, n), 0)
    col = jax.lax.broadcasted_iota(jnp.int32, (n, n), 1)
    lower = jnp.conj(a).T
    traced = isinstance(a, jax.core.Tracer)
    sharding = _mesh._typed_sharding(a) if traced else getattr(a, "sharding", None)
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    if (isinstance(sharding, jax.sharding.NamedSharding) and explicit is not None
            and explicit in tuple(getattr(sharding.mesh, "axis_types", ()))):
        move = ((lambda x: jax.sharding.reshard(x, sharding)) if traced
                else (lambda x: jax.device_put(x, sharding)))
        row, col, lower = (move(x) for x in (row, col, lower))
    diag = jnp.real(a).astype(a.dtype) if jnp.iscomplexobj(a) else a
    return jnp.where(col > row, a, jnp.where(col == row, diag, lower))


def potri_symmetrize(a):
    """The Hermitian matrix whose upper triangle is that of ``a`` (the real part of the
    diagonal is kept): the original JAXMg API's helper for the triangle that cuSOLVERMg's
    potri fills.

    jaxmg's ``potri`` and ``potri_shardmap_ctx`` already return the full inverse, so this is
    only needed for code written against the original JAXMg; on a Hermitian input it returns
    the input. Unlike the original, it does not donate (delete) its argument.
    """
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"jaxmg.potri_symmetrize: 'a' must be a square matrix, got shape {shape}")
    return _symmetrize(a)


# ---- syevd ------------------------------------------------------------------------------------

def syevd(a, T_A=None, mesh=None, in_specs=None, return_eigenvectors=True, return_status=False,
          pad=True, *, donate=False, engine="auto"):
    return eigh_call(a, T_A, mesh, in_specs, return_eigenvectors, return_status, pad, donate,
                     engine)


def eigh_call(a, T_A=None, mesh=None, in_specs=None, return_eigenvectors=True,
              return_status=False, pad=True, donate=False, engine="auto", reads=None,
              name="syevd"):
    """``syevd``, with ``a`` first made Hermitian as ``reads`` says (``_hermitian``)."""
    plan, a, _, _ = _plan.plan("syevd", a, T_A, mesh, in_specs, pad, engine, name=name)
    a = _hermitian(plan, a, reads, bool(donate))
    vectors = bool(return_eigenvectors)
    fn = _rules.syevd(plan.engine, plan.place, plan.geo, vectors, bool(donate),
                      _config.get_timeout())
    *out, info = _run(fn, bool(donate), (a,), platform=plan.place.platform)
    if plan.n != plan.geo.n:  # the padding eigenpairs are the last ones
        out = [out[0][: plan.n]] + [_spmd.cut(v, plan.n, plan.place.mesh) for v in out[1:]]
    out = tuple(out)
    if return_status:
        return (*out, info)
    return out if vectors else out[0]


syevd.__doc__ = f"""Eigenvalues (and eigenvectors) of a Hermitian matrix sharded by rows over several devices.

    The math: A = V diag(w) V^H with w ascending and V unitary, its columns the
    eigenvectors (as ``jnp.linalg.eigh``). On GPUs cuSOLVERMg's ``syevd`` (or cuSOLVER's on
    one GPU of the mesh, ``engine``); on CPU devices LAPACK's ``?syevd``/``?heevd`` on the
    first device of the mesh (the CPU eigensolver is not distributed).

    Args:
      a: N x N Hermitian matrix, sharded by rows (``P('x', None)``). Only Hermitian inputs
        are meaningful: which triangle is read depends on the layout.
      T_A: tile size, at most 1024 (cuSOLVERMg's limit; larger values are clamped to 1024
        where the original JAXMg raised). Default: the largest divisor of the shard up to 256
        (CPU) or 1024 (GPU). A tile that does not divide the shard is padded when ``pad``.
      mesh, in_specs: as for ``potri``; inferred from ``a.sharding`` when omitted.
      return_eigenvectors: also compute V (else the values-only solver runs).
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, > 0 when
        the eigensolver did not converge.
      pad: pad shards that ``T_A`` does not divide, else raise. The padding holds
        2 ||A||_inf on its diagonal, above A's spectrum; its eigenpairs are dropped.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      {_ENGINE_DOC}
        ``one_device`` runs cuSOLVER in its non-deterministic mode (about 10 % faster,
        results differ by rounding from run to run) unless the environment sets
        ``JAXMG_DETERMINISTIC=1``.

    Returns:
      ``w``, ``(w, V)``, ``(w, info)`` or ``(w, V, info)`` as in the original JAXMg API:
      ``w`` (N reals, ascending) replicated, ``V`` (N x N) sharded by rows like ``a``. On
      failure w and V are NaN and info > 0, on every device.

    Differentiable (forward and reverse, any order) with ``jnp.linalg.eigh``'s rule and
    conventions (Hermitian part of the tangent; eigenvector derivatives not finite for equal
    eigenvalues), by distributed ring products; batched by ``vmap``. See docs/ops/syevd.md.
    """


def syevd_shardmap_ctx(a, T_A=None, return_eigenvectors=True, pad=True, *, axis_name=None):
    """``syevd`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded Hermitian matrix;
    ``axis_name`` names the mesh axis (or tuple of axes) the rows are sharded over and may be
    omitted when only one axis of the mesh has more than one device. Runs on the platform's
    distributed engine.

    Returns ``(w, V_local, status)`` (``(w, status)`` without eigenvectors): ``w`` the N
    eigenvalues, ascending, the same on every device (``out_specs=P()``); ``V_local`` this
    device's rows of V (same shape as ``a``, so ``out_specs=P(axis, None)`` assembles V with
    the eigenvectors as columns); ``status`` an int32 array of shape (1,) with LAPACK's info.
    Getting rows of V costs one ``all_to_all`` over the row axes inside the shard_map. (The
    original JAXMg returned a column block of V here instead.) Use ``check_vma=False`` on the
    enclosing shard_map.
    """
    ctx, geos = _plan.context_plan(a, T_A, pad, axis_name, "syevd")
    vectors = bool(return_eigenvectors)
    w, v, info = _in_context("syevd", ctx, geos, a, vectors=vectors)
    return (w, v, info) if vectors else (w, info)
