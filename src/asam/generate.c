/* The dataset driver: invert + attack every image of an SA-1B folder (or one shard of it),
 * resumable (finished outputs are skipped; each is written atomically), with progress, ETA
 * and a summary of mean IoU before / after. (The captions file is read by captions.c.) */
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int rc =
        cJSON_IsNumber(b) && cJSON_IsNumber(a) ? 0 : asam_error("%s: not an attack record", path);
    if (!rc) {
        if (before) *before = (float)b->valuedouble;
        if (after) *after = (float)a->valuedouble;
    }
    cJSON_Delete(j);
    return rc;
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
    snprintf(png, sizeof png, "%s/%s.png", adv_dir, stem);
    snprintf(rec, sizeof rec, "%s/%s.attack.json", adv_dir, stem);
    int want_inv = (mode & ASAM_GEN_INVERT) != 0, want_att = (mode & ASAM_GEN_ATTACK) != 0;
    if (want_att && asam_file_exists(png) && asam_file_exists(rec))
        return read_record(rec, miou_before, miou_after); /* finished before */
    int have_inv = asam_file_exists(inv_path);
    if (!want_att && have_inv) return 0;
    if (!want_inv && !have_inv)
        return asam_error("%s: no inversion (run asam invert first)", inv_path);
    if (asam_mkdirs(want_att ? adv_dir : inv_dir) || (want_inv && asam_mkdirs(inv_dir))) return -1;

    asam_image img = {0};
    asam_sa1b_image ann = {0};
    asam_inversion inv = {0};
    asam_attack_result res = {0};
    asam_ctx *ctx = asam_ctx_new(0);
    int rc = ctx ? 0 : asam_error("generate: cannot reserve an arena");
    if (!rc) rc = asam_image_read(image_path, 3, &img);
    if (!rc) rc = asam_sa1b_read(ann_path, &ann);
    asam_tensor *hint = NULL;
    if (!rc && m->controlnet) {
        hint = asam_mask_map_tensor(ctx, &ann, o->size);
        if (!hint) rc = asam_error("%s: %s", ann_path, asam_ctx_error(ctx));
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
            rc = asam_inversion_save(inv_path, &inv);
            if (!rc && did_work) *did_work = 1;
        }
        if (!rc) { /* attack from the stored copy, so a resumed run sees the same numbers */
            asam_inversion_free(&inv);
            rc = asam_inversion_load(inv_path, &inv);
        }
    }
    if (!rc && want_att) {
        rc = asam_attack(ctx, m, o, &img, &ann, hint, &inv, &res);
        char name[600];
        const char *b = strrchr(image_path, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : image_path);
        if (!rc) rc = asam_attack_write(png, rec, name, o, &res);
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
    if (cfg->captions && *cfg->captions && asam_captions_load(cfg->captions, &caps)) return -1;
    entry *es = NULL;
    char **exts = NULL;
    size_t n = 0;
    if (list_dataset(dir, &es, &n, &exts)) {
        asam_captions_free(caps);
        return -1;
    }
    const size_t n_all = n; /* every listed entry is freed */
    if (cfg->limit > 0 && (size_t)cfg->limit < n) n = (size_t)cfg->limit;
    if (asam_mkdirs(cfg->out)) {
        free_listing(es, exts, n_all);
        asam_captions_free(caps);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((int)(i % (size_t)ns) == cfg->shard) st->total++;

    int rc = 0, fresh = 0, seen = 0;
    double sum_b = 0, sum_a = 0;
    asam_progress bar; /* a log line per generated image, also into files */
    asam_progress_start(&bar, "generate", "image", st->total,
                        ASAM_PROGRESS_LOG | ASAM_PROGRESS_LINES);
    for (size_t i = 0; i < n && !rc; i++) {
        if ((int)(i % (size_t)ns) != cfg->shard) continue;
        seen++;
        char img[4400], js[4400], name[600];
        snprintf(img, sizeof img, "%s/%s%s", dir, es[i].stem, exts[i]);
        snprintf(js, sizeof js, "%s/%s.json", dir, es[i].stem);
        snprintf(name, sizeof name, "%s%s", es[i].stem, exts[i]);
        float b, a;
        int work = 0;
        double ti = asam_now_s();
        if (asam_generate_image(m, o, img, js, asam_captions_get(caps, name), cfg->out, mode, &b,
                                &a, &work)) {
            rc = -1;
            break;
        }
        st->done++;
        if (!work) {
            st->skipped++;
            asam_progress_skip(&bar);
        } else {
            fresh++;
        }
        if (!isnan(b) && !isnan(a)) {
            st->attacked++;
            sum_b += b;
            sum_a += a;
        }
        if (work || o->verbose)
            asam_progress_update(&bar, seen, "%s  %.1f s", name, asam_now_s() - ti);
        if (stop_after > 0 && fresh >= stop_after && seen < st->total) {
            rc = 1;
            break;
        }
    }
    if (rc == 0 || rc == 1) {
        st->miou_before = st->attacked ? sum_b / st->attacked : NAN;
        st->miou_after = st->attacked ? sum_a / st->attacked : NAN;
        if (rc == 0 && write_summary(cfg, o, st, ns)) rc = -1;
    }
    free_listing(es, exts, n_all);
    asam_captions_free(caps);
    return rc;
}
