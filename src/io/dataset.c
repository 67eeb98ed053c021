/* Dataset readers (see asam/dataset.h): an index of items built at open, items decoded on
 * demand. */
#define _GNU_SOURCE
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/rle.h"
#include "asam/sa1b.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { DS_SA1B_DIR, DS_SA1B_TAR, DS_ADV, DS_COCO, DS_MASKS, DS_IDMAP } ds_kind;

typedef struct {
    char name[256];        /* stem */
    char *img_path;        /* folders: image file; tar: member name of the image */
    char *ann_path;        /* json / mask / map file; tar: member name of the json */
    long img_ord, ann_ord; /* tar: entry ordinals */
    int coco_w, coco_h;    /* coco: declared size */
    cJSON **coco_anns;     /* coco: the image's annotations (in the owned tree) */
    int n_coco;
    int png_dir; /* adv: ann_path is a folder of per-mask PNGs segmentation_j.png */
} ds_item;

struct asam_dataset {
    ds_kind kind;
    char *spec;
    char *a, *b; /* the spec's paths */
    int has_ignore;
    uint32_t ignore; /* idmap */
    int skip_crowd;  /* coco: leave iscrowd=1 annotations out */
    ds_item *items;
    size_t n, cap;
    cJSON *coco;        /* coco: the parsed annotation file */
    struct archive *ar; /* tar: the open stream */
    long ar_next;       /* ordinal of the next entry the stream will return */
};

/* ---- helpers -------------------------------------------------------------------------------- */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_ext(const char *name, const char *const *exts) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (int i = 0; exts[i]; i++)
        if (!strcasecmp(dot + 1, exts[i])) return 1;
    return 0;
}

static void stem_of(const char *name, char *out, size_t n) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    snprintf(out, n, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot) *dot = 0;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int cmp_str(const void *a, const void *b) {
    return strverscmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted file names in dir with one of exts. */
static int list_dir(const char *dir, const char *const *exts, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return asam_error("%s: cannot open folder", dir);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_ext(e->d_name, exts)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(*names, cap * sizeof *nn);
            if (!nn) break;
            *names = nn;
        }
        (*names)[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static ds_item *add_item(asam_dataset *ds, const char *stem) {
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 64;
        ds_item *it = realloc(ds->items, cap * sizeof *it);
        if (!it) return NULL;
        ds->items = it;
        ds->cap = cap;
    }
    ds_item *it = &ds->items[ds->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", stem);
    return it;
}

/* Find DIR/STEM.ext for the first ext that exists; NULL if none. */
static char *find_with_ext(const char *dir, const char *stem, const char *const *exts) {
    for (int i = 0; exts[i]; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s.%s", stem, exts[i]);
        char *p = path_join(dir, name);
        if (p && asam_file_exists(p)) return p;
        free(p);
    }
    return NULL;
}

static const char *const IMG_EXTS[] = {"jpg", "jpeg", "png", NULL};
static const char *const JSON_EXTS[] = {"json", NULL};

/* ---- index building ---------------------------------------------------------------------------
 */

static int open_sa1b_dir(asam_dataset *ds) {
    char **names;
    size_t n;
    if (list_dir(ds->a, JSON_EXTS, &names, &n)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char stem[256];
        stem_of(names[i], stem, sizeof stem);
        char *img = find_with_ext(ds->a, stem, IMG_EXTS);
        if (!img) {
            rc = asam_error("%s/%s: no image %s.jpg next to it", ds->a, names[i], stem);
            break;
        }
        ds_item *it = add_item(ds, stem);
        if (!it) {
            free(img);
            rc = asam_error("%s: out of memory", ds->a);
            break;
        }
        it->img_path = img;
        it->ann_path = path_join(ds->a, names[i]);
    }
    free_names(names, n);
    return rc;
}

static int open_adv(asam_dataset *ds) {
    if (!is_dir(ds->b)) return asam_error("%s: no such folder (SA-1B annotations)", ds->b);
    char **names;
    size_t n;
    if (list_dir(ds->a, IMG_EXTS, &names, &n)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char stem[256];
        stem_of(names[i], stem, sizeof stem);
        if (ds->n && !strcmp(ds->items[ds->n - 1].name, stem)) continue; /* .png and .jpg */
        char *ann = find_with_ext(ds->b, stem, JSON_EXTS);
        int png_dir = 0;
        if (!ann) { /* the official layout: a folder of per-mask PNGs */
            ann = path_join(ds->b, stem);
            png_dir = ann && is_dir(ann);
            if (!png_dir) {
                free(ann);
                rc = asam_error("%s/%s: no annotation %s/%s.json nor mask folder %s/%s/", ds->a,
                                names[i], ds->b, stem, ds->b, stem);
                break;
            }
        }
        ds_item *it = add_item(ds, stem);
        if (!it) {
            free(ann);
            rc = asam_error("%s: out of memory", ds->a);
            break;
        }
        it->img_path = path_join(ds->a, names[i]);
        it->ann_path = ann;
        it->png_dir = png_dir;
    }
    free_names(names, n);
    return rc;
}

static int open_pairs(asam_dataset *ds) { /* masks: and idmap: */
    if (!is_dir(ds->b)) return asam_error("%s: no such folder", ds->b);
    char **names;
    size_t n;
    if (list_dir(ds->a, IMG_EXTS, &names, &n)) return -1;
    static const char *const MASK_EXTS[] = {"png", NULL};
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char stem[256];
        stem_of(names[i], stem, sizeof stem);
        char *m = find_with_ext(ds->b, stem, MASK_EXTS);
        if (!m) {
            rc = asam_error("%s/%s: no mask %s/%s.png", ds->a, names[i], ds->b, stem);
            break;
        }
        ds_item *it = add_item(ds, stem);
        if (!it) {
            free(m);
            rc = asam_error("%s: out of memory", ds->a);
            break;
        }
        it->img_path = path_join(ds->a, names[i]);
        it->ann_path = m;
    }
    free_names(names, n);
    return rc;
}

static int json_int(const cJSON *o, const char *key, long long *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x)) return -1;
    *v = (long long)x->valuedouble;
    return 0;
}

/* Long on purpose: validates an untrusted COCO annotation file (images, annotations, their
 * cross references) in one pass, each problem with its own error line. */
static int open_coco(asam_dataset *ds) {
    if (!is_dir(ds->b)) return asam_error("%s: no such folder (COCO images)", ds->b);
    char *text;
    size_t len;
    if (asam_read_file(ds->a, &text, &len)) return -1;
    ds->coco = cJSON_ParseWithLength(text, len);
    free(text);
    if (!ds->coco) return asam_error("%s: not valid JSON", ds->a);
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(ds->coco, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(ds->coco, "annotations");
    if (!cJSON_IsArray(images) || !cJSON_IsArray(anns))
        return asam_error("%s: missing \"images\" or \"annotations\" array", ds->a);
    /* image id -> slot in a temporary table */
    int n_img = cJSON_GetArraySize(images);
    long long *ids = calloc((size_t)n_img + 1, sizeof *ids);
    int *count = calloc((size_t)n_img + 1, sizeof *count);
    if (!ids || !count) {
        free(ids);
        free(count);
        return asam_error("%s: out of memory", ds->a);
    }
    int k = 0, rc = 0;
    const cJSON *im;
    cJSON_ArrayForEach(im, images) {
        if (json_int(im, "id", &ids[k])) {
            rc = asam_error("%s: images[%d] has no numeric \"id\"", ds->a, k);
            break;
        }
        k++;
    }
    /* count non-crowd annotations per image (linear id lookup via a sorted copy would be
     * faster; the id is usually the index order, so try that first) */
    int n_ann = cJSON_GetArraySize(anns);
    int *slot_of = malloc(((size_t)n_ann + 1) * sizeof *slot_of);
    if (!slot_of) rc = asam_error("%s: out of memory", ds->a);
    int a = 0, last = 0;
    const cJSON *an;
    cJSON_ArrayForEach(an, anns) {
        if (rc) break;
        long long img_id, crowd = 0;
        if (json_int(an, "image_id", &img_id)) {
            rc = asam_error("%s: annotations[%d] has no numeric \"image_id\"", ds->a, a);
            break;
        }
        json_int(an, "iscrowd", &crowd);
        int s = -1;
        if (last < n_img && ids[last] == img_id) s = last;
        for (int j = 0; s < 0 && j < n_img; j++)
            if (ids[j] == img_id) s = j;
        if (s < 0) {
            rc =
                asam_error("%s: annotations[%d] refers to unknown image_id %lld", ds->a, a, img_id);
            break;
        }
        if (!cJSON_GetObjectItemCaseSensitive(an, "segmentation")) {
            rc = asam_error("%s: annotations[%d] has no \"segmentation\"", ds->a, a);
            break;
        }
        last = s;
        // ref: sam_continue_learning/utils/dataloader_COCO.py:61-72 every annotation of the image
        // (annToMask decodes crowd RLEs too) unless skip-crowd
        int skip = crowd && ds->skip_crowd;
        slot_of[a] = skip ? -1 : s;
        if (!skip) count[s]++;
        a++;
    }
    /* one item per image with at least one annotation, in file-name order */
    int *item_of = malloc(((size_t)n_img + 1) * sizeof *item_of);
    if (!rc && !item_of) rc = asam_error("%s: out of memory", ds->a);
    k = 0;
    cJSON_ArrayForEach(im, images) {
        if (rc) break;
        item_of[k] = -1;
        if (count[k] > 0) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(im, "file_name");
            long long w, h;
            if (!cJSON_IsString(fn) || json_int(im, "width", &w) || json_int(im, "height", &h)) {
                rc = asam_error("%s: images[%d] needs file_name, width and height", ds->a, k);
                break;
            }
            char stem[256];
            stem_of(fn->valuestring, stem, sizeof stem);
            ds_item *it = add_item(ds, stem);
            if (!it) {
                rc = asam_error("%s: out of memory", ds->a);
                break;
            }
            it->img_path = path_join(ds->b, fn->valuestring);
            it->coco_w = (int)w;
            it->coco_h = (int)h;
            it->coco_anns = calloc((size_t)count[k], sizeof(cJSON *));
            if (!it->coco_anns) rc = asam_error("%s: out of memory", ds->a);
            item_of[k] = (int)ds->n - 1;
        }
        k++;
    }
    a = 0;
    cJSON_ArrayForEach(an, anns) {
        if (rc) break;
        if (slot_of[a] >= 0) {
            ds_item *it = &ds->items[item_of[slot_of[a]]];
            it->coco_anns[it->n_coco++] = (cJSON *)an;
        }
        a++;
    }
    free(ids);
    free(count);
    free(slot_of);
    free(item_of);
    return rc;
}

/* tar: list the members once; items are stems with both a .json and an image. */
static int tar_open_stream(asam_dataset *ds) {
    if (ds->ar) archive_read_free(ds->ar);
    ds->ar = archive_read_new();
    archive_read_support_format_tar(ds->ar);
    archive_read_support_filter_all(ds->ar);
    if (archive_read_open_filename(ds->ar, ds->a, 1 << 16) != ARCHIVE_OK) {
        int rc = asam_error("%s: %s", ds->a, archive_error_string(ds->ar));
        archive_read_free(ds->ar);
        ds->ar = NULL;
        return rc;
    }
    ds->ar_next = 0;
    return 0;
}

static int open_sa1b_tar(asam_dataset *ds) {
    if (tar_open_stream(ds)) return -1;
    struct archive_entry *e;
    long ord = 0;
    int r, rc = 0;
    while ((r = archive_read_next_header(ds->ar, &e)) == ARCHIVE_OK) {
        const char *nm = archive_entry_pathname(e);
        long this_ord = ord++;
        if (!nm || archive_entry_filetype(e) != AE_IFREG) continue;
        int is_json = has_ext(nm, JSON_EXTS), is_img = has_ext(nm, IMG_EXTS);
        if (!is_json && !is_img) continue;
        char stem[256];
        stem_of(nm, stem, sizeof stem);
        ds_item *it = NULL;
        /* members of one image are adjacent in SA-1B shards: look back a little first */
        for (size_t j = ds->n; j-- > 0 && j + 8 >= ds->n;)
            if (!strcmp(ds->items[j].name, stem)) it = &ds->items[j];
        for (size_t j = 0; !it && j < ds->n; j++)
            if (!strcmp(ds->items[j].name, stem)) it = &ds->items[j];
        if (!it) {
            it = add_item(ds, stem);
            if (!it) {
                rc = asam_error("%s: out of memory", ds->a);
                break;
            }
            it->img_ord = it->ann_ord = -1;
        }
        if (is_json) {
            free(it->ann_path);
            it->ann_path = strdup(nm);
            it->ann_ord = this_ord;
        } else {
            free(it->img_path);
            it->img_path = strdup(nm);
            it->img_ord = this_ord;
        }
    }
    if (!rc && r != ARCHIVE_EOF) rc = asam_error("%s: %s", ds->a, archive_error_string(ds->ar));
    if (rc) return rc;
    /* drop stems lacking one half */
    size_t k = 0;
    for (size_t j = 0; j < ds->n; j++) {
        ds_item *it = &ds->items[j];
        if (it->img_ord >= 0 && it->ann_ord >= 0)
            ds->items[k++] = *it;
        else {
            free(it->img_path);
            free(it->ann_path);
        }
    }
    ds->n = k;
    return tar_open_stream(ds); /* rewind */
}

/* Read the current member's bytes. */
static int tar_read_member(asam_dataset *ds, struct archive_entry *e, char **data, size_t *n) {
    int64_t sz = archive_entry_size(e);
    if (sz < 0 || sz > ((int64_t)1 << 31))
        return asam_error("%s: member %s has a bad size", ds->a, archive_entry_pathname(e));
    char *buf = malloc((size_t)sz + 1);
    if (!buf) return asam_error("%s: out of memory", ds->a);
    la_ssize_t got = archive_read_data(ds->ar, buf, (size_t)sz);
    if (got != (la_ssize_t)sz) {
        free(buf);
        return asam_error("%s: member %s: truncated (%s)", ds->a, archive_entry_pathname(e),
                          archive_error_string(ds->ar));
    }
    buf[sz] = 0;
    *data = buf;
    *n = (size_t)sz;
    return 0;
}

/* Read the two members of item it from the stream (re-opening it if they lie behind). */
static int tar_fetch(asam_dataset *ds, const ds_item *it, char **img, size_t *img_n, char **json,
                     size_t *json_n) {
    long first = it->img_ord < it->ann_ord ? it->img_ord : it->ann_ord;
    long lastord = it->img_ord > it->ann_ord ? it->img_ord : it->ann_ord;
    if (!ds->ar || ds->ar_next > first)
        if (tar_open_stream(ds)) return -1;
    *img = *json = NULL;
    struct archive_entry *e;
    while (ds->ar_next <= lastord) {
        int r = archive_read_next_header(ds->ar, &e);
        if (r != ARCHIVE_OK) {
            free(*img);
            free(*json);
            return asam_error("%s: %s", ds->a,
                              r == ARCHIVE_EOF ? "archive changed while reading"
                                               : archive_error_string(ds->ar));
        }
        long ord = ds->ar_next++;
        int rc = 0;
        if (ord == it->img_ord) rc = tar_read_member(ds, e, img, img_n);
        if (ord == it->ann_ord) rc = tar_read_member(ds, e, json, json_n);
        if (rc) {
            free(*img);
            free(*json);
            return -1;
        }
    }
    return 0;
}

/* ---- open / close -----------------------------------------------------------------------------
 */

int asam_dataset_open(const char *spec, asam_dataset **out) {
    *out = NULL;
    asam_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return asam_error("%s: out of memory", spec);
    ds->spec = strdup(spec);
    char *s = strdup(spec);
    char *colon = s ? strchr(s, ':') : NULL;
    int rc = 0;
    if (!colon) {
        rc = asam_error("%s: dataset must be KIND:PATH[:PATH] (sa1b:, adv:, coco:, masks:, idmap:)",
                        spec);
        goto done;
    }
    *colon = 0;
    char *rest = colon + 1, *second = strchr(rest, ':'), *third = NULL;
    if (second) {
        *second++ = 0;
        third = strchr(second, ':');
        if (third) *third++ = 0;
    }
    ds->a = strdup(rest);
    ds->b = second ? strdup(second) : NULL;
    int two = 1;
    if (!strcmp(s, "sa1b")) {
        two = 0;
        ds->kind = is_dir(rest) ? DS_SA1B_DIR : DS_SA1B_TAR;
    } else if (!strcmp(s, "adv")) {
        ds->kind = DS_ADV;
    } else if (!strcmp(s, "coco")) {
        ds->kind = DS_COCO;
        if (third) {
            if (strcmp(third, "skip-crowd")) {
                rc = asam_error("%s: expected coco:ANN.json:IMGDIR[:skip-crowd], got '%s'", spec,
                                third);
                goto done;
            }
            ds->skip_crowd = 1;
            third = NULL;
        }
    } else if (!strcmp(s, "masks")) {
        ds->kind = DS_MASKS;
    } else if (!strcmp(s, "idmap")) {
        ds->kind = DS_IDMAP;
        if (third) {
            char *end;
            if (strncmp(third, "ignore=", 7) ||
                (ds->ignore = (uint32_t)strtoul(third + 7, &end, 0), *end) || !third[7]) {
                rc = asam_error("%s: expected idmap:IMGDIR:MAPDIR[:ignore=V], got '%s'", spec,
                                third);
                goto done;
            }
            ds->has_ignore = 1;
            third = NULL;
        }
    } else {
        rc = asam_error("%s: unknown dataset kind '%s' (sa1b, adv, coco, masks, idmap)", spec, s);
        goto done;
    }
    if ((two && !second) || (!two && second) || third || !*rest) {
        rc = asam_error("%s: wrong number of paths for '%s:'", spec, s);
        goto done;
    }
    if (ds->kind == DS_SA1B_TAR) {
        if (!asam_file_exists(rest)) {
            rc = asam_error("%s: no such folder or .tar file", rest);
            goto done;
        }
    } else if (ds->kind != DS_COCO && !is_dir(rest)) {
        rc = asam_error("%s: no such folder", rest);
        goto done;
    }
    switch (ds->kind) {
    case DS_SA1B_DIR:
        rc = open_sa1b_dir(ds);
        break;
    case DS_SA1B_TAR:
        rc = open_sa1b_tar(ds);
        break;
    case DS_ADV:
        rc = open_adv(ds);
        break;
    case DS_COCO:
        rc = open_coco(ds);
        break;
    case DS_MASKS:
    case DS_IDMAP:
        rc = open_pairs(ds);
        break;
    }
    if (!rc && ds->n == 0) rc = asam_error("%s: no annotated images found", spec);
done:
    free(s);
    if (rc) {
        asam_dataset_close(ds);
        return -1;
    }
    *out = ds;
    return 0;
}

void asam_dataset_close(asam_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n; i++) {
        free(ds->items[i].img_path);
        free(ds->items[i].ann_path);
        free(ds->items[i].coco_anns);
    }
    free(ds->items);
    if (ds->coco) cJSON_Delete(ds->coco);
    if (ds->ar) archive_read_free(ds->ar);
    free(ds->spec);
    free(ds->a);
    free(ds->b);
    free(ds);
}

size_t asam_dataset_count(const asam_dataset *ds) {
    return ds->n;
}
const char *asam_dataset_item_name(const asam_dataset *ds, size_t i) {
    return i < ds->n ? ds->items[i].name : NULL;
}
const char *asam_dataset_spec(const asam_dataset *ds) {
    return ds->spec;
}

void asam_sample_free(asam_sample *s) {
    if (!s) return;
    asam_image_free(&s->image);
    free(s->masks);
    memset(s, 0, sizeof *s);
}

/* ---- item decoding ----------------------------------------------------------------------------
 */

/* Append one decoded mask (h*w bytes) unless it is empty. */
static int push_mask(asam_sample *s, const uint8_t *m, int max_masks, size_t *cap) {
    size_t hw = (size_t)s->mh * s->mw, area = 0;
    for (size_t i = 0; i < hw; i++) area += m[i] != 0;
    if (!area || (max_masks > 0 && s->n_masks >= max_masks)) return 0;
    if ((size_t)s->n_masks == *cap) {
        size_t c = *cap ? 2 * *cap : 4;
        uint8_t *nm = realloc(s->masks, c * hw);
        if (!nm) return asam_error("out of memory for masks");
        s->masks = nm;
        *cap = c;
    }
    uint8_t *dst = s->masks + (size_t)s->n_masks * hw;
    for (size_t i = 0; i < hw; i++) dst[i] = m[i] != 0;
    s->n_masks++;
    return 0;
}

/* Read an image from memory by way of a temporary file (the image API reads paths). */
static int image_from_memory(const char *data, size_t n, const char *name, asam_image *img) {
    char tmp[] = "/tmp/asam_ds_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) return asam_error("%s: cannot create a temporary file", name);
    int ok = write(fd, data, n) == (ssize_t)n;
    close(fd);
    int rc =
        ok ? asam_image_read(tmp, 3, img) : asam_error("%s: cannot write a temporary file", name);
    unlink(tmp);
    if (rc && ok) {
        /* the message names the temp file: name the member instead */
        char msg[512];
        const char *m = asam_last_error(), *c = strstr(m, ": ");
        snprintf(msg, sizeof msg, "%s", c ? c + 2 : m);
        return asam_error("%s: %s", name, msg);
    }
    return rc;
}

static int sa1b_masks(const asam_sa1b_image *ann, const char *ann_name, asam_sample *s,
                      int max_masks) {
    if (ann->width != s->mw || ann->height != s->mh)
        return asam_error("%s: annotation size %dx%d differs from the image's %dx%d", ann_name,
                          ann->width, ann->height, s->mw, s->mh);
    uint8_t *m = malloc((size_t)s->mh * s->mw);
    if (!m) return asam_error("%s: out of memory", ann_name);
    size_t cap = 0;
    int rc = 0;
    for (size_t k = 0; k < ann->n && !rc; k++) {
        if (max_masks > 0 && s->n_masks >= max_masks) break;
        if (ann->anns[k].rle.h != s->mh || ann->anns[k].rle.w != s->mw) {
            rc = asam_error("%s: annotation %zu has size %dx%d, the image %dx%d", ann_name, k,
                            ann->anns[k].rle.w, ann->anns[k].rle.h, s->w, s->h);
            break;
        }
        rc = asam_rle_decode(&ann->anns[k].rle, m);
        if (rc) rc = asam_error_prefix(ann_name);
        if (!rc) rc = push_mask(s, m, max_masks, &cap);
    }
    free(m);
    return rc;
}

static int coco_masks(const asam_dataset *ds, const ds_item *it, asam_sample *s, int max_masks) {
    if (it->coco_w != s->w || it->coco_h != s->h)
        return asam_error("%s: image is %dx%d but %s says %dx%d", it->img_path, s->w, s->h, ds->a,
                          it->coco_w, it->coco_h);
    uint8_t *m = malloc((size_t)s->h * s->w);
    if (!m) return asam_error("%s: out of memory", ds->a);
    size_t cap = 0;
    int rc = 0;
    for (int k = 0; k < it->n_coco && !rc; k++) {
        if (max_masks > 0 && s->n_masks >= max_masks) break;
        const cJSON *seg = cJSON_GetObjectItemCaseSensitive(it->coco_anns[k], "segmentation");
        asam_rle r = {0};
        if (cJSON_IsArray(seg)) { /* polygons */
            int np = cJSON_GetArraySize(seg);
            double **polys = calloc((size_t)np + 1, sizeof *polys);
            size_t *lens = calloc((size_t)np + 1, sizeof *lens);
            if (!polys || !lens) rc = asam_error("%s: out of memory", ds->a);
            for (int p = 0; p < np && !rc; p++) {
                const cJSON *poly = cJSON_GetArrayItem(seg, p);
                int nv = cJSON_GetArraySize(poly);
                if (!cJSON_IsArray(poly) || nv < 6 || nv % 2) {
                    rc = asam_error("%s: image %s: polygon %d is not a list of >= 3 x,y pairs",
                                    ds->a, it->name, p);
                    break;
                }
                polys[p] = malloc((size_t)nv * sizeof(double));
                lens[p] = (size_t)nv;
                int v = 0;
                const cJSON *c;
                cJSON_ArrayForEach(c, poly) polys[p][v++] = cJSON_IsNumber(c) ? c->valuedouble : 0;
            }
            if (!rc && asam_rle_from_polygons((const double *const *)polys, lens, (size_t)np, s->h,
                                              s->w, &r))
                rc = asam_error_prefix(ds->a);
            for (int p = 0; polys && p < np; p++) free(polys[p]);
            free(polys);
            free(lens);
        } else if (cJSON_IsObject(seg)) { /* RLE */
            const cJSON *counts = cJSON_GetObjectItemCaseSensitive(seg, "counts");
            const cJSON *size = cJSON_GetObjectItemCaseSensitive(seg, "size");
            if (!cJSON_IsArray(size) || cJSON_GetArraySize(size) != 2) {
                rc = asam_error("%s: image %s: RLE without \"size\": [h, w]", ds->a, it->name);
            } else {
                int h = (int)cJSON_GetArrayItem(size, 0)->valuedouble;
                int w = (int)cJSON_GetArrayItem(size, 1)->valuedouble;
                if (h != s->h || w != s->w)
                    rc = asam_error("%s: image %s: RLE size %dx%d differs from the image's %dx%d",
                                    ds->a, it->name, w, h, s->w, s->h);
                else if (cJSON_IsString(counts)) {
                    if (asam_rle_from_string(counts->valuestring, h, w, &r))
                        rc = asam_error_prefix(ds->a);
                } else if (cJSON_IsArray(counts)) {
                    int nc = cJSON_GetArraySize(counts);
                    uint32_t *cc = malloc(((size_t)nc + 1) * sizeof *cc);
                    int v = 0;
                    const cJSON *c;
                    cJSON_ArrayForEach(c, counts) cc[v++] =
                        cJSON_IsNumber(c) && c->valuedouble >= 0 ? (uint32_t)c->valuedouble : 0;
                    if (asam_rle_from_counts(cc, (size_t)nc, h, w, &r))
                        rc = asam_error_prefix(ds->a);
                    free(cc);
                } else {
                    rc = asam_error("%s: image %s: RLE \"counts\" must be a string or a list",
                                    ds->a, it->name);
                }
            }
        } else {
            rc = asam_error("%s: image %s: unsupported \"segmentation\"", ds->a, it->name);
        }
        if (!rc) {
            if (asam_rle_decode(&r, m))
                rc = asam_error_prefix(ds->a);
            else
                rc = push_mask(s, m, max_masks, &cap);
        }
        asam_rle_free(&r);
    }
    free(m);
    return rc;
}

static int binary_mask(const ds_item *it, asam_sample *s) {
    asam_image mk = {0};
    if (asam_image_read(it->ann_path, 1, &mk)) return -1;
    int rc = 0;
    if (mk.w != s->w || mk.h != s->h) {
        rc = asam_error("%s: mask is %dx%d, the image %s is %dx%d", it->ann_path, mk.w, mk.h,
                        it->img_path, s->w, s->h);
    } else {
        size_t cap = 0, hw = (size_t)s->w * s->h;
        for (size_t i = 0; i < hw; i++) mk.data[i] = mk.data[i] > 128;
        rc = push_mask(s, mk.data, 0, &cap);
    }
    asam_image_free(&mk);
    return rc;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int id_masks(const asam_dataset *ds, const ds_item *it, asam_sample *s, int max_masks) {
    asam_image mp = {0};
    if (asam_image_read(it->ann_path, 0, &mp)) return -1;
    int rc = 0;
    size_t hw = (size_t)s->w * s->h;
    uint32_t *id = NULL, *vals = NULL;
    uint8_t *m = NULL;
    if (mp.w != s->w || mp.h != s->h) {
        rc = asam_error("%s: map is %dx%d, the image %s is %dx%d", it->ann_path, mp.w, mp.h,
                        it->img_path, s->w, s->h);
        goto out;
    }
    id = malloc(hw * sizeof *id);
    vals = malloc(hw * sizeof *vals);
    m = malloc(hw);
    if (!id || !vals || !m) {
        rc = asam_error("%s: out of memory", it->ann_path);
        goto out;
    }
    for (size_t i = 0; i < hw; i++) {
        const uint8_t *p = mp.data + i * mp.c;
        id[i] = mp.c >= 3 ? ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) : p[0];
        vals[i] = id[i];
    }
    qsort(vals, hw, sizeof *vals, cmp_u32);
    size_t cap = 0;
    for (size_t i = 0; i < hw && !rc; i++) {
        if (i > 0 && vals[i] == vals[i - 1]) continue;
        uint32_t v = vals[i];
        if (v == 0 || (ds->has_ignore && v == ds->ignore)) continue;
        for (size_t j = 0; j < hw; j++) m[j] = id[j] == v;
        rc = push_mask(s, m, max_masks, &cap);
    }
out:
    free(id);
    free(vals);
    free(m);
    asam_image_free(&mp);
    return rc;
}

/* Per-mask PNGs DIR/segmentation_j.png, j below the folder's entry count (and max_masks);
 * foreground = non-zero. The first sets the mask size (mh, mw), the others must match it. */
// ref: luckybird1994/ASAM sam_continue_learning/utils/dataloader_sam.py:72 gt_num =
//   len(os.listdir(gt_path)), :86-92 segmentation_{i % gt_num}.png, channel 0
static int png_masks(const char *dir, asam_sample *s, int max_masks) {
    DIR *d = opendir(dir);
    if (!d) return asam_error("%s: cannot open folder", dir);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') count++;
    closedir(d);
    if (count == 0) return asam_error("%s: no masks in the folder", dir);
    size_t cap = 0;
    int rc = 0;
    for (int j = 0; j < count && (max_masks <= 0 || j < max_masks) && !rc; j++) {
        char name[64];
        snprintf(name, sizeof name, "segmentation_%d.png", j);
        char *p = path_join(dir, name);
        asam_image mk = {0};
        if (!p) return asam_error("%s: out of memory", dir);
        if (asam_image_read(p, 1, &mk)) {
            rc = -1;
        } else if (j == 0 && !s->mh) {
            s->mh = mk.h;
            s->mw = mk.w;
        }
        if (!rc && (mk.h != s->mh || mk.w != s->mw))
            rc = asam_error("%s: mask is %dx%d, segmentation_0.png %dx%d", p, mk.w, mk.h, s->mw,
                            s->mh);
        for (size_t q = 0; !rc && q < (size_t)mk.w * mk.h; q++) mk.data[q] = mk.data[q] != 0;
        if (!rc) rc = push_mask(s, mk.data, 0, &cap);
        asam_image_free(&mk);
        free(p);
    }
    return rc;
}

/* adv: the masks (JSON or per-mask PNGs); unless native, the image resized to their size */
static int adv_masks(const ds_item *it, asam_sample *s, int max_masks, int native) {
    asam_sa1b_image ann = {0};
    int rc = 0, ah, aw;
    if (it->png_dir) {
        s->mh = s->mw = 0;
        rc = png_masks(it->ann_path, s, max_masks);
        ah = s->mh, aw = s->mw;
    } else {
        rc = asam_sa1b_read(it->ann_path, &ann);
        ah = ann.height, aw = ann.width;
        s->mh = ah, s->mw = aw;
        if (!rc) rc = sa1b_masks(&ann, it->ann_path, s, max_masks);
        asam_sa1b_free(&ann);
    }
    if (!rc && !native && (aw != s->w || ah != s->h)) {
        asam_image r = {0};
        rc = asam_image_resize_pil_bilinear(&s->image, aw, ah, &r);
        if (!rc) {
            asam_image_free(&s->image);
            s->image = r;
            s->h = r.h;
            s->w = r.w;
        }
    }
    return rc;
}

static int dataset_get(asam_dataset *ds, size_t i, int max_masks, int native, asam_sample *out) {
    memset(out, 0, sizeof *out);
    if (i >= ds->n) return asam_error("%s: item %zu out of range (%zu items)", ds->spec, i, ds->n);
    const ds_item *it = &ds->items[i];
    snprintf(out->name, sizeof out->name, "%s", it->name);
    int rc = 0;
    if (ds->kind == DS_SA1B_TAR) {
        char *img = NULL, *json = NULL;
        size_t ni = 0, nj = 0;
        if (tar_fetch(ds, it, &img, &ni, &json, &nj)) return -1;
        char nm[1024];
        snprintf(nm, sizeof nm, "%s:%s", ds->a, it->img_path);
        rc = image_from_memory(img, ni, nm, &out->image);
        asam_sa1b_image ann = {0};
        snprintf(nm, sizeof nm, "%s:%s", ds->a, it->ann_path);
        if (!rc) rc = asam_sa1b_parse(json, nj, nm, &ann);
        if (!rc) {
            out->mh = out->h = out->image.h;
            out->mw = out->w = out->image.w;
            rc = sa1b_masks(&ann, nm, out, max_masks);
        }
        asam_sa1b_free(&ann);
        free(img);
        free(json);
    } else {
        if (asam_image_read(it->img_path, 3, &out->image)) return -1;
        out->mh = out->h = out->image.h;
        out->mw = out->w = out->image.w;
        if (ds->kind == DS_ADV) {
            rc = adv_masks(it, out, max_masks, native);
        } else if (ds->kind == DS_SA1B_DIR) {
            asam_sa1b_image ann = {0};
            rc = asam_sa1b_read(it->ann_path, &ann);
            if (!rc) rc = sa1b_masks(&ann, it->ann_path, out, max_masks);
            asam_sa1b_free(&ann);
        } else if (ds->kind == DS_COCO) {
            rc = coco_masks(ds, it, out, max_masks);
        } else if (ds->kind == DS_MASKS) {
            rc = binary_mask(it, out);
        } else {
            rc = id_masks(ds, it, out, max_masks);
        }
    }
    if (rc) asam_sample_free(out);
    return rc;
}

int asam_dataset_get(asam_dataset *ds, size_t i, int max_masks, asam_sample *out) {
    return dataset_get(ds, i, max_masks, 0, out);
}

int asam_dataset_get_native(asam_dataset *ds, size_t i, int max_masks, asam_sample *out) {
    return dataset_get(ds, i, max_masks, 1, out);
}
