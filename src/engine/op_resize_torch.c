/* Resampling with the exact arithmetic of torch 1.13's CPU F.interpolate kernels (Debian's GCC
 * build, whose AVX2 kernels contract a*b + c into fused multiply-adds), as EfficientSAM needs:
 *   - bicubic (align_corners=False, A = -0.75, taps clamped to the border, no antialias): the
 *     pos-embed resample (14 -> 64) and the low-res logits to the original image size;
 *   - bilinear (align_corners=False, no antialias): the image pre-processing to 1024x1024.
 * Per axis: scale = float(in) / float(out); the source index is computed in DOUBLE
 * (src = double(scale) * (o + 0.5) - 0.5; bilinear clamps it at 0, bicubic does not). Each
 * output is a separable sum over K taps per axis (K = 2 bilinear, 4 bicubic): per source row
 * r = fmaf(x[K-1], w[K-1], ... fmaf(x[2], w[2], fmaf(x[0], w[0], x[1] * w[1]))), then the same
 * combination of the K rows with the row weights. This file is built with -ffp-contract=off
 * so that only the written fmaf calls fuse (CMakeLists.txt).
 * Backward scatters w_row * w_col * dy into the taps (float accumulation). */
#include "engine/engine_internal.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 16384
#define MAX_TAPS 4

typedef struct {
    int64_t *idx; /* (out, K) source indices */
    float *w;     /* (out, K) weights */
} taps;

typedef struct {
    taps h, w;
    int k;
} taps_saved;

/* PyTorch upsample_bicubic2d weights, written as its kernel evaluates them. */
static float cubic1(float x, float A) { /* |x| <= 1 */
    return (fmaf(A + 2.0f, x, -(A + 3.0f)) * x) * x + 1.0f;
}
static float cubic2(float x, float A) { /* 1 < |x| < 2 */
    return fmaf(fmaf(A, x, -5.0f * A), x, 8.0f * A) * x - 4.0f * A;
}

static void bicubic_axis(taps *t, int64_t in, int64_t out) {
    const float A = -0.75f;
    float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        double src = (double)scale * ((double)o + 0.5) - 0.5;
        double fl = floor(src);
        int64_t i = (int64_t)fl;
        float f = (float)(src - fl);
        float *w = t->w + o * 4;
        w[0] = cubic2(f + 1.0f, A);
        w[1] = cubic1(f, A);
        w[2] = cubic1(1.0f - f, A);
        w[3] = cubic2(2.0f - f, A);
        for (int k = 0; k < 4; k++) {
            int64_t s = i - 1 + k;
            t->idx[o * 4 + k] = s < 0 ? 0 : (s > in - 1 ? in - 1 : s);
        }
    }
}

static void bilinear_axis(taps *t, int64_t in, int64_t out) {
    float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; o++) {
        int64_t i0;
        float l1;
        if (in == out) { /* torch copies when the size is unchanged */
            i0 = o;
            l1 = 0.0f;
        } else {
            double src = (double)scale * ((double)o + 0.5) - 0.5;
            if (src < 0) src = 0;
            i0 = (int64_t)src;
            if (i0 > in - 1) i0 = in - 1;
            l1 = (float)(src - (double)i0);
        }
        t->idx[o * 2] = i0;
        t->idx[o * 2 + 1] = i0 + (i0 < in - 1 ? 1 : 0);
        t->w[o * 2] = 1.0f - l1;
        t->w[o * 2 + 1] = l1;
    }
}

/* fmaf(v[K-1], w[K-1], ... fmaf(v[0], w[0], v[1] * w[1])) */
static inline float combine(const float *v, const float *w, int k) {
    float r = fmaf(v[0], w[0], v[1] * w[1]);
    for (int j = 2; j < k; j++) r = fmaf(v[j], w[j], r);
    return r;
}

static bool taps_alloc(asam_ctx *ctx, taps *t, int64_t n, int k) {
    size_t m = (size_t)(n ? n : 1) * (size_t)k;
    t->idx = asam_ctx_alloc(ctx, m * sizeof(int64_t));
    t->w = asam_ctx_alloc(ctx, m * sizeof(float));
    return t->idx && t->w;
}

static void taps_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *out = n->out;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    const taps_saved *s = n->saved;
    int64_t H = n->ip[0], W = n->ip[1], OH = n->ip[2], OW = n->ip[3];
    int K = s->k;
    int64_t P = out->numel / (OH * OW);
    const float *g = out->grad;
    /* planes are independent; within a plane the scatter is serial (taps overlap) */
#pragma omp parallel for schedule(static) if (out->numel >= PAR_MIN && P > 1)
    for (int64_t p = 0; p < P; p++) {
        float *gp = gx + p * H * W;
        const float *go = g + p * OH * OW;
        for (int64_t i = 0; i < OH; i++) {
            const int64_t *yi = s->h.idx + i * K;
            const float *yw = s->h.w + i * K;
            for (int64_t j = 0; j < OW; j++) {
                const int64_t *xi = s->w.idx + j * K;
                const float *xw = s->w.w + j * K;
                float v = go[i * OW + j];
                for (int a = 0; a < K; a++) {
                    float va = yw[a] * v;
                    float *row = gp + yi[a] * W;
                    for (int b = 0; b < K; b++) row[xi[b]] += va * xw[b];
                }
            }
        }
    }
}

static asam_tensor *resize_taps(asam_ctx *ctx, const char *op, int bicubic, asam_tensor *x,
                                int64_t OH, int64_t OW) {
    int64_t H, W;
    asam_tensor *out = asam_resize_out(ctx, op, x, OH, OW, &H, &W);
    if (!out) return NULL;
    asam_node *n = asam_record(ctx, op, taps_backward, out, 1, &x);
    asam_mark mk = asam_ctx_mark(ctx);
    int K = bicubic ? 4 : 2;
    taps_saved *s = asam_ctx_alloc(ctx, sizeof *s);
    if (!s || !taps_alloc(ctx, &s->h, OH, K) || !taps_alloc(ctx, &s->w, OW, K))
        return asam_ctx_fail(ctx, "%s: out of memory", op);
    s->k = K;
    if (bicubic) {
        bicubic_axis(&s->h, H, OH);
        bicubic_axis(&s->w, W, OW);
    } else {
        bilinear_axis(&s->h, H, OH);
        bilinear_axis(&s->w, W, OW);
    }
    int64_t P = x->numel / (H * W);
    const float *xd = x->data;
    float *o = out->data;
#pragma omp parallel for schedule(static) if (out->numel >= PAR_MIN)
    for (int64_t t = 0; t < P * OH; t++) {
        int64_t p = t / OH, i = t % OH;
        const float *plane = xd + p * H * W;
        const int64_t *yi = s->h.idx + i * K;
        const float *yw = s->h.w + i * K;
        float *orow = o + t * OW;
        for (int64_t j = 0; j < OW; j++) {
            const int64_t *xi = s->w.idx + j * K;
            const float *xw = s->w.w + j * K;
            float rows[MAX_TAPS], v[MAX_TAPS];
            for (int a = 0; a < K; a++) {
                const float *r = plane + yi[a] * W;
                for (int b = 0; b < K; b++) v[b] = r[xi[b]];
                rows[a] = combine(v, xw, K);
            }
            orow[j] = combine(rows, yw, K);
        }
    }
    if (n) {
        n->ip[0] = H;
        n->ip[1] = W;
        n->ip[2] = OH;
        n->ip[3] = OW;
        n->saved = s; /* the tap tables stay for backward */
    } else {
        asam_ctx_release(ctx, mk);
    }
    return out;
}

asam_tensor *asam_resize_bicubic(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w) {
    return resize_taps(ctx, "resize_bicubic", 1, x, out_h, out_w);
}

asam_tensor *asam_resize_bilinear_torch(asam_ctx *ctx, asam_tensor *x, int64_t out_h,
                                        int64_t out_w) {
    return resize_taps(ctx, "resize_bilinear_torch", 0, x, out_h, out_w);
}
