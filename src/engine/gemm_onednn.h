/* bf16 GEMM through oneDNN's matmul primitive (AMX or AVX512-BF16 brgemm kernels). Internal to
 * src/engine; only built when CMake finds oneDNN (ASAM_HAVE_ONEDNN). */
#ifndef ASAM_ENGINE_GEMM_ONEDNN_H
#define ASAM_ENGINE_GEMM_ONEDNN_H

#include <stdint.h>

/* cblas_sgemm semantics with A and B rounded to bf16, fp32 accumulation. Returns -1 when
 * oneDNN cannot run it (the caller falls back), 0 on success. */
int asam_gemm_onednn(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same with either operand already in bf16 (A16 / B16 non-NULL replaces A / B, stored
 * contiguously: lda / ldb equal to its row length); it is then used in place, not copied. */
int asam_gemm_onednn_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, const uint16_t *A16, int64_t lda, const float *B,
                        const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc);
/* C (M, N) = A (M, K) B^T + bias (N values added to every row; B stored N x K, as a linear
 * layer's weight), with B given in fp32 or bf16 (B16). Returns -1 when oneDNN cannot run it. */
int asam_gemm_onednn_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, const uint16_t *B16, int64_t ldb, const float *bias,
                          float *C, int64_t ldc);
/* The implementation oneDNN picked for a bf16 matmul on this CPU ("brg:avx512_core_amx"...),
 * or NULL when oneDNN cannot make one. */
const char *asam_onednn_impl(void);

#endif
