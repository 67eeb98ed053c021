/* Deterministic synthetic SA-1B-style shard (see asam/synthetic.h). Everything is driven by a
 * splitmix64 stream keyed by (seed, image index), so a shard is reproducible byte for byte. */
#include "asam/synthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/rle.h"
#include "asam/util.h"

typedef struct {
    uint64_t s;
} synth_rng;

static uint64_t rng_next(synth_rng *r) {
    return asam_splitmix64(&r->s);
}
static double rng_uniform(synth_rng *r) { // [0, 1)
    return asam_u01(rng_next(r));
}
static int rng_int(synth_rng *r, int lo, int hi) { // [lo, hi]
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}
// Per-pixel noise in [-1, 1] from a hash, independent of drawing order.
static double pixel_noise(uint64_t key, int x, int y) {
    synth_rng r = {key ^ ((uint64_t)(uint32_t)x << 32) ^ (uint64_t)(uint32_t)y};
    return 2.0 * rng_uniform(&r) - 1.0;
}

typedef struct {
    const char *name;
    uint8_t rgb[3];
} named_colour;

static const named_colour shape_colours[] = {
    {"red", {220, 40, 40}},     {"green", {40, 180, 60}},   {"blue", {40, 70, 210}},
    {"yellow", {235, 215, 40}}, {"cyan", {40, 200, 210}},   {"magenta", {210, 50, 190}},
    {"orange", {240, 140, 30}}, {"purple", {120, 50, 170}}, {"white", {240, 240, 240}},
};
#define N_COLOURS ((int)(sizeof shape_colours / sizeof shape_colours[0]))

enum { SHAPE_ELLIPSE, SHAPE_RECT, SHAPE_POLY, SHAPE_KINDS };
static const char *shape_names[SHAPE_KINDS] = {"ellipse", "rectangle", "polygon"};
enum { BG_GRADIENT, BG_STRIPES, BG_CHECKER, BG_KINDS };
static const char *bg_names[BG_KINDS] = {"gradient", "striped", "checkered"};

typedef struct {
    int kind, colour;
    double cx, cy, rx, ry, angle; // centre, radii, rotation (ellipse, rectangle)
    int nv;                       // polygon vertices
    double vx[8], vy[8];
} shape;

static int inside(const shape *s, double px, double py) {
    if (s->kind == SHAPE_POLY) { // even-odd rule
        int in = 0;
        for (int i = 0, j = s->nv - 1; i < s->nv; j = i++) {
            if ((s->vy[i] > py) != (s->vy[j] > py) &&
                px < (s->vx[j] - s->vx[i]) * (py - s->vy[i]) / (s->vy[j] - s->vy[i]) + s->vx[i])
                in = !in;
        }
        return in;
    }
    double c = cos(s->angle), sn = sin(s->angle);
    double dx = px - s->cx, dy = py - s->cy;
    double u = (c * dx + sn * dy) / s->rx, v = (-sn * dx + c * dy) / s->ry;
    if (s->kind == SHAPE_ELLIPSE) return u * u + v * v <= 1.0;
    return fabs(u) <= 1.0 && fabs(v) <= 1.0;
}

static uint8_t clamp_u8(double v) {
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5);
}

/* Long on purpose: every draw of the image comes from one splitmix64 stream in a fixed order
 * (background, then each shape); kept in one function so that order, which pins every shard
 * byte for byte, is visible. */
int asam_synthetic_render(int index, int size, uint64_t seed, asam_synth_sample *out) {
    memset(out, 0, sizeof *out);
    if (size < 16 || size > 4096)
        return asam_error("synthetic: image size %d outside 16..4096", size);
    if (index < 0) return asam_error("synthetic: negative image index %d", index);
    synth_rng r = {seed * 0x2545F4914F6CDD1Dull + (uint64_t)index * ASAM_SPLITMIX_GAMMA + 1};
    rng_next(&r);
    const size_t npx = (size_t)size * size;
    if (asam_image_alloc(&out->img, size, size, 3)) return -1;
    signed char *label = malloc(npx);
    out->masks = malloc(ASAM_SYNTH_MAX_SHAPES * npx);
    if (!label || !out->masks) {
        free(label);
        asam_synth_sample_free(out);
        return asam_error("synthetic: out of memory");
    }
    uint64_t noise_key = rng_next(&r);

    // Background: two dark-ish colours mixed by a gradient, stripes or a checkerboard.
    int bg = rng_int(&r, 0, BG_KINDS - 1);
    double c0[3], c1[3];
    for (int k = 0; k < 3; k++) {
        c0[k] = 30 + 90 * rng_uniform(&r);
        c1[k] = 30 + 90 * rng_uniform(&r);
    }
    double ang = M_PI * rng_uniform(&r), period = size * (0.06 + 0.1 * rng_uniform(&r));
    double ca = cos(ang), sa = sin(ang);
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            double p = (x + 0.5) * ca + (y + 0.5) * sa, q = -(x + 0.5) * sa + (y + 0.5) * ca, t;
            if (bg == BG_GRADIENT)
                t = 0.5 + 0.5 * p / (size * 1.5);
            else if (bg == BG_STRIPES)
                t = fmod(fabs(p), 2 * period) < period ? 0.0 : 1.0;
            else
                t = ((int)floor(p / period) + (int)floor(q / period)) & 1;
            double n = 12 * pixel_noise(noise_key, x, y);
            uint8_t *px = out->img.data + ((size_t)y * size + x) * 3;
            for (int k = 0; k < 3; k++) px[k] = clamp_u8(c0[k] + t * (c1[k] - c0[k]) + n);
            label[(size_t)y * size + x] = -1;
        }

    // Shapes, painted in order (later ones occlude earlier ones); distinct colours.
    int n_shapes = rng_int(&r, 2, 4);
    shape sh[ASAM_SYNTH_MAX_SHAPES];
    int used = 0; // colour bitmask
    for (int i = 0; i < n_shapes; i++) {
        shape *s = &sh[i];
        memset(s, 0, sizeof *s);
        s->kind = rng_int(&r, 0, SHAPE_KINDS - 1);
        do s->colour = rng_int(&r, 0, N_COLOURS - 1);
        while (used & (1 << s->colour));
        used |= 1 << s->colour;
        s->cx = size * (0.2 + 0.6 * rng_uniform(&r));
        s->cy = size * (0.2 + 0.6 * rng_uniform(&r));
        s->rx = size * (0.1 + 0.18 * rng_uniform(&r));
        s->ry = size * (0.1 + 0.18 * rng_uniform(&r));
        s->angle = M_PI * rng_uniform(&r);
        if (s->kind == SHAPE_POLY) { // convex-ish star-free polygon: sorted angles around centre
            s->nv = rng_int(&r, 3, 7);
            double a0 = 2 * M_PI * rng_uniform(&r);
            for (int v = 0; v < s->nv; v++) {
                double a = a0 + 2 * M_PI * (v + 0.8 * rng_uniform(&r)) / s->nv;
                double rad = 0.7 + 0.3 * rng_uniform(&r);
                s->vx[v] = s->cx + rad * s->rx * cos(a);
                s->vy[v] = s->cy + rad * s->ry * sin(a);
            }
        }
        double shade = 0.25 * (2 * rng_uniform(&r) - 1); // light falloff across the shape
        const uint8_t *rgb = shape_colours[s->colour].rgb;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++) {
                if (!inside(s, x + 0.5, y + 0.5)) continue;
                double f = 1.0 + shade * ((x + 0.5 - s->cx) / (s->rx + 1));
                double n = 6 * pixel_noise(noise_key + 1 + (uint64_t)i, x, y);
                uint8_t *px = out->img.data + ((size_t)y * size + x) * 3;
                for (int k = 0; k < 3; k++) px[k] = clamp_u8(rgb[k] * f + n);
                label[(size_t)y * size + x] = (signed char)i;
            }
    }

    // Masks of the visible parts; tiny remnants are dropped (SA-1B has no such slivers).
    const size_t min_area = npx / 100;
    char desc[ASAM_SYNTH_MAX_SHAPES][48];
    for (int i = 0; i < n_shapes; i++) {
        uint8_t *m = out->masks + (size_t)out->n_masks * npx;
        size_t area = 0;
        for (size_t p = 0; p < npx; p++) area += (m[p] = label[p] == i);
        if (area < min_area) continue;
        const char *cn = shape_colours[sh[i].colour].name;
        snprintf(desc[out->n_masks], sizeof desc[0], "%s %s %s", cn[0] == 'o' ? "an" : "a", cn,
                 shape_names[sh[i].kind]);
        out->n_masks++;
    }
    free(label);
    if (out->n_masks == 0) { // every shape hidden or tiny: mark the background as one region
        memset(out->masks, 1, npx);
        snprintf(desc[0], sizeof desc[0], "an empty scene");
        out->n_masks = 1;
    }
    size_t len = 0;
    for (int i = 0; i < out->n_masks; i++) {
        const char *sep = i == 0 ? "" : i == out->n_masks - 1 ? " and " : ", ";
        len +=
            (size_t)snprintf(out->caption + len, sizeof out->caption - len, "%s%s", sep, desc[i]);
    }
    snprintf(out->caption + len, sizeof out->caption - len, " on a %s background", bg_names[bg]);
    return 0;
}

void asam_synth_sample_free(asam_synth_sample *s) {
    if (!s) return;
    asam_image_free(&s->img);
    free(s->masks);
    s->masks = NULL;
    s->n_masks = 0;
}

// sa_<i>.json for one rendered sample.
char *asam_synth_sample_json(const asam_synth_sample *s, int image_id, const char *file_name) {
    const int size = s->img.w;
    cJSON *root = cJSON_CreateObject(), *im = cJSON_CreateObject(), *anns = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "image", im);
    cJSON_AddNumberToObject(im, "image_id", image_id);
    cJSON_AddNumberToObject(im, "width", size);
    cJSON_AddNumberToObject(im, "height", size);
    cJSON_AddStringToObject(im, "file_name", file_name);
    cJSON_AddItemToObject(root, "annotations", anns);
    for (int k = 0; k < s->n_masks; k++) {
        const uint8_t *m = s->masks + (size_t)k * size * size;
        asam_rle rle;
        if (asam_rle_encode(m, size, size, &rle)) {
            cJSON_Delete(root);
            return NULL;
        }
        char *counts = asam_rle_to_string(&rle);
        double bb[4];
        asam_rle_bbox(&rle, bb);
        double area = (double)asam_rle_area(&rle);
        asam_rle_free(&rle);
        if (!counts) {
            cJSON_Delete(root);
            return NULL;
        }
        // A point inside the mask (the middle one in raster order), as SA-1B's point_coords.
        size_t cnt = 0, mid = 0;
        for (size_t p = 0; p < (size_t)size * size; p++) cnt += m[p];
        for (size_t p = 0, seen = 0; p < (size_t)size * size; p++)
            if (m[p] && seen++ == cnt / 2) mid = p;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddItemToObject(a, "bbox", cJSON_CreateDoubleArray(bb, 4));
        cJSON_AddNumberToObject(a, "area", area);
        cJSON *seg = cJSON_CreateObject();
        int hw[2] = {size, size};
        cJSON_AddItemToObject(seg, "size", cJSON_CreateIntArray(hw, 2));
        cJSON_AddStringToObject(seg, "counts", counts);
        free(counts);
        cJSON_AddItemToObject(a, "segmentation", seg);
        cJSON_AddNumberToObject(a, "predicted_iou", 0.95);
        double pt[2] = {(double)(mid % size) + 0.5, (double)(mid / size) + 0.5};
        cJSON *pts = cJSON_CreateArray();
        cJSON_AddItemToArray(pts, cJSON_CreateDoubleArray(pt, 2));
        cJSON_AddItemToObject(a, "point_coords", pts);
        double crop[4] = {0, 0, size, size};
        cJSON_AddItemToObject(a, "crop_box", cJSON_CreateDoubleArray(crop, 4));
        cJSON_AddNumberToObject(a, "id", (double)image_id * 1000 + k);
        cJSON_AddNumberToObject(a, "stability_score", 0.97);
        cJSON_AddItemToArray(anns, a);
    }
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return txt;
}

int asam_synthetic_sa1b(const char *dir, int n_images, int size, uint64_t seed) {
    if (n_images < 1) return asam_error("%s: synthetic shard needs at least one image", dir);
    if (asam_mkdirs(dir)) return -1;
    size_t cap_len = 0, cap_cap = 4096;
    char *captions = malloc(cap_cap);
    if (!captions) return asam_error("%s: out of memory", dir);
    captions[0] = 0;
    char path[4096], name[64];
    for (int i = 0; i < n_images; i++) {
        asam_synth_sample s;
        if (asam_synthetic_render(i, size, seed, &s)) {
            free(captions);
            return asam_error_prefix(dir);
        }
        snprintf(name, sizeof name, "sa_%d.jpg", i + 1);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int rc = asam_image_write_jpeg(path, &s.img, 95);
        char *json = rc ? NULL : asam_synth_sample_json(&s, i + 1, name);
        if (!rc && !json) rc = asam_error("%s: cannot build the annotation JSON", path);
        if (!rc) {
            snprintf(path, sizeof path, "%s/sa_%d.json", dir, i + 1);
            rc = asam_write_file_atomic(path, json, strlen(json));
        }
        free(json);
        // {"img": ..., "prompt": ...}: captions are plain ASCII without quotes.
        char line[512];
        int ll =
            snprintf(line, sizeof line, "{\"img\": \"%s\", \"prompt\": \"%s\"}\n", name, s.caption);
        asam_synth_sample_free(&s);
        if (rc) {
            free(captions);
            return -1;
        }
        if (cap_len + (size_t)ll + 1 > cap_cap) {
            cap_cap = 2 * cap_cap + (size_t)ll;
            char *nc = realloc(captions, cap_cap);
            if (!nc) {
                free(captions);
                return asam_error("%s: out of memory", dir);
            }
            captions = nc;
        }
        memcpy(captions + cap_len, line, (size_t)ll + 1);
        cap_len += (size_t)ll;
    }
    snprintf(path, sizeof path, "%s/captions.jsonl", dir);
    int rc = asam_write_file_atomic(path, captions, cap_len);
    free(captions);
    return rc;
}
