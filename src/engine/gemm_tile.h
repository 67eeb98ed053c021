/* A register-tiled fp32 GEMM for products whose B sits in cache: no packing, one thread,
 * AVX-512. Attention's flash tiles use it (op_attention.c: a key chunk's logits and P V, with
 * head sizes of 40-160), and so do Winograd's per-position products (conv_winograd.c) and the
 * thread parts of thin products (backend.c, in K blocks): shapes where a packing BLAS spends
 * more time copying than multiplying. */
#ifndef ASAM_ENGINE_GEMM_TILE_H
#define ASAM_ENGINE_GEMM_TILE_H

#include <stdint.h>

/* 1 when this CPU and build have the AVX-512 kernel (checked once). */
int asam_gemm_tile_supported(void);

/* C (M, N) = alpha A (M, K) B (K, N) + beta C. A's element (m, k) is A[m * rsa + k * csa]
 * (row-major: rsa = lda, csa = 1; its transpose: rsa = 1, csa = lda); B and C are row-major
 * with leading dimensions ldb, ldc; beta == 0 never reads C. Call only when
 * asam_gemm_tile_supported(). */
void asam_gemm_tile(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rsa,
                    int64_t csa, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The fp32 flash forward's softmax steps on one row, with AVX-512 (exp_avx512.h): the max of
 * start and row[0 .. n); row[j] <- exp(row[j] - mx), returning their sum. */
float asam_row_max16(const float *row, int64_t n, float start);
float asam_row_exp_sum16(float *row, int64_t n, float mx);

/* The fp32 flash forward's online softmax step over one key chunk in the column layout: St (kc
 * keys x nq queries, row stride ld, nq <= 64) holds the chunk's logits, m and l each query's
 * running max and sum (m = -inf, l = 0 before the first chunk). St becomes exp(St - m'), with
 * m' the max of m and the chunk's logits; l becomes l exp(m - m') plus the chunk's sums, m
 * becomes m'; unless first, the output accumulated so far, O (Dv x nq, row stride ldo), is
 * scaled by exp(m - m') per query. A query whose logits are all -inf keeps m = -inf and gets
 * zeros. */
void asam_flash_cols_softmax(float *St, int64_t kc, int64_t ld, int64_t nq, float *m, float *l,
                             float *O, int64_t Dv, int64_t ldo, int first);

#endif
