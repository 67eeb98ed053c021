/* asam bench generator: per-image time and peak memory of the ASAM generator at SD 1.5 +
 * SAM ViT-B sizes with random weights (UNet 320 (1,2,4,4), VAE 128, ControlNet, SAM ViT-B; a
 * one-layer 768-wide CLIP text encoder, whose cost is negligible). Each piece is timed over a
 * few DDIM steps (--steps, default 1) and extrapolated linearly to the official 50 steps,
 * 10 null-text steps and 10 attack iterations; the output says so.
 * Options: asam bench generator --help. */
#include "cli/bench_util.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/sd_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_models(const char *dir, asam_gen_models *m) {
    char fu[4096], fc[4096], ft[4096];
    snprintf(fu, sizeof fu, "%s/gen_sd15_random.safetensors", dir);
    snprintf(fc, sizeof fc, "%s/gen_control_random.safetensors", dir);
    snprintf(ft, sizeof ft, "%s/gen_clip1_random.safetensors", dir);
    asam_sd_synth_unet_cfg uc = asam_sd_synth_unet_sd15();
    asam_sd_synth_vae_cfg vc = asam_sd_synth_vae_sd15();
    asam_sd_synth_unet_cfg cc = uc;
    cc.hint_channels = 3;
    if (!bench_file_exists(fu) &&
        asam_sd_synth_write(fu, &uc, "model.diffusion_model.", &vc, "first_stage_model.", NULL,
                            NULL, 0, 1, 1, NULL, NULL))
        return -1;
    if (!bench_file_exists(fc) &&
        asam_sd_synth_write(fc, NULL, NULL, NULL, NULL, &cc, "control_model.", 0, 1, 2, NULL, NULL))
        return -1;
    if (!bench_file_exists(ft) && bench_write_clip_text(ft, 1)) return -1;
    memset(m, 0, sizeof *m);
    m->sd = calloc(1, sizeof *m->sd);
    asam_checkpoint *cu = NULL, *cn = NULL, *ct = NULL;
    int rc = !m->sd || asam_checkpoint_open(fu, &cu) || asam_checkpoint_open(fc, &cn) ||
             asam_checkpoint_open(ft, &ct) ||
             asam_unet_load(cu, "model.diffusion_model.", &m->sd->unet) ||
             asam_vae_load(cu, "first_stage_model.", &m->sd->vae) ||
             asam_controlnet_load(cn, "control_model.", &m->controlnet) ||
             asam_clip_text_load_frozen(ct, "text_model.", 0, &m->sd->text) ||
             asam_clip_tokenizer_load_dir(NULL, &m->sd->tokenizer);
    if (cu) asam_checkpoint_close(cu);
    if (cn) asam_checkpoint_close(cn);
    if (ct) asam_checkpoint_close(ct);
    asam_sam_config sc;
    if (!rc) rc = asam_sam_config_preset("vit_b", &sc) || asam_sam_init_random(&sc, 3, &m->sam);
    return rc ? -1 : 0;
}

/* a synthetic image with n rectangular masks */
static int make_image(int n, asam_image *img, asam_sa1b_image *ann) {
    const int W = 640, H = 480;
    if (asam_image_alloc(img, W, H, 3)) return -1;
    for (int p = 0; p < W * H * 3; p++) img->data[p] = (uint8_t)((p * 7919u) >> 5);
    memset(ann, 0, sizeof *ann);
    ann->width = W, ann->height = H, ann->n = (size_t)n;
    ann->anns = calloc((size_t)n, sizeof *ann->anns);
    uint8_t *m = malloc((size_t)W * H);
    for (int k = 0; k < n; k++) {
        memset(m, 0, (size_t)W * H);
        int x0 = (k * 37) % (W - 80), y0 = (k * 53) % (H - 60), w = 20 + (k * 13) % 60,
            h = 20 + (k * 17) % 40;
        for (int y = y0; y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) m[y * W + x] = 1;
        if (asam_rle_encode(m, H, W, &ann->anns[k].rle)) return -1;
    }
    free(m);
    return 0;
}

typedef struct {
    const char *dir, *skip;
    int steps, boxes, size, null_steps, null_ckpt;
} gen_bench_args;

static int parse_args(gen_bench_args *a, int argc, char **argv) {
    *a = (gen_bench_args){
        .dir = "/tmp", .skip = "", .steps = 1, .boxes = 140, .size = 512, .null_steps = 1};
    const cli_opt opts[] = {
        {"--dir", OPT_STR, &a->dir, "DIR", "scratch folder for the random model files"},
        {"--steps", OPT_INT, &a->steps, "S", "DDIM steps each piece runs", 1, 1000},
        {"--null-steps", OPT_INT, &a->null_steps, "N", "null-text inner steps timed", 1, 1000},
        {"--boxes", OPT_INT, &a->boxes, "N", "GT box prompts (ASAM caps at 140)", 1, 100000},
        {"--size", OPT_INT, &a->size, "N", "SD image side", 8, 4096, .multiple_of = 8},
        {"--null-checkpointing", OPT_CHOICE, &a->null_ckpt, NULL,
         "the null-text steps' activations, as asam generate --null-checkpointing",
         .choices = "auto|on|off"},
        {"--skip", OPT_STR, &a->skip, "full|attack",
         "leave out the full-chain attack, or both attacks"},
    };
    const cli_spec spec = {"bench generator",
                           "[options]",
                           "Per-image time and peak memory of the ASAM generator at SD 1.5 + SAM\n"
                           "ViT-B sizes with random weights, extrapolated from a few steps.\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    return cli_parse(&spec, argc, argv);
}

/* What the pieces share: models, the image with its masks, the settings, the hint. */
typedef struct {
    gen_bench_args a;
    asam_gen_models m;
    asam_image img;
    asam_sa1b_image ann;
    asam_gen_opts o;
    asam_ctx *ctx;
    asam_tensor *hint;
    asam_inversion inv;
    double chain50, tail, tail_arena; /* from the skip attack, reused by the full one */
} gen_bench;

/* invert: VAE encode alone, then the whole inversion at S steps without (T0) and with (T1)
 * null-text inner steps; the difference gives the cost of one inner step. */
static int bench_invert(gen_bench *b) {
    asam_ctx *ctx = b->ctx;
    const int S = b->a.steps, NS = b->a.null_steps, size = b->a.size;
    asam_gen_opts o = b->o;
    o.steps = S;
    cli_reset_peak_rss();
    asam_ctx_reset_peak(ctx);
    asam_mark mk = asam_ctx_mark(ctx);
    int pg = asam_ctx_set_grad(ctx, 0);
    double tv = asam_now_s();
    asam_tensor *x = asam_sd_image_to_tensor(ctx, &b->img, size, size, -1.0f);
    asam_vae_encode(ctx, b->m.sd->vae, x);
    tv = asam_now_s() - tv;
    asam_ctx_set_grad(ctx, pg);
    asam_ctx_release(ctx, mk);
    o.null_eps = -1; /* never stop early: time every inner step */
    /* warm-up: one inner step faults in the arena pages a long run keeps reusing */
    o.null_steps = 1;
    o.steps = 1;
    if (asam_invert(ctx, &b->m, &o, &b->img, b->hint, "a photo", &b->inv)) return -1;
    asam_inversion_free(&b->inv);
    o.steps = S;
    o.null_steps = 0;
    double t0i = asam_now_s();
    if (asam_invert(ctx, &b->m, &o, &b->img, b->hint, "a photo", &b->inv)) return -1;
    t0i = asam_now_s() - t0i;
    asam_inversion_free(&b->inv);
    o.null_steps = NS;
    o.verbose = 1; /* its null-text policy line (and a line per step) on stderr */
    double t1i = asam_now_s();
    if (asam_invert(ctx, &b->m, &o, &b->img, b->hint, "a photo", &b->inv)) return -1;
    t1i = asam_now_s() - t1i;
    double per_step = (t0i - tv) / S, per_inner = (t1i - t0i) / (S * (double)NS);
    double inv50 = tv + 50 * per_step + 500 * per_inner;
    printf("%-26s VAE encode %.1f s; per DDIM step %.1f s (inversion + CFG advance); per null-text "
           "inner step %.1f s (UNet+ControlNet fwd+bwd)\n",
           "invert", tv, per_step, per_inner);
    printf("%-26s -> %8.1f s/image (50 steps x 10 inner steps, extrapolated)  peak RSS %.2f GB, "
           "arena %.2f GB\n",
           "", inv50, cli_peak_rss_gb(), asam_ctx_peak(ctx) / 1e9);
    return 0;
}

/* attack --grad skip: one S-step chain without gradient, then the tail (decode + soft clamp +
 * SAM + loss, forward and backward to z_0). */
static int bench_attack_skip(gen_bench *b, const asam_attack_target *tg) {
    asam_ctx *ctx = b->ctx;
    const int S = b->a.steps, size = b->a.size;
    asam_mark mk = asam_ctx_mark(ctx);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, b->m.sd, "a photo");
    asam_tensor *xT = asam_from_data(ctx, ASAM_SHAPE(1, 4, size / 8, size / 8), b->inv.x_T);
    double tc = asam_now_s();
    asam_tensor *z0 = asam_gen_sample_chain(ctx, &b->m, &b->o, &b->inv, cond, b->hint, xT, 0);
    tc = asam_now_s() - tc;
    z0 = asam_detach(ctx, z0);
    cli_reset_peak_rss();
    asam_ctx_reset_peak(ctx);
    size_t base = asam_ctx_used(ctx);
    asam_set_requires_grad(z0, 1);
    asam_ctx_set_grad(ctx, 1);
    double tt = asam_now_s();
    float miou;
    asam_tensor *loss =
        asam_attack_loss(ctx, &b->m, &b->o, tg, asam_gen_decode01(ctx, &b->m, z0), &miou, NULL);
    if (!loss || asam_backward(ctx, loss)) return asam_error("%s", asam_ctx_error(ctx));
    tt = asam_now_s() - tt;
    double tail_rss = cli_peak_rss_gb();
    b->tail_arena = (asam_ctx_peak(ctx) - base) / 1e9;
    asam_ctx_set_grad(ctx, 0);
    asam_ctx_release(ctx, mk);
    b->chain50 = tc * 50.0 / S;
    b->tail = tt;
    double skip50 = 10 * b->chain50 + 10 * tt; /* 10 evaluations, each with backward */
    printf("%-26s %8.1f s measured (%d CFG steps no grad) + %.1f s (VAE decode + SAM fwd/bwd, "
           "%d boxes)\n",
           "attack --grad skip", tc, S, tt, b->a.boxes);
    printf("%-26s %8s                -> %8.1f s/image (11 x 50-step chains + 11 tails, "
           "extrapolated)  peak RSS %.2f GB, arena %.2f GB (tail)\n",
           "", "", skip50, tail_rss, b->tail_arena);
    return 0;
}

/* attack --grad full: the checkpointed S-step chain forward + backward (from a random
 * dL/dz_0). */
static int bench_attack_full(gen_bench *b) {
    asam_ctx *ctx = b->ctx;
    const int S = b->a.steps, size = b->a.size;
    asam_mark mk = asam_ctx_mark(ctx);
    cli_reset_peak_rss();
    asam_ctx_reset_peak(ctx);
    size_t base = asam_ctx_used(ctx);
    asam_ctx_set_grad(ctx, 1);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, b->m.sd, "a photo");
    asam_tensor *xT = asam_from_data(ctx, ASAM_SHAPE(1, 4, size / 8, size / 8), b->inv.x_T);
    asam_set_requires_grad(xT, 1);
    double tf = asam_now_s();
    asam_tensor *z0 = asam_gen_sample_chain(ctx, &b->m, &b->o, &b->inv, cond, b->hint, xT, 1);
    float *g = z0 ? malloc((size_t)z0->numel * sizeof(float)) : NULL;
    if (g) {
        asam_randn(9, g, (size_t)z0->numel);
        for (int64_t i = 0; i < z0->numel; i++) g[i] *= 1e-3f;
    }
    int rc = !g || asam_backward_from(ctx, z0, g);
    free(g);
    if (rc) return asam_error("%s", asam_ctx_error(ctx));
    tf = asam_now_s() - tf;
    double chain_rss = cli_peak_rss_gb(), chain_arena = (asam_ctx_peak(ctx) - base) / 1e9;
    asam_ctx_set_grad(ctx, 0);
    asam_ctx_release(ctx, mk);
    double full50 = 10 * (tf * 50.0 / S + b->tail) + b->chain50 + b->tail;
    printf("%-26s %8.1f s measured (%d checkpointed CFG steps, forward + backward)\n",
           "attack --grad full", tf, S);
    printf("%-26s %8s                -> %8.1f s/image (10 x (50-step chain fwd+bwd + tail) + "
           "final evaluation, extrapolated)\n",
           "", "", full50);
    printf("%-26s chain backward peak RSS %.2f GB, arena %.2f GB (stays at one step's: only "
           "the %d step inputs are kept); whole-attack peak = max(chain, tail) = %.2f GB "
           "arena\n",
           "", chain_rss, chain_arena, S, fmax(chain_arena, b->tail_arena));
    return 0;
}

int bench_generator_main(int argc, char **argv) {
    static gen_bench b;
    memset(&b, 0, sizeof b);
    int rc = parse_args(&b.a, argc, argv);
    if (rc) return cli_exit_code(rc);
    const int size = b.a.size, boxes = b.a.boxes;
    double t0 = asam_now_s();
    if (load_models(b.a.dir, &b.m)) return cli_fail("bench generator", "%s", asam_last_error());
    printf("random SD 1.5 UNet + VAE + ControlNet, SAM ViT-B, %dx%d images, %d boxes, %d threads "
           "(setup %.1f s)\n",
           size, size, boxes, asam_get_threads(), asam_now_s() - t0);
    printf("each piece runs %d DDIM step(s); per-image numbers are EXTRAPOLATED to 50 steps, 10 "
           "null-text steps per timestep (no early stop) and 10 attack iterations\n\n",
           b.a.steps);
    if (make_image(boxes, &b.img, &b.ann))
        return cli_fail("bench generator", "%s", asam_last_error());
    asam_gen_opts_default(&b.o);
    b.o.size = size;
    b.o.max_boxes = boxes;
    b.o.null_checkpointing = b.a.null_ckpt;
    b.ctx = asam_ctx_new(0);
    b.hint = asam_mask_map_tensor(b.ctx, &b.ann, size);
    asam_attack_target tg = {0};
    rc = bench_invert(&b) ||
         (!strstr(b.a.skip, "attack") &&
          (asam_attack_target_make(&b.ann, boxes, &tg) || bench_attack_skip(&b, &tg) ||
           (!strstr(b.a.skip, "full") && bench_attack_full(&b))));
    if (rc) cli_fail("bench generator", "%s", asam_last_error());
    asam_attack_target_free(&tg);
    asam_inversion_free(&b.inv);
    asam_ctx_free(b.ctx);
    asam_image_free(&b.img);
    asam_sa1b_free(&b.ann);
    asam_gen_models_free(&b.m);
    return rc;
}
