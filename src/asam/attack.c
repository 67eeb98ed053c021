/* The MI-FGSM latent attack against SAM (DESIGN.md §1.1): each iteration runs the guided
 * ControlNet chain from the current x_T, decodes z_0, soft-clamps to [0,1], resizes to 1024
 * (nearest), runs SAM with the GT box prompts and computes
 *   loss = w_bce BCE(low_res, gt256) + w_dice Dice - w_l2 ||x1024 - clean1024||_2.
 * The gradient at x_T is either the gradient at z_0 ("skip", the official code) or the true
 * one through every step (full, with per-step gradient checkpointing). As the official loop
 * (grad_null_text_inversion_edit.py:634-704): iterates 0..iters-1 are scored (0 = the clean
 * x_T), the IoU is the official compute_iou at 256x256 against the soft labels (> 128), and
 * the kept latent is the first whose IoU is below 1 and below every earlier one.
 *
 * For a SAM of input side S (SAM-mini: 128) the 1024 frame is S and the 256 labels are S/4;
 * the L2 term, a norm over the frame's pixels, is scaled by 1024 / S so that the same
 * per-pixel change weighs against the (mean) mask losses as it does at 1024. */
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

/* (1,3,H,W) in [0,1] -> the attacked model's normalised (1,3,S,S): nearest resize, x255,
 * then its own normalisation (SAM: ImageNet mean/std in 0..255; EfficientSAM: the same in
 * [0,1] units, the S frame being the whole image for both) */
static asam_tensor *sam_input(asam_ctx *ctx, const asam_segmenter *seg, asam_tensor *img01) {
    const int S = asam_segmenter_img_size(seg);
    asam_tensor *x = asam_resize_nearest(ctx, img01, S, S);
    return asam_segmenter_input255(ctx, seg, asam_scale(ctx, x, 255.0f));
}

int asam_gen_models_img_size(const asam_gen_models *m) {
    if (!m->sam && !m->esam) return 0;
    const asam_segmenter seg = {m->sam, m->esam};
    return asam_segmenter_img_size(&seg);
}

float asam_attack_iou(const float *low, const float *lab256, int n) {
    return asam_attack_iou_at(low, lab256, n, ASAM_SAM_LOWRES);
}

float asam_attack_iou_at(const float *low, const float *lab256, int n, int lowres) {
    const size_t L2 = (size_t)lowres * lowres;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        // ref: grad_null_text_inversion_edit.py:249-255 mask_iou at 256 (same size: no resize)
        int64_t inter = 0, uni = 0;
        const float *p = low + i * L2, *g = lab256 + i * L2;
        for (size_t q = 0; q < L2; q++) {
            int a = p[q] > 0, b = g[q] > 128;
            inter += a & b;
            uni += a | b;
        }
        sum += uni ? (float)inter / (float)uni : NAN; /* torch: 0/0 = nan */
    }
    return sum / (float)n;
}

/* Prompts decoded per chunk: SAM's decoder copies the image tokens once per prompt, so 140
 * boxes at once would hold tens of GB of activations in the backward pass. */
#define ATTACK_DECODE_CHUNK 8

// ref: luckybird1994/ASAM grad_null_text_inversion_edit.py:691 (loss = dice + ce - mse)
asam_tensor *asam_attack_loss(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                              const asam_attack_target *tg, asam_tensor *img01, float *miou,
                              float terms[3]) {
    if (!m->sam && !m->esam) return asam_ctx_fail(ctx, "attack: no SAM model");
    const asam_segmenter seg = {m->sam, m->esam};
    if (tg->n < 1) return asam_ctx_fail(ctx, "attack: no GT masks");
    const int S = asam_segmenter_img_size(&seg), L = asam_segmenter_lowres(&seg);
    if ((tg->size > 0 ? tg->size : ASAM_SAM_IMG) != S)
        return asam_ctx_fail(ctx,
                             "attack: the target was made for input side %d, the model's is %d",
                             tg->size > 0 ? tg->size : ASAM_SAM_IMG, S);
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
    const size_t L2 = (size_t)L * L;
    double mask_loss = 0, bce_sum = 0, dice_sum = 0;
    float *low_all = miou ? malloc((size_t)tg->n * L2 * sizeof(float)) : NULL;
    if (miou && !low_all) return asam_ctx_fail(ctx, "attack: out of memory");
    for (int c0 = 0; c0 < tg->n; c0 += ATTACK_DECODE_CHUNK) {
        int nc = tg->n - c0 < ATTACK_DECODE_CHUNK ? tg->n - c0 : ATTACK_DECODE_CHUNK;
        asam_mark mk = asam_ctx_mark(ctx);
        asam_seg_prompt p = {.batch = nc, .boxes = tg->boxes + (size_t)4 * c0};
        asam_tensor *low, *iou;
        if (asam_segmenter_decode(ctx, &seg, emb_leaf, &p, 0, &low, &iou)) return NULL;
        asam_tensor *gt = asam_from_data(ctx, ASAM_SHAPE(nc, 1, L, L), tg->gt256 + (size_t)c0 * L2);
        float share = (float)nc / (float)tg->n;
        // ref: grad_null_text_inversion_edit.py:679-680 gamma BCE(logits, label/255) + kappa Dice
        asam_tensor *bce = asam_bce_with_logits(ctx, low, gt);
        asam_tensor *dice = asam_dice_loss(ctx, low, gt, 1.0f);
        asam_tensor *lc = asam_axpby(ctx, share * o->w_bce, bce, share * o->w_dice, dice);
        if (!lc || (grad && asam_backward(ctx, lc))) {
            free(low_all);
            return NULL;
        }
        mask_loss += lc->data[0];
        bce_sum += share * o->w_bce * bce->data[0];
        dice_sum += share * o->w_dice * dice->data[0];
        if (low_all) memcpy(low_all + (size_t)c0 * L2, low->data, (size_t)nc * L2 * sizeof(float));
        asam_ctx_release(ctx, mk);
    }
    // ref: :682 iou = compute_iou(ad_low_res_logits, label_masks_256)
    if (miou) *miou = asam_attack_iou_at(low_all, tg->lab256, tg->n, L);
    free(low_all);
    if (terms) terms[0] = (float)bce_sum, terms[1] = (float)dice_sum, terms[2] = 0;
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
    if (tg->ref1024 && o->w_l2 != 0) {
        // ref: :686-689 beta * ||normalise(image_m) - raw_img||_2 (whole tensor, unsquared)
        asam_tensor *cn = asam_from_data(ctx, ASAM_SHAPE(1, 3, S, S), tg->ref1024);
        asam_tensor *l2 = asam_l2_norm(ctx, asam_sub(ctx, xn, cn));
        /* the norm over S x S pixels as over 1024 x 1024 of the same per-pixel change */
        if (S != ASAM_SAM_IMG) l2 = asam_scale(ctx, l2, (float)ASAM_SAM_IMG / (float)S);
        if (l2 && terms) terms[2] = o->w_l2 * l2->data[0];
        loss = asam_axpby(ctx, 1.0f, loss, -o->w_l2, l2);
    }
    if (!loss || !asam_ctx_ok(ctx)) return NULL;
    return loss;
}

void asam_attack_result_free(asam_attack_result *r) {
    free(r->miou);
    free(r->loss);
    free(r->terms);
    free(r->x_best);
    free(r->x_in);
    free(r->grad);
    free(r->mom);
    asam_image_free(&r->image);
    memset(r, 0, sizeof *r);
}

/* [0,1] image tensor -> RGB8 as the official script saves it:
 * ref: grad_null_text_inversion_edit.py:721-722 clamp(0, 1), (image * 255).astype(np.uint8)
 * (truncation) */
static int to_rgb8(const asam_tensor *x, asam_image *out) {
    int H = (int)x->shape[2], W = (int)x->shape[3];
    if (out->data && (out->w != W || out->h != H)) asam_image_free(out);
    if (!out->data && asam_image_alloc(out, W, H, 3)) return -1;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < H * W; p++) {
            float v = x->data[(size_t)c * H * W + p];
            v = v < 0 ? 0 : (v > 1 ? 1 : v);
            out->data[(size_t)p * 3 + c] = (uint8_t)(v * 255.0f);
        }
    return 0;
}

int asam_attack(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, const asam_sa1b_image *ann, asam_tensor *hint,
                const asam_inversion *inv, asam_attack_result *res) {
    memset(res, 0, sizeof *res);
    asam_attack_target tg;
    int S = asam_gen_models_img_size(m);
    if (!S) return asam_error("attack: needs a SAM (or EfficientSAM) model");
    if (asam_attack_target_make_at(ann, o->max_boxes, S, &tg)) return -1;
    if (o->w_l2 != 0 && asam_attack_target_set_reference(&tg, img)) {
        asam_attack_target_free(&tg);
        return -1;
    }
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
    if (o->iters < 1) return asam_error("attack: iteration count must be at least 1");
    asam_attack_target tg = *target;
    asam_attack_target own = {0};
    if (!tg.ref1024 && img && o->w_l2 != 0) { /* the L2 reference from the clean image */
        own.size = tg.size;
        if (asam_attack_target_set_reference(&own, img)) return -1;
        tg.ref1024 = own.ref1024;
    }
    const int K = o->iters;
    const size_t nl = (size_t)inv->lat_c * inv->lat_h * inv->lat_w;
    const int64_t lshape[4] = {1, inv->lat_c, inv->lat_h, inv->lat_w};
    res->iters = K;
    res->n_masks = tg.n;
    res->miou = calloc((size_t)K, sizeof(float));
    res->loss = calloc((size_t)K, sizeof(float));
    res->terms = calloc((size_t)K * 3, sizeof(float));
    res->x_best = malloc(nl * sizeof(float));
    if (o->trace) {
        res->x_in = calloc((size_t)K * nl, sizeof(float));
        res->grad = calloc((size_t)K * nl, sizeof(float));
        res->mom = calloc((size_t)K * nl, sizeof(float));
    }
    float *x = malloc(nl * sizeof(float)), *mom = calloc(nl, sizeof(float));
    float *g = malloc(nl * sizeof(float));
    int rc = -1;
    if (!res->miou || !res->loss || !res->terms || !res->x_best || !x || !mom || !g ||
        (o->trace && (!res->x_in || !res->grad || !res->mom))) {
        asam_error("attack: out of memory");
        goto done;
    }
    // ref: grad_null_text_inversion_edit.py:623-630 best_latent = the clean x_T, worst_iou = 1
    memcpy(x, inv->x_T, nl * sizeof(float));
    memcpy(res->x_best, x, nl * sizeof(float));
    float worst = 1.0f;
    res->best = 0;
    asam_mark m0 = asam_ctx_mark(ctx);
    int prev_grad = asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, m->sd, inv->prompt ? inv->prompt : "");
    if (!cond) goto ctx_fail;
    // ref: :634 for k in range(args.steps): evaluate iterate k, then update (the update after
    // the last evaluation is never scored)
    for (int k = 0; k < K; k++) {
        double t0 = asam_now_s();
        asam_mark mk = asam_ctx_mark(ctx);
        if (res->x_in) memcpy(res->x_in + (size_t)k * nl, x, nl * sizeof(float));
        asam_tensor *xT = asam_from_data(ctx, 4, lshape, x), *leaf, *z0;
        if (o->grad == ASAM_GRAD_FULL) {
            asam_set_requires_grad(xT, 1);
            asam_ctx_set_grad(ctx, 1);
            z0 = asam_gen_sample_chain(ctx, m, o, inv, cond, hint, xT, 1);
            leaf = xT;
        } else {
            asam_ctx_set_grad(ctx, 0);
            z0 = asam_gen_sample_chain(ctx, m, o, inv, cond, hint, xT, 0);
            if (z0) z0 = asam_detach(ctx, z0);
            if (z0) asam_set_requires_grad(z0, 1);
            asam_ctx_set_grad(ctx, 1);
            leaf = z0; /* skip gradient: dL/dz_0 stands in for dL/dx_T (:709-712) */
        }
        asam_tensor *img01 = z0 ? asam_gen_decode01(ctx, m, z0) : NULL;
        float miou = 0;
        asam_tensor *loss =
            img01 ? asam_attack_loss(ctx, m, o, &tg, img01, &miou, res->terms + 3 * k) : NULL;
        if (!loss) goto ctx_fail;
        res->miou[k] = miou;
        res->loss[k] = loss->data[0];
        if (k == 0 && to_rgb8(img01, &res->image)) goto done_ctx;
        if (miou < worst) { // ref: :684 if iou < worst_iou (NaN never)
            worst = miou;
            res->best = k;
            memcpy(res->x_best, x, nl * sizeof(float));
            if (to_rgb8(img01, &res->image)) goto done_ctx;
        }
        if (asam_backward(ctx, loss)) goto ctx_fail;
        double l1 = 0;
        for (size_t i = 0; i < nl; i++) {
            g[i] = leaf->grad ? leaf->grad[i] : 0.0f;
            l1 += fabs((double)g[i]);
        }
        // ref: :698-704 m = mu m + g / ||g||_1; x += alpha sign(m); clip to x_T0 +- eps
        float inv_l1 = l1 > 0 ? (float)(1.0 / l1) : 0.0f;
        for (size_t i = 0; i < nl; i++) {
            mom[i] = o->momentum * mom[i] + g[i] * inv_l1;
            float s = mom[i] > 0 ? 1.0f : (mom[i] < 0 ? -1.0f : 0.0f);
            float d = x[i] + o->alpha * s - inv->x_T[i];
            d = d < -o->eps ? -o->eps : (d > o->eps ? o->eps : d);
            x[i] = inv->x_T[i] + d;
        }
        if (res->grad) memcpy(res->grad + (size_t)k * nl, g, nl * sizeof(float));
        if (res->mom) memcpy(res->mom + (size_t)k * nl, mom, nl * sizeof(float));
        asam_ctx_set_grad(ctx, 0);
        asam_ctx_release(ctx, mk);
        if (o->verbose)
            fprintf(stderr, "attack: iteration %d/%d  mIoU %.4f  loss %.4f  %.1f s\n", k + 1, K,
                    miou, res->loss[k], asam_now_s() - t0);
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
    asam_attack_target_free(&own);
    if (rc) asam_attack_result_free(res);
    return rc;
}

int asam_attack_write(const char *png_path, const char *json_path, const char *image_name,
                      const asam_gen_opts *o, const asam_attack_result *r) {
    return asam_attack_write_prov(png_path, json_path, image_name, o, r, NULL);
}

int asam_attack_write_prov(const char *png_path, const char *json_path, const char *image_name,
                           const asam_gen_opts *o, const asam_attack_result *r,
                           const char *provenance) {
    if (png_path) {
        size_t L = strlen(png_path);
        int jpg = L > 4 && !strcmp(png_path + L - 4, ".jpg");
        // ref: grad_null_text_inversion_edit.py:911 view_images(..., shuffix='.jpg') ->
        // ptp_utils.py:62 pil_img.save (JPEG quality 75, 4:2:0)
        if (jpg ? asam_image_write_jpeg(png_path, &r->image, 75)
                : asam_image_write_png(png_path, &r->image))
            return -1;
    }
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
    for (int k = 0; k < r->iters; k++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber(r->miou[k]));
        cJSON_AddItemToArray(l, cJSON_CreateNumber(r->loss[k]));
    }
    cJSON *pv = provenance ? cJSON_Parse(provenance) : NULL;
    if (pv) cJSON_AddItemToObject(j, "provenance", pv);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) return asam_error("%s: out of memory", json_path);
    size_t n = strlen(s);
    s[n] = '\n'; /* cJSON_Print's buffer has the NUL there; write it as a newline */
    int rc = asam_write_file_atomic(json_path, s, n + 1);
    free(s);
    return rc;
}
