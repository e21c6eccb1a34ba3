/* The work of a participant that has joined its session, shared by the in-process path
 * (dispatch.c: on XLA's thread or on a jaxmg worker) and the proxies of remote positions
 * (mpmd.c). */
#include "ffi/dispatch.h"

jaxmg_status_t jaxmg__ffi_run_joined(XLA_FFI_CallFrame *f, const jaxmg_platform_t *pf,
                                     jaxmg_task_t *t, jaxmg_error_t *err) {
  jaxmg_status_t st = pf->run(f, t, err);
  if (st && !jaxmg__is_peer_status(st)) jaxmg__rv_fail(t->session, t->rank, err);
  jaxmg__rv_leave(t->session, t->rank);
  return st;
}
