/* asam bench efficientsam: EfficientSAM image encoder forward at 1024 (random
 * weights of the official ViT-Ti / ViT-S shapes, or a checkpoint), decoder per
 * prompt; seconds, GFLOP/s and peak RSS.
 * scripts/bench_efficientsam_vs_official.sh runs it alternately with the
 * official PyTorch encoder (scripts/ref/bench_efficientsam_official.py). */
#include "asam/efficientsam.h"
#include "asam/error.h"
#include "asam/util.h"
#include "cli/bench_util.h"
#include "cli/cli_util.h"
#include "cli/options.h"

#include <stdio.h>
#include <string.h>

/* Analytic FLOPs (2 per multiply-add) of the encoder forward at 1024: global
 * attention over all 4096 tokens in every block. */
static double encoder_flops(const asam_esam_config *c) {
    const double N = 4096, C = c->embed_dim, M = c->mlp_dim, D = c->dim;
    double f = 2 * N * C * (3 * 16 * 16); /* patch embedding */
    f += (double)c->depth * (2 * N * C * 3 * C + 2 * N * C * C + 2 * 2 * N * C * M /* linears */
                             + 2 * 2 * N * N * C); /* q k^T and p v over all heads */
    return f + 2 * N * D * C + 2 * N * D * D * 9;  /* neck */
}

typedef struct {
    const char *variant, *model;
    int iters, n_prompts;
} bench_esam_args;

static int bench_one(const bench_esam_args *a, const char *variant) {
    asam_esam_config cfg;
    asam_esam *m = NULL;
    int rc = a->model
                 ? asam_esam_load_frozen(a->model, 0, &m)
                 : (asam_esam_config_preset(variant, &cfg) || asam_esam_init_random(&cfg, 1, &m));
    if (rc) return cli_fail("bench efficientsam", "%s", asam_last_error());
    cfg = *asam_esam_cfg(m);
    printf("EfficientSAM %s encoder: C=%d depth=%d heads=%d, %d threads%s%s\n", cfg.variant,
           cfg.embed_dim, cfg.depth, cfg.num_heads, asam_get_threads(), a->model ? ", " : "",
           a->model ? a->model : "");
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, 1024, 1024));
    asam_randn(7, x->data, (size_t)x->numel); /* a normalised-image-like input */
    asam_mark base = asam_ctx_mark(ctx);
    double best = 1e30, best_cpu = 0, flops = encoder_flops(&cfg);
    asam_tensor *emb = NULL;
    for (int it = 0; it < a->iters && !rc; it++) {
        asam_ctx_release(ctx, base);
        double t0 = asam_now_s(), c0 = asam_cpu_s();
        emb = asam_esam_encode(ctx, m, x);
        double t = asam_now_s() - t0, c = asam_cpu_s() - c0;
        if (!emb) rc = -1;
        if (t < best) best = t, best_cpu = c;
    }
    char what[64], note[96];
    snprintf(what, sizeof what, "%s encoder forward", cfg.variant);
    /* CPU seconds too: on a shared machine they say more than the wall clock */
    snprintf(note, sizeof note, "best of %d, %.0f GFLOP, %.2f CPU-s", a->iters, flops / 1e9,
             best_cpu);
    if (!rc) bench_row(what, best, flops, note);
    if (!rc) { /* decoder: one box (two points labelled 2 / 3) per call, multimask
                */
        asam_tensor *e = asam_detach(ctx, emb);
        double t0 = asam_now_s();
        for (int i = 0; i < a->n_prompts && !rc; i++) {
            asam_mark mk = asam_ctx_mark(ctx);
            float xy[4] = {100.0f + i, 200, 600, 700.0f - i}, lab[2] = {2, 3}, c6[12], l6[6];
            asam_esam_prepare_points(1, 2, xy, lab, 1024, 1024, c6, l6);
            asam_tensor *low, *iou;
            rc = asam_esam_decode(ctx, m, e, asam_esam_prompt_encode(ctx, m, 1, c6, l6), 1, &low,
                                  &iou, NULL);
            asam_ctx_release(ctx, mk);
        }
        snprintf(what, sizeof what, "%s decoder", cfg.variant);
        snprintf(note, sizeof note, "per box prompt, multimask (%d prompts)", a->n_prompts);
        if (!rc) bench_row(what, (asam_now_s() - t0) / a->n_prompts, 0, note);
    }
    if (rc) cli_fail("bench efficientsam", "%s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    asam_esam_free(m);
    return rc ? 1 : 0;
}

int bench_efficientsam_main(int argc, char **argv) {
    bench_esam_args a = {.variant = "both", .iters = 1, .n_prompts = 10};
    const cli_opt opts[] = {
        {"--variant", OPT_STR, &a.variant, "vit_t|vit_s|both", "encoder size(s)"},
        {"--model", OPT_STR, &a.model, "FILE",
         "bench this EfficientSAM checkpoint instead of random weights"},
        {"--iters", OPT_INT, &a.iters, "N", "encoder forward runs (the best is reported)", 1, 1000},
        {"--prompts", OPT_INT, &a.n_prompts, "N", "decoder runs, one box each", 1, 100000},
    };
    const cli_spec spec = {"bench efficientsam",
                           "[options]",
                           "EfficientSAM image encoder forward at 1024 (random weights of the\n"
                           "official ViT-Ti / ViT-S shapes) and the mask decoder per box prompt.\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    int both = !strcmp(a.variant, "both");
    if (!both && strcmp(a.variant, "vit_t") && strcmp(a.variant, "vit_s"))
        return fprintf(stderr, "asam bench efficientsam: --variant must be vit_t, "
                               "vit_s or both\n"),
               2;
    if (a.model) return bench_one(&a, NULL);
    rc = bench_one(&a, both ? "vit_t" : a.variant);
    if (!rc && both) rc = bench_one(&a, "vit_s");
    return rc;
}
