/* Status names, error records, the dtype table and fault injection. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

const char *jaxmg_status_name(jaxmg_status_t s) {
  switch (s) {
    case JAXMG_OK: return "OK";
    case JAXMG_EINVAL: return "INVALID_ARGUMENT";
    case JAXMG_ENOMEM: return "RESOURCE_EXHAUSTED";
    case JAXMG_ETIMEDOUT: return "DEADLINE_EXCEEDED";
    case JAXMG_EPEER: return "ABORTED";
    case JAXMG_ELIB: return "INTERNAL_LIBRARY";
    case JAXMG_EUNAVAIL: return "UNAVAILABLE";
    case JAXMG_EINTERNAL: return "INTERNAL";
    case JAXMG_EFAULT: return "INJECTED_FAULT";
  }
  return "UNKNOWN";
}

jaxmg_status_t jaxmg__seterr(jaxmg_error_t *err, jaxmg_status_t code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

static const jaxmg_dtype_info_t kDtypes[] = {
    {JAXMG_F32, "float32", 's', 4, 4, 0},
    {JAXMG_F64, "float64", 'd', 8, 8, 0},
    {JAXMG_C64, "complex64", 'c', 8, 4, 1},
    {JAXMG_C128, "complex128", 'z', 16, 8, 1},
};

const jaxmg_dtype_info_t *jaxmg__dtype_info(jaxmg_dtype_t dt) {
  if ((int)dt < 0 || (size_t)dt >= sizeof kDtypes / sizeof kDtypes[0]) return NULL;
  return &kDtypes[dt];
}

size_t jaxmg_dtype_size(jaxmg_dtype_t dt) {
  const jaxmg_dtype_info_t *info = jaxmg__dtype_info(dt);
  return info ? info->size : 0;
}

void jaxmg__fill_nan(void *p, int64_t n, jaxmg_dtype_t dt) {
  const jaxmg_dtype_info_t *info = jaxmg__dtype_info(dt);
  if (!info || n <= 0) return;
  int64_t m = n * (info->is_complex ? 2 : 1);
  if (info->real_size == 4) {
    float *f = p;
    for (int64_t i = 0; i < m; i++) f[i] = NAN;
  } else {
    double *d = p;
    for (int64_t i = 0; i < m; i++) d[i] = NAN;
  }
}

int64_t jaxmg__first_nonfinite_diag(const void *p, int64_t n, int64_t ld, jaxmg_dtype_t dt) {
  const jaxmg_dtype_info_t *info = jaxmg__dtype_info(dt);
  if (!info) return -1;
  int parts = info->is_complex ? 2 : 1;
  for (int64_t i = 0; i < n; i++) {
    for (int k = 0; k < parts; k++) {
      size_t off = (size_t)(i * ld + i) * (size_t)parts + (size_t)k;
      double v = info->real_size == 4 ? (double)((const float *)p)[off] : ((const double *)p)[off];
      if (!isfinite(v)) return i;
    }
  }
  return -1;
}

int64_t jaxmg__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static int fault_point = JAXMG_FAULT_OFF, fault_rank = -1, fault_count = 0;

void jaxmg_set_fault(int point, int rank, int count) {
  pthread_mutex_lock(&fault_mu);
  fault_point = point;
  fault_rank = rank;
  fault_count = count;
  pthread_mutex_unlock(&fault_mu);
}

int jaxmg__fault_hit(int point, int rank) {
  int hit = 0;
  pthread_mutex_lock(&fault_mu);
  if (fault_point != JAXMG_FAULT_OFF && fault_point == point && fault_rank == rank &&
      fault_count != 0) {
    hit = 1;
    if (fault_count > 0 && --fault_count == 0) fault_point = JAXMG_FAULT_OFF;
  }
  pthread_mutex_unlock(&fault_mu);
  return hit;
}
