/* CUDA backend of the whole-matrix ops (JAXMG_OPF_WHOLE), the one_device engine's potrs and
 * syevd (docs/design.md, Engines): potrs_whole, syevd_whole, syevd_n_whole.
 *
 * A lower Cholesky or eigensolver of M (the row-major shards read column-major: M = conj(A))
 * reads column j from row j down, which is row j of a shard from column j on. Position 0
 * holds the first rows, whose parts are the longest, so it is the one that computes: it
 * allocates M whole (N x N), copies its own shard on its stream while side streams pull
 * each peer's part (N^2/8 elements from the peer on 2 GPUs, against N^2/2 for an
 * all-gather), then runs cuSOLVERDn on its stream, cuSOLVER writing info straight into the
 * info output:
 *   potrs: Xpotrf + Xpotrs; the others copy x and info from it;
 *   syevd: Xsyevd (in cuSOLVER's non-deterministic mode, about 10 % faster on an H200, unless
 *          JAXMG_DETERMINISTIC is set); the others copy w, info and, with vectors, rows
 *          [r nloc, (r + 1) nloc) of the column-major eigenvector matrix V_M into their
 *          shard, as an N x nloc row-major block (the caller transposes and conjugates).
 * Nothing waits on the host but cuSOLVER's syevd itself: every cross-device order is an
 * event, and the barriers only make sure each event is recorded before anyone waits on it
 * and outlives every wait. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cusolverDn.h>

#include "gpu/gpu.h"

enum {
  MAX_DN_DEVICES = 64,
  STRIPS = 16,   /* copies per shard: each over-copies a strip's triangle, 1/32 of nloc^2 */
  MIN_STRIP = 64, /* rows per copy at least */
  NSIDE = 4       /* side streams the strips are spread over (several copy engines) */
};

/* Per device: cuSOLVERDn handle and params, the side streams and an event for each, peers
 * already enabled. Created on first use; `mu` serialises their users (an event is reused
 * only under it, after every wait on its previous record has been enqueued). */
static pthread_mutex_t g_dn_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  int init;
  cusolverDnHandle_t h;
  cusolverDnParams_t params;
  cudaStream_t side[NSIDE];
  cudaEvent_t joined[NSIDE];
  uint64_t peers; /* bit q: peer access to device q attempted */
  pthread_mutex_t mu;
} g_dn[MAX_DN_DEVICES];

static void dn_destroy(int dev) {
  jaxmg_error_t ignored;
  for (int i = 0; i < NSIDE; i++) {
    if (g_dn[dev].side[i])
      (void)JAXMG_GPU(&ignored, "release", cudaStreamDestroy(g_dn[dev].side[i]));
    if (g_dn[dev].joined[i])
      (void)JAXMG_GPU(&ignored, "release", cudaEventDestroy(g_dn[dev].joined[i]));
    g_dn[dev].side[i] = NULL;
    g_dn[dev].joined[i] = NULL;
  }
  if (g_dn[dev].params)
    (void)JAXMG_GPU(&ignored, "release", cusolverDnDestroyParams(g_dn[dev].params));
  if (g_dn[dev].h) (void)JAXMG_GPU(&ignored, "release", cusolverDnDestroy(g_dn[dev].h));
  g_dn[dev].params = NULL;
  g_dn[dev].h = NULL;
}

/* Locks device dev's state, creating it first if needed (the current device must be dev). */
static jaxmg_status_t dn_lock(int dev, const char *op, jaxmg_error_t *err) {
  if (dev < 0 || dev >= MAX_DN_DEVICES) {
    return jaxmg__seterr(err, JAXMG_EUNAVAIL, "jaxmg.%s: CUDA device %d beyond the %d supported",
                         op, dev, MAX_DN_DEVICES);
  }
  jaxmg_status_t st = JAXMG_OK;
  pthread_mutex_lock(&g_dn_mu);
  if (!g_dn[dev].init) {
    st = JAXMG_GPU(err, op, cusolverDnCreate(&g_dn[dev].h));
    if (!st) st = JAXMG_GPU(err, op, cusolverDnCreateParams(&g_dn[dev].params));
    for (int i = 0; i < NSIDE && !st; i++) {
      st = JAXMG_GPU(err, op, cudaStreamCreateWithFlags(&g_dn[dev].side[i], cudaStreamNonBlocking));
      if (!st)
        st = JAXMG_GPU(err, op, cudaEventCreateWithFlags(&g_dn[dev].joined[i],
                                                         cudaEventDisableTiming));
    }
    if (st) {
      dn_destroy(dev);
    } else {
      pthread_mutex_init(&g_dn[dev].mu, NULL);
      g_dn[dev].init = 1;
    }
  }
  pthread_mutex_unlock(&g_dn_mu);
  if (!st) pthread_mutex_lock(&g_dn[dev].mu);
  return st;
}

/* Peer access from dev (the current device) to peer speeds up the pulls but is not required
 * (jaxmg__gpu_copy2d works without it); tried once per pair, failures dropped. Called with
 * dev's lock held. */
static void enable_peer(int dev, int peer) {
  if (peer == dev || peer < 0 || peer >= MAX_DN_DEVICES || (g_dn[dev].peers >> peer & 1)) return;
  g_dn[dev].peers |= (uint64_t)1 << peer;
  jaxmg__gpu_enable_peer(dev, peer);
}

/* Copies into W (position 0's device) the part of participant r's shard a lower Cholesky
 * reads: shard row i, i.e. column j = r*nloc + i of M, from row j down. In strips of rows,
 * each from its first row's column on (the few extra elements above the diagonal are never
 * read). Strip k of the call goes to side stream k mod NSIDE (*k counts them). */
static jaxmg_status_t pull_shard(const jaxmg_task_t *t, char *W, int wdev, int r,
                                 const cudaStream_t *side, int *k, jaxmg_error_t *err) {
  const jaxmg_part_t *p = jaxmg__gpu_slot(t, r);
  const int64_t N = t->lay.n, nloc = t->lay.nloc;
  const size_t esz = jaxmg_dtype_size(t->dtype), pitch = (size_t)N * esz;
  int64_t h = (nloc + STRIPS - 1) / STRIPS;
  if (h < MIN_STRIP) h = MIN_STRIP;
  jaxmg_status_t st = JAXMG_OK;
  for (int64_t i0 = 0; i0 < nloc && !st; i0 += h) {
    const int64_t i1 = i0 + h < nloc ? i0 + h : nloc, j0 = (int64_t)r * nloc + i0;
    st = jaxmg__gpu_copy2d(W + ((size_t)j0 * (size_t)N + (size_t)j0) * esz, pitch, wdev,
                           (const char *)p->a + ((size_t)i0 * (size_t)N + (size_t)j0) * esz,
                           pitch, p->device, (size_t)(N - j0) * esz, (size_t)(i1 - i0),
                           side[(*k)++ % NSIDE], t->name, err);
  }
  return st;
}

/* JAXMG_DETERMINISTIC set (and not "0"): cuSOLVER's deterministic mode for syevd. */
static int deterministic(void) {
  const char *v = getenv("JAXMG_DETERMINISTIC");
  return v && *v && strcmp(v, "0") != 0;
}

/* Position 0: M's own shard and the pulls from its peers, enqueued; on return its stream
 * is ordered after all of them. `ready` is recorded first (M is allocated). */
static jaxmg_status_t gather(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, char *W,
                             jaxmg_error_t *err) {
  const char *nm = t->name;
  const int P = (int)t->lay.ndev, dev = g->device;
  const size_t esz = jaxmg_dtype_size(t->dtype);
  const jaxmg_part_t *me = jaxmg__gpu_slot(t, 0);
  const cudaStream_t *side = g_dn[dev].side;
  int strips = 0;
  /* M is allocated (on this stream): the side streams may write it once `ready` says so. */
  jaxmg_status_t st = JAXMG_GPU(err, nm, cudaEventRecord(g->ready, g->stream));
  if (P > 1) {
    for (int q = 0; q < P && !st; q++) {
      const jaxmg_part_t *pq = jaxmg__gpu_slot(t, q);
      if (q) enable_peer(dev, pq->device);
      for (int i = 0; i < NSIDE && !st; i++)
        st = JAXMG_GPU(err, nm, cudaStreamWaitEvent(side[i], (cudaEvent_t)pq->ready, 0));
    }
    for (int q = 1; q < P && !st; q++) st = pull_shard(t, W, dev, q, side, &strips, err);
    for (int i = 0; i < NSIDE && !st; i++)
      st = JAXMG_GPU(err, nm, cudaEventRecord(g_dn[dev].joined[i], side[i]));
  }
  /* Its own shard is columns 0..nloc-1 of M exactly: one contiguous copy (bench/
   * probe_potrf.c: a plain copy of the whole shard beats a pitched copy of its lower part;
   * what it adds lands in the upper triangle, which is never read). */
  if (!st)
    st = JAXMG_GPU(err, nm, cudaMemcpyAsync(W, me->a, (size_t)t->lay.nloc * (size_t)t->lay.n * esz,
                                            cudaMemcpyDeviceToDevice, g->stream));
  for (int i = 0; i < NSIDE && P > 1 && !st; i++)
    st = JAXMG_GPU(err, nm, cudaStreamWaitEvent(g->stream, g_dn[dev].joined[i], 0));
  return st;
}

/* Rows [r nloc, (r + 1) nloc) of the column-major N x N matrix at V (device vdev) into the
 * shard `a` of participant r (device adev), as the column-major nloc x N block (ld nloc). */
static jaxmg_status_t copy_rows(const jaxmg_task_t *t, int r, void *a, int adev, const char *V,
                                int vdev, cudaStream_t s, jaxmg_error_t *err) {
  const int64_t N = t->lay.n, nloc = t->lay.nloc;
  const size_t esz = jaxmg_dtype_size(t->dtype);
  return jaxmg__gpu_copy2d(a, (size_t)nloc * esz, adev, V + (size_t)r * (size_t)nloc * esz,
                           (size_t)N * esz, vdev, (size_t)nloc * esz, (size_t)N, s, t->name,
                           err);
}

static size_t round_up(size_t x) { return (x + 255) / 256 * 256; }

/* Position 0, with its device's lock held: the gather and the solver, enqueued. */
static jaxmg_status_t compute(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const char *nm = t->name;
  const int P = (int)t->lay.ndev, dev = g->device;
  const int evd = jaxmg__op_has(t->op, JAXMG_OPF_W);
  const int vectors = jaxmg__op_has(t->op, JAXMG_OPF_VECTORS);
  const int64_t N = t->lay.n;
  const size_t esz = jaxmg_dtype_size(t->dtype);
  const size_t wbytes = round_up((size_t)N * (size_t)N * esz);
  const size_t xbytes = (size_t)N * (size_t)t->nrhs * esz;
  const jaxmg_gpu_dtype_t *ty = jaxmg__gpu_dtype(t->dtype);
  const cudaDataType ct = ty->ctype;
  const cusolverEigMode_t jobz = vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  const jaxmg_part_t *me = jaxmg__gpu_slot(t, 0);
  cusolverDnHandle_t h = g_dn[dev].h;
  cusolverDnParams_t prm = g_dn[dev].params;
  size_t dbytes = 0, hbytes = 0;
  void *hwork = NULL;
  jaxmg_status_t st = JAXMG_GPU(err, nm, cusolverDnSetStream(h, g->stream));
  /* The mode stays on the device's shared handle: potrf and potrs ignore it (cuSOLVER's
   * documentation lists the routines it affects); a later routine it does affect (geqrf,
   * gesvd) must set the mode it wants. */
  if (!st && evd)
    st = JAXMG_GPU(err, nm, cusolverDnSetDeterministicMode(
                                h, deterministic() ? CUSOLVER_DETERMINISTIC_RESULTS
                                                   : CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS));
  if (!st && evd)
    st = JAXMG_GPU(err, nm, cusolverDnXsyevd_bufferSize(h, prm, jobz, lo, N, ct, NULL, N,
                                                        ty->rtype, NULL, ct, &dbytes, &hbytes));
  if (!st && !evd)
    st = JAXMG_GPU(err, nm, cusolverDnXpotrf_bufferSize(h, prm, lo, N, ct, NULL, N, ct, &dbytes,
                                                        &hbytes));
  if (st) return st;
  /* One block: M, cuSOLVER's workspace, potrs's info. Freed on this stream by release. */
  const size_t total = wbytes + round_up(dbytes) + sizeof(int);
  if ((st = jaxmg__gpu_alloc(g, &g->work, &g->work_bytes, total,
                             "the whole matrix and cuSOLVER's workspace", nm, err)))
    return st;
  char *W = g->work, *dwork = W + wbytes;
  int *sinfo = (int *)(void *)(dwork + round_up(dbytes));
  if (hbytes && !(hwork = malloc(hbytes))) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory (%zu bytes)", nm,
                         hbytes);
  }
  st = gather(t, g, W, err);
  if (!st && xbytes)
    st = JAXMG_GPU(err, nm, cudaMemcpyAsync(me->x, me->b, xbytes, cudaMemcpyDeviceToDevice,
                                            g->stream));
  if (!st && evd) {
    st = JAXMG_GPU(err, nm, cusolverDnXsyevd(h, prm, jobz, lo, N, ct, W, N, ty->rtype, me->w, ct,
                                             dwork, dbytes, hwork, hbytes, me->info));
    /* Its own rows of V_M (unspecified when info > 0: the caller selects NaN). */
    if (!st && vectors) st = copy_rows(t, 0, me->a, dev, W, dev, g->stream, err);
  }
  if (!st && !evd)
    st = JAXMG_GPU(err, nm, cusolverDnXpotrf(h, prm, lo, N, ct, W, N, ct, dwork, dbytes, hwork,
                                             hbytes, me->info));
  /* A failed factor makes x unspecified here; the caller replaces it by NaN from info. */
  if (!st && !evd && t->nrhs)
    st = JAXMG_GPU(err, nm, cusolverDnXpotrs(h, prm, lo, N, t->nrhs, ct, W, N, ct, me->x, N,
                                             sinfo));
  /* A host workspace must outlive the solver that uses it. */
  st = jaxmg__gpu_free_host_work(hwork, g->stream, st, nm, err);
  /* `ready` now means: results and info final, every shard read. */
  if (!st) st = JAXMG_GPU(err, nm, cudaEventRecord(g->ready, g->stream));
  /* On any failure the peers return at once and M is released: no pull may still read their
   * shards or write M then. */
  for (int i = 0; i < NSIDE && st && P > 1; i++) (void)cudaStreamSynchronize(g_dn[dev].side[i]);
  return st;
}

/* A participant other than position 0, once position 0's `ready` is recorded: its results,
 * copied from position 0 on its own stream. */
static jaxmg_status_t fetch(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const char *nm = t->name;
  const jaxmg_part_t *me = jaxmg__gpu_slot(t, t->rank), *p0 = jaxmg__gpu_slot(t, 0);
  const jaxmg_gpu_shared_t *sh = jaxmg__rv_shared(t->session);
  jaxmg_status_t st = JAXMG_GPU(err, nm, cudaStreamWaitEvent(g->stream, (cudaEvent_t)p0->ready, 0));
  if (!st && t->nrhs) st = jaxmg__gpu_fetch_x(t, g, err);
  if (!st && jaxmg__op_has(t->op, JAXMG_OPF_W)) {
    const size_t wb = (size_t)t->lay.n * jaxmg__dtype_info(t->dtype)->real_size;
    st = JAXMG_GPU(err, nm, cudaMemcpyPeerAsync(me->w, g->device, p0->w, p0->device, wb,
                                                g->stream));
  }
  if (!st && jaxmg__op_has(t->op, JAXMG_OPF_VECTORS))
    st = copy_rows(t, t->rank, me->a, g->device, sh->gp[0]->work, p0->device, g->stream, err);
  if (!st)
    st = JAXMG_GPU(err, nm, cudaMemcpyPeerAsync(me->info, g->device, p0->info, p0->device,
                                                sizeof(int32_t), g->stream));
  return st;
}

jaxmg_status_t jaxmg__gpu_whole(const jaxmg_task_t *t, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const char *nm = t->name;
  const int rank = t->rank, P = (int)t->lay.ndev;
  jaxmg_gpu_shared_t *sh = jaxmg__rv_shared(t->session);
  jaxmg_status_t st = JAXMG_OK;

  if (P > JAXMG_MG_MAX_DEVICES) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: at most %d GPUs per group, got %d", nm,
                         JAXMG_MG_MAX_DEVICES, P);
  }
  sh->gp[rank] = g; /* read by the others only after the next barrier */
  if (jaxmg__fault_hit(JAXMG_FAULT_ALLOC, rank)) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: injected allocation failure", nm);
  }
  /* A participant that fails must do so before position 0 may read its shard. */
  if (rank != 0 && jaxmg__fault_hit(JAXMG_FAULT_SOLVER, rank)) {
    return jaxmg__seterr(err, JAXMG_EFAULT, "jaxmg.%s: injected solver failure", nm);
  }
  /* 1. Every shard is ready where it lies (position 0 records after allocating M). */
  if (rank != 0) st = JAXMG_GPU(err, nm, cudaEventRecord(g->ready, g->stream));
  if (!st) st = jaxmg__rv_barrier(t->session, rank, -1, err);
  if (st) return st;
  /* 2. Position 0 gathers and computes (enqueued, but for syevd's own host synchronization;
   * it may create handles: no deadline for the others). */
  if (rank == 0) {
    if (jaxmg__fault_hit(JAXMG_FAULT_SOLVER, rank))
      return jaxmg__seterr(err, JAXMG_EFAULT, "jaxmg.%s: injected solver failure", nm);
    if ((st = dn_lock(g->device, nm, err))) return st;
    st = compute(t, g, err);
    pthread_mutex_unlock(&g_dn[g->device].mu);
    if (st) return st;
  }
  if ((st = jaxmg__rv_barrier(t->session, rank, 0, err))) return st;
  /* 3. The others take their results; position 0's stream waits until they have. */
  if (P > 1) {
    if (rank != 0 && (st = fetch(t, g, err))) return st;
    if ((st = jaxmg__gpu_exchange_done(t, g, 0, err))) return st;
  }
  /* 4. Nobody releases its events or buffers while another may still enqueue a wait on them. */
  return jaxmg__rv_barrier(t->session, rank, -1, err);
}

/* ---- the device-local subset eigensolver (src/common/ops.h) -------------------------------
 * cusolverDnXsyevdx, range I: the tridiagonal reduction (as Xsyevd), then only the k wanted
 * eigenpairs of the tridiagonal matrix and the back-transformation of those k vectors. The
 * eigenvectors overwrite the first k columns of x->a (column-major, contiguous): one copy
 * into z. cuSOLVER returns the number of eigenvalues found in host memory, so the call waits
 * for the device. */
jaxmg_status_t jaxmg__gpu_syevx(const jaxmg_syevx_t *x, jaxmg_gpu_part_t *g, jaxmg_error_t *err) {
  const char *nm = "eigh";
  const int64_t n = x->n, k = x->hi - x->lo;
  const jaxmg_gpu_dtype_t *ty = jaxmg__gpu_dtype(x->dtype);
  const size_t esz = jaxmg_dtype_size(x->dtype), rsz = jaxmg__dtype_info(x->dtype)->real_size;
  if (!ty) return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: unsupported dtype", nm);
  jaxmg_status_t st = JAXMG_GPU(err, nm, cudaMemsetAsync(x->info, 0, sizeof(int32_t), g->stream));
  if (st || n == 0 || k == 0) return st;
  const cusolverEigMode_t jobz = x->vectors ? CUSOLVER_EIG_MODE_VECTOR : CUSOLVER_EIG_MODE_NOVECTOR;
  const cublasFillMode_t lo = CUBLAS_FILL_MODE_LOWER;
  const double vb[2] = {0, 0}; /* vl, vu: unused with range I; room for any real type */
  const int64_t il = x->lo + 1, iu = x->hi;
  int64_t found = 0;
  size_t dbytes = 0, hbytes = 0;
  void *hwork = NULL;
  if ((st = dn_lock(g->device, nm, err))) return st;
  cusolverDnHandle_t h = g_dn[g->device].h;
  cusolverDnParams_t prm = g_dn[g->device].params;
  st = JAXMG_GPU(err, nm, cusolverDnSetStream(h, g->stream));
  if (!st)
    st = JAXMG_GPU(err, nm, cusolverDnSetDeterministicMode(
                                h, deterministic() ? CUSOLVER_DETERMINISTIC_RESULTS
                                                   : CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS));
  if (!st)
    st = JAXMG_GPU(err, nm, cusolverDnXsyevdx_bufferSize(
                                h, prm, jobz, CUSOLVER_EIG_RANGE_I, lo, n, ty->ctype, x->a, n,
                                (void *)vb, (void *)vb, il, iu, &found, ty->rtype, NULL,
                                ty->ctype, &dbytes, &hbytes));
  /* One block: all n eigenvalues (cuSOLVER's W has n entries) and the workspace. */
  const size_t wbytes = round_up((size_t)n * rsz);
  if (!st)
    st = jaxmg__gpu_alloc(g, &g->work, &g->work_bytes, wbytes + round_up(dbytes),
                          "the eigenvalues and cuSOLVER's workspace", nm, err);
  if (!st && hbytes && !(hwork = malloc(hbytes)))
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory (%zu bytes)", nm, hbytes);
  char *W = g->work;
  if (!st)
    st = JAXMG_GPU(err, nm, cusolverDnXsyevdx(h, prm, jobz, CUSOLVER_EIG_RANGE_I, lo, n,
                                              ty->ctype, x->a, n, (void *)vb, (void *)vb, il, iu,
                                              &found, ty->rtype, W, ty->ctype, W + wbytes, dbytes,
                                              hwork, hbytes, x->info));
  if (!st)
    st = JAXMG_GPU(err, nm, cudaMemcpyAsync(x->w, W, (size_t)k * rsz, cudaMemcpyDeviceToDevice,
                                            g->stream));
  if (!st && x->vectors)
    st = JAXMG_GPU(err, nm, cudaMemcpyAsync(x->z, x->a, (size_t)n * (size_t)k * esz,
                                            cudaMemcpyDeviceToDevice, g->stream));
  st = jaxmg__gpu_free_host_work(hwork, g->stream, st, nm, err);
  pthread_mutex_unlock(&g_dn[g->device].mu);
  /* Fewer eigenvalues than asked: a failure the caller sees as info = n + 1. */
  if (!st && found != k) {
    const int32_t bad = (int32_t)n + 1;
    st = JAXMG_GPU(err, nm, cudaMemcpyAsync(x->info, &bad, sizeof bad, cudaMemcpyHostToDevice,
                                            g->stream));
    if (!st) st = JAXMG_GPU(err, nm, cudaStreamSynchronize(g->stream));
  }
  /* Stream-ordered: freed after the work enqueued above. */
  jaxmg__gpu_free(g, &g->work, &g->work_bytes);
  return st;
}
