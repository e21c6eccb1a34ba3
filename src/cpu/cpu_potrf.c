/* CPU backend: distributed Cholesky factorization and solve (potrf, potrs, cho_solve). */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

static const jaxmg_part_t *part(const jaxmg_cpu_ctx_t *c, int64_t r) {
  return jaxmg__rv_slot(c->t->session, (int)r);
}

char *jaxmg__cpu_at(const jaxmg_cpu_ctx_t *c, int64_t j, int64_t row) {
  char *base = part(c, j % c->P)->a;
  return base + ((size_t)(j / c->P) * (size_t)c->T * (size_t)c->N + (size_t)row) * c->esz;
}

jaxmg_status_t jaxmg__cpu_factor(const jaxmg_cpu_ctx_t *c, int64_t *ginfo, jaxmg_error_t *err) {
  const jaxmg_cpu_kernels_t *k = c->k;
  jaxmg_session_t *s = c->t->session;
  const int rank = c->t->rank, T = (int)c->T, ld = c->ld;
  jaxmg_status_t st;
  *ginfo = 0;
  for (int64_t kk = 0; kk < c->K; kk++) {
    int64_t finfo = 0; /* failing pivot of this step, original 1-based index */
    if (kk % c->P == rank) {
      char *D = jaxmg__cpu_at(c, kk, kk * c->T);
      int linfo = 0;
      k->potrf("L", &T, D, &ld, &linfo);
      if (linfo == 0) {
        int64_t bad = jaxmg__first_nonfinite_diag(D, c->T, c->N, c->t->dtype);
        if (bad >= 0) linfo = (int)bad + 1;
      }
      if (linfo > 0) {
        finfo = jaxmg_layout_src(&c->t->lay, kk * c->T + linfo - 1) + 1;
      } else if (linfo < 0) {
        return jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.%s: %cpotrf rejected argument %d", c->t->name,
                             k->info->lapack, -linfo);
      } else if (kk < c->K - 1) {
        int m = (int)(c->N - (kk + 1) * c->T);
        k->trsm("R", "L", "C", "N", &m, &T, k->one, D, &ld, D + (size_t)T * c->esz, &ld);
      }
    }
    if ((st = jaxmg__rv_allmax(s, rank, -1, &finfo, err))) return st;
    if (finfo) {
      *ginfo = finfo;
      break;
    }
    /* First tile column right of kk that this participant owns. */
    int64_t j0 = kk + 1 + ((rank - (kk + 1) % c->P) + c->P) % c->P;
    for (int64_t j = j0; j < c->K; j += c->P) {
      const char *Ljk = jaxmg__cpu_at(c, kk, j * c->T);
      k->herk("L", "N", &T, &T, k->rmone, Ljk, &ld, k->rone, jaxmg__cpu_at(c, j, j * c->T), &ld);
      if (j < c->K - 1) {
        int m = (int)(c->N - (j + 1) * c->T);
        k->gemm("N", "C", &m, &T, &T, k->mone, jaxmg__cpu_at(c, kk, (j + 1) * c->T), &ld, Ljk, &ld,
                k->one, jaxmg__cpu_at(c, j, (j + 1) * c->T), &ld);
      }
    }
  }
  return JAXMG_OK;
}

void jaxmg__cpu_solve(const jaxmg_cpu_ctx_t *c, void *y, int nc) {
  const jaxmg_cpu_kernels_t *k = c->k;
  const int T = (int)c->T, ld = c->ld;
  char *Y = y;
  const size_t rowb = c->esz;
  for (int64_t kk = 0; kk < c->K; kk++) { /* L Z = Y */
    k->trsm("L", "L", "N", "N", &T, &nc, k->one, jaxmg__cpu_at(c, kk, kk * c->T), &ld,
            Y + (size_t)(kk * c->T) * rowb, &ld);
    if (kk < c->K - 1) {
      int m = (int)(c->N - (kk + 1) * c->T);
      k->gemm("N", "N", &m, &nc, &T, k->mone, jaxmg__cpu_at(c, kk, (kk + 1) * c->T), &ld,
              Y + (size_t)(kk * c->T) * rowb, &ld, k->one, Y + (size_t)((kk + 1) * c->T) * rowb, &ld);
    }
  }
  for (int64_t kk = c->K - 1; kk >= 0; kk--) { /* L^H X = Z, one tile column of L at a time */
    if (kk < c->K - 1) {
      int m = (int)(c->N - (kk + 1) * c->T);
      k->gemm("C", "N", &T, &nc, &m, k->mone, jaxmg__cpu_at(c, kk, (kk + 1) * c->T), &ld,
              Y + (size_t)((kk + 1) * c->T) * rowb, &ld, k->one, Y + (size_t)(kk * c->T) * rowb, &ld);
    }
    k->trsm("L", "L", "C", "N", &T, &nc, k->one, jaxmg__cpu_at(c, kk, kk * c->T), &ld,
            Y + (size_t)(kk * c->T) * rowb, &ld);
  }
}

/* Permutes this participant's shard into the block-cyclic order (local, in place). */
static jaxmg_status_t permute_own(const jaxmg_cpu_ctx_t *c, jaxmg_error_t *err) {
  const jaxmg_layout_t *lay = &c->t->lay;
  if (jaxmg_layout_is_identity(lay)) return JAXMG_OK;
  int64_t *moves = malloc(4 * (size_t)c->K * sizeof *moves);
  void *stage = malloc((size_t)c->T * (size_t)lay->nloc * c->esz);
  jaxmg_status_t st = JAXMG_OK;
  if (!moves || !stage) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory for the layout staging",
                       c->t->name);
    goto done;
  }
  int64_t nm = jaxmg_layout_moves(lay, 0, moves);
  jaxmg_layout_apply_moves_host(lay, moves, nm, part(c, c->t->rank)->a, c->N, lay->nloc, c->esz,
                                stage);
done:
  free(stage);
  free(moves);
  return st;
}

/* Solves for this participant's share of the right-hand sides, then gathers the others'. */
static jaxmg_status_t solve_rhs(const jaxmg_cpu_ctx_t *c, int64_t ginfo, jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  const jaxmg_part_t *me = part(c, t->rank);
  int64_t nrhs = t->nrhs, chunk = (nrhs + c->P - 1) / c->P;
  size_t colb = (size_t)c->N * c->esz;
  jaxmg_status_t st;
  if (nrhs == 0) return JAXMG_OK;
  if (ginfo) {
    jaxmg__fill_nan(me->x, c->N * nrhs, t->dtype);
    return JAXMG_OK;
  }
  int64_t c0 = t->rank * chunk, c1 = c0 + chunk < nrhs ? c0 + chunk : nrhs;
  if (c1 > c0) {
    memcpy((char *)me->x + (size_t)c0 * colb, (const char *)me->b + (size_t)c0 * colb,
           (size_t)(c1 - c0) * colb);
    jaxmg__cpu_solve(c, (char *)me->x + (size_t)c0 * colb, (int)(c1 - c0));
  }
  if ((st = jaxmg__rv_barrier(t->session, t->rank, -1, err))) return st;
  for (int64_t r = 0; r < c->P; r++) {
    int64_t r0 = r * chunk, r1 = r0 + chunk < nrhs ? r0 + chunk : nrhs;
    if (r == t->rank || r1 <= r0) continue;
    memcpy((char *)me->x + (size_t)r0 * colb, (const char *)part(c, r)->x + (size_t)r0 * colb,
           (size_t)(r1 - r0) * colb);
  }
  /* Nobody may return (and let XLA reuse its buffers) while another still reads them. */
  return jaxmg__rv_barrier(t->session, t->rank, -1, err);
}

jaxmg_status_t jaxmg__cpu_potrs(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  jaxmg_status_t st;
  int64_t ginfo = 0;
  if (jaxmg__op_has(t->op, JAXMG_OPF_FACTOR)) {
    if ((st = permute_own(c, err))) return st;
    if ((st = jaxmg__rv_barrier(t->session, t->rank, -1, err))) return st;
    if ((st = jaxmg__cpu_factor(c, &ginfo, err))) return st;
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_B) && (st = solve_rhs(c, ginfo, err))) return st;
  if (ginfo) jaxmg__fill_nan(part(c, t->rank)->a, t->lay.nloc * c->N, t->dtype);
  *info = (int32_t)ginfo;
  return JAXMG_OK;
}
