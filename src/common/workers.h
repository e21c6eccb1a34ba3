/* Worker threads of jaxmg's own, for calls that must not hold one of XLA's threads while
 * they wait for their peers (asynchronous FFI calls on CPU; docs/design.md, "Rendezvous").
 *
 * One process-wide pool that grows with the number of jobs in flight: a job runs on an idle
 * worker, or on a new thread when none is idle, so a job never waits for another job to
 * finish (jobs wait for each other in the rendezvous). A worker idle for 10 s exits. */
#ifndef JAXMG_COMMON_WORKERS_H_
#define JAXMG_COMMON_WORKERS_H_

#include <stdint.h>

#include "jaxmg/jaxmg.h"

/* Runs fn(arg) on a worker. JAXMG_ENOMEM when no worker is idle and no thread can be
 * started: fn is then not run and the caller still owns arg. */
jaxmg_status_t jaxmg__workers_run(void (*fn)(void *), void *arg);

/* Worker threads alive now (busy or idle); for tests. */
JAXMG_EXPORT int64_t jaxmg_worker_threads(void);

#endif
