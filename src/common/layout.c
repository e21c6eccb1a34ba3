/* The 1D block-cyclic layout planner: index maps, padding, and in-place block moves. */
#include <string.h>

#include "common/common.h"

jaxmg_status_t jaxmg_layout_init(jaxmg_layout_t *lay, int64_t nloc, int64_t ndev, int64_t tile) {
  if (!lay || ndev < 1 || tile < 1 || nloc < 1 || nloc % tile != 0) return JAXMG_EINVAL;
  if (nloc > INT64_MAX / ndev) return JAXMG_EINVAL; /* N would overflow */
  lay->n = nloc * ndev;
  lay->nloc = nloc;
  lay->ndev = ndev;
  lay->tile = tile;
  return JAXMG_OK;
}

int64_t jaxmg_layout_src(const jaxmg_layout_t *lay, int64_t g) {
  int64_t T = lay->tile, t = g / T;
  int64_t d = t % lay->ndev, c = (t / lay->ndev) * T + g % T;
  return d * lay->nloc + c;
}

int64_t jaxmg_layout_dst(const jaxmg_layout_t *lay, int64_t j) {
  int64_t T = lay->tile, d = j / lay->nloc, c = j % lay->nloc;
  return ((c / T) * lay->ndev + d) * T + c % T;
}

int64_t jaxmg_layout_src_block(const jaxmg_layout_t *lay, int64_t t) {
  return (t % lay->ndev) * (lay->nloc / lay->tile) + t / lay->ndev;
}

static int64_t dst_block(const jaxmg_layout_t *lay, int64_t b) {
  int64_t nb = lay->nloc / lay->tile;
  return (b % nb) * lay->ndev + b / nb;
}

int jaxmg_layout_is_identity(const jaxmg_layout_t *lay) {
  return lay->ndev == 1 || lay->nloc == lay->tile;
}

void jaxmg_layout_owner(const jaxmg_layout_t *lay, int64_t g, int64_t *dev, int64_t *local_col) {
  int64_t T = lay->tile, t = g / T;
  if (dev) *dev = t % lay->ndev;
  if (local_col) *local_col = (t / lay->ndev) * T + g % T;
}

int64_t jaxmg_pad_nloc(int64_t nloc, int64_t tile) {
  return tile < 1 ? nloc : ((nloc + tile - 1) / tile) * tile;
}

int64_t jaxmg_pad_index(int64_t j, int64_t nloc, int64_t nloc_pad) {
  return (j / nloc) * nloc_pad + j % nloc;
}

int64_t jaxmg_unpad_index(int64_t p, int64_t nloc, int64_t nloc_pad) {
  int64_t d = p / nloc_pad, r = p % nloc_pad;
  return r < nloc ? d * nloc + r : -1;
}

/* Cycle decomposition of the block permutation: for each cycle t0 -> s(t0) -> ..., save
 * block t0 to staging, pull each block from its source along the cycle, and finish from
 * staging. Visited marks are kept in the upper half of `moves` until it is overwritten;
 * the list never needs more than K + (number of cycles) <= 2K moves. */
int64_t jaxmg_layout_moves(const jaxmg_layout_t *lay, int inverse, int64_t *moves) {
  int64_t K = lay->n / lay->tile, nm = 0;
  if (jaxmg_layout_is_identity(lay)) return 0;
  /* A cycle of length L >= 2 takes L + 1 moves, so at most 3K/2 pairs (3K values) are
   * written and the last K values of `moves` are free for the visited flags. */
  int64_t *seen = moves + 3 * K;
  memset(seen, 0, (size_t)K * sizeof *seen);
  for (int64_t t0 = 0; t0 < K; t0++) {
    if (seen[t0]) continue;
    int64_t s0 = inverse ? dst_block(lay, t0) : jaxmg_layout_src_block(lay, t0);
    seen[t0] = 1;
    if (s0 == t0) continue;
    moves[2 * nm] = -1, moves[2 * nm + 1] = t0, nm++;
    int64_t t = t0;
    for (;;) {
      int64_t s = inverse ? dst_block(lay, t) : jaxmg_layout_src_block(lay, t);
      if (s == t0) break;
      moves[2 * nm] = t, moves[2 * nm + 1] = s, nm++;
      seen[s] = 1;
      t = s;
    }
    moves[2 * nm] = t, moves[2 * nm + 1] = -1, nm++;
  }
  return nm;
}

/* Local columns of device `rank` whose row block `blk` (solver order) a lower-triangle solver
 * reads. Local column panel c (tile columns [c*T, (c+1)*T)) is solver block column
 * J = c*ndev + rank; row block I of it lies on or below the diagonal iff I >= J, i.e. for
 * c <= (I - rank) / ndev. Those panels are a prefix of the local columns. */
static int64_t lower_cols(const jaxmg_layout_t *lay, int64_t rank, int64_t blk) {
  if (blk < rank) return 0;
  const int64_t cols = ((blk - rank) / lay->ndev + 1) * lay->tile;
  return cols < lay->nloc ? cols : lay->nloc;
}

/* The forward list of jaxmg_layout_moves, each move cut to the column prefix that is read
 * later: a move into row block `to` copies lower_cols(to) columns, a move into the staging
 * block the count of the move that empties it (the cycle's last move, found by walking the
 * list backwards).
 *
 * In place this stays correct because, within a cycle t0 -> s(t0) -> ..., every block is the
 * source of exactly one move and the destination of exactly one, and its read comes first:
 * "stage <- t0" precedes "t0 <- s(t0)", and "t <- s" precedes "s <- s(s)". Cutting moves to
 * fewer columns only writes less, so no read ever sees a block already overwritten; the
 * staging block is read for exactly the columns that were written into it in the same cycle.
 * Columns a move skips keep whatever the block held (rows of the strict upper triangle of M
 * in solver order: stale entries of A), which no lower-triangle reader looks at. */
int64_t jaxmg_layout_moves_lower(const jaxmg_layout_t *lay, int64_t rank, int64_t *moves,
                                 int64_t *ncols) {
  const int64_t nm = jaxmg_layout_moves(lay, 0, moves);
  int64_t staged = 0; /* columns the current cycle's last move reads from staging */
  for (int64_t m = nm - 1; m >= 0; m--) {
    const int64_t to = moves[2 * m], from = moves[2 * m + 1];
    if (to < 0) {
      ncols[m] = staged;
    } else {
      ncols[m] = lower_cols(lay, rank, to);
      if (from < 0) staged = ncols[m];
    }
  }
  return nm;
}

void jaxmg_layout_apply_moves_host(const jaxmg_layout_t *lay, const int64_t *moves,
                                   int64_t nmoves, void *a, int64_t ld, int64_t ncols, size_t esz,
                                   void *stage) {
  size_t bytes = (size_t)lay->tile * esz;
  char *base = a, *st = stage;
  for (int64_t m = 0; m < nmoves; m++) {
    int64_t to = moves[2 * m], from = moves[2 * m + 1];
    for (int64_t c = 0; c < ncols; c++) {
      char *col = base + (size_t)c * (size_t)ld * esz;
      char *dst = to < 0 ? st + (size_t)c * bytes : col + (size_t)to * bytes;
      const char *src = from < 0 ? st + (size_t)c * bytes : col + (size_t)from * bytes;
      memcpy(dst, src, bytes);
    }
  }
}
