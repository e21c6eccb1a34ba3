"""Both generations of the API in one set of names: the original JAXMg API's calls (``potrs``,
``syevd`` and their ``*_shardmap_ctx`` forms inside the user's ``jax.shard_map``) and JAXMg
1.4's (NetKet's distributed solvers call those).

Which form a ``*_shardmap_ctx`` call is, is told from where it is made: inside a
``shard_map`` (the abstract mesh has Manual axes) it is the original per-device form, on this
device's shard; anywhere else, JAXMg 1.4's global form, on whole arrays at the ``jit`` level,
returning the matrix work buffer first: ``(a_work, x, status)`` /
``(a_work, w, V, status)``. ``a_work`` is ``a`` itself (jaxmg does not consume its input
unless asked to donate), an A-sized output that an outer ``jit`` can alias a donated ``a``
to. ``potrs``/``syevd`` take JAXMg 1.4's keywords too (``matrix_specs``, ``return_logdet``).
Matrix specs that shard both dimensions (``P("pr", "pc")`` on a 2D mesh), given as
``matrix_specs`` or to a global ``*_shardmap_ctx`` call (where ``in_specs`` is 1.4's alias of
it), run with the rows over every axis of the spec (``P(("pr", "pc"), None)``), resharded
inside the call; an array sharded so is inferred the same way.
The differences that remain are listed in docs/ops/linalg.md, "Differences".
"""

from __future__ import annotations

from jax.sharding import PartitionSpec as P

from . import _api, _plan, linalg


def _rows_spec(spec):
    """A 1.4 matrix spec as jaxmg's row spec: P(r, c) with c sharded is P((r..., c...), None)."""
    if spec is None:
        return None
    if isinstance(spec, (tuple, list)) and not isinstance(spec, P):
        return type(spec)(_rows_spec(s) for s in spec)
    if not isinstance(spec, P) or len(spec) < 2 or spec[1] is None:
        return spec

    def axes(entry):
        if entry is None:
            return ()
        return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)

    both = axes(spec[0]) + axes(spec[1])
    return P(both[0] if len(both) == 1 else both, None)


def _specs(matrix_specs, in_specs, op: str):
    """The row spec of a call given ``matrix_specs`` (JAXMg 1.4's, converted by
    ``_rows_spec``) or ``in_specs`` (the original API's, taken as it is: one that shards the
    columns is refused, as the original did)."""
    if matrix_specs is not None and in_specs is not None:
        raise TypeError(f"jaxmg.{op}: pass matrix_specs or in_specs, not both")
    return _rows_spec(matrix_specs) if matrix_specs is not None else in_specs


# ---- potrs ------------------------------------------------------------------------------------

def potrs(a, b, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False, engine="auto", matrix_specs=None, return_logdet=False):
    specs = _specs(matrix_specs, in_specs, "potrs")
    if not return_logdet:
        return _api.potrs(a, b, T_A, mesh, specs, return_status, pad, donate=donate,
                          engine=engine)
    # log det from the Cholesky factor: one factorization, kept for the solve; the matrix is
    # read as potrs reads it (as given), not as cho_factor reads it (one triangle).
    fac = linalg.factor(a, T_A=T_A, mesh=mesh, in_specs=specs, pad=pad, donate=donate)
    x, info = linalg.cho_solve(fac, b, return_status=True)
    logdet = linalg.logdet(fac)
    return (x, logdet, info) if return_status else (x, logdet)


potrs.__doc__ = _api.potrs.__doc__.rstrip() + """

    JAXMg 1.4's keywords are accepted too: ``matrix_specs`` (the same as ``in_specs``; a spec
    sharding both dimensions runs with the rows over both axes) and ``return_logdet`` (also
    return log det A from the same factorization: ``(x, logdet)``, or ``(x, logdet, info)``
    with ``return_status``).
    """


def potrs_shardmap_ctx(a, b, *args, **kwargs):
    """``potrs`` called in one of two places, told apart by where the call is made:

    - inside the caller's own ``jax.shard_map`` (the original JAXMg API's per-device form):
      ``potrs_shardmap_ctx(a_shard, b, T_A=None, pad=True, *, axis_name=None)``. ``a_shard``
      is this device's N/ndev x N shard of the row-sharded matrix, ``b`` the replicated
      right-hand side (N or N x k); ``axis_name`` names the mesh axis (or tuple of axes) the
      rows are sharded over and may be omitted when only one axis of the mesh has more than
      one device. Runs on the platform's distributed engine with its default tile and
      returns ``(x, status)``: x replicated, status an int32 array of shape (1,) holding
      LAPACK's info. Use ``check_vma=False`` on the enclosing ``shard_map``;
    - anywhere else, typically inside ``jax.jit`` (JAXMg 1.4's form):
      ``potrs_shardmap_ctx(a, b, T_A=None, mesh=None, matrix_specs=None, *, in_specs=None,
      return_logdet=False, pad=True)`` on the whole arrays (mesh and spec inferred as for
      ``potrs``), returning ``(a_work, x, status)`` or ``(a_work, x, logdet, status)``:
      ``a_work`` is ``a`` itself, x has the shape of ``b`` and is replicated, status is
      LAPACK's info (an int32 scalar). On failure x (and logdet) are NaN.
    """
    if _plan.in_manual_context():
        return _api.potrs_shardmap_ctx(a, b, *args, **kwargs)
    return _potrs_global(a, b, *args, **kwargs)


def _potrs_global(a, b, T_A=None, mesh=None, matrix_specs=None, *, in_specs=None,
                  return_logdet=False, pad=True):
    specs = _specs(matrix_specs, in_specs, "potrs_shardmap_ctx")
    out = potrs(a, b, T_A, mesh, matrix_specs=_rows_spec(specs), return_status=True, pad=pad,
                return_logdet=return_logdet)
    return (a, *out)


# ---- syevd ------------------------------------------------------------------------------------

def syevd(a, T_A=None, mesh=None, in_specs=None, return_eigenvectors=True, return_status=False,
          pad=True, *, donate=False, engine="auto", matrix_specs=None):
    specs = _specs(matrix_specs, in_specs, "syevd")
    return _api.syevd(a, T_A, mesh, specs, return_eigenvectors, return_status, pad,
                      donate=donate, engine=engine)


syevd.__doc__ = _api.syevd.__doc__.rstrip() + """

    JAXMg 1.4's keyword ``matrix_specs`` is accepted too (the same as ``in_specs``).
    """


def syevd_shardmap_ctx(a, *args, **kwargs):
    """``syevd`` called in one of two places, told apart by where the call is made:

    - inside the caller's own ``jax.shard_map`` (the original JAXMg API's per-device form):
      ``syevd_shardmap_ctx(a_shard, T_A=None, return_eigenvectors=True, pad=True, *,
      axis_name=None)`` on this device's N/ndev x N shard (``axis_name`` as for
      ``potrs_shardmap_ctx``), returning ``(w, V_local, status)`` or ``(w, status)``: w the N
      eigenvalues, ascending, the same on every device (``out_specs=P()``); ``V_local`` this
      device's rows of V (``out_specs=P(axis, None)`` assembles V with the eigenvectors as
      columns); status an int32 array of shape (1,) with LAPACK's info. Use
      ``check_vma=False`` on the enclosing ``shard_map``;
    - anywhere else (JAXMg 1.4's form): ``syevd_shardmap_ctx(a, T_A=None, mesh=None,
      matrix_specs=None, *, in_specs=None, return_eigenvectors=True, pad=True)`` on the whole
      matrix, returning ``(a_work, w, V, status)`` or ``(a_work, w, status)``: ``a_work`` is
      ``a`` itself, w replicated, V sharded by rows like ``a``, status LAPACK's info.
    """
    if _plan.in_manual_context():
        return _api.syevd_shardmap_ctx(a, *args, **kwargs)
    return _syevd_global(a, *args, **kwargs)


def _syevd_global(a, T_A=None, mesh=None, matrix_specs=None, *, in_specs=None,
                  return_eigenvectors=True, pad=True):
    specs = _specs(matrix_specs, in_specs, "syevd_shardmap_ctx")
    out = syevd(a, T_A, mesh, return_eigenvectors=return_eigenvectors, return_status=True,
                pad=pad, matrix_specs=_rows_spec(specs))
    return (a, *out)
