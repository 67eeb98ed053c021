/* Synthetic segmentation data for the tuning / evaluation / PGD tests (header-only): images of
 * coloured shapes on a textured background, and their masks in every dataset layout. */
#ifndef ASAM_TEST_SYNTH_H
#define ASAM_TEST_SYNTH_H

#include "asam/fileio.h"
#include "asam/image.h"
#include "asam/rle.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYN_MAX_SHAPES 4

/* A deterministic texture with every byte value and sharp edges (codec / resize checks). */
static inline void syn_texture(asam_image *im) {
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++)
            for (int c = 0; c < im->c; c++)
                im->data[((size_t)y * im->w + x) * im->c + c] =
                    (uint8_t)(((73 * x + 151 * y + 59 * c) ^ (7 * x * y + 31 * c)) & 255);
}

typedef struct {
    int w, h, n;
    asam_image img;                 /* RGB */
    uint8_t *masks[SYN_MAX_SHAPES]; /* h*w 0/1 each */
} syn_image;

/* Image k: n shapes (rectangle, disc, triangle, ring) at positions depending on k. */
static inline void syn_make(syn_image *s, int k, int w, int h, int n) {
    memset(s, 0, sizeof *s);
    s->w = w;
    s->h = h;
    s->n = n;
    asam_image_alloc(&s->img, w, h, 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = s->img.data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(60 + (x * 3 + y + 17 * k) % 50);
            p[1] = (uint8_t)(70 + (x + 2 * y) % 40);
            p[2] = (uint8_t)(90 + ((x * y + k) % 23));
        }
    static const uint8_t col[4][3] = {{220, 40, 40}, {40, 200, 60}, {30, 60, 220}, {230, 220, 40}};
    for (int i = 0; i < n; i++) {
        s->masks[i] = calloc((size_t)w * h, 1);
        int cx = (w * (i + 1)) / (n + 1) + (k % 3) - 1, cy = h / 2 + ((k + i) % 3 - 1) * h / 8;
        int r = (w < h ? w : h) / 6 + (k + i) % 3;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int dx = x - cx, dy = y - cy, in = 0;
                switch ((i + k) % 4) {
                case 0:
                    in = abs(dx) <= r && abs(dy) <= (2 * r) / 3;
                    break;
                case 1:
                    in = dx * dx + dy * dy <= r * r;
                    break;
                case 2:
                    in = dy >= -r && dy <= r && abs(dx) <= (dy + r) / 2;
                    break;
                default: {
                    int d2 = dx * dx + dy * dy;
                    in = d2 <= r * r && d2 >= (r * r) / 4;
                }
                }
                if (!in) continue;
                s->masks[i][(size_t)y * w + x] = 1;
                /* a later shape covers an earlier one */
                for (int j = 0; j < i; j++) s->masks[j][(size_t)y * w + x] = 0;
                uint8_t *p = s->img.data + ((size_t)y * w + x) * 3;
                for (int c = 0; c < 3; c++) p[c] = (uint8_t)(col[i][c] - (x + y) % 16);
            }
    }
}

static inline void syn_free(syn_image *s) {
    asam_image_free(&s->img);
    for (int i = 0; i < s->n; i++) free(s->masks[i]);
}

/* SA-1B json text for s (caller frees). */
static inline char *syn_sa1b_json(const syn_image *s, int id, const char *file_name) {
    size_t cap = 4096;
    char *j = malloc(cap);
    int o = snprintf(j, cap,
                     "{\"image\": {\"image_id\": %d, \"width\": %d, \"height\": %d, \"file_name\": "
                     "\"%s\"}, \"annotations\": [",
                     id, s->w, s->h, file_name);
    for (int i = 0; i < s->n; i++) {
        asam_rle r;
        asam_rle_encode(s->masks[i], s->h, s->w, &r);
        char *raw = asam_rle_to_string(&r), *cs = malloc(2 * strlen(raw) + 1), *q = cs;
        for (const char *c = raw; *c; c++) { /* JSON-escape: the RLE alphabet has '\\' */
            if (*c == '\\' || *c == '"') *q++ = '\\';
            *q++ = *c;
        }
        *q = 0;
        free(raw);
        double bb[4];
        asam_rle_bbox(&r, bb);
        size_t need = (size_t)o + strlen(cs) + 512;
        if (need > cap) {
            cap = need * 2;
            j = realloc(j, cap);
        }
        o += snprintf(j + o, cap - (size_t)o,
                      "%s{\"id\": %d, \"segmentation\": {\"size\": [%d, %d], \"counts\": \"%s\"}, "
                      "\"bbox\": [%g, %g, %g, %g], \"area\": %llu, \"predicted_iou\": 0.9, "
                      "\"stability_score\": 0.95}",
                      i ? ", " : "", id * 10 + i, s->h, s->w, cs, bb[0], bb[1], bb[2], bb[3],
                      (unsigned long long)asam_rle_area(&r));
        free(cs);
        asam_rle_free(&r);
    }
    snprintf(j + o, cap - (size_t)o, "]}");
    return j;
}

/* dir/sa_K.jpg (or .png) + dir/sa_K.json for K = 1..n */
static inline int syn_write_sa1b(const char *dir, int n, int w, int h, int shapes, int png) {
    asam_mkdirs(dir);
    for (int k = 1; k <= n; k++) {
        syn_image s;
        syn_make(&s, k, w, h, shapes);
        char p[2048], fn[64];
        snprintf(fn, sizeof fn, "sa_%d.%s", k, png ? "png" : "jpg");
        snprintf(p, sizeof p, "%s/%s", dir, fn);
        int rc = png ? asam_image_write_png(p, &s.img) : asam_image_write_jpeg(p, &s.img, 95);
        char *js = syn_sa1b_json(&s, k, fn);
        snprintf(p, sizeof p, "%s/sa_%d.json", dir, k);
        rc |= asam_write_file_atomic(p, js, strlen(js));
        free(js);
        syn_free(&s);
        if (rc) return -1;
    }
    return 0;
}

#endif
