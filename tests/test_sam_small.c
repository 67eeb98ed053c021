/* SAM core parity that runs on a fresh clone: tests/data/sam_tiny holds the tiny model, image A
 * (PNG) and a subset of the official reference tensors (sam_subset.safetensors: "a.*" from
 * case_box_landscape, "e.*" from case_grad, with grad_image_embedding cut to channels 0..31
 * and grad_input to rows 0..31). Whole pipeline: PNG -> resize -> encoder -> box prompt ->
 * decoder -> post-processing, and the gradients of case_grad. */
#include "test_util.h"
#include "test_sam_common.h"

static const double TOL = 1e-4;

/* The predictor: encode once, decode the box (single and multimask outputs). */
static void case_predictor(asam_sam *m, asam_checkpoint *ck, const asam_image *img) {
    asam_sam_predictor p;
    asam_sam_predictor_init(&p, m);
    CHECK(asam_sam_predictor_set_image(&p, img) == 0, "set_image: %s", asam_last_error());
    fx_check(ck, "a.image_embedding", p.embedding, TOL, "image_embedding (PNG -> encoder)");
    float *box = fx_f32(ck, "a.box_xyxy", NULL);
    asam_sam_query q = {.batch = 1, .boxes = box};
    asam_sam_result r;
    CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict: %s", asam_last_error());
    int64_t n;
    float *ref = fx_f32(ck, "a.single_low_res_logits", &n);
    CHECK_CLOSE(r.low_res, ref, (size_t)n, TOL, "single low_res_logits");
    free(ref);
    ref = fx_f32(ck, "a.single_iou_predictions", &n);
    CHECK_CLOSE(r.iou, ref, (size_t)n, TOL, "single iou_predictions");
    free(ref);
    float *ml = fx_f32(ck, "a.single_mask_logits", &n), *mm = fx_f32(ck, "a.single_masks", NULL);
    CHECK_CLOSE(r.mask_logits, ml, (size_t)n, TOL, "single mask_logits (480x640)");
    fx_check_masks(r.masks, ml, mm, n, "single masks");
    free(ml);
    free(mm);
    asam_sam_result_free(&r);
    CHECK(asam_sam_predictor_predict(&p, &q, 1, &r) == 0, "predict multi");
    ref = fx_f32(ck, "a.multi_low_res_logits", &n);
    CHECK(r.n_masks == 3, "multimask gives %d masks", r.n_masks);
    CHECK_CLOSE(r.low_res, ref, (size_t)n, TOL, "multi low_res_logits");
    free(ref);
    ref = fx_f32(ck, "a.multi_iou_predictions", &n);
    CHECK_CLOSE(r.iou, ref, (size_t)n, TOL, "multi iou_predictions");
    free(ref);
    asam_sam_result_free(&r);

    free(box);
    asam_sam_predictor_free(&p);
}

/* Decoder intermediates from the reference embedding. */
static void case_decoder_trace(asam_sam *m, asam_checkpoint *ck) {
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *emb = fx_tensor(ctx, ck, "a.image_embedding", ASAM_SHAPE(1, 256, 64, 64));
    float *b1024 = fx_f32(ck, "a.box_xyxy_1024", NULL);
    asam_sam_prompt pr = {.batch = 1, .boxes = b1024};
    asam_tensor *sparse, *dense, *low, *iou;
    CHECK(asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) == 0, "prompt");
    fx_check(ck, "a.sparse_embeddings", sparse, TOL, "sparse_embeddings");
    asam_sam_decoder_trace tr;
    CHECK(asam_sam_decode(ctx, m, emb, sparse, dense, 0, &low, &iou, &tr) == 0, "decode");
    fx_check(ck, "a.decoder_tokens_out", tr.tokens_out, TOL, "decoder_tokens_out");
    fx_check(ck, "a.decoder_hyper_in", tr.hyper_in, TOL, "decoder_hyper_in");
    asam_ctx_free(ctx);

    free(b1024);
}

/* case_grad: loss 1 back to the tokens, the embedding and the input */
static void case_grad(asam_sam *m, asam_checkpoint *ck, const asam_image *img) {
    asam_sam_tokens_requires_grad(m, 1);
    asam_param_zero_grad(m->dec.iou_token);
    asam_param_zero_grad(m->dec.mask_tokens);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_sam_sizes sz;
    asam_tensor *x = asam_sam_preprocess(ctx, img, &sz);
    asam_set_requires_grad(x, 1);
    asam_tensor *e = asam_sam_encode(ctx, m, x);
    float *eb = fx_f32(ck, "e.box_xyxy_1024", NULL);
    asam_sam_prompt pr = {.batch = 1, .boxes = eb};
    asam_tensor *sparse, *dense, *low, *iou;
    int64_t n;
    float *ref;
    CHECK(asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) == 0, "prompt");
    CHECK(asam_sam_decode(ctx, m, e, sparse, dense, 0, &low, &iou, NULL) == 0, "decode");
    fx_check(ck, "e.low_res_logits", low, TOL, "grad case low_res_logits");
    asam_tensor *T = fx_tensor(ctx, ck, "e.target_mask", ASAM_SHAPE(1, 1, 256, 256));
    asam_tensor *loss =
        asam_add(ctx, asam_bce_with_logits(ctx, low, T), asam_dice_loss(ctx, low, T, 1.0f));
    fx_check(ck, "e.loss", loss, TOL, "loss (BCE + Dice)");
    CHECK(asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
    ref = fx_f32(ck, "e.grad_low_res_logits", &n);
    CHECK(low->grad != NULL, "no grad on low_res");
    if (low->grad) CHECK_CLOSE(low->grad, ref, (size_t)n, 1e-3, "grad_low_res_logits");
    free(ref);
    ref = fx_f32(ck, "e.grad_image_embedding_c0_32", &n);
    CHECK(e->grad != NULL, "no grad on the embedding");
    if (e->grad)
        CHECK_CLOSE(e->grad, ref, (size_t)n, 1e-3, "grad_image_embedding (channels 0..31)");
    free(ref);
    ref = fx_f32(ck, "e.grad_input_rows0_32", &n);
    CHECK(x->grad != NULL, "no grad on the input");
    if (x->grad) {
        float *g = malloc(sizeof(float) * (size_t)n);
        for (int c = 0; c < 3; c++)
            memcpy(g + (size_t)c * 32 * 1024, x->grad + (size_t)c * 1024 * 1024,
                   sizeof(float) * 32 * 1024);
        CHECK_CLOSE(g, ref, (size_t)n, 1e-3, "grad_input (rows 0..31)");
        free(g);
    }
    free(ref);
    ref = fx_f32(ck, "e.grad_iou_token", &n);
    CHECK_CLOSE(m->dec.iou_token->grad, ref, (size_t)n, 1e-3, "grad_iou_token");
    free(ref);
    ref = fx_f32(ck, "e.grad_mask_tokens", &n);
    CHECK_CLOSE(m->dec.mask_tokens->grad, ref, (size_t)n, 1e-3, "grad_mask_tokens");
    free(ref);
    asam_ctx_free(ctx);

    free(eb);
}

int main(void) {
    asam_set_threads(2);
    char path[4096], img_path[4096];
    if (test_data_file("sam_tiny/model.pth", path, sizeof path) != 0)
        TEST_SKIP("sam_tiny/model.pth not found");
    if (test_data_file("sam_tiny/image_a.png", img_path, sizeof img_path) != 0)
        TEST_SKIP("image_a.png not found");
    asam_checkpoint *ck = fx_open("sam_tiny/sam_subset.safetensors");
    if (!ck) TEST_SKIP("sam_subset.safetensors not found");
    asam_sam *m;
    CHECK(asam_sam_load(path, &m) == 0, "load: %s", asam_last_error());
    if (!m) return test_finish("test_sam_small");
    asam_image img = {0};
    CHECK(asam_image_read(img_path, 3, &img) == 0, "read %s: %s", img_path, asam_last_error());
    case_predictor(m, ck, &img);
    case_decoder_trace(m, ck);
    case_grad(m, ck, &img);
    asam_image_free(&img);
    asam_checkpoint_close(ck);
    asam_sam_free(m);
    return test_finish("test_sam_small");
}
