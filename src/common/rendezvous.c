/* Rendezvous sessions: one global list under one mutex; each session has its own condition
 * variable on the monotonic clock. */
#include "common/rendezvous.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

enum { SLOT_MAX = 256, SHARED_BYTES = 256, SLOT_ALIGN = 16 };
/* How long a failed session is kept so that late arrivals fail at once. */
static const int64_t kTombstoneMs = 120000;

struct jaxmg_session {
  struct jaxmg_session *next;
  int64_t run_id, site, instance, group;
  int nparts;
  int64_t timeout_ms;
  int64_t created_ms;
  char op[24];
  pthread_cond_t cv;
  int njoined, nleft;
  int failed;          /* 1 once any participant failed or a wait timed out */
  int64_t failed_ms;
  jaxmg_status_t fail_code;
  char fail_msg[448];
  int bar_count;
  int64_t bar_gen;
  int64_t red_acc;     /* max of the values brought to the barrier in progress */
  int64_t red_result;  /* max of the values of the last completed barrier */
  size_t slot_size;
  size_t slot_stride;      /* slot_size rounded up to SLOT_ALIGN */
  unsigned char *slots;    /* [nparts * slot_stride], right after the struct: aligned */
  unsigned char *joined;   /* [nparts] */
  unsigned char *at_bar;   /* [nparts] */
  _Alignas(16) unsigned char shared[SHARED_BYTES];
};

_Static_assert(sizeof(struct jaxmg_session) % SLOT_ALIGN == 0, "slots must start aligned");

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static jaxmg_session_t *g_head = NULL;
static int64_t g_live = 0;

static void session_free(jaxmg_session_t *s) {
  pthread_cond_destroy(&s->cv);
  free(s);
}

static void unlink_session(jaxmg_session_t *s) {
  for (jaxmg_session_t **p = &g_head; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      g_live--;
      return;
    }
  }
}

/* Frees tombstones whose time is up. Called with g_mu held. */
static void collect_tombstones(int64_t now) {
  jaxmg_session_t **p = &g_head;
  while (*p) {
    jaxmg_session_t *s = *p;
    if (s->failed && s->nleft == s->njoined && now - s->failed_ms > kTombstoneMs) {
      *p = s->next;
      g_live--;
      session_free(s);
    } else {
      p = &s->next;
    }
  }
}

static jaxmg_session_t *session_new(const jaxmg_join_t *j, int64_t now) {
  size_t n = (size_t)j->nparts;
  /* Slots hold structs of pointers that peers read in place: each starts aligned (the struct
   * size is a multiple of its 16-byte alignment, and the stride is rounded up to 16). */
  size_t stride = (j->slot_size + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
  jaxmg_session_t *s = calloc(1, sizeof *s + n * stride + 2 * n);
  if (!s) return NULL;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    free(s);
    return NULL;
  }
  s->run_id = j->run_id;
  s->site = j->site;
  s->instance = j->instance;
  s->group = j->group;
  s->nparts = j->nparts;
  s->timeout_ms = j->timeout_ms;
  s->created_ms = now;
  snprintf(s->op, sizeof s->op, "%s", j->op ? j->op : "op");
  s->slot_size = j->slot_size;
  s->slot_stride = stride;
  s->slots = (unsigned char *)(s + 1);
  s->joined = s->slots + n * stride;
  s->at_bar = s->joined + n;
  /* Append: the oldest session of a key is found first. */
  jaxmg_session_t **p = &g_head;
  while (*p) p = &(*p)->next;
  *p = s;
  g_live++;
  return s;
}

static void deadline_after(struct timespec *ts, int64_t ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000;
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* Lists the ranks whose flag is 0 ("2, 3"). */
static void missing_ranks(const jaxmg_session_t *s, const unsigned char *flags, char *buf,
                          size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int r = 0; r < s->nparts && used + 12 < len; r++) {
    if (!flags[r]) used += (size_t)snprintf(buf + used, len - used, "%s%d", used ? ", " : "", r);
  }
}

/* Marks the session failed (first error wins) and wakes everyone. g_mu held. */
static void fail_locked(jaxmg_session_t *s, jaxmg_status_t code, const char *msg) {
  if (!s->failed) {
    s->failed = 1;
    s->failed_ms = jaxmg__now_ms();
    s->fail_code = code;
    snprintf(s->fail_msg, sizeof s->fail_msg, "%s", msg);
  }
  pthread_cond_broadcast(&s->cv);
}

static jaxmg_status_t peer_error(const jaxmg_session_t *s, int rank, jaxmg_error_t *err) {
  return jaxmg__seterr(err, s->fail_code == JAXMG_ETIMEDOUT ? JAXMG_ETIMEDOUT : JAXMG_EPEER,
                       "%.440s (seen by mesh position %d)", s->fail_msg, rank);
}

/* The oldest session of (run id, site, instance, group) that this rank has not joined yet;
 * g_mu held. */
static jaxmg_session_t *find_locked(const jaxmg_join_t *j) {
  jaxmg_session_t *s = g_head;
  for (; s; s = s->next) {
    if (s->run_id == j->run_id && s->site == j->site && s->instance == j->instance &&
        s->group == j->group && s->nparts == j->nparts && !s->joined[j->rank])
      break;
  }
  return s;
}

static int ts_before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Registers the arrival of j's rank in its session (created if needed). g_mu held. */
static jaxmg_status_t arrive_locked(const jaxmg_join_t *j, jaxmg_session_t **out,
                                    jaxmg_error_t *err) {
  int64_t now = jaxmg__now_ms();
  collect_tombstones(now);
  jaxmg_session_t *s = find_locked(j);
  if (s && s->slot_size != j->slot_size)
    return jaxmg__seterr(err, JAXMG_EINTERNAL, "jaxmg.%s: rendezvous slot size mismatch", j->op);
  if (!s && !(s = session_new(j, now))) {
    return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory for the rendezvous",
                         j->op);
  }
  s->joined[j->rank] = 1;
  s->njoined++;
  if (j->slot_size) memcpy(s->slots + (size_t)j->rank * s->slot_stride, j->slot, j->slot_size);
  if (s->njoined == s->nparts) pthread_cond_broadcast(&s->cv);
  *out = s;
  return JAXMG_OK;
}

/* Waits for the others until `dl` (then the session fails: timeout) or, when `stop` comes
 * first, until `stop` (then *pending = 1 and the participant stays joined). On failure the
 * participant has left. g_mu held. */
static jaxmg_status_t await_locked(const jaxmg_join_t *j, jaxmg_session_t *s,
                                   const struct timespec *dl, const struct timespec *stop,
                                   int *pending, jaxmg_error_t *err) {
  const struct timespec *until = (stop && ts_before(stop, dl)) ? stop : dl;
  int rc = 0;
  *pending = 0;
  while (!s->failed && s->njoined < s->nparts && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&s->cv, &g_mu, until);
  if (!s->failed && s->njoined < s->nparts && until == stop) {
    *pending = 1;
    return JAXMG_OK;
  }
  if (!s->failed && s->njoined < s->nparts) {
    char miss[160];
    char msg[448];
    missing_ranks(s, s->joined, miss, sizeof miss);
    snprintf(msg, sizeof msg,
             "jaxmg.%s: timed out after %.1f s waiting for the devices at mesh positions [%s] "
             "of group %lld (%d of %d arrived; call site %lld, instance %lld, run %lld). The "
             "per-device calls of one execution must all reach this op; raise the limit with "
             "jaxmg.set_timeout() if they are only slow",
             s->op, (double)j->timeout_ms / 1000.0, miss, (long long)s->group, s->njoined,
             s->nparts, (long long)s->site, (long long)s->instance, (long long)s->run_id);
    fail_locked(s, JAXMG_ETIMEDOUT, msg);
  }
  if (s->failed) {
    jaxmg_status_t code = peer_error(s, j->rank, err);
    s->nleft++;
    if (s->nleft == s->nparts) {
      unlink_session(s);
      session_free(s);
    }
    return code;
  }
  return JAXMG_OK;
}

static jaxmg_status_t check_join(const jaxmg_join_t *j, jaxmg_error_t *err) {
  if (j->nparts < 1 || j->rank < 0 || j->rank >= j->nparts || j->timeout_ms <= 0 ||
      j->slot_size > SLOT_MAX) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: bad rendezvous arguments (rank %d of %d, timeout %lld ms)",
                         j->op ? j->op : "op", j->rank, j->nparts, (long long)j->timeout_ms);
  }
  return JAXMG_OK;
}

/* Arrives and waits until the deadline of the arrival, or only until `first_wait_ms` from
 * now when that is >= 0 (then *pending tells whether the others are still missing). */
static jaxmg_status_t join_until(const jaxmg_join_t *j, int64_t first_wait_ms,
                                 jaxmg_session_t **out, jaxmg_arrival_t *arrival, int *pending,
                                 jaxmg_error_t *err) {
  jaxmg_session_t *s = NULL;
  *out = NULL;
  *pending = 0;
  jaxmg_status_t st = check_join(j, err);
  if (st) return st;
  pthread_mutex_lock(&g_mu);
  st = arrive_locked(j, &s, err);
  if (!st) {
    struct timespec stop;
    deadline_after(&arrival->deadline, j->timeout_ms);
    if (first_wait_ms >= 0) deadline_after(&stop, first_wait_ms);
    st = await_locked(j, s, &arrival->deadline, first_wait_ms >= 0 ? &stop : NULL, pending,
                      err);
  }
  pthread_mutex_unlock(&g_mu);
  if (!st) *out = s;
  return st;
}

jaxmg_status_t jaxmg__rv_join_begin(const jaxmg_join_t *j, int64_t first_wait_ms,
                                    jaxmg_session_t **out, jaxmg_arrival_t *arrival,
                                    int *pending, jaxmg_error_t *err) {
  return join_until(j, first_wait_ms > 0 ? first_wait_ms : 0, out, arrival, pending, err);
}

jaxmg_status_t jaxmg__rv_join_finish(const jaxmg_join_t *j, jaxmg_session_t *s,
                                     const jaxmg_arrival_t *arrival, jaxmg_error_t *err) {
  int pending = 0;
  pthread_mutex_lock(&g_mu);
  jaxmg_status_t st = await_locked(j, s, &arrival->deadline, NULL, &pending, err);
  pthread_mutex_unlock(&g_mu);
  return st;
}

jaxmg_status_t jaxmg__rv_join(const jaxmg_join_t *j, jaxmg_session_t **out, jaxmg_error_t *err) {
  jaxmg_arrival_t arrival;
  int pending = 0;
  return join_until(j, -1, out, &arrival, &pending, err);
}

void jaxmg__rv_join_failed(const jaxmg_join_t *j, const jaxmg_error_t *e) {
  if (j->nparts < 1 || j->rank < 0 || j->rank >= j->nparts || j->slot_size > SLOT_MAX) return;
  char msg[448];
  snprintf(msg, sizeof msg, "jaxmg.%s failed on the device at mesh position %d: %.360s",
           j->op ? j->op : "op", j->rank, e ? e->msg : "unknown error");
  pthread_mutex_lock(&g_mu);
  int64_t now = jaxmg__now_ms();
  collect_tombstones(now);
  jaxmg_session_t *s = find_locked(j);
  if (s && s->slot_size != j->slot_size) s = NULL;
  if (!s) s = session_new(j, now);
  if (s) {
    s->joined[j->rank] = 1;
    s->njoined++;
    fail_locked(s, e ? e->code : JAXMG_EINTERNAL, msg);
    s->nleft++;
    if (s->nleft == s->nparts) {
      unlink_session(s);
      session_free(s);
    }
  }
  pthread_mutex_unlock(&g_mu);
}

const void *jaxmg__rv_slot(const jaxmg_session_t *s, int rank) {
  return s->slots + (size_t)rank * s->slot_stride;
}

void *jaxmg__rv_shared(jaxmg_session_t *s) { return s->shared; }

jaxmg_status_t jaxmg__rv_barrier(jaxmg_session_t *s, int rank, int64_t timeout_ms,
                                 jaxmg_error_t *err) {
  int64_t v = 0;
  return jaxmg__rv_allmax(s, rank, timeout_ms, &v, err);
}

jaxmg_status_t jaxmg__rv_allmax(jaxmg_session_t *s, int rank, int64_t timeout_ms, int64_t *value,
                                jaxmg_error_t *err) {
  pthread_mutex_lock(&g_mu);
  if (s->failed) {
    jaxmg_status_t code = peer_error(s, rank, err);
    pthread_mutex_unlock(&g_mu);
    return code;
  }
  int64_t gen = s->bar_gen;
  s->at_bar[rank] = 1;
  if (s->bar_count == 0 || *value > s->red_acc) s->red_acc = *value;
  if (++s->bar_count == s->nparts) {
    s->red_result = s->red_acc;
    s->bar_count = 0;
    s->bar_gen++;
    memset(s->at_bar, 0, (size_t)s->nparts);
    pthread_cond_broadcast(&s->cv);
  } else {
    int64_t ms = timeout_ms < 0 ? s->timeout_ms : timeout_ms;
    struct timespec dl;
    if (ms > 0) deadline_after(&dl, ms);
    int rc = 0;
    while (!s->failed && s->bar_gen == gen && rc != ETIMEDOUT)
      rc = ms > 0 ? pthread_cond_timedwait(&s->cv, &g_mu, &dl) : pthread_cond_wait(&s->cv, &g_mu);
    if (!s->failed && s->bar_gen == gen) {
      char miss[160], msg[448];
      missing_ranks(s, s->at_bar, miss, sizeof miss);
      snprintf(msg, sizeof msg,
               "jaxmg.%s: timed out after %.1f s at a synchronisation point waiting for the "
               "devices at mesh positions [%s] of group %lld",
               s->op, (double)ms / 1000.0, miss, (long long)s->group);
      fail_locked(s, JAXMG_ETIMEDOUT, msg);
    }
  }
  jaxmg_status_t code = JAXMG_OK;
  if (s->failed) code = peer_error(s, rank, err);
  /* Valid until this participant arrives at the next barrier: the next one cannot complete
   * without it. */
  *value = s->red_result;
  pthread_mutex_unlock(&g_mu);
  return code;
}

void jaxmg__rv_fail(jaxmg_session_t *s, int rank, const jaxmg_error_t *e) {
  char msg[448];
  snprintf(msg, sizeof msg, "jaxmg.%s failed on the device at mesh position %d: %.360s", s->op, rank,
           e ? e->msg : "unknown error");
  pthread_mutex_lock(&g_mu);
  fail_locked(s, e ? e->code : JAXMG_EINTERNAL, msg);
  pthread_mutex_unlock(&g_mu);
}

void jaxmg__rv_leave(jaxmg_session_t *s, int rank) {
  (void)rank;
  pthread_mutex_lock(&g_mu);
  s->nleft++;
  if (s->nleft == s->nparts) {
    unlink_session(s);
    session_free(s);
  }
  pthread_mutex_unlock(&g_mu);
}

int64_t jaxmg_live_sessions(void) {
  pthread_mutex_lock(&g_mu);
  int64_t n = g_live;
  pthread_mutex_unlock(&g_mu);
  return n;
}
