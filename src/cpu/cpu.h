/* The CPU backend: distributed tiled algorithms over the shards of the participants of one
 * session, in the 1D block-cyclic layout, with LAPACK/BLAS tile kernels.
 *
 * Every participant calls the same entry point with its own rank after joining the session;
 * each updates the tiles it owns (owner computes) and reads the tiles of others between
 * barriers. The factorization is right-looking: at step k the owner of tile column k
 * factors the diagonal tile (potrf) and the panel below it (trsm), all meet, then each
 * participant applies the rank-T update (herk + gemm) to its own tile columns right of k. */
#ifndef JAXMG_CPU_CPU_H_
#define JAXMG_CPU_CPU_H_

#include "common/ops.h"
#include "cpu/lapack.h"

/* Runs task t for one participant (cpu_run.c: the op's kernel from the op table). Returns
 * JAXMG_OK also when the matrix is not positive definite or the eigensolver does not
 * converge: then *info > 0 and the outputs hold NaN. */
jaxmg_status_t jaxmg_cpu_run(const jaxmg_task_t *t, int32_t *info, jaxmg_error_t *err);
/* 1 when the CPU has a kernel for op (its column of the op table is not NULL). */
int jaxmg__cpu_has_kernel(jaxmg_op_t op);

/* What every kernel gets: the task, the dtype's LAPACK kernels and the geometry. */
typedef struct {
  const jaxmg_task_t *t;
  const jaxmg_cpu_kernels_t *k;
  size_t esz;
  int64_t N, T, K, P;
  int ld;
} jaxmg_cpu_ctx_t;

/* ---- the pieces shared by the algorithms (cpu_potrf.c) ---------------------------------- */
/* Address of row `row` of global tile column j (in its owner's shard). */
char *jaxmg__cpu_at(const jaxmg_cpu_ctx_t *c, int64_t j, int64_t row);
/* Distributed Cholesky of the (already permuted) shards; *ginfo = LAPACK info in original
 * index order (0 when positive definite), equal on every participant. */
jaxmg_status_t jaxmg__cpu_factor(const jaxmg_cpu_ctx_t *c, int64_t *ginfo, jaxmg_error_t *err);
/* Solves L L^H Y = Y for nc columns of Y (ld N) using the distributed factor. */
void jaxmg__cpu_solve(const jaxmg_cpu_ctx_t *c, void *y, int nc);

/* ---- the kernels: the op table's CPU column (src/common/ops.h) ------------------------- *
 * Each runs one participant's share of its ops; *info is 0 on entry. */
typedef jaxmg_status_t (*jaxmg_cpu_kernel_t)(const jaxmg_cpu_ctx_t *c, int32_t *info,
                                             jaxmg_error_t *err);
/* Ops with JAXMG_OPF_FACTOR permute and factor the shards, ops with JAXMG_OPF_B solve for the
 * right-hand sides (cho_solve: with the factor potrf left; cpu_potrf.c). */
jaxmg_status_t jaxmg__cpu_potrs(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err);
/* The inverse, as rows of inv(A) in the original order (cpu_potri.c). */
jaxmg_status_t jaxmg__cpu_potri(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err);
/* Eigenvalues, with JAXMG_OPF_VECTORS eigenvectors; JAXMG_OPF_WHOLE selects the
 * one_device engine's layout of them (cpu_syevd.c). */
jaxmg_status_t jaxmg__cpu_syevd(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err);
/* The one_device engine's potrs (cpu_whole.c). */
jaxmg_status_t jaxmg__cpu_potrs_whole(const jaxmg_cpu_ctx_t *c, int32_t *info,
                                      jaxmg_error_t *err);

/* The device-local subset eigensolver (cpu_syevx.c): ?syevr / ?heevr, range 'I'. */
jaxmg_status_t jaxmg__cpu_syevx(const jaxmg_syevx_t *x, jaxmg_error_t *err);
/* The device-local two-stage eigensolver (cpu_syev2s.c): dense -> band -> tridiagonal,
 * ?stedc / ?sterf, back-transformation in block reflectors. *x->info = 1 for an input whose
 * lower triangle is not finite (nothing else computed), ?stedc's info when it fails. */
jaxmg_status_t jaxmg__cpu_syev2s(const jaxmg_syev2s_t *x, jaxmg_error_t *err);

#endif
