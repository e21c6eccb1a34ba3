/* Registration of LAPACK/BLAS function pointers and the per-dtype kernel table. */
#include "cpu/lapack.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* X(prefix, name-suffix, field): every routine of every precision the backend uses. */
#define JAXMG_LAPACK_ROUTINES(X)                                                     \
  X(s, potrf, potrf) X(d, potrf, potrf) X(c, potrf, potrf) X(z, potrf, potrf)       \
  X(s, trsm, trsm) X(d, trsm, trsm) X(c, trsm, trsm) X(z, trsm, trsm)               \
  X(s, syrk, herk) X(d, syrk, herk) X(c, herk, herk) X(z, herk, herk)               \
  X(s, gemm, gemm) X(d, gemm, gemm) X(c, gemm, gemm) X(z, gemm, gemm)               \
  X(s, syevd, syevd) X(d, syevd, syevd) X(c, heevd, heevd) X(z, heevd, heevd)       \
  X(s, syevr, syevr) X(d, syevr, syevr) X(c, heevr, heevr) X(z, heevr, heevr)       \
  X(s, geqrf, geqrf) X(d, geqrf, geqrf) X(c, geqrf, geqrf) X(z, geqrf, geqrf)       \
  X(s, larft, larft) X(d, larft, larft) X(c, larft, larft) X(z, larft, larft)       \
  X(s, symv, hemv) X(d, symv, hemv) X(c, hemv, hemv) X(z, hemv, hemv)               \
  X(s, syr2, her2) X(d, syr2, her2) X(c, her2, her2) X(z, her2, her2)

/* Routines of a real type that the complex dtype of the same precision also uses (the
 * tridiagonal eigensolvers: a Hermitian tridiagonal matrix with a real sub-diagonal is real
 * symmetric): registered in the tables of both. */
#define JAXMG_LAPACK_REAL_ROUTINES(X) \
  X(s, stedc, stedc) X(d, stedc, stedc) X(s, sterf, sterf) X(d, sterf, sterf)

static const float kF32[2] = {1.0f, -1.0f};
static const double kF64[2] = {1.0, -1.0};
static const float kC64[3][2] = {{1.0f, 0.0f}, {-1.0f, 0.0f}, {0.0f, 0.0f}};
static const double kC128[3][2] = {{1.0, 0.0}, {-1.0, 0.0}, {0.0, 0.0}};
static const float kF32Zero = 0.0f;
static const double kF64Zero = 0.0;

/* The scalars are set here, once, so that jaxmg__cpu_kernels only reads the table while the
 * participants of a call use it concurrently (rewriting them on every call was a data race,
 * reported by ThreadSanitizer). */
static jaxmg_cpu_kernels_t g_kernels[4] = {
    {.one = &kF32[0], .mone = &kF32[1], .rone = &kF32[0], .rmone = &kF32[1], .zero = &kF32Zero},
    {.one = &kF64[0], .mone = &kF64[1], .rone = &kF64[0], .rmone = &kF64[1], .zero = &kF64Zero},
    {.one = kC64[0], .mone = kC64[1], .rone = &kF32[0], .rmone = &kF32[1], .zero = kC64[2]},
    {.one = kC128[0], .mone = kC128[1], .rone = &kF64[0], .rmone = &kF64[1], .zero = kC128[2]},
};
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static int prec_index(char p) {
  switch (p) {
    case 's': return 0;
    case 'd': return 1;
    case 'c': return 2;
    case 'z': return 3;
  }
  return -1;
}

jaxmg_status_t jaxmg_cpu_set_lapack(const char *name, void *fn) {
  if (!name || !fn || strlen(name) < 2) return JAXMG_EINVAL;
  int p = prec_index(name[0]);
  if (p < 0) return JAXMG_EINVAL;
  jaxmg_cpu_kernels_t *k = &g_kernels[p];
  jaxmg_status_t st = JAXMG_EINVAL;
  pthread_mutex_lock(&g_mu);
#define X(prefix, suffix, field)                                              \
  if (name[0] == #prefix[0] && strcmp(name + 1, #suffix) == 0) {             \
    /* Conversion through a union-free cast of the generic pointer. */        \
    memcpy(&k->field, &fn, sizeof fn);                                       \
    st = JAXMG_OK;                                                            \
  }
  JAXMG_LAPACK_ROUTINES(X)
#undef X
#define X(prefix, suffix, field)                                              \
  if (name[0] == #prefix[0] && strcmp(name + 1, #suffix) == 0) {             \
    memcpy(&k->field, &fn, sizeof fn);                                       \
    memcpy(&g_kernels[p + 2].field, &fn, sizeof fn);                         \
    st = JAXMG_OK;                                                            \
  }
  JAXMG_LAPACK_REAL_ROUTINES(X)
#undef X
  pthread_mutex_unlock(&g_mu);
  return st;
}

const char *jaxmg_cpu_lapack_names(void) {
#define X(prefix, suffix, field) #prefix #suffix ","
  static const char names[] = JAXMG_LAPACK_ROUTINES(X) JAXMG_LAPACK_REAL_ROUTINES(X);
#undef X
  return names;
}

jaxmg_status_t jaxmg__cpu_kernels(jaxmg_dtype_t dt, int need_evd, const jaxmg_cpu_kernels_t **out,
                                  const char *op, jaxmg_error_t *err) {
  const jaxmg_dtype_info_t *info = jaxmg__dtype_info(dt);
  if (!info) return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.%s: unsupported dtype", op);
  int p = (int)dt; /* the dtype enum is ordered s, d, c, z */
  jaxmg_cpu_kernels_t *k = &g_kernels[p];
  pthread_mutex_lock(&g_mu);
  /* Written once; later callers only read it (ordered by the mutex). */
  if (!k->info) k->info = info;
  const char *missing = !k->potrf ? "potrf" : !k->trsm ? "trsm" : !k->herk ? (info->is_complex ? "herk" : "syrk")
                      : !k->gemm ? "gemm" : NULL;
  if (!missing && need_evd == 1) {
    if (info->is_complex && !k->heevd) missing = "heevd";
    if (!info->is_complex && !k->syevd) missing = "syevd";
  }
  if (!missing && need_evd == 2) {
    if (info->is_complex && !k->heevr) missing = "heevr";
    if (!info->is_complex && !k->syevr) missing = "syevr";
  }
  /* The tridiagonal solvers are of the real type (sstedc for complex64 too). */
  char prec = info->lapack;
  if (!missing && need_evd == 3) {
    missing = !k->geqrf ? "geqrf" : !k->larft ? "larft"
            : !k->hemv ? (info->is_complex ? "hemv" : "symv")
            : !k->her2 ? (info->is_complex ? "her2" : "syr2") : NULL;
    if (!missing && (!k->stedc || !k->sterf)) {
      missing = !k->stedc ? "stedc" : "sterf";
      prec = prec == 'c' ? 's' : prec == 'z' ? 'd' : prec;
    }
  }
  pthread_mutex_unlock(&g_mu);
  if (missing) {
    return jaxmg__seterr(err, JAXMG_EUNAVAIL,
                         "jaxmg.%s: LAPACK routine %c%s was not registered with the CPU backend "
                         "(jaxmg_cpu_set_lapack)", op, prec, missing);
  }
  *out = k;
  return JAXMG_OK;
}

/* ---- threads of the BLAS ----------------------------------------------------------------
 * The participants of a call run their LAPACK/BLAS kernels concurrently, each on its own
 * thread; a BLAS that threads every call by itself would run participants x cores threads on
 * the cores (erratic and many times slower: 116 ms median and 426 ms worst against 16 ms for
 * potrs N = 1024 on 4 virtual devices and 2 cores). Where the BLAS has a thread-local thread
 * count (OpenBLAS >= 0.3.27, MKL: `*_set_num_threads_local`, returning the previous value),
 * each participant's kernel runs with its share of the cores. */
static _Atomic(jaxmg_cpu_threads_fn) g_threads;
static atomic_int g_cpus;

void jaxmg_cpu_set_threads(void *set_local, int cpus) {
  jaxmg_cpu_threads_fn fn = NULL;
  memcpy(&fn, &set_local, sizeof fn);
  atomic_store(&g_cpus, cpus > 0 ? cpus : 0);
  atomic_store(&g_threads, fn);
}

int jaxmg__cpu_threads_begin(int computing) {
  jaxmg_cpu_threads_fn fn = atomic_load(&g_threads);
  const int cpus = atomic_load(&g_cpus);
  if (!fn || cpus <= 0 || computing < 1) return -1;
  const int share = cpus / computing > 1 ? cpus / computing : 1;
  return fn(share);
}

void jaxmg__cpu_threads_end(int previous) {
  jaxmg_cpu_threads_fn fn = atomic_load(&g_threads);
  if (fn && previous >= 0) (void)fn(previous);
}

int jaxmg__cpu_work_size(const void *p, size_t real_size) {
  double v;
  if (real_size == 4) {
    float f;
    memcpy(&f, p, sizeof f);
    v = f;
  } else {
    memcpy(&v, p, sizeof v);
  }
  return v > 1 ? (int)v + 1 : 1;
}
