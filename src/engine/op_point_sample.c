/* Bilinear point sampling (detectron2's point_sample, as HQ-SAM / Mask2Former use it):
 *   out[n, c, p] = grid_sample(x, 2 * coords - 1, mode=bilinear, padding=zeros,
 *                              align_corners=False)
 * with coords (N, P, 2) = (x, y) in [0, 1] relative to the whole map. The source position is
 * computed as torch does, in float: g = 2c - 1, ix = ((g + 1) W - 1) / 2, so ix = c W - 0.5;
 * corners outside the map contribute zero. Gradient flows to x only (coords are constants). */
#include "engine/engine_internal.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 16384

typedef struct {
    int64_t idx[4]; /* flat offsets inside one (H, W) plane, -1 = outside */
    float w[4];
} ps_tap;

/* The four bilinear taps of every (n, p) point. */
static void ps_taps(const float *coords, int64_t NP, int64_t H, int64_t W, ps_tap *taps) {
    for (int64_t i = 0; i < NP; i++) {
        float gx = 2.0f * coords[2 * i] - 1.0f, gy = 2.0f * coords[2 * i + 1] - 1.0f;
        float ix = ((gx + 1.0f) * (float)W - 1.0f) / 2.0f;
        float iy = ((gy + 1.0f) * (float)H - 1.0f) / 2.0f;
        float fx0 = floorf(ix), fy0 = floorf(iy);
        int64_t x0 = (int64_t)fx0, y0 = (int64_t)fy0;
        float tx = ix - fx0, ty = iy - fy0;
        const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
        const float ws[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
        for (int k = 0; k < 4; k++) {
            int in = xs[k] >= 0 && xs[k] < W && ys[k] >= 0 && ys[k] < H;
            taps[i].idx[k] = in ? ys[k] * W + xs[k] : -1;
            taps[i].w[k] = in ? ws[k] : 0.0f;
        }
    }
}

static void point_sample_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0];
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    const ps_tap *taps = n->saved;
    int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3], P = n->ip[0];
    const float *g = n->out->grad;
    /* planes (n, c) are independent; points within a plane may share pixels: serial there */
#pragma omp parallel for schedule(static) if (N * C * P >= PAR_MIN && N * C > 1)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t b = nc / C;
        float *gp = gx + nc * HW;
        const float *go = g + nc * P;
        const ps_tap *t = taps + b * P;
        for (int64_t p = 0; p < P; p++)
            for (int k = 0; k < 4; k++)
                if (t[p].idx[k] >= 0) gp[t[p].idx[k]] += t[p].w[k] * go[p];
    }
}

asam_tensor *asam_point_sample(asam_ctx *ctx, asam_tensor *x, const float *coords, int64_t P) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim == 4, "point_sample", "needs x (N, C, H, W), got %d dims",
                    x->ndim))
        return NULL;
    if (!asam_check(ctx, P > 0 && coords != NULL, "point_sample", "needs at least one point"))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], HW = H * W;
    asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(N, C, P));
    if (!out) return NULL;
    asam_node *n = asam_record(ctx, "point_sample", point_sample_backward, out, 1, &x);
    asam_mark mk = asam_ctx_mark(ctx);
    ps_tap *taps = asam_ctx_alloc(ctx, (size_t)(N * P) * sizeof(ps_tap));
    if (!taps) return asam_ctx_fail(ctx, "point_sample: out of memory");
    ps_taps(coords, N * P, H, W, taps);
    const float *xd = x->data;
    float *o = out->data;
#pragma omp parallel for schedule(static) if (N * C * P >= PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        const float *xp = xd + nc * HW;
        const ps_tap *t = taps + (nc / C) * P;
        for (int64_t p = 0; p < P; p++) {
            float v = 0.0f;
            for (int k = 0; k < 4; k++)
                if (t[p].idx[k] >= 0) v += t[p].w[k] * xp[t[p].idx[k]];
            o[nc * P + p] = v;
        }
    }
    if (n) {
        n->ip[0] = P;
        n->saved = taps;
    } else {
        asam_ctx_release(ctx, mk);
    }
    return out;
}
