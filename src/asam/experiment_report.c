/* The world experiment's report (see asam/experiment.h): tables of mean +- std over seeds, a
 * bar chart, the attack statistics and panels, all computed from the run's own files. */
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/experiment.h"
#include "asam/fileio.h"
#include "asam/image.h"
#include "asam/report.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_V = 8, MAX_S = 16, MAX_SEEDS = 16, MAX_ITERS = 64, MAX_FILES = 4096 };

/* The tuning variants in the order the report lists them, with their display names. */
static const char *const known[][2] = {{"untuned", "untuned"},
                                       {"clean", "clean"},
                                       {"pgd", "PGD"},
                                       {"asam_skip", "ASAM (skip)"},
                                       {"asam_full", "ASAM (full)"}};
enum { N_KNOWN = 5 };

typedef struct {
    int nv, ns, nseed;
    char vname[MAX_V][64], sname[MAX_S][64];
    double miou[MAX_V][MAX_S][MAX_SEEDS]; /* NaN: not measured */
    double biou[MAX_V][MAX_S][MAX_SEEDS];
} table;

static const char *display(const char *v) {
    for (int k = 0; k < N_KNOWN; k++)
        if (!strcmp(known[k][0], v)) return known[k][1];
    return v;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that start with prefix and end with suffix (malloc'ed, *n of them). */
static char **list_files(const char *dir, const char *prefix, const char *suffix, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = calloc(MAX_FILES, sizeof *v);
    struct dirent *e;
    size_t lp = strlen(prefix), ls = strlen(suffix);
    while (v && *n < MAX_FILES && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l >= lp + ls && !strncmp(e->d_name, prefix, lp) && !strcmp(e->d_name + l - ls, suffix))
            v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (v) qsort(v, (size_t)*n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static cJSON *read_json(const char *path) {
    char *txt = NULL;
    size_t n;
    if (asam_read_file(path, &txt, &n)) return NULL;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j) asam_error("%s: not valid JSON", path);
    return j;
}

/* "…/tune/clean/seed2/sam_tuned.safetensors" -> "clean"; anything else -> "untuned". */
static void variant_of(const char *model, char *out, size_t n) {
    const char *t = strstr(model, "tune/");
    if (!t) {
        snprintf(out, n, "untuned");
        return;
    }
    t += 5;
    size_t l = strcspn(t, "/");
    snprintf(out, n, "%.*s", (int)(l < n - 1 ? l : n - 1), t);
}

static int index_of(char names[][64], int *count, int max, const char *name) {
    for (int i = 0; i < *count; i++)
        if (!strcmp(names[i], name)) return i;
    if (*count >= max) return -1;
    snprintf(names[*count], 64, "%s", name);
    return (*count)++;
}

/* One eval JSON (as `asam eval --json` writes it) into column `seed` of t. */
static int read_eval(const char *path, int seed, table *t) {
    cJSON *j = read_json(path);
    if (!j) return -1;
    const cJSON *ds = cJSON_GetObjectItem(j, "datasets"), *d;
    int rc = cJSON_IsArray(ds) ? 0 : asam_error("%s: no \"datasets\" array", path);
    if (rc) ds = NULL;
    cJSON_ArrayForEach(d, ds) {
        const cJSON *name = cJSON_GetObjectItem(d, "name"),
                    *res = cJSON_GetObjectItem(d, "results");
        if (!cJSON_IsString(name) || !cJSON_IsArray(res)) {
            rc = asam_error("%s: a dataset without name or results", path);
            break;
        }
        int s = index_of(t->sname, &t->ns, MAX_S, name->valuestring);
        const cJSON *r;
        cJSON_ArrayForEach(r, res) {
            const cJSON *m = cJSON_GetObjectItem(r, "model"), *mi = cJSON_GetObjectItem(r, "miou"),
                        *bi = cJSON_GetObjectItem(r, "biou");
            if (!cJSON_IsString(m) || !cJSON_IsNumber(mi) || !cJSON_IsNumber(bi)) {
                rc = asam_error("%s: a result without model, miou or biou", path);
                break;
            }
            char v[64];
            variant_of(m->valuestring, v, sizeof v);
            int vi = index_of(t->vname, &t->nv, MAX_V, v);
            if (s < 0 || vi < 0) {
                rc = asam_error("%s: more than %d sets or %d variants", path, MAX_S, MAX_V);
                break;
            }
            t->miou[vi][s][seed] = mi->valuedouble;
            t->biou[vi][s][seed] = bi->valuedouble;
        }
        if (rc) break;
    }
    cJSON_Delete(j);
    return rc;
}

/* Mean and sample standard deviation (n - 1) of the measured seeds; *n = how many. */
static void stats(const double *x, int nseed, double *mean, double *sd, int *n) {
    double s = 0, s2 = 0;
    *n = 0;
    for (int k = 0; k < nseed; k++)
        if (!isnan(x[k])) s += x[k], (*n)++;
    *mean = *n ? s / *n : NAN;
    for (int k = 0; k < nseed; k++)
        if (!isnan(x[k])) s2 += (x[k] - *mean) * (x[k] - *mean);
    *sd = *n > 1 ? sqrt(s2 / (*n - 1)) : 0;
}

static int is_unseen(const char *set) {
    return !strncmp(set, "unseen", 6);
}

/* Per seed, the mean over the unseen sets measured in that seed (NaN if any is missing). */
static void unseen_mean(const table *t, int v, double *out) {
    for (int k = 0; k < t->nseed; k++) {
        double s = 0;
        int n = 0, missing = 0;
        for (int j = 0; j < t->ns; j++) {
            if (!is_unseen(t->sname[j])) continue;
            if (isnan(t->miou[v][j][k]))
                missing = 1;
            else
                s += t->miou[v][j][k], n++;
        }
        out[k] = n && !missing ? s / n : NAN;
    }
}

/* Put the known variants first, in their order, others after. */
static void order_variants(const table *t, int *order) {
    int n = 0;
    for (int k = 0; k < N_KNOWN; k++)
        for (int v = 0; v < t->nv; v++)
            if (!strcmp(t->vname[v], known[k][0])) order[n++] = v;
    for (int v = 0; v < t->nv; v++) {
        int seen = 0;
        for (int k = 0; k < N_KNOWN; k++) seen |= !strcmp(t->vname[v], known[k][0]);
        if (!seen) order[n++] = v;
    }
}

static void cell(FILE *f, const double *x, int nseed) {
    double m, sd;
    int n;
    stats(x, nseed, &m, &sd, &n);
    if (!n)
        fprintf(f, " - |");
    else if (n == 1 || sd < 1e-9) /* the same value in every seed */
        fprintf(f, " %.4f |", m);
    else
        fprintf(f, " %.4f ± %.4f |", m, sd);
}

/* ---- attack records ------------------------------------------------------------------------ */

typedef struct {
    int n, n_lower, iters;
    double drop, sum[MAX_ITERS];
    int count[MAX_ITERS];
} attack_stats;

static int read_attacks(const char *dir, const char *variant, attack_stats *a) {
    memset(a, 0, sizeof *a);
    char adv[4096];
    snprintf(adv, sizeof adv, "%s/%s/adv", dir, variant);
    int n;
    char **files = list_files(adv, "", ".attack.json", &n);
    for (int i = 0; i < n; i++) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", adv, files[i]);
        cJSON *j = read_json(p);
        if (!j) {
            free_list(files, n);
            return -1;
        }
        const cJSON *mi = cJSON_GetObjectItem(j, "miou"), *c = cJSON_GetObjectItem(j, "miou_clean"),
                    *ad = cJSON_GetObjectItem(j, "miou_adv"),
                    *b = cJSON_GetObjectItem(j, "best_iter");
        if (cJSON_IsArray(mi) && cJSON_IsNumber(c) && cJSON_IsNumber(ad) && cJSON_IsNumber(b)) {
            a->n++;
            a->drop += c->valuedouble - ad->valuedouble;
            a->n_lower += b->valueint > 0;
            int k = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, mi) {
                if (k < MAX_ITERS && cJSON_IsNumber(x) && !isnan(x->valuedouble))
                    a->sum[k] += x->valuedouble, a->count[k]++;
                k++;
            }
            if (k > a->iters) a->iters = k < MAX_ITERS ? k : MAX_ITERS;
        }
        cJSON_Delete(j);
    }
    free_list(files, n);
    if (a->n) a->drop /= a->n;
    return 0;
}

/* ---- panels -------------------------------------------------------------------------------- */

static const uint8_t palette[][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25},
                                     {0, 130, 200},  {245, 130, 48}, {145, 30, 180},
                                     {70, 240, 240}, {240, 50, 230}, {210, 245, 60}};

/* One row: the clean image and each variant's image of `stem`, ground-truth masks overlaid. */
static int panel(const asam_experiment_opts *o, asam_dataset *clean, const char *stem,
                 const char *const *paths, int n_paths, char *png, size_t n_png) {
    size_t idx = asam_dataset_count(clean);
    for (size_t i = 0; i < asam_dataset_count(clean); i++)
        if (!strcmp(asam_dataset_item_name(clean, i), stem)) idx = i;
    if (idx == asam_dataset_count(clean))
        return asam_error("%s: no image %s in the world's train set", o->world, stem);
    asam_sample s;
    if (asam_dataset_get(clean, idx, 9, &s)) return -1;
    uint8_t colours[9 * 3];
    for (int k = 0; k < 9; k++) memcpy(colours + 3 * k, palette[k], 3);
    asam_image tiles[MAX_V + 1];
    const asam_image *tp[MAX_V + 1];
    int n = 0, rc = asam_report_overlay(&s.image, s.masks, s.n_masks, colours, &tiles[n]);
    if (!rc) tp[n] = &tiles[n], n++;
    for (int k = 0; !rc && k < n_paths; k++) {
        asam_image im, rs;
        if (asam_image_read(paths[k], 3, &im)) {
            rc = -1;
            break;
        }
        rc = im.w == s.w && im.h == s.h ? 0 : asam_image_resize_nearest(&im, s.w, s.h, &rs);
        if (!rc && (im.w != s.w || im.h != s.h)) asam_image_free(&im), im = rs;
        if (!rc) rc = asam_report_overlay(&im, s.masks, s.n_masks, colours, &tiles[n]);
        asam_image_free(&im);
        if (!rc) tp[n] = &tiles[n], n++;
    }
    asam_image strip = {0};
    if (!rc) rc = asam_report_strip(tp, n, 2 * s.w, &strip);
    snprintf(png, n_png, "panel_%s.png", stem);
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", o->dir, png);
    if (!rc) rc = asam_image_write_png(path, &strip);
    asam_image_free(&strip);
    for (int k = 0; k < n; k++) asam_image_free(&tiles[k]);
    asam_sample_free(&s);
    return rc;
}

/* ---- the report ---------------------------------------------------------------------------- */

static void json_table(cJSON *root, const table *t, const int *order) {
    cJSON *rows = cJSON_AddArrayToObject(root, "variants");
    for (int i = 0; i < t->nv; i++) {
        int v = order[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "variant", t->vname[v]);
        cJSON *sets = cJSON_AddObjectToObject(r, "miou");
        for (int s = 0; s < t->ns; s++) {
            double m, sd;
            int n;
            stats(t->miou[v][s], t->nseed, &m, &sd, &n);
            if (!n) continue;
            cJSON *c = cJSON_AddObjectToObject(sets, t->sname[s]);
            cJSON_AddNumberToObject(c, "mean", m);
            cJSON_AddNumberToObject(c, "std", sd);
            cJSON_AddNumberToObject(c, "seeds", n);
        }
        double um[MAX_SEEDS], m, sd;
        int n;
        unseen_mean(t, v, um);
        stats(um, t->nseed, &m, &sd, &n);
        if (n) {
            cJSON *c = cJSON_AddObjectToObject(r, "unseen_mean");
            cJSON_AddNumberToObject(c, "mean", m);
            cJSON_AddNumberToObject(c, "std", sd);
            cJSON_AddNumberToObject(c, "seeds", n);
        }
        cJSON_AddItemToArray(rows, r);
    }
}

static int write_text(const char *path, const char *text) {
    return asam_write_file_atomic(path, text, strlen(text));
}

int asam_experiment_report(const asam_experiment_opts *o) {
    char p[4096];
    snprintf(p, sizeof p, "%s/eval", o->dir);
    int nf;
    char **files = list_files(p, "seed", ".json", &nf);
    if (!nf) {
        free_list(files, nf);
        return asam_error("%s/eval: no seed*.json evaluation (run scripts/experiment.sh first)",
                          o->dir);
    }
    table *t = calloc(1, sizeof *t);
    if (!t) return asam_error("out of memory");
    for (int v = 0; v < MAX_V; v++)
        for (int s = 0; s < MAX_S; s++)
            for (int k = 0; k < MAX_SEEDS; k++) t->miou[v][s][k] = t->biou[v][s][k] = NAN;
    int rc = 0;
    t->nseed = nf < MAX_SEEDS ? nf : MAX_SEEDS;
    for (int k = 0; !rc && k < t->nseed; k++) {
        char f[8192];
        snprintf(f, sizeof f, "%s/%s", p, files[k]);
        rc = read_eval(f, k, t);
    }
    int order[MAX_V];
    order_variants(t, order);

    /* attacks: the generate runs' records, and the untuned model on the attacked images */
    attack_stats att[2];
    const char *att_v[2] = {"asam_skip", "asam_full"};
    for (int a = 0; !rc && a < 2; a++) rc = read_attacks(o->dir, att_v[a], &att[a]);
    cJSON *atk = NULL;
    snprintf(p, sizeof p, "%s/eval/attacks.json", o->dir);
    if (!rc && asam_file_exists(p) && !(atk = read_json(p))) rc = -1;

    /* charts */
    const char *groups[MAX_S + 1], *series[MAX_V];
    double *mean = calloc((MAX_S + 1) * MAX_V, sizeof *mean),
           *err = calloc((MAX_S + 1) * MAX_V, sizeof *err);
    if (!mean || !err) rc = asam_error("out of memory");
    int ng = 0;
    for (int s = 0; s < t->ns; s++) groups[ng++] = t->sname[s];
    groups[ng++] = "unseen mean";
    double lo = 1;
    for (int i = 0; !rc && i < t->nv; i++) {
        int v = order[i], n;
        series[i] = display(t->vname[v]);
        for (int s = 0; s < t->ns; s++)
            stats(t->miou[v][s], t->nseed, &mean[s * t->nv + i], &err[s * t->nv + i], &n);
        double um[MAX_SEEDS];
        unseen_mean(t, v, um);
        stats(um, t->nseed, &mean[t->ns * t->nv + i], &err[t->ns * t->nv + i], &n);
        for (int s = 0; s <= t->ns; s++)
            if (!isnan(mean[s * t->nv + i]) && mean[s * t->nv + i] < lo) lo = mean[s * t->nv + i];
    }
    double ymin = floor(lo * 10 - 1) / 10;
    ymin = ymin < 0 ? 0 : ymin;
    snprintf(p, sizeof p, "%s/miou.svg", o->dir);
    if (!rc)
        rc = asam_chart_bars_svg(p, "SAM-mini box-prompt mIoU after tuning on each kind of image",
                                 "mIoU (mean ± std over seeds)", ng, groups, t->nv, series, mean,
                                 err, ymin, 1.0);
    int have_att = att[0].n || att[1].n;
    if (!rc && have_att) {
        int nx = att[0].iters > att[1].iters ? att[0].iters : att[1].iters;
        double y[2 * MAX_ITERS];
        const char *names[2];
        int ns = 0;
        double alo = 1;
        for (int a = 0; a < 2; a++) {
            if (!att[a].n) continue;
            names[ns] = display(att_v[a]);
            for (int k = 0; k < nx; k++) {
                y[ns * nx + k] = att[a].count[k] ? att[a].sum[k] / att[a].count[k] : NAN;
                if (!isnan(y[ns * nx + k]) && y[ns * nx + k] < alo) alo = y[ns * nx + k];
            }
            ns++;
        }
        snprintf(p, sizeof p, "%s/attack_iou.svg", o->dir);
        rc = asam_chart_lines_svg(
            p, "Mean IoU of SAM-mini on the generated image per attack iteration",
            "attack iteration (0 = the clean inversion)", "mean IoU", ns, names, nx, y, NULL,
            floor(alo * 10 - 1) / 10 < 0 ? 0 : floor(alo * 10 - 1) / 10, 1.0);
    }

    /* panels: the first images that have every variant's picture */
    char panel_png[8][300];
    int n_panel = 0;
    if (!rc && o->world && have_att) {
        char spec[4200];
        snprintf(spec, sizeof spec, "sa1b:%s/train", o->world);
        asam_dataset *clean = NULL;
        rc = asam_dataset_open(spec, &clean);
        const char *v = att[1].n ? "asam_full" : "asam_skip";
        char adv[4200];
        snprintf(adv, sizeof adv, "%s/%s/adv", o->dir, v);
        int na;
        char **recs = list_files(adv, "", ".attack.json", &na);
        for (int i = 0; !rc && i < na && n_panel < o->n_panels && n_panel < 8; i++) {
            char stem[256];
            snprintf(stem, sizeof stem, "%.*s", (int)(strlen(recs[i]) - 12), recs[i]);
            char paths[3][8192];
            const char *pp[3];
            snprintf(paths[0], sizeof paths[0], "%s/pgd/%s.png", o->dir, stem);
            snprintf(paths[1], sizeof paths[1], "%s/asam_skip/adv/%s.jpg", o->dir, stem);
            snprintf(paths[2], sizeof paths[2], "%s/asam_full/adv/%s.jpg", o->dir, stem);
            int np = 0, all = 1;
            for (int k = 0; k < 3; k++) all &= asam_file_exists(paths[k]);
            if (!all) continue;
            for (int k = 0; k < 3; k++) pp[np++] = paths[k];
            rc = panel(o, clean, stem, pp, np, panel_png[n_panel], sizeof panel_png[0]);
            if (!rc) n_panel++;
        }
        free_list(recs, na);
        asam_dataset_close(clean);
    }

    /* report.md */
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = rc ? NULL : open_memstream(&md, &md_len);
    if (!rc && !f) rc = asam_error("out of memory");
    if (f) {
        fprintf(f, "# The world experiment: tuning SAM-mini on clean, PGD and ASAM images\n\n");
        snprintf(p, sizeof p, "%s/settings.md", o->dir);
        char *settings = NULL;
        size_t sl;
        if (asam_file_exists(p) && !asam_read_file(p, &settings, &sl)) {
            fprintf(f, "%s\n", settings);
            free(settings);
        }
        if (o->reproduce) fprintf(f, "Reproduce:\n\n```sh\n%s\n```\n\n", o->reproduce);
        fprintf(f,
                "## Box-prompt mIoU (%d seed%s: mean ± sample std; the untuned model is "
                "deterministic)\n\n| variant |",
                t->nseed, t->nseed == 1 ? "" : "s");
        for (int s = 0; s < t->ns; s++) fprintf(f, " %s |", t->sname[s]);
        fprintf(f, " unseen mean |\n| --- |");
        for (int s = 0; s <= t->ns; s++) fprintf(f, " --- |");
        fprintf(f, "\n");
        double um_mean[MAX_V];
        for (int i = 0; i < t->nv; i++) {
            int v = order[i];
            fprintf(f, "| %s |", display(t->vname[v]));
            for (int s = 0; s < t->ns; s++) cell(f, t->miou[v][s], t->nseed);
            double um[MAX_SEEDS], sd;
            int n;
            unseen_mean(t, v, um);
            cell(f, um, t->nseed);
            stats(um, t->nseed, &um_mean[v], &sd, &n);
            fprintf(f, "\n");
        }
        fprintf(f, "\n![mIoU per set](miou.svg)\n\n");
        /* the paper's ordering, read off the numbers above */
        int vu = -1, vp = -1, va[2] = {-1, -1};
        for (int v = 0; v < t->nv; v++) {
            if (!strcmp(t->vname[v], "untuned")) vu = v;
            if (!strcmp(t->vname[v], "pgd")) vp = v;
            if (!strcmp(t->vname[v], "asam_skip")) va[0] = v;
            if (!strcmp(t->vname[v], "asam_full")) va[1] = v;
        }
        if (vu >= 0) {
            fprintf(f,
                    "The paper's ordering on the unseen sets (ASAM > untuned > PGD), as measured "
                    "here (unseen mean):\n\n");
            for (int a = 0; a < 2; a++)
                if (va[a] >= 0)
                    fprintf(f, "- %s %.4f vs untuned %.4f: %s (%+.4f)\n", display(t->vname[va[a]]),
                            um_mean[va[a]], um_mean[vu],
                            um_mean[va[a]] > um_mean[vu] ? "higher" : "not higher",
                            um_mean[va[a]] - um_mean[vu]);
            if (vp >= 0)
                fprintf(f, "- PGD %.4f vs untuned %.4f: %s (%+.4f)\n", um_mean[vp], um_mean[vu],
                        um_mean[vp] < um_mean[vu] ? "lower" : "not lower",
                        um_mean[vp] - um_mean[vu]);
            fprintf(f, "\n");
        }
        if (have_att) {
            fprintf(f, "## The attacks\n\n| generation | images | mean IoU drop (clean - kept) | "
                       "images where a lower-IoU latent was found |");
            int nx = att[0].iters > att[1].iters ? att[0].iters : att[1].iters;
            for (int k = 0; k < nx; k++) fprintf(f, " IoU it. %d |", k);
            fprintf(f, "\n| --- | --- | --- | --- |");
            for (int k = 0; k < nx; k++) fprintf(f, " --- |");
            fprintf(f, "\n");
            for (int a = 0; a < 2; a++) {
                if (!att[a].n) continue;
                fprintf(f, "| %s | %d | %.4f | %d (%.0f%%) |", display(att_v[a]), att[a].n,
                        att[a].drop, att[a].n_lower, 100.0 * att[a].n_lower / att[a].n);
                for (int k = 0; k < nx; k++)
                    if (att[a].count[k])
                        fprintf(f, " %.4f |", att[a].sum[k] / att[a].count[k]);
                    else
                        fprintf(f, " - |");
                fprintf(f, "\n");
            }
            fprintf(f, "\n![IoU per attack iteration](attack_iou.svg)\n\n");
        }
        if (atk) {
            fprintf(f, "The untuned SAM-mini on the training images each variant tunes on (box "
                       "mIoU; how hard each kind of image is for it):\n\n| images | mIoU |\n| --- "
                       "| --- |\n");
            const cJSON *ds = cJSON_GetObjectItem(atk, "datasets"), *d;
            cJSON_ArrayForEach(d, ds) {
                const cJSON *nm = cJSON_GetObjectItem(d, "name"),
                            *r0 = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "results"), 0);
                const cJSON *mi = r0 ? cJSON_GetObjectItem(r0, "miou") : NULL;
                if (cJSON_IsString(nm) && cJSON_IsNumber(mi))
                    fprintf(f, "| %s | %.4f |\n", nm->valuestring, mi->valuedouble);
            }
            fprintf(f, "\n");
        }
        if (n_panel) {
            fprintf(f, "## Panels\n\nEach row: the clean training image, its PGD image, its "
                       "ASAM (skip) and ASAM (full) images, ground-truth masks outlined.\n\n");
            for (int i = 0; i < n_panel; i++) fprintf(f, "![panel](%s)\n\n", panel_png[i]);
        }
        fclose(f);
        snprintf(p, sizeof p, "%s/report.md", o->dir);
        rc = write_text(p, md);
    }
    free(md);
    if (!rc) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "seeds", t->nseed);
        if (o->reproduce) cJSON_AddStringToObject(root, "reproduce", o->reproduce);
        json_table(root, t, order);
        for (int a = 0; a < 2; a++) {
            if (!att[a].n) continue;
            cJSON *x = cJSON_AddObjectToObject(root, att_v[a]);
            cJSON_AddNumberToObject(x, "images", att[a].n);
            cJSON_AddNumberToObject(x, "mean_drop", att[a].drop);
            cJSON_AddNumberToObject(x, "share_lower", (double)att[a].n_lower / att[a].n);
            cJSON *it = cJSON_AddArrayToObject(x, "miou_per_iter");
            for (int k = 0; k < att[a].iters; k++)
                cJSON_AddItemToArray(
                    it,
                    cJSON_CreateNumber(att[a].count[k] ? att[a].sum[k] / att[a].count[k] : NAN));
        }
        char *js = cJSON_Print(root);
        snprintf(p, sizeof p, "%s/results.json", o->dir);
        rc = js ? write_text(p, js) : asam_error("out of memory");
        free(js);
        cJSON_Delete(root);
    }
    cJSON_Delete(atk);
    free(mean);
    free(err);
    free(t);
    free_list(files, nf);
    return rc;
}
