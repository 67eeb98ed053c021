/* asam bench sd: Stable Diffusion 1.5 at real sizes with random weights.
 *   1. the image models (UNet, UNet + ControlNet, VAE decode, UNet backward):
 *      bench_sd_image_models (src/cli/bench_sd_models.c);
 *   2. the CLIP ViT-L/14 text encoder (12 x 768, 123M parameters): tokenizer + forward of the
 *      CFG pair;
 *   3. the whole bundle from a diffusers folder (unet/, vae/, text_encoder/ symlinked to the
 *      random files): load, encode the prompts, one CFG DDIM step at 64x64 (UNet batch 2) and
 *      the VAE decode, with the projected 50-step time.
 * Options: asam bench sd --help. */
#include "cli/bench_util.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sd.h"
#include "asam/sd_synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int link_into(const char *target, const char *dir, const char *sub, const char *name) {
    char d[4096], p[4200];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/%s", d, name);
    if (bench_file_exists(p)) return 0;
    if (symlink(target, p)) return asam_error("%s: cannot create the link", p);
    return 0;
}

/* The CLIP ViT-L/14 text encoder: tokenizer + forward of the CFG pair. */
static int bench_text(const char *clip_path, const char *prompt) {
    asam_checkpoint *ck = NULL;
    asam_clip_text *m = NULL;
    asam_clip_tokenizer *tok = NULL;
    if (asam_checkpoint_open(clip_path, &ck) || asam_clip_text_load(ck, "text_model.", 12, &m) ||
        asam_clip_tokenizer_load_dir(NULL, &tok)) {
        if (ck) asam_checkpoint_close(ck);
        asam_clip_text_free(m);
        return -1;
    }
    int64_t ids[2 * ASAM_CLIP_CONTEXT];
    double t0 = asam_now_s();
    int ntok = 0;
    for (int r = 0; r < 100; r++) {
        asam_clip_tokenize(tok, "", ids);
        ntok = asam_clip_tokenize(tok, prompt, ids + ASAM_CLIP_CONTEXT);
    }
    printf("%-34s %8.1f us (%d tokens)\n", "tokenizer (2 prompts)", (asam_now_s() - t0) * 1e4,
           ntok);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    /* 12 layers x 77 tokens x (8 D^2 + 4 D F + 4 N D) x batch 2 */
    double fl = 2.0 * 12 * 77 * (8.0 * 768 * 768 + 4.0 * 768 * 3072 + 4.0 * 77 * 768);
    int rc = 0;
    for (int rep = 0; rep < 2 && !rc; rep++) {
        asam_mark mk = asam_ctx_mark(ctx);
        cli_reset_peak_rss();
        t0 = asam_now_s();
        asam_tensor *out = asam_clip_text_forward(ctx, m, ids, 2, NULL);
        double sec = asam_now_s() - t0;
        if (!out)
            rc = asam_error("%s", asam_ctx_error(ctx));
        else
            bench_row(rep ? "CLIP ViT-L text, batch 2" : "CLIP ViT-L text, batch 2 (cold)", sec, fl,
                      "");
        asam_ctx_release(ctx, mk);
    }
    asam_ctx_free(ctx);
    asam_clip_text_free(m);
    asam_clip_tokenizer_free(tok);
    asam_checkpoint_close(ck);
    return rc;
}

/* A diffusers folder (unet/, vae/, text_encoder/ linked to the random files), made once. */
static int make_folder(const char *dir, const char *clip_path, char *folder, size_t n) {
    char du[2048], dv[2048];
    snprintf(du, sizeof du, "%s/diffusers_unet_f16.safetensors", dir);
    snprintf(dv, sizeof dv, "%s/diffusers_vae_f16.safetensors", dir);
    snprintf(folder, n, "%s/sd15_diffusers", dir);
    asam_sd_synth_unet_cfg uc = asam_sd_synth_unet_sd15();
    asam_sd_synth_vae_cfg vc = asam_sd_synth_vae_sd15();
    if ((!bench_file_exists(du) &&
         asam_sd_synth_write(du, &uc, "", NULL, "", NULL, "", 1, 1, 1, NULL, NULL)) ||
        (!bench_file_exists(dv) &&
         asam_sd_synth_write(dv, NULL, "", &vc, "", NULL, "", 1, 1, 3, NULL, NULL)))
        return -1;
    mkdir(folder, 0755);
    return link_into(du, folder, "unet", "diffusion_pytorch_model.safetensors") ||
                   link_into(dv, folder, "vae", "diffusion_pytorch_model.safetensors") ||
                   link_into(clip_path, folder, "text_encoder", "model.safetensors")
               ? -1
               : 0;
}

/* The whole bundle from the folder: load, encode the prompts, one CFG DDIM step at 64x64 (UNet
 * batch 2) and the VAE decode, with the projected 50-step time. */
static int bench_pipeline(const char *folder, const char *prompt) {
    cli_reset_peak_rss();
    double t0 = asam_now_s();
    asam_sd *sd;
    if (asam_sd_load(folder, asam_clip_default_dir(), &sd)) return -1;
    bench_row("load diffusers bundle (F16->F32)", asam_now_s() - t0, 0, folder);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_ddim s;
    asam_ddim_init(&s, 50, 1);
    t0 = asam_now_s();
    asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, prompt);
    asam_tensor *uncond = asam_sd_encode_prompt(ctx, sd, "");
    bench_row("encode prompt + negative", asam_now_s() - t0, 0, "");
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
    t0 = asam_now_s();
    asam_tensor *z = asam_ddim_sample(ctx, &g, &one, x, NULL, NULL);
    double step = asam_now_s() - t0;
    asam_tensor *img = NULL;
    double dec = 0;
    if (z) {
        bench_row("DDIM step, CFG (UNet batch 2)", step, 0, "");
        cli_reset_peak_rss();
        t0 = asam_now_s();
        img = asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE));
        dec = asam_now_s() - t0;
    }
    int rc = img ? 0 : asam_error("%s", asam_ctx_error(ctx));
    if (img) {
        bench_row("VAE decode 64 -> 512", dec, 0, "");
        printf("projected txt2img, 50 steps at 512x512: %.0f s\n", 50 * step + dec);
    }
    asam_ctx_free(ctx);
    asam_sd_free(sd);
    return rc;
}

int bench_sd_main(int argc, char **argv) {
    bench_sd_args a;
    int rc = bench_sd_parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    const char *skip = a.skip ? a.skip : "";
    mkdir(a.dir, 0755);
    if (!strstr(skip, "models") && bench_sd_image_models(&a)) return 1;
    char clip_path[2048], folder[2048];
    snprintf(clip_path, sizeof clip_path, "%s/clip_l_text_f32.safetensors", a.dir);
    if (!bench_file_exists(clip_path)) {
        double t0 = asam_now_s();
        if (bench_write_clip_text(clip_path, 12))
            return cli_fail("bench sd", "%s", asam_last_error());
        printf("wrote random CLIP ViT-L/14 text encoder in %.1f s\n", asam_now_s() - t0);
    }
    printf("\n%-34s %10s %16s %10s   %s\n", "what", "time", "rate", "peak RSS", "note");
    const char *prompt = "a highly detailed photograph of an astronaut riding a horse on the moon";
    rc = (!strstr(skip, "text") && bench_text(clip_path, prompt)) ||
         (!strstr(skip, "pipeline") &&
          (make_folder(a.dir, clip_path, folder, sizeof folder) || bench_pipeline(folder, prompt)));
    if (rc) cli_fail("bench sd", "%s", asam_last_error());
    return rc;
}
