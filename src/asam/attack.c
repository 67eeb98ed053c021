/* The MI-FGSM latent attack against SAM (DESIGN.md §1.1): each iteration runs the guided
 * ControlNet chain from the current x_T, decodes z_0, soft-clamps to [0,1], resizes to 1024
 * (nearest), runs SAM with the GT box prompts and computes
 *   loss = w_bce BCE(low_res, gt256) + w_dice Dice - w_l2 ||x1024 - clean1024||_2.
 * The gradient at x_T is either the gradient at z_0 ("skip", the official code) or the true
 * one through every step (full, with per-step gradient checkpointing). The latent with the
 * lowest mean IoU (the clean one counts) is kept with its regenerated image. */
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/segmenter.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* (1,3,S,S) in [0,1] -> the attacked model's normalised (1,3,1024,1024): nearest resize, x255,
 * then its own normalisation (SAM: ImageNet mean/std in 0..255; EfficientSAM: the same in
 * [0,1] units, the 1024 frame being the whole image for both) */
static asam_tensor *sam_input(asam_ctx *ctx, const asam_segmenter *seg, asam_tensor *img01) {
    asam_tensor *x = asam_resize_nearest(ctx, img01, ASAM_SAM_IMG, ASAM_SAM_IMG);
    return asam_segmenter_input255(ctx, seg, asam_scale(ctx, x, 255.0f));
}

/* IoU of one 256x256 logit map upsampled (bilinear, align_corners=False) to 1024, > 0, vs gt */
// ref: luckybird1994/ASAM grad_null_text_inversion_edit.py:243 (compute_iou)
static float mask_iou(const float *lr, const uint8_t *gt) {
    const int L = ASAM_SAM_LOWRES, S = ASAM_SAM_IMG;
    const float sc = (float)L / S;
    uint64_t inter = 0, uni = 0;
    for (int y = 0; y < S; y++) {
        float sy = (y + 0.5f) * sc - 0.5f;
        if (sy < 0) sy = 0;
        int y0 = (int)sy, y1 = y0 + 1 < L ? y0 + 1 : L - 1;
        float fy = sy - y0;
        for (int x = 0; x < S; x++) {
            float sx = (x + 0.5f) * sc - 0.5f;
            if (sx < 0) sx = 0;
            int x0 = (int)sx, x1 = x0 + 1 < L ? x0 + 1 : L - 1;
            float fx = sx - x0;
            float v = (1 - fy) * ((1 - fx) * lr[y0 * L + x0] + fx * lr[y0 * L + x1]) +
                      fy * ((1 - fx) * lr[y1 * L + x0] + fx * lr[y1 * L + x1]);
            int p = v > 0, g = gt[(size_t)y * S + x] != 0;
            inter += p & g;
            uni += p | g;
        }
    }
    return uni ? (float)((double)inter / (double)uni) : 1.0f;
}

/* Prompts decoded per chunk: SAM's decoder copies the image tokens once per prompt, so 140
 * boxes at once would hold tens of GB of activations in the backward pass. */
#define ATTACK_DECODE_CHUNK 8

// ref: luckybird1994/ASAM grad_null_text_inversion_edit.py:691 (loss = dice + ce - mse)
asam_tensor *asam_attack_loss(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                              const asam_attack_target *tg, asam_tensor *img01,
                              asam_tensor *clean01, float *miou) {
    if (!m->sam && !m->esam) return asam_ctx_fail(ctx, "attack: no SAM model");
    const asam_segmenter seg = {m->sam, m->esam};
    if (tg->n < 1) return asam_ctx_fail(ctx, "attack: no GT masks");
    asam_tensor *xn = sam_input(ctx, &seg, img01);
    asam_tensor *emb = asam_segmenter_encode(ctx, &seg, xn);
    if (!emb) return NULL;
    /* The mask loss is a mean over masks, so it is the sum over chunks of (n_c / n) times the
     * chunk's loss. Each chunk is decoded against a leaf copy of the embedding and
     * differentiated at once; the gradients collect in demb and reach the encoder through a
     * surrogate below. */
    int grad = asam_ctx_grad_enabled(ctx) && emb->requires_grad;
    asam_tensor *emb_leaf = asam_detach(ctx, emb);
    asam_tensor *demb = grad ? asam_zeros(ctx, emb->ndim, emb->shape) : NULL;
    if (!emb_leaf || (grad && !demb)) return NULL;
    if (grad) {
        asam_set_requires_grad(emb_leaf, 1);
        emb_leaf->grad = demb->data;
    }
    const size_t L2 = (size_t)ASAM_SAM_LOWRES * ASAM_SAM_LOWRES,
                 S2 = (size_t)ASAM_SAM_IMG * ASAM_SAM_IMG;
    double mask_loss = 0, iou_sum = 0;
    for (int c0 = 0; c0 < tg->n; c0 += ATTACK_DECODE_CHUNK) {
        int nc = tg->n - c0 < ATTACK_DECODE_CHUNK ? tg->n - c0 : ATTACK_DECODE_CHUNK;
        asam_mark mk = asam_ctx_mark(ctx);
        asam_seg_prompt p = {.batch = nc, .boxes = tg->boxes + (size_t)4 * c0};
        asam_tensor *low, *iou;
        if (asam_segmenter_decode(ctx, &seg, emb_leaf, &p, 0, &low, &iou)) return NULL;
        asam_tensor *gt = asam_from_data(ctx, ASAM_SHAPE(nc, 1, ASAM_SAM_LOWRES, ASAM_SAM_LOWRES),
                                         tg->gt256 + (size_t)c0 * L2);
        float share = (float)nc / (float)tg->n;
        asam_tensor *lc = asam_axpby(ctx, share * o->w_bce, asam_bce_with_logits(ctx, low, gt),
                                     share * o->w_dice, asam_dice_loss(ctx, low, gt, 1.0f));
        if (!lc || (grad && asam_backward(ctx, lc))) return NULL;
        mask_loss += lc->data[0];
        if (miou) {
            double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(dynamic)
            for (int i = 0; i < nc; i++)
                acc += mask_iou(low->data + i * L2, tg->gt1024 + (size_t)(c0 + i) * S2);
            iou_sum += acc;
        }
        asam_ctx_release(ctx, mk);
    }
    if (miou) *miou = (float)(iou_sum / tg->n);
    asam_tensor *loss;
    if (grad) {
        /* sum(emb * demb) has exactly the gradient demb w.r.t. emb; shifting it by a constant
         * gives it the value of the chunked loss. */
        asam_tensor *sur = asam_sum(ctx, asam_mul(ctx, emb, demb));
        if (!sur) return NULL;
        loss = asam_add_scalar(ctx, sur, (float)(mask_loss - (double)sur->data[0]));
    } else {
        loss = asam_scalar(ctx, (float)mask_loss);
    }
    if (clean01 && o->w_l2 != 0) {
        int prev = asam_ctx_set_grad(ctx, 0);
        asam_tensor *cn = sam_input(ctx, &seg, clean01);
        asam_ctx_set_grad(ctx, prev);
        asam_tensor *l2 = asam_l2_norm(ctx, asam_sub(ctx, xn, cn));
        loss = asam_axpby(ctx, 1.0f, loss, -o->w_l2, l2);
    }
    if (!loss || !asam_ctx_ok(ctx)) return NULL;
    return loss;
}

void asam_attack_result_free(asam_attack_result *r) {
    free(r->miou);
    free(r->loss);
    free(r->x_best);
    asam_image_free(&r->image);
    memset(r, 0, sizeof *r);
}

/* [0,1] image tensor -> RGB8 as diffusers does: round(255 clamp(x)) */
static int to_rgb8(const asam_tensor *x, asam_image *out) {
    int H = (int)x->shape[2], W = (int)x->shape[3];
    if (out->data && (out->w != W || out->h != H)) asam_image_free(out);
    if (!out->data && asam_image_alloc(out, W, H, 3)) return -1;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < H * W; p++) {
            float v = x->data[(size_t)c * H * W + p];
            v = v < 0 ? 0 : (v > 1 ? 1 : v);
            out->data[(size_t)p * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
    return 0;
}

int asam_attack(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, const asam_sa1b_image *ann, asam_tensor *hint,
                const asam_inversion *inv, asam_attack_result *res) {
    memset(res, 0, sizeof *res);
    asam_attack_target tg;
    if (asam_attack_target_make(ann, o->max_boxes, &tg)) return -1;
    int rc = asam_attack_target_run(ctx, m, o, img, &tg, hint, inv, res);
    asam_attack_target_free(&tg);
    return rc;
}

int asam_attack_target_run(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                           const asam_image *img, const asam_attack_target *target,
                           asam_tensor *hint, const asam_inversion *inv, asam_attack_result *res) {
    memset(res, 0, sizeof *res);
    if (!m->sd || (!m->sam && !m->esam))
        return asam_error("attack: needs Stable Diffusion and SAM (or EfficientSAM) models");
    if (o->iters < 0) return asam_error("attack: negative iteration count");
    const asam_attack_target tg = *target;
    const int K = o->iters;
    const size_t nl = (size_t)inv->lat_c * inv->lat_h * inv->lat_w;
    const int64_t lshape[4] = {1, inv->lat_c, inv->lat_h, inv->lat_w};
    res->iters = K;
    res->n_masks = tg.n;
    res->miou = calloc((size_t)K + 1, sizeof(float));
    res->loss = calloc((size_t)K + 1, sizeof(float));
    res->x_best = malloc(nl * sizeof(float));
    float *x = malloc(nl * sizeof(float)), *mom = calloc(nl, sizeof(float));
    float *g = malloc(nl * sizeof(float));
    int rc = -1;
    if (!res->miou || !res->loss || !res->x_best || !x || !mom || !g) {
        asam_error("attack: out of memory");
        goto done;
    }
    memcpy(x, inv->x_T, nl * sizeof(float));
    asam_mark m0 = asam_ctx_mark(ctx);
    int prev_grad = asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, m->sd, inv->prompt ? inv->prompt : "");
    asam_tensor *clean = asam_sd_image_to_tensor(ctx, img, inv->size, inv->size, 0.0f);
    if (!cond || !clean) goto ctx_fail;
    res->best = -1;
    for (int k = 0; k <= K; k++) {
        double t0 = asam_now_s();
        asam_mark mk = asam_ctx_mark(ctx);
        int want_grad = k < K; /* the last evaluation only scores the final latent */
        asam_tensor *xT = asam_from_data(ctx, 4, lshape, x), *leaf, *z0;
        if (want_grad && o->grad == ASAM_GRAD_FULL) {
            asam_set_requires_grad(xT, 1);
            asam_ctx_set_grad(ctx, 1);
            z0 = asam_gen_sample_chain(ctx, m, o, inv, cond, hint, xT, 1);
            leaf = xT;
        } else {
            asam_ctx_set_grad(ctx, 0);
            z0 = asam_gen_sample_chain(ctx, m, o, inv, cond, hint, xT, 0);
            if (z0) z0 = asam_detach(ctx, z0);
            if (z0) asam_set_requires_grad(z0, want_grad);
            asam_ctx_set_grad(ctx, want_grad);
            leaf = z0; /* skip gradient: dL/dz_0 stands in for dL/dx_T */
        }
        asam_tensor *img01 = z0 ? asam_gen_decode01(ctx, m, z0) : NULL;
        float miou = 0;
        asam_tensor *loss = img01 ? asam_attack_loss(ctx, m, o, &tg, img01, clean, &miou) : NULL;
        if (!loss) goto ctx_fail;
        res->miou[k] = miou;
        res->loss[k] = loss->data[0];
        if (res->best < 0 || miou < res->miou[res->best]) {
            res->best = k;
            memcpy(res->x_best, x, nl * sizeof(float));
            if (to_rgb8(img01, &res->image)) goto done_ctx;
        }
        if (want_grad) {
            if (asam_backward(ctx, loss)) goto ctx_fail;
            double l1 = 0;
            for (size_t i = 0; i < nl; i++) {
                g[i] = leaf->grad ? leaf->grad[i] : 0.0f;
                l1 += fabs((double)g[i]);
            }
            /* MI-FGSM: m = mu m + g / ||g||_1; x += alpha sign(m); clip to the eps ball */
            float inv_l1 = l1 > 0 ? (float)(1.0 / l1) : 0.0f;
            for (size_t i = 0; i < nl; i++) {
                mom[i] = o->momentum * mom[i] + g[i] * inv_l1;
                float s = mom[i] > 0 ? 1.0f : (mom[i] < 0 ? -1.0f : 0.0f);
                float v = x[i] + o->alpha * s, lo = inv->x_T[i] - o->eps, hi = inv->x_T[i] + o->eps;
                x[i] = v < lo ? lo : (v > hi ? hi : v);
            }
        }
        asam_ctx_set_grad(ctx, 0);
        asam_ctx_release(ctx, mk);
        if (o->verbose)
            fprintf(stderr, "attack: iteration %d/%d  mIoU %.4f  loss %.4f  %.1f s\n", k, K, miou,
                    res->loss[k], asam_now_s() - t0);
    }
    rc = 0;
    goto done_ctx;
ctx_fail:
    if (!asam_ctx_ok(ctx)) asam_error("attack: %s", asam_ctx_error(ctx));
done_ctx:
    asam_ctx_set_grad(ctx, prev_grad);
    asam_ctx_release(ctx, m0);
done:
    free(x);
    free(mom);
    free(g);
    if (rc) asam_attack_result_free(res);
    return rc;
}

int asam_attack_write(const char *png_path, const char *json_path, const char *image_name,
                      const asam_gen_opts *o, const asam_attack_result *r) {
    if (png_path && asam_image_write_png(png_path, &r->image)) return -1;
    if (!json_path) return 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "image", image_name ? image_name : "");
    cJSON_AddStringToObject(j, "grad", o->grad == ASAM_GRAD_FULL ? "full" : "skip");
    cJSON_AddNumberToObject(j, "n_masks", r->n_masks);
    cJSON_AddNumberToObject(j, "iters", r->iters);
    cJSON_AddNumberToObject(j, "steps", o->steps);
    cJSON_AddNumberToObject(j, "cfg", o->cfg);
    cJSON_AddNumberToObject(j, "alpha", o->alpha);
    cJSON_AddNumberToObject(j, "eps", o->eps);
    cJSON_AddNumberToObject(j, "best_iter", r->best);
    cJSON_AddNumberToObject(j, "miou_clean", r->miou[0]);
    cJSON_AddNumberToObject(j, "miou_adv", r->miou[r->best]);
    cJSON *a = cJSON_AddArrayToObject(j, "miou"), *l = cJSON_AddArrayToObject(j, "loss");
    for (int k = 0; k <= r->iters; k++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber(r->miou[k]));
        cJSON_AddItemToArray(l, cJSON_CreateNumber(r->loss[k]));
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return asam_error("%s: out of memory", json_path);
    size_t n = strlen(s);
    s[n] = '\n'; /* cJSON_Print's buffer has the NUL there; write it as a newline */
    int rc = asam_write_file_atomic(json_path, s, n + 1);
    free(s);
    return rc;
}
