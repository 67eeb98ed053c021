/* Convolutions as one weight-times-patches product on Intel AMX tiles under bf16 (op_conv.c):
 * 3x3 "same" (stride 1, padding 1) at resolutions below the direct kernel's (conv_amx.h), and
 * 1x1 (pointwise) at every resolution.
 *
 * out (O, P) = W (O, K) x patches (K, P) for all images at once (P = images x H x W pixels;
 * K = C x 9 or C), the weight read as the left operand straight from its bf16 row-major copy
 * (held, or rounded per call: the same values), the patches written straight from the input
 * into the pair-interleaved panels the tiles read (no fp32 im2col). Sums are fp32 over K slices
 * whose partial sums wait in out; every image's pixels share one pass over the weight. */
#ifndef ASAM_ENGINE_CONV_PATCH_AMX_H
#define ASAM_ENGINE_CONV_PATCH_AMX_H

#include "asam/engine.h"

#include <stdint.h>

/* 1 when asam_conv_patch_amx takes this convolution on this CPU: AMX, a 3x3 kernel (stride 1,
 * padding 1) or a 1x1 one (stride 1, padding 0), C and O multiples of 32, H W a multiple of 32
 * pixels, and rows W a multiple of 16 or a divisor of 16 (8x8, 4x4...). */
int asam_conv_patch_amx_fits(int64_t C, int64_t O, int64_t H, int64_t W, int64_t k);

/* out (N, O, H, W) = the convolution of x (N, C, H, W) with w (O, C, k, k), no bias. Scratch
 * comes from ctx's arena (released before returning). Returns 0, or -1 when out of memory
 * (out untouched). */
int asam_conv_patch_amx(asam_ctx *ctx, const float *x, int64_t N, int64_t C, int64_t H, int64_t W,
                        asam_tensor *w, float *out);

#endif
