/* Intel AMX-BF16 tile products for attention's flash forward (see amx_tile.h).
 *
 * Eight tile registers, all 16 rows x 64 bytes: tmm0-3 the 2 x 2 fp32 accumulators, tmm4-5 the
 * two 16-row slices of the left operand (Q or P), tmm6-7 two 16-column slices of the right one
 * (K^T or V) in the pair-interleaved ("VNNI") layout TDPBF16PS reads. */
#include "engine/amx_tile.h"
#include "asam/util.h"
#include "engine/exp_avx512.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#if AMX_BUILT
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023 /* Linux: ask for an extended state component */
#define XFEATURE_XTILEDATA 18      /* the AMX tile data */

#if AMX_BUILT
static int amx_probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int amx = (d >> 22 & 1) && (d >> 24 & 1);                     /* AMX-BF16, AMX-TILE */
    int avx512 = (b >> 16 & 1) && (b >> 17 & 1) && (b >> 30 & 1); /* AVX512F, DQ, BW */
    if (!amx || !avx512 || !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1)) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x60000u) != 0x60000u || (lo & 0xe6u) != 0xe6u) return 0; /* tiles, AVX-512 on */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

int asam_amx_supported(void) {
#if AMX_BUILT
    static int cached = -1;
    if (cached < 0) cached = amx_probe();
    return cached;
#else
    return 0;
#endif
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config;

/* Every tile 16 rows x 64 bytes. A static object: _tile_loadconfig's asm tells the compiler it
 * reads 8 bytes, so a struct filled on the stack could reach it half-written. */
static const tile_config amx_config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

AMX_TARGET void asam_amx_begin(void) {
#if AMX_BUILT
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&amx_config);
#endif
}

AMX_TARGET void asam_amx_end(void) {
#if AMX_BUILT
    _tile_release();
#endif
}

AMX_TARGET void asam_amx_pack_q(const float *src, int64_t n, int64_t D, int64_t ld, float scale,
                                uint16_t *dst) {
    int64_t Dp = asam_amx_round_up(D, 32);
#if AMX_BUILT
    __m512 vs = _mm512_set1_ps(scale);
    for (int64_t r = 0; r < AMX_ROWS; r++)
        for (int64_t d = 0; d < Dp; d += 16) {
            __mmask16 live = r < n ? asam_lanes16(D - d) : 0;
            __m512 v = _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(live, src + r * ld + d));
            _mm256_storeu_si256((__m256i *)(dst + r * Dp + d), (__m256i)_mm512_cvtneps_pbh(v));
        }
#else
    memset(dst, 0, (size_t)(AMX_ROWS * Dp) * sizeof *dst);
    for (int64_t r = 0; r < n; r++)
        for (int64_t d = 0; d < D; d++) dst[r * Dp + d] = asam_f32_to_bf16(scale * src[r * ld + d]);
#endif
}

#if AMX_BUILT
/* 16 bf16 of src (fp32 or, with src16, bf16) from element 0, n valid (others 0). */
AMX_TARGET static inline __m256i load16(const float *src, const uint16_t *src16, int64_t n) {
    __mmask16 m = asam_lanes16(n);
    if (src16) return _mm256_maskz_loadu_epi16(m, src16);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src));
}
#endif

AMX_TARGET void asam_amx_pack_a(int ta, int64_t M, int64_t K, const float *A, const uint16_t *A16,
                                int64_t lda, int64_t m0, int64_t Kp, uint16_t *dst) {
#if AMX_BUILT
    for (int64_t r = 0; r < 32; r++) {
        int64_t m = m0 + r;
        uint16_t *d = dst + r * Kp;
        if (m >= M) {
            memset(d, 0, (size_t)Kp * sizeof *d);
        } else if (!ta) {
            const float *a = A16 ? NULL : A + m * lda;
            const uint16_t *a16 = A16 ? A16 + m * lda : NULL;
            for (int64_t k = 0; k < Kp; k += 16)
                _mm256_storeu_si256((__m256i *)(d + k),
                                    load16(a ? a + k : NULL, a16 ? a16 + k : NULL, K - k));
        } else { /* op(A)[m][k] = A[k][m]: a strided column */
            for (int64_t k = 0; k < K; k++)
                d[k] = A16 ? A16[k * lda + m] : asam_f32_to_bf16(A[k * lda + m]);
            memset(d + K, 0, (size_t)(Kp - K) * sizeof *d);
        }
    }
#else
    (void)ta, (void)M, (void)K, (void)A, (void)A16, (void)lda, (void)m0, (void)Kp, (void)dst;
#endif
}

AMX_TARGET void asam_amx_pack_b(int tb, int64_t K, int64_t N, const float *B, const uint16_t *B16,
                                int64_t ldb, int64_t n0, int64_t Kp, uint16_t *dst) {
#if AMX_BUILT
    int64_t nn = N - n0 < 16 ? N - n0 : 16;
    if (!tb) { /* rows k, k + 1 of B interleaved value by value */
        for (int64_t k = 0; k < Kp; k += 2) {
            __m256i r0 = _mm256_setzero_si256(), r1 = _mm256_setzero_si256();
            if (k < K)
                r0 = load16(B16 ? NULL : B + k * ldb + n0, B16 ? B16 + k * ldb + n0 : NULL, nn);
            if (k + 1 < K)
                r1 = load16(B16 ? NULL : B + (k + 1) * ldb + n0,
                            B16 ? B16 + (k + 1) * ldb + n0 : NULL, nn);
            _mm512_storeu_si512(dst + (k / 32) * 512 + (k % 32) / 2 * 32, amx_interleave(r0, r1));
        }
    } else { /* op(B)[k][n] = B[n][k]: each column's K pairs are adjacent dwords, so a tile is
              * the 16 x 16 dword transpose of the columns' 32-value runs */
        for (int64_t c = 0; c < Kp / 32; c++) {
            __m512i v[16];
            for (int64_t n = 0; n < 16; n++) {
                v[n] = _mm512_setzero_si512();
                if (n < nn) {
                    int64_t k = c * 32;
                    const float *b = B16 ? NULL : B + (n0 + n) * ldb + k;
                    const uint16_t *b16 = B16 ? B16 + (n0 + n) * ldb + k : NULL;
                    __m256i lo = load16(b, b16, K - k);
                    __m256i hi = load16(b ? b + 16 : NULL, b16 ? b16 + 16 : NULL, K - k - 16);
                    v[n] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                }
            }
            amx_transpose16(v);
            for (int64_t r = 0; r < 16; r++) _mm512_storeu_si512(dst + c * 512 + r * 32, v[r]);
        }
    }
#else
    (void)tb, (void)K, (void)N, (void)B, (void)B16, (void)ldb, (void)n0, (void)Kp, (void)dst;
#endif
}

void asam_amx_pack_kt(const float *K, int64_t Nk, int64_t D, int64_t ld, uint16_t *dst) {
    int64_t Dp = asam_amx_round_up(D, 32);
    /* K^T (D x Nk) as the right operand: B = K stored transposed (tb), a panel per 16 keys */
    for (int64_t j = 0; j < asam_amx_round_up(Nk, 32) / 16; j++)
        asam_amx_pack_b(1, D, Nk, K, NULL, ld, j * 16, Dp, dst + j * 16 * Dp);
}

void asam_amx_pack_v(const float *V, int64_t Nk, int64_t Dv, int64_t ld, uint16_t *dst) {
    int64_t Nkp = asam_amx_round_up(Nk, 32);
    for (int64_t j = 0; j < asam_amx_round_up(Dv, 16) / 16; j++)
        asam_amx_pack_b(0, Nk, Dv, V, NULL, ld, j * 16, Nkp, dst + j * 16 * Nkp);
}

#if AMX_BUILT
/* One row's chunk of a full key chunk (kc a multiple of 32): p <- bf16 exp(s - ref) for the
 * kc logits (ref2 = ref log2 e); returns their sum. No lane masks: every key is live. */
AMX_TARGET static inline float exp_row_full(const float *s, int64_t kc, float ref2, uint16_t *p) {
    __m512 vl2e = _mm512_set1_ps(ASAM_LOG2E), vref = _mm512_set1_ps(ref2);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t j = 0; j < kc; j += 32) {
        __m512 e0 = asam_exp2_16_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), vl2e, vref));
        __m512 e1 = asam_exp2_16_bf16(_mm512_fmsub_ps(_mm512_loadu_ps(s + j + 16), vl2e, vref));
        vsum = _mm512_add_ps(vsum, _mm512_add_ps(e0, e1));
        _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
    return _mm512_reduce_add_ps(vsum);
}
#endif

/* How large a full chunk's probabilities against the running max may grow before the row is
 * rescaled: when their sum stays at or below e^8 (so does each of them: well inside fp32 and
 * bf16) the chunk is kept as it is, exponentiated in one pass, and nothing is rescaled. The sum
 * stands in for the chunk's max, which would cost a vector instruction per 16 logits to find;
 * a chunk whose sum passes it (its max did pass the running max, or many logits came close)
 * is redone against its own max. */
#define LAZY_SUM_MAX 2980.958f

AMX_TARGET void asam_amx_softmax_chunk(const float *S, int64_t n, int64_t kc, int64_t lds,
                                       uint16_t *P, int64_t ldp, float *m, float *l, float *corr) {
#if AMX_BUILT
    int64_t kc32 = asam_amx_round_up(kc, 32);
    int full = kc == kc32;
    for (int64_t r = 0; r < AMX_ROWS; r++) {
        uint16_t *p = P + r * ldp;
        if (r >= n) {
            memset(p, 0, (size_t)kc32 * sizeof *p);
            continue;
        }
        const float *s = S + r * lds;
        corr[r] = 1.0f;
        if (full && m[r] != -INFINITY) { /* against the running max */
            float sum = exp_row_full(s, kc, m[r] * ASAM_LOG2E, p);
            if (sum <= LAZY_SUM_MAX) {
                l[r] += sum;
                continue;
            }
        }
        __m512 vmax = _mm512_set1_ps(m[r]);
        for (int64_t j = 0; j < kc; j += 16)
            vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, asam_lanes16(kc - j), s + j));
        float mx = _mm512_reduce_max_ps(vmax), sum = 0;
        if (mx == -INFINITY) { /* every key so far masked: this chunk adds nothing */
            memset(p, 0, (size_t)kc32 * sizeof *p);
            continue;
        }
        if (full) {
            sum = exp_row_full(s, kc, mx * ASAM_LOG2E, p);
        } else { /* exp(s - mx) = 2^(s log2 e - mx log2 e); keys past kc are 0 */
            __m512 vl2e = _mm512_set1_ps(ASAM_LOG2E), vmx = _mm512_set1_ps(mx * ASAM_LOG2E);
            __m512 vsum = _mm512_setzero_ps();
            for (int64_t j = 0; j < kc32; j += 32) {
                __mmask16 m0 = asam_lanes16(kc - j), m1 = asam_lanes16(kc - j - 16);
                __m512 e0 =
                    _mm512_maskz_mov_ps(m0, asam_exp2_16_bf16(_mm512_fmsub_ps(
                                                _mm512_maskz_loadu_ps(m0, s + j), vl2e, vmx)));
                __m512 e1 =
                    _mm512_maskz_mov_ps(m1, asam_exp2_16_bf16(_mm512_fmsub_ps(
                                                _mm512_maskz_loadu_ps(m1, s + j + 16), vl2e, vmx)));
                vsum = _mm512_add_ps(vsum, _mm512_add_ps(e0, e1));
                _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
            }
            sum = _mm512_reduce_add_ps(vsum);
        }
        float c =
            m[r] == -INFINITY
                ? 0.0f
                : _mm512_cvtss_f32(asam_exp2_16_bf16(_mm512_set1_ps((m[r] - mx) * ASAM_LOG2E)));
        l[r] = l[r] * c + sum;
        m[r] = mx;
        corr[r] = c;
    }
#else
    (void)S, (void)n, (void)kc, (void)lds, (void)P, (void)ldp, (void)m, (void)l, (void)corr;
#endif
}

AMX_TARGET void asam_amx_softmax_backward(const float *S, float *dP, int64_t lds, int64_t n,
                                          int64_t rows, int64_t kc, const float *lse,
                                          const float *Di, uint16_t *pp, uint16_t *dsp, int64_t bq,
                                          uint16_t *ds16, int64_t ld16, int keep_ds) {
#if AMX_BUILT
    int64_t kc32 = asam_amx_round_up(kc, 32);
    for (int64_t r = 0; r < rows; r += 2) {
        /* rows r and r + 1 go into one row of each panel tile: pairs of K values interleaved */
        int64_t tile_row = (r / 32) * 512 + (r % 32) / 2 * 32;
        for (int64_t j = 0; j < kc32; j += 16) {
            __mmask16 live = asam_lanes16(kc - j);
            __m256i p16[2], ds16v[2];
            for (int h = 0; h < 2; h++) {
                int64_t rr = r + h;
                if (rr >= n) {
                    p16[h] = ds16v[h] = _mm256_setzero_si256();
                    continue;
                }
                __m512 s = _mm512_maskz_loadu_ps(live, S + rr * lds + j);
                __m512 p = _mm512_maskz_mov_ps(/* masked: 0 */
                                               live, asam_exp2_16_bf16(_mm512_fmsub_ps(
                                                         s, _mm512_set1_ps(ASAM_LOG2E),
                                                         _mm512_set1_ps(lse[rr] * ASAM_LOG2E))));
                __m512 dp = _mm512_maskz_loadu_ps(live, dP + rr * lds + j);
                __m512 ds = _mm512_mul_ps(p, _mm512_sub_ps(dp, _mm512_set1_ps(Di[rr])));
                if (keep_ds) _mm512_mask_storeu_ps(dP + rr * lds + j, live, ds);
                p16[h] = (__m256i)_mm512_cvtneps_pbh(p);
                ds16v[h] = (__m256i)_mm512_cvtneps_pbh(ds);
            }
            _mm256_storeu_si256((__m256i *)(ds16 + r * ld16 + j), ds16v[0]);
            _mm256_storeu_si256((__m256i *)(ds16 + (r + 1) * ld16 + j), ds16v[1]);
            int64_t at = (j / 16) * 16 * bq + tile_row;
            _mm512_storeu_si512(pp + at, amx_interleave(p16[0], p16[1]));
            _mm512_storeu_si512(dsp + at, amx_interleave(ds16v[0], ds16v[1]));
        }
    }
#else
    (void)S, (void)dP, (void)lds, (void)n, (void)rows, (void)kc, (void)lse, (void)Di, (void)pp;
    (void)dsp, (void)bq, (void)ds16, (void)ld16, (void)keep_ds;
#endif
}

AMX_TARGET void asam_amx_qk(const uint16_t *Q, int64_t Dp, const uint16_t *Kt, int64_t k0,
                            int64_t kc32, float *S, int64_t lds) {
#if AMX_BUILT
    int64_t nch = Dp / 32;
    for (int64_t kk = 0; kk < kc32; kk += 32) {
        const uint16_t *b0 = Kt + (k0 + kk) / 16 * nch * 512, *b1 = b0 + nch * 512;
        amx_acc_zero();
        for (int64_t c = 0; c < nch; c++)
            amx_step(Q + c * 32, Q + 16 * Dp + c * 32, Dp * 2, b0 + c * 512, b1 + c * 512, 64);
        amx_acc_store(S + kk, lds);
    }
#else
    (void)Q, (void)Dp, (void)Kt, (void)k0, (void)kc32, (void)S, (void)lds;
#endif
}

AMX_TARGET void asam_amx_pv(const uint16_t *P, int64_t ldp, const uint16_t *V, int64_t Dvp,
                            int64_t Nkp, int64_t k0, int64_t kc32, float *O, int64_t ldo) {
#if AMX_BUILT
    int64_t ncb = Dvp / 16;
    long ps = (long)(ldp * 2), os = (long)(ldo * 4);
    __asm__ volatile("" ::: "memory");
    for (int64_t cb = 0; cb < ncb; cb += 2) {
        int two = cb + 1 < ncb; /* a pair of 16-column slices, or the last one alone */
        float *o = O + cb * 16;
        _tile_loadd(0, o, os);
        _tile_loadd(2, o + 16 * ldo, os);
        if (two) {
            _tile_loadd(1, o + 16, os);
            _tile_loadd(3, o + 16 * ldo + 16, os);
        }
        for (int64_t kk = 0; kk < kc32; kk += 32) {
            const uint16_t *b = V + cb * 16 * Nkp + (k0 + kk) / 32 * 512;
            _tile_loadd(4, P + kk, ps);
            _tile_loadd(5, P + 16 * ldp + kk, ps);
            _tile_loadd(6, b, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            if (two) {
                _tile_loadd(7, b + 16 * Nkp, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
        _tile_stored(0, o, os);
        _tile_stored(2, o + 16 * ldo, os);
        if (two) {
            _tile_stored(1, o + 16, os);
            _tile_stored(3, o + 16 * ldo + 16, os);
        }
    }
#else
    (void)P, (void)ldp, (void)V, (void)Dvp, (void)Nkp, (void)k0, (void)kc32, (void)O, (void)ldo;
#endif
}
