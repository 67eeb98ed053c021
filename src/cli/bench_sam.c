/* asam bench sam: SAM image encoder forward at 1024 (random weights of the real shapes, no file
 * needed), decoder per prompt, encoder backward with checkpointed blocks; seconds, GFLOP/s,
 * peak RSS and arena peak. */
#include "cli/cli_util.h"
#include "cli/options.h"
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

typedef struct {
    const char *variant;
    int iters, n_prompts, no_backward;
} bench_sam_args;

static int parse_args(bench_sam_args *a, int argc, char **argv) {
    *a = (bench_sam_args){.variant = "vit_b", .iters = 1, .n_prompts = 10};
    const cli_opt opts[] = {
        {"--variant", OPT_STR, &a->variant, "vit_b|vit_l|vit_h", "encoder size"},
        {"--iters", OPT_INT, &a->iters, "N",
         "encoder forward and backward runs (the best of each is reported)", 1, 1000},
        {"--prompts", OPT_INT, &a->n_prompts, "N", "decoder runs, one box each", 1, 100000},
        {"--no-backward", OPT_FLAG, &a->no_backward, NULL, "leave the encoder backward out"},
    };
    const cli_spec spec = {"bench sam",
                           "[options]",
                           "SAM image encoder forward at 1024 (random weights, real shapes), mask\n"
                           "decoder per box prompt, encoder backward (checkpointed blocks).\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    return cli_parse(&spec, argc, argv);
}

/* Best of `iters` forwards; returns the seconds, or a negative number on error. */
static double bench_encoder(asam_ctx *ctx, const asam_sam *m, asam_tensor *x, int iters,
                            double flops, asam_tensor **emb) {
    asam_mark base = asam_ctx_mark(ctx);
    if (asam_get_precision() == ASAM_BF16) {
        /* The first bf16 forward converts the frozen weights to bf16 (and frees their fp32
         * copies): run it once untimed, so the figures below are those of held weights. */
        if (!asam_sam_encode(ctx, m, x)) return -1;
        asam_ctx_release(ctx, base);
    }
    size_t f32b, bf16b;
    asam_param_bytes(&f32b, &bf16b);
    printf("weights          : %.3f GB fp32 + %.3f GB bf16 (held)\n", f32b / 1e9, bf16b / 1e9);
    asam_ctx_reset_peak(ctx);
    cli_reset_peak_rss(); /* the forwards' own peak, not the model building's */
    double best = 1e30, best_cpu = 0;
    for (int it = 0; it < iters; it++) {
        asam_ctx_release(ctx, base);
        double t0 = asam_now_s(), c0 = asam_cpu_s();
        *emb = asam_sam_encode(ctx, m, x);
        double t = asam_now_s() - t0, c = asam_cpu_s() - c0;
        if (!*emb) return -1;
        if (t < best) best = t, best_cpu = c;
    }
    printf("encoder forward  : %.2f s  %.1f GFLOP/s  (%.0f GFLOP; %.1f CPU-s)  arena peak %.2f GB  "
           "peak RSS %.2f GB\n",
           best, flops / best / 1e9, flops / 1e9, best_cpu, asam_ctx_peak(ctx) / 1e9,
           cli_peak_rss_gb());
    return best;
}

/* The decoder: one box per call, against the cached embedding. */
static int bench_decoder(asam_ctx *ctx, const asam_sam *m, asam_tensor *emb, int n_prompts) {
    asam_tensor *e = asam_detach(ctx, emb);
    double t0 = asam_now_s();
    for (int i = 0; i < n_prompts; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        float box[4] = {100.0f + i, 200, 600, 700.0f - i};
        asam_sam_prompt pr = {.batch = 1, .boxes = box};
        asam_tensor *sp, *de, *low, *iou;
        if (asam_sam_prompt_encode(ctx, m, &pr, &sp, &de) != 0 ||
            asam_sam_decode(ctx, m, e, sp, de, 1, &low, &iou, NULL) != 0)
            return -1;
        asam_ctx_release(ctx, mk);
    }
    double dec = (asam_now_s() - t0) / n_prompts;
    printf("decoder          : %.1f ms per prompt (box, multimask; %d prompts)\n", dec * 1e3,
           n_prompts);
    return 0;
}

/* Encoder backward of mean(y^2) with recording (blocks checkpointed), the best of iters runs
 * like the forward: the first one also faults in the arena's pages for the saved activations
 * and gradients, which a training or attack loop pays once. */
static int bench_backward(asam_ctx *ctx, const asam_sam *m, asam_tensor *x, int iters, double fwd) {
    asam_ctx_reset_peak(ctx);
    asam_ctx_set_grad(ctx, 1);
    asam_set_requires_grad(x, 1);
    double best = -1, best_cpu = 0, best_fwd = 0;
    for (int it = 0; it < iters; it++) {
        asam_mark mk = asam_ctx_mark(ctx);
        x->grad = NULL; /* its buffer went with the previous run's arena */
        double t1 = asam_now_s();
        asam_tensor *y = asam_sam_encode(ctx, m, x);
        double tf = asam_now_s() - t1;
        asam_tensor *loss = asam_mean(ctx, asam_mul(ctx, y, y));
        double t2 = asam_now_s(), c2 = asam_cpu_s();
        int rc = loss ? asam_backward(ctx, loss) : -1;
        double tb = asam_now_s() - t2, cb = asam_cpu_s() - c2;
        if (rc != 0 || !asam_ctx_ok(ctx)) return -1;
        if (best < 0 || tb < best) best = tb, best_cpu = cb, best_fwd = tf;
        asam_ctx_release(ctx, mk);
    }
    x->grad = NULL;
    printf("encoder backward : %.2f s (%.2fx forward; %.1f CPU-s; forward with recording %.2f s; "
           "best of %d)  arena peak %.2f GB  peak RSS %.2f GB\n",
           best, best / fwd, best_cpu, best_fwd, iters, asam_ctx_peak(ctx) / 1e9,
           cli_peak_rss_gb());
    return 0;
}

int bench_sam_main(int argc, char **argv) {
    bench_sam_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_sam_config cfg;
    asam_sam *m;
    if (asam_sam_config_preset(a.variant, &cfg) != 0 || asam_sam_init_random(&cfg, 1, &m) != 0)
        return cli_fail("bench sam", "%s", asam_last_error());
    printf("SAM %s encoder: C=%d depth=%d heads=%d, %d threads\n", cfg.variant, cfg.embed_dim,
           cfg.depth, cfg.num_heads, asam_get_threads());
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, 1024, 1024));
    asam_rng rng; /* an input image of uniform values in [-1, 1) */
    asam_rng_seed(&rng, 7);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)(asam_rng_uniform(&rng) * 2 - 1);
    asam_ctx_set_grad(ctx, 0);
    asam_mark base = asam_ctx_mark(ctx);
    asam_tensor *emb = NULL;
    double fwd = bench_encoder(ctx, m, x, a.iters, encoder_flops(&cfg), &emb);
    rc = fwd < 0 || bench_decoder(ctx, m, emb, a.n_prompts);
    if (!rc && !a.no_backward) {
        asam_ctx_release(ctx, base);
        rc = bench_backward(ctx, m, x, a.iters, fwd);
    }
    if (rc) cli_fail("bench sam", "%s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    asam_sam_free(m);
    return rc;
}
