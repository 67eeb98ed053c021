/* SAM parity against the official PyTorch fixtures (sam_tiny): pre-processing, every encoder
 * stage, prompt encoder, mask decoder, post-processing, for every forward case. Needs the full
 * case files ($ASAM_FIXTURES); skipped visibly without them. */
#include "test_util.h"
#include "test_sam_common.h"

static asam_sam *model;
static const double TOL = 1e-4;

/* Decode with the given prompt and compare `<prefix>low_res_logits`, iou, mask logits, masks. */
static void check_decode(asam_checkpoint *ck, asam_tensor *emb, const asam_sam_prompt *pr,
                         int multimask, const char *prefix, const asam_sam_sizes *sz,
                         const char *tag) {
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *e = asam_detach(ctx, emb);
    asam_tensor *sparse, *dense, *low, *iou;
    int rc = asam_sam_prompt_encode(ctx, model, pr, &sparse, &dense);
    CHECK(rc == 0, "%s: prompt encode: %s", tag, asam_ctx_error(ctx));
    rc = asam_sam_decode(ctx, model, e, sparse, dense, multimask, &low, &iou, NULL);
    CHECK(rc == 0, "%s: decode: %s", tag, asam_ctx_error(ctx));
    if (rc != 0) {
        asam_ctx_free(ctx);
        return;
    }
    char name[128], what[256];
    snprintf(name, sizeof name, "%slow_res_logits", prefix);
    snprintf(what, sizeof what, "%s %s", tag, name);
    fx_check(ck, name, low, TOL, what);
    snprintf(name, sizeof name, "%siou_predictions", prefix);
    snprintf(what, sizeof what, "%s %s", tag, name);
    fx_check(ck, name, iou, TOL, what);
    snprintf(name, sizeof name, "%smask_logits", prefix);
    asam_tensor *ml = asam_sam_postprocess(ctx, low, sz);
    if (fx_has(ck, name)) {
        snprintf(what, sizeof what, "%s %s", tag, name);
        fx_check(ck, name, ml, TOL, what);
    }
    snprintf(name, sizeof name, "%smasks", prefix);
    if (fx_has(ck, name) && ml) {
        int64_t n;
        float *refm = fx_f32(ck, name, &n);
        /* logits for the boundary rule: the fixture's where stored, else ours */
        char lname[128];
        snprintf(lname, sizeof lname, "%smask_logits", prefix);
        float *refl = fx_has(ck, lname) ? fx_f32(ck, lname, NULL) : NULL;
        uint8_t *mk = malloc((size_t)ml->numel);
        for (int64_t i = 0; i < ml->numel; i++) mk[i] = ml->data[i] > 0.0f;
        CHECK(n == ml->numel, "%s masks: size", tag);
        snprintf(what, sizeof what, "%s %s", tag, name);
        if (n == ml->numel) fx_check_masks(mk, refl ? refl : ml->data, refm, n, what);
        free(mk);
        free(refm);
        free(refl);
    }
    asam_ctx_free(ctx);
}

static void check_sparse(asam_checkpoint *ck, const char *name, const asam_sam_prompt *pr,
                         const char *tag) {
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *sparse, *dense;
    int rc = asam_sam_prompt_encode(ctx, model, pr, &sparse, &dense);
    CHECK(rc == 0, "%s: prompt encode", tag);
    char what[256];
    snprintf(what, sizeof what, "%s %s", tag, name);
    if (rc == 0) fx_check(ck, name, sparse, TOL, what);
    asam_ctx_free(ctx);
}

static asam_image fx_image(asam_checkpoint *ck, const char *name) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    asam_image im = {0};
    if (!t || t->ndim != 3) {
        fprintf(stderr, "FAIL: image %s missing\n", name);
        exit(1);
    }
    asam_image_alloc(&im, (int)t->shape[1], (int)t->shape[0], 3);
    asam_ckpt_read_raw(ck, t, im.data);
    return im;
}

static void case_box_landscape(void) {
    asam_ctx *ctx;
    asam_checkpoint *ck = fx_case("sam_tiny/case_box_landscape.safetensors", &ctx);
    /* pre-processing */
    asam_image img = fx_image(ck, "image_u8"), rs = {0};
    asam_sam_sizes sz;
    CHECK(asam_sam_resize_image(&img, &rs, &sz) == 0, "resize: %s", asam_last_error());
    CHECK(sz.input_h == 768 && sz.input_w == 1024, "input size %dx%d", sz.input_h, sz.input_w);
    asam_image ref_rs = fx_image(ck, "resized_image_u8");
    CHECK(rs.w == ref_rs.w && rs.h == ref_rs.h &&
              memcmp(rs.data, ref_rs.data, (size_t)rs.w * rs.h * 3) == 0,
          "resized image differs from PIL");
    asam_tensor *x = asam_sam_preprocess(ctx, &img, &sz);
    fx_check(ck, "preprocessed_input", x, 1e-6, "A preprocessed_input");
    /* encoder, stage by stage (each from the fixture's previous stage) */
    asam_tensor *xin = fx_tensor(ctx, ck, "preprocessed_input", ASAM_SHAPE(1, 3, 1024, 1024));
    asam_tensor *pe = asam_sam_patch_embed(ctx, model, xin);
    fx_check(ck, "patch_embed_out", pe, TOL, "A patch_embed_out");
    asam_tensor *h = asam_add(ctx, fx_tensor(ctx, ck, "patch_embed_out", ASAM_SHAPE(1, 64, 64, 64)),
                              model->enc.pos_embed);
    const char *bn[3] = {"block00_out", "block01_out", "block02_out"};
    for (int i = 0; i < 3; i++) {
        asam_tensor *o = asam_sam_block_forward(ctx, &model->enc.blocks[i], h);
        char what[64];
        snprintf(what, sizeof what, "A %s", bn[i]);
        fx_check(ck, bn[i], o, TOL, what);
        h = fx_tensor(ctx, ck, bn[i], ASAM_SHAPE(1, 64, 64, 64));
    }
    fx_check(ck, "image_embedding", asam_sam_neck(ctx, model, h), TOL, "A neck(block02_out)");
    asam_tensor *emb = asam_sam_encode(ctx, model, xin);
    fx_check(ck, "image_embedding", emb, TOL, "A image_embedding (whole encoder)");
    fx_check(ck, "dense_pe", asam_sam_dense_pe(ctx, model), TOL, "A dense_pe");
    /* prompts */
    float box[4], box1024[4];
    float *b = fx_f32(ck, "box_xyxy", NULL);
    memcpy(box, b, sizeof box);
    free(b);
    asam_sam_transform_coords(&sz, box, box1024, 2, 1);
    fx_check(ck, "box_xyxy_1024", asam_from_data(ctx, ASAM_SHAPE(4), box1024), 0,
             "A box transform");
    asam_sam_prompt pr = {.batch = 1, .boxes = box1024};
    asam_tensor *sparse, *dense;
    CHECK(asam_sam_prompt_encode(ctx, model, &pr, &sparse, &dense) == 0, "prompt encode");
    fx_check(ck, "sparse_embeddings", sparse, TOL, "A sparse_embeddings");
    fx_check(ck, "dense_embeddings", dense, TOL, "A dense_embeddings");
    asam_tensor *femb = fx_tensor(ctx, ck, "image_embedding", ASAM_SHAPE(1, 256, 64, 64));
    asam_sam_decoder_trace tr;
    asam_tensor *low, *iou;
    CHECK(asam_sam_decode(ctx, model, femb, sparse, dense, 0, &low, &iou, &tr) == 0, "decode");
    fx_check(ck, "decoder_tokens_out", tr.tokens_out, TOL, "A decoder_tokens_out");
    fx_check(ck, "decoder_hyper_in", tr.hyper_in, TOL, "A decoder_hyper_in");
    check_decode(ck, femb, &pr, 0, "single_", &sz, "A");
    check_decode(ck, femb, &pr, 1, "multi_", &sz, "A");
    /* whole chain from our own embedding, through the predictor */
    asam_sam_predictor p;
    asam_sam_predictor_init(&p, model);
    CHECK(asam_sam_predictor_set_image(&p, &img) == 0, "set_image: %s", asam_last_error());
    asam_sam_query q = {.batch = 1, .boxes = box};
    asam_sam_result r;
    CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict: %s", asam_last_error());
    float *rl = fx_f32(ck, "single_low_res_logits", NULL);
    CHECK_CLOSE(r.low_res, rl, 256 * 256, TOL, "A predictor low_res (own embedding)");
    float *ml = fx_f32(ck, "single_mask_logits", NULL), *mm = fx_f32(ck, "single_masks", NULL);
    CHECK_CLOSE(r.mask_logits, ml, 480 * 640, TOL, "A predictor mask_logits");
    fx_check_masks(r.masks, ml, mm, 480 * 640, "A predictor masks");
    free(rl);
    free(ml);
    free(mm);
    asam_sam_result_free(&r);
    asam_sam_predictor_free(&p);
    asam_image_free(&img);
    asam_image_free(&rs);
    asam_image_free(&ref_rs);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ck);
}

static void case_points_portrait(void) {
    asam_ctx *ctx;
    asam_checkpoint *ck = fx_case("sam_tiny/case_points_portrait.safetensors", &ctx);
    asam_image img = fx_image(ck, "image_u8"), rs = {0};
    asam_sam_sizes sz;
    asam_sam_resize_image(&img, &rs, &sz);
    CHECK(sz.input_h == 1024 && sz.input_w == 439, "B input size %dx%d", sz.input_h, sz.input_w);
    asam_image ref_rs = fx_image(ck, "resized_image_u8");
    CHECK(rs.w == ref_rs.w && rs.h == ref_rs.h &&
              memcmp(rs.data, ref_rs.data, (size_t)rs.w * rs.h * 3) == 0,
          "B resized image differs from PIL");
    asam_tensor *x = asam_sam_normalize_pad(ctx, asam_sam_image_to_tensor(ctx, &ref_rs));
    fx_check(ck, "patch_embed_out", asam_sam_patch_embed(ctx, model, x), TOL, "B patch_embed_out");
    asam_tensor *emb = asam_sam_encode(ctx, model, x);
    fx_check(ck, "image_embedding", emb, TOL, "B image_embedding");
    float *pts = fx_f32(ck, "point_coords", NULL), *lab = fx_f32(ck, "point_labels", NULL);
    float *box = fx_f32(ck, "box_xyxy", NULL);
    float p1024[6], b1024[4];
    asam_sam_transform_coords(&sz, pts, p1024, 3, 1);
    asam_sam_transform_coords(&sz, box, b1024, 2, 1);
    fx_check(ck, "point_coords_1024", asam_from_data(ctx, ASAM_SHAPE(6), p1024), 0,
             "B point transform");
    fx_check(ck, "box_xyxy_1024", asam_from_data(ctx, ASAM_SHAPE(4), b1024), 0, "B box transform");
    asam_sam_prompt pr = {
        .batch = 1, .n_points = 3, .points = p1024, .labels = lab, .boxes = b1024};
    check_sparse(ck, "sparse_embeddings", &pr, "B");
    asam_tensor *femb = fx_tensor(ctx, ck, "image_embedding", ASAM_SHAPE(1, 256, 64, 64));
    check_decode(ck, femb, &pr, 0, "single_", &sz, "B");
    check_decode(ck, femb, &pr, 1, "multi_", &sz, "B");
    free(pts);
    free(lab);
    free(box);
    asam_image_free(&img);
    asam_image_free(&rs);
    asam_image_free(&ref_rs);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ck);
}

static void case_mask_input(asam_tensor *embA) {
    asam_ctx *ctx;
    asam_checkpoint *ck = fx_case("sam_tiny/case_mask_input.safetensors", &ctx);
    asam_sam_sizes sz;
    asam_sam_sizes_for(480, 640, &sz);
    float *pts = fx_f32(ck, "point_coords", NULL), *lab = fx_f32(ck, "point_labels", NULL);
    float p1024[4];
    asam_sam_transform_coords(&sz, pts, p1024, 2, 1);
    fx_check(ck, "point_coords_1024", asam_from_data(ctx, ASAM_SHAPE(4), p1024), 0,
             "C point transform");
    asam_sam_prompt pr = {.batch = 1, .n_points = 2, .points = p1024, .labels = lab};
    check_sparse(ck, "step1_sparse_embeddings", &pr, "C step1");
    check_decode(ck, embA, &pr, 1, "step1_multi_", &sz, "C step1");
    asam_tensor *mask = fx_tensor(ctx, ck, "mask_input", ASAM_SHAPE(1, 1, 256, 256));
    asam_tensor *s1, *s2;
    asam_tensor *d = asam_sam_mask_downscale(ctx, model, mask, &s1, &s2);
    fx_check(ck, "mask_downscaling_stage1", s1, TOL, "C mask_downscaling_stage1");
    fx_check(ck, "mask_downscaling_stage2", s2, TOL, "C mask_downscaling_stage2");
    fx_check(ck, "dense_embeddings", d, TOL, "C dense_embeddings");
    pr.mask_input = mask;
    check_sparse(ck, "sparse_embeddings", &pr, "C step2");
    check_decode(ck, embA, &pr, 0, "single_", &sz, "C step2");
    check_decode(ck, embA, &pr, 1, "multi_", &sz, "C step2");
    free(pts);
    free(lab);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ck);
}

static void case_batch_boxes(asam_tensor *embA) {
    asam_ctx *ctx;
    asam_checkpoint *ck = fx_case("sam_tiny/case_batch_boxes.safetensors", &ctx);
    asam_sam_sizes sz;
    asam_sam_sizes_for(480, 640, &sz);
    float *boxes = fx_f32(ck, "boxes_xyxy", NULL);
    float b1024[16];
    asam_sam_transform_coords(&sz, boxes, b1024, 8, 0); /* apply_boxes_torch: float32 */
    fx_check(ck, "boxes_xyxy_1024", asam_from_data(ctx, ASAM_SHAPE(16), b1024), 0,
             "D box transform");
    asam_sam_prompt pr = {.batch = 4, .boxes = b1024};
    check_sparse(ck, "sparse_embeddings", &pr, "D");
    check_decode(ck, embA, &pr, 0, "single_", &sz, "D");
    free(boxes);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ck);
}

static void case_points_neg_label(asam_tensor *embA) {
    asam_ctx *ctx;
    asam_checkpoint *ck = fx_case("sam_tiny/case_points_neg_label.safetensors", &ctx);
    asam_sam_sizes sz;
    asam_sam_sizes_for(480, 640, &sz);
    float *pts = fx_f32(ck, "point_coords", NULL), *lab = fx_f32(ck, "point_labels", NULL);
    float p1024[12];
    asam_sam_transform_coords(&sz, pts, p1024, 6, 0);
    fx_check(ck, "point_coords_1024", asam_from_data(ctx, ASAM_SHAPE(12), p1024), 0,
             "D2 point transform");
    asam_sam_prompt pr = {.batch = 2, .n_points = 3, .points = p1024, .labels = lab};
    check_sparse(ck, "sparse_embeddings", &pr, "D2");
    check_decode(ck, embA, &pr, 1, "multi_", &sz, "D2");
    free(pts);
    free(lab);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ck);
}

/* ResizeLongestSide on odd sizes (case_resize): output size and Pillow-exact pixels. */
static void case_resize(void) {
    asam_checkpoint *ck = fx_open("sam_tiny/case_resize.safetensors");
    if (!ck) {
        printf("note: case_resize.safetensors not found, resize sizes not checked\n");
        return;
    }
    for (int i = 0; i < 8; i++) {
        char in[32], out[32];
        snprintf(in, sizeof in, "img%d_in", i);
        snprintf(out, sizeof out, "img%d_out", i);
        asam_image a = fx_image(ck, in), want = fx_image(ck, out), got = {0};
        asam_sam_sizes sz;
        int rc = asam_sam_resize_image(&a, &got, &sz);
        CHECK(rc == 0 && got.w == want.w && got.h == want.h &&
                  memcmp(got.data, want.data, (size_t)want.w * want.h * 3) == 0,
              "resize %dx%d -> %dx%d (want %dx%d)", a.h, a.w, got.h, got.w, want.h, want.w);
        if (rc == 0 && got.w == want.w && got.h == want.h)
            printf("ok   resize %dx%d -> %dx%d\n", a.h, a.w, got.h, got.w);
        asam_image_free(&a);
        asam_image_free(&want);
        asam_image_free(&got);
    }
    asam_checkpoint_close(ck);
}

int main(void) {
    asam_set_threads(2);
    char path[4096];
    if (test_data_file("sam_tiny/model.pth", path, sizeof path) != 0)
        TEST_SKIP("sam_tiny/model.pth not found");
    CHECK(asam_sam_load(path, &model) == 0, "load %s: %s", path, asam_last_error());
    if (!model) return test_finish("test_sam_parity");
    asam_checkpoint *ca = fx_open("sam_tiny/case_box_landscape.safetensors");
    if (!ca) TEST_SKIP("case_box_landscape.safetensors not found (set ASAM_FIXTURES)");
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *embA = fx_tensor(ctx, ca, "image_embedding", ASAM_SHAPE(1, 256, 64, 64));
    case_resize();
    case_box_landscape();
    case_points_portrait();
    case_mask_input(embA);
    case_batch_boxes(embA);
    case_points_neg_label(embA);
    asam_ctx_free(ctx);
    asam_checkpoint_close(ca);
    asam_sam_free(model);
    return test_finish("test_sam_parity");
}
