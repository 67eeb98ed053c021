/* The report of `asam demo`: OUT/report.md with panels and attack plots in OUT/report/. */
#include "cli/cli_util.h"
#include "cli/demo.h"
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/image.h"
#include "asam/report.h"
#include "asam/rle.h"
#include "asam/sa1b.h"
#include "asam/sam.h"
#include "asam/synthetic.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- report ------------------------------------------------------------------------------- */
typedef struct {
    int n_masks;
    uint8_t *masks; // (n, h, w)
    float *boxes;   // (n, 4) x0 y0 x1 y1
    uint8_t *colours;
    int h, w;
} gt_masks;

static void gt_free(gt_masks *g) {
    free(g->masks), free(g->boxes), free(g->colours);
    memset(g, 0, sizeof *g);
}

static int gt_load(const char *json, gt_masks *g) {
    memset(g, 0, sizeof *g);
    asam_sa1b_image ann;
    if (asam_sa1b_read(json, &ann)) return -1;
    g->h = ann.height, g->w = ann.width, g->n_masks = (int)ann.n;
    size_t hw = (size_t)g->h * g->w;
    g->masks = malloc((ann.n ? ann.n : 1) * hw);
    g->boxes = malloc((ann.n ? ann.n : 1) * 4 * sizeof(float));
    g->colours = malloc((ann.n ? ann.n : 1) * 3);
    int rc = (!g->masks || !g->boxes || !g->colours) ? asam_error("out of memory") : 0;
    for (size_t k = 0; k < ann.n && !rc; k++) {
        rc = asam_rle_decode(&ann.anns[k].rle, g->masks + k * hw);
        double bb[4];
        asam_rle_bbox(&ann.anns[k].rle, bb);
        g->boxes[4 * k] = (float)bb[0], g->boxes[4 * k + 1] = (float)bb[1];
        g->boxes[4 * k + 2] = (float)(bb[0] + bb[2]), g->boxes[4 * k + 3] = (float)(bb[1] + bb[3]);
        asam_mask_color((int)k, g->colours + 3 * k);
    }
    asam_sa1b_free(&ann);
    if (rc) gt_free(g);
    return rc;
}

/* SAM's single-mask prediction for each GT box with `m` on the image embedded in `p` (the
 * tuned SAM shares the frozen encoder, so one embedding serves both); out: (n, h, w), iou: mean
 * IoU against the GT. */
static int predict_masks(const asam_sam *m, const asam_sam_predictor *enc, const gt_masks *g,
                         uint8_t *out, double *iou) {
    asam_sam_predictor p;
    if (asam_sam_predictor_init(&p, m)) return -1;
    int rc = asam_sam_predictor_set_embedding(&p, enc->embedding->data, &enc->sizes);
    asam_sam_result r;
    memset(&r, 0, sizeof r);
    asam_sam_query q = {.batch = g->n_masks, .n_points = 0, .boxes = g->boxes};
    if (!rc) rc = asam_sam_predictor_predict(&p, &q, 0, &r);
    if (!rc) {
        size_t hw = (size_t)g->h * g->w;
        memcpy(out, r.masks, (size_t)g->n_masks * hw);
        double s = 0;
        for (int k = 0; k < g->n_masks; k++)
            s += asam_mask_iou(out + k * hw, g->masks + k * hw, (int64_t)hw);
        *iou = g->n_masks ? s / g->n_masks : 0;
    }
    asam_sam_result_free(&r);
    asam_sam_predictor_free(&p);
    return rc;
}

/* One panel: [clean | adversarial (or nothing) | GT masks | SAM before | SAM after], the
 * predictions on the adversarial image when there is one. */
static int make_panel(const asam_sam *before, const asam_sam *after, const char *clean_path,
                      const char *adv_path, const char *json, const char *png, double *iou_b,
                      double *iou_a) {
    asam_image clean = {0}, adv = {0}, gto = {0}, pb = {0}, pa = {0}, strip = {0};
    gt_masks g;
    if (gt_load(json, &g)) return -1;
    uint8_t *pred = malloc(((size_t)g.n_masks ? g.n_masks : 1) * g.h * g.w);
    int rc = pred ? asam_image_read(clean_path, 3, &clean) : asam_error("out of memory");
    if (!rc && adv_path) rc = asam_image_read(adv_path, 3, &adv);
    const asam_image *target = adv_path ? &adv : &clean;
    if (!rc && (target->w != g.w || target->h != g.h))
        rc = asam_error("%s: %dx%d image, annotations %dx%d", adv_path ? adv_path : clean_path,
                        target->w, target->h, g.w, g.h);
    if (!rc) rc = asam_report_overlay(&clean, g.masks, g.n_masks, g.colours, &gto);
    asam_sam_predictor enc;
    int have_enc = !rc && asam_sam_predictor_init(&enc, before) == 0;
    if (!rc && !have_enc) rc = -1;
    if (!rc) rc = asam_sam_predictor_set_image(&enc, target);
    if (!rc) rc = predict_masks(before, &enc, &g, pred, iou_b);
    if (!rc) rc = asam_report_overlay(target, pred, g.n_masks, g.colours, &pb);
    if (!rc) rc = predict_masks(after, &enc, &g, pred, iou_a);
    if (have_enc) asam_sam_predictor_free(&enc);
    if (!rc) rc = asam_report_overlay(target, pred, g.n_masks, g.colours, &pa);
    if (!rc) {
        const asam_image *tiles[5];
        int n = 0;
        tiles[n++] = &clean;
        if (adv_path) tiles[n++] = &adv;
        tiles[n++] = &gto, tiles[n++] = &pb, tiles[n++] = &pa;
        rc = asam_report_strip(tiles, n, 2 * DEMO_SIZE, &strip);
    }
    if (!rc) rc = asam_image_write_png(png, &strip);
    asam_image_free(&clean), asam_image_free(&adv), asam_image_free(&gto);
    asam_image_free(&pb), asam_image_free(&pa), asam_image_free(&strip);
    free(pred);
    gt_free(&g);
    return rc;
}

typedef struct {
    int ok, n_masks, best, iters;
    double clean, adv;
    float lo, hi; // plot range
    float miou[64];
} attack_rec;

static void read_attack(const demo *d, int i, attack_rec *r) {
    memset(r, 0, sizeof *r);
    char p[2400];
    snprintf(p, sizeof p, "%s/adv/sa_%d.attack.json", d->gen, i);
    cJSON *j = demo_read_json(p);
    if (!j) return;
    cJSON *a = cJSON_GetObjectItem(j, "miou");
    cJSON *nm = cJSON_GetObjectItem(j, "n_masks"), *b = cJSON_GetObjectItem(j, "best_iter");
    cJSON *c = cJSON_GetObjectItem(j, "miou_clean"), *v = cJSON_GetObjectItem(j, "miou_adv");
    if (cJSON_IsArray(a) && cJSON_IsNumber(nm) && cJSON_IsNumber(b) && cJSON_IsNumber(c) &&
        cJSON_IsNumber(v)) {
        r->iters = cJSON_GetArraySize(a);
        if (r->iters > 64) r->iters = 64;
        for (int k = 0; k < r->iters; k++)
            r->miou[k] = (float)cJSON_GetArrayItem(a, k)->valuedouble;
        r->n_masks = nm->valueint, r->best = b->valueint, r->clean = c->valuedouble,
        r->adv = v->valuedouble, r->ok = 1;
    }
    cJSON_Delete(j);
}

/* What the report's figures came out as (panels and plots are best effort). */
typedef struct {
    int n_panels;
    double pan_b[3], pan_a[3]; /* mIoU of the original / tuned SAM in panel i */
    int pan_ok[3], plot_ok[3], held_ok, have_models;
    double held_b, held_a;
    attack_rec rec[3];
    char panel_err[512];
} report_figs;

/* A growing Markdown text; an allocation failure marks it and stops appending. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} md_buf;

static void P(md_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void P(md_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (k > 0 && b->len + (size_t)k >= b->cap) {
        size_t cap = 2 * (b->len + (size_t)k) + 1024;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s, b->cap = cap;
        va_start(ap, fmt);
        k = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    if (k > 0) b->len += (size_t)k;
}

/* Panels and plots in rdir (they need the models; each missing input just leaves its panel
 * out). */
static void make_figures(const demo *d, const char *rdir, report_figs *f) {
    int n_panels = f->n_panels = d->images < 2 ? d->images : 2;
    attack_rec *rec = f->rec;
    double *pan_b = f->pan_b, *pan_a = f->pan_a;
    int *pan_ok = f->pan_ok, *plot_ok = f->plot_ok;
    char path[2600];
    asam_sam *before = NULL, *after = NULL;
    int have_models = f->have_models = asam_file_exists(d->tuned) &&
                                       asam_sam_load(d->sam, &before) == 0 &&
                                       asam_sam_load(d->tuned, &after) == 0;
    char *panel_err = f->panel_err;
    for (int i = 1; i <= n_panels; i++) {
        read_attack(d, i, &rec[i]);
        if (rec[i].ok) {
            asam_image plot;
            snprintf(path, sizeof path, "%s/sa_%d_iou.png", rdir, i);
            float lo = rec[i].miou[0], hi = rec[i].miou[0];
            for (int k = 1; k < rec[i].iters; k++) {
                lo = rec[i].miou[k] < lo ? rec[i].miou[k] : lo;
                hi = rec[i].miou[k] > hi ? rec[i].miou[k] : hi;
            }
            float pad = (hi - lo) * 0.1f > 0.002f ? (hi - lo) * 0.1f : 0.002f;
            rec[i].lo = lo - pad, rec[i].hi = hi + pad;
            plot_ok[i] = asam_report_plot(rec[i].miou, rec[i].iters, rec[i].lo, rec[i].hi,
                                          rec[i].best, 320, 160, &plot) == 0 &&
                         asam_image_write_png(path, &plot) == 0;
            asam_image_free(&plot);
        }
        char clean[2600], adv[2600], js[2600];
        snprintf(clean, sizeof clean, "%s/sa_%d.jpg", d->train, i);
        snprintf(adv, sizeof adv, "%s/adv/sa_%d.jpg", d->gen, i);
        snprintf(js, sizeof js, "%s/sa_%d.json", d->train, i);
        snprintf(path, sizeof path, "%s/sa_%d_panel.png", rdir, i);
        if (have_models && asam_file_exists(adv))
            pan_ok[i] = make_panel(before, after, clean, adv, js, path, &pan_b[i], &pan_a[i]) == 0;
        if (have_models && !pan_ok[i] && !*panel_err)
            snprintf(panel_err, sizeof f->panel_err, "%s", asam_last_error());
    }
    if (have_models) {
        char clean[2600], js[2600];
        snprintf(clean, sizeof clean, "%s/sa_1.jpg", d->heldout);
        snprintf(js, sizeof js, "%s/sa_1.json", d->heldout);
        snprintf(path, sizeof path, "%s/heldout_1_panel.png", rdir);
        f->held_ok = make_panel(before, after, clean, NULL, js, path, &f->held_b, &f->held_a) == 0;
        if (!f->held_ok && !*panel_err)
            snprintf(panel_err, sizeof f->panel_err, "%s", asam_last_error());
    }
    asam_sam_free(before);
    asam_sam_free(after);
}

static void md_intro(md_buf *b, const demo *d) {
    P(b, "# ASAM demo report\n\n");
    P(b, "**Models: tiny random-weight reference models, not real SAM / Stable Diffusion / "
         "ControlNet weights.** They are the test fixtures shipped in `tests/data` (randomly "
         "initialised and perturbed weights with the official architectures at tiny widths):\n\n");
    P(b,
      "- SAM: ViT image encoder 64 wide, 3 blocks (1024x1024 input), the standard prompt encoder "
      "and mask decoder (`%s`)\n",
      d->sam);
    P(b,
      "- Stable Diffusion 1.5 structure: UNet with 32 base channels (3.3M parameters), VAE with "
      "32 channels (128x128 images, 16x16 latents), CLIP text encoder 64 wide with 2 layers "
      "(`%s`)\n",
      d->sd);
    P(b, "- mask ControlNet matching that UNet (1.8M parameters, `%s`)\n\n", d->cn);
    P(b,
      "Data: a synthetic SA-1B-style shard made by `asam demo` (ellipses, rectangles and polygons "
      "on textured backgrounds, one COCO-RLE mask per visible shape, captions naming the "
      "shapes): %d training images (`%s`, seed %d) and %d held-out images (`%s`, seed %d), "
      "%dx%d.\n\n",
      d->images, d->train, DEMO_TRAIN_SEED, d->heldout_n, d->heldout, DEMO_HELDOUT_SEED, DEMO_SIZE,
      DEMO_SIZE);
    asam_gen_opts go;
    demo_gen_options(d, &go);
    P(b,
      "Settings%s: DDIM %d steps (official 50), null-text %d inner steps (official 10), attack "
      "%d iterations (official 10), alpha %g, eps %g, momentum %g, guidance %g, %s gradient; "
      "token tuning %d epochs (official 20), lr 2e-3 with the slow-start/fast-decay schedule, "
      "cached embeddings (no augmentation).\n\n",
      d->quick ? " (--quick)" : "", go.steps, go.null_steps, go.iters, go.alpha, go.eps,
      go.momentum, go.cfg, go.grad == ASAM_GRAD_FULL ? "full-chain" : "skip (official code)",
      d->epochs);
}

/* s: the report stage itself, still running. */
static void md_stages(md_buf *b, const demo *d, const stage *s) {
    P(b, "## Stages\n\n| stage | status | seconds |\n|---|---|---:|\n");
    for (int i = 0; i < d->n_st; i++)
        if (&d->st[i] != s) // this stage is still running
            P(b, "| %s | %s | %.1f |\n", d->st[i].name, d->st[i].status, d->st[i].seconds);
    P(b, "| report | written | - |\n\n");
}

static void md_attack(md_buf *b, const demo *d) {
    P(b, "## Attack (generate)\n\nMean IoU of the original SAM with GT box prompts, per attack "
         "iteration (iteration 0 = the clean inverted latent); the latent with the lowest IoU is "
         "kept and regenerated with the mask ControlNet.\n\n");
    P(b, "| image | masks | mIoU clean | mIoU adversarial | kept iteration | mIoU per iteration |\n"
         "|---|---:|---:|---:|---:|---|\n");
    int n_att = 0;
    double sum_c = 0, sum_a = 0;
    for (int i = 1; i <= d->images; i++) {
        attack_rec r;
        read_attack(d, i, &r);
        if (!r.ok) {
            P(b, "| sa_%d | - | - | - | - | missing |\n", i);
            continue;
        }
        P(b, "| sa_%d | %d | %.4f | %.4f | %d | ", i, r.n_masks, r.clean, r.adv, r.best);
        for (int k = 0; k < r.iters; k++) P(b, "%s%.4f", k ? ", " : "", r.miou[k]);
        P(b, " |\n");
        n_att++, sum_c += r.clean, sum_a += r.adv;
    }
    if (n_att)
        P(b, "| **mean** | | **%.4f** | **%.4f** | | |\n\n", sum_c / n_att, sum_a / n_att);
    else
        P(b, "\n");

    P(b, "The attack measures IoU on the floating-point regeneration inside its loop; the "
         "evaluation below reads the saved JPEG (quality 75, as the official script saves it) with "
         "the ASAM protocol, so its "
         "'adversarial' numbers differ slightly from these.\n\n");
}

static void md_tuning(md_buf *b, const demo *d) {
    P(b, "## Tuning\n\n");
    if (d->tune_epochs) {
        P(b, "Mean training loss (BCE + Dice) per epoch run in this invocation: ");
        for (int e = 0; e < d->tune_epochs; e++) P(b, "%s%.4f", e ? ", " : "", d->tune_loss[e]);
        P(b,
          ".\n\nTuned checkpoint: `%s` (only `mask_decoder.iou_token` and "
          "`mask_decoder.mask_tokens` differ from the original).\n\n",
          d->tuned);
    } else {
        P(b, "No tuning losses recorded.\n\n");
    }
}

static void md_eval(md_buf *b, const demo *d) {
    asam_sam_config cfg; /* the resize goes to the SAM's input side (1024 officially) */
    int side = asam_sam_config_from_file(d->sam, &cfg) == 0 && cfg.img_size ? cfg.img_size : 1024;
    P(b,
      "## Evaluation\n\nASAM protocol: %dx%d resize, one tight GT box per mask, single-mask "
      "output, mIoU / boundary IoU (dilation 0.02) averaged per image then over images.\n\n",
      side, side);
    if (d->have_cells) {
        P(b, "| set | images | masks | original SAM mIoU | tuned SAM mIoU | original bIoU | tuned "
             "bIoU |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int k = 0; k < 3; k++)
            P(b, "| %s | %d | %d | %.4f | %.4f | %.4f | %.4f |\n", demo_set_names[k],
              d->cells[k].n_images, d->cells[k].n_masks, d->cells[k].miou, d->cells[3 + k].miou,
              d->cells[k].biou, d->cells[3 + k].biou);
        P(b, "\n");
    } else {
        P(b, "Not available (the stage did not finish; see Stages).\n\n");
    }
}

static void md_panels(md_buf *b, const report_figs *f) {
    P(b, "## Panels\n\n");
    for (int i = 1; i <= f->n_panels; i++) {
        if (f->pan_ok[i])
            P(b,
              "![sa_%d](report/sa_%d_panel.png)\n\n`report/sa_%d_panel.png`, left to right: clean "
              "synthetic image; adversarial image (regenerated from the attacked latent); GT "
              "masks on the clean image; original SAM's masks on the adversarial image (mIoU "
              "%.4f); tuned SAM's masks on the adversarial image (mIoU %.4f). Each mask has "
              "the same colour in every tile; predictions come from the SAM predictor with the "
              "GT boxes.\n\n",
              i, i, i, f->pan_b[i], f->pan_a[i]);
        if (f->plot_ok[i])
            P(b,
              "![IoU per iteration](report/sa_%d_iou.png)\n\n`report/sa_%d_iou.png`: mean IoU "
              "(y from %.4f at the bottom to %.4f at the top, grid at quarters) per attack "
              "iteration (x: 0 = clean .. %d); the red point is the kept iteration (%d).\n\n",
              i, i, f->rec[i].lo, f->rec[i].hi, f->rec[i].iters - 1, f->rec[i].best);
    }
    if (f->held_ok)
        P(b,
          "![held-out](report/heldout_1_panel.png)\n\n`report/heldout_1_panel.png`: held-out "
          "image; GT masks; original SAM (mIoU %.4f); tuned SAM (mIoU %.4f).\n\n",
          f->held_b, f->held_a);
    if (!f->have_models)
        P(b, "Panels left out: the tuned SAM is not available.\n\n");
    else if (*f->panel_err)
        P(b, "Some panels are missing: %s\n\n", f->panel_err);
}

static void md_caveats(md_buf *b, const demo *d) {
    P(b, "## What these numbers can and cannot show\n\n");
    P(b, "- They show that every stage of the ASAM pipeline runs end to end in this C "
         "implementation: SA-1B-format data in, inversion, the latent attack with the mask "
         "ControlNet, token tuning, evaluation and checkpoints out, resumably and "
         "deterministically (a rerun reproduces the same files).\n");
    P(b, "- They cannot show ASAM's published effect (+1.3 mIoU over 14 datasets with SAM ViT-B): "
         "the models have random weights, so SAM's masks are poor to begin with, the 'adversarial' "
         "images are regenerations by an untrained diffusion model (not photo-real), and the "
         "IoU changes measure how one random network reacts to another's outputs.\n");
    P(b,
      "- A drop in IoU over the attack iterations shows that the attack optimises its objective "
      "on this SAM; a change after tuning on %d images over %d epochs is a change on a "
      "handful of synthetic masks, not evidence of better generalisation. With real weights "
      "(`asam generate --sd v1-5 ... --sam sam_vit_b`) the same commands produce the numbers "
      "that matter.\n",
      d->images, d->epochs);
}

int stage_report(demo *d) {
    stage *s = stage_begin(d, "report");
    char rdir[2400], path[2600];
    snprintf(rdir, sizeof rdir, "%s/report", d->out);
    if (asam_mkdirs(rdir)) return stage_end(s, 0, "failed: %s", asam_last_error());
    static report_figs f;
    memset(&f, 0, sizeof f);
    make_figures(d, rdir, &f);
    md_buf b = {malloc(1 << 16), 0, 1 << 16, 0};
    if (!b.s) return stage_end(s, 0, "failed: out of memory");
    md_intro(&b, d);
    md_stages(&b, d, s);
    md_attack(&b, d);
    md_tuning(&b, d);
    md_eval(&b, d);
    md_panels(&b, &f);
    md_caveats(&b, d);
    snprintf(path, sizeof path, "%s/report.md", d->out);
    int rc = b.oom ? asam_error("out of memory") : asam_write_file_atomic(path, b.s, b.len);
    free(b.s);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%s", path);
}
