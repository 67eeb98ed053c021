/* 3x3 "same" convolutions on Intel AMX tiles (see conv_amx.h).
 *
 * The product is laid out pixels by channels: out^T (pixels, O) = sum over the taps t of
 * x_t^T (pixels, C) W_t^T (C, O), the pixels the tiles' rows. Layouts (bf16):
 *   input copy  Xn [H + 2][W + 2][Cp]: pixels with their channels together (Cp = C rounded up
 *               to 32, extra channels zero), a zero border. The operand tile of 16 output
 *               pixels (y, x0 .. x0 + 15) at tap (ky, kx) for channels c0 .. c0 + 32 is 16 rows
 *               of 64 bytes, Cp values apart, from pixel (y + ky, x0 + kx): every row one whole
 *               cache line, the tap's shift a shift by rows (the channels-first copy this
 *               replaced shifted the rows' bytes instead: two lines a row, 16 planes apart, and
 *               its tile loads, not the products, set the pace: 1.7 TFLOP/s of the core's 3.2).
 *   weight tiles Wb [Op / 16][9][Cp / 32][16 x 32]: for 16 outputs, a tap and 32 channels, the
 *               pair-interleaved tile TDPBF16PS reads as its right operand (Op = O rounded up
 *               to 32, extra outputs zero): contiguous 1 KiB loads.
 * A 32 x 32 block of the output (32 pixels: two runs of 16 on image rows, x 32 channels) is the
 * 2 x 2 grid of fp32 tiles tmm0-3, accumulated over 9 taps x Cp / 32 channel chunks with
 * tmm4-5 (pixels) and tmm6-7 (weights): amx_tile.h's tile configuration. The block is
 * transposed on its way out (16 x 16 dword transposes) into out's channels-first rows. Work
 * items: (channel block, pixel block), channel block outermost, so a thread's weights (9 x 32 x
 * Cp) stay in L2 while its pixels pass. */
#include "engine/conv_amx.h"
#include "asam/util.h"
#include "engine/amx_tile.h"
#include "engine/backend.h"
#include "engine/engine_internal.h"
#include "engine/exp_avx512.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int asam_conv3x3_amx_fits(int64_t H, int64_t W, int64_t min_pixels) {
    return asam_amx_supported() && W % 16 == 0 && H * W >= min_pixels && H * W % 32 == 0;
}

#if AMX_BUILT
/* n values of src (fp32, or bf16 widened exactly) into dst as fp32. */
AMX_TARGET static void widen(const float *src, const uint16_t *src16, int64_t n, float *dst) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 live = asam_lanes16(n - i);
        __m512 v = src ? _mm512_maskz_loadu_ps(live, src + i)
                       : _mm512_castsi512_ps(_mm512_slli_epi32(
                             _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, src16 + i)), 16));
        _mm512_mask_storeu_ps(dst + i, live, v);
    }
}

/* One weight tile from the block's fp32 copy: value (output n, channel k) at blk[n sn + k sk],
 * rounded to bf16; each output's 32 channels gathered, then the 16 x 16 pairs transposed. */
AMX_TARGET static void gather_tile(const float *blk, int64_t sn, int64_t sk, uint16_t *tile) {
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_set1_epi32((int)sk),
                           _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
    __m512i v[16];
    for (int64_t n = 0; n < 16; n++) {
        __m512 lo = _mm512_i32gather_ps(idx, blk + n * sn, 4);
        __m512 hi = _mm512_i32gather_ps(idx, blk + n * sn + 16 * sk, 4);
        v[n] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* dword r: channels 2 r, 2 r + 1 */
    }
    amx_transpose16(v); /* v[r]: channel pair r across the 16 outputs */
    for (int64_t r = 0; r < 16; r++) _mm512_storeu_si512(tile + r * 32, v[r]);
}
#endif

/* Wb from w (O, C, 3, 3), fp32 or held bf16; adjoint: from w read as (C, O) with the taps
 * reversed. n_out / n_in: the output / input channels of the convolution computed. Tile row r,
 * value pair n: outputs o = 16 panel + n, channels c = 32 chunk + 2 r and 2 r + 1. Per 16
 * outputs and 32 channels, the weights' block (all 9 taps, 18 KiB) is first copied to fp32
 * (zero past the channels), then each tap's tile gathered from it: fp32 and held weights give
 * the same bits. */
static void pack_taps(const asam_tensor *w, int adjoint, int64_t n_out, int64_t n_in, int64_t Op,
                      int64_t Cp, uint16_t *Wb) {
#if AMX_BUILT
    int64_t wC = w->shape[1], nch = Cp / 32, npanel = Op / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t ob = 0; ob < npanel; ob++)
        for (int64_t c = 0; c < nch; c++) {
            int64_t o0 = ob * 16, c0 = c * 32;
            int64_t no = n_out - o0 < 16 ? n_out - o0 : 16, nc = n_in - c0 < 32 ? n_in - c0 : 32;
            float blk[16 * 32 * 9] __attribute__((aligned(64)));
            memset(blk, 0, sizeof blk);
            /* forward: blk[n][k][t] = w[o0 + n][c0 + k][t], runs of 9 nc per output;
             * adjoint: blk[k][n][t] = w[c0 + k][o0 + n][t], runs of 9 no per channel */
            int64_t runs = adjoint ? nc : no, len = 9 * (adjoint ? no : nc);
            for (int64_t i = 0; i < runs; i++) {
                int64_t at = adjoint ? ((c0 + i) * wC + o0) * 9 : ((o0 + i) * wC + c0) * 9;
                widen(w->data ? w->data + at : NULL, w->data ? NULL : w->bf16 + at, len,
                      blk + i * (adjoint ? 16 : 32) * 9);
            }
            for (int t = 0; t < 9; t++) {
                uint16_t *tile = Wb + ((ob * 9 + t) * nch + c) * 512;
                if (adjoint) /* tap t of the adjoint is the weight's 8 - t */
                    gather_tile(blk + 8 - t, 9, 16 * 9, tile);
                else
                    gather_tile(blk + t, 32 * 9, 9, tile);
            }
        }
#else
    (void)w, (void)adjoint, (void)n_out, (void)n_in, (void)Op, (void)Cp, (void)Wb;
#endif
}

#if AMX_BUILT
/* Xn from x (C, H, W): 16 channels x 16 pixels at a time, transposed, two such groups rounded
 * together into one 64-byte row per pixel. */
AMX_TARGET static void pack_input(const float *x, int64_t C, int64_t H, int64_t W, int64_t Cp,
                                  uint16_t *Xn) {
    int64_t Wp = W + 2, HW = H * W, nch = Cp / 32;
#pragma omp parallel for schedule(static)
    for (int64_t yp = 0; yp < H + 2; yp++) {
        uint16_t *row = Xn + yp * Wp * Cp;
        if (yp == 0 || yp == H + 1) { /* top and bottom border */
            memset(row, 0, (size_t)(Wp * Cp) * sizeof *row);
            continue;
        }
        memset(row, 0, (size_t)Cp * sizeof *row);                 /* left border */
        memset(row + (Wp - 1) * Cp, 0, (size_t)Cp * sizeof *row); /* right border */
        const float *src = x + (yp - 1) * W;
        for (int64_t x0 = 0; x0 < W; x0 += 16)
            for (int64_t c = 0; c < nch; c++) {
                __m512i lo[16], hi[16];
                for (int64_t i = 0; i < 16; i++) {
                    int64_t c0 = c * 32 + i, c1 = c0 + 16;
                    lo[i] =
                        c0 < C ? _mm512_loadu_si512(src + c0 * HW + x0) : _mm512_setzero_si512();
                    hi[i] =
                        c1 < C ? _mm512_loadu_si512(src + c1 * HW + x0) : _mm512_setzero_si512();
                }
                amx_transpose16(lo); /* lo[p]: channels c 32 .. + 15 of pixel x0 + p */
                amx_transpose16(hi);
                uint16_t *dst = row + (x0 + 1) * Cp + c * 32;
                for (int64_t p = 0; p < 16; p++)
                    _mm512_storeu_si512(dst + p * Cp,
                                        (__m512i)_mm512_cvtne2ps_pbh((__m512)hi[p], (__m512)lo[p]));
            }
    }
}

/* One 32 x 32 output block: channels o0 .. o0 + 32, pixels p0 .. p0 + 32 (two runs of 16 on
 * rows of the image). */
AMX_TARGET static void out_block(const uint16_t *Xn, const uint16_t *Wb, int64_t H, int64_t W,
                                 int64_t Cp, int64_t n_out, int64_t o0, int64_t p0, int accumulate,
                                 const float *bias, const float *res, float *out) {
    int64_t Wp = W + 2, HW = H * W, nch = Cp / 32, as = Cp * 2;
    int64_t pa[2] = {p0, p0 + 16};
    const uint16_t *run[2]; /* each run's first pixel in Xn at tap (0, 0) */
    for (int i = 0; i < 2; i++) run[i] = Xn + ((pa[i] / W) * Wp + pa[i] % W) * Cp;
    const uint16_t *w0 = Wb + (o0 / 16) * 9 * nch * 512, *w1 = w0 + 9 * nch * 512;
    amx_acc_zero();
    /* the three taps of a kernel row one after another for each chunk: their pixel tiles are
     * the same rows shifted by one pixel, 15 of 16 lines already in L1 from the tap before */
    for (int ky = 0; ky < 3; ky++) {
        const uint16_t *a0 = run[0] + ky * Wp * Cp, *a1 = run[1] + ky * Wp * Cp;
        for (int64_t c = 0; c < nch; c++)
            for (int kx = 0; kx < 3; kx++) {
                int64_t at = kx * Cp + c * 32, w = ((ky * 3 + kx) * nch + c) * 512;
                amx_step(a0 + at, a1 + at, as, w0 + w, w1 + w, 64);
            }
    }
    /* rows 16 i .. of tmp, columns 16 j ..: pixels of run i x channels o0 + 16 j .. + 15 */
    float tmp[32 * 32] __attribute__((aligned(64)));
    amx_acc_store(tmp, 32);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int64_t nc = n_out - (o0 + 16 * j);
            if (nc <= 0) continue;
            if (nc > 16) nc = 16;
            __m512i v[16];
            for (int r = 0; r < 16; r++) v[r] = _mm512_load_si512(tmp + (16 * i + r) * 32 + 16 * j);
            amx_transpose16(v); /* v[n]: channel o0 + 16 j + n over the run's 16 pixels */
            int64_t at = (o0 + 16 * j) * HW + pa[i];
            float *o = out + at;
            for (int64_t n = 0; n < nc; n++) {
                /* the order of the separate passes: (product + bias) + residual */
                __m512 y = (__m512)v[n];
                if (accumulate) y = _mm512_add_ps(y, _mm512_loadu_ps(o + n * HW));
                if (bias) y = _mm512_add_ps(y, _mm512_set1_ps(bias[o0 + 16 * j + n]));
                if (res) y = _mm512_add_ps(y, _mm512_loadu_ps(res + at + n * HW));
                _mm512_storeu_ps(o + n * HW, y);
            }
        }
}
#endif

/* Make held w's kept taps (forward or adjoint) unless another thread has: 0, or -1 when out
 * of memory. w's bf16 values (or fp32 ones) must be there. */
static int kept_taps(asam_tensor *w, int adjoint) {
    int64_t n_out = adjoint ? w->shape[1] : w->shape[0], n_in = adjoint ? w->shape[0] : w->shape[1];
    int64_t Op = asam_amx_round_up(n_out, 32), Cp = asam_amx_round_up(n_in, 32);
    size_t bytes = (size_t)(9 * Op * Cp) * sizeof(uint16_t);
    uint16_t *t = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!t) return -1;
    pack_taps(w, adjoint, n_out, n_in, Op, Cp, t);
    int mine = 0;
#pragma omp critical(asam_weight_hold)
    {
        if (!w->conv_taps[adjoint]) asam_param_set_conv_taps(w, adjoint, t), mine = 1;
    }
    if (!mine) free(t); /* another thread's, the same values */
    return 0;
}

void asam_conv_amx_unpack(const asam_tensor *w, uint16_t *dst) {
    int64_t O = w->shape[0], C = w->shape[1], nch = asam_amx_round_up(C, 32) / 32;
    const uint16_t *Wb = w->conv_taps[0];
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && O * C >= 4096)
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int t = 0; t < 9; t++) /* pack_taps' forward placement, read back */
                dst[(o * C + c) * 9 + t] = Wb[(((o / 16) * 9 + t) * nch + c / 32) * 512 +
                                              (c % 32) / 2 * 32 + (o % 16) * 2 + c % 2];
}

int asam_conv3x3_amx(asam_ctx *ctx, const float *x, int64_t H, int64_t W, asam_tensor *w,
                     int adjoint, int accumulate, const float *bias, const float *res, float *out) {
#if AMX_BUILT
    int64_t n_out = adjoint ? w->shape[1] : w->shape[0], n_in = adjoint ? w->shape[0] : w->shape[1];
    int64_t Op = asam_amx_round_up(n_out, 32), Cp = asam_amx_round_up(n_in, 32), HW = H * W;
    asam_mark mark = asam_ctx_mark(ctx);
    /* a held weight's taps are made once and kept with it; a fp32 weight's (it may change
     * between calls) per call, in the arena with the input copy */
    uint16_t *Wb = NULL;
    if (asam_param_bf16_held(w) && w->conv_taps[adjoint]) {
        Wb = w->conv_taps[adjoint];
    } else {
        /* a frozen weight is held in bf16 from its first use on, as for GEMMs (one that keeps
         * its forward taps alone has its bf16 values rebuilt here for the adjoint's) */
        asam_weight_held(w);
        if (asam_param_bf16_held(w)) {
            if (kept_taps(w, adjoint)) return -1;
            Wb = w->conv_taps[adjoint];
            /* the forward taps hold the weight's values in another order: a weight this kernel
             * takes keeps them alone, not also its bf16 copy (rebuilt from them, and kept, if
             * another path asks: asam_param_bf16) */
            if (!adjoint) asam_param_drop_bf16(w);
        } else {
            Wb = asam_ctx_alloc(ctx, (size_t)(9 * Op * Cp) * sizeof(uint16_t));
            if (!Wb) return -1;
            pack_taps(w, adjoint, n_out, n_in, Op, Cp, Wb);
        }
    }
    uint16_t *Xn = asam_ctx_alloc(ctx, (size_t)(Cp * (H + 2) * (W + 2)) * sizeof *Xn);
    if (!Xn) {
        asam_ctx_release(ctx, mark);
        return -1;
    }
    pack_input(x, n_in, H, W, Cp, Xn);
    int64_t nob = Op / 32, npb = HW / 32;
#pragma omp parallel
    {
        asam_amx_begin();
#pragma omp for schedule(static)
        for (int64_t it = 0; it < nob * npb; it++)
            out_block(Xn, Wb, H, W, Cp, n_out, it / npb * 32, it % npb * 32, accumulate, bias, res,
                      out);
        asam_amx_end();
    }
    asam_ctx_release(ctx, mark);
    return 0;
#else
    (void)ctx, (void)x, (void)H, (void)W, (void)w, (void)adjoint, (void)accumulate, (void)bias;
    (void)res, (void)out;
    return -1;
#endif
}
