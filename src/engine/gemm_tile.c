/* Register-tiled fp32 GEMM for cache-resident operands (see gemm_tile.h).
 *
 * The C tile is R rows x NV vectors of 16 columns, held in R * NV zmm accumulators (at most
 * 24 of the 32). Per step of K it loads NV vectors of B's row k (the last one masked at the
 * matrix edge), broadcasts each row's A[r][k] and issues R * NV FMAs: 8 x 3 gives 24 FMAs for
 * 11 loads, 6 x 4 24 for 10. Products 49-64 columns wide are one group of four vectors in rows
 * of 6; others go in column groups of 48 (the last group narrower) and rows of 8; the last row
 * group is shorter. Each (R, NV) shape is its own unrolled copy, so the accumulators stay in
 * registers.
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
#define TILE_R4 6 /* rows per tile when a row is four vectors (products 49-64 columns wide) */

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
    __m512 acc[TILE_R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 b[4];
        const float *bk = B + k * ldb, *ak = A + k * csa;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, bk + 16 * v)
                               : _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(ak[r * rsa]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    /* alpha and beta are read back from memory here: kept in registers across the K loop
     * (where the compiler would hoist them) they push an accumulator out to the stack */
    volatile float alpha_v = alpha, beta_v = beta;
    __m512 va = _mm512_set1_ps(alpha_v), vb = _mm512_set1_ps(beta_v);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *c = C + r * ldc + 16 * v;
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 y = _mm512_mul_ps(acc[r][v], va);
            if (beta != 0.0f) y = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c), vb, y);
            _mm512_mask_storeu_ps(c, m, y);
        }
}

/* All rows of one column group of NV vectors (the last masked by `last`), in tiles of RF rows
 * and one shorter tile for the rest. */
TILE_TARGET static inline __attribute__((always_inline)) void
gemm_tile_cols(int RF, int NV, int64_t M, int64_t K, float alpha, const float *A, int64_t rsa,
               int64_t csa, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
               __mmask16 last) {
    int64_t m = 0;
    for (; m + RF <= M; m += RF)
        tile_kernel(RF, NV, K, alpha, A + m * rsa, rsa, csa, B, ldb, beta, C + m * ldc, ldc, last);
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
    if (N > 16 * TILE_NV && N <= 64) { /* one group of four vectors, tiles of 6 rows */
        int tail = (int)(N - 48);
        __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1);
        gemm_tile_cols(TILE_R4, 4, M, K, alpha, A, rsa, csa, B, ldb, beta, C, ldc, last);
        return;
    }
    for (int64_t n = 0; n < N; n += 16 * TILE_NV) {
        int64_t w = N - n < 16 * TILE_NV ? N - n : 16 * TILE_NV;
        int nv = (int)((w + 15) / 16);
        int tail = (int)(w - 16 * (nv - 1)); /* columns in the last vector, 1..16 */
        __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1);
        if (nv == 3)
            gemm_tile_cols(TILE_R, 3, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
        else if (nv == 2)
            gemm_tile_cols(TILE_R, 2, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
        else
            gemm_tile_cols(TILE_R, 1, M, K, alpha, A, rsa, csa, B + n, ldb, beta, C + n, ldc, last);
    }
}

/* The fp32 flash forward's online softmax over a key chunk in the column layout (gemm_tile.h).
 * Rows of St are keys, columns queries; each column's max, exponentials and sum are vertical
 * vector operations, four columns' worth of 16 queries side by side. */
TILE_TARGET void asam_flash_cols_softmax(float *St, int64_t kc, int64_t ld, int64_t nq, float *m,
                                         float *l, float *O, int64_t Dv, int64_t ldo, int first) {
    int nv = (int)((nq + 15) / 16);
    __mmask16 mk[4];
    __m512 mx[4], safe[4], sum[4], corr[4];
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int v = 0; v < 4; v++) {
        mk[v] = v < nv ? asam_lanes16(nq - 16 * v) : 0;
        mx[v] = _mm512_mask_loadu_ps(ninf, mk[v], m + 16 * v);
        sum[v] = _mm512_setzero_ps();
    }
    for (int64_t r = 0; r < kc; r++) /* the chunk's max per query, with the running one */
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            mx[v] = _mm512_max_ps(mx[v], _mm512_mask_loadu_ps(ninf, mk[v], St + r * ld + 16 * v));
    for (int v = 0; v < 4; v++) {
        /* a query whose logits are all -inf so far subtracts 0: its exponentials are 0 */
        __mmask16 dead = _mm512_cmp_ps_mask(mx[v], ninf, _CMP_EQ_OQ);
        safe[v] = _mm512_mask_blend_ps(dead, mx[v], _mm512_setzero_ps());
        corr[v] = asam_exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, mk[v], m + 16 * v), safe[v]));
    }
    for (int64_t r = 0; r < kc; r++) {
        float *row = St + r * ld;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            __m512 e =
                asam_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk[v], row + 16 * v), safe[v]));
            e = _mm512_maskz_mov_ps(mk[v], e);
            sum[v] = _mm512_add_ps(sum[v], e);
            _mm512_mask_storeu_ps(row + 16 * v, mk[v], e);
        }
    }
    for (int v = 0; v < 4; v++) {
        __m512 lv = _mm512_maskz_loadu_ps(mk[v], l + 16 * v);
        lv = first ? sum[v] : _mm512_fmadd_ps(lv, corr[v], sum[v]);
        _mm512_mask_storeu_ps(l + 16 * v, mk[v], lv);
        _mm512_mask_storeu_ps(m + 16 * v, mk[v], mx[v]);
        if (!first)
            for (int64_t c = 0; c < Dv; c++) {
                float *o = O + c * ldo + 16 * v;
                _mm512_mask_storeu_ps(o, mk[v],
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[v], o), corr[v]));
            }
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

void asam_flash_cols_softmax(float *St, int64_t kc, int64_t ld, int64_t nq, float *m, float *l,
                             float *O, int64_t Dv, int64_t ldo, int first) {
    (void)St, (void)kc, (void)ld, (void)nq, (void)m, (void)l, (void)O, (void)Dv, (void)ldo,
        (void)first;
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
