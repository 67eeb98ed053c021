/* Losses -> scalars, accumulated in double.
 *   bce_with_logits: mean of max(x,0) - x t + log1p(exp(-|x|)) (stable for any x);
 *                    d/dx = (sigmoid(x) - t) / n.
 *   dice:   per row r of the first dim, p = sigmoid(x):
 *           L_r = 1 - (2 sum(p t) + s) / (sum p + sum t + s), loss = mean_r L_r;
 *           dL/dp_i = (num - 2 t_i den) / (den^2 N), then times p (1 - p).
 *   mse:    mean (a - b)^2, gradients to both sides.
 * Targets of bce and dice get no gradient. */
#include "engine/engine_internal.h"

#include <math.h>

#define PAR_MIN 16384

static inline float sigmoidf(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static bool same_numel(asam_ctx *ctx, const char *op, asam_tensor *a, asam_tensor *b) {
    if (asam_same_shape(a, b)) return true;
    char sa[96], sb[96];
    asam_shape_str(a, sa, sizeof sa);
    asam_shape_str(b, sb, sizeof sb);
    return asam_check(ctx, false, op, "shapes %s and %s differ", sa, sb);
}

/* ---- bce_with_logits ------------------------------------------------------------------------- */

static void bce_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *t = n->saved;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    int64_t N = x->numel;
    float g = n->out->grad[0] / (float)N;
    const float *xd = x->data, *td = t->data;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) gx[i] += g * (sigmoidf(xd[i]) - td[i]);
}

asam_tensor *asam_bce_with_logits(asam_ctx *ctx, asam_tensor *logits, asam_tensor *target) {
    if (!logits || !target) return NULL;
    if (!same_numel(ctx, "bce_with_logits", logits, target)) return NULL;
    if (!asam_check(ctx, logits->numel > 0, "bce_with_logits", "empty input")) return NULL;
    asam_tensor *out = asam_op_out(ctx, 0, NULL);
    if (!out) return NULL;
    const float *xd = logits->data, *td = target->data;
    int64_t N = logits->numel;
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float x = xd[i];
        s += (double)(fmaxf(x, 0.0f) - x * td[i] + log1pf(expf(-fabsf(x))));
    }
    out->data[0] = (float)(s / (double)N);
    asam_node *n = asam_record(ctx, "bce_with_logits", bce_backward, out, 1, &logits);
    if (n) n->saved = target;
    return out;
}

/* ---- dice ------------------------------------------------------------------------------------ */

typedef struct {
    asam_tensor *target;
    double *num, *den; /* per row */
} dice_saved;

static void dice_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0];
    dice_saved *s = n->saved;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    int64_t R = n->ip[0], D = n->ip[1];
    float g = n->out->grad[0];
    const float *xd = x->data, *td = s->target->data;
#pragma omp parallel for schedule(static) if (x->numel >= PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        double num = s->num[r], den = s->den[r];
        float a = (float)(num / (den * den * R)), b = (float)(2.0 * den / (den * den * R));
        for (int64_t j = 0; j < D; j++) {
            int64_t i = r * D + j;
            float p = sigmoidf(xd[i]);
            gx[i] += g * (a - b * td[i]) * p * (1.0f - p);
        }
    }
}

asam_tensor *asam_dice_loss(asam_ctx *ctx, asam_tensor *logits, asam_tensor *target, float smooth) {
    if (!logits || !target) return NULL;
    if (!same_numel(ctx, "dice_loss", logits, target)) return NULL;
    if (!asam_check(ctx, logits->ndim >= 1 && logits->shape[0] > 0, "dice_loss",
                    "needs (N, ...) with N > 0"))
        return NULL;
    asam_tensor *out = asam_op_out(ctx, 0, NULL);
    if (!out) return NULL;
    int64_t R = logits->shape[0], D = logits->numel / R;
    asam_node *n = asam_record(ctx, "dice_loss", dice_backward, out, 1, &logits);
    asam_mark mk = asam_ctx_mark(ctx);
    dice_saved *s = asam_ctx_alloc(ctx, sizeof *s);
    double *num = asam_ctx_alloc(ctx, (size_t)R * sizeof(double));
    double *den = asam_ctx_alloc(ctx, (size_t)R * sizeof(double));
    if (!s || !num || !den) return NULL;
    const float *xd = logits->data, *td = target->data;
#pragma omp parallel for schedule(static) if (logits->numel >= PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        double spt = 0, sp = 0, st = 0;
        for (int64_t j = 0; j < D; j++) {
            float p = sigmoidf(xd[r * D + j]), t = td[r * D + j];
            spt += (double)p * t;
            sp += p;
            st += t;
        }
        num[r] = 2.0 * spt + smooth;
        den[r] = sp + st + smooth;
    }
    double loss = 0;
    for (int64_t r = 0; r < R; r++) loss += 1.0 - num[r] / den[r];
    out->data[0] = (float)(loss / (double)R);
    if (n) {
        *s = (dice_saved){target, num, den};
        n->saved = s;
        n->ip[0] = R;
        n->ip[1] = D;
    } else {
        asam_ctx_release(ctx, mk);
    }
    return out;
}

/* ---- mse ------------------------------------------------------------------------------------- */

static void mse_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *a = n->in[0], *b = n->in[1];
    float *ga = asam_grad_buf(ctx, a), *gb = a == b ? NULL : asam_grad_buf(ctx, b);
    if (!ga && !gb) return;
    int64_t N = a->numel;
    float g = 2.0f * n->out->grad[0] / (float)N;
    const float *ad = a->data, *bd = b->data;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        float d = g * (ad[i] - bd[i]);
        if (ga) ga[i] += d;
        if (gb) gb[i] -= d;
    }
}

asam_tensor *asam_mse(asam_ctx *ctx, asam_tensor *a, asam_tensor *b) {
    if (!a || !b) return NULL;
    if (!same_numel(ctx, "mse", a, b)) return NULL;
    if (!asam_check(ctx, a->numel > 0, "mse", "empty input")) return NULL;
    asam_tensor *out = asam_op_out(ctx, 0, NULL);
    if (!out) return NULL;
    const float *ad = a->data, *bd = b->data;
    int64_t N = a->numel;
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) {
        double d = (double)ad[i] - bd[i];
        s += d * d;
    }
    out->data[0] = (float)(s / (double)N);
    asam_tensor *ins[2] = {a, b};
    asam_record(ctx, "mse", mse_backward, out, 2, ins);
    return out;
}
