/* One process per device (MPMD) on one node: the rendezvous between processes.
 *
 * When the devices of one call belong to several processes of a job (jax.distributed), the
 * process holding mesh position 0 of a group is the leader: it computes the whole call, the
 * positions of the other processes through proxy threads that join the ordinary in-process
 * rendezvous with the remote participants' memory mapped in (src/ffi/mpmd.c). This file is
 * the part that crosses processes: one POSIX shared-memory segment per call, named
 *
 *     /jaxmg-<job token>-<call site>-<group>-<sequence>
 *
 * where the token is new per job (so concurrent or crashed jobs never collide) and the
 * sequence counts the calls of (site, group, position) in each process (the k-th execution of
 * a call site meets the k-th elsewhere). The segment holds a signature of the call (op, dtype,
 * sizes: processes that run different programs get an error, not corrupted memory), one slot
 * per position that takes part across processes (position 0 and every position of a process
 * other than the leader's), the first failure's message and the leader's "done".
 *
 * Synchronisation is by C11 atomics in the segment and polling with a short sleep, not by
 * process-shared mutexes: no lock can be left held by a process that dies, and every wait
 * checks the liveness of the other processes of the call (kill(pid, 0)) between polls. Every
 * wait on arrival has the call's deadline; the wait for the leader's result has none (the
 * leader is computing) but ends as soon as the leader's process is gone or posts a failure.
 *
 * Segments are unlinked by the leader when a call succeeds. A failed call's segment stays as
 * a tombstone (late arrivals fail at once) and is unlinked when the process exits, as is every
 * segment this process created and has not unlinked yet (atexit). */
#ifndef JAXMG_COMMON_MP_H_
#define JAXMG_COMMON_MP_H_

#include <stddef.h>
#include <stdint.h>

#include "jaxmg/jaxmg.h"

enum {
  JAXMG_MP_PAYLOAD = 256, /* bytes a participant publishes (platform specific) */
  JAXMG_MP_SIG = 8,       /* signature words that every process must agree on */
  JAXMG_MP_MAX_PARTS = 256
};

/* Configures this process for a job: `token` (1-32 characters of [0-9A-Za-z]) scopes every
 * segment name; `process_index` is this process's index in the job; pids[i] the pid of
 * process i (for liveness checks; 0 where unknown). May be called again for a new job.
 * Returns JAXMG_EINVAL on bad arguments. Exported for Python (ctypes) and tests. */
JAXMG_EXPORT jaxmg_status_t jaxmg_mp_configure(const char *token, int process_index, int nprocs,
                                               const int64_t *pids);
/* Unlinks every segment this process still has registered (tombstones of failed calls, data
 * segments); returns how many. Runs at exit by itself. */
JAXMG_EXPORT int jaxmg_mp_cleanup(void);
/* Number of segment names this process has registered (0 after successful calls). */
JAXMG_EXPORT int64_t jaxmg_mp_registered(void);

/* This process's index, or -1 when not configured. */
int jaxmg__mp_process(void);

typedef struct jaxmg_mp_call jaxmg_mp_call_t;

typedef struct {
  int64_t site, group;
  int nparts, rank;
  int64_t timeout_ms;             /* arrival deadline (> 0) */
  const char *op;                 /* for messages */
  const int32_t *procs;           /* [nparts] process index of each position of the group */
  int64_t sig[JAXMG_MP_SIG];      /* must be equal in every process */
} jaxmg_mp_join_t;

/* Opens (or creates) the segment of this call (the arrival deadline starts now). The caller
 * must be position 0 or a position outside the leader's process. On failure nothing is left
 * open and the failure is posted to the segment when there is one. */
jaxmg_status_t jaxmg__mp_open(const jaxmg_mp_join_t *j, jaxmg_mp_call_t **out,
                              jaxmg_error_t *err);
/* Publishes this participant's payload (<= JAXMG_MP_PAYLOAD bytes): it has arrived. */
jaxmg_status_t jaxmg__mp_publish(jaxmg_mp_call_t *c, const void *payload, size_t size,
                                 jaxmg_error_t *err);
/* Waits until every participant of the segment has published (the arrival deadline counts
 * from open). On timeout the message names the missing positions. */
jaxmg_status_t jaxmg__mp_wait_arrival(jaxmg_mp_call_t *c, jaxmg_error_t *err);
/* Waits without deadline for the leader's "done"; fails when any participant failed or a
 * process of the call is gone. */
jaxmg_status_t jaxmg__mp_wait_done(jaxmg_mp_call_t *c, jaxmg_error_t *err);
/* JAXMG_OK unless a participant failed or a process of the call is gone (checked now). */
jaxmg_status_t jaxmg__mp_check(jaxmg_mp_call_t *c, jaxmg_error_t *err);
/* The payload published by position `rank` (valid after wait_arrival; NULL for a position
 * that does not take part across processes). */
const void *jaxmg__mp_payload(const jaxmg_mp_call_t *c, int rank);
/* Name of the segment, for data segments derived from it ("<name>-r<rank>"). */
const char *jaxmg__mp_name(const jaxmg_mp_call_t *c);
/* Posts a failure seen at `rank` (the first one wins); everyone's waits fail with it. */
void jaxmg__mp_fail(jaxmg_mp_call_t *c, int rank, const jaxmg_error_t *e);
/* The leader: every result is written; the others may copy them back. */
void jaxmg__mp_done(jaxmg_mp_call_t *c);
/* Unmaps; the leader unlinks after success; a failed call's segment stays registered. */
void jaxmg__mp_close(jaxmg_mp_call_t *c, int ok);

/* Data segments (CPU operands): created by their owner, mapped by the leader. Names are
 * registered for the exit cleanup until jaxmg__mp_shm_destroy. */
jaxmg_status_t jaxmg__mp_shm_create(const char *name, size_t bytes, void **out,
                                    jaxmg_error_t *err);
jaxmg_status_t jaxmg__mp_shm_map(const char *name, size_t bytes, void **out, jaxmg_error_t *err);
void jaxmg__mp_shm_unmap(void *p, size_t bytes);
/* Unmaps (p may be NULL) and unlinks. */
void jaxmg__mp_shm_destroy(const char *name, void *p, size_t bytes);
/* Unlinks the data segments of the positions whose process is gone (after a failure). */
void jaxmg__mp_reap(jaxmg_mp_call_t *c);

#endif
