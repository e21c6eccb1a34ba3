/* CPU backend of the device-local subset eigensolver: LAPACK's ?syevr / ?heevr (relatively
 * robust representations) for eigenpairs il..iu only. It reduces the matrix to tridiagonal
 * form (4/3 n^3 flops, as the full solver does), then computes k eigenpairs of the
 * tridiagonal matrix in O(n k) and back-transforms only those k vectors (2 n^2 k), where
 * ?syevd's divide and conquer and back-transformation of all n vectors cost about 3 n^3
 * more. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

static void call(const jaxmg_cpu_kernels_t *k, const jaxmg_syevx_t *x, int lwork,
                 int lrwork, int liwork, void *work, void *rwork, int *iwork,
                 void *wall, int *isuppz, int *m, int *linfo) {
  const int n = (int)x->n, lda = n, il = (int)x->lo + 1, iu = (int)x->hi;
  const int ldz = x->vectors ? n : 1;
  const char jobz = x->vectors ? 'V' : 'N';
  const double zero[2] = {0, 0}; /* vl, vu (unused with range 'I'), abstol: any real type */
  char dummy[16];
  void *z = x->vectors ? x->z : dummy;
  if (k->info->is_complex) {
    k->heevr(&jobz, "I", "L", &n, x->a, &lda, zero, zero, &il, &iu, zero, m, wall, z, &ldz,
             isuppz, work, &lwork, rwork, &lrwork, iwork, &liwork, linfo);
  } else {
    k->syevr(&jobz, "I", "L", &n, x->a, &lda, zero, zero, &il, &iu, zero, m, wall, z, &ldz,
             isuppz, work, &lwork, iwork, &liwork, linfo);
  }
}

jaxmg_status_t jaxmg__cpu_syevx(const jaxmg_syevx_t *x, jaxmg_error_t *err) {
  const jaxmg_cpu_kernels_t *k = NULL;
  jaxmg_status_t st = jaxmg__cpu_kernels(x->dtype, 2, &k, "eigh", err);
  if (st) return st;
  *x->info = 0;
  const int64_t want = x->hi - x->lo;
  if (x->n == 0 || want == 0) return JAXMG_OK;
  if (x->n > INT_MAX / 2) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: n = %lld exceeds LAPACK's 32-bit range",
                         (long long)x->n);
  }
  const size_t rsz = k->info->real_size, esz = k->info->size, n = (size_t)x->n;
  double wq[2] = {0, 0}, rwq = 0; /* room for one element of any type */
  int iwq = 0, m = 0, linfo = 0;
  int *isuppz = malloc(2 * (size_t)want * sizeof(int));
  void *wall = malloc(n * rsz);
  if (!isuppz || !wall) {
    free(isuppz);
    free(wall);
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.eigh: out of host memory");
  }
  call(k, x, -1, -1, -1, wq, &rwq, &iwq, wall, isuppz, &m, &linfo);
  const int lwork = jaxmg__cpu_work_size(wq, rsz), liwork = iwq > 1 ? iwq : 1;
  const int lrwork = k->info->is_complex ? jaxmg__cpu_work_size(&rwq, rsz) : 1;
  void *work = malloc((size_t)lwork * esz);
  void *rwork = malloc((size_t)lrwork * rsz);
  int *iwork = malloc((size_t)liwork * sizeof(int));
  if (!work || !rwork || !iwork) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.eigh: out of host memory for the workspace");
  } else {
    const int threads = jaxmg__cpu_threads_begin(x->parts > 0 ? x->parts : 1);
    call(k, x, lwork, lrwork, liwork, work, rwork, iwork, wall, isuppz, &m, &linfo);
    jaxmg__cpu_threads_end(threads);
    if (linfo < 0) {
      st = jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.eigh: %c%s rejected argument %d",
                         k->info->lapack, k->info->is_complex ? "heevr" : "syevr", -linfo);
    } else if (linfo > 0 || m != (int)want) {
      *x->info = linfo > 0 ? linfo : (int32_t)x->n + 1;
    } else {
      memcpy(x->w, wall, (size_t)want * rsz);
    }
  }
  free(work);
  free(rwork);
  free(iwork);
  free(isuppz);
  free(wall);
  return st;
}
