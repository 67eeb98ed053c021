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
#include "asam/world.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The demo models installed with asam: <data folder>/models (world/). */
void demo_default_assets(char *out, size_t n) {
    const char *data = asam_data_dir();
    snprintf(out, n, "%s/models", data ? data : "(asam data folder not found: set ASAM_DATA_DIR)");
}

/* The world's models are read where they are installed; this stage only checks that each is
 * there (the loaders check the rest when generate opens them). */
int stage_models(demo *d) {
    stage *s = stage_begin(d, "models");
    char unet[2400];
    snprintf(unet, sizeof unet, "%s/unet", d->sd);
    const char *need[3] = {d->sam, unet, d->cn};
    for (int i = 0; i < 3; i++)
        if (!asam_file_exists(need[i]))
            return stage_end(s, 0, "failed: %s: not found (use --assets DIR or ASAM_DATA_DIR)",
                             need[i]);
    return stage_end(s, 1, "the world's trained models in %s/world", d->assets);
}

int stage_data(demo *d) {
    stage *s = stage_begin(d, "data");
    char done[2400];
    snprintf(done, sizeof done, "%s/world.json", d->world); /* written when every set is */
    int pre = asam_file_exists(done);
    asam_world_opts wo;
    asam_world_opts_default(&wo);
    wo.out = d->world;
    wo.seed = DEMO_WORLD_SEED;
    wo.count = d->images;
    wo.eval_count = d->heldout_n;
    wo.size = DEMO_SIZE;
    wo.verbose = 0;
    if (asam_world_write(&wo)) return stage_end(s, 0, "failed: %s", asam_last_error());
    return stage_end(s, 1,
                     "%s%d training scenes + %d per held-out set (test and six unseen), %dx%d",
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

const char *const demo_set_names[DEMO_N_SETS] = {"training scenes, clean",
                                                 "training scenes, adversarial",
                                                 "test",
                                                 "unseen_texture",
                                                 "unseen_palette",
                                                 "unseen_lighting",
                                                 "unseen_blur_noise",
                                                 "unseen_shapes",
                                                 "unseen_clutter"};

int stage_eval(demo *d) {
    stage *s = stage_begin(d, "eval (original vs tuned SAM)");
    const int NC = 2 * DEMO_N_SETS;
    char cells_path[2400];
    snprintf(cells_path, sizeof cells_path, "%s/demo_cells.json", d->eval);
    if (asam_file_exists(cells_path)) {
        cJSON *j = demo_read_json(cells_path), *a = j ? cJSON_GetObjectItem(j, "cells") : NULL;
        if (a && cJSON_GetArraySize(a) == NC) {
            for (int i = 0; i < NC; i++) {
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
    char specs_buf[DEMO_N_SETS][4800], md[2400], js[2400];
    const char *specs[DEMO_N_SETS];
    snprintf(specs_buf[0], sizeof specs_buf[0], "sa1b:%s", d->train);
    snprintf(specs_buf[1], sizeof specs_buf[1], "adv:%s/adv:%s", d->gen, d->train);
    for (int k = 2; k < DEMO_N_SETS; k++)
        snprintf(specs_buf[k], sizeof specs_buf[k], "sa1b:%s/%s", d->world, demo_set_names[k]);
    for (int k = 0; k < DEMO_N_SETS; k++) specs[k] = specs_buf[k];
    snprintf(md, sizeof md, "%s/eval.md", d->eval);
    snprintf(js, sizeof js, "%s/eval.json", d->eval);
    const char *models[2] = {d->sam, d->tuned};
    asam_eval_opts eo;
    asam_eval_defaults(&eo);
    eo.models = models;
    eo.n_models = 2;
    eo.names = demo_set_names;
    eo.specs = specs;
    eo.n_data = DEMO_N_SETS;
    eo.md_path = md;
    eo.json_path = js;
    eo.progress = 1;
    if (asam_eval_run(&eo, d->cells)) return stage_end(s, 0, "failed: %s", asam_last_error());
    d->have_cells = 1;
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "cells");
    for (int i = 0; i < NC; i++) {
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
    const asam_eval_cell *o = d->cells, *t = d->cells + DEMO_N_SETS;
    return stage_end(s, 1, "mIoU on adversarial scenes %.4f -> %.4f, test %.4f -> %.4f", o[1].miou,
                     t[1].miou, o[2].miou, t[2].miou);
}
