/* SAM gradients against the official autograd (case_grad): BCE + Dice on the low-res logits
 * back to the logits, the image embedding, the 1024 input (through checkpointed encoder
 * blocks) and the iou / mask tokens; MSE on the IoU prediction back to the tokens. */
#include "test_util.h"
#include "test_sam_common.h"

int main(void) {
    asam_set_threads(2);
    char path[4096];
    if (test_data_file("sam_tiny/model.pth", path, sizeof path) != 0)
        TEST_SKIP("sam_tiny/model.pth not found");
    asam_checkpoint *cg = fx_open("sam_tiny/case_grad.safetensors");
    asam_checkpoint *ca = fx_open("sam_tiny/case_box_landscape.safetensors");
    if (!cg || !ca) TEST_SKIP("case_grad / case_box_landscape not found (set ASAM_FIXTURES)");
    asam_sam *m;
    CHECK(asam_sam_load(path, &m) == 0, "load: %s", asam_last_error());
    if (!m) return test_finish("test_sam_grad");
    asam_sam_tokens_requires_grad(m, 1);
    asam_param_zero_grad(m->dec.iou_token);
    asam_param_zero_grad(m->dec.mask_tokens);

    asam_ctx *ctx = asam_ctx_new(0);
    /* the 0..255 pixels of the resized image are the leaf: gradients reach them through the
     * normalisation and padding, and the normalised input (x) keeps its own gradient */
    const asam_ckpt_tensor *rt = asam_checkpoint_find(ca, "resized_image_u8");
    asam_image rs = {0};
    asam_image_alloc(&rs, (int)rt->shape[1], (int)rt->shape[0], 3);
    asam_ckpt_read_raw(ca, rt, rs.data);
    asam_tensor *pix = asam_sam_image_to_tensor(ctx, &rs);
    asam_set_requires_grad(pix, 1);
    asam_tensor *x = asam_sam_normalize_pad(ctx, pix);
    fx_check(ca, "preprocessed_input", x, 1e-6, "E preprocessed_input (from resized_image_u8)");
    float *box = fx_f32(cg, "box_xyxy_1024", NULL);
    asam_tensor *emb = asam_sam_encode(ctx, m, x);
    asam_sam_prompt pr = {.batch = 1, .boxes = box};
    asam_tensor *sparse, *dense, *low, *iou;
    CHECK(asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) == 0, "prompt");
    CHECK(asam_sam_decode(ctx, m, emb, sparse, dense, 0, &low, &iou, NULL) == 0, "decode: %s",
          asam_ctx_error(ctx));
    fx_check(cg, "low_res_logits", low, 1e-4, "E low_res_logits");
    fx_check(cg, "iou_predictions", iou, 1e-4, "E iou_predictions");
    asam_tensor *T = fx_tensor(ctx, cg, "target_mask", ASAM_SHAPE(1, 1, 256, 256));
    asam_tensor *bce = asam_bce_with_logits(ctx, low, T);
    asam_tensor *dice = asam_dice_loss(ctx, low, T, 1.0f);
    asam_tensor *loss = asam_add(ctx, bce, dice);
    fx_check(cg, "loss_bce", bce, 1e-4, "E loss_bce");
    fx_check(cg, "loss_dice", dice, 1e-4, "E loss_dice");
    fx_check(cg, "loss", loss, 1e-4, "E loss");
    CHECK(asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
    CHECK(asam_ctx_ok(ctx), "ctx error: %s", asam_ctx_error(ctx));
    int64_t n;
    float *ref;
#define GRAD_CHECK(t, name, what)                                                                  \
    do {                                                                                           \
        ref = fx_f32(cg, name, &n);                                                                \
        CHECK((t) && (t)->grad && (t)->numel == n, "%s: no gradient", what);                       \
        if ((t) && (t)->grad && (t)->numel == n)                                                   \
            CHECK_CLOSE((t)->grad, ref, (size_t)n, 1e-3, what);                                    \
        free(ref);                                                                                 \
    } while (0)
    GRAD_CHECK(low, "grad_low_res_logits", "E grad_low_res_logits");
    GRAD_CHECK(emb, "grad_image_embedding", "E grad_image_embedding");
    GRAD_CHECK(x, "grad_input", "E grad_input (through checkpointed blocks)");
    /* d loss / d pixels = d loss / d x / std on the unpadded 768 x 1024 region */
    ref = fx_f32(cg, "grad_input", &n);
    if (pix->grad) {
        const float std[3] = {58.395f, 57.12f, 57.375f};
        float *want = malloc(sizeof(float) * (size_t)pix->numel);
        for (int c = 0; c < 3; c++)
            for (int64_t i = 0; i < 768 * 1024; i++)
                want[c * 768 * 1024 + i] = ref[c * 1024 * 1024 + i] / std[c];
        CHECK_CLOSE(pix->grad, want, (size_t)pix->numel, 1e-3, "E grad wrt 0..255 pixels");
        free(want);
    }
    CHECK(pix->grad != NULL, "no gradient on the pixels");
    free(ref);
    asam_image_free(&rs);
    GRAD_CHECK(m->dec.iou_token, "grad_iou_token", "E grad_iou_token");
    GRAD_CHECK(m->dec.mask_tokens, "grad_mask_tokens", "E grad_mask_tokens");
    printf("arena peak during forward+backward: %.1f MB\n", asam_ctx_peak(ctx) / 1e6);

    /* loss 2: MSE on the IoU prediction, from the (fixture) embedding */
    asam_ctx_reset(ctx);
    asam_param_zero_grad(m->dec.iou_token);
    asam_param_zero_grad(m->dec.mask_tokens);
    asam_tensor *e2 = fx_tensor(ctx, ca, "image_embedding", ASAM_SHAPE(1, 256, 64, 64));
    CHECK(asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) == 0, "prompt");
    CHECK(asam_sam_decode(ctx, m, e2, sparse, dense, 0, &low, &iou, NULL) == 0, "decode");
    asam_tensor *tgt = fx_tensor(ctx, cg, "iou_target", ASAM_SHAPE(1, 1));
    asam_tensor *loss2 = asam_mse(ctx, iou, tgt);
    fx_check(cg, "loss2", loss2, 1e-4, "E loss2");
    CHECK(asam_backward(ctx, loss2) == 0, "backward 2: %s", asam_ctx_error(ctx));
    GRAD_CHECK(m->dec.iou_token, "loss2_grad_iou_token", "E loss2_grad_iou_token");
    GRAD_CHECK(m->dec.mask_tokens, "loss2_grad_mask_tokens", "E loss2_grad_mask_tokens");

    free(box);
    asam_ctx_free(ctx);
    asam_checkpoint_close(cg);
    asam_checkpoint_close(ca);
    asam_sam_free(m);
    return test_finish("test_sam_grad");
}
