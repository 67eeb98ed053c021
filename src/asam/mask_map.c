/* Colour mask maps (the ControlNet's control image) and the SAM attack target (box prompts and
 * ground-truth masks) from SA-1B annotations. */
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/util.h"

#include <stdlib.h>
#include <string.h>

void asam_mask_color(int k, uint8_t rgb[3]) {
    /* splitmix64's mix of k: well-spread colours, the same on every machine */
    uint64_t z = asam_mix64((uint64_t)k * ASAM_SPLITMIX_GAMMA + 0x632be59bd9b4e019ull);
    for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)(z >> (8 * c));
    if (rgb[0] < 32 && rgb[1] < 32 && rgb[2] < 32) rgb[(z >> 40) % 3] |= 0x80; /* never ~black */
}

typedef struct {
    uint64_t area;
    int idx;
} area_idx;

static int by_area_desc(const void *a, const void *b) {
    const area_idx *x = a, *y = b;
    if (x->area != y->area) return x->area > y->area ? -1 : 1;
    return x->idx - y->idx; /* ties: file order */
}

int asam_mask_map(const asam_sa1b_image *ann, asam_image *out) {
    memset(out, 0, sizeof *out);
    int h = ann->height, w = ann->width;
    if (h <= 0 || w <= 0) return asam_error("mask map: bad annotation size %dx%d", w, h);
    if (asam_image_alloc(out, w, h, 3)) return -1;
    memset(out->data, 0, (size_t)w * h * 3);
    area_idx *order = malloc((ann->n ? ann->n : 1) * sizeof *order);
    uint8_t *m = malloc((size_t)w * h);
    if (!order || !m) {
        free(order);
        free(m);
        asam_image_free(out);
        return asam_error("mask map: out of memory");
    }
    for (size_t i = 0; i < ann->n; i++)
        order[i] = (area_idx){asam_rle_area(&ann->anns[i].rle), (int)i};
    qsort(order, ann->n, sizeof *order, by_area_desc);
    for (size_t k = 0; k < ann->n; k++) {
        const asam_rle *r = &ann->anns[order[k].idx].rle;
        if (r->h != h || r->w != w || asam_rle_decode(r, m)) {
            const int idx = order[k].idx; /* (read before order is freed) */
            free(order);
            free(m);
            asam_image_free(out);
            return asam_error("mask map: annotation %d is %dx%d, image %dx%d", idx, r->w, r->h, w,
                              h);
        }
        uint8_t c[3];
        asam_mask_color(order[k].idx, c);
        for (size_t p = 0; p < (size_t)w * h; p++)
            if (m[p]) memcpy(out->data + 3 * p, c, 3);
    }
    free(order);
    free(m);
    return 0;
}

asam_tensor *asam_mask_map_tensor(asam_ctx *ctx, const asam_sa1b_image *ann, int size) {
    asam_image map;
    if (asam_mask_map(ann, &map)) return asam_ctx_fail(ctx, "%s", asam_last_error());
    asam_tensor *t = asam_sd_image_to_tensor(ctx, &map, size, size, 0.0f);
    asam_image_free(&map);
    return t;
}

/* ---- attack target ------------------------------------------------------------------------ */
void asam_attack_target_free(asam_attack_target *t) {
    free(t->boxes);
    free(t->gt256);
    free(t->gt1024);
    memset(t, 0, sizeof *t);
}

int asam_attack_target_make(const asam_sa1b_image *ann, int max_boxes, asam_attack_target *t) {
    memset(t, 0, sizeof *t);
    int h = ann->height, w = ann->width;
    int n = (int)ann->n < max_boxes ? (int)ann->n : max_boxes;
    if (n <= 0) return asam_error("attack: image has no masks");
    const size_t S = ASAM_SAM_IMG, L = ASAM_SAM_LOWRES;
    t->n = n;
    t->boxes = malloc((size_t)n * 4 * sizeof(float));
    t->gt256 = malloc((size_t)n * L * L * sizeof(float));
    t->gt1024 = malloc((size_t)n * S * S);
    asam_image src = {.w = w, .h = h, .c = 1, .data = malloc((size_t)w * h)};
    if (!t->boxes || !t->gt256 || !t->gt1024 || !src.data) {
        free(src.data);
        asam_attack_target_free(t);
        return asam_error("attack: out of memory for %d masks", n);
    }
    for (int i = 0; i < n; i++) {
        const asam_rle *r = &ann->anns[i].rle;
        if (r->h != h || r->w != w || asam_rle_decode(r, src.data)) {
            free(src.data);
            asam_attack_target_free(t);
            return asam_error("attack: annotation %d does not match the image size", i);
        }
        /* the official code resizes image and masks to 1024x1024 ignoring aspect ratio */
        asam_image big, small;
        if (asam_image_resize_nearest(&src, (int)S, (int)S, &big) ||
            asam_image_resize_nearest(&src, (int)L, (int)L, &small)) {
            free(src.data);
            asam_attack_target_free(t);
            return -1;
        }
        uint8_t *g = t->gt1024 + (size_t)i * S * S;
        for (size_t p = 0; p < S * S; p++) g[p] = big.data[p] != 0;
        float *b = t->boxes + 4 * i; /* tight bounds, max inclusive (masks_to_boxes) */
        if (!asam_mask_box_u8(g, (int)S, (int)S, b))
            memset(b, 0, 4 * sizeof(float)); /* mask vanished in the resize */
        float *g2 = t->gt256 + (size_t)i * L * L;
        for (size_t p = 0; p < L * L; p++) g2[p] = small.data[p] ? 1.0f : 0.0f;
        asam_image_free(&big);
        asam_image_free(&small);
    }
    free(src.data);
    return 0;
}
