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
} jaxmg_platform_t;

XLA_FFI_Error *jaxmg__ffi_dispatch(XLA_FFI_CallFrame *f, jaxmg_op_t op,
                                   const jaxmg_platform_t *pf);

#endif
