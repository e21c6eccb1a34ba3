/* The rendezvous of the per-device calls (src/common/rendezvous.h), driven by pthreads that
 * play the per-device host threads XLA would run. Deadlines are short (200 ms) so that the
 * failure paths run quickly; no check depends on how long anything took. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/rendezvous.h"
#include "jaxmg_test.h"

enum { kMaxThreads = 16 };
static const int64_t kShortMs = 200;   /* deadlines that are meant to expire */
static const int64_t kLongMs = 30000;  /* deadlines that must not expire */

/* Each test uses run ids of its own so that tombstones of one test never meet another. */
static int64_t next_run_id(void) {
  static int64_t id = 1000000;
  return ++id;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct {
  int rank, nparts;
  int64_t run_id, site, instance, group, timeout_ms;
  int rounds;          /* test-specific */
  size_t slot_size;
  int skip;            /* this participant never arrives */
  jaxmg_status_t st;   /* status of the first failing call (or OK) */
  jaxmg_error_t err;
} rv_arg_t;

static void run_threads(int n, void *(*fn)(void *), rv_arg_t *args) {
  pthread_t th[kMaxThreads];
  int started[kMaxThreads] = {0};
  for (int i = 0; i < n; i++) {
    if (args[i].skip) continue;
    started[i] = JT_EQ(pthread_create(&th[i], NULL, fn, &args[i]), 0);
  }
  for (int i = 0; i < n; i++)
    if (started[i]) pthread_join(th[i], NULL);
}

static void fill_args(rv_arg_t *a, int n, int64_t run_id, int64_t site, int64_t group,
                      int64_t timeout_ms) {
  memset(a, 0, (size_t)n * sizeof *a);
  for (int i = 0; i < n; i++) {
    a[i].rank = i;
    a[i].nparts = n;
    a[i].run_id = run_id;
    a[i].site = site;
    a[i].group = group;
    a[i].timeout_ms = timeout_ms;
    a[i].slot_size = 16;
  }
}

/* What a participant publishes: its identity and a recognisable payload. */
typedef struct {
  int64_t group, rank, round, magic;
  unsigned char pad[256 - 4 * sizeof(int64_t)];
} slot_t;

static jaxmg_join_t join_of(const rv_arg_t *a, const slot_t *slot) {
  jaxmg_join_t j = {a->run_id,     a->site, a->instance, a->group, a->nparts, a->rank,
                    a->timeout_ms, "testop", slot,        a->slot_size};
  return j;
}

/* ---- argument checks --------------------------------------------------------------------- */
void test_rv_bad_args(void) {
  int64_t live = jaxmg_live_sessions();
  slot_t slot = {0};
  struct {
    int nparts, rank;
    int64_t timeout;
    size_t slot_size;
  } cases[] = {{0, 0, 1000, 8}, {2, -1, 1000, 8}, {2, 2, 1000, 8},
               {2, 0, 0, 8},    {2, 0, -5, 8},    {2, 0, 1000, 257}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    jaxmg_join_t j = {next_run_id(), 1, 0, 0, cases[i].nparts, cases[i].rank, cases[i].timeout,
                      "testop", &slot, cases[i].slot_size};
    jaxmg_session_t *s = (jaxmg_session_t *)&slot; /* must be reset to NULL */
    jaxmg_error_t err = {JAXMG_OK, ""};
    jt_context("case %zu", i);
    JT_EQ(jaxmg__rv_join(&j, &s, &err), JAXMG_EINVAL);
    JT_CHECK(s == NULL);
    JT_EQ(err.code, JAXMG_EINVAL);
    JT_STR_CONTAINS(err.msg, "jaxmg.testop");
    JT_STR_CONTAINS(err.msg, "rendezvous");
  }
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- everyone meets and sees everyone's slot and the shared scratch ---------------------- */
static void *meet_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine;
  memset(&mine, 0, sizeof mine);
  mine.group = a->group, mine.rank = a->rank, mine.magic = 0x5eed0000 + a->rank;
  memset(mine.pad, 0xA0 + a->rank, sizeof mine.pad);
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  jt_context("meet: rank %d of %d, slot %zu bytes", a->rank, a->nparts, a->slot_size);
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (!JT_EQ(a->st, JAXMG_OK) || !JT_CHECK(s != NULL)) return NULL;
  for (int r = 0; r < a->nparts; r++) {
    const slot_t *o = jaxmg__rv_slot(s, r);
    if (a->slot_size >= 4 * sizeof(int64_t)) {
      JT_EQ(o->rank, r);
      JT_EQ(o->magic, 0x5eed0000 + r);
    }
    if (a->slot_size == sizeof(slot_t)) {
      JT_EQ(o->pad[0], 0xA0 + r);
      JT_EQ(o->pad[sizeof o->pad - 1], 0xA0 + r);
    }
  }
  unsigned char *sh = jaxmg__rv_shared(s);
  sh[a->rank] = (unsigned char)(a->rank + 1); /* own byte; the barrier publishes it */
  JT_EQ(jaxmg__rv_barrier(s, a->rank, -1, &a->err), JAXMG_OK);
  for (int r = 0; r < a->nparts; r++) JT_EQ(sh[r], r + 1);
  JT_EQ(sh[a->nparts], 0); /* the rest of the scratch starts zeroed */
  JT_EQ(jaxmg__rv_barrier(s, a->rank, -1, &a->err), JAXMG_OK);
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_meet(void) {
  int64_t live = jaxmg_live_sessions();
  const int sizes[] = {1, 2, 4, 7, 16};
  const size_t slots[] = {0, 4 * sizeof(int64_t), sizeof(slot_t)};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    for (size_t k = 0; k < sizeof slots / sizeof slots[0]; k++) {
      rv_arg_t args[kMaxThreads];
      fill_args(args, sizes[i], next_run_id(), 7, 0, kLongMs);
      for (int r = 0; r < sizes[i]; r++) args[r].slot_size = slots[k];
      run_threads(sizes[i], meet_thread, args);
    }
  }
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- reducing barriers ------------------------------------------------------------------- */
static void *allmax_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  jt_context("allmax: rank %d of %d", a->rank, a->nparts);
  if (!JT_EQ(jaxmg__rv_join(&j, &s, &a->err), JAXMG_OK)) return NULL;
  const int P = a->nparts;
  for (int k = 0; k < a->rounds; k++) {
    /* Negative values, decreasing from round to round, with the maximum held by a different
     * rank each time: a result carried over from the previous barrier (or from a plain
     * barrier, which reduces 0) would be too large. */
    int64_t v = -10 * (int64_t)k - 5 + (a->rank + k) % P;
    const int64_t want = -10 * (int64_t)k - 5 + (P - 1);
    const int64_t timeout = k % 3 == 0 ? -1 : k % 3 == 1 ? 0 : kLongMs;
    if (!JT_EQ(jaxmg__rv_allmax(s, a->rank, timeout, &v, &a->err), JAXMG_OK)) break;
    if (!JT_EQ(v, want)) break;
    if (k % 2 && !JT_EQ(jaxmg__rv_barrier(s, a->rank, -1, &a->err), JAXMG_OK)) break;
    if ((k + a->rank) % 17 == 0) sleep_ms(1); /* vary who arrives last */
  }
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_allmax(void) {
  int64_t live = jaxmg_live_sessions();
  const int sizes[] = {1, 2, 3, 5};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    rv_arg_t args[kMaxThreads];
    fill_args(args, sizes[i], next_run_id(), 3, 0, kLongMs);
    for (int r = 0; r < sizes[i]; r++) args[r].rounds = 300;
    run_threads(sizes[i], allmax_thread, args);
  }
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- loop semantics: the k-th session of a key meets the k-th calls of the others --------- */
static void *loop_thread(void *p) {
  rv_arg_t *a = p;
  uint64_t rng = 77 + (uint64_t)a->rank;
  for (int k = 0; k < a->rounds; k++) {
    slot_t mine = {0};
    mine.rank = a->rank, mine.round = k;
    jaxmg_join_t j = join_of(a, &mine);
    jaxmg_session_t *s = NULL;
    jt_context("loop: rank %d of %d, round %d", a->rank, a->nparts, k);
    if (!JT_EQ(jaxmg__rv_join(&j, &s, &a->err), JAXMG_OK)) return NULL;
    for (int r = 0; r < a->nparts; r++) {
      const slot_t *o = jaxmg__rv_slot(s, r);
      JT_EQ(o->round, k);
      JT_EQ(o->rank, r);
    }
    int64_t v = (int64_t)k * a->nparts + a->rank;
    JT_EQ(jaxmg__rv_allmax(s, a->rank, -1, &v, &a->err), JAXMG_OK);
    JT_EQ(v, (int64_t)k * a->nparts + a->nparts - 1);
    /* Some leave at once and race into the next session while others still read this one. */
    if (jt_rand(&rng) % 4 == 0) sleep_ms(1);
    jaxmg__rv_leave(s, a->rank);
  }
  return NULL;
}

void test_rv_loop(void) {
  int64_t live = jaxmg_live_sessions();
  const int sizes[] = {1, 2, 3, 4};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    rv_arg_t args[kMaxThreads];
    fill_args(args, sizes[i], next_run_id(), 11, 0, kLongMs);
    for (int r = 0; r < sizes[i]; r++) args[r].rounds = 60, args[r].slot_size = 4 * sizeof(int64_t);
    run_threads(sizes[i], loop_thread, args);
  }
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- instances: copies of one call site in one run meet their own copies ---------------- */
/* Rank r runs instances 1 and 2 of the same site concurrently (two threads, as XLA's CPU
 * runtime may), rank 0 starting instance 1 first and rank 1 instance 2 first; each instance
 * loops. Keyed by the site alone, the first sessions would pair different instances. */
static void *instance_thread(void *p) {
  rv_arg_t *a = p;
  if ((a->rank == 0) != (a->instance == 1)) sleep_ms(20);
  for (int k = 0; k < a->rounds; k++) {
    slot_t mine = {0};
    mine.rank = a->rank, mine.round = k, mine.magic = a->instance;
    jaxmg_join_t j = join_of(a, &mine);
    jaxmg_session_t *s = NULL;
    jt_context("instances: rank %d, instance %lld, round %d", a->rank, (long long)a->instance, k);
    if (!JT_EQ(jaxmg__rv_join(&j, &s, &a->err), JAXMG_OK)) return NULL;
    for (int r = 0; r < a->nparts; r++) {
      const slot_t *o = jaxmg__rv_slot(s, r);
      JT_EQ(o->magic, a->instance);
      JT_EQ(o->round, k);
      JT_EQ(o->rank, r);
    }
    JT_EQ(jaxmg__rv_barrier(s, a->rank, -1, &a->err), JAXMG_OK);
    jaxmg__rv_leave(s, a->rank);
  }
  return NULL;
}

void test_rv_instances(void) {
  int64_t live = jaxmg_live_sessions(), run = next_run_id();
  rv_arg_t args[4];
  fill_args(args, 2, run, 9, 0, kLongMs);      /* instance 1: ranks 0, 1 */
  fill_args(args + 2, 2, run, 9, 0, kLongMs);  /* instance 2: ranks 0, 1 */
  for (int i = 0; i < 4; i++) {
    args[i].instance = i < 2 ? 1 : 2;
    args[i].rounds = 3;
    args[i].slot_size = 4 * sizeof(int64_t);
  }
  run_threads(4, instance_thread, args);
  jt_context("%s", "");
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- arrival in two steps (begin on one thread, finish on another) ---------------------- */
typedef struct {
  rv_arg_t *a;
  jaxmg_session_t *s;
  jaxmg_arrival_t arrival;
  jaxmg_status_t st;
  jaxmg_error_t err;
} finish_arg_t;

static void *finish_thread(void *p) {
  finish_arg_t *f = p;
  slot_t mine = {0};
  jaxmg_join_t j = join_of(f->a, &mine);
  f->st = jaxmg__rv_join_finish(&j, f->s, &f->arrival, &f->err);
  return NULL;
}

static void *late_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  mine.rank = a->rank, mine.magic = 7;
  sleep_ms(a->rounds); /* rounds: how late, in ms */
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (!a->st) {
    JT_EQ(((const slot_t *)jaxmg__rv_slot(s, 0))->magic, 5);
    a->st = jaxmg__rv_barrier(s, a->rank, -1, &a->err);
    jaxmg__rv_leave(s, a->rank);
  }
  return NULL;
}

void test_rv_join_two_steps(void) {
  int64_t live = jaxmg_live_sessions();
  for (int c = 0; c < 4; c++) {
    /* c 0: everyone arrives within the first wait (nothing pending); 1: rank 1 is late, rank 0
     * finishes on another thread and both meet; 2: rank 1 never comes, the finish times out
     * at the deadline of rank 0's arrival; 3: a failure posted while rank 0 is pending. */
    rv_arg_t args[2];
    fill_args(args, 2, next_run_id(), 13, 0, c == 2 ? kShortMs : kLongMs);
    for (int i = 0; i < 2; i++) args[i].slot_size = 4 * sizeof(int64_t);
    args[1].rounds = c == 0 ? 0 : 60;
    jt_context("two steps: case %d", c);
    pthread_t late;
    int started = 0;
    if (c < 2) started = JT_EQ(pthread_create(&late, NULL, late_thread, &args[1]), 0);
    slot_t mine = {0};
    mine.magic = 5;
    jaxmg_join_t j = join_of(&args[0], &mine);
    finish_arg_t f = {&args[0], NULL, {{0, 0}}, JAXMG_OK, {JAXMG_OK, ""}};
    int pending = -1;
    jaxmg_status_t st = jaxmg__rv_join_begin(&j, c == 0 ? kLongMs : 10, &f.s, &f.arrival,
                                             &pending, &f.err);
    JT_EQ(st, JAXMG_OK);
    JT_CHECK(f.s != NULL);
    JT_EQ(pending, c == 0 ? 0 : 1);
    if (!st && pending) {
      if (c == 3) {
        jaxmg_error_t e = {JAXMG_EFAULT, "injected by the test"};
        jaxmg_join_t j1 = join_of(&args[1], &mine);
        jaxmg__rv_join_failed(&j1, &e);
      }
      pthread_t th;
      if (JT_EQ(pthread_create(&th, NULL, finish_thread, &f), 0)) pthread_join(th, NULL);
      st = f.st;
    }
    if (c < 2) {
      JT_EQ(st, JAXMG_OK);
      if (!st) {
        JT_EQ(jaxmg__rv_barrier(f.s, 0, -1, &f.err), JAXMG_OK);
        jaxmg__rv_leave(f.s, 0);
      }
    } else if (c == 2) {
      JT_EQ(st, JAXMG_ETIMEDOUT);
      JT_STR_CONTAINS(f.err.msg, "mesh positions [1]");
    } else {
      JT_EQ(st, JAXMG_EPEER);
      JT_STR_CONTAINS(f.err.msg, "injected by the test");
    }
    if (started) pthread_join(late, NULL);
    if (c < 2) JT_EQ(args[1].st, JAXMG_OK);
  }
  jt_context("%s", "");
  /* Case 2 leaves a tombstone (rank 1 never left). */
  JT_CHECK(jaxmg_live_sessions() <= live + 1);
}

/* ---- replica groups are independent ------------------------------------------------------- */
static void *group_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  mine.group = a->group, mine.rank = a->rank;
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (a->st) return NULL;
  for (int r = 0; r < a->nparts; r++) {
    const slot_t *o = jaxmg__rv_slot(s, r);
    JT_EQ(o->group, a->group);
    JT_EQ(o->rank, r);
  }
  int64_t v = a->group * 1000 + a->rank;
  a->st = jaxmg__rv_allmax(s, a->rank, -1, &v, &a->err);
  JT_EQ(v, a->group * 1000 + a->nparts - 1);
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_groups(void) {
  int64_t live = jaxmg_live_sessions(), run = next_run_id();
  /* Two complete groups of 3 on the same run and call site. */
  rv_arg_t args[6];
  fill_args(args, 3, run, 5, 0, kLongMs);
  fill_args(args + 3, 3, run, 5, 1, kLongMs);
  for (int i = 0; i < 6; i++) args[i].slot_size = 2 * sizeof(int64_t);
  run_threads(6, group_thread, args);
  for (int i = 0; i < 6; i++) JT_EQ(args[i].st, JAXMG_OK);
  JT_EQ(jaxmg_live_sessions(), live);

  /* Group 1 misses a participant and times out; group 0 is not affected. */
  run = next_run_id();
  fill_args(args, 3, run, 5, 0, kLongMs);
  fill_args(args + 3, 3, run, 5, 1, kShortMs);
  for (int i = 0; i < 6; i++) args[i].slot_size = 2 * sizeof(int64_t);
  args[5].skip = 1;
  run_threads(6, group_thread, args);
  for (int i = 0; i < 3; i++) JT_EQ(args[i].st, JAXMG_OK);
  for (int i = 3; i < 5; i++) {
    JT_EQ(args[i].st, JAXMG_ETIMEDOUT);
    JT_STR_CONTAINS(args[i].err.msg, "mesh positions [2] of group 1");
  }
  JT_EQ(jaxmg_live_sessions(), live + 1); /* group 1's session is kept as a tombstone */
  args[5].skip = 0;
  run_threads(1, group_thread, args + 5); /* the late participant clears it */
  JT_EQ(args[5].st, JAXMG_ETIMEDOUT);
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- deadlines ---------------------------------------------------------------------------- */
static void *join_leave_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = (jaxmg_session_t *)&mine;
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (a->st) {
    JT_CHECK(s == NULL);
    return NULL;
  }
  a->st = jaxmg__rv_barrier(s, a->rank, -1, &a->err);
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_timeout(void) {
  int64_t live = jaxmg_live_sessions();
  rv_arg_t args[4];
  fill_args(args, 4, next_run_id(), 9, 2, kShortMs);
  args[1].skip = args[3].skip = 1;
  run_threads(4, join_leave_thread, args);
  for (int r = 0; r < 4; r += 2) {
    jt_context("rank %d", r);
    JT_EQ(args[r].st, JAXMG_ETIMEDOUT);
    JT_EQ(args[r].err.code, JAXMG_ETIMEDOUT);
    JT_STR_CONTAINS(args[r].err.msg, "jaxmg.testop: timed out");
    JT_STR_CONTAINS(args[r].err.msg, "mesh positions [1, 3] of group 2");
    JT_STR_CONTAINS(args[r].err.msg, "2 of 4 arrived");
    JT_STR_CONTAINS(args[r].err.msg, "jaxmg.set_timeout");
  }
  jt_context("%s", "");
  /* A session that failed before everyone arrived stays as a tombstone (kept ~120 s). */
  JT_EQ(jaxmg_live_sessions(), live + 1);
  /* Let the missing ones arrive late so that the tombstone goes away (test_rv_tombstone
   * checks what they see). */
  args[1].skip = args[3].skip = 0;
  args[0].skip = args[2].skip = 1;
  run_threads(4, join_leave_thread, args);
  JT_EQ(jaxmg_live_sessions(), live);
}

/* A barrier deadline: everyone joined, one participant does not come to the barrier in time.
 * The late one then finds the session failed. */
typedef struct {
  rv_arg_t a;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int released;
} barrier_late_t;

static barrier_late_t g_bl;

static void *barrier_late_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (a->st) return NULL;
  if (a->rank == 1) { /* waits until the others gave up on the barrier */
    pthread_mutex_lock(&g_bl.mu);
    while (g_bl.released < a->nparts - 1) pthread_cond_wait(&g_bl.cv, &g_bl.mu);
    pthread_mutex_unlock(&g_bl.mu);
    a->st = jaxmg__rv_barrier(s, a->rank, kLongMs, &a->err);
  } else {
    a->st = jaxmg__rv_barrier(s, a->rank, kShortMs, &a->err);
    pthread_mutex_lock(&g_bl.mu);
    g_bl.released++;
    pthread_cond_broadcast(&g_bl.cv);
    pthread_mutex_unlock(&g_bl.mu);
  }
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_tombstone(void) {
  int64_t live = jaxmg_live_sessions(), run = next_run_id();
  rv_arg_t args[3];
  /* Position 2 misses the deadline; positions 0 and 1 leave with DEADLINE_EXCEEDED. */
  fill_args(args, 3, run, 4, 0, kShortMs);
  args[2].skip = 1;
  run_threads(3, join_leave_thread, args);
  JT_EQ(args[0].st, JAXMG_ETIMEDOUT);
  JT_EQ(args[1].st, JAXMG_ETIMEDOUT);
  JT_EQ(jaxmg_live_sessions(), live + 1);
  /* The late arrival has a long deadline of its own: it must fail at once from the
   * tombstone with the original message (which names position 2 as missing), not wait
   * for new peers and time out with a message naming positions 0 and 1. */
  fill_args(args, 3, run, 4, 0, kLongMs);
  args[0].skip = args[1].skip = 1;
  run_threads(3, join_leave_thread, args);
  JT_EQ(args[2].st, JAXMG_ETIMEDOUT);
  JT_STR_CONTAINS(args[2].err.msg, "mesh positions [2] of group 0");
  JT_STR_CONTAINS(args[2].err.msg, "seen by mesh position 2");
  JT_EQ(jaxmg_live_sessions(), live); /* every position visited: freed */

  /* The same key afterwards opens a fresh session that works. */
  fill_args(args, 3, run, 4, 0, kLongMs);
  run_threads(3, join_leave_thread, args);
  for (int r = 0; r < 3; r++) JT_EQ(args[r].st, JAXMG_OK);
  JT_EQ(jaxmg_live_sessions(), live);

  /* Barrier deadline. */
  memset(&g_bl, 0, sizeof g_bl);
  pthread_mutex_init(&g_bl.mu, NULL);
  pthread_cond_init(&g_bl.cv, NULL);
  fill_args(args, 3, next_run_id(), 4, 0, kLongMs);
  run_threads(3, barrier_late_thread, args);
  for (int r = 0; r < 3; r++) {
    jt_context("barrier deadline, rank %d", r);
    JT_EQ(args[r].st, JAXMG_ETIMEDOUT);
    JT_STR_CONTAINS(args[r].err.msg, "synchronisation point");
    JT_STR_CONTAINS(args[r].err.msg, "mesh positions [1]");
  }
  jt_context("%s", "");
  pthread_cond_destroy(&g_bl.cv);
  pthread_mutex_destroy(&g_bl.mu);
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- a participant that fails ------------------------------------------------------------- */
static void *fail_thread(void *p) {
  rv_arg_t *a = p;
  slot_t mine = {0};
  jaxmg_join_t j = join_of(a, &mine);
  jaxmg_session_t *s = NULL;
  a->st = jaxmg__rv_join(&j, &s, &a->err);
  if (a->st) return NULL;
  if (a->rank == 1) {
    if (a->rounds) sleep_ms(20); /* likely (not necessarily) after the others wait */
    jaxmg_error_t e = {JAXMG_ELIB, "cusolverMgPotrf returned 7 (boom 42)"};
    jaxmg__rv_fail(s, a->rank, &e);
    a->st = e.code;
  } else {
    /* No deadline: only the failure can release this wait. */
    a->st = jaxmg__rv_barrier(s, a->rank, 0, &a->err);
    jaxmg_error_t e2 = {JAXMG_OK, ""};
    int64_t v = 1;
    JT_EQ(jaxmg__rv_allmax(s, a->rank, -1, &v, &e2), JAXMG_EPEER); /* and every later wait */
    JT_EQ(jaxmg__rv_barrier(s, a->rank, kLongMs, &e2), JAXMG_EPEER);
    JT_STR_CONTAINS(e2.msg, "boom 42");
  }
  jaxmg__rv_leave(s, a->rank);
  return NULL;
}

void test_rv_fail(void) {
  int64_t live = jaxmg_live_sessions();
  for (int variant = 0; variant < 2; variant++) {
    rv_arg_t args[3];
    fill_args(args, 3, next_run_id(), 2, 0, kLongMs);
    for (int r = 0; r < 3; r++) args[r].rounds = variant;
    run_threads(3, fail_thread, args);
    for (int r = 0; r < 3; r += 2) {
      jt_context("variant %d, rank %d", variant, r);
      JT_EQ(args[r].st, JAXMG_EPEER);
      JT_EQ(args[r].err.code, JAXMG_EPEER);
      JT_STR_CONTAINS(args[r].err.msg, "jaxmg.testop failed on the device at mesh position 1");
      JT_STR_CONTAINS(args[r].err.msg, "boom 42");
      JT_STR_CONTAINS(args[r].err.msg,
                      r == 0 ? "seen by mesh position 0" : "seen by mesh position 2");
    }
  }
  jt_context("%s", "");
  /* Everyone had joined: the failed session is freed, not kept. */
  JT_EQ(jaxmg_live_sessions(), live);
}

/* ---- an internal inconsistency: two slot sizes for one session ---------------------------- */
void test_rv_slot_mismatch(void) {
  int64_t live = jaxmg_live_sessions(), run = next_run_id();
  rv_arg_t args[2];
  fill_args(args, 2, run, 1, 0, kShortMs);
  pthread_t th;
  if (!JT_EQ(pthread_create(&th, NULL, join_leave_thread, &args[0]), 0)) return;
  while (jaxmg_live_sessions() == live) sleep_ms(1); /* rank 0 opened the session */
  slot_t slot = {0};
  args[1].slot_size = 24;
  jaxmg_join_t j = join_of(&args[1], &slot);
  jaxmg_session_t *s = NULL;
  jaxmg_error_t err = {JAXMG_OK, ""};
  JT_EQ(jaxmg__rv_join(&j, &s, &err), JAXMG_EINTERNAL);
  JT_STR_CONTAINS(err.msg, "slot size mismatch");
  JT_CHECK(s == NULL);
  pthread_join(th, NULL);
  JT_EQ(args[0].st, JAXMG_ETIMEDOUT);
  JT_EQ(jaxmg_live_sessions(), live + 1);
  args[1].slot_size = 16;
  run_threads(1, join_leave_thread, &args[1]);
  JT_EQ(args[1].st, JAXMG_ETIMEDOUT);
  JT_EQ(jaxmg_live_sessions(), live);
}
