/* EfficientSAM parity checks shared by test_efficientsam_core (the subset in tests/data) and
 * test_efficientsam_parity (every case of ../shared/fixtures/efficientsam_tiny). Each check
 * runs when its reference tensor is in the file, so the same code serves both. Include after
 * test_util.h and test_sam_common.h. */
#ifndef ASAM_TEST_ESAM_COMMON_H
#define ASAM_TEST_ESAM_COMMON_H

#include "asam/efficientsam.h"
#include "models/efficientsam/esam_internal.h"

#define ESAM_FWD_TOL 1e-4
#define ESAM_GRAD_TOL 1e-3

/* The tiny model (2 encoder heads: not visible in the shapes, see config.json). */
static inline asam_esam *esam_load_tiny(void) {
    char path[4096];
    if (test_data_file("efficientsam_tiny/model.safetensors", path, sizeof path) != 0)
        TEST_SKIP("efficientsam_tiny/model.safetensors not found");
    asam_esam *m = NULL;
    CHECK(asam_esam_load(path, 2, &m) == 0, "load %s: %s", path, asam_last_error());
    if (!m) exit(test_finish("efficientsam"));
    return m;
}

/* Compare when the fixture has the tensor; returns the relative difference or -1. */
static inline double esam_opt(asam_checkpoint *ck, const char *name, const float *got,
                              int64_t numel, double tol, const char *tag) {
    if (!fx_has(ck, name)) return -1;
    int64_t n;
    float *ref = fx_f32(ck, name, &n);
    char what[256];
    snprintf(what, sizeof what, "%s %s", tag, name);
    double rd = INFINITY;
    CHECK(got != NULL && n == numel, "%s: %lld values, reference has %lld", what, (long long)numel,
          (long long)n);
    if (got && n == numel) {
        rd = test_rel_diff(got, ref, (size_t)n);
        CHECK_CLOSE(got, ref, (size_t)n, tol, what);
    }
    free(ref);
    return rd;
}

static inline double esam_opt_t(asam_checkpoint *ck, const char *name, const asam_tensor *t,
                                double tol, const char *tag) {
    return esam_opt(ck, name, t ? t->data : NULL, t ? t->numel : 0, tol, tag);
}

static inline double esam_opt_grad(asam_checkpoint *ck, const char *name, const asam_tensor *t,
                                   const char *tag) {
    if (!fx_has(ck, name)) return -1;
    CHECK(t && t->grad, "%s %s: no gradient", tag, name);
    return esam_opt(ck, name, t && t->grad ? t->grad : NULL, t ? t->numel : 0, ESAM_GRAD_TOL, tag);
}

/* Rows [r0, r0 + 32) of a (1, 3, 1024, 1024) tensor's data or grad. */
static inline float *esam_rows(const float *x, int r0) {
    float *o = malloc(sizeof(float) * 3 * 32 * 1024);
    for (int c = 0; c < 3; c++)
        memcpy(o + (size_t)c * 32 * 1024, x + ((size_t)c * 1024 + r0) * 1024,
               sizeof(float) * 32 * 1024);
    return o;
}

static inline void esam_check_rows(asam_checkpoint *ck, const char *top, const char *bottom,
                                   const float *x, double tol, const char *tag) {
    if (!x) return;
    float *t = esam_rows(x, 0), *b = esam_rows(x, 992);
    esam_opt(ck, top, t, 3 * 32 * 1024, tol, tag);
    esam_opt(ck, bottom, b, 3 * 32 * 1024, tol, tag);
    free(t);
    free(b);
}

/* The case image (HWC uint8). */
static inline int esam_case_image(asam_checkpoint *ck, asam_image *img) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "image_u8");
    if (!t) return -1;
    asam_image_alloc(img, (int)t->shape[1], (int)t->shape[0], 3);
    return asam_ckpt_read_raw(ck, t, img->data);
}

/* Prompts of a case: Q queries of n points (B = 1). Caller frees. */
static inline int esam_case_prompts(asam_checkpoint *ck, int *Q, int *n, float **xy,
                                    float **labels) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "point_coords");
    if (!t || t->ndim != 4) return -1;
    *Q = (int)t->shape[1];
    *n = (int)t->shape[2];
    *xy = fx_f32(ck, "point_coords", NULL);
    *labels = fx_f32(ck, "point_labels", NULL);
    return 0;
}

/* Image -> embedding with every intermediate the fixture has. Returns the embedding. */
static inline asam_tensor *esam_check_encoder(asam_ctx *ctx, const asam_esam *m,
                                              asam_checkpoint *ck, const asam_image *img,
                                              const char *tag) {
    asam_tensor *x = asam_esam_preprocess(ctx, asam_esam_image_to_tensor(ctx, img));
    if (!x) return NULL;
    /* the resampling recipe is bit-exact; normalisation is the same float32 ops */
    esam_check_rows(ck, "preprocessed_input_top", "preprocessed_input_bottom", x->data, 0, tag);
    esam_opt_t(ck, "pos_embed_interp", esam_pos_embed(ctx, m), 0, tag);
    asam_tensor *pe = esam_patch_embed(ctx, m, x);
    esam_opt_t(ck, "patch_embed_out", pe, ESAM_FWD_TOL, tag);
    if (fx_has(ck, "block00_out")) { /* run the blocks one by one to compare each */
        const int64_t G = ASAM_ESAM_GRID, C = m->cfg.embed_dim;
        asam_tensor *h = asam_permute(ctx, pe, (const int[]){0, 2, 3, 1});
        h = asam_add(ctx, h, esam_pos_embed(ctx, m));
        h = asam_reshape(ctx, h, ASAM_SHAPE(1, G * G, C));
        for (int i = 0; i < m->cfg.depth; i++) {
            h = esam_block_forward(ctx, &m->enc.blocks[i], h);
            char name[32];
            snprintf(name, sizeof name, "block%02d_out", i);
            esam_opt_t(ck, name, h, ESAM_FWD_TOL, tag);
        }
    }
    asam_tensor *emb = asam_esam_encode(ctx, m, x);
    esam_opt_t(ck, "image_embeddings", emb, ESAM_FWD_TOL, tag);
    return emb;
}

/* Prompts -> decoder outputs for both multimask settings, at low-res and original size. */
static inline void esam_check_decoder(asam_ctx *ctx, const asam_esam *m, asam_checkpoint *ck,
                                      asam_tensor *emb, int orig_h, int orig_w, const char *tag) {
    int Q, n;
    float *xy, *lab;
    if (esam_case_prompts(ck, &Q, &n, &xy, &lab) != 0) return;
    const int P = ASAM_ESAM_POINTS;
    float *c6 = malloc(sizeof(float) * (size_t)Q * P * 2), *l6 = malloc(sizeof(float) * Q * P);
    asam_esam_prepare_points(Q, n, xy, lab, orig_h, orig_w, c6, l6);
    esam_opt(ck, "point_coords_1024", c6, (int64_t)Q * P * 2, 0, tag);
    esam_opt(ck, "point_labels_padded", l6, (int64_t)Q * P, 0, tag);
    asam_tensor *sparse = asam_esam_prompt_encode(ctx, m, Q, c6, l6);
    esam_opt_t(ck, "sparse_embeddings", sparse, ESAM_FWD_TOL, tag);
    if (fx_has(ck, "dense_pe")) { /* our cached copy is (4096, D) rows: back to (D, 64, 64) */
        asam_tensor *kp = asam_detach(ctx, m->pe.key_pe);
        asam_tensor *dp = asam_transpose(ctx, kp, 1, 2);
        esam_opt_t(ck, "dense_pe", dp, ESAM_FWD_TOL, tag);
    }
    for (int mm = 1; mm >= 0; mm--) {
        asam_esam_decoder_trace tr = {0};
        asam_tensor *low, *iou;
        CHECK(asam_esam_decode(ctx, m, emb, sparse, mm, &low, &iou, &tr) == 0, "decode: %s",
              asam_ctx_error(ctx));
        if (!low) break;
        if (mm) {
            esam_opt_t(ck, "decoder_queries_out", tr.queries_out, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "decoder_keys_out", tr.keys_out, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "upscale0_out", tr.upscale0, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "upscale1_out", tr.upscaled, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "hyper_in", tr.hyper_in, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "low_res_logits_all", tr.all_masks, ESAM_FWD_TOL, tag);
            esam_opt_t(ck, "iou_predictions_all", tr.all_iou, ESAM_FWD_TOL, tag);
        }
        const char *pfx = mm ? "multi" : "single";
        char name[64];
        snprintf(name, sizeof name, "%s_iou_predictions", pfx);
        esam_opt_t(ck, name, iou, ESAM_FWD_TOL, tag);
        snprintf(name, sizeof name, "%s_mask_logits", pfx);
        if (!fx_has(ck, name)) continue;
        asam_tensor *ml = asam_esam_postprocess(ctx, low, orig_h, orig_w);
        esam_opt_t(ck, name, ml, ESAM_FWD_TOL, tag);
        char mname[64];
        snprintf(mname, sizeof mname, "%s_masks", pfx);
        if (ml && fx_has(ck, mname)) {
            float *rl = fx_f32(ck, name, NULL), *rm = fx_f32(ck, mname, NULL);
            uint8_t *mk = malloc((size_t)ml->numel);
            for (int64_t i = 0; i < ml->numel; i++) mk[i] = ml->data[i] >= 0.0f;
            char what[128];
            snprintf(what, sizeof what, "%s %s (logits >= 0)", tag, mname);
            fx_check_masks(mk, rl, rm, ml->numel, what);
            /* official post-processing: the best of the three by IoU */
            if (mm && fx_has(ck, "best_mask") && Q == 1) {
                int best = 0;
                for (int k = 1; k < 3; k++)
                    if (iou->data[k] > iou->data[best]) best = k;
                float *rb = fx_f32(ck, "best_mask", NULL);
                int64_t hw = (int64_t)orig_h * orig_w;
                snprintf(what, sizeof what, "%s best_mask (highest IoU, logits >= 0)", tag);
                fx_check_masks(mk + best * hw, rl + best * hw, rb, hw, what);
                free(rb);
            }
            free(mk);
            free(rl);
            free(rm);
        }
    }
    free(c6);
    free(l6);
    free(xy);
    free(lab);
}

/* case_grad: BCE + Dice at the original size back to the [0,1] image and the tokens; MSE on
 * the IoU back to the tokens. */
static inline void esam_check_grad(asam_esam *m, asam_checkpoint *ck, const char *tag) {
    asam_image img = {0};
    if (esam_case_image(ck, &img) != 0) return;
    int Q, n;
    float *xy, *lab;
    if (esam_case_prompts(ck, &Q, &n, &xy, &lab) != 0) return;
    asam_tensor *it = asam_esam_iou_token(m), *mt = asam_esam_mask_tokens(m);
    asam_esam_tokens_requires_grad(m, 1);
    asam_param_zero_grad(it);
    asam_param_zero_grad(mt);
    asam_ctx *ctx = asam_ctx_new(0);
    const int P = ASAM_ESAM_POINTS, H = img.h, W = img.w;
    float c6[ASAM_ESAM_POINTS * 2], l6[ASAM_ESAM_POINTS];
    asam_esam_prepare_points(1, n, xy, lab, H, W, c6, l6);
    (void)P;
    asam_tensor *x = asam_esam_image_to_tensor(ctx, &img);
    asam_set_requires_grad(x, 1);
    asam_tensor *xp = asam_esam_preprocess(ctx, x);
    asam_tensor *emb = asam_esam_encode(ctx, m, xp);
    asam_tensor *sparse = asam_esam_prompt_encode(ctx, m, 1, c6, l6);
    asam_tensor *low = NULL, *iou = NULL, *ml = NULL;
    CHECK(asam_esam_decode(ctx, m, emb, sparse, 0, &low, &iou, NULL) == 0, "decode: %s",
          asam_ctx_error(ctx));
    if (low) ml = asam_esam_postprocess(ctx, low, H, W);
    esam_opt_t(ck, "mask_logits", ml, ESAM_FWD_TOL, tag);
    esam_opt_t(ck, "iou_predictions", iou, ESAM_FWD_TOL, tag);
    asam_tensor *T = fx_tensor(ctx, ck, "target_mask", ASAM_SHAPE(1, 1, H, W));
    asam_tensor *bce = asam_bce_with_logits(ctx, ml, T);
    asam_tensor *dice = asam_dice_loss(ctx, ml, T, 1.0f);
    asam_tensor *loss = asam_add(ctx, bce, dice);
    esam_opt_t(ck, "loss_bce", bce, ESAM_FWD_TOL, tag);
    esam_opt_t(ck, "loss_dice", dice, ESAM_FWD_TOL, tag);
    esam_opt_t(ck, "loss", loss, ESAM_FWD_TOL, tag);
    CHECK(loss && asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
    esam_opt_grad(ck, "grad_mask_logits", ml, tag);
    esam_opt_grad(ck, "grad_low_res_logits", low, tag);
    esam_opt_grad(ck, "grad_image_embeddings", emb, tag);
    if (xp && xp->grad)
        esam_check_rows(ck, "grad_preprocessed_input_top", "grad_preprocessed_input_bottom",
                        xp->grad, ESAM_GRAD_TOL, tag);
    esam_opt_grad(ck, "grad_input_image", x, tag);
    esam_opt_grad(ck, "grad_iou_token", it, tag);
    esam_opt_grad(ck, "grad_mask_tokens", mt, tag);
    printf("arena peak during forward+backward: %.1f MB\n", asam_ctx_peak(ctx) / 1e6);

    /* loss 2 on the IoU prediction: the decoder again on the (constant) embedding */
    asam_ctx_reset(ctx);
    asam_param_zero_grad(it);
    asam_param_zero_grad(mt);
    asam_tensor *e2 = fx_has(ck, "image_embeddings")
                          ? fx_tensor(ctx, ck, "image_embeddings",
                                      ASAM_SHAPE(1, m->cfg.dim, ASAM_ESAM_GRID, ASAM_ESAM_GRID))
                          : NULL;
    if (!e2 && emb) { /* the embedding computed above is gone with the reset: recompute */
        asam_ctx_set_grad(ctx, 0);
        e2 = asam_esam_encode(ctx, m,
                              asam_esam_preprocess(ctx, asam_esam_image_to_tensor(ctx, &img)));
        e2 = asam_detach(ctx, e2);
        asam_ctx_set_grad(ctx, 1);
    }
    sparse = asam_esam_prompt_encode(ctx, m, 1, c6, l6);
    CHECK(asam_esam_decode(ctx, m, e2, sparse, 0, &low, &iou, NULL) == 0, "decode 2");
    float tv = 0.75f;
    if (fx_has(ck, "iou_target")) {
        float *t = fx_f32(ck, "iou_target", NULL);
        tv = t[0];
        free(t);
    }
    asam_tensor *loss2 = asam_mse(ctx, iou, asam_full(ctx, ASAM_SHAPE(1, 1), tv));
    esam_opt_t(ck, "loss2", loss2, ESAM_FWD_TOL, tag);
    CHECK(loss2 && asam_backward(ctx, loss2) == 0, "backward 2: %s", asam_ctx_error(ctx));
    esam_opt_grad(ck, "loss2_grad_iou_token", it, tag);
    esam_opt_grad(ck, "loss2_grad_mask_tokens", mt, tag);
    asam_esam_tokens_requires_grad(m, 0);
    asam_ctx_free(ctx);
    asam_image_free(&img);
    free(xy);
    free(lab);
}

#endif
