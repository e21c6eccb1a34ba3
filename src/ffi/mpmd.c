/* One process per device (MPMD) on one node: the leader computes through proxies.
 *
 * The process that holds mesh position 0 of a group is the leader. Every participant in
 * another process copies its operands into memory the leader can map (a shared-memory
 * segment on CPU, a CUDA IPC buffer on GPU: the platform's mp_export), publishes where it is
 * in the call's segment (src/common/mp.c) and waits. The leader's position-0 thread waits for
 * them, maps each remote participant's memory (mp_import) and starts one proxy thread per
 * remote position; a proxy joins the ordinary in-process rendezvous with the mapped pointers
 * and runs the ordinary backend code for that position (pf->run), exactly as the thread XLA
 * would run for a local device. Participants of the leader's own process take the ordinary
 * path. When every proxy has finished (and its device work is complete), the leader posts
 * "done"; the others copy their results back (mp_collect) and return. Any failure is posted
 * to the segment, so every process fails with the same message. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/mp.h"
#include "ffi/dispatch.h"

static size_t align_up(size_t x) { return (x + 255) / 256 * 256; }

void jaxmg__mp_exchange(const jaxmg_task_t *t, jaxmg_mp_exchange_t *ex) {
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(t->dtype);
  const size_t n = (size_t)t->lay.n;
  size_t off;
  memset(ex, 0, sizeof *ex);
  ex->a_bytes = (size_t)t->lay.nloc * n * di->size;
  off = align_up(ex->a_bytes);
  if (jaxmg__op_has(t->op, JAXMG_OPF_B)) {
    ex->b_bytes = ex->x_bytes = (size_t)t->nrhs * n * di->size;
    ex->b = off;
    off += align_up(ex->b_bytes);
    ex->x = off;
    off += align_up(ex->x_bytes);
  }
  if (jaxmg__op_has(t->op, JAXMG_OPF_W)) {
    ex->w_bytes = n * di->real_size;
    ex->w = off;
    off += align_up(ex->w_bytes);
  }
  ex->info = off;
  ex->total = off + 256;
}

static void data_name(const jaxmg_mp_call_t *c, int rank, char *buf, size_t len) {
  snprintf(buf, len, "%s-r%d", jaxmg__mp_name(c), rank);
}

static jaxmg_mp_join_t mp_join_of(const jaxmg_task_t *t, const jaxmg_attrs_t *at,
                                  int32_t group, const int32_t *procs) {
  jaxmg_mp_join_t j;
  memset(&j, 0, sizeof j);
  j.site = at->site;
  j.group = group;
  j.nparts = (int)t->lay.ndev;
  j.rank = t->rank;
  j.timeout_ms = at->timeout_ms;
  j.op = t->name;
  j.procs = procs;
  j.sig[0] = t->op;
  j.sig[1] = t->dtype;
  j.sig[2] = t->lay.n;
  j.sig[3] = t->lay.nloc;
  j.sig[4] = t->lay.tile;
  j.sig[5] = t->nrhs;
  return j;
}

/* The in-process rendezvous entry of position `rank` (slot: its pointers). */
static jaxmg_join_t join_of(const jaxmg_task_t *t, const jaxmg_attrs_t *at, int64_t run_id,
                            int64_t instance, int32_t group, int rank, const jaxmg_part_t *slot) {
  const jaxmg_join_t j = {.run_id = run_id,
                          .site = at->site,
                          .instance = instance,
                          .group = group,
                          .nparts = (int)t->lay.ndev,
                          .rank = rank,
                          .timeout_ms = at->timeout_ms,
                          .op = t->name,
                          .slot = slot,
                          .slot_size = sizeof *slot};
  return j;
}

/* ---- the leader ---------------------------------------------------------------------------- */
typedef struct {
  jaxmg_task_t t; /* t.rank: the remote position */
  jaxmg_part_t part;
  void *state;
  const jaxmg_platform_t *pf;
  jaxmg_join_t j;
  int imported, started;
  pthread_t th;
  jaxmg_status_t st;
  jaxmg_error_t err;
} proxy_t;

/* One remote position, run in the leader's process as XLA would run a local device. */
static void *proxy_main(void *arg) {
  proxy_t *x = arg;
  const jaxmg_platform_t *pf = x->pf;
  jaxmg_status_t st = pf->mp_enter(&x->t, x->state, &x->part, &x->err);
  if (st) {
    jaxmg__rv_join_failed(&x->j, &x->err);
  } else {
    st = jaxmg__rv_join(&x->j, &x->t.session, &x->err);
    if (!st) st = jaxmg__ffi_run_joined(NULL, pf, &x->t, &x->err);
    jaxmg_error_t e2;
    jaxmg_status_t st2 = pf->mp_exit(&x->t, x->state, &x->part, &e2);
    if (!st && st2) {
      st = st2;
      x->err = e2;
    }
  }
  x->st = st;
  return NULL;
}

/* Position 0 in the leader's process: its own share (prepare, join, run) plus the proxies. */
static jaxmg_status_t lead(XLA_FFI_CallFrame *f, jaxmg_task_t *t, jaxmg_part_t *part,
                           const jaxmg_attrs_t *at, int64_t run_id, int64_t instance,
                           int32_t group, const int32_t *procs, const jaxmg_platform_t *pf,
                           jaxmg_error_t *err) {
  const int P = (int)t->lay.ndev;
  /* The in-process rendezvous of the leader's process: its own positions (which run the
   * same executable, hence have the same instance) and the proxies. */
  const jaxmg_join_t j0 = join_of(t, at, run_id, instance, group, 0, part);
  jaxmg_mp_join_t mj = mp_join_of(t, at, group, procs);
  jaxmg_mp_call_t *c = NULL;
  proxy_t *px = calloc((size_t)P, sizeof *px);
  jaxmg_status_t st = JAXMG_OK;
  int fail_rank = 0;
  const jaxmg_error_t *fail_err = err;

  if (!px) st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", t->name);
  if (!st && !pf->mp_import) {
    st = jaxmg__seterr(err, JAXMG_EUNAVAIL,
                       "jaxmg.%s: one process per device is not supported on platform %s",
                       t->name, pf->platform);
  }
  if (!st) st = jaxmg__mp_open(&mj, &c, err);
  if (!st) st = jaxmg__mp_publish(c, NULL, 0, err);
  if (!st) st = jaxmg__mp_wait_arrival(c, err);
  for (int r = 1; r < P && !st; r++) {
    if (procs[r] == procs[0]) continue;
    char name[192];
    proxy_t *x = &px[r];
    x->t = *t;
    x->t.rank = r;
    x->t.session = NULL;
    x->pf = pf;
    data_name(c, r, name, sizeof name);
    st = pf->mp_import(&x->t, jaxmg__mp_payload(c, r), name, &x->part, &x->state, err);
    x->imported = !st;
    x->j = join_of(t, at, run_id, instance, group, r, &x->part);
  }
  for (int r = 1; r < P && !st; r++) {
    if (!px[r].imported) continue;
    if (pthread_create(&px[r].th, NULL, proxy_main, &px[r]) != 0) {
      st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: cannot start a thread for mesh position %d",
                         t->name, r);
    }
    px[r].started = !st;
  }
  if (st) {
    /* The local participants and the proxies already started fail at once. */
    jaxmg__rv_join_failed(&j0, err);
  } else {
    int prepared = 0;
    if (pf->prepare) {
      st = pf->prepare(f, t, part, err);
      prepared = !st;
    }
    if (st) {
      jaxmg__rv_join_failed(&j0, err);
    } else if (!(st = jaxmg__rv_join(&j0, &t->session, err))) {
      st = jaxmg__ffi_run_joined(f, pf, t, err); /* t->rank is 0: the leader's position */
    }
    if (prepared && pf->release) pf->release(f, part);
  }
  /* The message that every process reports: the first failure that is not a peer's. */
  if (st && jaxmg__is_peer_status(st)) fail_rank = -1;
  for (int r = 1; r < P && px; r++) {
    proxy_t *x = &px[r];
    if (x->started) pthread_join(x->th, NULL);
    if (x->started && x->st) {
      if (fail_rank < 0 && !jaxmg__is_peer_status(x->st)) {
        fail_rank = r;
        fail_err = &x->err;
      }
      if (!st) { /* failed after the last meeting point: the leader fails too */
        st = x->st;
        *err = x->err;
        fail_rank = r;
        fail_err = &x->err;
      }
    }
    if (x->imported && pf->mp_unimport) pf->mp_unimport(&x->t, x->state, &x->part);
  }
  if (fail_rank < 0) fail_rank = 0;
  if (!st && c) st = jaxmg__mp_check(c, err);
  if (c) {
    if (st) {
      jaxmg__mp_fail(c, fail_rank, fail_err);
      jaxmg__mp_reap(c);
    } else {
      jaxmg__mp_done(c);
    }
    jaxmg__mp_close(c, !st);
  }
  free(px);
  return st;
}

/* ---- a participant outside the leader's process ------------------------------------------ */
static jaxmg_status_t follow(XLA_FFI_CallFrame *f, jaxmg_task_t *t, jaxmg_part_t *part,
                             const jaxmg_attrs_t *at, int32_t group, const int32_t *procs,
                             const jaxmg_platform_t *pf, jaxmg_error_t *err) {
  jaxmg_mp_join_t mj = mp_join_of(t, at, group, procs);
  jaxmg_mp_call_t *c = NULL;
  unsigned char payload[JAXMG_MP_PAYLOAD];
  char name[192];
  int exported = 0;
  jaxmg_status_t st;
  if (!pf->mp_export) {
    return jaxmg__seterr(err, JAXMG_EUNAVAIL,
                         "jaxmg.%s: one process per device is not supported on platform %s",
                         t->name, pf->platform);
  }
  if ((st = jaxmg__mp_open(&mj, &c, err))) return st;
  memset(payload, 0, sizeof payload);
  data_name(c, t->rank, name, sizeof name);
  st = pf->mp_export(f, t, part, name, payload, err);
  exported = !st;
  if (!st) st = jaxmg__mp_publish(c, payload, sizeof payload, err);
  if (!st) st = jaxmg__mp_wait_arrival(c, err);
  if (!st) st = jaxmg__mp_wait_done(c, err);
  if (!st) st = pf->mp_collect(f, t, part, err);
  if (st) {
    jaxmg__mp_fail(c, t->rank, err);
    jaxmg__mp_reap(c);
  }
  if (exported) pf->mp_unexport(f, t, name, !st);
  jaxmg__mp_close(c, !st);
  return st;
}

XLA_FFI_Error *jaxmg__ffi_mpmd(XLA_FFI_CallFrame *f, jaxmg_task_t *t, jaxmg_part_t *part,
                               const jaxmg_attrs_t *at, int64_t run_id, int64_t instance,
                               int32_t group, const int32_t *procs, const jaxmg_platform_t *pf) {
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_status_t st = procs[0] == procs[t->rank]
                          ? lead(f, t, part, at, run_id, instance, group, procs, pf, &err)
                          : follow(f, t, part, at, group, procs, pf, &err);
  return st ? jaxmg__ffi_error(f->api, &err) : NULL;
}
