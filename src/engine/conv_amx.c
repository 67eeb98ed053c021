/* 3x3 "same" convolutions on Intel AMX tiles (see conv_amx.h).
 *
 * Layouts (bf16):
 *   input copy  Xp [Cp / 2][H + 2][W + 2][2]: channel pairs interleaved, a zero border, Cp = C
 *               rounded up to 32 (extra channels zero). The operand tile of 16 output pixels
 *               (y, x0 .. x0 + 15) at tap (ky, kx) for channels c0 .. c0 + 32 is 16 rows (the
 *               pairs) of 64 bytes at row (y + ky), column (x0 + kx): a strided load.
 *   weight taps Wt [9][Op][Cp]: W_t row-major, Op = O rounded up to 32 (extra rows zero).
 * A 32 x 32 block of the output (32 channels x 32 pixels) is the 2 x 2 grid of fp32 tiles
 * tmm0-3, accumulated over 9 taps x Cp / 32 channel chunks with tmm4-5 (weights) and tmm6-7
 * (pixels): amx_tile.h's tile configuration. Work items: (channel block, pixel block), channel
 * block outermost, so a thread's weights (9 x 32 x Cp) stay in L2 while its pixels pass. */
#include "engine/conv_amx.h"
#include "asam/util.h"
#include "engine/amx_tile.h"
#include "engine/backend.h"
#include "engine/engine_internal.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int asam_conv3x3_amx_fits(int64_t H, int64_t W, int64_t min_pixels) {
    return asam_amx_supported() && W % 16 == 0 && H * W >= min_pixels && H * W % 32 == 0;
}

/* Wt (9, Op, Cp) from w (O, C, 3, 3), fp32 or held bf16; adjoint: from w read as (C, O) with the
 * taps reversed. n_out / n_in: the output / input channels of the convolution computed. */
static void pack_taps(const asam_tensor *w, int adjoint, int64_t n_out, int64_t n_in, int64_t Op,
                      int64_t Cp, uint16_t *Wt) {
    int64_t wC = w->shape[1];
    memset(Wt, 0, (size_t)(9 * Op * Cp) * sizeof *Wt);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t c = 0; c < n_in; c++)
            for (int t = 0; t < 9; t++) {
                /* forward: w[o][c][t]; adjoint: w[c][o][8 - t] */
                int64_t src = adjoint ? (c * wC + o) * 9 + (8 - t) : (o * wC + c) * 9 + t;
                Wt[(t * Op + o) * Cp + c] = w->data ? asam_f32_to_bf16(w->data[src]) : w->bf16[src];
            }
}

#if AMX_BUILT
/* Xp from x (C, H, W). */
AMX_TARGET static void pack_input(const float *x, int64_t C, int64_t H, int64_t W, int64_t Cp,
                                  uint16_t *Xp) {
    int64_t Hp = H + 2, Wp = W + 2, HW = H * W;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < Cp / 2; p++) {
        uint16_t *plane = Xp + p * Hp * Wp * 2;
        memset(plane, 0, (size_t)(Wp * 2) * sizeof *plane);                     /* top border */
        memset(plane + (Hp - 1) * Wp * 2, 0, (size_t)(Wp * 2) * sizeof *plane); /* bottom */
        const float *c0 = 2 * p < C ? x + 2 * p * HW : NULL;
        const float *c1 = 2 * p + 1 < C ? x + (2 * p + 1) * HW : NULL;
        for (int64_t y = 0; y < H; y++) {
            uint16_t *row = plane + (y + 1) * Wp * 2;
            row[0] = row[1] = row[(Wp - 1) * 2] = row[(Wp - 1) * 2 + 1] = 0; /* left, right */
            for (int64_t x0 = 0; x0 < W; x0 += 16) {
                __m512 a = c0 ? _mm512_loadu_ps(c0 + y * W + x0) : _mm512_setzero_ps();
                __m512 b = c1 ? _mm512_loadu_ps(c1 + y * W + x0) : _mm512_setzero_ps();
                _mm512_storeu_si512(
                    row + (x0 + 1) * 2,
                    amx_interleave((__m256i)_mm512_cvtneps_pbh(a), (__m256i)_mm512_cvtneps_pbh(b)));
            }
        }
    }
}

/* One 32 x 32 output block: channels o0 .. o0 + 32, pixels p0 .. p0 + 32 (two runs of 16 on
 * rows of the image). */
AMX_TARGET static void out_block(const uint16_t *Xp, const uint16_t *Wt, int64_t H, int64_t W,
                                 int64_t Op, int64_t Cp, int64_t n_out, int64_t o0, int64_t p0,
                                 int accumulate, float *out) {
    int64_t Wp = W + 2, HW = H * W, plane = (H + 2) * Wp * 2; /* values from pair to pair */
    int64_t ya = p0 / W, xa = p0 % W, yb = (p0 + 16) / W, xb = (p0 + 16) % W;
    int full = o0 + 32 <= n_out;
    float *o = out + o0 * HW + p0, tmp[32 * 32];
    if (accumulate && full)
        amx_acc_load(o, HW);
    else
        amx_acc_zero();
    for (int t = 0; t < 9; t++) {
        int ky = t / 3, kx = t % 3;
        const uint16_t *wt = Wt + (t * Op + o0) * Cp;
        const uint16_t *xa_t = Xp + ((ya + ky) * Wp + xa + kx) * 2;
        const uint16_t *xb_t = Xp + ((yb + ky) * Wp + xb + kx) * 2;
        for (int64_t c = 0; c < Cp; c += 32)
            amx_step(wt + c, wt + 16 * Cp + c, Cp * 2, xa_t + c / 2 * plane, xb_t + c / 2 * plane,
                     plane * 2);
    }
    if (full) {
        amx_acc_store(o, HW);
        return;
    }
    amx_acc_store(tmp, 32);
    for (int64_t r = 0; r < n_out - o0; r++)
        for (int64_t j = 0; j < 32; j++)
            o[r * HW + j] = tmp[r * 32 + j] + (accumulate ? o[r * HW + j] : 0.0f);
}
#endif

int asam_conv3x3_amx(asam_ctx *ctx, const float *x, int64_t H, int64_t W, asam_tensor *w,
                     int adjoint, int accumulate, float *out) {
#if AMX_BUILT
    int64_t n_out = adjoint ? w->shape[1] : w->shape[0], n_in = adjoint ? w->shape[0] : w->shape[1];
    int64_t Op = asam_amx_round_up(n_out, 32), Cp = asam_amx_round_up(n_in, 32), HW = H * W;
    size_t taps_bytes = (size_t)(9 * Op * Cp) * sizeof(uint16_t);
    asam_weight_held(w); /* a frozen weight is held in bf16 from its first use on, as for GEMMs */
    /* a held weight's taps are made once and kept with it; a fp32 weight's (it may change
     * between calls) per call, in the arena with the input copy */
    int keep = w->bf16 != NULL && !w->data;
    asam_mark mark = asam_ctx_mark(ctx);
    uint16_t *Wt = keep ? w->conv_taps[adjoint] : NULL;
    if (!Wt) {
        uint16_t *t =
            keep ? aligned_alloc(64, (taps_bytes + 63) / 64 * 64) : asam_ctx_alloc(ctx, taps_bytes);
        if (!t) return -1;
        pack_taps(w, adjoint, n_out, n_in, Op, Cp, t);
        Wt = t;
        if (keep) {
#pragma omp critical(asam_weight_hold)
            {
                if (!w->conv_taps[adjoint])
                    asam_param_set_conv_taps(w, adjoint, t);
                else
                    Wt = w->conv_taps[adjoint]; /* another thread's, the same values */
            }
            if (Wt != t) free(t);
        }
    }
    uint16_t *Xp = asam_ctx_alloc(ctx, (size_t)(Cp * (H + 2) * (W + 2)) * sizeof *Xp);
    if (!Xp) {
        asam_ctx_release(ctx, mark);
        return -1;
    }
    pack_input(x, n_in, H, W, Cp, Xp);
    int64_t nob = Op / 32, npb = HW / 32;
#pragma omp parallel
    {
        asam_amx_begin();
#pragma omp for schedule(static)
        for (int64_t it = 0; it < nob * npb; it++)
            out_block(Xp, Wt, H, W, Op, Cp, n_out, it / npb * 32, it % npb * 32, accumulate, out);
        asam_amx_end();
    }
    asam_ctx_release(ctx, mark);
    return 0;
#else
    (void)ctx, (void)x, (void)H, (void)W, (void)w, (void)adjoint, (void)accumulate, (void)out;
    return -1;
#endif
}
