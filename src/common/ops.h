/* What every participant of a call publishes in the rendezvous, and the op codes the FFI layer
 * hands to the backends. Backends see plain pointers only. */
#ifndef JAXMG_COMMON_OPS_H_
#define JAXMG_COMMON_OPS_H_

#include <stdint.h>

#include "common/rendezvous.h"
#include "jaxmg/jaxmg.h"

typedef struct {
  void *a;          /* this device's matrix shard: nloc x N row-major (in/out) */
  const void *b;    /* right-hand sides, column-major N x nrhs, replicated (potrs) */
  void *x;          /* solution, column-major N x nrhs, replicated (potrs) */
  void *w;          /* eigenvalues, N reals, replicated (syevd) */
  int32_t *info;    /* LAPACK info, one int32, replicated */
  int device;       /* device ordinal (GPU) */
  void *stream;     /* the device's XLA stream (GPU) */
  void *ready;      /* event recorded on `stream` once this device's inputs are ready (GPU) */
} jaxmg_part_t;

/* What one participant is asked to do. */
typedef enum {
  JAXMG_OP_POTRF = 0,   /* factor A = L L^H in place, in the block-cyclic layout */
  JAXMG_OP_POTRS = 1,   /* factor, then solve for the right-hand sides */
  JAXMG_OP_SOLVE = 2,   /* solve with a factor produced by JAXMG_OP_POTRF */
  JAXMG_OP_POTRI = 3,   /* inverse, returned as rows of inv(A) in the original order */
  JAXMG_OP_SYEVD = 4,   /* eigenvalues and eigenvectors */
  JAXMG_OP_SYEVD_N = 5, /* eigenvalues only */
  /* factor and solve on one participant (position 0) holding the whole matrix: it gathers
   * from its peers only the part a lower Cholesky reads, the others receive x ("single"
   * engine of potrs); `a` is read, not written */
  JAXMG_OP_POTRS_WHOLE = 6,
  /* eigendecomposition on position 0 holding the whole matrix (gathered as for
   * POTRS_WHOLE); every participant receives w, info and, with vectors, its rows of the
   * column-major eigenvector matrix ("single" engine of syevd); `a` is overwritten */
  JAXMG_OP_SYEVD_WHOLE = 7,
  JAXMG_OP_SYEVD_N_WHOLE = 8 /* eigenvalues only; `a` is scratch */
} jaxmg_op_t;

/* Ops with right-hand sides b (operand) and solutions x (result). */
static inline int jaxmg__op_has_rhs(jaxmg_op_t op) {
  return op == JAXMG_OP_POTRS || op == JAXMG_OP_SOLVE || op == JAXMG_OP_POTRS_WHOLE;
}
/* Eigendecompositions (result w). */
static inline int jaxmg__op_is_evd(jaxmg_op_t op) {
  return op == JAXMG_OP_SYEVD || op == JAXMG_OP_SYEVD_N || op == JAXMG_OP_SYEVD_WHOLE ||
         op == JAXMG_OP_SYEVD_N_WHOLE;
}
/* Ops computed by position 0 on the whole matrix (identity layout). */
static inline int jaxmg__op_is_whole(jaxmg_op_t op) {
  return op == JAXMG_OP_POTRS_WHOLE || op == JAXMG_OP_SYEVD_WHOLE ||
         op == JAXMG_OP_SYEVD_N_WHOLE;
}
/* Ops whose shard `a` is also a result (aliased to the operand). */
static inline int jaxmg__op_writes_a(jaxmg_op_t op) {
  return op != JAXMG_OP_SOLVE && op != JAXMG_OP_POTRS_WHOLE;
}

typedef struct {
  jaxmg_op_t op;
  const char *name;          /* "potrs", ... for messages */
  jaxmg_dtype_t dtype;
  jaxmg_layout_t lay;        /* N, nloc, ndev = number of participants, tile */
  int64_t nrhs;
  int rank;
  jaxmg_session_t *session;  /* joined; slots hold every participant's jaxmg_part_t */
} jaxmg_task_t;

/* Statuses that originate in another participant (already posted to the session). */
static inline int jaxmg__is_peer_status(jaxmg_status_t s) {
  return s == JAXMG_EPEER || s == JAXMG_ETIMEDOUT;
}

#endif
