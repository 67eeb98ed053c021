/* Pillow-compatible resampling of 8-bit images (bit-exact with Pillow 9.4 Image.resize).
 *
 * BILINEAR (and BICUBIC, the same with Pillow's a = -0.5 cubic of support 2) is Pillow's separable
 * convolution with a triangle filter: the filter is widened by the scale factor when shrinking
 * (antialiasing), the weights are normalised in double and turned into 22-bit fixed point, the
 * horizontal pass runs first into a uint8 intermediate, and a pass is skipped when its axis keeps
 * its size. RGBA is resized premultiplied (PIL converts RGBA -> RGBa -> resize -> RGBA). NEAREST
 * follows Pillow's affine scaling, whose source coordinate is accumulated by repeated addition in
 * double. */
#include "asam/error.h"
#include "asam/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS 22

/* Fixed-point taps of one axis: output o reads n[o] inputs from start[o], with weights
 * w[o*ksize ..]. */
typedef struct {
    int ksize;
    int *start, *n;
    int32_t *w;
} taps;

static void taps_free(taps *t) {
    free(t->start);
    free(t->n);
    free(t->w);
}

static double triangle(double x) {
    if (x < 0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's bicubic_filter (Resample.c, a = -0.5), support 2 */
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static int taps_make_filter(int in_size, int out_size, double (*filter)(double), double fsupport,
                            taps *t) {
    double scale = (double)in_size / out_size;
    double fs = scale < 1.0 ? 1.0 : scale; /* filter scale: widen only when shrinking */
    double support = fsupport * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    t->ksize = ksize;
    t->start = malloc(sizeof(int) * out_size);
    t->n = malloc(sizeof(int) * out_size);
    t->w = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    double *k = malloc(sizeof(double) * ksize);
    if (!t->start || !t->n || !t->w || !k) {
        free(k);
        taps_free(t);
        return asam_error("resize: out of memory for filter taps");
    }
    double ss = 1.0 / fs;
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale;
        int xmin = (int)(center - support + 0.5); /* C truncation, as Pillow */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int j = 0; j < xmax; j++) {
            k[j] = filter((j + xmin - center + 0.5) * ss);
            ww += k[j];
        }
        int32_t *wo = t->w + (size_t)o * ksize;
        for (int j = 0; j < ksize; j++) {
            double v = j < xmax ? (ww != 0.0 ? k[j] / ww : k[j]) : 0.0;
            wo[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        t->start[o] = xmin;
        t->n[o] = xmax;
    }
    free(k);
    return 0;
}

static inline uint8_t clip8(int32_t acc) {
    acc >>= PRECISION_BITS;
    return acc < 0 ? 0 : acc > 255 ? 255 : (uint8_t)acc;
}

/* (h, in_w, c) -> (h, out_w, c) */
static void pass_horizontal(const uint8_t *src, int h, int in_w, int c, uint8_t *dst, int out_w,
                            const taps *t) {
#pragma omp parallel for schedule(static) if ((long)h * out_w > 65536)
    for (int y = 0; y < h; y++) {
        const uint8_t *row = src + (size_t)y * in_w * c;
        uint8_t *orow = dst + (size_t)y * out_w * c;
        for (int x = 0; x < out_w; x++) {
            const int32_t *w = t->w + (size_t)x * t->ksize;
            const uint8_t *p = row + (size_t)t->start[x] * c;
            int n = t->n[x];
            if (c == 3) { /* the common case: one sweep over the taps for all channels */
                int32_t a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
                for (int j = 0; j < n; j++) {
                    a0 += p[3 * j] * w[j];
                    a1 += p[3 * j + 1] * w[j];
                    a2 += p[3 * j + 2] * w[j];
                }
                orow[3 * x] = clip8(a0);
                orow[3 * x + 1] = clip8(a1);
                orow[3 * x + 2] = clip8(a2);
                continue;
            }
            for (int ch = 0; ch < c; ch++) {
                int32_t acc = 1 << (PRECISION_BITS - 1);
                for (int j = 0; j < n; j++) acc += p[j * c + ch] * w[j];
                orow[x * c + ch] = clip8(acc);
            }
        }
    }
}

/* (in_h, w, c) -> (out_h, w, c); rows are combined whole so the inner loop vectorises. */
static int pass_vertical(const uint8_t *src, int in_h, int rowlen, uint8_t *dst, int out_h,
                         const taps *t) {
    int fail = 0;
#pragma omp parallel if ((long)out_h * rowlen > 65536)
    {
        int32_t *acc = malloc(sizeof(int32_t) * rowlen);
        if (!acc) {
#pragma omp atomic write
            fail = 1;
        } else {
#pragma omp for schedule(static)
            for (int y = 0; y < out_h; y++) {
                const int32_t *w = t->w + (size_t)y * t->ksize;
                for (int i = 0; i < rowlen; i++) acc[i] = 1 << (PRECISION_BITS - 1);
                for (int j = 0; j < t->n[y]; j++) {
                    const uint8_t *row = src + (size_t)(t->start[y] + j) * rowlen;
                    int32_t wj = w[j];
                    for (int i = 0; i < rowlen; i++) acc[i] += row[i] * wj;
                }
                uint8_t *orow = dst + (size_t)y * rowlen;
                for (int i = 0; i < rowlen; i++) orow[i] = clip8(acc[i]);
            }
            free(acc);
        }
    }
    (void)in_h;
    return fail ? asam_error("resize: out of memory") : 0;
}

/* PIL's MULDIV255 premultiplication and its inverse (Convert.c rgbA2rgba / rgba2rgbA). */
static void premultiply(uint8_t *p, size_t npix) {
    for (size_t i = 0; i < npix; i++, p += 4) {
        unsigned a = p[3];
        for (int ch = 0; ch < 3; ch++) {
            unsigned tmp = p[ch] * a + 128;
            p[ch] = (uint8_t)(((tmp >> 8) + tmp) >> 8);
        }
    }
}

static void unpremultiply(uint8_t *p, size_t npix) {
    for (size_t i = 0; i < npix; i++, p += 4) {
        unsigned a = p[3];
        if (a == 0 || a == 255) continue;
        for (int ch = 0; ch < 3; ch++) {
            unsigned v = 255u * p[ch] / a;
            p[ch] = v > 255 ? 255 : (uint8_t)v;
        }
    }
}

static int check_args(const asam_image *src, int new_w, int new_h, const char *what) {
    if (!src || !src->data || src->w <= 0 || src->h <= 0 ||
        (src->c != 1 && src->c != 3 && src->c != 4))
        return asam_error("%s: empty or malformed source image", what);
    if (new_w <= 0 || new_h <= 0)
        return asam_error("%s: bad target size %dx%d", what, new_w, new_h);
    return 0;
}

static int resize_pil(const asam_image *src, int new_w, int new_h, asam_image *dst, int cubic) {
    memset(dst, 0, sizeof *dst);
    if (check_args(src, new_w, new_h, "resize_pil")) return -1;
    int c = src->c;
    if (asam_image_alloc(dst, new_w, new_h, c)) return -1;
    if (new_w == src->w && new_h == src->h) { /* PIL returns a copy */
        memcpy(dst->data, src->data, (size_t)new_w * new_h * c);
        return 0;
    }
    const uint8_t *in = src->data;
    uint8_t *premul = NULL, *mid = NULL;
    int rc = -1;
    taps th = {0}, tv = {0};
    int need_h = new_w != src->w, need_v = new_h != src->h;
    if (c == 4) {
        premul = malloc((size_t)src->w * src->h * 4);
        if (!premul) {
            asam_error("resize_pil_bilinear: out of memory");
            goto done;
        }
        memcpy(premul, src->data, (size_t)src->w * src->h * 4);
        premultiply(premul, (size_t)src->w * src->h);
        in = premul;
    }
    double (*filter)(double) = cubic ? bicubic : triangle;
    double support = cubic ? 2.0 : 1.0;
    if (need_h && taps_make_filter(src->w, new_w, filter, support, &th)) goto done;
    if (need_v && taps_make_filter(src->h, new_h, filter, support, &tv)) goto done;
    if (need_h && need_v) {
        mid = malloc((size_t)new_w * src->h * c);
        if (!mid) {
            asam_error("resize_pil_bilinear: out of memory");
            goto done;
        }
        pass_horizontal(in, src->h, src->w, c, mid, new_w, &th);
        if (pass_vertical(mid, src->h, new_w * c, dst->data, new_h, &tv)) goto done;
    } else if (need_h) {
        pass_horizontal(in, src->h, src->w, c, dst->data, new_w, &th);
    } else {
        if (pass_vertical(in, src->h, new_w * c, dst->data, new_h, &tv)) goto done;
    }
    if (c == 4) unpremultiply(dst->data, (size_t)new_w * new_h);
    rc = 0;
done:
    taps_free(&th); /* zero-initialised when unused */
    taps_free(&tv);
    free(premul);
    free(mid);
    if (rc) asam_image_free(dst);
    return rc;
}

int asam_image_resize_pil_bilinear(const asam_image *src, int new_w, int new_h, asam_image *dst) {
    return resize_pil(src, new_w, new_h, dst, 0);
}

/* Pillow >= 7 Image.resize without a filter: BICUBIC (a = -0.5) for RGB and L images. The
 * official ASAM scripts resize with that default everywhere (sa_N.jpg to 512 and 1024, the
 * per-mask PNGs to 1024). */
int asam_image_resize_pil_bicubic(const asam_image *src, int new_w, int new_h, asam_image *dst) {
    return resize_pil(src, new_w, new_h, dst, 1);
}

/* Pillow's ImagingScaleAffine: coordinates start at scale/2 and advance by repeated addition;
 * COORD truncates (negative -> -1, outside -> left untouched; never happens for a resize). */
static void nearest_table(int in_size, int out_size, int *tab) {
    double a = (double)in_size / out_size;
    double xo = a * 0.5;
    for (int x = 0; x < out_size; x++) {
        int xin = xo < 0.0 ? -1 : (int)xo;
        if (xin < 0) xin = 0;
        if (xin >= in_size) xin = in_size - 1;
        tab[x] = xin;
        xo += a;
    }
}

int asam_image_resize_nearest(const asam_image *src, int new_w, int new_h, asam_image *dst) {
    memset(dst, 0, sizeof *dst);
    if (check_args(src, new_w, new_h, "resize_nearest")) return -1;
    int c = src->c;
    if (asam_image_alloc(dst, new_w, new_h, c)) return -1;
    int *xt = malloc(sizeof(int) * new_w), *yt = malloc(sizeof(int) * new_h);
    if (!xt || !yt) {
        free(xt);
        free(yt);
        asam_image_free(dst);
        return asam_error("resize_nearest: out of memory");
    }
    nearest_table(src->w, new_w, xt);
    nearest_table(src->h, new_h, yt);
#pragma omp parallel for schedule(static) if ((long)new_w * new_h > 65536)
    for (int y = 0; y < new_h; y++) {
        const uint8_t *row = src->data + (size_t)yt[y] * src->w * c;
        uint8_t *o = dst->data + (size_t)y * new_w * c;
        if (c == 1)
            for (int x = 0; x < new_w; x++) o[x] = row[xt[x]];
        else
            for (int x = 0; x < new_w; x++) memcpy(o + x * c, row + (size_t)xt[x] * c, c);
    }
    free(xt);
    free(yt);
    return 0;
}
