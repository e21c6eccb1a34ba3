/* CUDA backend: status checking, the dtype table, device-side layout helpers, and what the
 * kernels share: per-call buffers and the exchanges between participants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"

static const char *cusolver_name(int s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT: return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE: return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return "cuSOLVER error";
  }
}

jaxmg_status_t jaxmg__gpu_check(jaxmg_gpu_lib_t lib, int status, const char *text,
                                const char *file, int line, const char *op, jaxmg_error_t *err) {
  if (status == 0) return JAXMG_OK;
  const char *name = "unknown", *what = "CUDA";
  int nomem = 0;
  switch (lib) {
    case JAXMG_LIB_CUDA:
      name = cudaGetErrorName((cudaError_t)status);
      nomem = status == cudaErrorMemoryAllocation;
      /* Clear the runtime's last-error slot of this thread so nothing after us (XLA) trips
       * over our failure; sticky errors stay sticky regardless. */
      (void)cudaGetLastError();
      break;
    case JAXMG_LIB_CUSOLVER:
      name = cusolver_name(status);
      what = "cuSOLVER";
      nomem = status == CUSOLVER_STATUS_ALLOC_FAILED;
      break;
  }
  const char *base = strrchr(file, '/');
  return jaxmg__seterr(err, nomem ? JAXMG_ENOMEM : JAXMG_ELIB,
                       "jaxmg.%s: %s call failed with %s (%d): %.200s [%s:%d]", op ? op : "op",
                       what, name ? name : "unknown", status, text, base ? base + 1 : file, line);
}

static const jaxmg_gpu_dtype_t kTypes[] = {
    {JAXMG_F32, CUDA_R_32F, CUDA_R_32F},
    {JAXMG_F64, CUDA_R_64F, CUDA_R_64F},
    {JAXMG_C64, CUDA_C_32F, CUDA_R_32F},
    {JAXMG_C128, CUDA_C_64F, CUDA_R_64F},
};

const jaxmg_gpu_dtype_t *jaxmg__gpu_dtype(jaxmg_dtype_t dt) {
  for (size_t i = 0; i < sizeof kTypes / sizeof kTypes[0]; i++)
    if (kTypes[i].dtype == dt) return &kTypes[i];
  return NULL;
}

/* Runs a block move list on `s`. Move m copies one block of `tile` rows of the first
 * ncols[m] local columns (all nloc when ncols is NULL): a pitched copy of that many rows
 * (columns, in column-major terms) of `tile` elements; a move of no columns is skipped. */
static jaxmg_status_t run_moves(const jaxmg_layout_t *lay, const int64_t *moves,
                                const int64_t *ncols, int64_t nm, void *a, size_t esz,
                                void *stage, cudaStream_t s, const char *op, jaxmg_error_t *err) {
  const size_t tb = (size_t)lay->tile * esz, colb = (size_t)lay->n * esz;
  jaxmg_status_t st = JAXMG_OK;
  for (int64_t m = 0; m < nm && !st; m++) {
    const int64_t to = moves[2 * m], from = moves[2 * m + 1];
    const size_t cols = (size_t)(ncols ? ncols[m] : lay->nloc);
    if (!cols) continue;
    char *dst = to < 0 ? (char *)stage : (char *)a + (size_t)to * tb;
    const char *src = from < 0 ? (const char *)stage : (const char *)a + (size_t)from * tb;
    st = JAXMG_GPU(err, op,
                   cudaMemcpy2DAsync(dst, to < 0 ? tb : colb, src, from < 0 ? tb : colb, tb,
                                     cols, cudaMemcpyDeviceToDevice, s));
  }
  return st;
}

static jaxmg_status_t permute(const jaxmg_layout_t *lay, int inverse, int64_t lower_rank,
                              void *a, size_t esz, void *stage, cudaStream_t s, const char *op,
                              jaxmg_error_t *err) {
  if (jaxmg_layout_is_identity(lay)) return JAXMG_OK;
  const int64_t K = lay->n / lay->tile;
  const int lower = lower_rank >= 0;
  /* moves (4K values), then the column counts (2K) of the lower variant */
  int64_t *moves = malloc((lower ? 6 : 4) * (size_t)K * sizeof *moves);
  if (!moves) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory for the layout plan",
                         op);
  }
  int64_t *ncols = lower ? moves + 4 * K : NULL;
  const int64_t nm = lower ? jaxmg_layout_moves_lower(lay, lower_rank, moves, ncols)
                           : jaxmg_layout_moves(lay, inverse, moves);
  jaxmg_status_t st = run_moves(lay, moves, ncols, nm, a, esz, stage, s, op, err);
  free(moves);
  return st;
}

jaxmg_status_t jaxmg__gpu_permute(const jaxmg_layout_t *lay, int inverse, void *a, size_t esz,
                                  void *stage, cudaStream_t s, const char *op,
                                  jaxmg_error_t *err) {
  return permute(lay, inverse, -1, a, esz, stage, s, op, err);
}

jaxmg_status_t jaxmg__gpu_permute_lower(const jaxmg_layout_t *lay, int64_t rank, void *a,
                                        size_t esz, void *stage, cudaStream_t s, const char *op,
                                        jaxmg_error_t *err) {
  return permute(lay, 0, rank, a, esz, stage, s, op, err);
}

jaxmg_status_t jaxmg__gpu_fill_nan(void *p, size_t bytes, cudaStream_t s, const char *op,
                                   jaxmg_error_t *err) {
  if (!p || !bytes) return JAXMG_OK;
  return JAXMG_GPU(err, op, cudaMemsetAsync(p, 0xFF, bytes, s));
}

jaxmg_status_t jaxmg__gpu_copy2d(void *dst, size_t dpitch, int ddev, const void *src,
                                 size_t spitch, int sdev, size_t width, size_t height,
                                 cudaStream_t s, const char *op, jaxmg_error_t *err) {
  if (!width || !height) return JAXMG_OK;
  if (ddev == sdev) {
    return JAXMG_GPU(err, op, cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height,
                                                cudaMemcpyDeviceToDevice, s));
  }
  /* The documented pitched copy between two devices; it works without peer access (the
   * driver stages through the host then). */
  struct cudaMemcpy3DPeerParms p;
  memset(&p, 0, sizeof p);
  p.srcPtr.ptr = (void *)(uintptr_t)src;
  p.srcPtr.pitch = spitch;
  p.srcPtr.xsize = spitch; /* only the pitch matters for linear memory */
  p.srcPtr.ysize = height;
  p.srcDevice = sdev;
  p.dstPtr.ptr = dst;
  p.dstPtr.pitch = dpitch;
  p.dstPtr.xsize = dpitch;
  p.dstPtr.ysize = height;
  p.dstDevice = ddev;
  p.extent.width = width;
  p.extent.height = height;
  p.extent.depth = 1;
  return JAXMG_GPU(err, op, cudaMemcpy3DPeerAsync(&p, s));
}

void jaxmg__gpu_enable_peer(int dev, int peer) {
  jaxmg_error_t ignored;
  int can = 0;
  if (dev == peer || JAXMG_GPU(&ignored, "peer", cudaDeviceCanAccessPeer(&can, dev, peer)) || !can)
    return;
  (void)JAXMG_GPU(&ignored, "peer", cudaDeviceEnablePeerAccess(peer, 0));
}

/* ---- per-call buffers and the exchanges between participants --------------------------- */

void jaxmg__gpu_free(jaxmg_gpu_part_t *g, void **p, size_t *have) {
  if (*p && g->mem.free) g->mem.free(g->mem.ctx, *p, *have);
  *p = NULL;
  *have = 0;
}

jaxmg_status_t jaxmg__gpu_alloc(jaxmg_gpu_part_t *g, void **p, size_t *have, size_t bytes,
                                const char *what, const char *op, jaxmg_error_t *err) {
  if (bytes == 0 || *have >= bytes) return JAXMG_OK;
  char why[384] = "";
  jaxmg__gpu_free(g, p, have);
  if (!(*p = g->mem.alloc(g->mem.ctx, bytes, why, sizeof why))) {
    return jaxmg__seterr(err, JAXMG_ENOMEM,
                         "jaxmg.%s: out of GPU memory on device %d allocating %zu bytes for %s %s",
                         op, g->device, bytes, what, why);
  }
  *have = bytes;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__gpu_fetch_x(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const jaxmg_part_t *me = jaxmg__gpu_slot(t, t->rank), *p0 = jaxmg__gpu_slot(t, 0);
  const size_t bytes = (size_t)t->lay.n * (size_t)t->nrhs * jaxmg_dtype_size(t->dtype);
  return JAXMG_GPU(err, t->name,
                   cudaMemcpyPeerAsync(me->x, g->device, p0->x, p0->device, bytes, g->stream));
}

jaxmg_status_t jaxmg__gpu_exchange_done(const jaxmg_task_t *t, jaxmg_gpu_part_t *g,
                                        int waiter, jaxmg_error_t *err) {
  const jaxmg_gpu_shared_t *sh = jaxmg__rv_shared(t->session);
  const int P = (int)t->lay.ndev;
  jaxmg_status_t st = JAXMG_OK;
  if (!g->done)
    st = JAXMG_GPU(err, t->name, cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming));
  if (!st) st = JAXMG_GPU(err, t->name, cudaEventRecord(g->done, g->stream));
  if (!st) st = jaxmg__rv_barrier(t->session, t->rank, -1, err);
  if (st || (waiter >= 0 && waiter != t->rank)) return st;
  for (int q = 0; q < P && !st; q++) {
    if (q != t->rank)
      st = JAXMG_GPU(err, t->name, cudaStreamWaitEvent(g->stream, sh->gp[q]->done, 0));
  }
  return st;
}

jaxmg_status_t jaxmg__gpu_free_host_work(void *hwork, cudaStream_t s, jaxmg_status_t st,
                                         const char *op, jaxmg_error_t *err) {
  if (!hwork) return st;
  jaxmg_error_t e2;
  jaxmg_status_t st2 = JAXMG_GPU(&e2, op, cudaStreamSynchronize(s));
  free(hwork);
  if (!st && st2) {
    *err = e2;
    return st2;
  }
  return st;
}
