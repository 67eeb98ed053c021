/* The kernel tables (see backend.h) and the precision switch.
 *
 * CPU fp32: OpenBLAS sgemm, exactly what the ops called before the seam existed.
 * CPU bf16, chosen at run time: oneDNN's bf16 matmul when the build has it (AMX tiles or
 * AVX512-BF16); else, on CPUs with AMX, our tile kernel (gemm_amx.c: as fast as Debian's
 * oneDNN 2.6 on the SD UNet and SAM encoder forwards, measured on a 2-core Xeon with AMX, but
 * slower on the backward's transposed operands, so not the default where oneDNN is there); else
 * our AVX512-BF16 micro-kernel (gemm_bf16.c). bf16 is refused on a CPU without AVX512-BF16
 * (every CPU with AMX has it). On AMX CPUs the linear layers' forward runs on our tile kernel
 * with the weight packed once (linear_amx.c: 1.1-2.2x Debian's oneDNN 2.6 at the SD UNet's
 * shapes), whichever GEMM backend is picked. ASAM_BF16_KERNEL=amx or =avx512 forces our
 * kernels, =onednn oneDNN alone (for tests and benchmarks comparing them). */
#include "engine/backend.h"
#include "engine/amx_tile.h"
#include "engine/engine_internal.h"
#include "engine/gemm_amx.h"
#include "engine/gemm_bf16.h"
#include "engine/gemm_tile.h"
#include "engine/linear_amx.h"
#ifdef ASAM_HAVE_ONEDNN
#include "engine/gemm_onednn.h"
#endif
#include "asam/error.h"

#include "engine/blas.h"

#include <cblas.h>
#include <omp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Products below this many multiply-adds stay in fp32 under bf16 too: packing and conversion
 * would cost more than the product (and fp32 is the more accurate of the two). */
#define BF16_MIN_MACS (INT64_C(1) << 12)

static void sgemm_once(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* Products at most this many columns wide and at least SPLIT_MIN_ROWS rows per thread are split
 * by rows across the threads, each running sgemm single-threaded. OpenBLAS threads such thin
 * products poorly: the UNet's 8x8 convolutions (1280 x 64 x 11520) ran at 175-180 GFLOP/s in
 * situ, 206 threaded and 246 split by rows in a microbenchmark (2 threads); from 256 columns
 * its own threading wins or ties (1280 x 256 x 11520: 297 against 272). */
#define SPLIT_MAX_COLS 96
#define SPLIT_MIN_ROWS 128
/* A thread's part of a product at most SPLIT_TILE_MAX_COLS wide with B as stored runs on the
 * unpacked tile GEMM (gemm_tile.h) in K blocks of SPLIT_TILE_KBLOCK (B's block, 1536 x 64
 * floats, stays in L2 while A streams past once): 1280 x 64 x 11520 with A cold went from 222
 * GFLOP/s (sgemm per part) to 320, 1280 x 32 x 11520 from 157 to 281 (microbenchmark, 2
 * threads; K blocks of 768 and 3072 gave 286 and 291). */
#define SPLIT_TILE_MAX_COLS 64
#define SPLIT_TILE_KBLOCK 1536

static void gemm_fp32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    int nt = omp_get_max_threads();
    if (nt < 2 || N > SPLIT_MAX_COLS || M < SPLIT_MIN_ROWS * nt || omp_in_parallel()) {
        sgemm_once(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int restore = blas_enter_parallel();
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t m0 = M * t / n, m1 = M * (t + 1) / n; /* this thread's rows of A and C */
        const float *a = ta ? A + m0 : A + m0 * lda;
        if (!tb && N <= SPLIT_TILE_MAX_COLS && asam_gemm_tile_supported()) {
            for (int64_t k0 = 0; k0 < K; k0 += SPLIT_TILE_KBLOCK) {
                int64_t kn = K - k0 < SPLIT_TILE_KBLOCK ? K - k0 : SPLIT_TILE_KBLOCK;
                asam_gemm_tile(m1 - m0, N, kn, alpha, ta ? a + k0 * lda : a + k0, ta ? 1 : lda,
                               ta ? lda : 1, B + k0 * ldb, ldb, k0 ? 1.0f : beta, C + m0 * ldc,
                               ldc);
            }
        } else
            sgemm_once(ta, tb, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
    }
    blas_leave_parallel(restore);
}

/* A bf16 kernel that fails (out of memory, oneDNN refusing a shape) leaves C untouched, so the
 * product is then done in fp32: slower, never wrong. */
static void gemm_bf16_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        gemm_fp32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* An operand given in bf16 only, widened to fp32 for a kernel that wants fp32 (a product below
 * BF16_MIN_MACS, a bf16 kernel that failed, or the fp32 backend after a switch back from bf16):
 * the exact values the bf16 held, in a temporary buffer. NULL when out of memory. */
static float *widen(const uint16_t *src, int64_t n) {
    float *dst = malloc((size_t)(n ? n : 1) * sizeof *dst);
    if (dst) asam_bf16_widen(src, dst, n);
    return dst;
}

/* fp32 product where an operand may be in bf16 only (see widen); the elements A (B) spans. */
static void gemm_fp32_widened(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, const uint16_t *A16, int64_t lda, const float *B,
                              const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc) {
    float *wa = A16 ? widen(A16, (ta ? K : M) * lda) : NULL;
    float *wb = B16 ? widen(B16, (tb ? N : K) * ldb) : NULL;
    if ((A16 && !wa) || (B16 && !wb)) {
        /* Out of memory for a temporary: nothing sane to compute; C gets NaN so the failure
         * shows instead of passing for a result. */
        fprintf(stderr, "asam: out of memory widening a bf16 weight\n");
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
    } else {
        gemm_fp32(ta, tb, M, N, K, alpha, A16 ? wa : A, lda, B16 ? wb : B, ldb, beta, C, ldc);
    }
    free(wa);
    free(wb);
}

static void gemm16_own(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                       int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_bf16_ex(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc))
        gemm_fp32_widened(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc);
}

/* (entries left out are NULL: the ops' general paths) */
static const asam_backend cpu_fp32 = {
    .name = "cpu-fp32 (OpenBLAS sgemm)", .precision = ASAM_FP32, .gemm = gemm_fp32};
static const asam_backend cpu_bf16_own = {.name = "cpu-bf16 (AVX512-BF16 micro-kernel)",
                                          .precision = ASAM_BF16,
                                          .gemm = gemm_bf16_own,
                                          .gemm16 = gemm16_own};

#ifdef ASAM_HAVE_ONEDNN
static void gemm_bf16_onednn(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_onednn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        gemm_bf16_own(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void gemm16_onednn(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, const uint16_t *A16, int64_t lda, const float *B,
                          const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS ||
        asam_gemm_onednn_ex(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc))
        gemm16_own(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc);
}
/* oneDNN adds the bias in its epilogue (the sum it would otherwise read C for). */
static int linear_onednn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         asam_tensor *W, int64_t ldw, const float *bias, float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS) return -1;
    /* held or not, the same kernel: held weights give the same bits as rounding per call */
    const uint16_t *B16 = asam_weight_held(W);
    if (B16 && ldw != K) return -1; /* held operands are used whole and contiguous */
    return asam_gemm_onednn_bias(M, N, K, A, lda, B16 ? NULL : W->data, B16, ldw, bias, C, ldc);
}
static const asam_backend cpu_bf16_onednn = {.name = "cpu-bf16 (oneDNN)",
                                             .precision = ASAM_BF16,
                                             .gemm = gemm_bf16_onednn,
                                             .gemm16 = gemm16_onednn,
                                             .linear = linear_onednn};
#endif

/* Our AMX tile kernel (gemm_amx.c); a failure (out of memory) falls back to oneDNN or our
 * AVX512-BF16 kernel. */
static void gemm16_amx(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                       int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M * N * K >= BF16_MIN_MACS &&
        !asam_gemm_amx(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc))
        return;
#ifdef ASAM_HAVE_ONEDNN
    gemm16_onednn(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc);
#else
    gemm16_own(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc);
#endif
}
static void gemm_bf16_amx(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    gemm16_amx(ta, tb, M, N, K, alpha, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

/* A linear layer on the tiles with its weight packed (linear_amx.c): a frozen weight's packed
 * copy is made on its first use and kept with it, a trainable one's is made per call (the same
 * values, so held and trainable weights give the same bits). */
static _Thread_local uint16_t *tl_pack;
static _Thread_local size_t tl_pack_cap;

/* W's packed tile panels: the held copy (made on first use), or the calling thread's buffer
 * packed now from W's fp32 values (trainable). NULL when W cannot be used so or out of memory. */
static const uint16_t *packed_weight(asam_tensor *W, int64_t N, int64_t K, int64_t ldw) {
    const uint16_t *W16 = asam_weight_held(W);
    if (W16 && ldw != K) return NULL; /* held operands are used whole and contiguous */
    if (W16 && W->linear_tiles) return W->linear_tiles;
    size_t bytes = (size_t)asam_linear_amx_packed_numel(N, K) * sizeof(uint16_t);
    bytes = (bytes + 63) / 64 * 64;
    uint16_t *t = NULL;
    if (W16) {
        t = aligned_alloc(64, bytes);
    } else { /* per call: the calling thread's buffer, kept */
        if (bytes > tl_pack_cap) {
            free(tl_pack);
            tl_pack = aligned_alloc(64, bytes);
            tl_pack_cap = tl_pack ? bytes : 0;
        }
        t = tl_pack;
    }
    if (!t) return NULL;
    asam_linear_amx_pack(N, K, W16 ? NULL : W->data, W16, ldw, t);
    if (!W16) return t;
    const uint16_t *Wp = t;
#pragma omp critical(asam_weight_hold)
    {
        if (!W->linear_tiles)
            asam_param_set_linear_tiles(W, t);
        else
            Wp = W->linear_tiles; /* another thread's, the same values */
    }
    if (Wp != t) free(t);
    return Wp;
}

static int linear_amx(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                      int64_t ldw, const float *bias, float *C, int64_t ldc) {
    if (M * N * K < BF16_MIN_MACS) return -1;
    const uint16_t *Wp = packed_weight(W, N, K, ldw);
    return Wp ? asam_linear_amx(M, N, K, A, lda, Wp, bias, C, ldc) : -1;
}

static int linear_geglu_amx(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda,
                            asam_tensor *W, int64_t ldw, const float *bias, float *Y, int64_t ldy) {
    if (M * 2 * F * K < BF16_MIN_MACS || F % 32) return -1;
    const uint16_t *Wp = packed_weight(W, 2 * F, K, ldw);
    return Wp ? asam_linear_amx_geglu(M, F, K, A, lda, Wp, bias, Y, ldy) : -1;
}

static int linear_add_amx(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          asam_tensor *W, int64_t ldw, const float *bias, const float *R,
                          float *C) {
    if (M * N * K < BF16_MIN_MACS) return -1;
    const uint16_t *Wp = packed_weight(W, N, K, ldw);
    return Wp ? asam_linear_amx_add(M, N, K, A, lda, Wp, bias, R, N, C, N) : -1;
}

static int linear_many_amx(int64_t M, int64_t K, const float *A, int64_t lda, int n,
                           asam_tensor *const *W, const float *const *bias, float *const *C) {
    asam_linear_target t[4];
    int64_t N = 0;
    if (n < 1 || n > 4) return -1;
    for (int i = 0; i < n; i++) N += W[i]->shape[0];
    if (M * N * K < BF16_MIN_MACS) return -1;
    for (int i = 0; i < n; i++) {
        /* a per-call packing lives in one thread buffer: only held weights go together */
        if (!asam_weight_held(W[i])) return -1;
        t[i] = (asam_linear_target){packed_weight(W[i], W[i]->shape[0], K, K),
                                    bias[i],
                                    C[i],
                                    W[i]->shape[0],
                                    W[i]->shape[0],
                                    NULL,
                                    0};
        if (!t[i].Wp) return -1;
    }
    return asam_linear_amx_many(M, K, A, lda, t, n);
}

static const asam_backend cpu_bf16_amx = {"cpu-bf16 (AMX tile kernels)",
                                          ASAM_BF16,
                                          gemm_bf16_amx,
                                          gemm16_amx,
                                          linear_amx,
                                          linear_geglu_amx,
                                          linear_many_amx,
                                          linear_add_amx};
#ifdef ASAM_HAVE_ONEDNN
/* oneDNN's GEMMs with the linear layers' forward on the tiles: the default on AMX CPUs. */
static const asam_backend cpu_bf16_onednn_amx = {"cpu-bf16 (oneDNN, AMX linear)",
                                                 ASAM_BF16,
                                                 gemm_bf16_onednn,
                                                 gemm16_onednn,
                                                 linear_amx,
                                                 linear_geglu_amx,
                                                 linear_many_amx,
                                                 linear_add_amx};
#endif

const asam_backend *asam_backend_current = &cpu_fp32;

void asam_gemm_fp32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cpu_fp32.gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int asam_bf16_supported(void) {
    return asam_gemm_bf16_supported();
}

int asam_set_precision(asam_precision p) {
    if (p == ASAM_FP32) {
        asam_backend_current = &cpu_fp32;
        return 0;
    }
    if (p != ASAM_BF16) return asam_error("precision: unknown precision %d", (int)p);
    if (!asam_bf16_supported())
        return asam_error("precision bf16: this CPU has no AVX512-BF16 (nor AMX)");
    const char *force = getenv("ASAM_BF16_KERNEL");
    int want_amx = force && !strcmp(force, "amx"), want_own = force && !strcmp(force, "avx512");
    int want_onednn = force && !strcmp(force, "onednn");
    (void)want_onednn; /* read only where oneDNN is built in */
    int amx = !want_own && asam_amx_supported();
    asam_backend_current = amx ? &cpu_bf16_amx : &cpu_bf16_own;
#ifdef ASAM_HAVE_ONEDNN
    if (!want_own && !want_amx)
        asam_backend_current = amx && !want_onednn ? &cpu_bf16_onednn_amx : &cpu_bf16_onednn;
#endif
    return 0;
}

asam_precision asam_get_precision(void) {
    return asam_backend_current->precision;
}

int asam_precision_parse(const char *s, asam_precision *p) {
    if (s && !strcmp(s, "fp32")) return *p = ASAM_FP32, 0;
    if (s && !strcmp(s, "bf16")) return *p = ASAM_BF16, 0;
    return -1;
}

const char *asam_precision_name(asam_precision p) {
    return p == ASAM_BF16 ? "bf16" : "fp32";
}

const char *asam_backend_describe(void) {
#ifdef ASAM_HAVE_ONEDNN
    if (asam_backend_current == &cpu_bf16_onednn || asam_backend_current == &cpu_bf16_onednn_amx) {
        static char buf[192];
        const char *impl = asam_onednn_impl();
        snprintf(buf, sizeof buf, "cpu-bf16 (oneDNN %s%s)",
                 impl ? impl : "unavailable: AVX512-BF16 micro-kernel",
                 asam_backend_current == &cpu_bf16_onednn_amx ? "; linear layers on AMX tiles"
                                                              : "");
        return buf;
    }
#endif
    return asam_backend_current->name;
}

/* ---- weights held in bf16 ---------------------------------------------------------------------
 * Lazily, on a weight's first use as the weight of linear / conv2d / conv_transpose2d under
 * bf16, not at load: only there is it known that the tensor is a GEMM weight (an embedding or
 * a positional table of the same shape is read by other ops, which need fp32) and whether it is
 * trained (trainers set requires_grad after loading). The first forward therefore still starts
 * from the fp32 copies; every later one runs on half the weight memory. */

/* Weights smaller than this stay fp32: a product with one of them can fall below BF16_MIN_MACS
 * and would then be computed in fp32, which needs the fp32 values. At or above it, every
 * product is at least BF16_MIN_MACS (one output row times the whole weight). */
#define HOLD_MIN_NUMEL BF16_MIN_MACS

static int holding_on = 1;

int asam_set_weight_holding(int on) {
    int prev = holding_on;
    holding_on = on != 0;
    return prev;
}

const uint16_t *asam_weight_held(asam_tensor *W) {
    if (W->bf16) return W->bf16;
    if (!W->data && W->conv_taps[0]) return asam_param_bf16(W); /* taps alone: rebuilt */
    if (!holding_on || !asam_backend_current->gemm16 || !W->persistent || W->requires_grad ||
        W->base || W->numel < HOLD_MIN_NUMEL || !W->data)
        return NULL;
    const uint16_t *r = NULL;
    /* Model code may call ops from several threads: convert once. */
#pragma omp critical(asam_weight_hold)
    {
        if (!W->bf16) asam_param_hold_bf16(W);
        r = W->bf16;
    }
    return r;
}

int asam_weight_hold_now(asam_tensor *W) {
    return W && asam_get_precision() == ASAM_BF16 && asam_weight_held(W) != NULL;
}

/* A held operand is used in place only when it is a whole contiguous matrix (ld = its row
 * length), the layout the kernels take bf16 operands in; the ops' weight products all are. */
static void gemm_w(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   asam_tensor *WA, int64_t lda, const float *B, asam_tensor *WB, int64_t ldb,
                   float beta, float *C, int64_t ldc) {
    const uint16_t *A16 = WA ? asam_weight_held(WA) : NULL;
    const uint16_t *B16 = WB ? asam_weight_held(WB) : NULL;
    if (WA && !A16) A = WA->data;
    if (WB && !B16) B = WB->data;
    if (!A16 && !B16) {
        asam_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int contiguous = (!A16 || lda == (ta ? M : K)) && (!B16 || ldb == (tb ? K : N));
    if (asam_backend_current->gemm16 && contiguous)
        asam_backend_current->gemm16(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C,
                                     ldc);
    else
        gemm_fp32_widened(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, C, ldc);
}

void asam_gemm_wa(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, asam_tensor *W,
                  int64_t ldw, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_w(ta, tb, M, N, K, alpha, NULL, W, ldw, B, NULL, ldb, beta, C, ldc);
}

void asam_gemm_wb(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, asam_tensor *W, int64_t ldw, float beta, float *C, int64_t ldc) {
    gemm_w(ta, tb, M, N, K, alpha, A, NULL, lda, NULL, W, ldw, beta, C, ldc);
}

int asam_gemm_wb_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                      int64_t ldw, const float *bias, float *C, int64_t ldc) {
    if (!asam_backend_current->linear) return -1;
    return asam_backend_current->linear(M, N, K, A, lda, W, ldw, bias, C, ldc);
}

int asam_gemm_wb_add(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                     int64_t ldw, const float *bias, const float *R, float *C) {
    if (!asam_backend_current->linear_add) return -1;
    return asam_backend_current->linear_add(M, N, K, A, lda, W, ldw, bias, R, C);
}

int asam_gemm_wb_many(int64_t M, int64_t K, const float *A, int64_t lda, int n,
                      asam_tensor *const *W, const float *const *bias, float *const *C) {
    if (!asam_backend_current->linear_many) return -1;
    return asam_backend_current->linear_many(M, K, A, lda, n, W, bias, C);
}

int asam_gemm_wb_geglu(int64_t M, int64_t F, int64_t K, const float *A, int64_t lda, asam_tensor *W,
                       int64_t ldw, const float *bias, float *Y, int64_t ldy) {
    if (!asam_backend_current->linear_geglu) return -1;
    return asam_backend_current->linear_geglu(M, F, K, A, lda, W, ldw, bias, Y, ldy);
}
