/* `asam bench engine`: timings of the engine's heavy ops at the shapes SAM ViT-B and SD 1.5
 * use, next to raw cblas_sgemm at the same GEMM shape. Prints seconds (best of the repeats),
 * GFLOP/s, the arena peak of the op and, at the end, the process's peak RSS. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#define ROW_MAJOR CblasRowMajor
#define NO_TRANS CblasNoTrans
#define TRANS CblasTrans

/* uniform in [-scale, scale) */
static void fill(asam_tensor *t, uint64_t seed, float scale) {
    asam_rng r;
    asam_rng_seed(&r, seed);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = scale * (float)(asam_rng_uniform(&r) * 2.0 - 1.0);
}

static int g_repeats = 3;
static const char *g_only; /* --only SUBSTR: run the cases whose name contains it */

static void report(const char *what, double secs, double cpu, double flops, size_t peak) {
    printf("%-56s %8.4f s %7.1f GFLOP/s %8.4f s %7.1f GFLOP/s %8.1f MiB\n", what, secs,
           flops / secs * 1e-9, cpu, flops / cpu * 1e-9 * asam_get_threads(),
           (double)peak / (1 << 20));
    fflush(stdout);
}

/* Raw sgemm C (M, N) = A (M, K) op(B), best of the repeats. */
static void bench_sgemm(const char *what, int M, int N, int K, int trans_b) {
    if (g_only && !strstr(what, g_only)) return;
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
    float *C = malloc((size_t)M * N * sizeof(float));
    if (!A || !B || !C) {
        printf("%-58s out of memory\n", what);
        free(A), free(B), free(C);
        return;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r <= g_repeats; r++) { /* r == 0 warms up */
        double t0 = asam_now_s(), c0 = asam_cpu_s();
        cblas_sgemm(ROW_MAJOR, NO_TRANS, trans_b ? TRANS : NO_TRANS, M, N, K, 1.0f, A, K, B,
                    trans_b ? K : N, 0.0f, C, N);
        double t = asam_now_s() - t0, c = asam_cpu_s() - c0;
        if (r && t < best) best = t;
        if (r && c < best_cpu) best_cpu = c;
    }
    report(what, best, best_cpu, 2.0 * M * N * K, 0);
    free(A), free(B), free(C);
}

typedef enum { OP_LINEAR, OP_MATMUL, OP_CONV, OP_ATTN } op_kind;

typedef struct {
    const char *name;
    op_kind kind;
    int64_t s[8]; /* shape parameters, per kind (see run_case) */
    int rel, causal, backward;
} bench_case;

/* Builds the inputs, runs the op (and backward) repeats+1 times, reports the best. */
static void run_case(asam_ctx *ctx, const bench_case *c) {
    if (g_only && !strstr(c->name, g_only)) return;
    asam_ctx_reset(ctx);
    asam_ctx_set_grad(ctx, c->backward);
    asam_tensor *in[6] = {NULL};
    asam_attn_opts opts = {0};
    double flops = 0;
    const int64_t *s = c->s;
    switch (c->kind) {
    case OP_LINEAR: /* x (s0, s1) @ w (s2, s1)^T + b */
        in[0] = asam_new(ctx, ASAM_SHAPE(s[0], s[1]));
        in[1] = asam_new(ctx, ASAM_SHAPE(s[2], s[1]));
        in[2] = asam_new(ctx, ASAM_SHAPE(s[2]));
        flops = 2.0 * s[0] * s[1] * s[2];
        break;
    case OP_MATMUL: /* a (s0, s1) @ b (s1, s2) */
        in[0] = asam_new(ctx, ASAM_SHAPE(s[0], s[1]));
        in[1] = asam_new(ctx, ASAM_SHAPE(s[1], s[2]));
        flops = 2.0 * s[0] * s[1] * s[2];
        break;
    case OP_CONV: /* x (1, s0, s1, s1), w (s2, s0, s3, s3), stride s4, pad s5 */
    {
        in[0] = asam_new(ctx, ASAM_SHAPE(1, s[0], s[1], s[1]));
        in[1] = asam_new(ctx, ASAM_SHAPE(s[2], s[0], s[3], s[3]));
        in[2] = asam_new(ctx, ASAM_SHAPE(s[2]));
        int64_t ho = (s[1] + 2 * s[5] - s[3]) / s[4] + 1;
        flops = 2.0 * s[2] * ho * ho * s[0] * s[3] * s[3];
        if (c->backward) flops *= 3; /* + dx and dw, one forward's worth each */
        break;
    }
    case OP_ATTN: /* q (s0, s1, s2, s4), k (s0, s1, s3, s4), v (s0, s1, s3, s4) */
        in[0] = asam_new(ctx, ASAM_SHAPE(s[0], s[1], s[2], s[4]));
        in[1] = asam_new(ctx, ASAM_SHAPE(s[0], s[1], s[3], s[4]));
        in[2] = asam_new(ctx, ASAM_SHAPE(s[0], s[1], s[3], s[4]));
        if (c->rel) {
            int64_t side = s[5];
            in[3] = asam_new(ctx, ASAM_SHAPE(s[0], s[1], s[2], side));
            in[4] = asam_new(ctx, ASAM_SHAPE(s[0], s[1], s[2], s[3] / side));
            opts.rel_h = in[3], opts.rel_w = in[4];
        }
        opts.causal = c->causal;
        flops = 4.0 * s[0] * s[1] * s[2] * s[3] * s[4];
        if (c->causal) flops /= 2;
        /* flash-style backward: recompute q k^T, then dV, dP, dQ, dK = 2.5x the forward */
        if (c->backward) flops *= 3.5;
        break;
    }
    for (int i = 0; i < 6; i++)
        if (in[i]) {
            fill(in[i], 100 + i, i == 0 || i == 1 ? 1.0f : 0.5f);
            asam_set_requires_grad(in[i], c->backward);
        }
    if (!asam_ctx_ok(ctx)) {
        printf("%-58s %s\n", c->name, asam_ctx_error(ctx));
        return;
    }
    double best = 1e30, best_cpu = 1e30;
    size_t peak = 0;
    for (int r = 0; r <= g_repeats; r++) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_ctx_reset_peak(ctx);
        for (int i = 0; i < 6; i++)
            if (in[i]) in[i]->grad = NULL;
        double t0 = asam_now_s(), c0 = asam_cpu_s();
        asam_tensor *out = NULL;
        switch (c->kind) {
        case OP_LINEAR:
            out = asam_linear(ctx, in[0], in[1], in[2]);
            break;
        case OP_MATMUL:
            out = asam_matmul(ctx, in[0], in[1], 0, 0);
            break;
        case OP_CONV:
            out = asam_conv2d(ctx, in[0], in[1], in[2], (int)s[4], (int)s[5]);
            break;
        case OP_ATTN:
            out = asam_attention(ctx, in[0], in[1], in[2], &opts);
            break;
        }
        if (out && c->backward) {
            float *g = asam_ctx_alloc(ctx, (size_t)out->numel * sizeof(float));
            if (g) {
                for (int64_t i = 0; i < out->numel; i++) g[i] = 1e-3f * (float)(i % 13);
                asam_backward_from(ctx, out, g);
            }
        }
        double t = asam_now_s() - t0, cpu = asam_cpu_s() - c0;
        if (!out || !asam_ctx_ok(ctx)) {
            printf("%-58s failed: %s\n", c->name, asam_ctx_error(ctx));
            asam_ctx_clear_error(ctx);
            asam_ctx_release(ctx, m);
            return;
        }
        size_t p = asam_ctx_peak(ctx) - m.offset;
        if (p > peak) peak = p;
        if (r && t < best) best = t;
        if (r && cpu < best_cpu) best_cpu = cpu;
        asam_ctx_release(ctx, m);
    }
    report(c->name, best, best_cpu, flops, peak);
}

static int parse_args(int argc, char **argv) {
    int threads = 0;
    const cli_opt opts[] = {
        {"--quick", OPT_UNSET, &g_repeats, NULL, "one repeat per case"},
        {"--threads", OPT_INT, &threads, "N", "CPU threads", 1, 4096, .no_default = 1},
        {"--repeats", OPT_INT, &g_repeats, "N", "repeats per case (the best is reported)", 1, 1000},
        {"--only", OPT_STR, &g_only, "SUBSTR", "run the cases whose name contains SUBSTR"},
    };
    const cli_spec spec = {
        "bench engine",
        "[options]",
        "Timings of the engine's heavy ops at SAM ViT-B and SD 1.5 shapes, next\n"
        "to raw cblas_sgemm at the same GEMM shape.\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (g_repeats == 0) g_repeats = 1; /* --quick */
    if (threads) asam_set_threads(threads);
    return rc;
}

int bench_engine_main(int argc, char **argv) {
    int prc = parse_args(argc, argv);
    if (prc) return cli_exit_code(prc);
    asam_ctx *ctx = asam_ctx_new(0);
    if (!ctx) {
        fprintf(stderr, "asam bench engine: cannot reserve the arena\n");
        return 1;
    }
    printf("engine benchmark: %d threads, best of %d (after a warm-up); arena peak per op\n"
           "cpu = CPU seconds of all threads; cpu-rate = flops / (cpu / threads), the rate on\n"
           "otherwise idle cores (wall time also counts whoever else shares the machine)\n",
           asam_get_threads(), g_repeats);
    printf("%-56s %10s %15s %10s %15s %11s\n", "case", "wall", "rate", "cpu", "cpu-rate",
           "arena peak");

    bench_sgemm("raw sgemm 2048x2048x2048 (peak)", 2048, 2048, 2048, 0);

    bench_sgemm("raw sgemm 4096x2304x768 (SAM qkv, w^T)", 4096, 2304, 768, 1);
    run_case(ctx, &(bench_case){.name = "linear (4096,768) -> 2304 (SAM qkv)",
                                .kind = OP_LINEAR,
                                .s = {4096, 768, 2304}});
    run_case(ctx, &(bench_case){.name = "matmul (4096,768) @ (768,2304)",
                                .kind = OP_MATMUL,
                                .s = {4096, 768, 2304}});
    bench_sgemm("raw sgemm 4096x3072x768 (SAM MLP, w^T)", 4096, 3072, 768, 1);
    run_case(ctx, &(bench_case){.name = "linear (4096,768) -> 3072 (SAM MLP lin1)",
                                .kind = OP_LINEAR,
                                .s = {4096, 768, 3072}});

    bench_sgemm("raw sgemm 768x4096x768 (patch embed GEMM)", 768, 4096, 768, 0);
    run_case(ctx, &(bench_case){.name = "conv2d (1,3,1024,1024) k16 s16 -> 768 (SAM patch)",
                                .kind = OP_CONV,
                                .s = {3, 1024, 768, 16, 16, 0}});
    bench_sgemm("raw sgemm 320x4096x2880 (SD conv3x3 GEMM)", 320, 4096, 2880, 0);
    /* 3x3 "same" convolutions: Winograd from 64x64 outputs, im2col + GEMM below (op_conv.c) */
    const bench_case conv3[] = {
        {.name = "conv2d (1,320,64,64) k3 s1 p1 -> 320 (SD)",
         .kind = OP_CONV,
         .s = {320, 64, 320, 3, 1, 1}},
        {.name = "conv2d (1,320,64,64) k3 s1 p1 -> 320 (SD) fwd+bwd",
         .kind = OP_CONV,
         .s = {320, 64, 320, 3, 1, 1},
         .backward = 1},
        {.name = "conv2d (1,640,32,32) k3 s1 p1 -> 640 (SD)",
         .kind = OP_CONV,
         .s = {640, 32, 640, 3, 1, 1}},
        {.name = "conv2d (1,1280,16,16) k3 s1 p1 -> 1280 (SD)",
         .kind = OP_CONV,
         .s = {1280, 16, 1280, 3, 1, 1}},
        {.name = "conv2d (1,128,512,512) k3 s1 p1 -> 128 (VAE)",
         .kind = OP_CONV,
         .s = {128, 512, 128, 3, 1, 1}},
        {.name = "conv2d (1,512,128,128) k3 s1 p1 -> 512 (VAE)",
         .kind = OP_CONV,
         .s = {512, 128, 512, 3, 1, 1}},
    };
    for (size_t i = 0; i < sizeof conv3 / sizeof conv3[0]; i++) run_case(ctx, &conv3[i]);

    const bench_case attn[] = {
        {.name = "attention SAM global (1,12,4096,64) rel-pos",
         .kind = OP_ATTN,
         .s = {1, 12, 4096, 4096, 64, 64},
         .rel = 1},
        {.name = "attention SAM window (25,12,196,64) rel-pos",
         .kind = OP_ATTN,
         .s = {25, 12, 196, 196, 64, 14},
         .rel = 1},
        {.name = "attention SD self (1,8,4096,40)", .kind = OP_ATTN, .s = {1, 8, 4096, 4096, 40}},
        {.name = "attention SD cross (1,8,4096,40) Nk=77",
         .kind = OP_ATTN,
         .s = {1, 8, 4096, 77, 40}},
        {.name = "attention CLIP causal (1,12,77,64)",
         .kind = OP_ATTN,
         .s = {1, 12, 77, 77, 64},
         .causal = 1},
    };
    int na = (int)(sizeof attn / sizeof attn[0]);
    for (int i = 0; i < na; i++) run_case(ctx, &attn[i]);
    for (int i = 0; i < na; i++) {
        bench_case c = attn[i];
        char name[96];
        snprintf(name, sizeof name, "%s fwd+bwd", c.name);
        c.name = name;
        c.backward = 1;
        run_case(ctx, &c);
    }
    asam_ctx_free(ctx);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
    return 0;
}
