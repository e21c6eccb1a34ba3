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

/* What the device-local eigensolvers share: operand a (square), results a (aliased
 * scratch), w, z, info, attributes vectors and parts. */
typedef struct {
  jaxmg_buf_t a, ra, w, z, info;
  int64_t vectors, parts;
} eig_frame_t;

static jaxmg_status_t eig_frame(const XLA_FFI_CallFrame *f, eig_frame_t *e, jaxmg_error_t *err) {
  e->vectors = 0;
  e->parts = 1;
  jaxmg_status_t st = jaxmg__ffi_buffer(f, 0, 0, &e->a, "eigh", "a", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 0, &e->ra, "eigh", "a (result)", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 1, &e->w, "eigh", "w", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 2, &e->z, "eigh", "z", err);
  if (!st) st = jaxmg__ffi_buffer(f, 1, 3, &e->info, "eigh", "info", err);
  if (!st) st = attr(f, "vectors", &e->vectors, err);
  if (!st) st = attr(f, "parts", &e->parts, err);
  if (st) return st;
  const jaxmg_buf_t *a = &e->a;
  if (!a->known || a->rank != 2 || a->dims[0] != a->dims[1]) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: a must be a square matrix of float32, "
                         "float64, complex64 or complex128, got %s of rank %lld",
                         jaxmg__xla_dtype_name(a->xla_dtype), (long long)a->rank);
  }
  return JAXMG_OK;
}

/* The results of a solver of k eigenpairs: a[n, n], w[k] of the real type, z[k or 0, n],
 * an int32 info scalar. */
static jaxmg_status_t eig_results(const eig_frame_t *e, int64_t k, jaxmg_error_t *err) {
  const int64_t n = e->a.dims[0], kz = e->vectors ? k : 0;
  const jaxmg_dtype_info_t *di = jaxmg__dtype_info(e->a.dtype);
  if (!e->ra.known || e->ra.dtype != e->a.dtype || !dims_are(&e->ra, 2, n, n) || !e->w.known ||
      jaxmg__dtype_info(e->w.dtype)->size != di->real_size ||
      jaxmg__dtype_info(e->w.dtype)->is_complex || !dims_are(&e->w, 1, k, 0) || !e->z.known ||
      e->z.dtype != e->a.dtype || !dims_are(&e->z, 2, kz, n) || e->info.rank != 0 ||
      e->info.xla_dtype != XLA_FFI_DataType_S32) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: results must be a %s[%lld, %lld], "
                         "w[%lld] of its real type, z[%lld, %lld] and an int32 scalar",
                         di->name, (long long)n, (long long)n, (long long)k, (long long)kz,
                         (long long)n);
  }
  return JAXMG_OK;
}

static int parts_of(const eig_frame_t *e) {
  return e->parts > 0 && e->parts < 1 << 20 ? (int)e->parts : 1;
}

jaxmg_status_t jaxmg__ffi_syevx_decode(const XLA_FFI_CallFrame *f, jaxmg_syevx_t *x,
                                       const void **src, jaxmg_error_t *err) {
  eig_frame_t e;
  int64_t lo = 0, hi = 0;
  jaxmg_status_t st = eig_frame(f, &e, err);
  if (!st) st = attr(f, "lo", &lo, err);
  if (!st) st = attr(f, "hi", &hi, err);
  if (st) return st;
  const int64_t n = e.a.dims[0];
  if (lo < 0 || hi > n || lo > hi) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: eigenpairs [%lld, %lld) outside [0, %lld)",
                         (long long)lo, (long long)hi, (long long)n);
  }
  if ((st = eig_results(&e, hi - lo, err))) return st;
  x->dtype = e.a.dtype;
  x->n = n;
  x->lo = lo;
  x->hi = hi;
  x->vectors = e.vectors != 0;
  x->parts = parts_of(&e);
  x->a = e.ra.data;
  x->w = e.w.data;
  x->z = e.z.data;
  x->info = e.info.data;
  *src = e.a.data;
  return JAXMG_OK;
}

jaxmg_status_t jaxmg__ffi_syev2s_decode(const XLA_FFI_CallFrame *f, jaxmg_syev2s_t *x,
                                        const void **src, jaxmg_error_t *err) {
  eig_frame_t e;
  int64_t band = 0;
  jaxmg_status_t st = eig_frame(f, &e, err);
  if (!st) st = attr(f, "band", &band, err);
  if (st) return st;
  if (band < 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: band must be >= 0 (0: the default), "
                         "got %lld", (long long)band);
  }
  const int64_t n = e.a.dims[0];
  if ((st = eig_results(&e, n, err))) return st;
  x->dtype = e.a.dtype;
  x->n = n;
  x->band = band;
  x->vectors = e.vectors != 0;
  x->parts = parts_of(&e);
  x->a = e.ra.data;
  x->w = e.w.data;
  x->z = e.z.data;
  x->info = e.info.data;
  *src = e.a.data;
  return JAXMG_OK;
}
