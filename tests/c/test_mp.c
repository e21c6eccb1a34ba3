/* The rendezvous between processes (src/common/mp.h), driven by forked children that play
 * the processes of a job: success, a deadline naming the missing position, a peer killed
 * with SIGKILL (an error well before the deadline, never a hang), two jobs with different
 * tokens running the same call sites at once, and no /dev/shm/jaxmg-<token>-* left behind.
 *
 * Each child writes its outcome into an anonymous shared page and leaves with _exit after
 * jaxmg_mp_cleanup() (what the atexit hook does), so that the sanitizers' exit-time checks
 * run in the parent only. */
/* MAP_ANONYMOUS */
#define _DEFAULT_SOURCE 1
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "common/mp.h"
#include "jaxmg_test.h"

enum { kMaxProcs = 8 };

typedef struct {
  atomic_int go;
  int64_t pids[kMaxProcs];
  atomic_int arrived[kMaxProcs];   /* set by a child once it has published */
  int status[kMaxProcs];           /* jaxmg_status_t of the child's last step */
  int64_t elapsed_ms[kMaxProcs];
  int payload_ok[kMaxProcs];
  char msg[kMaxProcs][512];
} shared_t;

typedef enum { ROLE_OK = 0, ROLE_ABSENT, ROLE_HANG_AFTER_PUBLISH, ROLE_SLOW_LEADER } role_t;

typedef struct {
  const char *token;
  int nprocs;
  int64_t site, timeout_ms;
  role_t roles[kMaxProcs];
  int with_data; /* followers create a data segment "<name>-r<rank>" as the CPU platform does */
} job_t;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* One process of the job: position `rank` of one group whose positions are processes 0..n-1. */
static void child(const job_t *job, int rank, shared_t *sh) {
  while (!atomic_load(&sh->go)) sleep_ms(1);
  int32_t procs[kMaxProcs];
  for (int r = 0; r < job->nprocs; r++) procs[r] = r;
  jaxmg_status_t st = jaxmg_mp_configure(job->token, rank, job->nprocs, sh->pids);
  jaxmg_error_t err = {JAXMG_OK, ""};
  const int64_t t0 = jaxmg__now_ms();
  jaxmg_mp_call_t *c = NULL;
  char data[200] = "";
  void *map = NULL;
  if (job->roles[rank] == ROLE_ABSENT) {
    sleep_ms(60000); /* killed by the parent, or the test's deadline */
    _exit(0);
  }
  jaxmg_mp_join_t j;
  memset(&j, 0, sizeof j);
  j.site = job->site;
  j.group = 0;
  j.nparts = job->nprocs;
  j.rank = rank;
  j.timeout_ms = job->timeout_ms;
  j.op = "testop";
  j.procs = procs;
  j.sig[0] = 42;
  if (!st) st = jaxmg__mp_open(&j, &c, &err);
  if (!st && rank != 0 && job->with_data) {
    snprintf(data, sizeof data, "%s-r%d", jaxmg__mp_name(c), rank);
    st = jaxmg__mp_shm_create(data, 4096, &map, &err);
    if (!st) memset(map, rank, 4096);
  }
  int64_t payload[2] = {rank, 1000 + rank};
  if (!st) st = jaxmg__mp_publish(c, payload, sizeof payload, &err);
  if (!st) atomic_store(&sh->arrived[rank], 1);
  if (!st && job->roles[rank] == ROLE_HANG_AFTER_PUBLISH) {
    sleep_ms(60000);
    _exit(0);
  }
  if (!st) st = jaxmg__mp_wait_arrival(c, &err);
  if (!st && rank == 0) {
    int ok = 1;
    for (int r = 1; r < job->nprocs; r++) {
      const int64_t *p = jaxmg__mp_payload(c, r);
      ok &= p && p[0] == r && p[1] == 1000 + r;
      if (job->with_data) {
        char name[200];
        void *m = NULL;
        snprintf(name, sizeof name, "%s-r%d", jaxmg__mp_name(c), r);
        if (jaxmg__mp_shm_map(name, 4096, &m, &err) == JAXMG_OK) {
          ok &= ((unsigned char *)m)[4095] == (unsigned char)r;
          jaxmg__mp_shm_unmap(m, 4096);
        } else {
          ok = 0;
        }
      }
    }
    sh->payload_ok[rank] = ok;
    if (job->roles[0] == ROLE_SLOW_LEADER) sleep_ms(400); /* "computing" */
    st = jaxmg__mp_check(c, &err);
    if (!st) jaxmg__mp_done(c);
  } else if (!st) {
    st = jaxmg__mp_wait_done(c, &err);
    sh->payload_ok[rank] = 1;
  }
  if (c && st) {
    jaxmg__mp_fail(c, rank, &err);
    jaxmg__mp_reap(c);
  }
  if (data[0]) jaxmg__mp_shm_destroy(data, map, 4096);
  jaxmg__mp_close(c, !st);
  sh->status[rank] = st;
  sh->elapsed_ms[rank] = jaxmg__now_ms() - t0;
  snprintf(sh->msg[rank], sizeof sh->msg[rank], "%s", err.msg);
  (void)jaxmg_mp_cleanup();
  _exit(0);
}

/* Starts the job's processes; `kill_rank` >= 0 is killed with SIGKILL `kill_after_ms` after
 * it published (or after start, for an absent one). Returns when every child has exited. */
static void run_job(const job_t *job, shared_t *sh, int kill_rank, int kill_after_ms) {
  pid_t pids[kMaxProcs];
  memset(sh, 0, sizeof *sh);
  for (int r = 0; r < job->nprocs; r++) {
    sh->status[r] = -1;
    pids[r] = fork();
    if (pids[r] == 0) child(job, r, sh);
    sh->pids[r] = pids[r];
  }
  atomic_store(&sh->go, 1);
  if (kill_rank >= 0) {
    for (int i = 0; i < 5000 && job->roles[kill_rank] != ROLE_ABSENT &&
                    !atomic_load(&sh->arrived[kill_rank]);
         i++)
      sleep_ms(1);
    sleep_ms(kill_after_ms);
    kill(pids[kill_rank], SIGKILL);
  }
  for (int r = 0; r < job->nprocs; r++) {
    int ws = 0;
    waitpid(pids[r], &ws, 0);
  }
}

/* Runs two jobs at once (their processes interleaved). */
static void run_two_jobs(const job_t *a, shared_t *sa, const job_t *b, shared_t *sb) {
  pid_t pa[kMaxProcs], pb[kMaxProcs];
  memset(sa, 0, sizeof *sa);
  memset(sb, 0, sizeof *sb);
  for (int r = 0; r < a->nprocs; r++) {
    if ((pa[r] = fork()) == 0) child(a, r, sa);
    sa->pids[r] = pa[r];
    if ((pb[r] = fork()) == 0) child(b, r, sb);
    sb->pids[r] = pb[r];
  }
  atomic_store(&sa->go, 1);
  atomic_store(&sb->go, 1);
  for (int r = 0; r < a->nprocs; r++) {
    int ws;
    waitpid(pa[r], &ws, 0);
    waitpid(pb[r], &ws, 0);
  }
}

/* Segments in /dev/shm whose name starts with jaxmg-<token>. */
static int leftovers(const char *token) {
  char prefix[64];
  int n = 0;
  snprintf(prefix, sizeof prefix, "jaxmg-%s", token);
  DIR *d = opendir("/dev/shm");
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(d);
  return n;
}

static shared_t *shared_page(void) {
  void *p = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* A token new to every run of the tests. */
static void make_token(char *buf, size_t len, const char *tag) {
  static int counter = 0;
  snprintf(buf, len, "t%s%ldx%lldn%d", tag, (long)getpid(), (long long)jaxmg__now_ms() % 100000,
           ++counter);
}

void test_mp_configure(void) {
  int64_t pids[2] = {1, 2};
  JT_EQ(jaxmg_mp_configure("", 0, 2, pids), JAXMG_EINVAL);
  JT_EQ(jaxmg_mp_configure("bad/token", 0, 2, pids), JAXMG_EINVAL);
  JT_EQ(jaxmg_mp_configure("abc", 2, 2, pids), JAXMG_EINVAL);
  JT_EQ(jaxmg_mp_configure("abc", 0, 2, NULL), JAXMG_EINVAL);
  JT_EQ(jaxmg_mp_configure("0123456789abcdef0123456789abcdefX", 0, 2, pids), JAXMG_EINVAL);
}

void test_mp_meet(void) {
  shared_t *sh = shared_page();
  char tok[32];
  if (!JT_CHECK(sh != NULL)) return;
  for (int n = 2; n <= 4; n++) {
    for (int with_data = 0; with_data <= 1; with_data++) {
      jt_context("%d processes, data segments %d", n, with_data);
      make_token(tok, sizeof tok, "m");
      job_t job = {tok, n, 7, 20000, {ROLE_OK}, with_data};
      run_job(&job, sh, -1, 0);
      for (int r = 0; r < n; r++) {
        if (!JT_EQ(sh->status[r], JAXMG_OK)) printf("    position %d: %s\n", r, sh->msg[r]);
        JT_EQ(sh->payload_ok[r], 1);
      }
      JT_EQ(leftovers(tok), 0);
    }
  }
  munmap(sh, sizeof *sh);
}

void test_mp_timeout(void) {
  shared_t *sh = shared_page();
  char tok[32];
  if (!JT_CHECK(sh != NULL)) return;
  make_token(tok, sizeof tok, "t");
  /* Position 2 is alive but never arrives: the others fail at the deadline, naming it. */
  job_t job = {tok, 3, 9, 300, {ROLE_OK, ROLE_OK, ROLE_ABSENT}, 1};
  run_job(&job, sh, 2, 2000); /* killed well after the deadline of the others */
  for (int r = 0; r < 2; r++) {
    jt_context("position %d", r);
    JT_EQ(sh->status[r], JAXMG_ETIMEDOUT);
    if (!JT_CHECK(strstr(sh->msg[r], "mesh positions [2]") != NULL)) printf("    msg: %s\n", sh->msg[r]);
    JT_CHECK(strstr(sh->msg[r], "timed out") != NULL);
    JT_LT(sh->elapsed_ms[r], 1900);
  }
  JT_EQ(leftovers(tok), 0);
  munmap(sh, sizeof *sh);
}

void test_mp_peer_dies(void) {
  shared_t *sh = shared_page();
  char tok[32];
  if (!JT_CHECK(sh != NULL)) return;
  /* (a) The leader dies while the others wait for its result (no deadline there). */
  make_token(tok, sizeof tok, "a");
  job_t a = {tok, 3, 11, 20000, {ROLE_HANG_AFTER_PUBLISH, ROLE_OK, ROLE_OK}, 1};
  run_job(&a, sh, 0, 100);
  for (int r = 1; r < 3; r++) {
    jt_context("leader killed, position %d", r);
    JT_EQ(sh->status[r], JAXMG_EPEER);
    JT_CHECK(strstr(sh->msg[r], "process 0") != NULL);
    JT_CHECK(strstr(sh->msg[r], "exited") != NULL);
    JT_LT(sh->elapsed_ms[r], 5000);
  }
  JT_EQ(leftovers(tok), 0);
  /* (b) A position dies before arriving: the others fail long before the deadline. */
  make_token(tok, sizeof tok, "b");
  job_t b = {tok, 3, 12, 20000, {ROLE_OK, ROLE_OK, ROLE_ABSENT}, 1};
  run_job(&b, sh, 2, 100);
  for (int r = 0; r < 2; r++) {
    jt_context("absent position killed, position %d", r);
    JT_EQ(sh->status[r], JAXMG_EPEER);
    JT_CHECK(strstr(sh->msg[r], "process 2") != NULL);
    JT_LT(sh->elapsed_ms[r], 5000);
  }
  JT_EQ(leftovers(tok), 0);
  /* (c) A position dies after publishing its data segment, while the leader computes: the
   * leader fails and unlinks the dead position's data segment. */
  make_token(tok, sizeof tok, "c");
  job_t c = {tok, 2, 13, 20000, {ROLE_SLOW_LEADER, ROLE_HANG_AFTER_PUBLISH}, 1};
  run_job(&c, sh, 1, 50);
  jt_context("follower killed while the leader computes");
  JT_EQ(sh->status[0], JAXMG_EPEER);
  JT_CHECK(strstr(sh->msg[0], "process 1") != NULL);
  JT_EQ(leftovers(tok), 0);
  munmap(sh, sizeof *sh);
}

void test_mp_two_jobs(void) {
  shared_t *sa = shared_page(), *sb = shared_page();
  char ta[32], tb[32];
  if (!JT_CHECK(sa && sb)) return;
  make_token(ta, sizeof ta, "x");
  make_token(tb, sizeof tb, "y");
  /* Same call site, group and sequence in both jobs: only the token tells them apart. */
  job_t a = {ta, 3, 5, 20000, {ROLE_OK}, 1};
  job_t b = {tb, 3, 5, 20000, {ROLE_OK}, 1};
  run_two_jobs(&a, sa, &b, sb);
  for (int r = 0; r < 3; r++) {
    jt_context("position %d", r);
    JT_EQ(sa->status[r], JAXMG_OK);
    JT_EQ(sb->status[r], JAXMG_OK);
    JT_EQ(sa->payload_ok[r], 1);
    JT_EQ(sb->payload_ok[r], 1);
  }
  JT_EQ(leftovers(ta), 0);
  JT_EQ(leftovers(tb), 0);
  munmap(sa, sizeof *sa);
  munmap(sb, sizeof *sb);
}

void test_mp_signature(void) {
  /* Two "processes" in this one process (threads are not needed: open and publish do not
   * wait) reach one call site with different calls: the second one gets an error, and the
   * first one sees it as a failure of the call. */
  char tok[32];
  int64_t pids[2] = {0, 0};
  int32_t procs[2] = {0, 1};
  make_token(tok, sizeof tok, "s");
  if (!JT_EQ(jaxmg_mp_configure(tok, 0, 2, pids), JAXMG_OK)) return;
  jaxmg_error_t err = {JAXMG_OK, ""};
  jaxmg_mp_call_t *c0 = NULL, *c1 = NULL;
  jaxmg_mp_join_t j;
  memset(&j, 0, sizeof j);
  j.site = 3;
  j.nparts = 2;
  j.timeout_ms = 2000;
  j.op = "testop";
  j.procs = procs;
  j.sig[2] = 100;
  JT_EQ(jaxmg__mp_open(&j, &c0, &err), JAXMG_OK);
  JT_EQ(jaxmg_mp_configure(tok, 1, 2, pids), JAXMG_OK);
  j.rank = 1;
  j.sig[2] = 200;
  JT_EQ(jaxmg__mp_open(&j, &c1, &err), JAXMG_EINVAL);
  JT_CHECK(strstr(err.msg, "different calls") != NULL);
  JT_CHECK(c1 == NULL);
  if (c0) {
    JT_EQ(jaxmg__mp_check(c0, &err), JAXMG_EPEER);
    JT_CHECK(strstr(err.msg, "different calls") != NULL);
  }
  jaxmg__mp_close(c0, 0);
  JT_LT(0, jaxmg_mp_registered());
  JT_LT(0, jaxmg_mp_cleanup());
  JT_EQ(jaxmg_mp_registered(), 0);
  JT_EQ(leftovers(tok), 0);
}
