/* bf16 GEMM on Intel AMX tiles (see gemm_amx.h).
 *
 * Packed A: for each block of 32 rows, 32 x Kp bf16 row-major (Kp = K rounded up to 32, zero
 * padded), so a tile load reads 16 rows x 32 values. Packed B: for each 16 columns and each 32
 * of K, a 1 KiB tile of 16 rows, row r holding (B[2r][n], B[2r+1][n]) for the 16 columns n.
 * Tiles: tmm0-3 the 2 x 2 accumulators, tmm4-5 A, tmm6-7 B (amx_tile.h's configuration). */
#include "engine/gemm_amx.h"
#include "engine/amx_tile.h"
#include "engine/exp_avx512.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The bytes of packed B one column block keeps in L2 (of 2 MiB per core on AMX CPUs). */
#define AMX_B_BLOCK_BYTES (1 << 20)

/* K chunks (of 32) per slice: an A block's slice (32 x 256 bf16, 16 KiB) stays in L1. */
#define AMX_KCH 8

/* The calling thread's packing buffer, grown as needed and kept for the next call (a fresh
 * allocation each call would fault its pages in again). */
static _Thread_local void *tl_buf;
static _Thread_local size_t tl_cap;

/* Below this many multiply-adds the product runs on the calling thread alone. */
#define AMX_PARALLEL_MACS (INT64_C(1) << 22)

#if AMX_BUILT
/* One 32 x 32 block of C from packed A rows (Ab) and two packed B panels (Bb: panel n0/16). */
AMX_TARGET static void block(const uint16_t *Ab, const uint16_t *Bb, int64_t Kp, int64_t M,
                             int64_t N, int64_t m0, int64_t n0, float alpha, float beta, float *C,
                             int64_t ldc) {
    int64_t nch = Kp / 32;
    const uint16_t *b1 = Bb + nch * 512;
    int full = m0 + 32 <= M && n0 + 32 <= N && alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    float *c = C + m0 * ldc + n0;
    if (full && beta == 1.0f)
        amx_acc_load(c, ldc);
    else
        amx_acc_zero();
    for (int64_t k = 0; k < nch; k++)
        amx_step(Ab + k * 32, Ab + 16 * Kp + k * 32, Kp * 2, Bb + k * 512, b1 + k * 512, 64);
    if (full) {
        amx_acc_store(c, ldc);
        return;
    }
    float t[32 * 32];
    amx_acc_store(t, 32);
    int64_t mm = M - m0 < 32 ? M - m0 : 32, nn = N - n0 < 32 ? N - n0 : 32;
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int64_t r = 0; r < mm; r++)
        for (int64_t j = 0; j < nn; j += 16) {
            __mmask16 msk = asam_lanes16(nn - j);
            __m512 v = _mm512_mul_ps(va, _mm512_loadu_ps(t + r * 32 + j));
            if (beta != 0.0f)
                v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(msk, c + r * ldc + j), v);
            _mm512_mask_storeu_ps(c + r * ldc + j, msk, v);
        }
}

/* A full 32 x 32 block over the K chunks k0 .. k1 (of 32): partial sums start from src (row
 * stride lds; NULL: from 0) and end in dst (row stride ldd). */
AMX_TARGET static void block_range(const uint16_t *Ab, const uint16_t *Bb, int64_t Kp, int64_t k0,
                                   int64_t k1, const float *src, int64_t lds, float *dst,
                                   int64_t ldd) {
    int64_t nch = Kp / 32;
    const uint16_t *b1 = Bb + nch * 512;
    if (src)
        amx_acc_load(src, lds);
    else
        amx_acc_zero();
    for (int64_t k = k0; k < k1; k++)
        amx_step(Ab + k * 32, Ab + 16 * Kp + k * 32, Kp * 2, Bb + k * 512, b1 + k * 512, 64);
    amx_acc_store(dst, ldd);
}

/* One work item: rows i0 .. i0 + 32 against column pairs j0 .. j1 over the whole K, in slices of
 * AMX_KCH chunks so that the A block's slice stays in L1 while the B slices pass. Full blocks
 * keep their partial sums between slices in acc (32 x 32 (j1 - j0) floats, in L2) and write C
 * once; edge blocks and general alpha / beta go through block(). */
AMX_TARGET static void item(const uint16_t *Ab, const uint16_t *Bp, int64_t Kp, int64_t M,
                            int64_t N, int64_t i0, int64_t j0, int64_t j1, float alpha, float beta,
                            float *C, int64_t ldc, float *acc) {
    int64_t nch = Kp / 32, lda = (j1 - j0) * 32;
    int simple = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    for (int64_t k0 = 0; k0 < nch; k0 += AMX_KCH) {
        int64_t k1 = k0 + AMX_KCH < nch ? k0 + AMX_KCH : nch;
        for (int64_t j = j0; j < j1; j++) {
            const uint16_t *Bb = Bp + j * 32 * Kp;
            float *c = C + i0 * ldc + j * 32, *a = acc + (j - j0) * 32;
            if (!(simple && i0 + 32 <= M && (j + 1) * 32 <= N)) {
                if (k0 == 0) block(Ab, Bb, Kp, M, N, i0, j * 32, alpha, beta, C, ldc);
                continue;
            }
            const float *src = k0 > 0 ? a : beta == 1.0f ? c : NULL;
            int64_t lds = k0 > 0 ? lda : ldc;
            if (k1 == nch)
                block_range(Ab, Bb, Kp, k0, k1, src, lds, c, ldc);
            else
                block_range(Ab, Bb, Kp, k0, k1, src, lds, a, lda);
        }
    }
}
#endif

int asam_gemm_amx(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
#if AMX_BUILT
    if (M <= 0 || N <= 0) return 0;
    int64_t Kp = asam_amx_round_up(K > 0 ? K : 1, 32), mb = (M + 31) / 32, nb = (N + 31) / 32;
    int par = !omp_in_parallel() && M * N * K >= AMX_PARALLEL_MACS;
    int64_t ncp = AMX_B_BLOCK_BYTES / (Kp * 2 * 32), njc, nt = par ? omp_get_max_threads() : 1;
    if (ncp < 1) ncp = 1;
    if (ncp > nb) ncp = nb;
    njc = (nb + ncp - 1) / ncp;
    ncp = (nb + njc - 1) / njc; /* column blocks of equal width: equal items for the threads */
    /* packed A, packed B, the threads' partial sums: one buffer of the calling thread, kept */
    size_t a_bytes = (size_t)(mb * 32 * Kp) * 2, b_bytes = (size_t)(nb * 32 * Kp) * 2;
    size_t need = a_bytes + b_bytes + (size_t)(nt * 32 * 32 * ncp) * sizeof(float);
    if (need > tl_cap) {
        void *p = realloc(tl_buf, need);
        if (!p) return -1;
        tl_buf = p, tl_cap = need;
    }
    uint16_t *Ap = tl_buf, *Bp = (uint16_t *)((char *)tl_buf + a_bytes);
    float *acc = (float *)((char *)tl_buf + a_bytes + b_bytes);
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < mb; i++)
            asam_amx_pack_a(ta, M, K, A, A16, lda, i * 32, Kp, Ap + i * 32 * Kp);
#pragma omp for schedule(static)
        for (int64_t j = 0; j < 2 * nb; j++)
            asam_amx_pack_b(tb, K, N, B, B16, ldb, j * 16, Kp, Bp + j * 16 * Kp);
        asam_amx_begin();
        /* Column blocks of ncp pairs of panels, their B (Kp x 32 ncp) kept in L2 while every
         * 32-row block of A passes; each A block serves all of a column block's panels. */
#pragma omp for collapse(2) schedule(static)
        for (int64_t jc = 0; jc < njc; jc++)
            for (int64_t i = 0; i < mb; i++) {
                int64_t j1 = (jc + 1) * ncp < nb ? (jc + 1) * ncp : nb;
                item(Ap + i * 32 * Kp, Bp, Kp, M, N, i * 32, jc * ncp, j1, alpha, beta, C, ldc,
                     acc + omp_get_thread_num() * 32 * 32 * ncp);
            }
        asam_amx_end();
    }
    return 0;
#else
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)A16, (void)lda;
    (void)B, (void)B16, (void)ldb, (void)beta, (void)C, (void)ldc;
    return -1;
#endif
}
