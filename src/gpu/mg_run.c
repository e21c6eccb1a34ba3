/* CUDA backend: the cuSOLVERMg kernel (potrf, potrs, cho_solve, syevd with and without
 * vectors, the general solve getrf + getrs), seen from one participant (see gpu.h for the sequence).
 *
 * Rank 0 is the driver: it alone talks to cuSOLVERMg. Every wait on it has no deadline
 * (it may be creating a handle or factoring); every other wait has the session's. Each
 * participant touches other devices' memory only through peer copies ordered by events,
 * and the last barrier keeps every event alive until all waits on it are enqueued. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"

/* ---- the driver ---------------------------------------------------------------------------- */

/* Waits until every device of the grid has finished all its work (cuSOLVERMg's streams are
 * not visible to us). Reports the first failure. */
static jaxmg_status_t sync_all(const jaxmg_mg_ctx_t *c, const char *op, jaxmg_error_t *err) {
  jaxmg_status_t first = JAXMG_OK;
  for (int i = 0; i < c->ndev; i++) {
    jaxmg_error_t e;
    jaxmg_status_t st = JAXMG_GPU(&e, op, cudaSetDevice(c->devs[i]));
    if (!st) st = JAXMG_GPU(&e, op, cudaDeviceSynchronize());
    if (st && !first) {
      first = st;
      if (err) *err = e;
    }
  }
  return first;
}

/* First solver index whose diagonal entry of the factor is not > 0 (NaN included), or -1:
 * LAPACK's own test for "not positive definite". Runs after sync_all. It reads the diagonal
 * tiles only (row block = block column), which potrf wrote: the input permutation may have
 * left the strict upper triangle of M stale, never these. */
static jaxmg_status_t scan_diag(const jaxmg_task_t *t, int64_t *gbad, jaxmg_error_t *err) {
  const jaxmg_layout_t *lay = &t->lay;
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(t->dtype);
  const size_t esz = di->size, N = (size_t)lay->n, T = (size_t)lay->tile;
  const int64_t P = lay->ndev, nt = lay->nloc / lay->tile;
  jaxmg_status_t st = JAXMG_OK;
  char *d = malloc(N * esz);
  *gbad = -1;
  if (!d) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", t->name);
  for (int64_t r = 0; r < P && !st; r++) {
    const jaxmg_part_t *sl = jaxmg__gpu_slot(t, (int)r);
    st = JAXMG_GPU(err, t->name, cudaSetDevice(sl->device));
    for (int64_t l = 0; l < nt && !st; l++) {
      /* Local tile l of position r is solver tile l*P + r; its diagonal runs with stride
       * N + 1 from row (l*P + r)*T of local column l*T. */
      const size_t tt = (size_t)(l * P + r);
      const char *src = (const char *)sl->a + ((size_t)l * T * N + tt * T) * esz;
      st = JAXMG_GPU(err, t->name,
                     cudaMemcpy2D(d + tt * T * esz, esz, src, (N + 1) * esz, esz, T,
                                  cudaMemcpyDeviceToHost));
    }
  }
  for (size_t g = 0; g < N && !st; g++) {
    double v;
    if (di->real_size == 4) {
      float f;
      memcpy(&f, d + g * esz, sizeof f);
      v = f;
    } else {
      memcpy(&v, d + g * esz, sizeof v);
    }
    if (!(v > 0)) {
      *gbad = (int64_t)g;
      break;
    }
  }
  free(d);
  return st;
}

static jaxmg_status_t bad_arg(const char *op, const char *routine, int info, jaxmg_error_t *err) {
  return jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.%s: %s rejected its argument %d", op, routine,
                       -info);
}

/* The cuSOLVERMg calls of the op. Called with the context's mutex held; leaves the devices
 * busy (the caller synchronises). *ginfo: LAPACK info in original indices. */
static jaxmg_status_t solve_locked(const jaxmg_task_t *t, const jaxmg_mg_plan_t *p, void **A,
                                   void **W, int64_t *ginfo, jaxmg_error_t *err) {
  const char *nm = t->name;
  const jaxmg_gpu_dtype_t *ty = jaxmg__gpu_dtype(t->dtype);
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(t->dtype);
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  const int n = (int)p->n, P = (int)t->lay.ndev;
  const jaxmg_layout_t *lay = &t->lay;
  cusolverMgHandle_t h = p->ctx->handle;
  jaxmg_status_t st;
  int hinfo = 0;
  *ginfo = 0;

  if (jaxmg__op_has(t->op, JAXMG_OPF_FACTOR)) {
    jaxmg_error_t perr = {JAXMG_OK, ""};
    /* A failure status may be cuSOLVERMg's way of saying "not positive definite": decide
     * after looking at h_info and the factor's diagonal. */
    jaxmg_status_t pst = JAXMG_GPU(&perr, nm,
                                   cusolverMgPotrf(h, lo, n, A, 1, 1, p->a, ty->ctype, W,
                                                   p->lwork, &hinfo));
    if ((st = sync_all(p->ctx, nm, err))) return st;
    if (hinfo < 0) return bad_arg(nm, "cusolverMgPotrf", hinfo, err);
    int64_t g = hinfo > 0 ? hinfo - 1 : -1;
    if (g < 0 && (st = scan_diag(t, &g, err))) return st;
    if (g >= 0) {
      *ginfo = jaxmg_layout_src(lay, g) + 1;
      return JAXMG_OK;
    }
    if (pst) {
      *err = perr;
      return pst;
    }
  }
  const int lu = jaxmg__op_has(t->op, JAXMG_OPF_LU);
  int *ipiv[JAXMG_MG_MAX_DEVICES];
  for (int r = 0; r < P; r++) ipiv[r] = (int *)((char *)W[r] + (size_t)p->ipiv_at * di->size);
  if (lu) {
    jaxmg_error_t perr = {JAXMG_OK, ""};
    jaxmg_status_t pst = JAXMG_GPU(&perr, nm,
                                   cusolverMgGetrf(h, n, n, A, 1, 1, p->a, ipiv, ty->ctype, W,
                                                   p->lwork, &hinfo));
    if ((st = sync_all(p->ctx, nm, err))) return st;
    if (hinfo < 0) return bad_arg(nm, "cusolverMgGetrf", hinfo, err);
    if (hinfo > 0) {
      /* U(i, i) = 0 of the permuted matrix: singular; reported as the original index of
       * that column (the solver eliminates in its own order, so it may differ from the first
       * zero pivot of LAPACK's getrf on A). */
      *ginfo = jaxmg_layout_src(&t->lay, hinfo - 1) + 1;
      return JAXMG_OK;
    }
    if (pst) {
      *err = perr;
      return pst;
    }
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_B) && t->nrhs > 0) {
    /* All of B on grid position 0 (the driver's x), one column tile per call. */
    void *B[JAXMG_MG_MAX_DEVICES];
    for (int r = 0; r < P; r++) B[r] = jaxmg__gpu_slot(t, r)->x;
    char *x0 = jaxmg__gpu_slot(t, 0)->x;
    for (int64_t c0 = 0; c0 < t->nrhs; c0 += p->chunk) {
      const int last = c0 + p->chunk >= t->nrhs;
      const int nc = last ? p->last : p->chunk;
      B[0] = x0 + (size_t)c0 * (size_t)p->n * di->size;
      cudaLibMgMatrixDesc_t db = last ? p->b_last : p->b;
      st = lu ? JAXMG_GPU(err, nm,
                          cusolverMgGetrs(h, CUBLAS_OP_N, n, nc, A, 1, 1, p->a, ipiv, B, 1, 1, db,
                                          ty->ctype, W, p->lwork, &hinfo))
              : JAXMG_GPU(err, nm,
                          cusolverMgPotrs(h, lo, n, nc, A, 1, 1, p->a, B, 1, 1, db, ty->ctype, W,
                                          p->lwork, &hinfo));
      if (st) return st;
      if (hinfo < 0) return bad_arg(nm, lu ? "cusolverMgGetrs" : "cusolverMgPotrs", hinfo, err);
      if ((st = sync_all(p->ctx, nm, err))) return st;
    }
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_W)) {
    const size_t wb = (size_t)p->n * di->real_size;
    void *w = malloc(wb); /* cuSOLVERMg returns W in host memory */
    if (!w) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", nm);
    jaxmg_error_t perr = {JAXMG_OK, ""};
    jaxmg_status_t pst = JAXMG_GPU(
        &perr, nm,
        cusolverMgSyevd(h, jaxmg__op_has(t->op, JAXMG_OPF_VECTORS) ? CUSOLVER_EIG_MODE_VECTOR
                                                                   : CUSOLVER_EIG_MODE_NOVECTOR,
                        lo, n, A, 1, 1, p->a, w, ty->rtype, ty->ctype, W, p->lwork, &hinfo));
    st = sync_all(p->ctx, nm, err);
    if (!st && hinfo < 0) st = bad_arg(nm, "cusolverMgSyevd", hinfo, err);
    if (!st && hinfo > 0) *ginfo = hinfo; /* a count of unconverged elements: no index */
    if (!st && !hinfo && pst) {
      *err = perr;
      st = pst;
    }
    /* Eigenvalues to every participant's w, on its own stream (its thread is waiting for
     * us; the host buffer is staged before cudaMemcpyAsync returns). */
    for (int r = 0; r < P && !st && !*ginfo; r++) {
      const jaxmg_part_t *sl = jaxmg__gpu_slot(t, r);
      st = JAXMG_GPU(err, nm, cudaSetDevice(sl->device));
      if (!st) {
        st = JAXMG_GPU(err, nm,
                       cudaMemcpyAsync(sl->w, w, wb, cudaMemcpyHostToDevice,
                                       (cudaStream_t)sl->stream));
      }
    }
    free(w);
    if (st) return st;
  }
  return JAXMG_OK;
}

static jaxmg_status_t driver_plan(const jaxmg_task_t *t, jaxmg_mg_plan_t **plan,
                                  jaxmg_error_t *err) {
  const int P = (int)t->lay.ndev;
  int devs[JAXMG_MG_MAX_DEVICES];
  void *a[JAXMG_MG_MAX_DEVICES], *b[JAXMG_MG_MAX_DEVICES];
  for (int r = 0; r < P; r++) {
    const jaxmg_part_t *sl = jaxmg__gpu_slot(t, r);
    devs[r] = sl->device;
    a[r] = sl->a;
    b[r] = sl->x;
    for (int q = 0; q < r; q++) {
      if (devs[q] == devs[r]) {
        return jaxmg__seterr(err, JAXMG_EINVAL,
                             "jaxmg.%s: mesh positions %d and %d are both on CUDA device %d; "
                             "each position needs its own GPU",
                             t->name, q, r, devs[r]);
      }
    }
  }
  return jaxmg__mg_plan(devs, P, t->op, t->dtype, t->lay.n, t->lay.tile, t->nrhs, a, b, t->name,
                        plan, err);
}

static jaxmg_status_t driver_solve(const jaxmg_task_t *t, const jaxmg_mg_plan_t *p,
                                   const jaxmg_gpu_shared_t *sh, int64_t *ginfo, jaxmg_error_t *err) {
  const int P = (int)t->lay.ndev;
  void *A[JAXMG_MG_MAX_DEVICES], *W[JAXMG_MG_MAX_DEVICES];
  jaxmg_status_t st = JAXMG_OK;
  for (int r = 0; r < P && !st; r++) {
    const jaxmg_part_t *sl = jaxmg__gpu_slot(t, r);
    A[r] = sl->a;
    W[r] = sh->gp[r]->work;
    /* Every participant's inputs (its permuted shard, the driver's copy of b) are ready. */
    st = JAXMG_GPU(err, t->name, cudaEventSynchronize((cudaEvent_t)sl->ready));
  }
  if (st) return st;
  if (jaxmg__fault_hit(JAXMG_FAULT_SOLVER, t->rank)) {
    return jaxmg__seterr(err, JAXMG_EFAULT, "jaxmg.%s: injected solver failure", t->name);
  }
  jaxmg__mg_lock(p->ctx);
  st = solve_locked(t, p, A, W, ginfo, err);
  /* On any failure nothing may still run on a device whose workspace is about to be
   * released by its participant. */
  if (st) (void)sync_all(p->ctx, t->name, NULL);
  jaxmg__mg_unlock(p->ctx);
  return st;
}

/* ---- every participant --------------------------------------------------------------------- */

static jaxmg_status_t check_task(const jaxmg_task_t *t, jaxmg_error_t *err) {
  const jaxmg_layout_t *lay = &t->lay;
  if (lay->ndev > JAXMG_MG_MAX_DEVICES) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: cuSOLVERMg supports at most %d GPUs, the rows are sharded "
                         "over %lld",
                         t->name, JAXMG_MG_MAX_DEVICES, (long long)lay->ndev);
  }
  if (lay->n > INT_MAX) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: N = %lld exceeds cuSOLVERMg's 32-bit range", t->name,
                         (long long)lay->n);
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_W) && lay->tile > JAXMG_MG_SYEVD_MAX_TILE) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: cuSOLVERMg's syevd needs T_A <= %d, got T_A = %lld; pass a "
                         "smaller T_A",
                         t->name, JAXMG_MG_SYEVD_MAX_TILE, (long long)lay->tile);
  }
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__mg_run(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const char *nm = t->name;
  jaxmg_session_t *s = t->session;
  const jaxmg_layout_t *lay = &t->lay;
  const int rank = t->rank, P = (int)lay->ndev;
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(t->dtype);
  const size_t esz = di->size, shard = (size_t)lay->nloc * (size_t)lay->n * esz;
  const size_t xbytes = (size_t)lay->n * (size_t)t->nrhs * esz;
  const unsigned flags = jaxmg__op_info(t->op)->flags;
  /* The ops that read A put its rows into solver order (cho_solve's shards already hold the
   * factor there). */
  const int permute = (flags & (JAXMG_OPF_FACTOR | JAXMG_OPF_W | JAXMG_OPF_LU)) != 0;
  jaxmg_gpu_shared_t *sh = jaxmg__rv_shared(s);
  const jaxmg_part_t *me = jaxmg__gpu_slot(t, rank);
  jaxmg_mg_plan_t *plan = NULL;
  int64_t lwork = 0, ginfo = 0;
  jaxmg_status_t st;

  if ((st = check_task(t, err))) return st;
  sh->gp[rank] = g; /* read by the others only after the next barrier */
  if (jaxmg__fault_hit(JAXMG_FAULT_ALLOC, rank)) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: injected allocation failure", nm);
  }
  if (rank != 0 && jaxmg__fault_hit(JAXMG_FAULT_SOLVER, rank)) {
    return jaxmg__seterr(err, JAXMG_EFAULT, "jaxmg.%s: injected solver failure", nm);
  }

  /* 1. Local preparation on this device's stream: rows into solver order. */
  size_t stage = 0;
  if (permute && !jaxmg_layout_is_identity(lay)) stage = (size_t)lay->tile * (size_t)lay->nloc * esz;
  if ((st = jaxmg__gpu_alloc(g, &g->stage, &g->stage_bytes, stage, "the layout staging block",
                             nm, err)))
    return st;
  /* potrf, potrs and syevd (uplo = lower) read only the lower triangle of M: move only the
   * row blocks they read; LU reads all of it. */
  if (permute && (flags & JAXMG_OPF_LU) &&
      (st = jaxmg__gpu_permute(lay, 0, me->a, esz, g->stage, g->stream, nm, err)))
    return st;
  if (permute && !(flags & JAXMG_OPF_LU) &&
      (st = jaxmg__gpu_permute_lower(lay, rank, me->a, esz, g->stage, g->stream, nm, err)))
    return st;
  if (rank == 0 && (flags & JAXMG_OPF_B) && xbytes &&
      (st = JAXMG_GPU(err, nm,
                      cudaMemcpyAsync(me->x, me->b, xbytes, cudaMemcpyDeviceToDevice, g->stream))))
    return st;
  if ((st = JAXMG_GPU(err, nm, cudaEventRecord(g->ready, g->stream)))) return st;

  /* 2. The driver finds the plan; everyone learns the workspace size. */
  if (rank == 0) {
    st = driver_plan(t, &plan, err);
    if (!st) st = JAXMG_GPU(err, nm, cudaSetDevice(g->device));
    if (st) return st;
    lwork = plan->lwork;
  }
  if ((st = jaxmg__rv_allmax(s, rank, 0, &lwork, err))) return st;

  /* 3. Each participant's workspace on its own device, from XLA's allocator. */
  if ((st = jaxmg__gpu_alloc(g, &g->work, &g->work_bytes, (size_t)(lwork > 0 ? lwork : 1) * esz,
                             "the cuSOLVERMg workspace", nm, err)))
    return st;
  if ((st = jaxmg__rv_barrier(s, rank, -1, err))) return st;

  /* 4. The driver runs cuSOLVERMg; everyone learns info. */
  if (rank == 0) {
    st = driver_solve(t, plan, sh, &ginfo, err);
    jaxmg_error_t e2;
    jaxmg_status_t st2 = JAXMG_GPU(&e2, nm, cudaSetDevice(g->device));
    if (!st && st2) {
      st = st2;
      *err = e2;
    }
    if (st) return st;
  }
  if ((st = jaxmg__rv_allmax(s, rank, 0, &ginfo, err))) return st;

  /* 5. Outputs, each on its own stream. */
  if (ginfo) {
    /* The shard holds the factor or the eigenvectors (cho_solve's factor is its input,
     * syevd_n's shard scratch). */
    if (flags & (JAXMG_OPF_FACTOR | JAXMG_OPF_VECTORS))
      st = jaxmg__gpu_fill_nan(me->a, shard, g->stream, nm, err);
    if (!st && (flags & JAXMG_OPF_B))
      st = jaxmg__gpu_fill_nan(me->x, xbytes, g->stream, nm, err);
    if (!st && (flags & JAXMG_OPF_W))
      st = jaxmg__gpu_fill_nan(me->w, (size_t)lay->n * di->real_size, g->stream, nm, err);
  } else {
    /* A factor stays in the solver's layout. */
    if ((flags & JAXMG_OPF_B) && P > 1 && xbytes) {
      if (rank != 0) st = jaxmg__gpu_fetch_x(t, g, err);
      /* The driver's stream waits until every copy of its x has been made. */
      if (!st) st = jaxmg__gpu_exchange_done(t, g, 0, err);
    }
    /* Eigenvector e = g(d, c) is local column c; its rows go back to the original order
     * (w was written by the driver). */
    if (!st && (flags & JAXMG_OPF_VECTORS))
      st = jaxmg__gpu_permute(lay, 1, me->a, esz, g->stage, g->stream, nm, err);
  }
  if (st) return st;
  const int32_t info32 = (int32_t)ginfo;
  if ((st = JAXMG_GPU(err, nm,
                      cudaMemcpyAsync(me->info, &info32, sizeof info32, cudaMemcpyHostToDevice,
                                      g->stream))))
    return st;
  /* 6. Nobody releases its events or buffers while another may still enqueue a wait on them. */
  return jaxmg__rv_barrier(s, rank, -1, err);
}
