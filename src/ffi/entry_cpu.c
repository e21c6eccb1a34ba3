/* FFI entry points of the CPU platform. */
#include <string.h>

#include "common/mp.h"
#include "cpu/cpu.h"
#include "ffi/dispatch.h"

static jaxmg_status_t cpu_read_ids(XLA_FFI_CallFrame *f, const void *ids, int32_t out[2],
                                   jaxmg_error_t *err) {
  (void)f, (void)err;
  out[0] = ((const int32_t *)ids)[0];
  out[1] = ((const int32_t *)ids)[1];
  return JAXMG_OK;
}

static jaxmg_status_t cpu_run(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, jaxmg_error_t *err) {
  const jaxmg_part_t *me = jaxmg__rv_slot(t->session, t->rank);
  int32_t info = 0;
  jaxmg_status_t st = jaxmg_cpu_run(t, &info, err);
  *me->info = info;
  return st;
}

static jaxmg_status_t cpu_copy(XLA_FFI_CallFrame *f, void *dst, const void *src, size_t bytes,
                               jaxmg_error_t *err) {
  (void)f, (void)err;
  memcpy(dst, src, bytes);
  return JAXMG_OK;
}

/* ---- one process per device: operands travel through a shared-memory segment per call,
 * created by their owner, mapped by the leader; the proxies compute in it in place. ------- */
static _Thread_local void *tls_map;
static _Thread_local size_t tls_map_bytes;

static void part_in(const jaxmg_task_t *t, char *base, jaxmg_part_t *p) {
  jaxmg_mp_exchange_t ex;
  jaxmg__mp_exchange(t, &ex);
  memset(p, 0, sizeof *p);
  p->a = base;
  if (ex.b_bytes) p->b = base + ex.b;
  if (ex.x_bytes) p->x = base + ex.x;
  if (ex.w_bytes) p->w = base + ex.w;
  p->info = (int32_t *)(void *)(base + ex.info);
}

static jaxmg_status_t cpu_mp_export(XLA_FFI_CallFrame *f, const jaxmg_task_t *t,
                                    const jaxmg_part_t *p, const char *name, void *payload,
                                    jaxmg_error_t *err) {
  jaxmg_mp_exchange_t ex;
  jaxmg_part_t sh;
  (void)f, (void)payload;
  jaxmg__mp_exchange(t, &ex);
  tls_map = NULL;
  tls_map_bytes = ex.total;
  jaxmg_status_t st = jaxmg__mp_shm_create(name, ex.total, &tls_map, err);
  if (st) return st;
  part_in(t, tls_map, &sh);
  memcpy(sh.a, p->a, ex.a_bytes);
  if (ex.b_bytes) memcpy((void *)sh.b, p->b, ex.b_bytes);
  return JAXMG_OK;
}

static jaxmg_status_t cpu_mp_collect(XLA_FFI_CallFrame *f, const jaxmg_task_t *t,
                                     const jaxmg_part_t *p, jaxmg_error_t *err) {
  jaxmg_mp_exchange_t ex;
  jaxmg_part_t sh;
  (void)f, (void)err;
  jaxmg__mp_exchange(t, &ex);
  part_in(t, tls_map, &sh);
  if (jaxmg__op_has(t->op, JAXMG_OPF_A_OUT)) memcpy(p->a, sh.a, ex.a_bytes);
  if (ex.x_bytes) memcpy(p->x, sh.x, ex.x_bytes);
  if (ex.w_bytes) memcpy(p->w, sh.w, ex.w_bytes);
  *p->info = *sh.info;
  return JAXMG_OK;
}

static void cpu_mp_unexport(XLA_FFI_CallFrame *f, const jaxmg_task_t *t, const char *name,
                            int ok) {
  (void)f, (void)t, (void)ok;
  jaxmg__mp_shm_destroy(name, tls_map, tls_map_bytes);
  tls_map = NULL;
}

static jaxmg_status_t cpu_mp_import(const jaxmg_task_t *t, const void *payload, const char *name,
                                    jaxmg_part_t *p, void **state, jaxmg_error_t *err) {
  jaxmg_mp_exchange_t ex;
  (void)payload;
  jaxmg__mp_exchange(t, &ex);
  jaxmg_status_t st = jaxmg__mp_shm_map(name, ex.total, state, err);
  if (!st) part_in(t, *state, p);
  return st;
}

static jaxmg_status_t cpu_mp_nothing(const jaxmg_task_t *t, void *state, jaxmg_part_t *p,
                                     jaxmg_error_t *err) {
  (void)t, (void)state, (void)p, (void)err;
  return JAXMG_OK;
}

static void cpu_mp_unimport(const jaxmg_task_t *t, void *state, jaxmg_part_t *p) {
  jaxmg_mp_exchange_t ex;
  (void)p;
  jaxmg__mp_exchange(t, &ex);
  jaxmg__mp_shm_unmap(state, ex.total);
}

/* XLA's CPU runtime may run independent custom calls of one program in different orders on
 * different devices: calls key the rendezvous on their instance and wait for their peers on
 * jaxmg's workers (docs/design.md, "Rendezvous"). */
static const jaxmg_platform_t kCpu = {
    .platform = "cpu",
    .instances = 1,
    .async = 1,
    .has_kernel = jaxmg__cpu_has_kernel,
    .read_ids = cpu_read_ids,
    .copy = cpu_copy,
    .prepare = NULL,
    .run = cpu_run,
    .release = NULL,
    .local_targets = JAXMG_LOCAL_TARGETS_CPU,
    .mp_export = cpu_mp_export,
    .mp_collect = cpu_mp_collect,
    .mp_unexport = cpu_mp_unexport,
    .mp_import = cpu_mp_import,
    .mp_enter = cpu_mp_nothing,
    .mp_exit = cpu_mp_nothing,
    .mp_unimport = cpu_mp_unimport,
};

/* One handler per op of the table: jaxmg_ffi_<stem>_cpu. */
#define JAXMG_CPU_ENTRY(OP, stem, name, flags, cpu, cuda)                 \
  JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_##stem##_cpu(XLA_FFI_CallFrame *f); \
  XLA_FFI_Error *jaxmg_ffi_##stem##_cpu(XLA_FFI_CallFrame *f) {             \
    return jaxmg__ffi_dispatch(f, JAXMG_OP_##OP, &kCpu);                    \
  }
JAXMG_OPS(JAXMG_CPU_ENTRY)
#undef JAXMG_CPU_ENTRY

/* The device-local subset eigensolver (src/common/ops.h), on XLA's thread of the device. */
JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_syevx_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syevx_cpu(XLA_FFI_CallFrame *f) {
  if (!jaxmg__ffi_executes(f)) return NULL;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_syevx_t x;
  const void *src = NULL;
  jaxmg_status_t st = jaxmg__ffi_syevx_decode(f, &x, &src, &err);
  if (!st && src != x.a) {
    memcpy(x.a, src, (size_t)x.n * (size_t)x.n * jaxmg__dtype_info(x.dtype)->size);
  }
  if (!st) st = jaxmg__cpu_syevx(&x, &err);
  return st ? jaxmg__ffi_error(f->api, &err) : NULL;
}

/* The device-local two-stage eigensolver (src/common/ops.h), on XLA's thread of the device. */
JAXMG_EXPORT XLA_FFI_Error *jaxmg_ffi_syev2s_cpu(XLA_FFI_CallFrame *f);
XLA_FFI_Error *jaxmg_ffi_syev2s_cpu(XLA_FFI_CallFrame *f) {
  if (!jaxmg__ffi_executes(f)) return NULL;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_syev2s_t x;
  const void *src = NULL;
  jaxmg_status_t st = jaxmg__ffi_syev2s_decode(f, &x, &src, &err);
  if (!st && src != x.a) {
    memcpy(x.a, src, (size_t)x.n * (size_t)x.n * jaxmg__dtype_info(x.dtype)->size);
  }
  if (!st) st = jaxmg__cpu_syev2s(&x, &err);
  return st ? jaxmg__ffi_error(f->api, &err) : NULL;
}

const char *jaxmg_ffi_targets(void) { return jaxmg__ffi_targets(&kCpu); }
