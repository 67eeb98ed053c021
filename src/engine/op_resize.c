/* Resampling of (..., H, W) tensors with PyTorch F.interpolate semantics (size given, no scale
 * factor, no antialias). Index arithmetic is done in float as torch's CPU kernels do, so the
 * chosen source pixels match exactly:
 *   nearest:  src = min(floor(dst * (in/out)), in - 1)   (identity when in == out, dst/2 when
 *             out == 2 in, as torch special-cases)
 *   bilinear (align_corners=False): src = max((dst + 0.5) * in/out - 0.5, 0), i0 = (int)src,
 *             i1 = i0 + 1 clamped to in - 1, weights (1 - l, l) with l = src - i0. */
#include "engine/engine_internal.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 16384

typedef struct {
    int64_t *i0, *i1; /* source indices per output position */
    float *l0, *l1;   /* their weights (nearest: l0 = 1, l1 = 0, i1 = i0) */
} axis_map;

typedef struct {
    axis_map h, w;
} resize_saved;

static void nearest_axis(axis_map *m, int64_t in, int64_t out) {
    float scale = (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        int64_t s;
        if (out == in)
            s = d;
        else if (out == 2 * in)
            s = d >> 1;
        else {
            s = (int64_t)floorf((float)d * scale);
            if (s > in - 1) s = in - 1;
        }
        m->i0[d] = m->i1[d] = s;
        m->l0[d] = 1.0f;
        m->l1[d] = 0.0f;
    }
}

static void bilinear_axis(axis_map *m, int64_t in, int64_t out) {
    float scale = (float)in / (float)out;
    for (int64_t d = 0; d < out; d++) {
        if (out == in) {
            m->i0[d] = m->i1[d] = d;
            m->l0[d] = 1.0f;
            m->l1[d] = 0.0f;
            continue;
        }
        float src = scale * ((float)d + 0.5f) - 0.5f;
        if (src < 0) src = 0;
        int64_t i0 = (int64_t)src;
        if (i0 > in - 1) i0 = in - 1;
        int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
        float l1 = src - (float)i0;
        l1 = l1 < 0 ? 0 : (l1 > 1 ? 1 : l1);
        m->i0[d] = i0;
        m->i1[d] = i1;
        m->l1[d] = l1;
        m->l0[d] = 1.0f - l1;
    }
}

static bool axis_alloc(asam_ctx *ctx, axis_map *m, int64_t n) {
    size_t k = (size_t)(n ? n : 1);
    m->i0 = asam_ctx_alloc(ctx, k * sizeof(int64_t));
    m->i1 = asam_ctx_alloc(ctx, k * sizeof(int64_t));
    m->l0 = asam_ctx_alloc(ctx, k * sizeof(float));
    m->l1 = asam_ctx_alloc(ctx, k * sizeof(float));
    return m->i0 && m->i1 && m->l0 && m->l1;
}

static void resize_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *out = n->out;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    resize_saved *s = n->saved;
    int64_t H = n->ip[0], W = n->ip[1], OH = n->ip[2], OW = n->ip[3];
    int64_t P = OH * OW != 0 ? out->numel / (OH * OW) : 0;
    const float *g = out->grad;
    /* planes are independent; within a plane the scatter is serial (sources overlap) */
#pragma omp parallel for schedule(static) if (out->numel >= PAR_MIN && P > 1)
    for (int64_t p = 0; p < P; p++) {
        float *gp = gx + p * H * W;
        const float *go = g + p * OH * OW;
        for (int64_t i = 0; i < OH; i++) {
            int64_t y0 = s->h.i0[i], y1 = s->h.i1[i];
            float ly0 = s->h.l0[i], ly1 = s->h.l1[i];
            for (int64_t j = 0; j < OW; j++) {
                int64_t x0 = s->w.i0[j], x1 = s->w.i1[j];
                float v = go[i * OW + j], lx0 = s->w.l0[j], lx1 = s->w.l1[j];
                gp[y0 * W + x0] += ly0 * lx0 * v;
                gp[y0 * W + x1] += ly0 * lx1 * v;
                gp[y1 * W + x0] += ly1 * lx0 * v;
                gp[y1 * W + x1] += ly1 * lx1 * v;
            }
        }
    }
}

asam_tensor *asam_resize_out(asam_ctx *ctx, const char *op, asam_tensor *x, int64_t OH, int64_t OW,
                             int64_t *H, int64_t *W) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 2, op, "needs (..., H, W), got %d dims", x->ndim)) return NULL;
    *H = x->shape[x->ndim - 2], *W = x->shape[x->ndim - 1];
    if (!asam_check(ctx, OH > 0 && OW > 0 && *H > 0 && *W > 0, op,
                    "sizes must be positive (%lldx%lld -> %lldx%lld)", (long long)*H, (long long)*W,
                    (long long)OH, (long long)OW))
        return NULL;
    int64_t sh[ASAM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[x->ndim - 2] = OH;
    sh[x->ndim - 1] = OW;
    return asam_op_out(ctx, x->ndim, sh);
}

static asam_tensor *resize(asam_ctx *ctx, const char *op, int bilinear, asam_tensor *x, int64_t OH,
                           int64_t OW) {
    int64_t H, W;
    asam_tensor *out = asam_resize_out(ctx, op, x, OH, OW, &H, &W);
    if (!out) return NULL;
    asam_node *n = asam_record(ctx, op, resize_backward, out, 1, &x);
    asam_mark mk = asam_ctx_mark(ctx);
    resize_saved *s = asam_ctx_alloc(ctx, sizeof *s);
    if (!s || !axis_alloc(ctx, &s->h, OH) || !axis_alloc(ctx, &s->w, OW)) return NULL;
    if (bilinear) {
        bilinear_axis(&s->h, H, OH);
        bilinear_axis(&s->w, W, OW);
    } else {
        nearest_axis(&s->h, H, OH);
        nearest_axis(&s->w, W, OW);
    }
    int64_t P = x->numel / (H * W);
    const float *xd = x->data;
    float *o = out->data;
#pragma omp parallel for schedule(static) if (out->numel >= PAR_MIN)
    for (int64_t t = 0; t < P * OH; t++) {
        int64_t p = t / OH, i = t % OH;
        const float *r0 = xd + p * H * W + s->h.i0[i] * W, *r1 = xd + p * H * W + s->h.i1[i] * W;
        float ly0 = s->h.l0[i], ly1 = s->h.l1[i];
        float *orow = o + t * OW;
        if (!bilinear) {
            for (int64_t j = 0; j < OW; j++) orow[j] = r0[s->w.i0[j]];
        } else {
            for (int64_t j = 0; j < OW; j++) {
                int64_t x0 = s->w.i0[j], x1 = s->w.i1[j];
                float lx0 = s->w.l0[j], lx1 = s->w.l1[j];
                orow[j] = ly0 * (lx0 * r0[x0] + lx1 * r0[x1]) + ly1 * (lx0 * r1[x0] + lx1 * r1[x1]);
            }
        }
    }
    if (n) {
        n->ip[0] = H;
        n->ip[1] = W;
        n->ip[2] = OH;
        n->ip[3] = OW;
        n->saved = s; /* the index tables stay for backward */
    } else {
        asam_ctx_release(ctx, mk);
    }
    return out;
}

asam_tensor *asam_resize_nearest(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w) {
    return resize(ctx, "resize_nearest", 0, x, out_h, out_w);
}

asam_tensor *asam_resize_bilinear(asam_ctx *ctx, asam_tensor *x, int64_t out_h, int64_t out_w) {
    return resize(ctx, "resize_bilinear", 1, x, out_h, out_w);
}
