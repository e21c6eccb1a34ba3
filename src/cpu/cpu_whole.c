/* CPU backend of potrs_whole, the one_device engine's potrs: position 0 assembles the whole
 * matrix from the participants' shards, copying only what a lower Cholesky reads (row j of a
 * shard from column j on: the shard read column-major is conj(A), its row j is column j of
 * the matrix M = conj(A) that is factored), factors and solves it alone; the others take x
 * and info from it. Memory: N x N on position 0 only. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

static jaxmg_status_t factor_solve(const jaxmg_cpu_ctx_t *c, int64_t *ginfo, jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  const jaxmg_cpu_kernels_t *k = c->k;
  const jaxmg_part_t *me = jaxmg__rv_slot(t->session, 0);
  const size_t esz = c->esz, N = (size_t)c->N, nloc = (size_t)t->lay.nloc;
  const int n = c->ld, nrhs = (int)t->nrhs;
  char *w = malloc(N * N * esz);
  if (!w) {
    return jaxmg__seterr(err, JAXMG_ENOMEM,
                         "jaxmg.%s: out of host memory for the %lld x %lld matrix", t->name,
                         (long long)N, (long long)N);
  }
  for (int64_t r = 0; r < c->P; r++) {
    const jaxmg_part_t *pr = jaxmg__rv_slot(t->session, (int)r);
    const char *a = pr->a;
    for (size_t i = 0; i < nloc; i++) {
      const size_t j = (size_t)r * nloc + i;
      memcpy(w + (j * N + j) * esz, a + (i * N + j) * esz, (N - j) * esz);
    }
  }
  int linfo = 0;
  k->potrf("L", &n, w, &n, &linfo);
  if (linfo == 0) {
    int64_t bad = jaxmg__first_nonfinite_diag(w, c->N, c->N, t->dtype);
    if (bad >= 0) linfo = (int)bad + 1;
  }
  jaxmg_status_t st = JAXMG_OK;
  if (linfo < 0) {
    st = jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.%s: %cpotrf rejected argument %d", t->name,
                       k->info->lapack, -linfo);
  } else if (linfo > 0) {
    *ginfo = linfo;
    jaxmg__fill_nan(me->x, c->N * t->nrhs, t->dtype);
  } else if (nrhs > 0) {
    memcpy(me->x, me->b, N * (size_t)nrhs * esz);
    k->trsm("L", "L", "N", "N", &n, &nrhs, k->one, w, &n, me->x, &n);
    k->trsm("L", "L", "C", "N", &n, &nrhs, k->one, w, &n, me->x, &n);
  }
  free(w);
  return st;
}

jaxmg_status_t jaxmg__cpu_potrs_whole(const jaxmg_cpu_ctx_t *c, int32_t *info,
                                      jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  const jaxmg_part_t *me = jaxmg__rv_slot(t->session, t->rank);
  const jaxmg_part_t *p0 = jaxmg__rv_slot(t->session, 0);
  jaxmg_status_t st;
  int64_t ginfo = 0;
  if (t->nrhs > INT_MAX) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: %lld right-hand sides exceed LAPACK's "
                         "32-bit range", t->name, (long long)t->nrhs);
  }
  if (t->rank == 0 && (st = factor_solve(c, &ginfo, err))) return st;
  /* Position 0 is done with every shard and its x is final; everyone learns info. No
   * deadline: position 0 is computing (a failure there is posted and ends this wait). */
  if ((st = jaxmg__rv_allmax(t->session, t->rank, 0, &ginfo, err))) return st;
  if (t->rank != 0 && t->nrhs > 0)
    memcpy(me->x, p0->x, (size_t)c->N * (size_t)t->nrhs * c->esz);
  *info = (int32_t)ginfo;
  /* Position 0 may not return (and let XLA reuse x) while another still copies it. */
  return jaxmg__rv_barrier(t->session, t->rank, -1, err);
}
