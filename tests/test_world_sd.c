/* The world's trained SD models committed in data/world (issue 9) load through the official-layout
 * loaders (the diffusers folder data/world/sd through --sd's loader, the ControlNet v1.1 file
 * through --controlnet's) with the architecture docs/world.md states, and are trained, not
 * random: on freshly rendered val scenes the VAE reconstructs above a PSNR a random VAE never
 * reaches, the UNet predicts the noise of noised latents far better than an untrained one (whose
 * zero-initialised output gives an MSE of 1), and the ControlNet, given the scene's GT mask map,
 * lowers that error further. Skips (exit 77) when the weights are absent. */
#include "test_util.h"

#include "asam/engine.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/sa1b.h"
#include "asam/sd.h"
#include "asam/sd_models.h"
#include "asam/synthetic.h"
#include "asam/util.h"
#include "asam/world.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_SCENES 8
#define SIZE 128

/* The scene's GT colour mask map (the ControlNet's hint) through the SA-1B annotation path. */
static asam_tensor *hint_of(asam_ctx *ctx, const asam_synth_sample *s) {
    char *js = asam_synth_sample_json(s, 1, "sa_1.jpg");
    char path[] = "/tmp/asam_world_sd_XXXXXX";
    int fd = mkstemp(path);
    asam_tensor *h = NULL;
    if (js && fd >= 0) {
        FILE *f = fdopen(fd, "w");
        fputs(js, f);
        fclose(f);
        asam_sa1b_image ann;
        if (asam_sa1b_read(path, &ann) == 0) {
            h = asam_mask_map_tensor(ctx, &ann, SIZE);
            asam_sa1b_free(&ann);
        }
        remove(path);
    }
    free(js);
    return h;
}

int main(void) {
    char sd_dir[4096], cn_path[4096];
    snprintf(sd_dir, sizeof sd_dir, "%s/data/world/sd", ASAM_SOURCE_DIR);
    snprintf(cn_path, sizeof cn_path, "%s/data/world/controlnet.safetensors", ASAM_SOURCE_DIR);
    if (!test_is_file(cn_path)) TEST_SKIP("%s not found", cn_path);
    asam_set_threads(1);
    asam_sd *sd = NULL;
    asam_controlnet *cn = NULL;
    CHECK(asam_sd_load(sd_dir, NULL, &sd) == 0, "--sd %s: %s", sd_dir, asam_last_error());
    if (!sd) return test_finish("test_world_sd");
    CHECK(asam_sd_controlnet_open(cn_path, sd->unet, &cn) == 0, "--controlnet %s: %s", cn_path,
          asam_last_error());
    CHECK(asam_clip_text_width(sd->text) == 32 && asam_clip_text_layers(sd->text) == 2 &&
              asam_unet_model_channels(sd->unet) == 32 && asam_unet_context_dim(sd->unet) == 32 &&
              asam_unet_n_input_blocks(sd->unet) == 6,
          "architecture: CLIP width %d, %d layers; UNet channels %d, context %d, %d input blocks",
          asam_clip_text_width(sd->text), asam_clip_text_layers(sd->text),
          asam_unet_model_channels(sd->unet), asam_unet_context_dim(sd->unet),
          asam_unet_n_input_blocks(sd->unet));
    if (!cn) {
        asam_sd_free(sd);
        return test_finish("test_world_sd");
    }
    asam_ctx *ctx = asam_ctx_new(0);
    float ac[ASAM_DDPM_STEPS];
    asam_sd_alphas_cumprod(ac);
    static const int ts[3] = {100, 400, 700};
    double psnr = 0, mse_u = 0, mse_c = 0, mse_0 = 0;
    int n_mse = 0;
    for (int i = 0; i < N_SCENES; i++) {
        asam_synth_sample s;
        CHECK(asam_world_render(ASAM_WORLD_VAL, i, SIZE, 1, &s) == 0, "render: %s",
              asam_last_error());
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *x = asam_sd_image_to_tensor(ctx, &s.img, SIZE, SIZE, -1.0f);
        asam_tensor *z0 = asam_scale(ctx, asam_vae_encode(ctx, sd->vae, x), ASAM_SD_LATENT_SCALE);
        asam_tensor *xr =
            asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z0, 1.0f / ASAM_SD_LATENT_SCALE));
        asam_image rec = {0};
        CHECK(xr && asam_sd_tensor_to_image(xr, &rec) == 0, "VAE round trip: %s",
              asam_ctx_error(ctx));
        double se = 0;
        const size_t nv = (size_t)SIZE * SIZE * 3;
        for (size_t j = 0; rec.data && j < nv; j++) {
            double d = (double)rec.data[j] - s.img.data[j];
            se += d * d;
        }
        psnr += 10.0 * log10(255.0 * 255.0 * (double)nv / (se > 0 ? se : 1e-9));
        asam_image_free(&rec);
        /* eps-prediction error of the noised latent, with the caption, without / with control */
        asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, s.caption);
        asam_tensor *hint = hint_of(ctx, &s);
        CHECK(hint != NULL, "mask map of scene %d", i);
        for (int k = 0; k < 3 && hint && z0; k++) {
            asam_tensor *n = asam_new_like(ctx, z0), *zt = asam_new_like(ctx, z0);
            asam_randn(1000 + 10 * (uint64_t)i + (uint64_t)k, n->data, (size_t)n->numel);
            const float sa = sqrtf(ac[ts[k]]), sn = sqrtf(1 - ac[ts[k]]), t = (float)ts[k];
            for (int64_t j = 0; j < zt->numel; j++)
                zt->data[j] = sa * z0->data[j] + sn * n->data[j];
            asam_tensor *res[16];
            asam_tensor *eu = asam_unet_forward(ctx, sd->unet, zt, &t, cond, NULL, 1.0f);
            int rc = asam_controlnet_forward(ctx, cn, zt, &t, cond, hint, res);
            asam_tensor *ec = rc ? NULL : asam_unet_forward(ctx, sd->unet, zt, &t, cond, res, 1.0f);
            CHECK(eu && ec, "UNet / ControlNet forward: %s", asam_ctx_error(ctx));
            if (!eu || !ec) break;
            for (int64_t j = 0; j < n->numel; j++) {
                mse_u += pow(eu->data[j] - n->data[j], 2) / (double)n->numel;
                mse_c += pow(ec->data[j] - n->data[j], 2) / (double)n->numel;
                mse_0 += pow(n->data[j], 2) / (double)n->numel;
            }
            n_mse++;
        }
        asam_ctx_release(ctx, mk);
        asam_synth_sample_free(&s);
    }
    psnr /= N_SCENES;
    mse_u /= n_mse, mse_c /= n_mse, mse_0 /= n_mse;
    printf("on %d rendered val scenes: VAE PSNR %.2f dB; eps MSE at t = 100/400/700: untrained "
           "(zero output) %.4f, UNet %.4f, UNet + ControlNet %.4f\n",
           N_SCENES, psnr, mse_0, mse_u, mse_c);
    CHECK(psnr > 17.0, "the VAE is trained: PSNR %.2f dB", psnr);
    CHECK(mse_u < 0.5 * mse_0, "the UNet is trained: eps MSE %.4f vs %.4f", mse_u, mse_0);
    CHECK(mse_c < mse_u, "the ControlNet's mask control helps: %.4f vs %.4f", mse_c, mse_u);
    asam_ctx_free(ctx);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
    return test_finish("test_world_sd");
}
