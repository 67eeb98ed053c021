/* The dataset driver: invert + attack every image of an SA-1B folder (or one shard of it),
 * resumable (finished outputs are skipped; each is written atomically), with progress, ETA
 * and a summary of mean IoU before / after. (The captions file is read by captions.c.) */
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/provenance.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- one image ------------------------------------------------------------------------------ */
static void stem_of(const char *path, char *stem, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(stem, n, "%s", b);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = 0;
}

static int read_record(const char *path, float *before, float *after) {
    char *buf;
    size_t n;
    if (asam_read_file(path, &buf, &n)) return -1;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    const cJSON *b = j ? cJSON_GetObjectItemCaseSensitive(j, "miou_clean") : NULL;
    const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, "miou_adv") : NULL;
    /* a NaN IoU (an empty union, as the official compute_iou) is written as null */
    int rc = (cJSON_IsNumber(b) || cJSON_IsNull(b)) && (cJSON_IsNumber(a) || cJSON_IsNull(a))
                 ? 0
                 : asam_error("%s: not an attack record", path);
    if (!rc) {
        if (before) *before = cJSON_IsNumber(b) ? (float)b->valuedouble : NAN;
        if (after) *after = cJSON_IsNumber(a) ? (float)a->valuedouble : NAN;
    }
    cJSON_Delete(j);
    return rc;
}

/* What determines an inversion: the models, the image, its control map, the prompt and the
 * inversion options. */
static asam_prov *prov_invert(const asam_gen_models *m, const asam_gen_opts *o,
                              const char *image_path, const char *ann_path, const char *cmap,
                              const char *prompt) {
    asam_prov *p = asam_prov_new("invert");
    asam_prov_file(p, "--sd", m->sd_path);
    asam_prov_file(p, "--controlnet", m->controlnet ? m->controlnet_path : NULL);
    asam_prov_file(p, "image", image_path);
    asam_prov_file(p, "control map", m->controlnet ? (cmap ? cmap : ann_path) : NULL);
    asam_prov_str(p, "prompt", prompt ? prompt : "");
    asam_prov_int(p, "--size", o->size);
    asam_prov_int(p, "--steps", o->steps);
    asam_prov_num(p, "--cfg", o->cfg);
    asam_prov_num(p, "--control-scale", o->control_scale);
    asam_prov_int(p, "--null-steps", o->null_steps);
    asam_prov_num(p, "--null-lr", o->null_lr);
    asam_prov_num(p, "null_eps", o->null_eps);
    asam_prov_num(p, "null_eps_slope", o->null_eps_slope);
    return p;
}

/* What determines an attack: its inversion's provenance plus SAM, the attack ControlNet, the
 * annotations and the attack options. */
static asam_prov *prov_attack(const asam_gen_models *m, const asam_gen_opts *o,
                              const asam_prov *inv, const char *ann_path, const char *cmap,
                              const char *masks_dir) {
    asam_prov *p = asam_prov_new("attack");
    char h[17];
    asam_prov_hash(inv, h);
    asam_prov_str(p, "inversion", h);
    asam_prov_file(p, "--sam", m->sam_path);
    asam_prov_file(p, "--attack-controlnet",
                   m->controlnet_adv ? m->controlnet_adv_path
                                     : (m->controlnet ? m->controlnet_path : NULL));
    asam_prov_file(p, "annotations", ann_path);
    asam_prov_file(p, "mask PNGs", masks_dir);
    asam_prov_file(p, "control map", m->controlnet ? (cmap ? cmap : ann_path) : NULL);
    asam_prov_int(p, "--iters", o->iters);
    asam_prov_num(p, "--alpha", o->alpha);
    asam_prov_num(p, "--eps", o->eps);
    asam_prov_num(p, "momentum", o->momentum);
    asam_prov_int(p, "--max-boxes", o->max_boxes);
    asam_prov_str(p, "--grad", o->grad == ASAM_GRAD_FULL ? "full" : "skip");
    asam_prov_num(p, "w_bce", o->w_bce);
    asam_prov_num(p, "w_dice", o->w_dice);
    asam_prov_num(p, "w_l2", o->w_l2);
    return p;
}

/* The attack's labels: the official per-mask PNGs IMAGE_DIR/STEM/segmentation_j.png
 * (j < min(max_boxes, count), grad_null_text_inversion_edit.py:857-864) when that folder
 * exists, else the SA-1B annotations. */
static int attack_image(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                        const char *image_path, const char *stem, const asam_image *img,
                        const asam_sa1b_image *ann, asam_tensor *hint, const asam_inversion *inv,
                        asam_attack_result *res) {
    char dir[4200], p[4400];
    const char *sl = strrchr(image_path, '/');
    snprintf(dir, sizeof dir, "%.*s%s", sl ? (int)(sl - image_path + 1) : 0, image_path, stem);
    snprintf(p, sizeof p, "%s/segmentation_0.png", dir);
    if (!asam_file_exists(p)) return asam_attack(ctx, m, o, img, ann, hint, inv, res);
    int n = 0;
    while (n < o->max_boxes) {
        snprintf(p, sizeof p, "%s/segmentation_%d.png", dir, n);
        if (!asam_file_exists(p)) break;
        n++;
    }
    asam_image *masks = calloc((size_t)n, sizeof *masks);
    int rc = masks ? 0 : asam_error("%s: out of memory", dir);
    for (int j = 0; j < n && !rc; j++) {
        snprintf(p, sizeof p, "%s/segmentation_%d.png", dir, j);
        rc = asam_image_read(p, 1, &masks[j]); /* .convert('L') */
    }
    asam_attack_target tg = {0};
    if (!rc) rc = asam_attack_target_from_masks_at(masks, n, asam_gen_models_img_size(m), &tg);
    if (!rc && o->w_l2 != 0) rc = asam_attack_target_set_reference(&tg, img);
    if (!rc) rc = asam_attack_target_run(ctx, m, o, img, &tg, hint, inv, res);
    asam_attack_target_free(&tg);
    for (int j = 0; j < n && masks; j++) asam_image_free(&masks[j]);
    free(masks);
    return rc;
}

static char *slurp(const char *path) {
    char *buf;
    size_t n;
    return asam_read_file(path, &buf, &n) ? NULL : buf;
}

int asam_generate_image(const asam_gen_models *m, const asam_gen_opts *o, const char *image_path,
                        const char *ann_path, const char *prompt, const char *out_dir, int mode,
                        float *miou_before, float *miou_after, int *did_work) {
    if (miou_before) *miou_before = NAN;
    if (miou_after) *miou_after = NAN;
    if (did_work) *did_work = 0;
    char stem[512], inv_dir[4096], adv_dir[4096], inv_path[4700], png[4700], rec[4700];
    stem_of(image_path, stem, sizeof stem);
    snprintf(inv_dir, sizeof inv_dir, "%s/inv", out_dir);
    snprintf(adv_dir, sizeof adv_dir, "%s/adv", out_dir);
    snprintf(inv_path, sizeof inv_path, "%s/%s.safetensors", inv_dir, stem);
    snprintf(png, sizeof png, "%s/%s.%s", adv_dir, stem, o->adv_png ? "png" : "jpg");
    snprintf(rec, sizeof rec, "%s/%s.attack.json", adv_dir, stem);
    int want_inv = (mode & ASAM_GEN_INVERT) != 0, want_att = (mode & ASAM_GEN_ATTACK) != 0;
    char cmap[4700];
    snprintf(cmap, sizeof cmap, "%s/%s.png", o->control_dir ? o->control_dir : "", stem);
    asam_prov *pi = prov_invert(m, o, image_path, ann_path, o->control_dir ? cmap : NULL, prompt);
    char mdir[4200];
    const char *isl = strrchr(image_path, '/');
    snprintf(mdir, sizeof mdir, "%.*s%s", isl ? (int)(isl - image_path + 1) : 0, image_path, stem);
    asam_prov *pa = prov_attack(m, o, pi, ann_path, o->control_dir ? cmap : NULL, mdir);
    char *pi_js = asam_prov_json(pi), *pa_js = asam_prov_json(pa);
    asam_prov_free(pa);
    int prc = 0, redo_inv = 0;
    if (want_att && asam_file_exists(png) && asam_file_exists(rec)) {
        char *txt = slurp(rec);
        asam_prov *again = prov_attack(m, o, pi, ann_path, o->control_dir ? cmap : NULL, mdir);
        int same = txt && asam_prov_check(again, txt, rec) == 0;
        asam_prov_free(again);
        free(txt);
        if (!same && !o->force && asam_file_exists(inv_path)) {
            /* name the root cause: an inversion option rather than its hash */
            char keep[1024];
            snprintf(keep, sizeof keep, "%s", asam_last_error());
            asam_inversion old;
            if (asam_inversion_load(inv_path, &old) == 0) {
                if (!asam_prov_check(pi, old.provenance, inv_path)) asam_error("%s", keep);
                asam_inversion_free(&old);
            } else {
                asam_error("%s", keep);
            }
        }
        if (same || !o->force) { /* finished before, or recorded with other options */
            prc = same ? read_record(rec, miou_before, miou_after) : -1;
            asam_prov_free(pi);
            free(pi_js);
            free(pa_js);
            return prc;
        }
    }
    int have_inv = asam_file_exists(inv_path);
    if (have_inv) { /* an inversion made with other options is never reused silently */
        asam_inversion old;
        if (asam_inversion_load(inv_path, &old) == 0) {
            if (asam_prov_check(pi, old.provenance, inv_path)) {
                if (!o->force) prc = -1;
                redo_inv = 1;
            }
            asam_inversion_free(&old);
        } else if (!o->force) {
            prc = -1;
        } else {
            redo_inv = 1;
        }
    }
    asam_prov_free(pi);
    if (prc) {
        free(pi_js);
        free(pa_js);
        return -1;
    }
    if (redo_inv) {
        if (!want_inv) {
            free(pi_js);
            free(pa_js);
            return asam_error("%s: made with other options; run asam invert --force first",
                              inv_path);
        }
        have_inv = 0;
    }
    if (!want_att && have_inv) {
        free(pi_js);
        free(pa_js);
        return 0;
    }
    if (!want_inv && !have_inv) {
        free(pi_js);
        free(pa_js);
        return asam_error("%s: no inversion (run asam invert first)", inv_path);
    }
    if (asam_mkdirs(want_att ? adv_dir : inv_dir) || (want_inv && asam_mkdirs(inv_dir))) {
        free(pi_js);
        free(pa_js);
        return -1;
    }

    asam_image img = {0};
    asam_sa1b_image ann = {0};
    asam_inversion inv = {0};
    asam_attack_result res = {0};
    asam_ctx *ctx = asam_ctx_new(0);
    int rc = ctx ? 0 : asam_error("generate: cannot reserve an arena");
    if (!rc) rc = asam_image_read(image_path, 3, &img);
    if (!rc) rc = asam_sa1b_read(ann_path, &ann);
    asam_tensor *hint = NULL, *hint_adv = NULL;
    if (!rc && m->controlnet) {
        /* the control map: pre-rendered (official control_mask_dir/sa_N.png) or rendered
         * from the annotations; resized as the official inversion (float) and attack (uint8) */
        asam_image map = {0};
        const char *cpath = cmap;
        rc = o->control_dir ? asam_image_read(cpath, 3, &map) : asam_mask_map(&ann, &map);
        if (!rc) {
            hint = asam_control_hint(ctx, &map, o->size, 1);
            hint_adv = asam_control_hint(ctx, &map, o->size, 0);
            if (!hint || !hint_adv)
                rc = asam_error("%s: %s", o->control_dir ? cpath : ann_path, asam_ctx_error(ctx));
        }
        asam_image_free(&map);
    }
    if (!rc && have_inv) {
        rc = asam_inversion_load(inv_path, &inv);
        if (!rc && (inv.size != o->size || inv.steps != o->steps))
            rc = asam_error("%s: inversion made with size %d / %d steps, options say %d / %d",
                            inv_path, inv.size, inv.steps, o->size, o->steps);
    } else if (!rc) {
        rc = asam_invert(ctx, m, o, &img, hint, prompt, &inv);
        if (!rc) {
            const char *b = strrchr(image_path, '/');
            inv.image = strdup(b ? b + 1 : image_path);
            inv.provenance = strdup(pi_js ? pi_js : "");
            rc = asam_inversion_save(inv_path, &inv);
            if (!rc && did_work) *did_work = 1;
        }
        if (!rc) { /* attack from the stored copy, so a resumed run sees the same numbers */
            asam_inversion_free(&inv);
            rc = asam_inversion_load(inv_path, &inv);
        }
    }
    if (!rc && want_att) {
        asam_gen_models ma = *m; /* the attack's ControlNet (official _mask_adv) */
        if (m->controlnet_adv) ma.controlnet = m->controlnet_adv;
        rc = attack_image(ctx, &ma, o, image_path, stem, &img, &ann, hint_adv, &inv, &res);
        char name[600];
        const char *b = strrchr(image_path, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : image_path);
        if (!rc) rc = asam_attack_write_prov(png, rec, name, o, &res, pa_js);
        if (!rc) {
            if (did_work) *did_work = 1;
            if (miou_before) *miou_before = res.miou[0];
            if (miou_after) *miou_after = res.miou[res.best];
        }
    }
    if (rc && !strstr(asam_last_error(), stem)) { /* name the image */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", asam_last_error());
        asam_error("%s: %s", image_path, msg);
    }
    free(pi_js);
    free(pa_js);
    asam_attack_result_free(&res);
    asam_inversion_free(&inv);
    asam_sa1b_free(&ann);
    asam_image_free(&img);
    if (ctx) asam_ctx_free(ctx);
    return rc;
}

/* ---- dataset ---------------------------------------------------------------------------- */
typedef struct {
    char *stem;
    long long num; /* N of sa_N, or -1 */
} entry;

static int by_num(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->num != y->num) return x->num < y->num ? -1 : 1;
    return strcmp(x->stem, y->stem);
}

/* stems with both STEM.jpg (or .png) and STEM.json, sorted by N of sa_N then name */
static int list_dataset(const char *dir, entry **out, size_t *n_out, char ***ext_out) {
    DIR *d = opendir(dir);
    if (!d) return asam_error("%s: cannot open folder", dir);
    size_t n = 0, cap = 0;
    entry *es = NULL;
    char **exts = NULL;
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t L = strlen(nm);
        const char *ext = NULL;
        if (L > 4 && (!strcmp(nm + L - 4, ".jpg") || !strcmp(nm + L - 4, ".png"))) ext = nm + L - 4;
        if (L > 5 && !strcmp(nm + L - 5, ".jpeg")) ext = nm + L - 5;
        if (!ext) continue;
        char js[4400];
        snprintf(js, sizeof js, "%s/%.*s.json", dir, (int)(ext - nm), nm);
        if (!asam_file_exists(js)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            entry *e2 = realloc(es, cap * sizeof *e2);
            char **x2 = e2 ? realloc(exts, cap * sizeof *x2) : NULL;
            if (e2) es = e2;
            if (x2) exts = x2;
            if (!e2 || !x2) {
                rc = asam_error("%s: out of memory", dir);
                break;
            }
        }
        es[n].stem = strndup(nm, (size_t)(ext - nm));
        long long num = -1;
        char tail;
        if (sscanf(es[n].stem, "sa_%lld%c", &num, &tail) != 1) num = -1;
        es[n].num = num;
        exts[n] = strdup(ext);
        n++;
    }
    closedir(d);
    /* sort entries and their extensions together */
    for (size_t i = 0; i < n; i++) {
        char *tmp = malloc(strlen(es[i].stem) + strlen(exts[i]) + 2);
        sprintf(tmp, "%s%c%s", es[i].stem, 1, exts[i]);
        free(es[i].stem);
        free(exts[i]);
        es[i].stem = tmp;
    }
    qsort(es, n, sizeof *es, by_num);
    for (size_t i = 0; i < n; i++) {
        char *sep = strchr(es[i].stem, 1);
        exts[i] = strdup(sep + 1);
        *sep = 0;
    }
    *out = es;
    *n_out = n;
    *ext_out = exts;
    return rc;
}

static void free_listing(entry *es, char **exts, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(es[i].stem);
        free(exts[i]);
    }
    free(es);
    free(exts);
}

/* OUT/summary.json (or summary.I-of-N.json for a shard): counts and mean IoU before/after. */
static int write_summary(const asam_generate_cfg *cfg, const asam_gen_opts *o,
                         const asam_generate_stats *st, int ns) {
    char sp[4400];
    if (ns > 1)
        snprintf(sp, sizeof sp, "%s/summary.%d-of-%d.json", cfg->out, cfg->shard, ns);
    else
        snprintf(sp, sizeof sp, "%s/summary.json", cfg->out);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "images", st->total);
    cJSON_AddNumberToObject(j, "attacked", st->attacked);
    cJSON_AddStringToObject(j, "grad", o->grad == ASAM_GRAD_FULL ? "full" : "skip");
    if (st->attacked) {
        cJSON_AddNumberToObject(j, "miou_before", st->miou_before);
        cJSON_AddNumberToObject(j, "miou_after", st->miou_after);
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = !s || asam_write_file_atomic(sp, s, strlen(s)) ? -1 : 0;
    free(s);
    if (st->attacked)
        fprintf(stderr, "generate: %d images, mean IoU %.4f -> %.4f\n", st->attacked,
                st->miou_before, st->miou_after);
    return rc;
}

/* A killed process leaves its PATH.tmp.PID behind (fileio writes there, then renames): drop
 * them before a run starts, so a rerun after a kill ends with exactly the files of a clean run. */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *t = strstr(de->d_name, ".tmp.");
        if (!t || !t[5] || strspn(t + 5, "0123456789") != strlen(t + 5)) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

/* Progress of the whole job, shown by rank 0 as each image is finished on any rank. */
typedef struct {
    asam_progress bar;
    int seen, verbose;
    const entry *es;
    char **exts;
    const size_t *idx; /* queue item -> dataset index */
} gen_progress;

static void on_done(void *user, const asam_dist_done *d) {
    gen_progress *g = user;
    g->seen++;
    if (!d->did_work) asam_progress_skip(&g->bar);
    char who[32] = "";
    if (asam_dist_size() > 1) snprintf(who, sizeof who, " (rank %d)", d->rank);
    size_t i = g->idx[d->item];
    if (d->did_work || g->verbose)
        asam_progress_update(&g->bar, g->seen, "%s%s%s  %.1f s", g->es[i].stem, g->exts[i], who,
                             d->seconds);
}

int asam_generate(const asam_gen_models *m, const asam_gen_opts *o, const asam_generate_cfg *cfg,
                  asam_generate_stats *st) {
    asam_generate_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    const char *dir = cfg->data;
    if (!dir || !cfg->out) return asam_error("generate: need a dataset and an output folder");
    if (!strncmp(dir, "sa1b:", 5)) dir += 5;
    int ns = cfg->n_shards > 0 ? cfg->n_shards : 1;
    if (cfg->shard < 0 || cfg->shard >= ns)
        return asam_error("generate: shard %d/%d out of range", cfg->shard, ns);
    int mode = cfg->mode ? cfg->mode : ASAM_GEN_BOTH;
    int stop_after = cfg->stop_after;
    const char *env = getenv("ASAM_GENERATE_STOP_AFTER");
    if (env && *env) stop_after = atoi(env);

    asam_captions *caps = NULL;
    if (cfg->captions && *cfg->captions && asam_captions_load(cfg->captions, &caps))
        return asam_dist_agree(-1); /* the other ranks wait for this one */
    entry *es = NULL;
    char **exts = NULL;
    size_t n = 0;
    if (list_dataset(dir, &es, &n, &exts)) {
        asam_captions_free(caps);
        return asam_dist_agree(-1);
    }
    const size_t n_all = n; /* every listed entry is freed */
    if (cfg->limit > 0 && (size_t)cfg->limit < n) n = (size_t)cfg->limit;
    /* the shard's images, in dataset order: the work queue (asam/dist.h) hands these out */
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    /* per image of the shard: IoU before, after, attacked, finished, skipped (summed over the
     * ranks: each slot is filled by exactly one rank, so the sums are exact) */
    double *vals = calloc(5 * (n ? n : 1), sizeof *vals);
    int rc = idx && vals ? 0 : asam_error("generate: out of memory");
    if (!rc) rc = asam_mkdirs(cfg->out);
    for (size_t i = 0; i < n && !rc; i++)
        if ((int)(i % (size_t)ns) == cfg->shard) idx[st->total++] = i;
    if (!rc && asam_dist_rank() == 0) {
        char sub[4400];
        snprintf(sub, sizeof sub, "%s/inv", cfg->out);
        remove_stale_tmp(sub);
        snprintf(sub, sizeof sub, "%s/adv", cfg->out);
        remove_stale_tmp(sub);
    }
    /* every rank has to reach the queue (it is collective), even one that failed above */
    rc = asam_dist_agree(rc);

    const int T = st->total;
    double *vb = vals, *va = vals + T, *vatt = vals + 2 * T, *vdone = vals + 3 * T,
           *vskip = vals + 4 * T;
    gen_progress gp = {.verbose = o->verbose, .es = es, .exts = exts, .idx = idx};
    /* a log line per generated image, also into files (rank 0, for the whole job) */
    asam_progress_start(&gp.bar, "generate", "image", T, ASAM_PROGRESS_LOG | ASAM_PROGRESS_LINES);
    asam_dist_queue *q = NULL;
    if (!rc) rc = asam_dist_queue_open(T, on_done, &gp, &q);
    int fresh = 0, work = 0, got;
    double secs = 0;
    int64_t k;
    while (!rc && (got = asam_dist_queue_next(q, work, secs, &k)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        size_t i = idx[k];
        char img[4400], js[4400], name[600];
        snprintf(img, sizeof img, "%s/%s%s", dir, es[i].stem, exts[i]);
        snprintf(js, sizeof js, "%s/%s.json", dir, es[i].stem);
        snprintf(name, sizeof name, "%s%s", es[i].stem, exts[i]);
        float b, a;
        double ti = asam_now_s();
        // ref: null_text_inversion.py:714 captions[name]: an image without a caption is an
        // error (KeyError), never a silent empty prompt
        if (caps && !asam_captions_has(caps, name)) {
            rc = asam_error("%s: no caption for %s", cfg->captions, name);
            break;
        }
        if (asam_generate_image(m, o, img, js, asam_captions_get(caps, name), cfg->out, mode, &b,
                                &a, &work)) {
            rc = -1;
            break;
        }
        secs = asam_now_s() - ti;
        vdone[k] = 1;
        if (!work)
            vskip[k] = 1;
        else
            fresh++;
        if (!isnan(b) && !isnan(a)) {
            vatt[k] = 1;
            vb[k] = b;
            va[k] = a;
        }
        if (stop_after > 0 && fresh >= stop_after && k + 1 < T) {
            rc = 1;
            break;
        }
    }
    if (q && asam_dist_queue_close(q, rc < 0, work, secs)) rc = -1;
    /* one outcome for the job; then the per-image values, summed in image order below so the
     * summary does not depend on how many ranks there were or who did which image */
    rc = asam_dist_agree(rc);
    if (rc >= 0 && asam_dist_sum_f64(vals, 5 * (size_t)T)) rc = -1;
    if (rc == 0 || rc == 1) {
        double sum_b = 0, sum_a = 0;
        for (int j = 0; j < T; j++) {
            st->done += vdone[j] > 0;
            st->skipped += vskip[j] > 0;
            if (vatt[j] > 0) {
                st->attacked++;
                sum_b += vb[j];
                sum_a += va[j];
            }
        }
        st->miou_before = st->attacked ? sum_b / st->attacked : NAN;
        st->miou_after = st->attacked ? sum_a / st->attacked : NAN;
        /* rank 0 writes the one summary; all ranks learn whether it could */
        if (rc == 0 && asam_dist_rank() == 0 && write_summary(cfg, o, st, ns)) rc = -1;
        rc = asam_dist_agree(rc);
    }
    free_listing(es, exts, n_all);
    free(idx);
    free(vals);
    asam_captions_free(caps);
    return rc;
}
