/* VAE parity with CompVis AutoencoderKL on the tiny SD checkpoint: posterior mean of an image
 * (encode) and the decoder, both from the CompVis file. */
#include "sd_test_util.h"

int main(void) {
    asam_checkpoint *ck = sd_open_model();
    asam_vae *v = sd_load_vae(ck);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);

    asam_checkpoint *ce = sd_open("sd_tiny/vae_encode.safetensors");
    asam_tensor *mom = asam_vae_encode_moments(ctx, v, sd_case(ctx, ce, "image"));
    sd_check(mom, ce, "moments", 1e-4);
    if (mom) { /* logvar clamp and std as DiagonalGaussianDistribution */
        int64_t n = mom->numel / 2;
        float *lv = malloc((size_t)n * 2 * sizeof(float)), *sd = lv + n;
        for (int64_t i = 0; i < n; i++) {
            float l = mom->data[n + i];
            lv[i] = l < -30.0f ? -30.0f : l > 20.0f ? 20.0f : l;
            sd[i] = expf(0.5f * lv[i]);
        }
        sd_compare(lv, n, ce, "logvar", 1e-4, "logvar");
        sd_compare(sd, n, ce, "std", 1e-4, "std");
        free(lv);
    }
    asam_tensor *mean = asam_vae_encode(ctx, v, sd_case(ctx, ce, "image"));
    SD_CHECK_OK(ctx, "vae encode");
    sd_check(mean, ce, "mean", 1e-4);
    if (mean) {
        asam_tensor *z = asam_scale(ctx, mean, ASAM_SD_LATENT_SCALE);
        sd_check(z, ce, "z_mode_scaled", 1e-4);
    }

    asam_checkpoint *cd = sd_open("sd_tiny/vae_decode.safetensors");
    asam_tensor *img = asam_vae_decode(ctx, v, sd_case(ctx, cd, "z_unscaled"));
    SD_CHECK_OK(ctx, "vae decode");
    sd_check(img, cd, "image", 1e-4);
    /* decode from the UNet-space latent the way diffusers does (divide by 0.18215) */
    asam_tensor *zs = asam_scale(ctx, sd_case(ctx, cd, "z_scaled"), 1.0f / ASAM_SD_LATENT_SCALE);
    img = asam_vae_decode(ctx, v, zs);
    sd_check(img, cd, "image", 1e-4);

    /* bad input */
    asam_ctx_reset(ctx);
    CHECK(asam_vae_decode(ctx, v, asam_zeros(ctx, ASAM_SHAPE(1, 3, 16, 16))) == NULL,
          "3-channel latent accepted");
    CHECK(!asam_ctx_ok(ctx), "no error recorded");
    if (!asam_ctx_ok(ctx)) printf("ok   bad latent -> %s\n", asam_ctx_error(ctx));
    asam_ctx_reset(ctx);
    CHECK(asam_vae_encode(ctx, v, asam_zeros(ctx, ASAM_SHAPE(1, 3, 100, 100))) == NULL,
          "100x100 image accepted");
    if (!asam_ctx_ok(ctx)) printf("ok   bad image -> %s\n", asam_ctx_error(ctx));

    asam_ctx_free(ctx);
    asam_vae_free(v);
    asam_checkpoint_close(ce);
    asam_checkpoint_close(cd);
    asam_checkpoint_close(ck);
    return test_finish("test_sd_vae");
}
