"""Shared helpers of the API tests: virtual CPU devices, random matrices, residual ratios.

Import this module before anything that initializes JAX. It asks for 4 virtual CPU devices
and turns on float64 (the tests' choice; jaxmg never touches ``jax_enable_x64``). A
``conftest.py`` that already did both makes these lines no-ops.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
# LAPACK's test programs accept scaled residual ratios below 30.
THRESH = 30.0


def need_devices(k: int):
    if len(jax.devices()) < k:
        pytest.skip(f"needs {k} devices, have {len(jax.devices())} (set XLA_FLAGS before JAX starts)")
    return jax.devices()[:k]


def mesh_1d(k: int, name: str = "x", order=None) -> Mesh:
    """A 1D mesh over k of the devices; ``order`` picks device indices (reversed, partial)."""
    devs = jax.devices()
    if order is None:
        order = list(range(k))
    need_devices(max(order) + 1)
    return Mesh(np.array([devs[i] for i in order]), (name,))


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def real_of(dtype):
    return np.finfo(dtype).dtype


def rand(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def hpd(n: int, dtype, rng, shift: float = 1.0) -> np.ndarray:
    """Random Hermitian positive definite matrix, condition number of order n."""
    x = rand(rng, (n, n), np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)
    a = x @ x.conj().T / n + shift * np.eye(n)
    # exactly Hermitian (a BLAS may leave round-off in the imaginary part of the diagonal)
    return ((a + a.conj().T) / 2).astype(dtype)


def herm(n: int, dtype, rng) -> np.ndarray:
    """Random Hermitian (indefinite) matrix."""
    x = rand(rng, (n, n), np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)
    return ((x + x.conj().T) / 2).astype(dtype)


def with_spectrum(w, dtype, rng) -> np.ndarray:
    """Hermitian matrix Q diag(w) Q^H with a random unitary Q."""
    n = len(w)
    cplx = np.issubdtype(dtype, np.complexfloating)
    q, _ = np.linalg.qr(rand(rng, (n, n), np.complex128 if cplx else np.float64))
    a = (q * np.asarray(w, dtype=np.float64)) @ q.conj().T
    return ((a + a.conj().T) / 2).astype(dtype)


def put_rows(a, mesh: Mesh, axes=None):
    """Places a matrix on ``mesh`` sharded by rows over ``axes`` (default: the first axis)."""
    axes = axes if axes is not None else mesh.axis_names[0]
    return jax.device_put(a, NamedSharding(mesh, P(axes, None)))


def norm1(a) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.complex128), 1))


def inv_ratio(a, x, dtype) -> float:
    """LAPACK's potri check: ||I - A X||_1 / (n ||A||_1 ||X||_1 eps)."""
    a = np.asarray(a, dtype=np.complex128)
    x = np.asarray(x, dtype=np.complex128)
    n = a.shape[0]
    r = np.eye(n) - a @ x
    return norm1(r) / (n * norm1(a) * norm1(x) * eps(dtype))


def solve_ratio(a, x, b, dtype) -> float:
    """||B - A X||_1 / (n ||A||_1 ||X||_1 eps)."""
    a = np.asarray(a, dtype=np.complex128)
    x = np.asarray(x, dtype=np.complex128).reshape(a.shape[0], -1)
    b = np.asarray(b, dtype=np.complex128).reshape(a.shape[0], -1)
    n = a.shape[0]
    return norm1(b - a @ x) / (n * norm1(a) * max(norm1(x), 1e-300) * eps(dtype))


def eig_ratios(a, w, v, dtype):
    """(eigenvalue error, residual, orthogonality) ratios, each to be below THRESH:
    max|w - w_ref| / (n ||A|| eps), ||A V - V diag(w)||_1 / (n ||A|| eps),
    ||I - V^H V||_1 / (n eps)."""
    a = np.asarray(a, dtype=np.complex128)
    n = a.shape[0]
    an = max(norm1(a), np.finfo(np.float64).tiny)
    w = np.asarray(w, dtype=np.float64)
    w_ref = np.linalg.eigvalsh(a)
    r_w = np.max(np.abs(w - w_ref)) / (n * an * eps(dtype)) if n else 0.0
    if v is None:
        return r_w, None, None
    v = np.asarray(v, dtype=np.complex128)
    r_res = norm1(a @ v - v * w) / (n * an * eps(dtype))
    r_orth = norm1(np.eye(n) - v.conj().T @ v) / (n * eps(dtype))
    return r_w, r_res, r_orth


def from_triangle(m, lower: bool = False):
    """The dense Hermitian matrix of one triangle of ``m`` (jnp ops, differentiable): what
    ``jaxmg.linalg.cho_factor``/``solve`` (``lower``) and ``eigh`` without symmetrization
    read of a matrix, as JAX's functions of the same names do."""
    import jax.numpy as jnp

    tri = jnp.tril(m, -1) if lower else jnp.triu(m, 1)
    d = jnp.diagonal(m)
    d = jnp.real(d).astype(m.dtype) if jnp.iscomplexobj(m) else d
    return tri + jnp.conj(tri).T + jnp.diag(d)

