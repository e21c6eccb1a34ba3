/* FFI entry points of the CPU platform. */
#include <string.h>

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

static const jaxmg_platform_t kCpu = {"cpu", cpu_read_ids, cpu_copy, NULL, cpu_run, NULL};

#define JAXMG_CPU_ENTRY(fn, op)                                 \
  JAXMG_EXPORT XLA_FFI_Error *fn(XLA_FFI_CallFrame *f);         \
  XLA_FFI_Error *fn(XLA_FFI_CallFrame *f) { return jaxmg__ffi_dispatch(f, op, &kCpu); }

JAXMG_CPU_ENTRY(jaxmg_ffi_potrf_cpu, JAXMG_OP_POTRF)
JAXMG_CPU_ENTRY(jaxmg_ffi_potrs_cpu, JAXMG_OP_POTRS)
JAXMG_CPU_ENTRY(jaxmg_ffi_solve_cpu, JAXMG_OP_SOLVE)
JAXMG_CPU_ENTRY(jaxmg_ffi_potri_cpu, JAXMG_OP_POTRI)
JAXMG_CPU_ENTRY(jaxmg_ffi_syevd_cpu, JAXMG_OP_SYEVD)
JAXMG_CPU_ENTRY(jaxmg_ffi_syevd_n_cpu, JAXMG_OP_SYEVD_N)
