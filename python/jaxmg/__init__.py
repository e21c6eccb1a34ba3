"""jaxmg: multi-device dense linear algebra for JAX.

Cholesky solves (``potrs``), inverses of Hermitian positive definite matrices (``potri``) and
Hermitian eigendecompositions (``syevd``) of matrices sharded by rows over several devices,
as JIT-compatible ops: cuSOLVERMg on NVIDIA GPUs, distributed LAPACK tiles on CPU devices.
``jaxmg.linalg`` offers the same ops with a ``jax.scipy.linalg``-style face (``cho_factor``/
``cho_solve`` with a factor that stays distributed, ``solve``, ``inv``, ``eigh``,
``slogdet``/``logdet``).

The original JAXMg API (JAXMg 1.x: ``potrs``, ``potri``, ``syevd``, their ``*_shardmap_ctx``
forms, ``potri_symmetrize`` and the layout helpers ``cyclic_1d`` and friends, which show the
1D block-cyclic layout) is kept with its names and signatures, so code written against it
runs unchanged; see docs/netket.md.

Every op is differentiable (forward and reverse mode, any order; the derivative rules use
jaxmg's own distributed ops and ring products, so no device gathers a matrix) and batches
under ``vmap``.

Importing jaxmg has no side effects: nothing is loaded or registered until an op is traced,
and JAX's configuration (``jax_enable_x64`` included) is left alone.
"""

from . import linalg
from ._api import potri, potri_shardmap_ctx, potri_symmetrize
from ._compat import potrs, potrs_shardmap_ctx, syevd, syevd_shardmap_ctx
from ._config import get_timeout, set_timeout
from ._cyclic import (
    calculate_padding,
    cyclic_1d,
    get_cols_cyclic,
    pad_rows,
    plot_block_to_cyclic,
    unpad_rows,
    verify_cyclic,
)

__version__ = "1.5.0"

__all__ = [
    "potrs",
    "potrs_shardmap_ctx",
    "potri",
    "potri_shardmap_ctx",
    "potri_symmetrize",
    "syevd",
    "syevd_shardmap_ctx",
    "cyclic_1d",
    "pad_rows",
    "unpad_rows",
    "calculate_padding",
    "verify_cyclic",
    "get_cols_cyclic",
    "plot_block_to_cyclic",
    "linalg",
    "set_timeout",
    "get_timeout",
]
