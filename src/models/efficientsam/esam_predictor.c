/* EfficientSAM predictor: encode an image once, then decode any number of query batches
 * against the cached embedding; masks are the original-size logits >= 0, as the official
 * examples threshold them. */
#include "asam/error.h"
#include "models/efficientsam/esam_internal.h"

#include <stdlib.h>
#include <string.h>

int asam_esam_predictor_init(asam_esam_predictor *p, const asam_esam *m) {
    memset(p, 0, sizeof *p);
    p->model = m;
    p->ctx = asam_ctx_new(0);
    if (!p->ctx) return asam_error("efficientsam: cannot create an arena");
    asam_ctx_set_grad(p->ctx, 0);
    return 0;
}

void asam_esam_predictor_free(asam_esam_predictor *p) {
    if (p->embedding) asam_param_free(p->embedding);
    if (p->ctx) asam_ctx_free(p->ctx);
    memset(p, 0, sizeof *p);
}

static int keep_embedding(asam_esam_predictor *p, const float *emb) {
    if (!p->embedding) {
        p->embedding =
            asam_param_new(ASAM_SHAPE(1, p->model->cfg.dim, ASAM_ESAM_GRID, ASAM_ESAM_GRID));
        if (!p->embedding) return asam_error("efficientsam: out of memory");
    }
    memcpy(p->embedding->data, emb, sizeof(float) * (size_t)p->embedding->numel);
    return 0;
}

/* Encode x (1, 3, h, w) in [0, 1] (made in p->ctx) and keep its embedding. */
static int encode_and_keep(asam_esam_predictor *p, asam_tensor *x, int h, int w) {
    asam_tensor *e = asam_esam_encode(p->ctx, p->model, asam_esam_preprocess(p->ctx, x));
    if (!e || !asam_ctx_ok(p->ctx)) {
        asam_error("efficientsam: %s",
                   asam_ctx_error(p->ctx) ? asam_ctx_error(p->ctx) : "encoder failed");
        asam_ctx_reset(p->ctx);
        return -1;
    }
    int rc = keep_embedding(p, e->data);
    p->orig_h = h;
    p->orig_w = w;
    asam_ctx_reset(p->ctx);
    return rc;
}

int asam_esam_predictor_set_image(asam_esam_predictor *p, const asam_image *img) {
    asam_ctx_reset(p->ctx);
    asam_ctx_set_grad(p->ctx, 0);
    return encode_and_keep(p, asam_esam_image_to_tensor(p->ctx, img), img ? img->h : 0,
                           img ? img->w : 0);
}

int asam_esam_predictor_set_image_f32(asam_esam_predictor *p, const float *chw, int h, int w) {
    if (!chw || h <= 0 || w <= 0)
        return asam_error("efficientsam: image must be (3, H, W) with a positive size");
    asam_ctx_reset(p->ctx);
    asam_ctx_set_grad(p->ctx, 0);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:183 (forward takes the float
     * (B, 3, H, W) batch as given: ToTensor output or any other values) */
    asam_tensor *x = asam_new(p->ctx, ASAM_SHAPE(1, 3, h, w));
    if (x) memcpy(x->data, chw, sizeof(float) * (size_t)x->numel);
    return encode_and_keep(p, x, h, w);
}

int asam_esam_predictor_set_embedding(asam_esam_predictor *p, const float *embedding, int orig_h,
                                      int orig_w) {
    if (orig_h <= 0 || orig_w <= 0) return asam_error("efficientsam: image size must be positive");
    p->orig_h = orig_h;
    p->orig_w = orig_w;
    return keep_embedding(p, embedding);
}

void asam_esam_result_free(asam_esam_result *r) {
    free(r->low_res);
    free(r->iou);
    free(r->mask_logits);
    free(r->masks);
    memset(r, 0, sizeof *r);
}

/* Queries decoded per pass: the decoder tiles the image tokens per query, so memory grows
 * with the chunk, not with the number of queries. */
#define PREDICT_CHUNK 8

int asam_esam_predictor_predict(asam_esam_predictor *p, int Q, int n, const float *xy,
                                const float *labels, int multimask, asam_esam_result *res) {
    memset(res, 0, sizeof *res);
    if (!p->embedding) return asam_error("efficientsam: predict() before an image was set");
    if (Q <= 0 || n <= 0 || !xy || !labels) return asam_error("efficientsam: no prompt given");
    const int C = multimask ? 3 : 1, H = p->orig_h, W = p->orig_w, L = ASAM_ESAM_LOWRES;
    const size_t hw = (size_t)H * W, ll = (size_t)L * L;
    res->n_queries = Q;
    res->n_masks = C;
    res->h = H;
    res->w = W;
    res->low_res = malloc(sizeof(float) * (size_t)Q * C * ll);
    res->iou = malloc(sizeof(float) * (size_t)Q * C);
    res->mask_logits = malloc(sizeof(float) * (size_t)Q * C * hw);
    res->masks = malloc((size_t)Q * C * hw);
    if (!res->low_res || !res->iou || !res->mask_logits || !res->masks) {
        asam_esam_result_free(res);
        return asam_error("efficientsam: out of memory");
    }
    asam_ctx *ctx = p->ctx;
    for (int q0 = 0; q0 < Q; q0 += PREDICT_CHUNK) {
        const int nq = Q - q0 < PREDICT_CHUNK ? Q - q0 : PREDICT_CHUNK;
        asam_ctx_reset(ctx);
        asam_ctx_set_grad(ctx, 0);
        float c6[PREDICT_CHUNK * ASAM_ESAM_POINTS * 2], l6[PREDICT_CHUNK * ASAM_ESAM_POINTS];
        asam_esam_prepare_points(nq, n, xy + (size_t)q0 * n * 2, labels + (size_t)q0 * n, H, W, c6,
                                 l6);
        asam_tensor *sparse = asam_esam_prompt_encode(ctx, p->model, nq, c6, l6);
        asam_tensor *emb = asam_detach(ctx, p->embedding), *low = NULL, *iou = NULL, *ml = NULL;
        if (asam_esam_decode(ctx, p->model, emb, sparse, multimask, &low, &iou, NULL) == 0)
            ml = asam_esam_postprocess(ctx, low, H, W);
        if (!ml || !asam_ctx_ok(ctx)) {
            asam_error("efficientsam: %s",
                       asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "decoder failed");
            asam_ctx_reset(ctx);
            asam_esam_result_free(res);
            return -1;
        }
        const size_t k = (size_t)q0 * C;
        memcpy(res->low_res + k * ll, low->data, sizeof(float) * (size_t)low->numel);
        memcpy(res->iou + k, iou->data, sizeof(float) * (size_t)iou->numel);
        memcpy(res->mask_logits + k * hw, ml->data, sizeof(float) * (size_t)ml->numel);
        /* ref: yformer/EfficientSAM/EfficientSAM_example.py:52 (torch.ge(logits, 0)) */
        for (int64_t i = 0; i < ml->numel; i++) res->masks[k * hw + i] = ml->data[i] >= 0.0f;
    }
    asam_ctx_reset(ctx);
    return 0;
}

int asam_esam_resize_logits(const float *low_res, int n, int out_h, int out_w, float *out) {
    if (!low_res || !out || n <= 0 || out_h <= 0 || out_w <= 0)
        return asam_error("efficientsam: resize_logits: bad arguments");
    asam_ctx *ctx = asam_ctx_new(0);
    if (!ctx) return asam_error("efficientsam: cannot create an arena");
    asam_ctx_set_grad(ctx, 0);
    const int L = ASAM_ESAM_LOWRES;
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, n, L, L));
    if (x) memcpy(x->data, low_res, sizeof(float) * (size_t)x->numel);
    asam_tensor *y = asam_esam_postprocess(ctx, x, out_h, out_w);
    int rc = 0;
    if (!y || !asam_ctx_ok(ctx))
        rc = asam_error("efficientsam: %s",
                        asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "resize failed");
    else
        memcpy(out, y->data, sizeof(float) * (size_t)y->numel);
    asam_ctx_free(ctx);
    return rc;
}
