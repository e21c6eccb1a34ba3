/* LAPACK/BLAS for the CPU backend, as function pointers (Fortran convention, 32-bit int).
 * One X-macro list over the four precisions generates the table; every algorithm is written
 * once against jaxmg_cpu_kernels_t. */
#ifndef JAXMG_CPU_LAPACK_H_
#define JAXMG_CPU_LAPACK_H_

#include "common/common.h"

/* All arguments by pointer, as Fortran passes them; the element type is erased to void. */
typedef void (*jaxmg_potrf_fn)(const char *uplo, const int *n, void *a, const int *lda, int *info);
typedef void (*jaxmg_trsm_fn)(const char *side, const char *uplo, const char *transa,
                              const char *diag, const int *m, const int *n, const void *alpha,
                              const void *a, const int *lda, void *b, const int *ldb);
typedef void (*jaxmg_herk_fn)(const char *uplo, const char *trans, const int *n, const int *k,
                              const void *alpha, const void *a, const int *lda, const void *beta,
                              void *c, const int *ldc);
typedef void (*jaxmg_gemm_fn)(const char *ta, const char *tb, const int *m, const int *n,
                              const int *k, const void *alpha, const void *a, const int *lda,
                              const void *b, const int *ldb, const void *beta, void *c,
                              const int *ldc);
typedef void (*jaxmg_syevd_fn)(const char *jobz, const char *uplo, const int *n, void *a,
                               const int *lda, void *w, void *work, const int *lwork, int *iwork,
                               const int *liwork, int *info);
typedef void (*jaxmg_heevd_fn)(const char *jobz, const char *uplo, const int *n, void *a,
                               const int *lda, void *w, void *work, const int *lwork, void *rwork,
                               const int *lrwork, int *iwork, const int *liwork, int *info);
/* ?syevr / ?heevr: eigenvalues il..iu (1-based, inclusive) by relatively robust
 * representations; vl, vu and abstol are reals of the element's real type. */
typedef void (*jaxmg_syevr_fn)(const char *jobz, const char *range, const char *uplo,
                               const int *n, void *a, const int *lda, const void *vl,
                               const void *vu, const int *il, const int *iu, const void *abstol,
                               int *m, void *w, void *z, const int *ldz, int *isuppz, void *work,
                               const int *lwork, int *iwork, const int *liwork, int *info);
typedef void (*jaxmg_heevr_fn)(const char *jobz, const char *range, const char *uplo,
                               const int *n, void *a, const int *lda, const void *vl,
                               const void *vu, const int *il, const int *iu, const void *abstol,
                               int *m, void *w, void *z, const int *ldz, int *isuppz, void *work,
                               const int *lwork, void *rwork, const int *lrwork, int *iwork,
                               const int *liwork, int *info);
/* The two-stage eigensolver's building blocks (src/cpu/cpu_syev2s.c): a blocked QR, the
 * triangular factor of a block reflector, the Hermitian matrix-vector product and rank-2
 * update (symv / syr2 for real types), and the tridiagonal solvers of the real type. */
typedef void (*jaxmg_geqrf_fn)(const int *m, const int *n, void *a, const int *lda, void *tau,
                               void *work, const int *lwork, int *info);
typedef void (*jaxmg_larft_fn)(const char *direct, const char *storev, const int *n,
                               const int *k, const void *v, const int *ldv, const void *tau,
                               void *t, const int *ldt);
typedef void (*jaxmg_hemv_fn)(const char *uplo, const int *n, const void *alpha, const void *a,
                              const int *lda, const void *x, const int *incx, const void *beta,
                              void *y, const int *incy);
typedef void (*jaxmg_her2_fn)(const char *uplo, const int *n, const void *alpha, const void *x,
                              const int *incx, const void *y, const int *incy, void *a,
                              const int *lda);
typedef void (*jaxmg_stedc_fn)(const char *compz, const int *n, void *d, void *e, void *z,
                               const int *ldz, void *work, const int *lwork, int *iwork,
                               const int *liwork, int *info);
typedef void (*jaxmg_sterf_fn)(const int *n, void *d, void *e, int *info);

typedef struct {
  const jaxmg_dtype_info_t *info;
  jaxmg_potrf_fn potrf;
  jaxmg_trsm_fn trsm;
  jaxmg_herk_fn herk;   /* syrk for real types */
  jaxmg_gemm_fn gemm;
  jaxmg_syevd_fn syevd; /* real types */
  jaxmg_heevd_fn heevd; /* complex types */
  jaxmg_syevr_fn syevr; /* real types */
  jaxmg_heevr_fn heevr; /* complex types */
  jaxmg_geqrf_fn geqrf;
  jaxmg_larft_fn larft;
  jaxmg_hemv_fn hemv;   /* symv for real types */
  jaxmg_her2_fn her2;   /* syr2 for real types */
  jaxmg_stedc_fn stedc; /* of the real type: sstedc also in the complex64 table */
  jaxmg_sterf_fn sterf; /* of the real type */
  const void *one, *mone; /* 1 and -1 in the element type */
  const void *rone, *rmone; /* 1 and -1 in the real type (herk/syrk scalars) */
  const void *zero;
} jaxmg_cpu_kernels_t;

/* A BLAS's thread-local thread count setter: sets this thread's count, returns the previous. */
typedef int (*jaxmg_cpu_threads_fn)(int threads);

/* Around one participant's kernels: this thread's BLAS threads set to its share of the cores
 * when `computing` participants compute at once (cores / computing, at least 1); returns
 * what to hand to jaxmg__cpu_threads_end (-1: nothing was set: no setter registered). */
int jaxmg__cpu_threads_begin(int computing);
void jaxmg__cpu_threads_end(int previous);

/* A workspace size that a LAPACK query returned at p, as a floating-point value of the real
 * type (real_size 4 or 8): at least 1, rounded up. */
int jaxmg__cpu_work_size(const void *p, size_t real_size);

/* The kernels of dtype dt, or JAXMG_EUNAVAIL naming the first routine not registered;
 * need_evd: 1 also requires ?syevd/?heevd, 2 ?syevr/?heevr, 3 the two-stage solver's
 * (?geqrf, ?larft, ?symv/?hemv, ?syr2/?her2, and ?stedc, ?sterf of the real type). */
jaxmg_status_t jaxmg__cpu_kernels(jaxmg_dtype_t dt, int need_evd, const jaxmg_cpu_kernels_t **out,
                                  const char *op, jaxmg_error_t *err);

#endif
