/* Gradients against torch.autograd on the tiny model: UNet dL/dx and dL/dcontext for
 * L = sum(UNet(x, 501, context) * W), with and without gradient checkpointing, and the VAE
 * decoder's dL/dz for L2 = sum(decode(z) * W2). */
#include "sd_test_util.h"

static void unet_grads(asam_unet *u, const asam_checkpoint *cg, int checkpointing) {
    asam_unet_set_checkpointing(u, checkpointing);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *x = sd_case(ctx, cg, "unet.x"), *c = sd_case(ctx, cg, "unet.context");
    asam_set_requires_grad(x, 1);
    asam_set_requires_grad(c, 1);
    int64_t ti;
    sd_case_i64(cg, "unet.t", &ti);
    float t = (float)ti;
    asam_tensor *eps = asam_unet_forward(ctx, u, x, &t, c, NULL, 1.0f);
    sd_check(eps, cg, "unet.eps", 1e-4);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, eps, sd_case(ctx, cg, "unet.W")));
    if (loss) sd_compare(loss->data, 1, cg, "unet.loss", 1e-4, "unet.loss");
    CHECK(loss && asam_backward(ctx, loss) == 0, "unet backward: %s", asam_ctx_error(ctx));
    char what[64];
    snprintf(what, sizeof what, "unet.dL_dx (checkpointing %d)", checkpointing);
    sd_compare(x->grad, x->numel, cg, "unet.dL_dx", 1e-3, what);
    snprintf(what, sizeof what, "unet.dL_dcontext (checkpointing %d)", checkpointing);
    sd_compare(c->grad, c->numel, cg, "unet.dL_dcontext", 1e-3, what);
    printf("     arena peak %.1f MB\n", asam_ctx_peak(ctx) / 1e6);
    SD_CHECK_OK(ctx, "unet grads");
    asam_ctx_free(ctx);
}

static void vae_grads(asam_vae *v, const asam_checkpoint *cg, int checkpointing) {
    asam_vae_set_checkpointing(v, checkpointing);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *z = sd_case(ctx, cg, "vae.z");
    asam_set_requires_grad(z, 1);
    asam_tensor *img = asam_vae_decode(ctx, v, z);
    sd_check(img, cg, "vae.image", 1e-4);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, img, sd_case(ctx, cg, "vae.W2")));
    CHECK(loss && asam_backward(ctx, loss) == 0, "vae backward: %s", asam_ctx_error(ctx));
    char what[64];
    snprintf(what, sizeof what, "vae.dL_dz (checkpointing %d)", checkpointing);
    sd_compare(z->grad, z->numel, cg, "vae.dL_dz", 1e-3, what);
    printf("     arena peak %.1f MB\n", asam_ctx_peak(ctx) / 1e6);
    SD_CHECK_OK(ctx, "vae grads");
    asam_ctx_free(ctx);
}

int main(void) {
    asam_checkpoint *ck = sd_open_model();
    asam_checkpoint *cg = sd_open("sd_tiny/grads.safetensors");
    asam_unet *u = sd_load_unet(ck);
    asam_vae *v = sd_load_vae(ck);
    unet_grads(u, cg, 1);
    unet_grads(u, cg, 0);
    unet_grads(u, cg, 2);
    vae_grads(v, cg, 1);
    vae_grads(v, cg, 0);
    asam_unet_free(u);
    asam_vae_free(v);
    asam_checkpoint_close(cg);
    asam_checkpoint_close(ck);
    return test_finish("test_sd_grads");
}
