/* Convolutions (NCHW): asam_conv2d via im2col + sgemm (direct GEMM for 1x1 stride-1, Winograd
 * F(4x4, 3x3) for 3x3 "same" ones from 64x64 outputs, forward and dx), and asam_conv_transpose2d
 * via sgemm + col2im; the weight's products go through asam_gemm_wa, which may hold it in bf16
 * (backend.h). Column buffers are per image and chunked over output rows so they stay under
 * asam_conv_chunk_floats whatever the image size. */
#include "engine/blas.h"
#include "engine/conv_amx.h"
#include "engine/conv_patch_amx.h"
#include "engine/conv_winograd.h"
#include "engine/engine_internal.h"

#include <limits.h>
#include <string.h>

/* Column buffer cap in floats (256 MB); not static so tests can shrink it to exercise the
 * chunking (declared there, not in a header: it is no API). */
int64_t asam_conv_chunk_floats = (int64_t)64 << 20;
/* 3x3 stride-1 padding-1 convolutions with at least this many output pixels (and 16 channels
 * each way) go through Winograd F(4x4, 3x3) (conv_winograd.h): 4x fewer multiplies, and the
 * transforms cost little beside them from this size on. 32x32 (1024) pays since its 36 products
 * run a position per thread (SD UNet fp32 forward 2.87 -> 2.68 s against 64x64 and up; from
 * 16x16 it lost: 3.03 s). Not static so tests can lower it to reach the path at small sizes. */
int64_t asam_conv_winograd_min_pixels = 1024;
/* Loops over fewer elements than this stay on one thread. */
#define PAR_MIN_ELEMS (INT64_C(1) << 15)

/* Geometry of a convolution from an image (C, H, W) to an output grid (Ho, Wo). */
typedef struct {
    int64_t C, H, W, kh, kw, s, p, Ho, Wo;
} conv_geom;

/* Range [lo, hi) of output columns ox whose input column ox*s - p + kj lies in [0, W). */
static inline void valid_range(int64_t kj, const conv_geom *g, int64_t *lo, int64_t *hi) {
    int64_t a = g->p - kj; /* need ox*s >= a */
    int64_t l = a <= 0 ? 0 : (a + g->s - 1) / g->s;
    int64_t b = g->W - 1 + g->p - kj; /* need ox*s <= b */
    int64_t h = b < 0 ? 0 : b / g->s + 1;
    if (h > g->Wo) h = g->Wo;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* col ((C*kh*kw), (r1-r0)*Wo) <- patches of x (C, H, W) for output rows [r0, r1). */
static void im2col(const float *x, const conv_geom *g, int64_t r0, int64_t r1, float *col) {
    int64_t rows = g->C * g->kh * g->kw, n = (r1 - r0) * g->Wo;
#pragma omp parallel for schedule(static) if (rows * n >= PAR_MIN_ELEMS)
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = r / (g->kh * g->kw), ki = r / g->kw % g->kh, kj = r % g->kw;
        int64_t lo, hi;
        valid_range(kj, g, &lo, &hi);
        float *dst = col + r * n;
        const float *xc = x + c * g->H * g->W;
        for (int64_t oy = r0; oy < r1; oy++, dst += g->Wo) {
            int64_t iy = oy * g->s - g->p + ki;
            if (iy < 0 || iy >= g->H) {
                memset(dst, 0, (size_t)g->Wo * sizeof(float));
                continue;
            }
            const float *src = xc + iy * g->W - g->p + kj;
            for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0;
            if (g->s == 1)
                memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
            else
                for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox * g->s];
            for (int64_t ox = hi; ox < g->Wo; ox++) dst[ox] = 0;
        }
    }
}

/* x (C, H, W) += the columns scattered back (the adjoint of im2col). Parallel over channels:
 * each channel's rows touch only that channel. */
static void col2im(const float *col, const conv_geom *g, int64_t r0, int64_t r1, float *x) {
    int64_t kk = g->kh * g->kw, n = (r1 - r0) * g->Wo;
#pragma omp parallel for schedule(static) if (g->C * kk * n >= PAR_MIN_ELEMS)
    for (int64_t c = 0; c < g->C; c++) {
        float *xc = x + c * g->H * g->W;
        for (int64_t k = 0; k < kk; k++) {
            int64_t ki = k / g->kw, kj = k % g->kw;
            int64_t lo, hi;
            valid_range(kj, g, &lo, &hi);
            const float *src = col + (c * kk + k) * n;
            for (int64_t oy = r0; oy < r1; oy++, src += g->Wo) {
                int64_t iy = oy * g->s - g->p + ki;
                if (iy < 0 || iy >= g->H) continue;
                float *dst = xc + iy * g->W - g->p + kj;
                if (g->s == 1)
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                else
                    for (int64_t ox = lo; ox < hi; ox++) dst[ox * g->s] += src[ox];
            }
        }
    }
}

/* Output rows per column chunk. */
static int64_t chunk_rows(const conv_geom *g) {
    int64_t per_row = g->C * g->kh * g->kw * g->Wo;
    int64_t r = per_row ? asam_conv_chunk_floats / per_row : g->Ho;
    if (r < 1) r = 1;
    return r < g->Ho ? r : g->Ho;
}

/* y (N, O, HW) += b: (O) values, or (N, O) when per_image (a bias for each image). */
static void add_bias(float *y, const float *b, int64_t N, int64_t O, int64_t HW, int per_image) {
#pragma omp parallel for collapse(2) schedule(static) if (N * O * HW >= PAR_MIN_ELEMS)
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            float *row = y + (n * O + o) * HW, bo = b[per_image ? n * O + o : o];
            for (int64_t i = 0; i < HW; i++) row[i] += bo;
        }
}

/* db += the sums of dy (N, O, HW) over the pixels (and the images unless per_image). */
static void bias_grad(const float *dy, float *db, int64_t N, int64_t O, int64_t HW, int per_image) {
#pragma omp parallel for schedule(static) if (N * O * HW >= PAR_MIN_ELEMS)
    for (int64_t o = 0; o < O; o++) {
        double acc = 0;
        for (int64_t n = 0; n < N; n++) {
            const float *row = dy + (n * O + o) * HW;
            float s = 0;
            for (int64_t i = 0; i < HW; i++) s += row[i];
            if (per_image)
                db[n * O + o] += s;
            else
                acc += s;
        }
        if (!per_image) db[o] += (float)acc;
    }
}

static int check_int(asam_ctx *ctx, const char *op, int64_t a, int64_t b, int64_t c) {
    return asam_check(ctx, a < INT_MAX && b < INT_MAX && c < INT_MAX, op, "tensor too large");
}

/* ---- conv2d -------------------------------------------------------------------------------- */

static int is_pointwise(const conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->s == 1 && g->p == 0;
}

/* Winograd applies to 3x3 "same" convolutions big enough to repay the weight transform. */
static int use_winograd(const conv_geom *g, int64_t O) {
    return g->kh == 3 && g->kw == 3 && g->s == 1 && g->p == 1 && g->C >= 16 && O >= 16 &&
           g->Ho * g->Wo >= asam_conv_winograd_min_pixels;
}

/* Under bf16 on AMX CPUs, 3x3 "same" convolutions with rows of a multiple of 16 pixels and at
 * least 16x16 of them run on the tile unit straight from the input (conv_amx.h), forward and
 * dx. At 16x16 (SD's 1280-channel level) the tile kernel beats the patch product with held
 * weights (3.3 against 1.9-2.0 TFLOP/s, 2-core Xeon with AMX) and per call (5.0-5.4 against
 * 5.8 ms with the fp32 weight packed each time), so held and per-call weights take the same
 * kernel, as they must (test_bf16_weights: the same bits). */
int64_t asam_conv_amx_min_pixels = 256;

static int use_conv_amx(const conv_geom *g) {
    return asam_get_precision() == ASAM_BF16 && g->kh == 3 && g->kw == 3 && g->s == 1 &&
           g->p == 1 && asam_conv3x3_amx_fits(g->H, g->W, asam_conv_amx_min_pixels);
}

/* Under bf16 on AMX CPUs, the other 3x3 "same" convolutions (rows narrower than 16 pixels:
 * 8x8) and the pointwise ones run as one weight-times-patches product on the tiles
 * (conv_patch_amx.h), forward only: their gradients keep the GEMM paths. */
int asam_conv_patch_enabled = 1; /* tests turn it off to reach the GEMM paths */

static int use_conv_patch(const conv_geom *g, int64_t O) {
    if (!asam_conv_patch_enabled) return 0;
    int same3 = g->kh == 3 && g->kw == 3 && g->s == 1 && g->p == 1;
    return asam_get_precision() == ASAM_BF16 && (same3 || is_pointwise(g)) &&
           asam_conv_patch_amx_fits(g->C, O, g->H, g->W, g->kh);
}

/* The Winograd-transformed kernels of w (36, O, C), or of the adjoint convolution (36, C, O),
 * in the arena; from the held bf16 copy when the fp32 one is gone (the GEMM path computes with
 * those same values). NULL when out of memory. */
static float *winograd_weights(asam_ctx *ctx, asam_tensor *w, int adjoint) {
    int64_t O = w->shape[0], C = w->shape[1];
    float *U = asam_ctx_alloc(ctx, (size_t)(36 * O * C) * sizeof(float));
    if (!U) return NULL;
    const float *v = w->data;
    if (!v) {
        float *f = asam_ctx_alloc(ctx, (size_t)w->numel * sizeof(float));
        const uint16_t *h = asam_param_bf16(w);
        if (!f || !h) return NULL;
        asam_bf16_widen(h, f, w->numel);
        v = f;
    }
    asam_wino_weights(v, O, C, adjoint, U);
    return U;
}

/* Record a conv node (if a gradient is needed) with a copy of its geometry for backward.
 * Returns -1 when the arena is out of memory. */
static int record_conv(asam_ctx *ctx, const char *op, asam_backward_fn fn, asam_tensor *out,
                       asam_tensor *x, asam_tensor *w, asam_tensor *b, const conv_geom *g) {
    asam_tensor *ins[3] = {x, w, b};
    asam_node *nd = asam_record(ctx, op, fn, out, 3, ins);
    if (!nd) return 0;
    nd->saved = asam_ctx_alloc(ctx, sizeof *g);
    if (!nd->saved) return -1;
    *(conv_geom *)nd->saved = *g;
    return 0;
}

static void conv2d_backward(asam_ctx *ctx, asam_node *nd) {
    asam_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const float *dy = nd->out->grad;
    int fresh; /* dx's buffer is new and unzeroed: each path stores into it or zeroes it first */
    float *dx = asam_grad_buf_fresh(ctx, x, &fresh);
    float *dw = asam_grad_buf(ctx, w);
    float *db = b ? asam_grad_buf(ctx, b) : NULL;
    conv_geom g = *(conv_geom *)nd->saved;
    int64_t N = x->shape[0], O = w->shape[0], HW = g.H * g.W, HoWo = g.Ho * g.Wo;
    int64_t CKK = g.C * g.kh * g.kw;
    if (db) bias_grad(dy, db, N, O, HoWo, b->ndim == 2);
    if (!dx && !dw) return;
    if (fresh && (O == 0 || HoWo == 0)) memset(dx, 0, (size_t)x->numel * sizeof(float));
    asam_mark m = asam_ctx_mark(ctx);
    /* dx of a 3x3 "same" convolution is another one (kernels rotated, channels swapped) */
    int amx = dx && use_conv_amx(&g); /* the tile kernel, or the column path if out of memory */
    int wino = dx && !amx && use_winograd(&g, O);
    float *Ut = wino ? winograd_weights(ctx, w, 1) : NULL;
    if (wino && !Ut) return;
    int64_t rows = chunk_rows(&g);
    int need_col = !is_pointwise(&g) && (dw || !Ut);
    float *col = need_col ? asam_ctx_alloc(ctx, (size_t)(CKK * rows * g.Wo) * 4) : NULL;
    if (need_col && !col) return;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x->data + n * g.C * HW, *dyn = dy + n * O * HoWo;
        float *dxn = dx ? dx + n * g.C * HW : NULL;
        if (amx && !asam_conv3x3_amx(ctx, dyn, g.H, g.W, w, 1, !fresh, NULL, NULL, dxn)) {
            dxn = NULL; /* done: the column loop below only forms dw */
            if (!dw) continue;
        }
        if (Ut) {
            if (asam_wino_conv3x3(ctx, dyn, O, g.H, g.W, Ut, g.C, dxn, !fresh)) return;
            dxn = NULL; /* done: the column loop below only forms dw */
            if (!dw) continue;
        }
        if (is_pointwise(&g)) {
            if (dw) sgemm(0, 1, O, g.C, HW, 1.0f, dyn, HW, xn, HW, 1.0f, dw, g.C);
            if (dxn)
                asam_gemm_wa(1, 0, g.C, HW, O, 1.0f, w, g.C, dyn, HW, fresh ? 0.0f : 1.0f, dxn, HW);
            continue;
        }
        if (dxn && fresh) memset(dxn, 0, (size_t)(g.C * HW) * sizeof(float)); /* col2im adds */
        for (int64_t r0 = 0; r0 < g.Ho; r0 += rows) {
            int64_t r1 = r0 + rows < g.Ho ? r0 + rows : g.Ho, nc = (r1 - r0) * g.Wo;
            if (dw) { /* dw (O, CKK) += dy (O, nc) col^T */
                im2col(xn, &g, r0, r1, col);
                sgemm(0, 1, O, CKK, nc, 1.0f, dyn + r0 * g.Wo, HoWo, col, nc, 1.0f, dw, CKK);
            }
            if (dxn) { /* dcol (CKK, nc) = w^T dy, scattered back into dx */
                asam_gemm_wa(1, 0, CKK, nc, O, 1.0f, w, CKK, dyn + r0 * g.Wo, HoWo, 0.0f, col, nc);
                col2im(col, &g, r0, r1, dxn);
            }
        }
    }
    asam_ctx_release(ctx, m);
}

/* out (N, O, HW) += r, element by element (a residual added after the product and bias). */
static void add_residual(float *out, const float *r, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (int64_t i = 0; i < n; i++) out[i] = out[i] + r[i];
}

/* conv2d, and with r (only when nothing is recorded: asam_conv2d_add checked) r + conv2d: on
 * the AMX tile kernel the bias and r are added as the results leave the tiles, elsewhere by
 * passes after the product. */
static asam_tensor *conv2d_impl(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                                int stride, int padding, asam_tensor *r) {
    const char *op = r ? "conv2d_add" : "conv2d";
    if (!x || !w) return NULL;
    char sx[96], sw[96];
    asam_shape_str(x, sx, sizeof sx);
    asam_shape_str(w, sw, sizeof sw);
    if (!asam_check(ctx, x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1], op,
                    "x %s (N, C, H, W) does not match weight %s (O, C, kh, kw)", sx, sw))
        return NULL;
    if (!asam_check(ctx, stride >= 1 && padding >= 0, op, "stride %d, padding %d", stride, padding))
        return NULL;
    int64_t N = x->shape[0], O = w->shape[0];
    conv_geom g = {
        x->shape[1], x->shape[2], x->shape[3], w->shape[2], w->shape[3], stride, padding, 0, 0};
    if (!asam_check(ctx, g.kh >= 1 && g.kw >= 1 && g.H + 2 * g.p >= g.kh && g.W + 2 * g.p >= g.kw,
                    op, "kernel %s larger than the padded input %s", sw, sx))
        return NULL;
    int per_image = b && b->ndim == 2; /* a bias for each image: (N, O) */
    if (b && !asam_check(ctx,
                         (b->ndim == 1 && b->shape[0] == O) ||
                             (per_image && b->shape[0] == N && b->shape[1] == O),
                         op, "bias of %lld values for %lld images of %lld channels",
                         (long long)b->numel, (long long)N, (long long)O))
        return NULL;
    g.Ho = (g.H + 2 * g.p - g.kh) / g.s + 1;
    g.Wo = (g.W + 2 * g.p - g.kw) / g.s + 1;
    int64_t HW = g.H * g.W, HoWo = g.Ho * g.Wo, CKK = g.C * g.kh * g.kw;
    if (!check_int(ctx, op, HW, HoWo, CKK) || !check_int(ctx, op, O, CKK * g.Wo, 0)) return NULL;
    asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(N, O, g.Ho, g.Wo));
    if (!out) return NULL;
    if (r && !asam_check(ctx, asam_same_shape(r, out), op,
                         "residual of %lld values does not match the output's shape (%lld values)",
                         (long long)r->numel, (long long)out->numel))
        return NULL;
    if (record_conv(ctx, op, conv2d_backward, out, x, w, b, &g)) return NULL;

    asam_mark m = asam_ctx_mark(ctx);
    if (use_conv_amx(&g)) {
        int64_t n = 0;
        while (n < N &&
               !asam_conv3x3_amx(ctx, x->data + n * g.C * HW, g.H, g.W, w, 0, 0,
                                 b ? b->data + (per_image ? n * O : 0) : NULL,
                                 r ? r->data + n * O * HoWo : NULL, out->data + n * O * HoWo))
            n++;
        if (n == N) { /* else out of memory: the paths below redo every image */
            asam_ctx_release(ctx, m);
            return out;
        }
    }
    if (use_conv_patch(&g, O) &&
        !asam_conv_patch_amx(ctx, x->data, N, g.C, g.H, g.W, w, out->data)) {
        if (b) add_bias(out->data, b->data, N, O, HoWo, per_image);
        if (r) add_residual(out->data, r->data, out->numel);
        asam_ctx_release(ctx, m);
        return out; /* else out of memory: the paths below do it */
    }
    if (use_winograd(&g, O)) {
        float *U = winograd_weights(ctx, w, 0);
        if (!U) return NULL;
        for (int64_t n = 0; n < N; n++)
            if (asam_wino_conv3x3(ctx, x->data + n * g.C * HW, g.C, g.H, g.W, U, O,
                                  out->data + n * O * HoWo, 0))
                return NULL;
        if (b) add_bias(out->data, b->data, N, O, HoWo, per_image);
        if (r) add_residual(out->data, r->data, out->numel);
        asam_ctx_release(ctx, m);
        return out;
    }
    int64_t rows = chunk_rows(&g);
    float *col = is_pointwise(&g) ? NULL : asam_ctx_alloc(ctx, (size_t)(CKK * rows * g.Wo) * 4);
    if (!is_pointwise(&g) && !col) return NULL;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x->data + n * g.C * HW;
        float *yn = out->data + n * O * HoWo;
        if (is_pointwise(&g)) { /* y (O, HW) = w (O, C) x (C, HW) */
            asam_gemm_wa(0, 0, O, HW, g.C, 1.0f, w, g.C, xn, HW, 0.0f, yn, HW);
            continue;
        }
        for (int64_t r0 = 0; r0 < g.Ho; r0 += rows) {
            int64_t r1 = r0 + rows < g.Ho ? r0 + rows : g.Ho, nc = (r1 - r0) * g.Wo;
            im2col(xn, &g, r0, r1, col);
            asam_gemm_wa(0, 0, O, nc, CKK, 1.0f, w, CKK, col, nc, 0.0f, yn + r0 * g.Wo, HoWo);
        }
    }
    if (b) add_bias(out->data, b->data, N, O, HoWo, per_image);
    if (r) add_residual(out->data, r->data, out->numel);
    asam_ctx_release(ctx, m);
    return out;
}

asam_tensor *asam_conv2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b, int stride,
                         int padding) {
    return conv2d_impl(ctx, x, w, b, stride, padding, NULL);
}

asam_tensor *asam_conv2d_add(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             int stride, int padding, asam_tensor *r) {
    if (!r) return NULL;
    asam_tensor *ins[4] = {x, w, b, r};
    if (asam_needs_record(ctx, 4, ins)) /* the two ops, each with its backward */
        return asam_add(ctx, r, asam_conv2d(ctx, x, w, b, stride, padding));
    return conv2d_impl(ctx, x, w, b, stride, padding, r);
}

/* ---- conv_transpose2d ------------------------------------------------------------------------
 * The adjoint of a conv2d (padding 0) that maps the output (O, Ho, Wo) back onto the input grid
 * (H, W): cols (O*kh*kw, H*W) = w^T x, then col2im into the output. g describes that conv:
 * image (O, Ho, Wo), grid (H, W). */

static void convt_backward(asam_ctx *ctx, asam_node *nd) {
    asam_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const float *dy = nd->out->grad;
    int fresh; /* dx's buffer is new and unzeroed: the product stores into it */
    float *dx = asam_grad_buf_fresh(ctx, x, &fresh);
    float *dw = asam_grad_buf(ctx, w);
    float *db = b ? asam_grad_buf(ctx, b) : NULL;
    conv_geom g = *(conv_geom *)nd->saved;
    int64_t N = x->shape[0], C = x->shape[1], O = g.C, HW = g.Ho * g.Wo, HoWo = g.H * g.W;
    int64_t OKK = O * g.kh * g.kw;
    if (db) bias_grad(dy, db, N, O, HoWo, 0);
    if (!dx && !dw) return;
    if (fresh && (O == 0 || HoWo == 0)) memset(dx, 0, (size_t)x->numel * sizeof(float));
    asam_mark m = asam_ctx_mark(ctx);
    int64_t rows = chunk_rows(&g);
    float *col = asam_ctx_alloc(ctx, (size_t)(OKK * rows * g.Wo) * 4);
    if (!col) return;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x->data + n * C * HW, *dyn = dy + n * O * HoWo;
        for (int64_t r0 = 0; r0 < g.Ho; r0 += rows) {
            int64_t r1 = r0 + rows < g.Ho ? r0 + rows : g.Ho, nc = (r1 - r0) * g.Wo;
            im2col(dyn, &g, r0, r1, col); /* dcol (OKK, nc) */
            if (dx)                       /* each element of dx once: a new buffer is stored into */
                asam_gemm_wa(0, 0, C, nc, OKK, 1.0f, w, OKK, col, nc, fresh ? 0.0f : 1.0f,
                             dx + n * C * HW + r0 * g.Wo, HW);
            if (dw) sgemm(0, 1, C, OKK, nc, 1.0f, xn + r0 * g.Wo, HW, col, nc, 1.0f, dw, OKK);
        }
    }
    asam_ctx_release(ctx, m);
}

asam_tensor *asam_conv_transpose2d(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                                   int stride) {
    const char *op = "conv_transpose2d";
    if (!x || !w) return NULL;
    char sx[96], sw[96];
    asam_shape_str(x, sx, sizeof sx);
    asam_shape_str(w, sw, sizeof sw);
    if (!asam_check(ctx, x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[0], op,
                    "x %s (N, C, H, W) does not match weight %s (C, O, kh, kw)", sx, sw))
        return NULL;
    if (!asam_check(ctx, stride >= 1 && w->shape[2] >= 1 && w->shape[3] >= 1, op,
                    "stride %d, weight %s", stride, sw))
        return NULL;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], O = w->shape[1];
    if (b && !asam_check(ctx, b->ndim == 1 && b->shape[0] == O, op,
                         "bias of %lld values for %lld "
                         "channels",
                         (long long)b->numel, (long long)O))
        return NULL;
    if (!asam_check(ctx, H >= 1 && W >= 1, op, "empty input %s", sx)) return NULL;
    int64_t Ho = (H - 1) * stride + w->shape[2], Wo = (W - 1) * stride + w->shape[3];
    conv_geom g = {O, Ho, Wo, w->shape[2], w->shape[3], stride, 0, H, W};
    int64_t OKK = O * g.kh * g.kw, HW = H * W, HoWo = Ho * Wo;
    if (!check_int(ctx, op, HW, HoWo, OKK) || !check_int(ctx, op, C, OKK * W, 0)) return NULL;
    asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(N, O, Ho, Wo));
    if (!out) return NULL;
    if (record_conv(ctx, op, convt_backward, out, x, w, b, &g)) return NULL;

    asam_mark m = asam_ctx_mark(ctx);
    int64_t rows = chunk_rows(&g);
    float *col = asam_ctx_alloc(ctx, (size_t)(OKK * rows * W) * 4);
    if (!col) return NULL;
    memset(out->data, 0, (size_t)out->numel * sizeof(float));
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x->data + n * C * HW;
        float *yn = out->data + n * O * HoWo;
        for (int64_t r0 = 0; r0 < H; r0 += rows) {
            int64_t r1 = r0 + rows < H ? r0 + rows : H, nc = (r1 - r0) * W;
            /* col (OKK, nc) = w^T (OKK, C) x (C, nc) */
            asam_gemm_wa(1, 0, OKK, nc, C, 1.0f, w, OKK, xn + r0 * W, HW, 0.0f, col, nc);
            col2im(col, &g, r0, r1, yn);
        }
    }
    if (b) add_bias(out->data, b->data, N, O, HoWo, 0);
    asam_ctx_release(ctx, m);
    return out;
}
