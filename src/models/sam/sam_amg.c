/* The automatic mask generator ("segment everything"), step for step as the official
 * SamAutomaticMaskGenerator: for every crop, encode the crop once, decode the point grid in
 * batches (three masks per point), keep masks that pass the IoU / stability filters and do not
 * touch an inner crop edge, de-duplicate with box NMS; then NMS across crops and optional
 * hole / island removal. Masks are kept as RLEs of the whole image, so memory holds one
 * decoded batch plus the compressed survivors. */
#include "asam/sam_amg.h"

#include "asam/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void asam_amg_options_default(asam_amg_options *o) {
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:39
    memset(o, 0, sizeof *o);
    o->points_per_side = 32;
    o->points_per_batch = 64;
    o->pred_iou_thresh = 0.88;
    o->stability_score_thresh = 0.95;
    o->stability_score_offset = 1.0;
    o->box_nms_thresh = 0.7;
    o->crop_n_layers = 0;
    o->crop_nms_thresh = 0.7;
    o->crop_overlap_ratio = 512.0 / 1500.0;
    o->crop_n_points_downscale_factor = 1;
    o->min_mask_region_area = 0;
}

int asam_amg_options_check(const asam_amg_options *o) {
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:98
    if ((o->points_per_side > 0) == (o->n_grids > 0))
        return asam_error("amg: give exactly one of points_per_side and explicit point grids");
    if (o->points_per_side < 0 || o->points_per_side > 1024)
        return asam_error("amg: points_per_side %d out of range 1..1024", o->points_per_side);
    if (o->points_per_batch < 1 || o->points_per_batch > 4096)
        return asam_error("amg: points_per_batch %d out of range 1..4096", o->points_per_batch);
    if (o->crop_n_layers < 0 || o->crop_n_layers > 4)
        return asam_error("amg: crop_n_layers %d out of range 0..4", o->crop_n_layers);
    if (o->crop_n_points_downscale_factor < 1)
        return asam_error("amg: crop_n_points_downscale_factor must be >= 1");
    if (!(o->crop_overlap_ratio >= 0 && o->crop_overlap_ratio < 1))
        return asam_error("amg: crop_overlap_ratio must be in [0, 1)");
    if (!isfinite(o->pred_iou_thresh) || !isfinite(o->stability_score_thresh) ||
        !isfinite(o->stability_score_offset) || !isfinite(o->box_nms_thresh) ||
        !isfinite(o->crop_nms_thresh))
        return asam_error("amg: thresholds must be finite numbers");
    if (o->min_mask_region_area < 0) return asam_error("amg: min_mask_region_area must be >= 0");
    if (o->n_grids > 0) {
        if (o->n_grids != o->crop_n_layers + 1)
            return asam_error("amg: %d point grids given for %d crop layers (need one per layer)",
                              o->n_grids, o->crop_n_layers + 1);
        for (int i = 0; i < o->n_grids; i++) {
            if (o->grid_n[i] < 1 || !o->grids[i])
                return asam_error("amg: point grid %d is empty", i);
            for (int k = 0; k < 2 * o->grid_n[i]; k++)
                if (!(o->grids[i][k] >= 0 && o->grids[i][k] <= 1))
                    return asam_error("amg: point grid %d: coordinates must be in [0, 1]", i);
        }
    }
    return 0;
}

/* ---- the growing list of candidate masks (the official MaskData) -------------------------- */
typedef struct {
    asam_rle rle;   /* whole image */
    int64_t box[4]; /* XYXY, inclusive; crop frame until the crop is done, then image frame */
    float iou, stability;
    double point[2];
    int crop[4]; /* XYXY */
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
} cand_list;

static void cands_free(cand_list *l) {
    for (size_t i = 0; i < l->n; i++) asam_rle_free(&l->v[i].rle);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cands_push(cand_list *l, const cand *c) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        cand *v = realloc(l->v, sizeof(cand) * cap);
        if (!v) return asam_error("amg: out of memory");
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *c;
    return 0;
}

/* MaskData.filter with an index list: keep[0..k) in that order; the rest is freed. */
static int cands_select(cand_list *l, const int64_t *keep, int64_t k) {
    cand *v = malloc(sizeof(cand) * (size_t)(k > 0 ? k : 1));
    unsigned char *used = calloc(l->n ? l->n : 1, 1);
    if (!v || !used) {
        free(v), free(used);
        return asam_error("amg: out of memory");
    }
    for (int64_t i = 0; i < k; i++) {
        v[i] = l->v[keep[i]];
        used[keep[i]] = 1;
    }
    for (size_t i = 0; i < l->n; i++)
        if (!used[i]) asam_rle_free(&l->v[i].rle);
    free(used);
    free(l->v);
    l->v = v;
    l->n = l->cap = (size_t)k;
    return 0;
}

/* batched_nms over the list with the given scores; then filter. */
static int cands_nms(cand_list *l, const float *scores, double thresh) {
    if (l->n == 0) return 0;
    float *boxes = malloc(sizeof(float) * 4 * l->n);
    int64_t *keep = malloc(sizeof(int64_t) * l->n);
    if (!boxes || !keep) {
        free(boxes), free(keep);
        return asam_error("amg: out of memory");
    }
    for (size_t i = 0; i < l->n; i++)
        for (int k = 0; k < 4; k++) boxes[4 * i + k] = (float)l->v[i].box[k];
    int64_t k = asam_amg_nms(boxes, scores, (int64_t)l->n, thresh, keep);
    int rc = k < 0 ? asam_error("amg: out of memory") : cands_select(l, keep, k);
    free(boxes), free(keep);
    return rc;
}

/* ---- one crop ------------------------------------------------------------------------------ */
typedef struct {
    const asam_sam *model;
    const asam_amg_options *o;
    asam_sam_predictor pred;
    int img_h, img_w;
    uint8_t *full;      /* (img_h, img_w) scratch: one mask pasted into the whole image */
    uint8_t *crop_mask; /* (crop_h, crop_w) scratch */
    int batches_done, batches_total;
    asam_amg_progress_fn progress;
    void *user;
} amg_run;

/* The prompt encoder adds 0.5 and divides by the input side S (1024) in float32; the official
 * generator does both in float64 (its grid is float64) and rounds once. Give the encoder the
 * float v for which float32 (v + 0.5) / S is exactly that once-rounded value (both float steps
 * are exact when S is a power of two; otherwise within an ulp). */
static float encoder_coord(double p_s, int S) {
    float xn = (float)((p_s + 0.5) / (double)S);
    return xn * (float)S - 0.5f;
}

/* The engine's arena keeps every intermediate of a decoder forward until it is released
 * (PyTorch frees each as soon as it is used), and the decoder's image-token tensors are
 * (points, 4096, 256): a batch of 64 points would hold ~9 GB. A batch is therefore run through
 * the decoder in chunks of this many points (still batched; results do not depend on it). */
#define DECODE_CHUNK 16

/* Keep or drop mask i of a decoded chunk (low-res logits low_flat[i], IoU iou_i) made by the
 * point pt (crop frame); survivors are appended to out. */
static int keep_mask(amg_run *r, asam_tensor *low_flat, int i, float iou_i, const double *pt,
                     const int crop[4], cand_list *out) {
    const asam_amg_options *o = r->o;
    asam_ctx *ctx = r->pred.ctx;
    const asam_sam_sizes *s = &r->pred.sizes;
    int ch = s->orig_h, cw = s->orig_w;
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:295
    // (a Python float threshold compares in the tensor's float32)
    if (o->pred_iou_thresh > 0.0 && !(iou_i > (float)o->pred_iou_thresh)) return 0;
    asam_mark mk = asam_ctx_mark(ctx);
    // ref: segment-anything/segment_anything/predictor.py:252
    // upscale this mask's low-res logits to the crop size (postprocess_masks)
    asam_tensor *logit = asam_sam_postprocess(ctx, asam_slice0(ctx, low_flat, i, i + 1), s);
    if (!logit || !asam_ctx_ok(ctx))
        return asam_error("amg: postprocess: %s",
                          asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "failed");
    const float *L = logit->data;
    size_t n = (size_t)ch * cw;
    // ref: segment-anything/segment_anything/utils/amg.py:166
    const float hi = (float)(0.0 + o->stability_score_offset);
    const float lo = (float)(0.0 - o->stability_score_offset);
    int64_t inter = 0, uni = 0;
    for (size_t p = 0; p < n; p++) {
        inter += L[p] > hi;
        uni += L[p] > lo;
    }
    float stab = (float)inter / (float)uni; /* int32 / int32 -> float32; 0/0 = NaN */
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:303
    if (o->stability_score_thresh > 0.0 && !(stab >= (float)o->stability_score_thresh)) {
        asam_ctx_release(ctx, mk);
        return 0;
    }
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:308
    for (size_t p = 0; p < n; p++) r->crop_mask[p] = L[p] > 0.0f; /* mask_threshold 0.0 */
    asam_ctx_release(ctx, mk);
    cand c = {0};
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:309
    asam_amg_mask_box(r->crop_mask, ch, cw, c.box);
    // ref: segment-anything/segment_anything/utils/amg.py:78
    // drop masks near an edge of the crop that is not an edge of the image (20 px, the
    // official atol; 20 S / 1024 for a model of input side S: 2.5 px for SAM-mini)
    const float orig_box[4] = {0, 0, (float)r->img_w, (float)r->img_h};
    const float atol = 20.0f * (float)asam_sam_img_size(r->model) / (float)ASAM_SAM_IMG;
    int near = 0;
    for (int k = 0; k < 4; k++) {
        float b = (float)(c.box[k] + crop[k % 2]);
        int near_crop = fabsf(b - (float)crop[k]) <= atol;
        int near_image = fabsf(b - orig_box[k]) <= atol;
        near |= near_crop && !near_image;
    }
    if (near) return 0;
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:317
    // pad the crop mask back to the whole image, then RLE (column-major)
    const uint8_t *m = r->crop_mask;
    if (!(crop[0] == 0 && crop[1] == 0 && crop[2] == r->img_w && crop[3] == r->img_h)) {
        memset(r->full, 0, (size_t)r->img_h * r->img_w);
        for (int y = 0; y < ch; y++)
            memcpy(r->full + (size_t)(y + crop[1]) * r->img_w + crop[0],
                   r->crop_mask + (size_t)y * cw, (size_t)cw);
        m = r->full;
    }
    if (asam_rle_encode(m, r->img_h, r->img_w, &c.rle)) return -1;
    c.iou = iou_i;
    c.stability = stab;
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:290
    c.point[0] = pt[0];
    c.point[1] = pt[1];
    memcpy(c.crop, crop, sizeof c.crop);
    if (cands_push(out, &c)) {
        asam_rle_free(&c.rle);
        return -1;
    }
    return 0;
}

/* Decode one batch of points (crop-frame pixels) and append the masks that survive. */
static int process_batch(amg_run *r, const double *pts, int B, const int crop[4], cand_list *out) {
    asam_ctx *ctx = r->pred.ctx;
    const asam_sam_sizes *s = &r->pred.sizes;
    asam_ctx_reset(ctx);
    asam_ctx_set_grad(ctx, 0);
    int rc = 0;
    for (int c0 = 0; c0 < B && !rc; c0 += DECODE_CHUNK) {
        int nb = B - c0 < DECODE_CHUNK ? B - c0 : DECODE_CHUNK;
        asam_mark mk = asam_ctx_mark(ctx);
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:276
        // apply_coords (float64), one foreground label per point
        float *pp = asam_ctx_alloc(ctx, sizeof(float) * 2 * (size_t)nb);
        float *labels = asam_ctx_alloc(ctx, sizeof(float) * (size_t)nb);
        if (!pp || !labels) return asam_error("amg: out of memory");
        double rw = (double)s->input_w / s->orig_w, rh = (double)s->input_h / s->orig_h;
        const int S = asam_sam_img_size(r->model);
        for (int b = 0; b < nb; b++) {
            pp[2 * b] = encoder_coord(pts[2 * (c0 + b)] * rw, S);
            pp[2 * b + 1] = encoder_coord(pts[2 * (c0 + b) + 1] * rh, S);
            labels[b] = 1.0f;
        }
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:279
        // predict_torch(points[:, None], labels[:, None], multimask_output=True)
        asam_sam_prompt pr = {.batch = nb, .n_points = 1, .points = pp, .labels = labels};
        asam_tensor *sparse, *dense, *low, *iou;
        asam_tensor *emb = asam_detach(ctx, r->pred.embedding);
        if (asam_sam_prompt_encode(ctx, r->model, &pr, &sparse, &dense) ||
            asam_sam_decode(ctx, r->model, emb, sparse, dense, 1, &low, &iou, NULL))
            return asam_error("amg: decoder: %s",
                              asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "failed");
        int C = (int)low->shape[1];
        const int64_t L = asam_sam_lowres(r->model);
        asam_tensor *low_flat = asam_reshape(ctx, low, ASAM_SHAPE((int64_t)nb * C, 1, L, L));
        if (!low_flat) return asam_error("amg: %s", asam_ctx_error(ctx));
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:287
        // masks flattened point-major: point b gives masks b*C .. b*C + C-1
        for (int i = 0; i < nb * C && !rc; i++)
            rc = keep_mask(r, low_flat, i, iou->data[i], pts + 2 * (c0 + i / C), crop, out);
        asam_ctx_release(ctx, mk);
    }
    asam_ctx_reset(ctx);
    return rc;
}

static int process_crop(amg_run *r, const asam_image *img, const int crop[4], const double *grid,
                        int n_pts, cand_list *out) {
    const asam_amg_options *o = r->o;
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:233
    int cw = crop[2] - crop[0], ch = crop[3] - crop[1];
    asam_image sub = {0};
    if (asam_image_alloc(&sub, cw, ch, 3)) return -1;
    for (int y = 0; y < ch; y++)
        memcpy(sub.data + (size_t)y * cw * 3,
               img->data + ((size_t)(y + crop[1]) * img->w + crop[0]) * 3, (size_t)cw * 3);
    int rc = asam_sam_predictor_set_image(&r->pred, &sub);
    asam_image_free(&sub);
    if (rc) return -1;
    free(r->crop_mask);
    r->crop_mask = malloc((size_t)cw * ch);
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:239
    // grid (float64, [0, 1]) scaled by the crop's width / height
    double *pts = malloc(sizeof(double) * 2 * (size_t)n_pts);
    if (!r->crop_mask || !pts) {
        free(pts);
        return asam_error("amg: out of memory");
    }
    for (int i = 0; i < n_pts; i++) {
        pts[2 * i] = grid[2 * i] * cw;
        pts[2 * i + 1] = grid[2 * i + 1] * ch;
    }
    cand_list data = {0};
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:244
    for (int b0 = 0; b0 < n_pts && !rc; b0 += o->points_per_batch) {
        int B = n_pts - b0 < o->points_per_batch ? n_pts - b0 : o->points_per_batch;
        rc = process_batch(r, pts + 2 * b0, B, crop, &data);
        r->batches_done++;
        if (!rc && r->progress) r->progress(r->batches_done, r->batches_total, r->user);
    }
    free(pts);
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:251
    // duplicates within the crop: NMS on the crop-frame boxes scored by predicted IoU
    float *scores = malloc(sizeof(float) * (data.n ? data.n : 1));
    if (!rc && !scores) rc = asam_error("amg: out of memory");
    if (!rc) {
        for (size_t i = 0; i < data.n; i++) scores[i] = data.v[i].iou;
        rc = cands_nms(&data, scores, o->box_nms_thresh);
    }
    free(scores);
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:260
    // back to the image frame
    for (size_t i = 0; !rc && i < data.n; i++) {
        cand *c = &data.v[i];
        for (int k = 0; k < 4; k++) c->box[k] += crop[k % 2];
        c->point[0] += crop[0];
        c->point[1] += crop[1];
    }
    for (size_t i = 0; !rc && i < data.n; i++) {
        rc = cands_push(out, &data.v[i]);
        if (!rc) data.v[i].rle = (asam_rle){0}; /* moved */
    }
    cands_free(&data);
    return rc;
}

/* ---- hole / island removal ----------------------------------------------------------------- */
static int postprocess_small_regions(amg_run *r, cand_list *l, double nms_thresh) {
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:335
    if (l->n == 0) return 0;
    const asam_amg_options *o = r->o;
    int h = r->img_h, w = r->img_w;
    float *scores = malloc(sizeof(float) * l->n);
    asam_rle *new_rle = calloc(l->n, sizeof(asam_rle));
    int64_t(*new_box)[4] = malloc(sizeof(int64_t[4]) * l->n);
    int64_t(*old_box)[4] = malloc(sizeof(int64_t[4]) * l->n);
    int rc = scores && new_rle && new_box && old_box ? 0 : asam_error("amg: out of memory");
    for (size_t i = 0; !rc && i < l->n; i++) {
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:342
        rc = asam_rle_decode(&l->v[i].rle, r->full);
        int ch1 = 0, ch2 = 0;
        if (!rc)
            rc = asam_amg_remove_small_regions(r->full, h, w, o->min_mask_region_area, 1, &ch1);
        if (!rc)
            rc = asam_amg_remove_small_regions(r->full, h, w, o->min_mask_region_area, 0, &ch2);
        if (rc) break;
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:352
        // score 1 for untouched masks so NMS prefers them
        scores[i] = (ch1 || ch2) ? 0.0f : 1.0f;
        // ref: segment-anything/segment_anything/automatic_mask_generator.py:356
        asam_amg_mask_box(r->full, h, w, new_box[i]);
        if (scores[i] == 0.0f) rc = asam_rle_encode(r->full, h, w, &new_rle[i]);
    }
    if (!rc) {
        // NMS on the recomputed boxes; kept changed masks take their new RLE and box
        for (size_t i = 0; i < l->n; i++) {
            memcpy(old_box[i], l->v[i].box, sizeof old_box[i]);
            memcpy(l->v[i].box, new_box[i], sizeof new_box[i]);
        }
        size_t n0 = l->n;
        int64_t *keep = malloc(sizeof(int64_t) * n0);
        float *boxes = malloc(sizeof(float) * 4 * n0);
        rc = keep && boxes ? 0 : asam_error("amg: out of memory");
        int64_t k = 0;
        if (!rc) {
            for (size_t i = 0; i < n0; i++)
                for (int c = 0; c < 4; c++) boxes[4 * i + c] = (float)new_box[i][c];
            // ref: segment-anything/segment_anything/automatic_mask_generator.py:357
            k = asam_amg_nms(boxes, scores, (int64_t)n0, nms_thresh, keep);
            if (k < 0) rc = asam_error("amg: out of memory");
        }
        if (!rc) {
            // ref: segment-anything/segment_anything/automatic_mask_generator.py:365
            // unchanged masks keep their old RLE and box
            for (size_t i = 0; i < n0; i++) {
                if (scores[i] != 0.0f) {
                    memcpy(l->v[i].box, old_box[i], sizeof old_box[i]);
                } else {
                    asam_rle_free(&l->v[i].rle);
                    l->v[i].rle = new_rle[i];
                    new_rle[i] = (asam_rle){0};
                }
            }
            // ref: segment-anything/segment_anything/automatic_mask_generator.py:370
            rc = cands_select(l, keep, k);
        }
        free(keep), free(boxes);
    }
    for (size_t i = 0; new_rle && i < l->n; i++) asam_rle_free(&new_rle[i]);
    free(scores), free(new_rle), free(new_box), free(old_box);
    return rc;
}

/* ---- the whole image ----------------------------------------------------------------------- */
void asam_amg_result_free(asam_amg_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) asam_rle_free(&r->masks[i].rle);
    free(r->masks);
    memset(r, 0, sizeof *r);
}

int asam_amg_generate(const asam_sam *m, const asam_image *img, const asam_amg_options *o,
                      asam_amg_progress_fn progress, void *user, asam_amg_result *out) {
    memset(out, 0, sizeof *out);
    if (asam_amg_options_check(o)) return -1;
    if (!img->data || img->c != 3 || img->w <= 0 || img->h <= 0)
        return asam_error("amg: image must be RGB with a positive size");
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:101
    // point grids of every layer: points_per_side / factor^i (int())
    int n_layers = o->crop_n_layers;
    double *grid_mem[5] = {0};
    const double *grid[5];
    int grid_n[5];
    int rc = 0;
    for (int i = 0; i <= n_layers; i++) {
        if (o->n_grids > 0) {
            grid[i] = o->grids[i];
            grid_n[i] = o->grid_n[i];
            continue;
        }
        // ref: segment-anything/segment_anything/utils/amg.py:195
        int side = (int)(o->points_per_side / pow(o->crop_n_points_downscale_factor, i));
        grid_n[i] = side * side;
        grid_mem[i] = malloc(sizeof(double) * 2 * (size_t)(grid_n[i] ? grid_n[i] : 1));
        if (!grid_mem[i]) rc = asam_error("amg: out of memory");
        if (!rc) asam_amg_point_grid(side, grid_mem[i]);
        grid[i] = grid_mem[i];
    }
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:199
    int n_crops =
        asam_amg_crop_boxes(img->h, img->w, n_layers, o->crop_overlap_ratio, NULL, NULL, 0);
    int(*crops)[4] = n_crops > 0 ? malloc(sizeof(int[4]) * (size_t)n_crops) : NULL;
    int *layer = n_crops > 0 ? malloc(sizeof(int) * (size_t)n_crops) : NULL;
    if (!rc && (!crops || !layer)) rc = asam_error("amg: out of memory");
    if (!rc)
        asam_amg_crop_boxes(img->h, img->w, n_layers, o->crop_overlap_ratio, crops, layer, n_crops);
    for (int k = 0; !rc && k < n_crops; k++)
        if (crops[k][2] <= crops[k][0] || crops[k][3] <= crops[k][1])
            rc = asam_error("amg: %dx%d image too small for %d crop layers", img->w, img->h,
                            n_layers);

    amg_run r = {
        .model = m, .o = o, .img_h = img->h, .img_w = img->w, .progress = progress, .user = user};
    if (!rc) rc = asam_sam_predictor_init(&r.pred, m);
    r.full = rc ? NULL : malloc((size_t)img->h * img->w);
    if (!rc && !r.full) rc = asam_error("amg: out of memory");
    for (int k = 0; !rc && k < n_crops; k++)
        r.batches_total += (grid_n[layer[k]] + o->points_per_batch - 1) / o->points_per_batch;

    cand_list data = {0};
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:205
    for (int k = 0; !rc && k < n_crops; k++)
        rc = process_crop(&r, img, crops[k], grid[layer[k]], grid_n[layer[k]], &data);

    // ref: segment-anything/segment_anything/automatic_mask_generator.py:210
    // duplicates across crops: NMS preferring smaller crops (score 1 / crop area, float32)
    if (!rc && n_crops > 1 && data.n > 0) {
        float *scores = malloc(sizeof(float) * data.n);
        if (!scores) rc = asam_error("amg: out of memory");
        for (size_t i = 0; !rc && i < data.n; i++) {
            const int *c = data.v[i].crop;
            scores[i] = 1.0f / (float)((int64_t)(c[2] - c[0]) * (c[3] - c[1]));
        }
        if (!rc) rc = cands_nms(&data, scores, o->crop_nms_thresh);
        free(scores);
    }
    // ref: segment-anything/segment_anything/automatic_mask_generator.py:166
    if (!rc && o->min_mask_region_area > 0)
        rc = postprocess_small_regions(&r, &data,
                                       o->box_nms_thresh > o->crop_nms_thresh ? o->box_nms_thresh
                                                                              : o->crop_nms_thresh);

    // ref: segment-anything/segment_anything/automatic_mask_generator.py:182
    // the records: XYWH boxes, area from the RLE
    if (!rc) {
        out->width = img->w;
        out->height = img->h;
        out->masks = calloc(data.n ? data.n : 1, sizeof(asam_amg_mask));
        if (!out->masks) rc = asam_error("amg: out of memory");
    }
    for (size_t i = 0; !rc && i < data.n; i++) {
        cand *c = &data.v[i];
        asam_amg_mask *mm = &out->masks[i];
        mm->rle = c->rle;
        c->rle = (asam_rle){0};
        // ref: segment-anything/segment_anything/utils/amg.py:91
        mm->bbox[0] = c->box[0];
        mm->bbox[1] = c->box[1];
        mm->bbox[2] = c->box[2] - c->box[0];
        mm->bbox[3] = c->box[3] - c->box[1];
        // ref: segment-anything/segment_anything/utils/amg.py:153
        mm->area = (int64_t)asam_rle_area(&mm->rle);
        mm->predicted_iou = c->iou;
        mm->stability_score = c->stability;
        mm->point[0] = c->point[0];
        mm->point[1] = c->point[1];
        mm->crop_box[0] = c->crop[0];
        mm->crop_box[1] = c->crop[1];
        mm->crop_box[2] = c->crop[2] - c->crop[0];
        mm->crop_box[3] = c->crop[3] - c->crop[1];
        out->n = i + 1;
    }
    cands_free(&data);
    if (rc) asam_amg_result_free(out);
    asam_sam_predictor_free(&r.pred);
    free(r.full), free(r.crop_mask), free(crops), free(layer);
    for (int i = 0; i < 5; i++) free(grid_mem[i]);
    return rc;
}
