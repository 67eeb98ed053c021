/* Convolutions as one weight-times-patches product on AMX tiles (see conv_patch_amx.h).
 *
 * Why: on rows narrower than 16 pixels (SD's 8x8 level) the direct tile kernel (conv_amx.c)
 * cannot lay 16-pixel runs on the image rows, nor can it do pointwise convolutions, and im2col
 * + oneDNN wrote the patches in fp32, read them back to round them and reached 0.6-1.1
 * TFLOP/s at the SD UNet's 16x16 and 8x8 shapes (2-core Xeon with AMX). Here
 * the patches go straight from the input into tile panels in bf16, and the weight is the left
 * operand as it lies: 1.2-1.5x oneDNN at those shapes, measured with the packing included.
 *
 * Panels: for each 16 pixels (of all images in order) and each 32 of K, a 1 KiB tile of 16
 * rows, row r holding (patch value k, k + 1) for k = 2r of the chunk, pixel by pixel. Tiles:
 * tmm0-3 the 2 x 2 accumulators (32 outputs x 32 pixels), tmm4-5 two 16-row slices of the
 * weight, tmm6-7 two 16-pixel panels (amx_tile.h's configuration). */
#include "engine/conv_patch_amx.h"
#include "engine/amx_tile.h"
#include "engine/backend.h"
#include "engine/engine_internal.h"
#include "engine/exp_avx512.h"
#include "engine/gemm_bf16.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

/* K chunks (of 32) per slice: a slice of a 32-row weight block (32 x 256 bf16, 16 KiB) stays in
 * L1 while the column block's panels pass; partial sums wait in out between slices. */
#define PATCH_KCH 8

/* The panel bytes plus partial sums one column block keeps in L2 (of 2 MiB per core). */
#define PATCH_L2_BYTES (1 << 20)

int asam_conv_patch_amx_fits(int64_t C, int64_t O, int64_t H, int64_t W, int64_t k) {
    int rows_fit = W % 16 == 0 || (W > 0 && 16 % W == 0);
    return asam_amx_supported() && (k == 1 || k == 3) && C % 32 == 0 && O % 32 == 0 && C > 0 &&
           O > 0 && (H * W) % 32 == 0 && H * W > 0 && rows_fit;
}

#if AMX_BUILT
typedef struct {
    const float *x;
    int64_t C, H, W, HW, k; /* k: 3 (padding 1) or 1 */
} patch_src;

/* Lanes lo .. hi - 1 of 16. */
static inline __mmask16 lanes(int64_t lo, int64_t hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* Where one tap's 16 values of a 16-pixel run lie in a channel plane: up to 16 masked loads
 * (one per image row the run covers), at offsets from the plane's start; none when the tap
 * falls in the padding for every pixel. */
typedef struct {
    int n;
    __mmask16 mask[16];
    int64_t off[16];
} tap_loads;

/* The loads of every tap for the run of 16 pixels from p0 (all in one image): computed once per
 * tile, not per patch row (the divisions would cost more than the loads). */
static void run_plan(const patch_src *s, int64_t p0, tap_loads *plan) {
    int64_t q = p0 % s->HW, W = s->W, oy = q / W, ox = q % W;
    for (int64_t t = 0; t < s->k * s->k; t++) {
        int64_t dy = s->k == 3 ? t / 3 - 1 : 0, dx = s->k == 3 ? t % 3 - 1 : 0;
        tap_loads *L = plan + t;
        L->n = 0;
        if (W >= 16) { /* one image row: pixels ox .. ox + 15 */
            int64_t iy = oy + dy;
            if (iy < 0 || iy >= s->H) continue;
            /* lane l reads column ox + l + dx, inside 0 .. W - 1 */
            L->mask[0] = lanes(-(ox + dx), W - (ox + dx));
            L->off[0] = iy * W + ox + dx;
            L->n = 1;
            continue;
        }
        for (int64_t h = 0; h < 16 / W; h++) { /* 16 / W whole rows from oy */
            int64_t iy = oy + h + dy;
            if (iy < 0 || iy >= s->H) continue;
            /* lanes h W .. h W + W - 1 read columns 0 .. W - 1 shifted by dx */
            L->mask[L->n] = lanes(h * W - dx, h * W + W - dx) & lanes(h * W, h * W + W);
            L->off[L->n++] = iy * W + dx - h * W;
        }
    }
}

/* One patch row: the input values under a tap (its plan) in a channel plane, 0 in the padding. */
AMX_TARGET static inline __m512 patch_run(const float *plane, const tap_loads *L) {
    __m512 v = _mm512_setzero_ps();
    for (int i = 0; i < L->n; i++) v = _mm512_mask_loadu_ps(v, L->mask[i], plane + L->off[i]);
    return v;
}

/* The panels of pixels j 16 .. j 16 + 15, chunk c: patch rows c 32 .. c 32 + 31, each a
 * (channel, tap) pair walked in order. */
AMX_TARGET static void pack_tile(const patch_src *s, int64_t K, int64_t j, int64_t c,
                                 uint16_t *Bp) {
    tap_loads plan[9];
    run_plan(s, j * 16, plan);
    int64_t taps = s->k * s->k, ch = c * 32 / taps, t = c * 32 % taps;
    const float *img = s->x + (j * 16 / s->HW) * s->C * s->HW;
    uint16_t *tile = Bp + j * 16 * K + c * 512;
    for (int64_t r = 0; r < 16; r++) {
        __m512 v[2];
        for (int e = 0; e < 2; e++) {
            v[e] = patch_run(img + ch * s->HW, plan + t);
            if (++t == taps) t = 0, ch++;
        }
        _mm512_storeu_si512(tile + r * 32, amx_interleave((__m256i)_mm512_cvtneps_pbh(v[0]),
                                                          (__m256i)_mm512_cvtneps_pbh(v[1])));
    }
}

/* Rows i0 .. i1 (blocks of 32 outputs) of out over all pixel pairs, K slice by K slice. */
AMX_TARGET static void rows_product(const uint16_t *W16, const uint16_t *Bp, int64_t O, int64_t K,
                                    int64_t HW, int64_t npair, int64_t i0, int64_t i1, float *out) {
    int64_t nch = K / 32, rows = (i1 - i0) * 32;
    /* column block: its panels' K slice and the rows' partial sums in L2 */
    int64_t per_pair = PATCH_KCH * 32 * 32 * 2 + rows * 32 * 4, nb = PATCH_L2_BYTES / per_pair;
    if (nb < 1) nb = 1;
    for (int64_t p0 = 0; p0 < npair; p0 += nb) {
        int64_t p1 = p0 + nb < npair ? p0 + nb : npair;
        for (int64_t k0 = 0; k0 < nch; k0 += PATCH_KCH) {
            int64_t k1 = k0 + PATCH_KCH < nch ? k0 + PATCH_KCH : nch;
            for (int64_t i = i0; i < i1; i++) {
                const uint16_t *a = W16 + i * 32 * K;
                for (int64_t p = p0; p < p1; p++) {
                    const uint16_t *b0 = Bp + p * 32 * K, *b1 = b0 + nch * 512;
                    int64_t n = p * 32 / HW, q = p * 32 % HW;
                    float *c = out + (n * O + i * 32) * HW + q;
                    if (k0 == 0)
                        amx_acc_zero();
                    else
                        amx_acc_load(c, HW);
                    for (int64_t k = k0; k < k1; k++)
                        amx_step(a + k * 32, a + 16 * K + k * 32, K * 2, b0 + k * 512, b1 + k * 512,
                                 64);
                    amx_acc_store(c, HW);
                }
            }
        }
    }
}
#endif

int asam_conv_patch_amx(asam_ctx *ctx, const float *x, int64_t N, int64_t C, int64_t H, int64_t W,
                        asam_tensor *w, float *out) {
#if AMX_BUILT
    int64_t O = w->shape[0], k = w->shape[2], K = C * k * k, HW = H * W, P = N * HW;
    asam_mark mark = asam_ctx_mark(ctx);
    /* the weight as it lies, (O, K) row-major in bf16: held, or rounded here (the same values) */
    const uint16_t *W16 = asam_weight_held(w);
    if (!W16) {
        uint16_t *t = asam_ctx_alloc(ctx, (size_t)(O * K) * sizeof *t);
        if (!t) return -1;
        asam_bf16_convert(w->data, O, K, K, t);
        W16 = t;
    }
    uint16_t *Bp = asam_ctx_alloc(ctx, (size_t)(P * K) * sizeof *Bp);
    if (!Bp) {
        asam_ctx_release(ctx, mark);
        return -1;
    }
    patch_src s = {x, C, H, W, HW, k};
    int64_t npanel = P / 16, nch = K / 32, mb = O / 32;
#pragma omp parallel
    {
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < npanel; j++)
            for (int64_t c = 0; c < nch; c++) pack_tile(&s, K, j, c, Bp);
        /* the implicit barrier: every panel is written before any product reads it */
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        asam_amx_begin();
        rows_product(W16, Bp, O, K, HW, P / 32, mb * t / nt, mb * (t + 1) / nt, out);
        asam_amx_end();
    }
    asam_ctx_release(ctx, mark);
    return 0;
#else
    (void)ctx, (void)x, (void)N, (void)C, (void)H, (void)W, (void)w, (void)out;
    return -1;
#endif
}
