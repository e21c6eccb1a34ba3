/* Internal helpers shared by every layer: error records and the dtype table. */
#ifndef JAXMG_COMMON_COMMON_H_
#define JAXMG_COMMON_COMMON_H_

#include <stdarg.h>
#include <stdint.h>

#include "jaxmg/jaxmg.h"

#if defined(__GNUC__)
#define JAXMG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define JAXMG_PRINTF(f, a)
#endif

/* Records `code` and a formatted message in *err (which may be NULL); returns `code`. */
jaxmg_status_t jaxmg__seterr(jaxmg_error_t *err, jaxmg_status_t code, const char *fmt, ...)
    JAXMG_PRINTF(3, 4);

/* One row per dtype: everything type-erased code needs to know. */
typedef struct {
  jaxmg_dtype_t dtype;
  const char *name;   /* "float32", ... as JAX spells it */
  char lapack;        /* 's', 'd', 'c', 'z' */
  size_t size;        /* bytes per element */
  size_t real_size;   /* bytes per real component */
  int is_complex;
} jaxmg_dtype_info_t;

/* NULL for an unknown dtype. */
const jaxmg_dtype_info_t *jaxmg__dtype_info(jaxmg_dtype_t dt);

/* Fills n elements of dtype dt with quiet NaN (both parts for complex). */
void jaxmg__fill_nan(void *p, int64_t n, jaxmg_dtype_t dt);

/* Index (0-based) of the first diagonal entry of the n x n matrix p (leading dimension ld)
 * that is not finite, or -1. A factorization whose pivots are finite but whose input held
 * NaN/Inf (some LAPACKs do not test for NaN) is reported through this check. */
int64_t jaxmg__first_nonfinite_diag(const void *p, int64_t n, int64_t ld, jaxmg_dtype_t dt);

/* Milliseconds on a monotonic clock. */
int64_t jaxmg__now_ms(void);

/* Fault injection (see jaxmg_set_fault): returns 1 when the caller at `rank` must fail at
 * `point` now, consuming one count. */
int jaxmg__fault_hit(int point, int rank);

enum { JAXMG_FAULT_OFF = 0, JAXMG_FAULT_NO_ARRIVAL = 1, JAXMG_FAULT_ALLOC = 2, JAXMG_FAULT_SOLVER = 3 };

#endif
