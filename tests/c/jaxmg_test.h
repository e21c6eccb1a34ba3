/* A small test harness for the C unit tests: one test list (test_main.c), checks that print
 * both values with file:line, a summary and a non-zero exit status on failure.
 *
 * Checks do not return: they record the failure and evaluate to 0, so a test can write
 * `if (!JT_EQ(a, b)) goto done;` where continuing makes no sense. They are thread-safe.
 *
 * Shared helpers (test_util.c): a seeded PRNG, LAPACK registration, dense matrices in
 * double complex for building inputs and measuring residuals in any of the four dtypes. */
#ifndef JAXMG_TESTS_C_JAXMG_TEST_H_
#define JAXMG_TESTS_C_JAXMG_TEST_H_

#include <complex.h>
#include <stddef.h>
#include <stdint.h>

#include "jaxmg/jaxmg.h"

/* complex.h defines I; keep that short name free. */
#undef I
#define JT_I _Complex_I

/* ---- the test list: X(name) runs void test_<name>(void) --------------------------------- */
#define JT_TESTS(X)                                                                        \
  /* test_layout.c */                                                                      \
  X(layout_init) X(layout_maps) X(layout_blocks) X(layout_moves) X(layout_moves_lower)      \
  X(layout_identity_moves)                                                                 \
  X(layout_padding)                                                                        \
  /* test_rendezvous.c */                                                                  \
  X(rv_bad_args) X(rv_meet) X(rv_allmax) X(rv_loop) X(rv_groups) X(rv_timeout)              \
  X(rv_tombstone) X(rv_fail) X(rv_slot_mismatch) X(rv_instances)                           \
  X(rv_join_two_steps)                                                                     \
  /* test_ffi_decode.c */                                                                  \
  X(ffi_metadata) X(ffi_stages) X(ffi_validation) X(ffi_no_run_id) X(ffi_potrs_one)         \
  X(ffi_potrs_two) X(ffi_syevd_two) X(ffi_faults) X(ffi_instances) X(ffi_op_table)        \
  X(ffi_targets) X(ffi_syevx) X(ffi_syev2s) X(ffi_no_kernel) X(ffi_attrs) X(ffi_alloc)    \
  /* test_cpu.c */                                                                         \
  X(cpu_lapack_names) X(cpu_potrs) X(cpu_potrf_solve) X(cpu_potri) X(cpu_syevd)             \
  X(cpu_not_pd) X(cpu_blas_threads) X(cpu_syev2s) X(cpu_syev2s_not_finite)                \
  /* test_mp.c */                                                                          \
  X(mp_configure) X(mp_meet) X(mp_timeout) X(mp_peer_dies) X(mp_two_jobs) X(mp_signature)  \
  /* test_workers.c */                                                                     \
  X(workers_grow)

#define JT_DECLARE(name) void test_##name(void);
JT_TESTS(JT_DECLARE)
#undef JT_DECLARE

/* ---- checks ------------------------------------------------------------------------------ */
int jt_check(int ok, const char *expr, const char *file, int line);
int jt_check_i64(int64_t a, int64_t b, const char *op, const char *ea, const char *eb,
                 const char *file, int line);
int jt_check_dbl(double a, double b, const char *op, const char *ea, const char *eb,
                 const char *file, int line);
int jt_check_contains(const char *hay, const char *needle, const char *eh, const char *file,
                      int line);
/* Adds context (the case being run) to the next failure messages of this thread. */
void jt_context(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#define JT_CHECK(c) jt_check((c) != 0, #c, __FILE__, __LINE__)
#define JT_EQ(a, b) jt_check_i64((int64_t)(a), (int64_t)(b), "==", #a, #b, __FILE__, __LINE__)
#define JT_NE(a, b) jt_check_i64((int64_t)(a), (int64_t)(b), "!=", #a, #b, __FILE__, __LINE__)
#define JT_LE(a, b) jt_check_i64((int64_t)(a), (int64_t)(b), "<=", #a, #b, __FILE__, __LINE__)
#define JT_LT(a, b) jt_check_i64((int64_t)(a), (int64_t)(b), "<", #a, #b, __FILE__, __LINE__)
#define JT_GE(a, b) jt_check_i64((int64_t)(a), (int64_t)(b), ">=", #a, #b, __FILE__, __LINE__)
/* Floating point: a < b (false for NaN). */
#define JT_LT_DBL(a, b) jt_check_dbl((double)(a), (double)(b), "<", #a, #b, __FILE__, __LINE__)
#define JT_STR_CONTAINS(s, sub) jt_check_contains((s), (sub), #s, __FILE__, __LINE__)

/* Failures recorded so far (all threads). */
int jt_failures(void);

/* ---- shared helpers (test_util.c) --------------------------------------------------------- */

/* splitmix64: deterministic, one state per user. */
uint64_t jt_rand(uint64_t *state);
/* Uniform in [lo, hi]. */
int64_t jt_rand_int(uint64_t *state, int64_t lo, int64_t hi);
/* Uniform in [-1, 1). */
double jt_rand_unit(uint64_t *state);

/* Registers the system LAPACK/BLAS for every routine the CPU backend names. Returns 1 on
 * success (checks recorded on failure). */
int jt_register_lapack(void);

/* Dense n x n (or n x k) matrices in double complex, column-major, for references. */
typedef double complex jt_c;

/* Random Hermitian positive definite A = G G^H / n + I (real when `cplx` is 0). */
jt_c *jt_random_hpd(int64_t n, int cplx, uint64_t *rng);
/* Random Hermitian matrix (real when `cplx` is 0). */
jt_c *jt_random_herm(int64_t n, int cplx, uint64_t *rng);
/* Random n x k matrix. */
jt_c *jt_random_mat(int64_t n, int64_t k, int cplx, uint64_t *rng);

/* 1-norm (max column sum of moduli) of an m x n column-major matrix with leading dim ld. */
double jt_norm1(const jt_c *a, int64_t m, int64_t n, int64_t ld);
/* C = A B (A m x k, B k x n, all column-major, tight). */
void jt_matmul(const jt_c *a, const jt_c *b, jt_c *c, int64_t m, int64_t k, int64_t n);

/* Element access in the four storage dtypes. */
jt_c jt_load(const void *p, int64_t i, jaxmg_dtype_t dt);
void jt_store(void *p, int64_t i, jaxmg_dtype_t dt, jt_c v);
/* Unit roundoff of the dtype's real type (LAPACK's dlamch('E')). */
double jt_eps(jaxmg_dtype_t dt);
int jt_is_complex(jaxmg_dtype_t dt);
const char *jt_dtype_name(jaxmg_dtype_t dt);
/* 1 when every element (both parts) is NaN. */
int jt_all_nan(const void *p, int64_t n, jaxmg_dtype_t dt);

/* Reference eigenvalues (ascending) of the Hermitian n x n matrix a, computed in double
 * precision with the system LAPACK (dsyevd / zheevd). Returns 0 on LAPACK failure. */
int jt_ref_eigenvalues(const jt_c *a, int64_t n, int cplx, double *w);
/* LAPACK info of the double-precision Cholesky factorization of a (dpotrf / zpotrf). */
int jt_ref_potrf_info(const jt_c *a, int64_t n, int cplx);

/* ---- the Python side's data layout (python/jaxmg/_potrs.py, _geometry.py) ------------------ */
/* Rounds a (n elements) to the precision of dt, in place (and drops the imaginary part for
 * real dtypes), so that references use exactly the stored values. */
void jt_round(jt_c *a, int64_t n, jaxmg_dtype_t dt);
/* Shard d: rows [d*nloc, (d+1)*nloc) of the n x n matrix a (column-major), row-major. */
void jt_make_shard(const jt_c *a, int64_t n, int64_t nloc, int64_t d, jaxmg_dtype_t dt,
                   void *shard);
/* Element (i, j) of the matrix whose rows the shards hold (rows of d = i / nloc). */
jt_c jt_shard_get(void *const *shards, int64_t n, int64_t nloc, int64_t i, int64_t j,
                  jaxmg_dtype_t dt);
/* Right-hand sides b (n x k, column-major) in the solver's order: c[g] = b[src(g)],
 * conjugated for complex dtypes; c is column-major n x k (= k x n row-major). */
void jt_rhs_to_solver(const jt_c *b, int64_t k, const jaxmg_layout_t *lay, jaxmg_dtype_t dt,
                      void *c);
/* The solution back: x[j] = y[dst(j)], conjugated for complex dtypes. */
void jt_solution_from_solver(const void *y, int64_t k, const jaxmg_layout_t *lay,
                             jaxmg_dtype_t dt, jt_c *x);
/* ||B - A X||_1 / (n ||A||_1 ||X||_1 eps) for A n x n, X and B n x k. */
double jt_solve_ratio(const jt_c *a, const jt_c *x, const jt_c *b, int64_t n, int64_t k,
                      jaxmg_dtype_t dt);

#endif
