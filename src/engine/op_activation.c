/* Activations (elementwise), GEGLU and softmax over the last dim. Backward kernels read the input
 * (x) or the output (y) straight from the node, so nothing extra is saved. */
#include "engine/engine_internal.h"
#include "engine/vmath.h"

#include <math.h>
#include <stdint.h>

#define PAR_MIN 16384

enum { ACT_GELU, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_SILU, ACT_RELU, ACT_SIGMOID, ACT_TANH };
static const char *act_names[] = {"gelu", "gelu_tanh", "quick_gelu", "silu",
                                  "relu", "sigmoid",   "tanh"};

#define INV_SQRT_2PI 0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_C 0.044715f

static inline float sigmoidf(float x) {
    return 1.0f / (1.0f + exp_vec(-x));
}

VMATH_WIDE static void act_forward(int kind, float *restrict y, const float *restrict x,
                                   int64_t n) {
    switch (kind) {
    case ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = gelu_vec(x[i]);
        break;
    case ACT_GELU_TANH:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * (v + GELU_C * v * v * v)));
        }
        break;
    case ACT_QUICK_GELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(1.702f * x[i]);
        break;
    case ACT_SILU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
        break;
    case ACT_RELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case ACT_SIGMOID:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
        break;
    default:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    }
}

/* gx += g * dy/dx, or gx = g * dy/dx into a new buffer (acc 0) */
#define ACC(dst, v) ((dst) = acc ? (dst) + (v) : (v))
VMATH_WIDE static void act_backward_kernel(int kind, float *restrict gx, const float *restrict g,
                                           const float *restrict x, const float *restrict y,
                                           int64_t n, int acc) {
    switch (kind) {
    case ACT_GELU: /* Phi(x) + x phi(x) */
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float cdf = 0.5f * erfc_vec(-v * INV_SQRT2);
            float pdf = INV_SQRT_2PI * exp_vec(-0.5f * v * v);
            ACC(gx[i], g[i] * (cdf + v * pdf));
        }
        break;
    case ACT_GELU_TANH:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            float t = tanhf(SQRT_2_OVER_PI * (v + GELU_C * v * v * v));
            float dt = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * v * v) * (1.0f - t * t);
            ACC(gx[i], g[i] * (0.5f * (1.0f + t) + 0.5f * v * dt));
        }
        break;
    case ACT_QUICK_GELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoidf(1.702f * x[i]);
            ACC(gx[i], g[i] * (s + 1.702f * x[i] * s * (1.0f - s)));
        }
        break;
    case ACT_SILU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoidf(x[i]);
            ACC(gx[i], g[i] * (s + x[i] * s * (1.0f - s)));
        }
        break;
    case ACT_RELU:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) ACC(gx[i], x[i] > 0.0f ? g[i] : 0.0f);
        break;
    case ACT_SIGMOID:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) ACC(gx[i], g[i] * y[i] * (1.0f - y[i]));
        break;
    default:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) ACC(gx[i], g[i] * (1.0f - y[i] * y[i]));
        break;
    }
}

static void act_backward(asam_ctx *ctx, asam_node *n) {
    int fresh; /* every element is written: a new buffer is stored into */
    float *gx = asam_grad_buf_fresh(ctx, n->in[0], &fresh);
    if (!gx) return;
    act_backward_kernel((int)n->ip[0], gx, n->out->grad, n->in[0]->data, n->out->data,
                        n->out->numel, !fresh);
}

static asam_tensor *activation(asam_ctx *ctx, int kind, asam_tensor *x) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    act_forward(kind, out->data, x->data, x->numel);
    asam_node *n = asam_record(ctx, act_names[kind], act_backward, out, 1, &x);
    if (n) n->ip[0] = kind;
    return out;
}

asam_tensor *asam_gelu(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_GELU, x);
}
asam_tensor *asam_gelu_tanh(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_GELU_TANH, x);
}
asam_tensor *asam_quick_gelu(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_QUICK_GELU, x);
}
asam_tensor *asam_silu(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_SILU, x);
}
asam_tensor *asam_relu(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_RELU, x);
}
asam_tensor *asam_sigmoid(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_SIGMOID, x);
}
asam_tensor *asam_tanh(asam_ctx *ctx, asam_tensor *x) {
    return activation(ctx, ACT_TANH, x);
}

/* ---- GEGLU over the last dim ---------------------------------------------------------------- */

/* x (R, 2F) -> y (R, F): the value half times GELU of the gate half, row by row: what slicing,
 * asam_gelu and asam_mul compute (bit for bit), in one pass over x and no intermediate
 * tensors. */
VMATH_WIDE static void geglu_forward(float *restrict y, const float *restrict x, int64_t R,
                                     int64_t F) {
#pragma omp parallel for schedule(static) if (R * F >= PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *v = x + r * 2 * F, *g = v + F;
        float *o = y + r * F;
        for (int64_t i = 0; i < F; i++) o[i] = v[i] * gelu_vec(g[i]);
    }
}

/* d value = dy gelu(gate), d gate = dy value gelu'(gate), gelu'(x) = Phi(x) + x phi(x). */
static void geglu_backward(asam_ctx *ctx, asam_node *n) {
    int fresh; /* every element is written: a new buffer is stored into */
    float *gx = asam_grad_buf_fresh(ctx, n->in[0], &fresh);
    if (!gx) return;
    int acc = !fresh;
    int64_t F = n->ip[0], R = n->out->numel / (F ? F : 1);
    const float *x = n->in[0]->data, *dy = n->out->grad;
#pragma omp parallel for schedule(static) if (R * F >= PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *v = x + r * 2 * F, *g = v + F, *d = dy + r * F;
        float *gv = gx + r * 2 * F, *gg = gv + F;
        for (int64_t i = 0; i < F; i++) {
            float u = g[i];
            float cdf = 0.5f * erfc_vec(-u * INV_SQRT2);
            float pdf = INV_SQRT_2PI * exp_vec(-0.5f * u * u);
            ACC(gv[i], d[i] * (u * cdf));
            ACC(gg[i], d[i] * v[i] * (cdf + u * pdf));
        }
    }
}

asam_tensor *asam_geglu(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    char sx[96];
    asam_shape_str(x, sx, sizeof sx);
    if (!asam_check(ctx, x->ndim >= 1 && x->shape[x->ndim - 1] % 2 == 0, "geglu",
                    "x %s: the last dim must be even (value and gate halves)", sx))
        return NULL;
    int64_t shape[ASAM_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    int64_t F = shape[x->ndim - 1] / 2;
    shape[x->ndim - 1] = F;
    asam_tensor *out = asam_op_out(ctx, x->ndim, shape);
    if (!out) return NULL;
    geglu_forward(out->data, x->data, out->numel / (F ? F : 1), F);
    asam_node *n = asam_record(ctx, "geglu", geglu_backward, out, 1, &x);
    if (n) n->ip[0] = F;
    return out;
}

/* ---- softmax over the last dim ------------------------------------------------------------- */

static void softmax_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    const float *g = n->out->grad, *y = n->out->data;
    int64_t D = n->ip[0], rows = D ? n->out->numel / D : 0;
#pragma omp parallel for schedule(static) if (n->out->numel >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *gr = g + r * D, *yr = y + r * D;
        double dot = 0;
        for (int64_t j = 0; j < D; j++) dot += (double)gr[j] * yr[j];
        float d = (float)dot;
        float *o = gx + r * D;
        for (int64_t j = 0; j < D; j++) o[j] += yr[j] * (gr[j] - d);
    }
}

asam_tensor *asam_softmax(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 1, "softmax", "needs at least one dim")) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    int64_t D = x->shape[x->ndim - 1], rows = D ? x->numel / D : 0;
    const float *xd = x->data;
    float *yd = out->data;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xd + r * D;
        float *yr = yd + r * D;
        float m = -INFINITY;
        for (int64_t j = 0; j < D; j++) m = xr[j] > m ? xr[j] : m;
        if (m == -INFINITY) m = 0; /* a row of -inf: keep exp() finite (gives NaN like torch) */
        double s = 0;
        for (int64_t j = 0; j < D; j++) {
            yr[j] = expf(xr[j] - m);
            s += yr[j];
        }
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < D; j++) yr[j] *= inv;
    }
    asam_node *n = asam_record(ctx, "softmax", softmax_backward, out, 1, &x);
    if (n) n->ip[0] = D;
    return out;
}
