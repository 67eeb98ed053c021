/* Evaluation as the ASAM code measures it (HQ-SAM's evaluation loop), and the official SAM
 * predictor path as an alternative; results as Markdown and JSON tables. */
#include "asam/asam.h"
#include "asam/dist.h"
#include "asam/util.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/segmenter.h"
#include "asam/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EVAL_CHUNK 8 /* boxes decoded per batch (bounds the decoder's memory) */

void asam_eval_defaults(asam_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->protocol = ASAM_PROTOCOL_ASAM;
    o->dilation_ratio = 0.02;
}

/* Scores of one batch of logits (B, 1, h, w) against the GT masks [k0, k0 + B). */
static void score(const float *logits, const asam_sample *s, int k0, int B, double ratio,
                  uint8_t *pred, double *iou_sum, double *biou_sum) {
    size_t hw = (size_t)s->h * s->w;
    for (int b = 0; b < B; b++) {
        for (size_t i = 0; i < hw; i++) pred[i] = logits[b * hw + i] > 0.0f;
        const uint8_t *gt = s->masks + (size_t)(k0 + b) * hw;
        *iou_sum += asam_mask_iou(pred, gt, (int64_t)hw);
        *biou_sum += asam_boundary_iou(pred, gt, s->h, s->w, ratio);
    }
}

/* ASAM protocol: torch-bilinear to S x S (aspect ignored; S = 1024 in the official code, the
 * model's input side here), boxes from the resized GT. */
// ref: luckybird1994/ASAM sam_continue_learning/main.py:619 (boxes from the 1024 GT),
//   :664 (low-res logits x4 bilinear), :666-667 (IoU / boundary IoU)
static int eval_asam(const asam_sam *m, const asam_sample *s, double ratio, int two_step,
                     double *iou_sum, double *biou_sum) {
    asam_ctx *ctx = asam_ctx_new(0);
    if (!ctx) return asam_error("eval: out of memory");
    asam_ctx_set_grad(ctx, 0);
    int h = s->h, w = s->w, rc = 0;
    const int S = asam_sam_img_size(m);
    size_t hw = (size_t)h * w;
    uint8_t *pred = malloc(hw);
    asam_tensor *px = asam_new(ctx, ASAM_SHAPE(1, 3, h, w));
    if (!pred || !px) {
        free(pred);
        asam_ctx_free(ctx);
        return asam_error("eval: out of memory");
    }
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < hw; i++) px->data[c * hw + i] = s->image.data[i * 3 + c];
    asam_tensor *x = asam_resize_bilinear(ctx, px, S, S);
    // ref: sam_continue_learning/main.py:629 imgs[0].astype(dtype=np.uint8): the resized
    // image is truncated to integers before the encoder
    for (int64_t i = 0; x && i < x->numel; i++) x->data[i] = floorf(x->data[i]);
    asam_tensor *emb = asam_sam_encode(ctx, m, asam_sam_normalize_pad_at(ctx, x, S));
    if (!emb || !asam_ctx_ok(ctx)) rc = asam_error("eval: %s: %s", s->name, asam_ctx_error(ctx));
    if (!rc) emb = asam_detach(ctx, emb);
    asam_mark mk = asam_ctx_mark(ctx);
    for (int k0 = 0; k0 < s->n_masks && !rc; k0 += EVAL_CHUNK) {
        int B = s->n_masks - k0 < EVAL_CHUNK ? s->n_masks - k0 : EVAL_CHUNK;
        /* GT (0 / 255) resized bilinearly to S; box = bounds of its pixels > 128 */
        asam_tensor *g = asam_new(ctx, ASAM_SHAPE(B, 1, h, w));
        float boxes[4 * EVAL_CHUNK];
        for (int b = 0; g && b < B; b++) {
            const uint8_t *src = s->masks + (size_t)(k0 + b) * hw;
            for (size_t i = 0; i < hw; i++) g->data[b * hw + i] = src[i] ? 255.0f : 0.0f;
        }
        asam_tensor *g1 = asam_resize_bilinear(ctx, g, S, S);
        // ref: main.py:619 misc.masks_to_boxes(labels_val), utils/misc.py:393 masks > 128;
        // an empty mask: (1e8, 1e8, 0, 0)
        for (int b = 0; g1 && b < B; b++)
            if (asam_mask_box_f32(g1->data + (size_t)b * S * S, S, S, 128.0f, boxes + 4 * b) == 0)
                boxes[4 * b] = boxes[4 * b + 1] = 1e8f, boxes[4 * b + 2] = boxes[4 * b + 3] = 0;
        asam_sam_prompt pr = {.batch = B, .boxes = boxes};
        asam_tensor *sparse, *dense, *low, *iou;
        if (!g1 || asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense) ||
            asam_sam_decode(ctx, m, emb, sparse, dense, 0, &low, &iou, NULL)) {
            rc = asam_error("eval: %s: %s", s->name, asam_ctx_error(ctx));
            break;
        }
        asam_tensor *up = asam_eval_upsample(ctx, low, h, w, two_step);
        if (!up) {
            rc = asam_error("eval: %s: %s", s->name, asam_ctx_error(ctx));
            break;
        }
        score(up->data, s, k0, B, ratio, pred, iou_sum, biou_sum);
        asam_ctx_release(ctx, mk);
    }
    free(pred);
    asam_ctx_free(ctx);
    return rc;
}

/* SAM protocol: the official predictor, boxes = tight bounds in original pixels. */
static int eval_sam(const asam_sam *m, const asam_sample *s, double ratio, double *iou_sum,
                    double *biou_sum) {
    asam_sam_predictor p;
    if (asam_sam_predictor_init(&p, m)) return -1;
    int rc = asam_sam_predictor_set_image(&p, &s->image);
    size_t hw = (size_t)s->h * s->w;
    uint8_t *pred = malloc(hw);
    if (!pred) rc = asam_error("eval: out of memory");
    for (int k0 = 0; k0 < s->n_masks && !rc; k0 += EVAL_CHUNK) {
        int B = s->n_masks - k0 < EVAL_CHUNK ? s->n_masks - k0 : EVAL_CHUNK;
        float boxes[4 * EVAL_CHUNK];
        for (int b = 0; b < B; b++)
            asam_mask_box_u8(s->masks + (size_t)(k0 + b) * hw, s->w, s->h, boxes + 4 * b);
        asam_sam_query q = {.batch = B, .boxes = boxes};
        asam_sam_result r;
        memset(&r, 0, sizeof r);
        if (asam_sam_predictor_predict(&p, &q, 0, &r)) {
            rc = -1;
            break;
        }
        score(r.mask_logits, s, k0, B, ratio, pred, iou_sum, biou_sum);
        asam_sam_result_free(&r);
    }
    free(pred);
    asam_sam_predictor_free(&p);
    return rc;
}

/* EfficientSAM, with its own official pipeline whatever the protocol: the image stretched to
 * 1024x1024 (bilinear), each GT's tight box as points labelled 2 and 3 in original pixels,
 * the single-mask output resized bicubically to the original size, logits >= 0. */
int asam_eval_sample_esam(const asam_esam *m, const asam_sample *s, double ratio, double *miou,
                          double *biou, int *n_masks) {
    *miou = *biou = 0;
    *n_masks = s->n_masks;
    if (s->n_masks == 0) return 0;
    asam_esam_predictor p;
    if (asam_esam_predictor_init(&p, m)) return -1;
    int rc = asam_esam_predictor_set_image(&p, &s->image);
    size_t hw = (size_t)s->h * s->w;
    double is = 0, bs = 0;
    for (int k0 = 0; k0 < s->n_masks && !rc; k0 += EVAL_CHUNK) {
        int B = s->n_masks - k0 < EVAL_CHUNK ? s->n_masks - k0 : EVAL_CHUNK;
        float pts[4 * EVAL_CHUNK], labels[2 * EVAL_CHUNK];
        for (int b = 0; b < B; b++) {
            asam_mask_box_u8(s->masks + (size_t)(k0 + b) * hw, s->w, s->h, pts + 4 * b);
            labels[2 * b] = 2.0f;
            labels[2 * b + 1] = 3.0f;
        }
        asam_esam_result r;
        if (asam_esam_predictor_predict(&p, B, 2, pts, labels, 0, &r)) {
            rc = -1;
            break;
        }
        for (int b = 0; b < B; b++) {
            const uint8_t *gt = s->masks + (size_t)(k0 + b) * hw, *pred = r.masks + b * hw;
            is += asam_mask_iou(pred, gt, (int64_t)hw);
            bs += asam_boundary_iou(pred, gt, s->h, s->w, ratio);
        }
        asam_esam_result_free(&r);
    }
    asam_esam_predictor_free(&p);
    if (rc) return -1;
    *miou = is / s->n_masks;
    *biou = bs / s->n_masks;
    return 0;
}

// ref: luckybird1994/ASAM sam_continue_learning/main.py:655-664 (--baseline: SAM's 256 logits;
//   else the tuned decoder's, F.interpolate(scale_factor=4, bilinear)), :565 (bilinear to the
//   GT size in compute_iou)
asam_tensor *asam_eval_upsample(asam_ctx *ctx, asam_tensor *low, int h, int w, int two_step) {
    if (two_step)
        low = asam_resize_bilinear(ctx, low, 4 * (int)low->shape[2], 4 * (int)low->shape[3]);
    return low ? asam_resize_bilinear(ctx, low, h, w) : NULL;
}

int asam_eval_sample_path(const asam_sam *m, const asam_sample *s, int protocol, double ratio,
                          int two_step, double *miou, double *biou, int *n_masks) {
    *miou = *biou = 0;
    *n_masks = s->n_masks;
    if (s->n_masks == 0) return 0;
    double is = 0, bs = 0;
    int rc = protocol == ASAM_PROTOCOL_SAM ? eval_sam(m, s, ratio, &is, &bs)
                                           : eval_asam(m, s, ratio, two_step, &is, &bs);
    if (rc) return -1;
    *miou = is / s->n_masks;
    *biou = bs / s->n_masks;
    return 0;
}

int asam_eval_sample(const asam_sam *m, const asam_sample *s, int protocol, double ratio,
                     double *miou, double *biou, int *n_masks) {
    return asam_eval_sample_path(m, s, protocol, ratio, 0, miou, biou, n_masks);
}

/* ---- tables ------------------------------------------------------------------------------- */

static const char *base_name(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* Column label of model m: its file name, or "parent/name" when two models share a name. */
static void model_label(const asam_eval_opts *o, int m, char *out, size_t n) {
    const char *b = base_name(o->models[m]);
    int dup = 0;
    for (int k = 0; k < o->n_models; k++)
        if (k != m && !strcmp(base_name(o->models[k]), b) && strcmp(o->models[k], o->models[m]))
            dup = 1;
    if (!dup || b == o->models[m]) {
        snprintf(out, n, "%s", b);
        return;
    }
    const char *p = b - 1; /* the '/' before the name */
    while (p > o->models[m] && p[-1] != '/') p--;
    snprintf(out, n, "%s", p);
}

void asam_eval_write_md(const asam_eval_opts *o, const asam_eval_cell *cells, FILE *f) {
    const char *proto = o->protocol == ASAM_PROTOCOL_SAM ? "sam" : "asam";
    char lab[512];
    fprintf(f, "| dataset | images | masks |");
    for (int m = 0; m < o->n_models; m++) {
        model_label(o, m, lab, sizeof lab);
        fprintf(f, " %s mIoU | %s bIoU |", lab, lab);
    }
    fprintf(f, "\n| --- | ---: | ---: |");
    for (int m = 0; m < o->n_models; m++) fprintf(f, " ---: | ---: |");
    fprintf(f, "\n");
    for (int d = 0; d < o->n_data; d++) {
        fprintf(f, "| %s | %d | %d |", o->names[d], cells[d].n_images, cells[d].n_masks);
        for (int m = 0; m < o->n_models; m++) {
            const asam_eval_cell *c = &cells[m * o->n_data + d];
            fprintf(f, " %.2f | %.2f |", 100 * c->miou, 100 * c->biou);
        }
        fprintf(f, "\n");
    }
    if (o->n_data > 1) {
        fprintf(f, "| **mean** | | |");
        for (int m = 0; m < o->n_models; m++) {
            double ms = 0, bs = 0;
            for (int d = 0; d < o->n_data; d++) {
                ms += cells[m * o->n_data + d].miou;
                bs += cells[m * o->n_data + d].biou;
            }
            fprintf(f, " %.2f | %.2f |", 100 * ms / o->n_data, 100 * bs / o->n_data);
        }
        fprintf(f, "\n");
    }
    fprintf(f,
            "\nProtocol: %s (one box prompt per GT mask, single-mask output); mIoU and boundary "
            "IoU (dilation ratio %g) in percent.\n",
            proto, o->dilation_ratio);
}

static int write_tables(const asam_eval_opts *o, const asam_eval_cell *cells) {
    const char *proto = o->protocol == ASAM_PROTOCOL_SAM ? "sam" : "asam";
    if (o->md_path) {
        asam_atomic_file af;
        if (asam_atomic_open(&af, o->md_path)) return -1;
        asam_eval_write_md(o, cells, af.fp);
        if (asam_atomic_commit(&af)) return -1;
    }
    if (o->json_path) {
        asam_atomic_file af;
        if (asam_atomic_open(&af, o->json_path)) return -1;
        FILE *f = af.fp;
        fprintf(f, "{\n  \"protocol\": \"%s\",\n  \"dilation_ratio\": %g,\n  \"models\": [", proto,
                o->dilation_ratio);
        for (int m = 0; m < o->n_models; m++) {
            fprintf(f, "%s", m ? ", " : "");
            json_str(f, o->models[m]);
        }
        fprintf(f, "],\n  \"datasets\": [\n");
        for (int d = 0; d < o->n_data; d++) {
            fprintf(f, "    {\"name\": ");
            json_str(f, o->names[d]);
            fprintf(f, ", \"spec\": ");
            json_str(f, o->specs[d]);
            fprintf(f, ", \"images\": %d, \"masks\": %d, \"results\": [", cells[d].n_images,
                    cells[d].n_masks);
            for (int m = 0; m < o->n_models; m++) {
                const asam_eval_cell *c = &cells[m * o->n_data + d];
                fprintf(f, "%s{\"model\": ", m ? ", " : "");
                json_str(f, o->models[m]);
                fprintf(f, ", \"miou\": %.6f, \"biou\": %.6f}", c->miou, c->biou);
            }
            fprintf(f, "]}%s\n", d + 1 < o->n_data ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        if (asam_atomic_commit(&af)) return -1;
    }
    return 0;
}

int asam_eval_run(const asam_eval_opts *o, asam_eval_cell *cells) {
    if (o->n_models < 1 || o->n_data < 1) return asam_error("eval: need a model and a dataset");
    memset(cells, 0, sizeof *cells * (size_t)(o->n_models * o->n_data));
    asam_dataset **ds = calloc((size_t)o->n_data, sizeof *ds);
    if (!ds) return asam_error("eval: out of memory");
    int rc = 0;
    size_t total = 0;
    /* open every dataset first, so a bad spec fails before any model work */
    for (int d = 0; d < o->n_data && !rc; d++) {
        rc = asam_dataset_open(o->specs[d], &ds[d]);
        if (!rc) {
            size_t c = asam_dataset_count(ds[d]);
            total += o->limit > 0 && c > (size_t)o->limit ? (size_t)o->limit : c;
        }
    }
    for (int m = 0; m < o->n_models && !rc; m++)
        if (access(o->models[m], R_OK)) rc = asam_error("%s: cannot read the model", o->models[m]);
    rc = asam_dist_agree(rc); /* every rank opened everything, or none goes on */
    size_t done = 0;
    total *= (size_t)o->n_models;
    asam_progress bar; /* per-image line on a terminal; a summary per cell otherwise */
    asam_progress_start(&bar, "eval", "img", (int64_t)total, 0);
    for (int m = 0; m < o->n_models && !rc; m++) {
        asam_segmenter model; /* SAM or EfficientSAM, from the file */
        int lrc = asam_segmenter_load_frozen(o->models[m], &model);
        if (asam_dist_agree(lrc)) { /* every rank has it */
            if (!lrc) asam_segmenter_free(&model);
            rc = -1;
            break;
        }
        for (int d = 0; d < o->n_data && !rc; d++) {
            asam_eval_cell *c = &cells[m * o->n_data + d];
            size_t n = asam_dataset_count(ds[d]);
            if (o->limit > 0 && n > (size_t)o->limit) n = (size_t)o->limit;
            /* Over the ranks of an MPI job, rank r takes images r, r + P, ...; the per-image
             * values go into slots (one rank fills each) that are summed over the ranks, then
             * added up in image order as a single process does, so the table is the same. */
            const int P = asam_dist_size(), R = asam_dist_rank();
            double *v = calloc(4 * (n ? n : 1), sizeof *v); /* mIoU, bIoU, masks, counted */
            if (!v) rc = asam_error("eval: out of memory");
            double isum = 0, bsum = 0;
            size_t mine = 0;
            for (size_t i = (size_t)R; i < n && !rc; i += (size_t)P) {
                asam_sample s;
                if (asam_dataset_get(ds[d], i, 0, &s)) {
                    rc = -1;
                    break;
                }
                double mi, bi;
                int nm;
                rc = model.esam
                         ? asam_eval_sample_esam(model.esam, &s, o->dilation_ratio, &mi, &bi, &nm)
                         : asam_eval_sample_path(model.sam, &s, o->protocol, o->dilation_ratio,
                                                 o->two_step && o->two_step[m], &mi, &bi, &nm);
                if (!rc && nm > 0) {
                    v[i] = mi;
                    v[n + i] = bi;
                    v[2 * n + i] = nm;
                    v[3 * n + i] = 1;
                    isum += mi;
                    mine++;
                }
                asam_sample_free(&s);
                done += (size_t)P; /* this rank's pace stands for the job's */
                if (o->progress && !rc && R == 0)
                    asam_progress_update(&bar, (int64_t)(done < total ? done : total),
                                         "%s on %s %zu/%zu, mIoU %.2f", base_name(o->models[m]),
                                         o->names[d], i + 1, n, mine ? 100 * isum / mine : 0.0);
            }
            rc = asam_dist_agree(rc);
            if (!rc && asam_dist_sum_f64(v, 4 * n)) rc = -1;
            isum = bsum = 0;
            for (size_t i = 0; i < n && !rc; i++)
                if (v[3 * n + i] > 0) {
                    isum += v[i];
                    bsum += v[n + i];
                    c->n_images++;
                    c->n_masks += (int)v[2 * n + i];
                }
            free(v);
            c->miou = c->n_images ? isum / c->n_images : 0;
            c->biou = c->n_images ? bsum / c->n_images : 0;
            if (o->progress && !bar.tty && !rc && asam_dist_rank() == 0)
                fprintf(stderr, "eval: %s on %s: %d images, mIoU %.2f, bIoU %.2f\n",
                        base_name(o->models[m]), o->names[d], c->n_images, 100 * c->miou,
                        100 * c->biou);
        }
        asam_segmenter_free(&model);
    }
    asam_progress_end(&bar);
    for (int d = 0; d < o->n_data; d++) asam_dataset_close(ds[d]);
    free(ds);
    if (!rc && asam_dist_rank() == 0) rc = write_tables(o, cells); /* rank 0 writes them */
    rc = asam_dist_agree(rc);
    return rc ? -1 : 0;
}
