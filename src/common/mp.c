/* The rendezvous between processes (see mp.h): shared-memory segments, atomics, polling. */
#include "common/mp.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

/* The segment is shared by processes: its atomics must not hide a lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lock-free 32-bit atomics are needed in shared memory");

enum { MAGIC = 0x6a786d67, NAME_LEN = 128, MSG_LEN = 448, LIVENESS_MS = 100 };

typedef struct {
  atomic_int state; /* 0: empty, 1: published */
  int32_t proc;
  int64_t pid;
  _Alignas(16) unsigned char payload[JAXMG_MP_PAYLOAD];
} mp_slot_t;

typedef struct {
  atomic_int magic; /* MAGIC once the creator has filled the header */
  int32_t nparts;
  int64_t sig[JAXMG_MP_SIG];
  atomic_int narrived;
  atomic_int fail_state; /* 0: none, 1: being written, 2: written */
  int32_t fail_code;
  char fail_msg[MSG_LEN];
  atomic_int done;
  mp_slot_t slots[];
} mp_seg_t;

struct jaxmg_mp_call {
  mp_seg_t *seg;
  size_t bytes;
  char name[NAME_LEN];
  char op[24];
  int64_t site, group, seq, timeout_ms, t0_ms;
  int nparts, rank, nshm, me_proc;
  int32_t procs[JAXMG_MP_MAX_PARTS];
};

/* ---- process state: job configuration, sequence numbers, registered names ---------------- */
typedef struct seq_node {
  struct seq_node *next;
  int64_t site, group;
  int rank;
  int64_t next_seq;
} seq_node_t;

typedef struct name_node {
  struct name_node *next;
  char name[NAME_LEN];
} name_node_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_token[33];
static int g_proc = -1, g_nprocs = 0, g_atexit = 0;
static int64_t *g_pids = NULL;
static seq_node_t *g_seqs = NULL;
static name_node_t *g_names = NULL;

static void register_name(const char *name) {
  name_node_t *n = calloc(1, sizeof *n);
  if (!n) return; /* only the exit cleanup loses track of it */
  snprintf(n->name, sizeof n->name, "%s", name);
  pthread_mutex_lock(&g_mu);
  n->next = g_names;
  g_names = n;
  pthread_mutex_unlock(&g_mu);
}

static void unregister_name(const char *name) {
  pthread_mutex_lock(&g_mu);
  for (name_node_t **p = &g_names; *p; p = &(*p)->next) {
    if (strcmp((*p)->name, name) == 0) {
      name_node_t *n = *p;
      *p = n->next;
      free(n);
      break;
    }
  }
  pthread_mutex_unlock(&g_mu);
}

int jaxmg_mp_cleanup(void) {
  int n = 0;
  pthread_mutex_lock(&g_mu);
  while (g_names) {
    name_node_t *x = g_names;
    g_names = x->next;
    if (shm_unlink(x->name) == 0) n++;
    free(x);
  }
  pthread_mutex_unlock(&g_mu);
  return n;
}

static void cleanup_at_exit(void) { (void)jaxmg_mp_cleanup(); }

int64_t jaxmg_mp_registered(void) {
  int64_t n = 0;
  pthread_mutex_lock(&g_mu);
  for (name_node_t *x = g_names; x; x = x->next) n++;
  pthread_mutex_unlock(&g_mu);
  return n;
}

jaxmg_status_t jaxmg_mp_configure(const char *token, int process_index, int nprocs,
                                  const int64_t *pids) {
  size_t len = token ? strlen(token) : 0;
  if (len < 1 || len > 32 || nprocs < 1 || process_index < 0 || process_index >= nprocs || !pids)
    return JAXMG_EINVAL;
  for (size_t i = 0; i < len; i++) {
    char ch = token[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
      return JAXMG_EINVAL;
  }
  int64_t *copy = malloc((size_t)nprocs * sizeof *copy);
  if (!copy) return JAXMG_ENOMEM;
  memcpy(copy, pids, (size_t)nprocs * sizeof *copy);
  pthread_mutex_lock(&g_mu);
  if (strcmp(g_token, token) != 0) { /* a new job: its calls count from the start */
    while (g_seqs) {
      seq_node_t *s = g_seqs;
      g_seqs = s->next;
      free(s);
    }
  }
  snprintf(g_token, sizeof g_token, "%s", token);
  free(g_pids);
  g_pids = copy;
  g_proc = process_index;
  g_nprocs = nprocs;
  if (!g_atexit) g_atexit = atexit(cleanup_at_exit) == 0;
  pthread_mutex_unlock(&g_mu);
  return JAXMG_OK;
}

int jaxmg__mp_process(void) {
  pthread_mutex_lock(&g_mu);
  int p = g_proc;
  pthread_mutex_unlock(&g_mu);
  return p;
}

static int64_t next_seq(int64_t site, int64_t group, int rank) {
  int64_t seq = -1;
  pthread_mutex_lock(&g_mu);
  seq_node_t *s = g_seqs;
  while (s && !(s->site == site && s->group == group && s->rank == rank)) s = s->next;
  if (!s && (s = calloc(1, sizeof *s))) {
    s->site = site;
    s->group = group;
    s->rank = rank;
    s->next = g_seqs;
    g_seqs = s;
  }
  if (s) seq = s->next_seq++;
  pthread_mutex_unlock(&g_mu);
  return seq;
}

/* 1 unless process p is known and gone. EPERM: it exists (another user). */
static int proc_alive(int p, int64_t *pid_out) {
  int64_t pid = 0;
  pthread_mutex_lock(&g_mu);
  if (p >= 0 && p < g_nprocs) pid = g_pids[p];
  pthread_mutex_unlock(&g_mu);
  *pid_out = pid;
  if (pid <= 0) return 1;
  if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return 0;
  /* A process that was killed but not yet reaped by its parent still answers kill(): its
   * state in /proc (after the parenthesised command name) is Z. */
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  FILE *fp = fopen(path, "r");
  if (!fp) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* ---- the segment --------------------------------------------------------------------------- */
static void sleep_ns(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

static int in_shm(const int32_t *procs, int r) { return r == 0 || procs[r] != procs[0]; }

static void post_fail(mp_seg_t *s, jaxmg_status_t code, const char *msg) {
  int expected = 0;
  if (atomic_compare_exchange_strong(&s->fail_state, &expected, 1)) {
    s->fail_code = (int32_t)code;
    snprintf(s->fail_msg, sizeof s->fail_msg, "%.447s", msg);
    atomic_store_explicit(&s->fail_state, 2, memory_order_release);
  }
}

static jaxmg_status_t peer_error(const jaxmg_mp_call_t *c, jaxmg_error_t *err) {
  mp_seg_t *s = c->seg;
  /* The writer fills the message between states 1 and 2; it may have died in between. */
  for (int i = 0; i < 1000 && atomic_load_explicit(&s->fail_state, memory_order_acquire) != 2; i++)
    sleep_ns(1000000);
  if (atomic_load_explicit(&s->fail_state, memory_order_acquire) != 2) {
    return jaxmg__seterr(err, JAXMG_EPEER,
                         "jaxmg.%s: another process of the call failed (seen by mesh position %d)",
                         c->op, c->rank);
  }
  jaxmg_status_t code = s->fail_code == JAXMG_ETIMEDOUT ? JAXMG_ETIMEDOUT : JAXMG_EPEER;
  return jaxmg__seterr(err, code, "%.440s (seen by mesh position %d)", s->fail_msg, c->rank);
}

static int failed(const jaxmg_mp_call_t *c) {
  return atomic_load_explicit(&c->seg->fail_state, memory_order_acquire) != 0;
}

/* The first position of the call whose process is gone, or -1 (*pid: its pid). */
static int dead_position(const jaxmg_mp_call_t *c, int64_t *pid) {
  for (int r = 0; r < c->nparts; r++) {
    int p = c->procs[r];
    int seen = 0;
    for (int q = 0; q < r; q++) seen |= c->procs[q] == p;
    if (!seen && p != c->me_proc && !proc_alive(p, pid)) return r;
  }
  return -1;
}

static void post_dead(jaxmg_mp_call_t *c, int r, int64_t pid) {
  char msg[MSG_LEN];
  snprintf(msg, sizeof msg,
           "jaxmg.%s: process %d (pid %lld), which holds mesh position %d of group %lld, "
           "exited during the call (call site %lld)",
           c->op, c->procs[r], (long long)pid, r, (long long)c->group, (long long)c->site);
  post_fail(c->seg, JAXMG_EPEER, msg);
}

enum { WAIT_ARRIVAL = 0, WAIT_DONE = 1 };

/* Polls until the condition holds (OK), a failure is posted or a process is gone (EPEER or
 * ETIMEDOUT with *err set), or the deadline passes (ETIMEDOUT, *err untouched). Liveness is
 * looked at before the condition: a peer that did its part and then exited normally (the
 * leader after "done") must not count as a failure. */
static jaxmg_status_t poll_until(jaxmg_mp_call_t *c, int what, int64_t deadline_ms,
                                 jaxmg_error_t *err) {
  long ns = 20000;
  int64_t next_live = 0;
  for (;;) {
    if (failed(c)) return peer_error(c, err);
    int64_t now = jaxmg__now_ms(), pid = 0;
    int dead = -1;
    if (now >= next_live) {
      dead = dead_position(c, &pid);
      next_live = now + LIVENESS_MS;
    }
    int ok = what == WAIT_ARRIVAL
                 ? atomic_load_explicit(&c->seg->narrived, memory_order_acquire) >= c->nshm
                 : atomic_load_explicit(&c->seg->done, memory_order_acquire) != 0;
    if (ok) return JAXMG_OK;
    if (dead >= 0) {
      post_dead(c, dead, pid);
      return peer_error(c, err);
    }
    if (deadline_ms >= 0 && now >= deadline_ms) return JAXMG_ETIMEDOUT;
    sleep_ns(ns);
    if (ns < 1000000) ns *= 2;
  }
}

static jaxmg_status_t sys_error(jaxmg_error_t *err, const char *op, const char *what,
                                const char *name) {
  int e = errno;
  return jaxmg__seterr(err, e == ENOMEM || e == ENOSPC ? JAXMG_ENOMEM : JAXMG_ELIB,
                       "jaxmg.%s: %s of shared memory segment %s failed: %s", op, what, name,
                       strerror(e));
}

/* Waits for the creator of a segment that exists: its size, then its header. */
static jaxmg_status_t attach_existing(jaxmg_mp_call_t *c, int fd, const jaxmg_mp_join_t *j,
                                      int64_t deadline, jaxmg_error_t *err) {
  struct stat stt;
  for (;;) {
    if (fstat(fd, &stt) != 0) return sys_error(err, c->op, "fstat", c->name);
    if (stt.st_size != 0) break;
    if (jaxmg__now_ms() >= deadline) break;
    sleep_ns(100000);
  }
  if ((size_t)stt.st_size != c->bytes) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: the processes of this job disagree on call site %lld: "
                         "segment %s has %lld bytes, this process expects %zu (different "
                         "numbers of devices); every process must run the same program",
                         c->op, (long long)c->site, c->name, (long long)stt.st_size, c->bytes);
  }
  void *p = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return sys_error(err, c->op, "mmap", c->name);
  c->seg = p;
  while (atomic_load_explicit(&c->seg->magic, memory_order_acquire) != MAGIC) {
    if (jaxmg__now_ms() >= deadline) {
      return jaxmg__seterr(err, JAXMG_ETIMEDOUT,
                           "jaxmg.%s: timed out: the process that created segment %s never "
                           "initialised it",
                           c->op, c->name);
    }
    sleep_ns(100000);
  }
  if (c->seg->nparts != j->nparts || memcmp(c->seg->sig, j->sig, sizeof j->sig) != 0) {
    const int64_t *a = c->seg->sig, *b = j->sig;
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: the processes of this job reached call site %lld with "
                         "different calls (op/dtype/N/rows per device/tile/rhs: %lld/%lld/%lld/"
                         "%lld/%lld/%lld here, %lld/%lld/%lld/%lld/%lld/%lld in another process); "
                         "every process must run the same program",
                         c->op, (long long)c->site, (long long)b[0], (long long)b[1],
                         (long long)b[2], (long long)b[3], (long long)b[4], (long long)b[5],
                         (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
                         (long long)a[4], (long long)a[5]);
  }
  return JAXMG_OK;
}

static jaxmg_status_t attach(jaxmg_mp_call_t *c, const jaxmg_mp_join_t *j, jaxmg_error_t *err) {
  /* The creator is between two system calls: a grace period beyond a short deadline. */
  const int64_t deadline = c->t0_ms + j->timeout_ms + 5000;
  for (;;) {
    int fd = shm_open(c->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      register_name(c->name);
      if (ftruncate(fd, (off_t)c->bytes) != 0) {
        jaxmg_status_t st = sys_error(err, c->op, "sizing", c->name);
        close(fd);
        return st;
      }
      void *p = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      close(fd);
      if (p == MAP_FAILED) return sys_error(err, c->op, "mmap", c->name);
      c->seg = p;
      c->seg->nparts = j->nparts;
      memcpy(c->seg->sig, j->sig, sizeof j->sig);
      atomic_store_explicit(&c->seg->magic, MAGIC, memory_order_release);
      return JAXMG_OK;
    }
    if (errno != EEXIST) return sys_error(err, c->op, "creation", c->name);
    fd = shm_open(c->name, O_RDWR, 0600);
    if (fd < 0) {
      if (errno == ENOENT) continue; /* unlinked in between: create it */
      return sys_error(err, c->op, "opening", c->name);
    }
    register_name(c->name);
    jaxmg_status_t st = attach_existing(c, fd, j, deadline, err);
    close(fd);
    return st;
  }
}

static void call_free(jaxmg_mp_call_t *c) {
  if (c->seg) munmap(c->seg, c->bytes);
  free(c);
}

jaxmg_status_t jaxmg__mp_open(const jaxmg_mp_join_t *j, jaxmg_mp_call_t **out,
                              jaxmg_error_t *err) {
  *out = NULL;
  const char *op = j->op ? j->op : "op";
  char token[33];
  int me;
  pthread_mutex_lock(&g_mu);
  me = g_proc;
  snprintf(token, sizeof token, "%s", g_token);
  pthread_mutex_unlock(&g_mu);
  if (me < 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: a call spanning several processes needs jaxmg's job "
                         "configuration (jaxmg_mp_configure), which jaxmg's Python layer makes "
                         "after jax.distributed.initialize",
                         op);
  }
  if (j->nparts < 1 || j->nparts > JAXMG_MP_MAX_PARTS || j->rank < 0 || j->rank >= j->nparts ||
      j->timeout_ms <= 0 || !j->procs) {
    return jaxmg__seterr(err, JAXMG_EINVAL,
                         "jaxmg.%s: bad arguments for the rendezvous between processes (position "
                         "%d of %d)",
                         op, j->rank, j->nparts);
  }
  if (j->procs[j->rank] != me || !in_shm(j->procs, j->rank)) {
    return jaxmg__seterr(err, JAXMG_EINTERNAL,
                         "jaxmg.%s: mesh position %d belongs to process %d, this is process %d",
                         op, j->rank, j->procs[j->rank], me);
  }
  jaxmg_mp_call_t *c = calloc(1, sizeof *c);
  if (!c) return jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", op);
  c->t0_ms = jaxmg__now_ms();
  snprintf(c->op, sizeof c->op, "%s", op);
  c->site = j->site;
  c->group = j->group;
  c->seq = next_seq(j->site, j->group, j->rank);
  c->timeout_ms = j->timeout_ms;
  c->nparts = j->nparts;
  c->rank = j->rank;
  c->me_proc = me;
  memcpy(c->procs, j->procs, (size_t)j->nparts * sizeof *j->procs);
  for (int r = 0; r < j->nparts; r++) c->nshm += in_shm(j->procs, r);
  c->bytes = sizeof(mp_seg_t) + (size_t)j->nparts * sizeof(mp_slot_t);
  snprintf(c->name, sizeof c->name, "/jaxmg-%s-%lld-%lld-%lld", token, (long long)j->site,
           (long long)j->group, (long long)c->seq);
  jaxmg_status_t st = c->seq < 0 ? jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.%s: out of host memory", op)
                                 : attach(c, j, err);
  if (st) {
    if (c->seg) post_fail(c->seg, st, err->msg);
    call_free(c);
    return st;
  }
  *out = c;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__mp_publish(jaxmg_mp_call_t *c, const void *payload, size_t size,
                                 jaxmg_error_t *err) {
  mp_slot_t *sl = &c->seg->slots[c->rank];
  if (size > JAXMG_MP_PAYLOAD) {
    return jaxmg__seterr(err, JAXMG_EINTERNAL, "jaxmg.%s: payload of %zu bytes too large", c->op,
                         size);
  }
  if (atomic_load(&sl->state) != 0) {
    jaxmg__seterr(err, JAXMG_EINVAL,
                  "jaxmg.%s: mesh position %d arrived twice at call site %lld (two processes "
                  "claim it)",
                  c->op, c->rank, (long long)c->site);
    post_fail(c->seg, JAXMG_EINVAL, err->msg);
    return JAXMG_EINVAL;
  }
  if (size) memcpy(sl->payload, payload, size);
  sl->proc = c->me_proc;
  sl->pid = (int64_t)getpid();
  atomic_store_explicit(&sl->state, 1, memory_order_release);
  atomic_fetch_add_explicit(&c->seg->narrived, 1, memory_order_acq_rel);
  return JAXMG_OK;
}

/* "1, 3" of the positions in the segment that have not published. */
static void missing(const jaxmg_mp_call_t *c, char *buf, size_t len, char *pbuf, size_t plen) {
  size_t used = 0, pused = 0;
  buf[0] = pbuf[0] = '\0';
  for (int r = 0; r < c->nparts && used + 12 < len; r++) {
    if (!in_shm(c->procs, r) || atomic_load(&c->seg->slots[r].state)) continue;
    used += (size_t)snprintf(buf + used, len - used, "%s%d", used ? ", " : "", r);
    if (pused + 12 < plen)
      pused += (size_t)snprintf(pbuf + pused, plen - pused, "%s%d", pused ? ", " : "", c->procs[r]);
  }
}

jaxmg_status_t jaxmg__mp_wait_arrival(jaxmg_mp_call_t *c, jaxmg_error_t *err) {
  jaxmg_status_t st = poll_until(c, WAIT_ARRIVAL, c->t0_ms + c->timeout_ms, err);
  if (st != JAXMG_ETIMEDOUT) return st;
  /* The deadline passed (err untouched). Another position may have timed out and posted
   * its message in the meantime: report that one. */
  if (failed(c)) return peer_error(c, err);
  char miss[96], procs[96], msg[1024];
  missing(c, miss, sizeof miss, procs, sizeof procs);
  snprintf(msg, sizeof msg,
           "jaxmg.%s: timed out after %.1f s waiting for the devices at mesh positions [%s] of "
           "group %lld, held by processes [%s] (call site %lld, call %lld). Every process of "
           "the job must reach this op; raise the limit with jaxmg.set_timeout() if they are "
           "only slow",
           c->op, (double)c->timeout_ms / 1000.0, miss, (long long)c->group, procs,
           (long long)c->site, (long long)c->seq);
  post_fail(c->seg, JAXMG_ETIMEDOUT, msg);
  return peer_error(c, err);
}

jaxmg_status_t jaxmg__mp_wait_done(jaxmg_mp_call_t *c, jaxmg_error_t *err) {
  return poll_until(c, WAIT_DONE, -1, err);
}

jaxmg_status_t jaxmg__mp_check(jaxmg_mp_call_t *c, jaxmg_error_t *err) {
  int64_t pid = 0;
  int dead = failed(c) ? -1 : dead_position(c, &pid);
  if (dead >= 0) post_dead(c, dead, pid);
  if (failed(c)) return peer_error(c, err);
  return JAXMG_OK;
}

const void *jaxmg__mp_payload(const jaxmg_mp_call_t *c, int rank) {
  if (rank < 0 || rank >= c->nparts || !in_shm(c->procs, rank)) return NULL;
  return c->seg->slots[rank].payload;
}

const char *jaxmg__mp_name(const jaxmg_mp_call_t *c) { return c->name; }

void jaxmg__mp_fail(jaxmg_mp_call_t *c, int rank, const jaxmg_error_t *e) {
  char msg[MSG_LEN];
  if (e && (e->code == JAXMG_EPEER || e->code == JAXMG_ETIMEDOUT)) {
    post_fail(c->seg, e->code, e->msg); /* already names where it failed */
    return;
  }
  snprintf(msg, sizeof msg, "jaxmg.%s failed on the device at mesh position %d (process %d): %.360s",
           c->op, rank, c->procs[rank], e ? e->msg : "unknown error");
  post_fail(c->seg, e ? e->code : JAXMG_EINTERNAL, msg);
}

void jaxmg__mp_done(jaxmg_mp_call_t *c) {
  atomic_store_explicit(&c->seg->done, 1, memory_order_release);
}

void jaxmg__mp_close(jaxmg_mp_call_t *c, int ok) {
  if (!c) return;
  if (ok) {
    /* Everyone arrived before "done": nobody needs the name any more. */
    (void)shm_unlink(c->name);
    unregister_name(c->name);
  }
  call_free(c);
}

void jaxmg__mp_reap(jaxmg_mp_call_t *c) {
  for (int r = 0; r < c->nparts; r++) {
    int64_t pid;
    if (!in_shm(c->procs, r) || c->procs[r] == c->me_proc || proc_alive(c->procs[r], &pid))
      continue;
    char name[NAME_LEN + 16];
    snprintf(name, sizeof name, "%s-r%d", c->name, r);
    (void)shm_unlink(name);
  }
}

/* ---- data segments ------------------------------------------------------------------------- */
jaxmg_status_t jaxmg__mp_shm_create(const char *name, size_t bytes, void **out,
                                    jaxmg_error_t *err) {
  *out = NULL;
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return sys_error(err, "mpmd", "creation", name);
  register_name(name);
  if (ftruncate(fd, (off_t)(bytes ? bytes : 1)) != 0) {
    jaxmg_status_t st = sys_error(err, "mpmd", "sizing", name);
    close(fd);
    jaxmg__mp_shm_destroy(name, NULL, 0);
    return st;
  }
  void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    jaxmg_status_t st = sys_error(err, "mpmd", "mmap", name);
    jaxmg__mp_shm_destroy(name, NULL, 0);
    return st;
  }
  *out = p;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__mp_shm_map(const char *name, size_t bytes, void **out, jaxmg_error_t *err) {
  *out = NULL;
  int fd = shm_open(name, O_RDWR, 0600);
  if (fd < 0) return sys_error(err, "mpmd", "opening", name);
  struct stat stt;
  if (fstat(fd, &stt) != 0 || (size_t)stt.st_size < (bytes ? bytes : 1)) {
    close(fd);
    return jaxmg__seterr(err, JAXMG_EINTERNAL,
                         "jaxmg: shared memory segment %s is smaller than the %zu bytes expected",
                         name, bytes);
  }
  void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return sys_error(err, "mpmd", "mmap", name);
  *out = p;
  return JAXMG_OK;
}

void jaxmg__mp_shm_unmap(void *p, size_t bytes) {
  if (p) munmap(p, bytes ? bytes : 1);
}

void jaxmg__mp_shm_destroy(const char *name, void *p, size_t bytes) {
  jaxmg__mp_shm_unmap(p, bytes);
  (void)shm_unlink(name);
  unregister_name(name);
}
