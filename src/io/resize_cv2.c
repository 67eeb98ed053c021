/* OpenCV 4.6 cv2.resize(src, (w, h)) with the default INTER_LINEAR, as the official ASAM
 * scripts resize the pre-rendered control maps (null_text_inversion.py:720 on float32 pixels,
 * grad_null_text_inversion_edit.py:900 on uint8 pixels).
 *
 * Per axis (imgproc/src/resize.cpp, resizeGeneric): source coordinate
 * f = (o + 0.5) * in/out - 0.5 in float, s = floor(f), frac = f - s. Columns: s < 0 -> (s, frac)
 * = (0, 0); s >= in - 1 -> (in - 1, 0). Rows keep their weights, and the two source rows are
 * clipped into the image (resizeGeneric_ reads rows clip(s) and clip(s + 1)): the first and
 * last output rows blend one row with itself, which the fixed-point path rounds down by up to
 * one level against weights (1, 0). No antialiasing when shrinking. Horizontal pass first, then
 * vertical. uint8: the weights are rounded to 11-bit fixed point independently
 * (saturate_cast<short>(w * 2048)); the horizontal pass keeps 32-bit sums; the vertical pass
 * is the SIMD one (VResizeLinearVec_32s8u), which rounds as
 *   ((((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16) + 2) >> 2.
 * (The scalar tail rounds differently; it only runs for row lengths not a multiple of the
 * vector width, 16 bytes.) An exact 2x shrink on both axes is INTER_AREA's 2x2 mean in
 * OpenCV. */
#include "asam/error.h"
#include "asam/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *ofs;  /* first source index per output */
    float *w;  /* (out, 2) float weights */
    short *iw; /* (out, 2) fixed-point weights (x 2048) */
} axis;

static void axis_free(axis *a) {
    free(a->ofs);
    free(a->w);
    free(a->iw);
}

static int axis_make(int in, int out, int clamp, axis *a) {
    a->ofs = malloc(sizeof(int) * out);
    a->w = malloc(sizeof(float) * 2 * out);
    a->iw = malloc(sizeof(short) * 2 * out);
    if (!a->ofs || !a->w || !a->iw) {
        axis_free(a);
        return asam_error("resize_cv2: out of memory");
    }
    double scale = 1.0 / ((double)out / in); /* cv: scale_x = 1 / inv_scale_x */
    for (int o = 0; o < out; o++) {
        float f = (float)((o + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (clamp && s < 0) s = 0, f = 0;
        if (clamp && s >= in - 1) s = in - 1, f = 0;
        a->ofs[o] = s;
        a->w[2 * o] = 1.0f - f;
        a->w[2 * o + 1] = f;
        a->iw[2 * o] = (short)lrintf((1.0f - f) * 2048.0f);
        a->iw[2 * o + 1] = (short)lrintf(f * 2048.0f);
    }
    return 0;
}

static int check(const asam_image *src, int w, int h) {
    if (!src || !src->data || src->w <= 0 || src->h <= 0 || src->c < 1 || src->c > 4)
        return asam_error("resize_cv2: empty or malformed source image");
    if (w <= 0 || h <= 0) return asam_error("resize_cv2: bad target size %dx%d", w, h);
    return 0;
}

static int is_half(const asam_image *src, int w, int h) {
    return src->w == 2 * w && src->h == 2 * h;
}

int asam_image_resize_cv2_linear(const asam_image *src, int new_w, int new_h, asam_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (check(src, new_w, new_h) || asam_image_alloc(dst, new_w, new_h, src->c)) return -1;
    const int c = src->c, W = src->w, H = src->h;
    if (new_w == W && new_h == H) {
        memcpy(dst->data, src->data, (size_t)W * H * c);
        return 0;
    }
    if (is_half(src, new_w, new_h)) { /* INTER_AREA fast path: (a + b + c + d + 2) >> 2 */
        for (int y = 0; y < new_h; y++)
            for (int x = 0; x < new_w * c; x++) {
                const uint8_t *p = src->data + (size_t)(2 * y) * W * c + (x / c) * 2 * c + x % c;
                dst->data[(size_t)y * new_w * c + x] =
                    (uint8_t)((p[0] + p[c] + p[(size_t)W * c] + p[(size_t)W * c + c] + 2) >> 2);
            }
        return 0;
    }
    axis ax = {0}, ay = {0};
    int32_t *rows = NULL;
    int rc = -1;
    if (axis_make(W, new_w, 1, &ax) || axis_make(H, new_h, 0, &ay)) goto done;
    const size_t rl = (size_t)new_w * c;
    rows = malloc(sizeof(int32_t) * rl * H);
    if (!rows) {
        asam_error("resize_cv2: out of memory");
        goto done;
    }
    for (int y = 0; y < H; y++) { /* HResizeLinear<uchar, int, short, 2048> */
        const uint8_t *s = src->data + (size_t)y * W * c;
        int32_t *d = rows + (size_t)y * rl;
        for (int x = 0; x < new_w; x++) {
            int sx = ax.ofs[x], sx1 = sx + 1 < W ? sx + 1 : sx;
            for (int ch = 0; ch < c; ch++)
                d[x * c + ch] = s[sx * c + ch] * ax.iw[2 * x] + s[sx1 * c + ch] * ax.iw[2 * x + 1];
        }
    }
    for (int y = 0; y < new_h; y++) { /* VResizeLinearVec_32s8u */
        int sy = ay.ofs[y] < 0 ? 0 : ay.ofs[y] > H - 1 ? H - 1 : ay.ofs[y];
        int sy1 = ay.ofs[y] + 1 < 0 ? 0 : ay.ofs[y] + 1 > H - 1 ? H - 1 : ay.ofs[y] + 1;
        const int32_t *r0 = rows + (size_t)sy * rl, *r1 = rows + (size_t)sy1 * rl;
        int b0 = ay.iw[2 * y], b1 = ay.iw[2 * y + 1];
        uint8_t *d = dst->data + (size_t)y * rl;
        for (size_t i = 0; i < rl; i++) {
            int v = ((((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16) + 2) >> 2;
            d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    rc = 0;
done:
    axis_free(&ax);
    axis_free(&ay);
    free(rows);
    if (rc) asam_image_free(dst);
    return rc;
}

int asam_image_resize_cv2_linear_f32(const asam_image *src, int new_w, int new_h, float **out) {
    *out = NULL;
    if (check(src, new_w, new_h)) return -1;
    const int c = src->c, W = src->w, H = src->h;
    const size_t rl = (size_t)new_w * c;
    float *o = malloc(sizeof(float) * rl * new_h);
    if (!o) return asam_error("resize_cv2: out of memory");
    if (new_w == W && new_h == H) {
        for (size_t i = 0; i < rl * H; i++) o[i] = src->data[i];
        *out = o;
        return 0;
    }
    if (is_half(src, new_w, new_h)) {
        for (int y = 0; y < new_h; y++)
            for (int x = 0; x < new_w * c; x++) {
                const uint8_t *p = src->data + (size_t)(2 * y) * W * c + (x / c) * 2 * c + x % c;
                o[(size_t)y * rl + x] =
                    ((float)p[0] + p[c] + p[(size_t)W * c] + p[(size_t)W * c + c]) * 0.25f;
            }
        *out = o;
        return 0;
    }
    axis ax = {0}, ay = {0};
    float *rows = NULL;
    int rc = -1;
    if (axis_make(W, new_w, 1, &ax) || axis_make(H, new_h, 0, &ay)) goto done;
    rows = malloc(sizeof(float) * rl * H);
    if (!rows) {
        asam_error("resize_cv2: out of memory");
        goto done;
    }
    for (int y = 0; y < H; y++) {
        const uint8_t *s = src->data + (size_t)y * W * c;
        float *d = rows + (size_t)y * rl;
        for (int x = 0; x < new_w; x++) {
            int sx = ax.ofs[x], sx1 = sx + 1 < W ? sx + 1 : sx;
            for (int ch = 0; ch < c; ch++)
                d[x * c + ch] =
                    (float)s[sx * c + ch] * ax.w[2 * x] + (float)s[sx1 * c + ch] * ax.w[2 * x + 1];
        }
    }
    for (int y = 0; y < new_h; y++) {
        int sy = ay.ofs[y] < 0 ? 0 : ay.ofs[y] > H - 1 ? H - 1 : ay.ofs[y];
        int sy1 = ay.ofs[y] + 1 < 0 ? 0 : ay.ofs[y] + 1 > H - 1 ? H - 1 : ay.ofs[y] + 1;
        const float *r0 = rows + (size_t)sy * rl, *r1 = rows + (size_t)sy1 * rl;
        for (size_t i = 0; i < rl; i++)
            o[(size_t)y * rl + i] = r0[i] * ay.w[2 * y] + r1[i] * ay.w[2 * y + 1];
    }
    *out = o;
    o = NULL;
    rc = 0;
done:
    axis_free(&ax);
    axis_free(&ay);
    free(rows);
    free(o);
    return rc;
}
