/* Register-tiled fp32 GEMM for cache-resident operands (see gemm_tile.h).
 *
 * The C tile is R rows x NV vectors of 16 columns, held in R * NV zmm accumulators (at most
 * 24 of the 32). Per step of K it loads NV vectors of B's row k (the last one masked at the
 * matrix edge), broadcasts each row's A[r][k] and issues R * NV FMAs: 8 x 3 gives 24 FMAs for
 * 11 loads. Columns go in groups of 48 (the last group narrower), rows in groups of 8 (the
 * last group shorter); each (R, NV) shape is its own unrolled copy, so the accumulators stay
 * in registers.
 *
 * Compiled with target attributes: the rest of the build needs no -mavx512f. */
#include "engine/gemm_tile.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "engine/exp_avx512.h"

#include <immintrin.h>
#include <math.h>

#define TILE_TARGET __attribute__((target("avx512f,avx2,fma")))
#define TILE_R 8  /* rows per tile */
#define TILE_NV 3 /* 16-float vectors per tile row */

int asam_gemm_tile_supported(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") != 0;
    }
    return have;
}

/* One R x NV tile over all of K. R and NV are constants in every call below (the switch in
 * gemm_tile_cols), so the loops unroll and acc[][] lives in registers. */
TILE_TARGET static inline __attribute__((always_inline)) void
tile_kernel(int R, int NV, int64_t K, float alpha, const float *A, int64_t rsa, int64_t csa,
            const float *B, int64_t ldb, float beta, float *C, int64_t ldc, __mmask16 last) {
    __m512 acc[TILE_R][TILE_NV];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 b[TILE_NV];
        const float *bk = B + k * ldb, *ak = A + k * csa;
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++)
            b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, bk + 16 * v)
                               : _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(ak[r * rsa]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    /* alpha and beta are read back from memory here: kept in registers across the K loop
     * (where the compiler would hoist them) they push an accumulator out to the stack */
    volatile float alpha_v = alpha, beta_v = beta;
    __m512 va = _mm512_set1_ps(alpha_v), vb = _mm512_set1_ps(beta_v);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) {
            float *c = C + r * ldc + 16 * v;
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 y = _mm512_mul_ps(acc[r][v], va);
            if (beta != 0.0f) y = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c), vb, y);
            _mm512_mask_storeu_ps(c, m, y);
        }
}

/* All rows of one column group of NV vectors (the last masked by `last`). */
TILE_TARGET static inline __attribute__((always_inline)) void
gemm_tile_cols(int NV, int64_t M, int64_t K, float alpha, const float *A, int64_t rsa, int64_t csa,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc, __mmask16 last) {
    int64_t m = 0;
    for (; m + TILE_R <= M; m += TILE_R)
        tile_kernel(TILE_R, NV, K, alpha, A + m * rsa, rsa, csa, B, ldb, beta, C + m * ldc, ldc,
                    last);
    const float *a = A + m * rsa;
    float *c = C + m * ldc;
    switch (M - m) {
    case 7:
        tile_kernel(7, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 6:
        tile_kernel(6, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 5:
        tile_kernel(5, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 4:
        tile_kernel(4, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 3:
        tile_kernel(3, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 2:
        tile_kernel(2, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    case 1:
        tile_kernel(1, NV, K, alpha, a, rsa, csa, B, ldb, beta, c, ldc, last);
        break;
    default:
        break;
    }
}

TILE_TARGET void asam_gemm_tile(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                int64_t rsa, int64_t csa, const float *B, int64_t ldb, float beta,
                                float *C, int64_t ldc) {
    for (int64_t n = 0; n < N; n += 16 * TILE_NV) {
        int64_t w = N - n < 16 * TILE_NV ? N - n : 16 * TILE_NV;
        int nv = (int)((w + 15) / 16);
        int tail = (int)(w - 16 * (nv - 1)); /* columns in the last vector, 1..16 */
        __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1);
        if (nv == 3)
            gemm_tile_cols(3, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
        else if (nv == 2)
            gemm_tile_cols(2, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
        else
            gemm_tile_cols(1, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
    }
}

TILE_TARGET float asam_row_max16(const float *row, int64_t n, float start) {
    __m512 vmax = _mm512_set1_ps(start);
    for (int64_t j = 0; j < n; j += 16)
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, asam_lanes16(n - j), row + j));
    return _mm512_reduce_max_ps(vmax);
}

TILE_TARGET float asam_row_exp_sum16(float *row, int64_t n, float mx) {
    __m512 vmx = _mm512_set1_ps(mx), vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = asam_lanes16(n - j);
        __m512 e = asam_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vmx));
        vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
        _mm512_mask_storeu_ps(row + j, m, e);
    }
    return _mm512_reduce_add_ps(vsum);
}

#else /* no x86-64 GCC: the caller's other path runs */

float asam_row_max16(const float *row, int64_t n, float start) {
    (void)row, (void)n;
    return start;
}

float asam_row_exp_sum16(float *row, int64_t n, float mx) {
    (void)row, (void)n, (void)mx;
    return 0;
}

int asam_gemm_tile_supported(void) {
    return 0;
}

void asam_gemm_tile(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rsa,
                    int64_t csa, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)rsa, (void)csa, (void)B, (void)ldb,
        (void)beta, (void)C, (void)ldc;
}

#endif
