/* Memory-efficient scaled dot-product attention (asam_attention).
 *
 * Each (batch, head) is processed in blocks of queries (ATTN_BLOCK rows, taller when there are
 * few keys): the block's logits against all keys (one block x Nk buffer per thread, never the
 * whole Nq x Nk matrix) come from one sgemm, get the bias / relative position terms / causal
 * mask, an exact softmax over the row, then P @ V by sgemm. Only the per-row logsumexp is kept
 * for backward, which recomputes each block's P:
 *   dV += P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
 *   dQ = scale dS K, dK += scale dS^T Q, d rel_h = sum over j, d rel_w = sum over i of dS.
 * Forward: threads share out all (pair, block) items. Backward: threads split the (batch, head)
 * pairs; when that would leave threads idle, they split one pair's query blocks instead, with
 * private dK/dV accumulators summed at the end. Causal blocks only visit keys <= their last
 * query.
 * Flash forwards (one pass over key chunks with an online softmax, no block x Nk buffer): in fp32
 * on AVX-512 CPUs (gemm_tile.h) and in bf16 on AMX CPUs (amx_tile.h), each with a flash backward
 * from the same logsumexp; the blocked backward serves the other cases. */
#include "engine/blas.h"
#include "engine/engine_internal.h"
#include "engine/amx_tile.h"
#include "engine/gemm_bf16.h"
#include "engine/gemm_tile.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_BLOCK 128
#define ATTN_SCORE_FLOATS (128 * 4096) /* 2 MB score block per thread */
/* Below this many multiply-adds an attention call runs on one thread (no fork/join cost). */
#define ATTN_PARALLEL_MACS (INT64_C(1) << 18)
/* The flash forward's query block and key chunk (see attn_forward_flash). */
#define FLASH_BQ 64
#define FLASH_KC 256

/* The AMX forward's and backward's key chunk (see attn_forward_amx, attn_backward_amx): 64 and
 * 128 made the forward slower (0.029-0.030 s against 0.027 s, SD self-attention at 64x64: the
 * output's reloads per chunk cost more than the smaller logit buffer saves). */
#define AMX_KC 256

/* The flash forward runs in fp32 on CPUs with AVX-512, and in bf16 on CPUs with AMX (tests turn
 * it off to check the other path); otherwise the blocked path's products go to the GEMM of the
 * precision in use. */
int asam_attention_flash = 1;

/* Queries per block: a score block of about ATTN_SCORE_FLOATS (so few keys give tall blocks and
 * fewer, larger GEMMs), at least ATTN_BLOCK rows, at most Nq, and small enough that every
 * thread gets a block. */
static int64_t attn_block_rows(int64_t BH, int64_t Nq, int64_t Nk) {
    int64_t bq = ATTN_SCORE_FLOATS / Nk;
    if (bq < ATTN_BLOCK) bq = ATTN_BLOCK;
    if (bq > Nq) bq = Nq > 0 ? Nq : 1;
    int64_t nt = omp_get_max_threads();
    while (bq > ATTN_BLOCK && BH * ((Nq + bq - 1) / bq) < nt) bq = (bq + 1) / 2;
    return bq;
}

/* exp for the softmax (x <= 0 in practice): Cephes-style range reduction and polynomial,
 * ~2 ulp, written so that loops calling it vectorise without -ffast-math (round to nearest by
 * the 1.5*2^23 trick instead of floorf, a select on integers). exp(x < -87) = 0. */
static inline float exp_fast(float x) {
    float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n */
    bits = x < -87.0f ? 0 : bits;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return y * two_n;
}

/* max(start, row[0..n)) */
static inline float row_max(const float *row, int64_t n, float start) {
    float mx = start;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    return mx;
}

/* row[j] <- exp(row[j] - mx) for j < n; returns their sum */
static inline float row_exp_sum(float *row, int64_t n, float mx) {
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        float e = exp_fast(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    return sum;
}

typedef struct {
    int64_t B, H, Nq, Nk, D, Dv, kh, kw; /* kh = kw = 0 without relative positions */
    int64_t Bb, Hb;                      /* bias batch/head extents (1 or B/H) */
    int64_t bq;                          /* queries per block */
    float scale;
    int causal;
    const float *q, *k, *v, *bias, *rel_h, *rel_w;
    float *lse; /* (B*H*Nq) row logsumexp, saved for backward (NULL when not recording) */
    asam_tensor *tq, *tk, *tv, *trh, *trw;
    /* 0: q, k, v and the output are (B, H, N, D); 1: (B, N, H D), the heads side by side in
     * each token's row, as the projections make them (asam_attention_heads; forward only) */
    int merged;
} attn_args;

/* The rows of pair bh in a (B, H, N, w) tensor, or a (B, N, H w) one when merged; their row
 * stride (row_stride). */
static inline int64_t pair_offset(const attn_args *A, int64_t bh, int64_t N, int64_t w) {
    return A->merged ? (bh / A->H) * N * A->H * w + (bh % A->H) * w : bh * N * w;
}
static inline int64_t row_stride(const attn_args *A, int64_t w) {
    return A->merged ? A->H * w : w;
}

/* Keys a block of queries ending (exclusive) at q1 can see. */
static inline int64_t block_keys(const attn_args *A, int64_t q1) {
    return A->causal && q1 < A->Nk ? q1 : A->Nk;
}

/* The additive terms of logits S (rows q0..q1, keys k0..k1; row stride lds): bias, relative
 * position terms, and -inf on masked (causal) entries. */
static void logits_extras(const attn_args *A, int64_t bh, int64_t q0, int64_t q1, int64_t k0,
                          int64_t k1, float *S, int64_t lds) {
    if (!A->bias && !A->rel_h && !A->causal) return;
    int64_t b = bh / A->H, h = bh % A->H, nk = k1 - k0;
    for (int64_t qi = q0; qi < q1; qi++) {
        float *row = S + (qi - q0) * lds;
        if (A->bias) {
            int64_t bb = A->Bb == 1 ? 0 : b, hb = A->Hb == 1 ? 0 : h;
            const float *brow = A->bias + ((bb * A->Hb + hb) * A->Nq + qi) * A->Nk + k0;
            for (int64_t j = 0; j < nk; j++) row[j] += brow[j];
        }
        if (A->rel_h) { /* key j = i * kw + jj gets rel_h[i] + rel_w[jj] */
            const float *rh = A->rel_h + (bh * A->Nq + qi) * A->kh;
            const float *rw = A->rel_w + (bh * A->Nq + qi) * A->kw;
            for (int64_t j = k0; j < k1;) {
                int64_t i = j / A->kw, jj = j % A->kw;
                int64_t end = (i + 1) * A->kw < k1 ? (i + 1) * A->kw : k1;
                float ri = rh[i], *seg = row + (j - k0) - jj;
                for (int64_t t = jj; t < jj + (end - j); t++) seg[t] += ri + rw[t];
                j = end;
            }
        }
        if (A->causal)
            for (int64_t j = qi + 1 > k0 ? qi + 1 : k0; j < k1; j++) row[j - k0] = -INFINITY;
    }
}

/* S (nq, nk) <- the block's logits: scale q k^T + bias + rel terms; masked entries -inf. */
static void block_logits(const attn_args *A, int64_t bh, int64_t q0, int64_t q1, float *S) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1);
    const float *Q = A->q + (bh * A->Nq + q0) * A->D, *K = A->k + bh * A->Nk * A->D;
    sgemm(0, 1, nq, nk, A->D, A->scale, Q, A->D, K, A->D, 0.0f, S, nk);
    logits_extras(A, bh, q0, q1, 0, nk, S, nk);
}

/* S (nq, kc; row stride FLASH_KC) <- the logits of keys k0..k0+kc for the block's queries, from
 * this pair's K^T (D x Nk) by the tile GEMM; the flash paths' counterpart of block_logits. */
static void chunk_logits(const attn_args *A, int64_t bh, int64_t q0, int64_t q1, int64_t k0,
                         int64_t kc, const float *Kt, float *S) {
    const float *Q = A->q + (bh * A->Nq + q0) * A->D;
    asam_gemm_tile(q1 - q0, kc, A->D, A->scale, Q, A->D, 1, Kt + k0, A->Nk, 0.0f, S, FLASH_KC);
    logits_extras(A, bh, q0, q1, k0, k0 + kc, S, FLASH_KC);
}

static void attn_forward_block(const attn_args *A, int64_t bh, int64_t q0, int64_t q1, float *S,
                               float *out) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1);
    block_logits(A, bh, q0, q1, S);
    for (int64_t r = 0; r < nq; r++) {
        float *row = S + r * nk, mx = row_max(row, nk, -INFINITY);
        if (mx == -INFINITY) { /* every key masked: output 0, no gradient */
            memset(row, 0, (size_t)nk * sizeof(float));
            if (A->lse) A->lse[bh * A->Nq + q0 + r] = INFINITY;
            continue;
        }
        float sum = row_exp_sum(row, nk, mx);
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < nk; j++) row[j] *= inv;
        if (A->lse) A->lse[bh * A->Nq + q0 + r] = mx + logf(sum);
    }
    const float *V = A->v + bh * A->Nk * A->Dv;
    sgemm(0, 0, nq, A->Dv, nk, 1.0f, S, nk, V, A->Dv, 0.0f, out + (bh * A->Nq + q0) * A->Dv, A->Dv);
}

/* The online softmax step of one key chunk (the fp32 flash forward, on AVX-512): S's rows (kc
 * logits, row stride lds) become exp(S - m), each row's running max m and sum l move on, and the
 * output rows already accumulated (O, row stride ldo, Dv columns) are rescaled when m grows. */
static void online_softmax(float *S, int64_t nq, int64_t kc, int64_t lds, int first, float *O,
                           int64_t ldo, int64_t Dv, float *m, float *l) {
    for (int64_t r = 0; r < nq; r++) {
        float *row = S + r * lds, mx = asam_row_max16(row, kc, m[r]);
        if (mx == -INFINITY) { /* every key so far masked: this chunk adds nothing */
            memset(row, 0, (size_t)kc * sizeof(float));
            continue;
        }
        float sum = asam_row_exp_sum16(row, kc, mx);
        float corr = exp_fast(m[r] - mx); /* 0 on the first chunk (m = -inf) */
        if (!first && corr != 1.0f)
            for (int64_t c = 0; c < Dv; c++) O[r * ldo + c] *= corr;
        l[r] = l[r] * corr + sum;
        m[r] = mx;
    }
}

/* out's rows (Dv columns) <- O / l, and each row's logsumexp m + log l for backward. */
static void flash_finish(const attn_args *A, int64_t bh, int64_t q0, int64_t nq, const float *O,
                         int64_t ldo, const float *m, const float *l, float *out) {
    int64_t Dv = A->Dv, ld = row_stride(A, Dv);
    float *dst = out + pair_offset(A, bh, A->Nq, Dv) + q0 * ld;
    for (int64_t r = 0; r < nq; r++) {
        if (l[r] == 0) { /* every key masked: output 0, no gradient */
            memset(dst + r * ld, 0, (size_t)Dv * sizeof(float));
            if (A->lse) A->lse[bh * A->Nq + q0 + r] = INFINITY;
            continue;
        }
        float inv = 1.0f / l[r];
        for (int64_t c = 0; c < Dv; c++) dst[r * ld + c] = O[r * ldo + c] * inv;
        if (A->lse) A->lse[bh * A->Nq + q0 + r] = m[r] + logf(l[r]);
    }
}

/* Flash-style forward of one query block (the fp32 path on AVX-512 CPUs): keys go in chunks of
 * FLASH_KC, each chunk's logits (FLASH_BQ x FLASH_KC, in L2 with the chunk's K^T and V) come from
 * the tile GEMM, an online softmax keeps each row's running max m and sum l, rescaling the
 * output rows already accumulated when m grows, and P V is added into the output, which is
 * divided by l at the end. Kt: this pair's K transposed (D x Nk). S: FLASH_BQ x FLASH_KC,
 * ml: 2 x FLASH_BQ scratch. */
static void attn_forward_flash(const attn_args *A, int64_t bh, int64_t q0, int64_t q1,
                               const float *Kt, float *S, float *ml, float *out) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1), Dv = A->Dv;
    const float *V = A->v + bh * A->Nk * Dv;
    float *O = out + (bh * A->Nq + q0) * Dv, *m = ml, *l = ml + FLASH_BQ;
    for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0;
    for (int64_t k0 = 0; k0 < nk; k0 += FLASH_KC) {
        int64_t kc = nk - k0 < FLASH_KC ? nk - k0 : FLASH_KC;
        chunk_logits(A, bh, q0, q1, k0, kc, Kt, S);
        online_softmax(S, nq, kc, FLASH_KC, k0 == 0, O, Dv, Dv, m, l);
        asam_gemm_tile(nq, Dv, kc, 1.0f, S, FLASH_KC, 1, V + k0 * Dv, Dv, k0 > 0 ? 1.0f : 0.0f, O,
                       Dv);
    }
    flash_finish(A, bh, q0, nq, O, Dv, m, l, out);
}

/* The fp32 flash forward of one block of FLASH_BQ queries at most, in the column layout: the
 * logits of a key chunk are formed transposed, St (keys x queries) = scale K Q^T, so each
 * query's softmax runs down a column with vector operations (asam_flash_cols_softmax) and the
 * output accumulates transposed, O^T (Dv x queries) += V^T P^T. Both products are then 64
 * columns wide, four full vectors, whatever the head size (SD's 40 would waste a sixth of the
 * row layout's P V product on padding), and K and V are read in place (no K^T copy; heads side
 * by side too). Taken when the logits have no extras (bias, relative terms, causal mask).
 * w: cols_scratch_floats(D, Dv) floats. */
static int64_t cols_scratch_floats(int64_t D, int64_t Dv) {
    return FLASH_BQ * (D + FLASH_KC + Dv + 2);
}

static void attn_forward_cols(const attn_args *A, int64_t bh, int64_t q0, int64_t q1, float *w,
                              float *out) {
    int64_t nq = q1 - q0, D = A->D, Dv = A->Dv, Nk = A->Nk;
    int64_t ldq = row_stride(A, D), ldk = ldq, ldv = row_stride(A, Dv), ldo = ldv;
    const float *Q = A->q + pair_offset(A, bh, A->Nq, D) + q0 * ldq;
    const float *K = A->k + pair_offset(A, bh, Nk, D);
    const float *V = A->v + pair_offset(A, bh, Nk, Dv);
    float *Qt = w, *St = Qt + D * FLASH_BQ, *Ot = St + FLASH_KC * FLASH_BQ;
    float *m = Ot + Dv * FLASH_BQ, *l = m + FLASH_BQ;
    for (int64_t j = 0; j < nq; j++) {
        for (int64_t d = 0; d < D; d++) Qt[d * FLASH_BQ + j] = Q[j * ldq + d];
        m[j] = -INFINITY, l[j] = 0;
    }
    for (int64_t k0 = 0; k0 < Nk; k0 += FLASH_KC) {
        int64_t kc = Nk - k0 < FLASH_KC ? Nk - k0 : FLASH_KC;
        asam_gemm_tile(kc, nq, D, A->scale, K + k0 * ldk, ldk, 1, Qt, FLASH_BQ, 0.0f, St, FLASH_BQ);
        asam_flash_cols_softmax(St, kc, FLASH_BQ, nq, m, l, Ot, Dv, FLASH_BQ, k0 == 0);
        asam_gemm_tile(Dv, nq, kc, 1.0f, V + k0 * ldv, 1, ldv, St, FLASH_BQ, k0 > 0 ? 1.0f : 0.0f,
                       Ot, FLASH_BQ);
    }
    float *dst = out + pair_offset(A, bh, A->Nq, Dv) + q0 * ldo;
    for (int64_t j = 0; j < nq; j++) {
        float inv = l[j] > 0 ? 1.0f / l[j] : 0.0f; /* 0: logits all -inf, output 0 */
        for (int64_t c = 0; c < Dv; c++) dst[j * ldo + c] = Ot[c * FLASH_BQ + j] * inv;
        if (A->lse) A->lse[bh * A->Nq + q0 + j] = l[j] > 0 ? m[j] + logf(l[j]) : INFINITY;
    }
}

/* The column-layout forward over every (pair, query block), blocks shared out among the
 * threads. Returns -1 when the arena is out of memory. */
static int attention_forward_cols(asam_ctx *ctx, const attn_args *A, int par, int nt, float *out) {
    int64_t BH = A->B * A->H, nblk = (A->Nq + FLASH_BQ - 1) / FLASH_BQ, items = BH * nblk;
    int64_t per_thread = cols_scratch_floats(A->D, A->Dv);
    float *scratch = asam_ctx_alloc(ctx, (size_t)(per_thread * nt) * sizeof(float));
    if (!scratch) return -1;
#pragma omp parallel for schedule(dynamic) if (par)
    for (int64_t it = 0; it < items; it++) {
        int64_t bh = it / nblk, q0 = it % nblk * FLASH_BQ;
        int64_t q1 = q0 + FLASH_BQ < A->Nq ? q0 + FLASH_BQ : A->Nq;
        attn_forward_cols(A, bh, q0, q1, scratch + omp_get_thread_num() * per_thread, out);
    }
    return 0;
}

/* Per-thread scratch of the AMX forward. */
typedef struct {
    float *S;     /* AMX_ROWS x AMX_KC logits */
    float *O;     /* AMX_ROWS x Dvp output accumulator */
    float *ml;    /* 3 x AMX_ROWS running max, sum and rescaling factor */
    uint16_t *P;  /* AMX_ROWS x AMX_KC probabilities in bf16 */
    uint16_t *Qp; /* AMX_ROWS x Dp scaled queries in bf16 */
} amx_scratch;

/* The flash forward of one block of AMX_ROWS queries at most under bf16 on AMX CPUs: the same
 * steps as attn_forward_flash, with Q K^T and P V on the tile unit (amx_tile.h) from this
 * pair's packed K^T (kt) and V (vp). Q is scaled before it is rounded to bf16, as P is rounded
 * before P V: the products of the blocked bf16 path, rounded at slightly different points. */
static void attn_forward_amx(const attn_args *A, int64_t bh, int64_t q0, int64_t q1,
                             const uint16_t *kt, const uint16_t *vp, const amx_scratch *w,
                             float *out) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1), Dv = A->Dv;
    int64_t Dp = asam_amx_round_up(A->D, 32), Dvp = asam_amx_round_up(Dv, 16);
    float *m = w->ml, *l = w->ml + AMX_ROWS, *corr = w->ml + 2 * AMX_ROWS;
    int64_t ldq = row_stride(A, A->D);
    asam_amx_pack_q(A->q + pair_offset(A, bh, A->Nq, A->D) + q0 * ldq, nq, A->D, ldq, A->scale,
                    w->Qp);
    memset(w->O, 0, (size_t)(AMX_ROWS * Dvp) * sizeof(float));
    for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0;
    for (int64_t k0 = 0; k0 < nk; k0 += AMX_KC) {
        int64_t kc = nk - k0 < AMX_KC ? nk - k0 : AMX_KC, kc32 = asam_amx_round_up(kc, 32);
        asam_amx_qk(w->Qp, Dp, kt, k0, kc32, w->S, AMX_KC);
        logits_extras(A, bh, q0, q1, k0, k0 + kc, w->S, AMX_KC);
        asam_amx_softmax_chunk(w->S, nq, kc, AMX_KC, w->P, AMX_KC, m, l, corr);
        for (int64_t r = 0; k0 > 0 && r < nq; r++)
            if (corr[r] != 1.0f)
                for (int64_t c = 0; c < Dv; c++) w->O[r * Dvp + c] *= corr[r];
        asam_amx_pv(w->P, AMX_KC, vp, Dvp, asam_amx_round_up(A->Nk, 32), k0, kc32, w->O, Dvp);
    }
    flash_finish(A, bh, q0, nq, w->O, Dvp, m, l, out);
}

/* Di[r] = rowsum(dO * O) for the block's rows (the softmax backward's correction term). */
static void block_dot_rows(const float *dO, const float *O, int64_t nq, int64_t Dv, float *Di) {
    for (int64_t r = 0; r < nq; r++) {
        float d = 0;
        for (int64_t c = 0; c < Dv; c++) d += dO[r * Dv + c] * O[r * Dv + c];
        Di[r] = d;
    }
}

typedef struct {
    const float *out, *dout;
    float *dq, *dk, *dv, *drh, *drw; /* NULL where no gradient is needed */
    /* Under the bf16 backend: q, k, v and dout rounded to bf16 once for every block's products
     * (the blocked path's GEMMs would round them again per block), else NULL. */
    const uint16_t *q16, *k16, *v16, *dout16;
    /* dq, dk, dv are new unzeroed buffers that the AMX backward stores into (each element
     * once) instead of adding */
    int dq_fresh, dk_fresh, dv_fresh;
} attn_grads;

/* C (M, N) = alpha op(A) op(B) + beta C with either operand given in bf16 (a16 / b16, the
 * layout a / b would have) on the bf16 backend; the same product as asam_gemm of the values
 * they were rounded from. */
static void gemm_b16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const uint16_t *a16, int64_t lda, const uint16_t *b16, int64_t ldb, float beta,
                     float *C, int64_t ldc) {
    asam_backend_current->gemm16(ta, tb, M, N, K, alpha, NULL, a16, lda, NULL, b16, ldb, beta, C,
                                 ldc);
}

/* One block's backward; dK/dV go to dk_acc/dv_acc (this pair's rows, or a thread's copy).
 * S, dP: (bq * Nk) scratch; Di: (bq). */
static void attn_backward_block(const attn_args *A, const attn_grads *G, int64_t bh, int64_t q0,
                                int64_t q1, float *S, float *dP, float *Di, uint16_t *h16,
                                float *dk_acc, float *dv_acc) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1), D = A->D, Dv = A->Dv;
    const uint16_t *q16 = NULL, *k16 = NULL, *v16 = NULL, *do16 = NULL;
    if (G->q16) {
        q16 = G->q16 + (bh * A->Nq + q0) * D, k16 = G->k16 + bh * A->Nk * D;
        v16 = G->v16 + bh * A->Nk * Dv, do16 = G->dout16 + (bh * A->Nq + q0) * Dv;
        gemm_b16(0, 1, nq, nk, D, A->scale, q16, D, k16, D, 0.0f, S, nk);
        logits_extras(A, bh, q0, q1, 0, nk, S, nk);
    } else {
        block_logits(A, bh, q0, q1, S);
    }
    const float *dO = G->dout + (bh * A->Nq + q0) * Dv, *O = G->out + (bh * A->Nq + q0) * Dv;
    for (int64_t r = 0; r < nq; r++) {
        float *row = S + r * nk, l = A->lse[bh * A->Nq + q0 + r];
#pragma omp simd
        for (int64_t j = 0; j < nk; j++) row[j] = exp_fast(row[j] - l); /* P; masked -> 0 */
    }
    block_dot_rows(dO, O, nq, Dv, Di);
    const float *Q = A->q + (bh * A->Nq + q0) * D, *K = A->k + bh * A->Nk * D;
    const float *V = A->v + bh * A->Nk * Dv;
    if (q16) { /* P once in bf16 for dV; dO and V already are */
        asam_bf16_convert(S, nq, nk, nk, h16);
        if (dv_acc) gemm_b16(1, 0, nk, Dv, nq, 1.0f, h16, nk, do16, Dv, 1.0f, dv_acc, Dv);
    } else if (dv_acc) {
        sgemm(1, 0, nk, Dv, nq, 1.0f, S, nk, dO, Dv, 1.0f, dv_acc, Dv);
    }
    if (!G->dq && !dk_acc && !G->drh && !G->drw) return;
    if (q16)
        gemm_b16(0, 1, nq, nk, Dv, 1.0f, do16, Dv, v16, Dv, 0.0f, dP, nk);
    else
        sgemm(0, 1, nq, nk, Dv, 1.0f, dO, Dv, V, Dv, 0.0f, dP, nk);
    for (int64_t r = 0; r < nq; r++) {
        float *ds = dP + r * nk;
        const float *p = S + r * nk;
        float d = Di[r];
#pragma omp simd
        for (int64_t j = 0; j < nk; j++) ds[j] = p[j] * (ds[j] - d);
        int64_t qi = q0 + r;
        if (G->drh) {
            float *g = G->drh + (bh * A->Nq + qi) * A->kh;
            for (int64_t i = 0; i < A->kh; i++) {
                float s = 0;
#pragma omp simd reduction(+ : s)
                for (int64_t j = 0; j < A->kw; j++) s += ds[i * A->kw + j];
                g[i] += s;
            }
        }
        if (G->drw) {
            float *g = G->drw + (bh * A->Nq + qi) * A->kw;
            for (int64_t i = 0; i < A->kh; i++)
                for (int64_t j = 0; j < A->kw; j++) g[j] += ds[i * A->kw + j];
        }
    }
    if (q16) { /* dS once in bf16 for both dQ and dK */
        asam_bf16_convert(dP, nq, nk, nk, h16);
        if (G->dq)
            gemm_b16(0, 0, nq, D, nk, A->scale, h16, nk, k16, D, 1.0f,
                     G->dq + (bh * A->Nq + q0) * D, D);
        if (dk_acc) gemm_b16(1, 0, nk, D, nq, A->scale, h16, nk, q16, D, 1.0f, dk_acc, D);
        return;
    }
    if (G->dq)
        sgemm(0, 0, nq, D, nk, A->scale, dP, nk, K, D, 1.0f, G->dq + (bh * A->Nq + q0) * D, D);
    if (dk_acc) sgemm(1, 0, nk, D, nq, A->scale, dP, nk, Q, D, 1.0f, dk_acc, D);
}

/* The relative-position gradients of one row's dS over keys k0..k1: key j = i * kw + jj adds
 * ds[j - k0] to d rel_h[i] and d rel_w[jj]. */
static void rel_grads(const attn_args *A, const float *ds, int64_t k0, int64_t k1, float *grh,
                      float *grw) {
    for (int64_t j = k0; j < k1;) {
        int64_t i = j / A->kw, jj = j % A->kw;
        int64_t end = (i + 1) * A->kw < k1 ? (i + 1) * A->kw : k1;
        const float *seg = ds + (j - k0) - jj;
        float s = 0;
        for (int64_t t = jj; t < jj + (end - j); t++) {
            s += seg[t];
            if (grw) grw[t] += seg[t];
        }
        if (grh) grh[i] += s;
        j = end;
    }
}

/* Flash-style backward of one query block (FLASH_BQ rows at most): key chunks of FLASH_KC, each
 * chunk's P, dP and dS in L2, the products by the tile GEMM. Kt, Vt: this pair's K and V
 * transposed (D x Nk, Dv x Nk). S, dP: FLASH_BQ x FLASH_KC scratch; Di: FLASH_BQ. */
static void attn_backward_flash(const attn_args *A, const attn_grads *G, int64_t bh, int64_t q0,
                                int64_t q1, const float *Kt, const float *Vt, float *S, float *dP,
                                float *Di, float *dk_acc, float *dv_acc) {
    int64_t nq = q1 - q0, nk = block_keys(A, q1), D = A->D, Dv = A->Dv, Nk = A->Nk;
    const float *dO = G->dout + (bh * A->Nq + q0) * Dv, *O = G->out + (bh * A->Nq + q0) * Dv;
    const float *Q = A->q + (bh * A->Nq + q0) * D, *K = A->k + bh * Nk * D;
    const float *lse = A->lse + bh * A->Nq + q0;
    int need_ds = G->dq || dk_acc || G->drh || G->drw;
    block_dot_rows(dO, O, nq, Dv, Di);
    for (int64_t k0 = 0; k0 < nk; k0 += FLASH_KC) {
        int64_t kc = nk - k0 < FLASH_KC ? nk - k0 : FLASH_KC;
        chunk_logits(A, bh, q0, q1, k0, kc, Kt, S);
        for (int64_t r = 0; r < nq; r++) {
            float *row = S + r * FLASH_KC, l = lse[r];
#pragma omp simd
            for (int64_t j = 0; j < kc; j++) row[j] = exp_fast(row[j] - l); /* P; masked -> 0 */
        }
        /* dV[chunk] += P^T dO */
        if (dv_acc)
            asam_gemm_tile(kc, Dv, nq, 1.0f, S, 1, FLASH_KC, dO, Dv, 1.0f, dv_acc + k0 * Dv, Dv);
        if (!need_ds) continue;
        /* dP = dO V^T, then dS = P (dP - Di) in place */
        asam_gemm_tile(nq, kc, Dv, 1.0f, dO, Dv, 1, Vt + k0, Nk, 0.0f, dP, FLASH_KC);
        for (int64_t r = 0; r < nq; r++) {
            float *ds = dP + r * FLASH_KC, d = Di[r];
            const float *p = S + r * FLASH_KC;
#pragma omp simd
            for (int64_t j = 0; j < kc; j++) ds[j] = p[j] * (ds[j] - d);
            if (G->drh || G->drw) {
                int64_t qi = q0 + r;
                rel_grads(A, ds, k0, k0 + kc, G->drh ? G->drh + (bh * A->Nq + qi) * A->kh : NULL,
                          G->drw ? G->drw + (bh * A->Nq + qi) * A->kw : NULL);
            }
        }
        /* dQ += scale dS K[chunk], dK[chunk] += scale dS^T Q */
        if (G->dq)
            asam_gemm_tile(nq, D, kc, A->scale, dP, FLASH_KC, 1, K + k0 * D, D, 1.0f,
                           G->dq + (bh * A->Nq + q0) * D, D);
        if (dk_acc)
            asam_gemm_tile(kc, D, nq, A->scale, dP, 1, FLASH_KC, Q, D, 1.0f, dk_acc + k0 * D, D);
    }
}

/* Which forward/backward kernels run: the flash ones in fp32 on AVX-512 CPUs. */
static int use_flash(void) {
    return asam_attention_flash && asam_get_precision() == ASAM_FP32 && asam_gemm_tile_supported();
}

/* The AMX flash forward under bf16 (its backward is the blocked one, from the same logsumexp). */
static int use_amx(void) {
    return asam_attention_flash && asam_get_precision() == ASAM_BF16 && asam_amx_supported();
}

/* The AMX forward over every (pair, query block): each pair's K^T and V packed once, then the
 * blocks shared out among the threads, each with its scratch and tile configuration. Returns -1
 * when the arena is out of memory. */
static int attention_forward_amx(asam_ctx *ctx, const attn_args *A, int par, int nt, float *out) {
    int64_t BH = A->B * A->H, nblk = (A->Nq + AMX_ROWS - 1) / AMX_ROWS, items = BH * nblk;
    int64_t kts = asam_amx_kt_size(A->Nk, A->D), vs = asam_amx_v_size(A->Nk, A->Dv);
    int64_t Dp = asam_amx_round_up(A->D, 32), Dvp = asam_amx_round_up(A->Dv, 16);
    int64_t floats = AMX_ROWS * (AMX_KC + Dvp + 3), halves = AMX_ROWS * (AMX_KC + Dp);
    uint16_t *kt = asam_ctx_alloc(ctx, (size_t)(BH * (kts + vs)) * sizeof(uint16_t));
    float *f = asam_ctx_alloc(ctx, (size_t)(floats * nt) * sizeof(float));
    uint16_t *h = asam_ctx_alloc(ctx, (size_t)(halves * nt) * sizeof(uint16_t));
    if (!kt || !f || !h) return -1;
    uint16_t *vp = kt + BH * kts;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        asam_amx_pack_kt(A->k + pair_offset(A, bh, A->Nk, A->D), A->Nk, A->D, row_stride(A, A->D),
                         kt + bh * kts);
        asam_amx_pack_v(A->v + pair_offset(A, bh, A->Nk, A->Dv), A->Nk, A->Dv, row_stride(A, A->Dv),
                        vp + bh * vs);
    }
#pragma omp parallel if (par)
    {
        int t = omp_get_thread_num();
        float *ft = f + t * floats;
        amx_scratch w = {ft, ft + AMX_ROWS * AMX_KC, ft + AMX_ROWS * (AMX_KC + Dvp), h + t * halves,
                         h + t * halves + AMX_ROWS * AMX_KC};
        asam_amx_begin();
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < items; it++) {
            int64_t bh = it / nblk, q0 = it % nblk * AMX_ROWS;
            int64_t q1 = q0 + AMX_ROWS < A->Nq ? q0 + AMX_ROWS : A->Nq;
            attn_forward_amx(A, bh, q0, q1, kt + bh * kts, vp + bh * vs, &w, out);
        }
        asam_amx_end();
    }
    return 0;
}

/* The AMX backward's query block: a multiple of AMX_ROWS, the inner dimension of the dK and dV
 * products (see attn_backward_amx). Measured on SD self-attention (1,8,4096,40) fwd+bwd: 128
 * rows 0.127 s, 256 rows 0.110 s, 512 rows 0.127 s (its 2 x 512 KiB of logits leave L2). */
#define AMX_BQ 256

/* Sizes of the AMX backward's operands for one attention call. */
typedef struct {
    int64_t Dp, Dvp, Dq, Nkp; /* D, Dv padded to 32, D padded to 16, Nk padded to 32 */
    int64_t kts, vts, kvs;    /* one pair's packed K^T, V^T and K (bf16 values) */
    int64_t floats, halves;   /* one thread's scratch */
} amx_bwd_dims;

static amx_bwd_dims amx_bwd_dims_of(const attn_args *A) {
    amx_bwd_dims d;
    d.Dp = asam_amx_round_up(A->D, 32), d.Dvp = asam_amx_round_up(A->Dv, 32);
    d.Dq = asam_amx_round_up(A->D, 16), d.Nkp = asam_amx_round_up(A->Nk, 32);
    d.kts = asam_amx_kt_size(A->Nk, A->D), d.vts = asam_amx_kt_size(A->Nk, A->Dv);
    d.kvs = asam_amx_v_size(A->Nk, A->D);
    d.floats = 2 * AMX_BQ * AMX_KC + AMX_BQ * d.Dq + AMX_BQ + (d.Dp + d.Dvp) * d.Nkp;
    d.halves = 2 * AMX_BQ * (d.Dp + d.Dvp) + 3 * AMX_BQ * AMX_KC;
    return d;
}

/* Per-thread scratch of the AMX backward. */
typedef struct {
    float *S, *dP;      /* AMX_BQ x AMX_KC: logits -> P, dP -> dS (fp32) */
    float *dQ;          /* AMX_BQ x Dq: the block's dQ / scale */
    float *Di;          /* AMX_BQ: rowsum(dO * O) */
    float *dKT;         /* Dp x Nkp: the pair's dK^T / scale, then Dvp x Nkp: its dV^T */
    uint16_t *Qp, *dOp; /* AMX_BQ x Dp scaled Q, AMX_BQ x Dvp dO: left operands of S and dP */
    uint16_t *QT, *dOT; /* Dp x AMX_BQ Q^T, Dvp x AMX_BQ dO^T: left operands of dK^T and dV^T */
    uint16_t *Pp, *dSp; /* P and dS as right-operand panels, AMX_KC / 16 of 16 x AMX_BQ */
    uint16_t *dS16;     /* AMX_BQ x AMX_KC dS: left operand of dQ */
} amx_bwd_scratch;

static amx_bwd_scratch amx_bwd_scratch_at(const amx_bwd_dims *d, float *f, uint16_t *h) {
    amx_bwd_scratch w;
    w.S = f, w.dP = w.S + AMX_BQ * AMX_KC, w.dQ = w.dP + AMX_BQ * AMX_KC;
    w.Di = w.dQ + AMX_BQ * d->Dq, w.dKT = w.Di + AMX_BQ;
    w.Qp = h, w.dOp = w.Qp + AMX_BQ * d->Dp, w.QT = w.dOp + AMX_BQ * d->Dvp;
    w.dOT = w.QT + AMX_BQ * d->Dp, w.Pp = w.dOT + AMX_BQ * d->Dvp;
    w.dSp = w.Pp + AMX_BQ * AMX_KC, w.dS16 = w.dSp + AMX_BQ * AMX_KC;
    return w;
}

/* The flash backward of one block of AMX_BQ queries at most under bf16 on AMX CPUs, over key
 * chunks of AMX_KC: S = Q K^T and dP = dO V^T recomputed on tiles (Q scaled before rounding, as
 * in attn_forward_amx, so P matches the forward's logsumexp), P and dS = P (dP - Di) by
 * asam_amx_softmax_backward, then dQ += dS K[chunk] (inner dimension: the chunk's keys) and,
 * transposed so that their inner dimension is the block's AMX_BQ queries, dK^T[chunk] += Q^T dS
 * and dV^T[chunk] += dO^T P into the pair's accumulators (w->dKT; scale applied when they are
 * flushed). kt, vt, kv: this pair's K^T, V^T and K packed for the tiles. */
static void attn_backward_amx(const attn_args *A, const attn_grads *G, const amx_bwd_dims *d,
                              int64_t bh, int64_t q0, int64_t q1, const uint16_t *kt,
                              const uint16_t *vt, const uint16_t *kv, const amx_bwd_scratch *w) {
    int64_t nq = q1 - q0, nq32 = asam_amx_round_up(nq, 32), nk = block_keys(A, q1);
    int64_t D = A->D, Dv = A->Dv, Dp = d->Dp, Dvp = d->Dvp, Dq = d->Dq, Nkp = d->Nkp;
    const float *Q = A->q + (bh * A->Nq + q0) * D, *lse = A->lse + bh * A->Nq + q0;
    const float *dO = G->dout + (bh * A->Nq + q0) * Dv, *O = G->out + (bh * A->Nq + q0) * Dv;
    float *dVT = w->dKT + Dp * Nkp;
    block_dot_rows(dO, O, nq, Dv, w->Di);
    for (int64_t r0 = 0; r0 < nq32; r0 += AMX_ROWS) {
        int64_t n = nq - r0 < AMX_ROWS ? nq - r0 : AMX_ROWS;
        asam_amx_pack_q(Q + r0 * D, n, D, D, A->scale, w->Qp + r0 * Dp);
        asam_amx_pack_q(dO + r0 * Dv, n, Dv, Dv, 1.0f, w->dOp + r0 * Dvp);
    }
    for (int64_t c0 = 0; G->dk && c0 < Dp; c0 += 32)
        asam_amx_pack_a(1, D, nq, Q, NULL, D, c0, AMX_BQ, w->QT + c0 * AMX_BQ);
    for (int64_t c0 = 0; G->dv && c0 < Dvp; c0 += 32)
        asam_amx_pack_a(1, Dv, nq, dO, NULL, Dv, c0, AMX_BQ, w->dOT + c0 * AMX_BQ);
    if (G->dq) memset(w->dQ, 0, (size_t)(nq32 * Dq) * sizeof(float));
    for (int64_t k0 = 0; k0 < nk; k0 += AMX_KC) {
        int64_t kc = nk - k0 < AMX_KC ? nk - k0 : AMX_KC, kc32 = asam_amx_round_up(kc, 32);
        for (int64_t r0 = 0; r0 < nq32; r0 += AMX_ROWS) {
            asam_amx_qk(w->Qp + r0 * Dp, Dp, kt, k0, kc32, w->S + r0 * AMX_KC, AMX_KC);
            asam_amx_qk(w->dOp + r0 * Dvp, Dvp, vt, k0, kc32, w->dP + r0 * AMX_KC, AMX_KC);
        }
        logits_extras(A, bh, q0, q1, k0, k0 + kc, w->S, AMX_KC);
        asam_amx_softmax_backward(w->S, w->dP, AMX_KC, nq, nq32, kc, lse, w->Di, w->Pp, w->dSp,
                                  AMX_BQ, w->dS16, AMX_KC, G->drh || G->drw);
        for (int64_t r = 0; (G->drh || G->drw) && r < nq; r++) {
            int64_t qi = q0 + r;
            rel_grads(A, w->dP + r * AMX_KC, k0, k0 + kc,
                      G->drh ? G->drh + (bh * A->Nq + qi) * A->kh : NULL,
                      G->drw ? G->drw + (bh * A->Nq + qi) * A->kw : NULL);
        }
        /* dV^T[chunk] += dO^T P, dK^T[chunk] += Q^T dS: 32 rows of D at a time */
        for (int64_t c0 = 0; G->dv && c0 < Dvp; c0 += 32)
            asam_amx_pv(w->dOT + c0 * AMX_BQ, AMX_BQ, w->Pp, kc32, AMX_BQ, 0, nq32,
                        dVT + c0 * Nkp + k0, Nkp);
        for (int64_t c0 = 0; G->dk && c0 < Dp; c0 += 32)
            asam_amx_pv(w->QT + c0 * AMX_BQ, AMX_BQ, w->dSp, kc32, AMX_BQ, 0, nq32,
                        w->dKT + c0 * Nkp + k0, Nkp);
        for (int64_t r0 = 0; G->dq && r0 < nq32; r0 += AMX_ROWS)
            asam_amx_pv(w->dS16 + r0 * AMX_KC, AMX_KC, kv, Dq, Nkp, k0, kc32, w->dQ + r0 * Dq, Dq);
    }
    for (int64_t r = 0; G->dq && r < nq; r++) {
        float *dq = G->dq + (bh * A->Nq + q0 + r) * D;
        for (int64_t c = 0; c < D; c++)
            dq[c] = (G->dq_fresh ? 0.0f : dq[c]) + A->scale * w->dQ[r * Dq + c];
    }
}

/* Pair bh's dK and dV rows j0 .. j1 += the sum of nth threads' transposed accumulators (the t-th
 * at acc + t * stride: Dp rows of dK^T / scale, then Dvp rows of dV^T, each Nkp long). */
static void amx_flush_kv(const attn_args *A, const attn_grads *G, const amx_bwd_dims *d, int64_t bh,
                         const float *acc, int64_t stride, int nth, int64_t j0, int64_t j1) {
    int64_t Nk = A->Nk, Nkp = d->Nkp;
    for (int part = 0; part < 2; part++) {
        float *g = part ? G->dv : G->dk;
        int fresh = part ? G->dv_fresh : G->dk_fresh;
        if (!g) continue;
        int64_t cols = part ? A->Dv : A->D, row0 = part ? d->Dp : 0;
        float mul = part ? 1.0f : A->scale;
        g += bh * Nk * cols;
        for (int64_t c = 0; c < cols; c++) {
            const float *a = acc + (row0 + c) * Nkp;
            for (int64_t j = j0; j < j1; j++) {
                float s = 0;
                for (int t = 0; t < nth; t++) s += a[t * stride + j];
                g[j * cols + c] = (fresh ? 0.0f : g[j * cols + c]) + mul * s;
            }
        }
    }
}

/* The AMX backward over every (pair, query block): each pair's K^T, V^T and K packed once, then
 * the pairs shared out among the threads, or, when that would leave threads idle, one pair's
 * blocks at a time with each thread's dK / dV accumulators summed at the end. Returns -1 when
 * the arena is out of memory. */
static int attention_backward_amx(asam_ctx *ctx, const attn_args *A, const attn_grads *G, int par,
                                  int nt, int split_blocks) {
    int64_t BH = A->B * A->H, Nq = A->Nq, nblk = (Nq + AMX_BQ - 1) / AMX_BQ;
    amx_bwd_dims d = amx_bwd_dims_of(A);
    int64_t packs = d.kts + d.vts + d.kvs, acc = (d.Dp + d.Dvp) * d.Nkp;
    uint16_t *pk = asam_ctx_alloc(ctx, (size_t)(BH * packs) * sizeof(uint16_t));
    float *f = asam_ctx_alloc(ctx, (size_t)(d.floats * nt) * sizeof(float));
    uint16_t *h = asam_ctx_alloc(ctx, (size_t)(d.halves * nt) * sizeof(uint16_t));
    if (!pk || !f || !h) return -1;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        uint16_t *p = pk + bh * packs;
        asam_amx_pack_kt(A->k + bh * A->Nk * A->D, A->Nk, A->D, A->D, p);
        asam_amx_pack_kt(A->v + bh * A->Nk * A->Dv, A->Nk, A->Dv, A->Dv, p + d.kts);
        asam_amx_pack_v(A->k + bh * A->Nk * A->D, A->Nk, A->D, A->D, p + d.kts + d.vts);
    }
    if (!split_blocks) {
#pragma omp parallel if (par)
        {
            int t = omp_get_thread_num();
            amx_bwd_scratch w = amx_bwd_scratch_at(&d, f + t * d.floats, h + t * d.halves);
            asam_amx_begin();
#pragma omp for schedule(dynamic)
            for (int64_t bh = 0; bh < BH; bh++) {
                const uint16_t *p = pk + bh * packs;
                memset(w.dKT, 0, (size_t)acc * sizeof(float));
                for (int64_t q0 = 0; q0 < Nq; q0 += AMX_BQ)
                    attn_backward_amx(A, G, &d, bh, q0, q0 + AMX_BQ < Nq ? q0 + AMX_BQ : Nq, p,
                                      p + d.kts, p + d.kts + d.vts, &w);
                amx_flush_kv(A, G, &d, bh, w.dKT, 0, 1, 0, A->Nk);
            }
            asam_amx_end();
        }
        return 0;
    }
    for (int64_t bh = 0; bh < BH; bh++) {
        const uint16_t *p = pk + bh * packs;
#pragma omp parallel
        {
            int t = omp_get_thread_num(), nth = omp_get_num_threads();
            amx_bwd_scratch w = amx_bwd_scratch_at(&d, f + t * d.floats, h + t * d.halves);
            memset(w.dKT, 0, (size_t)acc * sizeof(float));
            asam_amx_begin();
#pragma omp for schedule(dynamic)
            for (int64_t blk = 0; blk < nblk; blk++) {
                int64_t q0 = blk * AMX_BQ, q1 = q0 + AMX_BQ < Nq ? q0 + AMX_BQ : Nq;
                attn_backward_amx(A, G, &d, bh, q0, q1, p, p + d.kts, p + d.kts + d.vts, &w);
            }
            asam_amx_end();
            /* implicit barrier: each thread sums a range of keys over the threads' copies */
            int64_t per = (A->Nk + nth - 1) / nth, j0 = t * per;
            int64_t j1 = j0 + per < A->Nk ? j0 + per : A->Nk;
            amx_bwd_scratch w0 = amx_bwd_scratch_at(&d, f, h);
            if (j0 < j1) amx_flush_kv(A, G, &d, bh, w0.dKT, d.floats, nth, j0, j1);
        }
    }
    return 0;
}

/* dst (BH, cols, N) <- src (BH, N, cols) transposed per pair: K^T and V^T for the tile GEMM. */
static void transpose_pairs(const float *src, float *dst, int64_t BH, int64_t N, int64_t cols,
                            int par) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t bh = 0; bh < BH; bh++) {
        const float *sb = src + bh * N * cols;
        float *db = dst + bh * cols * N;
        for (int64_t j = 0; j < N; j++)
            for (int64_t d = 0; d < cols; d++) db[d * N + j] = sb[j * cols + d];
    }
}

/* One query block's backward by the flash kernels (kt, vt: every pair's K^T, V^T) or the blocked
 * ones; dK/dV go to dk_acc/dv_acc. S, dP, Di: the thread's scratch. */
static void backward_block(const attn_args *A, const attn_grads *G, const float *kt,
                           const float *vt, int64_t bh, int64_t q0, int64_t q1, float *S, float *dP,
                           float *Di, uint16_t *h16, float *dk_acc, float *dv_acc) {
    if (kt)
        attn_backward_flash(A, G, bh, q0, q1, kt + bh * A->Nk * A->D, vt + bh * A->Nk * A->Dv, S,
                            dP, Di, dk_acc, dv_acc);
    else
        attn_backward_block(A, G, bh, q0, q1, S, dP, Di, h16, dk_acc, dv_acc);
}

/* Whether the backward splits one pair's nblk query blocks over the nt threads (private dK/dV
 * summed at the end) rather than sharing out the BH pairs: when the pairs alone would leave
 * threads idle (fewer pairs than threads, or a few that do not divide evenly). */
static int split_over_blocks(int par, int64_t BH, int64_t nblk, int nt, int need_kv) {
    return par && nblk > 1 && need_kv && (BH < nt || (BH % nt != 0 && BH < 4 * nt && nblk >= nt));
}

static void attention_backward(asam_ctx *ctx, asam_node *n) {
    attn_args *A = n->saved;
    /* the AMX backward writes each element of dq, dk, dv once: new buffers go unzeroed */
    int amx = use_amx(), fq = 0, fk = 0, fv = 0;
    attn_grads G = {n->out->data,
                    n->out->grad,
                    amx ? asam_grad_buf_fresh(ctx, A->tq, &fq) : asam_grad_buf(ctx, A->tq),
                    amx ? asam_grad_buf_fresh(ctx, A->tk, &fk) : asam_grad_buf(ctx, A->tk),
                    amx ? asam_grad_buf_fresh(ctx, A->tv, &fv) : asam_grad_buf(ctx, A->tv),
                    A->trh ? asam_grad_buf(ctx, A->trh) : NULL,
                    A->trw ? asam_grad_buf(ctx, A->trw) : NULL,
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    fq,
                    fk,
                    fv};
    if (!asam_ctx_ok(ctx)) return;
    int flash = use_flash();
    int64_t BH = A->B * A->H, Nq = A->Nq, Nk = A->Nk, D = A->D, Dv = A->Dv;
    int64_t bq = flash ? FLASH_BQ : A->bq, nblk = (Nq + bq - 1) / bq;
    int nt = omp_get_max_threads();
    int par = BH * Nq * Nk * (D + Dv) >= ATTN_PARALLEL_MACS;
    if (!par) nt = 1;
    int split_blocks = split_over_blocks(par, BH, nblk, nt, G.dk || G.dv);
    if (amx) {
        int64_t amx_blk = (Nq + AMX_BQ - 1) / AMX_BQ;
        asam_mark m = asam_ctx_mark(ctx);
        attention_backward_amx(ctx, A, &G, par, nt,
                               split_over_blocks(par, BH, amx_blk, nt, G.dk || G.dv));
        asam_ctx_release(ctx, m);
        return;
    }
    int64_t tile = flash ? FLASH_BQ * FLASH_KC : bq * Nk; /* S and dP, each */
    int64_t acc_off = 2 * tile + bq;                      /* a thread's dK/dV copies */
    int64_t per_thread = acc_off + (split_blocks ? Nk * (D + Dv) : 0);
    asam_mark m = asam_ctx_mark(ctx);
    float *scratch = asam_ctx_alloc(ctx, (size_t)(per_thread * nt) * sizeof(float));
    float *kt = flash ? asam_ctx_alloc(ctx, (size_t)(BH * Nk * (D + Dv)) * sizeof(float)) : NULL;
    if (!scratch || (flash && !kt)) return;
    float *vt = flash ? kt + BH * Nk * D : NULL;
    /* bf16 backend: q, k, v, dout rounded once (per-thread P / dS copies: h16) */
    uint16_t *h16 = NULL;
    if (!flash && asam_get_precision() == ASAM_BF16 && asam_backend_current->gemm16) {
        int64_t nq_all = BH * Nq, nk_all = BH * Nk;
        uint16_t *b = asam_ctx_alloc(
            ctx, (size_t)(nq_all * (D + Dv) + nk_all * (D + Dv) + tile * nt) * sizeof(uint16_t));
        if (!b) return;
        uint16_t *q16 = b, *do16 = q16 + nq_all * D, *k16 = do16 + nq_all * Dv;
        uint16_t *v16 = k16 + nk_all * D;
        h16 = v16 + nk_all * Dv;
        asam_bf16_convert(A->q, nq_all, D, D, q16);
        asam_bf16_convert(G.dout, nq_all, Dv, Dv, do16);
        asam_bf16_convert(A->k, nk_all, D, D, k16);
        asam_bf16_convert(A->v, nk_all, Dv, Dv, v16);
        G.q16 = q16, G.k16 = k16, G.v16 = v16, G.dout16 = do16;
    }
    if (flash) {
        transpose_pairs(A->k, kt, BH, Nk, D, par);
        transpose_pairs(A->v, vt, BH, Nk, Dv, par);
    }
    int blas_nt = par ? blas_enter_parallel() : 0;
    if (!split_blocks) {
#pragma omp parallel for schedule(dynamic) if (par)
        for (int64_t bh = 0; bh < BH; bh++) {
            float *S = scratch + omp_get_thread_num() * per_thread;
            float *dP = S + tile, *Di = dP + tile;
            for (int64_t q0 = 0; q0 < Nq; q0 += bq) {
                int64_t q1 = q0 + bq < Nq ? q0 + bq : Nq;
                backward_block(A, &G, kt, vt, bh, q0, q1, S, dP, Di,
                               h16 ? h16 + omp_get_thread_num() * tile : NULL,
                               G.dk ? G.dk + bh * Nk * D : NULL, G.dv ? G.dv + bh * Nk * Dv : NULL);
            }
        }
    } else {
        for (int64_t bh = 0; bh < BH; bh++) {
#pragma omp parallel
            {
                float *S = scratch + omp_get_thread_num() * per_thread;
                float *dP = S + tile, *Di = dP + tile;
                float *dk_acc = S + acc_off, *dv_acc = dk_acc + Nk * D;
                memset(dk_acc, 0, (size_t)(Nk * (D + Dv)) * sizeof(float));
#pragma omp for schedule(dynamic)
                for (int64_t blk = 0; blk < nblk; blk++) {
                    int64_t q0 = blk * bq, q1 = q0 + bq < Nq ? q0 + bq : Nq;
                    backward_block(A, &G, kt, vt, bh, q0, q1, S, dP, Di,
                                   h16 ? h16 + omp_get_thread_num() * tile : NULL,
                                   G.dk ? dk_acc : NULL, G.dv ? dv_acc : NULL);
                }
                /* implicit barrier: sum the private accumulators */
                int nth = omp_get_num_threads();
#pragma omp for schedule(static)
                for (int64_t i = 0; i < Nk * (D + Dv); i++) {
                    float s = 0;
                    for (int t = 0; t < nth; t++) s += scratch[t * per_thread + acc_off + i];
                    if (i < Nk * D) {
                        if (G.dk) G.dk[bh * Nk * D + i] += s;
                    } else if (G.dv) {
                        G.dv[bh * Nk * Dv + i - Nk * D] += s;
                    }
                }
            }
        }
    }
    blas_leave_parallel(blas_nt);
    asam_ctx_release(ctx, m);
}

/* The optional inputs: an additive bias broadcast to (B, H, Nq, Nk), and SAM's decomposed
 * relative-position terms rel_h (B, H, Nq, kh), rel_w (B, H, Nq, kw) with kh * kw = Nk. */
static int attn_bind_extras(asam_ctx *ctx, attn_args *A, const asam_attn_opts *o,
                            const asam_tensor *q, const char *sq, const char *sk) {
    const char *op = "attention";
    if (o->bias) {
        asam_tensor *bs = o->bias;
        char sb[96];
        asam_shape_str(bs, sb, sizeof sb);
        if (!asam_check(ctx,
                        bs->ndim == 4 && (bs->shape[0] == 1 || bs->shape[0] == A->B) &&
                            (bs->shape[1] == 1 || bs->shape[1] == A->H) && bs->shape[2] == A->Nq &&
                            bs->shape[3] == A->Nk,
                        op, "bias %s does not broadcast to (%lld, %lld, %lld, %lld)", sb,
                        (long long)A->B, (long long)A->H, (long long)A->Nq, (long long)A->Nk))
            return -1;
        A->bias = bs->data, A->Bb = bs->shape[0], A->Hb = bs->shape[1];
    }
    if (o->rel_h || o->rel_w) {
        asam_tensor *rh = o->rel_h, *rw = o->rel_w;
        if (!asam_check(ctx, rh && rw, op, "rel_h and rel_w go together")) return -1;
        char sh[96], sw[96];
        asam_shape_str(rh, sh, sizeof sh);
        asam_shape_str(rw, sw, sizeof sw);
        bool ok = rh->ndim == 4 && rw->ndim == 4;
        for (int d = 0; ok && d < 3; d++)
            ok = rh->shape[d] == q->shape[d] && rw->shape[d] == q->shape[d];
        ok = ok && rh->shape[3] * rw->shape[3] == A->Nk;
        if (!asam_check(ctx, ok, op,
                        "rel_h %s and rel_w %s must be (B, H, Nq, kh) and "
                        "(B, H, Nq, kw) with kh*kw = Nk for q %s, k %s",
                        sh, sw, sq, sk))
            return -1;
        A->rel_h = rh->data, A->rel_w = rw->data, A->kh = rh->shape[3], A->kw = rw->shape[3];
        A->trh = rh, A->trw = rw;
    }
    return 0;
}

/* The arguments of one call without its extras (bias, relative positions: attn_bind_extras);
 * scale 0 in o means d^-0.5. */
static attn_args attn_args_of(int64_t B, int64_t H, int64_t Nq, int64_t Nk, int64_t D, int64_t Dv,
                              const asam_attn_opts *o, asam_tensor *q, asam_tensor *k,
                              asam_tensor *v) {
    attn_args A = {.B = B,
                   .H = H,
                   .Nq = Nq,
                   .Nk = Nk,
                   .D = D,
                   .Dv = Dv,
                   .Bb = 1,
                   .Hb = 1,
                   .scale = o->scale != 0 ? o->scale : 1.0f / sqrtf((float)D),
                   .causal = o->causal,
                   .q = q->data,
                   .k = k->data,
                   .v = v->data,
                   .tq = q,
                   .tk = k,
                   .tv = v};
    return A;
}

asam_tensor *asam_attention(asam_ctx *ctx, asam_tensor *q, asam_tensor *k, asam_tensor *v,
                            const asam_attn_opts *opts) {
    const char *op = "attention";
    if (!q || !k || !v) return NULL;
    asam_attn_opts o = opts ? *opts : (asam_attn_opts){0};
    char sq[96], sk[96], sv[96];
    asam_shape_str(q, sq, sizeof sq);
    asam_shape_str(k, sk, sizeof sk);
    asam_shape_str(v, sv, sizeof sv);
    if (!asam_check(ctx, q->ndim == 4 && k->ndim == 4 && v->ndim == 4, op,
                    "q %s, k %s, v %s must be (B, H, N, D)", sq, sk, sv))
        return NULL;
    int64_t B = q->shape[0], H = q->shape[1], Nq = q->shape[2], D = q->shape[3];
    int64_t Nk = k->shape[2], Dv = v->shape[3];
    if (!asam_check(ctx,
                    k->shape[0] == B && k->shape[1] == H && k->shape[3] == D && v->shape[0] == B &&
                        v->shape[1] == H && v->shape[2] == Nk && Nk > 0,
                    op, "q %s, k %s, v %s do not match", sq, sk, sv))
        return NULL;
    if (!asam_check(ctx, !o.causal || Nq == Nk, op, "causal needs Nq == Nk, got q %s, k %s", sq,
                    sk))
        return NULL;
    if (!asam_check(ctx,
                    Nk * 2 * ATTN_BLOCK < INT_MAX && Nq < INT_MAX && D < INT_MAX && Dv < INT_MAX,
                    op, "too many keys"))
        return NULL;
    attn_args A = attn_args_of(B, H, Nq, Nk, D, Dv, &o, q, k, v);
    if (attn_bind_extras(ctx, &A, &o, q, sq, sk)) return NULL;
    A.bq = attn_block_rows(B * H, Nq, Nk);
    asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(B, H, Nq, Dv));
    if (!out) return NULL;

    /* Up to five inputs get gradients; the node's in[] holds four, so rel_w alone needing a
     * gradient records through it. Backward uses the saved args, not in[]. */
    asam_tensor *ins[4] = {q, k, v, o.rel_h};
    asam_node *n = asam_record(ctx, op, attention_backward, out, 4, ins);
    if (!n && o.rel_w) n = asam_record(ctx, op, attention_backward, out, 1, &o.rel_w);
    if (n) {
        attn_args *saved = asam_ctx_alloc(ctx, sizeof *saved);
        float *lse = asam_ctx_alloc(ctx, (size_t)(B * H * Nq + 1) * sizeof(float));
        if (!saved || !lse) return NULL;
        A.lse = lse;
        *saved = A;
        n->saved = saved;
    }

    asam_mark m = asam_ctx_mark(ctx);
    int par = B * H * Nq * Nk * (D + Dv) >= ATTN_PARALLEL_MACS;
    int nt = par ? omp_get_max_threads() : 1;
    int blas_nt = par ? blas_enter_parallel() : 0;
    if (use_amx()) {
        if (attention_forward_amx(ctx, &A, par, nt, out->data)) {
            blas_leave_parallel(blas_nt);
            return NULL;
        }
    } else if (use_flash() && !A.bias && !A.rel_h && !A.causal) {
        if (attention_forward_cols(ctx, &A, par, nt, out->data)) {
            blas_leave_parallel(blas_nt);
            return NULL;
        }
    } else if (use_flash()) {
        int64_t BH = B * H, nblk = (Nq + FLASH_BQ - 1) / FLASH_BQ, items = BH * nblk;
        int64_t per_thread = FLASH_BQ * FLASH_KC + 2 * FLASH_BQ;
        float *kt = asam_ctx_alloc(ctx, (size_t)(BH * D * Nk) * sizeof(float));
        float *scratch = asam_ctx_alloc(ctx, (size_t)(per_thread * nt) * sizeof(float));
        if (!kt || !scratch) {
            blas_leave_parallel(blas_nt);
            return NULL;
        }
        transpose_pairs(A.k, kt, BH, Nk, D, par); /* K^T: the tile GEMM's B operand */
#pragma omp parallel for schedule(dynamic) if (par)
        for (int64_t it = 0; it < items; it++) {
            int64_t bh = it / nblk, q0 = it % nblk * FLASH_BQ;
            int64_t q1 = q0 + FLASH_BQ < Nq ? q0 + FLASH_BQ : Nq;
            float *S = scratch + omp_get_thread_num() * per_thread;
            attn_forward_flash(&A, bh, q0, q1, kt + bh * D * Nk, S, S + FLASH_BQ * FLASH_KC,
                               out->data);
        }
    } else {
        float *scratch = asam_ctx_alloc(ctx, (size_t)(A.bq * Nk * nt) * sizeof(float));
        if (!scratch) {
            blas_leave_parallel(blas_nt);
            return NULL;
        }
        int64_t nblk = (Nq + A.bq - 1) / A.bq, items = B * H * nblk;
#pragma omp parallel for schedule(dynamic) if (par)
        for (int64_t it = 0; it < items; it++) {
            int64_t bh = it / nblk, q0 = it % nblk * A.bq;
            int64_t q1 = q0 + A.bq < Nq ? q0 + A.bq : Nq;
            attn_forward_block(&A, bh, q0, q1, scratch + omp_get_thread_num() * A.bq * Nk,
                               out->data);
        }
    }
    blas_leave_parallel(blas_nt);
    asam_ctx_release(ctx, m);
    return out;
}

/* (B, N, H w) -> (B, H, N, w) and back: the layouts asam_attention takes and gives. */
static asam_tensor *split_heads(asam_ctx *ctx, asam_tensor *x, int64_t heads) {
    if (!x) return NULL;
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    x = asam_reshape(ctx, x, ASAM_SHAPE(B, N, heads, C / heads));
    return asam_permute(ctx, x, (const int[]){0, 2, 1, 3});
}
static asam_tensor *merge_heads(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    int64_t B = x->shape[0], H = x->shape[1], N = x->shape[2], D = x->shape[3];
    x = asam_permute(ctx, x, (const int[]){0, 2, 1, 3});
    return asam_reshape(ctx, x, ASAM_SHAPE(B, N, H * D));
}

asam_tensor *asam_attention_heads(asam_ctx *ctx, asam_tensor *q, asam_tensor *k, asam_tensor *v,
                                  int heads, const asam_attn_opts *opts) {
    const char *op = "attention";
    if (!q || !k || !v) return NULL;
    char sq[96], sk[96], sv[96];
    asam_shape_str(q, sq, sizeof sq);
    asam_shape_str(k, sk, sizeof sk);
    asam_shape_str(v, sv, sizeof sv);
    if (!asam_check(ctx,
                    heads > 0 && q->ndim == 3 && k->ndim == 3 && v->ndim == 3 &&
                        q->shape[2] % heads == 0 && v->shape[2] % heads == 0 &&
                        k->shape[2] == q->shape[2] && k->shape[0] == q->shape[0] &&
                        v->shape[0] == q->shape[0] && v->shape[1] == k->shape[1],
                    op, "q %s, k %s, v %s are not (B, N, heads x d) for %d heads", sq, sk, sv,
                    heads))
        return NULL;
    asam_attn_opts o = opts ? *opts : (asam_attn_opts){0};
    int plain = !o.causal && !o.bias && !o.rel_h && !o.rel_w;
    asam_tensor *ins[3] = {q, k, v};
    int64_t B = q->shape[0], Nq = q->shape[1], Nk = k->shape[1], D = q->shape[2] / heads;
    int64_t Dv = v->shape[2] / heads;
    /* inference (on the tiles under bf16, in the column layout in fp32): the heads read in
     * place and the output written merged, without the four permuted copies of the general
     * path */
    if (plain && (use_amx() || use_flash()) && !asam_needs_record(ctx, 3, ins) && Nk > 0 &&
        Nk * 2 * ATTN_BLOCK < INT_MAX && Nq < INT_MAX) {
        attn_args A = attn_args_of(B, heads, Nq, Nk, D, Dv, &o, q, k, v);
        A.merged = 1;
        A.bq = attn_block_rows(B * heads, Nq, Nk);
        asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(B, Nq, heads * Dv));
        if (!out) return NULL;
        asam_mark m = asam_ctx_mark(ctx);
        int par = B * heads * Nq * Nk * (D + Dv) >= ATTN_PARALLEL_MACS;
        int nt = par ? omp_get_max_threads() : 1;
        int blas_nt = par ? blas_enter_parallel() : 0;
        int rc = use_amx() ? attention_forward_amx(ctx, &A, par, nt, out->data)
                           : attention_forward_cols(ctx, &A, par, nt, out->data);
        blas_leave_parallel(blas_nt);
        asam_ctx_release(ctx, m);
        return rc ? NULL : out;
    }
    return merge_heads(ctx,
                       asam_attention(ctx, split_heads(ctx, q, heads), split_heads(ctx, k, heads),
                                      split_heads(ctx, v, heads), opts));
}
