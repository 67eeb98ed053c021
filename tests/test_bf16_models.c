/* Accuracy of --precision bf16 on the tiny models (tests/data/sam_tiny, sd_tiny): each quantity
 * is computed under ASAM_FP32 and under ASAM_BF16 in the same run and compared (max abs diff /
 * max abs of the fp32 result), with the bounds below pinning what bf16 gives today:
 *   SAM: image embedding, low-res logits of a box prompt, IoU of the full-size masks, and the
 *        gradients of BCE + Dice (SAM tuning's loss) to the input image and the decoder tokens;
 *   SD:  UNet eps, a 10-step DDIM latent with CFG 7.5, the VAE decode, ControlNet residuals,
 *        and the attack's gradient dL/dx through the UNet (and dL/dcontext).
 * Skips (77) on a CPU without AVX512-BF16, or without the fixtures. */
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/sd.h"
#include "sd_test_util.h"
#include "test_sam_common.h"

typedef struct {
    float *v;
    int64_t n;
} vec;

static vec grab(const float *src, int64_t n) {
    vec r = {malloc((size_t)(n ? n : 1) * sizeof(float)), n};
    if (src) memcpy(r.v, src, (size_t)n * sizeof(float));
    return r;
}

/* Compare bf16 against fp32 and pin the bound; returns the measured error. */
static double cmp(const char *what, vec b16, vec f32, double bound) {
    CHECK(b16.n == f32.n && b16.n > 0, "%s: %lld vs %lld values", what, (long long)b16.n,
          (long long)f32.n);
    if (b16.n != f32.n) return INFINITY;
    double rd = test_rel_diff(b16.v, f32.v, (size_t)b16.n);
    CHECK(rd <= bound, "%s: bf16 vs fp32 rel diff %.3g > %.3g", what, rd, bound);
    CHECK(rd > 0, "%s: bf16 equals fp32: the bf16 kernels did not run", what);
    printf("ok   %-44s bf16 vs fp32 rel diff %.3g (bound %.3g)\n", what, rd, bound);
    return rd;
}

/* Cosine similarity of bf16 and fp32 gradients: the attack steps along sign(g), tuning along g,
 * so the direction is what must hold. */
static void cos_check(const char *what, vec b16, vec f32, double bound) {
    double ab = 0, aa = 0, bb = 0;
    int64_t same_sign = 0;
    for (int64_t i = 0; i < b16.n && i < f32.n; i++) {
        ab += (double)b16.v[i] * f32.v[i], aa += (double)b16.v[i] * b16.v[i];
        bb += (double)f32.v[i] * f32.v[i];
        same_sign += (b16.v[i] > 0) == (f32.v[i] > 0);
    }
    double c = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
    CHECK(c >= bound, "%s: cosine %.5f < %.5f", what, c, bound);
    printf("ok   %-44s cosine %.5f (bound %.4f), same sign %.2f%%\n", what, c, bound,
           100.0 * (double)same_sign / (double)(f32.n ? f32.n : 1));
}

/* ---- SAM ---- */

typedef struct {
    vec emb, low, grad_x, grad_tok;
    uint8_t *masks;
    int64_t n_masks;
} sam_out;

static sam_out run_sam(asam_sam *m, const asam_image *img, const float *box) {
    sam_out o = {0};
    asam_sam_predictor p;
    asam_sam_predictor_init(&p, m);
    CHECK(asam_sam_predictor_set_image(&p, img) == 0, "set_image: %s", asam_last_error());
    o.emb = grab(p.embedding->data, p.embedding->numel);
    int64_t o_emb_shape[4];
    memcpy(o_emb_shape, p.embedding->shape, sizeof o_emb_shape);
    asam_sam_sizes sizes = p.sizes;
    asam_sam_query q = {.batch = 1, .boxes = box};
    asam_sam_result r;
    CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict: %s", asam_last_error());
    o.n_masks = (int64_t)r.n_masks * r.h * r.w;
    o.masks = malloc((size_t)o.n_masks);
    memcpy(o.masks, r.masks, (size_t)o.n_masks);
    asam_sam_result_free(&r);
    asam_sam_predictor_free(&p);

    /* Tuning's loss (BCE + Dice against a fixed target) back through the decoder to the image
     * embedding and the tokens (the encoder's backward is left out to keep the test short). */
    asam_sam_tokens_requires_grad(m, 1);
    asam_param_zero_grad(m->dec.mask_tokens);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *e = asam_from_data(ctx, 4, o_emb_shape, o.emb.v), *sparse, *dense, *low, *iou;
    asam_set_requires_grad(e, 1);
    float b1024[4];
    asam_sam_transform_coords(&sizes, box, b1024, 2, 0);
    asam_sam_prompt pr = {.batch = 1, .boxes = b1024};
    CHECK(asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) == 0, "prompt");
    CHECK(asam_sam_decode(ctx, m, e, sparse, dense, 0, &low, &iou, NULL) == 0, "decode: %s",
          asam_ctx_error(ctx));
    asam_tensor *T = asam_zeros(ctx, ASAM_SHAPE(1, 1, 256, 256));
    for (int y = 64; y < 192; y++)
        for (int xx = 80; xx < 200; xx++) T->data[y * 256 + xx] = 1.0f;
    asam_tensor *loss =
        asam_add(ctx, asam_bce_with_logits(ctx, low, T), asam_dice_loss(ctx, low, T, 1.0f));
    CHECK(loss && asam_backward(ctx, loss) == 0, "sam backward: %s", asam_ctx_error(ctx));
    o.low = grab(low ? low->data : NULL, low ? low->numel : 0);
    o.grad_x = grab(e->grad, e->grad ? e->numel : 0);
    o.grad_tok = grab(m->dec.mask_tokens->grad, m->dec.mask_tokens->numel);
    asam_sam_tokens_requires_grad(m, 0);
    asam_ctx_free(ctx);
    return o;
}

static void sam_free(sam_out *o) {
    free(o->emb.v), free(o->low.v), free(o->grad_x.v), free(o->grad_tok.v), free(o->masks);
}

static void sam_suite(void) {
    char path[4096], img_path[4096];
    if (test_data_file("sam_tiny/model.pth", path, sizeof path) ||
        test_data_file("sam_tiny/image_a.png", img_path, sizeof img_path)) {
        printf("SKIP sam part: sam_tiny fixtures not found\n");
        return;
    }
    asam_sam *m = NULL;
    CHECK(asam_sam_load(path, &m) == 0, "load: %s", asam_last_error());
    asam_image img = {0};
    CHECK(asam_image_read(img_path, 3, &img) == 0, "read: %s", asam_last_error());
    if (!m || !img.data) return;
    float box[4] = {0.2f * img.w, 0.25f * img.h, 0.7f * img.w, 0.8f * img.h};
    asam_set_precision(ASAM_FP32);
    sam_out f = run_sam(m, &img, box);
    asam_set_precision(ASAM_BF16);
    sam_out b = run_sam(m, &img, box);
    asam_set_precision(ASAM_FP32);
    cmp("SAM image embedding", b.emb, f.emb, 2e-2);
    cmp("SAM low-res logits (box)", b.low, f.low, 2e-2);
    int64_t inter = 0, uni = 0;
    for (int64_t i = 0; i < f.n_masks && i < b.n_masks; i++) {
        inter += f.masks[i] && b.masks[i];
        uni += f.masks[i] || b.masks[i];
    }
    double iou = uni ? (double)inter / (double)uni : 1.0;
    CHECK(f.n_masks == b.n_masks && uni > 0 && iou >= 0.99, "SAM mask IoU bf16 vs fp32 %.5f", iou);
    printf("ok   %-44s %.5f (%lld of %lld pixels set; bound >= 0.99)\n", "SAM mask IoU", iou,
           (long long)uni, (long long)f.n_masks);
    cmp("SAM dLoss/dembedding (tuning loss)", b.grad_x, f.grad_x, 0.2);
    cos_check("SAM dLoss/dembedding", b.grad_x, f.grad_x, 0.99);
    cmp("SAM dLoss/dmask_tokens", b.grad_tok, f.grad_tok, 0.25);
    cos_check("SAM dLoss/dmask_tokens", b.grad_tok, f.grad_tok, 0.99);
    sam_free(&f), sam_free(&b);
    asam_image_free(&img);
    asam_sam_free(m);
}

/* ---- SD ---- */

typedef struct {
    vec eps, latent, image, control, gx, gc;
} sd_out;

static sd_out run_sd(asam_sd *sd, asam_controlnet *cn) {
    sd_out o = {0};
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, "a photograph of an astronaut");
    asam_tensor *uncond = asam_sd_encode_prompt(ctx, sd, "");
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 4, 16, 16));
    asam_randn(42, x->data, (size_t)x->numel);
    float t = 501;
    asam_tensor *eps = asam_unet_forward(ctx, sd->unet, x, &t, cond, NULL, 1.0f);
    o.eps = grab(eps ? eps->data : NULL, eps ? eps->numel : 0);

    asam_ddim s;
    asam_ddim_init(&s, 10, 1);
    asam_sd_guide g = {.unet = sd->unet,
                       .cond = cond,
                       .uncond = uncond,
                       .guidance = 7.5f,
                       .batch_cfg = 1,
                       .control_scale = 1.0f};
    asam_tensor *z = asam_ddim_sample(ctx, &g, &s, x, NULL, NULL);
    o.latent = grab(z ? z->data : NULL, z ? z->numel : 0);
    asam_tensor *img = z ? asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / 0.18215f)) : 0;
    o.image = grab(img ? img->data : NULL, img ? img->numel : 0);
    if (cn) {
        asam_tensor *hint = asam_new(ctx, ASAM_SHAPE(1, 3, 128, 128)), *res[13];
        for (int64_t i = 0; i < hint->numel; i++) hint->data[i] = (float)((i * 7919) % 255) / 255;
        CHECK(asam_controlnet_forward(ctx, cn, x, &t, cond, hint, res) == 0, "controlnet: %s",
              asam_ctx_error(ctx));
        int64_t n = 0;
        for (int i = 0; i < 13; i++) n += res[i] ? res[i]->numel : 0;
        o.control = grab(NULL, n);
        n = 0;
        for (int i = 0; i < 13; i++)
            if (res[i]) {
                memcpy(o.control.v + n, res[i]->data, (size_t)res[i]->numel * sizeof(float));
                n += res[i]->numel;
            }
    }
    /* The attack's gradient: L = sum(eps * W) back to the latent and the text context. */
    asam_ctx_set_grad(ctx, 1);
    asam_tensor *xg = asam_detach(ctx, x), *cg = asam_contiguous_copy(ctx, cond);
    cg = asam_detach(ctx, cg);
    asam_set_requires_grad(xg, 1);
    asam_set_requires_grad(cg, 1);
    asam_tensor *e2 = asam_unet_forward(ctx, sd->unet, xg, &t, cg, NULL, 1.0f);
    asam_tensor *W = asam_new(ctx, ASAM_SHAPE(1, 4, 16, 16));
    asam_randn(7, W->data, (size_t)W->numel);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, e2, W));
    CHECK(loss && asam_backward(ctx, loss) == 0, "unet backward: %s", asam_ctx_error(ctx));
    o.gx = grab(xg->grad, xg->grad ? xg->numel : 0);
    o.gc = grab(cg->grad, cg->grad ? cg->numel : 0);
    SD_CHECK_OK(ctx, "sd run");
    asam_ctx_free(ctx);
    return o;
}

static void sd_free(sd_out *o) {
    free(o->eps.v), free(o->latent.v), free(o->image.v), free(o->control.v), free(o->gx.v),
        free(o->gc.v);
}

static void sd_suite(void) {
    char model[4096], cpath[4096];
    if (test_data_file("sd_tiny/model.ckpt", model, sizeof model)) {
        printf("SKIP sd part: sd_tiny/model.ckpt not found\n");
        return;
    }
    asam_sd *sd = NULL;
    CHECK(asam_sd_load(model, NULL, &sd) == 0, "load %s: %s", model, asam_last_error());
    if (!sd) return;
    asam_controlnet *cn = NULL;
    if (!test_data_file("sd_tiny/control.pth", cpath, sizeof cpath))
        CHECK(asam_sd_controlnet_open(cpath, sd->unet, &cn) == 0, "controlnet: %s",
              asam_last_error());
    asam_set_precision(ASAM_FP32);
    sd_out f = run_sd(sd, cn);
    asam_set_precision(ASAM_BF16);
    sd_out b = run_sd(sd, cn);
    asam_set_precision(ASAM_FP32);
    cmp("UNet eps", b.eps, f.eps, 2e-2);
    cmp("10-step DDIM latent (CFG 7.5)", b.latent, f.latent, 5e-2);
    cmp("VAE decode of that latent", b.image, f.image, 5e-2);
    if (cn) cmp("ControlNet residuals", b.control, f.control, 2e-2);
    cmp("attack gradient dL/dx through the UNet", b.gx, f.gx, 5e-2);
    cos_check("attack gradient dL/dx", b.gx, f.gx, 0.99);
    cmp("attack gradient dL/dcontext", b.gc, f.gc, 5e-2);
    cos_check("attack gradient dL/dcontext", b.gc, f.gc, 0.99);
    sd_free(&f), sd_free(&b);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
}

int main(void) {
    if (!asam_bf16_supported()) TEST_SKIP("this CPU has no AVX512-BF16: bf16 cannot run here");
    CHECK(asam_set_precision(ASAM_BF16) == 0, "bf16: %s", asam_last_error());
    printf("bf16 kernels: %s\n", asam_backend_describe());
    asam_set_precision(ASAM_FP32);
    sam_suite();
    sd_suite();
    return test_finish("test_bf16_models");
}
