/* Operand layout of every op, from its flags in the op table (src/common/ops.h), in this
 * order (a: the shard, nloc x N; b and x: nrhs x N, i.e. column-major N x nrhs; ids:
 * int32[2]; w: N reals; info: int32[1]):
 *
 *   operands   a, b (JAXMG_OPF_B), ids
 *   results    a (JAXMG_OPF_A_OUT), x (JAXMG_OPF_B), w (JAXMG_OPF_W), info
 *
 * decode() reads exactly those. Results named `a` alias the operand `a`
 * (input_output_aliases in Python); when XLA did not alias them, the operand is copied into
 * the result before anything else. An op without JAXMG_OPF_A_OUT only reads `a` (cho_solve:
 * the factor potrf left; potrs_whole: the matrix). Attributes, looked up by name
 * (jaxmg_attrs_t): tile, nparts, site, timeout_ms (integers), and when the mesh spans several
 * processes mp_procs (int32[groups * nparts]: the process index of each (group, position)). */
#include "ffi/dispatch.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"
#include "common/workers.h"

static jaxmg_status_t expect_dims(const jaxmg_buf_t *b, const char *op, const char *what,
                                  int64_t rank, int64_t d0, int64_t d1, jaxmg_error_t *err) {
  if (b->rank != rank) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: '%s' must have rank %lld, got rank %lld", op,
                         what, (long long)rank, (long long)b->rank);
  }
  if ((rank >= 1 && b->dims[0] != d0) || (rank >= 2 && b->dims[1] != d1)) {
    char want[48], got[48];
    if (rank >= 2) {
      snprintf(want, sizeof want, "(%lld, %lld)", (long long)d0, (long long)d1);
      snprintf(got, sizeof got, "(%lld, %lld)", (long long)b->dims[0], (long long)b->dims[1]);
    } else {
      snprintf(want, sizeof want, "(%lld,)", (long long)d0);
      snprintf(got, sizeof got, "(%lld,)", (long long)b->dims[0]);
    }
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: '%s' must have shape %s, got %s", op, what,
                         want, got);
  }
  return JAXMG_OK;
}

static jaxmg_status_t expect_xla_dtype(const jaxmg_buf_t *b, int xla_dtype, const char *op,
                                       const char *what, jaxmg_error_t *err) {
  if (b->xla_dtype == xla_dtype) return JAXMG_OK;
  return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: '%s' must be %s, got %s", op, what,
                       jaxmg__xla_dtype_name(xla_dtype), jaxmg__xla_dtype_name(b->xla_dtype));
}

static int real_xla_dtype(jaxmg_dtype_t dt) {
  return (dt == JAXMG_F32 || dt == JAXMG_C64) ? XLA_FFI_DataType_F32 : XLA_FFI_DataType_F64;
}

/* The attributes, each by its name (their order in the frame does not matter). */
static jaxmg_status_t decode_attrs(const XLA_FFI_CallFrame *f, const char *nm, jaxmg_attrs_t *at,
                                   jaxmg_error_t *err) {
  jaxmg_status_t st;
  if ((st = jaxmg__ffi_attr_i64(f, "tile", &at->tile, nm, err))) return st;
  if ((st = jaxmg__ffi_attr_i64(f, "nparts", &at->nparts, nm, err))) return st;
  if ((st = jaxmg__ffi_attr_i64(f, "site", &at->site, nm, err))) return st;
  if ((st = jaxmg__ffi_attr_i64(f, "timeout_ms", &at->timeout_ms, nm, err))) return st;
  return jaxmg__ffi_attr_i32_array(f, "mp_procs", &at->mp_procs, &at->mp_procs_len, nm, err);
}

/* Decodes and validates the frame into the task and this participant's slot: the operands
 * and results the op's flags name, in the order of the table above. */
static jaxmg_status_t decode(XLA_FFI_CallFrame *f, const jaxmg_op_info_t *oi, jaxmg_task_t *t,
                             jaxmg_part_t *p, jaxmg_buf_t *ids, jaxmg_attrs_t *at,
                             const void **a_in, jaxmg_error_t *err) {
  const char *nm = oi->name;
  jaxmg_buf_t a, b, r;
  jaxmg_status_t st;
  int64_t ia = 0, ir = 0;
  if ((st = decode_attrs(f, nm, at, err))) return st;
  const int64_t tile = at->tile, nparts = at->nparts;

  if ((st = jaxmg__ffi_buffer(f, 0, ia++, &a, nm, "a", err))) return st;
  if (!a.known) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: 'a' must be float32, float64, complex64 or complex128, got %s",
                         nm, jaxmg__xla_dtype_name(a.xla_dtype));
  }
  if (a.rank != 2) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: 'a' must be a matrix (rank 2), got rank %lld",
                         nm, (long long)a.rank);
  }
  const int64_t nloc = a.dims[0], n = a.dims[1];
  /* Division, not nloc * nparts: a corrupt attribute must not overflow. */
  if (nparts < 1 || nparts > INT_MAX || n % nparts != 0 || n / nparts != nloc) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: the shard of 'a' must have N / %lld rows for N = %lld columns, "
                         "got %lld rows",
                         nm, (long long)nparts, (long long)n, (long long)nloc);
  }
  if (tile < 1 || nloc % tile != 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: tile size %lld must be positive and divide the %lld rows of "
                         "each shard (pad the shards)",
                         nm, (long long)tile, (long long)nloc);
  }
  /* The only geometry left to reject here is an empty shard (N = 0). */
  if (jaxmg_layout_init(&t->lay, nloc, nparts, tile) != JAXMG_OK) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: the shard of 'a' must have at least one row, got shape "
                         "(%lld, %lld)",
                         nm, (long long)nloc, (long long)n);
  }
  t->op = oi->op;
  t->name = nm;
  t->dtype = a.dtype;
  t->nrhs = 0;
  memset(p, 0, sizeof *p);
  p->a = a.data;
  *a_in = a.data;
  if (oi->flags & JAXMG_OPF_B) {
    if ((st = jaxmg__ffi_buffer(f, 0, ia++, &b, nm, "b", err))) return st;
    if ((st = expect_xla_dtype(&b, a.xla_dtype, nm, "b", err))) return st;
    if (b.rank != 2) {
      return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: 'b' must have rank 2, got rank %lld", nm,
                           (long long)b.rank);
    }
    if ((st = expect_dims(&b, nm, "b", 2, b.dims[0], n, err))) return st;
    t->nrhs = b.dims[0];
    p->b = b.data;
  }
  if ((st = jaxmg__ffi_buffer(f, 0, ia++, ids, nm, "ids", err))) return st;
  if ((st = expect_xla_dtype(ids, XLA_FFI_DataType_S32, nm, "ids", err))) return st;
  if ((st = expect_dims(ids, nm, "ids", 1, 2, 0, err))) return st;

  if (oi->flags & JAXMG_OPF_A_OUT) {
    if ((st = jaxmg__ffi_buffer(f, 1, ir++, &r, nm, "a (result)", err))) return st;
    if ((st = expect_xla_dtype(&r, a.xla_dtype, nm, "a (result)", err))) return st;
    if ((st = expect_dims(&r, nm, "a (result)", 2, nloc, n, err))) return st;
    /* XLA normally aliases them (input_output_aliases={0: 0}); where it does not (e.g. inside
     * a batched loop on GPU), the platform copies the operand into the result first. */
    p->a = r.data;
  }
  if (oi->flags & JAXMG_OPF_B) {
    if ((st = jaxmg__ffi_buffer(f, 1, ir++, &r, nm, "x", err))) return st;
    if ((st = expect_xla_dtype(&r, a.xla_dtype, nm, "x", err))) return st;
    if ((st = expect_dims(&r, nm, "x", 2, t->nrhs, n, err))) return st;
    p->x = r.data;
  }
  if (oi->flags & JAXMG_OPF_W) {
    if ((st = jaxmg__ffi_buffer(f, 1, ir++, &r, nm, "w", err))) return st;
    if ((st = expect_xla_dtype(&r, real_xla_dtype(a.dtype), nm, "w", err))) return st;
    if ((st = expect_dims(&r, nm, "w", 1, n, 0, err))) return st;
    p->w = r.data;
  }
  if ((st = jaxmg__ffi_buffer(f, 1, ir++, &r, nm, "info", err))) return st;
  if ((st = expect_xla_dtype(&r, XLA_FFI_DataType_S32, nm, "info", err))) return st;
  if ((st = expect_dims(&r, nm, "info", 1, 1, 0, err))) return st;
  p->info = r.data;
  if (at->timeout_ms <= 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: timeout_ms must be positive, got %lld", nm,
                         (long long)at->timeout_ms);
  }
  return JAXMG_OK;
}

/* ---- asynchronous calls (platforms with `async`) ------------------------------------------
 * A participant arrives on XLA's thread and waits there a little; when its peers all arrived
 * by then (the usual case) it runs there, as a synchronous call. Otherwise it hands the wait
 * and the work to a jaxmg worker and returns a future to XLA, so that the thread is free for
 * the device's other calls, which its peers may be waiting in (docs/design.md). */
static const int64_t kInlineWaitMs = 2;

typedef struct {
  const XLA_FFI_Api *api;
  XLA_FFI_Future *future;
  const jaxmg_platform_t *pf;
  jaxmg_task_t t; /* t.session: joined, peers pending */
  jaxmg_join_t j;
  jaxmg_arrival_t arrival;
} async_call_t;

/* The rest of the participant's wait and its work, on a jaxmg worker. */
static void async_main(void *arg) {
  async_call_t *c = arg;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_status_t st = jaxmg__rv_join_finish(&c->j, c->t.session, &c->arrival, &err);
  if (!st) st = jaxmg__ffi_run_joined(NULL, c->pf, &c->t, &err);
  /* The last touch of the call: XLA may release its buffers from here on. */
  jaxmg__ffi_future_done(c->api, c->future, st ? &err : NULL);
  free(c);
}

/* Hands a participant whose peers have not all arrived to a worker and makes the call
 * asynchronous; 0 where the runtime has no futures (the caller then waits itself). */
static int start_async(XLA_FFI_CallFrame *f, const jaxmg_platform_t *pf, const jaxmg_task_t *t,
                       const jaxmg_join_t *j, const jaxmg_arrival_t *arrival) {
  async_call_t *c = malloc(sizeof *c);
  if (!c) return 0;
  XLA_FFI_Future *future = jaxmg__ffi_future_new(f);
  if (!future) {
    free(c);
    return 0;
  }
  c->api = f->api;
  c->future = future;
  c->pf = pf;
  c->t = *t;
  c->j = *j;
  c->j.slot = NULL; /* published at arrival already */
  c->arrival = *arrival;
  /* From here on c belongs to the worker (which frees it). No worker to be had: finish
   * here; the future is then complete when XLA takes it. */
  if (jaxmg__workers_run(async_main, c) != JAXMG_OK) async_main(c);
  f->future = future;
  return 1;
}

XLA_FFI_Error *jaxmg__ffi_dispatch(XLA_FFI_CallFrame *f, jaxmg_op_t op,
                                   const jaxmg_platform_t *pf) {
  if (jaxmg__ffi_metadata(f)) return NULL;
  if (f->stage == XLA_FFI_ExecutionStage_INSTANTIATE) {
    if (pf->instances) jaxmg__ffi_instantiate(f, pf->platform);
    return NULL;
  }
  if (f->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;

  jaxmg_error_t err = {JAXMG_OK, ""};
  const jaxmg_op_info_t *oi = jaxmg__op_info(op);
  if (!oi) {
    jaxmg__seterr(&err, JAXMG_EINTERNAL, "jaxmg: unknown op %d", (int)op);
    return jaxmg__ffi_error(f->api, &err);
  }
  /* The library does not register such a target (jaxmg_ffi_targets); someone did. */
  if (!pf->has_kernel(op)) {
    jaxmg__seterr(&err, JAXMG_EUNAVAIL,
                  "jaxmg.%s: %s has no %s kernel (this library's jaxmg_ffi_targets() does not "
                  "list it)",
                  oi->name, oi->target, pf->platform);
    return jaxmg__ffi_error(f->api, &err);
  }
  jaxmg_task_t t;
  jaxmg_part_t part;
  jaxmg_buf_t ids;
  jaxmg_attrs_t at;
  int64_t run_id = 0;
  /* Which copy of the traced call this is, the same on every device (docs/design.md). */
  const int64_t instance = pf->instances ? jaxmg__ffi_instance(f) : 0;
  int32_t gr[2] = {0, 0};
  int prepared = 0;
  const void *a_in = NULL;
  jaxmg_status_t st = decode(f, oi, &t, &part, &ids, &at, &a_in, &err);
  if (!st) st = jaxmg__ffi_run_id(f, &run_id, t.name, &err);
  if (!st) st = pf->read_ids(f, ids.data, gr, &err);
  if (!st && (gr[1] < 0 || gr[1] >= at.nparts)) {
    st = jaxmg__seterr(&err, JAXMG_EINVAL, "jaxmg.%s: mesh position %d outside [0, %lld)", t.name,
                       gr[1], (long long)at.nparts);
  }
  const int32_t *procs = at.mp_procs;
  if (!st && procs) {
    if (at.mp_procs_len % at.nparts != 0 || gr[0] < 0 || gr[0] >= at.mp_procs_len / at.nparts) {
      st = jaxmg__seterr(&err, JAXMG_EINVAL,
                         "jaxmg.%s: attribute 'mp_procs' has %lld entries, not one per position "
                         "of group %d",
                         t.name, (long long)at.mp_procs_len, gr[0]);
    } else {
      procs += (int64_t)gr[0] * at.nparts;
      int spans = 0;
      for (int64_t r = 1; r < at.nparts; r++) spans |= procs[r] != procs[0];
      if (!spans) {
        procs = NULL; /* the whole group is in this process */
      } else if (procs[gr[1]] != jaxmg__mp_process()) {
        st = jaxmg__seterr(&err, JAXMG_EINVAL,
                           "jaxmg.%s: mesh position %d of group %d belongs to process %d, but this "
                           "is process %d",
                           t.name, gr[1], gr[0], procs[gr[1]], jaxmg__mp_process());
      }
    }
  }
  if (!st && a_in != part.a) {
    size_t bytes = (size_t)t.lay.nloc * (size_t)t.lay.n * jaxmg_dtype_size(t.dtype);
    st = pf->copy(f, part.a, a_in, bytes, &err);
  }
  if (st) return jaxmg__ffi_error(f->api, &err);
  t.rank = gr[1];
  t.session = NULL;
  if (jaxmg__fault_hit(JAXMG_FAULT_NO_ARRIVAL, t.rank)) {
    jaxmg__seterr(&err, JAXMG_EFAULT, "jaxmg.%s: injected fault: mesh position %d never arrives",
                  t.name, t.rank);
    return jaxmg__ffi_error(f->api, &err);
  }
  /* One process per device: position 0 of the leader's process and every position of
   * another process go through src/ffi/mpmd.c; the leader's other positions join as usual. */
  if (procs && (t.rank == 0 || procs[t.rank] != procs[0]))
    return jaxmg__ffi_mpmd(f, &t, &part, &at, run_id, instance, gr[0], procs, pf);
  const jaxmg_join_t j = {.run_id = run_id,
                          .site = at.site,
                          .instance = instance,
                          .group = gr[0],
                          .nparts = (int)at.nparts,
                          .rank = t.rank,
                          .timeout_ms = at.timeout_ms,
                          .op = t.name,
                          .slot = &part,
                          .slot_size = sizeof part};
  if (pf->async && !pf->prepare) {
    /* A device may run a program's calls in any order here (CPU): the call must not hold
     * one of XLA's threads for long while it waits for its peers (docs/design.md). */
    int pending = 0;
    jaxmg_arrival_t arrival;
    st = jaxmg__rv_join_begin(&j, kInlineWaitMs, &t.session, &arrival, &pending, &err);
    if (!st && pending && start_async(f, pf, &t, &j, &arrival)) return NULL;
    if (!st && pending) st = jaxmg__rv_join_finish(&j, t.session, &arrival, &err);
  } else {
    if (pf->prepare) {
      if ((st = pf->prepare(f, &t, &part, &err))) return jaxmg__ffi_error(f->api, &err);
      prepared = 1;
    }
    st = jaxmg__rv_join(&j, &t.session, &err);
  }
  if (!st) st = jaxmg__ffi_run_joined(f, pf, &t, &err);
  if (prepared && pf->release) pf->release(f, &part);
  return st ? jaxmg__ffi_error(f->api, &err) : NULL;
}

/* Room for every target name and its comma. */
#define JAXMG_OP_TARGET_LEN(OP, stem, name, flags, cpu, cuda) +sizeof("jaxmg_" #stem ",")
enum {
  kTargetsLen = 1 JAXMG_OPS(JAXMG_OP_TARGET_LEN) +
                sizeof("," JAXMG_LOCAL_TARGETS "," JAXMG_LOCAL_TARGETS_CPU)
};
#undef JAXMG_OP_TARGET_LEN

const char *jaxmg__ffi_targets(const jaxmg_platform_t *pf) {
  /* Per thread: no lock, and any platform (a caller copies the string at once). */
  static _Thread_local char buf[kTargetsLen];
  size_t n = 0;
  buf[0] = '\0';
  for (int op = 0; op < JAXMG_NOPS; op++) {
    if (!pf->has_kernel((jaxmg_op_t)op)) continue;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? "," : "",
                          jaxmg__op_info((jaxmg_op_t)op)->target);
  }
  n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? "," : "", JAXMG_LOCAL_TARGETS);
  if (pf->local_targets && n < sizeof buf)
    snprintf(buf + n, sizeof buf - n, ",%s", pf->local_targets);
  return buf;
}
