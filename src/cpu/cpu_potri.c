/* CPU backend: inverse of a Hermitian positive definite matrix.
 *
 * After the distributed factorization M = L L^H (M = P^T conj(A) P), every participant solves
 * L L^H W = E for the identity columns of the solver indices it owns; those columns of inv(M),
 * with their rows put back in the original order, are exactly the rows of inv(A) that the
 * participant's shard held. The work is spread evenly and needs no communication beyond
 * reading the factor. */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

jaxmg_status_t jaxmg__cpu_potri(const jaxmg_cpu_ctx_t *c, int32_t *info, jaxmg_error_t *err) {
  const jaxmg_task_t *t = c->t;
  const jaxmg_layout_t *lay = &t->lay;
  const jaxmg_part_t *me = jaxmg__rv_slot(t->session, t->rank);
  const int64_t nloc = lay->nloc;
  const size_t colb = (size_t)c->N * c->esz, tb = (size_t)c->T * c->esz;
  int64_t ginfo = 0, *moves = NULL;
  void *stage = NULL;
  char *w = NULL;
  jaxmg_status_t st = JAXMG_OK;

  w = calloc((size_t)nloc, colb);
  if (!jaxmg_layout_is_identity(lay)) {
    moves = malloc(4 * (size_t)c->K * sizeof *moves);
    stage = malloc((size_t)nloc * tb);
  }
  if (!w || (!jaxmg_layout_is_identity(lay) && (!moves || !stage))) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory (%zu bytes of workspace)",
                       t->name, (size_t)nloc * colb);
    goto done;
  }
  if (moves) {
    int64_t nm = jaxmg_layout_moves(lay, 0, moves);
    jaxmg_layout_apply_moves_host(lay, moves, nm, me->a, c->N, nloc, c->esz, stage);
  }
  if ((st = jaxmg__rv_barrier(t->session, t->rank, -1, err))) goto done;
  if ((st = jaxmg__cpu_factor(c, &ginfo, err))) goto done;
  if (ginfo) {
    jaxmg__fill_nan(me->a, nloc * c->N, t->dtype);
    *info = (int32_t)ginfo;
    goto done;
  }
  /* W = identity columns g(rank, col) for the local columns; the real part of 1 is the first
   * component of every element type. */
  for (int64_t col = 0; col < nloc; col++) {
    int64_t g = jaxmg_layout_dst(lay, t->rank * nloc + col);
    char *e = w + (size_t)col * colb + (size_t)g * c->esz;
    memcpy(e, c->k->one, c->esz);
  }
  jaxmg__cpu_solve(c, w, (int)nloc);
  /* Everyone has finished reading the factor before shards are overwritten. */
  if ((st = jaxmg__rv_barrier(t->session, t->rank, -1, err))) goto done;
  for (int64_t col = 0; col < nloc; col++) {
    char *dst = (char *)me->a + (size_t)col * colb;
    const char *src = w + (size_t)col * colb;
    for (int64_t b = 0; b < c->K; b++)
      memcpy(dst + (size_t)jaxmg_layout_src_block(lay, b) * tb, src + (size_t)b * tb, tb);
  }
done:
  free(stage);
  free(moves);
  free(w);
  return st;
}
