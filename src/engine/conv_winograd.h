/* 3x3 stride-1 padding-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016): each 4x4 output tile costs 36
 * multiplies per (input, output) channel pair instead of 144, as 36 GEMMs (O, C) x (C, tiles)
 * in fp32 (asam_gemm_fp32), between an input transform of 6x6 patches and an output transform.
 * CPU transforms; internal to src/engine. */
#ifndef ASAM_ENGINE_CONV_WINOGRAD_H
#define ASAM_ENGINE_CONV_WINOGRAD_H

#include "asam/engine.h"

#include <stdint.h>

/* U (36, O, C) <- G g G^T for each 3x3 kernel g = w[o][c] of w (O, C, 3, 3). adjoint != 0
 * transforms the kernels of the adjoint convolution instead (the one that maps an output
 * gradient (O, H, W) back to the input (C, H, W): kernel w[o][c] rotated by 180 degrees), and U
 * is then (36, C, O). */
void asam_wino_weights(const float *w, int64_t O, int64_t C, int adjoint, float *U);

/* y (O, H, W) (=, or += when accumulate) the 3x3 stride-1 padding-1 correlation of x (C, H, W)
 * with the kernels transformed into U (36, O, C); no bias. Scratch comes from ctx's arena and
 * is released before returning. Returns 0, or -1 with ctx's error set (out of memory). */
int asam_wino_conv3x3(asam_ctx *ctx, const float *x, int64_t C, int64_t H, int64_t W,
                      const float *U, int64_t O, float *y, int accumulate);

#endif
