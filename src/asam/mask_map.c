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

/* ref: grad_null_text_inversion_edit.py:898-902 (cv2 on uint8, then /255) and
 * null_text_inversion.py:718-720 (cv2 on float32, then /255) */
asam_tensor *asam_control_hint(asam_ctx *ctx, const asam_image *map, int size, int float_path) {
    if (map->c != 3) return asam_ctx_fail(ctx, "control map has %d channels, expected RGB", map->c);
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(1, 3, size, size));
    if (!t) return NULL;
    const size_t np = (size_t)size * size;
    if (float_path) {
        float *f;
        if (asam_image_resize_cv2_linear_f32(map, size, size, &f))
            return asam_ctx_fail(ctx, "%s", asam_last_error());
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < np; i++) t->data[c * np + i] = f[i * 3 + c] / 255.0f;
        free(f);
    } else {
        asam_image r;
        if (asam_image_resize_cv2_linear(map, size, size, &r))
            return asam_ctx_fail(ctx, "%s", asam_last_error());
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < np; i++) t->data[c * np + i] = r.data[i * 3 + c] / 255.0f;
        asam_image_free(&r);
    }
    return t;
}

asam_tensor *asam_mask_map_tensor(asam_ctx *ctx, const asam_sa1b_image *ann, int size) {
    asam_image map;
    if (asam_mask_map(ann, &map)) return asam_ctx_fail(ctx, "%s", asam_last_error());
    asam_tensor *t = asam_control_hint(ctx, &map, size, 0);
    asam_image_free(&map);
    return t;
}

/* ---- attack target ------------------------------------------------------------------------ */
void asam_attack_target_free(asam_attack_target *t) {
    free(t->boxes);
    free(t->gt256);
    free(t->lab256);
    free(t->ref1024);
    memset(t, 0, sizeof *t);
}

/* the target's input side S (1024 when unset) */
static int target_size(const asam_attack_target *t) {
    return t->size > 0 ? t->size : ASAM_SAM_IMG;
}

static int target_alloc(asam_attack_target *t, int n, int size) {
    memset(t, 0, sizeof *t);
    if (size < 16 || size > ASAM_SAM_IMG || size % 16)
        return asam_error("attack: input side %d is not a multiple of 16 in 16..%d", size,
                          ASAM_SAM_IMG);
    const size_t L = (size_t)size / 4;
    t->n = n;
    t->size = size;
    t->boxes = malloc((size_t)n * 4 * sizeof(float));
    t->gt256 = malloc((size_t)n * L * L * sizeof(float));
    t->lab256 = malloc((size_t)n * L * L * sizeof(float));
    if (!t->boxes || !t->gt256 || !t->lab256) {
        asam_attack_target_free(t);
        return asam_error("attack: out of memory for %d masks", n);
    }
    return 0;
}

/* mask i of the target from an 8-bit gray mask of any size (1024 and 256 of the official code
 * are S and S/4) */
static int target_set(asam_attack_target *t, int i, const asam_image *mask) {
    const int S = target_size(t), L = S / 4, f = S / L;
    asam_image big;
    // ref: grad_null_text_inversion_edit.py:862 .convert('L').resize((1024,1024)) (PIL bicubic)
    if (asam_image_resize_pil_bicubic(mask, S, S, &big)) return -1;
    // ref: :876 F.interpolate(1024 -> 256, bilinear, align_corners=False): an exact 4x
    // shrink reads rows/columns 4o+1 and 4o+2 with weight 1/2 each (S -> S/4 likewise)
    float *lab = t->lab256 + (size_t)i * L * L, *gt = t->gt256 + (size_t)i * L * L;
    for (int y = 0; y < L; y++)
        for (int x = 0; x < L; x++) {
            const uint8_t *p = big.data + (size_t)(f * y + 1) * S + f * x + 1;
            float v = 0.5f * (0.5f * p[0] + 0.5f * p[1]) + 0.5f * (0.5f * p[S] + 0.5f * p[S + 1]);
            lab[y * L + x] = v;
            gt[y * L + x] = v / 255.0f; // ref: :679 label_masks_256/255.0
        }
    // ref: :147-153 masks_to_boxes of mask > 128; an empty mask gives x_min = y_min = 1e8
    // (masked_fill) and x_max = y_max = 0 (max of zeros)
    for (size_t q = 0; q < (size_t)S * S; q++) big.data[q] = big.data[q] > 128;
    float *b = t->boxes + 4 * i;
    if (asam_mask_box_u8(big.data, S, S, b) == 0) b[0] = b[1] = 1e8f, b[2] = b[3] = 0;
    asam_image_free(&big);
    return 0;
}

int asam_attack_target_from_masks(const asam_image *masks, int n, asam_attack_target *t) {
    return asam_attack_target_from_masks_at(masks, n, ASAM_SAM_IMG, t);
}

int asam_attack_target_from_masks_at(const asam_image *masks, int n, int size,
                                     asam_attack_target *t) {
    if (n <= 0) return asam_error("attack: image has no masks");
    if (target_alloc(t, n, size)) return -1;
    for (int i = 0; i < n; i++) {
        if (masks[i].c != 1) {
            asam_attack_target_free(t);
            return asam_error("attack: mask %d has %d channels, expected gray", i, masks[i].c);
        }
        if (target_set(t, i, &masks[i])) {
            asam_attack_target_free(t);
            return -1;
        }
    }
    return 0;
}

int asam_attack_target_make(const asam_sa1b_image *ann, int max_boxes, asam_attack_target *t) {
    return asam_attack_target_make_at(ann, max_boxes, ASAM_SAM_IMG, t);
}

int asam_attack_target_make_at(const asam_sa1b_image *ann, int max_boxes, int size,
                               asam_attack_target *t) {
    memset(t, 0, sizeof *t);
    int h = ann->height, w = ann->width;
    // ref: grad_null_text_inversion_edit.py:860 j < min(sam_batch, #masks), in file order
    int n = (int)ann->n < max_boxes ? (int)ann->n : max_boxes;
    if (n <= 0) return asam_error("attack: image has no masks");
    if (target_alloc(t, n, size)) return -1;
    asam_image src = {.w = w, .h = h, .c = 1, .data = malloc((size_t)w * h)};
    if (!src.data) {
        asam_attack_target_free(t);
        return asam_error("attack: out of memory for a %dx%d mask", w, h);
    }
    for (int i = 0; i < n; i++) {
        const asam_rle *r = &ann->anns[i].rle;
        if (r->h != h || r->w != w || asam_rle_decode(r, src.data)) {
            free(src.data);
            asam_attack_target_free(t);
            return asam_error("attack: annotation %d does not match the image size", i);
        }
        /* the per-mask PNGs hold 0/255 */
        for (size_t p = 0; p < (size_t)w * h; p++) src.data[p] = src.data[p] ? 255 : 0;
        if (target_set(t, i, &src)) {
            free(src.data);
            asam_attack_target_free(t);
            return -1;
        }
    }
    free(src.data);
    return 0;
}

int asam_attack_target_set_reference(asam_attack_target *t, const asam_image *img) {
    const int S = target_size(t);
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    if (img->c != 3) return asam_error("attack: the clean image is not RGB");
    asam_image big;
    // ref: grad_null_text_inversion_edit.py:850-854 Image.open().convert('RGB').resize(1024),
    // /255., - mean, / std (float32)
    if (asam_image_resize_pil_bicubic(img, S, S, &big)) return -1;
    free(t->ref1024);
    t->ref1024 = malloc((size_t)3 * S * S * sizeof(float));
    if (!t->ref1024) {
        asam_image_free(&big);
        return asam_error("attack: out of memory");
    }
    for (int c = 0; c < 3; c++)
        for (size_t p = 0; p < (size_t)S * S; p++)
            t->ref1024[c * (size_t)S * S + p] =
                ((float)big.data[p * 3 + c] / 255.0f - mean[c]) / sd[c];
    asam_image_free(&big);
    return 0;
}
