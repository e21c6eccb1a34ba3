/* The CUDA backend: cuSOLVERMg over the shards of the participants of one session.
 *
 * How one call runs (single process, one host thread per GPU, all inside XLA's handler):
 *
 *   every participant  permutes its own shard's rows into the solver order on its own XLA
 *                      stream (pitched block copies, one staging block; no byte crosses to
 *                      another GPU; for the lower-triangle routines only the row blocks on
 *                      or below the diagonal of M) and records its `ready` event;
 *   rank 0 (driver)    looks up the plan (cuSOLVERMg handle, grid, descriptors, workspace
 *                      size) for (device list in mesh order, N, T, dtype, op, nrhs);
 *   barrier            everyone learns the per-device workspace size, allocates its own
 *                      from XLA's allocator and publishes the pointer;
 *   driver             waits for every `ready` event on the host, calls cuSOLVERMg (which
 *                      runs on its own internal streams), then synchronises every device of
 *                      the grid: the library's streams are not visible to us, so no event
 *                      can express "cuSOLVERMg has finished";
 *   barrier            (no deadline: the driver is computing) everyone learns `info`;
 *   every participant  finishes its own outputs on its own stream (un-permute, NaN on
 *                      failure, copy of the solution); where a participant reads another's
 *                      memory the order is expressed with events, never with device-wide
 *                      synchronisation.
 *
 * cuSOLVERMg specifics that shape this code:
 *  - 1D column block-cyclic only: grid 1 x P, descriptor (N, N, rowblock N, colblock T).
 *    Tile t of columns lives on grid column t % P; the grid lists the devices in MESH order,
 *    so mesh position r owns exactly the tiles our local row permutation put there.
 *  - The API takes host arrays of device pointers (one per grid position) for A, B and the
 *    workspaces; `lwork` from *_bufferSize is a number of ELEMENTS of the compute type, per
 *    device. Plans cache the largest size of the routines an op calls.
 *  - Everything is synchronous from the host's point of view except the device work itself;
 *    `info` comes back in host memory, and syevd's eigenvalues W too (host pointer).
 *  - Only uplo = LOWER and IA = JA = IB = JB = 1 are used (syevd supports lower only).
 *  - B of potrs is a distributed matrix with its own descriptor on the same grid: we keep
 *    all of it on the driver's device as ONE column tile (colblock = number of columns, so
 *    tile 0 -> grid position 0) and solve in chunks of at most JAXMG_MG_RHS_CHUNK columns
 *    (bounded workspace, no cap on nrhs); the other positions get valid but unused pointers.
 *    The solution is then copied from the driver's x to every other device (peer copies).
 *  - No potri: cusolverMgPotri returns wrong inverses on 2 GPUs (docs/design.md), so the
 *    CUDA library has no potri kernel; Python computes the inverse from potrf and solves.
 *  - syevd: T_A <= 1024 (documented limit of cuSOLVERMg's syevd): larger tiles are refused
 *    with INVALID_ARGUMENT rather than clamped, because the tile fixes the layout.
 *  - N, lda and the chunk of right-hand sides are 32-bit ints in the API: N > INT_MAX is
 *    refused. At most 16 devices.
 *  - A matrix that is not positive definite: cusolverMgPotrf may report it through h_info,
 *    through a non-success status, or (NaN input) not at all. The driver therefore also
 *    scans the diagonal of the factor for the first entry that is not > 0 (LAPACK's own
 *    test) and treats a failure status as numerical when such a pivot exists.
 *  - Peer access is enabled where possible when a device set is first seen (cuSOLVERMg
 *    benefits from it) but never required: our own cross-device traffic uses peer copies
 *    (cudaMemcpyPeerAsync / cudaMemcpy3DPeerAsync), which work without it. */
#ifndef JAXMG_GPU_GPU_H_
#define JAXMG_GPU_GPU_H_

#ifndef DISABLE_CUSOLVERMG_DEPRECATED
#define DISABLE_CUSOLVERMG_DEPRECATED 1 /* deprecated in CUDA 13, still shipped */
#endif

#include <cuda_runtime_api.h>
#include <cusolverMg.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "common/ops.h"

enum {
  JAXMG_MG_MAX_DEVICES = 16,     /* cuSOLVERMg's limit */
  JAXMG_MG_RHS_CHUNK = 256,      /* right-hand sides per cusolverMgPotrs call */
  JAXMG_MG_SYEVD_MAX_TILE = 1024 /* cuSOLVERMg's syevd tile limit */
};

/* ---- the one way vendor calls are checked ------------------------------------------------
 * JAXMG_GPU(err, op, call) evaluates `call` once; on failure it records in *err the call's
 * text, the library's name for the status, file and line, and yields JAXMG_ELIB (JAXMG_ENOMEM
 * for allocation failures); on success JAXMG_OK. The status type selects the library. */
typedef enum { JAXMG_LIB_CUDA = 0, JAXMG_LIB_CUSOLVER = 1 } jaxmg_gpu_lib_t;

#define JAXMG__LIB_OF(call) \
  _Generic((call), cudaError_t: JAXMG_LIB_CUDA, cusolverStatus_t: JAXMG_LIB_CUSOLVER)

#define JAXMG_GPU(err, op, call) \
  jaxmg__gpu_check(JAXMG__LIB_OF(call), (int)(call), #call, __FILE__, __LINE__, (op), (err))

jaxmg_status_t jaxmg__gpu_check(jaxmg_gpu_lib_t lib, int status, const char *text,
                                const char *file, int line, const char *op, jaxmg_error_t *err);

/* ---- dtype table row for cuSOLVERMg -------------------------------------------------------- */
typedef struct {
  jaxmg_dtype_t dtype;
  cudaDataType ctype; /* element and compute type */
  cudaDataType rtype; /* real counterpart (syevd's W) */
} jaxmg_gpu_dtype_t;

const jaxmg_gpu_dtype_t *jaxmg__gpu_dtype(jaxmg_dtype_t dt);

/* ---- what one participant holds during one call (owned by its thread) --------------------- */
/* Device memory of this participant's device: every buffer of a call goes through it
 * (staging blocks, cuSOLVERMg workspaces, the whole matrix and cuSOLVERDn's workspace). On
 * failure `alloc` returns NULL and writes into why[why_len] where the memory was to come
 * from and what the allocator said, for the caller's out-of-memory message. Blocks are
 * 256-byte aligned. */
typedef struct {
  void *(*alloc)(void *ctx, size_t bytes, char *why, size_t why_len);
  void (*free)(void *ctx, void *p, size_t bytes);
  void *ctx;
} jaxmg_gpu_alloc_t;

typedef struct {
  int device;
  cudaStream_t stream;
  jaxmg_gpu_alloc_t mem;
  cudaEvent_t ready; /* inputs permuted (later re-recorded: rows put back) */
  cudaEvent_t done;  /* this participant's reads of peers' memory are finished */
  void *stage;       /* tile x nloc elements */
  size_t stage_bytes;
  void *work; /* cuSOLVERMg workspace on this device */
  size_t work_bytes;
} jaxmg_gpu_part_t;

/* ---- one participant's call (gpu_run.c) ---------------------------------------------------- */
/* 1 when the CUDA library has a kernel for op (its column of the op table is not NULL). */
int jaxmg__gpu_has_kernel(jaxmg_op_t op);
/* Before the rendezvous: creates the `ready` event and fills device/stream/ready of *p. */
jaxmg_status_t jaxmg__gpu_prepare(const jaxmg_task_t *t, jaxmg_part_t *p, jaxmg_gpu_part_t *g,
                                  jaxmg_error_t *err);
/* After the rendezvous: the op's kernel for this participant, `info` output included.
 * Returns JAXMG_OK also when the matrix is not positive definite (info > 0, NaN outputs);
 * JAXMG_EUNAVAIL for an op without a CUDA kernel. */
jaxmg_status_t jaxmg__gpu_run(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err);
/* Frees what prepare/run acquired (safe on a partially filled state). */
void jaxmg__gpu_release(jaxmg_gpu_part_t *g);

/* ---- the kernels: the op table's CUDA column (src/common/ops.h) -------------------------- */
typedef jaxmg_status_t (*jaxmg_gpu_kernel_t)(const jaxmg_task_t *t, jaxmg_gpu_part_t *g,
                                             jaxmg_error_t *err);
/* cuSOLVERMg over the participants' shards in the block-cyclic layout (mg_run.c): potrf,
 * potrs, cho_solve, syevd with and without vectors. */
jaxmg_status_t jaxmg__mg_run(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err);
/* The whole-matrix ops, the one_device engine's potrs and syevd (whole.c): position 0 gathers
 * from its peers only the part of the matrix a lower factorization reads and runs
 * cuSOLVERDn alone; the others copy their results from it. */
jaxmg_status_t jaxmg__gpu_whole(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err);

/* The device-local subset eigensolver on g's device and stream (whole.c). */
jaxmg_status_t jaxmg__gpu_syevx(const jaxmg_syevx_t *x, jaxmg_gpu_part_t *g, jaxmg_error_t *err);

/* ---- what participants share during a call ------------------------------------------------ */
/* The session's scratch: each participant's private state, published before a barrier. */
typedef struct {
  jaxmg_gpu_part_t *gp[JAXMG_MG_MAX_DEVICES];
} jaxmg_gpu_shared_t;

_Static_assert(sizeof(jaxmg_gpu_shared_t) <= 256, "the rendezvous scratch holds 256 bytes");

static inline const jaxmg_part_t *jaxmg__gpu_slot(const jaxmg_task_t *t, int r) {
  return jaxmg__rv_slot(t->session, r);
}

/* ---- device helpers (gpu_util.c) ----------------------------------------------------------- */
/* Gives *p at least `bytes` of device memory through g->mem (keeping a large enough *p; *have
 * is its size), or JAXMG_ENOMEM naming the op, the bytes, the device, `what` they are for,
 * and the allocator with its reason. */
jaxmg_status_t jaxmg__gpu_alloc(jaxmg_gpu_part_t *g, void **p, size_t *have, size_t bytes,
                                const char *what, const char *op, jaxmg_error_t *err);
/* Frees a solver's host workspace `hwork` (NULL: nothing) once stream `s` has finished with
 * it; returns `st`, or the wait's failure when `st` was JAXMG_OK (then in *err). */
jaxmg_status_t jaxmg__gpu_free_host_work(void *hwork, cudaStream_t s, jaxmg_status_t st,
                                         const char *op, jaxmg_error_t *err);
/* Returns *p to g->mem (NULL: nothing) and clears it. */
void jaxmg__gpu_free(jaxmg_gpu_part_t *g, void **p, size_t *have);
/* Copies position 0's x to this participant's x (peer copy on its own stream). */
jaxmg_status_t jaxmg__gpu_fetch_x(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err);
/* Records g->done, meets the others, and makes this stream wait for the others' `done`: after
 * this no later work on the waiting stream can overwrite memory a peer is still reading.
 * Only position `waiter` waits (everyone when -1). Needs gp[] of the shared scratch filled. */
jaxmg_status_t jaxmg__gpu_exchange_done(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, int waiter,
                                        jaxmg_error_t *err);
/* Applies the block permutation of the layout (inverse = 0: into solver order) to the
 * nloc local columns of length N (ld N) at `a`, on `s`; `stage` holds tile x nloc elements. */
jaxmg_status_t jaxmg__gpu_permute(const jaxmg_layout_t *lay, int inverse, void *a, size_t esz,
                                  void *stage, cudaStream_t s, const char *op,
                                  jaxmg_error_t *err);
/* Forward permutation for a solver that reads only the lower triangle of M (potrf, potrs,
 * syevd with uplo = lower): moves only the row blocks of each local column panel that lie on
 * or below the diagonal in solver order (jaxmg_layout_moves_lower for participant `rank`),
 * about half the bytes of jaxmg__gpu_permute(lay, 0, ...). The strict upper triangle of M is
 * left holding unspecified values. */
jaxmg_status_t jaxmg__gpu_permute_lower(const jaxmg_layout_t *lay, int64_t rank, void *a,
                                        size_t esz, void *stage, cudaStream_t s, const char *op,
                                        jaxmg_error_t *err);
/* Fills `bytes` bytes with 0xFF: a quiet NaN in every float type, both parts for complex. */
jaxmg_status_t jaxmg__gpu_fill_nan(void *p, size_t bytes, cudaStream_t s, const char *op,
                                   jaxmg_error_t *err);
/* Tries to give the current device, dev, access to peer's memory (dev == peer: nothing).
 * Peer access only speeds copies up, so failures are dropped; cudaErrorPeerAccessAlreadyEnabled
 * (XLA enables it too) is fine, and the check clears the runtime's last-error slot. */
void jaxmg__gpu_enable_peer(int dev, int peer);
/* Pitched copy of `height` rows of `width` bytes from device `sdev` to device `ddev`. */
jaxmg_status_t jaxmg__gpu_copy2d(void *dst, size_t dpitch, int ddev, const void *src,
                                 size_t spitch, int sdev, size_t width, size_t height,
                                 cudaStream_t s, const char *op, jaxmg_error_t *err);

/* ---- plans (mg_plan.c) ---------------------------------------------------------------------- */
typedef struct jaxmg_mg_ctx jaxmg_mg_ctx_t;
struct jaxmg_mg_ctx {
  jaxmg_mg_ctx_t *next;
  int ndev;
  int devs[JAXMG_MG_MAX_DEVICES]; /* CUDA ordinals in mesh order */
  cusolverMgHandle_t handle;
  cudaLibMgGrid_t grid;
  void *mu; /* pthread_mutex_t *: serialises every use of the handle */
};

typedef struct jaxmg_mg_plan jaxmg_mg_plan_t;
struct jaxmg_mg_plan {
  jaxmg_mg_plan_t *next;
  jaxmg_mg_ctx_t *ctx;
  jaxmg_op_t op;
  jaxmg_dtype_t dtype;
  int64_t n, tile, nrhs;
  int chunk, last;        /* right-hand sides per potrs call, and in the last call */
  cudaLibMgMatrixDesc_t a; /* N x N, tile T */
  cudaLibMgMatrixDesc_t b; /* N x chunk (one column tile) */
  cudaLibMgMatrixDesc_t b_last; /* N x last, or == b */
  int64_t lwork;          /* elements per device: the routines' largest, then the pivots */
  int64_t ipiv_at;        /* where the pivots (getrs: one int per local column) start in
                           * each device's workspace, in elements */
};

/* The plan for this call, created on first use. `a` and `b` are the current pointer arrays
 * (bufferSize queries want them); `devs` the CUDA ordinals in mesh order. Thread-safe. */
jaxmg_status_t jaxmg__mg_plan(const int *devs, int ndev, jaxmg_op_t op, jaxmg_dtype_t dt,
                              int64_t n, int64_t tile, int64_t nrhs, void **a, void **b,
                              const char *opname, jaxmg_mg_plan_t **out, jaxmg_error_t *err);
void jaxmg__mg_lock(jaxmg_mg_ctx_t *c);
void jaxmg__mg_unlock(jaxmg_mg_ctx_t *c);

#endif
