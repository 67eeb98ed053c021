/* The engine's kernel table: the seam between an op's front (shape checks, allocation, tape
 * recording, the loops over batches and blocks) and the kernels doing its arithmetic.
 *
 * Ops never call BLAS or a bf16 kernel by name: their GEMM-shaped work (matmul, linear,
 * convolution as im2col + GEMM, transposed convolution, attention's QK^T and PV blocks, and
 * all their backward products) goes through asam_gemm(), which calls the current backend.
 * asam_set_precision() picks the backend: the CPU fp32 set (OpenBLAS sgemm, the default and
 * the reference), or the CPU bf16 set (operands rounded to bf16, fp32 accumulation) on CPUs
 * with AVX512-BF16 or AMX. Another device (CUDA, say) adds one more table here. */
#ifndef ASAM_ENGINE_BACKEND_H
#define ASAM_ENGINE_BACKEND_H

#include "asam/engine.h"

#include <stdint.h>

/* C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C, row-major, cblas_sgemm semantics:
 * ta/tb transpose A/B, beta == 0 never reads C. Safe to call from inside OpenMP parallel
 * regions (it then runs on the calling thread). */
typedef void (*asam_gemm_fn)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc);

/* The same product where either operand may come already in bf16: A16 (B16) non-NULL replaces
 * A (B), stored contiguously in the layout A (B) would have (lda = its row length). The result
 * is bit-identical to passing the fp32 values that rounded to them. */
typedef void (*asam_gemm16_fn)(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, const uint16_t *A16, int64_t lda, const float *B,
                               const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc);

/* A linear layer's forward product: C (M, N) = A (M, K) W^T + bias (N values added to every
 * row; NULL: none), W the layer's weight tensor (N x K, row stride ldw) in fp32 or held in bf16.
 * The weight is passed whole so that a backend can keep its own packed copy of a frozen one;
 * the bias is added as the product is stored, not by a pass over C before it. Returns 0, or
 * -1 when it cannot (the caller computes the product through gemm / gemm16 itself; C may have
 * been written, the caller writes all of it again). */
typedef int (*asam_linear_fn)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                              asam_tensor *W, int64_t ldw, const float *bias, float *C,
                              int64_t ldc);

/* The linear layer followed by GEGLU, for inference (nothing recorded): Y (M, F) = value *
 * gelu(gate), (value, gate) the halves of A W^T + bias, W (2F, K). Bit for bit the linear entry
 * and the GEGLU op, without the 2F-wide product written. -1 when it cannot (the caller runs the
 * two ops). */
typedef int (*asam_linear_geglu_fn)(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda,
                                    asam_tensor *W, int64_t ldw, const float *bias, float *Y,
                                    int64_t ldy);

/* n linear products of the same input, for inference: C[i] (M, N_i) = A W[i]^T (+ bias[i]),
 * W[i] (N_i, K) contiguous, C[i] contiguous; the same values as n linear entries. -1 when it
 * cannot (the caller runs them one by one). */
typedef int (*asam_linear_many_fn)(int64_t M, int64_t K, const float *A, int64_t lda, int n,
                                   asam_tensor *const *W, const float *const *bias,
                                   float *const *C);

/* A linear layer and the residual add after it, for inference: C (M, N) = (A W^T + bias) + R,
 * R and C contiguous (R may be C); the same values as the linear entry and an add. -1 when it
 * cannot (the caller runs the two ops). */
typedef int (*asam_linear_add_fn)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                                  asam_tensor *W, int64_t ldw, const float *bias, const float *R,
                                  float *C);

typedef struct {
    const char *name; /* "cpu-fp32 (OpenBLAS)", ... */
    asam_precision precision;
    asam_gemm_fn gemm;
    asam_gemm16_fn gemm16; /* NULL: this backend takes no bf16 operands */
    asam_linear_fn linear; /* NULL: linear layers go through gemm16 (the caller adds the bias) */
    asam_linear_geglu_fn linear_geglu; /* NULL: none (linear, then the GEGLU op) */
    asam_linear_many_fn linear_many;   /* NULL: none (one linear entry each) */
    asam_linear_add_fn linear_add;     /* NULL: none (linear, then the add op) */
} asam_backend;

/* The backend in use (set by asam_set_precision; the fp32 one by default). */
extern const asam_backend *asam_backend_current;

static inline void asam_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc) {
    asam_backend_current->gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The fp32 kernels whatever the precision: for products whose operands must not be rounded to
 * bf16. Winograd's transformed tiles are such: its output transform (coefficients up to 8)
 * magnifies their rounding, and 4x fewer multiplies in fp32 beat bf16's 2x on AVX512-BF16. */
void asam_gemm_fp32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* W's bf16 copy under ASAM_BF16, converting it (and freeing the fp32 copy) on first use when W
 * qualifies (a frozen persistent weight of at least 4096 values); NULL when W stays fp32. */
const uint16_t *asam_weight_held(asam_tensor *W);

/* Products with a weight tensor W as one operand (the ops' forward and dX products of linear,
 * conv2d, conv_transpose2d): W's values form the A (asam_gemm_wa) or B (asam_gemm_wb) matrix,
 * stored row-major with leading dimension ldw from W's first element. Under ASAM_BF16 a frozen
 * weight is converted to bf16 on its first use here and held (its fp32 copy freed; see
 * asam_set_weight_holding in engine.h); later products read the held copy. */
void asam_gemm_wa(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, asam_tensor *W,
                  int64_t ldw, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void asam_gemm_wb(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, asam_tensor *W, int64_t ldw, float beta, float *C, int64_t ldc);
/* A linear layer's product with its bias (or none: bias NULL): C (M, N) = A (M, K) W^T + bias,
 * W (N, K) stored with row stride ldw, through the backend's linear entry. Returns -1 when the
 * backend has none (or cannot take this product): the caller then fills C with the bias and
 * adds the product (asam_gemm_wb). */
int asam_gemm_wb_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                      int64_t ldw, const float *bias, float *C, int64_t ldc);

/* The backend's linear + residual add (see asam_linear_add_fn); -1 when it has none or cannot. */
int asam_gemm_wb_add(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                     int64_t ldw, const float *bias, const float *R, float *C);
/* The backend's many-output linear product (see asam_linear_many_fn); -1 when it has none or
 * cannot. */
int asam_gemm_wb_many(int64_t M, int64_t K, const float *A, int64_t lda, int n,
                      asam_tensor *const *W, const float *const *bias, float *const *C);
/* The backend's linear + GEGLU (see asam_linear_geglu_fn); -1 when it has none or cannot. */
int asam_gemm_wb_geglu(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                       int64_t ldw, const float *bias, float *Y, int64_t ldy);

#endif
