/* A bf16 GEMM with fp32 accumulation for CPUs with AVX512-BF16 (VDPBF16PS).
 *
 *   C (M, N) = alpha op(A) (M, K) op(B) (K, N) + beta C, row-major, fp32 in and out.
 *
 * Both operands are rounded to bf16 (round to nearest even) while they are packed; products
 * and sums are fp32. VDPBF16PS multiplies pairs of bf16 along K and adds both products into
 * one fp32 lane, so the packed layouts keep K in pairs:
 *   A panel (MR rows):  Ap[kp][MR]  one uint32 = (A[m][2kp], A[m][2kp+1]) per row
 *   B panel (NR cols):  Bp[kp][NR]  one uint32 = (B[2kp][n], B[2kp+1][n]) per column
 * The micro-kernel keeps an MR x NR tile of C in 24 zmm registers: per K pair it loads two B
 * vectors, broadcasts each row's A pair and issues 24 VDPBF16PS.
 *
 * Blocking (GotoBLAS order): KC of K by NC of N are packed once (B block, shared by all
 * threads), then up to MBIG rows of A (shared), then threads take (MC rows x NG panels) tiles.
 * Inside an OpenMP parallel region (the engine's batched loops) it runs on the calling thread.
 *
 * Compiled with target attributes, so the rest of the build needs no -mavx512bf16; callers
 * must check asam_gemm_bf16_supported() first. */
#include "engine/gemm_bf16.h"
#include "asam/util.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(ASAM_NO_BF16_KERNEL)
#include <immintrin.h>

#define MR 12
#define NR 32
#define KC 512  /* K per packed block (even) */
#define MC 96   /* rows per work item: 8 A panels */
#define NG 4    /* B panels per work item (128 columns) */
#define NC 2048 /* columns per packed B block */
#define MBIG 3072
/* Below this many multiply-adds one thread does the whole product. */
#define PAR_MIN_MACS (INT64_C(1) << 22)

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))

int asam_gemm_bf16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}

/* fp32 -> bf16, round to nearest even; NaN stays NaN (quiet): the one conversion in util. */
static inline uint32_t f2bf(float f) {
    return asam_f32_to_bf16(f);
}

/* Pack a panel of XR "lines" (rows of A or columns of B), element (k, x) at
 * src[k * sk + x * sx], for k in [0, kc) and x in [0, nx); zero beyond (nx <= XR, and an odd
 * kc's last pair). out: (kc+1)/2 x XR uint32. */
BF16_TARGET static void pack_panel(const float *src, int64_t sk, int64_t sx, int64_t kc, int64_t nx,
                                   int XR, uint32_t *out) {
    int64_t kp_n = (kc + 1) / 2, kfull = kc / 2;
    if (nx < XR)
        for (int64_t kp = 0; kp < kp_n; kp++)
            memset(out + kp * XR + nx, 0, (size_t)(XR - nx) * sizeof(uint32_t));
    if (sk == 1) { /* K contiguous in each line: convert 32 floats at a time, scatter pairs */
        for (int64_t x = 0; x < nx; x++) {
            const float *line = src + x * sx;
            int64_t kp = 0;
            uint32_t tmp[16];
            for (; kp + 16 <= kfull; kp += 16) {
                __m512 lo = _mm512_loadu_ps(line + 2 * kp),
                       hi = _mm512_loadu_ps(line + 2 * kp + 16);
                _mm512_storeu_si512(tmp, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                for (int i = 0; i < 16; i++) out[(kp + i) * XR + x] = tmp[i];
            }
            for (; kp < kfull; kp++)
                out[kp * XR + x] = f2bf(line[2 * kp]) | f2bf(line[2 * kp + 1]) << 16;
            if (kc & 1) out[kfull * XR + x] = f2bf(line[2 * kfull]);
        }
        return;
    }
    if (sx == 1) { /* the lines are contiguous: interleave two K rows, 16 lines at a time */
        for (int64_t kp = 0; kp < kp_n; kp++) {
            const float *r0 = src + 2 * kp * sk;
            const float *r1 = 2 * kp + 1 < kc ? r0 + sk : NULL;
            uint32_t *o = out + kp * XR;
            for (int64_t x = 0; x < nx; x += 16) {
                int64_t w = nx - x < 16 ? nx - x : 16;
                __mmask16 m = (__mmask16)((1u << w) - 1u);
                __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0 + x));
                __m256i h = r1 ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1 + x))
                               : _mm256_setzero_si256();
                __m256i a = _mm256_unpacklo_epi16(l, h), b = _mm256_unpackhi_epi16(l, h);
                __m512i v = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_permute2x128_si256(a, b, 0x20)),
                    _mm256_permute2x128_si256(a, b, 0x31), 1);
                _mm512_mask_storeu_epi32(o + x, m, v);
            }
        }
        return;
    }
    for (int64_t kp = 0; kp < kp_n; kp++)
        for (int64_t x = 0; x < nx; x++) {
            const float *p = src + 2 * kp * sk + x * sx;
            out[kp * XR + x] = f2bf(p[0]) | (2 * kp + 1 < kc ? f2bf(p[sk]) << 16 : 0u);
        }
}

/* pack_panel for an operand already in bf16: the same layout, the bits moved as they are. */
static void pack_panel16(const uint16_t *src, int64_t sk, int64_t sx, int64_t kc, int64_t nx,
                         int XR, uint32_t *out) {
    int64_t kp_n = (kc + 1) / 2, kfull = kc / 2;
    if (nx < XR)
        for (int64_t kp = 0; kp < kp_n; kp++)
            memset(out + kp * XR + nx, 0, (size_t)(XR - nx) * sizeof(uint32_t));
    if (sk == 1) { /* K contiguous in each line: a pair is one aligned-or-not uint32 */
        for (int64_t x = 0; x < nx; x++) {
            const uint16_t *line = src + x * sx;
            for (int64_t kp = 0; kp < kfull; kp++)
                out[kp * XR + x] = (uint32_t)line[2 * kp] | (uint32_t)line[2 * kp + 1] << 16;
            if (kc & 1) out[kfull * XR + x] = line[2 * kfull];
        }
        return;
    }
    for (int64_t kp = 0; kp < kp_n; kp++) { /* lines contiguous (sx == 1) or any strides */
        const uint16_t *r0 = src + 2 * kp * sk, *r1 = 2 * kp + 1 < kc ? r0 + sk : NULL;
        uint32_t *o = out + kp * XR;
        for (int64_t x = 0; x < nx; x++)
            o[x] = (uint32_t)r0[x * sx] | (r1 ? (uint32_t)r1[x * sx] << 16 : 0u);
    }
}

/* tile (MR x NR) = Ap (kp_n x MR pairs) . Bp (kp_n x NR pairs), fp32. */
BF16_TARGET static void kernel(int64_t kp_n, const uint32_t *Ap, const uint32_t *Bp, float *tile) {
    __m512 c[MR][2];
    for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (int64_t kp = 0; kp < kp_n; kp++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp), b1 = (__m512bh)_mm512_loadu_si512(Bp + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[r]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], a, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], a, b1);
        }
        Ap += MR;
        Bp += NR;
    }
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(tile + r * NR, c[r][0]);
        _mm512_storeu_ps(tile + r * NR + 16, c[r][1]);
    }
}

/* C (mr x nr) = alpha tile + beta C; beta == 0 never reads C (it may hold garbage). */
BF16_TARGET static void update(const float *tile, int64_t mr, int64_t nr, float alpha, float beta,
                               float *C, int64_t ldc) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int64_t r = 0; r < mr; r++)
        for (int64_t j = 0; j < nr; j += 16) {
            int64_t w = nr - j < 16 ? nr - j : 16;
            __mmask16 m = (__mmask16)((1u << w) - 1u);
            __m512 t = _mm512_mul_ps(va, _mm512_loadu_ps(tile + r * NR + j));
            float *c = C + r * ldc + j;
            if (beta != 0.0f) t = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c), t);
            _mm512_mask_storeu_ps(c, m, t);
        }
}

BF16_TARGET static void convert_row(const float *src, int64_t n, uint16_t *dst) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(dst + i, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16),
                                                                  _mm512_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = (uint16_t)f2bf(src[i]);
}

void asam_bf16_convert(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst) {
    int par = !omp_in_parallel() && rows * cols >= (INT64_C(1) << 18);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < rows; r++) convert_row(src + r * ld, cols, dst + r * cols);
}

static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

int asam_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return asam_gemm_bf16_ex(ta, tb, M, N, K, alpha, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

int asam_gemm_bf16_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                      int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return 0;
    }
    /* A (m, k) = A[m * a_sx + k * a_sk]; B (k, n) = B[k * b_sk + n * b_sx]. */
    int64_t a_sk = ta ? lda : 1, a_sx = ta ? 1 : lda;
    int64_t b_sk = tb ? 1 : ldb, b_sx = tb ? ldb : 1;
    int64_t kc_max = K < KC ? K : KC, nc_max = N < NC ? N : NC, mb_max = M < MBIG ? M : MBIG;
    int64_t kp_max = (kc_max + 1) / 2;
    int64_t nb_pan = (nc_max + NR - 1) / NR, ma_pan = (mb_max + MR - 1) / MR;
    /* aligned_alloc wants a size that is a multiple of the alignment */
    size_t bbytes = ((size_t)(nb_pan * NR * kp_max) * 4 + 63) / 64 * 64;
    size_t abytes = ((size_t)(ma_pan * MR * kp_max) * 4 + 63) / 64 * 64;
    uint32_t *Bp = aligned_alloc(64, bbytes), *Ap = aligned_alloc(64, abytes);
    if (!Bp || !Ap) {
        free(Bp);
        free(Ap);
        return -1;
    }
    int par = !omp_in_parallel() && M * N * K >= PAR_MIN_MACS && omp_get_max_threads() > 1;
#pragma omp parallel if (par)
    {
        float tile[MR * NR] __attribute__((aligned(64)));
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC, kp_n = (kc + 1) / 2;
            float bet = pc == 0 ? beta : 1.0f;
            for (int64_t jc = 0; jc < N; jc += NC) {
                int64_t nc = N - jc < NC ? N - jc : NC, npan = (nc + NR - 1) / NR;
#pragma omp for schedule(static)
                for (int64_t jp = 0; jp < npan; jp++) {
                    int64_t n0 = jc + jp * NR, nn = nc - jp * NR < NR ? nc - jp * NR : NR;
                    if (B16)
                        pack_panel16(B16 + pc * b_sk + n0 * b_sx, b_sk, b_sx, kc, nn, NR,
                                     Bp + jp * NR * kp_n);
                    else
                        pack_panel(B + pc * b_sk + n0 * b_sx, b_sk, b_sx, kc, nn, NR,
                                   Bp + jp * NR * kp_n);
                }
                for (int64_t ic = 0; ic < M; ic += MBIG) {
                    int64_t mb = M - ic < MBIG ? M - ic : MBIG, mpan = (mb + MR - 1) / MR;
#pragma omp for schedule(static)
                    for (int64_t ip = 0; ip < mpan; ip++) {
                        int64_t m0 = ic + ip * MR, mm = mb - ip * MR < MR ? mb - ip * MR : MR;
                        if (A16)
                            pack_panel16(A16 + m0 * a_sx + pc * a_sk, a_sk, a_sx, kc, mm, MR,
                                         Ap + ip * MR * kp_n);
                        else
                            pack_panel(A + m0 * a_sx + pc * a_sk, a_sk, a_sx, kc, mm, MR,
                                       Ap + ip * MR * kp_n);
                    }
                    int64_t mblk = (mb + MC - 1) / MC, nblk = (npan + NG - 1) / NG;
#pragma omp for schedule(dynamic) collapse(2)
                    for (int64_t bi = 0; bi < mblk; bi++)
                        for (int64_t bj = 0; bj < nblk; bj++) {
                            int64_t jp1 = (bj + 1) * NG < npan ? (bj + 1) * NG : npan;
                            int64_t ip0 = bi * MC / MR, ip1 = ip0 + MC / MR;
                            if (ip1 > mpan) ip1 = mpan;
                            for (int64_t jp = bj * NG; jp < jp1; jp++)
                                for (int64_t ip = ip0; ip < ip1; ip++) {
                                    kernel(kp_n, Ap + ip * MR * kp_n, Bp + jp * NR * kp_n, tile);
                                    int64_t m0 = ip * MR, n0 = jp * NR;
                                    int64_t mr = mb - m0 < MR ? mb - m0 : MR;
                                    int64_t nr = nc - n0 < NR ? nc - n0 : NR;
                                    update(tile, mr, nr, alpha, bet, C + (ic + m0) * ldc + jc + n0,
                                           ldc);
                                }
                        }
                }
            }
        }
    }
    free(Bp);
    free(Ap);
    return 0;
}

#else /* no x86-64 GCC/Clang: no bf16 kernel in this build */

int asam_gemm_bf16_supported(void) {
    return 0;
}

int asam_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return -1;
}

int asam_gemm_bf16_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                      int64_t ldb, float beta, float *C, int64_t ldc) {
    return -1;
}

void asam_bf16_convert(const float *src, int64_t rows, int64_t cols, int64_t ld, uint16_t *dst) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            dst[r * cols + c] = asam_f32_to_bf16(src[r * ld + c]);
        }
}

#endif
