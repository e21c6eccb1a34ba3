/* The op table, what every participant of a call publishes in the rendezvous, and the task
 * the FFI layer hands to the backends. Backends see plain pointers only. */
#ifndef JAXMG_COMMON_OPS_H_
#define JAXMG_COMMON_OPS_H_

#include <stdint.h>

#include "common/rendezvous.h"
#include "jaxmg/jaxmg.h"

/* What an op takes and returns (operands and results in src/ffi/dispatch.c's order: a, b,
 * ids; then a, x, w, info), and what its math does where a kernel serves several ops. */
enum {
  JAXMG_OPF_B = 1u << 0,       /* operand b (nrhs x N) and result x (nrhs x N): a solve */
  JAXMG_OPF_W = 1u << 1,       /* result w: N eigenvalues in the real type of a */
  JAXMG_OPF_A_OUT = 1u << 2,   /* result a (the first), aliased to the operand a */
  JAXMG_OPF_WHOLE = 1u << 3,   /* computed by position 0 on the whole matrix (identity
                                * layout: one tile per shard) */
  JAXMG_OPF_FACTOR = 1u << 4,  /* factors A = L L^H from the operand a */
  JAXMG_OPF_VECTORS = 1u << 5, /* returns eigenvectors in the result a */
  JAXMG_OPF_LU = 1u << 6        /* factors P A = L U (partial pivoting) from the operand a */
};

/* ONE row per op, and no list of ops anywhere else:
 *
 *   X(OP, stem, name, flags, cpu, cuda)
 *
 *   OP     the enum suffix: JAXMG_OP_<OP>;
 *   stem   the FFI target jaxmg_<stem> and the exported handlers jaxmg_ffi_<stem>_cpu and
 *          jaxmg_ffi_<stem>_cuda (src/ffi/entry_*.c);
 *   name   the op in messages ("jaxmg.<name>: ..."), as the user called it;
 *   flags  JAXMG_OPF_*: the operands and results dispatch.c checks, and the math;
 *   cpu    the CPU kernel (src/cpu/cpu.h), cuda the CUDA kernel (src/gpu/gpu.h); NULL where
 *          the platform has none: its library does not list the target in
 *          jaxmg_ffi_targets() and its handler refuses the call (UNAVAILABLE).
 *
 * The kernel names are expanded only where the platform's kernel table is built
 * (src/cpu/cpu_run.c, src/gpu/gpu_run.c). potri has no CUDA kernel: cusolverMgPotri returns
 * wrong inverses on 2 GPUs (docs/design.md), and Python computes the inverse on GPUs from
 * potrf and solves. The *_whole ops are the one_device engine's potrs and syevd: position 0
 * gathers from its peers only the part a lower factorization reads and computes alone.
 * getrs is the general solve (cuSOLVERMg's getrf + getrs): the shards hold the rows of Aᵀ,
 * so that read column-major the solver sees A itself; the CPU devices solve general
 * systems through the dense engine (python/jaxmg/_engines/dense.py). */
#define JAXMG_OPS(X)                                                                          \
  X(POTRF, potrf, "cho_factor", JAXMG_OPF_A_OUT | JAXMG_OPF_FACTOR,                           \
    jaxmg__cpu_potrs, jaxmg__mg_run)                                                          \
  X(POTRS, potrs, "potrs", JAXMG_OPF_B | JAXMG_OPF_A_OUT | JAXMG_OPF_FACTOR,                  \
    jaxmg__cpu_potrs, jaxmg__mg_run)                                                          \
  X(SOLVE, solve, "cho_solve", JAXMG_OPF_B, /* a: the factor from potrf, read only */        \
    jaxmg__cpu_potrs, jaxmg__mg_run)                                                          \
  X(POTRI, potri, "potri", JAXMG_OPF_A_OUT | JAXMG_OPF_FACTOR,                                \
    jaxmg__cpu_potri, NULL)                                                                   \
  X(SYEVD, syevd, "syevd", JAXMG_OPF_W | JAXMG_OPF_A_OUT | JAXMG_OPF_VECTORS,                 \
    jaxmg__cpu_syevd, jaxmg__mg_run)                                                          \
  X(SYEVD_N, syevd_n, "syevd", JAXMG_OPF_W | JAXMG_OPF_A_OUT, /* a: scratch */               \
    jaxmg__cpu_syevd, jaxmg__mg_run)                                                          \
  X(POTRS_WHOLE, potrs_whole, "potrs",                                                        \
    JAXMG_OPF_B | JAXMG_OPF_WHOLE | JAXMG_OPF_FACTOR, /* a: read only */                     \
    jaxmg__cpu_potrs_whole, jaxmg__gpu_whole)                                                 \
  X(SYEVD_WHOLE, syevd_whole, "syevd",                                                        \
    JAXMG_OPF_W | JAXMG_OPF_A_OUT | JAXMG_OPF_WHOLE | JAXMG_OPF_VECTORS,                      \
    jaxmg__cpu_syevd, jaxmg__gpu_whole)                                                       \
  X(SYEVD_N_WHOLE, syevd_n_whole, "syevd",                                                    \
    JAXMG_OPF_W | JAXMG_OPF_A_OUT | JAXMG_OPF_WHOLE, /* a: scratch */                        \
    jaxmg__cpu_syevd, jaxmg__gpu_whole)                                                       \
  X(GETRS, getrs, "solve", JAXMG_OPF_B | JAXMG_OPF_A_OUT | JAXMG_OPF_LU, /* a: scratch */     \
    NULL, jaxmg__mg_run)

/* What one participant is asked to do. The values count from 0 in table order. */
typedef enum {
#define JAXMG_OP_ENUM(OP, stem, name, flags, cpu, cuda) JAXMG_OP_##OP,
  JAXMG_OPS(JAXMG_OP_ENUM)
#undef JAXMG_OP_ENUM
  JAXMG_NOPS /* the number of ops, not an op */
} jaxmg_op_t;

typedef struct {
  jaxmg_op_t op;
  const char *stem;   /* "potrs_whole" */
  const char *target; /* "jaxmg_potrs_whole": the FFI target */
  const char *name;   /* "potrs": the op in messages */
  unsigned flags;     /* JAXMG_OPF_* */
} jaxmg_op_info_t;

/* The table row of op (src/common/ops.c); NULL for a value that is no op. */
const jaxmg_op_info_t *jaxmg__op_info(jaxmg_op_t op);

/* 1 when op has any of the JAXMG_OPF_* bits in `flags`. */
static inline int jaxmg__op_has(jaxmg_op_t op, unsigned flags) {
  const jaxmg_op_info_t *oi = jaxmg__op_info(op);
  return oi && (oi->flags & flags) != 0;
}

typedef struct {
  void *a;          /* this device's matrix shard: nloc x N row-major (in/out) */
  const void *b;    /* right-hand sides, column-major N x nrhs, replicated (JAXMG_OPF_B) */
  void *x;          /* solution, column-major N x nrhs, replicated (JAXMG_OPF_B) */
  void *w;          /* eigenvalues, N reals, replicated (JAXMG_OPF_W) */
  int32_t *info;    /* LAPACK info, one int32, replicated */
  int device;       /* device ordinal (GPU) */
  void *stream;     /* the device's XLA stream (GPU) */
  void *ready;      /* event recorded on `stream` once this device's inputs are ready (GPU) */
} jaxmg_part_t;

typedef struct {
  jaxmg_op_t op;
  const char *name;          /* the op's name for messages (jaxmg__op_info(op)->name) */
  jaxmg_dtype_t dtype;
  jaxmg_layout_t lay;        /* N, nloc, ndev = number of participants, tile */
  int64_t nrhs;
  int rank;
  jaxmg_session_t *session;  /* joined; slots hold every participant's jaxmg_part_t */
} jaxmg_task_t;

/* ---- device-local ops ----------------------------------------------------------------------
 * No participants and no rendezvous: each device computes on operands it holds whole (the
 * dense engine, python/jaxmg/_engines/dense.py). FFI targets: JAXMG_LOCAL_TARGETS
 * (src/ffi/dispatch.h). */

/* jaxmg_syevx: eigenpairs lo .. hi - 1 (ascending, 0-based) of the Hermitian n x n matrix at
 * `a`, read column-major, lower triangle; `a` is overwritten. */
typedef struct {
  jaxmg_dtype_t dtype;
  int64_t n, lo, hi;
  int vectors;    /* 1: eigenvectors into z */
  int parts;      /* devices of the process computing the same at once (CPU thread share) */
  void *a;        /* n x n, column-major (in/scratch) */
  void *w;        /* hi - lo eigenvalues, the real type of a */
  void *z;        /* n x (hi - lo) column-major eigenvectors (vectors) */
  int32_t *info;  /* LAPACK info: 0, or > 0 when the solver failed (outputs unspecified) */
} jaxmg_syevx_t;

/* jaxmg_syev2s: every eigenvalue (ascending) and, with `vectors`, every eigenvector of the
 * Hermitian n x n matrix at `a`, read column-major, lower triangle, by the two-stage
 * reduction: dense to band (b sub-diagonals) by blocked Householder QR of panels, band to
 * real symmetric tridiagonal by bulge chasing, then divide and conquer; `a` is overwritten. */
typedef struct {
  jaxmg_dtype_t dtype;
  int64_t n;
  int64_t band;   /* b, the sub-diagonals of the intermediate band matrix; 0: the default;
                   * at most n - 1 is used */
  int vectors;    /* 1: eigenvectors into z */
  int parts;      /* devices of the process computing the same at once (CPU thread share) */
  void *a;        /* n x n, column-major (in/scratch) */
  void *w;        /* n eigenvalues, the real type of a */
  void *z;        /* n x n column-major eigenvectors (vectors) */
  int32_t *info;  /* 0, or > 0 when the input is not finite or the tridiagonal solver failed
                   * (outputs unspecified) */
} jaxmg_syev2s_t;

/* Statuses that originate in another participant (already posted to the session). */
static inline int jaxmg__is_peer_status(jaxmg_status_t s) {
  return s == JAXMG_EPEER || s == JAXMG_ETIMEDOUT;
}

#endif
