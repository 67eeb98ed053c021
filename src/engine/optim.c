/* Adam / AdamW (torch.optim single-tensor semantics) and learning-rate schedules. */
#include "asam/optim.h"
#include "asam/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

asam_optim *asam_optim_new(asam_optim_kind kind, asam_tensor *const *params, int n_params, float lr,
                           double beta1, double beta2, double eps, double weight_decay) {
    if (n_params < 0 || (n_params > 0 && !params)) {
        asam_error("optimizer: no parameter list");
        return NULL;
    }
    for (int i = 0; i < n_params; i++)
        if (!params[i]) {
            asam_error("optimizer: parameter %d is NULL", i);
            return NULL;
        }
    asam_optim *o = calloc(1, sizeof *o);
    if (!o) goto oom;
    *o = (asam_optim){kind, lr, beta1, beta2, eps, weight_decay, n_params, NULL, NULL, NULL, 0};
    size_t np = (size_t)(n_params ? n_params : 1);
    o->params = calloc(np, sizeof *o->params);
    o->m = calloc(np, sizeof *o->m);
    o->v = calloc(np, sizeof *o->v);
    if (!o->params || !o->m || !o->v) goto oom;
    for (int i = 0; i < n_params; i++) {
        o->params[i] = params[i];
        size_t n = (size_t)(params[i]->numel ? params[i]->numel : 1);
        o->m[i] = calloc(n, sizeof(float));
        o->v[i] = calloc(n, sizeof(float));
        if (!o->m[i] || !o->v[i]) goto oom;
    }
    return o;
oom:
    asam_optim_free(o);
    asam_error("optimizer: out of memory");
    return NULL;
}

void asam_optim_free(asam_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n_params; i++) {
        if (o->m) free(o->m[i]);
        if (o->v) free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->params);
    free(o);
}

void asam_optim_step(asam_optim *o) {
    if (!o) return;
    o->step++;
    double t = (double)o->step;
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    float step_size = (float)((double)o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float b1w = (float)(1.0 - o->beta1), b2 = (float)o->beta2, b2w = (float)(1.0 - o->beta2);
    float eps = (float)o->eps, wd = (float)o->weight_decay;
    float decay = (float)(1.0 - (double)o->lr * o->weight_decay); /* AdamW */
    for (int i = 0; i < o->n_params; i++) {
        asam_tensor *p = o->params[i];
        if (!p->grad) continue;
        float *restrict w = p->data, *restrict m = o->m[i], *restrict v = o->v[i];
        const float *restrict gr = p->grad;
        int64_t n = p->numel;
        int adamw = o->kind == ASAM_ADAMW;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (int64_t j = 0; j < n; j++) {
            float g = gr[j];
            if (wd != 0.0f) {
                if (adamw)
                    w[j] *= decay;
                else
                    g = g + wd * w[j];
            }
            m[j] = m[j] + b1w * (g - m[j]); /* lerp(m, g, 1 - beta1) */
            v[j] = v[j] * b2 + b2w * g * g;
            float denom = sqrtf(v[j]) / bc2_sqrt + eps;
            w[j] = w[j] + (-step_size) * m[j] / denom;
        }
    }
}

void asam_optim_zero_grad(asam_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n_params; i++)
        if (o->params[i]->grad)
            memset(o->params[i]->grad, 0, (size_t)o->params[i]->numel * sizeof(float));
}

int64_t asam_optim_state_numel(const asam_optim *o) {
    int64_t n = 0;
    for (int i = 0; i < o->n_params; i++) n += o->params[i]->numel;
    return n;
}

void asam_optim_get_state(const asam_optim *o, float *m, float *v, int64_t *step) {
    int64_t off = 0;
    for (int i = 0; i < o->n_params; i++) {
        size_t n = (size_t)o->params[i]->numel;
        if (m) memcpy(m + off, o->m[i], n * sizeof(float));
        if (v) memcpy(v + off, o->v[i], n * sizeof(float));
        off += (int64_t)n;
    }
    if (step) *step = o->step;
}

void asam_optim_set_state(asam_optim *o, const float *m, const float *v, int64_t step) {
    int64_t off = 0;
    for (int i = 0; i < o->n_params; i++) {
        size_t n = (size_t)o->params[i]->numel;
        if (m) memcpy(o->m[i], m + off, n * sizeof(float));
        if (v) memcpy(o->v[i], v + off, n * sizeof(float));
        off += (int64_t)n;
    }
    o->step = step;
}

/* ---- schedules ------------------------------------------------------------------------------- */

float asam_lr_at(const asam_lr_schedule *s, int t) {
    if (!s) return 0.0f;
    double f = 1.0;
    switch (s->kind) {
    case ASAM_LR_CONSTANT:
        break;
    case ASAM_LR_LINEAR_WARMUP:
        if (s->total > 0) {
            int k = t < s->total ? t : s->total;
            f = s->start_factor + (1.0 - s->start_factor) * (double)k / (double)s->total;
        }
        break;
    case ASAM_LR_EXP:
        f = pow((double)s->gamma, (double)t);
        break;
    case ASAM_LR_STEP:
        f = s->step_size > 0 ? pow((double)s->gamma, (double)(t / s->step_size)) : 1.0;
        break;
    case ASAM_LR_FN:
        f = s->fn ? s->fn(t, s->user) : 1.0;
        break;
    }
    return (float)((double)s->base_lr * f);
}

// ref: luckybird1994/ASAM sam_continue_learning/main.py:24 (lr_lambda)
float asam_lr_asam_factor(int epoch, void *user) {
    (void)user;
    if (epoch < 10) return (float)(epoch + 1) / 10.0f;
    return (float)pow(0.5, (double)(epoch - 9));
}
