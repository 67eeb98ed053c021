/* Intel AMX-BF16 tile products for attention's flash forward and backward under bf16
 * (op_attention.c).
 *
 * A query block is 32 rows. Its logits against a chunk of keys, S (32, kc) = Q K^T, and its
 * output update, O (32, Dv) += P V, are 2 x 2 grids of 16 x 16 fp32 tiles accumulated by
 * TDPBF16PS (bf16 operands, fp32 sums), 32 bf16 values of the inner dimension per step.
 * Operands are packed once into the layouts the tiles load:
 *   Q   32 rows x Dp bf16, row-major (Dp = D rounded up to 32, zero padded);
 *   K^T for each 16 keys and each 32 of D: 16 rows (pairs of d) x 16 keys x 2, 1 KiB;
 *   V   for each 32 keys and each 16 of Dv: 16 rows (pairs of keys) x 16 columns x 2, 1 KiB;
 *   P   32 rows x (a multiple of 32) bf16, row-major.
 * Keys are padded with zeros to a multiple of 32; padded keys' P entries must be 0. Rounding is
 * round-to-nearest-even, as everywhere in the engine's bf16 path. Compiled with target
 * attributes: callers check asam_amx_supported() first. */
#ifndef ASAM_ENGINE_AMX_TILE_H
#define ASAM_ENGINE_AMX_TILE_H

#include <stdint.h>

#define AMX_ROWS 32 /* query rows per block */

/* Where the tile kernels are built (x86-64 Linux, which grants the tile state), and the target
 * attribute every function using tiles carries, so the rest of the build needs no -mamx-*. */
#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define AMX_BUILT 1
#define AMX_TARGET                                                                                 \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16")))

/* The 2 x 2 accumulator tiles tmm0-3 as a 32 x 32 fp32 block at c (row stride ld floats):
 * zeroed, loaded or stored. The compiler barrier orders the tile loads (asm the compiler
 * believes reads no memory) after the C code that wrote their source. */
AMX_TARGET static inline void amx_acc_zero(void) {
    __asm__ volatile("" ::: "memory");
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}
AMX_TARGET static inline void amx_acc_load(const float *c, int64_t ld) {
    __asm__ volatile("" ::: "memory");
    _tile_loadd(0, c, ld * 4);
    _tile_loadd(1, c + 16, ld * 4);
    _tile_loadd(2, c + 16 * ld, ld * 4);
    _tile_loadd(3, c + 16 * ld + 16, ld * 4);
}
AMX_TARGET static inline void amx_acc_store(float *c, int64_t ld) {
    _tile_stored(0, c, ld * 4);
    _tile_stored(1, c + 16, ld * 4);
    _tile_stored(2, c + 16 * ld, ld * 4);
    _tile_stored(3, c + 16 * ld + 16, ld * 4);
}
/* One inner step: tmm4-5 <- the left operand's two 16-row slices (a0, a1; row stride as bytes),
 * tmm6-7 <- two pair-interleaved right tiles (b0, b1; row stride bs bytes), then the four
 * products into tmm0-3. */
AMX_TARGET static inline void amx_step(const uint16_t *a0, const uint16_t *a1, int64_t as,
                                       const uint16_t *b0, const uint16_t *b1, int64_t bs) {
    _tile_loadd(4, a0, as);
    _tile_loadd(6, b0, bs);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, b1, bs);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1, as);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}
/* 16 bf16 values of one row (r0) and of the next (r1) interleaved value by value: one 64-byte
 * row of a right-operand tile. */
AMX_TARGET static inline __m512i amx_interleave(__m256i r0, __m256i r1) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                         8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1));
}
/* v[r][c] <- v[c][r] for a 16 x 16 matrix of dwords: pairs of rows interleaved by dwords, then
 * by qwords (each 128-bit lane then holds 4 x 4 transposed blocks), then the lanes exchanged. */
AMX_TARGET static inline void amx_transpose16(__m512i v[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* u[g + m], lane k: rows g .. g + 3 at column 4 k + m */
        u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int m = 0; m < 4; m++) { /* row 4 k + m: lane k of u[m], u[4 + m], u[8 + m], u[12 + m] */
        __m512i a0 = _mm512_shuffle_i32x4(u[m], u[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i a1 = _mm512_shuffle_i32x4(u[m], u[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
        __m512i a2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i a3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
        v[m] = _mm512_shuffle_i32x4(a0, a2, _MM_SHUFFLE(2, 0, 2, 0));
        v[4 + m] = _mm512_shuffle_i32x4(a0, a2, _MM_SHUFFLE(3, 1, 3, 1));
        v[8 + m] = _mm512_shuffle_i32x4(a1, a3, _MM_SHUFFLE(2, 0, 2, 0));
        v[12 + m] = _mm512_shuffle_i32x4(a1, a3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}
#else
#define AMX_BUILT 0
#define AMX_TARGET
#endif

/* 1 when the CPU has AMX-BF16 (and AVX512-BF16) and Linux granted this process the tile state
 * (asked once). */
int asam_amx_supported(void);

/* Load the tile configuration on the calling thread (before its first product) and release the
 * tile state (after its last). */
void asam_amx_begin(void);
void asam_amx_end(void);

static inline int64_t asam_amx_round_up(int64_t n, int64_t m) {
    return (n + m - 1) / m * m;
}

/* Packed sizes (bf16 values) of one (batch, head) pair's K^T and V. */
static inline int64_t asam_amx_kt_size(int64_t Nk, int64_t D) {
    return asam_amx_round_up(Nk, 32) * asam_amx_round_up(D, 32);
}
static inline int64_t asam_amx_v_size(int64_t Nk, int64_t Dv) {
    return asam_amx_round_up(Nk, 32) * asam_amx_round_up(Dv, 16);
}

/* dst (AMX_ROWS, Dp) <- scale * src rows (n <= AMX_ROWS rows of D, row stride ld), rows and
 * columns beyond zero. */
void asam_amx_pack_q(const float *src, int64_t n, int64_t D, int64_t ld, float scale,
                     uint16_t *dst);
/* The operands of any tile product C = op(A) op(B), op(A) M x K, op(B) K x N, from fp32 or
 * (A16 / B16) bf16 values; ta / tb: A is stored K x M / B is stored N x K. pack_a: rows m0 ..
 * m0 + 32 of op(A) as 32 x Kp row-major (Kp = K rounded up to 32). pack_b: columns n0 .. n0 + 16
 * of op(B) as a panel of Kp / 32 tiles of 1 KiB (16 rows of K pairs x 16 columns x 2). Rows,
 * columns and K past the matrix are zero. */
void asam_amx_pack_a(int ta, int64_t M, int64_t K, const float *A, const uint16_t *A16, int64_t lda,
                     int64_t m0, int64_t Kp, uint16_t *dst);
void asam_amx_pack_b(int tb, int64_t K, int64_t N, const float *B, const uint16_t *B16, int64_t ldb,
                     int64_t n0, int64_t Kp, uint16_t *dst);
/* dst <- K (Nk, D; row stride ld) as K^T panels, one per 16 keys (asam_amx_kt_size values). */
void asam_amx_pack_kt(const float *K, int64_t Nk, int64_t D, int64_t ld, uint16_t *dst);
/* dst <- V (Nk, Dv; row stride ld) as panels, one per 16 columns, K = the keys padded to Nkp =
 * round_up(Nk, 32) (asam_amx_v_size values). */
void asam_amx_pack_v(const float *V, int64_t Nk, int64_t Dv, int64_t ld, uint16_t *dst);
/* One key chunk's online softmax step: for each row r < n of S (kc logits, row stride lds) the
 * running max m[r] takes in the chunk, P's row (stride ldp, a multiple of 32) gets
 * exp(S - m[r]) in bf16, zero past kc up to round_up(kc, 32), l[r] becomes l[r] corr[r] + the
 * row's sum, and corr[r] = exp(old m[r] - new m[r]) is the factor for the output rows already
 * accumulated (1 for a row whose keys are all masked so far). P's rows n .. AMX_ROWS are 0. */
void asam_amx_softmax_chunk(const float *S, int64_t n, int64_t kc, int64_t lds, uint16_t *P,
                            int64_t ldp, float *m, float *l, float *corr);

/* The backward's step for one key chunk of a query block: for rows r < n of the logits S and of
 * dP (kc keys, row stride lds), P = exp(S - lse[r]) and dS = P (dP - Di[r]), dS written back
 * into dP when keep_ds; P and dS in bf16 as right-operand panels (pp, dsp: one panel per 16 keys,
 * 16 * bq values apart, K = the block's rows) and dS row-major (ds16, row stride ld16). Rows n ..
 * rows (rows a multiple of 32, <= bq) and keys kc .. round_up(kc, 32) are 0 in the three bf16
 * copies. */
void asam_amx_softmax_backward(const float *S, float *dP, int64_t lds, int64_t n, int64_t rows,
                               int64_t kc, const float *lse, const float *Di, uint16_t *pp,
                               uint16_t *dsp, int64_t bq, uint16_t *ds16, int64_t ld16,
                               int keep_ds);

/* S (AMX_ROWS, kc32; row stride lds) = Q K^T for keys k0 .. k0 + kc32 (both multiples of 32);
 * Kt: the pair's packed K^T with Dp = round_up(D, 32) columns of Q. */
void asam_amx_qk(const uint16_t *Q, int64_t Dp, const uint16_t *Kt, int64_t k0, int64_t kc32,
                 float *S, int64_t lds);
/* O (AMX_ROWS, Dvp; row stride ldo, Dvp = round_up(Dv, 16)) += P (AMX_ROWS, kc32; row stride
 * ldp) V for keys k0 .. k0 + kc32; V packed by asam_amx_pack_v (Nkp: its padded key count). */
void asam_amx_pv(const uint16_t *P, int64_t ldp, const uint16_t *V, int64_t Dvp, int64_t Nkp,
                 int64_t k0, int64_t kc32, float *O, int64_t ldo);

#endif
