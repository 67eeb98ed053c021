/* The tuning loss of HQ-SAM / ASAM: BCE-with-logits + Dice, 1:1, either on all 256x256 low-res
 * logits or on points chosen as Mask2Former does (get_uncertain_point_coords_with_randomness):
 * draw oversample * P uniform points, keep the importance * P with the most uncertain logits
 * (smallest |logit|, the logits sampled bilinearly), add the rest uniformly at random; then
 * sample logits and GT at those points (grid_sample, align_corners=False). */
#include "asam/asam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void asam_mask_loss_defaults(asam_mask_loss_cfg *c) {
    c->points = 1;
    c->n_points = 112 * 112;
    c->oversample = 3.0f;
    c->importance = 0.75f;
    c->draw = NULL;
    c->draw_user = NULL;
    c->draw_mask0 = 0;
}

typedef struct {
    float u; /* uncertainty = -|logit| */
    int i;
} unc_idx;

static int cmp_unc(const void *a, const void *b) { /* descending uncertainty, then index */
    const unc_idx *x = a, *y = b;
    if (x->u != y->u) return x->u > y->u ? -1 : 1;
    return x->i - y->i;
}

/* coords (B, P, 2) for logits (B, 1, 256, 256). */
// ref: SysCV/sam-hq train/utils/loss_mask.py:38 (get_uncertain_point_coords_with_randomness), :143
//   (calculate_uncertainty)
static int uncertain_points(asam_ctx *ctx, asam_tensor *logits, const asam_mask_loss_cfg *c,
                            asam_rng *rng, float *coords) {
    int64_t B = logits->shape[0], P = c->n_points;
    int64_t S = (int64_t)(P * c->oversample), K = (int64_t)(c->importance * P);
    if (K > S) K = S;
    asam_mark mk = asam_ctx_mark(ctx);
    int prev = asam_ctx_set_grad(ctx, 0);
    float *cand = asam_ctx_alloc(ctx, sizeof(float) * (size_t)(B * S * 2));
    unc_idx *u = asam_ctx_alloc(ctx, sizeof(unc_idx) * (size_t)S);
    if (!cand || !u) {
        asam_ctx_set_grad(ctx, prev);
        asam_ctx_release(ctx, mk);
        return -1;
    }
    if (c->draw)
        for (int64_t b = 0; b < B; b++)
            c->draw(c->draw_user, 1, c->draw_mask0 + b, cand + b * S * 2, (size_t)S * 2);
    else
        for (int64_t i = 0; i < B * S * 2; i++) cand[i] = (float)asam_rng_uniform(rng);
    asam_tensor *lg = asam_detach(ctx, logits);
    asam_tensor *pl = asam_point_sample(ctx, lg, cand, S); /* (B, 1, S) */
    int ok = pl != NULL;
    for (int64_t b = 0; ok && b < B; b++) {
        for (int64_t s = 0; s < S; s++) {
            u[s].u = -fabsf(pl->data[b * S + s]);
            u[s].i = (int)s;
        }
        qsort(u, (size_t)S, sizeof *u, cmp_unc);
        float *dst = coords + b * P * 2;
        for (int64_t k = 0; k < K; k++) {
            dst[2 * k] = cand[(b * S + u[k].i) * 2];
            dst[2 * k + 1] = cand[(b * S + u[k].i) * 2 + 1];
        }
    }
    /* the random share, drawn after all masks' candidates (as torch.rand after topk) */
    for (int64_t b = 0; ok && b < B; b++) {
        if (c->draw) {
            // ref: SysCV/sam-hq train/utils/loss_mask.py:76 torch.rand(num_boxes, P - K, 2)
            if (P > K)
                c->draw(c->draw_user, 2, c->draw_mask0 + b, coords + (b * P + K) * 2,
                        (size_t)(P - K) * 2);
            continue;
        }
        for (int64_t k = K; k < P; k++) {
            coords[(b * P + k) * 2] = (float)asam_rng_uniform(rng);
            coords[(b * P + k) * 2 + 1] = (float)asam_rng_uniform(rng);
        }
    }
    asam_ctx_set_grad(ctx, prev);
    asam_ctx_release(ctx, mk);
    return ok ? 0 : -1;
}

// ref: SysCV/sam-hq train/utils/loss_mask.py:159 (loss_masks: sigmoid_ce_loss :118 + dice_loss :91
//   at sampled points)
asam_tensor *asam_mask_loss(asam_ctx *ctx, asam_tensor *logits, asam_tensor *gt,
                            const asam_mask_loss_cfg *c, asam_rng *rng) {
    if (!logits || !gt) return NULL;
    if (logits->ndim != 4 || logits->shape[1] != 1 || gt->ndim != 4 || gt->shape[1] != 1 ||
        gt->shape[0] != logits->shape[0])
        return asam_ctx_fail(ctx, "mask loss: logits (B, 1, H, W) and gt (B, 1, H', W') expected");
    int64_t B = logits->shape[0];
    asam_tensor *x, *t;
    if (c->points) {
        int64_t P = c->n_points;
        if (P <= 0) return asam_ctx_fail(ctx, "mask loss: n_points must be positive");
        float *coords = asam_ctx_alloc(ctx, sizeof(float) * (size_t)(B * P * 2));
        if (!coords || uncertain_points(ctx, logits, c, rng, coords))
            return asam_ctx_fail(ctx, "mask loss: point sampling failed");
        int prev = asam_ctx_set_grad(ctx, 0);
        t = asam_point_sample(ctx, asam_detach(ctx, gt), coords, P);
        asam_ctx_set_grad(ctx, prev);
        x = asam_point_sample(ctx, logits, coords, P); /* (B, 1, P) */
        x = asam_reshape(ctx, x, ASAM_SHAPE(B, P));
        t = asam_reshape(ctx, t, ASAM_SHAPE(B, P));
    } else {
        int64_t H = logits->shape[2], W = logits->shape[3];
        t = gt;
        if (gt->shape[2] != H || gt->shape[3] != W) {
            int prev = asam_ctx_set_grad(ctx, 0);
            t = asam_resize_bilinear(ctx, asam_detach(ctx, gt), H, W);
            asam_ctx_set_grad(ctx, prev);
        }
        x = asam_reshape(ctx, logits, ASAM_SHAPE(B, H * W));
        t = asam_reshape(ctx, t, ASAM_SHAPE(B, H * W));
    }
    /* sigmoid_ce_loss: mean over points, summed over masks / num_masks = mean over all */
    asam_tensor *bce = asam_bce_with_logits(ctx, x, t);
    asam_tensor *dice = asam_dice_loss(ctx, x, t, 1.0f);
    return asam_add(ctx, bce, dice);
}
