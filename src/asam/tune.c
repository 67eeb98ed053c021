/* Adversarial tuning of SAM's (or EfficientSAM's: EASAM) output tokens (ASAM stage 3,
 * HQ-SAM-style training code). The model family comes from the checkpoint (asam/segmenter.h);
 * for EfficientSAM the 1024 frame is the image stretched to 1024x1024, a box is two points
 * labelled 2 and 3, only the first 6 prompt points count, and there is no mask prompt.
 *
 * Only mask_decoder.iou_token (1x256) and mask_decoder.mask_tokens (4x256) are trained; the
 * encoders are frozen, so without augmentation every image embedding is computed once and
 * cached on disk (CACHE/<hash of the dataset spec>_<stem>.emb, holding a hash of the encoder
 * weights that must match).
 *
 * One epoch: the images in a shuffled order, `batch` images per Adam step. Per image: its first
 * `masks_per_image` masks (wrapping around when it has fewer), brought to the S input frame
 * (ResizeLongestSide + zero padding without augmentation; h-flip + large-scale jitter with pad
 * value 128 with it, as HQ-SAM's LargeScaleJitter). One prompt kind is drawn per image (as
 * HQ-SAM draws input_type per image) and applied to each of its masks:
 *   box    the mask's tight bounds in the S frame (+ HQ-SAM's box noise if asked);
 *   points 10 distinct random foreground pixels, label 1;
 *   mask   HQ-SAM's masks_noise: the GT at S/4 x S/4, pixels where it differs from its S/32
 *          x S/32 bilinear round trip get N(0,1) added, thresholded at 0.5 and scaled to 0/255
 *          (the values HQ-SAM feeds the prompt encoder).
 * Loss: BCE + Dice on the single-mask low-res logits vs the GT in the S frame, each image's
 * share weighted by its masks / the batch's masks (HQ-SAM's num_masks normalisation).
 * The learning rate is lr * asam_lr_asam_factor(epoch).
 *
 * S is the model's input side (asam_segmenter_img_size: 1024 for the official models, whose
 * numbers the comments give; 128 for SAM-mini). The official frame sizes scale with it: the
 * jitter's target 1024 -> S, the low-res 256 -> S/4, the noise round trip's 32 -> S/32
 * (docs/world.md lists them). */
#include "asam/asam.h"
#include "asam/checkpoint.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/optim.h"
#include "asam/segmenter.h"
#include "asam/provenance.h"
#include "asam/tune_hook.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void asam_tune_defaults(asam_tune_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 20;
    o->lr = 2e-3f;
    o->batch = 32; // ref: sam_continue_learning/scripts/tuning.sh:2 8 GPUs x main.py:300 4
    o->masks_per_image = 4;
    o->prompts = ASAM_PROMPT_BOX | ASAM_PROMPT_POINTS | ASAM_PROMPT_MASK;
    o->n_prompt_points = 10;
    asam_mask_loss_defaults(&o->loss);
    o->augment = 1;
    o->lsj_min = 0.1f;
    o->lsj_max = 2.0f;
    o->point_group = 4; // ref: sam_continue_learning/main.py:300 --batch_size_train 4 per GPU
}

typedef struct {
    int ds;      /* dataset index */
    size_t item; /* item in it */
} img_ref;

/* ---- embedding cache ---------------------------------------------------------------------- */

typedef struct {
    char magic[8];    /* "ASAMEMB1" */
    uint64_t key;     /* hash of the encoder weights */
    int32_t sizes[4]; /* orig_h, orig_w, input_h, input_w */
} emb_header;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static int cache_read(const char *path, uint64_t key, float *emb, size_t EMB_N, asam_sam_sizes *s) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    emb_header h;
    int ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, "ASAMEMB1", 8) && h.key == key &&
             fread(emb, sizeof(float), EMB_N, f) == EMB_N;
    fclose(f);
    if (!ok) return -1;
    s->orig_h = h.sizes[0];
    s->orig_w = h.sizes[1];
    s->input_h = h.sizes[2];
    s->input_w = h.sizes[3];
    return 0;
}

static int cache_write(const char *path, uint64_t key, const float *emb, size_t EMB_N,
                       const asam_sam_sizes *s) {
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) return -1;
    emb_header h;
    memcpy(h.magic, "ASAMEMB1", 8);
    h.key = key;
    h.sizes[0] = s->orig_h;
    h.sizes[1] = s->orig_w;
    h.sizes[2] = s->input_h;
    h.sizes[3] = s->input_w;
    if (fwrite(&h, sizeof h, 1, af.fp) != 1 || fwrite(emb, sizeof(float), EMB_N, af.fp) != EMB_N) {
        asam_atomic_abort(&af);
        return asam_error("%s: write failed", path);
    }
    return asam_atomic_commit(&af);
}

/* ---- one image, prepared for the decoder -------------------------------------------------- */

typedef struct {
    asam_tensor *emb; /* (1, 256, S/16, S/16) */
    asam_tensor *gt;  /* (B, 1, S, S), 0..255 as the official labels */
    int B;
    int64_t fg[64]; /* foreground pixels (> 128) of each mask in the S frame */
} prepared;

typedef struct {
    const asam_tune_opts *o;
    asam_segmenter seg;
    int S; /* the model's input side */
    uint64_t key;
    char cache_dir[1024];
    asam_dataset **ds;
    const char *prov; /* provenance JSON recorded with the state */
    const asam_tune_hook *hook;
    int step; /* optimiser steps taken in this run (the hook's step) */
} tuner;

/* masks (B, mh, mw) bytes of the chosen annotations -> float tensor (B, 1, mh, mw) of 0 / 255
 * (the official labels are the PNG values, utils/dataloader_sam.py:87-99) */
static asam_tensor *masks_tensor(asam_ctx *ctx, const asam_sample *s, const int *pick, int B,
                                 int flip) {
    int h = s->mh, w = s->mw;
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(B, 1, h, w));
    if (!t) return NULL;
    for (int b = 0; b < B; b++) {
        const uint8_t *src = s->masks + (size_t)pick[b] * h * w;
        float *dst = t->data + (size_t)b * h * w;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                dst[(size_t)y * w + x] =
                    src[(size_t)y * w + (flip ? w - 1 - x : x)] ? 255.0f : 0.0f;
    }
    return t;
}

/* Copy (B, C, h, w) into the top-left of a (B, C, S, S) tensor filled with fill, taking the
 * window starting at (oy, ox) of size (ch, cw). */
static asam_tensor *place(asam_ctx *ctx, asam_tensor *x, int oy, int ox, int ch, int cw, float fill,
                          int64_t S) {
    int64_t B = x->shape[0], C = x->shape[1], h = x->shape[2], w = x->shape[3];
    asam_tensor *o = asam_full(ctx, ASAM_SHAPE(B, C, S, S), fill);
    if (!o) return NULL;
    for (int64_t p = 0; p < B * C; p++)
        for (int y = 0; y < ch; y++)
            memcpy(o->data + p * S * S + (int64_t)y * S,
                   x->data + p * h * w + (int64_t)(y + oy) * w + ox, sizeof(float) * (size_t)cw);
    return o;
}

/* LargeScaleJitter's target size in float32, as torch computes it: random_scale = u * (max -
 * min) + min; scaled = round(scale * 1024); s = min(scaled / h, scaled / w); size =
 * round(size * s), rounding half to even. (tune.c is compiled without FMA contraction.) The
 * official output size 1024 is the model's input side S. */
// ref: luckybird1994/ASAM sam_continue_learning/utils/dataloader.py:250-256
static void lsj_size(float u, float lo, float hi, int h, int w, int S, int *nh, int *nw) {
    float rs = u * (hi - lo);
    rs = rs + lo;
    float scaled = nearbyintf(rs * (float)S);
    float sc = fminf(scaled / (float)h, scaled / (float)w);
    *nh = (int)nearbyintf((float)h * sc);
    *nw = (int)nearbyintf((float)w * sc);
    if (*nh < 1) *nh = 1;
    if (*nw < 1) *nw = 1;
}

static int prepare(tuner *T, asam_ctx *ctx, const img_ref *r, asam_rng *rng, int k, prepared *P) {
    const asam_tune_opts *o = T->o;
    const asam_tune_hook *hk = T->hook;
    memset(P, 0, sizeof *P);
    asam_sample s;
    // ref: sam_continue_learning/utils/dataloader_sam.py:75 the adversarial image as saved
    //   (512x512), :87-88 the masks at their own size: squashed to its frame by the jitter
    int rc = o->adv_resized
                 ? asam_dataset_get(T->ds[r->ds], r->item, o->masks_per_image, &s)
                 : asam_dataset_get_native(T->ds[r->ds], r->item, o->masks_per_image, &s);
    if (rc) return -1;
    if (s.n_masks == 0) {
        asam_sample_free(&s);
        return 0;
    }
    int pick[64], B = o->masks_per_image > 64 ? 64 : o->masks_per_image;
    // ref: utils/dataloader_sam.py:86 segmentation_{i % gt_num}: the first four, wrapping
    for (int b = 0; b < B; b++) pick[b] = b % s.n_masks;
    int prev = asam_ctx_set_grad(ctx, 0);
    const int S = T->S;
    if (!o->augment) {
        asam_sam_sizes sz;
        asam_sam_sizes_at(S, s.h, s.w, &sz);
        if (T->seg.esam) /* EfficientSAM: the image fills the 1024 frame */
            sz = (asam_sam_sizes){s.h, s.w, S, S};
        const int D = asam_segmenter_dim(&T->seg), G = asam_segmenter_grid(&T->seg);
        const size_t EMB_N = (size_t)D * G * G;
        P->emb = asam_new(ctx, ASAM_SHAPE(1, D, G, G));
        char path[1400];
        /* named by the dataset spec's hash, so runs listing datasets differently share it */
        const char *spec = asam_dataset_spec(T->ds[r->ds]);
        unsigned long long sh = fnv(0xcbf29ce484222325ULL, spec, strlen(spec));
        snprintf(path, sizeof path, "%s/%016llx_%s%s.emb", T->cache_dir, sh, s.name,
                 o->adv_resized ? "_r" : "");
        asam_sam_sizes cs;
        if (!P->emb) {
            rc = -1;
        } else if (cache_read(path, T->key, P->emb->data, EMB_N, &cs) || cs.orig_h != s.h ||
                   cs.orig_w != s.w) {
            asam_mark mk = asam_ctx_mark(ctx);
            asam_tensor *e = asam_segmenter_encode_image(ctx, &T->seg, &s.image, &sz);
            if (!e || !asam_ctx_ok(ctx)) {
                rc = -1;
            } else {
                memcpy(P->emb->data, e->data, sizeof(float) * EMB_N);
                rc = cache_write(path, T->key, P->emb->data, EMB_N, &sz);
            }
            asam_ctx_release(ctx, mk);
        }
        if (!rc) {
            asam_tensor *mt = masks_tensor(ctx, &s, pick, B, 0);
            asam_tensor *rs = asam_resize_bilinear(ctx, mt, sz.input_h, sz.input_w);
            P->gt = rs ? place(ctx, rs, 0, 0, sz.input_h, sz.input_w, 0.0f, S) : NULL;
            if (!P->gt) rc = -1;
        }
    } else {
        // ref: utils/dataloader.py:180 RandomHFlip: flip when random.random() >= 0.5
        int flip = hk && hk->flip ? hk->flip(hk->user, T->step, k) : asam_rng_uniform(rng) >= 0.5;
        int h = s.h, w = s.w;
        asam_tensor *px = asam_new(ctx, ASAM_SHAPE(1, 3, h, w));
        if (px)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < h; y++)
                    for (int x = 0; x < w; x++)
                        px->data[((size_t)c * h + y) * w + x] =
                            s.image.data[((size_t)y * w + (flip ? w - 1 - x : x)) * 3 + c];
        asam_tensor *mt = masks_tensor(ctx, &s, pick, B, flip);
        /* LargeScaleJitter: scale the longest-side fit by U(min, max), crop, pad; image and
         * masks go to the same size from their own (the masks squashed to the image's frame) */
        float u = hk && hk->lsj_u ? hk->lsj_u(hk->user, T->step, k) : (float)asam_rng_uniform(rng);
        int nh, nw;
        lsj_size(u, o->lsj_min, o->lsj_max, h, w, S, &nh, &nw);
        // ref: utils/dataloader.py:258-259 F.interpolate(..., mode='bilinear') of both
        asam_tensor *pr = asam_resize_bilinear(ctx, px, nh, nw);
        asam_tensor *mr = asam_resize_bilinear(ctx, mt, nh, nw);
        int ch = nh < S ? nh : S, cw = nw < S ? nw : S;
        // ref: utils/dataloader.py:264-265 np.random.randint(0, margin + 1), rows first
        int oy = hk && hk->crop ? hk->crop(hk->user, T->step, k, 0, nh - ch)
                                : asam_rng_int(rng, nh - ch + 1);
        int ox = hk && hk->crop ? hk->crop(hk->user, T->step, k, 1, nw - cw)
                                : asam_rng_int(rng, nw - cw + 1);
        // ref: utils/dataloader.py:274-275 pad 128 (image) / 0 (labels)
        asam_tensor *canvas = pr ? place(ctx, pr, oy, ox, ch, cw, 128.0f, S) : NULL;
        asam_tensor *gt = mr ? place(ctx, mr, oy, ox, ch, cw, 0.0f, S) : NULL;
        if (!canvas || !gt) {
            rc = -1;
        } else {
            const int64_t S2 = (int64_t)S * S;
            int kept = B;
            if (o->drop_cropped) { /* asam's variant: drop the masks the crop emptied */
                kept = 0;
                for (int b = 0; b < B; b++) {
                    int any = 0;
                    for (int64_t i = 0; i < S2 && !any; i++) any = gt->data[b * S2 + i] > 128.0f;
                    if (!any) continue;
                    if (kept != b)
                        memmove(gt->data + kept * S2, gt->data + b * S2,
                                sizeof(float) * (size_t)S2);
                    kept++;
                }
            }
            B = kept;
            if (B > 0) {
                P->gt = asam_reshape(ctx, asam_slice0(ctx, gt, 0, B), ASAM_SHAPE(B, 1, S, S));
                // ref: sam_continue_learning/main.py:468 imgs[bi].astype(np.uint8): the canvas
                //   truncated to integers before the encoder
                for (int64_t i = 0; i < canvas->numel; i++)
                    canvas->data[i] = floorf(canvas->data[i]);
                asam_tensor *x = asam_segmenter_input255(ctx, &T->seg, canvas);
                asam_tensor *e = asam_segmenter_encode(ctx, &T->seg, x);
                P->emb = e;
                if (!e || !P->gt || !asam_ctx_ok(ctx)) rc = -1;
            }
        }
    }
    asam_ctx_set_grad(ctx, prev);
    if (rc && !asam_ctx_ok(ctx)) asam_error("%s: %s", s.name, asam_ctx_error(ctx));
    if (!rc) P->B = P->gt ? B : 0;
    for (int b = 0; b < P->B; b++) {
        float box[4];
        P->fg[b] = asam_mask_box_f32(P->gt->data + (size_t)b * S * S, S, S, 128.0f, box);
    }
    asam_sample_free(&s);
    return rc;
}

/* ---- prompts and the forward pass --------------------------------------------------------- */

/* An image's share of the point-prompt rule: c = min(foreground pixels, k) of each mask;
 * out = (smallest c + 1, largest c + 1, 1), zeros when it has no mask (summed over ranks). */
static void counts_of(const prepared *P, int k, double *out) {
    out[0] = out[1] = out[2] = 0;
    for (int b = 0; b < P->B; b++) {
        double c = (P->fg[b] < k ? (double)P->fg[b] : k) + 1;
        out[0] = b == 0 || c < out[0] ? c : out[0];
        out[1] = b == 0 || c > out[1] ? c : out[1];
        out[2] = 1;
    }
}

/* Point prompts of a point group (the official rank batch, images g0..g1-1 of the batch):
 * torch.stack of the masks' samples succeeds only when every mask gave the same number,
 * min(foreground pixels, k); otherwise the group draws box / noise-mask prompts only. Returns
 * that number (0: no point prompts). */
// ref: sam_continue_learning/main.py:456-462 (try masks_sample_points except input_keys =
//   ['box', 'noise_mask']), utils/misc.py:481-495 (perm[:k] per mask, torch.stack)
static int group_points(const double *grp, size_t g0, size_t g1) {
    double n = -1;
    for (size_t i = g0; i < g1; i++) {
        if (grp[3 * i + 2] == 0) continue;
        if (n < 0) n = grp[3 * i];
        if (grp[3 * i] != n || grp[3 * i + 1] != n) return 0;
    }
    /* all masks empty: the official stacks empty samples and SAM sees only its padding point;
     * asam draws no point prompts then (docs/asam-conformance.md, D8) */
    return n > 1 ? (int)n - 1 : 0;
}

/* HQ-SAM masks_noise on the GT (0..255) at S/4 -> (B, 1, S/4, S/4) of 0 / 255; at S = 1024:
 * 256 and a 32x32 round trip */
// ref: sam_continue_learning/main.py:463 F.interpolate(labels, (256, 256), 'bilinear'),
//   utils/misc.py:499-515 masks_noise (/255, incoherent pixels of the 32x32 round trip get
//   N(0, 1) added, > 0.5, * 255)
static asam_tensor *noisy_mask(tuner *T, asam_ctx *ctx, asam_tensor *gt_s, asam_rng *rng,
                               int mask0) {
    const asam_tune_hook *hk = T->hook;
    const int L = T->S / 4, Q = L / 8 > 0 ? L / 8 : 1; /* 256, 32 (masks_noise sfact 8) */
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *low = asam_resize_bilinear(ctx, gt_s, L, L);
    asam_tensor *g = low ? asam_new_like(ctx, low) : NULL;
    for (int64_t i = 0; g && i < g->numel; i++) g->data[i] = low->data[i] / 255.0f;
    asam_tensor *small = g ? asam_resize_bilinear(ctx, g, Q, Q) : NULL;
    asam_tensor *rec = small ? asam_resize_bilinear(ctx, small, L, L) : NULL;
    asam_tensor *out = g ? asam_new_like(ctx, g) : NULL;
    float *nz = hk && hk->draws ? asam_ctx_alloc(ctx, sizeof(float) * (size_t)L * L) : NULL;
    asam_ctx_set_grad(ctx, prev);
    if (!rec || !out || (hk && hk->draws && !nz)) return NULL;
    const int64_t HW = (int64_t)L * L;
    for (int64_t b = 0; b < g->shape[0]; b++) {
        if (nz) hk->draws(hk->user, T->step, 3, mask0 + (int)b, nz, (size_t)HW);
        for (int64_t i = b * HW; i < (b + 1) * HW; i++) {
            float v = g->data[i];
            if (fabsf(v - rec->data[i]) >= 0.01f)
                v += nz ? nz[i - b * HW] : (float)asam_rng_normal(rng);
            out->data[i] = v > 0.5f ? 255.0f : 0.0f;
        }
    }
    return out;
}

/* box (x0, y0, x1, y1) of gt > 128 (inclusive max; empty: (1e8, 1e8, 0, 0)) and k random
 * foreground points, distinct (or, with few pixels and points_any, with replacement) */
// ref: luckybird1994/ASAM sam_continue_learning/main.py:457 (masks_to_boxes), :459
//   (masks_sample_points, 10 points); utils/misc.py:375-401 (> 128, 1e8 fill), :481-495
static void box_and_points(tuner *T, const float *g, int S, float *box, float *pts, int k,
                           int want_pts, asam_rng *rng, int *idx_buf, int mask) {
    if (asam_mask_box_f32(g, S, S, 128.0f, box) == 0)
        box[0] = box[1] = 1e8f, box[2] = box[3] = 0.0f;
    if (!want_pts) return;
    int n = 0;
    for (int i = 0; i < S * S; i++)
        if (g[i] > 128.0f) idx_buf[n++] = i;
    const asam_tune_hook *hk = T->hook;
    int inj[64];
    if (hk && hk->points) hk->points(hk->user, T->step, mask, n, k, inj);
    for (int j = 0; j < k; j++) {
        int pick;
        if (hk && hk->points) {
            pick = idx_buf[inj[j] >= 0 && inj[j] < n ? inj[j] : 0];
        } else if (n >= k) { /* distinct points: partial Fisher-Yates */
            int r = j + asam_rng_int(rng, n - j);
            int t = idx_buf[j];
            idx_buf[j] = idx_buf[r];
            idx_buf[r] = t;
            pick = idx_buf[j];
        } else {
            pick = idx_buf[asam_rng_int(rng, n)];
        }
        pts[2 * j] = (float)(pick % S);
        pts[2 * j + 1] = (float)(pick / S);
    }
}

static void box_noise(float *b, float scale, int S, asam_rng *rng) {
    if (scale <= 0) return;
    float cx = (b[0] + b[2]) / 2, cy = (b[1] + b[3]) / 2, w = b[2] - b[0], h = b[3] - b[1];
    float d[4] = {w / 2, h / 2, w, h}, v[4] = {cx, cy, w, h};
    for (int i = 0; i < 4; i++) v[i] += (float)(asam_rng_uniform(rng) * 2 - 1) * d[i] * scale;
    b[0] = v[0] - v[2] / 2;
    b[1] = v[1] - v[3] / 2;
    b[2] = v[0] + v[2] / 2;
    b[3] = v[1] + v[3] / 2;
    for (int i = 0; i < 4; i++) b[i] = fminf(fmaxf(b[i], 0.0f), (float)S);
}

typedef struct {
    const asam_tune_hook *hk;
    int step;
} draw_ctx;

static void loss_draw(void *user, int which, int64_t mask, float *out, size_t n) {
    const draw_ctx *d = user;
    d->hk->draws(d->hk->user, d->step, which, (int)mask, out, n);
}

/* Forward image k of the batch with a random prompt kind; n_pts: the point prompts its group
 * allows per mask (0: none; points_any: always k). Returns the loss (scalar) or NULL. */
static asam_tensor *forward_image(tuner *T, asam_ctx *ctx, const prepared *P, asam_rng *rng, int k,
                                  int n_pts) {
    const asam_tune_opts *o = T->o;
    const asam_tune_hook *hk = T->hook;
    int kinds[3], nk = 0, avail = 0;
    if (o->prompts & ASAM_PROMPT_BOX) kinds[nk++] = ASAM_PROMPT_BOX;
    if ((o->prompts & ASAM_PROMPT_POINTS) && n_pts > 0) kinds[nk++] = ASAM_PROMPT_POINTS;
    if ((o->prompts & ASAM_PROMPT_MASK) && !T->seg.esam) kinds[nk++] = ASAM_PROMPT_MASK;
    if (nk == 0) return asam_ctx_fail(ctx, "tune: no prompt kind can be drawn for this batch");
    for (int i = 0; i < nk; i++) avail |= kinds[i];
    // ref: sam_continue_learning/main.py:471 input_type = random.choice(input_keys)
    int kind =
        hk && hk->kind ? hk->kind(hk->user, T->step, k, avail) : kinds[asam_rng_int(rng, nk)];
    if (!(kind & avail)) return asam_ctx_fail(ctx, "tune: injected prompt kind not available");
    int B = P->B, K = kind == ASAM_PROMPT_POINTS ? n_pts : o->n_prompt_points;
    if (K > 64) K = 64;
    const int S = T->S, mask0 = k * o->masks_per_image;
    asam_seg_prompt pr = {.batch = B};
    float *boxes = asam_ctx_alloc(ctx, sizeof(float) * 4 * (size_t)B);
    float *pts = asam_ctx_alloc(ctx, sizeof(float) * 2 * (size_t)(B * K + 1));
    float *labels = asam_ctx_alloc(ctx, sizeof(float) * (size_t)(B * K + 1));
    int *idx = kind == ASAM_PROMPT_POINTS ? asam_ctx_alloc(ctx, sizeof(int) * (size_t)S * S) : NULL;
    if (!boxes || !pts || !labels || (kind == ASAM_PROMPT_POINTS && !idx)) return NULL;
    if (kind == ASAM_PROMPT_MASK) {
        pr.mask_input = noisy_mask(T, ctx, P->gt, rng, mask0);
        if (!pr.mask_input) return NULL;
    } else {
        for (int b = 0; b < B; b++) {
            box_and_points(T, P->gt->data + (size_t)b * S * S, S, boxes + 4 * b, pts + 2 * b * K, K,
                           kind == ASAM_PROMPT_POINTS, rng, idx, mask0 + b);
            if (kind == ASAM_PROMPT_BOX) box_noise(boxes + 4 * b, o->box_noise, S, rng);
        }
        if (kind == ASAM_PROMPT_BOX) {
            pr.boxes = boxes;
        } else {
            for (int i = 0; i < B * K; i++) labels[i] = 1.0f;
            pr.n_points = K;
            pr.points = pts;
            pr.labels = labels;
        }
    }
    if (hk && hk->prompts) hk->prompts(hk->user, T->step, k, kind, &pr);
    asam_tensor *low, *iou;
    if (asam_segmenter_decode(ctx, &T->seg, P->emb, &pr, 0, &low, &iou)) return NULL;
    // ref: sam_continue_learning/main.py:506 loss_masks(masks, labels / 255.0, len(masks))
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *target = asam_new_like(ctx, P->gt);
    asam_ctx_set_grad(ctx, prev);
    if (!target) return NULL;
    for (int64_t i = 0; i < target->numel; i++) target->data[i] = P->gt->data[i] / 255.0f;
    asam_mask_loss_cfg lc = o->loss;
    draw_ctx dc = {hk, T->step};
    if (hk && hk->draws) {
        lc.draw = loss_draw;
        lc.draw_user = &dc;
        lc.draw_mask0 = mask0;
    }
    return asam_mask_loss(ctx, low, target, &lc, rng);
}

/* ---- state ---------------------------------------------------------------------------------- */

/* What determines the tuning state: the model, the data and every option that changes the
 * trajectory (not epochs / stop_after / progress, which only say how far to go). */
static char *tune_provenance(const asam_tune_opts *o) {
    asam_prov *p = asam_prov_new("tune");
    asam_prov_file(p, "--model", o->model_path);
    for (int i = 0; i < o->n_data; i++) asam_prov_str(p, "--data", o->data[i]);
    asam_prov_int(p, "--seed", (long long)o->seed);
    asam_prov_num(p, "--lr", o->lr);
    asam_prov_int(p, "--batch", o->batch);
    asam_prov_int(p, "--keep-last-batch", o->keep_last);
    asam_prov_int(p, "--masks-per-image", o->masks_per_image);
    asam_prov_int(p, "--prompts", o->prompts);
    asam_prov_int(p, "prompt points", o->n_prompt_points);
    asam_prov_num(p, "box noise", o->box_noise);
    asam_prov_int(p, "loss points", o->loss.points);
    asam_prov_int(p, "loss n_points", o->loss.n_points);
    asam_prov_num(p, "loss oversample", o->loss.oversample);
    asam_prov_num(p, "loss importance", o->loss.importance);
    asam_prov_int(p, "--augment", o->augment);
    asam_prov_num(p, "lsj min", o->lsj_min);
    asam_prov_num(p, "lsj max", o->lsj_max);
    asam_prov_int(p, "--adv-resized", o->adv_resized);
    asam_prov_int(p, "--points-any-size", o->points_any);
    asam_prov_int(p, "--point-group", o->point_group);
    asam_prov_int(p, "--drop-cropped-masks", o->drop_cropped);
    asam_prov_int(p, "--limit", o->limit);
    char *js = asam_prov_json(p);
    asam_prov_free(p);
    return js;
}

/* 0: the state at path was made with prov; otherwise -1 with one line naming the first option
 * that differs (a state is never continued under other options). */
static int check_state(const char *path, const char *prov) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *rec = asam_checkpoint_metadata(ck, "provenance");
    int rc = 0;
    if (!rec || !*rec) {
        rc = asam_error("%s: made by a run that recorded no provenance (use --force to start "
                        "over)",
                        path);
    } else if (!prov || strcmp(rec, prov)) {
        cJSON *rj = cJSON_Parse(rec), *nj = cJSON_Parse(prov ? prov : "{}");
        const cJSON *it;
        const char *name = NULL, *was = "", *is = "";
        cJSON_ArrayForEach(it, nj) {
            const cJSON *r = rj ? cJSON_GetObjectItemCaseSensitive(rj, it->string) : NULL;
            if (!strcmp(it->string, "hash") || !cJSON_IsString(it)) continue;
            if (!cJSON_IsString(r) || strcmp(r->valuestring, it->valuestring)) {
                name = it->string, was = cJSON_IsString(r) ? r->valuestring : "(unset)";
                is = it->valuestring;
                break;
            }
        }
        rc = asam_error("%s: made with %s %s, now %s (use --force to start over)", path,
                        name ? name : "other options", was, is);
        cJSON_Delete(rj);
        cJSON_Delete(nj);
    }
    asam_checkpoint_close(ck);
    return rc;
}

static int save_state(const char *path, const asam_segmenter *m, const asam_optim *opt, int epoch,
                      const asam_rng *rng, uint64_t seed, const char *prov) {
    const int64_t D = asam_segmenter_dim(m);
    int64_t n = asam_optim_state_numel(opt), step, ep = epoch;
    float *mv = malloc(sizeof(float) * 2 * (size_t)n);
    if (!mv) return asam_error("%s: out of memory", path);
    asam_optim_get_state(opt, mv, mv + n, &step);
    int64_t rs[4];
    memcpy(rs, rng->s, sizeof rs);
    char seed_s[32];
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    asam_st_entry e[] = {
        {"adam.m", ASAM_DT_F32, 1, {n}, mv},
        {"adam.step", ASAM_DT_I64, 1, {1}, &step},
        {"adam.v", ASAM_DT_F32, 1, {n}, mv + n},
        {"epoch", ASAM_DT_I64, 1, {1}, &ep},
        {"mask_decoder.iou_token.weight",
         ASAM_DT_F32,
         2,
         {1, D},
         asam_segmenter_iou_token(m)->data},
        {"mask_decoder.mask_tokens.weight",
         ASAM_DT_F32,
         2,
         {4, D},
         asam_segmenter_mask_tokens(m)->data},
        {"rng", ASAM_DT_I64, 1, {4}, rs},
    };
    const char *meta[] = {"format", "asam-tune-state", "seed",
                          seed_s,   "provenance",      prov ? prov : ""};
    int rc = asam_safetensors_write(path, e, sizeof e / sizeof *e, meta, 3);
    free(mv);
    return rc;
}

static int load_state(const char *path, const asam_segmenter *m, asam_optim *opt, int *epoch,
                      asam_rng *rng) {
    const int64_t D = asam_segmenter_dim(m);
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    int64_t n = asam_optim_state_numel(opt), step = 0, ep = 0, rs[4];
    float *mv = malloc(sizeof(float) * 2 * (size_t)n);
    const asam_ckpt_tensor *t[7];
    const char *names[7] = {"adam.m",
                            "adam.v",
                            "adam.step",
                            "epoch",
                            "rng",
                            "mask_decoder.iou_token.weight",
                            "mask_decoder.mask_tokens.weight"};
    const int64_t want[7] = {n, n, 1, 1, 4, D, 4 * D};
    int rc = mv ? 0 : asam_error("%s: out of memory", path);
    for (int i = 0; i < 7 && !rc; i++) {
        t[i] = asam_checkpoint_find(ck, names[i]);
        if (!t[i] || t[i]->numel != want[i])
            rc = asam_error("%s: missing or mis-sized '%s' (not a state of this run?)", path,
                            names[i]);
    }
    if (!rc)
        rc = asam_ckpt_read_f32(ck, t[0], mv) || asam_ckpt_read_f32(ck, t[1], mv + n) ||
             asam_ckpt_read_i64(ck, t[2], &step) || asam_ckpt_read_i64(ck, t[3], &ep) ||
             asam_ckpt_read_i64(ck, t[4], rs) ||
             asam_ckpt_read_f32(ck, t[5], asam_segmenter_iou_token(m)->data) ||
             asam_ckpt_read_f32(ck, t[6], asam_segmenter_mask_tokens(m)->data);
    if (!rc) {
        asam_optim_set_state(opt, mv, mv + n, step);
        memcpy(rng->s, rs, sizeof rs);
        *epoch = (int)ep;
    }
    free(mv);
    asam_checkpoint_close(ck);
    return rc ? -1 : 0;
}

/* SAM: sam_tuned.pth (a plain state dict); EfficientSAM: efficientsam_tuned.pt (its official
 * {"model": state_dict}); both also as safetensors, and the tokens alone. */
/* Every output carries the run's provenance record (the state file's), in safetensors'
 * __metadata__ or the .pth archive's asam_metadata.json. */
static int write_outputs(const char *dir, const asam_segmenter *m, const char *prov) {
    char p[1200];
    const char *meta[2] = {"provenance", prov ? prov : ""};
    const int esam = m->esam != NULL;
    const int64_t D = asam_segmenter_dim(m);
    snprintf(p, sizeof p, "%s/%s", dir, esam ? "efficientsam_tuned.pt" : "sam_tuned.pth");
    if (asam_segmenter_save_meta(m, p, meta, 1)) return -1;
    snprintf(p, sizeof p, "%s/%s_tuned.safetensors", dir, esam ? "efficientsam" : "sam");
    if (asam_segmenter_save_meta(m, p, meta, 1)) return -1;
    snprintf(p, sizeof p, "%s/decoder_tokens.safetensors", dir);
    asam_st_entry e[] = {
        {"mask_decoder.iou_token.weight",
         ASAM_DT_F32,
         2,
         {1, D},
         asam_segmenter_iou_token(m)->data},
        {"mask_decoder.mask_tokens.weight",
         ASAM_DT_F32,
         2,
         {4, D},
         asam_segmenter_mask_tokens(m)->data},
    };
    return asam_safetensors_write(p, e, 2, meta, 1);
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Opens every dataset of o into T->ds and lists the images to train on (o->limit per set). */
static int open_datasets(tuner *T, const asam_tune_opts *o, img_ref **refs_out, size_t *n_out) {
    img_ref *refs = NULL;
    size_t n = 0;
    int rc = 0;
    for (int d = 0; d < o->n_data && !rc; d++) {
        if (asam_dataset_open(o->data[d], &T->ds[d])) {
            rc = -1;
            break;
        }
        size_t c = asam_dataset_count(T->ds[d]);
        if (o->limit > 0 && c > (size_t)o->limit) c = (size_t)o->limit;
        img_ref *nr = realloc(refs, (n + c) * sizeof *refs);
        if (!nr) {
            rc = asam_error("tune: out of memory");
            break;
        }
        refs = nr;
        for (size_t i = 0; i < c; i++) refs[n++] = (img_ref){d, i};
    }
    *refs_out = refs;
    *n_out = n;
    return rc;
}

/* One optimiser step over the images order[b0..b1): prompts and targets drawn, each image's
 * loss weighted by its share of the batch's masks, gradients summed, then Adam. *stepped is 0
 * when the batch had no mask (no step).
 *
 * Data-parallel over the ranks of an MPI job (asam/dist.h): every rank holds the same tokens
 * and optimiser state and differentiates its contiguous slice of the batch; each image's
 * gradient is added into a double accumulator, the accumulators are summed over the ranks in
 * rank order and rounded to float once, so every rank takes the same Adam step, and the sum
 * does not depend on how the images were split (see README, MPI). Image k draws its random
 * numbers from a generator keyed by (the epoch's key, k), not from a stream shared with the
 * other images, so which rank does it does not matter. acc: room for the token values,
 * the loss and a failure flag; irng: one generator per image of the batch. */
static int train_batch(tuner *T, asam_ctx *ctx, asam_optim *opt, const img_ref *refs,
                       const size_t *order, size_t b0, size_t b1, prepared *prep, uint64_t ep_key,
                       asam_rng *irng, double *acc, double *grp, double *step_loss, int *stepped) {
    const int P = asam_dist_size(), R = asam_dist_rank();
    asam_tensor *params[2] = {asam_segmenter_iou_token(&T->seg),
                              asam_segmenter_mask_tokens(&T->seg)};
    const size_t n_par = (size_t)(params[0]->numel + params[1]->numel);
    const size_t l0 = b0 + (b1 - b0) * (size_t)R / (size_t)P;
    const size_t l1 = b0 + (b1 - b0) * (size_t)(R + 1) / (size_t)P;
    asam_ctx_reset(ctx);
    int lrc = 0;
    double cnt[2] = {0, 0}; /* masks in the whole batch, ranks that failed */
    memset(grp, 0, 3 * (b1 - b0) * sizeof *grp);
    for (size_t k = l0; k < l1 && !lrc; k++) {
        asam_rng_seed(&irng[k - b0], ep_key + ASAM_SPLITMIX_GAMMA * (k + 1));
        lrc = prepare(T, ctx, &refs[order[k]], &irng[k - b0], (int)(k - b0), &prep[k - b0]);
        cnt[0] += prep[k - b0].B;
        /* the point-prompt rule needs every image of a group, whichever rank has it */
        counts_of(&prep[k - b0], T->o->n_prompt_points, grp + 3 * (k - b0));
    }
    cnt[1] = lrc != 0;
    if (asam_dist_sum_f64(cnt, 2) || cnt[1] > 0 || asam_dist_sum_f64(grp, 3 * (b1 - b0)))
        return lrc ? lrc : asam_error("tune: stopped because another rank failed");
    const int total_masks = (int)cnt[0];
    memset(acc, 0, (n_par + 2) * sizeof *acc);
    asam_mark mk = asam_ctx_mark(ctx);
    const size_t G = T->o->point_group > 0 ? (size_t)T->o->point_group : 1;
    for (size_t k = l0; k < l1 && total_masks > 0; k++) {
        const prepared *Pk = &prep[k - b0];
        if (Pk->B == 0) continue;
        asam_optim_zero_grad(opt);
        size_t g0 = (k - b0) / G * G, g1 = g0 + G;
        if (g1 > b1 - b0) g1 = b1 - b0;
        int n_pts = T->o->points_any ? T->o->n_prompt_points : group_points(grp, g0, g1);
        asam_tensor *loss = forward_image(T, ctx, Pk, &irng[k - b0], (int)(k - b0), n_pts);
        loss = asam_scale(ctx, loss, (float)Pk->B / (float)total_masks);
        if (!loss || !asam_ctx_ok(ctx) || asam_backward(ctx, loss)) {
            lrc = asam_error("tune: %s",
                             asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "forward failed");
            break;
        }
        for (size_t e = 0, p = 0; p < 2; p++)
            for (int64_t i = 0; i < params[p]->numel; i++, e++) acc[e] += params[p]->grad[i];
        acc[n_par] += loss->data[0];
        asam_ctx_release(ctx, mk);
    }
    acc[n_par + 1] = lrc != 0;
    if (asam_dist_sum_f64(acc, n_par + 2) || acc[n_par + 1] > 0)
        return lrc ? lrc : asam_error("tune: stopped because another rank failed");
    *step_loss = acc[n_par];
    *stepped = total_masks > 0;
    if (*stepped) {
        for (size_t e = 0, p = 0; p < 2; p++) {
            asam_param_zero_grad(params[p]);
            for (int64_t i = 0; i < params[p]->numel; i++, e++) params[p]->grad[i] = (float)acc[e];
        }
        asam_optim_step(opt);
        if (T->hook && T->hook->after_step)
            T->hook->after_step(T->hook->user, T->step, *step_loss, params);
        T->step++;
    }
    return 0;
}

/* Epochs start..end-1 over the n images; state saved after each (resumable). */
static int run_epochs(tuner *T, asam_ctx *ctx, asam_optim *opt, const img_ref *refs, size_t n,
                      int start, int end, asam_rng *rng, const char *state_path,
                      asam_tune_report *rep) {
    const asam_tune_opts *o = T->o;
    const int R = asam_dist_rank();
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    prepared *prep = calloc((size_t)o->batch, sizeof *prep);
    asam_rng *irng = calloc((size_t)o->batch, sizeof *irng);
    const size_t n_tok = (size_t)(asam_segmenter_iou_token(&T->seg)->numel +
                                  asam_segmenter_mask_tokens(&T->seg)->numel);
    double *acc = calloc(n_tok + 2, sizeof *acc);
    double *grp = calloc(3 * (size_t)o->batch, sizeof *grp);
    int rc = order && prep && irng && acc && grp ? 0 : asam_error("tune: out of memory");
    rc = asam_dist_agree(rc); /* every rank set up, or none goes on */
    size_t done_imgs = 0, total_imgs = (size_t)(end > start ? end - start : 0) * n;
    asam_progress bar; /* per-step line, on a terminal only */
    asam_progress_start(&bar, "tune", "img", (int64_t)total_imgs, 0);
    for (int ep = start; ep < end && !rc; ep++) {
        // ref: luckybird1994/ASAM sam_continue_learning/main.py:24 lr_lambda, :423 LambdaLR
        opt->lr = o->lr * asam_lr_asam_factor(ep, NULL);
        asam_rng_shuffle(rng, order, n);           /* the epoch's image order, tuning stream */
        const uint64_t ep_key = asam_rng_u64(rng); /* keys the images' own generators */
        if (T->hook && T->hook->order) T->hook->order(T->hook->user, ep, order, n);
        double ep_loss = 0;
        int n_steps = 0;
        // ref: utils/dataloader.py:130-133 BatchSampler(drop_last=True)
        size_t n_batches =
            o->keep_last ? (n + (size_t)o->batch - 1) / (size_t)o->batch : n / (size_t)o->batch;
        for (size_t bi = 0; bi < n_batches && !rc; bi++) {
            size_t b0 = bi * (size_t)o->batch, b1 = b0 + (size_t)o->batch;
            if (b1 > n) b1 = n;
            double step_loss = 0;
            int stepped = 0;
            rc = train_batch(T, ctx, opt, refs, order, b0, b1, prep, ep_key, irng, acc, grp,
                             &step_loss, &stepped);
            if (rc) break;
            if (stepped) {
                ep_loss += step_loss;
                n_steps++;
            }
            done_imgs += b1 - b0;
            if (o->progress && R == 0)
                asam_progress_update(&bar, (int64_t)done_imgs, "epoch %d/%d step %zu/%zu loss %.4f",
                                     ep + 1, o->epochs, bi + 1, n_batches, step_loss);
        }
        if (rc) break;
        rep->epoch_loss[ep] = n_steps ? ep_loss / n_steps : 0;
        if (o->progress && R == 0) {
            asam_progress_end(&bar);
            fprintf(stderr, "tune: epoch %d/%d done, mean loss %.5f, lr %.3g\n", ep + 1, o->epochs,
                    rep->epoch_loss[ep], opt->lr);
        }
        /* rank 0 writes the state; all ranks learn whether it could */
        if (R == 0 && save_state(state_path, &T->seg, opt, ep + 1, rng, o->seed, T->prov)) rc = -1;
        rc = asam_dist_agree(rc);
        rep->epochs_done = ep + 1;
    }
    free(order);
    free(prep);
    free(irng);
    free(acc);
    free(grp);
    return rc;
}

int asam_tune(const asam_tune_opts *o, asam_tune_report *rep) {
    asam_tune_report dummy;
    if (!rep) rep = &dummy;
    memset(rep, 0, sizeof *rep);
    if (o->n_data < 1) return asam_error("tune: no dataset given");
    if (o->epochs < 1 || o->epochs > 256) return asam_error("tune: epochs must be 1..256");
    if (o->batch < 1 || o->masks_per_image < 1 || o->masks_per_image > 64)
        return asam_error("tune: batch >= 1 and masks per image 1..64 expected");
    if (!o->prompts) return asam_error("tune: no prompt kind enabled");
    if (asam_mkdirs(o->out_dir)) return asam_dist_agree(-1); /* the other ranks wait for this */
    tuner T = {.o = o, .hook = o->hook};
    int rc = 0, synced = 0; /* synced: this rank met the others in run_epochs */
    asam_ctx *ctx = NULL;
    asam_optim *opt = NULL;
    img_ref *refs = NULL;
    size_t n = 0;
    T.ds = calloc((size_t)o->n_data, sizeof *T.ds);
    if (!T.ds) return asam_dist_agree(asam_error("tune: out of memory"));
    if (asam_segmenter_load(o->model_path, &T.seg)) {
        rc = -1;
        goto done;
    }
    if (T.seg.esam && o->prompts == ASAM_PROMPT_MASK) {
        rc = asam_error("tune: %s: EfficientSAM takes no mask prompts", o->model_path);
        goto done;
    }
    T.S = asam_segmenter_img_size(&T.seg);
    T.key = asam_segmenter_encoder_key(&T.seg);
    snprintf(T.cache_dir, sizeof T.cache_dir, "%s", o->cache_dir ? o->cache_dir : "");
    if (!o->cache_dir) snprintf(T.cache_dir, sizeof T.cache_dir, "%s/cache", o->out_dir);
    if (!o->augment && asam_mkdirs(T.cache_dir)) {
        rc = -1;
        goto done;
    }
    if (open_datasets(&T, o, &refs, &n)) {
        rc = -1;
        goto done;
    }
    rep->n_images = (int)n;
    // ref: utils/dataloader.py:130-133 BatchSampler(drop_last=True): fewer images than one batch
    // would make no Adam step at all and write the untuned tokens as "tuned"
    if (!o->keep_last && n < (size_t)o->batch) {
        rc = asam_error("tune: %zu image(s) make no full batch of %d (the last partial batch is "
                        "dropped, as officially, so nothing would be tuned): use --batch %zu or "
                        "--keep-last-batch",
                        n, o->batch, n);
        goto done;
    }

    // ref: luckybird1994/ASAM sam_continue_learning/main.py:106-107 (only mask_tokens and
    // iou_token train), :417 (Adam, betas 0.9/0.999, eps 1e-8, no weight decay)
    asam_segmenter_tokens_requires_grad(&T.seg, 1);
    asam_tensor *params[2] = {asam_segmenter_iou_token(&T.seg), asam_segmenter_mask_tokens(&T.seg)};
    opt = asam_optim_new(ASAM_ADAM, params, 2, o->lr, 0.9, 0.999, 1e-8, 0.0);
    ctx = asam_ctx_new(0);
    if (!opt || !ctx) {
        rc = asam_error("tune: out of memory");
        goto done;
    }
    asam_rng rng;
    asam_rng_seed(&rng, o->seed);
    int start = 0;
    char state_path[1200];
    snprintf(state_path, sizeof state_path, "%s/state.safetensors", o->out_dir);
    char *prov = tune_provenance(o);
    T.prov = prov;
    int fresh = 0;
    if (o->resume && asam_file_exists(state_path) && check_state(state_path, prov)) {
        if (!o->force) {
            free(prov);
            rc = -1;
            goto done;
        }
        fresh = 1; /* --force: start over */
    }
    if (o->resume && !fresh && asam_file_exists(state_path)) {
        if (load_state(state_path, &T.seg, opt, &start, &rng)) {
            free(prov);
            rc = -1;
            goto done;
        }
        if (o->progress) fprintf(stderr, "tune: resuming after epoch %d\n", start);
    }
    rep->start_epoch = rep->epochs_done = start;
    int end = o->epochs;
    if (o->stop_after > 0 && o->stop_after < end) end = o->stop_after;
    synced = 1;
    rc = run_epochs(&T, ctx, opt, refs, n, start, end, &rng, state_path, rep);
    if (!rc && asam_dist_rank() == 0) rc = write_outputs(o->out_dir, &T.seg, prov);
    free(prov);
    rc = asam_dist_agree(rc);
done:
    if (!synced) asam_dist_agree(rc); /* failed before the epochs: the others wait for this */
    if (ctx) asam_ctx_free(ctx);
    asam_optim_free(opt);
    for (int d = 0; d < o->n_data; d++) asam_dataset_close(T.ds[d]);
    free(T.ds);
    free(refs);
    asam_segmenter_free(&T.seg);
    return rc ? -1 : 0;
}
