/* Element access by jaxmg dtype for the C tests and the mock harness (the mock cuSOLVERMg
 * and its tests): element i of a buffer as a double complex, and back. */
#ifndef JAXMG_TEST_ELEM_H
#define JAXMG_TEST_ELEM_H

#include <complex.h>
#include <stddef.h>

#include "jaxmg/jaxmg.h"

typedef double complex zd; /* the mock harness's element type (the C tests call it jt_c) */

static inline zd elem_load(jaxmg_dtype_t dt, const void *p, size_t i) {
  switch (dt) {
    case JAXMG_F32: return ((const float *)p)[i];
    case JAXMG_F64: return ((const double *)p)[i];
    case JAXMG_C64: return ((const float *)p)[2 * i] + I * ((const float *)p)[2 * i + 1];
    default: return ((const double *)p)[2 * i] + I * ((const double *)p)[2 * i + 1];
  }
}

static inline void elem_store(jaxmg_dtype_t dt, void *p, size_t i, zd v) {
  switch (dt) {
    case JAXMG_F32: ((float *)p)[i] = (float)creal(v); break;
    case JAXMG_F64: ((double *)p)[i] = creal(v); break;
    case JAXMG_C64:
      ((float *)p)[2 * i] = (float)creal(v);
      ((float *)p)[2 * i + 1] = (float)cimag(v);
      break;
    default:
      ((double *)p)[2 * i] = creal(v);
      ((double *)p)[2 * i + 1] = cimag(v);
  }
}

#endif
