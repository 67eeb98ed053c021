/* Elementwise ops the ASAM attack needs: the soft clamp to [0,1], abs, sqrt, the L2 norm of a
 * whole tensor and sign. Backward kernels read x (and y) from the node; nothing is saved. */
#include "engine/engine_internal.h"

#include <math.h>

#define PAR_MIN 16384

enum { U_SOFT_CLAMP, U_ABS, U_SQRT };
static const char *u_names[] = {"soft_clamp01", "abs", "sqrt"};

static inline float soft_clamp_f(float x) {
    if (x > 1.0f) return (tanhf(1000.0f * (x - 1.0f)) + 10000.0f) / 10001.0f;
    if (x < 0.0f) return tanhf(1000.0f * x) / 10000.0f;
    return x;
}

static inline float soft_clamp_d(float x) {
    if (x > 1.0f) {
        float t = tanhf(1000.0f * (x - 1.0f));
        return 1000.0f * (1.0f - t * t) / 10001.0f;
    }
    if (x < 0.0f) {
        float t = tanhf(1000.0f * x);
        return 1000.0f * (1.0f - t * t) / 10000.0f;
    }
    return 1.0f;
}

static void unary_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    const float *g = n->out->grad, *x = n->in[0]->data, *y = n->out->data;
    int64_t N = n->out->numel;
    int kind = (int)n->ip[0];
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float d;
        if (kind == U_SOFT_CLAMP)
            d = soft_clamp_d(x[i]);
        else if (kind == U_ABS)
            d = x[i] > 0 ? 1.0f : (x[i] < 0 ? -1.0f : 0.0f);
        else
            d = y[i] > 0 ? 0.5f / y[i] : 0.0f;
        gx[i] += g[i] * d;
    }
}

static asam_tensor *unary(asam_ctx *ctx, asam_tensor *x, int kind) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    const float *xd = x->data;
    float *y = out->data;
    int64_t N = x->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float v = xd[i];
        y[i] = kind == U_SOFT_CLAMP ? soft_clamp_f(v) : kind == U_ABS ? fabsf(v) : sqrtf(v);
    }
    asam_node *n = asam_record(ctx, u_names[kind], unary_backward, out, 1, &x);
    if (n) n->ip[0] = kind;
    return out;
}

asam_tensor *asam_soft_clamp01(asam_ctx *ctx, asam_tensor *x) {
    return unary(ctx, x, U_SOFT_CLAMP);
}
asam_tensor *asam_abs(asam_ctx *ctx, asam_tensor *x) {
    return unary(ctx, x, U_ABS);
}
asam_tensor *asam_sqrt(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    for (int64_t i = 0; i < x->numel; i++)
        if (x->data[i] < 0) return asam_ctx_fail(ctx, "sqrt: negative input %g", x->data[i]);
    return unary(ctx, x, U_SQRT);
}

/* ---- L2 norm of the whole tensor ---------------------------------------------------------- */
static void l2_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    float nrm = n->out->data[0], g = n->out->grad[0];
    if (!(nrm > 0)) return; /* subgradient 0 at the origin, as torch gives */
    float s = g / nrm;
    const float *x = n->in[0]->data;
    int64_t N = n->in[0]->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) gx[i] += s * x[i];
}

asam_tensor *asam_l2_norm(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    static const int64_t one[1] = {1};
    asam_tensor *out = asam_op_out(ctx, 0, one);
    if (!out) return NULL;
    double acc = 0; /* double: the 1024^2 x 3 sums of the attack lose digits in float */
    const float *xd = x->data;
    int64_t N = x->numel;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) acc += (double)xd[i] * xd[i];
    out->data[0] = (float)sqrt(acc);
    asam_record(ctx, "l2_norm", l2_backward, out, 1, &x);
    return out;
}

asam_tensor *asam_sign(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    for (int64_t i = 0; i < x->numel; i++)
        out->data[i] = x->data[i] > 0 ? 1.0f : (x->data[i] < 0 ? -1.0f : 0.0f);
    return out; /* not recorded: the gradient is zero almost everywhere */
}
