/* SAM predictor: encode an image once, then decode any number of prompt batches against the
 * cached embedding, returning low-res logits, IoU predictions and original-size masks. */
#include "asam/error.h"
#include "asam/sam.h"

#include <stdlib.h>
#include <string.h>

int asam_sam_predictor_init(asam_sam_predictor *p, const asam_sam *m) {
    memset(p, 0, sizeof *p);
    p->model = m;
    p->ctx = asam_ctx_new(0);
    if (!p->ctx) return asam_error("sam: cannot create an arena");
    asam_ctx_set_grad(p->ctx, 0);
    return 0;
}

void asam_sam_predictor_free(asam_sam_predictor *p) {
    if (p->embedding) asam_param_free(p->embedding);
    if (p->ctx) asam_ctx_free(p->ctx);
    memset(p, 0, sizeof *p);
}

static int keep_embedding(asam_sam_predictor *p, const float *emb) {
    if (!p->embedding) {
        const int64_t g = asam_sam_grid(p->model);
        p->embedding = asam_param_new(ASAM_SHAPE(1, ASAM_SAM_DIM, g, g));
        if (!p->embedding) return asam_error("sam: out of memory");
    }
    memcpy(p->embedding->data, emb, sizeof(float) * (size_t)p->embedding->numel);
    return 0;
}

// ref: facebookresearch/segment-anything segment_anything/predictor.py:34 (SamPredictor.set_image)
int asam_sam_predictor_set_image(asam_sam_predictor *p, const asam_image *img) {
    asam_ctx_reset(p->ctx);
    asam_ctx_set_grad(p->ctx, 0);
    asam_sam_sizes s;
    asam_tensor *x = asam_sam_preprocess_at(p->ctx, img, asam_sam_img_size(p->model), &s);
    asam_tensor *e = asam_sam_encode(p->ctx, p->model, x);
    if (!e || !asam_ctx_ok(p->ctx)) {
        asam_error("sam: %s", asam_ctx_error(p->ctx) ? asam_ctx_error(p->ctx) : "encoder failed");
        asam_ctx_reset(p->ctx);
        return -1;
    }
    int rc = keep_embedding(p, e->data);
    p->sizes = s;
    asam_ctx_reset(p->ctx);
    return rc;
}

int asam_sam_predictor_set_embedding(asam_sam_predictor *p, const float *embedding,
                                     const asam_sam_sizes *sizes) {
    p->sizes = *sizes;
    return keep_embedding(p, embedding);
}

void asam_sam_result_free(asam_sam_result *r) {
    free(r->low_res);
    free(r->iou);
    free(r->mask_logits);
    free(r->masks);
    memset(r, 0, sizeof *r);
}

static float *dup_floats(const asam_tensor *t) {
    float *d = malloc(sizeof(float) * (size_t)t->numel);
    if (d) memcpy(d, t->data, sizeof(float) * (size_t)t->numel);
    return d;
}

// ref: facebookresearch/segment-anything segment_anything/predictor.py:92 (SamPredictor.predict),
//   :169 (predict_torch)
int asam_sam_predictor_predict(asam_sam_predictor *p, const asam_sam_query *q, int multimask,
                               asam_sam_result *res) {
    memset(res, 0, sizeof *res);
    if (!p->embedding) return asam_error("sam: predict() before an image or embedding was set");
    if (!q->boxes && !(q->points && q->n_points > 0) && !q->mask_input)
        return asam_error("sam: no prompt given");
    int B = q->batch > 0 ? q->batch : 1, N = q->points ? q->n_points : 0;
    asam_ctx *ctx = p->ctx;
    asam_ctx_reset(ctx);
    asam_ctx_set_grad(ctx, 0);
    float *pts = N ? asam_ctx_alloc(ctx, sizeof(float) * (size_t)B * N * 2) : NULL;
    float *box = q->boxes ? asam_ctx_alloc(ctx, sizeof(float) * (size_t)B * 4) : NULL;
    if (pts) asam_sam_transform_coords(&p->sizes, q->points, pts, B * N, 1);
    if (box) asam_sam_transform_coords(&p->sizes, q->boxes, box, B * 2, 1);
    asam_sam_prompt pr = {
        .batch = B, .n_points = N, .points = pts, .labels = q->labels, .boxes = box};
    const int64_t L = asam_sam_lowres(p->model);
    if (q->mask_input) pr.mask_input = asam_from_data(ctx, ASAM_SHAPE(B, 1, L, L), q->mask_input);
    asam_tensor *sparse, *dense, *low, *iou;
    asam_tensor *emb = asam_detach(ctx, p->embedding);
    int rc = asam_sam_prompt_encode(ctx, p->model, &pr, &sparse, &dense);
    if (rc == 0)
        rc = asam_sam_decode(ctx, p->model, emb, sparse, dense, multimask, &low, &iou, NULL);
    asam_tensor *ml = rc == 0 ? asam_sam_postprocess(ctx, low, &p->sizes) : NULL;
    if (!ml || !asam_ctx_ok(ctx)) {
        asam_error("sam: %s", asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "decoder failed");
        asam_ctx_reset(ctx);
        return -1;
    }
    res->batch = B;
    res->n_masks = (int)low->shape[1];
    res->h = p->sizes.orig_h;
    res->w = p->sizes.orig_w;
    res->low_res = dup_floats(low);
    res->iou = dup_floats(iou);
    res->mask_logits = dup_floats(ml);
    res->masks = malloc((size_t)ml->numel);
    if (!res->low_res || !res->iou || !res->mask_logits || !res->masks) {
        asam_sam_result_free(res);
        asam_ctx_reset(ctx);
        return asam_error("sam: out of memory");
    }
    for (int64_t i = 0; i < ml->numel; i++) res->masks[i] = ml->data[i] > 0.0f;
    asam_ctx_reset(ctx);
    return 0;
}
