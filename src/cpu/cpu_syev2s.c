/* CPU backend of the two-stage Hermitian eigensolver (jaxmg_syev2s_t, src/common/ops.h), the
 * reference of a GPU version that runs the same steps with GEMMs and kernels of its own:
 *
 *   1. dense -> band with b sub-diagonals (Bischof, Lang, Sun): for each panel of b columns,
 *      the Householder QR (?geqrf) of the block below its diagonal block, then the two-sided
 *      update of the trailing matrix with the block reflector Q = I - V T V^H, in GEMMs;
 *   2. band -> real symmetric tridiagonal by bulge chasing in a compact band store (Haidar,
 *      Ltaief, Dongarra): sweep s annihilates column s below its sub-diagonal with one
 *      reflector of length <= b, then chases the bulge it creates down the band in steps of
 *      b, each step annihilating only the first column of its bulge (the rest of the bulge
 *      is the next sweep's first column there); reflectors leave a real sub-diagonal;
 *   3. the tridiagonal eigenproblem by ?stedc (?sterf without vectors) of the real type;
 *   4. Z = Q1 Q2 Z_tri: stage 2's reflectors grouped into block reflectors (GEMMs), then
 *      stage 1's block reflectors.
 *
 * Flops with vectors: 2 n^3 (stage 1, the trailing matrix in full storage) + 3 n^3 (stage
 * 2's block reflectors, a third of whose entries are zeros) + 2 n^3 (stage 1's) + ?stedc,
 * against 4/3 n^3 + 2 n^3 + ?stedc for the one-stage ?syevd; but every step except the
 * bulge chase is a GEMM, and the bulge chase works on the O(n b) band store alone. */
#include <complex.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

enum { kDefaultBand = 32 };

typedef double complex cplx_t;

typedef struct {
  const jaxmg_cpu_kernels_t *k;
  jaxmg_dtype_t dt;
  int cplx;
  size_t esz, rsz;
} ctx_t;

/* ---- elements of any dtype, through double complex (vectors of length <= b only) ------- */
static cplx_t get(const ctx_t *c, const void *p, size_t i) {
  switch (c->dt) {
    case JAXMG_F32: return ((const float *)p)[i];
    case JAXMG_F64: return ((const double *)p)[i];
    case JAXMG_C64: return CMPLXF(((const float *)p)[2 * i], ((const float *)p)[2 * i + 1]);
    default: return CMPLX(((const double *)p)[2 * i], ((const double *)p)[2 * i + 1]);
  }
}

static void put(const ctx_t *c, void *p, size_t i, cplx_t v) {
  switch (c->dt) {
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

/* Element i of an array of the real type. */
static double rget(const ctx_t *c, const void *p, size_t i) {
  return c->rsz == 4 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static void rput(const ctx_t *c, void *p, size_t i, double v) {
  if (c->rsz == 4) ((float *)p)[i] = (float)v;
  else ((double *)p)[i] = v;
}

static char *at(const ctx_t *c, const void *p, size_t i) { return (char *)p + i * c->esz; }

/* One scalar of the dtype, for the alpha and beta arguments of the BLAS. */
typedef struct {
  double v[2];
} scalar_t;

static scalar_t scalar(const ctx_t *c, cplx_t v) {
  scalar_t s = {{0, 0}};
  put(c, s.v, 0, v);
  return s;
}

/* v rounded to the dtype (what the BLAS will see). */
static cplx_t rounded(const ctx_t *c, cplx_t v) {
  scalar_t s = scalar(c, v);
  return get(c, s.v, 0);
}

static void gemm(const ctx_t *c, const char *ta, const char *tb, int m, int n, int k,
                 cplx_t alpha, const void *a, int lda, const void *b, int ldb, cplx_t beta,
                 void *y, int ldy) {
  if (m <= 0 || n <= 0) return;
  const scalar_t al = scalar(c, alpha), be = scalar(c, beta);
  c->k->gemm(ta, tb, &m, &n, &k, al.v, a, &lda, b, &ldb, be.v, y, &ldy);
}

/* 1 when every element of the lower triangle of the n x n matrix a is finite. */
static int lower_finite(const ctx_t *c, const void *a, size_t n) {
  for (size_t j = 0; j < n; j++)
    for (size_t i = j; i < n; i++) {
      const cplx_t v = get(c, a, i + j * n);
      if (!isfinite(creal(v)) || !isfinite(cimag(v))) return 0;
    }
  return 1;
}

/* The Hermitian matrix of a's lower triangle in full storage (real diagonal). */
static void symmetrize(const ctx_t *c, void *a, size_t n) {
  for (size_t j = 0; j < n; j++) {
    put(c, a, j + j * n, creal(get(c, a, j + j * n)));
    for (size_t i = j + 1; i < n; i++) put(c, a, j + i * n, conj(get(c, a, i + j * n)));
  }
}

/* Householder reflector H = I - tau v v^H with H^H x = beta e1, beta real (LAPACK's ?larfg
 * convention): v (length L, v[0] = 1) written to `v`, x overwritten by beta e1; returns tau
 * (rounded to the dtype), 0 when x is already beta e1. Computed in double precision, with
 * the norm scaled against overflow. */
static cplx_t reflector(const ctx_t *c, void *x, int L, void *v) {
  const cplx_t alpha = get(c, x, 0);
  double scale = 0, ssq = 0, xnorm = 0;
  for (int i = 1; i < L; i++) scale = fmax(scale, cabs(get(c, x, (size_t)i)));
  if (scale > 0) {
    for (int i = 1; i < L; i++) {
      const cplx_t q = get(c, x, (size_t)i) / scale;
      ssq += creal(q) * creal(q) + cimag(q) * cimag(q);
    }
    xnorm = scale * sqrt(ssq);
  }
  put(c, v, 0, 1);
  if (xnorm == 0 && cimag(alpha) == 0) {
    for (int i = 1; i < L; i++) put(c, v, (size_t)i, 0);
    return 0;
  }
  const double beta = -copysign(hypot(cabs(alpha), xnorm), creal(alpha));
  const cplx_t tau = rounded(c, (beta - alpha) / beta), den = alpha - beta;
  for (int i = 1; i < L; i++) {
    put(c, v, (size_t)i, get(c, x, (size_t)i) / den);
    put(c, x, (size_t)i, 0);
  }
  put(c, x, 0, beta);
  return tau;
}

/* ---- stage 1: dense -> band --------------------------------------------------------------
 * a: n x n in full Hermitian storage. Panel p (columns k = p b .. k + b - 1, while a block of
 * at least two rows lies below the band): the QR of a[k+b:n, k:k+b] leaves R in the band and
 * V below it (in place), T_p in t1 + p b^2 (b x b, upper triangular, zeros below); then
 * A22 = a[k+b:, k+b:] <- Q^H A22 Q, Q = I - V T V^H:
 *   Y = A22 V T,  W = Y - 1/2 V (T^H (V^H Y)),  A22 <- A22 - V W^H - W V^H. */
typedef struct {
  void *vx, *x2; /* n x 2b each */
  void *m1, *m2; /* b x b each */
  void *tau;     /* b */
  void *work;    /* ?geqrf's */
  int lwork;
} stage1_ws_t;

static int npanels(int n, int b) {
  int p = 0;
  for (int k = 0; k + b + 1 < n; k += b) p++;
  return p;
}

/* The unit lower trapezoidal m x kk matrix V of the reflectors stored below the diagonal of
 * the block at `panel` (leading dimension n), into vx (leading dimension m). */
static void explicit_v(const ctx_t *c, const void *panel, int n, int m, int kk, void *vx) {
  for (int j = 0; j < kk; j++)
    for (int i = 0; i < m; i++) {
      const size_t o = (size_t)i + (size_t)j * (size_t)m;
      if (i < j) put(c, vx, o, 0);
      else if (i == j) put(c, vx, o, 1);
      else memcpy(at(c, vx, o), at(c, panel, (size_t)i + (size_t)j * (size_t)n), c->esz);
    }
}

static jaxmg_status_t to_band(const ctx_t *c, void *a, int n, int b, void *t1,
                              const stage1_ws_t *ws, jaxmg_error_t *err) {
  for (int k = 0, p = 0; k + b + 1 < n; k += b, p++) {
    const int m = n - k - b, kk = m < b ? m : b;
    char *panel = at(c, a, (size_t)(k + b) + (size_t)k * (size_t)n);
    char *a22 = at(c, a, (size_t)(k + b) + (size_t)(k + b) * (size_t)n);
    char *tp = at(c, t1, (size_t)p * (size_t)b * (size_t)b);
    int linfo = 0;
    c->k->geqrf(&m, &b, panel, &n, ws->tau, ws->work, &ws->lwork, &linfo);
    if (linfo < 0) {
      return jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.eigh: %cgeqrf rejected argument %d",
                           c->k->info->lapack, -linfo);
    }
    explicit_v(c, panel, n, m, kk, ws->vx);
    c->k->larft("F", "C", &m, &kk, ws->vx, &m, ws->tau, tp, &b);
    for (int j = 0; j < kk; j++)
      for (int i = j + 1; i < kk; i++) put(c, tp, (size_t)i + (size_t)j * (size_t)b, 0);
    /* W beside V in vx, and [W V] in x2: the rank-2kk update in one GEMM. */
    const size_t mk = (size_t)m * (size_t)kk;
    char *wv = at(c, ws->vx, mk);
    gemm(c, "N", "N", m, kk, m, 1, a22, n, ws->vx, m, 0, ws->x2, m);        /* A22 V */
    gemm(c, "N", "N", m, kk, kk, 1, ws->x2, m, tp, b, 0, wv, m);            /* Y */
    gemm(c, "C", "N", kk, kk, m, 1, ws->vx, m, wv, m, 0, ws->m1, kk);       /* V^H Y */
    gemm(c, "C", "N", kk, kk, kk, 1, tp, b, ws->m1, kk, 0, ws->m2, kk);     /* T^H V^H Y */
    gemm(c, "N", "N", m, kk, kk, -0.5, ws->vx, m, ws->m2, kk, 1, wv, m);    /* W */
    memcpy(ws->x2, wv, mk * c->esz);
    memcpy(at(c, ws->x2, mk), ws->vx, mk * c->esz);
    gemm(c, "N", "C", m, m, 2 * kk, -1, ws->vx, m, ws->x2, m, 1, a22, n);   /* - V W^H - W V^H */
  }
  return JAXMG_OK;
}

/* ---- stage 2: band -> tridiagonal ----------------------------------------------------------
 * The band store: the lower triangle out to 2b sub-diagonals (the b of the band and the
 * bulge's b - 1 more), column-major with ldab = 2b + 1 rows, element (i, j) at
 * ab[(i - j) + j ldab] = ab[i + j (ldab - 1)]: a block of the band region is an ordinary
 * matrix with leading dimension ldab - 1, and the BLAS run on it directly.
 *
 * Sweep s, step t acts on the rows and columns J_t = [s + 1 + t b, s + (t + 1) b] (cut at
 * n - 1) with a reflector H_{s,t}:
 *   t = 0: generated from column s (rows J_0), which becomes (beta, 0, ..., 0);
 *   t > 0: the block B = A[J_t, J_{t-1}] first takes H_{s,t-1} from the right (B H), which
 *          fills it; H_{s,t} is generated from its first column and applied from the left
 *          to the rest of B;
 * and in both cases the Hermitian diagonal block A[J_t, J_t] becomes H^H A H (?hemv and
 * ?her2 on its lower triangle: w = tau A v, w -= 1/2 conj(tau) (v^H w) v,
 * A -= v w^H + w v^H). Rows J_t hold entries only in the columns J_{t-1} and J_t (and, by
 * symmetry, the rows J_{t+1} of the columns J_t, which the next step covers), so the three
 * blocks carry the whole similarity. The product of the reflectors in the order generated,
 * Q2 = H_{0,0} H_{0,1} ... H_{1,0} ..., satisfies A_band = Q2 T Q2^H.
 *
 * Reflector (s, t) is kept, in the order generated, at v2 + (s tmax + t) b (b elements,
 * v[0] = 1, zeros past its length) with its tau at tau2[s tmax + t]; without vectors only
 * the last two (refl_index). */
typedef struct {
  void *ab;
  int n, b, tmax, keep;
  void *v2;     /* (n - 1) tmax b elements (keep), else 2 b */
  cplx_t *tau2; /* (n - 1) tmax (keep), else 2 */
  void *w;      /* 2 b elements */
} stage2_t;

static size_t refl_index(const stage2_t *s2, int s, int t) {
  return s2->keep ? (size_t)s * (size_t)s2->tmax + (size_t)t : (size_t)(t & 1);
}

static char *band_at(const ctx_t *c, const stage2_t *s2, int i, int j) {
  return at(c, s2->ab, (size_t)i + (size_t)j * (size_t)(2 * s2->b));
}

static void to_tridiagonal(const ctx_t *c, stage2_t *s2) {
  const int n = s2->n, b = s2->b, ld = 2 * b, inc = 1;
  char *w = s2->w;
  for (int s = 0; s + 1 < n; s++) {
    for (int t = 0; s + 1 + t * b < n; t++) {
      const int r0 = s + 1 + t * b, L = n - r0 < b ? n - r0 : b, pc = r0 - b;
      const size_t ri = refl_index(s2, s, t);
      char *v = at(c, s2->v2, ri * (size_t)b);
      char *x;
      if (t == 0) {
        x = band_at(c, s2, r0, s);
      } else {
        /* B <- B H_{s,t-1} = B - tau (B v) v^H; H_{s,t-1} has length b. */
        const size_t pi = refl_index(s2, s, t - 1);
        const cplx_t taup = s2->tau2[pi];
        const char *vp = at(c, s2->v2, pi * (size_t)b);
        x = band_at(c, s2, r0, pc);
        if (taup != 0) {
          gemm(c, "N", "N", L, 1, b, 1, x, ld, vp, b, 0, w, L);
          gemm(c, "N", "C", L, b, 1, -taup, w, L, vp, b, 1, x, ld);
        }
      }
      /* Past step 0 a single row has nothing to annihilate (its sub-diagonal is made real
       * by the sweep of its column). */
      cplx_t tau = 0;
      if (t == 0 || L > 1) {
        tau = reflector(c, x, L, v);
      } else {
        put(c, v, 0, 1);
      }
      for (int i = L; i < b; i++) put(c, v, (size_t)i, 0);
      s2->tau2[ri] = tau;
      if (tau == 0) continue;
      if (t > 0 && b > 1) {
        /* B(:, 1:b) <- H^H B(:, 1:b) = B - conj(tau) v (B^H v)^H. */
        char *b1 = band_at(c, s2, r0, pc + 1);
        gemm(c, "C", "N", b - 1, 1, L, 1, b1, ld, v, L, 0, w, b - 1);
        gemm(c, "N", "C", L, b - 1, 1, -conj(tau), v, L, w, b - 1, 1, b1, ld);
      }
      /* The diagonal block: A <- H^H A H. */
      char *d = band_at(c, s2, r0, r0);
      const scalar_t al = scalar(c, tau), zero = scalar(c, 0), mone = scalar(c, -1);
      c->k->hemv("L", &L, al.v, d, &ld, v, &inc, zero.v, w, &inc);
      cplx_t vw = 0;
      for (int i = 0; i < L; i++) vw += conj(get(c, v, (size_t)i)) * get(c, w, (size_t)i);
      const cplx_t f = -0.5 * conj(tau) * vw;
      for (int i = 0; i < L; i++)
        put(c, w, (size_t)i, get(c, w, (size_t)i) + f * get(c, v, (size_t)i));
      c->k->her2("L", &L, mone.v, v, &inc, w, &inc, d, &ld);
    }
  }
}

/* ---- back-transformation ------------------------------------------------------------------
 * Q2 Z: the reflectors of nb consecutive sweeps s0 .. s0 + nb - 1 at one step t form the
 * block reflector B_t = H_{s0,t} H_{s0+1,t} ... = I - V T V^H (V: rows s0 + 1 + t b to
 * s0 + nb - 1 + t b + b - 1, column j shifted down by j; T by ?larft). For nb <= b the
 * group's product in generation order equals B_T ... B_1 B_0 (reflectors of steps two
 * apart act on disjoint rows; of adjacent steps, the later sweep's reflector of the earlier
 * step comes after the earlier sweep's of the later one, in both orders), so Q2 Z applies
 * the groups last to first, and each group's B_0 first: Z <- Z - (V T) (V^H Z). */
typedef struct {
  void *vb, *vt; /* (b + nb) x nb each */
  void *tb;      /* nb x nb */
  void *taub;    /* nb */
  void *mb;      /* max(b, nb) x n */
} back_ws_t;

static void apply_q2(const ctx_t *c, const stage2_t *s2, int nb, void *z, const back_ws_t *ws) {
  const int n = s2->n, b = s2->b, nsweeps = n - 1;
  for (int g0 = (nsweeps - 1) / nb * nb; g0 >= 0; g0 -= nb) {
    const int g1 = g0 + nb < nsweeps ? g0 + nb - 1 : nsweeps - 1;
    for (int t = 0; g0 + 1 + t * b < n; t++) {
      const int r0 = g0 + 1 + t * b;
      const int slast = g1 < n - 2 - t * b ? g1 : n - 2 - t * b; /* step t exists */
      const int nc = slast - g0 + 1;
      const int r1 = slast + t * b + b < n - 1 ? slast + t * b + b : n - 1;
      const int rows = r1 - r0 + 1;
      int any = 0;
      memset(ws->vb, 0, (size_t)rows * (size_t)nc * c->esz);
      for (int j = 0; j < nc; j++) {
        const int s = g0 + j, len = n - (s + 1 + t * b) < b ? n - (s + 1 + t * b) : b;
        const size_t ri = refl_index(s2, s, t);
        memcpy(at(c, ws->vb, (size_t)j + (size_t)j * (size_t)rows),
               at(c, s2->v2, ri * (size_t)b), (size_t)len * c->esz);
        put(c, ws->taub, (size_t)j, s2->tau2[ri]);
        any |= s2->tau2[ri] != 0;
      }
      if (!any) continue;
      c->k->larft("F", "C", &rows, &nc, ws->vb, &rows, ws->taub, ws->tb, &nc);
      for (int j = 0; j < nc; j++)
        for (int i = j + 1; i < nc; i++) put(c, ws->tb, (size_t)i + (size_t)j * (size_t)nc, 0);
      char *zr = at(c, z, (size_t)r0);
      gemm(c, "N", "N", rows, nc, nc, 1, ws->vb, rows, ws->tb, nc, 0, ws->vt, rows);
      gemm(c, "C", "N", nc, n, rows, 1, ws->vb, rows, zr, n, 0, ws->mb, nc);
      gemm(c, "N", "N", rows, n, nc, -1, ws->vt, rows, ws->mb, nc, 1, zr, n);
    }
  }
}

/* Q1 Z = Q_0 (Q_1 (... Z)): panel p's Q_p = I - V T_p V^H on rows k + b .. n - 1. */
static void apply_q1(const ctx_t *c, const void *a, int n, int b, const void *t1, void *z,
                     const stage1_ws_t *ws1, const back_ws_t *ws) {
  for (int p = npanels(n, b) - 1; p >= 0; p--) {
    const int k = p * b, m = n - k - b, kk = m < b ? m : b;
    const char *panel = at(c, a, (size_t)(k + b) + (size_t)k * (size_t)n);
    const char *tp = at(c, t1, (size_t)p * (size_t)b * (size_t)b);
    char *zr = at(c, z, (size_t)(k + b));
    explicit_v(c, panel, n, m, kk, ws1->vx);
    gemm(c, "N", "N", m, kk, kk, 1, ws1->vx, m, tp, b, 0, ws1->x2, m);
    gemm(c, "C", "N", kk, n, m, 1, ws1->vx, m, zr, n, 0, ws->mb, kk);
    gemm(c, "N", "N", m, n, kk, -1, ws1->x2, m, ws->mb, kk, 1, zr, n);
  }
}

static void *alloc(size_t count, size_t size, int *ok) {
  void *p = malloc((count ? count : 1) * size);
  if (!p) *ok = 0;
  return p;
}

jaxmg_status_t jaxmg__cpu_syev2s(const jaxmg_syev2s_t *x, jaxmg_error_t *err) {
  const jaxmg_cpu_kernels_t *k = NULL;
  jaxmg_status_t st = jaxmg__cpu_kernels(x->dtype, 3, &k, "eigh", err);
  if (st) return st;
  *x->info = 0;
  if (x->n == 0) return JAXMG_OK;
  /* ?stedc's workspace with vectors is 1 + 4 n + n^2 elements, counted in an int. */
  if (x->n > (x->vectors ? 46000 : INT_MAX / 4)) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: n = %lld exceeds LAPACK's 32-bit range",
                         (long long)x->n);
  }
  if (x->band < 0) {
    return jaxmg__seterr(err, JAXMG_EINVAL, "jaxmg.eigh: band must be >= 0, got %lld",
                         (long long)x->band);
  }
  const ctx_t cx = {k, x->dtype, k->info->is_complex, k->info->size, k->info->real_size};
  const ctx_t *c = &cx;
  const int n = (int)x->n;
  const size_t nn = (size_t)n * (size_t)n;
  if (!lower_finite(c, x->a, (size_t)n)) {
    *x->info = 1;
    return JAXMG_OK;
  }
  if (n == 1) {
    rput(c, x->w, 0, creal(get(c, x->a, 0)));
    if (x->vectors) put(c, x->z, 0, 1);
    return JAXMG_OK;
  }
  const int b = x->band == 0 ? (n - 1 < kDefaultBand ? n - 1 : kDefaultBand)
                             : (x->band < n - 1 ? (int)x->band : n - 1);
  /* Sweeps per block reflector of the back-transformation: its V is (b + nb - 1) x nb with
   * two zero triangles, so Q2 costs 2 n^3 (b + nb) / b; b / 2 halves that excess at GEMMs
   * still wide enough to run near peak. */
  const int nb = (b + 1) / 2, tmax = (n - 1 + b - 1) / b, keep = x->vectors != 0;
  const size_t nr = keep ? (size_t)(n - 1) * (size_t)tmax : 2, esz = c->esz;

  int ok = 1, linfo = 0, lwork = -1, liwork = -1, iwq = 0;
  double wq[2] = {0, 0};
  stage1_ws_t ws1 = {0};
  back_ws_t wsb = {0};
  stage2_t s2 = {.n = n, .b = b, .tmax = tmax, .keep = keep};
  void *t1 = alloc((size_t)npanels(n, b) * (size_t)b * (size_t)b, esz, &ok);
  void *e = alloc((size_t)n, c->rsz, &ok), *work = NULL;
  int *iwork = NULL;
  ws1.vx = alloc((size_t)n * (size_t)(2 * b), esz, &ok);
  ws1.x2 = alloc((size_t)n * (size_t)(2 * b), esz, &ok);
  ws1.m1 = alloc((size_t)b * (size_t)b, esz, &ok);
  ws1.m2 = alloc((size_t)b * (size_t)b, esz, &ok);
  ws1.tau = alloc((size_t)b, esz, &ok);
  s2.ab = calloc((size_t)(2 * b + 1) * (size_t)n, esz);
  s2.v2 = alloc(nr * (size_t)b, esz, &ok);
  s2.tau2 = alloc(nr, sizeof(cplx_t), &ok);
  s2.w = alloc((size_t)(2 * b), esz, &ok);
  if (keep) {
    wsb.vb = alloc((size_t)(b + nb) * (size_t)nb, esz, &ok);
    wsb.vt = alloc((size_t)(b + nb) * (size_t)nb, esz, &ok);
    wsb.tb = alloc((size_t)nb * (size_t)nb, esz, &ok);
    wsb.taub = alloc((size_t)nb, esz, &ok);
    wsb.mb = alloc((size_t)(b > nb ? b : nb) * (size_t)n, esz, &ok);
  }
  if (!ok || !s2.ab) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.eigh: out of host memory for the workspace");
    goto done;
  }
  const int m0 = n - b;
  k->geqrf(&m0, &b, x->a, &n, ws1.tau, wq, &lwork, &linfo); /* size in the real part */
  ws1.lwork = jaxmg__cpu_work_size(wq, c->rsz);
  if (x->vectors) {
    k->stedc("I", &n, x->w, e, x->z, &n, wq, &lwork, &iwq, &liwork, &linfo);
    lwork = jaxmg__cpu_work_size(wq, c->rsz);
    liwork = iwq > 1 ? iwq : 1;
  } else {
    lwork = liwork = 1;
  }
  ws1.work = alloc((size_t)ws1.lwork, esz, &ok);
  work = alloc((size_t)lwork, c->rsz, &ok);
  iwork = alloc((size_t)liwork, sizeof(int), &ok);
  if (!ok) {
    st = jaxmg__seterr(err, JAXMG_ENOMEM, "jaxmg.eigh: out of host memory for the workspace");
    goto done;
  }

  const int threads = jaxmg__cpu_threads_begin(x->parts > 0 ? x->parts : 1);
  symmetrize(c, x->a, (size_t)n);
  st = to_band(c, x->a, n, b, t1, &ws1, err);
  if (!st) {
    /* The band: the lower triangle out to b sub-diagonals (rows past the band of a panel's
     * columns hold its reflectors). */
    for (int j = 0; j < n; j++)
      for (int i = j; i < n && i <= j + b; i++)
        memcpy(band_at(c, &s2, i, j), at(c, x->a, (size_t)i + (size_t)j * (size_t)n), esz);
    to_tridiagonal(c, &s2);
    for (int j = 0; j < n; j++) {
      rput(c, x->w, (size_t)j, creal(get(c, band_at(c, &s2, j, j), 0)));
      if (j + 1 < n) rput(c, e, (size_t)j, creal(get(c, band_at(c, &s2, j + 1, j), 0)));
    }
    linfo = 0;
    if (x->vectors) {
      k->stedc("I", &n, x->w, e, x->z, &n, work, &lwork, iwork, &liwork, &linfo);
    } else {
      k->sterf(&n, x->w, e, &linfo);
    }
    if (linfo < 0) {
      const char p = c->rsz == 4 ? 's' : 'd';
      st = jaxmg__seterr(err, JAXMG_ELIB, "jaxmg.eigh: %c%s rejected argument %d", p,
                         x->vectors ? "stedc" : "sterf", -linfo);
    } else if (linfo > 0) {
      *x->info = linfo;
    } else if (x->vectors) {
      if (c->cplx) {
        /* The real n x n Z at the start of z, widened in place from the end. */
        for (size_t i = nn; i-- > 0;) {
          const double r = rget(c, x->z, i);
          put(c, x->z, i, r);
        }
      }
      apply_q2(c, &s2, nb, x->z, &wsb);
      apply_q1(c, x->a, n, b, t1, x->z, &ws1, &wsb);
    }
  }
  jaxmg__cpu_threads_end(threads);

done:
  free(iwork);
  free(work);
  free(ws1.work);
  free(wsb.mb);
  free(wsb.taub);
  free(wsb.tb);
  free(wsb.vt);
  free(wsb.vb);
  free(s2.w);
  free(s2.tau2);
  free(s2.v2);
  free(s2.ab);
  free(ws1.tau);
  free(ws1.m2);
  free(ws1.m1);
  free(ws1.x2);
  free(ws1.vx);
  free(e);
  free(t1);
  return st;
}
