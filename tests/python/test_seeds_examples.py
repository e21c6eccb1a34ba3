"""Every code example of the seeds (the original JAXMg's README, paper and tutorial), run
against jaxmg on virtual CPU devices.

The snippets below are the seeds' text. The only edits, each marked where it happens:
- device selection: ``jax.devices("gpu")`` becomes ``jax.devices("cpu")`` (``run_snippet``);
- sizes scaled down where CI time demands (the complete MinSR example);
- the tutorial's extracted PDF text spells the Jacobian ``0_LT``/``0_L``, which is not a
  Python name: it is ``O_LT``/``O_L`` here;
- two lines that the installed JAX itself rejects are run as written first and, when JAX
  raises, with the smallest fix (the paper's ``jax.make_mesh(jax.device_count(), ...)``
  needs a tuple; the tutorial's ``jax.shard_map(update, mesh_2d, ...)`` passes the mesh
  positionally, as ``jax.experimental.shard_map`` allowed).
The tutorial's ``potrs_shardmap_ctx`` example closes over a right-hand side placed on a
``jax.make_mesh`` mesh, whose axes are Explicit in recent JAX; JAX cannot close over such
arrays inside shard_map, so jaxmg copies them in as constants (``_plan.closed_over``).
Fragments that use names they never define (``local_sum``, ``some_scaling_factor``,
``zeros``, ...) get those names from a prelude; the glue between fragments is ours and
commented as such. The two complete programs (the README example and the tutorial's
complete example) run verbatim in a subprocess, as scripts of their own.
"""

import _util  # noqa: F401  (devices and x64 before JAX starts)

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(jaxmg.__file__)))


def on_cpu(code: str) -> str:
    return textwrap.dedent(code).replace('jax.devices("gpu")', 'jax.devices("cpu")')


def run_snippet(code: str, ns: dict | None = None) -> dict:
    ns = {} if ns is None else ns
    exec(compile(on_cpu(code), "<seed snippet>", "exec"), ns)
    return ns


def run_script(code: str, ndev: int = 4, timeout: int = 300) -> str:
    """Runs a seed program verbatim in its own interpreter with ``ndev`` CPU devices."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ndev}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON_DIR, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", on_cpu(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def four_devices():
    if len(jax.devices()) != 4:
        pytest.skip("the tutorial's snippets build meshes of exactly 4 devices")


# ---- README (seed 003): the minimal example ------------------------------------------------

README_EXAMPLE = '''
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P, NamedSharding
from jaxmg import potrs
print(f"Devices: {jax.devices()}")
# Assumes we have at least one GPU available
devices = jax.devices("gpu")
N = 12
T_A = 3
dtype = jnp.float64
# Create diagonal matrix and `b` all equal to one
A = jnp.diag(jnp.arange(N, dtype=dtype) + 1)
b = jnp.ones((N, 1), dtype=dtype)
ndev = len(devices)
# Make mesh and place data (rows sharded)
mesh = jax.make_mesh((ndev,), ("x",))
A = jax.device_put(A, NamedSharding(mesh, P("x", None)))
b = jax.device_put(b, NamedSharding(mesh, P(None, None)))
# Call potrs
out = potrs(A, b, T_A=T_A, mesh=mesh, in_specs=(P("x", None), ))
print(out)
expected_out = 1.0 / (jnp.arange(N, dtype=dtype) + 1)
print(jnp.allclose(out.flatten(), expected_out))
'''


@pytest.mark.parametrize("ndev", [4, 3])
def test_readme_example(ndev):
    out = run_script(README_EXAMPLE, ndev=ndev)
    lines = out.strip().splitlines()
    assert lines[-1] == "True", out
    # The seeds show the solution 1, 0.5, 0.333..., 0.0833...
    values = [float(t.strip("[] ")) for t in lines[1:-1]]
    np.testing.assert_allclose(values, 1.0 / np.arange(1, 13), rtol=1e-7)


# ---- the paper (seed 001) -----------------------------------------------------------------

PAPER_SNIPPET = '''
mesh = jax.make_mesh(jax.device_count(), ("x",))
out = potrs(A, b, T_A=T_A, mesh=mesh, in_specs=(P("x", None), P(None, None)))
'''


def test_paper_snippet():
    n = 16
    ns = {"jax": jax, "P": P, "potrs": jaxmg.potrs, "T_A": 2}
    # Prelude from the paper's text: A positive definite, sharded by rows; b replicated,
    # N x N_RHS. The mesh comes from the snippet, so A and b are placed after it.
    first, second = on_cpu(PAPER_SNIPPET).strip().splitlines()
    try:
        exec(first, ns)
    except TypeError:
        # The paper passes an int to jax.make_mesh, which takes a sequence of axis sizes
        # (TypeError: 'int' object is not iterable, in JAX itself): use the tuple it means.
        exec(first.replace("jax.device_count()", "(jax.device_count(),)"), ns)
    mesh = ns["mesh"]
    a = np.diag(np.arange(1.0, n + 1))  # the paper's benchmark matrix diag(1, ..., N)
    ns["A"] = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    ns["b"] = jax.device_put(np.ones((n, 3)), NamedSharding(mesh, P(None, None)))
    exec(second, ns)
    np.testing.assert_allclose(np.asarray(ns["out"]), np.ones((n, 3)) / np.arange(1.0, n + 1)[:, None],
                               rtol=1e-14)


def test_paper_benchmark_cases():
    # The paper's three benchmark cases, scaled down: A = diag(1, ..., N); potrs float32 with
    # b = ones, potri complex128, syevd float64.
    mesh = jax.make_mesh((len(jax.devices()),), ("x",))
    n = 8 * len(jax.devices())
    d = np.arange(1.0, n + 1)
    put = lambda x: jax.device_put(x, NamedSharding(mesh, P("x", None)))  # noqa: E731
    x = jaxmg.potrs(put(np.diag(d).astype(np.float32)), jnp.ones((n, 1), jnp.float32), T_A=4,
                    mesh=mesh, in_specs=(P("x", None), P(None, None)))
    np.testing.assert_allclose(np.asarray(x)[:, 0], 1 / d, rtol=1e-6)
    inv = jaxmg.potri(put(np.diag(d).astype(np.complex128)), T_A=4, mesh=mesh, in_specs=(P("x", None),))
    np.testing.assert_allclose(np.asarray(inv), np.diag(1 / d), rtol=1e-14, atol=1e-15)
    w, v = jaxmg.syevd(put(np.diag(d)), T_A=4, mesh=mesh, in_specs=(P("x", None),))
    np.testing.assert_allclose(np.asarray(w), d, rtol=1e-14)
    np.testing.assert_allclose(np.abs(np.asarray(v)), np.eye(n), atol=1e-14)


# ---- the tutorial (seed 004) --------------------------------------------------------------

TUTORIAL_MESH = '''
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# 1D Mesh: 4 GPUs in a line, axis named "x"
devices = jax.devices("gpu") # [gpu:0, gpu:1, gpu:2, gpu:3]
mesh_1d = jax.make_mesh((4,), ("x",))

# 2D Mesh: 4 GPUs as 2x2 grid, axes "S" and "T"
import numpy as np
mesh_2d = Mesh(np.array(devices).reshape(2, 2), ("S", "T"))
'''

TUTORIAL_PLACING = '''
import jax.numpy as jnp

N = 1000
A = jnp.eye(N, dtype=jnp.float64) # Matrix: 1000 × 1000
b = jnp.ones((N, 1), dtype=jnp.float64) # Vector: 1000 × 1

# Create mesh and shard data
mesh = jax.make_mesh((4,), ("x",))
A_sharded = jax.device_put(A, NamedSharding(mesh, P("x", None))) # Row-sharded
b_replicated = jax.device_put(b, NamedSharding(mesh, P(None, None))) # Replicated
'''

TUTORIAL_POTRS = '''
from jaxmg import potrs

# Problem: Solve Ax = b where A is symmetric positive definite
N = 1000
A = jnp.eye(N, dtype=jnp.float64) * 2 # Diagonal matrix
b = jnp.ones((N, 1), dtype=jnp.float64)

# Setup mesh and sharding
mesh = jax.make_mesh((4,), ("x",))
A = jax.device_put(A, NamedSharding(mesh, P("x", None)))
b = jax.device_put(b, NamedSharding(mesh, P(None, None)))

# Solve!
x = potrs(A, b, T_A=128, mesh=mesh, in_specs=(P("x", None), P(None, None)))
# x ≈ [0.5, 0.5, 0.5, ...]
'''

TUTORIAL_TILES = '''
N = 10000
ndev = 4
shard_size = N // ndev # 2500 rows per GPU

# Good choices: T_A divides shard_size evenly (no padding needed)
T_A = 250 # 2500 / 250 = 10 tiles ✓
T_A = 500 # 2500 / 500 = 5 tiles ✓
T_A = 2048 # 2500 / 2048 = 1.22 → padding added automatically ⚠
'''

TUTORIAL_SHARD_MAP = '''
from functools import partial

@partial(jax.shard_map,
        mesh=mesh,
        in_specs=P("x", None), # Input: row-sharded
        out_specs=P(None))      # Output: replicated
def my_distributed_fn(local_A):
    # This code runs on EACH GPU independently
    # local_A shape: (N/ndev, M) – just this GPU's shard

    my_idx = jax.lax.axis_index("x") # Which GPU am I? (0, 1, 2, or 3)

    # Collective: sum across all GPUs
    global_sum = jax.lax.psum(local_sum, axis_name="x")

    # Collective: gather all shards
    full_A = jax.lax.all_gather(local_A, axis_name="x", axis=0, tiled=True)

    return result
'''

TUTORIAL_CTX = '''
from jaxmg import potrs_shardmap_ctx

def custom_solve(local_A, b):
    """Runs inside shard_map context – local_A is just this GPU's shard"""
    local_A = local_A * some_scaling_factor # Custom pre-processing
    x, status = potrs_shardmap_ctx(local_A, b, T_A=256) # No extra shard_map
    return x, status

result = jax.shard_map(
    partial(custom_solve, b=b_replicated),
    mesh=mesh,
    in_specs=P("x", None),
    out_specs=(P(None, None), P(None)),
    check_vma=False, # Required for FFI calls
)(A_sharded)
'''

TUTORIAL_GRID = '''
def get_device_grid():
    """Organize devices: rows = local GPUs, columns = nodes"""
    by_proc = {}
    for d in jax.devices():
        by_proc.setdefault(d.process_index, []).append(d)
    hosts = sorted(by_proc)
    return np.array([[by_proc[h][x] for h in hosts]
                    for x in range(jax.local_device_count())]).T

def create_2d_mesh():
    dev_grid = get_device_grid() # shape: (n_nodes, n_gpus_per_node)
    return Mesh(dev_grid, ("S", "T"))
    # "S" = across nodes, "T" = within node
'''

# "Key code snippets" of the MinSR section (0_LT/0_L read as O_LT/O_L).
MINSR_SHARD_JACOBIAN = '''
O_LT = jax.lax.with_sharding_constraint(
    O_LT, NamedSharding(mesh_2d, P(("S", "T"), None))
) # Samples sharded across all 8 GPUs, params replicated
'''

MINSR_GRAM = '''
def streamed_gram(O_L, chunk_size):
    """Compute T = X @ X.T without materializing full intermediate"""
    def step(acc, chunk):
        full_chunk = jax.lax.all_gather(chunk, ('S', 'T'), tiled=True)
        return acc + chunk @ full_chunk.T, None
    return jax.lax.scan(step, zeros, O_L_chunked)[0]
'''

MINSR_SOLVE = '''
v = potrs(T_reg, E_loc[:, None], T_A=2048, mesh=mesh_2d,
          in_specs=(P("T", None), P(None, None)))
'''

MINSR_UPDATE = '''
def update(O_LT, v):
    return jax.lax.psum(v @ O_LT, axis_name=("S", "T"))
delta_theta = jax.shard_map(update, mesh_2d,
    in_specs=(P(("S", "T"), None), P(("S", "T"))), out_specs=P(None))(O_LT, v)
'''

TUTORIAL_COMPLETE = '''
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxmg import potrs

# Setup
jax.config.update("jax_enable_x64", True)
devices = jax.devices("gpu")
ndev = len(devices)
mesh = jax.make_mesh((ndev,), ("x",))

# Create Gram matrix (like in minSR: T = X @ X.T)
N_samples, N_params = 4000, 100000
key = jax.random.PRNGKey(0)
X = jax.random.normal(key, (N_samples, N_params)) / jnp.sqrt(N_samples)
T = X @ X.T # (4000, 4000) — much smaller than (100000, 100000)!

# Add regularization
T_reg = T + 1e-4 * jnp.eye(N_samples)

# RHS (centered local energies)
b = jax.random.normal(key, (N_samples, 1))

# Shard for distributed solve
T_sharded = jax.device_put(T_reg, NamedSharding(mesh, P("x", None)))
b_replicated = jax.device_put(b, NamedSharding(mesh, P(None, None)))

# Distributed Cholesky solve: (T + λI) v = b
v = potrs(T_sharded, b_replicated, T_A=256, mesh=mesh,
          in_specs=(P("x", None), P(None, None)))

# Final minSR update: δθ = X.T @ v
delta_theta = X.T @ v # (100000, 1)
print(f"Update shape: {delta_theta.shape}")
'''


@pytest.fixture
def tutorial_ns():
    """The tutorial's first two snippets, which the later ones build on."""
    four_devices()
    ns = run_snippet(TUTORIAL_MESH)
    run_snippet(TUTORIAL_PLACING, ns)
    return ns


def test_tutorial_mesh_and_placement(tutorial_ns):
    ns = tutorial_ns
    assert ns["mesh_1d"].shape == {"x": 4} and ns["mesh_2d"].shape == {"S": 2, "T": 2}
    a = ns["A_sharded"]
    assert a.sharding.spec == P("x", None)
    assert {s.data.shape for s in a.addressable_shards} == {(250, 1000)}
    assert ns["b_replicated"].sharding.is_fully_replicated


def test_tutorial_potrs(tutorial_ns):
    ns = run_snippet(TUTORIAL_POTRS, tutorial_ns)
    x = np.asarray(ns["x"])
    assert x.shape == (1000, 1)
    np.testing.assert_allclose(x, 0.5, rtol=1e-15)  # "x ≈ [0.5, 0.5, 0.5, ...]"


def test_tutorial_tile_selection():
    ns = run_snippet(TUTORIAL_TILES)
    shard = ns["shard_size"]
    assert jaxmg.calculate_padding(shard, 250) == 0 and jaxmg.calculate_padding(shard, 500) == 0
    assert jaxmg.calculate_padding(shard, ns["T_A"]) > 0  # "padding added automatically"


def test_tutorial_shard_map_pattern(tutorial_ns):
    ns = tutorial_ns
    # Names the fragment uses without defining them.
    ns["local_sum"] = jnp.float64(1.0)
    ns["result"] = jnp.arange(3.0)
    run_snippet(TUTORIAL_SHARD_MAP, ns)
    out = ns["my_distributed_fn"](ns["A_sharded"])
    np.testing.assert_array_equal(np.asarray(out), np.arange(3.0))


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_tutorial_potrs_shardmap_ctx(tutorial_ns, scale):
    ns = tutorial_ns
    ns["partial"] = __import__("functools").partial
    ns["some_scaling_factor"] = scale  # the fragment's free name
    run_snippet(TUTORIAL_CTX, ns)
    x, status = ns["result"]
    assert int(status[0]) == 0
    np.testing.assert_allclose(np.asarray(x), 1.0 / scale, rtol=1e-15)  # A = I: x = b / scale


def test_tutorial_minsr_multinode_pattern():
    four_devices()
    ns = run_snippet(TUTORIAL_MESH)
    run_snippet(TUTORIAL_GRID, ns)
    mesh_2d = ns["create_2d_mesh"]()
    # One process here: 1 "node" x 4 devices.
    assert mesh_2d.shape == {"S": 1, "T": 4}
    ns["mesh_2d"] = mesh_2d
    ns["potrs"] = jaxmg.potrs

    # Glue (ours): a small Jacobian, samples x params.
    n_s, n_p, chunk_size, lam = 64, 96, 32, 1e-3
    rng = np.random.default_rng(0)
    o = rng.standard_normal((n_s, n_p)) / np.sqrt(n_s)
    ns["O_LT"] = jnp.asarray(o)
    run_snippet(MINSR_SHARD_JACOBIAN, ns)
    assert ns["O_LT"].sharding.spec == P(("S", "T"), None)

    run_snippet(MINSR_GRAM, ns)

    def gram_rows(o_loc):  # glue (ours): the fragment's free names, then the fragment
        ns["O_L_chunked"] = o_loc.reshape(o_loc.shape[0], -1, chunk_size).transpose(1, 0, 2)
        ns["zeros"] = jnp.zeros((o_loc.shape[0], n_s), o_loc.dtype)
        return ns["streamed_gram"](o_loc, chunk_size)

    gram = jax.shard_map(gram_rows, mesh=mesh_2d, in_specs=P(("S", "T"), None),
                         out_specs=P(("S", "T"), None), check_vma=False)(ns["O_LT"])
    np.testing.assert_allclose(np.asarray(gram), o @ o.T, rtol=1e-12, atol=1e-12)

    ns["T_reg"] = gram + lam * jnp.eye(n_s)
    e_loc = rng.standard_normal(n_s)
    ns["E_loc"] = jnp.asarray(e_loc)
    run_snippet(MINSR_SOLVE, ns)  # T_A=2048 is clamped to the 16-row shard
    t_reg = o @ o.T + lam * np.eye(n_s)
    v = np.asarray(ns["v"])
    np.testing.assert_allclose(t_reg @ v[:, 0], e_loc, atol=1e-10)

    # The update fragment multiplies v @ O_LT per shard: with the potrs fragment's v of shape
    # (N_s, 1) that is (n, 1) @ (n, N_p), which does not type-check, so it gets the vector.
    ns["v"] = ns["v"][:, 0]
    update = MINSR_UPDATE
    try:
        run_snippet(update, ns)
    except TypeError as e:
        # The fragment passes the mesh positionally, as jax.experimental.shard_map did;
        # jax.shard_map takes it by keyword only (a JAX API change, not a jaxmg one).
        assert "positional" in str(e), e
        run_snippet(update.replace("jax.shard_map(update, mesh_2d,",
                                   "jax.shard_map(update, mesh=mesh_2d,"), ns)
    np.testing.assert_allclose(np.asarray(ns["delta_theta"]), o.T @ v[:, 0], rtol=1e-10, atol=1e-12)


def test_tutorial_complete_example():
    # Sizes scaled down for CI (the seeds' 4000 x 100000 Jacobian is 3.2 GB and a 3 TFLOP
    # Gram matrix); 1200 samples keep T_A=256 smaller than the 300-row shards, so the
    # padded path runs as in the original. Everything else is the seeds' text, and the
    # check appended after it is ours.
    code = TUTORIAL_COMPLETE.replace("N_samples, N_params = 4000, 100000",
                                     "N_samples, N_params = 1200, 3000")
    code += textwrap.dedent('''
        import numpy as np
        r = np.asarray(T_reg) @ np.asarray(v) - np.asarray(b)
        print("residual", float(np.abs(r).max()))
        print("delta", float(np.abs(np.asarray(delta_theta) - np.asarray(X).T @ np.asarray(v)).max()))
    ''')
    out = run_script(code, ndev=4)
    lines = dict(l.split(" ", 1) for l in out.strip().splitlines()[-2:])
    assert "Update shape: (3000, 1)" in out
    assert float(lines["residual"]) < 1e-9
    assert float(lines["delta"]) < 1e-9
