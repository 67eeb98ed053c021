/* Accuracy of --precision bf16 on full-size models with random weights (the real shapes, so
 * the real GEMM depths K of up to 11520): bf16 against fp32 in the same run.
 *   SAM ViT-B at 1024: image embedding, low-res logits of a box, IoU of the full-size masks.
 *   SD 1.5 UNet (random CompVis F16 file written once into the build folder): eps at a 32x32
 *   latent, and a 10-step DDIM latent with CFG 7.5 (batched branches) at 16x16.
 * About 40 CPU-seconds, many minutes on a loaded machine: labelled slow (left out of the
 * sanitizer run) with a longer timeout. Skips (77) on a
 * CPU without AVX512-BF16. */
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/sd.h"
#include "asam/sd_models.h"
#include "asam/sd_synth.h"
#include "test_util.h"

static double report(const char *what, const float *b16, const float *f32, int64_t n,
                     double bound) {
    double rd = test_rel_diff(b16, f32, (size_t)n);
    CHECK(rd <= bound && rd > 0, "%s: bf16 vs fp32 rel diff %.3g (bound %.3g, must be > 0)", what,
          rd, bound);
    printf("ok   %-40s bf16 vs fp32 rel diff %.3g (bound %.3g)\n", what, rd, bound);
    return rd;
}

static void sam_part(void) {
    asam_sam_config cfg;
    asam_sam *m = NULL;
    CHECK(asam_sam_config_preset("vit_b", &cfg) == 0 && asam_sam_init_random(&cfg, 1, &m) == 0,
          "random vit_b: %s", asam_last_error());
    if (!m) return;
    asam_image img = {0};
    asam_image_alloc(&img, 640, 480, 3);
    for (int y = 0; y < 480; y++) /* a disc on a gradient: some structure for the masks */
        for (int x = 0; x < 640; x++) {
            int d = (x - 300) * (x - 300) + (y - 240) * (y - 240) < 120 * 120;
            uint8_t *p = img.data + (y * 640 + x) * 3;
            p[0] = (uint8_t)(d ? 220 : x * 255 / 640), p[1] = (uint8_t)(d ? 40 : y * 255 / 480);
            p[2] = (uint8_t)(d ? 60 : 128);
        }
    float box[4] = {170, 110, 430, 370};
    float *emb[2], *low[2];
    uint8_t *mask[2];
    int64_t ne = 0, nl = 0, nm = 0;
    for (int pi = 0; pi < 2; pi++) {
        asam_set_precision(pi ? ASAM_BF16 : ASAM_FP32);
        asam_sam_predictor p;
        asam_sam_predictor_init(&p, m);
        CHECK(asam_sam_predictor_set_image(&p, &img) == 0, "set_image: %s", asam_last_error());
        asam_sam_query q = {.batch = 1, .boxes = box};
        asam_sam_result r;
        CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict: %s", asam_last_error());
        ne = p.embedding->numel, nl = (int64_t)r.n_masks * 256 * 256;
        nm = (int64_t)r.n_masks * r.h * r.w;
        emb[pi] = malloc((size_t)ne * 4), low[pi] = malloc((size_t)nl * 4), mask[pi] = malloc(nm);
        memcpy(emb[pi], p.embedding->data, (size_t)ne * 4);
        memcpy(low[pi], r.low_res, (size_t)nl * 4);
        memcpy(mask[pi], r.masks, (size_t)nm);
        asam_sam_result_free(&r);
        asam_sam_predictor_free(&p);
    }
    asam_set_precision(ASAM_FP32);
    report("SAM ViT-B image embedding", emb[1], emb[0], ne, 2e-2);
    report("SAM ViT-B low-res logits", low[1], low[0], nl, 3e-2);
    int64_t inter = 0, uni = 0;
    for (int64_t i = 0; i < nm; i++) {
        inter += mask[0][i] && mask[1][i];
        uni += mask[0][i] || mask[1][i];
    }
    double iou = uni ? (double)inter / (double)uni : 1.0;
    CHECK(iou >= 0.98, "SAM ViT-B mask IoU %.5f < 0.98", iou);
    printf("ok   %-40s %.5f (%lld pixels in the union; bound >= 0.98)\n", "SAM ViT-B mask IoU", iou,
           (long long)uni);
    for (int i = 0; i < 2; i++) free(emb[i]), free(low[i]), free(mask[i]);
    asam_image_free(&img);
    asam_sam_free(m);
}

static void sd_part(void) {
    const char *path = "fullsize_sd15_unet_f16.safetensors"; /* in the build folder */
    if (!test_is_file(path)) {
        asam_sd_synth_unet_cfg uc = asam_sd_synth_unet_sd15();
        char tmp[128];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        CHECK(asam_sd_synth_write(tmp, &uc, "model.diffusion_model.", NULL, NULL, NULL, NULL, 0, 1,
                                  1, NULL, NULL) == 0 &&
                  rename(tmp, path) == 0,
              "write %s: %s", path, asam_last_error());
    }
    asam_checkpoint *ck = NULL;
    asam_unet *u = NULL;
    CHECK(asam_checkpoint_open(path, &ck) == 0 &&
              asam_unet_load(ck, "model.diffusion_model.", &u) == 0,
          "load %s: %s", path, asam_last_error());
    if (ck) asam_checkpoint_close(ck);
    if (!u) return;
    float *eps[2], *lat[2];
    int64_t n_eps = 0, n_lat = 0;
    for (int pi = 0; pi < 2; pi++) {
        asam_set_precision(pi ? ASAM_BF16 : ASAM_FP32);
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 4, 32, 32));
        asam_tensor *c = asam_new(ctx, ASAM_SHAPE(1, 77, 768)), *uc = asam_new_like(ctx, c);
        asam_randn(11, x->data, (size_t)x->numel);
        asam_randn(12, c->data, (size_t)c->numel);
        asam_randn(13, uc->data, (size_t)uc->numel);
        float t = 501;
        asam_tensor *e = asam_unet_forward(ctx, u, x, &t, c, NULL, 1.0f);
        CHECK(e != NULL, "unet: %s", asam_ctx_error(ctx));
        n_eps = e ? e->numel : 0;
        eps[pi] = malloc((size_t)(n_eps + 1) * 4);
        if (e) memcpy(eps[pi], e->data, (size_t)n_eps * 4);
        asam_ddim s;
        asam_ddim_init(&s, 10, 1);
        asam_sd_guide g = {.unet = u,
                           .cond = c,
                           .uncond = uc,
                           .guidance = 7.5f,
                           .batch_cfg = 1,
                           .control_scale = 1.0f};
        asam_tensor *xs = asam_new(ctx, ASAM_SHAPE(1, 4, 16, 16));
        asam_randn(14, xs->data, (size_t)xs->numel);
        asam_tensor *z = asam_ddim_sample(ctx, &g, &s, xs, NULL, NULL);
        CHECK(z != NULL, "ddim: %s", asam_ctx_error(ctx));
        n_lat = z ? z->numel : 0;
        lat[pi] = malloc((size_t)(n_lat + 1) * 4);
        if (z) memcpy(lat[pi], z->data, (size_t)n_lat * 4);
        asam_ctx_free(ctx);
    }
    asam_set_precision(ASAM_FP32);
    report("SD 1.5 UNet eps (32x32 latent)", eps[1], eps[0], n_eps, 3e-2);
    report("SD 1.5 10-step DDIM latent (CFG 7.5)", lat[1], lat[0], n_lat, 5e-2);
    for (int i = 0; i < 2; i++) free(eps[i]), free(lat[i]);
    asam_unet_free(u);
}

int main(void) {
    if (!asam_bf16_supported()) TEST_SKIP("this CPU has no AVX512-BF16: bf16 cannot run here");
    sam_part();
    sd_part();
    return test_finish("test_bf16_fullsize");
}
