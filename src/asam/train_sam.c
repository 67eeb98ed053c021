/* asam train-sam: SAM trained from scratch on an SA-1B folder (see asam/train_sam.h for the
 * recipe, the loss and the resume contract). */
#include "asam/train_sam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam/checkpoint.h"
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/train_state.h"
#include "asam/fileio.h"
#include "asam/optim.h"
#include "asam/provenance.h"
#include "asam/util.h"
#include "models/sam/sam_internal.h"

#define STATE_FORMAT "asam-sam-train-state-1"
#define MAX_PROMPTS 16

void asam_sam_train_opts_default(asam_sam_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->img_size = 128;
    o->embed_dim = 128;
    o->depth = 4;
    o->num_heads = 4;
    o->window = 4;
    o->n_global = 2;
    o->global_idx[0] = 1;
    o->global_idx[1] = 3;
    o->lr = 5e-4f;
    o->weight_decay = 0.01;
    o->warmup = 200;
    o->batch = 8;
    o->prompts = 4;
    o->point_share = 0.5f;
    o->steps = 1000;
    o->save_every = 50;
    o->verbose = 1;
}

int asam_sam_train_parse_global(asam_sam_train_opts *o, const char *list) {
    o->n_global = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= ASAM_SAM_MAX_DEPTH)
            return asam_error("train-sam: --global-attn '%s': expected block indexes like 1,3",
                              list);
        if (o->n_global == ASAM_SAM_MAX_DEPTH)
            return asam_error("train-sam: --global-attn '%s': too many indexes", list);
        o->global_idx[o->n_global++] = (int)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return asam_error("train-sam: --global-attn '%s': expected block indexes like 1,3",
                              list);
    }
    return 0;
}

/* "sa1b:DIR" -> DIR, for the provenance hash of the folder's files. */
static const char *data_dir(const char *spec) {
    return strncmp(spec, "sa1b:", 5) ? spec : spec + 5;
}

static int make_config(const asam_sam_train_opts *o, asam_sam_config *c) {
    memset(c, 0, sizeof *c);
    if (o->img_size < 16 || o->img_size > ASAM_SAM_IMG || o->img_size % 16)
        return asam_error("train-sam: --img-size %d must be a multiple of 16 in 16..1024",
                          o->img_size);
    if (o->embed_dim < 1 || o->num_heads < 1 || o->embed_dim % o->num_heads)
        return asam_error("train-sam: --embed-dim %d is not a multiple of --heads %d", o->embed_dim,
                          o->num_heads);
    if (o->depth < 1 || o->depth > ASAM_SAM_MAX_DEPTH)
        return asam_error("train-sam: --depth %d outside 1..%d", o->depth, ASAM_SAM_MAX_DEPTH);
    const int G = o->img_size / 16;
    if (o->window < 1 || o->window > G)
        return asam_error("train-sam: --window %d outside 1..%d (the token grid)", o->window, G);
    c->embed_dim = o->embed_dim;
    c->depth = o->depth;
    c->num_heads = o->num_heads;
    c->head_dim = o->embed_dim / o->num_heads;
    c->mlp_dim = 4 * o->embed_dim;
    c->window = o->window;
    c->img_size = o->img_size;
    for (int k = 0; k < o->n_global; k++) {
        int i = o->global_idx[k];
        if (i >= o->depth)
            return asam_error("train-sam: --global-attn block %d beyond --depth %d", i, o->depth);
        if (!c->is_global[i]) c->global_idx[c->n_global++] = i;
        c->is_global[i] = 1;
    }
    snprintf(c->variant, sizeof c->variant, "custom");
    return 0;
}

/* The options and inputs that determine the trajectory (not --steps: a run may be extended). */
static asam_prov *make_prov(const asam_sam_train_opts *o, int with_drop) {
    asam_prov *p = asam_prov_new("train-sam");
    if (!p) return NULL;
    char g[512] = "";
    for (int k = 0, len = 0; k < o->n_global; k++)
        len += snprintf(g + len, sizeof g - (size_t)len, "%s%d", k ? "," : "", o->global_idx[k]);
    asam_prov_int(p, "--img-size", o->img_size);
    asam_prov_int(p, "--embed-dim", o->embed_dim);
    asam_prov_int(p, "--depth", o->depth);
    asam_prov_int(p, "--heads", o->num_heads);
    asam_prov_int(p, "--window", o->window);
    asam_prov_str(p, "--global-attn", g);
    asam_prov_num(p, "--lr", o->lr);
    asam_prov_num(p, "--weight-decay", o->weight_decay);
    asam_prov_int(p, "--warmup", o->warmup);
    if (with_drop && o->lr_drop > 0) asam_prov_int(p, "--lr-drop", o->lr_drop);
    asam_prov_int(p, "--batch", o->batch);
    asam_prov_int(p, "--prompts", o->prompts);
    asam_prov_num(p, "--point-share", o->point_share);
    asam_prov_int(p, "--seed", (long long)o->seed);
    asam_prov_file(p, "data", data_dir(o->data));
    return p;
}

/* ---- sampling: pure functions of (seed, global sample index) ----------------------------------
 */

/* IoU of logits > 0 with a 0/1 mask over n pixels (1 when both are empty). */
static float iou_of(const float *logits, const float *gt, int64_t n) {
    int64_t inter = 0, uni = 0;
    for (int64_t i = 0; i < n; i++) {
        int a = logits[i] > 0.0f, b = gt[i] > 0.5f;
        inter += a & b;
        uni += a | b;
    }
    return uni ? (float)inter / (float)uni : 1.0f;
}

/* Prompts for the chosen masks of one image, in original pixels. */
// ref: facebookresearch/segment-anything paper §A "Training algorithm": box noise with std 10%
//   of the box side, at most 20 px; a point drawn uniformly from the GT mask
static void make_prompts(asam_rng *r, const asam_sample *s, const int *pick, int P, int is_point,
                         float *boxes, float *points) {
    const int w = s->w, h = s->h;
    const double cap = 20.0 * (w > h ? w : h) / 1024.0;
    for (int p = 0; p < P; p++) {
        const uint8_t *m = s->masks + (size_t)pick[p] * w * h;
        if (is_point) {
            int64_t cnt = 0;
            for (int64_t i = 0; i < (int64_t)w * h; i++) cnt += m[i] != 0;
            int64_t want = (int64_t)(asam_rng_u64(r) % (uint64_t)cnt), seen = 0, at = 0;
            for (int64_t i = 0; i < (int64_t)w * h; i++)
                if (m[i] && seen++ == want) {
                    at = i;
                    break;
                }
            points[2 * p] = (float)(at % w);
            points[2 * p + 1] = (float)(at / w);
        } else {
            float b[4];
            asam_mask_box_u8(m, w, h, b);
            double side[2] = {b[2] - b[0], b[3] - b[1]};
            for (int k = 0; k < 4; k++) {
                double d = 0.1 * side[k & 1] * asam_rng_normal(r);
                if (d > cap) d = cap;
                if (d < -cap) d = -cap;
                double v = b[k] + d, hi = (k & 1) ? h - 1 : w - 1;
                boxes[4 * p + k] = (float)(v < 0 ? 0 : v > hi ? hi : v);
            }
        }
    }
}

/* Forward + backward of one image (global sample k); gradients accumulate in the weights.
 * *loss_out receives the image's loss (before the 1/batch scaling). */
static int train_image(asam_ctx *ctx, const asam_sam_train_opts *o, asam_sam *m, asam_dataset *ds,
                       size_t idx, uint64_t k, float *loss_out) {
    asam_sample s;
    if (asam_dataset_get(ds, idx, 0, &s)) return -1;
    int rc = 0;
    if (s.n_masks < 1) {
        *loss_out = 0;
        asam_sample_free(&s);
        return 0; /* nothing to learn from */
    }
    asam_rng r;
    asam_rng_seed(&r, asam_mix64(o->seed * ASAM_SPLITMIX_GAMMA + k) ^ 0x53414D7472616Eull);
    int P = o->prompts < s.n_masks ? o->prompts : s.n_masks;
    int order[256], pick[MAX_PROMPTS];
    int nm = s.n_masks < 256 ? s.n_masks : 256;
    if (P > nm) P = nm;
    for (int i = 0; i < nm; i++) order[i] = i;
    for (int i = 0; i < P; i++) { /* partial Fisher-Yates: P distinct masks */
        int j = i + (int)(asam_rng_u64(&r) % (uint64_t)(nm - i));
        int t = order[i];
        order[i] = order[j], order[j] = t;
        pick[i] = order[i];
    }
    int is_point = asam_rng_uniform(&r) < o->point_share;
    float boxes[4 * MAX_PROMPTS], points[2 * MAX_PROMPTS], labels[MAX_PROMPTS];
    make_prompts(&r, &s, pick, P, is_point, boxes, points);
    for (int p = 0; p < P; p++) labels[p] = 1.0f;

    asam_ctx_set_grad(ctx, 1);
    asam_sam_sizes sz;
    asam_tensor *x = asam_sam_preprocess_at(ctx, &s.image, asam_sam_img_size(m), &sz);
    asam_tensor *emb = asam_sam_encode(ctx, m, x);
    float tb[4 * MAX_PROMPTS], tp[2 * MAX_PROMPTS];
    if (is_point)
        asam_sam_transform_coords(&sz, points, tp, P, 1);
    else
        asam_sam_transform_coords(&sz, boxes, tb, 2 * P, 1);
    asam_sam_prompt pr = {.batch = P};
    if (is_point)
        pr.n_points = 1, pr.points = tp, pr.labels = labels;
    else
        pr.boxes = tb;
    asam_tensor *sparse = NULL, *dense = NULL, *low = NULL, *iou = NULL, *logits = NULL;
    if (emb) rc = asam_sam_prompt_encode(ctx, m, &pr, &sparse, &dense);
    if (emb && !rc) rc = asam_sam_decode(ctx, m, emb, sparse, dense, is_point, &low, &iou, NULL);
    if (emb && !rc) logits = asam_sam_postprocess(ctx, low, &sz); /* (P, C, h, w) */
    const int64_t h = s.h, w = s.w, HW = h * w;
    asam_tensor *iou_t = logits ? asam_new(ctx, ASAM_SHAPE(P, logits->shape[1])) : NULL;
    asam_tensor *total = NULL;
    if (!iou_t || !asam_ctx_ok(ctx)) rc = -1;
    const int C = logits ? (int)logits->shape[1] : 0;
    for (int p = 0; p < P && !rc; p++) {
        /* GT as floats; one copy per prompt (a detached constant) */
        asam_tensor *g = asam_new(ctx, ASAM_SHAPE(1, 1, h, w));
        if (!g) {
            rc = -1;
            break;
        }
        const uint8_t *mk = s.masks + (size_t)pick[p] * HW;
        for (int64_t i = 0; i < HW; i++) g->data[i] = mk[i] ? 1.0f : 0.0f;
        asam_tensor *lp = asam_slice(ctx, logits, 0, p, p + 1);
        asam_tensor *best = NULL;
        for (int c = 0; c < C; c++) {
            asam_tensor *lc = asam_slice(ctx, lp, 1, c, c + 1); /* (1, 1, h, w) */
            if (!lc) break;
            iou_t->data[p * C + c] = iou_of(lc->data, g->data, HW);
            asam_tensor *l =
                asam_add(ctx, asam_bce_with_logits(ctx, lc, g), asam_dice_loss(ctx, lc, g, 1.0f));
            if (l && (!best || l->data[0] < best->data[0])) best = l; /* SAM: min over tokens */
        }
        if (!best) {
            rc = -1;
            break;
        }
        total = total ? asam_add(ctx, total, best) : best;
    }
    if (!rc) {
        asam_tensor *mask_loss = asam_scale(ctx, total, 1.0f / (float)P);
        asam_tensor *img_loss = asam_add(ctx, mask_loss, asam_mse(ctx, iou, iou_t));
        asam_tensor *loss = asam_scale(ctx, img_loss, 1.0f / (float)o->batch);
        if (!loss || asam_backward(ctx, loss)) rc = -1;
        if (!rc) *loss_out = img_loss->data[0];
    }
    if (rc || !asam_ctx_ok(ctx))
        rc = asam_error("train-sam: %s: %s", asam_dataset_item_name(ds, idx),
                        asam_ctx_error(ctx) ? asam_ctx_error(ctx) : asam_last_error());
    asam_sample_free(&s);
    return rc;
}

/* ---- files ------------------------------------------------------------------------------------
 */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Entries for every weight (names prefixed, or as they are when prefix is ""). */
static asam_st_entry *weight_entries(const asam_sam *m, const char *prefix, char ***names_out,
                                     size_t *n_out) {
    asam_tensor *const *params;
    const char *const *names;
    size_t n;
    asam_sam_params(m, &params, &names, &n);
    asam_st_entry *e = calloc(n + 2, sizeof *e);
    char **full = calloc(n ? n : 1, sizeof *full);
    if (!e || !full) {
        free(e), free(full);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(prefix) + strlen(names[i]) + 1;
        if (!(full[i] = malloc(len))) {
            for (size_t j = 0; j < i; j++) free(full[j]);
            free(full), free(e);
            return NULL;
        }
        snprintf(full[i], len, "%s%s", prefix, names[i]);
        e[i] = (asam_st_entry){.name = full[i],
                               .dtype = ASAM_DT_F32,
                               .ndim = params[i]->ndim,
                               .data = params[i]->data};
        for (int d = 0; d < params[i]->ndim; d++) e[i].shape[d] = params[i]->shape[d];
    }
    *names_out = full;
    *n_out = n;
    return e;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* The checkpoint in the official layout; a .safetensors also records the provenance and step. */
static int save_checkpoint(const char *path, const asam_sam *m, const char *prov_json,
                           int64_t step) {
    char **names;
    size_t n;
    asam_st_entry *e = weight_entries(m, "", &names, &n);
    if (!e) return asam_error("%s: out of memory", path);
    int rc;
    if (ends_with(path, ".safetensors")) {
        char s_step[32];
        snprintf(s_step, sizeof s_step, "%lld", (long long)step);
        const char *meta[6] = {"format", "pt", "provenance", prov_json, "train_steps", s_step};
        rc = asam_safetensors_write(path, e, n, meta, 3);
    } else {
        rc = asam_torch_save_write(path, e, n);
    }
    free_names(names, n);
    free(e);
    return rc;
}

static int state_save(const char *path, const asam_sam *m, const asam_optim *opt, int64_t step,
                      const char *prov_json) {
    char **names;
    size_t n;
    asam_st_entry *e = weight_entries(m, "param.", &names, &n);
    int64_t sn = asam_optim_state_numel(opt);
    float *mm = malloc((size_t)sn * sizeof *mm), *vv = malloc((size_t)sn * sizeof *vv);
    int rc = (!e || !mm || !vv) ? asam_error("%s: out of memory", path) : 0;
    if (!rc) {
        int64_t ost;
        asam_optim_get_state(opt, mm, vv, &ost);
        e[n] = (asam_st_entry){.name = "optim.m", .dtype = ASAM_DT_F32, .ndim = 1, .data = mm};
        e[n + 1] = (asam_st_entry){.name = "optim.v", .dtype = ASAM_DT_F32, .ndim = 1, .data = vv};
        e[n].shape[0] = e[n + 1].shape[0] = sn;
        char s_step[32], s_ostep[32];
        snprintf(s_step, sizeof s_step, "%lld", (long long)step);
        snprintf(s_ostep, sizeof s_ostep, "%lld", (long long)ost);
        const char *meta[8] = {"format",     STATE_FORMAT, "step",       s_step,
                               "optim_step", s_ostep,      "provenance", prov_json};
        rc = asam_safetensors_write(path, e, n + 2, meta, 4);
    }
    if (e) free_names(names, n);
    free(e), free(mm), free(vv);
    return rc;
}

static int state_load(const char *path, const asam_sam_train_opts *o, asam_sam *m, asam_optim *opt,
                      const asam_prov *prov, int64_t *step) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *fmt = asam_checkpoint_metadata(ck, "format");
    int rc = (!fmt || strcmp(fmt, STATE_FORMAT))
                 ? asam_error("%s: not a train-sam state file", path)
                 : 0;
    long long st = 0, ost = 0;
    if (!rc)
        rc = train_state_meta_ll(ck, "step", &st) || train_state_meta_ll(ck, "optim_step", &ost);
    if (!rc) {
        const char *rec = asam_checkpoint_metadata(ck, "provenance");
        if (asam_prov_check(prov, rec, path)) {
            /* made without --lr-drop, which lies ahead: the same schedule so far */
            char why[4400];
            snprintf(why, sizeof why, "%s", asam_last_error());
            asam_prov *plain = o->lr_drop > st ? make_prov(o, 0) : NULL;
            rc = plain && asam_prov_check(plain, rec, path) == 0 ? 0 : asam_error("%s", why);
            asam_prov_free(plain);
        }
    }
    asam_tensor *const *params;
    const char *const *names;
    size_t n;
    asam_sam_params(m, &params, &names, &n);
    if (!rc) rc = train_state_read_weights(ck, path, params, names, n, opt, ost);
    asam_checkpoint_close(ck);
    if (!rc) {
        /* the PE Gaussian came back from the file: refresh what is derived from it */
        sam_compute_dense_pe(m, m->pe.dense_pe->data, m->pe.key_pe->data);
        *step = st;
    }
    return rc;
}

/* ---- the job ----------------------------------------------------------------------------------
 */

static int check_opts(const asam_sam_train_opts *o) {
    if (!o->data || !o->out) return asam_error("train-sam: --data and --out are required");
    if (o->batch < 1 || o->batch > 1024)
        return asam_error("train-sam: --batch %d outside 1..1024", o->batch);
    if (o->prompts < 1 || o->prompts > MAX_PROMPTS)
        return asam_error("train-sam: --prompts %d outside 1..%d", o->prompts, MAX_PROMPTS);
    if (!(o->lr > 0)) return asam_error("train-sam: --lr must be positive");
    if (o->steps < 0) return asam_error("train-sam: --steps must not be negative");
    if (!(o->point_share >= 0 && o->point_share <= 1))
        return asam_error("train-sam: --point-share must be in [0, 1]");
    return 0;
}

int asam_train_sam(const asam_sam_train_opts *o) {
    asam_sam_config cfg;
    if (check_opts(o) || make_config(o, &cfg)) return -1;
    char state_path[4096];
    snprintf(state_path, sizeof state_path, "%s.state.safetensors", o->out);
    if (o->state) snprintf(state_path, sizeof state_path, "%s", o->state);
    char spec[4096];
    snprintf(spec, sizeof spec, "%s%s", strchr(o->data, ':') ? "" : "sa1b:", o->data);

    asam_dataset *ds = NULL;
    asam_sam *m = NULL;
    asam_optim *opt = NULL;
    asam_ctx *ctx = NULL;
    asam_prov *prov = NULL;
    char *prov_json = NULL;
    size_t *perm = NULL, N = 0;
    asam_tensor **train = NULL;
    int rc = asam_dataset_open(spec, &ds);
    if (!rc && (N = asam_dataset_count(ds)) == 0)
        rc = asam_error("train-sam: %s holds no annotated images", o->data);
    if (!rc && !(perm = malloc(N * sizeof *perm))) rc = asam_error("train-sam: out of memory");
    if (!rc && !(prov = make_prov(o, 1))) rc = asam_error("train-sam: out of memory");
    if (!rc && !(prov_json = asam_prov_json(prov))) rc = asam_error("train-sam: out of memory");
    if (!rc) rc = asam_sam_init_random(&cfg, o->seed, &m);
    size_t n_train = 0;
    if (!rc) {
        asam_tensor *const *params;
        const char *const *names;
        size_t n;
        asam_sam_params(m, &params, &names, &n);
        train = calloc(n, sizeof *train);
        if (!train) rc = asam_error("train-sam: out of memory");
        for (size_t i = 0; i < n && !rc; i++) {
            if (params[i] == m->pe.pe_gaussian) continue; /* a buffer, not a parameter */
            asam_set_requires_grad(params[i], 1);
            train[n_train++] = params[i];
        }
    }
    if (!rc) {
        opt = asam_optim_new(ASAM_ADAMW, train, (int)n_train, o->lr, 0.9, 0.999, 1e-8,
                             o->weight_decay);
        ctx = asam_ctx_new(0);
        if (!opt || !ctx) rc = asam_error("train-sam: out of memory");
    }
    int64_t step = 0;
    const int64_t total = o->steps;
    if (!rc && o->resume && asam_file_exists(state_path)) {
        rc = state_load(state_path, o, m, opt, prov, &step);
        if (!rc && o->verbose)
            fprintf(stderr, "train-sam: resumed from %s at step %lld/%lld\n", state_path,
                    (long long)step, (long long)total);
    }
    uint64_t perm_epoch = UINT64_MAX;
    const int64_t step0 = step;
    double loss_avg = 0;
    int stopped = 0;
    asam_progress bar;
    asam_progress_start(&bar, "train-sam", "step", total > step ? total : step, ASAM_PROGRESS_LOG);
    bar.word = "step";
    bar.skipped = step0;
    bar.every = total / 20 > 0 ? total / 20 : 1;
    while (!rc && step < total) {
        asam_optim_zero_grad(opt);
        double lv = 0;
        for (int b = 0; b < o->batch && !rc; b++) {
            uint64_t k = (uint64_t)step * (uint64_t)o->batch + (uint64_t)b;
            size_t idx = train_sample_index(o->seed, N, k, perm, &perm_epoch);
            asam_mark mk = asam_ctx_mark(ctx);
            float li = 0;
            rc = train_image(ctx, o, m, ds, idx, k, &li);
            asam_ctx_release(ctx, mk);
            asam_ctx_clear_error(ctx);
            lv += li / o->batch;
        }
        if (rc) break;
        if (!isfinite(lv)) {
            rc = asam_error("train-sam: step %lld: loss is %g", (long long)step, lv);
            break;
        }
        // ref: linear warm-up as SAM's training (paper §A: 250 iterations), then constant
        opt->lr = o->warmup > 0 && step < o->warmup ? o->lr * (float)(step + 1) / (float)o->warmup
                                                    : o->lr;
        asam_optim_step(opt);
        if (o->losses) o->losses[step] = (float)lv;
        loss_avg = step == step0 ? lv : 0.95 * loss_avg + 0.05 * lv;
        step++;
        if (o->verbose) asam_progress_update(&bar, step, "loss %.4f (avg %.4f)", lv, loss_avg);
        int stop = o->stop_after > 0 && step >= o->stop_after && step < total;
        if (stop || step == total || (o->save_every > 0 && step % o->save_every == 0))
            rc = state_save(state_path, m, opt, step, prov_json);
        if (stop) {
            stopped = 1;
            break;
        }
    }
    asam_progress_end(&bar);
    if (!rc && !stopped) rc = save_checkpoint(o->out, m, prov_json, step);
    if (!rc && !stopped && o->verbose)
        fprintf(stderr, "train-sam: wrote %s (img %d, embed %d, depth %d, %lld steps), state %s\n",
                o->out, cfg.img_size, cfg.embed_dim, cfg.depth, (long long)step, state_path);
    free(train);
    free(perm);
    free(prov_json);
    asam_prov_free(prov);
    if (ctx) asam_ctx_free(ctx);
    asam_optim_free(opt);
    asam_sam_free(m);
    asam_dataset_close(ds);
    return rc ? -1 : stopped;
}

/* ---- evaluation -------------------------------------------------------------------------------
 */

int asam_sam_box_miou(const asam_sam *m, const char *data, int max_images, double *miou,
                      int *n_masks) {
    *miou = 0;
    *n_masks = 0;
    char spec[4096];
    snprintf(spec, sizeof spec, "%s%s", strchr(data, ':') ? "" : "sa1b:", data);
    asam_dataset *ds;
    if (asam_dataset_open(spec, &ds)) return -1;
    asam_sam_predictor pred;
    int rc = asam_sam_predictor_init(&pred, m);
    size_t N = asam_dataset_count(ds);
    if (max_images > 0 && (size_t)max_images < N) N = (size_t)max_images;
    double sum = 0;
    long cnt = 0;
    for (size_t i = 0; i < N && !rc; i++) {
        asam_sample s;
        if ((rc = asam_dataset_get(ds, i, 0, &s))) break;
        if (s.n_masks > 0) rc = asam_sam_predictor_set_image(&pred, &s.image);
        float *boxes = s.n_masks > 0 ? malloc(sizeof(float) * 4 * (size_t)s.n_masks) : NULL;
        if (s.n_masks > 0 && !boxes) rc = asam_error("eval: out of memory");
        for (int k = 0; k < s.n_masks && !rc; k++)
            asam_mask_box_u8(s.masks + (size_t)k * s.w * s.h, s.w, s.h, boxes + 4 * k);
        asam_sam_result res;
        if (!rc && s.n_masks > 0) {
            asam_sam_query q = {.batch = s.n_masks, .boxes = boxes};
            rc = asam_sam_predictor_predict(&pred, &q, 0, &res);
            const int64_t HW = (int64_t)s.w * s.h;
            for (int k = 0; !rc && k < s.n_masks; k++) {
                const uint8_t *a = res.masks + k * HW, *b = s.masks + k * HW;
                int64_t inter = 0, uni = 0;
                for (int64_t p = 0; p < HW; p++) {
                    inter += a[p] && b[p];
                    uni += a[p] || b[p];
                }
                sum += uni ? (double)inter / (double)uni : 1.0;
                cnt++;
            }
            if (!rc) asam_sam_result_free(&res);
        }
        free(boxes);
        asam_sample_free(&s);
    }
    asam_sam_predictor_free(&pred);
    asam_dataset_close(ds);
    if (rc) return -1;
    *miou = cnt ? sum / (double)cnt : 0;
    *n_masks = (int)cnt;
    return 0;
}
