/* The bf16 kernels and the precision switch.
 *
 * GEMM: each bf16 kernel (ours, and oneDNN when built in) against a double-precision product of
 * the same operands rounded to bf16 — what a bf16-in, fp32-accumulate GEMM must give up to
 * fp32 summation order — over every transpose, odd sizes, strided operands, alpha and beta.
 * Ops: matmul, linear, conv2d, conv_transpose2d and attention, forward and backward, under
 * ASAM_BF16 against ASAM_FP32: close (bf16 rounding, ~2^-9 per operand) but not equal (the bf16
 * path really ran). fp32 stays the default and is bitwise unchanged after a bf16 round trip.
 * Skips (77) on a CPU without AVX512-BF16. */
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/util.h"
#include "engine/amx_tile.h"
#include "engine/backend.h"
#include "engine/conv_amx.h"
#include "engine/conv_patch_amx.h"
#include "engine/exp_avx512.h"
#include "engine/gemm_amx.h"
#include "engine/gemm_bf16.h"
#include "engine/linear_amx.h"
#ifdef ASAM_HAVE_ONEDNN
#include "engine/gemm_onednn.h"
#endif
#include "gradcheck.h"
#include "test_util.h"

#include <stdint.h>

static float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

typedef int (*gemm_impl)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                         const float *, int64_t, float, float *, int64_t);

static void check_gemm(const char *impl_name, gemm_impl impl, int ta, int tb, int64_t M, int64_t N,
                       int64_t K, float alpha, float beta, int64_t pad) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t ar = ta ? K : M, br = tb ? N : K;
    float *A = malloc((size_t)(ar * lda) * 4), *B = malloc((size_t)(br * ldb) * 4);
    float *C = malloc((size_t)(M * ldc) * 4), *ref = malloc((size_t)(M * N) * 4);
    uint64_t s = 7;
    for (int64_t i = 0; i < ar * lda; i++) A[i] = gc_rand(&s);
    for (int64_t i = 0; i < br * ldb; i++) B[i] = gc_rand(&s);
    for (int64_t i = 0; i < M * ldc; i++) C[i] = gc_rand(&s);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t k = 0; k < K; k++) {
                float a = ta ? A[k * lda + i] : A[i * lda + k];
                float b = tb ? B[j * ldb + k] : B[k * ldb + j];
                acc += (double)bf16_round(a) * bf16_round(b);
            }
            ref[i * N + j] = (float)(alpha * acc + (beta != 0 ? beta * C[i * ldc + j] : 0));
        }
    if (beta == 0)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN; /* beta 0 must not read C */
    int rc = impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    CHECK(rc == 0, "%s gemm failed", impl_name);
    float *got = malloc((size_t)(M * N) * 4);
    for (int64_t i = 0; i < M; i++) memcpy(got + i * N, C + i * ldc, (size_t)N * 4);
    char what[160];
    snprintf(what, sizeof what, "%s gemm ta=%d tb=%d %lldx%lldx%lld alpha=%g beta=%g pad=%lld",
             impl_name, ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta,
             (long long)pad);
    CHECK_CLOSE(got, ref, (size_t)(M * N), 1e-5, what);
    free(A), free(B), free(C), free(ref), free(got);
}

static void gemm_suite(const char *name, gemm_impl impl) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(name, impl, ta, tb, 37, 45, 29, 1.0f, 0.0f, 0);
            check_gemm(name, impl, ta, tb, 100, 70, 1031, 0.5f, 1.0f, 3);
        }
    check_gemm(name, impl, 0, 1, 1, 300, 64, 0.125f, 0.0f, 0); /* one row */
    check_gemm(name, impl, 0, 0, 200, 1, 33, 1.0f, -2.0f, 1);  /* one column */
    check_gemm(name, impl, 0, 0, 64, 64, 1, 1.0f, 0.0f, 0);    /* K = 1 */
    check_gemm(name, impl, 1, 0, 130, 260, 600, 1.0f, 0.0f, 0);
    /* the AMX kernel's K slices with partial sums kept between them, several column blocks,
     * accumulation into C (beta 1) on full 32 x 32 blocks */
    check_gemm(name, impl, 0, 1, 96, 300, 4000, 1.0f, 1.0f, 0);
    check_gemm(name, impl, 0, 0, 64, 160, 600, 1.0f, 0.0f, 2);
}

/* The AMX kernel with fp32 operands, and with both given in bf16 (rounded here). */
static int gemm_amx_f32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    return asam_gemm_amx(ta, tb, M, N, K, alpha, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}
static int gemm_amx_b16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    int64_t na = (ta ? K : M) * lda, nb = (tb ? N : K) * ldb;
    uint16_t *a = malloc((size_t)na * 2), *b = malloc((size_t)nb * 2);
    for (int64_t i = 0; i < na; i++) a[i] = asam_f32_to_bf16(A[i]);
    for (int64_t i = 0; i < nb; i++) b[i] = asam_f32_to_bf16(B[i]);
    int rc = asam_gemm_amx(ta, tb, M, N, K, alpha, NULL, a, lda, NULL, b, ldb, beta, C, ldc);
    free(a), free(b);
    return rc;
}

#ifdef ASAM_HAVE_ONEDNN
/* A linear layer's product with its bias added in oneDNN's epilogue: bit for bit the bias
 * written first and the product added (beta 1), with the weight in fp32 and in bf16. */
static void onednn_bias_suite(void) {
    const int64_t M = 301, N = 200, K = 130;
    float *A = malloc((size_t)(M * K) * 4), *B = malloc((size_t)(N * K) * 4);
    float *bias = malloc((size_t)N * 4), *C1 = malloc((size_t)(M * N) * 4);
    float *C2 = malloc((size_t)(M * N) * 4);
    uint16_t *B16 = malloc((size_t)(N * K) * 2);
    uint64_t s = 5;
    for (int64_t i = 0; i < M * K; i++) A[i] = gc_rand(&s);
    for (int64_t i = 0; i < N * K; i++) B[i] = gc_rand(&s);
    for (int64_t i = 0; i < N; i++) bias[i] = 4 * gc_rand(&s);
    asam_bf16_convert(B, N, K, K, B16);
    for (int held = 0; held < 2; held++) {
        int rc = asam_gemm_onednn_bias(M, N, K, A, K, held ? NULL : B, held ? B16 : NULL, K, bias,
                                       C1, N);
        for (int64_t r = 0; r < M; r++) memcpy(C2 + r * N, bias, (size_t)N * 4);
        rc |= asam_gemm_onednn_ex(0, 1, M, N, K, 1.0f, A, NULL, K, held ? NULL : B,
                                  held ? B16 : NULL, K, 1.0f, C2, N);
        CHECK(rc == 0, "onednn bias product failed");
        CHECK(!memcmp(C1, C2, (size_t)(M * N) * 4),
              "onednn bias in the epilogue differs from bias then beta 1 (weight %s)",
              held ? "bf16" : "fp32");
        if (!rc)
            printf("ok   onednn bias in the epilogue, weight %s: bitwise bias + product\n",
                   held ? "bf16" : "fp32");
    }
    free(A), free(B), free(bias), free(C1), free(C2), free(B16);
}
#endif

/* The AMX linear product (weight packed ahead, bias in the accumulators) against a double
 * product of the bf16-rounded operands, with and without bias, strided A and C, edges in every
 * dimension; the weight packed from fp32 and from bf16 gives the same panels. C starts as NaN:
 * every element must be written. */
static void check_linear_amx(int64_t M, int64_t N, int64_t K, int with_bias, int64_t pad) {
    int64_t lda = K + pad, ldc = N + pad;
    float *A = malloc((size_t)(M * lda) * 4), *W = malloc((size_t)(N * K) * 4);
    float *bias = malloc((size_t)N * 4), *C = malloc((size_t)(M * ldc) * 4);
    float *ref = malloc((size_t)(M * N) * 4), *got = malloc((size_t)(M * N) * 4);
    uint16_t *W16 = malloc((size_t)(N * K) * 2);
    int64_t np = asam_linear_amx_packed_numel(N, K);
    uint16_t *P1 = malloc((size_t)np * 2), *P2 = malloc((size_t)np * 2);
    uint64_t s = 11;
    for (int64_t i = 0; i < M * lda; i++) A[i] = gc_rand(&s);
    for (int64_t i = 0; i < N * K; i++) W[i] = gc_rand(&s);
    for (int64_t i = 0; i < N; i++) bias[i] = 4 * gc_rand(&s);
    for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    asam_bf16_convert(W, N, K, K, W16);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = with_bias ? bias[j] : 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)bf16_round(A[i * lda + k]) * bf16_round(W[j * K + k]);
            ref[i * N + j] = (float)acc;
        }
    asam_linear_amx_pack(N, K, W, NULL, K, P1);
    asam_linear_amx_pack(N, K, NULL, W16, K, P2);
    CHECK(!memcmp(P1, P2, (size_t)np * 2), "linear amx %lldx%lld: packed from fp32 and bf16 differ",
          (long long)N, (long long)K);
    int rc = asam_linear_amx(M, N, K, A, lda, P2, with_bias ? bias : NULL, C, ldc);
    CHECK(rc == 0, "linear amx failed");
    for (int64_t i = 0; i < M; i++) memcpy(got + i * N, C + i * ldc, (size_t)N * 4);
    char what[128];
    snprintf(what, sizeof what, "linear amx %lldx%lldx%lld bias=%d pad=%lld", (long long)M,
             (long long)N, (long long)K, with_bias, (long long)pad);
    CHECK_CLOSE(got, ref, (size_t)(M * N), 1e-5, what);
    int spill = 0; /* the padding columns of C are not written */
    for (int64_t i = 0; i < M && pad; i++)
        for (int64_t j = N; j < ldc; j++) spill |= !isnan(C[i * ldc + j]);
    CHECK(!spill, "%s: wrote past N", what);
    free(A), free(W), free(bias), free(C), free(ref), free(got), free(W16), free(P1), free(P2);
}

static void linear_amx_suite(void) {
    check_linear_amx(37, 45, 29, 1, 0);
    check_linear_amx(1, 300, 64, 1, 0);     /* one row (the time embedding) */
    check_linear_amx(301, 200, 130, 0, 3);  /* no bias, strided, edges */
    check_linear_amx(77, 320, 768, 1, 1);   /* cross-attention keys */
    check_linear_amx(96, 1300, 1031, 1, 0); /* several column blocks, K not 32-aligned */
    check_linear_amx(64, 33, 4000, 0, 0);   /* long K, one pair past the panel */
    check_linear_amx(33, 1, 5, 1, 2);       /* one output, tiny K */
    /* inside a parallel region each thread runs its own product on itself */
    int bad = 0;
#pragma omp parallel reduction(| : bad)
    {
        const int64_t M = 40, N = 50, K = 70;
        float A[40 * 70], W[50 * 70], C[40 * 50], C1[40 * 50];
        uint16_t P[64 * 96];
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) - 6;
        for (int64_t i = 0; i < N * K; i++) W[i] = (float)((i * 5) % 11) - 5;
        asam_linear_amx_pack(N, K, W, NULL, K, P);
        bad |= asam_linear_amx(M, N, K, A, K, P, NULL, C, N) != 0;
        for (int64_t i = 0; i < M; i++) /* small integers: exact in bf16 and in fp32 sums */
            for (int64_t j = 0; j < N; j++) {
                float acc = 0;
                for (int64_t k = 0; k < K; k++) acc += A[i * K + k] * W[j * K + k];
                C1[i * N + j] = acc;
            }
        bad |= memcmp(C, C1, sizeof C) != 0;
    }
    CHECK(!bad, "linear amx inside a parallel region differs from the exact product");
    printf("ok   linear amx: 7 shapes against the bf16-rounded double product, in-region calls\n");
}

/* The online softmax step (asam_amx_softmax_chunk) over three full chunks of 64 keys, each row
 * against the exact softmax of its 192 logits: probabilities rebuilt from each chunk's P, the
 * later chunks' corrections and the final sum l. Rows: a later chunk far above the running max
 * (rescaled), a later chunk of many logits a little above it (kept lazily unless their sum
 * passes e^8: redone against its own max), a later chunk far below, masked (-inf) keys, and
 * plain random rows. */
static void softmax_chunk_suite(void) {
    enum { KC = 64, NCH = 3, NK = KC * NCH };
    static float S[NCH][AMX_ROWS * KC];
    static uint16_t P[NCH][AMX_ROWS * KC];
    float m[AMX_ROWS], l[AMX_ROWS], corr[NCH][AMX_ROWS];
    uint64_t seed = 77;
    for (int r = 0; r < AMX_ROWS; r++)
        for (int k = 0; k < NK; k++) {
            float v = 2.0f * gc_rand(&seed), *at = &S[k / KC][r * KC + k % KC];
            int ch = k / KC;
            if (r == 0 && ch == 2) v += 100.0f;                      /* far above: rescale */
            if (r == 1 && ch == 1) v = 7.5f + 0.1f * gc_rand(&seed); /* many a little above */
            if (r == 2 && ch == 1) v += 4.0f;                        /* sum about 64 e^4: kept */
            if (r == 3 && ch > 0) v -= 40.0f;                        /* far below */
            if (r == 4 && k % 3 == 0) v = -INFINITY;                 /* masked keys */
            *at = v;
        }
    for (int r = 0; r < AMX_ROWS; r++) m[r] = -INFINITY, l[r] = 0;
    for (int c = 0; c < NCH; c++)
        asam_amx_softmax_chunk(S[c], AMX_ROWS, KC, KC, P[c], KC, m, l, corr[c]);
    double worst = 0;
    int bad = 0;
    for (int r = 0; r < AMX_ROWS; r++) {
        double mx = -INFINITY, z = 0;
        for (int k = 0; k < NK; k++) mx = fmax(mx, S[k / KC][r * KC + k % KC]);
        for (int k = 0; k < NK; k++) z += exp(S[k / KC][r * KC + k % KC] - mx);
        for (int k = 0; k < NK; k++) {
            int c = k / KC;
            double p = asam_bf16_to_f32(P[c][r * KC + k % KC]);
            for (int later = c + 1; later < NCH; later++) p *= corr[later][r];
            double want = exp(S[c][r * KC + k % KC] - mx) / z, got = p / l[r];
            double e = fabs(got - want) / (want > 1e-3 ? want : 1e-3);
            bad += !(e < 6e-3); /* a NaN too */
            if (e > worst) worst = e;
        }
    }
    CHECK(!bad, "amx softmax chunk: %d probabilities off by more than 6e-3 (or NaN), worst %.3g",
          bad, worst);
    printf("ok   amx softmax chunk: 3 chunks, rescaled / lazy / masked rows, worst %.3g\n", worst);
}

/* The bf16 softmax's exp (asam_exp2_16_bf16): within 8e-5 of 2^t over [-125, 12] (12: past
 * the e^8 a lazily kept chunk may reach against its row's running max), exactly 0 below -125
 * and at -inf (masked logits), 2^0 within the same bound. */
__attribute__((target("avx512f,avx512dq"))) static void exp2_suite(void) {
    double worst = 0;
    for (int64_t i = -12 * 4096; i + 15 <= 125 * 4096; i += 16) {
        float t[16], y[16];
        for (int l = 0; l < 16; l++) t[l] = -(float)(i + l) / 4096.0f;
        _mm512_storeu_ps(y, asam_exp2_16_bf16(_mm512_loadu_ps(t)));
        for (int l = 0; l < 16; l++) {
            double e = fabs(y[l] / exp2((double)t[l]) - 1.0);
            if (e > worst) worst = e;
        }
    }
    float odd[16] = {-INFINITY, -125.5f, -200.0f, -1e30f, 0.0f};
    float y[16];
    _mm512_storeu_ps(y, asam_exp2_16_bf16(_mm512_loadu_ps(odd)));
    CHECK(worst < 8e-5, "exp2 bf16: relative error %.3g over [-125, 12]", worst);
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 0 && fabs(y[4] - 1.0) < 8e-5,
          "exp2 bf16: -inf, < -125 must give 0 and 0 about 1: %g %g %g %g %g", y[0], y[1], y[2],
          y[3], y[4]);
    printf("ok   exp2 bf16: relative error %.3g over [-125, 12]; 0 below\n", worst);
}

/* ---- ops under both precisions ---- */

static asam_tensor *rnd(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    gc_fill(t, seed, 1.0f);
    asam_set_requires_grad(t, 1);
    return t;
}

enum { OP_MATMUL, OP_LINEAR, OP_CONV, OP_CONVT, OP_ATTN, OP_N };
static const char *op_names[OP_N] = {"matmul", "linear", "conv2d", "conv_transpose2d", "attention"};

/* Runs op k forward and backward (loss = sum(out * R)); copies out and the first input's
 * gradient into *out / *grad (malloc'd). */
static void run_op(int k, float **out, int64_t *n_out, float **grad, int64_t *n_grad) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    asam_tensor *x = NULL, *y = NULL;
    switch (k) {
    case OP_MATMUL: {
        x = rnd(ctx, ASAM_SHAPE(3, 50, 70), 1);
        y = asam_matmul(ctx, x, rnd(ctx, ASAM_SHAPE(3, 60, 70), 2), 0, 1);
        break;
    }
    case OP_LINEAR:
        x = rnd(ctx, ASAM_SHAPE(2, 40, 96), 3);
        y = asam_linear(ctx, x, rnd(ctx, ASAM_SHAPE(80, 96), 4), rnd(ctx, ASAM_SHAPE(80), 5));
        break;
    case OP_CONV:
        x = rnd(ctx, ASAM_SHAPE(2, 8, 17, 15), 6);
        y = asam_conv2d(ctx, x, rnd(ctx, ASAM_SHAPE(16, 8, 3, 3), 7), rnd(ctx, ASAM_SHAPE(16), 8),
                        1, 1);
        break;
    case OP_CONVT:
        x = rnd(ctx, ASAM_SHAPE(2, 16, 9, 7), 9);
        y = asam_conv_transpose2d(ctx, x, rnd(ctx, ASAM_SHAPE(16, 8, 2, 2), 10),
                                  rnd(ctx, ASAM_SHAPE(8), 11), 2);
        break;
    case OP_ATTN: {
        x = rnd(ctx, ASAM_SHAPE(2, 2, 96, 32), 12);
        asam_tensor *kk = rnd(ctx, ASAM_SHAPE(2, 2, 80, 32), 13);
        asam_tensor *v = rnd(ctx, ASAM_SHAPE(2, 2, 80, 24), 14);
        y = asam_attention(ctx, x, kk, v, NULL);
        break;
    }
    }
    CHECK(y != NULL, "%s: %s", op_names[k], asam_ctx_error(ctx));
    float *R = malloc((size_t)y->numel * 4);
    uint64_t s = 99;
    for (int64_t i = 0; i < y->numel; i++) R[i] = gc_rand(&s);
    CHECK(asam_backward_from(ctx, y, R) == 0, "%s backward: %s", op_names[k], asam_ctx_error(ctx));
    *n_out = y->numel, *n_grad = x->numel;
    *out = malloc((size_t)y->numel * 4);
    *grad = malloc((size_t)x->numel * 4);
    memcpy(*out, y->data, (size_t)y->numel * 4);
    memcpy(*grad, x->grad, (size_t)x->numel * 4);
    free(R);
    asam_ctx_free(ctx);
}

/* asam_linear_geglu: with nothing recorded, under bf16 on AMX, one fused pass (its arena use
 * shows it: no 2F-wide product) giving asam_geglu(asam_linear()) bit for bit, the weight held
 * or fp32; F not a multiple of 32 and a recorded call take the two ops (same values, and the
 * gradient flows). */
static void linear_geglu_suite(void) {
    static const int64_t shapes[3][3] = {{2 * 37, 96, 64}, {300, 320, 1280}, {45, 64, 40}};
    asam_set_precision(ASAM_BF16);
    for (int s = 0; s < 3; s++)
        for (int held = 0; held < 2; held++) {
            int64_t R = shapes[s][0], Din = shapes[s][1], F = shapes[s][2];
            asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
            asam_tensor *x = rnd(ctx, ASAM_SHAPE(R, Din), 51);
            asam_tensor *w, *b = rnd(ctx, ASAM_SHAPE(2 * F), 53);
            if (held) {
                w = asam_param_new(ASAM_SHAPE(2 * F, Din));
                gc_fill(w, 52, 0.2f);
            } else {
                w = rnd(ctx, ASAM_SHAPE(2 * F, Din), 52);
            }
            asam_set_requires_grad(x, 0); /* rnd() makes them trainable */
            asam_set_requires_grad(b, 0);
            if (!held) asam_set_requires_grad(w, 0);
            size_t u0 = asam_ctx_used(ctx);
            asam_tensor *y = asam_linear_geglu(ctx, x, w, b);
            size_t used = asam_ctx_used(ctx) - u0;
            asam_tensor *ref = asam_geglu(ctx, asam_linear(ctx, x, w, b));
            CHECK(y && ref, "linear_geglu: %s", asam_ctx_error(ctx));
            char what[96];
            snprintf(what, sizeof what, "linear_geglu %lldx%lld -> %lld %s", (long long)R,
                     (long long)Din, (long long)F, held ? "held" : "fp32 weight");
            CHECK(y && ref && !memcmp(y->data, ref->data, (size_t)(R * F) * 4),
                  "%s: fused values differ from linear + geglu", what);
            int fused = used < (size_t)(2 * R * F) * 4;
            CHECK(fused == (F % 32 == 0 && asam_amx_supported()), "%s: %s", what,
                  fused ? "fused where it cannot be" : "not fused");
            /* recorded: the two ops, and the gradient reaches x */
            asam_ctx_set_grad(ctx, 1);
            asam_set_requires_grad(x, 1);
            asam_tensor *yg = asam_linear_geglu(ctx, x, w, b);
            CHECK(yg && !memcmp(yg->data, ref->data, (size_t)(R * F) * 4) &&
                      asam_backward(ctx, asam_sum(ctx, yg)) == 0 && x->grad != NULL,
                  "%s: recorded call", what);
            if (held) asam_param_free(w);
            asam_ctx_free(ctx);
            if (!test_failures) printf("ok   %s (%s)\n", what, fused ? "one pass" : "two ops");
        }
    asam_set_precision(ASAM_FP32);
}

extern int64_t asam_linear_many_fused; /* op_matmul.c: one-pass calls of asam_linear_many */

/* asam_linear_many: under bf16 on AMX with held weights and nothing recorded, one pass over x
 * (counted) giving each asam_linear's bits (with and without biases, outputs of different
 * widths); trainable weights and recorded calls go one by one (same values, gradients flow). */
static void linear_many_suite(void) {
    asam_set_precision(ASAM_BF16);
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    asam_tensor *x = rnd(ctx, ASAM_SHAPE(2, 150, 96), 71);
    asam_set_requires_grad(x, 0);
    const int64_t widths[3] = {96, 160, 64};
    asam_tensor *w[3], *b[3];
    for (int i = 0; i < 3; i++) {
        w[i] = asam_param_new(ASAM_SHAPE(widths[i], 96));
        gc_fill(w[i], 72 + (uint64_t)i, 0.2f);
        b[i] = asam_param_new(ASAM_SHAPE(widths[i]));
        gc_fill(b[i], 75 + (uint64_t)i, 1.0f);
    }
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        asam_tensor *out[3], *ref[3];
        int64_t before = asam_linear_many_fused;
        int rc = asam_linear_many(ctx, x, 3, w, with_bias ? b : NULL, out);
        int fused = asam_linear_many_fused == before + 1;
        for (int i = 0; i < 3; i++) ref[i] = asam_linear(ctx, x, w[i], with_bias ? b[i] : NULL);
        CHECK(rc == 0 && fused == asam_amx_supported(), "linear_many (bias %d): rc %d, %s",
              with_bias, rc, fused ? "one pass" : "one by one");
        for (int i = 0; i < 3 && rc == 0; i++)
            CHECK(out[i] && ref[i] && out[i]->numel == ref[i]->numel &&
                      !memcmp(out[i]->data, ref[i]->data, (size_t)ref[i]->numel * 4),
                  "linear_many (bias %d): output %d differs from asam_linear", with_bias, i);
    }
    /* recorded: one by one, and the gradient reaches x */
    asam_set_requires_grad(x, 1);
    asam_tensor *out[3];
    int64_t before = asam_linear_many_fused;
    CHECK(asam_linear_many(ctx, x, 3, w, b, out) == 0 && asam_linear_many_fused == before &&
              asam_backward(ctx, asam_sum(ctx, asam_add(ctx, asam_sum(ctx, out[0]),
                                                        asam_sum(ctx, out[2])))) == 0 &&
              x->grad,
          "linear_many recorded: %s", asam_ctx_error(ctx));
    for (int i = 0; i < 3; i++) asam_param_free(w[i]), asam_param_free(b[i]);
    asam_ctx_free(ctx);
    asam_set_precision(ASAM_FP32);
    if (!test_failures) printf("ok   linear_many: one pass, each output bitwise asam_linear's\n");
}

/* asam_linear_add: with nothing recorded, under bf16 on AMX, one pass (its arena use shows it)
 * giving asam_add(r, asam_linear()) bit for bit, bias or none, edges in M and N; recorded calls
 * take the two ops, with the gradient reaching x and r. */
static void linear_add_suite(void) {
    static const int64_t shapes[3][3] = {{2 * 37, 96, 64}, {300, 320, 320}, {45, 64, 40}};
    asam_set_precision(ASAM_BF16);
    for (int s = 0; s < 3; s++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            int64_t R = shapes[s][0], Din = shapes[s][1], N = shapes[s][2];
            asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
            asam_tensor *x = rnd(ctx, ASAM_SHAPE(R, Din), 81);
            asam_tensor *r = rnd(ctx, ASAM_SHAPE(R, N), 82);
            asam_tensor *w = asam_param_new(ASAM_SHAPE(N, Din)), *b = rnd(ctx, ASAM_SHAPE(N), 84);
            gc_fill(w, 83, 0.2f);
            asam_set_requires_grad(x, 0);
            asam_set_requires_grad(r, 0);
            asam_set_requires_grad(b, 0);
            asam_tensor *bb = with_bias ? b : NULL;
            size_t u0 = asam_ctx_used(ctx);
            asam_tensor *y = asam_linear_add(ctx, x, w, bb, r);
            size_t used = asam_ctx_used(ctx) - u0;
            asam_tensor *ref = asam_add(ctx, r, asam_linear(ctx, x, w, bb));
            char what[96];
            snprintf(what, sizeof what, "linear_add %lldx%lld -> %lld%s", (long long)R,
                     (long long)Din, (long long)N, with_bias ? " +b" : "");
            CHECK(y && ref && !memcmp(y->data, ref->data, (size_t)(R * N) * 4),
                  "%s: fused values differ from linear + add", what);
            int fused = used < (size_t)(2 * R * N) * 4;
            CHECK(fused == asam_amx_supported(), "%s: %s", what,
                  fused ? "fused where it cannot be" : "not fused");
            asam_ctx_set_grad(ctx, 1);
            asam_set_requires_grad(x, 1);
            asam_set_requires_grad(r, 1);
            asam_tensor *yg = asam_linear_add(ctx, x, w, bb, r);
            CHECK(yg && !memcmp(yg->data, ref->data, (size_t)(R * N) * 4) &&
                      asam_backward(ctx, asam_sum(ctx, asam_mul(ctx, yg, yg))) == 0 && x->grad &&
                      r->grad,
                  "%s: recorded call", what);
            asam_param_free(w);
            asam_ctx_free(ctx);
            if (!test_failures) printf("ok   %s (%s)\n", what, fused ? "one pass" : "two ops");
        }
    asam_set_precision(ASAM_FP32);
}

static void ops_suite(void) {
    for (int k = 0; k < OP_N; k++) {
        float *o32, *g32, *o16, *g16, *o32b, *g32b;
        int64_t no, ng;
        asam_set_precision(ASAM_FP32);
        run_op(k, &o32, &no, &g32, &ng);
        CHECK(asam_set_precision(ASAM_BF16) == 0, "set bf16: %s", asam_last_error());
        run_op(k, &o16, &no, &g16, &ng);
        asam_set_precision(ASAM_FP32);
        run_op(k, &o32b, &no, &g32b, &ng);
        char what[96];
        snprintf(what, sizeof what, "%s bf16 forward vs fp32", op_names[k]);
        CHECK_CLOSE(o16, o32, (size_t)no, 1e-2, what);
        snprintf(what, sizeof what, "%s bf16 input gradient vs fp32", op_names[k]);
        CHECK_CLOSE(g16, g32, (size_t)ng, 2e-2, what);
        double d = test_rel_diff(o16, o32, (size_t)no);
        CHECK(d > 1e-6, "%s: bf16 result equals fp32 (%g): the bf16 kernels did not run",
              op_names[k], d);
        CHECK(!memcmp(o32, o32b, (size_t)no * 4) && !memcmp(g32, g32b, (size_t)ng * 4),
              "%s: fp32 after a bf16 run is not bitwise the same", op_names[k]);
        free(o32), free(g32), free(o16), free(g16), free(o32b), free(g32b);
    }
}

/* ---- the AMX 3x3 convolution (conv_amx.h) ---- */

extern int64_t asam_conv_amx_min_pixels; /* op_conv.c: the tile kernel from this many pixels */
extern int asam_conv_patch_enabled;      /* op_conv.c: the patch product below that */

/* conv2d forward, dx and dw of one geometry under the given precision; when held, the weight is
 * a persistent tensor that the bf16 path holds (and whose per-tap copies it keeps). */
static void conv_run(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int held, float *out,
                     float *dx, float *dw) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    asam_tensor *x = rnd(ctx, ASAM_SHAPE(N, C, H, W), 21), *w;
    if (held) {
        w = asam_param_new(ASAM_SHAPE(O, C, 3, 3));
        gc_fill(w, 22, 0.3f);
    } else {
        w = rnd(ctx, ASAM_SHAPE(O, C, 3, 3), 22);
    }
    asam_tensor *y = asam_conv2d(ctx, x, w, NULL, 1, 1);
    CHECK(y != NULL, "conv2d: %s", asam_ctx_error(ctx));
    float *R = malloc((size_t)y->numel * 4);
    uint64_t s = 5;
    for (int64_t i = 0; i < y->numel; i++) R[i] = gc_rand(&s);
    CHECK(asam_backward_from(ctx, y, R) == 0, "conv2d backward: %s", asam_ctx_error(ctx));
    memcpy(out, y->data, (size_t)y->numel * 4);
    memcpy(dx, x->grad, (size_t)x->numel * 4);
    if (dw) memcpy(dw, w->grad, (size_t)w->numel * 4);
    if (held) {
        CHECK(!asam_get_precision() || w->numel < 4096 || w->conv_taps[0] != NULL,
              "held weight: no per-tap copy kept");
        asam_param_free(w);
    }
    free(R);
    asam_ctx_free(ctx);
}

/* Each geometry: the tile kernel (forward and dx; dw stays a GEMM) against fp32 within bf16's
 * rounding, and not bitwise equal to the im2col bf16 path (so the tile kernel did run); a held
 * weight (per-tap copy kept) gives the same bits twice. Geometries: channels padded to 32 on
 * both sides, a partial block of output channels, rows of 16 pixels. */
static void conv_amx_suite(void) {
    static const int64_t geo[3][5] = {{2, 40, 8, 16, 48}, {1, 64, 32, 32, 32}, {1, 16, 4, 48, 3}};
    int64_t saved = asam_conv_amx_min_pixels;
    for (int g = 0; g < 3; g++) {
        int64_t N = geo[g][0], C = geo[g][1], H = geo[g][2], W = geo[g][3], O = geo[g][4];
        int64_t ny = N * O * H * W, nx = N * C * H * W, nw = O * C * 9;
        float *y[3], *gx[3], *gw[3];
        for (int i = 0; i < 3; i++)
            y[i] = malloc((size_t)ny * 4), gx[i] = malloc((size_t)nx * 4),
            gw[i] = malloc((size_t)nw * 4);
        /* 0: fp32, 1: bf16 tile kernel, 2: bf16 im2col + GEMM */
        for (int i = 0; i < 3; i++) {
            asam_set_precision(i ? ASAM_BF16 : ASAM_FP32);
            asam_conv_amx_min_pixels = i == 2 ? INT64_MAX : 1;
            asam_conv_patch_enabled = i != 2;
            conv_run(N, C, H, W, O, 0, y[i], gx[i], gw[i]);
        }
        char what[160];
        snprintf(what, sizeof what, "amx conv3x3 N%lld C%lld %lldx%lld O%lld forward vs fp32",
                 (long long)N, (long long)C, (long long)H, (long long)W, (long long)O);
        CHECK_CLOSE(y[1], y[0], (size_t)ny, 1e-2, what);
        snprintf(what, sizeof what, "amx conv3x3 N%lld C%lld %lldx%lld O%lld dx vs fp32",
                 (long long)N, (long long)C, (long long)H, (long long)W, (long long)O);
        CHECK_CLOSE(gx[1], gx[0], (size_t)nx, 1e-2, what);
        CHECK_CLOSE(gw[1], gw[0], (size_t)nw, 1e-2, "amx conv3x3 dw vs fp32");
        CHECK(memcmp(y[1], y[2], (size_t)ny * 4) != 0 && memcmp(gx[1], gx[2], (size_t)nx * 4) != 0,
              "amx conv3x3 %lld: same bits as the im2col path: the tile kernel did not run",
              (long long)g);
        /* a held weight twice: the second call uses the kept per-tap copy */
        asam_set_precision(ASAM_BF16);
        asam_conv_amx_min_pixels = 1;
        float *h0 = malloc((size_t)ny * 4), *h1 = malloc((size_t)ny * 4);
        conv_run(N, C, H, W, O, 1, h0, gx[2], NULL);
        conv_run(N, C, H, W, O, 1, h1, gx[2], NULL);
        CHECK(!memcmp(h0, h1, (size_t)ny * 4), "amx conv3x3 held weight: results differ");
        free(h0), free(h1);
        for (int i = 0; i < 3; i++) free(y[i]), free(gx[i]), free(gw[i]);
    }
    asam_conv_amx_min_pixels = saved;
    asam_conv_patch_enabled = 1;
    asam_set_precision(ASAM_FP32);
}

/* The tile kernel called directly, forward and adjoint, with a partial output block (O 40) and
 * channels padded (C 24): accumulate adds the product onto what out holds (dx of an input with
 * several consumers), element for element the product plus the old values; and an fp32 weight
 * packed per call gives the bits of the same weight held in bf16 (its tiles made once and
 * kept). */
static void conv_amx_accumulate(void) {
    int64_t C = 24, O = 40, H = 4, W = 32, HW = H * W;
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 26);
    asam_tensor *w = asam_param_new(ASAM_SHAPE(O, C, 3, 3));
    gc_fill(w, 41, 0.3f);
    asam_set_precision(ASAM_BF16);
    float *per_call[2];
    for (int held = 0; held < 2; held++) {
        asam_set_weight_holding(held);
        for (int adjoint = 0; adjoint < 2; adjoint++) {
            int64_t nin = adjoint ? O : C, nout = adjoint ? C : O;
            float *x = malloc((size_t)(nin * HW) * 4), *y0 = malloc((size_t)(nout * HW) * 4),
                  *y1 = malloc((size_t)(nout * HW) * 4), *base = malloc((size_t)(nout * HW) * 4);
            uint64_t s = 17 + (uint64_t)adjoint;
            for (int64_t i = 0; i < nin * HW; i++) x[i] = gc_rand(&s);
            for (int64_t i = 0; i < nout * HW; i++) base[i] = y1[i] = gc_rand(&s);
            CHECK(asam_conv3x3_amx(ctx, x, H, W, w, adjoint, 0, NULL, NULL, y0) == 0,
                  "amx conv3x3 fresh");
            CHECK(asam_conv3x3_amx(ctx, x, H, W, w, adjoint, 1, NULL, NULL, y1) == 0,
                  "amx conv3x3 accumulate");
            CHECK((w->data == NULL) == held && (w->conv_taps[adjoint] != NULL) == held,
                  "amx conv3x3: weight %s, tiles %s", w->data ? "fp32" : "held",
                  w->conv_taps[adjoint] ? "kept" : "per call");
            int same = 1;
            for (int64_t i = 0; i < nout * HW; i++) same &= y1[i] == base[i] + y0[i];
            CHECK(same, "amx conv3x3 adjoint %d: accumulate is not old + product", adjoint);
            if (!held) {
                per_call[adjoint] = y0;
            } else {
                CHECK(!memcmp(y0, per_call[adjoint], (size_t)(nout * HW) * 4),
                      "amx conv3x3 adjoint %d: held weight and per-call weight differ", adjoint);
                free(y0), free(per_call[adjoint]);
            }
            free(x), free(y1), free(base);
        }
    }
    asam_set_precision(ASAM_FP32);
    asam_param_free(w);
    asam_ctx_free(ctx);
    printf("ok   amx conv3x3 accumulate; per-call and held weights give the same bits\n");
}

/* A held weight the tile kernel takes keeps only its forward taps: its bf16 copy is freed (the
 * bytes counted go down by it), asam_param_bf16 rebuilds the very values the weight was rounded
 * to, the adjoint's taps come from that rebuild with the per-call bits, another path (the patch
 * product at 8x8) gets the rebuilt copy, and a trainable weight gets its rounded fp32 values. */
static void conv_amx_taps_only(void) {
    int64_t O = 48, C = 40, n = O * C * 9;
    asam_set_precision(ASAM_BF16);
    asam_tensor *w = asam_param_new(ASAM_SHAPE(O, C, 3, 3)),
                *ref = asam_param_new(ASAM_SHAPE(O, C, 3, 3));
    gc_fill(w, 51, 0.3f);
    gc_fill(ref, 51, 0.3f);
    uint16_t *want = malloc((size_t)n * sizeof *want);
    for (int64_t i = 0; i < n; i++) want[i] = asam_f32_to_bf16(ref->data[i]);
    float *y[2][2], *d[2];
    for (int k = 0; k < 2; k++) {
        asam_set_weight_holding(k); /* ref (k 0): rounded per call */
        asam_tensor *wk = k ? w : ref;
        asam_ctx *ctx = asam_ctx_new((size_t)1 << 26);
        asam_tensor *x16 = rnd(ctx, ASAM_SHAPE(1, C, 16, 16), 52),
                    *x8 = rnd(ctx, ASAM_SHAPE(1, C, 8, 8), 53);
        size_t b0, b1;
        asam_param_bytes(NULL, &b0);
        asam_tensor *a = asam_conv2d(ctx, x16, wk, NULL, 1, 1);
        asam_param_bytes(NULL, &b1);
        if (k) {
            CHECK(asam_param_bf16_held(w) && !w->bf16 && w->conv_taps[0] && !w->data,
                  "taps only: held %d, bf16 %p, taps %p", asam_param_bf16_held(w), (void *)w->bf16,
                  (void *)w->conv_taps[0]);
            CHECK(b1 - b0 == (size_t)(2 * 9 * 64 * 64),
                  "taps only: %zu bf16 bytes added, want the taps' %d", b1 - b0, 2 * 9 * 64 * 64);
        }
        y[k][0] = malloc((size_t)a->numel * 4), memcpy(y[k][0], a->data, (size_t)a->numel * 4);
        asam_tensor *b = asam_conv2d(ctx, x8, wk, NULL, 1, 1); /* the patch product */
        y[k][1] = malloc((size_t)b->numel * 4), memcpy(y[k][1], b->data, (size_t)b->numel * 4);
        /* dx through the adjoint's taps */
        asam_tensor *xg = rnd(ctx, ASAM_SHAPE(1, C, 16, 16), 54);
        asam_ctx_set_grad(ctx, 1);
        asam_set_requires_grad(xg, 1);
        asam_tensor *o = asam_conv2d(ctx, xg, wk, NULL, 1, 1);
        CHECK(o && asam_backward(ctx, asam_sum(ctx, asam_mul(ctx, o, o))) == 0,
              "taps only: backward");
        d[k] = malloc((size_t)xg->numel * 4), memcpy(d[k], xg->grad, (size_t)xg->numel * 4);
        asam_ctx_free(ctx);
    }
    CHECK(!memcmp(y[0][0], y[1][0], 48 * 256 * 4) && !memcmp(y[0][1], y[1][1], 48 * 64 * 4) &&
              !memcmp(d[0], d[1], 40 * 256 * 4),
          "taps only: results differ from the per-call weight's");
    const uint16_t *h = asam_param_bf16(w);
    CHECK(h && !memcmp(h, want, (size_t)n * sizeof *h), "taps only: rebuilt values differ");
    asam_set_requires_grad(w, 1);
    int same = w->data != NULL;
    for (int64_t i = 0; same && i < n; i++) same = asam_f32_to_bf16(w->data[i]) == want[i];
    CHECK(same && !w->bf16 && !w->conv_taps[0], "taps only: trainable weight's fp32 values");
    for (int k = 0; k < 2; k++) free(y[k][0]), free(y[k][1]), free(d[k]);
    free(want);
    asam_param_free(w), asam_param_free(ref);
    asam_set_weight_holding(1);
    asam_set_precision(ASAM_FP32);
    printf(
        "ok   amx conv3x3 held weight keeps its taps alone; rebuilt, adjoint, patch, trainable\n");
}

/* The weight-times-patches tile product (conv_patch_amx.c) against a double convolution of the
 * bf16-rounded operands; a weight rounded per call and the same weight held give the same bits.
 * Geometries: 16-pixel runs on one row (W 16, 32), several rows per run (W 8, 4), two images in
 * one product, 1x1, K slices (C 320 x 9) and two column blocks (O 640 over 1024 pixels). */
static void check_conv_patch(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t k) {
    int64_t HW = H * W, pad = k / 2, ny = N * O * HW;
    char what[128];
    snprintf(what, sizeof what, "conv patch amx N%lld C%lld %lldx%lld O%lld k%lld", (long long)N,
             (long long)C, (long long)H, (long long)W, (long long)O, (long long)k);
    CHECK(asam_conv_patch_amx_fits(C, O, H, W, k), "%s: refused", what);
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    asam_tensor *x = rnd(ctx, ASAM_SHAPE(N, C, H, W), 31);
    asam_tensor *w = asam_param_new(ASAM_SHAPE(O, C, k, k));
    gc_fill(w, 32, 0.3f);
    float *ref = malloc((size_t)ny * 4), *y0 = malloc((size_t)ny * 4), *y1 = malloc((size_t)ny * 4);
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t p = 0; p < HW; p++) {
                double acc = 0;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t t = 0; t < k * k; t++) {
                        int64_t iy = p / W + t / k - pad, ix = p % W + t % k - pad;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        acc += (double)bf16_round(x->data[((n * C + c) * H + iy) * W + ix]) *
                               bf16_round(w->data[(o * C + c) * k * k + t]);
                    }
                ref[(n * O + o) * HW + p] = (float)acc;
            }
    asam_set_precision(ASAM_BF16);
    asam_set_weight_holding(0);
    for (int64_t i = 0; i < ny; i++) y0[i] = y1[i] = NAN;
    CHECK(asam_conv_patch_amx(ctx, x->data, N, C, H, W, w, y0) == 0, "%s failed", what);
    CHECK(w->data && !w->bf16, "%s: weight held with holding off", what);
    asam_set_weight_holding(1);
    CHECK(asam_conv_patch_amx(ctx, x->data, N, C, H, W, w, y1) == 0, "%s failed (held)", what);
    CHECK(w->bf16 && !w->data, "%s: weight not held", what);
    CHECK_CLOSE(y0, ref, (size_t)ny, 1e-5, what);
    CHECK(!memcmp(y0, y1, (size_t)ny * 4), "%s: held and per-call weights differ", what);
    asam_set_precision(ASAM_FP32);
    asam_param_free(w);
    asam_ctx_free(ctx);
    free(ref), free(y0), free(y1);
}

static void conv_patch_suite(void) {
    check_conv_patch(2, 64, 16, 16, 64, 3);
    check_conv_patch(1, 32, 8, 8, 96, 3);
    check_conv_patch(2, 32, 4, 8, 32, 3);
    check_conv_patch(1, 32, 8, 4, 32, 3);
    check_conv_patch(1, 320, 8, 8, 64, 3);
    check_conv_patch(1, 32, 32, 32, 640, 3);
    check_conv_patch(2, 96, 16, 32, 64, 1);
    CHECK(!asam_conv_patch_amx_fits(40, 64, 16, 16, 3) &&
              !asam_conv_patch_amx_fits(64, 64, 4, 4, 3) &&
              !asam_conv_patch_amx_fits(64, 64, 6, 12, 3) &&
              !asam_conv_patch_amx_fits(64, 64, 16, 16, 5),
          "conv patch amx: took a geometry it cannot do");
    /* through asam_conv2d: an 8x8 convolution under bf16 gives the patch product's bits (and
     * its rounding error against fp32). The GEMMs are set to our AVX512-BF16 kernel, whose sums
     * run in another order: oneDNN's AMX kernel can give the patch product's very bits. */
    float *y[3];
    int64_t ny = 2 * 64 * 8 * 8;
    for (int i = 0; i < 3; i++) {
        asam_ctx *ctx = asam_ctx_new((size_t)1 << 26);
        asam_tensor *x = rnd(ctx, ASAM_SHAPE(2, 64, 8, 8), 41);
        asam_tensor *w = rnd(ctx, ASAM_SHAPE(64, 64, 3, 3), 42);
        setenv("ASAM_BF16_KERNEL", "avx512", 1);
        asam_set_precision(i ? ASAM_BF16 : ASAM_FP32);
        unsetenv("ASAM_BF16_KERNEL");
        y[i] = malloc((size_t)ny * 4);
        if (i < 2) {
            asam_tensor *o = asam_conv2d(ctx, x, w, NULL, 1, 1);
            CHECK(o != NULL, "conv2d: %s", asam_ctx_error(ctx));
            memcpy(y[i], o->data, (size_t)ny * 4);
        } else {
            CHECK(asam_conv_patch_amx(ctx, x->data, 2, 64, 8, 8, w, y[i]) == 0, "patch failed");
        }
        asam_ctx_free(ctx);
    }
    asam_set_precision(ASAM_FP32);
    CHECK_CLOSE(y[1], y[0], (size_t)ny, 1e-2, "conv2d 8x8 bf16 (patch product) vs fp32");
    CHECK(!memcmp(y[1], y[2], (size_t)ny * 4), "conv2d 8x8 under bf16: not the patch product");
    for (int i = 0; i < 3; i++) free(y[i]);
}

/* asam_conv2d_add (r + conv2d: a residual block's last convolution) against asam_add(r,
 * asam_conv2d(...)): the same bits, in one output tensor when nothing is recorded, and through
 * the two ops (with gradients) when something is. Geometries: 16x16 (the AMX tile kernel, its
 * bias and residual added as results leave the tiles), 8x8 (the patch product, then passes),
 * with one bias, a bias per image, or none; under fp32 and bf16. */
static void conv2d_add_suite(void) {
    static const int64_t geo[2][5] = {{2, 40, 16, 16, 48}, {2, 64, 8, 8, 32}};
    for (int prec = 0; prec < 2; prec++)
        for (int g = 0; g < 2; g++)
            for (int bias = 0; bias < 3; bias++) { /* none, (O), (N, O) */
                int64_t N = geo[g][0], C = geo[g][1], H = geo[g][2], W = geo[g][3], O = geo[g][4];
                int64_t ny = N * O * H * W;
                asam_set_precision(prec ? ASAM_BF16 : ASAM_FP32);
                asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
                asam_tensor *x = rnd(ctx, ASAM_SHAPE(N, C, H, W), 91);
                asam_tensor *r = rnd(ctx, ASAM_SHAPE(N, O, H, W), 92);
                asam_tensor *w = asam_param_new(ASAM_SHAPE(O, C, 3, 3));
                gc_fill(w, 93, 0.3f);
                asam_tensor *b = bias == 0   ? NULL
                                 : bias == 1 ? rnd(ctx, ASAM_SHAPE(O), 94)
                                             : rnd(ctx, ASAM_SHAPE(N, O), 95);
                asam_set_requires_grad(x, 0);
                asam_set_requires_grad(r, 0);
                if (b) asam_set_requires_grad(b, 0);
                size_t u0 = asam_ctx_used(ctx);
                asam_tensor *y = asam_conv2d_add(ctx, x, w, b, 1, 1, r);
                size_t used = asam_ctx_used(ctx) - u0;
                asam_tensor *ref = asam_add(ctx, r, asam_conv2d(ctx, x, w, b, 1, 1));
                char what[128];
                snprintf(what, sizeof what, "conv2d_add %s N%lld C%lld %lldx%lld O%lld bias %s",
                         prec ? "bf16" : "fp32", (long long)N, (long long)C, (long long)H,
                         (long long)W, (long long)O,
                         bias == 0   ? "none"
                         : bias == 1 ? "(O)"
                                     : "(N, O)");
                CHECK(y && ref && !memcmp(y->data, ref->data, (size_t)ny * 4),
                      "%s: values differ from conv2d + add", what);
                CHECK(used < (size_t)(2 * ny) * 4, "%s: %zu arena bytes, not one output", what,
                      used);
                asam_ctx_set_grad(ctx, 1);
                asam_set_requires_grad(x, 1);
                asam_set_requires_grad(r, 1);
                asam_tensor *yg = asam_conv2d_add(ctx, x, w, b, 1, 1, r);
                CHECK(yg && !memcmp(yg->data, ref->data, (size_t)ny * 4) &&
                          asam_backward(ctx, asam_sum(ctx, asam_mul(ctx, yg, yg))) == 0 &&
                          x->grad && r->grad,
                      "%s: recorded call", what);
                asam_param_free(w);
                asam_ctx_free(ctx);
                if (!test_failures) printf("ok   %s\n", what);
            }
    asam_set_precision(ASAM_FP32);
}

int main(void) {
    CHECK(asam_get_precision() == ASAM_FP32, "fp32 is not the default");
    asam_precision p;
    CHECK(asam_precision_parse("bf16", &p) == 0 && p == ASAM_BF16, "parse bf16");
    CHECK(asam_precision_parse("fp16", &p) == -1, "parse fp16 must fail");
    if (!asam_bf16_supported()) {
        CHECK(asam_set_precision(ASAM_BF16) == -1, "bf16 accepted on a CPU without it");
        printf("SKIP: this CPU has no AVX512-BF16: the bf16 path cannot run here\n");
        return test_failures ? 1 : 77;
    }
    exp2_suite();
    gemm_suite("avx512-bf16", asam_gemm_bf16);
#ifdef ASAM_HAVE_ONEDNN
    gemm_suite("onednn", asam_gemm_onednn);
    onednn_bias_suite();
#endif
    if (asam_amx_supported()) {
        gemm_suite("amx", gemm_amx_f32);
        gemm_suite("amx bf16 operands", gemm_amx_b16);
        linear_amx_suite();
        softmax_chunk_suite();
        conv_amx_suite();
        conv_amx_accumulate();
        conv_amx_taps_only();
        conv_patch_suite();
    } else {
        printf("SKIP: this CPU has no AMX: the AMX tile kernel is not checked here\n");
    }
    ops_suite();
    linear_geglu_suite();
    linear_many_suite();
    linear_add_suite();
    conv2d_add_suite();
    CHECK(asam_set_precision(ASAM_BF16) == 0, "set bf16");
    printf("bf16 backend: %s\n", asam_backend_describe());
    asam_set_precision(ASAM_FP32);
    return test_failures ? 1 : 0;
}
