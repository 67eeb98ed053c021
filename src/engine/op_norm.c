/* Normalisations: layer_norm (last dim), layer_norm2d (C of NCHW, SAM's LayerNorm2d) and
 * group_norm (N, C, *spatial). Statistics use double sums in a single pass (biased variance,
 * as torch); mean and 1/std are saved per normalised group for backward.
 *
 * Backward, per group of M elements with xhat = (x - mean) * rstd and dxhat = dy * w:
 *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
 *   dw += sum dy * xhat, db += sum dy (over everything but the channel). */
#include "engine/engine_internal.h"
#include "engine/vmath.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define PAR_MIN 16384

typedef struct {
    float *mean, *rstd; /* one per normalised group */
} norm_saved;

static bool check_affine(asam_ctx *ctx, const char *op, asam_tensor *w, asam_tensor *b, int64_t C) {
    if (w && !asam_check(ctx, w->numel == C, op, "weight has %lld elements, expected %lld",
                         (long long)w->numel, (long long)C))
        return false;
    if (b && !asam_check(ctx, b->numel == C, op, "bias has %lld elements, expected %lld",
                         (long long)b->numel, (long long)C))
        return false;
    return true;
}

static norm_saved *save_stats(asam_ctx *ctx, asam_node *n, int64_t groups, float **mean,
                              float **rstd) {
    norm_saved *s = asam_ctx_alloc(ctx, sizeof *s);
    if (!s) return NULL;
    s->mean = asam_ctx_alloc(ctx, (size_t)(groups ? groups : 1) * sizeof(float));
    s->rstd = asam_ctx_alloc(ctx, (size_t)(groups ? groups : 1) * sizeof(float));
    if (!s->mean || !s->rstd) return NULL;
    n->saved = s;
    *mean = s->mean;
    *rstd = s->rstd;
    return s;
}

/* Per-thread partial sums for dw/db, reduced at the end: (nt, 2, C) floats, zeroed. */
static float *partials_new(asam_ctx *ctx, int nt, int64_t C) {
    float *p = asam_ctx_alloc(ctx, (size_t)nt * 2 * (size_t)C * sizeof(float));
    if (p) memset(p, 0, (size_t)nt * 2 * (size_t)C * sizeof(float));
    return p;
}

static void partials_reduce(const float *p, int nt, int64_t C, float *gw, float *gb) {
    for (int t = 0; t < nt; t++) {
        const float *pw = p + (size_t)t * 2 * C, *pb = pw + C;
        if (gw)
            for (int64_t c = 0; c < C; c++) gw[c] += pw[c];
        if (gb)
            for (int64_t c = 0; c < C; c++) gb[c] += pb[c];
    }
}

/* ---- layer_norm over the last dim ------------------------------------------------------------ */

static void layer_norm_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    norm_saved *s = n->saved;
    float *gx = asam_grad_buf(ctx, x), *gw = asam_grad_buf(ctx, w), *gb = asam_grad_buf(ctx, b);
    if (!gx && !gw && !gb) return;
    int64_t C = n->ip[0], R = C ? x->numel / C : 0;
    const float *xd = x->data, *dy = n->out->grad, *wd = w ? w->data : NULL;
    asam_mark mk = asam_ctx_mark(ctx);
    int nt = x->numel >= PAR_MIN ? omp_get_max_threads() : 1;
    float *part = (gw || gb) ? partials_new(ctx, nt, C) : NULL;
    /* per-thread rows of xhat and dxhat, so each row is read once and loops vectorise */
    float *scratch = asam_ctx_alloc(ctx, (size_t)nt * 2 * (size_t)C * sizeof(float));
    if (((gw || gb) && !part) || !scratch) return;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *pw = part ? part + (size_t)tid * 2 * C : NULL, *pb = pw ? pw + C : NULL;
        float *xh = scratch + (size_t)tid * 2 * C, *dxh = xh + C;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = xd + r * C, *gr = dy + r * C;
            float mu = s->mean[r], rs = s->rstd[r];
            for (int64_t j = 0; j < C; j++) xh[j] = (xr[j] - mu) * rs;
            if (wd)
                for (int64_t j = 0; j < C; j++) dxh[j] = gr[j] * wd[j];
            else
                for (int64_t j = 0; j < C; j++) dxh[j] = gr[j];
            if (pw) {
                for (int64_t j = 0; j < C; j++) pw[j] += gr[j] * xh[j];
                for (int64_t j = 0; j < C; j++) pb[j] += gr[j];
            }
            if (!gx) continue;
            double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t j = 0; j < C; j++) {
                s1 += dxh[j];
                s2 += (double)(dxh[j] * xh[j]);
            }
            float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
            float *o = gx + r * C;
            for (int64_t j = 0; j < C; j++) o[j] += rs * (dxh[j] - m1 - xh[j] * m2);
        }
    }
    if (part) partials_reduce(part, nt, C, gw, gb);
    asam_ctx_release(ctx, mk);
}

asam_tensor *asam_layer_norm(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             float eps) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 1, "layer_norm", "needs at least one dim")) return NULL;
    int64_t C = x->shape[x->ndim - 1], R = C ? x->numel / C : 0;
    if (!check_affine(ctx, "layer_norm", w, b, C)) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    asam_tensor *ins[3] = {x, w, b};
    asam_node *n = asam_record(ctx, "layer_norm", layer_norm_backward, out, 3, ins);
    float *mean = NULL, *rstd = NULL;
    if (n) {
        n->ip[0] = C;
        if (!save_stats(ctx, n, R, &mean, &rstd)) return NULL;
    }
    const float *xd = x->data, *wd = w ? w->data : NULL, *bd = b ? b->data : NULL;
    float *yd = out->data;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = xd + r * C;
        /* sums of x - x[0] (a shift keeps E[d^2] - E[d]^2 free of cancellation when the mean
         * is large next to the spread) */
        double s = 0, ss = 0, x0 = C ? xr[0] : 0;
#pragma omp simd reduction(+ : s, ss)
        for (int64_t j = 0; j < C; j++) {
            double d = xr[j] - x0;
            s += d;
            ss += d * d;
        }
        double md = s / C, mu = x0 + md, var = ss / C - md * md;
        if (var < 0) var = 0;
        float m = (float)mu, rs = (float)(1.0 / sqrt(var + eps));
        float *yr = yd + r * C;
        if (wd && bd)
            for (int64_t j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * wd[j] + bd[j];
        else
            for (int64_t j = 0; j < C; j++) {
                float v = (xr[j] - m) * rs;
                if (wd) v *= wd[j];
                if (bd) v += bd[j];
                yr[j] = v;
            }
        if (mean) {
            mean[r] = m;
            rstd[r] = rs;
        }
    }
    return out;
}

/* ---- layer_norm2d: NCHW, normalised over C at each (n, h, w) --------------------------------- */

#define LN2D_BLK 256 /* spatial positions per work unit */

static void layer_norm2d_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    norm_saved *s = n->saved;
    float *gx = asam_grad_buf(ctx, x), *gw = asam_grad_buf(ctx, w), *gb = asam_grad_buf(ctx, b);
    if (!gx && !gw && !gb) return;
    int64_t N = x->shape[0], C = x->shape[1], S = N * C != 0 ? x->numel / (N * C) : 0;
    int64_t nblk = (S + LN2D_BLK - 1) / LN2D_BLK;
    const float *xd = x->data, *dy = n->out->grad, *wd = w ? w->data : NULL;
    asam_mark mk = asam_ctx_mark(ctx);
    int nt = x->numel >= PAR_MIN ? omp_get_max_threads() : 1;
    float *part = (gw || gb) ? partials_new(ctx, nt, C) : NULL;
    if ((gw || gb) && !part) return;
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *pw = part ? part + (size_t)tid * 2 * C : NULL, *pb = pw ? pw + C : NULL;
        double s1[LN2D_BLK], s2[LN2D_BLK];
#pragma omp for schedule(static)
        for (int64_t t = 0; t < N * nblk; t++) {
            int64_t in = t / nblk, p0 = (t % nblk) * LN2D_BLK;
            int64_t np = S - p0 < LN2D_BLK ? S - p0 : LN2D_BLK;
            const float *mu = s->mean + in * S + p0, *rs = s->rstd + in * S + p0;
            for (int64_t p = 0; p < np; p++) s1[p] = s2[p] = 0;
            for (int64_t c = 0; c < C; c++) {
                const float *xr = xd + (in * C + c) * S + p0, *gr = dy + (in * C + c) * S + p0;
                float wc = wd ? wd[c] : 1.0f;
                float aw = 0, ab = 0;
#pragma omp simd reduction(+ : aw, ab)
                for (int64_t p = 0; p < np; p++) {
                    float xh = (xr[p] - mu[p]) * rs[p];
                    float dxh = gr[p] * wc;
                    s1[p] += dxh;
                    s2[p] += dxh * xh;
                    aw += gr[p] * xh;
                    ab += gr[p];
                }
                if (pw) {
                    pw[c] += aw;
                    pb[c] += ab;
                }
            }
            if (!gx) continue;
            for (int64_t c = 0; c < C; c++) {
                const float *xr = xd + (in * C + c) * S + p0, *gr = dy + (in * C + c) * S + p0;
                float *o = gx + (in * C + c) * S + p0;
                float wc = wd ? wd[c] : 1.0f;
                for (int64_t p = 0; p < np; p++) {
                    float xh = (xr[p] - mu[p]) * rs[p];
                    o[p] += rs[p] * (gr[p] * wc - (float)(s1[p] / C) - xh * (float)(s2[p] / C));
                }
            }
        }
    }
    if (part) partials_reduce(part, nt, C, gw, gb);
    asam_ctx_release(ctx, mk);
}

asam_tensor *asam_layer_norm2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                               float eps) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 2, "layer_norm2d", "needs (N, C, ...), got %d dims", x->ndim))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], S = N * C != 0 ? x->numel / (N * C) : 0;
    if (!check_affine(ctx, "layer_norm2d", w, b, C)) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    asam_tensor *ins[3] = {x, w, b};
    asam_node *n = asam_record(ctx, "layer_norm2d", layer_norm2d_backward, out, 3, ins);
    float *mean = NULL, *rstd = NULL;
    if (n && !save_stats(ctx, n, N * S, &mean, &rstd)) return NULL;
    int64_t nblk = (S + LN2D_BLK - 1) / LN2D_BLK;
    const float *xd = x->data, *wd = w ? w->data : NULL, *bd = b ? b->data : NULL;
    float *yd = out->data;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t t = 0; t < N * nblk; t++) {
        int64_t in = t / nblk, p0 = (t % nblk) * LN2D_BLK;
        int64_t np = S - p0 < LN2D_BLK ? S - p0 : LN2D_BLK;
        double s[LN2D_BLK], ss[LN2D_BLK];
        float m[LN2D_BLK], rs[LN2D_BLK], x0[LN2D_BLK]; /* x0: shift, channel 0's value */
        for (int64_t p = 0; p < np; p++) {
            s[p] = ss[p] = 0;
            x0[p] = C ? xd[in * C * S + p0 + p] : 0;
        }
        for (int64_t c = 0; c < C; c++) {
            const float *xr = xd + (in * C + c) * S + p0;
            for (int64_t p = 0; p < np; p++) {
                double d = (double)xr[p] - x0[p];
                s[p] += d;
                ss[p] += d * d;
            }
        }
        for (int64_t p = 0; p < np; p++) {
            double md = s[p] / C, mu = x0[p] + md, var = ss[p] / C - md * md;
            if (var < 0) var = 0;
            m[p] = (float)mu;
            rs[p] = (float)(1.0 / sqrt(var + eps));
        }
        for (int64_t c = 0; c < C; c++) {
            const float *xr = xd + (in * C + c) * S + p0;
            float *yr = yd + (in * C + c) * S + p0;
            float wc = wd ? wd[c] : 1.0f, bc = bd ? bd[c] : 0.0f;
            for (int64_t p = 0; p < np; p++) yr[p] = (xr[p] - m[p]) * rs[p] * wc + bc;
        }
        if (mean)
            for (int64_t p = 0; p < np; p++) {
                mean[in * S + p0 + p] = m[p];
                rstd[in * S + p0 + p] = rs[p];
            }
    }
    return out;
}

/* ---- group_norm: (N, C, *spatial), statistics per (n, group) ----------------------------------
 */

static void group_norm_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    norm_saved *s = n->saved;
    float *gx = asam_grad_buf(ctx, x), *gw = asam_grad_buf(ctx, w), *gb = asam_grad_buf(ctx, b);
    if (!gx && !gw && !gb) return;
    int64_t N = x->shape[0], C = x->shape[1], G = n->ip[0];
    int64_t S = N * C != 0 ? x->numel / (N * C) : 0, Cg = C / G;
    const float *xd = x->data, *dy = n->out->grad, *wd = w ? w->data : NULL;
    asam_mark mk = asam_ctx_mark(ctx);
    /* per (n, c): a = sum_s dy, bb = sum_s dy * xhat */
    double *a = asam_ctx_alloc(ctx, (size_t)(N * C) * sizeof(double));
    double *bb = asam_ctx_alloc(ctx, (size_t)(N * C) * sizeof(double));
    if (!a || !bb) return;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t grp = (nc / C) * G + (nc % C) / Cg;
        float mu = s->mean[grp], rs = s->rstd[grp];
        const float *xr = xd + nc * S, *gr = dy + nc * S;
        double sa = 0, sb = 0;
#pragma omp simd reduction(+ : sa, sb)
        for (int64_t p = 0; p < S; p++) {
            sa += gr[p];
            sb += (double)gr[p] * ((xr[p] - mu) * rs);
        }
        a[nc] = sa;
        bb[nc] = sb;
    }
    if (gx) {
        double M = (double)Cg * S;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
        for (int64_t nc = 0; nc < N * C; nc++) {
            int64_t in = nc / C, c = nc % C, g = c / Cg, grp = in * G + g;
            double s1 = 0, s2 = 0;
            for (int64_t k = g * Cg; k < (g + 1) * Cg; k++) {
                double wk = wd ? wd[k] : 1.0;
                s1 += wk * a[in * C + k];
                s2 += wk * bb[in * C + k];
            }
            float m1 = (float)(s1 / M), m2 = (float)(s2 / M);
            float mu = s->mean[grp], rs = s->rstd[grp], wc = wd ? wd[c] : 1.0f;
            const float *xr = xd + nc * S, *gr = dy + nc * S;
            float *o = gx + nc * S;
            for (int64_t p = 0; p < S; p++) {
                float xh = (xr[p] - mu) * rs;
                o[p] += rs * (gr[p] * wc - m1 - xh * m2);
            }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t in = 0; in < N; in++) {
            sw += bb[in * C + c];
            sb += a[in * C + c];
        }
        if (gw) gw[c] += (float)sw;
        if (gb) gb[c] += (float)sb;
    }
    asam_ctx_release(ctx, mk);
}

/* group_norm, then SiLU on the same pass when silu (only when nothing is recorded). */
static asam_tensor *group_norm_impl(asam_ctx *ctx, asam_tensor *x, int groups, asam_tensor *w,
                                    asam_tensor *b, float eps, int silu) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 2, "group_norm", "needs (N, C, ...), got %d dims", x->ndim))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], S = N * C != 0 ? x->numel / (N * C) : 0;
    if (!asam_check(ctx, groups > 0 && C % groups == 0, "group_norm",
                    "%d groups do not divide %lld channels", groups, (long long)C))
        return NULL;
    if (!check_affine(ctx, "group_norm", w, b, C)) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    asam_tensor *ins[3] = {x, w, b};
    asam_node *n = asam_record(ctx, "group_norm", group_norm_backward, out, 3, ins);
    int64_t G = groups, Cg = C / G, M = Cg * S;
    asam_mark mk = asam_ctx_mark(ctx);
    float *mean, *rstd;
    if (n) {
        n->ip[0] = G;
        if (!save_stats(ctx, n, N * G, &mean, &rstd)) return NULL;
        mk = asam_ctx_mark(ctx);
    } else {
        mean = asam_ctx_alloc(ctx, (size_t)(N * G != 0 ? N * G : 1) * sizeof(float));
        rstd = asam_ctx_alloc(ctx, (size_t)(N * G != 0 ? N * G : 1) * sizeof(float));
        if (!mean || !rstd) return NULL;
    }
    const float *xd = x->data, *wd = w ? w->data : NULL, *bd = b ? b->data : NULL;
    float *yd = out->data;
    /* statistics: each (n, g) block is contiguous */
#pragma omp parallel for schedule(dynamic, 1) if (x->numel >= PAR_MIN)
    for (int64_t grp = 0; grp < N * G; grp++) {
        const float *xr = xd + grp * M;
        double s = 0, ss = 0, x0 = M ? xr[0] : 0; /* shifted sums, as in layer_norm */
#pragma omp simd reduction(+ : s, ss)
        for (int64_t p = 0; p < M; p++) {
            double d = xr[p] - x0;
            s += d;
            ss += d * d;
        }
        double md = M ? s / M : 0, mu = x0 + md, var = M ? ss / M - md * md : 0;
        if (var < 0) var = 0;
        mean[grp] = (float)mu;
        rstd[grp] = (float)(1.0 / sqrt(var + eps));
    }
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t nc = 0; nc < N * C; nc++) {
        int64_t c = nc % C, grp = (nc / C) * G + c / Cg;
        float mu = mean[grp], rs = rstd[grp];
        float sc = rs * (wd ? wd[c] : 1.0f), bc = bd ? bd[c] : 0.0f;
        const float *xr = xd + nc * S;
        float *yr = yd + nc * S;
        if (silu)
            for (int64_t p = 0; p < S; p++) yr[p] = silu_vec((xr[p] - mu) * sc + bc);
        else
            for (int64_t p = 0; p < S; p++) yr[p] = (xr[p] - mu) * sc + bc;
    }
    asam_ctx_release(ctx, mk); /* frees the scratch statistics when not recording */
    return out;
}

asam_tensor *asam_group_norm(asam_ctx *ctx, asam_tensor *x, int groups, asam_tensor *w,
                             asam_tensor *b, float eps) {
    return group_norm_impl(ctx, x, groups, w, b, eps, 0);
}

/* Inference fuses the SiLU into the normalising pass: one write of the output instead of a
 * write, a read and a second write through the intermediate, and no intermediate tensor (the
 * VAE decoder's 512x512 maps make these passes memory-bound). When a gradient is recorded it
 * is the two ops, each with its own backward. */
asam_tensor *asam_group_norm_silu(asam_ctx *ctx, asam_tensor *x, int groups, asam_tensor *w,
                                  asam_tensor *b, float eps) {
    asam_tensor *ins[3] = {x, w, b};
    if (x && asam_needs_record(ctx, 3, ins))
        return asam_silu(ctx, group_norm_impl(ctx, x, groups, w, b, eps, 0));
    return group_norm_impl(ctx, x, groups, w, b, eps, 1);
}
