/* asam demo: the ASAM pipeline end to end on a built-in default, in a few minutes on 2 cores.
 *
 *   models   the tiny random-weight reference models shipped in tests/data (SAM, SD 1.5
 *            structure, mask ControlNet), decompressed into OUT/models/
 *   data     a synthetic SA-1B-style shard (shapes + RLE masks + captions) for generation and
 *            tuning, and a held-out one for evaluation (OUT/data/train, OUT/data/heldout)
 *   generate DDIM + null-text inversion and the MI-FGSM latent attack against SAM (OUT/gen)
 *   tune     SAM's output tokens on the adversarial images with the original masks (OUT/tune)
 *   eval     original vs tuned SAM (OUT/eval)
 *   report   OUT/report.md + PNG panels
 * Every stage keeps its outputs; a rerun skips what is finished. */
#include "asam/asam.h"
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/image.h"
#include "asam/report.h"
#include "asam/rle.h"
#include "asam/sa1b.h"
#include "asam/sam.h"
#include "asam/synthetic.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define DEMO_SIZE 128 /* the tiny SD's image side (VAE resolution 128, latent 16) */
#define DEMO_TRAIN_SEED 1
#define DEMO_HELDOUT_SEED 2
#define MAX_STAGES 8

typedef struct {
    const char *name;
    char status[512];
    double seconds;
    int ok;
} stage;

typedef struct {
    char out[2048], assets[2048];
    char sam[2300], sd[2300], cn[2300], tuned[2300];
    char train[2300], heldout[2300], gen[2300], tune[2300], eval[2300];
    int images, heldout_n, steps, null_steps, iters, epochs, quick;
    stage st[MAX_STAGES];
    int n_st;
    asam_eval_cell cells[6]; // [model][dataset]: 2 models x 3 sets
    int have_cells;
    double tune_loss[256];
    int tune_epochs;
    asam_generate_stats gstats;
} demo;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static stage *stage_begin(demo *d, const char *name) {
    stage *s = &d->st[d->n_st++];
    s->name = name;
    s->ok = 0;
    s->seconds = now_s();
    fprintf(stderr, "asam demo: == %s ==\n", name);
    return s;
}
static int stage_end(stage *s, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int stage_end(stage *s, int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->status, sizeof s->status, fmt, ap);
    va_end(ap);
    s->ok = ok;
    s->seconds = now_s() - s->seconds;
    fprintf(stderr, "asam demo: %s: %s (%.1f s)\n", s->name, s->status, s->seconds);
    return ok ? 0 : -1;
}

/* The repository's tests/data, from this file's compile-time path (.../src/cli/cmd_demo.c). */
static void default_assets(char *out, size_t n) {
    snprintf(out, n, "%s", __FILE__);
    char *p = strstr(out, "src/cli/cmd_demo.c");
    if (p && (size_t)(p - out) + strlen("tests/data") < n)
        strcpy(p, "tests/data");
    else
        snprintf(out, n, "tests/data");
}

/* src (or src.gz, gunzipped) -> dst, atomically; skipped when dst exists. */
static int install_model(const char *assets, const char *rel, const char *dst) {
    if (asam_file_exists(dst)) return 0;
    char src[4096];
    snprintf(src, sizeof src, "%s/%s", assets, rel);
    if (!asam_file_exists(src)) snprintf(src, sizeof src, "%s/%s.gz", assets, rel);
    if (!asam_file_exists(src))
        return asam_error("%s/%s(.gz): not found (use --assets DIR to point at tests/data)", assets,
                          rel);
    gzFile in = gzopen(src, "rb"); // also reads uncompressed files as they are
    if (!in) return asam_error("%s: cannot open", src);
    asam_atomic_file af;
    if (asam_atomic_open(&af, dst)) {
        gzclose(in);
        return -1;
    }
    char buf[1 << 16];
    int k, ok = 1;
    while ((k = gzread(in, buf, sizeof buf)) > 0)
        if (fwrite(buf, 1, (size_t)k, af.fp) != (size_t)k) ok = 0;
    int gz_err = k < 0;
    gzclose(in);
    if (!ok || gz_err) {
        asam_atomic_abort(&af);
        return asam_error("%s: cannot decompress into %s", src, dst);
    }
    return asam_atomic_commit(&af);
}

static int stage_models(demo *d) {
    stage *s = stage_begin(d, "models");
    char dir[2300];
    snprintf(dir, sizeof dir, "%s/models", d->out);
    int pre = asam_file_exists(d->sam) && asam_file_exists(d->sd) && asam_file_exists(d->cn);
    if (asam_mkdirs(dir) || install_model(d->assets, "sam_tiny/model.pth", d->sam) ||
        install_model(d->assets, "sd_tiny/model.ckpt", d->sd) ||
        install_model(d->assets, "sd_tiny/control.pth", d->cn))
        return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, pre ? "already installed" : "installed from %s", d->assets);
}

static int stage_data(demo *d) {
    stage *s = stage_begin(d, "data");
    char c1[2400], c2[2400];
    snprintf(c1, sizeof c1, "%s/captions.jsonl", d->train);
    snprintf(c2, sizeof c2, "%s/captions.jsonl", d->heldout);
    // captions.jsonl is written last, so its presence means the shard is complete.
    int pre = asam_file_exists(c1) && asam_file_exists(c2);
    if ((!asam_file_exists(c1) &&
         asam_synthetic_sa1b(d->train, d->images, DEMO_SIZE, DEMO_TRAIN_SEED)) ||
        (!asam_file_exists(c2) &&
         asam_synthetic_sa1b(d->heldout, d->heldout_n, DEMO_SIZE, DEMO_HELDOUT_SEED)))
        return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%s%d training + %d held-out synthetic images (%dx%d)",
                     pre ? "already made: " : "", d->images, d->heldout_n, DEMO_SIZE, DEMO_SIZE);
}

static void gen_options(const demo *d, asam_gen_opts *go) {
    asam_gen_opts_default(go);
    go->size = DEMO_SIZE;
    go->steps = d->steps;
    go->null_steps = d->null_steps;
    go->iters = d->iters;
    go->verbose = 1;
}

static int stage_generate(demo *d) {
    stage *s = stage_begin(d, "generate (invert + attack)");
    asam_gen_models gm;
    if (asam_gen_models_load(d->sd, d->cn, d->sam, &gm))
        return stage_end(s, 0, "failed: %s", asam_last_error());
    asam_gen_opts go;
    gen_options(d, &go);
    char spec[2400], caps[2400];
    snprintf(spec, sizeof spec, "sa1b:%s", d->train);
    snprintf(caps, sizeof caps, "%s/captions.jsonl", d->train);
    asam_generate_cfg gc = {.data = spec,
                            .captions = caps,
                            .out = d->gen,
                            .shard = 0,
                            .n_shards = 1,
                            .mode = ASAM_GEN_BOTH};
    memset(&d->gstats, 0, sizeof d->gstats);
    int rc = asam_generate(&gm, &go, &gc, &d->gstats);
    asam_gen_models_free(&gm);
    if (rc != 0) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(
        s, 1, "%d images (%d finished before); mean IoU %.4f clean -> %.4f adversarial",
        d->gstats.done, d->gstats.skipped, d->gstats.miou_before, d->gstats.miou_after);
}

static int write_json(const char *path, cJSON *j) {
    char *txt = cJSON_Print(j);
    int rc = txt ? asam_write_file_atomic(path, txt, strlen(txt)) : asam_error("out of memory");
    free(txt);
    return rc;
}

static cJSON *read_json(const char *path) {
    char *txt = NULL;
    size_t n = 0;
    if (asam_read_file(path, &txt, &n)) return NULL;
    cJSON *j = cJSON_ParseWithLength(txt, n);
    free(txt);
    return j;
}

static int stage_tune(demo *d) {
    stage *s = stage_begin(d, "tune (output tokens)");
    char losses[2400];
    snprintf(losses, sizeof losses, "%s/demo_tune.json", d->tune);
    if (asam_file_exists(d->tuned) && asam_file_exists(losses)) {
        cJSON *j = read_json(losses), *a = j ? cJSON_GetObjectItem(j, "epoch_loss") : NULL;
        d->tune_epochs = 0;
        for (int e = 0; a && e < cJSON_GetArraySize(a) && e < 256; e++)
            d->tune_loss[d->tune_epochs++] = cJSON_GetArrayItem(a, e)->valuedouble;
        cJSON_Delete(j);
        return stage_end(s, 1, "finished in an earlier run (%s)", d->tuned);
    }
    char spec[4800];
    snprintf(spec, sizeof spec, "adv:%s/adv:%s", d->gen, d->train);
    const char *specs[1] = {spec};
    asam_tune_opts to;
    asam_tune_defaults(&to);
    to.model_path = d->sam;
    to.data = specs;
    to.n_data = 1;
    to.out_dir = d->tune;
    to.epochs = d->epochs;
    to.batch = d->images < 4 ? d->images : 4;
    to.augment = 0; // cached image embeddings: the encoder is frozen anyway
    to.seed = 0;
    to.resume = 1;
    to.progress = 1;
    asam_tune_report rep;
    memset(&rep, 0, sizeof rep);
    if (asam_tune(&to, &rep)) return stage_end(s, 0, "failed: %s", asam_last_error());
    // Losses of the epochs run now (a resumed run only knows its own).
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "epoch_loss");
    d->tune_epochs = 0;
    for (int e = rep.start_epoch; e < rep.epochs_done && e < 256; e++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber(rep.epoch_loss[e]));
        d->tune_loss[d->tune_epochs++] = rep.epoch_loss[e];
    }
    cJSON_AddNumberToObject(j, "first_epoch", rep.start_epoch);
    int rc = write_json(losses, j);
    cJSON_Delete(j);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%d epochs on %d adversarial images (epochs %d..%d run now)",
                     rep.epochs_done, rep.n_images, rep.start_epoch + 1, rep.epochs_done);
}

static const char *set_names[3] = {"training images, clean", "training images, adversarial",
                                   "held-out images, clean"};

static int stage_eval(demo *d) {
    stage *s = stage_begin(d, "eval (original vs tuned SAM)");
    char cells_path[2400];
    snprintf(cells_path, sizeof cells_path, "%s/demo_cells.json", d->eval);
    if (asam_file_exists(cells_path)) {
        cJSON *j = read_json(cells_path), *a = j ? cJSON_GetObjectItem(j, "cells") : NULL;
        if (a && cJSON_GetArraySize(a) == 6) {
            for (int i = 0; i < 6; i++) {
                cJSON *c = cJSON_GetArrayItem(a, i);
                d->cells[i].miou = cJSON_GetObjectItem(c, "miou")->valuedouble;
                d->cells[i].biou = cJSON_GetObjectItem(c, "biou")->valuedouble;
                d->cells[i].n_images = cJSON_GetObjectItem(c, "n_images")->valueint;
                d->cells[i].n_masks = cJSON_GetObjectItem(c, "n_masks")->valueint;
            }
            d->have_cells = 1;
        }
        cJSON_Delete(j);
        if (d->have_cells) return stage_end(s, 1, "finished in an earlier run");
    }
    if (!asam_file_exists(d->tuned)) return stage_end(s, 0, "skipped: no tuned model");
    if (asam_mkdirs(d->eval)) return stage_end(s, 0, "failed: %s", asam_last_error());
    char s0[2400], s1[4800], s2[2400], md[2400], js[2400];
    snprintf(s0, sizeof s0, "sa1b:%s", d->train);
    snprintf(s1, sizeof s1, "adv:%s/adv:%s", d->gen, d->train);
    snprintf(s2, sizeof s2, "sa1b:%s", d->heldout);
    snprintf(md, sizeof md, "%s/eval.md", d->eval);
    snprintf(js, sizeof js, "%s/eval.json", d->eval);
    const char *models[2] = {d->sam, d->tuned}, *specs[3] = {s0, s1, s2};
    asam_eval_opts eo;
    asam_eval_defaults(&eo);
    eo.models = models;
    eo.n_models = 2;
    eo.names = set_names;
    eo.specs = specs;
    eo.n_data = 3;
    eo.md_path = md;
    eo.json_path = js;
    eo.progress = 1;
    if (asam_eval_run(&eo, d->cells)) return stage_end(s, 0, "failed: %s", asam_last_error());
    d->have_cells = 1;
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "cells");
    for (int i = 0; i < 6; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "miou", d->cells[i].miou);
        cJSON_AddNumberToObject(c, "biou", d->cells[i].biou);
        cJSON_AddNumberToObject(c, "n_images", d->cells[i].n_images);
        cJSON_AddNumberToObject(c, "n_masks", d->cells[i].n_masks);
        cJSON_AddItemToArray(a, c);
    }
    int rc = write_json(cells_path, j);
    cJSON_Delete(j);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "mIoU on adversarial images %.4f -> %.4f, held-out %.4f -> %.4f",
                     d->cells[1].miou, d->cells[4].miou, d->cells[2].miou, d->cells[5].miou);
}

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
    cJSON *j = read_json(p);
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

static int stage_report(demo *d) {
    stage *s = stage_begin(d, "report");
    char rdir[2400], path[2600];
    snprintf(rdir, sizeof rdir, "%s/report", d->out);
    if (asam_mkdirs(rdir)) return stage_end(s, 0, "failed: %s", asam_last_error());
    // Panels and plots (need the models; each missing input just leaves its panel out).
    int n_panels = d->images < 2 ? d->images : 2;
    double pan_b[3] = {0}, pan_a[3] = {0};
    int pan_ok[3] = {0}, plot_ok[3] = {0};
    attack_rec rec[3];
    asam_sam *before = NULL, *after = NULL;
    int have_models = asam_file_exists(d->tuned) && asam_sam_load(d->sam, &before) == 0 &&
                      asam_sam_load(d->tuned, &after) == 0;
    char panel_err[512] = "";
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
        snprintf(adv, sizeof adv, "%s/adv/sa_%d.png", d->gen, i);
        snprintf(js, sizeof js, "%s/sa_%d.json", d->train, i);
        snprintf(path, sizeof path, "%s/sa_%d_panel.png", rdir, i);
        if (have_models && asam_file_exists(adv))
            pan_ok[i] = make_panel(before, after, clean, adv, js, path, &pan_b[i], &pan_a[i]) == 0;
        if (have_models && !pan_ok[i] && !*panel_err)
            snprintf(panel_err, sizeof panel_err, "%s", asam_last_error());
    }
    int held_ok = 0;
    double held_b = 0, held_a = 0;
    if (have_models) {
        char clean[2600], js[2600];
        snprintf(clean, sizeof clean, "%s/sa_1.jpg", d->heldout);
        snprintf(js, sizeof js, "%s/sa_1.json", d->heldout);
        snprintf(path, sizeof path, "%s/heldout_1_panel.png", rdir);
        held_ok = make_panel(before, after, clean, NULL, js, path, &held_b, &held_a) == 0;
        if (!held_ok && !*panel_err) snprintf(panel_err, sizeof panel_err, "%s", asam_last_error());
    }
    asam_sam_free(before);
    asam_sam_free(after);

    // The Markdown.
    size_t cap = 1 << 16, len = 0;
    char *md = malloc(cap);
    if (!md) return stage_end(s, 0, "failed: out of memory");
#define P(...)                                                                                     \
    do {                                                                                           \
        int k_ = snprintf(md + len, cap - len, __VA_ARGS__);                                       \
        if (k_ > 0 && len + (size_t)k_ >= cap) {                                                   \
            cap = 2 * (len + (size_t)k_) + 1024;                                                   \
            char *nm_ = realloc(md, cap);                                                          \
            if (!nm_) break;                                                                       \
            md = nm_;                                                                              \
            k_ = snprintf(md + len, cap - len, __VA_ARGS__);                                       \
        }                                                                                          \
        if (k_ > 0) len += (size_t)k_;                                                             \
    } while (0)
    P("# ASAM demo report\n\n");
    P("**Models: tiny random-weight reference models, not real SAM / Stable Diffusion / "
      "ControlNet weights.** They are the test fixtures shipped in `tests/data` (randomly "
      "initialised and perturbed weights with the official architectures at tiny widths):\n\n");
    P("- SAM: ViT image encoder 64 wide, 3 blocks (1024x1024 input), the standard prompt encoder "
      "and mask decoder (`%s`)\n",
      d->sam);
    P("- Stable Diffusion 1.5 structure: UNet with 32 base channels (3.3M parameters), VAE with "
      "32 channels (128x128 images, 16x16 latents), CLIP text encoder 64 wide with 2 layers "
      "(`%s`)\n",
      d->sd);
    P("- mask ControlNet matching that UNet (1.8M parameters, `%s`)\n\n", d->cn);
    P("Data: a synthetic SA-1B-style shard made by `asam demo` (ellipses, rectangles and polygons "
      "on textured backgrounds, one COCO-RLE mask per visible shape, captions naming the "
      "shapes): %d training images (`%s`, seed %d) and %d held-out images (`%s`, seed %d), "
      "%dx%d.\n\n",
      d->images, d->train, DEMO_TRAIN_SEED, d->heldout_n, d->heldout, DEMO_HELDOUT_SEED, DEMO_SIZE,
      DEMO_SIZE);
    asam_gen_opts go;
    gen_options(d, &go);
    P("Settings%s: DDIM %d steps (official 50), null-text %d inner steps (official 10), attack "
      "%d iterations (official 10), alpha %g, eps %g, momentum %g, guidance %g, %s gradient; "
      "token tuning %d epochs (official 20), lr 2e-3 with the slow-start/fast-decay schedule, "
      "cached embeddings (no augmentation).\n\n",
      d->quick ? " (--quick)" : "", go.steps, go.null_steps, go.iters, go.alpha, go.eps,
      go.momentum, go.cfg, go.grad == ASAM_GRAD_FULL ? "full-chain" : "skip (official code)",
      d->epochs);
    P("## Stages\n\n| stage | status | seconds |\n|---|---|---:|\n");
    for (int i = 0; i < d->n_st; i++)
        if (&d->st[i] != s) // this stage is still running
            P("| %s | %s | %.1f |\n", d->st[i].name, d->st[i].status, d->st[i].seconds);
    P("| report | written | - |\n\n");

    P("## Attack (generate)\n\nMean IoU of the original SAM with GT box prompts, per attack "
      "iteration (iteration 0 = the clean inverted latent); the latent with the lowest IoU is "
      "kept and regenerated with the mask ControlNet.\n\n");
    P("| image | masks | mIoU clean | mIoU adversarial | kept iteration | mIoU per iteration |\n"
      "|---|---:|---:|---:|---:|---|\n");
    int n_att = 0;
    double sum_c = 0, sum_a = 0;
    for (int i = 1; i <= d->images; i++) {
        attack_rec r;
        read_attack(d, i, &r);
        if (!r.ok) {
            P("| sa_%d | - | - | - | - | missing |\n", i);
            continue;
        }
        P("| sa_%d | %d | %.4f | %.4f | %d | ", i, r.n_masks, r.clean, r.adv, r.best);
        for (int k = 0; k < r.iters; k++) P("%s%.4f", k ? ", " : "", r.miou[k]);
        P(" |\n");
        n_att++, sum_c += r.clean, sum_a += r.adv;
    }
    if (n_att)
        P("| **mean** | | **%.4f** | **%.4f** | | |\n\n", sum_c / n_att, sum_a / n_att);
    else
        P("\n");

    P("The attack measures IoU on the floating-point regeneration inside its loop; the "
      "evaluation below reads the saved 8-bit PNG with the ASAM protocol, so its "
      "'adversarial' numbers differ slightly from these.\n\n");
    P("## Tuning\n\n");
    if (d->tune_epochs) {
        P("Mean training loss (BCE + Dice) per epoch run in this invocation: ");
        for (int e = 0; e < d->tune_epochs; e++) P("%s%.4f", e ? ", " : "", d->tune_loss[e]);
        P(".\n\nTuned checkpoint: `%s` (only `mask_decoder.iou_token` and "
          "`mask_decoder.mask_tokens` differ from the original).\n\n",
          d->tuned);
    } else {
        P("No tuning losses recorded.\n\n");
    }

    P("## Evaluation\n\nASAM protocol: 1024x1024 resize, one tight GT box per mask, single-mask "
      "output, mIoU / boundary IoU (dilation 0.02) averaged per image then over images.\n\n");
    if (d->have_cells) {
        P("| set | images | masks | original SAM mIoU | tuned SAM mIoU | original bIoU | tuned "
          "bIoU |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int k = 0; k < 3; k++)
            P("| %s | %d | %d | %.4f | %.4f | %.4f | %.4f |\n", set_names[k], d->cells[k].n_images,
              d->cells[k].n_masks, d->cells[k].miou, d->cells[3 + k].miou, d->cells[k].biou,
              d->cells[3 + k].biou);
        P("\n");
    } else {
        P("Not available (the stage did not finish; see Stages).\n\n");
    }

    P("## Panels\n\n");
    for (int i = 1; i <= n_panels; i++) {
        if (pan_ok[i])
            P("![sa_%d](report/sa_%d_panel.png)\n\n`report/sa_%d_panel.png`, left to right: clean "
              "synthetic image; adversarial image (regenerated from the attacked latent); GT "
              "masks on the clean image; original SAM's masks on the adversarial image (mIoU "
              "%.4f); tuned SAM's masks on the adversarial image (mIoU %.4f). Each mask has "
              "the same colour in every tile; predictions come from the SAM predictor with the "
              "GT boxes.\n\n",
              i, i, i, pan_b[i], pan_a[i]);
        if (plot_ok[i])
            P("![IoU per iteration](report/sa_%d_iou.png)\n\n`report/sa_%d_iou.png`: mean IoU "
              "(y from %.4f at the bottom to %.4f at the top, grid at quarters) per attack "
              "iteration (x: 0 = clean .. %d); the red point is the kept iteration (%d).\n\n",
              i, i, rec[i].lo, rec[i].hi, rec[i].iters - 1, rec[i].best);
    }
    if (held_ok)
        P("![held-out](report/heldout_1_panel.png)\n\n`report/heldout_1_panel.png`: held-out "
          "image; GT masks; original SAM (mIoU %.4f); tuned SAM (mIoU %.4f).\n\n",
          held_b, held_a);
    if (!have_models)
        P("Panels left out: the tuned SAM is not available.\n\n");
    else if (*panel_err)
        P("Some panels are missing: %s\n\n", panel_err);

    P("## What these numbers can and cannot show\n\n");
    P("- They show that every stage of the ASAM pipeline runs end to end in this C "
      "implementation: SA-1B-format data in, inversion, the latent attack with the mask "
      "ControlNet, token tuning, evaluation and checkpoints out, resumably and "
      "deterministically (a rerun reproduces the same files).\n");
    P("- They cannot show ASAM's published effect (+1.3 mIoU over 14 datasets with SAM ViT-B): "
      "the models have random weights, so SAM's masks are poor to begin with, the 'adversarial' "
      "images are regenerations by an untrained diffusion model (not photo-real), and the "
      "IoU changes measure how one random network reacts to another's outputs.\n");
    P("- A drop in IoU over the attack iterations shows that the attack optimises its objective "
      "on this SAM; a change after tuning on %d images over %d epochs is a change on a "
      "handful of synthetic masks, not evidence of better generalisation. With real weights "
      "(`asam generate --sd v1-5 ... --sam sam_vit_b`) the same commands produce the numbers "
      "that matter.\n",
      d->images, d->epochs);
#undef P
    snprintf(path, sizeof path, "%s/report.md", d->out);
    int rc = asam_write_file_atomic(path, md, len);
    free(md);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%s", path);
}

static void usage(FILE *f) {
    fprintf(f, "usage: asam demo [--out DIR] [--images N] [--quick] [--assets DIR]\n"
               "Runs ASAM end to end on a synthetic SA-1B-style shard with the tiny random-weight\n"
               "reference models: generate (invert + attack) -> tune -> eval, then writes\n"
               "DIR/report.md and PNG panels in DIR/report/. A rerun skips finished stages.\n"
               "  --out DIR       output folder (default asam_demo)\n"
               "  --images N      training images (default 4; --quick: 1)\n"
               "  --heldout N     held-out evaluation images (default: as --images)\n"
               "  --quick         one image, fewer steps and epochs (under a minute; for tests)\n"
               "  --steps N       DDIM steps (default 10; --quick 3)\n"
               "  --iters N       attack iterations (default 5; --quick 2)\n"
               "  --epochs N      tuning epochs (default 20; --quick 3)\n"
               "  --assets DIR    folder holding sam_tiny/ and sd_tiny/ (default: the source\n"
               "                  tree's tests/data)\n");
}

int cmd_demo(int argc, char **argv) {
    static demo d; // large; one per process
    memset(&d, 0, sizeof d);
    snprintf(d.out, sizeof d.out, "asam_demo");
    default_assets(d.assets, sizeof d.assets);
    int images = 0, heldout = 0, steps = 0, iters = 0, epochs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quick")) {
            d.quick = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "asam demo: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int *num = !strcmp(a, "--images")    ? &images
                   : !strcmp(a, "--heldout") ? &heldout
                   : !strcmp(a, "--steps")   ? &steps
                   : !strcmp(a, "--iters")   ? &iters
                   : !strcmp(a, "--epochs")  ? &epochs
                                             : NULL;
        if (num) {
            char *end;
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > 10000) {
                fprintf(stderr, "asam demo: %s: expected an integer in [1, 10000], got '%s'\n", a,
                        v);
                return 2;
            }
            *num = (int)x;
        } else if (!strcmp(a, "--out")) {
            snprintf(d.out, sizeof d.out, "%s", v);
        } else if (!strcmp(a, "--assets")) {
            snprintf(d.assets, sizeof d.assets, "%s", v);
        } else {
            fprintf(stderr, "asam demo: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    d.images = images ? images : d.quick ? 1 : 4;
    d.heldout_n = heldout ? heldout : d.images;
    d.steps = steps ? steps : d.quick ? 3 : 10;
    d.null_steps = d.quick ? 1 : 5;
    d.iters = iters ? iters : d.quick ? 2 : 5;
    d.epochs = epochs ? epochs : d.quick ? 3 : 20;
    if (d.epochs > 256) d.epochs = 256;
    snprintf(d.sam, sizeof d.sam, "%s/models/sam_tiny.pth", d.out);
    snprintf(d.sd, sizeof d.sd, "%s/models/sd_tiny.ckpt", d.out);
    snprintf(d.cn, sizeof d.cn, "%s/models/control_tiny.pth", d.out);
    snprintf(d.train, sizeof d.train, "%s/data/train", d.out);
    snprintf(d.heldout, sizeof d.heldout, "%s/data/heldout", d.out);
    snprintf(d.gen, sizeof d.gen, "%s/gen", d.out);
    snprintf(d.tune, sizeof d.tune, "%s/tune", d.out);
    snprintf(d.tuned, sizeof d.tuned, "%s/tune/sam_tuned.pth", d.out);
    snprintf(d.eval, sizeof d.eval, "%s/eval", d.out);
    if (asam_mkdirs(d.out)) {
        fprintf(stderr, "asam demo: %s\n", asam_last_error());
        return 1;
    }
    // Finished stages are only reusable with the same settings: remember them.
    char cfg_path[2400], cfg[256];
    snprintf(cfg_path, sizeof cfg_path, "%s/demo_config.txt", d.out);
    snprintf(cfg, sizeof cfg, "images %d heldout %d steps %d null_steps %d iters %d epochs %d\n",
             d.images, d.heldout_n, d.steps, d.null_steps, d.iters, d.epochs);
    if (asam_file_exists(cfg_path)) {
        char *old = NULL;
        size_t n = 0;
        if (asam_read_file(cfg_path, &old, &n) == 0 && strcmp(old, cfg) != 0) {
            fprintf(stderr,
                    "asam demo: %s was made with other settings (%.*s); use another --out or "
                    "remove it\n",
                    d.out, (int)(n && old[n - 1] == '\n' ? n - 1 : n), old);
            free(old);
            return 1;
        }
        free(old);
    } else if (asam_write_file_atomic(cfg_path, cfg, strlen(cfg))) {
        fprintf(stderr, "asam demo: %s\n", asam_last_error());
        return 1;
    }
    const double t0 = now_s();
    // Each stage needs the previous ones; a failed stage leaves the later ones out (listed
    // in the report) and the report is still written.
    int ok = stage_models(&d) == 0 && stage_data(&d) == 0 && stage_generate(&d) == 0 &&
             stage_tune(&d) == 0;
    if (ok) ok = stage_eval(&d) == 0;
    const char *all[5] = {"models", "data", "generate (invert + attack)", "tune (output tokens)",
                          "eval (original vs tuned SAM)"};
    for (int i = d.n_st; i < 5; i++) {
        stage *s = &d.st[d.n_st++];
        s->name = all[i];
        snprintf(s->status, sizeof s->status, "not run (an earlier stage failed)");
    }
    int rep = stage_report(&d);
    fprintf(stderr, "asam demo: %s in %.1f s; report: %s/report.md\n",
            ok && rep == 0 ? "finished" : "FAILED", now_s() - t0, d.out);
    if (!ok || rep) {
        for (int i = 0; i < d.n_st; i++)
            if (!d.st[i].ok && strncmp(d.st[i].status, "not run", 7))
                fprintf(stderr, "asam demo: %s: %s\n", d.st[i].name, d.st[i].status);
        return 1;
    }
    return 0;
}
