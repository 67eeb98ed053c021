/* The engine's one door to BLAS-shaped products: row-major sgemm (through the kernel table), and
 * the thread pinning around our own parallel regions. Internal to src/engine. */
#ifndef ASAM_ENGINE_BLAS_H
#define ASAM_ENGINE_BLAS_H

#include "engine/backend.h"

#include <cblas.h>
#include <stdint.h>

/* C (M, N) = alpha op(A) op(B) + beta C, row-major; ta/tb: transpose A/B. Goes through the
 * kernel table (backend.h): OpenBLAS sgemm in fp32, the bf16 kernels under ASAM_BF16. */
static inline void sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    asam_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* OpenBLAS's OpenMP build runs single-threaded inside our parallel regions. A pthreads build
 * (what the system's default libopenblas.so.0 may be when the binary lacks the RUNPATH to the
 * OpenMP one) would oversubscribe the cores, so it is pinned to one thread around them.
 * Returns the thread count to restore, 0 when there is nothing to restore. */
static inline int blas_enter_parallel(void) {
    if (openblas_get_parallel() != 1) return 0;
    int n = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return n;
}

static inline void blas_leave_parallel(int n) {
    if (n) openblas_set_num_threads(n);
}

#endif
