/* A linear layer's forward product on AMX tiles with the weight packed ahead (see linear_amx.h).
 *
 * Why not the general tile GEMM (gemm_amx.c) or oneDNN: at the SD UNet's and SAM's linear
 * shapes both repack or reorder the weight on every call and write C, then read it back for
 * the bias. Here the weight's panels are made once, the bias rows start the accumulators (a
 * tile load with row stride 0 repeats the 16 bias values down the tile) and each 32 x 32 block
 * of C is stored once, straight from the tiles. Measured on a 2-core Xeon with AMX (M = 4096,
 * K = 320, N = 320): 0.44 ms, Debian's oneDNN 2.6 0.93 ms, gemm_amx.c 1.22 ms.
 *
 * Work items: a 32-row block of A against a column block of panel pairs whose packed weight
 * (about 1 MiB) stays in L2 while the row blocks pass; the item rounds its 32 rows of A to
 * bf16 into the thread's buffer (32 x Kp, in L1 / L2) and runs each pair of panels over the
 * whole K, the 2 x 2 accumulator tiles never leaving the tile registers. */
#include "engine/linear_amx.h"
#include "engine/amx_tile.h"
#include "engine/exp_avx512.h"
#include "engine/vmath.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The packed weight bytes one column block keeps in L2 (of 2 MiB per core on AMX CPUs). */
#define LINEAR_B_BLOCK_BYTES (1 << 20)

/* Below this many multiply-adds the product runs on the calling thread alone. */
/* Chunks ahead whose weight tiles are prefetched into L1: the tile loads then wait on L1, not
 * on L2 (the panels stream from L2 once per row block). +8-10 % at the SD UNet shapes. */
#define LINEAR_PREFETCH 2

#define LINEAR_PARALLEL_MACS (INT64_C(1) << 22)

int64_t asam_linear_amx_packed_numel(int64_t N, int64_t K) {
    return asam_amx_round_up(N > 0 ? N : 1, 32) * asam_amx_round_up(K > 0 ? K : 1, 32);
}

void asam_linear_amx_pack(int64_t N, int64_t K, const float *W, const uint16_t *W16, int64_t ldw,
                          uint16_t *dst) {
    int64_t Kp = asam_amx_round_up(K > 0 ? K : 1, 32), np16 = asam_amx_round_up(N, 32) / 16;
    /* op(B) = W^T: W stored N x K (tb); one panel of Kp / 32 tiles per 16 outputs */
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && N * K >= (1 << 16))
    for (int64_t j = 0; j < np16; j++)
        asam_amx_pack_b(1, K, N, W, W16, ldw, j * 16, Kp, dst + j * 16 * Kp);
}

/* The calling thread's rows of A in bf16 (32 x Kp), grown as needed and kept for later calls. */
static _Thread_local uint16_t *tl_rows;
static _Thread_local size_t tl_cap;
/* The calling thread's copy of all of A in bf16 (mb x 32 x Kp) for products of several column
 * blocks, grown as needed and kept. */
static _Thread_local uint16_t *tl_all;
static _Thread_local size_t tl_all_cap;

#if AMX_BUILT
/* Rows m0 .. m0 + 32 of A rounded to bf16 into dst (32 x Kp), past M and K zero. */
AMX_TARGET static void round_rows(const float *A, int64_t lda, int64_t M, int64_t K, int64_t Kp,
                                  int64_t m0, uint16_t *dst) {
    for (int64_t r = 0; r < 32; r++) {
        uint16_t *d = dst + r * Kp;
        if (m0 + r >= M) {
            memset(d, 0, (size_t)Kp * sizeof *d);
            continue;
        }
        const float *a = A + (m0 + r) * lda;
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) /* whole vectors: no lane masks to form */
            _mm512_storeu_si512(d + k, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + k + 16),
                                                                    _mm512_loadu_ps(a + k)));
        for (; k < Kp; k += 32) {
            __m512 lo = _mm512_maskz_loadu_ps(asam_lanes16(K - k), a + k);
            __m512 hi = _mm512_maskz_loadu_ps(asam_lanes16(K - k - 16), a + k + 16);
            _mm512_storeu_si512(d + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

/* The accumulator tiles <- one 32 x 32 block: the rounded rows Ab times the panel pair Wb (two
 * panels of nch tiles), plus b (32 values) or nothing. */
AMX_TARGET static void block_sum(const uint16_t *Ab, const uint16_t *Wb, int64_t nch,
                                 const float *b) {
    int64_t Kp = nch * 32;
    const uint16_t *w1 = Wb + nch * 512;
    __asm__ volatile("" ::: "memory");
    if (b) { /* row stride 0: every row of the tile is the 16 bias values */
        _tile_loadd(0, b, 0);
        _tile_loadd(1, b + 16, 0);
        _tile_loadd(2, b, 0);
        _tile_loadd(3, b + 16, 0);
    } else {
        amx_acc_zero();
    }
    for (int64_t c = 0; c < nch; c++) {
        /* past the panel's end this reaches the next one's tiles (a prefetch never faults) */
        const char *pf0 = (const char *)(Wb + (c + LINEAR_PREFETCH) * 512);
        const char *pf1 = (const char *)(w1 + (c + LINEAR_PREFETCH) * 512);
        for (int l = 0; l < 1024; l += 64) {
            _mm_prefetch(pf0 + l, _MM_HINT_T0);
            _mm_prefetch(pf1 + l, _MM_HINT_T0);
        }
        amx_step(Ab + c * 32, Ab + 16 * Kp + c * 32, Kp * 2, Wb + c * 512, w1 + c * 512, 64);
    }
}

/* One 32 x 32 block of C: rows m0 .., columns n0 .. */
AMX_TARGET static void block(const uint16_t *Ab, const uint16_t *Wb, int64_t nch, const float *bias,
                             int64_t M, int64_t N, int64_t m0, int64_t n0, float *C, int64_t ldc,
                             const float *R, int64_t ldr) {
    int64_t nn = N - n0 < 32 ? N - n0 : 32, mm = M - m0 < 32 ? M - m0 : 32;
    float padded[32];
    const float *b = bias ? bias + n0 : NULL;
    if (b && nn < 32) { /* the last, partial pair of panels: bias past N read as 0 */
        memset(padded, 0, sizeof padded);
        memcpy(padded, b, (size_t)nn * sizeof *b);
        b = padded;
    }
    block_sum(Ab, Wb, nch, b);
    float *out = C + m0 * ldc + n0;
    if (mm == 32 && nn == 32 && !R) {
        amx_acc_store(out, ldc);
        return;
    }
    float t[32 * 32];
    amx_acc_store(t, 32);
    if (R) { /* (product + bias) + residual, the order of a linear op followed by an add */
        const float *res = R + m0 * ldr + n0;
        for (int64_t r = 0; r < mm; r++)
            for (int64_t j = 0; j < nn; j += 16) {
                __mmask16 live = asam_lanes16(nn - j);
                __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(live, t + r * 32 + j),
                                         _mm512_maskz_loadu_ps(live, res + r * ldr + j));
                _mm512_mask_storeu_ps(out + r * ldc + j, live, v);
            }
        return;
    }
    for (int64_t r = 0; r < mm; r++) memcpy(out + r * ldc, t + r * 32, (size_t)nn * sizeof *t);
}
#endif

/* y = value * gelu(gate) for mm rows of 32 (value and gate blocks 32 x 32). Compiled without
 * the tile target, as op_activation.c's GEGLU is: the same values, bit for bit. */
VMATH_WIDE __attribute__((noinline)) static void geglu_rows(const float *v, const float *g,
                                                            int64_t mm, float *y, int64_t ldy) {
    for (int64_t r = 0; r < mm; r++)
        for (int64_t j = 0; j < 32; j++) y[r * ldy + j] = v[r * 32 + j] * gelu_vec(g[r * 32 + j]);
}

#if AMX_BUILT
/* Rows m0 .. of Y for the value panel pair p: its gate pair is F / 32 pairs on. */
AMX_TARGET static void geglu_block(const uint16_t *Ab, const uint16_t *Wp, int64_t nch, int64_t F,
                                   const float *bias, int64_t M, int64_t m0, int64_t p, float *Y,
                                   int64_t ldy) {
    float v[32 * 32], g[32 * 32];
    int64_t Kp = nch * 32, gp = p + F / 32;
    block_sum(Ab, Wp + p * 32 * Kp, nch, bias ? bias + p * 32 : NULL);
    amx_acc_store(v, 32);
    block_sum(Ab, Wp + gp * 32 * Kp, nch, bias ? bias + gp * 32 : NULL);
    amx_acc_store(g, 32);
    geglu_rows(v, g, M - m0 < 32 ? M - m0 : 32, Y + m0 * ldy + p * 32, ldy);
}
#endif

/* The product's schedule: column blocks of `per` panel pairs (their packed weight kept in L2)
 * against every 32-row block of A, shared out among the threads; A is rounded to bf16 once,
 * per row block for all of a column block's pairs when there is one column block, else all of
 * it before the blocks run. The pairs run across the targets in order (one product per
 * weight, all of the same A); geglu: one target, Y (M, F) from its value pairs and their gate
 * pairs (npair = F / 32). */
static int linear_run(int64_t M, int64_t K, const float *A, int64_t lda,
                      const asam_linear_target *tg, int ntg, int geglu) {
#if AMX_BUILT
    int64_t Kp = asam_amx_round_up(K > 0 ? K : 1, 32), nch = Kp / 32, mb = (M + 31) / 32;
    int64_t first[5] = {0}, npair = 0, N = 0; /* first[t]: the target's first pair */
    for (int t = 0; t < ntg; t++) {
        first[t] = npair;
        npair += geglu ? tg[t].N / 64 : (tg[t].N + 31) / 32;
        N += tg[t].N;
    }
    first[ntg] = npair;
    int64_t per = LINEAR_B_BLOCK_BYTES / (Kp * 2 * 32 * (geglu ? 2 : 1)), nblk;
    if (per < 1) per = 1;
    if (per > npair) per = npair;
    nblk = (npair + per - 1) / per;
    per = (npair + nblk - 1) / nblk; /* column blocks of equal width */
    int par = !omp_in_parallel() && M * N * K >= LINEAR_PARALLEL_MACS;
    /* With several column blocks every row block of A would be read and rounded once for each:
     * all of A is rounded once first, into the calling thread's buffer, which the team reads. */
    uint16_t *Aall = NULL;
    if (nblk > 1) {
        size_t need = (size_t)(mb * 32 * Kp) * sizeof(uint16_t);
        if (need > tl_all_cap) {
            free(tl_all);
            tl_all = aligned_alloc(64, (need + 63) / 64 * 64);
            tl_all_cap = tl_all ? need : 0;
        }
        Aall = tl_all; /* NULL (out of memory): rounded per item as below */
    }
    int failed = 0;
#pragma omp parallel if (par) reduction(| : failed)
    {
        if (Aall) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < mb; i++)
                round_rows(A, lda, M, K, Kp, i * 32, Aall + i * 32 * Kp);
        }
        size_t need = (size_t)(32 * Kp) * sizeof(uint16_t);
        if (need > tl_cap) {
            free(tl_rows);
            tl_rows = aligned_alloc(64, need);
            tl_cap = tl_rows ? need : 0;
        }
        failed = tl_rows == NULL;
        /* every thread takes part in the loop's schedule; one without its buffer skips items */
        uint16_t *Ab = tl_rows;
        if (Ab) asam_amx_begin();
#pragma omp for collapse(2) schedule(static)
        for (int64_t jb = 0; jb < nblk; jb++)
            for (int64_t i = 0; i < mb; i++) {
                if (!Ab) continue;
                const uint16_t *Ai = Aall ? Aall + i * 32 * Kp : Ab;
                if (!Aall) round_rows(A, lda, M, K, Kp, i * 32, Ab);
                int64_t p1 = (jb + 1) * per < npair ? (jb + 1) * per : npair;
                int t = 0;
                for (int64_t p = jb * per; p < p1; p++) {
                    while (p >= first[t + 1]) t++;
                    const asam_linear_target *g = tg + t;
                    int64_t lp = p - first[t]; /* the pair within its target */
                    if (geglu)
                        geglu_block(Ai, g->Wp, nch, g->N / 2, g->bias, M, i * 32, lp, g->C, g->ldc);
                    else
                        block(Ai, g->Wp + lp * 32 * Kp, nch, g->bias, M, g->N, i * 32, lp * 32,
                              g->C, g->ldc, g->R, g->ldr);
                }
            }
        if (Ab) asam_amx_end();
    }
    return failed ? -1 : 0;
#else
    (void)M, (void)K, (void)A, (void)lda, (void)tg, (void)ntg, (void)geglu;
    return -1;
#endif
}

int asam_linear_amx(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const uint16_t *Wp, const float *bias, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    asam_linear_target t = {Wp, bias, C, N, ldc, NULL, 0};
    return linear_run(M, K, A, lda, &t, 1, 0);
}

int asam_linear_amx_add(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const uint16_t *Wp, const float *bias, const float *R, int64_t ldr,
                        float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    asam_linear_target t = {Wp, bias, C, N, ldc, R, ldr};
    return linear_run(M, K, A, lda, &t, 1, 0);
}

int asam_linear_amx_many(int64_t M, int64_t K, const float *A, int64_t lda,
                         const asam_linear_target *t, int n) {
    if (n < 1 || n > 4) return -1;
    for (int i = 0; i < n; i++)
        if (t[i].N <= 0) return -1;
    if (M <= 0) return 0;
    return linear_run(M, K, A, lda, t, n, 0);
}

int asam_linear_amx_geglu(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda,
                          const uint16_t *Wp, const float *bias, float *Y, int64_t ldy) {
    if (F % 32) return -1;
    if (M <= 0 || F <= 0) return 0;
    asam_linear_target t = {Wp, bias, Y, 2 * F, ldy, NULL, 0};
    return linear_run(M, K, A, lda, &t, 1, 1);
}
