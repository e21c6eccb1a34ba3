/* Shared by the bench/experiments/probe_*.c programs (standalone CUDA probes, not part of the
 * library): a fail-fast check, a monotonic clock and the symmetric test matrices they time. */
#ifndef JAXMG_BENCH_PROBE_UTIL_H_
#define JAXMG_BENCH_PROBE_UTIL_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CK(x) do { int e_ = (int)(x); if (e_) { printf("FAIL %s = %d (line %d)\n", #x, e_, __LINE__); exit(1); } } while (0)

static inline double probe_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Element (i, j) of a dense symmetric matrix: a hash of (min(i, j), max(i, j)) in
 * [-0.5, 0.5), plus `diag(i)` on the diagonal (a ramp spreads the spectrum, N makes it SPD). */
static inline double probe_sym(int64_t i, int64_t j, double diag) {
  uint64_t lo = i < j ? i : j, hi = i < j ? j : i;
  uint64_t x = lo * 2654435761u ^ (hi * 2246822519u + 3266489917u);
  x ^= x >> 15;
  x *= 2246822519u;
  x ^= x >> 13;
  return (double)(x & 0xFFFFFF) / 16777216.0 - 0.5 + (i == j ? diag : 0.0);
}

#endif
