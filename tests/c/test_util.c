/* Shared helpers of the C tests: PRNG, the system LAPACK, reference matrices and norms. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jaxmg_elem.h"
#include "jaxmg_test.h"

/* ---- the system LAPACK/BLAS (Fortran convention) ------------------------------------------ */
typedef void potrf_t(const char *uplo, const int *n, void *a, const int *lda, int *info);
typedef void trsm_t(const char *side, const char *uplo, const char *transa, const char *diag,
                    const int *m, const int *n, const void *alpha, const void *a, const int *lda,
                    void *b, const int *ldb);
typedef void herk_t(const char *uplo, const char *trans, const int *n, const int *k,
                    const void *alpha, const void *a, const int *lda, const void *beta, void *c,
                    const int *ldc);
typedef void gemm_t(const char *ta, const char *tb, const int *m, const int *n, const int *k,
                    const void *alpha, const void *a, const int *lda, const void *b,
                    const int *ldb, const void *beta, void *c, const int *ldc);
typedef void syevd_t(const char *jobz, const char *uplo, const int *n, void *a, const int *lda,
                     void *w, void *work, const int *lwork, int *iwork, const int *liwork,
                     int *info);
typedef void heevd_t(const char *jobz, const char *uplo, const int *n, void *a, const int *lda,
                     void *w, void *work, const int *lwork, void *rwork, const int *lrwork,
                     int *iwork, const int *liwork, int *info);
typedef void syevr_t(void); /* registered only: the library calls it through its own type */

#define JT_LAPACK(X)                                                                      \
  X(spotrf, potrf_t) X(dpotrf, potrf_t) X(cpotrf, potrf_t) X(zpotrf, potrf_t)           \
  X(strsm, trsm_t) X(dtrsm, trsm_t) X(ctrsm, trsm_t) X(ztrsm, trsm_t)                   \
  X(ssyrk, herk_t) X(dsyrk, herk_t) X(cherk, herk_t) X(zherk, herk_t)                   \
  X(sgemm, gemm_t) X(dgemm, gemm_t) X(cgemm, gemm_t) X(zgemm, gemm_t)                   \
  X(ssyevd, syevd_t) X(dsyevd, syevd_t) X(cheevd, heevd_t) X(zheevd, heevd_t)             \
  X(ssyevr, syevr_t) X(dsyevr, syevr_t) X(cheevr, syevr_t) X(zheevr, syevr_t)             \
  X(sgeqrf, syevr_t) X(dgeqrf, syevr_t) X(cgeqrf, syevr_t) X(zgeqrf, syevr_t)             \
  X(slarft, syevr_t) X(dlarft, syevr_t) X(clarft, syevr_t) X(zlarft, syevr_t)             \
  X(ssymv, syevr_t) X(dsymv, syevr_t) X(chemv, syevr_t) X(zhemv, syevr_t)                 \
  X(ssyr2, syevr_t) X(dsyr2, syevr_t) X(cher2, syevr_t) X(zher2, syevr_t)                 \
  X(sstedc, syevr_t) X(dstedc, syevr_t) X(ssterf, syevr_t) X(dsterf, syevr_t)

#define JT_DECLARE_FORTRAN(name, type) extern type name##_;
JT_LAPACK(JT_DECLARE_FORTRAN)
#undef JT_DECLARE_FORTRAN

typedef void (*jt_generic_fn)(void);
_Static_assert(sizeof(jt_generic_fn) == sizeof(void *), "function and data pointers differ");

/* ISO C has no cast between function and object pointers; the library takes void *. */
static void *fn_to_ptr(jt_generic_fn f) {
  void *p;
  memcpy(&p, &f, sizeof p);
  return p;
}

int jt_register_lapack(void) {
  static const struct {
    const char *name;
    jt_generic_fn fn;
  } table[] = {
#define JT_ENTRY(name, type) {#name, (jt_generic_fn)name##_},
      JT_LAPACK(JT_ENTRY)
#undef JT_ENTRY
  };
  const size_t n = sizeof table / sizeof table[0];
  int ok = 1;
  /* Every name the library asks for must be one we have, and registration must succeed. */
  const char *names = jaxmg_cpu_lapack_names();
  char buf[512];
  size_t len = strlen(names);
  if (!JT_LT(len, sizeof buf)) return 0;
  memcpy(buf, names, len + 1);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t i = 0;
    while (i < n && strcmp(table[i].name, tok) != 0) i++;
    jt_context("LAPACK routine %s", tok);
    if (!JT_LT(i, n)) {
      ok = 0;
      continue;
    }
    if (!JT_EQ(jaxmg_cpu_set_lapack(tok, fn_to_ptr(table[i].fn)), JAXMG_OK)) ok = 0;
  }
  jt_context("%s", "");
  return ok;
}

/* ---- PRNG -------------------------------------------------------------------------------- */
uint64_t jt_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t jt_rand_int(uint64_t *s, int64_t lo, int64_t hi) {
  return lo + (int64_t)(jt_rand(s) % (uint64_t)(hi - lo + 1));
}

double jt_rand_unit(uint64_t *s) { return (double)(jt_rand(s) >> 11) * 0x1.0p-52 - 1.0; }

/* ---- dense reference matrices ------------------------------------------------------------ */
jt_c *jt_random_mat(int64_t n, int64_t k, int cplx, uint64_t *rng) {
  jt_c *m = malloc((size_t)(n * k > 0 ? n * k : 1) * sizeof *m);
  if (!m) return NULL;
  for (int64_t i = 0; i < n * k; i++) {
    double re = jt_rand_unit(rng), im = cplx ? jt_rand_unit(rng) : 0.0;
    m[i] = CMPLX(re, im);
  }
  return m;
}

jt_c *jt_random_hpd(int64_t n, int cplx, uint64_t *rng) {
  jt_c *g = jt_random_mat(n, n, cplx, rng);
  jt_c *a = malloc((size_t)(n * n) * sizeof *a);
  if (!g || !a) {
    free(g);
    free(a);
    return NULL;
  }
  for (int64_t j = 0; j < n; j++) {
    for (int64_t i = 0; i <= j; i++) {
      jt_c s = 0;
      for (int64_t k = 0; k < n; k++) s += g[i + k * n] * conj(g[j + k * n]);
      s /= (double)n;
      if (i == j) {
        a[i + i * n] = creal(s) + 1.0;
      } else {
        a[i + j * n] = s;
        a[j + i * n] = conj(s);
      }
    }
  }
  free(g);
  return a;
}

jt_c *jt_random_herm(int64_t n, int cplx, uint64_t *rng) {
  jt_c *a = jt_random_mat(n, n, cplx, rng);
  if (!a) return NULL;
  for (int64_t j = 0; j < n; j++) {
    a[j + j * n] = creal(a[j + j * n]);
    for (int64_t i = j + 1; i < n; i++) a[j + i * n] = conj(a[i + j * n]);
  }
  return a;
}

double jt_norm1(const jt_c *a, int64_t m, int64_t n, int64_t ld) {
  double best = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double s = 0.0;
    for (int64_t i = 0; i < m; i++) s += cabs(a[i + j * ld]);
    if (s > best || isnan(s)) best = s;
  }
  return best;
}

void jt_matmul(const jt_c *a, const jt_c *b, jt_c *c, int64_t m, int64_t k, int64_t n) {
  for (int64_t j = 0; j < n; j++) {
    for (int64_t i = 0; i < m; i++) c[i + j * m] = 0;
    for (int64_t l = 0; l < k; l++) {
      jt_c blj = b[l + j * k];
      for (int64_t i = 0; i < m; i++) c[i + j * m] += a[i + l * m] * blj;
    }
  }
}

/* ---- the four storage dtypes ------------------------------------------------------------- */
jt_c jt_load(const void *p, int64_t i, jaxmg_dtype_t dt) { return elem_load(dt, p, (size_t)i); }

void jt_store(void *p, int64_t i, jaxmg_dtype_t dt, jt_c v) { elem_store(dt, p, (size_t)i, v); }

double jt_eps(jaxmg_dtype_t dt) {
  return (dt == JAXMG_F32 || dt == JAXMG_C64) ? FLT_EPSILON / 2 : DBL_EPSILON / 2;
}

int jt_is_complex(jaxmg_dtype_t dt) { return dt == JAXMG_C64 || dt == JAXMG_C128; }

const char *jt_dtype_name(jaxmg_dtype_t dt) {
  static const char *names[] = {"float32", "float64", "complex64", "complex128"};
  return (int)dt >= 0 && (int)dt < 4 ? names[dt] : "?";
}

int jt_all_nan(const void *p, int64_t n, jaxmg_dtype_t dt) {
  for (int64_t i = 0; i < n; i++) {
    jt_c v = jt_load(p, i, dt);
    if (!isnan(creal(v)) || (jt_is_complex(dt) && !isnan(cimag(v)))) return 0;
  }
  return 1;
}

/* ---- double-precision references from the system LAPACK ---------------------------------- */
int jt_ref_eigenvalues(const jt_c *a, int64_t n, int cplx, double *w) {
  const int nn = (int)n, query = -1;
  int info = 0, iwq = 0, ok = 0;
  void *copy = NULL, *work = NULL;
  double *rwork = NULL;
  int *iwork = NULL;
  if (cplx) {
    jt_c wq = 0;
    double rwq = 0;
    copy = malloc((size_t)(n * n) * sizeof(jt_c));
    if (!copy) goto done;
    memcpy(copy, a, (size_t)(n * n) * sizeof(jt_c));
    zheevd_("N", "L", &nn, copy, &nn, w, &wq, &query, &rwq, &query, &iwq, &query, &info);
    int lwork = (int)creal(wq) + 1, lrwork = (int)rwq + 1, liwork = iwq + 1;
    work = malloc((size_t)lwork * sizeof(jt_c));
    rwork = malloc((size_t)lrwork * sizeof(double));
    iwork = malloc((size_t)liwork * sizeof(int));
    if (!work || !rwork || !iwork) goto done;
    zheevd_("N", "L", &nn, copy, &nn, w, work, &lwork, rwork, &lrwork, iwork, &liwork, &info);
  } else {
    double wq = 0;
    double *d = malloc((size_t)(n * n) * sizeof(double));
    copy = d;
    if (!d) goto done;
    for (int64_t i = 0; i < n * n; i++) d[i] = creal(a[i]);
    dsyevd_("N", "L", &nn, d, &nn, w, &wq, &query, &iwq, &query, &info);
    int lwork = (int)wq + 1, liwork = iwq + 1;
    work = malloc((size_t)lwork * sizeof(double));
    iwork = malloc((size_t)liwork * sizeof(int));
    if (!work || !iwork) goto done;
    dsyevd_("N", "L", &nn, d, &nn, w, work, &lwork, iwork, &liwork, &info);
  }
  ok = info == 0;
done:
  free(iwork);
  free(rwork);
  free(work);
  free(copy);
  return ok;
}

int jt_ref_potrf_info(const jt_c *a, int64_t n, int cplx) {
  const int nn = (int)n;
  int info = -1000;
  if (cplx) {
    jt_c *copy = malloc((size_t)(n * n) * sizeof *copy);
    if (!copy) return info;
    memcpy(copy, a, (size_t)(n * n) * sizeof *copy);
    zpotrf_("L", &nn, copy, &nn, &info);
    free(copy);
  } else {
    double *d = malloc((size_t)(n * n) * sizeof *d);
    if (!d) return info;
    for (int64_t i = 0; i < n * n; i++) d[i] = creal(a[i]);
    dpotrf_("L", &nn, d, &nn, &info);
    free(d);
  }
  return info;
}

/* ---- the Python side's data layout --------------------------------------------------------- */
void jt_round(jt_c *a, int64_t n, jaxmg_dtype_t dt) {
  for (int64_t i = 0; i < n; i++) {
    double re = creal(a[i]), im = jt_is_complex(dt) ? cimag(a[i]) : 0.0;
    if (dt == JAXMG_F32 || dt == JAXMG_C64) re = (float)re, im = (float)im;
    a[i] = CMPLX(re, im);
  }
}

void jt_make_shard(const jt_c *a, int64_t n, int64_t nloc, int64_t d, jaxmg_dtype_t dt,
                   void *shard) {
  for (int64_t r = 0; r < nloc; r++)
    for (int64_t j = 0; j < n; j++) jt_store(shard, r * n + j, dt, a[(d * nloc + r) + j * n]);
}

jt_c jt_shard_get(void *const *shards, int64_t n, int64_t nloc, int64_t i, int64_t j,
                  jaxmg_dtype_t dt) {
  return jt_load(shards[i / nloc], (i % nloc) * n + j, dt);
}

void jt_rhs_to_solver(const jt_c *b, int64_t k, const jaxmg_layout_t *lay, jaxmg_dtype_t dt,
                      void *c) {
  const int64_t n = lay->n;
  for (int64_t col = 0; col < k; col++)
    for (int64_t g = 0; g < n; g++) {
      jt_c v = b[jaxmg_layout_src(lay, g) + col * n];
      jt_store(c, g + col * n, dt, jt_is_complex(dt) ? conj(v) : v);
    }
}

void jt_solution_from_solver(const void *y, int64_t k, const jaxmg_layout_t *lay,
                             jaxmg_dtype_t dt, jt_c *x) {
  const int64_t n = lay->n;
  for (int64_t col = 0; col < k; col++)
    for (int64_t j = 0; j < n; j++) {
      jt_c v = jt_load(y, jaxmg_layout_dst(lay, j) + col * n, dt);
      x[j + col * n] = jt_is_complex(dt) ? conj(v) : v;
    }
}

double jt_solve_ratio(const jt_c *a, const jt_c *x, const jt_c *b, int64_t n, int64_t k,
                      jaxmg_dtype_t dt) {
  jt_c *r = malloc((size_t)(n * k > 0 ? n * k : 1) * sizeof *r);
  if (!r) return INFINITY;
  jt_matmul(a, x, r, n, n, k);
  for (int64_t i = 0; i < n * k; i++) r[i] = b[i] - r[i];
  double num = jt_norm1(r, n, k, n), den = (double)n * jt_norm1(a, n, n, n) * jt_norm1(x, n, k, n);
  free(r);
  if (isnan(num) || isnan(den)) return NAN;
  return den > 0 ? num / (den * jt_eps(dt)) : (num > 0 ? INFINITY : 0.0);
}
