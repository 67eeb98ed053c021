/* asam bench sd: Stable Diffusion 1.5 at real sizes with random weights.
 *   1. the image models (UNet, UNet + ControlNet, VAE decode, UNet backward): bench_sd_models_main
 *      when it is built in (src/cli/bench_sd_models.c);
 *   2. the CLIP ViT-L/14 text encoder (12 x 768, 123M parameters): tokenizer + forward of the
 *      CFG pair;
 *   3. the whole bundle from a diffusers folder (unet/, vae/, text_encoder/ symlinked to the
 *      random files): load, encode the prompts, one CFG DDIM step at 64x64 (UNet batch 2) and
 *      the VAE decode, with the projected 50-step time.
 *   asam bench sd [--dir DIR] [--skip models,text,pipeline] [other bench_sd_models options] */
#include "cli/cli_util.h"
#include "asam/engine.h"
#include "asam/checkpoint.h"

#include "asam/error.h"
#include "asam/sd.h"
#include "models/sd/sd_synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int bench_sd_models_main(int argc, char **argv) __attribute__((weak));

static void row(const char *what, double sec, double flops, const char *note) {
    printf("%-34s %8.2f s %8.1f GFLOP/s %7.2f GB   %s\n", what, sec,
           flops > 0 ? flops / sec / 1e9 : 0.0, cli_peak_rss_gb(), note);
}

/* Random CLIP ViT-L/14 text encoder (HF names under "text_model."), F32 safetensors. */
static int write_clip_l(const char *path) {
    enum { D = 768, F = 3072, L = 12, V = 49408, P = 77 };
    asam_st_entry *e = calloc(16 * L + 8, sizeof *e);
    char(*names)[96] = calloc(16 * L + 8, sizeof *names);
    float *big = malloc(sizeof(float) * (size_t)V * D), *ones = malloc(sizeof(float) * F);
    float *zeros = calloc(F, sizeof(float));
    if (!e || !names || !big || !ones || !zeros) return asam_error("out of memory");
    uint64_t s = 12345;
    for (size_t i = 0; i < (size_t)V * D; i++) { /* uniform(-a, a), a = sqrt(3/fan_in) for D */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        big[i] = (float)(((s >> 40) / 16777216.0 * 2 - 1) * 0.0625);
    }
    for (int i = 0; i < F; i++) ones[i] = 1.0f;
    size_t n = 0;
#define ADD(nm, nd, d0, d1, ptr)                                                                   \
    do {                                                                                           \
        snprintf(names[n], sizeof names[n], "%s", nm);                                             \
        e[n] = (asam_st_entry){names[n], ASAM_DT_F32, nd, {d0, d1}, ptr};                          \
        n++;                                                                                       \
    } while (0)
    ADD("text_model.embeddings.token_embedding.weight", 2, V, D, big);
    ADD("text_model.embeddings.position_embedding.weight", 2, P, D, big);
    ADD("text_model.final_layer_norm.weight", 1, D, 0, ones);
    ADD("text_model.final_layer_norm.bias", 1, D, 0, zeros);
    for (int l = 0; l < L; l++) {
        char b[96];
        const char *lin[6] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
        for (int k = 0; k < 6; k++) {
            int o = k == 4 ? F : D, in = k == 5 ? F : D;
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.%s.weight", l, lin[k]);
            ADD(b, 2, o, in, big + (size_t)(l * 7 + k) * 4096);
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.%s.bias", l, lin[k]);
            ADD(b, 1, o, 0, zeros);
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.layer_norm%d.weight", l, k);
            ADD(b, 1, D, 0, ones);
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.layer_norm%d.bias", l, k);
            ADD(b, 1, D, 0, zeros);
        }
    }
#undef ADD
    int rc = asam_safetensors_write(path, e, n, NULL, 0);
    free(e), free(names), free(big), free(ones), free(zeros);
    return rc;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int link_into(const char *target, const char *dir, const char *sub, const char *name) {
    char d[4096], p[4200];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/%s", d, name);
    if (file_exists(p)) return 0;
    if (symlink(target, p)) return asam_error("%s: cannot create the link", p);
    return 0;
}

int bench_sd_main(int argc, char **argv) {
    const char *dir = "/tmp/asam_sd15_synth", *skip = "";
    /* Our options are consumed; the rest go to bench_sd_models_main. */
    char **fwd = calloc((size_t)argc + 3, sizeof *fwd);
    int nf = 0;
    fwd[nf++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[i + 1];
            fwd[nf++] = argv[i++];
            fwd[nf++] = argv[i];
        } else if (!strcmp(argv[i], "--skip") && i + 1 < argc) {
            skip = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: asam bench sd [--dir DIR] [--skip models,text,pipeline] [--threads N] "
                   "[--size 64] [--clean]\n");
            free(fwd);
            return 0;
        } else {
            fwd[nf++] = argv[i];
        }
    }
    mkdir(dir, 0755);
    int rc = 0;
    if (!strstr(skip, "models")) {
        if (bench_sd_models_main)
            rc = bench_sd_models_main(nf, fwd);
        else
            printf("(image-model benchmark not built into this binary)\n");
    }
    free(fwd);
    if (rc) return rc;

    char clip_path[2048];
    snprintf(clip_path, sizeof clip_path, "%s/clip_l_text_f32.safetensors", dir);
    if (!file_exists(clip_path)) {
        double t0 = cli_now();
        if (write_clip_l(clip_path)) {
            fprintf(stderr, "asam bench sd: %s\n", asam_last_error());
            return 1;
        }
        printf("wrote random CLIP ViT-L/14 text encoder in %.1f s\n", cli_now() - t0);
    }
    printf("\n%-34s %10s %16s %10s   %s\n", "what", "time", "rate", "peak RSS", "note");
    const char *prompt = "a highly detailed photograph of an astronaut riding a horse on the moon";
    if (!strstr(skip, "text")) {
        asam_checkpoint *ck;
        asam_clip_text *m;
        asam_clip_tokenizer *tok;
        if (asam_checkpoint_open(clip_path, &ck) ||
            asam_clip_text_load(ck, "text_model.", 12, &m) ||
            asam_clip_tokenizer_load_dir(NULL, &tok)) {
            fprintf(stderr, "asam bench sd: %s\n", asam_last_error());
            return 1;
        }
        int64_t ids[2 * ASAM_CLIP_CONTEXT];
        double t0 = cli_now();
        int ntok = 0;
        for (int r = 0; r < 100; r++) {
            asam_clip_tokenize(tok, "", ids);
            ntok = asam_clip_tokenize(tok, prompt, ids + ASAM_CLIP_CONTEXT);
        }
        printf("%-34s %8.1f us (%d tokens)\n", "tokenizer (2 prompts)", (cli_now() - t0) * 1e4,
               ntok);
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        /* 12 layers x 77 tokens x (8 D^2 + 4 D F + 4 N D) x batch 2 */
        double fl = 2.0 * 12 * 77 * (8.0 * 768 * 768 + 4.0 * 768 * 3072 + 4.0 * 77 * 768);
        for (int rep = 0; rep < 2; rep++) {
            asam_mark mk = asam_ctx_mark(ctx);
            cli_reset_peak_rss();
            t0 = cli_now();
            asam_tensor *out = asam_clip_text_forward(ctx, m, ids, 2, NULL);
            double sec = cli_now() - t0;
            if (!out) {
                fprintf(stderr, "asam bench sd: %s\n", asam_ctx_error(ctx));
                return 1;
            }
            row(rep ? "CLIP ViT-L text, batch 2" : "CLIP ViT-L text, batch 2 (cold)", sec, fl, "");
            asam_ctx_release(ctx, mk);
        }
        asam_ctx_free(ctx);
        asam_clip_text_free(m);
        asam_clip_tokenizer_free(tok);
        asam_checkpoint_close(ck);
    }

    if (!strstr(skip, "pipeline")) {
        char du[2048], dv[2048], folder[2048];
        snprintf(du, sizeof du, "%s/diffusers_unet_f16.safetensors", dir);
        snprintf(dv, sizeof dv, "%s/diffusers_vae_f16.safetensors", dir);
        snprintf(folder, sizeof folder, "%s/sd15_diffusers", dir);
        sd_synth_unet_cfg uc = sd_synth_unet_sd15();
        sd_synth_vae_cfg vc = sd_synth_vae_sd15();
        if ((!file_exists(du) &&
             sd_synth_write(du, &uc, "", NULL, "", NULL, "", 1, 1, 1, NULL, NULL)) ||
            (!file_exists(dv) &&
             sd_synth_write(dv, NULL, "", &vc, "", NULL, "", 1, 1, 3, NULL, NULL))) {
            fprintf(stderr, "asam bench sd: %s\n", asam_last_error());
            return 1;
        }
        mkdir(folder, 0755);
        if (link_into(du, folder, "unet", "diffusion_pytorch_model.safetensors") ||
            link_into(dv, folder, "vae", "diffusion_pytorch_model.safetensors") ||
            link_into(clip_path, folder, "text_encoder", "model.safetensors")) {
            fprintf(stderr, "asam bench sd: %s\n", asam_last_error());
            return 1;
        }
        cli_reset_peak_rss();
        double t0 = cli_now();
        asam_sd *sd;
        if (asam_sd_load(folder, asam_clip_default_dir(), &sd)) {
            fprintf(stderr, "asam bench sd: %s\n", asam_last_error());
            return 1;
        }
        row("load diffusers bundle (F16->F32)", cli_now() - t0, 0, folder);
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_ddim s;
        asam_ddim_init(&s, 50, 1);
        t0 = cli_now();
        asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, prompt);
        asam_tensor *uncond = asam_sd_encode_prompt(ctx, sd, "");
        row("encode prompt + negative", cli_now() - t0, 0, "");
        asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 4, 64, 64));
        asam_randn(0, x->data, (size_t)x->numel);
        asam_sd_guide g = {.unet = sd->unet,
                           .cond = cond,
                           .uncond = uncond,
                           .guidance = 7.5f,
                           .batch_cfg = 1,
                           .control_scale = 1.0f};
        asam_ddim one = s;
        one.n = 1;
        cli_reset_peak_rss();
        t0 = cli_now();
        asam_tensor *z = asam_ddim_sample(ctx, &g, &one, x, NULL, NULL);
        double step = cli_now() - t0;
        if (!z) {
            fprintf(stderr, "asam bench sd: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        row("DDIM step, CFG (UNet batch 2)", step, 0, "");
        cli_reset_peak_rss();
        t0 = cli_now();
        asam_tensor *img =
            asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE));
        double dec = cli_now() - t0;
        if (!img) {
            fprintf(stderr, "asam bench sd: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        row("VAE decode 64 -> 512", dec, 0, "");
        printf("projected txt2img, 50 steps at 512x512: %.0f s\n", 50 * step + dec);
        asam_ctx_free(ctx);
        asam_sd_free(sd);
    }
    return 0;
}
