/* The FFI layer of the device-local ops (src/common/ops.h): decoding and validation; the
 * platform entry files run the backend's kernel. */
#include "ffi/dispatch.h"

static jaxmg_status_t attr(const XLA_FFI_CallFrame *f, const char *name, int64_t *v,
                           jaxmg_error_t *err) {
  return jaxmg__ffi_attr_i64(f, name, v, "eigh", err);
}

static int dims_are(const jaxmg_buf_t *b, int64_t rank, int64_t d0, int64_t d1) {
  if (b->rank != rank) return 0;
  return (rank < 1 || b->dims[0] == d0) && (rank < 2 || b->dims[1] == d1);
}

jaxmg_status_t jaxmg__ffi_syevx_decode(const XLA_FFI_CallFrame *f, jaxmg_syevx_t *x,
                                       const void **src, jaxmg_error_t *err) {
  jaxmg_buf_t a, ra, w, z, info;
  int64_t lo = 0, hi = 0, vectors = 0, parts = 1;
  jaxmg_status_t st = jaxmg__ffi_buffer(f, 0, 0, &a, "eigh", "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, "eigh", "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &w, "eigh", "w", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &z, "eigh", "z", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 3, &info, "eigh", "info", err);
  if (!st) st = attr(f, "lo", &lo, err);
  if (!st) st = attr(f, "hi", &hi, err);
  if (!st) st = attr(f, "vectors", &vectors, err);
  if (!st) st = attr(f, "parts", &parts, err);
  if (st) return st;
  if (!a.known || a.rank != 2 || a.dims[0] != a.dims[1]) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: a must be a square matrix of float32, "
                         "float64, complex64 or complex128, got %s of rank %lld",
                         jaxmg__xla_dtype_name(a.xla_dtype), (long long)a.rank);
  }
  const int64_t n = a.dims[0], k = hi - lo;
  if (lo < 0 || hi > n || lo > hi) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: eigenpairs [%lld, %lld) outside [0, %lld)",
                         (long long)lo, (long long)hi, (long long)n);
  }
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(a.dtype);
  if (!ra.known || ra.dtype != a.dtype || !dims_are(&ra, 2, n, n) || !w.known ||
      jaxmg__dtype_info(w.dtype)->size != di->real_size ||
      jaxmg__dtype_info(w.dtype)->is_complex || !dims_are(&w, 1, k, 0) || !z.known ||
      z.dtype != a.dtype || !dims_are(&z, 2, vectors ? k : 0, n) || info.rank != 0 ||
      info.xla_dtype != XLA_FFI_DataType_S32) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: results must be a %s[%lld, %lld], "
                         "w[%lld] of its real type, z[%lld, %lld] and an int32 scalar",
                         di->name, (long long)n, (long long)n, (long long)k,
                         (long long)(vectors ? k : 0), (long long)n);
  }
  x->dtype = a.dtype;
  x->n = n;
  x->lo = lo;
  x->hi = hi;
  x->vectors = vectors != 0;
  x->parts = parts > 0 && parts < 1 << 20 ? (int)parts : 1;
  x->a = ra.data;
  x->w = w.data;
  x->z = z.data;
  x->info = info.data;
  *src = a.data;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_syev2s_decode(const XLA_FFI_CallFrame *f, jaxmg_syev2s_t *x,
                                        const void **src, jaxmg_error_t *err) {
  jaxmg_buf_t a, ra, w, z, info;
  int64_t band = 0, vectors = 0, parts = 1;
  jaxmg_status_t st = jaxmg__ffi_buffer(f, 0, 0, &a, "eigh", "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &ra, "eigh", "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &w, "eigh", "w", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &z, "eigh", "z", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 3, &info, "eigh", "info", err);
  if (!st) st = attr(f, "band", &band, err);
  if (!st) st = attr(f, "vectors", &vectors, err);
  if (!st) st = attr(f, "parts", &parts, err);
  if (st) return st;
  if (!a.known || a.rank != 2 || a.dims[0] != a.dims[1]) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: a must be a square matrix of float32, "
                         "float64, complex64 or complex128, got %s of rank %lld",
                         jaxmg__xla_dtype_name(a.xla_dtype), (long long)a.rank);
  }
  if (band < 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: band must be >= 0 (0: the default), "
                         "got %lld", (long long)band);
  }
  const int64_t n = a.dims[0];
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(a.dtype);
  if (!ra.known || ra.dtype != a.dtype || !dims_are(&ra, 2, n, n) || !w.known ||
      jaxmg__dtype_info(w.dtype)->size != di->real_size ||
      jaxmg__dtype_info(w.dtype)->is_complex || !dims_are(&w, 1, n, 0) || !z.known ||
      z.dtype != a.dtype || !dims_are(&z, 2, vectors ? n : 0, n) || info.rank != 0 ||
      info.xla_dtype != XLA_FFI_DataType_S32) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: results must be a %s[%lld, %lld], "
                         "w[%lld] of its real type, z[%lld, %lld] and an int32 scalar",
                         di->name, (long long)n, (long long)n, (long long)n,
                         (long long)(vectors ? n : 0), (long long)n);
  }
  x->dtype = a.dtype;
  x->n = n;
  x->band = band;
  x->vectors = vectors != 0;
  x->parts = parts > 0 && parts < 1 << 20 ? (int)parts : 1;
  x->a = ra.data;
  x->w = w.data;
  x->z = z.data;
  x->info = info.data;
  *src = a.data;
  return JAXMG_OK;
}
