/* Reductions: sum / mean of everything (-> scalar) and along one dim. Sums accumulate in
 * double so large tensors keep 1e-4 parity. */
#include "engine/engine_internal.h"

#include <math.h>

#define PAR_MIN 32768

/* ---- all elements ---------------------------------------------------------------------------- */

static void sum_all_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0];
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    float g = n->out->grad[0] * n->fp[0];
    int64_t N = x->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) gx[i] += g;
}

static asam_tensor *sum_all(asam_ctx *ctx, const char *op, asam_tensor *x, int mean) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, 0, NULL);
    if (!out) return NULL;
    const float *xd = x->data;
    int64_t N = x->numel;
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) s += xd[i];
    float scale = mean ? (N ? (float)(1.0 / (double)N) : NAN) : 1.0f;
    out->data[0] = mean ? (float)(N ? s / (double)N : NAN) : (float)s;
    asam_node *n = asam_record(ctx, op, sum_all_backward, out, 1, &x);
    if (n) n->fp[0] = scale;
    return out;
}

asam_tensor *asam_sum(asam_ctx *ctx, asam_tensor *x) {
    return sum_all(ctx, "sum", x, 0);
}

asam_tensor *asam_mean(asam_ctx *ctx, asam_tensor *x) {
    return sum_all(ctx, "mean", x, 1);
}

/* ---- along one dim: x viewed as (outer, D, inner) -> (outer, inner) -------------------------- */

static void sum_dim_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    int64_t outer = n->ip[0], D = n->ip[1], inner = n->ip[2];
    float scale = n->fp[0];
    const float *g = n->out->grad;
#pragma omp parallel for schedule(static) if (outer * D * inner >= PAR_MIN)
    for (int64_t od = 0; od < outer * D; od++) {
        int64_t o = od / D;
        const float *gr = g + o * inner;
        float *dst = gx + od * inner;
        for (int64_t i = 0; i < inner; i++) dst[i] += scale * gr[i];
    }
}

static asam_tensor *sum_dim(asam_ctx *ctx, const char *op, asam_tensor *x, int dim, int keepdim,
                            int mean) {
    if (!x) return NULL;
    int d = asam_norm_dim(dim, x->ndim);
    if (!asam_check(ctx, d >= 0, op, "dim %d out of range for %d dims", dim, x->ndim)) return NULL;
    int64_t outer = 1, inner = 1, D = x->shape[d];
    for (int i = 0; i < d; i++) outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
    int64_t sh[ASAM_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i == d) {
            if (keepdim) sh[nd++] = 1;
        } else {
            sh[nd++] = x->shape[i];
        }
    }
    asam_tensor *out = asam_op_out(ctx, nd, sh);
    if (!out) return NULL;
    float scale = mean ? (D ? 1.0f / (float)D : NAN) : 1.0f;
    const float *xd = x->data;
    float *o = out->data;
    /* inner-contiguous accumulation: each output element sums D strided inputs */
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t oi = 0; oi < outer; oi++) {
        enum { BLK = 256 };
        for (int64_t i0 = 0; i0 < inner; i0 += BLK) {
            int64_t ni = inner - i0 < BLK ? inner - i0 : BLK;
            double acc[BLK];
            for (int64_t i = 0; i < ni; i++) acc[i] = 0;
            for (int64_t k = 0; k < D; k++) {
                const float *xr = xd + (oi * D + k) * inner + i0;
                for (int64_t i = 0; i < ni; i++) acc[i] += xr[i];
            }
            for (int64_t i = 0; i < ni; i++)
                o[oi * inner + i0 + i] = mean ? (float)(acc[i] / (double)D) : (float)acc[i];
        }
    }
    asam_node *n = asam_record(ctx, op, sum_dim_backward, out, 1, &x);
    if (n) {
        n->ip[0] = outer;
        n->ip[1] = D;
        n->ip[2] = inner;
        n->fp[0] = scale;
    }
    return out;
}

asam_tensor *asam_sum_dim(asam_ctx *ctx, asam_tensor *x, int dim, int keepdim) {
    return sum_dim(ctx, "sum_dim", x, dim, keepdim, 0);
}

asam_tensor *asam_mean_dim(asam_ctx *ctx, asam_tensor *x, int dim, int keepdim) {
    return sum_dim(ctx, "mean_dim", x, dim, keepdim, 1);
}
