/* asam bench sam: SAM image encoder forward at 1024 (random weights of the real shapes, no file
 * needed), decoder per prompt, encoder backward with checkpointed blocks; seconds, GFLOP/s,
 * peak RSS and arena peak. */
#include "cli/cli_util.h"
#include "asam/error.h"
#include "asam/sam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Analytic FLOPs (2 per multiply-add) of the encoder forward at 1024. */
static double encoder_flops(const asam_sam_config *c) {
    const double N = 4096, C = c->embed_dim, M = c->mlp_dim, hd = c->head_dim, nH = c->num_heads;
    double f = 2 * N * C * (3 * 16 * 16); /* patch embedding */
    for (int i = 0; i < c->depth; i++) {
        f += 2 * N * C * 3 * C + 2 * N * C * C + 2 * 2 * N * C * M; /* qkv, proj, MLP */
        double S = c->is_global[i] ? 64 : c->window;
        double tokens = c->is_global[i] ? N : 70.0 * 70.0; /* padded windows */
        double keys = S * S;
        f += 2 * 2 * tokens * keys * C;    /* q k^T and p v over all heads */
        f += 2 * 2 * tokens * S * hd * nH; /* decomposed rel-pos (h and w) */
    }
    f += 2 * N * 256 * C + 2 * N * 256 * 256 * 9; /* neck */
    return f;
}

int bench_sam_main(int argc, char **argv) {
    const char *variant = "vit_b";
    int iters = 1, backward = 1, n_prompts = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: asam bench sam [--variant vit_b|vit_l|vit_h] [--iters N] "
                   "[--prompts N] [--no-backward]\n"
                   "  SAM image encoder forward at 1024 (random weights, real shapes), mask\n"
                   "  decoder per box prompt, encoder backward (checkpointed blocks).\n");
            return 0;
        } else if (!strcmp(argv[i], "--variant") && i + 1 < argc) {
            variant = argv[++i];
        } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            iters = atoi(argv[++i]);
            if (iters < 1) iters = 1;
        } else if (!strcmp(argv[i], "--prompts") && i + 1 < argc) {
            n_prompts = atoi(argv[++i]);
            if (n_prompts < 1) n_prompts = 1;
        } else if (!strcmp(argv[i], "--no-backward")) {
            backward = 0;
        } else {
            fprintf(stderr, "asam bench sam: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    asam_sam_config cfg;
    if (asam_sam_config_preset(variant, &cfg) != 0) {
        fprintf(stderr, "asam bench sam: %s\n", asam_last_error());
        return 1;
    }
    asam_sam *m;
    if (asam_sam_init_random(&cfg, 1, &m) != 0) {
        fprintf(stderr, "asam bench sam: %s\n", asam_last_error());
        return 1;
    }
    printf("SAM %s encoder: C=%d depth=%d heads=%d, %d threads\n", cfg.variant, cfg.embed_dim,
           cfg.depth, cfg.num_heads, asam_get_threads());
    double flops = encoder_flops(&cfg);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, 1024, 1024));
    uint64_t s = 7;
    for (int64_t i = 0; i < x->numel; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x->data[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
    asam_ctx_set_grad(ctx, 0);
    asam_mark base = asam_ctx_mark(ctx);
    asam_ctx_reset_peak(ctx);
    double best = 1e30, best_cpu = 0;
    asam_tensor *emb = NULL;
    for (int it = 0; it < iters; it++) {
        asam_ctx_release(ctx, base);
        double t0 = cli_now(), c0 = cli_cpu_now();
        emb = asam_sam_encode(ctx, m, x);
        double t = cli_now() - t0, c = cli_cpu_now() - c0;
        if (!emb) {
            fprintf(stderr, "asam bench sam: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        if (t < best) best = t, best_cpu = c;
    }
    double fwd = best;
    printf("encoder forward  : %.2f s  %.1f GFLOP/s  (%.0f GFLOP; %.1f CPU-s)  arena peak %.2f GB  "
           "peak RSS %.2f GB\n",
           fwd, flops / fwd / 1e9, flops / 1e9, best_cpu, asam_ctx_peak(ctx) / 1e9,
           cli_peak_rss_gb());

    /* decoder: one box per call, against the cached embedding */
    asam_tensor *e = asam_detach(ctx, emb);
    double t0 = cli_now();
    for (int i = 0; i < n_prompts; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        float box[4] = {100.0f + i, 200, 600, 700.0f - i};
        asam_sam_prompt pr = {.batch = 1, .boxes = box};
        asam_tensor *sp, *de, *low, *iou;
        if (asam_sam_prompt_encode(ctx, m, &pr, &sp, &de) != 0 ||
            asam_sam_decode(ctx, m, e, sp, de, 1, &low, &iou, NULL) != 0) {
            fprintf(stderr, "asam bench sam: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        asam_ctx_release(ctx, mk);
    }
    double dec = (cli_now() - t0) / n_prompts;
    printf("decoder          : %.1f ms per prompt (box, multimask; %d prompts)\n", dec * 1e3,
           n_prompts);

    if (backward) {
        asam_ctx_release(ctx, base);
        asam_ctx_reset_peak(ctx);
        asam_ctx_set_grad(ctx, 1);
        asam_set_requires_grad(x, 1);
        double t1 = cli_now();
        asam_tensor *y = asam_sam_encode(ctx, m, x);
        double tf = cli_now() - t1;
        asam_tensor *loss = asam_mean(ctx, asam_mul(ctx, y, y));
        double t2 = cli_now(), c2 = cli_cpu_now();
        int rc = loss ? asam_backward(ctx, loss) : -1;
        double tb = cli_now() - t2, cb = cli_cpu_now() - c2;
        if (rc != 0 || !asam_ctx_ok(ctx)) {
            fprintf(stderr, "asam bench sam: backward: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        printf(
            "encoder backward : %.2f s (%.2fx forward; %.1f CPU-s; forward with recording %.2f s)  "
            "arena peak %.2f GB  peak RSS %.2f GB\n",
            tb, tb / fwd, cb, tf, asam_ctx_peak(ctx) / 1e9, cli_peak_rss_gb());
    }
    asam_ctx_free(ctx);
    asam_sam_free(m);
    return 0;
}
