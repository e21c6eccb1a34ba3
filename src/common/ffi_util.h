/* Call-frame decoding for XLA's C FFI, written against the header of the installed jaxlib.
 * Only names that are identical in every supported header version are used (the extension
 * base struct was renamed between FFI API 0.3 and 0.4). */
#ifndef JAXMG_COMMON_FFI_UTIL_H_
#define JAXMG_COMMON_FFI_UTIL_H_

#include <stdint.h>

#include "common/common.h"
#include "xla/ffi/api/c_api.h"

/* The FFI API version our handlers announce: the oldest whose calls we use unguarded. */
#define JAXMG_FFI_MAJOR 0
#define JAXMG_FFI_MINOR 1

/* If the frame is XLA's metadata query, answers it and returns 1. */
int jaxmg__ffi_metadata(XLA_FFI_CallFrame *f);

/* For a handler without state: 0 when the frame is XLA's metadata query (answered here) or
 * a stage other than EXECUTE, where it has nothing to do; 1 when it runs. */
int jaxmg__ffi_executes(XLA_FFI_CallFrame *f);

/* Converts a jaxmg error into an XLA FFI error owned by the caller (XLA). */
XLA_FFI_Error *jaxmg__ffi_error(const XLA_FFI_Api *api, const jaxmg_error_t *e);

/* A decoded buffer: dtype mapped to jaxmg's (known = 0 for dtypes jaxmg does not handle). */
typedef struct {
  int known;
  jaxmg_dtype_t dtype;
  int xla_dtype;
  void *data;
  int64_t rank;
  const int64_t *dims;
} jaxmg_buf_t;

/* Argument (is_ret = 0) or result (is_ret = 1) number i. */
jaxmg_status_t jaxmg__ffi_buffer(const XLA_FFI_CallFrame *f, int is_ret, int64_t i,
                                 jaxmg_buf_t *out, const char *op, const char *what,
                                 jaxmg_error_t *err);

/* Integer scalar attribute `name` (any integer width). */
jaxmg_status_t jaxmg__ffi_attr_i64(const XLA_FFI_CallFrame *f, const char *name, int64_t *out,
                                   const char *op, jaxmg_error_t *err);

/* Optional int32 array attribute `name`: *data = NULL and *len = 0 when absent. */
jaxmg_status_t jaxmg__ffi_attr_i32_array(const XLA_FFI_CallFrame *f, const char *name,
                                         const int32_t **data, int64_t *len, const char *op,
                                         jaxmg_error_t *err);

/* XLA run id of this execution; guarded by the runtime's API struct size. */
jaxmg_status_t jaxmg__ffi_run_id(const XLA_FFI_CallFrame *f, int64_t *out, const char *op,
                                 jaxmg_error_t *err);

/* XLA's device ordinal of this call; JAXMG_EUNAVAIL where the runtime has none (guarded by
 * the API struct size like the run id). */
jaxmg_status_t jaxmg__ffi_device_ordinal(const XLA_FFI_CallFrame *f, int *out);

/* Platform stream (cudaStream_t on CUDA). */
jaxmg_status_t jaxmg__ffi_stream(const XLA_FFI_CallFrame *f, void **out, const char *op,
                                 jaxmg_error_t *err);

/* Device memory through XLA's allocator of this call's device (alignment 16, the most XLA
 * accepts; its GPU allocator's chunks are 256-byte aligned). NULL on failure, with what XLA
 * said in why[why_len] (may be NULL). */
void *jaxmg__ffi_alloc(const XLA_FFI_CallFrame *f, size_t bytes, char *why, size_t why_len);
void jaxmg__ffi_free(const XLA_FFI_CallFrame *f, void *p, size_t bytes);

/* ---- call instances (docs/design.md, "Rendezvous") ---------------------------------------
 * JAX may place one traced call (one call-site id) several times into one program. XLA
 * instantiates a stateful FFI handler once per custom call of an executable (stage
 * INSTANTIATE) and hands that state back to every execution of that custom call; XLA's CPU
 * runtime does so on every device that runs the executable, so the state identifies the
 * copy of the call alike on all of them. */

/* At the INSTANTIATE stage: gives this custom call a new instance id (a process-wide counter
 * from 1) as its XLA state, of a type named "jaxmg_instance_<platform>". Does nothing where
 * the runtime's FFI is older than API 0.3 (State calls with an execution stage), lacks the
 * State or type calls, or where the header used at build time predates them: calls then
 * have no instance. Never fails the compilation. */
void jaxmg__ffi_instantiate(XLA_FFI_CallFrame *f, const char *platform);

/* At the EXECUTE stage: this custom call's instance id, or 0 where it has none (no instance
 * was ever given in this process, or none to this call). */
int64_t jaxmg__ffi_instance(const XLA_FFI_CallFrame *f);

/* ---- asynchronous calls ------------------------------------------------------------------
 * A handler that sets the call frame's `future` returns at once; XLA keeps the call's
 * buffers alive and its dependents waiting until the future is completed, from any thread. */

/* A new future for this call, or NULL where the runtime has none (the call then runs
 * synchronously). */
XLA_FFI_Future *jaxmg__ffi_future_new(const XLA_FFI_CallFrame *f);

/* Completes `fut`: available when e is NULL, else failed with e (converted as
 * jaxmg__ffi_error does). */
void jaxmg__ffi_future_done(const XLA_FFI_Api *api, XLA_FFI_Future *fut, const jaxmg_error_t *e);

/* Name of an XLA dtype for messages ("int32", ...). */
const char *jaxmg__xla_dtype_name(int xla_dtype);

#endif
