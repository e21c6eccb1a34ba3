/* FFI entry points of the CUDA platform: what touches XLA (device ordinal, stream, device
 * memory) stays here; the backend (src/gpu) sees plain pointers and an allocator.
 *
 * XLA calls each handler once per GPU from that GPU's host thread; the hooks of one call run
 * in order on that thread, so the participant's private state is thread-local. Every hook
 * makes its device current and restores the thread's previous device before returning. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"
#include "ffi/dispatch.h"
#include "gpu/gpu.h"

static _Thread_local jaxmg_gpu_part_t tls_part;
static _Thread_local int tls_saved_device;

/* ---- device memory -------------------------------------------------------------------------
 * A call with an XLA call frame takes all its device memory from XLA's allocator: the room is
 * in the pool XLA preallocated (75 % of the GPU by JAX's default), not in what XLA leaves
 * over outside it. When XLA cannot give the memory, the call fails with RESOURCE_EXHAUSTED
 * naming XLA's allocator; there is no fallback outside XLA's pool. */
enum { MAX_DEVICES = 64, MAX_POOL_PTRS = 8 };

static void *xla_alloc(void *ctx, size_t bytes, char *why, size_t why_len) {
  char said[151] = "there is no XLA call here"; /* XLA's reason, cut to fit the message */
  void *p = ctx ? jaxmg__ffi_alloc((const XLA_FFI_CallFrame *)ctx, bytes, said, sizeof said)
                : NULL;
  if (!p) {
    snprintf(why, why_len,
             "from XLA's allocator, which said: %s. XLA's pool holds at most "
             "XLA_PYTHON_CLIENT_MEM_FRACTION of the GPU (0.75 by default): raise it, or keep "
             "fewer arrays alive",
             said);
  }
  return p;
}

static void xla_free(void *ctx, void *p, size_t bytes) {
  if (ctx) jaxmg__ffi_free((const XLA_FFI_CallFrame *)ctx, p, bytes);
}

/* The proxy thread of a remote process's position (one process per device, mp_enter) runs
 * outside any XLA call: no XLA allocator serves that device here. Only these take memory
 * from a stream-ordered pool of jaxmg's own per device, on the proxy's stream; it keeps what
 * it has (release threshold: never), so repeated calls reuse it instead of calling
 * cudaMalloc. The pool is ours alone: the device's default pool, which other libraries
 * share, is untouched. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static cudaMemPool_t pools[MAX_DEVICES];
static _Thread_local void *tls_pool_ptrs[MAX_POOL_PTRS];

static cudaMemPool_t device_pool(int dev) {
  cudaMemPool_t pool = NULL;
  if (dev < 0 || dev >= MAX_DEVICES) return NULL;
  pthread_mutex_lock(&pool_mu);
  if (!pools[dev]) {
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = dev;
    cudaMemPool_t created;
    if (cudaMemPoolCreate(&created, &props) == cudaSuccess) {
      uint64_t keep = UINT64_MAX;
      (void)cudaMemPoolSetAttribute(created, cudaMemPoolAttrReleaseThreshold, &keep);
      /* cuSOLVERMg reads the workspaces of the other GPUs: pool memory is private to its
       * device unless access is granted explicitly (peer access does not cover pools). */
      int count = 0;
      if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
      struct cudaMemAccessDesc acc[MAX_DEVICES];
      int nacc = 0;
      for (int d = 0; d < count && d < MAX_DEVICES; d++) {
        int can = 0;
        if (d == dev || cudaDeviceCanAccessPeer(&can, d, dev) != cudaSuccess || !can) continue;
        memset(&acc[nacc], 0, sizeof acc[nacc]);
        acc[nacc].location.type = cudaMemLocationTypeDevice;
        acc[nacc].location.id = d;
        acc[nacc].flags = cudaMemAccessFlagsProtReadWrite;
        nacc++;
      }
      if (nacc) (void)cudaMemPoolSetAccess(created, acc, (size_t)nacc);
      (void)cudaGetLastError();
      pools[dev] = created;
    }
  }
  pool = pools[dev];
  pthread_mutex_unlock(&pool_mu);
  return pool;
}

static void *pool_alloc(void *ctx, size_t bytes, char *why, size_t why_len) {
  const jaxmg_gpu_part_t *g = &tls_part;
  const char *fail = "cannot create it";
  cudaMemPool_t pool = device_pool(g->device);
  int slot = -1;
  (void)ctx;
  for (int i = 0; i < MAX_POOL_PTRS && slot < 0; i++)
    if (!tls_pool_ptrs[i]) slot = i;
  if (pool && slot < 0) fail = "more buffers than it tracks";
  if (pool && slot >= 0) {
    void *p = NULL;
    cudaError_t e = cudaMallocFromPoolAsync(&p, bytes, pool, g->stream);
    if (e == cudaSuccess) {
      tls_pool_ptrs[slot] = p;
      return p;
    }
    fail = cudaGetErrorName(e);
    (void)cudaGetLastError();
  }
  snprintf(why, why_len,
           "from jaxmg's own memory pool (%s; one process per device: no XLA allocator serves "
           "a remote process's GPU). Leave GPU memory outside XLA's pool: lower "
           "XLA_PYTHON_CLIENT_MEM_FRACTION or set XLA_PYTHON_CLIENT_PREALLOCATE=false",
           fail);
  return NULL;
}

static void pool_free(void *ctx, void *p, size_t bytes) {
  (void)ctx, (void)bytes;
  for (int i = 0; i < MAX_POOL_PTRS; i++) {
    if (p && tls_pool_ptrs[i] == p) {
      tls_pool_ptrs[i] = NULL;
      (void)cudaFreeAsync(p, tls_part.stream);
      return;
    }
  }
}

/* The CUDA ordinal of this call: the device of its stream where the runtime can tell (the
 * buffers live there), else XLA's device ordinal (FFI API >= 0.1, guarded by struct size). */
static jaxmg_status_t device_of(XLA_FFI_CallFrame *f, cudaStream_t s, int *dev,
                                jaxmg_error_t *err) {
#if CUDART_VERSION >= 12080
  jaxmg_error_t e;
  if (!JAXMG_GPU(&e, "jaxmg", cudaStreamGetDevice(s, dev))) return JAXMG_OK;
#else
  (void)s;
#endif
  if (!jaxmg__ffi_device_ordinal(f, dev)) return JAXMG_OK;
  return jaxmg__seterr(err, JAXMG_EUNAVAIL,
                       "jaxmg: cannot tell the CUDA device of this call (neither the stream nor "
                       "XLA's FFI reports it)");
}

/* Makes `dev` current, remembering the thread's device for leave(). */
static jaxmg_status_t enter(int dev, jaxmg_error_t *err) {
  tls_saved_device = -1;
  jaxmg_status_t st = JAXMG_GPU(err, "jaxmg", cudaGetDevice(&tls_saved_device));
  if (st) tls_saved_device = -1;
  return JAXMG_GPU(err, "jaxmg", cudaSetDevice(dev));
}

static void leave(void) {
  jaxmg_error_t ignored;
  if (tls_saved_device >= 0) (void)JAXMG_GPU(&ignored, "jaxmg", cudaSetDevice(tls_saved_device));
}

static jaxmg_status_t cuda_read_ids(XLA_FFI_CallFrame *f, const void *ids, int32_t out[2],
                                    jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  void *stream = NULL;
  memset(g, 0, sizeof *g);
  jaxmg_status_t st = jaxmg__ffi_stream(f, &stream, "jaxmg", err);
  if (st) return st;
  g->stream = (cudaStream_t)stream;
  if ((st = device_of(f, g->stream, &g->device, err))) return st;
  g->mem.alloc = xla_alloc;
  g->mem.free = xla_free;
  g->mem.ctx = f;
  if ((st = enter(g->device, err))) return st;
  /* Eight bytes on the call's own stream, after whatever XLA computed them with. */
  int32_t host[2] = {0, 0};
  st = JAXMG_GPU(err, "jaxmg",
                 cudaMemcpyAsync(host, ids, sizeof host, cudaMemcpyDeviceToHost, g->stream));
  if (!st) st = JAXMG_GPU(err, "jaxmg", cudaStreamSynchronize(g->stream));
  leave();
  out[0] = host[0];
  out[1] = host[1];
  return st;
}

static jaxmg_status_t cuda_prepare(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_part_t *p,
                                   jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  g->mem.ctx = f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st) st = jaxmg__gpu_prepare(t, p, g, err);
  leave();
  return st;
}

static jaxmg_status_t cuda_run(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  g->mem.ctx = f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st) st = jaxmg__gpu_run(t, g, err);
  leave();
  return st;
}

static void cuda_release(XLA_FFI_CallFrame *f, jaxmg_part_t *p) {
  jaxmg_gpu_part_t *g = &tls_part;
  jaxmg_error_t ignored;
  (void)p;
  g->mem.ctx = f;
  if (!enter(g->device, &ignored)) jaxmg__gpu_release(g);
  leave();
  memset(g, 0, sizeof *g);
}

static jaxmg_status_t cuda_copy(XLA_FFI_CallFrame *f, void *dst, const void *src, size_t bytes,
                                jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  (void)f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st)
    st = JAXMG_GPU(err, "jaxmg",
                   cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g->stream));
  leave();
  return st;
}

/* ---- one process per device (src/ffi/mpmd.c) ------------------------------------------------
 *
 * A participant outside the leader's process copies its operands into an exchange buffer on
 * its own GPU, allocated with cudaMalloc (XLA's buffers come from pools or virtual memory,
 * which cudaIpcGetMemHandle refuses), and publishes its IPC handle and the PCI bus id of its
 * GPU. The leader maps the bus id to its own ordinal (it must see every GPU of the mesh) and
 * opens the handle once per buffer (cached by process, GPU and the buffer's generation).
 * The exchange buffer grows when needed; the buffer it replaces is freed after the next
 * successful call, when the leader has seen the new generation and closed its mapping of the
 * old one. */
typedef struct {
  cudaIpcMemHandle_t handle;
  char bus[32];
  uint64_t gen;   /* generation of the exchange buffer of (proc, bus) */
  uint64_t bytes; /* its size */
  int32_t proc;   /* exporting process */
} gpu_payload_t;

_Static_assert(sizeof(gpu_payload_t) <= JAXMG_MP_PAYLOAD, "payload too large");

enum { MAX_RETIRED = 8 };

typedef struct {
  pthread_mutex_t mu; /* held by the call using the buffer, from export to unexport */
  void *ptr;
  size_t bytes;
  uint64_t gen;
  void *retired[MAX_RETIRED];
  int nretired;
} xbuf_t;

static pthread_once_t xbuf_once = PTHREAD_ONCE_INIT;
static xbuf_t xbufs[MAX_DEVICES];
static void xbuf_init(void) {
  for (int i = 0; i < MAX_DEVICES; i++) pthread_mutex_init(&xbufs[i].mu, NULL);
}

/* The exchange buffer this thread's call holds (set by export, cleared by unexport). */
static _Thread_local xbuf_t *tls_xbuf;

static jaxmg_status_t xbuf_copy(const jaxmg_task_t *t, char *x, const jaxmg_part_t *p, int in,
                                cudaStream_t s, jaxmg_error_t *err) {
  jaxmg_mp_exchange_t ex;
  jaxmg__mp_exchange(t, &ex);
  const enum cudaMemcpyKind k = cudaMemcpyDeviceToDevice;
  jaxmg_status_t st = JAXMG_OK;
  if (in) {
    st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(x, p->a, ex.a_bytes, k, s));
    if (!st && ex.b_bytes) st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(x + ex.b, p->b, ex.b_bytes, k, s));
    return st;
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_A_OUT))
    st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(p->a, x, ex.a_bytes, k, s));
  if (!st && ex.x_bytes) st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(p->x, x + ex.x, ex.x_bytes, k, s));
  if (!st && ex.w_bytes) st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(p->w, x + ex.w, ex.w_bytes, k, s));
  if (!st) st = JAXMG_GPU(err, t->name, cudaMemcpyAsync(p->info, x + ex.info, sizeof(int32_t), k, s));
  return st;
}

static jaxmg_status_t cuda_mp_export(XLA_FFI_CallFrame *f, const jaxmg_task_t *t,
                                     const jaxmg_part_t *p, const char *name, void *payload,
                                     jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  gpu_payload_t *pl = payload;
  jaxmg_mp_exchange_t ex;
  (void)f, (void)name;
  if (g->device < 0 || g->device >= MAX_DEVICES) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: CUDA device %d out of range", t->name,
                         g->device);
  }
  pthread_once(&xbuf_once, xbuf_init);
  jaxmg__mp_exchange(t, &ex);
  xbuf_t *xb = &xbufs[g->device];
  pthread_mutex_lock(&xb->mu);
  tls_xbuf = xb;
  jaxmg_status_t st = enter(g->device, err);
  if (st) {
    tls_xbuf = NULL;
    pthread_mutex_unlock(&xb->mu);
    return st;
  }
  if (xb->bytes < ex.total) {
    if (xb->ptr && xb->nretired == MAX_RETIRED) {
      /* Too many replaced buffers still waiting for a successful call: free the oldest. */
      (void)cudaFree(xb->retired[0]);
      memmove(xb->retired, xb->retired + 1, (MAX_RETIRED - 1) * sizeof xb->retired[0]);
      xb->nretired--;
    }
    if (xb->ptr) xb->retired[xb->nretired++] = xb->ptr;
    xb->ptr = NULL;
    xb->bytes = 0;
    size_t want = ex.total + ex.total / 4; /* room to grow a little */
    st = JAXMG_GPU(err, t->name, cudaMalloc(&xb->ptr, want));
    if (st) {
      xb->ptr = NULL;
      jaxmg__seterr(err, JAXMG_ENOMEM,
                    "jaxmg.%s: out of GPU memory on device %d allocating the %zu-byte exchange "
                    "buffer for the process that drives cuSOLVERMg (one process per device); "
                    "lower XLA_PYTHON_CLIENT_MEM_FRACTION or set XLA_PYTHON_CLIENT_PREALLOCATE="
                    "false",
                    t->name, g->device, want);
    } else {
      xb->bytes = want;
      xb->gen++;
    }
  }
  if (!st) st = xbuf_copy(t, xb->ptr, p, 1, g->stream, err);
  /* The leader reads it from another process: the copies must be complete. */
  if (!st) st = JAXMG_GPU(err, t->name, cudaStreamSynchronize(g->stream));
  if (!st) {
    memset(pl, 0, sizeof *pl);
    st = JAXMG_GPU(err, t->name, cudaIpcGetMemHandle(&pl->handle, xb->ptr));
  }
  if (!st) st = JAXMG_GPU(err, t->name, cudaDeviceGetPCIBusId(pl->bus, (int)sizeof pl->bus, g->device));
  if (!st) {
    pl->gen = xb->gen;
    pl->bytes = xb->bytes;
    pl->proc = jaxmg__mp_process();
  }
  leave();
  if (st) { /* unexport is called only after a successful export */
    tls_xbuf = NULL;
    pthread_mutex_unlock(&xb->mu);
  }
  return st;
}

static jaxmg_status_t cuda_mp_collect(XLA_FFI_CallFrame *f, const jaxmg_task_t *t,
                                      const jaxmg_part_t *p, jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  (void)f;
  jaxmg_status_t st = enter(g->device, err);
  if (!st) st = xbuf_copy(t, tls_xbuf->ptr, p, 0, g->stream, err);
  /* The buffer is free for the next call (of any stream) once the copies are done. */
  if (!st) st = JAXMG_GPU(err, t->name, cudaStreamSynchronize(g->stream));
  leave();
  return st;
}

static void cuda_mp_unexport(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, const char *name,
                             int ok) {
  xbuf_t *xb = tls_xbuf;
  jaxmg_error_t ignored;
  (void)f, (void)t, (void)name;
  if (!xb) return;
  if (ok && xb->nretired && !enter(tls_part.device, &ignored)) {
    /* The leader has mapped the current generation, closing its mappings of older ones. */
    for (int i = 0; i < xb->nretired; i++) (void)cudaFree(xb->retired[i]);
    xb->nretired = 0;
    (void)cudaGetLastError();
    leave();
  }
  tls_xbuf = NULL;
  pthread_mutex_unlock(&xb->mu);
}

/* The leader's mappings of remote exchange buffers. */
typedef struct ipc_map {
  struct ipc_map *next;
  int32_t proc;
  char bus[32];
  uint64_t gen;
  int device;
  void *ptr;
} ipc_map_t;

static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
static ipc_map_t *maps = NULL;

/* The leader's streams for remote devices, one per device (created on first use). */
static pthread_mutex_t proxy_mu = PTHREAD_MUTEX_INITIALIZER;
static cudaStream_t proxy_streams[MAX_DEVICES];

typedef struct {
  int device;
} proxy_state_t;

static jaxmg_status_t open_mapping(const jaxmg_task_t *t, const gpu_payload_t *pl, int dev,
                                   void **out, jaxmg_error_t *err) {
  jaxmg_status_t st = JAXMG_OK;
  pthread_mutex_lock(&maps_mu);
  ipc_map_t *m = maps;
  while (m && !(m->proc == pl->proc && strcmp(m->bus, pl->bus) == 0)) m = m->next;
  if (m && m->gen == pl->gen) {
    *out = m->ptr;
    pthread_mutex_unlock(&maps_mu);
    return JAXMG_OK;
  }
  if (!m) {
    if (!(m = calloc(1, sizeof *m))) {
      pthread_mutex_unlock(&maps_mu);
      return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", t->name);
    }
    m->proc = pl->proc;
    memcpy(m->bus, pl->bus, sizeof m->bus);
    m->bus[sizeof m->bus - 1] = '\0';
    m->next = maps;
    maps = m;
  }
  st = enter(dev, err);
  if (!st) {
    if (m->ptr) (void)cudaIpcCloseMemHandle(m->ptr); /* an older generation */
    m->ptr = NULL;
    st = JAXMG_GPU(err, t->name,
                   cudaIpcOpenMemHandle(&m->ptr, pl->handle, cudaIpcMemLazyEnablePeerAccess));
    if (st) m->ptr = NULL;
    leave();
  }
  m->gen = st ? 0 : pl->gen;
  m->device = dev;
  *out = m->ptr;
  pthread_mutex_unlock(&maps_mu);
  return st;
}

static jaxmg_status_t cuda_mp_import(const jaxmg_task_t *t, const void *payload, const char *name,
                                     jaxmg_part_t *p, void **state, jaxmg_error_t *err) {
  const gpu_payload_t *pl = payload;
  jaxmg_mp_exchange_t ex;
  char bus[33];
  int dev = -1;
  void *base = NULL;
  (void)name;
  *state = NULL;
  memcpy(bus, pl->bus, sizeof pl->bus);
  bus[32] = '\0';
  jaxmg__mp_exchange(t, &ex);
  if (cudaDeviceGetByPCIBusId(&dev, bus) != cudaSuccess || dev < 0 || dev >= MAX_DEVICES) {
    (void)cudaGetLastError();
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: mesh position %d is on the GPU with PCI bus id %s (process "
                         "%d), which this process (process %d, holding mesh position 0) cannot "
                         "see. With one process per GPU, launch every process with all GPUs of "
                         "the node visible (do not restrict CUDA_VISIBLE_DEVICES) and choose each "
                         "process's GPU with jax.distributed.initialize(local_device_ids=[i])",
                         t->name, t->rank, bus, pl->proc, jaxmg__mp_process());
  }
  if (pl->bytes < ex.total) {
    return jaxmg__seterr(err, JAXMG_EINTERNAL,
                         "jaxmg.%s: exchange buffer of mesh position %d too small", t->name,
                         t->rank);
  }
  jaxmg_status_t st = open_mapping(t, pl, dev, &base, err);
  if (st) return st;
  proxy_state_t *ps = calloc(1, sizeof *ps);
  if (!ps) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", t->name);
  ps->device = dev;
  char *b = base;
  memset(p, 0, sizeof *p);
  p->a = b;
  if (ex.b_bytes) p->b = b + ex.b;
  if (ex.x_bytes) p->x = b + ex.x;
  if (ex.w_bytes) p->w = b + ex.w;
  p->info = (int32_t *)(void *)(b + ex.info);
  p->device = dev;
  *state = ps;
  return JAXMG_OK;
}

static jaxmg_status_t cuda_mp_enter(const jaxmg_task_t *t, void *state, jaxmg_part_t *p,
                                    jaxmg_error_t *err) {
  const proxy_state_t *ps = state;
  jaxmg_gpu_part_t *g = &tls_part;
  memset(g, 0, sizeof *g);
  g->device = ps->device;
  g->mem.alloc = pool_alloc;
  g->mem.free = pool_free;
  g->mem.ctx = NULL;
  jaxmg_status_t st = enter(g->device, err);
  if (st) return st;
  pthread_mutex_lock(&proxy_mu);
  if (!proxy_streams[g->device])
    st = JAXMG_GPU(err, t->name,
                   cudaStreamCreateWithFlags(&proxy_streams[g->device], cudaStreamNonBlocking));
  g->stream = proxy_streams[g->device];
  pthread_mutex_unlock(&proxy_mu);
  if (!st) st = jaxmg__gpu_prepare(t, p, g, err);
  leave();
  return st;
}

static jaxmg_status_t cuda_mp_exit(const jaxmg_task_t *t, void *state, jaxmg_part_t *p,
                                   jaxmg_error_t *err) {
  jaxmg_gpu_part_t *g = &tls_part;
  (void)state, (void)p;
  jaxmg_status_t st = enter(g->device, err);
  /* Everything written into the remote process's buffer is complete before "done". */
  if (!st) st = JAXMG_GPU(err, t->name, cudaStreamSynchronize(g->stream));
  if (!st) {
    jaxmg__gpu_release(g);
    st = JAXMG_GPU(err, t->name, cudaStreamSynchronize(g->stream));
  }
  leave();
  memset(g, 0, sizeof *g);
  return st;
}

static void cuda_mp_unimport(const jaxmg_task_t *t, void *state, jaxmg_part_t *p) {
  (void)t, (void)p;
  free(state); /* the mapping stays cached */
}

/* No instances and no asynchronous calls: each GPU runs a program's calls in one order (one
 * stream), and whether XLA's GPU runtime shares one instantiation state between the devices
 * of an executable is not established (docs/design.md, "Rendezvous"). */
static const jaxmg_platform_t kCuda = {
    .platform = "CUDA",
    .instances = 0,
    .async = 0,
    .has_kernel = jaxmg__gpu_has_kernel,
    .read_ids = cuda_read_ids,
    .copy = cuda_copy,
    .prepare = cuda_prepare,
    .run = cuda_run,
    .release = cuda_release,
    .mp_export = cuda_mp_export,
    .mp_collect = cuda_mp_collect,
    .mp_unexport = cuda_mp_unexport,
    .mp_import = cuda_mp_import,
    .mp_enter = cuda_mp_enter,
    .mp_exit = cuda_mp_exit,
    .mp_unimport = cuda_mp_unimport,
};

/* One handler per op of the table: jaxmg_ffi_<stem>_cuda (an op without a CUDA kernel
 * answers UNAVAILABLE; jaxmg_ffi_targets() does not list it). */
#define JAXMG_CUDA_ENTRY(OP, stem, name, flags, cpu, cuda)                 \
  JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_##stem##_cuda(XLA_FFI_CallFrame *f); \
  XLA_FFI_Error *jaxmg_ffi_##stem##_cuda(XLA_FFI_CallFrame *f) {             \
    return jaxmg__ffi_dispatch(f, JAXMG_OP_##OP, &kCuda);                    \
  }
JAXMG_OPS(JAXMG_CUDA_ENTRY)
#undef JAXMG_CUDA_ENTRY

/* The device-local subset eigensolver (src/common/ops.h), on the call's stream. */
JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_syevx_cuda(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevx_cuda(XLA_FFI_CallFrame *f) {
  if (!jaxmg__ffi_executes(f)) return NULL;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_gpu_part_t g;
  jaxmg_syevx_t x;
  const void *src = NULL, *stream = NULL;
  memset(&g, 0, sizeof g);
  jaxmg_status_t st = jaxmg__ffi_syevx_decode(f, &x, &src, &err);
  if (!st) st = jaxmg__ffi_stream(f, (void **)&stream, "eigh", &err);
  if (!st) {
    g.stream = (cudaStream_t)stream;
    g.mem.alloc = xla_alloc;
    g.mem.free = xla_free;
    g.mem.ctx = f;
    st = device_of(f, g.stream, &g.device, &err);
  }
  if (!st) st = enter(g.device, &err);
  if (!st) {
    if (src != x.a)
      st = JAXMG_GPU(&err, "eigh", cudaMemcpyAsync(x.a, src, (size_t)x.n * (size_t)x.n *
                                                   jaxmg__dtype_info(x.dtype)->size,
                                                   cudaMemcpyDeviceToDevice, g.stream));
    if (!st) st = jaxmg__gpu_syevx(&x, &g, &err);
    leave();
  }
  return st ? jaxmg__ffi_error(f->api, &err) : NULL;
}

const char *jaxmg_ffi_targets(void) { return jaxmg__ffi_targets(&kCuda); }
