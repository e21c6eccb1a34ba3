/* The FFI layer: decodes and validates an XLA call frame for one of jaxmg's ops, meets the
 * other participants of the call, and hands plain pointers to a platform's backend. */
#ifndef JAXMG_FFI_DISPATCH_H_
#define JAXMG_FFI_DISPATCH_H_

#include "common/ffi_util.h"
#include "common/ops.h"

/* What a platform supplies: everything that touches XLA's per-platform services (streams,
 * device memory) stays in the entry file of the platform; the backend sees plain pointers. */
typedef struct {
  const char *platform;
  /* 1: the platform's handlers are registered with an INSTANTIATE stage and the rendezvous
   * keys on the call instance (CPU: one state per custom call, shared by every device of
   * the executable). 0: the key is (run id, site) and the k-th execution, which is right
   * where every device runs a program's calls in one order (CUDA: one stream per device). */
  int instances;
  /* 1: a call whose peers have not all arrived within a short wait returns to XLA with an
   * FFI future and finishes waiting and runs on a jaxmg worker thread (src/common/workers.h);
   * only for platforms without `prepare`/`release`, whose `run` needs no call frame. Where
   * the runtime has no futures it waits in place. */
  int async;
  /* 1 when the platform has a kernel for op (the op table's column of the platform). The
   * library registers (jaxmg_ffi_targets) and runs only those. */
  int (*has_kernel)(jaxmg_op_t op);
  /* Reads the int32[2] operand (replica group, position along the sharded axis). */
  jaxmg_status_t (*read_ids)(XLA_FFI_CallFrame *f, const void *ids, int32_t out[2],
                             jaxmg_error_t *err);
  /* Copies `bytes` of this device's memory from src to dst, ordered before the op's work
   * (the operand `a` into an unaliased result `a`). */
  jaxmg_status_t (*copy)(XLA_FFI_CallFrame *f, void *dst, const void *src, size_t bytes,
                         jaxmg_error_t *err);
  /* Before the rendezvous: fills device, stream and ready of this participant. */
  jaxmg_status_t (*prepare)(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_part_t *p,
                            jaxmg_error_t *err);
  /* After the rendezvous: runs the task and writes the info output. */
  jaxmg_status_t (*run)(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_error_t *err);
  /* Releases what prepare acquired (may be NULL). */
  void (*release)(XLA_FFI_CallFrame *f, jaxmg_part_t *p);
  /* The device-local targets of this platform alone, after JAXMG_LOCAL_TARGETS in its
   * library's list (comma-separated; NULL: none). */
  const char *local_targets;

  /* ---- one process per device (src/ffi/mpmd.c); NULL: not supported on this platform ----
   * A participant outside the leader's process: copies its operands (a, b) into memory the
   * leader can map, laid out as jaxmg__mp_exchange says, and describes it in `payload`
   * (<= JAXMG_MP_PAYLOAD bytes); `name` is unique to this participant of this call. */
  jaxmg_status_t (*mp_export)(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, const jaxmg_part_t *p,
                              const char *name, void *payload, jaxmg_error_t *err);
  /* After the leader's "done": copies the results back into this participant's buffers. */
  jaxmg_status_t (*mp_collect)(XLA_FFI_CallFrame *f, const jaxmg_task_t *t,
                               const jaxmg_part_t *p, jaxmg_error_t *err);
  /* Releases what mp_export acquired (ok: the call succeeded). */
  void (*mp_unexport)(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, const char *name, int ok);
  /* The leader, for a remote position (t->rank): maps its memory and fills the pointers of
   * *p; *state is the platform's record of the mapping. */
  jaxmg_status_t (*mp_import)(const jaxmg_task_t *t, const void *payload, const char *name,
                              jaxmg_part_t *p, void **state, jaxmg_error_t *err);
  /* In the proxy thread of that position, before joining: the thread's platform state
   * (device, stream) and what `prepare` does. */
  jaxmg_status_t (*mp_enter)(const jaxmg_task_t *t, void *state, jaxmg_part_t *p,
                             jaxmg_error_t *err);
  /* In the proxy thread, after leaving: waits for the device work of the position and
   * releases what mp_enter acquired. */
  jaxmg_status_t (*mp_exit)(const jaxmg_task_t *t, void *state, jaxmg_part_t *p,
                            jaxmg_error_t *err);
  /* The leader, after every proxy finished: undoes mp_import. */
  void (*mp_unimport)(const jaxmg_task_t *t, void *state, jaxmg_part_t *p);
} jaxmg_platform_t;

/* The attributes of every op, decoded by name (src/ffi/dispatch.c). */
typedef struct {
  int64_t tile;            /* T: the solver's tile, divides the rows of each shard */
  int64_t nparts;          /* participants per group (mesh positions along the row axes) */
  int64_t site;            /* call-site id, fixed when the call was traced */
  int64_t timeout_ms;      /* arrival deadline, > 0 */
  /* Only when the mesh spans several processes, else NULL and 0: int32[groups * nparts],
   * the process index of each (group, position). */
  const int32_t *mp_procs;
  int64_t mp_procs_len;
} jaxmg_attrs_t;

/* Where each operand of a remote participant sits in its exchange memory (byte offsets;
 * `total` is the size; absent operands have offset 0 and are not used). */
typedef struct {
  size_t a, b, x, w, info, total;
  size_t a_bytes, b_bytes, x_bytes, w_bytes;
} jaxmg_mp_exchange_t;

void jaxmg__mp_exchange(const jaxmg_task_t *t, jaxmg_mp_exchange_t *ex);

/* One process per device: runs the call of a participant whose group spans several
 * processes (procs[r]: the process of position r of the group). Called by
 * jaxmg__ffi_dispatch. */
XLA_FFI_Error *jaxmg__ffi_mpmd(XLA_FFI_CallFrame *f, jaxmg_task_t *t, jaxmg_part_t *part,
                               const jaxmg_attrs_t *at, int64_t run_id, int64_t instance,
                               int32_t group, const int32_t *procs, const jaxmg_platform_t *pf);

/* The handler of every stage: answers the metadata query, gives the call its instance at
 * INSTANTIATE (platforms with `instances`), runs it at EXECUTE (UNAVAILABLE for an op the
 * platform has no kernel for). */
XLA_FFI_Error *jaxmg__ffi_dispatch(XLA_FFI_CallFrame *f, jaxmg_op_t op,
                                   const jaxmg_platform_t *pf);

/* The comma-separated FFI targets ("jaxmg_potrf,jaxmg_potrs,...") of the ops pf has a
 * kernel for, in table order: what the library's jaxmg_ffi_targets() returns. The string
 * lives in a buffer of the calling thread, valid until its next call. */
const char *jaxmg__ffi_targets(const jaxmg_platform_t *pf);

/* A joined participant's work (pf->run); its own failure is posted to the peers, then it
 * leaves the session (src/ffi/joined.c). */
jaxmg_status_t jaxmg__ffi_run_joined(XLA_FFI_CallFrame *f, const jaxmg_platform_t *pf,
                                     jaxmg_task_t *t, jaxmg_error_t *err);

/* ---- device-local ops (src/ffi/local.c) -------------------------------------------------
 * Targets outside the op table: no participants, no rendezvous (src/common/ops.h). Every
 * platform library registers JAXMG_LOCAL_TARGETS, after the op table's targets, then its
 * platform's own (local_targets). */
#define JAXMG_LOCAL_TARGETS "jaxmg_syevx"
/* The CPU platform's own: the two-stage eigensolver has no CUDA kernel yet. */
#define JAXMG_LOCAL_TARGETS_CPU "jaxmg_syev2s"

/* Decodes and validates a jaxmg_syevx call: operand a (n x n); results a (n x n, aliased to
 * the operand: the solver's scratch), w (hi - lo reals), z (hi - lo x n, or 0 x n without
 * vectors), info (int32 scalar); attributes lo, hi, vectors, parts. x->a is the result a;
 * *src the operand (the platform copies it into x->a where XLA did not alias them). */
jaxmg_status_t jaxmg__ffi_syevx_decode(const XLA_FFI_CallFrame *f, jaxmg_syevx_t *x,
                                       const void **src, jaxmg_error_t *err);

/* Decodes and validates a jaxmg_syev2s call: operand a (n x n); results a (n x n, aliased
 * to the operand: the solver's scratch), w (n reals), z (n x n, or 0 x n without vectors),
 * info (int32 scalar); attributes band (>= 0; 0: the solver's default), vectors, parts. */
jaxmg_status_t jaxmg__ffi_syev2s_decode(const XLA_FFI_CallFrame *f, jaxmg_syev2s_t *x,
                                        const void **src, jaxmg_error_t *err);

#endif
