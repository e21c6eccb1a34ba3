/* Drives the CUDA backend (src/gpu) end to end on host memory through mock_cuda.c: one thread
 * per "GPU", joined through the real rendezvous exactly as src/ffi/dispatch.c does, for every
 * op x dtype x device count (1-4, also in reversed device order) x tile, plus a matrix that is
 * not positive definite (also in the ambiguous "failure status, no info" mode), injected
 * faults and plan reuse; the single engines of potrs and syevd (the whole-matrix ops) likewise. Results are
 * checked in double precision against the math the Python layer relies on (the same contract
 * as the CPU backend). No GPU needed.
 *
 *   build: see tests/gpu/mock/run_mock.sh */
#include <complex.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rendezvous.h"
#include "gpu/gpu.h"
#include "jaxmg_elem.h"

static int failures = 0, checks = 0;
#define CHECK(cond, ...)                                 \
  do {                                                   \
    checks++;                                            \
    if (!(cond)) {                                       \
      failures++;                                        \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);        \
      printf(__VA_ARGS__);                               \
      printf("\n");                                      \
    }                                                    \
  } while (0)

int64_t jaxmg_cuda_plan_count(void);

/* ---- element access ---------------------------------------------------------------------- */
static size_t esz(jaxmg_dtype_t dt) { return jaxmg_dtype_size(dt); }
static int cplx(jaxmg_dtype_t dt) { return dt == JAXMG_C64 || dt == JAXMG_C128; }
static double eps(jaxmg_dtype_t dt) {
  return (dt == JAXMG_F32 || dt == JAXMG_C64) ? 1.1920929e-07 : 2.220446049250313e-16;
}

/* ---- one participant, as dispatch.c runs it ---------------------------------------------- */
/* "Device" memory from the allocator holds NaN (0xFF bytes) until written: a result that
 * depends on an element nobody wrote comes out NaN. Blocks larger than g_alloc_limit bytes
 * (when not 0) are refused, as an allocator out of memory would. */
static size_t g_alloc_limit = 0;
static void *halloc(void *ctx, size_t n, char *why, size_t why_len) {
  (void)ctx;
  if (g_alloc_limit && n > g_alloc_limit) {
    snprintf(why, why_len, "from the mock allocator, which holds %zu bytes", g_alloc_limit);
    return NULL;
  }
  void *p = malloc(n);
  if (p) memset(p, 0xFF, n);
  return p;
}
static void hfree(void *ctx, void *p, size_t n) {
  (void)ctx, (void)n;
  free(p);
}

typedef struct {
  jaxmg_op_t op;
  jaxmg_dtype_t dt;
  int64_t n, tile, nrhs, run_id;
  int P, rank, dev;
  void *a, *b, *x, *w;
  int32_t info;
  jaxmg_status_t st;
  jaxmg_error_t err;
} job_t;

static void *participant(void *arg) {
  job_t *j = arg;
  jaxmg_task_t t;
  jaxmg_part_t p;
  jaxmg_gpu_part_t g;
  memset(&t, 0, sizeof t);
  memset(&p, 0, sizeof p);
  memset(&g, 0, sizeof g);
  t.op = j->op;
  t.name = "mock";
  t.dtype = j->dt;
  if (jaxmg_layout_init(&t.lay, j->n / j->P, j->P, j->tile)) { /* dispatch.c refuses these */
    j->st = jaxmg__seterr(&j->err, JAXMG_EINVAL, "bad test geometry");
    return NULL;
  }
  t.nrhs = j->nrhs;
  t.rank = j->rank;
  p.a = j->a;
  p.b = j->b;
  p.x = j->x;
  p.w = j->w;
  p.info = &j->info;
  g.device = j->dev;
  g.stream = (cudaStream_t)(uintptr_t)(0x1000 + j->dev);
  g.mem.alloc = halloc;
  g.mem.free = hfree;
  j->info = -12345;
  cudaSetDevice(j->dev);
  j->st = jaxmg__gpu_prepare(&t, &p, &g, &j->err);
  if (!j->st) {
    jaxmg_join_t jn = {j->run_id, 1, 0, 0, j->P, j->rank, 20000, "mock", &p, sizeof p};
    j->st = jaxmg__rv_join(&jn, &t.session, &j->err);
    if (!j->st) {
      j->st = jaxmg__gpu_run(&t, &g, &j->err);
      if (j->st && !jaxmg__is_peer_status(j->st)) jaxmg__rv_fail(t.session, t.rank, &j->err);
      jaxmg__rv_leave(t.session, t.rank);
    }
    jaxmg__gpu_release(&g);
  }
  return NULL;
}

static int64_t g_run = 1;

/* Runs one op over P threads; shards[r] etc. are per-participant buffers. */
static void run_op(jaxmg_op_t op, jaxmg_dtype_t dt, int64_t n, int64_t tile, int64_t nrhs, int P,
                   int reversed, void **a, void **b, void **x, void **w, job_t *jobs) {
  pthread_t th[16];
  int64_t run = g_run++;
  for (int r = 0; r < P; r++) {
    jobs[r] = (job_t){op, dt, n, tile, nrhs, run, P, r, reversed ? P - 1 - r : r,
                      a[r], b ? b[r] : NULL, x ? x[r] : NULL, w ? w[r] : NULL, 0, JAXMG_OK,
                      {JAXMG_OK, ""}};
    pthread_create(&th[r], NULL, participant, &jobs[r]);
  }
  for (int r = 0; r < P; r++) pthread_join(th[r], NULL);
}

/* ---- problems ---------------------------------------------------------------------------- */
static zd *random_hpd(int64_t n, int complex_, unsigned seed) {
  srand(seed);
  if (n > 256) { /* O(n^2): Hermitian, strictly diagonally dominant */
    zd *a = malloc(sizeof(zd) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++) {
      a[i * n + i] = (double)n;
      for (int64_t j = 0; j < i; j++) {
        double re = (double)rand() / RAND_MAX - 0.5, im = (double)rand() / RAND_MAX - 0.5;
        a[i * n + j] = re + (complex_ ? I * im : 0);
        a[j * n + i] = conj(a[i * n + j]);
      }
    }
    return a;
  }
  zd *x = malloc(sizeof(zd) * (size_t)(n * n)), *a = calloc((size_t)(n * n), sizeof(zd));
  for (int64_t i = 0; i < n * n; i++) {
    double re = (double)rand() / RAND_MAX - 0.5, im = (double)rand() / RAND_MAX - 0.5;
    x[i] = re + (complex_ ? I * im : 0);
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      zd s = 0;
      for (int64_t k = 0; k < n; k++) s += x[i * n + k] * conj(x[j * n + k]);
      a[i * n + j] = s / (double)n * 4;
    }
  for (int64_t i = 0; i < n; i++) a[i * n + i] += 0.25;
  free(x);
  return a; /* a[i*n + j] = A[i][j] */
}

/* Row-major shards of A (rows [r*nloc, (r+1)*nloc)), cast to dt; A is rounded to dt too. */
static void **make_shards(zd *A, int64_t n, int P, jaxmg_dtype_t dt) {
  int64_t nloc = n / P;
  void **s = calloc((size_t)P, sizeof *s);
  for (int r = 0; r < P; r++) {
    s[r] = malloc((size_t)(nloc * n) * esz(dt));
    for (int64_t c = 0; c < nloc; c++)
      for (int64_t j = 0; j < n; j++) {
        elem_store(dt, s[r], (size_t)(c * n + j), A[(r * nloc + c) * n + j]);
        A[(r * nloc + c) * n + j] = elem_load(dt, s[r], (size_t)(c * n + j));
      }
  }
  return s;
}

static void free_all(void **p, int P) {
  if (!p) return;
  for (int r = 0; r < P; r++) free(p[r]);
  free(p);
}

static void **alloc_all(int P, size_t bytes) {
  void **p = calloc((size_t)P, sizeof *p);
  for (int r = 0; r < P; r++) p[r] = calloc(1, bytes ? bytes : 1);
  return p;
}

/* NaN if m holds one: a comparison with NaN is false, so a plain maximum (or fmax) would drop
 * exactly the rows that the NaN-filled allocator marks as never written. */
static double norm_inf(const zd *m, int64_t rows, int64_t cols) { /* row-major */
  double best = 0;
  for (int64_t i = 0; i < rows; i++) {
    double s = 0;
    for (int64_t j = 0; j < cols; j++) s += cabs(m[i * cols + j]);
    if (isnan(s)) return NAN;
    if (s > best) best = s;
  }
  return best;
}
static double nmax(double a, double b) { return isnan(a) || isnan(b) ? NAN : fmax(a, b); }

static void expect_ok(const job_t *jobs, int P, const char *what) {
  for (int r = 0; r < P; r++)
    CHECK(jobs[r].st == JAXMG_OK && jobs[r].info == 0, "%s rank %d: status %d info %d: %s", what,
          r, jobs[r].st, jobs[r].info, jobs[r].err.msg);
}

/* Random B (n x nrhs, row-major, returned in *Bout, rounded to dt) and every rank's b, in
 * solver order and conjugated like python/jaxmg's Hermitian bodies do: column-major N x nrhs
 * buffer c[g + k*n] = conj(B[src(g), k]) (not conjugated with `plain`: the general solve). */
static void **make_rhs_of(jaxmg_dtype_t dt, const jaxmg_layout_t *lay, int64_t n, int64_t nrhs,
                          int P, zd **Bout, int plain) {
  zd *B = malloc(sizeof(zd) * (size_t)(n * nrhs));
  for (int64_t i = 0; i < n * nrhs; i++) B[i] = (double)(rand() % 1000) / 500 - 1 + (cplx(dt) ? 0.3 * I : 0);
  void **b = alloc_all(P, (size_t)(n * nrhs) * esz(dt));
  for (int r = 0; r < P; r++)
    for (int64_t k = 0; k < nrhs; k++)
      for (int64_t g = 0; g < n; g++) {
        const zd v = B[jaxmg_layout_src(lay, g) * nrhs + k];
        elem_store(dt, b[r], (size_t)(g + k * n), plain ? v : conj(v));
        if (r == 0) {
          const zd back = elem_load(dt, b[0], (size_t)(g + k * n));
          B[jaxmg_layout_src(lay, g) * nrhs + k] = plain ? back : conj(back);
        }
      }
  *Bout = B;
  return b;
}

static void **make_rhs(jaxmg_dtype_t dt, const jaxmg_layout_t *lay, int64_t n, int64_t nrhs,
                       int P, zd **Bout) {
  return make_rhs_of(dt, lay, n, nrhs, P, Bout, 0);
}

/* X[i][k] = conj(x[dst(i) + k*n]) (not conjugated with `plain`: the general solve) solves
 * A X = B: residual ||B - A X|| / (n ||A|| ||X|| eps) small, and x the same on every rank. */
static void check_solution_of(const char *what, jaxmg_dtype_t dt, const jaxmg_layout_t *lay,
                              const zd *A, const zd *B, void **x, int64_t n, int64_t nrhs, int P,
                              int plain) {
  zd *X = malloc(sizeof(zd) * (size_t)(n * nrhs)), *R = malloc(sizeof(zd) * (size_t)(n * nrhs));
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < nrhs; k++) {
      const zd v = elem_load(dt, x[0], (size_t)(jaxmg_layout_dst(lay, i) + k * n));
      X[i * nrhs + k] = plain ? v : conj(v);
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = 0; k < nrhs; k++) {
      zd s = B[i * nrhs + k];
      for (int64_t j = 0; j < n; j++) s -= A[i * n + j] * X[j * nrhs + k];
      R[i * nrhs + k] = s;
    }
  double ratio = norm_inf(R, n, nrhs) / (n * norm_inf(A, n, n) * norm_inf(X, n, nrhs) * eps(dt));
  CHECK(ratio < 30, "%s: residual ratio %.3g", what, ratio);
  for (int r = 1; r < P; r++)
    CHECK(!memcmp(x[r], x[0], (size_t)(n * nrhs) * esz(dt)), "%s: x differs on rank %d", what, r);
  free(X);
  free(R);
}

static void check_solution(const char *what, jaxmg_dtype_t dt, const jaxmg_layout_t *lay,
                           const zd *A, const zd *B, void **x, int64_t n, int64_t nrhs, int P) {
  check_solution_of(what, dt, lay, A, B, x, n, nrhs, P, 0);
}

/* ---- the ops ----------------------------------------------------------------------------- */

/* potrs (and, when factor_first, potrf then solve): x solves A x = b on every rank. */
static void test_potrs(jaxmg_dtype_t dt, int64_t n, int64_t tile, int64_t nrhs, int P,
                       int reversed, int factor_first) {
  char what[128];
  snprintf(what, sizeof what, "%s dt=%d n=%lld T=%lld nrhs=%lld P=%d rev=%d",
           factor_first ? "potrf+solve" : "potrs", dt, (long long)n, (long long)tile,
           (long long)nrhs, P, reversed);
  zd *A = random_hpd(n, cplx(dt), (unsigned)(n + nrhs + dt));
  void **a = make_shards(A, n, P, dt);
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, n / P, P, tile);
  zd *B;
  void **b = make_rhs(dt, &lay, n, nrhs, P, &B);
  void **x = alloc_all(P, (size_t)(n * nrhs) * esz(dt));
  job_t jobs[16];
  if (factor_first) {
    run_op(JAXMG_OP_POTRF, dt, n, tile, 0, P, reversed, a, NULL, NULL, NULL, jobs);
    expect_ok(jobs, P, what);
    run_op(JAXMG_OP_SOLVE, dt, n, tile, nrhs, P, reversed, a, b, x, NULL, jobs);
  } else {
    run_op(JAXMG_OP_POTRS, dt, n, tile, nrhs, P, reversed, a, b, x, NULL, jobs);
  }
  expect_ok(jobs, P, what);
  check_solution(what, dt, &lay, A, B, x, n, nrhs, P);
  free(B);
  free(A);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
}

/* The general solve (getrf + getrs): the shards hold the rows of Aᵀ (python/jaxmg's
 * cusolvermg body transposes A first), b is in solver order and not conjugated, and
 * X[i][k] = x[dst(i) + k*n] solves A X = B. With `singular`, A has a zero column: info > 0
 * and x NaN on every rank. */
static void test_getrs(jaxmg_dtype_t dt, int64_t n, int64_t tile, int64_t nrhs, int P,
                       int reversed, int singular) {
  char what[128];
  snprintf(what, sizeof what, "getrs dt=%d n=%lld T=%lld nrhs=%lld P=%d rev=%d sing=%d", dt,
           (long long)n, (long long)tile, (long long)nrhs, P, reversed, singular);
  srand((unsigned)(n + nrhs + dt + 7 * singular));
  zd *A = malloc(sizeof(zd) * (size_t)(n * n)), *At = malloc(sizeof(zd) * (size_t)(n * n));
  for (int64_t i = 0; i < n * n; i++) {
    double re = (double)rand() / RAND_MAX - 0.5, im = (double)rand() / RAND_MAX - 0.5;
    A[i] = re + (cplx(dt) ? I * im : 0);
  }
  for (int64_t i = 0; i < n; i++) A[i * n + i] += 2.0; /* not symmetric, well conditioned */
  if (singular)
    for (int64_t i = 0; i < n; i++) A[i * n + n / 2] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) At[j * n + i] = A[i * n + j];
  void **a = make_shards(At, n, P, dt);
  for (int64_t i = 0; i < n; i++) /* A as rounded to dt */
    for (int64_t j = 0; j < n; j++) A[i * n + j] = At[j * n + i];
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, n / P, P, tile);
  zd *B;
  void **b = make_rhs_of(dt, &lay, n, nrhs, P, &B, 1);
  void **x = alloc_all(P, (size_t)(n * nrhs) * esz(dt));
  job_t jobs[16];
  run_op(JAXMG_OP_GETRS, dt, n, tile, nrhs, P, reversed, a, b, x, NULL, jobs);
  if (singular) {
    for (int r = 0; r < P; r++) {
      CHECK(jobs[r].st == JAXMG_OK && jobs[r].info > 0, "%s rank %d: status %d info %d", what, r,
            jobs[r].st, jobs[r].info);
      CHECK(isnan(creal(elem_load(dt, x[r], 0))), "%s rank %d: x is not NaN", what, r);
    }
  } else {
    expect_ok(jobs, P, what);
    check_solution_of(what, dt, &lay, A, B, x, n, nrhs, P, 1);
  }
  free(A);
  free(At);
  free(B);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
}

int mock_lapack_evd(jaxmg_dtype_t t, int vectors, int n, void *A, int lda, void *W);

/* Eigenvalues: the same on every rank, ascending, each within 10 n ||A|| eps of reference
 * LAPACK's in double precision on A (as rounded to dt). A trace check would pass a gather
 * with the diagonal right and a (finite) off-diagonal part wrong, and _N_WHOLE has no
 * eigenvectors to catch it otherwise. */
static void check_eigenvalues(const char *what, jaxmg_dtype_t dt, const zd *A, int64_t n,
                              void **w, int P) {
  const jaxmg_dtype_t rt = (dt == JAXMG_F32 || dt == JAXMG_C64) ? JAXMG_F32 : JAXMG_F64;
  const jaxmg_dtype_t ref_t = cplx(dt) ? JAXMG_C128 : JAXMG_F64;
  for (int r = 1; r < P; r++)
    CHECK(!memcmp(w[r], w[0], (size_t)n * esz(rt)), "%s: w differs on rank %d", what, r);
  void *M = malloc((size_t)(n * n) * esz(ref_t));
  double *wref = malloc(sizeof(double) * (size_t)n), worst = 0;
  for (int64_t i = 0; i < n * n; i++) elem_store(ref_t, M, (size_t)i, A[i]); /* M = A^T */
  CHECK(mock_lapack_evd(ref_t, 0, (int)n, M, (int)n, wref) == 0, "%s: reference failed", what);
  for (int64_t i = 0; i < n; i++) {
    const double wi = creal(elem_load(rt, w[0], (size_t)i));
    worst = nmax(worst, fabs(wi - wref[i]));
    if (i)
      CHECK(wi >= creal(elem_load(rt, w[0], (size_t)i - 1)), "%s: w not ascending at %lld", what,
            (long long)i);
  }
  worst /= n * norm_inf(A, n, n) * eps(dt);
  CHECK(worst < 10, "%s: eigenvalue error ratio %.3g", what, worst);
  free(M);
  free(wref);
}

/* syevd: w ascending on every rank; row c of shard d holds conj(v_e), e = g(d, c). */
static void test_syevd(jaxmg_dtype_t dt, int64_t n, int64_t tile, int P, int reversed,
                       int vectors) {
  char what[128];
  snprintf(what, sizeof what, "syevd%s dt=%d n=%lld T=%lld P=%d rev=%d", vectors ? "" : "_n",
           dt, (long long)n, (long long)tile, P, reversed);
  zd *A = random_hpd(n, cplx(dt), (unsigned)(11 * n + dt));
  void **a = make_shards(A, n, P, dt);
  jaxmg_dtype_t rt = (dt == JAXMG_F32 || dt == JAXMG_C64) ? JAXMG_F32 : JAXMG_F64;
  void **w = alloc_all(P, (size_t)n * esz(rt));
  job_t jobs[16];
  run_op(vectors ? JAXMG_OP_SYEVD : JAXMG_OP_SYEVD_N, dt, n, tile, 0, P, reversed, a, NULL,
         NULL, w, jobs);
  expect_ok(jobs, P, what);
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, n / P, P, tile);
  check_eigenvalues(what, dt, A, n, w, P);
  const double anorm = norm_inf(A, n, n);
  if (vectors) {
    int64_t nloc = n / P;
    double worst = 0;
    for (int r = 0; r < P; r++)
      for (int64_t c = 0; c < nloc; c++) {
        int64_t e = jaxmg_layout_dst(&lay, r * nloc + c);
        double we = creal(elem_load(rt, w[0], (size_t)e)), res = 0, nv = 0;
        for (int64_t i = 0; i < n; i++) {
          zd s = 0;
          for (int64_t j = 0; j < n; j++)
            s += A[i * n + j] * conj(elem_load(dt, a[r], (size_t)(c * n + j)));
          zd vi = conj(elem_load(dt, a[r], (size_t)(c * n + i)));
          res += cabs(s - we * vi) * cabs(s - we * vi);
          nv += cabs(vi) * cabs(vi);
        }
        CHECK(fabs(nv - 1) < 1e3 * eps(dt) * n, "%s: |v_%lld| = %.6g", what, (long long)e, sqrt(nv));
        worst = nmax(worst, sqrt(res) / (n * anorm * eps(dt)));
      }
    CHECK(worst < 30, "%s: eigenpair residual ratio %.3g", what, worst);
  }
  free(A);
  free_all(a, P);
  free_all(w, P);
}

extern int mock_dn_potrf_calls, mock_dn_potrf_dev;

/* potrs's single engine (JAXMG_OP_POTRS_WHOLE; identity layout, tile = nloc): x solves
 * A x = b on every rank, info 0; exactly one factorization ran, on position 0's device; the
 * shards are unchanged (the op only reads them). x starts as NaN, like the allocator's memory.
 * k >= 0 sets A[k][k] = -1: the leading minor k + 1 is the first that is not positive
 * definite, so info = k + 1 on every rank (x unspecified: the Python layer puts NaN). */
static void test_whole(jaxmg_dtype_t dt, int64_t nloc, int P, int64_t nrhs, int reversed,
                       int64_t k) {
  const int64_t n = nloc * P;
  char what[128];
  snprintf(what, sizeof what, "potrs_whole dt=%d nloc=%lld P=%d nrhs=%lld rev=%d k=%lld", dt,
           (long long)nloc, P, (long long)nrhs, reversed, (long long)k);
  zd *A = random_hpd(n, cplx(dt), (unsigned)(5 * n + nrhs + dt));
  if (k >= 0) A[k * n + k] = -1;
  void **a = make_shards(A, n, P, dt);
  const size_t sb = (size_t)(nloc * n) * esz(dt), xb = (size_t)(n * nrhs) * esz(dt);
  void **a0 = alloc_all(P, sb), **x = alloc_all(P, xb);
  for (int r = 0; r < P; r++) {
    memcpy(a0[r], a[r], sb);
    memset(x[r], 0xFF, xb);
  }
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, nloc, P, nloc);
  zd *B;
  void **b = make_rhs(dt, &lay, n, nrhs, P, &B);
  job_t jobs[16];
  const int calls = mock_dn_potrf_calls;
  run_op(JAXMG_OP_POTRS_WHOLE, dt, n, nloc, nrhs, P, reversed, a, b, x, NULL, jobs);
  CHECK(mock_dn_potrf_calls == calls + 1 && mock_dn_potrf_dev == jobs[0].dev,
        "%s: %d factorizations, the last on device %d", what, mock_dn_potrf_calls - calls,
        mock_dn_potrf_dev);
  for (int r = 0; r < P; r++)
    CHECK(!memcmp(a[r], a0[r], sb), "%s: shard of rank %d changed", what, r);
  if (k < 0) {
    expect_ok(jobs, P, what);
    if (nrhs) check_solution(what, dt, &lay, A, B, x, n, nrhs, P);
  } else {
    for (int r = 0; r < P; r++)
      CHECK(jobs[r].st == JAXMG_OK && jobs[r].info == k + 1, "%s rank %d: status %d info %d (%s)",
            what, r, jobs[r].st, jobs[r].info, jobs[r].err.msg);
  }
  free(A);
  free(B);
  free_all(a, P);
  free_all(a0, P);
  free_all(b, P);
  free_all(x, P);
}


static int all_nan(const void *p, size_t bytes) {
  const unsigned char *c = p;
  for (size_t i = 0; i < bytes; i++)
    if (c[i] != 0xFF) return 0;
  return 1;
}

extern int mock_dn_syevd_calls, mock_dn_syevd_dev, mock_dn_syevd_mode;
int mock_dn_hwork_left(void);

static int all_finite(jaxmg_dtype_t dt, const void *p, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (!isfinite(cabs(elem_load(dt, p, i)))) return 0;
  return 1;
}

/* syevd's single engine (JAXMG_OP_SYEVD_WHOLE / _N_WHOLE; identity layout, tile = nloc):
 * exactly one cuSOLVERDn syevd, on position 0's device, in the non-deterministic mode unless
 * JAXMG_DETERMINISTIC is set, its host workspace waited for; w ascending, right and equal on
 * every rank; with vectors, shard r holds rows [r nloc, (r + 1) nloc) of the column-major V_M
 * as an N x nloc row-major block, i.e. element (j, i) = conj(V[r nloc + i][j]) for V the
 * eigenvectors of A: each eigenpair's residual and norm are checked; without, the shards are
 * unchanged. No output holds NaN (the allocator's: an element nobody wrote). fail = 1 makes
 * the mock eigensolver report info = 3 (did not converge), fail = 2 fills A with +inf, on
 * which reference LAPACK itself fails (info > 0): the same info on every rank (w, V
 * unspecified: the Python layer puts NaN). */
static void test_whole_evd(jaxmg_dtype_t dt, int64_t nloc, int P, int vectors, int reversed,
                           int fail, int det) {
  const int64_t n = nloc * P;
  char what[128];
  snprintf(what, sizeof what, "syevd%s_whole dt=%d nloc=%lld P=%d rev=%d fail=%d det=%d",
           vectors ? "" : "_n", dt, (long long)nloc, P, reversed, fail, det);
  zd *A = random_hpd(n, cplx(dt), (unsigned)(13 * n + dt));
  for (int64_t i = 0; i < n * n && fail == 2; i++) A[i] = INFINITY;
  void **a = make_shards(A, n, P, dt);
  const size_t sb = (size_t)(nloc * n) * esz(dt);
  void **a0 = alloc_all(P, sb);
  for (int r = 0; r < P; r++) memcpy(a0[r], a[r], sb);
  int want_info = fail == 1 ? 3 : 0;
  if (fail == 2) { /* what reference LAPACK says, in dt as the mock runs it */
    void *M = malloc((size_t)(n * n) * esz(dt)), *wr = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n * n; i++) elem_store(dt, M, (size_t)i, A[i]);
    want_info = mock_lapack_evd(dt, vectors, (int)n, M, (int)n, wr);
    CHECK(want_info > 0, "%s: reference LAPACK info %d on +inf", what, want_info);
    free(M);
    free(wr);
  }
  jaxmg_dtype_t rt = (dt == JAXMG_F32 || dt == JAXMG_C64) ? JAXMG_F32 : JAXMG_F64;
  void **w = alloc_all(P, (size_t)n * esz(rt));
  for (int r = 0; r < P; r++) memset(w[r], 0xFF, (size_t)n * esz(rt));
  job_t jobs[16];
  const int calls = mock_dn_syevd_calls;
  if (det) setenv("JAXMG_DETERMINISTIC", "1", 1);
  if (fail == 1) setenv("MOCK_DN_SYEVD_INFO", "3", 1);
  run_op(vectors ? JAXMG_OP_SYEVD_WHOLE : JAXMG_OP_SYEVD_N_WHOLE, dt, n, nloc, 0, P, reversed, a,
         NULL, NULL, w, jobs);
  unsetenv("JAXMG_DETERMINISTIC");
  unsetenv("MOCK_DN_SYEVD_INFO");
  CHECK(mock_dn_syevd_calls == calls + 1 && mock_dn_syevd_dev == jobs[0].dev,
        "%s: %d eigensolver calls, the last on device %d", what, mock_dn_syevd_calls - calls,
        mock_dn_syevd_dev);
  CHECK(mock_dn_syevd_mode == (det ? CUSOLVER_DETERMINISTIC_RESULTS
                                   : CUSOLVER_ALLOW_NON_DETERMINISTIC_RESULTS),
        "%s: cuSOLVER mode %d", what, mock_dn_syevd_mode);
  CHECK(!mock_dn_hwork_left(), "%s: host workspace never waited for", what);
  for (int r = 0; r < P && !vectors; r++)
    CHECK(!memcmp(a[r], a0[r], sb), "%s: shard of rank %d changed", what, r);
  if (fail) {
    for (int r = 0; r < P; r++)
      CHECK(jobs[r].st == JAXMG_OK && jobs[r].info == want_info,
            "%s: rank %d status %d info %d, want %d", what, r, jobs[r].st, jobs[r].info,
            want_info);
  } else {
    expect_ok(jobs, P, what);
    for (int r = 0; r < P; r++)
      CHECK(all_finite(rt, w[r], (size_t)n) && (!vectors || all_finite(dt, a[r], sb / esz(dt))),
            "%s: rank %d: w or shard not finite", what, r);
    check_eigenvalues(what, dt, A, n, w, P);
    const double anorm = norm_inf(A, n, n);
    if (vectors) {
      /* V[g][e] = conj(shard r's element (e, i)) for g = r nloc + i. */
      zd *V = malloc(sizeof(zd) * (size_t)(n * n));
      for (int r = 0; r < P; r++)
        for (int64_t e = 0; e < n; e++)
          for (int64_t i = 0; i < nloc; i++)
            V[(r * nloc + i) * n + e] = conj(elem_load(dt, a[r], (size_t)(e * nloc + i)));
      double worst = 0, worst_norm = 0;
      for (int64_t e = 0; e < n; e++) {
        double we = creal(elem_load(rt, w[0], (size_t)e)), res = 0, nv = 0;
        for (int64_t i = 0; i < n; i++) {
          zd s = 0;
          for (int64_t j = 0; j < n; j++) s += A[i * n + j] * V[j * n + e];
          res += cabs(s - we * V[i * n + e]) * cabs(s - we * V[i * n + e]);
          nv += cabs(V[i * n + e]) * cabs(V[i * n + e]);
        }
        worst = nmax(worst, sqrt(res) / (n * anorm * eps(dt)));
        worst_norm = nmax(worst_norm, fabs(nv - 1));
      }
      CHECK(worst < 30, "%s: eigenpair residual ratio %.3g", what, worst);
      CHECK(worst_norm < 1e3 * eps(dt) * n, "%s: | |v| - 1 | up to %.3g", what, worst_norm);
      free(V);
    }
  }
  free(A);
  free_all(a, P);
  free_all(a0, P);
  free_all(w, P);
}

/* The device-local subset eigensolver: eigenpairs lo..hi-1 of the whole matrix on one
 * device, eigenvalues against reference LAPACK's full solve, eigenpair residuals. */
static void test_syevx(jaxmg_dtype_t dt, int64_t n, int64_t lo, int64_t hi, int vectors) {
  char what[128];
  snprintf(what, sizeof what, "syevx dt=%d n=%lld [%lld, %lld) vectors=%d", dt, (long long)n,
           (long long)lo, (long long)hi, vectors);
  const int64_t k = hi - lo;
  const size_t es = esz(dt);
  jaxmg_dtype_t rt = (dt == JAXMG_F32 || dt == JAXMG_C64) ? JAXMG_F32 : JAXMG_F64;
  zd *A = random_hpd(n, cplx(dt), (unsigned)(7 * n + dt));
  void *M = malloc((size_t)(n * n) * es), *R = malloc((size_t)(n * n) * es);
  void *wall = malloc((size_t)n * esz(rt)), *w = malloc((size_t)(k ? k : 1) * esz(rt));
  void *z = malloc((size_t)(n * (k ? k : 1)) * es);
  for (int64_t i = 0; i < n * n; i++) {
    elem_store(dt, M, (size_t)i, A[i]);
    elem_store(dt, R, (size_t)i, A[i]);
  }
  CHECK(mock_lapack_evd(dt, 0, (int)n, R, (int)n, wall) == 0, "%s: reference failed", what);
  int32_t info = -7;
  jaxmg_syevx_t x = {dt, n, lo, hi, vectors, 1, M, w, z, &info};
  jaxmg_gpu_part_t g;
  memset(&g, 0, sizeof g);
  g.stream = (cudaStream_t)(uintptr_t)0x1000;
  g.mem.alloc = halloc;
  g.mem.free = hfree;
  cudaSetDevice(0);
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_status_t st = jaxmg__gpu_syevx(&x, &g, &err);
  CHECK(st == JAXMG_OK && info == 0, "%s: status %d (%s) info %d", what, st, err.msg, info);
  CHECK(g.work == NULL, "%s: workspace kept", what);
  const double anorm = norm_inf(A, n, n);
  double worst_w = 0, worst = 0;
  for (int64_t e = 0; e < k && !st; e++) {
    const double we = creal(elem_load(rt, w, (size_t)e));
    worst_w = nmax(worst_w, fabs(we - creal(elem_load(rt, wall, (size_t)(lo + e)))));
    if (!vectors) continue;
    double res = 0;
    for (int64_t i = 0; i < n; i++) { /* (M z)_i, M[i][j] = A[j][i] (column-major view) */
      zd sum = 0;
      for (int64_t j = 0; j < n; j++) sum += A[j * n + i] * elem_load(dt, z, (size_t)(e * n + j));
      const zd r = sum - we * elem_load(dt, z, (size_t)(e * n + i));
      res += creal(r * conj(r));
    }
    worst = nmax(worst, sqrt(res) / (n * anorm * eps(dt)));
  }
  CHECK(worst_w <= 30 * n * anorm * eps(dt), "%s: eigenvalue error %.3g", what, worst_w);
  CHECK(worst < 30, "%s: eigenpair residual ratio %.3g", what, worst);
  free(A);
  free(M);
  free(R);
  free(wall);
  free(w);
  free(z);
}

/* A diagonal matrix with -1 at row k: info = k + 1 everywhere, NaN outputs. */
static void test_not_pd(jaxmg_op_t op, jaxmg_dtype_t dt, int64_t n, int64_t tile, int P,
                        int64_t k) {
  char what[128];
  snprintf(what, sizeof what, "not-PD op=%d dt=%d n=%lld T=%lld P=%d k=%lld mode=%s", op, dt,
           (long long)n, (long long)tile, P, (long long)k,
           getenv("MOCK_POTRF_STATUS") ? getenv("MOCK_POTRF_STATUS") : "info");
  zd *A = calloc((size_t)(n * n), sizeof(zd));
  for (int64_t i = 0; i < n; i++) A[i * n + i] = i == k ? -1 : i + 1;
  void **a = make_shards(A, n, P, dt);
  int64_t nrhs = op == JAXMG_OP_POTRS ? 2 : 0;
  void **b = nrhs ? alloc_all(P, (size_t)(n * nrhs) * esz(dt)) : NULL;
  void **x = nrhs ? alloc_all(P, (size_t)(n * nrhs) * esz(dt)) : NULL;
  job_t jobs[16];
  run_op(op, dt, n, tile, nrhs, P, 0, a, b, x, NULL, jobs);
  for (int r = 0; r < P; r++) {
    CHECK(jobs[r].st == JAXMG_OK && jobs[r].info == k + 1, "%s rank %d: status %d info %d (%s)",
          what, r, jobs[r].st, jobs[r].info, jobs[r].err.msg);
    CHECK(all_nan(a[r], (size_t)(n / P * n) * esz(dt)), "%s rank %d: shard not NaN", what, r);
    if (x) CHECK(all_nan(x[r], (size_t)(n * nrhs) * esz(dt)), "%s rank %d: x not NaN", what, r);
  }
  free(A);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
}

extern int64_t mock_d2d_2d_bytes;

/* Bytes the planner says participant `rank` moves: the lower-triangle input permutation, plus
 * the full inverse permutation when the output is put back (syevd). */
static int64_t planned_bytes(const jaxmg_layout_t *lay, int64_t rank, int back, size_t es) {
  const int64_t K = lay->n / lay->tile;
  int64_t *moves = malloc(4 * (size_t)K * sizeof *moves);
  int64_t *ncols = malloc(2 * (size_t)K * sizeof *ncols);
  int64_t cols = 0, nm = jaxmg_layout_moves_lower(lay, rank, moves, ncols);
  for (int64_t m = 0; m < nm; m++) cols += ncols[m];
  if (back) cols += jaxmg_layout_moves(lay, 1, moves) * lay->nloc;
  free(ncols);
  free(moves);
  return cols * lay->tile * (int64_t)es;
}

/* potrs and syevd move exactly what jaxmg_layout_moves_lower plans (and syevd the full way
 * back), which is less than the full permutation when several tiles sit on a device. */
static void test_bytes_moved(jaxmg_op_t op, int64_t n, int64_t tile, int P) {
  jaxmg_layout_t lay;
  jaxmg_layout_init(&lay, n / P, P, tile);
  int64_t want = 0, full = 0;
  const int back = op == JAXMG_OP_SYEVD;
  for (int r = 0; r < P; r++) want += planned_bytes(&lay, r, back, esz(JAXMG_F64));
  if (!jaxmg_layout_is_identity(&lay)) {
    int64_t *moves = malloc(4 * (size_t)(n / tile) * sizeof *moves);
    full = P * (1 + back) * jaxmg_layout_moves(&lay, 0, moves) * lay.nloc * tile * 8;
    free(moves);
  }
  zd *A = random_hpd(n, 0, 3);
  void **a = make_shards(A, n, P, JAXMG_F64);
  void **b = alloc_all(P, (size_t)n * 8), **x = alloc_all(P, (size_t)n * 8);
  void **w = alloc_all(P, (size_t)n * 8);
  job_t jobs[16];
  const int64_t before = mock_d2d_2d_bytes;
  run_op(op, JAXMG_F64, n, tile, op == JAXMG_OP_POTRS ? 1 : 0, P, 0, a, b, x, w, jobs);
  expect_ok(jobs, P, "bytes moved");
  const int64_t got = mock_d2d_2d_bytes - before;
  CHECK(got == want, "op %d n=%lld T=%lld P=%d: %lld bytes moved, planned %lld", op,
        (long long)n, (long long)tile, P, (long long)got, (long long)want);
  CHECK(full ? got < full : got == 0,
        "op %d n=%lld T=%lld P=%d: %lld bytes, full permutation %lld", op, (long long)n,
        (long long)tile, P, (long long)got, (long long)full);
  free(A);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
  free_all(w, P);
}

/* An injected fault (point 2: allocation, 3: solver) at `rank`, or with point 0 (whole-matrix
 * ops only) a failing cusolverDnXpotrf / Xsyevd: every rank fails, none hangs. */
static void test_fault(jaxmg_op_t op, int point, int P, int rank) {
  const int whole = jaxmg__op_has(op, JAXMG_OPF_WHOLE), evd = jaxmg__op_has(op, JAXMG_OPF_W);
  int64_t n = 8 * P, tile = whole ? 8 : 4;
  const char *want = point ? "injected" : evd ? "cusolverDnXsyevd" : "cusolverDnXpotrf";
  const char *env = evd ? "MOCK_DN_SYEVD_FAIL" : "MOCK_DN_POTRF_FAIL";
  zd *A = random_hpd(n, 0, 5);
  void **a = make_shards(A, n, P, JAXMG_F64);
  void **b = alloc_all(P, (size_t)n * 8), **x = alloc_all(P, (size_t)n * 8);
  void **w = alloc_all(P, (size_t)n * 8);
  job_t jobs[16];
  if (point) jaxmg_set_fault(point, rank, 1);
  else setenv(env, "1", 1);
  run_op(op, JAXMG_F64, n, tile, evd ? 0 : 1, P, 0, a, evd ? NULL : b, evd ? NULL : x, w, jobs);
  jaxmg_set_fault(0, -1, 0);
  unsetenv(env);
  for (int r = 0; r < P; r++)
    CHECK(jobs[r].st != JAXMG_OK && strstr(jobs[r].err.msg, want),
          "op %d fault %d at rank %d of %d: rank %d status %d msg '%s'", op, point, rank, P, r,
          jobs[r].st, jobs[r].err.msg);
  CHECK(!mock_dn_hwork_left(), "op %d fault %d: host workspace never waited for", op, point);
  free(A);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
  free_all(w, P);
}

/* An op the CUDA library has no kernel for (potri): every rank fails with UNAVAILABLE naming
 * the op (or, having joined after another rank refused it, with that rank's error), none
 * hangs. */
static void test_no_kernel(jaxmg_op_t op, int P) {
  const int64_t n = 8 * P;
  zd *A = random_hpd(n, 0, 9);
  void **a = make_shards(A, n, P, JAXMG_F64);
  job_t jobs[16];
  run_op(op, JAXMG_F64, n, 4, 0, P, 0, a, NULL, NULL, NULL, jobs);
  for (int r = 0; r < P; r++)
    CHECK((jobs[r].st == JAXMG_EUNAVAIL || jobs[r].st == JAXMG_EPEER) &&
              strstr(jobs[r].err.msg, "no CUDA kernel"),
          "op %d P=%d: rank %d status %d msg '%s'", op, P, r, jobs[r].st, jobs[r].err.msg);
  free(A);
  free_all(a, P);
}

/* An allocator that cannot give a buffer: every rank fails (none hangs); the one refused
 * names the op, the bytes, its device, what the buffer was for and the allocator's answer. */
static void test_out_of_memory(jaxmg_op_t op, int P, size_t limit, const char *what) {
  const int whole = jaxmg__op_has(op, JAXMG_OPF_WHOLE);
  const int64_t n = 8 * P, tile = whole ? 8 : 4;
  zd *A = random_hpd(n, 0, 5);
  void **a = make_shards(A, n, P, JAXMG_F64);
  void **b = alloc_all(P, (size_t)n * 8), **x = alloc_all(P, (size_t)n * 8);
  job_t jobs[16];
  char want[160];
  int refused = 0;
  g_alloc_limit = limit;
  run_op(op, JAXMG_F64, n, tile, 1, P, 0, a, b, x, NULL, jobs);
  g_alloc_limit = 0;
  for (int r = 0; r < P; r++) {
    CHECK(jobs[r].st == JAXMG_ENOMEM || jobs[r].st == JAXMG_EPEER,
          "op %d P=%d out of memory: rank %d status %d msg '%s'", op, P, r, jobs[r].st,
          jobs[r].err.msg);
    if (jobs[r].st != JAXMG_ENOMEM) continue;
    refused++;
    snprintf(want, sizeof want, "jaxmg.mock: out of GPU memory on device %d allocating ",
             jobs[r].dev);
    CHECK(strstr(jobs[r].err.msg, want) != NULL, "op %d P=%d rank %d: '%s' lacks '%s'", op, P, r,
          jobs[r].err.msg, want);
    snprintf(want, sizeof want, " bytes for %s from the mock allocator, which holds %zu bytes",
             what, limit);
    CHECK(strstr(jobs[r].err.msg, want) != NULL, "op %d P=%d rank %d: '%s' lacks '%s'", op, P, r,
          jobs[r].err.msg, want);
  }
  CHECK(refused >= 1, "op %d P=%d: nobody was refused memory", op, P);
  free(A);
  free_all(a, P);
  free_all(b, P);
  free_all(x, P);
}

int main(void) {
  const jaxmg_dtype_t dts[4] = {JAXMG_F32, JAXMG_F64, JAXMG_C64, JAXMG_C128};
  /* The CUDA column of the op table: every op but potri. */
  for (int op = 0; op < JAXMG_NOPS; op++)
    CHECK(jaxmg__gpu_has_kernel((jaxmg_op_t)op) == (op != JAXMG_OP_POTRI),
          "op %d (%s): CUDA kernel %d", op, jaxmg__op_info((jaxmg_op_t)op)->target,
          jaxmg__gpu_has_kernel((jaxmg_op_t)op));
  CHECK(!jaxmg__gpu_has_kernel(JAXMG_NOPS), "JAXMG_NOPS has a CUDA kernel");
  for (int P = 1; P <= 4; P++) {
    for (int rev = 0; rev <= (P > 1); rev++) {
      for (int d = 0; d < 4; d++) {
        const int64_t n = 24 * P, tiles[2] = {4, 24}; /* several tiles per shard; one */
        for (int ti = 0; ti < 2; ti++) {
          test_potrs(dts[d], n, tiles[ti], 3, P, rev, 0);
          test_potrs(dts[d], n, tiles[ti], 2, P, rev, 1);
          test_syevd(dts[d], n, tiles[ti], P, rev, 1);
          test_syevd(dts[d], n, tiles[ti], P, rev, 0);
          test_getrs(dts[d], n, tiles[ti], 3, P, rev, 0);
        }
        test_getrs(dts[d], n, 4, 1, P, rev, 1);
      }
    }
    /* More right-hand sides than one cuSOLVERMg call takes: chunks of 256 and a rest. */
    test_potrs(JAXMG_F64, 12 * P, 4, 600, P, 0, 0);
    test_getrs(JAXMG_C128, 12 * P, 4, 300, P, 0, 0);
    for (int mode = 0; mode < 2; mode++) {
      setenv("MOCK_POTRF_STATUS", mode ? "7" : "0", 1);
      for (int d = 0; d < 4; d++) {
        test_not_pd(JAXMG_OP_POTRS, dts[d], 24 * P, 4, P, 24 * P - 3);
        test_not_pd(JAXMG_OP_POTRF, dts[d], 24 * P, 4, P, 24 * P / 2 + 1);
      }
    }
    unsetenv("MOCK_POTRF_STATUS");
    test_no_kernel(JAXMG_OP_POTRI, P);
    /* The mock's workspaces are 64 elements (512 bytes); the staging block is tile x nloc. */
    test_out_of_memory(JAXMG_OP_POTRS, P, 256, "the cuSOLVERMg workspace");
    for (int point = 2; point <= 3; point++) {
      test_fault(JAXMG_OP_POTRS, point, P, 0);
      test_fault(JAXMG_OP_POTRS, point, P, P - 1);
    }
  }
  /* potrs's single engine. Position 0 pulls each shard in strips of max(MIN_STRIP = 64,
   * nloc / STRIPS) rows (whole.c): nloc 8 and 40 in one strip, 100 in a full and a short
   * one, 1100 in 16 strips of 69 rows but the last (the only case above MIN_STRIP * STRIPS). */
  for (int P = 1; P <= 4; P++) {
    for (int d = 0; d < 4; d++) {
      const int64_t nlocs[3] = {8, 40, 100};
      for (int i = 0; i < 3; i++) test_whole(dts[d], nlocs[i], P, 3, 0, -1);
      test_whole(dts[d], 40, P, 1, P > 1, -1);
      test_whole(dts[d], 8, P, 0, 0, -1);
      const int64_t ks[3] = {0, 40 * P / 2 + 1, 40 * P - 3}; /* not positive definite */
      for (int i = 0; i < 3; i++) test_whole(dts[d], 40, P, 2, P > 1, ks[i]);
    }
    for (int point = 2; point <= 3; point++) {
      test_fault(JAXMG_OP_POTRS_WHOLE, point, P, 0);
      test_fault(JAXMG_OP_POTRS_WHOLE, point, P, P - 1);
    }
    test_fault(JAXMG_OP_POTRS_WHOLE, 0, P, 0);
    test_out_of_memory(JAXMG_OP_POTRS_WHOLE, P, 256, "the whole matrix and cuSOLVER's workspace");
  }
  for (int d = 0; d < 4; d++) test_whole(dts[d], 1100, 1, 3, 0, -1);
  test_whole(JAXMG_F32, 1100, 2, 1, 1, -1);
  /* syevd's single engine: the same strips, both outputs, both cuSOLVER modes, info > 0. */
  for (int P = 1; P <= 4; P++) {
    for (int d = 0; d < 4; d++) {
      const int64_t nlocs[3] = {8, 40, 100};
      for (int i = 0; i < 3; i++) test_whole_evd(dts[d], nlocs[i], P, 1, 0, 0, 0);
      test_whole_evd(dts[d], 40, P, 1, P > 1, 0, 1);
      test_whole_evd(dts[d], 40, P, 0, P > 1, 0, 0);
      test_whole_evd(dts[d], 8, P, 1, 0, 1, 0);
      test_whole_evd(dts[d], 8, P, 0, P > 1, 1, 0);
      /* All +inf: LAPACK's own info (n - 1 here; for n above SMLSIZ = 25 reference LAPACK
       * with vectors divides and conquers and reports 0 with NaN, hence nloc 6). */
      test_whole_evd(dts[d], 6, P, 1, P > 1, 2, 0);
      test_whole_evd(dts[d], 6, P, 0, 0, 2, 0);
    }
    for (int point = 0; point <= 3; point += point ? 1 : 2) {
      test_fault(JAXMG_OP_SYEVD_WHOLE, point, P, 0);
      test_fault(JAXMG_OP_SYEVD_N_WHOLE, point, P, point ? P - 1 : 0);
    }
  }
  for (int d = 0; d < 4; d++) {
    test_syevx(dts[d], 30, 0, 3, 1);
    test_syevx(dts[d], 30, 27, 30, 1);
    test_syevx(dts[d], 30, 5, 17, 0);
    test_syevx(dts[d], 30, 4, 4, 1); /* no eigenpair asked: nothing runs */
  }
  test_whole_evd(JAXMG_F64, 1100, 1, 1, 0, 0, 0);
  test_whole_evd(JAXMG_C64, 550, 2, 1, 1, 0, 0);
  for (int P = 1; P <= 4; P++) {
    test_bytes_moved(JAXMG_OP_POTRS, 24 * P, 4, P);
    test_bytes_moved(JAXMG_OP_POTRS, 24 * P, 24, P); /* one tile per device: nothing moves */
    test_bytes_moved(JAXMG_OP_SYEVD, 24 * P, 4, P);
  }
  /* Plans are reused: the same shapes again create none. */
  int64_t before = jaxmg_cuda_plan_count();
  test_potrs(JAXMG_F64, 48, 4, 3, 2, 0, 0);
  CHECK(jaxmg_cuda_plan_count() == before, "plans grew from %lld to %lld",
        (long long)before, (long long)jaxmg_cuda_plan_count());
  CHECK(jaxmg_live_sessions() == 0, "%lld sessions leaked", (long long)jaxmg_live_sessions());
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
