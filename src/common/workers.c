/* The worker pool: a queue of jobs under one mutex; idle workers wait on a condition variable
 * on the monotonic clock. */
#include "common/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct job {
  struct job *next;
  void (*fn)(void *);
  void *arg;
} job_t;

static const int kIdleExitSeconds = 10;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static job_t *g_head, *g_tail;
static int64_t g_queued;   /* jobs not taken yet */
static int64_t g_waiting;  /* workers waiting for a job, or started and not yet looking */
static int64_t g_threads;  /* workers alive */

static void init_cv(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_cv, &ca);
  pthread_condattr_destroy(&ca);
}

/* g_mu held. */
static job_t *pop_locked(void) {
  job_t *j = g_head;
  if (j) {
    g_head = j->next;
    if (!g_head) g_tail = NULL;
    g_queued--;
  }
  return j;
}

static void *worker_main(void *unused) {
  (void)unused;
  pthread_mutex_lock(&g_mu);
  for (;;) {
    /* Counted in g_waiting from its creation (or its last job) until it takes a job. */
    job_t *j = pop_locked();
    if (!j) {
      struct timespec dl;
      clock_gettime(CLOCK_MONOTONIC, &dl);
      dl.tv_sec += kIdleExitSeconds;
      int rc = 0;
      while (!g_head && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g_cv, &g_mu, &dl);
      if (!g_head) break; /* idle for too long */
      continue;
    }
    g_waiting--;
    pthread_mutex_unlock(&g_mu);
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&g_mu);
    g_waiting++;
  }
  g_waiting--;
  g_threads--;
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

jaxmg_status_t jaxmg__workers_run(void (*fn)(void *), void *arg) {
  pthread_once(&g_once, init_cv);
  job_t *j = malloc(sizeof *j);
  if (!j) return JAXMG_ENOMEM;
  j->next = NULL;
  j->fn = fn;
  j->arg = arg;
  pthread_mutex_lock(&g_mu);
  if (g_waiting <= g_queued) { /* every worker that will look for a job already has one */
    pthread_attr_t at;
    pthread_t th;
    int rc = pthread_attr_init(&at);
    if (rc == 0) {
      pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
      rc = pthread_create(&th, &at, worker_main, NULL);
      pthread_attr_destroy(&at);
    }
    if (rc != 0) {
      pthread_mutex_unlock(&g_mu);
      free(j);
      return JAXMG_ENOMEM;
    }
    g_threads++;
    g_waiting++;
  }
  if (g_tail) {
    g_tail->next = j;
  } else {
    g_head = j;
  }
  g_tail = j;
  g_queued++;
  pthread_cond_signal(&g_cv);
  pthread_mutex_unlock(&g_mu);
  return JAXMG_OK;
}

int64_t jaxmg_worker_threads(void) {
  pthread_mutex_lock(&g_mu);
  int64_t n = g_threads;
  pthread_mutex_unlock(&g_mu);
  return n;
}
