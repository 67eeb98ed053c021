/* 3x3 "same" convolutions (stride 1, padding 1) on Intel AMX tiles under bf16 (op_conv.c).
 *
 * out (O, H, W) = sum over the 9 taps t of W_t (O, C) x_t (C, H W), x_t the input shifted by
 * the tap. x is copied once into bf16 with a zero border, each pixel's channels together, so
 * every tap's operand tile (16 pixels x 32 channels) is a plain strided load from that copy: no
 * im2col. The weights are repacked into the tiles TDPBF16PS reads as its right operand, per
 * tap; a weight held in bf16 keeps its repacked copy (asam_tensor.conv_taps) for later calls.
 * The results leave the tiles transposed, into out's channels-first rows. Operands are
 * rounded to bf16 (nearest even), sums are fp32: the product every bf16 kernel computes. */
#ifndef ASAM_ENGINE_CONV_AMX_H
#define ASAM_ENGINE_CONV_AMX_H

#include "asam/engine.h"

#include <stdint.h>

/* 1 when asam_conv3x3_amx takes this geometry on this CPU: AMX, rows of a multiple of 16
 * pixels, at least min_pixels of them. */
int asam_conv3x3_amx_fits(int64_t H, int64_t W, int64_t min_pixels);

/* out (O, H, W) = the convolution of x (C, H, W) with w (O, C, 3, 3); with adjoint, the
 * convolution whose gradient w gives: out (C, H, W) from x (O, H, W) with the kernels rotated
 * by 180 degrees and the channel axes swapped (dx of the forward one). accumulate: add into out
 * instead of overwriting it. bias (one value per output channel) and res (a residual shaped as
 * out, not out itself), when given, are added on the way out, in the order of separate passes:
 * ((product [+ out]) + bias) + res. Scratch (the input copy, a per-call weight copy) comes from
 * ctx's arena and is released before returning. Returns 0, or -1 when out of memory (out
 * untouched). */
int asam_conv3x3_amx(asam_ctx *ctx, const float *x, int64_t H, int64_t W, asam_tensor *w,
                     int adjoint, int accumulate, const float *bias, const float *res, float *out);

/* dst (O, C, 3, 3) <- held w's values read back from its forward taps (w->conv_taps[0]):
 * asam_param_bf16's rebuild of a weight that keeps those taps alone. */
void asam_conv_amx_unpack(const asam_tensor *w, uint16_t *dst);

#endif
