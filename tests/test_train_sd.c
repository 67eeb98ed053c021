/* asam train-vae and train-unet on a tiny synthetic SA-1B folder (32 px images, a 2-level VAE,
 * a 2-level UNet, a width-16 CLIP-mini): each lowers its loss; a run stopped at step k and resumed
 * writes weights byte-identical to an uninterrupted run; the folder loads through the diffusers
 * loader (--sd) with the architecture chosen; the VAE's latents fit SD's 0.18215 (std 1 on the
 * training images); a changed option refuses to resume, naming it; bad options give one error. */
#include "test_util.h"

#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sd.h"
#include "asam/synthetic.h"
#include "asam/train_sd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void vae_opts(asam_vae_train_opts *o, const char *data, const char *out) {
    asam_vae_train_opts_default(o);
    o->data = data;
    o->out = out;
    o->n_levels = 2;
    o->mult[0] = 1, o->mult[1] = 1;
    o->lr = 2e-3f;
    o->warmup = 3;
    o->batch = 2;
    o->crop = 16;
    o->seed = 3;
    o->save_every = 0;
    o->verbose = 0;
}

static void unet_opts(asam_unet_train_opts *o, const char *data, const char *out) {
    asam_unet_train_opts_default(o);
    o->data = data;
    o->out = out;
    o->n_levels = 2;
    o->mult[0] = 1, o->mult[1] = 1;
    o->attn[0] = 0, o->attn[1] = 1;
    o->text_width = 16;
    o->text_layers = 1;
    o->text_heads = 2;
    o->lr = 2e-3f;
    o->warmup = 3;
    o->batch = 4;
    o->seed = 4;
    o->save_every = 0;
    o->verbose = 0;
}

static double mean_of(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return s / n;
}

int main(void) {
    asam_set_threads(1);
    char dir[] = "/tmp/asam_train_sd_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char data[512], a[512], b[512], c[512], p1[600], p2[600];
    snprintf(data, sizeof data, "%s/data", dir);
    CHECK(asam_synthetic_sa1b(data, 6, 32, 21) == 0, "synthetic: %s", asam_last_error());
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);

    /* ---- train-vae lowers its loss; its latents fit 0.18215 ---- */
    enum { VSTEPS = 40, USTEPS = 40 };
    float vl[VSTEPS], ul[USTEPS];
    asam_vae_train_opts vo;
    vae_opts(&vo, data, a);
    vo.steps = VSTEPS;
    vo.losses = vl;
    CHECK(asam_train_vae(&vo) == 0, "train-vae: %s", asam_last_error());
    double v0 = mean_of(vl, 8), v1 = mean_of(vl + VSTEPS - 8, 8);
    printf("train-vae loss: first 8 steps %.4f, last 8 steps %.4f\n", v0, v1);
    CHECK(v1 < 0.8 * v0, "VAE loss did not go down: %.4f -> %.4f", v0, v1);
    double psnr = 0, lsd = 0;
    int n = 0;
    CHECK(asam_vae_eval(a, data, 0, &psnr, &n, &lsd) == 0, "vae eval: %s", asam_last_error());
    printf("train-vae: PSNR %.2f dB on %d training images, 0.18215-scaled latent std %.4f\n", psnr,
           n, lsd);
    CHECK(n == 6 && psnr > 10 && psnr < 99, "PSNR %.2f over %d images", psnr, n);
    CHECK(fabs(lsd - 1.0) < 1e-3, "scaled latent std %.5f, expected 1 (rescaled)", lsd);

    /* ---- train-unet lowers its loss; the folder loads through the diffusers loader ---- */
    asam_unet_train_opts uo;
    unet_opts(&uo, data, a);
    uo.steps = USTEPS;
    uo.losses = ul;
    CHECK(asam_train_unet(&uo) == 0, "train-unet: %s", asam_last_error());
    double u0 = mean_of(ul, 8), u1 = mean_of(ul + USTEPS - 8, 8);
    printf("train-unet loss: first 8 steps %.4f, last 8 steps %.4f\n", u0, u1);
    CHECK(u1 < 0.85 * u0, "UNet loss did not go down: %.4f -> %.4f", u0, u1);
    asam_sd *sd = NULL;
    CHECK(asam_sd_load(a, NULL, &sd) == 0, "--sd %s: %s", a, asam_last_error());
    if (sd) {
        CHECK(asam_clip_text_width(sd->text) == 16 && asam_clip_text_layers(sd->text) == 1,
              "CLIP-mini read back: width %d, %d layers", asam_clip_text_width(sd->text),
              asam_clip_text_layers(sd->text));
        CHECK(asam_unet_context_dim(sd->unet) == 16 && asam_unet_model_channels(sd->unet) == 32 &&
                  asam_unet_n_input_blocks(sd->unet) == 4,
              "UNet read back: context %d, channels %d, %d input blocks",
              asam_unet_context_dim(sd->unet), asam_unet_model_channels(sd->unet),
              asam_unet_n_input_blocks(sd->unet));
        /* the loaded UNet gives the loss the trainer saw: one denoising call runs */
        asam_ctx *ctx = asam_ctx_new(0);
        asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, "a red ellipse");
        asam_tensor *x = asam_full(ctx, ASAM_SHAPE(1, 4, 16, 16), 0.5f);
        float t = 500;
        asam_tensor *eps = asam_unet_forward(ctx, sd->unet, x, &t, cond, NULL, 1.0f);
        CHECK(eps && asam_ctx_ok(ctx), "UNet forward: %s", asam_ctx_error(ctx));
        asam_ctx_free(ctx);
    }
    asam_sd_free(sd);

    /* ---- stop at step k and resume == uninterrupted, byte for byte (both trainers) ---- */
    vae_opts(&vo, data, b);
    vo.steps = 7;
    CHECK(asam_train_vae(&vo) == 0, "vae uninterrupted: %s", asam_last_error());
    vae_opts(&vo, data, c);
    vo.steps = 7;
    vo.stop_after = 3;
    CHECK(asam_train_vae(&vo) == 1, "vae stop-after: %s", asam_last_error());
    snprintf(p2, sizeof p2, "%s/vae/diffusion_pytorch_model.safetensors", c);
    CHECK(access(p2, F_OK) != 0, "a stopped train-vae wrote its weights");
    vo.stop_after = 0;
    vo.resume = 1;
    CHECK(asam_train_vae(&vo) == 0, "vae resume: %s", asam_last_error());
    snprintf(p1, sizeof p1, "%s/vae/diffusion_pytorch_model.safetensors", b);
    CHECK(test_same_file(p1, p2), "resumed VAE differs from the uninterrupted one");

    unet_opts(&uo, data, b);
    uo.steps = 7;
    CHECK(asam_train_unet(&uo) == 0, "unet uninterrupted: %s", asam_last_error());
    unet_opts(&uo, data, c);
    uo.steps = 7;
    uo.stop_after = 3;
    CHECK(asam_train_unet(&uo) == 1, "unet stop-after: %s", asam_last_error());
    snprintf(p2, sizeof p2, "%s/unet/diffusion_pytorch_model.safetensors", c);
    CHECK(access(p2, F_OK) != 0, "a stopped train-unet wrote its weights");
    uo.stop_after = 0;
    uo.resume = 1;
    CHECK(asam_train_unet(&uo) == 0, "unet resume: %s", asam_last_error());
    snprintf(p1, sizeof p1, "%s/unet/diffusion_pytorch_model.safetensors", b);
    CHECK(test_same_file(p1, p2), "resumed UNet differs from the uninterrupted one");

    /* ---- a changed option refuses to resume, naming it ---- */
    vae_opts(&vo, data, c);
    vo.steps = 9;
    vo.resume = 1;
    vo.kl_weight = 1e-3;
    CHECK(asam_train_vae(&vo) == -1 && strstr(asam_last_error(), "--kl-weight"),
          "vae resume with another --kl-weight: %s", asam_last_error());
    unet_opts(&uo, data, c);
    uo.steps = 9;
    uo.resume = 1;
    uo.uncond_share = 0.2f;
    CHECK(asam_train_unet(&uo) == -1 && strstr(asam_last_error(), "--uncond-share"),
          "unet resume with another --uncond-share: %s", asam_last_error());

    /* ---- F16 weights: the same model to half precision ---- */
    unet_opts(&uo, data, c);
    uo.steps = 7;
    uo.resume = 1;
    uo.f16 = 1;
    CHECK(asam_train_unet(&uo) == 0, "unet f16: %s", asam_last_error());
    size_t n32 = 0, n16 = 0;
    char *f32 = test_slurp(p1, &n32), *f16 = test_slurp(p2, &n16);
    CHECK(f32 && f16 && n16 < n32 * 0.6, "F16 file %zu bytes vs F32 %zu", n16, n32);
    free(f32), free(f16);

    /* ---- bad options and data: one error naming the problem ---- */
    vae_opts(&vo, data, c);
    vo.crop = 15;
    CHECK(asam_train_vae(&vo) == -1 && strstr(asam_last_error(), "--crop"), "crop 15: %s",
          asam_last_error());
    vae_opts(&vo, "sa1b:/nonexistent/folder", c);
    CHECK(asam_train_vae(&vo) == -1 && strstr(asam_last_error(), "/nonexistent/folder"),
          "missing data: %s", asam_last_error());
    snprintf(p1, sizeof p1, "%s/none", dir);
    unet_opts(&uo, data, p1);
    CHECK(asam_train_unet(&uo) == -1 && strstr(asam_last_error(), "train-vae"),
          "train-unet without a VAE: %s", asam_last_error());

    if (!test_failures) test_rm_rf(dir);
    return test_finish("test_train_sd");
}
