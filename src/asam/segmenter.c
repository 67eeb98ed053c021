/* SAM / EfficientSAM dispatch for the ASAM pipeline (see asam/segmenter.h). */
#include "asam/segmenter.h"
#include "asam/error.h"

#include <stdlib.h>
#include <string.h>

static int load(const char *path, int frozen, asam_segmenter *s) {
    memset(s, 0, sizeof *s);
    const char *fam = asam_model_family_of_file(path);
    if (!fam) return -1;
    if (!strcmp(fam, "efficientsam"))
        return frozen ? asam_esam_load_frozen(path, 0, &s->esam)
                      : asam_esam_load(path, 0, &s->esam);
    return frozen ? asam_sam_load_frozen(path, &s->sam) : asam_sam_load(path, &s->sam);
}

int asam_segmenter_load(const char *path, asam_segmenter *s) {
    return load(path, 0, s);
}

int asam_segmenter_load_frozen(const char *path, asam_segmenter *s) {
    return load(path, 1, s);
}

void asam_segmenter_free(asam_segmenter *s) {
    if (s->sam) asam_sam_free(s->sam);
    if (s->esam) asam_esam_free(s->esam);
    memset(s, 0, sizeof *s);
}

const char *asam_segmenter_family(const asam_segmenter *s) {
    return s->esam ? "efficientsam" : "sam";
}

int asam_segmenter_img_size(const asam_segmenter *s) {
    return s->esam ? ASAM_ESAM_IMG : asam_sam_img_size(s->sam);
}

int asam_segmenter_grid(const asam_segmenter *s) {
    return s->esam ? ASAM_ESAM_GRID : asam_sam_grid(s->sam);
}

int asam_segmenter_lowres(const asam_segmenter *s) {
    return s->esam ? ASAM_ESAM_LOWRES : asam_sam_lowres(s->sam);
}

int asam_segmenter_dim(const asam_segmenter *s) {
    return s->esam ? asam_esam_cfg(s->esam)->dim : ASAM_SAM_DIM;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t asam_segmenter_encoder_key(const asam_segmenter *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    if (s->sam) {
        const asam_sam *m = s->sam;
        const asam_tensor *ts[] = {m->enc.patch_w, m->enc.pos_embed, m->enc.neck0_w,
                                   m->enc.neck2_w, m->enc.neck3_w,   m->enc.blocks[0].qkv_w};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
            if (ts[i] && ts[i]->data)
                h = fnv(h, ts[i]->data, sizeof(float) * (size_t)ts[i]->numel);
            else if (ts[i]) /* held in bf16 (--precision bf16): its fp32 copy is gone */
                h = fnv(h, asam_param_bf16(ts[i]), sizeof(uint16_t) * (size_t)ts[i]->numel);
        return h;
    }
    return asam_esam_encoder_hash(s->esam);
}

asam_tensor *asam_segmenter_encode_image(asam_ctx *ctx, const asam_segmenter *s,
                                         const asam_image *img, asam_sam_sizes *frame) {
    if (s->sam) {
        asam_tensor *x = asam_sam_preprocess_at(ctx, img, asam_sam_img_size(s->sam), frame);
        return asam_sam_encode(ctx, s->sam, x);
    }
    frame->orig_h = img->h;
    frame->orig_w = img->w;
    frame->input_h = frame->input_w = ASAM_ESAM_IMG;
    asam_tensor *x = asam_esam_preprocess(ctx, asam_esam_image_to_tensor(ctx, img));
    return asam_esam_encode(ctx, s->esam, x);
}

asam_tensor *asam_segmenter_input255(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *x) {
    if (s->sam) return asam_sam_normalize_pad_at(ctx, x, asam_sam_img_size(s->sam));
    return asam_esam_preprocess(ctx, asam_scale(ctx, x, 1.0f / 255.0f));
}

asam_tensor *asam_segmenter_encode(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *x) {
    return s->sam ? asam_sam_encode(ctx, s->sam, x) : asam_esam_encode(ctx, s->esam, x);
}

int asam_segmenter_decode(asam_ctx *ctx, const asam_segmenter *s, asam_tensor *embedding,
                          const asam_seg_prompt *p, int multimask, asam_tensor **low_res,
                          asam_tensor **iou) {
    *low_res = *iou = NULL;
    if (s->sam) {
        asam_sam_prompt pr = {.batch = p->batch,
                              .n_points = p->n_points,
                              .points = p->points,
                              .labels = p->labels,
                              .boxes = p->boxes,
                              .mask_input = p->mask_input};
        asam_tensor *sparse, *dense;
        if (asam_sam_prompt_encode(ctx, s->sam, &pr, &sparse, &dense)) return -1;
        return asam_sam_decode(ctx, s->sam, embedding, sparse, dense, multimask, low_res, iou,
                               NULL);
    }
    if (p->mask_input) {
        asam_ctx_fail(ctx, "efficientsam: no mask prompts (its decoder takes points only)");
        return -1;
    }
    /* each row: its points, then the box as two points labelled 2 (top-left), 3 */
    int B = p->batch, N = p->points ? p->n_points : 0, K = N + (p->boxes ? 2 : 0);
    if (B < 1 || K < 1) {
        asam_ctx_fail(ctx, "efficientsam: no prompt");
        return -1;
    }
    float *xy = asam_ctx_alloc(ctx, sizeof(float) * 2 * (size_t)B * K);
    float *lab = asam_ctx_alloc(ctx, sizeof(float) * (size_t)B * K);
    float *c6 = asam_ctx_alloc(ctx, sizeof(float) * 2 * (size_t)B * ASAM_ESAM_POINTS);
    float *l6 = asam_ctx_alloc(ctx, sizeof(float) * (size_t)B * ASAM_ESAM_POINTS);
    if (!xy || !lab || !c6 || !l6) return -1;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < N; i++) {
            xy[2 * (b * K + i)] = p->points[2 * (b * N + i)];
            xy[2 * (b * K + i) + 1] = p->points[2 * (b * N + i) + 1];
            lab[b * K + i] = p->labels[b * N + i];
        }
        if (p->boxes)
            for (int k = 0; k < 2; k++) {
                xy[2 * (b * K + N + k)] = p->boxes[4 * b + 2 * k];
                xy[2 * (b * K + N + k) + 1] = p->boxes[4 * b + 2 * k + 1];
                lab[b * K + N + k] = 2.0f + (float)k;
            }
    }
    /* the frame is the whole 1024 input: rescaling by 1024 / 1024 is the identity */
    asam_esam_prepare_points(B, K, xy, lab, ASAM_ESAM_IMG, ASAM_ESAM_IMG, c6, l6);
    asam_tensor *sparse = asam_esam_prompt_encode(ctx, s->esam, B, c6, l6);
    return asam_esam_decode(ctx, s->esam, embedding, sparse, multimask, low_res, iou, NULL);
}

asam_tensor *asam_segmenter_iou_token(const asam_segmenter *s) {
    return s->sam ? s->sam->dec.iou_token : asam_esam_iou_token(s->esam);
}

asam_tensor *asam_segmenter_mask_tokens(const asam_segmenter *s) {
    return s->sam ? s->sam->dec.mask_tokens : asam_esam_mask_tokens(s->esam);
}

void asam_segmenter_tokens_requires_grad(const asam_segmenter *s, int on) {
    if (s->sam)
        asam_sam_tokens_requires_grad(s->sam, on);
    else
        asam_esam_tokens_requires_grad(s->esam, on);
}

int asam_segmenter_save(const asam_segmenter *s, const char *path) {
    return asam_segmenter_save_meta(s, path, NULL, 0);
}

int asam_segmenter_save_meta(const asam_segmenter *s, const char *path, const char *const *metadata,
                             size_t n_meta) {
    return s->sam ? asam_sam_save_meta(s->sam, path, metadata, n_meta)
                  : asam_esam_save_meta(s->esam, path, metadata, n_meta);
}
