/* CPU backend: Hermitian eigendecomposition.
 *
 * The dense eigensolver is not distributed on the CPU: the participant at mesh position 0
 * assembles the matrix from the shards (a copy of N^2 elements), calls LAPACK's divide and
 * conquer (?syevd/?heevd), and writes each participant's share of the eigenvectors back into
 * its shard, in the same block-cyclic arrangement as the GPU backend returns them: row c of
 * the shard of device d holds conj(v_e) for e = g(d, c). The whole-matrix ops (the
 * one_device engine) return instead what the CUDA backend's do: rows [d nloc, (d + 1) nloc) of the
 * column-major eigenvector matrix, as an N x nloc row-major block. The others wait for it. */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

static jaxmg_status_t evd(const jaxmg_cpu_ctx_t *c, char jobz, void *a, void *w, int *linfo,
                          jaxmg_error_t *err) {
  const jaxmg_cpu_kernels_t *k = c->k;
  const int n = (int)c->N, lda = c->ld, query = -1;
  int liwork = 0, iwq = 0, lwork, lrwork = 0;
  double wq[2] = {0, 0}, rwq = 0; /* room for one element of any type */
  void *work = NULL, *rwork = NULL;
  int *iwork = NULL;
  jaxmg_status_t st = JAXMG_OK;
  if (k->info->is_complex) {
    k->heevd(&jobz, "L", &n, a, &lda, w, wq, &query, &rwq, &query, &iwq, &query, linfo);
  } else {
    k->syevd(&jobz, "L", &n, a, &lda, w, wq, &query, &iwq, &query, linfo);
  }
  /* Workspace sizes come back as floating-point values of the element's real type. */
  lwork = jaxmg__cpu_work_size(wq, k->info->real_size);
  lrwork = jaxmg__cpu_work_size(&rwq, k->info->real_size);
  liwork = iwq + 1;
  work = malloc((size_t)lwork * k->info->size);
  rwork = malloc((size_t)lrwork * k->info->real_size);
  iwork = malloc((size_t)liwork * sizeof *iwork);
  if (!work || !rwork || !iwork) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory for the eigensolver",
                       c->t->name);
    goto done;
  }
  if (k->info->is_complex) {
    k->heevd(&jobz, "L", &n, a, &lda, w, work, &lwork, rwork, &lrwork, iwork, &liwork, linfo);
  } else {
    k->syevd(&jobz, "L", &n, a, &lda, w, work, &lwork, iwork, &liwork, linfo);
  }
  if (*linfo < 0) {
    st = jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.%s: %c%s rejected argument %d", c->t->name,
                       k->info->lapack, k->info->is_complex ? "heevd" : "syevd", -*linfo);
  }
done:
  free(iwork);
  free(rwork);
  free(work);
  return st;
}

jaxmg_status_t jaxmg__cpu_syevd(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  const jaxmg_layout_t *lay = &t->lay;
  const int vectors = jaxmg__op_has(t->op, JAXMG_OPF_VECTORS);
  const int whole = jaxmg__op_has(t->op, JAXMG_OPF_WHOLE);
  const size_t rowb = (size_t)lay->nloc * c->esz;
  const size_t colb = (size_t)c->N * c->esz, wb = (size_t)c->N * c->k->info->real_size;
  int64_t ginfo = 0;
  jaxmg_status_t st = JAXMG_OK;
  if (t->rank == 0) {
    char *full = malloc((size_t)c->N * colb);
    const jaxmg_part_t *p0 = jaxmg__rv_slot(t->session, 0);
    int linfo = 0;
    if (!full) {
      st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory (%zu bytes)", t->name,
                         (size_t)c->N * colb);
    } else {
      /* Column j of the column-major view of A^T is row j of A: the rows of the shards. */
      for (int64_t d = 0; d < c->P; d++) {
        const jaxmg_part_t *p = jaxmg__rv_slot(t->session, (int)d);
        memcpy(full + (size_t)(d * lay->nloc) * colb, p->a, (size_t)lay->nloc * colb);
      }
      st = evd(c, vectors ? 'V' : 'N', full, p0->w, &linfo, err);
    }
    if (!st) {
      ginfo = linfo;
      for (int64_t d = 0; d < c->P; d++) {
        const jaxmg_part_t *p = jaxmg__rv_slot(t->session, (int)d);
        if (linfo) {
          jaxmg__fill_nan(p->w, c->N, t->dtype == JAXMG_C64 ? JAXMG_F32
                                      : t->dtype == JAXMG_C128 ? JAXMG_F64 : t->dtype);
          if (vectors) jaxmg__fill_nan(p->a, lay->nloc * c->N, t->dtype);
          continue;
        }
        if (d) memcpy(p->w, p0->w, wb);
        for (int64_t j = 0; vectors && whole && j < c->N; j++)
          memcpy((char *)p->a + (size_t)j * rowb, full + (size_t)j * colb + (size_t)d * rowb, rowb);
        for (int64_t col = 0; vectors && !whole && col < lay->nloc; col++) {
          int64_t e = jaxmg_layout_dst(lay, d * lay->nloc + col);
          memcpy((char *)p->a + (size_t)col * colb, full + (size_t)e * colb, colb);
        }
      }
    }
    free(full);
    if (st) return st;
  }
  /* The others wait while position 0 computes: no deadline on this wait. */
  if ((st = jaxmg__rv_allmax(t->session, t->rank, 0, &ginfo, err))) return st;
  *info = (int32_t)ginfo;
  return JAXMG_OK;
}
