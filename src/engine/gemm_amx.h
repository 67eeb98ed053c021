/* bf16 GEMM on Intel AMX tiles (the bf16 backend's kernel on CPUs with AMX; backend.c).
 *
 * C (M, N) = alpha op(A) op(B) + beta C with op(A), op(B) rounded to bf16 (round to nearest
 * even) and fp32 accumulation: the product the other bf16 kernels compute, up to the order of
 * the fp32 sums. Both operands are packed per call into the tile layouts of amx_tile.h (A as
 * 32-row blocks, B as pair-interleaved 16-column panels), then 32 x 32 blocks of C are shared
 * out among the threads, each a 2 x 2 grid of tiles accumulated over K. */
#ifndef ASAM_ENGINE_GEMM_AMX_H
#define ASAM_ENGINE_GEMM_AMX_H

#include <stdint.h>

/* Returns 0, or -1 when out of memory (C untouched). Call only when asam_amx_supported().
 * A16 (B16) non-NULL replaces A (B): the operand already in bf16, in the layout A (B) has.
 * Safe to call inside an OpenMP parallel region (it then runs on the calling thread). */
int asam_gemm_amx(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                  int64_t ldb, float beta, float *C, int64_t ldc);

#endif
