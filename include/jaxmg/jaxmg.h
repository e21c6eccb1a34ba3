/* jaxmg: multi-device dense linear algebra for JAX. Public C interface.
 *
 * The native core is split in three layers:
 *   - the FFI layer (src/ffi) decodes XLA call frames, validates them and dispatches;
 *   - the backends (src/cpu, src/gpu) do the math on plain pointers;
 *   - common services (src/common): status codes, the block-cyclic layout planner and the
 *     rendezvous that lets the per-device calls of one execution meet.
 * Everything a C caller or a C test may use is declared here. */
#ifndef JAXMG_JAXMG_H_
#define JAXMG_JAXMG_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define JAXMG_EXPORT __attribute__((visibility("default")))
#else
#define JAXMG_EXPORT
#endif

/* One error list for the whole library. Numerical outcomes (a matrix that is not positive
 * definite, an eigensolver that does not converge) are not errors: they are reported as
 * LAPACK's `info` next to NaN outputs. */
typedef enum {
  JAXMG_OK = 0,
  JAXMG_EINVAL = 1,     /* contract violation: shape, dtype, attribute */
  JAXMG_ENOMEM = 2,     /* host or device allocation failed */
  JAXMG_ETIMEDOUT = 3,  /* a participant did not arrive in time */
  JAXMG_EPEER = 4,      /* another participant of the same call failed */
  JAXMG_ELIB = 5,       /* CUDA, cuSOLVER or LAPACK reported an error */
  JAXMG_EUNAVAIL = 6,   /* a routine or library is not available */
  JAXMG_EINTERNAL = 7,  /* a bug: an invariant did not hold */
  JAXMG_EFAULT = 8      /* a fault injected on purpose by a test */
} jaxmg_status_t;

/* Error record: a status and a message naming the op, the operand or the failing call. */
typedef struct {
  jaxmg_status_t code;
  char msg[512];
} jaxmg_error_t;

JAXMG_EXPORT const char *jaxmg_status_name(jaxmg_status_t s);

typedef enum { JAXMG_F32 = 0, JAXMG_F64 = 1, JAXMG_C64 = 2, JAXMG_C128 = 3 } jaxmg_dtype_t;

/* Size in bytes of one element, 0 for an unknown dtype. */
JAXMG_EXPORT size_t jaxmg_dtype_size(jaxmg_dtype_t dt);

/* ------------------------------------------------------------------------------------------
 * 1D block-cyclic layout without moving data between devices.
 *
 * `ndev` devices each hold `nloc` consecutive rows of an N x N Hermitian matrix A
 * (N = ndev * nloc), row-major. Read column-major, device d's buffer holds the columns
 * [d*nloc, (d+1)*nloc) of A^T = conj(A). A 1D block-cyclic solver with tile T (T divides
 * nloc) reads device d's local column c as global column
 *     g = ((c / T) * ndev + d) * T + c % T.
 * Let src(g) = d*nloc + c be the original column stored there. Permuting the rows of every
 * local column by src (new[g] = old[src(g)], a purely local operation) makes the solver
 * see M = P^T conj(A) P, Hermitian positive definite when A is. The permutation moves
 * whole blocks of T rows, so it is described at block level by a permutation of
 * K = N / T blocks. */
typedef struct {
  int64_t n;     /* global order N */
  int64_t nloc;  /* rows per device */
  int64_t ndev;  /* devices */
  int64_t tile;  /* tile size T, divides nloc */
} jaxmg_layout_t;

/* Fills *lay; JAXMG_EINVAL unless ndev >= 1, tile >= 1, nloc >= 1 and tile divides nloc. */
JAXMG_EXPORT jaxmg_status_t jaxmg_layout_init(jaxmg_layout_t *lay, int64_t nloc, int64_t ndev,
                                              int64_t tile);
/* src(g): the original index stored at solver index g. */
JAXMG_EXPORT int64_t jaxmg_layout_src(const jaxmg_layout_t *lay, int64_t g);
/* dst(j) = src^{-1}(j): the solver index of original index j. */
JAXMG_EXPORT int64_t jaxmg_layout_dst(const jaxmg_layout_t *lay, int64_t j);
/* Block permutation: src block of solver block t (blocks of `tile` rows). */
JAXMG_EXPORT int64_t jaxmg_layout_src_block(const jaxmg_layout_t *lay, int64_t t);
/* 1 when src is the identity (one device, or one tile per device). */
JAXMG_EXPORT int jaxmg_layout_is_identity(const jaxmg_layout_t *lay);
/* Device and local column of solver column g. */
JAXMG_EXPORT void jaxmg_layout_owner(const jaxmg_layout_t *lay, int64_t g, int64_t *dev,
                                     int64_t *local_col);

/* Padding of the seeds' `pad=True`: each shard of `nloc` rows grows to the next multiple of
 * `tile`; padded rows and columns hold the identity so the padded matrix stays positive
 * definite and its solution restricted to the original indices is unchanged. */
JAXMG_EXPORT int64_t jaxmg_pad_nloc(int64_t nloc, int64_t tile);
/* Index of original row j (of N = ndev*nloc) in the padded matrix of ndev*nloc_pad rows. */
JAXMG_EXPORT int64_t jaxmg_pad_index(int64_t j, int64_t nloc, int64_t nloc_pad);
/* Inverse of jaxmg_pad_index; -1 for a padding index. */
JAXMG_EXPORT int64_t jaxmg_unpad_index(int64_t p, int64_t nloc, int64_t nloc_pad);

/* The row permutation as a list of block moves, for in-place execution with one block of
 * staging space: each move is a pair (to, from) of block indices, where -1 names the
 * staging block. Applying the moves in order realises new[t] = old[src_block(t)]
 * (inverse = 0) or its inverse (inverse = 1). `moves` must hold 4 * K int64 values
 * (K = N / tile); returns the number of moves (0 for the identity). */
JAXMG_EXPORT int64_t jaxmg_layout_moves(const jaxmg_layout_t *lay, int inverse, int64_t *moves);

/* The forward move list of jaxmg_layout_moves(lay, 0, moves), for a solver that reads only the
 * lower triangle of M (potrf, potrs and syevd with uplo = lower): ncols[m] is the number of
 * leading local columns of device `rank` (0 <= rank < ndev) that move m must copy (0: skip
 * it). Local column panel c is solver block column J = c*ndev + rank, and only its row
 * blocks I >= J are read, so a move into row block I copies
 * min(nloc, (floor((I - rank) / ndev) + 1) * tile) columns (none when I < rank) and a move
 * into the staging block the count of the move that reads it back. After applying the cut
 * moves every entry (row block I, column of panel c) with I >= J equals the fully permuted
 * one; the other entries hold unspecified values. `moves` must hold 4 * K and `ncols` 2 * K
 * int64 values; returns the number of moves. */
JAXMG_EXPORT int64_t jaxmg_layout_moves_lower(const jaxmg_layout_t *lay, int64_t rank,
                                              int64_t *moves, int64_t *ncols);

/* Applies a move list to `ncols` local columns of length N stored with leading dimension
 * `ld` (elements of `esz` bytes) on the host; `stage` holds tile * ncols * esz bytes. */
JAXMG_EXPORT void jaxmg_layout_apply_moves_host(const jaxmg_layout_t *lay, const int64_t *moves,
                                                int64_t nmoves, void *a, int64_t ld,
                                                int64_t ncols, size_t esz, void *stage);

/* ------------------------------------------------------------------------------------------
 * LAPACK/BLAS for the CPU backend. The library links no LAPACK: the Python package hands it
 * the function pointers of SciPy's `cython_lapack`/`cython_blas` (Fortran calling convention,
 * 32-bit integers), as jaxlib does; a C program may hand it any LAPACK's symbols. Names are
 * the LAPACK names without trailing underscore ("dpotrf", "zherk", ...). Returns JAXMG_EINVAL
 * for a name the library does not use. */
JAXMG_EXPORT jaxmg_status_t jaxmg_cpu_set_lapack(const char *name, void *fn);
/* Comma-separated list of the routine names the CPU backend uses. */
JAXMG_EXPORT const char *jaxmg_cpu_lapack_names(void);
/* The BLAS's thread-local thread count setter (`int f(int threads)`, returning the calling
 * thread's previous count: OpenBLAS's and MKL's `*_set_num_threads_local`), and the cores the
 * process may use. Each participant then runs its kernels with its share of the cores (the
 * cores divided by the participants that compute at once) instead of every participant
 * threading over all of them. NULL: the BLAS threads as it is configured. */
JAXMG_EXPORT void jaxmg_cpu_set_threads(void *set_local, int cpus);

/* ------------------------------------------------------------------------------------------
 * Configuration shared by all ops of this library. */

/* Test-only fault injection: the participant at mesh position `rank` of the next matching
 * calls fails at `point`. point: 0 = off, 1 = before the rendezvous (never arrives),
 * 2 = allocation failure, 3 = solver (library) failure. `count` calls are affected
 * (-1 = all). Thread-safe. */
JAXMG_EXPORT void jaxmg_set_fault(int point, int rank, int count);

/* Number of rendezvous sessions alive (waiting, running, or kept as a tombstone after a
 * timeout); for leak tests. */
JAXMG_EXPORT int64_t jaxmg_live_sessions(void);

/* The FFI targets this library has kernels for, comma-separated in the order of the op
 * table (src/common/ops.h): "jaxmg_potrf,jaxmg_potrs,...". Target jaxmg_<stem> is served by
 * the exported handler jaxmg_ffi_<stem>_cpu (libjaxmg.so) or jaxmg_ffi_<stem>_cuda
 * (libjaxmg_cuda.so); register exactly these. The string belongs to the library and stays
 * valid until the calling thread calls this function again. */
JAXMG_EXPORT const char *jaxmg_ffi_targets(void);

/* Number of call instances this library has given (one per jaxmg custom call of every
 * executable XLA compiled with jaxmg's INSTANTIATE stage; docs/design.md, "Rendezvous");
 * 0 where the runtime offers no per-call state. For tests. */
JAXMG_EXPORT int64_t jaxmg_ffi_instances(void);

/* ------------------------------------------------------------------------------------------
 * CUDA backend (libjaxmg_cuda.so only). */

/* Number of cuSOLVERMg plans cached (one per device set in mesh order, N, tile, dtype, op
 * and number of right-hand sides); repeated calls of the same shape reuse theirs. */
JAXMG_EXPORT int64_t jaxmg_cuda_plan_count(void);

#ifdef __cplusplus
}
#endif
#endif /* JAXMG_JAXMG_H_ */
