/* "Segment everything" over an image or a folder: run the automatic mask generator, write one
 * SA-1B annotation JSON and one overlay per image, resumably (see segment_everything.h). */
#define _GNU_SOURCE /* strverscmp */
#include "asam/segment_everything.h"

#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/image.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- hashes -------------------------------------------------------------------------------- */
#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * FNV_PRIME;
    return h;
}

static int hash_file(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return asam_error("%s: cannot open: %s", path, strerror(errno));
    uint64_t h = FNV_OFFSET;
    static unsigned char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) h = fnv_bytes(h, buf, k);
    int bad = ferror(f);
    fclose(f);
    if (bad) return asam_error("%s: read error", path);
    *out = h;
    return 0;
}

/* The options that change the output, in a fixed text form (points_per_batch only changes
 * speed and memory, so it is left out). */
static void options_text(const asam_amg_options *o, char *buf, size_t n) {
    size_t k = (size_t)snprintf(
        buf, n,
        "amg-v1 pps=%d iou=%.17g stab=%.17g off=%.17g nms=%.17g layers=%d cnms=%.17g "
        "overlap=%.17g down=%d min_area=%d grids=%d",
        o->points_per_side, o->pred_iou_thresh, o->stability_score_thresh,
        o->stability_score_offset, o->box_nms_thresh, o->crop_n_layers, o->crop_nms_thresh,
        o->crop_overlap_ratio, o->crop_n_points_downscale_factor, o->min_mask_region_area,
        o->n_grids);
    (void)k;
}

void asam_amg_options_hash(const asam_amg_options *o, uint64_t model_hash, char hex[17]) {
    char txt[512];
    options_text(o, txt, sizeof txt);
    uint64_t h = fnv_bytes(FNV_OFFSET, txt, strlen(txt));
    for (int i = 0; i < o->n_grids; i++)
        h = fnv_bytes(h, o->grids[i], sizeof(double) * 2 * (size_t)o->grid_n[i]);
    h = fnv_bytes(h, &model_hash, sizeof model_hash);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

/* ---- SA-1B JSON ---------------------------------------------------------------------------- */
static cJSON *int_array(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

char *asam_amg_sa1b_json(const asam_amg_result *r, long long image_id, const char *file_name,
                         const char *provenance) {
    cJSON *root = cJSON_CreateObject(), *im = cJSON_CreateObject(), *anns = cJSON_CreateArray();
    char *text = NULL;
    int ok = root && im && anns;
    if (ok) {
        cJSON_AddItemToObject(root, "image", im);
        cJSON_AddNumberToObject(im, "image_id", (double)image_id);
        cJSON_AddNumberToObject(im, "width", r->width);
        cJSON_AddNumberToObject(im, "height", r->height);
        cJSON_AddStringToObject(im, "file_name", file_name);
        cJSON_AddItemToObject(root, "annotations", anns);
    } else {
        cJSON_Delete(im);
        cJSON_Delete(anns);
    }
    for (size_t i = 0; ok && i < r->n; i++) {
        const asam_amg_mask *m = &r->masks[i];
        cJSON *a = cJSON_CreateObject(), *seg = cJSON_CreateObject();
        char *counts = asam_rle_to_string(&m->rle);
        ok = a && seg && counts;
        if (!ok) {
            cJSON_Delete(a), cJSON_Delete(seg), free(counts);
            break;
        }
        cJSON_AddItemToArray(anns, a);
        cJSON_AddNumberToObject(a, "id", (double)(i + 1));
        const int64_t size[2] = {r->height, r->width};
        cJSON_AddItemToObject(seg, "size", int_array(size, 2));
        cJSON_AddStringToObject(seg, "counts", counts);
        free(counts);
        cJSON_AddItemToObject(a, "segmentation", seg);
        cJSON_AddItemToObject(a, "bbox", int_array(m->bbox, 4));
        cJSON_AddNumberToObject(a, "area", (double)m->area);
        cJSON_AddNumberToObject(a, "predicted_iou", (double)m->predicted_iou);
        /* an empty union gives NaN (only when the stability filter is off); JSON has no NaN and
         * the SA-1B reader takes an absent score as NaN */
        if (isfinite(m->stability_score))
            cJSON_AddNumberToObject(a, "stability_score", (double)m->stability_score);
        cJSON *pts = cJSON_CreateArray(), *pt = cJSON_CreateArray();
        cJSON_AddItemToArray(pt, cJSON_CreateNumber(m->point[0]));
        cJSON_AddItemToArray(pt, cJSON_CreateNumber(m->point[1]));
        cJSON_AddItemToArray(pts, pt);
        cJSON_AddItemToObject(a, "point_coords", pts);
        const int64_t cb[4] = {m->crop_box[0], m->crop_box[1], m->crop_box[2], m->crop_box[3]};
        cJSON_AddItemToObject(a, "crop_box", int_array(cb, 4));
    }
    if (ok && provenance) {
        cJSON *p = cJSON_Parse(provenance);
        if (p)
            cJSON_AddItemToObject(root, "asam", p);
        else
            ok = 0;
    }
    if (ok) text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- overlay ------------------------------------------------------------------------------- */
static int by_area_desc(const void *a, const void *b, void *ctx) {
    const asam_amg_result *r = ctx;
    int64_t x = r->masks[*(const size_t *)a].area, y = r->masks[*(const size_t *)b].area;
    if (x != y) return x > y ? -1 : 1;
    return (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

int asam_amg_overlay(const asam_image *img, const asam_amg_result *r, asam_image *out) {
    if (img->c != 3 || img->w != r->width || img->h != r->height)
        return asam_error("overlay: image and masks differ in size");
    if (asam_image_alloc(out, img->w, img->h, 3)) return -1;
    size_t hw = (size_t)img->w * img->h;
    memcpy(out->data, img->data, hw * 3);
    size_t *order = malloc(sizeof(size_t) * (r->n ? r->n : 1));
    uint8_t *m = malloc(hw);
    if (!order || !m) {
        free(order), free(m);
        asam_image_free(out);
        return asam_error("overlay: out of memory");
    }
    for (size_t i = 0; i < r->n; i++) order[i] = i;
    qsort_r(order, r->n, sizeof(size_t), by_area_desc, (void *)r);
    for (size_t k = 0; k < r->n; k++) {
        size_t i = order[k];
        if (asam_rle_decode(&r->masks[i].rle, m)) continue;
        uint8_t c[3];
        asam_mask_color((int)i, c); /* the colours of ASAM's mask maps */
        for (size_t p = 0; p < hw; p++)
            if (m[p])
                for (int j = 0; j < 3; j++)
                    out->data[3 * p + j] = (uint8_t)((out->data[3 * p + j] + c[j] + 1) / 2);
    }
    free(order), free(m);
    return 0;
}

/* ---- the job ------------------------------------------------------------------------------- */
static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int by_version(const void *a, const void *b) {
    return strverscmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char *path; /* the input image */
    char *name; /* its file name */
    char stem[256];
} job_item;

static void free_items(job_item *it, int n) {
    for (int i = 0; i < n; i++) free(it[i].path), free(it[i].name);
    free(it);
}

static int list_inputs(const char *input, job_item **out, int *n_out, char **in_dir) {
    struct stat st;
    *out = NULL;
    *n_out = 0;
    *in_dir = NULL;
    if (stat(input, &st) != 0) return asam_error("%s: %s", input, strerror(errno));
    char **names = NULL;
    int n = 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(input);
        if (!d) return asam_error("%s: cannot open folder: %s", input, strerror(errno));
        struct dirent *e;
        int cap = 0;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || !is_image_name(e->d_name)) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **nn = realloc(names, sizeof(char *) * (size_t)cap);
                if (!nn) break;
                names = nn;
            }
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, (size_t)n, sizeof(char *), by_version);
        *in_dir = strdup(input);
    } else {
        if (!is_image_name(input)) return asam_error("%s: not a .jpg/.jpeg/.png image", input);
        const char *slash = strrchr(input, '/');
        names = malloc(sizeof(char *));
        names[n++] = strdup(slash ? slash + 1 : input);
        *in_dir = slash ? strndup(input, (size_t)(slash - input)) : strdup(".");
    }
    if (n == 0) {
        free(names);
        return asam_error("%s: no .jpg/.jpeg/.png images", input);
    }
    job_item *it = calloc((size_t)n, sizeof(job_item));
    for (int i = 0; it && i < n; i++) {
        it[i].name = names[i];
        size_t len = strlen(*in_dir) + strlen(names[i]) + 2;
        it[i].path = malloc(len);
        snprintf(it[i].path, len, "%s/%s", *in_dir, names[i]);
        snprintf(it[i].stem, sizeof it[i].stem, "%s", names[i]);
        char *dot = strrchr(it[i].stem, '.');
        if (dot) *dot = 0;
    }
    free(names);
    if (!it) return asam_error("out of memory");
    /* two inputs with one stem (a.jpg, a.png) would write one JSON */
    for (int i = 1; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(it[i].stem, it[j].stem)) {
                int rc = asam_error("%s: %s and %s share the output name %s.json", input,
                                    it[j].name, it[i].name, it[i].stem);
                free_items(it, n);
                return rc;
            }
    *out = it;
    *n_out = n;
    return 0;
}

/* image_id: the number of an SA-1B name (sa_123 -> 123), else a 52-bit hash of the stem. */
static long long image_id_of(const char *stem) {
    const char *p = stem + strlen(stem);
    while (p > stem && p[-1] >= '0' && p[-1] <= '9') p--;
    if (*p && strlen(p) <= 15 && p > stem && p[-1] == '_') return atoll(p);
    return (long long)(fnv_bytes(FNV_OFFSET, stem, strlen(stem)) >> 12);
}

enum { TODO, DONE, REDO_CHANGED_IMAGE, CONFLICT };

/* What an existing JSON says about this image and these options. */
static int status_of(const char *json_path, const char *opt_hash, const char *img_hash,
                     char *found_hash, size_t n) {
    snprintf(found_hash, n, "none");
    if (!asam_file_exists(json_path)) return TODO;
    char *text;
    size_t len;
    if (asam_read_file(json_path, &text, &len)) return CONFLICT;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "asam");
    const cJSON *oh = cJSON_GetObjectItemCaseSensitive(a, "options_hash");
    const cJSON *ih = cJSON_GetObjectItemCaseSensitive(a, "image_hash");
    int st = CONFLICT;
    if (cJSON_IsString(oh)) {
        snprintf(found_hash, n, "%s", oh->valuestring);
        if (!strcmp(oh->valuestring, opt_hash))
            st = cJSON_IsString(ih) && !strcmp(ih->valuestring, img_hash) ? DONE
                                                                          : REDO_CHANGED_IMAGE;
    }
    cJSON_Delete(j);
    return st;
}

/* OUT/NAME: a hard link to the input (no copy), else an atomic copy. */
static int place_image(const char *src, const char *dst) {
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%.4200s.tmp.%d", dst, (int)getpid());
    unlink(tmp);
    if (link(src, tmp) == 0) {
        if (rename(tmp, dst) == 0) return 0;
        unlink(tmp);
    }
    char *data;
    size_t n;
    if (asam_read_file(src, &data, &n)) return -1;
    int rc = asam_write_file_atomic(dst, data, n);
    free(data);
    return rc;
}

/* Point batches within an image: on a terminal only (a log gets the per-image lines). */
static void batch_progress(int done, int total, void *user) {
    asam_progress *p = user;
    if (done == 1) p->total = total;
    asam_progress_update(p, done, NULL);
    if (done == total) asam_progress_end(p);
}

static int same_dir(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int asam_segment_everything(const asam_sam *m, const char *input, const char *out_dir,
                            const asam_everything_opts *o, asam_everything_stats *st) {
    asam_everything_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (asam_amg_options_check(&o->amg)) return -1;
    uint64_t model_hash = 0;
    if (o->model_path && hash_file(o->model_path, &model_hash)) return -1;
    char opt_hash[17];
    asam_amg_options_hash(&o->amg, model_hash, opt_hash);
    job_item *items;
    int n;
    char *in_dir;
    if (list_inputs(input, &items, &n, &in_dir)) return -1;
    st->n_images = n;
    char ovl_dir[4200];
    snprintf(ovl_dir, sizeof ovl_dir, "%s/overlays", out_dir);
    int rc = asam_mkdirs(o->no_overlay ? out_dir : ovl_dir);
    int copy_images = !rc && !same_dir(in_dir, out_dir);

    /* Pass 1: which images are done, and refuse before any work on an options mismatch. */
    int *status = calloc((size_t)n, sizeof(int));
    char(*img_hash)[17] = calloc((size_t)n, 17);
    if (!rc && (!status || !img_hash)) rc = asam_error("out of memory");
    for (int i = 0; !rc && i < n; i++) {
        uint64_t h;
        if (hash_file(items[i].path, &h)) {
            rc = -1;
            break;
        }
        snprintf(img_hash[i], 17, "%016llx", (unsigned long long)h);
        char jp[4200], found[64];
        snprintf(jp, sizeof jp, "%s/%s.json", out_dir, items[i].stem);
        status[i] = status_of(jp, opt_hash, img_hash[i], found, sizeof found);
        if (status[i] == CONFLICT && !o->redo)
            rc = asam_error("%s: made with other options or model (hash %s, now %s); use --redo "
                            "to recompute or another output folder",
                            jp, found, opt_hash);
    }
    double t0 = asam_now_s();
    asam_progress prog;
    asam_progress_start(&prog, "segment", "img", n, o->quiet ? 0 : ASAM_PROGRESS_LOG);
    char opts_txt[512];
    options_text(&o->amg, opts_txt, sizeof opts_txt);
    for (int i = 0; !rc && i < n; i++) {
        if (status[i] == DONE) {
            st->n_skipped++;
            asam_progress_skip(&prog);
            continue;
        }
        asam_progress batches;
        asam_progress_start(&batches, "segment", "batch", 0, 0);
        snprintf(batches.label, sizeof batches.label, "segment %s (%d/%d)", items[i].stem, i + 1,
                 n);
        batches.word = "point batch";
        asam_image img = {0};
        asam_amg_result res = {0};
        rc = asam_image_read(items[i].path, 3, &img);
        if (!rc)
            rc = asam_amg_generate(
                m, &img, &o->amg, o->quiet || !batches.tty ? NULL : batch_progress, &batches, &res);
        if (rc) asam_error_prefix(items[i].path);
        if (!rc && copy_images) {
            char dst[4200];
            snprintf(dst, sizeof dst, "%s/%s", out_dir, items[i].name);
            rc = place_image(items[i].path, dst);
        }
        if (!rc && !o->no_overlay) {
            asam_image ov = {0};
            char op[4400];
            snprintf(op, sizeof op, "%s/%s.png", ovl_dir, items[i].stem);
            rc = asam_amg_overlay(&img, &res, &ov);
            if (!rc) rc = asam_image_write_png(op, &ov);
            asam_image_free(&ov);
        }
        if (!rc) {
            char prov[2048], mh[17];
            snprintf(mh, sizeof mh, "%016llx", (unsigned long long)model_hash);
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "tool", "asam segment --everything");
            cJSON_AddStringToObject(p, "options", opts_txt);
            cJSON_AddNumberToObject(p, "points_per_batch", o->amg.points_per_batch);
            cJSON_AddStringToObject(p, "options_hash", opt_hash);
            cJSON_AddStringToObject(p, "model", o->model_path ? o->model_path : "");
            cJSON_AddStringToObject(p, "model_hash", mh);
            cJSON_AddStringToObject(p, "image_hash", img_hash[i]);
            char *ptxt = cJSON_PrintUnformatted(p);
            cJSON_Delete(p);
            snprintf(prov, sizeof prov, "%s", ptxt ? ptxt : "{}");
            free(ptxt);
            char *json = asam_amg_sa1b_json(&res, image_id_of(items[i].stem), items[i].name, prov);
            char jp[4200];
            snprintf(jp, sizeof jp, "%s/%s.json", out_dir, items[i].stem);
            rc = json ? asam_write_file_atomic(jp, json, strlen(json))
                      : asam_error("%s: out of memory writing JSON", jp);
            free(json);
        }
        if (!rc) {
            st->n_done++;
            st->n_masks += (long long)res.n;
            if (!o->quiet)
                asam_progress_update(&prog, i + 1, "%s  %zu masks", items[i].stem, res.n);
        }
        asam_amg_result_free(&res);
        asam_image_free(&img);
    }
    if (!o->quiet) asam_progress_end(&prog);
    st->seconds = asam_now_s() - t0;
    free(status), free(img_hash), free(in_dir);
    free_items(items, n);
    return rc;
}
