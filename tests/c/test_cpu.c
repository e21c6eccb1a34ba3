/* The CPU backend (src/cpu) on plain pointers: P threads join a session the way the FFI layer
 * does (src/ffi/dispatch.c) and run the task; the data are laid out exactly as the Python
 * package lays them out (python/jaxmg/_potrs.py, _geometry.py).
 *
 * Accuracy is measured as LAPACK's test suite does, with its threshold 30:
 *   potrs  ||B - A X||_1 / (n ||A||_1 ||X||_1 eps)
 *   potri  ||I - A X||_1 / (n ||A||_1 ||X||_1 eps)
 *   syevd  ||A V - V W||_1 / (n ||A||_1 ulp),  ||I - V^H V||_1 / (n ulp)
 * with eps the unit roundoff and ulp = 2 eps of the dtype, on the stored (rounded) inputs. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/ops.h"
#include "common/rendezvous.h"
#include "cpu/cpu.h"
#include "jaxmg_test.h"

enum { kMaxP = 8 };
static const jaxmg_dtype_t kDtypes[] = {JAXMG_F32, JAXMG_F64, JAXMG_C64, JAXMG_C128};

static int64_t next_run_id(void) {
  static int64_t id = 3000000;
  return ++id;
}

static jaxmg_dtype_t real_of(jaxmg_dtype_t dt) {
  return (dt == JAXMG_F32 || dt == JAXMG_C64) ? JAXMG_F32 : JAXMG_F64;
}

/* One participant. */
typedef struct {
  jaxmg_op_t op;
  jaxmg_dtype_t dt;
  jaxmg_layout_t lay;
  int64_t nrhs, run_id, site;
  int rank;
  jaxmg_part_t part;
  int32_t info;
  jaxmg_status_t st;
  jaxmg_error_t err;
} part_arg_t;

static void *part_thread(void *p) {
  part_arg_t *a = p;
  a->info = -99;
  a->part.info = &a->info;
  jaxmg_join_t j = {a->run_id, a->site, 0,        0, (int)a->lay.ndev, a->rank, 60000,
                    "test",    &a->part, sizeof a->part};
  jaxmg_task_t t = {a->op, "test", a->dt, a->lay, a->nrhs, a->rank, NULL};
  a->st = jaxmg__rv_join(&j, &t.session, &a->err);
  if (a->st) return NULL;
  a->st = jaxmg_cpu_run(&t, &a->info, &a->err);
  if (a->st && !jaxmg__is_peer_status(a->st)) jaxmg__rv_fail(t.session, t.rank, &a->err);
  jaxmg__rv_leave(t.session, t.rank);
  return NULL;
}

/* Buffers of all participants of one problem. */
typedef struct {
  jaxmg_dtype_t dt;
  jaxmg_layout_t lay;
  int P;
  int64_t n, nloc, nrhs;
  void *a[kMaxP], *b[kMaxP], *x[kMaxP], *w[kMaxP];
  part_arg_t args[kMaxP];
} problem_t;

static int problem_alloc(problem_t *pb, jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile,
                         int64_t nrhs) {
  memset(pb, 0, sizeof *pb);
  pb->dt = dt, pb->P = P, pb->nloc = nloc, pb->n = nloc * P, pb->nrhs = nrhs;
  if (!JT_EQ(jaxmg_layout_init(&pb->lay, nloc, P, tile), JAXMG_OK)) return 0;
  const size_t esz = jaxmg_dtype_size(dt);
  int ok = 1;
  for (int r = 0; r < P; r++) {
    pb->a[r] = malloc((size_t)(nloc * pb->n) * esz);
    pb->w[r] = malloc((size_t)pb->n * esz);
    if (nrhs) {
      pb->b[r] = malloc((size_t)(nrhs * pb->n) * esz);
      pb->x[r] = malloc((size_t)(nrhs * pb->n) * esz);
      ok &= pb->b[r] && pb->x[r];
    }
    ok &= pb->a[r] && pb->w[r];
  }
  return JT_CHECK(ok);
}

static void problem_free(problem_t *pb) {
  for (int r = 0; r < pb->P; r++) {
    free(pb->a[r]);
    free(pb->b[r]);
    free(pb->x[r]);
    free(pb->w[r]);
  }
}

/* One session of op over every participant; returns 1 when every participant returned OK. */
static int problem_run(problem_t *pb, jaxmg_op_t op, int64_t nrhs, int64_t run_id, int64_t site) {
  pthread_t th[kMaxP];
  int started[kMaxP] = {0}, ok = 1;
  for (int r = 0; r < pb->P; r++) {
    part_arg_t *a = &pb->args[r];
    memset(a, 0, sizeof *a);
    a->op = op, a->dt = pb->dt, a->lay = pb->lay, a->nrhs = nrhs, a->rank = r;
    a->run_id = run_id, a->site = site;
    a->part.a = pb->a[r];
    a->part.b = nrhs ? pb->b[r] : NULL;
    a->part.x = nrhs ? pb->x[r] : NULL;
    a->part.w = pb->w[r];
  }
  for (int r = 0; r < pb->P; r++)
    started[r] = JT_EQ(pthread_create(&th[r], NULL, part_thread, &pb->args[r]), 0);
  for (int r = 0; r < pb->P; r++)
    if (started[r]) pthread_join(th[r], NULL);
  for (int r = 0; r < pb->P; r++) {
    ok &= JT_EQ(pb->args[r].st, JAXMG_OK);
    if (pb->args[r].st) JT_STR_CONTAINS(pb->args[r].err.msg, "(no error expected)");
  }
  return ok;
}

static void problem_load(problem_t *pb, const jt_c *A, const jt_c *B) {
  for (int r = 0; r < pb->P; r++) {
    jt_make_shard(A, pb->n, pb->nloc, r, pb->dt, pb->a[r]);
    if (B && pb->nrhs) jt_rhs_to_solver(B, pb->nrhs, &pb->lay, pb->dt, pb->b[r]);
  }
}

void test_cpu_lapack_names(void) {
  const char *names = jaxmg_cpu_lapack_names();
  JT_STR_CONTAINS(names, "dpotrf,");
  JT_STR_CONTAINS(names, "zheevd,");
  JT_STR_CONTAINS(names, "ssyrk,");
  JT_STR_CONTAINS(names, "cherk,");
  JT_EQ(jaxmg_cpu_set_lapack("dfoo", (void *)&names), JAXMG_EINVAL);
  JT_EQ(jaxmg_cpu_set_lapack("xpotrf", (void *)&names), JAXMG_EINVAL);
  JT_EQ(jaxmg_cpu_set_lapack("dpotrf", NULL), JAXMG_EINVAL);
  JT_EQ(jaxmg_cpu_set_lapack(NULL, (void *)&names), JAXMG_EINVAL);
  JT_EQ(jaxmg_cpu_set_lapack("d", (void *)&names), JAXMG_EINVAL);
  /* Registering the real routines (after the bogus attempts above changed nothing). */
  JT_EQ(jt_register_lapack(), 1);
}

/* ---- potrs -------------------------------------------------------------------------------- */
static const int64_t kShapes[][2] = {{1, 1}, {2, 1}, {2, 2}, {3, 1}, {3, 3},  {5, 1},
                                     {5, 5}, {6, 2}, {6, 3}, {8, 2}, {12, 4}, {12, 3}};

/* split = 0: one POTRS session; 1: POTRF, then SOLVE with the factor left in the shards. */
static int potrs_case(jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile, int64_t nrhs, int split,
                      uint64_t seed) {
  problem_t pb;
  const int cplx = jt_is_complex(dt);
  uint64_t rng = seed;
  jt_c *A = NULL, *B = NULL, *X = NULL;
  int ok = problem_alloc(&pb, dt, P, nloc, tile, nrhs);
  const int64_t n = pb.n;
  jt_context("potrs: %s, P %d, nloc %lld, tile %lld, nrhs %lld, split %d", jt_dtype_name(dt), P,
             (long long)nloc, (long long)tile, (long long)nrhs, split);
  if (!ok) goto done;
  A = jt_random_hpd(n, cplx, &rng);
  B = jt_random_mat(n, nrhs, cplx, &rng);
  X = malloc((size_t)(n * nrhs + 1) * sizeof *X);
  if (!(ok = JT_CHECK(A && B && X))) goto done;
  jt_round(A, n * n, dt);
  jt_round(B, n * nrhs, dt);
  problem_load(&pb, A, B);
  const int64_t run = next_run_id();
  if (split) {
    ok &= problem_run(&pb, JAXMG_OP_POTRF, 0, run, 1);
    for (int r = 0; ok && r < P; r++) ok &= JT_EQ(pb.args[r].info, 0);
    if (ok) ok &= problem_run(&pb, JAXMG_OP_SOLVE, nrhs, run, 2);
  } else {
    ok &= problem_run(&pb, JAXMG_OP_POTRS, nrhs, run, 1);
  }
  const size_t xbytes = (size_t)(n * nrhs) * jaxmg_dtype_size(dt);
  for (int r = 0; ok && r < P; r++) {
    ok &= JT_EQ(pb.args[r].info, 0);
    if (!nrhs) continue;
    ok &= JT_EQ(memcmp(pb.x[r], pb.x[0], xbytes), 0); /* replicated, identical */
    jt_solution_from_solver(pb.x[r], nrhs, &pb.lay, dt, X);
    ok &= JT_LT_DBL(jt_solve_ratio(A, X, B, n, nrhs, dt), 30.0);
  }
done:
  problem_free(&pb);
  free(X);
  free(B);
  free(A);
  return ok;
}

void test_cpu_potrs(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions();
  uint64_t seed = 1;
  for (size_t d = 0; d < 4; d++)
    for (int P = 1; P <= 4; P++)
      for (size_t s = 0; s < sizeof kShapes / sizeof kShapes[0]; s++) {
        const int64_t nrhs_list[] = {1, 3};
        for (size_t k = 0; k < 2; k++)
          if (!potrs_case(kDtypes[d], P, kShapes[s][0], kShapes[s][1], nrhs_list[k], 0, seed++))
            goto out;
      }
  /* More right-hand sides than participants, fewer, none; more participants. */
  potrs_case(JAXMG_F64, 4, 4, 2, 5, 0, seed++);
  potrs_case(JAXMG_C128, 3, 4, 1, 2, 0, seed++);
  potrs_case(JAXMG_F64, 2, 4, 2, 0, 0, seed++);
  potrs_case(JAXMG_F32, 8, 2, 1, 9, 0, seed++);
  potrs_case(JAXMG_C64, 5, 6, 2, 7, 0, seed++);
out:
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

void test_cpu_potrf_solve(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions();
  uint64_t seed = 101;
  for (size_t d = 0; d < 4; d++)
    for (int P = 1; P <= 4; P++) {
      if (!potrs_case(kDtypes[d], P, 6, 2, 2, 1, seed++)) goto out;
      if (!potrs_case(kDtypes[d], P, 3, 3, 1, 1, seed++)) goto out;
    }
out:
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- potri -------------------------------------------------------------------------------- */
static int potri_case(jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile, uint64_t seed) {
  problem_t pb;
  const int cplx = jt_is_complex(dt);
  uint64_t rng = seed;
  jt_c *A = NULL, *X = NULL, *R = NULL;
  int ok = problem_alloc(&pb, dt, P, nloc, tile, 0);
  const int64_t n = pb.n;
  jt_context("potri: %s, P %d, nloc %lld, tile %lld", jt_dtype_name(dt), P, (long long)nloc,
             (long long)tile);
  if (!ok) goto done;
  A = jt_random_hpd(n, cplx, &rng);
  X = malloc((size_t)(n * n) * sizeof *X);
  R = malloc((size_t)(n * n) * sizeof *R);
  if (!(ok = JT_CHECK(A && X && R))) goto done;
  jt_round(A, n * n, dt);
  problem_load(&pb, A, NULL);
  if (!(ok = problem_run(&pb, JAXMG_OP_POTRI, 0, next_run_id(), 1))) goto done;
  for (int r = 0; r < P; r++) ok &= JT_EQ(pb.args[r].info, 0);
  /* Shard d holds rows [d*nloc, (d+1)*nloc) of inv(A), full rows, in the original order. */
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) X[i + j * n] = jt_shard_get(pb.a, n, nloc, i, j, dt);
  jt_matmul(A, X, R, n, n, n);
  for (int64_t i = 0; i < n * n; i++) R[i] = (i % (n + 1) == 0 ? 1.0 : 0.0) - R[i];
  double ratio =
      jt_norm1(R, n, n, n) / ((double)n * jt_norm1(A, n, n, n) * jt_norm1(X, n, n, n) * jt_eps(dt));
  ok &= JT_LT_DBL(ratio, 30.0);
done:
  problem_free(&pb);
  free(R);
  free(X);
  free(A);
  return ok;
}

void test_cpu_potri(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions();
  uint64_t seed = 201;
  for (size_t d = 0; d < 4; d++)
    for (int P = 1; P <= 4; P++)
      for (size_t s = 0; s < sizeof kShapes / sizeof kShapes[0]; s++)
        if (!potri_case(kDtypes[d], P, kShapes[s][0], kShapes[s][1], seed++)) goto out;
out:
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- syevd -------------------------------------------------------------------------------- */
static int syevd_case(jaxmg_dtype_t dt, int P, int64_t nloc, int64_t tile, int vectors,
                      uint64_t seed) {
  problem_t pb;
  const int cplx = jt_is_complex(dt);
  const jaxmg_dtype_t rdt = real_of(dt);
  uint64_t rng = seed;
  jt_c *A = NULL, *V = NULL, *R = NULL, *G = NULL;
  double *wref = NULL;
  int ok = problem_alloc(&pb, dt, P, nloc, tile, 0);
  const int64_t n = pb.n;
  jt_context("syevd: %s, P %d, nloc %lld, tile %lld, vectors %d", jt_dtype_name(dt), P,
             (long long)nloc, (long long)tile, vectors);
  if (!ok) goto done;
  A = jt_random_herm(n, cplx, &rng);
  V = malloc((size_t)(n * n) * sizeof *V);
  R = malloc((size_t)(n * n) * sizeof *R);
  G = malloc((size_t)(n * n) * sizeof *G);
  wref = malloc((size_t)n * sizeof *wref);
  if (!(ok = JT_CHECK(A && V && R && G && wref))) goto done;
  jt_round(A, n * n, dt);
  if (!(ok = JT_CHECK(jt_ref_eigenvalues(A, n, cplx, wref)))) goto done;
  problem_load(&pb, A, NULL);
  if (!(ok = problem_run(&pb, vectors ? JAXMG_OP_SYEVD : JAXMG_OP_SYEVD_N, 0, next_run_id(), 1)))
    goto done;
  const double ulp = 2.0 * jt_eps(dt), anorm = jt_norm1(A, n, n, n);
  for (int r = 0; r < P; r++) {
    ok &= JT_EQ(pb.args[r].info, 0);
    ok &= JT_EQ(memcmp(pb.w[r], pb.w[0], (size_t)n * jaxmg_dtype_size(rdt)), 0);
  }
  for (int64_t k = 0; ok && k < n; k++) {
    double wk = creal(jt_load(pb.w[0], k, rdt));
    if (k) ok &= JT_CHECK(creal(jt_load(pb.w[0], k - 1, rdt)) <= wk); /* ascending */
    ok &= JT_LT_DBL(fabs(wk - wref[k]), 30.0 * (double)n * anorm * ulp + 1e-300);
  }
  if (!ok || !vectors) goto done;
  /* Row c of shard d holds conj(v_e) for e = dst(d*nloc + c): rebuild V (column e = v_e). */
  for (int64_t j = 0; j < n; j++) {
    int64_t e = jaxmg_layout_dst(&pb.lay, j);
    for (int64_t i = 0; i < n; i++) V[i + e * n] = conj(jt_shard_get(pb.a, n, nloc, j, i, dt));
  }
  jt_matmul(A, V, R, n, n, n); /* R = A V - V W */
  for (int64_t e = 0; e < n; e++) {
    double we = creal(jt_load(pb.w[0], e, rdt));
    for (int64_t i = 0; i < n; i++) R[i + e * n] -= V[i + e * n] * we;
  }
  ok &= JT_LT_DBL(jt_norm1(R, n, n, n) / ((double)n * (anorm > 0 ? anorm : 1.0) * ulp), 30.0);
  for (int64_t j = 0; j < n; j++) /* G = I - V^H V */
    for (int64_t i = 0; i < n; i++) {
      jt_c s = 0;
      for (int64_t k = 0; k < n; k++) s += conj(V[k + i * n]) * V[k + j * n];
      G[i + j * n] = (i == j ? 1.0 : 0.0) - s;
    }
  ok &= JT_LT_DBL(jt_norm1(G, n, n, n) / ((double)n * ulp), 30.0);
done:
  problem_free(&pb);
  free(wref);
  free(G);
  free(R);
  free(V);
  free(A);
  return ok;
}

void test_cpu_syevd(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions();
  uint64_t seed = 301;
  for (size_t d = 0; d < 4; d++)
    for (int P = 1; P <= 4; P++)
      for (size_t s = 0; s < sizeof kShapes / sizeof kShapes[0]; s++)
        for (int vectors = 0; vectors < 2; vectors++)
          if (!syevd_case(kDtypes[d], P, kShapes[s][0], kShapes[s][1], vectors, seed++)) goto out;
out:
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- not positive definite ------------------------------------------------------------------ */
/* A is positive definite except for a negative (or NaN) diagonal entry in row `bad`: every
 * principal submatrix without row `bad` is positive definite, so the elimination breaks exactly at
 * the pivot of `bad`, in any elimination order: info = bad + 1 on every participant, and the
 * outputs hold NaN. */
static int not_pd_case(jaxmg_dtype_t dt, jaxmg_op_t op, int P, int64_t nloc, int64_t tile,
                       int64_t bad, double value, uint64_t seed) {
  problem_t pb;
  const int cplx = jt_is_complex(dt);
  const int64_t nrhs = op == JAXMG_OP_POTRS ? 2 : 0;
  uint64_t rng = seed;
  jt_c *A = NULL, *B = NULL;
  int ok = problem_alloc(&pb, dt, P, nloc, tile, nrhs);
  const int64_t n = pb.n;
  jt_context("not positive definite: %s, op %d, P %d, nloc %lld, tile %lld, row %lld = %g",
             jt_dtype_name(dt), (int)op, P, (long long)nloc, (long long)tile, (long long)bad,
             value);
  if (!ok) goto done;
  A = jt_random_hpd(n, cplx, &rng);
  B = jt_random_mat(n, nrhs, cplx, &rng);
  if (!(ok = JT_CHECK(A && B))) goto done;
  A[bad + bad * n] = value;
  jt_round(A, n * n, dt);
  jt_round(B, n * nrhs, dt);
  ok &= JT_EQ(jt_ref_potrf_info(A, n, cplx), bad + 1); /* LAPACK agrees on the index */
  problem_load(&pb, A, B);
  if (!(ok &= problem_run(&pb, op, nrhs, next_run_id(), 1))) goto done;
  for (int r = 0; r < P; r++) {
    jt_context("not positive definite: %s, op %d, P %d, nloc %lld, tile %lld, row %lld, rank %d",
               jt_dtype_name(dt), (int)op, P, (long long)nloc, (long long)tile, (long long)bad, r);
    ok &= JT_EQ(pb.args[r].info, bad + 1);
    ok &= JT_CHECK(jt_all_nan(pb.a[r], nloc * n, dt));
    if (nrhs) ok &= JT_CHECK(jt_all_nan(pb.x[r], n * nrhs, dt));
  }
done:
  problem_free(&pb);
  free(B);
  free(A);
  return ok;
}

void test_cpu_not_pd(void) {
  if (!jt_register_lapack()) return;
  int64_t live = jaxmg_live_sessions();
  static const int64_t shapes[][2] = {{4, 1}, {4, 2}, {4, 4}, {6, 3}, {6, 2}, {1, 1}};
  static const jaxmg_op_t ops[] = {JAXMG_OP_POTRS, JAXMG_OP_POTRI, JAXMG_OP_POTRF};
  uint64_t seed = 401;
  for (size_t d = 0; d < 4; d++)
    for (size_t o = 0; o < 3; o++)
      for (int P = 2; P <= 4; P++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
          const int64_t nloc = shapes[s][0], tile = shapes[s][1];
          /* First row of device 1, a middle row of device 1, the last row of the last one. */
          const int64_t rows[] = {nloc, nloc + nloc / 2, P * nloc - 1};
          /* The middle case has NaN on the diagonal instead of a negative value. */
          for (size_t k = 0; k < 3; k++)
            if (!not_pd_case(kDtypes[d], ops[o], P, nloc, tile, rows[k], k == 1 ? NAN : -1.0,
                             seed++))
              goto out;
        }
  /* One participant: the natural order. */
  not_pd_case(JAXMG_F64, JAXMG_OP_POTRS, 1, 6, 2, 3, -1.0, seed++);
  not_pd_case(JAXMG_C64, JAXMG_OP_POTRI, 1, 6, 3, 4, NAN, seed++);
out:
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- threads of the BLAS -------------------------------------------------------------------- */
/* A stand-in for `openblas_set_num_threads_local`: records the counts each thread sets. */
static _Thread_local int tl_threads = 7; /* the BLAS's count before a call */
static atomic_int g_set_calls, g_set_share, g_set_other;

static int fake_set_local(int threads) {
  int previous = tl_threads;
  tl_threads = threads;
  atomic_fetch_add(&g_set_calls, 1);
  if (threads != 7) {
    if (atomic_load(&g_set_share) == 0) atomic_store(&g_set_share, threads);
    if (atomic_load(&g_set_share) != threads) atomic_fetch_add(&g_set_other, 1);
  }
  return previous;
}

/* Each participant's kernels run with its share of the cores (8 cores, 4 participants: 2),
 * and its thread's count is put back afterwards (the stand-in starts every thread at 7). */
void test_cpu_blas_threads(void) {
  if (!jt_register_lapack()) return;
  int (*fn)(int) = fake_set_local;
  void *setter;
  memcpy(&setter, &fn, sizeof setter);
  jaxmg_cpu_set_threads(setter, 8);
  atomic_store(&g_set_calls, 0);
  atomic_store(&g_set_share, 0);
  atomic_store(&g_set_other, 0);
  JT_CHECK(potrs_case(JAXMG_F64, 4, 6, 2, 1, 0, 99));
  JT_EQ(atomic_load(&g_set_calls), 8); /* set and restored by each of the 4 */
  JT_EQ(atomic_load(&g_set_share), 2);
  JT_EQ(atomic_load(&g_set_other), 0);
  jaxmg_cpu_set_threads(NULL, 0); /* the other tests run the BLAS as it is configured */
}

/* ---- syev2s: the device-local two-stage eigensolver ----------------------------------------- */
/* Every eigenpair of a random Hermitian matrix whose upper triangle holds NaN (only the lower
 * one is read), with the syevd thresholds; eigenvalues against the double-precision
 * reference. */
static int syev2s_case(jaxmg_dtype_t dt, int64_t n, int64_t band, int vectors, uint64_t seed) {
  const int cplx = jt_is_complex(dt);
  const jaxmg_dtype_t rdt = real_of(dt);
  const size_t esz = jaxmg_dtype_size(dt);
  uint64_t rng = seed;
  jt_c *A = NULL, *V = NULL, *R = NULL, *G = NULL;
  double *wref = NULL;
  void *a = NULL, *w = NULL, *z = NULL;
  int32_t info = -1;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jt_context("syev2s: %s, n %lld, band %lld, vectors %d", jt_dtype_name(dt), (long long)n,
             (long long)band, vectors);
  A = jt_random_herm(n, cplx, &rng);
  V = malloc((size_t)(n * n) * sizeof *V);
  R = malloc((size_t)(n * n) * sizeof *R);
  G = malloc((size_t)(n * n) * sizeof *G);
  wref = malloc((size_t)n * sizeof *wref);
  a = malloc((size_t)(n * n) * esz);
  w = malloc((size_t)n * jaxmg_dtype_size(rdt));
  z = malloc((size_t)(n * n) * esz);
  int ok = JT_CHECK(A && V && R && G && wref && a && w && z);
  if (!ok) goto done;
  jt_round(A, n * n, dt);
  if (!(ok = JT_CHECK(jt_ref_eigenvalues(A, n, cplx, wref)))) goto done;
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < n; i++) jt_store(a, i + j * n, dt, i >= j ? A[i + j * n] : NAN);
  const jaxmg_syev2s_t x = {dt, n, band, vectors, 1, a, w, vectors ? z : NULL, &info};
  if (!(ok = JT_EQ(jaxmg__cpu_syev2s(&x, &err), JAXMG_OK))) {
    JT_STR_CONTAINS(err.msg, "(no error expected)");
    goto done;
  }
  ok &= JT_EQ(info, 0);
  const double ulp = 2.0 * jt_eps(dt), anorm = jt_norm1(A, n, n, n);
  for (int64_t k = 0; ok && k < n; k++) {
    double wk = creal(jt_load(w, k, rdt));
    if (k) ok &= JT_CHECK(creal(jt_load(w, k - 1, rdt)) <= wk); /* ascending */
    ok &= JT_LT_DBL(fabs(wk - wref[k]), 30.0 * (double)n * anorm * ulp + 1e-300);
  }
  if (!ok || !vectors) goto done;
  for (int64_t i = 0; i < n * n; i++) V[i] = jt_load(z, i, dt);
  jt_matmul(A, V, R, n, n, n); /* R = A V - V W */
  for (int64_t e = 0; e < n; e++) {
    double we = creal(jt_load(w, e, rdt));
    for (int64_t i = 0; i < n; i++) R[i + e * n] -= V[i + e * n] * we;
  }
  ok &= JT_LT_DBL(jt_norm1(R, n, n, n) / ((double)n * (anorm > 0 ? anorm : 1.0) * ulp), 30.0);
  for (int64_t j = 0; j < n; j++) /* G = I - V^H V */
    for (int64_t i = 0; i < n; i++) {
      jt_c s = 0;
      for (int64_t k = 0; k < n; k++) s += conj(V[k + i * n]) * V[k + j * n];
      G[i + j * n] = (i == j ? 1.0 : 0.0) - s;
    }
  ok &= JT_LT_DBL(jt_norm1(G, n, n, n) / ((double)n * ulp), 30.0);
done:
  free(z);
  free(w);
  free(a);
  free(wref);
  free(G);
  free(R);
  free(V);
  free(A);
  return ok;
}

/* Sizes 1 .. 40 against bands 1, 2, 3, 4, 7, the default and one past n - 1: bands that
 * divide n and that do not, one stage-1 panel or many, and no stage 1 at all. */
void test_cpu_syev2s(void) {
  if (!jt_register_lapack()) return;
  static const int64_t sizes[] = {1, 2, 3, 5, 8, 13, 40};
  static const int64_t bands[] = {0, 1, 2, 3, 4, 7, 100};
  uint64_t seed = 501;
  for (size_t d = 0; d < 4; d++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (size_t b = 0; b < sizeof bands / sizeof bands[0]; b++)
        for (int vectors = 0; vectors < 2; vectors++)
          if (!syev2s_case(kDtypes[d], sizes[s], bands[b], vectors, seed++)) goto out;
  /* Larger than the default band: several panels of 32 columns. */
  syev2s_case(JAXMG_F64, 75, 0, 1, seed++);
  syev2s_case(JAXMG_C64, 70, 0, 1, seed++);
out:
  jt_context("%s", "");
}

/* NaN or Inf in the lower triangle: info 1 and nothing computed; n = 0 does nothing; a
 * negative band is refused. */
void test_cpu_syev2s_not_finite(void) {
  if (!jt_register_lapack()) return;
  enum { n = 6 };
  double a[n * n], w[n], z[n * n];
  int32_t info = -1;
  jaxmg_error_t err = {JAXMG_OK, ""};
  static const double bad[] = {NAN, INFINITY, -INFINITY};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    for (int i = 0; i < n * n; i++) a[i] = i % (n + 1) == 0 ? 2.0 : 0.5;
    a[4 + 1 * n] = bad[k];
    jaxmg_syev2s_t x = {JAXMG_F64, n, 2, 1, 1, a, w, z, &info};
    JT_EQ(jaxmg__cpu_syev2s(&x, &err), JAXMG_OK);
    JT_EQ(info, 1);
  }
  jaxmg_syev2s_t x = {JAXMG_F64, 0, 0, 1, 1, a, w, z, &info};
  info = -1;
  JT_EQ(jaxmg__cpu_syev2s(&x, &err), JAXMG_OK);
  JT_EQ(info, 0);
  x.n = n;
  x.band = -1;
  JT_EQ(jaxmg__cpu_syev2s(&x, &err), JAXMG_EINVAL);
  JT_STR_CONTAINS(err.msg, "band");
}
