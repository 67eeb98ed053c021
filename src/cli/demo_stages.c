/* The stages of `asam demo` before the report: models, data, generate, tune, eval. Each
 * keeps its outputs; a rerun skips what is finished (see cmd_demo.c). */
#include "cli/cli_util.h"
#include "cli/demo.h"
#include "asam/data_dir.h"
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
#include <zlib.h>

stage *stage_begin(demo *d, const char *name) {
    stage *s = &d->st[d->n_st++];
    s->name = name;
    s->ok = 0;
    s->seconds = asam_now_s();
    fprintf(stderr, "asam demo: == %s ==\n", name);
    return s;
}
int stage_end(stage *s, int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->status, sizeof s->status, fmt, ap);
    va_end(ap);
    s->ok = ok;
    s->seconds = asam_now_s() - s->seconds;
    fprintf(stderr, "asam demo: %s: %s (%.1f s)\n", s->name, s->status, s->seconds);
    return ok ? 0 : -1;
}

/* The demo models installed with asam: <data folder>/models (sam_tiny/, sd_tiny/). */
void demo_default_assets(char *out, size_t n) {
    const char *data = asam_data_dir();
    snprintf(out, n, "%s/models", data ? data : "(asam data folder not found: set ASAM_DATA_DIR)");
}

/* src (or src.gz, gunzipped) -> dst, atomically; skipped when dst exists. */
static int install_model(const char *assets, const char *rel, const char *dst) {
    if (asam_file_exists(dst)) return 0;
    char src[4096];
    snprintf(src, sizeof src, "%s/%s", assets, rel);
    if (!asam_file_exists(src)) snprintf(src, sizeof src, "%s/%s.gz", assets, rel);
    if (!asam_file_exists(src))
        return asam_error("%s/%s(.gz): not found (use --assets DIR or ASAM_DATA_DIR)", assets, rel);
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

int stage_models(demo *d) {
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

int stage_data(demo *d) {
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

void demo_gen_options(const demo *d, asam_gen_opts *go) {
    asam_gen_opts_default(go);
    go->size = DEMO_SIZE;
    go->steps = d->steps;
    go->null_steps = d->null_steps;
    go->iters = d->iters;
    go->verbose = 1;
}

int stage_generate(demo *d) {
    stage *s = stage_begin(d, "generate (invert + attack)");
    asam_gen_models gm;
    if (asam_gen_models_load(d->sd, d->cn, d->sam, &gm))
        return stage_end(s, 0, "failed: %s", asam_last_error());
    asam_gen_opts go;
    demo_gen_options(d, &go);
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

int demo_write_json(const char *path, cJSON *j) {
    char *txt = cJSON_Print(j);
    int rc = txt ? asam_write_file_atomic(path, txt, strlen(txt)) : asam_error("out of memory");
    free(txt);
    return rc;
}

cJSON *demo_read_json(const char *path) {
    char *txt = NULL;
    size_t n = 0;
    if (asam_read_file(path, &txt, &n)) return NULL;
    cJSON *j = cJSON_ParseWithLength(txt, n);
    free(txt);
    return j;
}

int stage_tune(demo *d) {
    stage *s = stage_begin(d, "tune (output tokens)");
    char losses[2400];
    snprintf(losses, sizeof losses, "%s/demo_tune.json", d->tune);
    if (asam_file_exists(d->tuned) && asam_file_exists(losses)) {
        cJSON *j = demo_read_json(losses), *a = j ? cJSON_GetObjectItem(j, "epoch_loss") : NULL;
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
    to.keep_last = 1; /* a handful of images: step on every one (official drops the rest) */
    to.augment = 0;   // cached image embeddings: the encoder is frozen anyway
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
    int rc = demo_write_json(losses, j);
    cJSON_Delete(j);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "%d epochs on %d adversarial images (epochs %d..%d run now)",
                     rep.epochs_done, rep.n_images, rep.start_epoch + 1, rep.epochs_done);
}

const char *const demo_set_names[3] = {"training images, clean", "training images, adversarial",
                                       "held-out images, clean"};

int stage_eval(demo *d) {
    stage *s = stage_begin(d, "eval (original vs tuned SAM)");
    char cells_path[2400];
    snprintf(cells_path, sizeof cells_path, "%s/demo_cells.json", d->eval);
    if (asam_file_exists(cells_path)) {
        cJSON *j = demo_read_json(cells_path), *a = j ? cJSON_GetObjectItem(j, "cells") : NULL;
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
    eo.names = demo_set_names;
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
    int rc = demo_write_json(cells_path, j);
    cJSON_Delete(j);
    if (rc) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1, "mIoU on adversarial images %.4f -> %.4f, held-out %.4f -> %.4f",
                     d->cells[1].miou, d->cells[4].miou, d->cells[2].miou, d->cells[5].miou);
}
