/* The 1D block-cyclic layout planner: index maps, block moves, padding.
 *
 * Every property is checked on all small geometries (ndev 1..8, nloc 1..24, every tile
 * dividing nloc) and on random draws up to nloc 64. */
#include <stdlib.h>
#include <string.h>

#include "jaxmg_test.h"

/* Calls fn on every geometry of the sweep; stops at the first geometry with a failure. */
typedef int (*geometry_fn)(int64_t nloc, int64_t ndev, int64_t tile);

static void sweep(geometry_fn fn) {
  for (int64_t ndev = 1; ndev <= 8; ndev++)
    for (int64_t nloc = 1; nloc <= 24; nloc++)
      for (int64_t tile = 1; tile <= nloc; tile++) {
        if (nloc % tile) continue;
        jt_context("nloc %lld, ndev %lld, tile %lld", (long long)nloc, (long long)ndev,
                   (long long)tile);
        if (!fn(nloc, ndev, tile)) return;
      }
  uint64_t rng = 0x1a7e5eedull;
  for (int draw = 0; draw < 300; draw++) {
    int64_t ndev = jt_rand_int(&rng, 1, 8), nloc = jt_rand_int(&rng, 1, 64), tile;
    do tile = jt_rand_int(&rng, 1, nloc);
    while (nloc % tile);
    jt_context("random draw %d: nloc %lld, ndev %lld, tile %lld", draw, (long long)nloc,
               (long long)ndev, (long long)tile);
    if (!fn(nloc, ndev, tile)) return;
  }
  jt_context("%s", "");
}

void test_layout_init(void) {
  jaxmg_layout_t lay;
  JT_EQ(jaxmg_layout_init(NULL, 4, 2, 2), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 4, 0, 2), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 4, -1, 2), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 4, 2, 0), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 4, 2, -2), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 0, 2, 1), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, -4, 2, 2), JAXMG_EINVAL);
  JT_EQ(jaxmg_layout_init(&lay, 6, 2, 4), JAXMG_EINVAL);  /* tile does not divide nloc */
  JT_EQ(jaxmg_layout_init(&lay, 4, 2, 8), JAXMG_EINVAL);  /* tile larger than the shard */
  JT_EQ(jaxmg_layout_init(&lay, INT64_C(1) << 40, INT64_C(1) << 30, 1), JAXMG_EINVAL); /* N */
  JT_EQ(jaxmg_layout_init(&lay, INT64_C(1) << 40, INT64_C(1) << 20, 1), JAXMG_OK);
  JT_EQ(lay.n, INT64_C(1) << 60);
  JT_EQ(jaxmg_layout_init(&lay, 12, 3, 4), JAXMG_OK);
  JT_EQ(lay.n, 36);
  JT_EQ(lay.nloc, 12);
  JT_EQ(lay.ndev, 3);
  JT_EQ(lay.tile, 4);
  JT_EQ(jaxmg_layout_init(&lay, 1, 1, 1), JAXMG_OK);
  JT_EQ(lay.n, 1);
}

/* src and dst: the documented formula, inverse of each other, a bijection, owner agrees. */
static int check_maps(int64_t nloc, int64_t ndev, int64_t tile) {
  jaxmg_layout_t lay;
  if (!JT_EQ(jaxmg_layout_init(&lay, nloc, ndev, tile), JAXMG_OK)) return 0;
  const int64_t n = lay.n;
  unsigned char *hit = calloc((size_t)n, 1);
  int ok = JT_CHECK(hit != NULL), identity = 1;
  for (int64_t g = 0; ok && g < n; g++) {
    int64_t s = jaxmg_layout_src(&lay, g);
    int64_t t = g / tile, d = t % ndev, c = (t / ndev) * tile + g % tile, dev = -1, col = -1;
    ok &= JT_EQ(s, d * nloc + c);
    ok &= JT_GE(s, 0) && JT_LT(s, n);
    if (!ok) break;
    ok &= JT_EQ(hit[s], 0);
    hit[s] = 1;
    ok &= JT_EQ(jaxmg_layout_dst(&lay, s), g);
    ok &= JT_EQ(jaxmg_layout_src(&lay, jaxmg_layout_dst(&lay, g)), g);
    jaxmg_layout_owner(&lay, g, &dev, &col);
    ok &= JT_EQ(dev, d) && JT_EQ(col, c);
    ok &= JT_EQ(dev * nloc + col, s);
    identity &= s == g;
  }
  /* The owner accessor accepts NULL for either output. */
  int64_t dev = -1, col = -1;
  jaxmg_layout_owner(&lay, n - 1, &dev, NULL);
  jaxmg_layout_owner(&lay, n - 1, NULL, &col);
  ok &= JT_EQ(dev * nloc + col, jaxmg_layout_src(&lay, n - 1));
  ok &= JT_EQ(jaxmg_layout_is_identity(&lay), identity);
  free(hit);
  return ok;
}

void test_layout_maps(void) { sweep(check_maps); }

/* The block permutation is the element permutation at block granularity. */
static int check_blocks(int64_t nloc, int64_t ndev, int64_t tile) {
  jaxmg_layout_t lay;
  if (!JT_EQ(jaxmg_layout_init(&lay, nloc, ndev, tile), JAXMG_OK)) return 0;
  const int64_t K = lay.n / tile;
  int ok = 1;
  for (int64_t t = 0; ok && t < K; t++) {
    int64_t sb = jaxmg_layout_src_block(&lay, t);
    ok &= JT_GE(sb, 0) && JT_LT(sb, K);
    for (int64_t r = 0; ok && r < tile; r++)
      ok &= JT_EQ(sb * tile + r, jaxmg_layout_src(&lay, t * tile + r));
  }
  return ok;
}

void test_layout_blocks(void) { sweep(check_blocks); }

/* Values of column c, row r: two int64 per element so that esz = 16 is exercised too. */
static int64_t cell(int64_t c, int64_t r, int half) {
  return half ? -(c * 100003 + r) : c * 100003 + r;
}

/* moves + apply: forward realises new[g] = old[src(g)], inverse realises new[j] = old[dst(j)],
 * forward then inverse is the identity, the list fits its documented capacity, columns are
 * separated by a leading dimension larger than N whose gap stays untouched. */
static int check_moves_esz(int64_t nloc, int64_t ndev, int64_t tile, int halves) {
  jaxmg_layout_t lay;
  if (!JT_EQ(jaxmg_layout_init(&lay, nloc, ndev, tile), JAXMG_OK)) return 0;
  const int64_t n = lay.n, K = n / tile, ncols = 3, ld = n + 2;
  const size_t esz = (size_t)halves * sizeof(int64_t);
  /* Exactly the documented capacities: ASan sees any write past them. */
  int64_t *fwd = malloc(4 * (size_t)K * sizeof *fwd), *inv = malloc(4 * (size_t)K * sizeof *inv);
  int64_t *a = malloc((size_t)(ld * ncols * halves) * sizeof *a);
  void *stage = malloc((size_t)tile * (size_t)ncols * esz);
  int ok = JT_CHECK(fwd && inv && a && stage);
  if (!ok) goto done;
  for (int64_t c = 0; c < ncols; c++)
    for (int64_t r = 0; r < ld; r++)
      for (int h = 0; h < halves; h++) a[(c * ld + r) * halves + h] = r < n ? cell(c, r, h) : -7;

  int64_t nf = jaxmg_layout_moves(&lay, 0, fwd), ni = jaxmg_layout_moves(&lay, 1, inv);
  ok &= JT_GE(nf, 0) && JT_LE(2 * nf, 4 * K) && JT_LE(2 * nf, 3 * K);
  ok &= JT_GE(ni, 0) && JT_LE(2 * ni, 4 * K) && JT_LE(2 * ni, 3 * K);
  ok &= JT_EQ(nf, ni);
  ok &= JT_EQ(nf == 0, jaxmg_layout_is_identity(&lay));
  for (int64_t m = 0; ok && m < 2 * nf; m++) {
    ok &= JT_GE(fwd[m], -1) && JT_LT(fwd[m], K);
    ok &= JT_GE(inv[m], -1) && JT_LT(inv[m], K);
  }
  /* Every move list starts by saving to the staging block and ends the cycle from it. */
  if (ok && nf) ok &= JT_EQ(fwd[0], -1) && JT_EQ(fwd[2 * nf - 1], -1);
  if (!ok) goto done;

  jaxmg_layout_apply_moves_host(&lay, fwd, nf, a, ld, ncols, esz, stage);
  for (int64_t c = 0; ok && c < ncols; c++)
    for (int64_t r = 0; ok && r < ld; r++)
      for (int h = 0; ok && h < halves; h++) {
        int64_t want = r < n ? cell(c, jaxmg_layout_src(&lay, r), h) : -7;
        ok &= JT_EQ(a[(c * ld + r) * halves + h], want);
      }
  jaxmg_layout_apply_moves_host(&lay, inv, ni, a, ld, ncols, esz, stage);
  for (int64_t c = 0; ok && c < ncols; c++)
    for (int64_t r = 0; ok && r < ld; r++)
      for (int h = 0; ok && h < halves; h++)
        ok &= JT_EQ(a[(c * ld + r) * halves + h], r < n ? cell(c, r, h) : -7);
  /* The inverse alone realises new[j] = old[dst(j)]. */
  jaxmg_layout_apply_moves_host(&lay, inv, ni, a, ld, ncols, esz, stage);
  for (int64_t c = 0; ok && c < ncols; c++)
    for (int64_t r = 0; ok && r < n; r++)
      for (int h = 0; ok && h < halves; h++)
        ok &= JT_EQ(a[(c * ld + r) * halves + h], cell(c, jaxmg_layout_dst(&lay, r), h));
done:
  free(stage);
  free(a);
  free(inv);
  free(fwd);
  return ok;
}

static int check_moves(int64_t nloc, int64_t ndev, int64_t tile) {
  return check_moves_esz(nloc, ndev, tile, 1) && check_moves_esz(nloc, ndev, tile, 2);
}

void test_layout_moves(void) { sweep(check_moves); }

/* Applies a move list cut to column prefixes (ncols[m] columns of move m; a move of none is
 * skipped), as jaxmg__gpu_permute_lower does with pitched copies. With `poison`, a block's
 * content is destroyed right after a move read it (the staging block's too): any later read
 * of it before it was rewritten then shows up in the result. */
static void apply_cut(const jaxmg_layout_t *lay, const int64_t *moves, const int64_t *ncols,
                      int64_t nm, int64_t *a, int64_t ld, int64_t *stage, int poison) {
  const int64_t T = lay->tile;
  for (int64_t m = 0; m < nm; m++) {
    const int64_t to = moves[2 * m], from = moves[2 * m + 1];
    for (int64_t c = 0; c < ncols[m]; c++)
      for (int64_t r = 0; r < T; r++) {
        int64_t *dst = to < 0 ? &stage[c * T + r] : &a[c * ld + to * T + r];
        *dst = from < 0 ? stage[c * T + r] : a[c * ld + from * T + r];
      }
    for (int64_t c = 0; poison && c < lay->nloc; c++)
      for (int64_t r = 0; r < T; r++)
        *(from < 0 ? &stage[c * T + r] : &a[c * ld + from * T + r]) = -99;
  }
}

/* The lower-triangle move list of every participant: the same moves as the full forward list;
 * each count is exactly the number of local columns whose destination block lies on or below
 * the diagonal (a prefix), or for a move into staging the count of the move that reads it
 * back; applied in place (with and without poisoning what was read) it yields the fully
 * permuted value at every entry (row block I, local panel c) with I >= J = c*ndev + rank, and
 * it never copies more than the full list. */
static int check_moves_lower(int64_t nloc, int64_t ndev, int64_t tile) {
  jaxmg_layout_t lay;
  if (!JT_EQ(jaxmg_layout_init(&lay, nloc, ndev, tile), JAXMG_OK)) return 0;
  const int64_t n = lay.n, K = n / tile, ld = n + 2;
  /* Exactly the documented capacities: ASan sees any write past them. */
  int64_t *full = malloc(4 * (size_t)K * sizeof *full);
  int64_t *moves = malloc(4 * (size_t)K * sizeof *moves);
  int64_t *ncols = malloc(2 * (size_t)K * sizeof *ncols);
  int64_t *a = malloc((size_t)(ld * nloc) * sizeof *a);
  int64_t *stage = malloc((size_t)(tile * nloc) * sizeof *stage);
  int ok = JT_CHECK(full && moves && ncols && a && stage);
  const int64_t nf = ok ? jaxmg_layout_moves(&lay, 0, full) : 0;
  for (int64_t rank = 0; ok && rank < ndev; rank++) {
    const int64_t nm = jaxmg_layout_moves_lower(&lay, rank, moves, ncols);
    int64_t cut = 0;
    ok &= JT_EQ(nm, nf);
    for (int64_t m = 0; ok && m < 2 * nm; m++) ok &= JT_EQ(moves[m], full[m]);
    for (int64_t m = 0; ok && m < nm; m++) {
      const int64_t to = moves[2 * m];
      int64_t want = 0;
      if (to >= 0) {
        /* Needed columns, counted one by one; they must form a prefix. */
        for (int64_t c = 0; c < nloc; c++) want += to >= (c / tile) * ndev + rank;
        for (int64_t c = 0; ok && c < nloc; c++)
          ok &= JT_EQ(to >= (c / tile) * ndev + rank, c < want);
      } else {
        int64_t k = m + 1; /* the move that empties the staging block */
        while (k < nm && moves[2 * k + 1] >= 0) k++;
        ok &= JT_LT(k, nm);
        if (ok) want = ncols[k];
      }
      ok &= JT_EQ(ncols[m], want) && JT_LE(ncols[m], nloc);
      cut += ncols[m];
    }
    ok &= JT_LE(cut, nm * nloc);
    for (int poison = 0; ok && poison < 2; poison++) {
      for (int64_t c = 0; c < nloc; c++)
        for (int64_t r = 0; r < ld; r++) a[c * ld + r] = r < n ? cell(c, r, 0) : -7;
      for (int64_t i = 0; i < tile * nloc; i++) stage[i] = -5;
      apply_cut(&lay, moves, ncols, nm, a, ld, stage, poison);
      for (int64_t c = 0; ok && c < nloc; c++)
        for (int64_t r = 0; ok && r < ld; r++) {
          if (r >= n) {
            ok &= JT_EQ(a[c * ld + r], -7);
          } else if (r / tile >= (c / tile) * ndev + rank) {
            ok &= JT_EQ(a[c * ld + r], cell(c, jaxmg_layout_src(&lay, r), 0));
          }
        }
    }
    if (!ok) jt_context("nloc %lld, ndev %lld, tile %lld, rank %lld", (long long)nloc,
                        (long long)ndev, (long long)tile, (long long)rank);
  }
  free(stage);
  free(a);
  free(ncols);
  free(moves);
  free(full);
  return ok;
}

void test_layout_moves_lower(void) {
  sweep(check_moves_lower);
  /* The counts of a small case by hand: 2 devices, 2 tiles of 1 row each. Blocks 1 and 2
   * swap through staging: (stage <- 1), (1 <- 2), (2 <- stage). */
  jaxmg_layout_t lay;
  int64_t moves[16], ncols[8];
  JT_EQ(jaxmg_layout_init(&lay, 2, 2, 1), JAXMG_OK);
  JT_EQ(jaxmg_layout_moves_lower(&lay, 0, moves, ncols), 3);
  /* rank 0: panels J = 0, 2; block 2 needs both columns, block 1 only column 0. */
  JT_EQ(ncols[0], 2);
  JT_EQ(ncols[1], 1);
  JT_EQ(ncols[2], 2);
  JT_EQ(jaxmg_layout_moves_lower(&lay, 1, moves, ncols), 3);
  /* rank 1: panels J = 1, 3; blocks 1 and 2 need column 0 only. */
  JT_EQ(ncols[0], 1);
  JT_EQ(ncols[1], 1);
  JT_EQ(ncols[2], 1);
}

/* Identity layouts (one device, or one tile per device) need no move and write nothing
 * that matters; applying an empty list leaves the data alone. */
void test_layout_identity_moves(void) {
  static const int64_t cases[][3] = {{1, 1, 1}, {8, 1, 2}, {8, 1, 8}, {5, 4, 5}, {64, 8, 64},
                                     {3, 7, 3}, {12, 1, 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    jaxmg_layout_t lay;
    jt_context("nloc %lld, ndev %lld, tile %lld", (long long)cases[i][0], (long long)cases[i][1],
               (long long)cases[i][2]);
    if (!JT_EQ(jaxmg_layout_init(&lay, cases[i][0], cases[i][1], cases[i][2]), JAXMG_OK)) continue;
    const int64_t K = lay.n / lay.tile;
    int64_t *moves = malloc(4 * (size_t)K * sizeof *moves);
    if (!JT_CHECK(moves != NULL)) continue;
    JT_EQ(jaxmg_layout_is_identity(&lay), 1);
    JT_EQ(jaxmg_layout_moves(&lay, 0, moves), 0);
    JT_EQ(jaxmg_layout_moves(&lay, 1, moves), 0);
    for (int64_t g = 0; g < lay.n; g++) {
      if (!JT_EQ(jaxmg_layout_src(&lay, g), g) || !JT_EQ(jaxmg_layout_dst(&lay, g), g)) break;
    }
    free(moves);
  }
  jt_context("%s", "");
  /* The smallest non-identity layout: 2 devices with 2 tiles each. */
  jaxmg_layout_t lay;
  JT_EQ(jaxmg_layout_init(&lay, 2, 2, 1), JAXMG_OK);
  JT_EQ(jaxmg_layout_is_identity(&lay), 0);
  int64_t moves[16];
  JT_EQ(jaxmg_layout_moves(&lay, 0, moves), 3); /* blocks 1 and 2 swap through staging */
}

static int check_padding(int64_t nloc, int64_t ndev, int64_t tile) {
  const int64_t np = jaxmg_pad_nloc(nloc, tile), n = nloc * ndev;
  int ok = JT_GE(np, nloc) && JT_LT(np, nloc + tile) && JT_EQ(np % tile, 0);
  if (nloc % tile == 0) ok &= JT_EQ(np, nloc);
  int64_t prev = -1, real = 0;
  for (int64_t j = 0; ok && j < n; j++) {
    int64_t p = jaxmg_pad_index(j, nloc, np);
    ok &= JT_LT(prev, p); /* increasing, hence injective */
    ok &= JT_LT(p, ndev * np);
    ok &= JT_EQ(p / np, j / nloc) && JT_EQ(p % np, j % nloc); /* same device, same row */
    ok &= JT_EQ(jaxmg_unpad_index(p, nloc, np), j);
    prev = p;
  }
  for (int64_t p = 0; ok && p < ndev * np; p++) {
    int64_t j = jaxmg_unpad_index(p, nloc, np);
    if (p % np >= nloc) {
      ok &= JT_EQ(j, -1);
    } else {
      real++;
      ok &= JT_GE(j, 0) && JT_LT(j, n) && JT_EQ(jaxmg_pad_index(j, nloc, np), p);
    }
  }
  if (ok) ok &= JT_EQ(real, n);
  /* The padded shard is a valid layout. */
  jaxmg_layout_t lay;
  if (ok) ok &= JT_EQ(jaxmg_layout_init(&lay, np, ndev, tile), JAXMG_OK);
  return ok;
}

/* Padding is defined for any tile, dividing or not. */
void test_layout_padding(void) {
  JT_EQ(jaxmg_pad_nloc(5, 0), 5); /* no tile: unchanged */
  JT_EQ(jaxmg_pad_nloc(5, 2), 6);
  JT_EQ(jaxmg_pad_nloc(5, 8), 8);
  JT_EQ(jaxmg_pad_nloc(6, 3), 6);
  JT_EQ(jaxmg_pad_index(5, 5, 8), 8);
  JT_EQ(jaxmg_unpad_index(7, 5, 8), -1);
  for (int64_t ndev = 1; ndev <= 8; ndev++)
    for (int64_t nloc = 1; nloc <= 20; nloc++)
      for (int64_t tile = 1; tile <= nloc + 3; tile++) {
        jt_context("nloc %lld, ndev %lld, tile %lld", (long long)nloc, (long long)ndev,
                   (long long)tile);
        if (!check_padding(nloc, ndev, tile)) return;
      }
  uint64_t rng = 0x9add1e;
  for (int draw = 0; draw < 200; draw++) {
    int64_t ndev = jt_rand_int(&rng, 1, 8), nloc = jt_rand_int(&rng, 1, 64),
            tile = jt_rand_int(&rng, 1, 80);
    jt_context("random draw %d: nloc %lld, ndev %lld, tile %lld", draw, (long long)nloc,
               (long long)ndev, (long long)tile);
    if (!check_padding(nloc, ndev, tile)) return;
  }
  jt_context("%s", "");
}
