/* asam bench generator: per-image time and peak memory of the ASAM generator at SD 1.5 +
 * SAM ViT-B sizes with random weights (UNet 320 (1,2,4,4), VAE 128, ControlNet, SAM ViT-B; a
 * one-layer 768-wide CLIP text encoder, whose cost is negligible). Each piece is timed over a
 * few DDIM steps (--steps, default 1) and extrapolated linearly to the official 50 steps,
 * 10 null-text steps and 10 attack iterations; the output says so.
 *   asam bench generator [--dir DIR] [--steps 1] [--null-steps 1] [--boxes 140] [--size 512]
 *                        [--skip full] */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "models/sd/sd_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int bench_generator_main(int argc, char **argv);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double peak_rss_gb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1048576.0;
}

static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static void fill(float *p, size_t n, uint64_t seed, float scale) {
    asam_randn(seed, p, n);
    for (size_t i = 0; i < n; i++) p[i] *= scale;
}

/* one-layer CLIP text encoder of width 768 under HF names ("text_model."), F32 */
static int write_clip1(const char *path) {
    enum { D = 768, F = 3072, V = 49408, P = 77 };
    struct {
        const char *name;
        int64_t r, c;
        float scale; /* 0: ones (norm gains) */
    } spec[] = {
        {"text_model.embeddings.token_embedding.weight", V, D, 0.02f},
        {"text_model.embeddings.position_embedding.weight", P, D, 0.01f},
        {"text_model.encoder.layers.0.layer_norm1.weight", D, 0, 0},
        {"text_model.encoder.layers.0.layer_norm1.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.self_attn.q_proj.weight", D, D, 0.036f},
        {"text_model.encoder.layers.0.self_attn.q_proj.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.self_attn.k_proj.weight", D, D, 0.036f},
        {"text_model.encoder.layers.0.self_attn.k_proj.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.self_attn.v_proj.weight", D, D, 0.036f},
        {"text_model.encoder.layers.0.self_attn.v_proj.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.self_attn.out_proj.weight", D, D, 0.036f},
        {"text_model.encoder.layers.0.self_attn.out_proj.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.layer_norm2.weight", D, 0, 0},
        {"text_model.encoder.layers.0.layer_norm2.bias", D, 0, 1e-3f},
        {"text_model.encoder.layers.0.mlp.fc1.weight", F, D, 0.036f},
        {"text_model.encoder.layers.0.mlp.fc1.bias", F, 0, 1e-3f},
        {"text_model.encoder.layers.0.mlp.fc2.weight", D, F, 0.018f},
        {"text_model.encoder.layers.0.mlp.fc2.bias", D, 0, 1e-3f},
        {"text_model.final_layer_norm.weight", D, 0, 0},
        {"text_model.final_layer_norm.bias", D, 0, 1e-3f},
    };
    enum { N = sizeof spec / sizeof spec[0] };
    asam_st_entry e[N];
    float *bufs[N];
    for (int i = 0; i < N; i++) {
        size_t n = (size_t)spec[i].r * (spec[i].c ? spec[i].c : 1);
        bufs[i] = malloc(n * sizeof(float));
        if (!bufs[i]) return asam_error("bench: out of memory");
        if (spec[i].scale == 0)
            for (size_t k = 0; k < n; k++) bufs[i][k] = 1.0f;
        else
            fill(bufs[i], n, 100 + i, spec[i].scale);
        e[i] = (asam_st_entry){
            spec[i].name, ASAM_DT_F32, spec[i].c ? 2 : 1, {spec[i].r, spec[i].c}, bufs[i]};
    }
    int rc = asam_safetensors_write(path, e, N, NULL, 0);
    for (int i = 0; i < N; i++) free(bufs[i]);
    return rc;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int load_models(const char *dir, asam_gen_models *m) {
    char fu[4096], fc[4096], ft[4096];
    snprintf(fu, sizeof fu, "%s/gen_sd15_random.safetensors", dir);
    snprintf(fc, sizeof fc, "%s/gen_control_random.safetensors", dir);
    snprintf(ft, sizeof ft, "%s/gen_clip1_random.safetensors", dir);
    sd_synth_unet_cfg uc = sd_synth_unet_sd15();
    sd_synth_vae_cfg vc = sd_synth_vae_sd15();
    sd_synth_unet_cfg cc = uc;
    cc.hint_channels = 3;
    if (!exists(fu) && sd_synth_write(fu, &uc, "model.diffusion_model.", &vc, "first_stage_model.",
                                      NULL, NULL, 0, 1, 1, NULL, NULL))
        return -1;
    if (!exists(fc) &&
        sd_synth_write(fc, NULL, NULL, NULL, NULL, &cc, "control_model.", 0, 1, 2, NULL, NULL))
        return -1;
    if (!exists(ft) && write_clip1(ft)) return -1;
    memset(m, 0, sizeof *m);
    m->sd = calloc(1, sizeof *m->sd);
    asam_checkpoint *cu = NULL, *cn = NULL, *ct = NULL;
    int rc = !m->sd || asam_checkpoint_open(fu, &cu) || asam_checkpoint_open(fc, &cn) ||
             asam_checkpoint_open(ft, &ct) ||
             asam_unet_load(cu, "model.diffusion_model.", &m->sd->unet) ||
             asam_vae_load(cu, "first_stage_model.", &m->sd->vae) ||
             asam_controlnet_load(cn, "control_model.", &m->controlnet) ||
             asam_clip_text_load(ct, "text_model.", 0, &m->sd->text) ||
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

int bench_generator_main(int argc, char **argv) {
    const char *dir = "/tmp", *skip = "";
    int S = 1, boxes = 140, size = 512, NS = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--dir") && v)
            dir = v, i++;
        else if (!strcmp(argv[i], "--steps") && v)
            S = atoi(v), i++;
        else if (!strcmp(argv[i], "--boxes") && v)
            boxes = atoi(v), i++;
        else if (!strcmp(argv[i], "--size") && v)
            size = atoi(v), i++;
        else if (!strcmp(argv[i], "--null-steps") && v)
            NS = atoi(v), i++;
        else if (!strcmp(argv[i], "--skip") && v)
            skip = v, i++;
        else {
            fprintf(stderr, "usage: asam bench generator [--dir DIR] [--steps S] [--boxes N] "
                            "[--size 512] [--null-steps 1] [--skip full]\n");
            return 2;
        }
    }
    if (S < 1 || NS < 1 || boxes < 1 || size % 8)
        return fprintf(stderr, "bench generator: bad options\n"), 2;
    asam_gen_models m;
    double t0 = now();
    if (load_models(dir, &m)) {
        fprintf(stderr, "bench generator: %s\n", asam_last_error());
        return 1;
    }
    printf("random SD 1.5 UNet + VAE + ControlNet, SAM ViT-B, %dx%d images, %d boxes, %d threads "
           "(setup %.1f s)\n",
           size, size, boxes, asam_get_threads(), now() - t0);
    printf("each piece runs %d DDIM step(s); per-image numbers are EXTRAPOLATED to 50 steps, 10 "
           "null-text steps per timestep (no early stop) and 10 attack iterations\n\n",
           S);
    asam_image img;
    asam_sa1b_image ann;
    if (make_image(boxes, &img, &ann)) return 1;
    asam_gen_opts o;
    asam_gen_opts_default(&o);
    o.size = size;
    o.max_boxes = boxes;
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *hint = asam_mask_map_tensor(ctx, &ann, size);
    asam_inversion inv;
    int rc = 0;

    /* invert: VAE encode alone, then the whole inversion at S steps */
    o.steps = S;
    reset_peak();
    asam_ctx_reset_peak(ctx);
    asam_mark mk = asam_ctx_mark(ctx);
    int pg = asam_ctx_set_grad(ctx, 0);
    double tv = now();
    asam_tensor *x = asam_sd_image_to_tensor(ctx, &img, size, size, -1.0f);
    asam_vae_encode(ctx, m.sd->vae, x);
    tv = now() - tv;
    asam_ctx_set_grad(ctx, pg);
    asam_ctx_release(ctx, mk);
    /* T0: inversion + advancing steps without null-text; T1: with NS inner steps each */
    o.null_eps = -1; /* never stop early: time every inner step */
    o.null_steps = 0;
    double t0i = now();
    if (asam_invert(ctx, &m, &o, &img, hint, "a photo", &inv)) {
        fprintf(stderr, "bench generator: %s\n", asam_last_error());
        return 1;
    }
    t0i = now() - t0i;
    asam_inversion_free(&inv);
    o.null_steps = NS;
    double t1i = now();
    if (asam_invert(ctx, &m, &o, &img, hint, "a photo", &inv)) {
        fprintf(stderr, "bench generator: %s\n", asam_last_error());
        return 1;
    }
    t1i = now() - t1i;
    double per_step = (t0i - tv) / S, per_inner = (t1i - t0i) / (S * (double)NS);
    double inv50 = tv + 50 * per_step + 500 * per_inner;
    printf("%-26s VAE encode %.1f s; per DDIM step %.1f s (inversion + CFG advance); per null-text "
           "inner step %.1f s (UNet+ControlNet fwd+bwd)\n",
           "invert", tv, per_step, per_inner);
    printf("%-26s -> %8.1f s/image (50 steps x 10 inner steps, extrapolated)  peak RSS %.2f GB, "
           "arena %.2f GB\n",
           "", inv50, peak_rss_gb(), asam_ctx_peak(ctx) / 1e9);
    o.null_steps = 10;
    o.null_eps = 1e-5f;

    /* pieces of the attack */
    asam_attack_target tg;
    asam_attack_target_make(&ann, boxes, &tg);
    mk = asam_ctx_mark(ctx);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, m.sd, "a photo");
    asam_tensor *clean = asam_sd_image_to_tensor(ctx, &img, size, size, 0.0f);
    asam_tensor *xT = asam_from_data(ctx, ASAM_SHAPE(1, 4, size / 8, size / 8), inv.x_T);
    double tc = now();
    asam_tensor *z0 = asam_gen_sample_chain(ctx, &m, &o, &inv, cond, hint, xT, 0);
    tc = now() - tc;
    z0 = asam_detach(ctx, z0);
    /* tail: decode + soft clamp + SAM + loss, forward and backward to z_0 */
    reset_peak();
    asam_ctx_reset_peak(ctx);
    size_t base = asam_ctx_used(ctx);
    asam_set_requires_grad(z0, 1);
    asam_ctx_set_grad(ctx, 1);
    double tt = now();
    float miou;
    asam_tensor *loss =
        asam_attack_loss(ctx, &m, &o, &tg, asam_gen_decode01(ctx, &m, z0), clean, &miou);
    if (!loss || asam_backward(ctx, loss)) {
        fprintf(stderr, "bench generator: %s\n", asam_ctx_error(ctx));
        return 1;
    }
    tt = now() - tt;
    double tail_rss = peak_rss_gb(), tail_arena = (asam_ctx_peak(ctx) - base) / 1e9;
    asam_ctx_set_grad(ctx, 0);
    asam_ctx_release(ctx, mk);
    double chain50 = tc * 50.0 / S;
    double skip50 = 11 * chain50 + 11 * tt; /* 11 evaluations, 10 with backward (tail ~ same) */
    printf("%-26s %8.1f s measured (%d CFG steps no grad) + %.1f s (VAE decode + SAM fwd/bwd, "
           "%d boxes)\n",
           "attack --grad skip", tc, S, tt, boxes);
    printf("%-26s %8s                -> %8.1f s/image (11 x 50-step chains + 11 tails, "
           "extrapolated)  peak RSS %.2f GB, arena %.2f GB (tail)\n",
           "", "", skip50, tail_rss, tail_arena);

    if (!strstr(skip, "full")) {
        /* full: the checkpointed S-step chain forward + backward (from a random dL/dz_0) */
        mk = asam_ctx_mark(ctx);
        reset_peak();
        asam_ctx_reset_peak(ctx);
        base = asam_ctx_used(ctx);
        asam_ctx_set_grad(ctx, 1);
        cond = asam_sd_encode_prompt(ctx, m.sd, "a photo");
        xT = asam_from_data(ctx, ASAM_SHAPE(1, 4, size / 8, size / 8), inv.x_T);
        asam_set_requires_grad(xT, 1);
        double tf = now();
        z0 = asam_gen_sample_chain(ctx, &m, &o, &inv, cond, hint, xT, 1);
        float *g = malloc((size_t)z0->numel * sizeof(float));
        fill(g, (size_t)z0->numel, 9, 1e-3f);
        if (!z0 || asam_backward_from(ctx, z0, g)) {
            fprintf(stderr, "bench generator: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        tf = now() - tf;
        free(g);
        double chain_rss = peak_rss_gb(), chain_arena = (asam_ctx_peak(ctx) - base) / 1e9;
        asam_ctx_set_grad(ctx, 0);
        asam_ctx_release(ctx, mk);
        double full50 = 10 * (tf * 50.0 / S + tt) + chain50 + tt;
        printf("%-26s %8.1f s measured (%d checkpointed CFG steps, forward + backward)\n",
               "attack --grad full", tf, S);
        printf("%-26s %8s                -> %8.1f s/image (10 x (50-step chain fwd+bwd + tail) + "
               "final evaluation, extrapolated)\n",
               "", "", full50);
        printf("%-26s chain backward peak RSS %.2f GB, arena %.2f GB (stays at one step's: only "
               "the %d step inputs are kept); whole-attack peak = max(chain, tail) = %.2f GB "
               "arena\n",
               "", chain_rss, chain_arena, S, fmax(chain_arena, tail_arena));
    }
    asam_attack_target_free(&tg);
    asam_inversion_free(&inv);
    asam_ctx_free(ctx);
    asam_image_free(&img);
    asam_sa1b_free(&ann);
    asam_gen_models_free(&m);
    return rc;
}
