/* jaxmg's worker pool (src/common/workers.h): a job never waits for another job to finish. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "common/workers.h"
#include "jaxmg_test.h"

enum { kJobs = 12 };

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int arrived, finished;
} meet_t;

/* Every job waits until all kJobs are running at once (so each needs a thread of its own). */
static void meet_job(void *arg) {
  meet_t *m = arg;
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 30;
  pthread_mutex_lock(&m->mu);
  m->arrived++;
  pthread_cond_broadcast(&m->cv);
  int rc = 0;
  while (m->arrived < kJobs && rc == 0) rc = pthread_cond_timedwait(&m->cv, &m->mu, &dl);
  m->finished++;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

void test_workers_grow(void) {
  for (int round = 0; round < 3; round++) { /* later rounds reuse the idle workers */
    meet_t m = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    jt_context("workers: round %d", round);
    for (int i = 0; i < kJobs; i++) JT_EQ(jaxmg__workers_run(meet_job, &m), JAXMG_OK);
    pthread_mutex_lock(&m.mu);
    while (m.finished < kJobs) pthread_cond_wait(&m.cv, &m.mu);
    pthread_mutex_unlock(&m.mu);
    JT_EQ(m.arrived, kJobs); /* every job ran, and all at once: none timed out waiting */
    JT_CHECK(jaxmg_worker_threads() >= kJobs);
    JT_CHECK(jaxmg_worker_threads() <= 2 * kJobs);
  }
  jt_context("%s", "");
}
