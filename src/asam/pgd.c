/* Pixel-space L-inf PGD against SAM (the baseline ASAM compares with): maximise the tuning loss
 * (BCE + Dice with GT-box prompts) by signed-gradient ascent on the pixels, projected onto the
 * eps-ball around the clean image and [0, 255]. No random start; the last iterate is saved,
 * rounded to 8 bits (which stays inside the ball, the clean image being integral). */
#include "asam/asam.h"
#include "asam/provenance.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGD_CHUNK 8 /* boxes per decoder batch */

void asam_pgd_defaults(asam_pgd_opts *o) {
    memset(o, 0, sizeof *o);
    o->eps = 8.0f / 255.0f;
    o->step = 2.0f / 255.0f;
    o->iters = 10;
    o->max_masks = 140;
}

int asam_parse_number(const char *s, double *out) {
    if (!s) return -1;
    char *end;
    double a = strtod(s, &end);
    if (end == s) return -1;
    if (*end == '/') { /* a fraction, as pixel budgets are written: 8/255 */
        const char *q = end + 1;
        double b = strtod(q, &end);
        if (end == q || *end || b == 0) return -1;
        a /= b;
    } else if (*end) {
        return -1;
    }
    if (!isfinite(a)) return -1;
    *out = a;
    return 0;
}

int asam_parse_fraction(const char *s, float *out) {
    double a;
    if (asam_parse_number(s, &a)) return -1;
    *out = (float)a;
    return 0;
}

int asam_pgd_loss_grad(const asam_sam *m, const float *pixels, const uint8_t *gt, int n, int h,
                       int w, double *loss, float *grad) {
    if (n < 1) return asam_error("pgd: no masks");
    asam_ctx *ctx = asam_ctx_new(0);
    if (!ctx) return asam_error("pgd: out of memory");
    const int S = asam_sam_img_size(m); /* the model's input frame (1024 officially) */
    size_t hw = (size_t)h * w;
    asam_sam_sizes sz;
    asam_sam_sizes_at(S, h, w, &sz);
    int rc = 0;
    asam_ctx_set_grad(ctx, grad != NULL);
    asam_tensor *px = asam_from_data(ctx, ASAM_SHAPE(1, 3, h, w), pixels);
    if (px && grad) asam_set_requires_grad(px, 1);
    asam_tensor *x = asam_resize_bilinear(ctx, px, sz.input_h, sz.input_w);
    asam_tensor *emb = asam_sam_encode(ctx, m, asam_sam_normalize_pad_at(ctx, x, S));
    if (!emb || !asam_ctx_ok(ctx)) {
        rc = asam_error("pgd: %s", asam_ctx_error(ctx));
        goto out;
    }
    /* the decoder works on a leaf copy of the embedding; its gradient is then pushed through
     * the encoder once */
    asam_tensor *leaf = asam_detach(ctx, emb);
    if (grad) { /* its gradient buffer must outlive the per-chunk releases below */
        asam_set_requires_grad(leaf, 1);
        leaf->grad = asam_ctx_alloc(ctx, sizeof(float) * (size_t)leaf->numel);
        if (!leaf->grad) {
            rc = asam_error("pgd: out of memory");
            goto out;
        }
        memset(leaf->grad, 0, sizeof(float) * (size_t)leaf->numel);
    }
    double total = 0;
    asam_mark mk = asam_ctx_mark(ctx);
    for (int k0 = 0; k0 < n && !rc; k0 += PGD_CHUNK) {
        int B = n - k0 < PGD_CHUNK ? n - k0 : PGD_CHUNK;
        int prev = asam_ctx_set_grad(ctx, 0);
        asam_tensor *g = asam_new(ctx, ASAM_SHAPE(B, 1, h, w));
        for (int b = 0; g && b < B; b++)
            for (size_t i = 0; i < hw; i++) g->data[b * hw + i] = gt[(size_t)(k0 + b) * hw + i];
        asam_tensor *gr = asam_resize_bilinear(ctx, g, sz.input_h, sz.input_w);
        asam_tensor *g1 = gr ? asam_zeros(ctx, ASAM_SHAPE(B, 1, S, S)) : NULL;
        float boxes[4 * PGD_CHUNK];
        for (int b = 0; g1 && b < B; b++) {
            float *dst = g1->data + (size_t)b * S * S;
            for (int y = 0; y < sz.input_h; y++)
                memcpy(dst + (size_t)y * S, gr->data + ((size_t)b * sz.input_h + y) * sz.input_w,
                       sizeof(float) * (size_t)sz.input_w);
            /* mask vanished in the resize: degenerate box (0, 0, 0, 0) */
            if (!asam_mask_box_f32(dst, S, S, 0.5f, boxes + 4 * b))
                memset(boxes + 4 * b, 0, 4 * sizeof(float));
        }
        asam_ctx_set_grad(ctx, prev);
        asam_sam_prompt pr = {.batch = B, .boxes = boxes};
        asam_tensor *sparse, *dense, *low, *iou;
        asam_mask_loss_cfg lc;
        asam_mask_loss_defaults(&lc);
        lc.points = 0;
        if (!g1 || asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) ||
            asam_sam_decode(ctx, m, leaf, sparse, dense, 0, &low, &iou, NULL)) {
            rc = asam_error("pgd: %s", asam_ctx_error(ctx));
            break;
        }
        asam_tensor *l = asam_scale(ctx, asam_mask_loss(ctx, low, g1, &lc, NULL), (float)B / n);
        if (!l || !asam_ctx_ok(ctx) || (grad && asam_backward(ctx, l))) {
            rc = asam_error("pgd: %s", asam_ctx_error(ctx));
            break;
        }
        total += l->data[0];
        asam_ctx_release(ctx, mk);
    }
    if (!rc && grad) {
        if (!leaf->grad || asam_backward_from(ctx, emb, leaf->grad) || !px->grad) {
            rc = asam_error("pgd: backward failed: %s",
                            asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "no gradient");
        } else {
            memcpy(grad, px->grad, sizeof(float) * 3 * hw);
        }
    }
    if (!rc && loss) *loss = total;
out:
    asam_ctx_free(ctx);
    return rc;
}

int asam_pgd_attack_sample(const asam_sam *m, const asam_sample *s, const asam_pgd_opts *o,
                           asam_image *adv, double *loss_before, double *loss_after) {
    int h = s->h, w = s->w, n = s->n_masks;
    if (o->max_masks > 0 && n > o->max_masks) n = o->max_masks;
    size_t hw = (size_t)h * w;
    float *x0 = malloc(sizeof(float) * 3 * hw), *x = malloc(sizeof(float) * 3 * hw),
          *g = malloc(sizeof(float) * 3 * hw);
    if (!x0 || !x || !g) {
        free(x0);
        free(x);
        free(g);
        return asam_error("pgd: out of memory");
    }
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < hw; i++) x0[c * hw + i] = s->image.data[i * 3 + c];
    memcpy(x, x0, sizeof(float) * 3 * hw);
    const float eps = o->eps * 255.0f, step = o->step * 255.0f;
    int rc = 0;
    for (int it = 0; it < o->iters && !rc; it++) {
        double l;
        rc = asam_pgd_loss_grad(m, x, s->masks, n, h, w, &l, g);
        if (rc) break;
        if (it == 0 && loss_before) *loss_before = l;
        for (size_t i = 0; i < 3 * hw; i++) {
            float v = x[i] + step * (g[i] > 0 ? 1.0f : g[i] < 0 ? -1.0f : 0.0f);
            v = fminf(fmaxf(v, x0[i] - eps), x0[i] + eps);
            x[i] = fminf(fmaxf(v, 0.0f), 255.0f);
        }
    }
    if (!rc && asam_image_alloc(adv, w, h, 3)) rc = asam_error("pgd: out of memory");
    if (!rc) {
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < hw; i++) {
                float v = nearbyintf(x[c * hw + i]);
                adv->data[i * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        if (loss_before && o->iters == 0)
            rc = asam_pgd_loss_grad(m, x0, s->masks, n, h, w, loss_before, NULL);
        if (!rc && loss_after) {
            for (int c = 0; c < 3; c++)
                for (size_t i = 0; i < hw; i++) x[c * hw + i] = adv->data[i * 3 + c];
            rc = asam_pgd_loss_grad(m, x, s->masks, n, h, w, loss_after, NULL);
        }
    }
    free(x0);
    free(x);
    free(g);
    return rc;
}

/* OUT/provenance.json: what made the images in OUT (model, data, eps, step, iters, masks).
 * A folder made otherwise, or holding images of an unrecorded run, is refused naming the
 * option, unless force (then every image is redone). *redo: 1 when finished images must not
 * be reused. */
static int check_provenance(const asam_pgd_opts *o, asam_dataset *ds, size_t n, int *redo,
                            char **record) {
    asam_prov *p = asam_prov_new("attack-pgd");
    asam_prov_file(p, "--model", o->model_path);
    asam_prov_str(p, "--data", o->data);
    asam_prov_num(p, "--eps", o->eps);
    asam_prov_num(p, "--step", o->step);
    asam_prov_int(p, "--iters", o->iters);
    asam_prov_int(p, "--max-masks", o->max_masks);
    char path[2048], *rec = NULL, *js = asam_prov_json(p);
    size_t len;
    snprintf(path, sizeof path, "%s/provenance.json", o->out_dir);
    int rc = 0, any = 0;
    *redo = 0;
    if (asam_file_exists(path)) {
        if (asam_read_file(path, &rec, &len)) rc = -1;
        any = 1;
    } else {
        for (size_t i = 0; i < n && !any; i++) { /* images of an unrecorded run? */
            char img[2048];
            snprintf(img, sizeof img, "%s/%s.png", o->out_dir, asam_dataset_item_name(ds, i));
            any = asam_file_exists(img);
        }
    }
    if (!rc && any && asam_prov_check(p, rec ? rec : "{}", o->out_dir)) {
        if (o->force)
            *redo = 1;
        else
            rc = -1;
    }
    *record = NULL;
    if (!rc && (!rec || *redo))
        *record = js; /* written once every rank has checked */
    else
        free(js);
    free(rec);
    asam_prov_free(p);
    return rc;
}

int asam_pgd_run(const asam_pgd_opts *o) {
    if (o->iters < 0 || !(o->eps >= 0) || !(o->step >= 0))
        return asam_error("attack-pgd: eps, step and iters must not be negative");
    asam_dataset *ds;
    if (asam_dataset_open(o->data, &ds)) return asam_dist_agree(-1); /* the others wait for it */
    asam_sam *m = NULL;
    int rc = asam_mkdirs(o->out_dir);
    if (!rc) rc = asam_sam_load_frozen(o->model_path, &m);
    size_t n = asam_dataset_count(ds);
    if (o->limit > 0 && n > (size_t)o->limit) n = (size_t)o->limit;
    int redo = 0;
    char *record = NULL;
    if (!rc) rc = check_provenance(o, ds, n, &redo, &record);
    /* Over the ranks of an MPI job the images come from a shared queue (asam/dist.h), so a
     * slow image holds up only its rank; rank 0 shows its lines and the totals. */
    rc = asam_dist_agree(rc);
    redo = asam_dist_agree(redo ? -1 : 0) != 0; /* a rank that saw another run: all redo */
    if (!rc && record && asam_dist_rank() == 0) {
        char pp[2048];
        snprintf(pp, sizeof pp, "%s/provenance.json", o->out_dir);
        rc = asam_write_file_atomic(pp, record, strlen(record));
    }
    free(record);
    rc = asam_dist_agree(rc);
    const int R = asam_dist_rank();
    asam_progress bar; /* per-image line, on a terminal only */
    asam_progress_start(&bar, "attack-pgd", "img", (int64_t)n, 0);
    size_t attacked = 0, skipped = 0;
    asam_dist_queue *q = NULL;
    if (!rc) rc = asam_dist_queue_open((int64_t)n, NULL, NULL, &q);
    int64_t item;
    int got;
    while (!rc && (got = asam_dist_queue_next(q, 1, 0, &item)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        size_t i = (size_t)item;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s.png", o->out_dir, asam_dataset_item_name(ds, i));
        if (!redo && asam_file_exists(path)) { /* finished in an earlier run (same options) */
            skipped++;
            asam_progress_skip(&bar);
            continue;
        }
        asam_sample s;
        if (asam_dataset_get(ds, i, o->max_masks, &s)) {
            rc = -1;
            break;
        }
        if (s.n_masks > 0) {
            asam_image adv = {0};
            double lb = 0, la = 0;
            int show = o->progress && asam_progress_visible(&bar); /* losses cost a pass */
            rc = asam_pgd_attack_sample(m, &s, o, &adv, show ? &lb : NULL, show ? &la : NULL);
            if (!rc) rc = asam_image_write_png(path, &adv);
            asam_image_free(&adv);
            attacked++;
            if (!rc && o->progress && R == 0)
                asam_progress_update(&bar, (int64_t)(i + 1), "%s loss %.4f -> %.4f", s.name, lb,
                                     la);
        }
        asam_sample_free(&s);
    }
    if (q && asam_dist_queue_close(q, rc != 0, 1, 0)) rc = -1;
    rc = asam_dist_agree(rc);
    double counts[2] = {(double)attacked, (double)skipped};
    if (!rc && asam_dist_sum_f64(counts, 2)) rc = -1;
    if (o->progress && R == 0) {
        asam_progress_end(&bar);
        if (!rc)
            fprintf(stderr, "attack-pgd: %.0f attacked, %.0f already done, in %s\n", counts[0],
                    counts[1], o->out_dir);
    }
    if (m) asam_sam_free(m);
    asam_dataset_close(ds);
    return rc ? -1 : 0;
}
