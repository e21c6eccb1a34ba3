"""Mesh and spec inference: where a call runs, read off its arguments where not given.

The participants of a call are the devices along the row axes, in mesh order (whatever their
device ids). Mesh axes that do not shard the rows replicate the matrix: each replica group
solves the same problem independently, so the original API's multi-node pattern (a 2D mesh with the
rows sharded within a node) needs no communication between groups.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._geometry import Placement, abstract_of, concrete_context_mesh

AbstractMesh = getattr(jax.sharding, "AbstractMesh", ())


def _entry_axes(entry) -> tuple:
    if entry is None:
        return ()
    if isinstance(entry, (tuple, list)):
        return tuple(entry)
    return (entry,)


def split_in_specs(in_specs, op: str):
    """(spec of a, spec of b or None) from the original API's forms: P, (P,), (P, P), [P, P]."""
    if in_specs is None:
        return None, None
    if isinstance(in_specs, P):
        return in_specs, None
    if isinstance(in_specs, (tuple, list)) and 1 <= len(in_specs) <= 2 and all(
        isinstance(s, P) or s is None for s in in_specs
    ):
        return in_specs[0], (in_specs[1] if len(in_specs) == 2 else None)
    raise TypeError(
        f"jaxmg.{op}: in_specs must be a PartitionSpec or a tuple of one or two "
        f"PartitionSpecs, got {in_specs!r}"
    )


def _check_spec(spec: P, mesh: Mesh, op: str) -> tuple:
    if len(spec) > 2:
        raise ValueError(f"jaxmg.{op}: the spec of 'a' must have at most 2 entries, got {spec}")
    rows = _entry_axes(spec[0]) if len(spec) >= 1 else ()
    cols = _entry_axes(spec[1]) if len(spec) == 2 else ()
    if not rows:
        raise ValueError(
            f"jaxmg.{op}: 'a' must be sharded by rows, e.g. P('x', None); the spec {spec} "
            "does not shard the rows"
        )
    if cols:
        raise ValueError(
            f"jaxmg.{op}: 'a' must be sharded by rows only (P('x', None)); the spec {spec} "
            "shards the columns"
        )
    for ax in rows:
        if ax not in mesh.axis_names:
            raise ValueError(
                f"jaxmg.{op}: the spec {spec} names mesh axis {ax!r}, but the mesh has axes "
                f"{tuple(mesh.axis_names)}"
            )
    if len(set(rows)) != len(rows):
        raise ValueError(f"jaxmg.{op}: the spec {spec} repeats a mesh axis")
    return rows


def place(x, sharding: NamedSharding):
    """``x`` laid out as ``sharding``, so that the op's shard_map accepts it.

    Concrete arrays (or NumPy arrays) are moved with ``device_put`` unless already laid out
    so; jit would refuse an array committed to other devices, and shard_map refuses an array
    on an ``Explicit`` mesh whose sharding differs from its spec. Inside jit, arrays on an
    ``Explicit`` mesh are resharded; on an ``Auto`` mesh shard_map reshards by itself.
    """
    if isinstance(x, jax.core.Tracer):
        explicit = jax.sharding.AxisType.Explicit in tuple(sharding.mesh.axis_types)
        reshard = getattr(jax, "reshard", None) or getattr(jax.sharding, "reshard", None)
        if not explicit or reshard is None:
            return x
        if _unsharded_aval(x):
            # Replicated first: the transpose of that step hands the cotangent back
            # replicated, as the input came (jax.jacrev lays its rows out like the input).
            x = reshard(x, NamedSharding(sharding.mesh, P()))
        return reshard(x, sharding)
    current = getattr(x, "sharding", None)
    if current is not None and current.is_equivalent_to(sharding, len(x.shape)):
        return x
    return jax.device_put(x, sharding)


def _default_device():
    dev = jax.config.jax_default_device
    if isinstance(dev, str):  # a platform name
        return jax.devices(dev)[0]
    return dev if dev is not None else jax.devices()[0]


def _unsharded_aval(x) -> bool:
    """Whether a traced array's type carries no mesh (a NumPy or unsharded input)."""
    try:
        return jax.typeof(x).sharding.mesh.empty
    except Exception:
        return False


def _sharding_of(a):
    try:
        return a.sharding
    except Exception:  # tracers without a concrete sharding
        return _traced_sharding(a)


def _traced_sharding(a):
    """The sharding of the concrete array behind an eager ``grad``/``jvp``/``vmap`` tracer,
    with the batch dimensions that ``vmap`` added taken out of its spec; None under ``jit``
    (where the caller must pass ``mesh``). Differentiation tracers carry their primal
    (``.primal``), batching tracers the batched value and its axis (``.val``,
    ``.batch_dim``): JAX attributes, not public API, hence the guarded access."""
    batch_dims = []
    x = a
    for _ in range(64):
        if not isinstance(x, jax.core.Tracer):
            break
        if hasattr(x, "primal"):
            x = x.primal
        elif hasattr(x, "val") and hasattr(x, "batch_dim"):
            if isinstance(x.batch_dim, int):
                batch_dims.append(x.batch_dim)
            x = x.val
        else:
            return None
    if isinstance(x, jax.core.Tracer):
        return None
    sharding = getattr(x, "sharding", None)
    if not batch_dims:
        return sharding
    if not isinstance(sharding, NamedSharding):
        return sharding  # a single-device array: its device set is all that is needed
    spec = list(sharding.spec) + [None] * (len(x.shape) - len(sharding.spec))
    for d in reversed(batch_dims):  # innermost vmap first
        if spec[d] is not None:
            return None  # a batch sharded over devices: not a row layout jaxmg can infer
        del spec[d]
    return NamedSharding(sharding.mesh, P(*spec))


def _typed_sharding(a):
    """The sharding in a traced array's type (JAX's sharding in types: a NamedSharding over
    an AbstractMesh inside ``jit``), or None where the type carries no mesh."""
    if not isinstance(a, jax.core.Tracer):
        return None
    typeof = getattr(jax, "typeof", None)
    try:
        sharding = typeof(a).sharding if typeof is not None else a.aval.sharding
    except Exception:  # JAX versions without shardings in types
        return None
    mesh = getattr(sharding, "mesh", None)
    if isinstance(sharding, NamedSharding) and mesh is not None and tuple(mesh.axis_names):
        return sharding
    return None


def _context_mesh():
    """The mesh of ``jax.set_mesh`` / ``jax.sharding.use_mesh``: concrete where JAX can say
    (outside ``jit``, or the one set around it), else abstract; None when no mesh is set."""
    concrete = concrete_context_mesh()
    if concrete is not None:
        return concrete
    try:
        mesh = jax.sharding.get_abstract_mesh()
    except Exception:
        return None
    return mesh if tuple(getattr(mesh, "axis_names", ()) or ()) else None


def _concrete(mesh, sharding):
    """``mesh`` as a concrete Mesh where one is known for it (the array's own, or the
    context's), else the AbstractMesh itself (usable inside ``jit`` only)."""
    if isinstance(mesh, Mesh):
        return mesh
    for known in (getattr(sharding, "mesh", None), concrete_context_mesh()):
        if isinstance(known, Mesh) and abstract_of(known) == mesh:
            return known
    return mesh


def resolve(a, mesh, in_specs, op: str) -> Placement:
    """Mesh and row axes of a call, inferred from ``a`` where not given.

    The mesh comes from, in order: ``mesh=`` (a Mesh or an AbstractMesh); the sharding of a
    concrete ``a`` (or of the array behind an eager ``grad``/``vmap`` tracer); the sharding
    in a traced ``a``'s type (inside ``jit``); the context mesh (``jax.set_mesh``); the
    devices of an unsharded ``a``. A spec given by the user must shard the rows (and only
    the rows). A spec read off the array's sharding is kept when it does so; otherwise (a
    replicated or column-sharded array, or one whose type leaves the spec to XLA) the rows
    are spread over every axis of the mesh.
    """
    spec_a, _ = split_in_specs(in_specs, op)
    from_user = spec_a is not None
    sharding = _sharding_of(a)
    if not isinstance(sharding, NamedSharding):
        sharding = _typed_sharding(a) or sharding
    named = isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, (Mesh, AbstractMesh))
    if mesh is None:
        if named:
            mesh = sharding.mesh
        elif _context_mesh() is not None:
            mesh = _context_mesh()
        elif sharding is not None and len(getattr(sharding, "device_set", ())) >= 1:
            devs = sorted(sharding.device_set, key=lambda d: d.id)
            mesh = Mesh(np.array(devs), ("rows",))
        else:
            # A traced array whose type names no mesh, outside any context mesh: jit puts
            # such a computation on the default device, and so does jaxmg (shard the
            # matrix, pass mesh=, or call under jax.set_mesh(mesh) for several devices).
            mesh = Mesh(np.array([_default_device()]), ("rows",))
    if not isinstance(mesh, (Mesh, AbstractMesh)):
        raise TypeError(f"jaxmg.{op}: mesh must be a jax.sharding.Mesh or AbstractMesh, got "
                        f"{type(mesh).__name__}")
    mesh = _concrete(mesh, sharding)
    if not isinstance(mesh, Mesh) and not isinstance(a, jax.core.Tracer):
        raise ValueError(
            f"jaxmg.{op}: the AbstractMesh {mesh} names no devices here; pass the concrete "
            "Mesh, or call it under jax.set_mesh(mesh) or inside jax.jit"
        )
    if not from_user:
        same = named and abstract_of(sharding.mesh) == abstract_of(mesh)
        spec_a = sharding.spec if same else None
        ok = (
            spec_a is not None
            and 1 <= len(spec_a) <= 2
            and _entry_axes(spec_a[0])
            and (len(spec_a) < 2 or not _entry_axes(spec_a[1]))
        )
        if not ok:
            spec_a = P(tuple(mesh.axis_names), None)
    rows = _check_spec(spec_a, mesh, op)
    groups = tuple(ax for ax in mesh.axis_names if ax not in rows)
    return Placement(mesh, rows, groups)
