/* Runs the test list of jaxmg_test.h.
 *
 *   jaxmg_c_tests            every test
 *   jaxmg_c_tests rv_ cpu    the tests whose name contains any of the arguments
 *   jaxmg_c_tests --list     the names
 *
 * Exit status: 0 when every selected test passed, 1 when a check failed, 2 when no test
 * matched, 3 when a test hung (a watchdog ends the process). */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jaxmg_test.h"

typedef struct {
  const char *name;
  void (*fn)(void);
} jt_test_t;

static const jt_test_t kTests[] = {
#define JT_ENTRY(name) {#name, test_##name},
    JT_TESTS(JT_ENTRY)
#undef JT_ENTRY
};

/* No single test may take this long: a hang fails the run instead of stalling CI. */
enum { kWatchdogSeconds = 120, kMaxPrinted = 25 };

static atomic_int g_failures;
static atomic_int g_printed;
static pthread_mutex_t g_print_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char t_context[256];
static const char *volatile g_current = "";

int jt_failures(void) { return atomic_load(&g_failures); }

void jt_context(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_context, sizeof t_context, fmt, ap);
  va_end(ap);
}

static void report(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void report(const char *file, int line, const char *fmt, ...) {
  atomic_fetch_add(&g_failures, 1);
  int n = atomic_fetch_add(&g_printed, 1);
  if (n > kMaxPrinted) return;
  pthread_mutex_lock(&g_print_mu);
  if (n == kMaxPrinted) {
    fprintf(stderr, "  ... further failures of this test are counted, not printed\n");
  } else {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    if (t_context[0]) fprintf(stderr, "\n      [%s]", t_context);
    fputc('\n', stderr);
    va_end(ap);
  }
  pthread_mutex_unlock(&g_print_mu);
}

int jt_check(int ok, const char *expr, const char *file, int line) {
  if (!ok) report(file, line, "check failed: %s", expr);
  return ok;
}

int jt_check_i64(int64_t a, int64_t b, const char *op, const char *ea, const char *eb,
                 const char *file, int line) {
  int ok = strcmp(op, "==") == 0   ? a == b
           : strcmp(op, "!=") == 0 ? a != b
           : strcmp(op, "<=") == 0 ? a <= b
           : strcmp(op, "<") == 0  ? a < b
                                   : a >= b;
  if (!ok) {
    report(file, line, "check failed: %s %s %s, with %s = %" PRId64 " and %s = %" PRId64, ea, op,
           eb, ea, a, eb, b);
  }
  return ok;
}

int jt_check_dbl(double a, double b, const char *op, const char *ea, const char *eb,
                 const char *file, int line) {
  int ok = a < b; /* the only floating-point comparison the tests need */
  if (!ok) report(file, line, "check failed: %s %s %s, with %s = %.6g and %s = %.6g", ea, op, eb,
                  ea, a, eb, b);
  return ok;
}

int jt_check_contains(const char *hay, const char *needle, const char *eh, const char *file,
                      int line) {
  int ok = hay && needle && strstr(hay, needle) != NULL;
  if (!ok) report(file, line, "check failed: %s contains \"%s\", with %s = \"%s\"", eh, needle, eh,
                  hay ? hay : "(null)");
  return ok;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char a[] = "\nFATAL: watchdog: test '";
  static const char b[] = "' did not finish (a hang)\n";
  ssize_t r = write(2, a, sizeof a - 1);
  r = write(2, (const char *)g_current, strlen((const char *)g_current));
  r = write(2, b, sizeof b - 1);
  (void)r;
  _exit(3);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int selected(const char *name, int argc, char **argv) {
  if (argc < 2) return 1;
  for (int i = 1; i < argc; i++)
    if (strstr(name, argv[i])) return 1;
  return 0;
}

int main(int argc, char **argv) {
  const size_t ntests = sizeof kTests / sizeof kTests[0];
  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < ntests; i++) printf("%s\n", kTests[i].name);
    return 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);

  int run = 0, failed = 0;
  char failed_names[1024] = "";
  double t_all = now_s();
  for (size_t i = 0; i < ntests; i++) {
    if (!selected(kTests[i].name, argc, argv)) continue;
    g_current = kTests[i].name;
    int before = jt_failures();
    atomic_store(&g_printed, 0);
    t_context[0] = '\0';
    printf("[ RUN  ] %s\n", kTests[i].name);
    fflush(stdout);
    double t0 = now_s();
    alarm(kWatchdogSeconds);
    kTests[i].fn();
    alarm(0);
    int nf = jt_failures() - before;
    run++;
    if (nf) {
      failed++;
      size_t used = strlen(failed_names);
      snprintf(failed_names + used, sizeof failed_names - used, "%s%s", used ? " " : "",
               kTests[i].name);
      printf("[ FAIL ] %s: %d failed check%s (%.2f s)\n", kTests[i].name, nf, nf == 1 ? "" : "s",
             now_s() - t0);
    } else {
      printf("[   OK ] %s (%.2f s)\n", kTests[i].name, now_s() - t0);
    }
    fflush(stdout);
  }
  if (!run) {
    fprintf(stderr, "no test matches the given names (see --list)\n");
    return 2;
  }
  printf("\n%d test%s run in %.2f s: %d passed, %d failed%s%s\n", run, run == 1 ? "" : "s",
         now_s() - t_all, run - failed, failed, failed ? ": " : "", failed_names);
  return failed ? 1 : 0;
}
