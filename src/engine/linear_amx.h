/* A linear layer's forward product on Intel AMX tiles, its weight packed once (linear_amx.c).
 *
 * C (M, N) = A (M, K) W^T + bias, W (N, K) the layer's weight, A and W rounded to bf16 (nearest
 * even) and fp32 sums: the product every bf16 kernel computes, up to the order of the sums. W
 * is packed into the tiles' pair-interleaved panels (amx_tile.h's right-operand layout, N and K
 * padded to multiples of 32) ahead of the call, once for a frozen weight; A is rounded 32 rows
 * at a time inside the product, and the bias starts the accumulators, so C is written once. */
#ifndef ASAM_ENGINE_LINEAR_AMX_H
#define ASAM_ENGINE_LINEAR_AMX_H

#include <stdint.h>

/* Values of W's packed copy: round_up(N, 32) x round_up(K, 32). */
int64_t asam_linear_amx_packed_numel(int64_t N, int64_t K);

/* dst <- W (N, K, row stride ldw; fp32, or bf16 when W16 is non-NULL) packed for
 * asam_linear_amx. Threads over the panels unless called inside a parallel region. */
void asam_linear_amx_pack(int64_t N, int64_t K, const float *W, const uint16_t *W16, int64_t ldw,
                          uint16_t *dst);

/* C (M, N; row stride ldc) = A (M, K; row stride lda) W^T + bias (N values, or NULL for none),
 * W given packed (Wp). Returns 0, or -1 when out of memory (C may be partly written). Call only
 * when asam_amx_supported(); safe inside an OpenMP parallel region (it then runs on the calling
 * thread). */
int asam_linear_amx(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const uint16_t *Wp, const float *bias, float *C, int64_t ldc);

/* C = (A W^T + bias) + R: a linear layer and the residual add after it, in that order (the same
 * values as asam_linear_amx and an add), without writing the product first. R (M, N; row stride
 * ldr) may be C itself. */
int asam_linear_amx_add(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const uint16_t *Wp, const float *bias, const float *R, int64_t ldr,
                        float *C, int64_t ldc);

/* One product of a many-output linear product: its packed weight (N, K), bias (N or NULL) and
 * output C (M, N; row stride ldc). */
typedef struct {
    const uint16_t *Wp;
    const float *bias;
    float *C;
    int64_t N, ldc;
    const float *R; /* NULL, or a residual (M, N; row stride ldr) added to the result */
    int64_t ldr;
} asam_linear_target;

/* n (1 .. 4) linear products of the same A (attention's q, k and v projections): each block of
 * A is rounded once for all of them; the same values as n asam_linear_amx calls. Returns 0, or
 * -1 (out of memory, or n out of range). */
int asam_linear_amx_many(int64_t M, int64_t K, const float *A, int64_t lda,
                         const asam_linear_target *t, int n);

/* The linear layer and GEGLU in one: Y (M, F; row stride ldy) = value * gelu(gate) with
 * (value, gate) = the two halves of A W^T + bias, W (2F, K) packed (Wp), bias 2F values or NULL.
 * The same values as asam_linear_amx followed by op_activation.c's GEGLU, bit for bit, without
 * writing the 2F-wide product. F must be a multiple of 32 (else -1, nothing written). Returns
 * 0, or -1 (out of memory: Y may be partly written). */
int asam_linear_amx_geglu(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda,
                          const uint16_t *Wp, const float *bias, float *Y, int64_t ldy);

#endif
