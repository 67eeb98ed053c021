/* SA-1B per-image annotation files:
 *   {"image": {"image_id", "width", "height", "file_name"},
 *    "annotations": [{"id", "segmentation": {"size": [h, w], "counts": "..."}, "bbox": [x, y,
 *                     w, h], "area", "predicted_iou", "point_coords", "stability_score",
 *                     "crop_box"}, ...]}
 * Every field we keep is type-checked; a mask must have the image's size. bbox and area, when
 * absent, are computed from the mask; predicted_iou / stability_score, when absent, are NAN.
 * "counts" may also be an uncompressed list of run lengths. */
#include "asam/sa1b.h"

#include "asam/error.h"
#include "asam/fileio.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SA1B_MAX_SIDE (1 << 20)

void asam_sa1b_free(asam_sa1b_image *img) {
    if (!img) return;
    for (size_t i = 0; i < img->n; i++) asam_rle_free(&img->anns[i].rle);
    free(img->anns);
    free(img->file_name);
    memset(img, 0, sizeof *img);
}

/* Number that must be an integer representable exactly in a double. */
static int get_int(const cJSON *o, const char *key, long long *v, const char *name,
                   const char *where) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return asam_error("%s: %s: missing \"%s\"", name, where, key);
    if (!cJSON_IsNumber(it)) return asam_error("%s: %s: \"%s\" is not a number", name, where, key);
    double d = it->valuedouble;
    if (!(fabs(d) <= 9007199254740992.0) || d != floor(d))
        return asam_error("%s: %s: \"%s\" is not an integer", name, where, key);
    *v = (long long)d;
    return 0;
}

/* Optional finite number: returns 0 and leaves *v when absent. */
static int get_num_opt(const cJSON *o, const char *key, double *v, const char *name,
                       const char *where) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return asam_error("%s: %s: \"%s\" is not a number", name, where, key);
    *v = it->valuedouble;
    return 0;
}

static int parse_annotation(const cJSON *a, int H, int W, const char *name, size_t idx,
                            asam_sa1b_annotation *out) {
    char where[64];
    snprintf(where, sizeof where, "annotations[%zu]", idx);
    if (!cJSON_IsObject(a)) return asam_error("%s: %s is not an object", name, where);
    if (get_int(a, "id", &out->id, name, where)) return -1;
    const cJSON *seg = cJSON_GetObjectItemCaseSensitive(a, "segmentation");
    if (!cJSON_IsObject(seg))
        return asam_error("%s: %s: \"segmentation\" missing or not an RLE object", name, where);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(seg, "size");
    if (!cJSON_IsArray(size) || cJSON_GetArraySize(size) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(size, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(size, 1)))
        return asam_error("%s: %s: segmentation \"size\" must be [h, w]", name, where);
    double sh = cJSON_GetArrayItem(size, 0)->valuedouble;
    double sw = cJSON_GetArrayItem(size, 1)->valuedouble;
    if (sh != H || sw != W)
        return asam_error("%s: %s: mask size [%g, %g] differs from the image's [%d, %d]", name,
                          where, sh, sw, H, W);
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(seg, "counts");
    if (cJSON_IsString(counts)) {
        if (asam_rle_from_string(counts->valuestring, H, W, &out->rle)) {
            char pre[512];
            snprintf(pre, sizeof pre, "%s: %s", name, where);
            return asam_error_prefix(pre);
        }
    } else if (cJSON_IsArray(counts)) {
        int n = cJSON_GetArraySize(counts);
        uint32_t *c = malloc(sizeof(uint32_t) * (n > 0 ? n : 1));
        if (!c) return asam_error("%s: out of memory", name);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, counts) {
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 4294967295.0) ||
                e->valuedouble != floor(e->valuedouble)) {
                free(c);
                return asam_error("%s: %s: counts[%d] is not a run length", name, where, i);
            }
            c[i++] = (uint32_t)e->valuedouble;
        }
        int rc = asam_rle_from_counts(c, (size_t)n, H, W, &out->rle);
        free(c);
        if (rc) {
            char pre[512];
            snprintf(pre, sizeof pre, "%s: %s", name, where);
            return asam_error_prefix(pre);
        }
    } else {
        return asam_error("%s: %s: segmentation \"counts\" must be a string or a list", name,
                          where);
    }
    const cJSON *bbox = cJSON_GetObjectItemCaseSensitive(a, "bbox");
    if (bbox) {
        if (!cJSON_IsArray(bbox) || cJSON_GetArraySize(bbox) != 4) {
            asam_rle_free(&out->rle);
            return asam_error("%s: %s: \"bbox\" must be [x, y, w, h]", name, where);
        }
        for (int i = 0; i < 4; i++) {
            const cJSON *e = cJSON_GetArrayItem(bbox, i);
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) {
                asam_rle_free(&out->rle);
                return asam_error("%s: %s: bbox[%d] is not a number", name, where, i);
            }
            out->bbox[i] = e->valuedouble;
        }
    } else {
        asam_rle_bbox(&out->rle, out->bbox);
    }
    out->area = (double)asam_rle_area(&out->rle);
    out->predicted_iou = NAN;
    out->stability_score = NAN;
    if (get_num_opt(a, "area", &out->area, name, where) ||
        get_num_opt(a, "predicted_iou", &out->predicted_iou, name, where) ||
        get_num_opt(a, "stability_score", &out->stability_score, name, where)) {
        asam_rle_free(&out->rle);
        return -1;
    }
    return 0;
}

int asam_sa1b_parse(const char *json, size_t len, const char *name, asam_sa1b_image *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<sa1b json>";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
        return asam_error("%s: invalid JSON (near byte %ld)", name, off);
    }
    int rc = -1;
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(root, "image");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(im)) {
        asam_error("%s: missing \"image\" object", name);
        goto done;
    }
    long long id, w, h;
    if (get_int(im, "image_id", &id, name, "image") || get_int(im, "width", &w, name, "image") ||
        get_int(im, "height", &h, name, "image"))
        goto done;
    if (w <= 0 || h <= 0 || w > SA1B_MAX_SIDE || h > SA1B_MAX_SIDE ||
        (unsigned long long)w * (unsigned long long)h > 0xFFFFFFFFull) {
        asam_error("%s: bad image size %lldx%lld", name, w, h);
        goto done;
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(im, "file_name");
    if (!cJSON_IsString(fn)) {
        asam_error("%s: image: \"file_name\" missing or not a string", name);
        goto done;
    }
    out->image_id = id;
    out->width = (int)w;
    out->height = (int)h;
    out->file_name = strdup(fn->valuestring);
    if (!out->file_name) {
        asam_error("%s: out of memory", name);
        goto done;
    }
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(anns)) {
        asam_error("%s: \"annotations\" missing or not a list", name);
        goto done;
    }
    int n = cJSON_GetArraySize(anns);
    out->anns = calloc(n > 0 ? (size_t)n : 1, sizeof(asam_sa1b_annotation));
    if (!out->anns) {
        asam_error("%s: out of memory", name);
        goto done;
    }
    const cJSON *a;
    size_t i = 0;
    cJSON_ArrayForEach(a, anns) {
        if (parse_annotation(a, out->height, out->width, name, i, &out->anns[i])) goto done;
        out->n = ++i;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) asam_sa1b_free(out);
    return rc;
}

int asam_sa1b_read(const char *path, asam_sa1b_image *out) {
    memset(out, 0, sizeof *out);
    char *data;
    size_t n;
    if (asam_read_file(path, &data, &n)) return -1;
    int rc = asam_sa1b_parse(data, n, path, out);
    free(data);
    return rc;
}
