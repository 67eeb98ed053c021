/* bf16 GEMM with fp32 accumulation (AVX512-BF16). Internal to src/engine. */
#ifndef ASAM_ENGINE_GEMM_BF16_H
#define ASAM_ENGINE_GEMM_BF16_H

#include <stdint.h>

/* 1 when this CPU (and this build) can run asam_gemm_bf16. */
int asam_gemm_bf16_supported(void);
/* C (M, N) = alpha op(A) op(B) + beta C, row-major like cblas_sgemm; A and B are rounded to bf16,
 * the products summed in fp32. Returns -1 when out of memory (C untouched) or unsupported. */
int asam_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The same with either operand already in bf16: A16 (B16) non-NULL is used instead of A (B),
 * read with the same strides (lda, ldb). Bit-identical to passing the fp32 values they were
 * rounded from (asam_bf16_convert rounds as the packing does: nearest even). */
int asam_gemm_bf16_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                      int64_t ldb, float beta, float *C, int64_t ldc);

/* dst (rows, cols) contiguous <- src rows of stride ld rounded to bf16 (nearest even). */
void asam_bf16_convert(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst);

#endif
