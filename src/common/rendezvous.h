/* Rendezvous of the per-device calls of one execution.
 *
 * XLA calls an FFI handler once per device, each from its own host thread. The calls that
 * belong together share the XLA run id; within one run the same call may execute several
 * times (a loop), and a 2D mesh holds several independent replica groups. A participant is
 * identified by (run id, call site, instance, group, rank); it joins the oldest session of
 * its (run id, call site, instance, group) that it has not joined yet, so the k-th execution
 * of a call in a run meets the k-th executions of the other ranks.
 *
 * The call site is fixed when the call is traced; the instance tells apart the copies of
 * one traced call that JAX placed several times into one program (0 where the platform has
 * no instance identity; see src/common/ffi_util.h and docs/design.md, "Rendezvous").
 *
 * Every wait has a deadline. A participant that fails posts its error to the session; all
 * others see it at their next wait and return an error naming it. A session that failed
 * before every rank arrived stays as a tombstone for a while so that late arrivals fail at
 * once instead of waiting for peers that already left. */
#ifndef JAXMG_COMMON_RENDEZVOUS_H_
#define JAXMG_COMMON_RENDEZVOUS_H_

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "jaxmg/jaxmg.h"

typedef struct jaxmg_session jaxmg_session_t;

typedef struct {
  int64_t run_id;
  int64_t site;
  int64_t instance;    /* the copy of the traced call (0: none known) */
  int64_t group;
  int nparts;          /* participants of the group */
  int rank;            /* 0 <= rank < nparts: position along the sharded mesh axis */
  int64_t timeout_ms;  /* arrival deadline (> 0) */
  const char *op;      /* "potrs", ... for messages */
  const void *slot;    /* what this participant publishes (buffer pointers, device) */
  size_t slot_size;    /* same for every participant of the session, <= 256 */
} jaxmg_join_t;

/* Joins and fails at once with *e: the participants already waiting (and later arrivals)
 * fail with its message instead of waiting for this rank until the deadline. For a
 * participant that cannot take part (a proxy whose remote memory could not be mapped). */
void jaxmg__rv_join_failed(const jaxmg_join_t *j, const jaxmg_error_t *e);

/* Waits until all participants arrived. On success *out is the session; on failure (timeout,
 * a peer's error, bad arguments) *out is NULL, the caller has already left, and *err names
 * the cause. */
jaxmg_status_t jaxmg__rv_join(const jaxmg_join_t *j, jaxmg_session_t **out, jaxmg_error_t *err);

/* Arrival in two steps, for a participant that may finish waiting on another thread.
 * jaxmg__rv_join_begin arrives and waits at most `first_wait_ms` for the others: when they
 * all arrived (or on any failure) it returns as jaxmg__rv_join does, with *pending = 0.
 * When they have not yet, it returns JAXMG_OK with *out set and *pending = 1: the
 * participant stays arrived and must call jaxmg__rv_join_finish (from any thread), which
 * waits until the deadline of its arrival (`arrival`, filled here) and returns as
 * jaxmg__rv_join does. */
typedef struct {
  struct timespec deadline; /* CLOCK_MONOTONIC */
} jaxmg_arrival_t;

jaxmg_status_t jaxmg__rv_join_begin(const jaxmg_join_t *j, int64_t first_wait_ms,
                                    jaxmg_session_t **out, jaxmg_arrival_t *arrival,
                                    int *pending, jaxmg_error_t *err);
jaxmg_status_t jaxmg__rv_join_finish(const jaxmg_join_t *j, jaxmg_session_t *s,
                                     const jaxmg_arrival_t *arrival, jaxmg_error_t *err);

/* The slot published by `rank`. */
const void *jaxmg__rv_slot(const jaxmg_session_t *s, int rank);

/* 256 bytes of zero-initialised scratch shared by the participants. Writes must be ordered
 * with barriers, and a value read after a barrier may already belong to
 * the next step: use jaxmg__rv_allmax for decisions. */
void *jaxmg__rv_shared(jaxmg_session_t *s);

/* Waits until all participants reached this barrier. timeout_ms < 0: the join deadline's
 * length; 0: wait without deadline (only for waits on a peer that is computing, never on
 * arrival). Returns JAXMG_EPEER when a participant failed. */
jaxmg_status_t jaxmg__rv_barrier(jaxmg_session_t *s, int rank, int64_t timeout_ms,
                                 jaxmg_error_t *err);

/* A barrier that also reduces: every participant brings *value and leaves with the maximum
 * of the values brought to this barrier. Decisions taken after a barrier (stop because a
 * pivot failed) must come from here, not from shared memory that a faster participant may
 * already have overwritten for the next step. */
jaxmg_status_t jaxmg__rv_allmax(jaxmg_session_t *s, int rank, int64_t timeout_ms, int64_t *value,
                                jaxmg_error_t *err);

/* Posts this participant's failure; every current and future wait of the session fails. */
void jaxmg__rv_fail(jaxmg_session_t *s, int rank, const jaxmg_error_t *e);

/* Leaves the session; the last one out frees it. */
void jaxmg__rv_leave(jaxmg_session_t *s, int rank);

#endif
