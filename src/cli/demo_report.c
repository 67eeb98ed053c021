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

#include <math.h>
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

/* What the report's figures came out as (panels and charts are best effort). */
typedef struct {
    int n_panels;
    double pan_b[3], pan_a[3]; /* mIoU of the original / tuned SAM in panel i */
    int pan_ok[3], held_ok, have_models, attack_chart, tune_chart, eval_chart;
    double held_b, held_a;
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

/* IoU per attack iteration of every training image, one line each. */
static int attack_chart(const demo *d, const char *path) {
    enum { MAX_LINES = 8 };
    attack_rec r[MAX_LINES];
    char names[MAX_LINES][32];
    const char *series[MAX_LINES];
    double y[MAX_LINES * 64];
    int n = 0, nx = 0;
    for (int i = 1; i <= d->images && n < MAX_LINES; i++) {
        read_attack(d, i, &r[n]);
        if (!r[n].ok) continue;
        if (r[n].iters > nx) nx = r[n].iters;
        snprintf(names[n], sizeof names[n], "sa_%d", i);
        series[n] = names[n];
        n++;
    }
    if (!n) return -1;
    double lo = 1;
    for (int a = 0; a < n; a++)
        for (int k = 0; k < nx; k++) {
            y[a * nx + k] = k < r[a].iters ? r[a].miou[k] : NAN;
            if (k < r[a].iters && r[a].miou[k] < lo) lo = r[a].miou[k];
        }
    lo = floor(lo * 10 - 1) / 10;
    return asam_chart_lines_svg(path, "Attack: mean IoU of SAM-mini on each regenerated scene",
                                "attack iteration (0 = the clean inverted latent)",
                                "mean IoU over the scene's masks", n, series, nx, y, NULL,
                                lo < 0 ? 0 : lo, 1.0);
}

static int tune_chart(const demo *d, const char *path) {
    if (!d->tune_epochs) return -1;
    double y[256], hi = 0;
    for (int e = 0; e < d->tune_epochs; e++) y[e] = d->tune_loss[e], hi = y[e] > hi ? y[e] : hi;
    const char *series[1] = {"mean BCE + Dice per epoch"};
    return asam_chart_lines_svg(path, "Tuning SAM-mini's output tokens on the adversarial scenes",
                                "epoch run in this invocation (from 0)", "training loss", 1, series,
                                d->tune_epochs, y, NULL, 0, hi > 0 ? hi * 1.1 : 1);
}

static int eval_chart(const demo *d, const char *path) {
    if (!d->have_cells) return -1;
    double mean[2 * DEMO_N_SETS];
    for (int k = 0; k < DEMO_N_SETS; k++)
        mean[2 * k] = d->cells[k].miou, mean[2 * k + 1] = d->cells[DEMO_N_SETS + k].miou;
    const char *series[2] = {"original SAM-mini", "tuned on this run's adversarial scenes"};
    return asam_chart_bars_svg(path, "Box-prompt mIoU before and after tuning (ASAM protocol)",
                               "mIoU", DEMO_N_SETS, demo_set_names, 2, series, mean, NULL, 0, 1);
}

/* Panels and charts in rdir (panels need the models; each missing input just leaves its
 * figure out). */
static void make_figures(const demo *d, const char *rdir, report_figs *f) {
    int n_panels = f->n_panels = d->images < 2 ? d->images : 2;
    double *pan_b = f->pan_b, *pan_a = f->pan_a;
    int *pan_ok = f->pan_ok;
    char path[2600];
    snprintf(path, sizeof path, "%s/attack_iou.svg", rdir);
    f->attack_chart = attack_chart(d, path) == 0;
    snprintf(path, sizeof path, "%s/tune_loss.svg", rdir);
    f->tune_chart = tune_chart(d, path) == 0;
    snprintf(path, sizeof path, "%s/eval_miou.svg", rdir);
    f->eval_chart = eval_chart(d, path) == 0;
    asam_sam *before = NULL, *after = NULL;
    int have_models = f->have_models = asam_file_exists(d->tuned) &&
                                       asam_sam_load_frozen(d->sam, &before) == 0 &&
                                       asam_sam_load_frozen(d->tuned, &after) == 0;
    char *panel_err = f->panel_err;
    for (int i = 1; i <= n_panels; i++) {
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
        snprintf(clean, sizeof clean, "%s/unseen_blur_noise/sa_1.jpg", d->world);
        snprintf(js, sizeof js, "%s/unseen_blur_noise/sa_1.json", d->world);
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
    P(b, "**Models: the miniature world's models, trained from scratch by asam itself** "
         "(`asam train-sam`, `train-vae`, `train-unet`, `train-controlnet` on the scenes of "
         "`asam world`; see `data/world/README.md` and `docs/world.md`), with the official "
         "architectures at small widths in the official checkpoint layouts:\n\n");
    P(b,
      "- SAM-mini: 128x128 input, image encoder 128 wide with 4 blocks, the official prompt "
      "encoder and mask decoder (`%s`)\n",
      d->sam);
    P(b,
      "- SD-mini: VAE, text-conditioned UNet and a frozen CLIP-mini text encoder in a diffusers "
      "folder, 128x128 images and 16x16 latents (`%s`)\n",
      d->sd);
    P(b, "- the mask ControlNet trained on the world's masks (`%s`)\n\n", d->cn);
    P(b,
      "Data: scenes of the world (`asam world --seed %d`, the seed the models were trained "
      "with): %d training scenes (`%s`) and %d scenes per held-out set: `test` (the training "
      "distribution) and six shifted sets (`%s/unseen_*`), %dx%d.\n\n",
      DEMO_WORLD_SEED, d->images, d->train, d->heldout_n, d->world, DEMO_SIZE, DEMO_SIZE);
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

static void md_attack(md_buf *b, const demo *d, const report_figs *f) {
    P(b, "## Attack (generate)\n\nMean IoU of the original SAM-mini with GT box prompts, per "
         "attack iteration (iteration 0 = the clean inverted latent); the latent with the lowest "
         "IoU is kept and regenerated with the mask ControlNet.\n\n");
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
    if (f->attack_chart) P(b, "![IoU per attack iteration](report/attack_iou.svg)\n\n");
    P(b, "The attack measures IoU on the floating-point regeneration inside its loop; the "
         "evaluation below reads the saved JPEG (quality 75, as the official script saves it) with "
         "the ASAM protocol, so its 'adversarial' numbers differ slightly from these.\n\n");
}

static void md_tuning(md_buf *b, const demo *d, const report_figs *f) {
    P(b, "## Tuning\n\n");
    if (d->tune_epochs) {
        P(b, "Mean training loss (BCE + Dice) per epoch run in this invocation: ");
        for (int e = 0; e < d->tune_epochs; e++) P(b, "%s%.4f", e ? ", " : "", d->tune_loss[e]);
        P(b,
          ".\n\nTuned checkpoint: `%s` (only `mask_decoder.iou_token` and "
          "`mask_decoder.mask_tokens` differ from the original).\n\n",
          d->tuned);
        if (f->tune_chart) P(b, "![tuning loss](report/tune_loss.svg)\n\n");
    } else {
        P(b, "No tuning losses recorded (the tuning ran in an earlier invocation).\n\n");
    }
}

static void md_eval(md_buf *b, const demo *d, const report_figs *f) {
    asam_sam_config cfg; /* the resize goes to the SAM's input side (1024 officially) */
    int side = asam_sam_config_from_file(d->sam, &cfg) == 0 && cfg.img_size ? cfg.img_size : 1024;
    P(b,
      "## Evaluation\n\nASAM protocol at SAM-mini's input size: %dx%d resize, one tight GT box "
      "per mask, single-mask output, mIoU / boundary IoU (dilation 0.02) averaged per image then "
      "over images.\n\n",
      side, side);
    if (d->have_cells) {
        const asam_eval_cell *o = d->cells, *t = d->cells + DEMO_N_SETS;
        P(b, "| set | images | masks | original SAM mIoU | tuned SAM mIoU | original bIoU | tuned "
             "bIoU |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int k = 0; k < DEMO_N_SETS; k++)
            P(b, "| %s | %d | %d | %.4f | %.4f | %.4f | %.4f |\n", demo_set_names[k], o[k].n_images,
              o[k].n_masks, o[k].miou, t[k].miou, o[k].biou, t[k].biou);
        P(b, "\n");
        if (f->eval_chart) P(b, "![mIoU per set](report/eval_miou.svg)\n\n");
    } else {
        P(b, "Not available (the stage did not finish; see Stages).\n\n");
    }
}

/* A number of a quality.json entry, or NAN. */
static double qnum(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The quality gates of the installed world models (world/quality.json, written when they were
 * trained and measured): what the models can do, so the reader can judge the demo's numbers. */
static void md_quality(md_buf *b, const demo *d) {
    P(b, "## The world's models: quality gates\n\n");
    char p[2400];
    snprintf(p, sizeof p, "%s/world/quality.json", d->assets);
    cJSON *j = demo_read_json(p);
    if (!j) {
        P(b, "No quality record is installed (`%s` is absent or unreadable).\n\n", p);
        return;
    }
    P(b,
      "Measured when the models were trained (`%s`):\n\n| gate | measured | requirement |\n"
      "|---|---|---|\n",
      p);
    const cJSON *sam = cJSON_GetObjectItem(j, "sam_mini_box_miou");
    const cJSON *per = cJSON_GetObjectItem(sam, "per_set"), *set;
    const cJSON *gate = cJSON_GetObjectItem(sam, "gate"),
                *passed = cJSON_GetObjectItem(sam, "passed");
    cJSON_ArrayForEach(set, per) if (cJSON_IsNumber(set)) {
        const int is_val = strcmp(set->string, "val") == 0;
        P(b, "| SAM-mini box mIoU, %s | %.4f | %s%s |\n", set->string, set->valuedouble,
          is_val && cJSON_IsString(gate) ? gate->valuestring
          : strncmp(set->string, "unseen_", 7) == 0
              ? "clearly below val (the gap ASAM should close)"
              : "-",
          is_val && cJSON_IsBool(passed) ? (cJSON_IsTrue(passed) ? " (met)" : " (missed)") : "");
    }
    const cJSON *vae = cJSON_GetObjectItem(j, "vae_psnr_db");
    if (vae)
        P(b, "| VAE-mini PSNR (val) | %.2f dB on %.0f images | - |\n", qnum(vae, "val"),
          qnum(vae, "images"));
    const cJSON *mf = cJSON_GetObjectItem(j, "mask_fidelity");
    if (mf) {
        const cJSON *g = cJSON_GetObjectItem(mf, "gate"), *ok = cJSON_GetObjectItem(mf, "passed");
        P(b,
          "| mask fidelity (regenerated / original SAM-mini mIoU) | %.3f (%.3f / %.3f) | %s%s |\n",
          qnum(mf, "share_of_original_miou"), qnum(mf, "regenerated_miou"),
          qnum(mf, "original_miou"), cJSON_IsString(g) ? g->valuestring : "-",
          cJSON_IsBool(ok) ? (cJSON_IsTrue(ok) ? " (met)" : " (missed)") : "");
    }
    const cJSON *ca = cJSON_GetObjectItem(j, "caption_adherence");
    if (ca) {
        const cJSON *sum = cJSON_GetObjectItem(ca, "summary"),
                    *note = cJSON_GetObjectItem(ca, "note");
        const cJSON *txt = cJSON_IsString(sum) ? sum : note;
        P(b, "| caption adherence | %s | - |\n", cJSON_IsString(txt) ? txt->valuestring : "-");
    }
    P(b, "\n");
    cJSON_Delete(j);
}

/* The last full experiment (scripts/experiment.sh), installed with the models. */
static void md_experiment(md_buf *b, const demo *d, const char *rdir) {
    P(b, "## The full experiment\n\n");
    char p[2600];
    snprintf(p, sizeof p, "%s/results.json", d->experiment);
    cJSON *j = demo_read_json(p);
    const cJSON *vs = j ? cJSON_GetObjectItem(j, "variants") : NULL;
    if (!cJSON_IsArray(vs) || !cJSON_GetArraySize(vs)) {
        P(b,
          "No experiment results are installed (`%s` is absent); `scripts/experiment.sh` runs "
          "it (clean / PGD / ASAM-skip / ASAM-full tuning over several seeds).\n\n",
          p);
        cJSON_Delete(j);
        return;
    }
    const cJSON *rep = cJSON_GetObjectItem(j, "reproduce"),
                *seeds = cJSON_GetObjectItem(j, "seeds");
    P(b,
      "This demo tunes on %d scenes; what ASAM's claim rests on is the experiment below, the "
      "last full run of `scripts/experiment.sh` (installed with the models: `%s`). Box-prompt "
      "mIoU, mean ± sample std over %d tuning seed(s):\n\n",
      d->images, d->experiment, cJSON_IsNumber(seeds) ? seeds->valueint : 0);
    const cJSON *first = cJSON_GetObjectItem(cJSON_GetArrayItem(vs, 0), "miou"), *set;
    P(b, "| variant |");
    cJSON_ArrayForEach(set, first) P(b, " %s |", set->string);
    P(b, " unseen mean |\n|---|");
    cJSON_ArrayForEach(set, first) P(b, "---:|");
    P(b, "---:|\n");
    const cJSON *v;
    cJSON_ArrayForEach(v, vs) {
        const cJSON *name = cJSON_GetObjectItem(v, "variant"), *mi = cJSON_GetObjectItem(v, "miou");
        P(b, "| %s |", cJSON_IsString(name) ? name->valuestring : "?");
        cJSON_ArrayForEach(set, first) {
            const cJSON *c = cJSON_GetObjectItem(mi, set->string);
            const cJSON *m = cJSON_GetObjectItem(c, "mean"), *sd = cJSON_GetObjectItem(c, "std");
            if (cJSON_IsNumber(m))
                P(b, " %.4f ± %.4f |", m->valuedouble, cJSON_IsNumber(sd) ? sd->valuedouble : 0);
            else
                P(b, " - |");
        }
        const cJSON *u = cJSON_GetObjectItem(v, "unseen_mean");
        const cJSON *um = cJSON_GetObjectItem(u, "mean"), *us = cJSON_GetObjectItem(u, "std");
        if (cJSON_IsNumber(um))
            P(b, " %.4f ± %.4f |\n", um->valuedouble, cJSON_IsNumber(us) ? us->valuedouble : 0);
        else
            P(b, " - |\n");
    }
    P(b, "\n");
    /* what the table says about ASAM's claim, from the same numbers */
    double base = NAN;
    cJSON_ArrayForEach(v, vs) {
        const cJSON *name = cJSON_GetObjectItem(v, "variant");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "untuned"))
            base = qnum(cJSON_GetObjectItem(v, "unseen_mean"), "mean");
    }
    if (!isnan(base)) {
        P(b, "Unseen mean against the untuned model (%.4f):", base);
        int k = 0;
        cJSON_ArrayForEach(v, vs) {
            const cJSON *name = cJSON_GetObjectItem(v, "variant");
            const double m = qnum(cJSON_GetObjectItem(v, "unseen_mean"), "mean");
            const double sd = qnum(cJSON_GetObjectItem(v, "unseen_mean"), "std");
            if (!cJSON_IsString(name) || !strcmp(name->valuestring, "untuned") || isnan(m))
                continue;
            P(b, "%s %s %+.4f (seed std %.4f)", k++ ? "," : "", name->valuestring, m - base,
              isnan(sd) ? 0 : sd);
        }
        P(b, ". The paper reports ASAM above the untuned model and PGD below it.\n\n");
    }
    snprintf(p, sizeof p, "%s/miou.svg", d->experiment);
    char *svg = NULL, dst[2700];
    size_t n = 0;
    snprintf(dst, sizeof dst, "%s/experiment_miou.svg", rdir);
    if (asam_read_file(p, &svg, &n) == 0 && asam_write_file_atomic(dst, svg, n) == 0)
        P(b, "![experiment](report/experiment_miou.svg)\n\n");
    free(svg);
    if (cJSON_IsString(rep)) P(b, "Reproduce it:\n\n```sh\n%s\n```\n\n", rep->valuestring);
    cJSON_Delete(j);
}

static void md_panels(md_buf *b, const report_figs *f) {
    P(b, "## Panels\n\n");
    for (int i = 1; i <= f->n_panels; i++)
        if (f->pan_ok[i])
            P(b,
              "![sa_%d](report/sa_%d_panel.png)\n\n`report/sa_%d_panel.png`, left to right: the "
              "training scene; its adversarial image (regenerated from the attacked latent); GT "
              "masks on the scene; the original SAM-mini's masks on the adversarial image (mIoU "
              "%.4f); the tuned SAM-mini's masks on it (mIoU %.4f). Each mask has the same colour "
              "in every tile; predictions come from the SAM predictor with the GT boxes.\n\n",
              i, i, i, f->pan_b[i], f->pan_a[i]);
    if (f->held_ok)
        P(b,
          "![held-out](report/heldout_1_panel.png)\n\n`report/heldout_1_panel.png`: a scene of "
          "the shifted set unseen_blur_noise; GT masks; original SAM-mini (mIoU %.4f); tuned "
          "SAM-mini (mIoU %.4f).\n\n",
          f->held_b, f->held_a);
    if (!f->have_models)
        P(b, "Panels left out: the tuned SAM is not available.\n\n");
    else if (*f->panel_err)
        P(b, "Some panels are missing: %s\n\n", f->panel_err);
}

static void md_caveats(md_buf *b, const demo *d) {
    P(b, "## What these numbers can and cannot show\n\n");
    P(b, "- Every stage of the ASAM pipeline runs end to end on models that were trained (not "
         "random): SA-1B-format data in, inversion, the latent attack with the mask ControlNet, "
         "token tuning, evaluation and checkpoints out, resumably and deterministically.\n");
    P(b,
      "- The demo's own numbers come from %d training scene(s) and %d scene(s) per held-out set: "
      "a change of a few hundredths after tuning on so little is noise, not evidence. The "
      "experiment table above (hundreds of scenes, several seeds, error bars) is the measurement "
      "of ASAM's claim in this world; the world is a miniature, so it says nothing directly "
      "about SAM ViT-B on SA-1B.\n",
      d->images, d->heldout_n);
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
    md_attack(&b, d, &f);
    md_tuning(&b, d, &f);
    md_eval(&b, d, &f);
    md_quality(&b, d);
    md_experiment(&b, d, rdir);
    md_panels(&b, &f);
    md_caveats(&b, d);
    snprintf(path, sizeof path, "%s/report.md", d->out);
    int rc = b.oom ? asam_error("out of memory") : asam_write_file_atomic(path, b.s, b.len);
    free(b.s);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%s", path);
}
