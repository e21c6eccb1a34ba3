"""jaxmg: multi-device dense linear algebra for JAX.

Cholesky solves (``potrs``), inverses of Hermitian positive definite matrices (``potri``) and
Hermitian eigendecompositions (``syevd``) of matrices sharded by rows over several devices,
as JIT-compatible ops: cuSOLVERMg on NVIDIA GPUs, distributed LAPACK tiles on CPU devices.
Importing jaxmg has no side effects: nothing is loaded or registered until an op is traced,
and JAX's configuration (``jax_enable_x64`` included) is left alone.
"""

from ._core import get_timeout, set_timeout
from ._potrs import potrs, potrs_shardmap_ctx

__version__ = "0.1.0"

__all__ = ["potrs", "potrs_shardmap_ctx", "set_timeout", "get_timeout"]
