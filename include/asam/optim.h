/* Optimisers (Adam, AdamW as torch.optim implements them) over persistent parameters, and
 * learning-rate schedules.
 *
 * Adam / AdamW step t (1-based), per element, with g = param->grad:
 *   Adam:  g += wd * p                       (L2 penalty through the gradient)
 *   AdamW: p *= 1 - lr * wd                  (decoupled decay)
 *   m = m + (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * Scalars (1 - beta, bias corrections, step size) are computed in double and rounded to
 * float once, like torch's Python scalars.
 *
 * State: m and v (one float per parameter element) and the step count. asam_optim_get_state /
 * asam_optim_set_state copy them to / from flat arrays (parameters in order, each numel
 * floats) so a resumed run continues bit-identically. */
#ifndef ASAM_OPTIM_H
#define ASAM_OPTIM_H

#include "asam/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ASAM_ADAM = 0, ASAM_ADAMW = 1 } asam_optim_kind;

typedef struct {
    asam_optim_kind kind;
    float lr; /* current learning rate (a schedule may set it before each step) */
    /* double like torch's Python floats: 1 - beta in float would be off by 1e-5 relative */
    double beta1, beta2, eps, weight_decay;
    int n_params;
    asam_tensor **params; /* not owned */
    float **m, **v;       /* per parameter, numel floats each (owned) */
    int64_t step;         /* steps taken so far */
} asam_optim;

/* torch defaults: betas (0.9, 0.999), eps 1e-8; weight_decay 0 for Adam, 1e-2 for AdamW.
 * Returns NULL (asam_error set) on a NULL parameter or out of memory. */
asam_optim *asam_optim_new(asam_optim_kind kind, asam_tensor *const *params, int n_params, float lr,
                           double beta1, double beta2, double eps, double weight_decay);
void asam_optim_free(asam_optim *opt);
/* One update with opt->lr. Parameters without a gradient buffer are skipped (as torch skips
 * p.grad is None), but the shared step count still advances. */
void asam_optim_step(asam_optim *opt);
void asam_optim_zero_grad(asam_optim *opt); /* zero every parameter's gradient */

/* Total floats in m (and in v): the sum of the parameters' numel. */
int64_t asam_optim_state_numel(const asam_optim *opt);
/* Copy m and v (each state_numel floats) and the step count out / in. */
void asam_optim_get_state(const asam_optim *opt, float *m, float *v, int64_t *step);
void asam_optim_set_state(asam_optim *opt, const float *m, const float *v, int64_t step);

/* ---- learning-rate schedules -------------------------------------------------------------- */
/* lr(t) = base_lr * factor(t), t counting steps or epochs from 0 (whatever the caller steps):
 *   CONSTANT:     1
 *   LINEAR_WARMUP: start + (1 - start) * min(t, total) / total   (torch LinearLR to 1)
 *   EXP:          gamma^t                                          (torch ExponentialLR)
 *   STEP:         gamma^floor(t / step_size)                       (torch StepLR)
 *   FN:           fn(t, user)                                      (torch LambdaLR) */
typedef enum {
    ASAM_LR_CONSTANT = 0,
    ASAM_LR_LINEAR_WARMUP,
    ASAM_LR_EXP,
    ASAM_LR_STEP,
    ASAM_LR_FN
} asam_lr_kind;

typedef struct {
    asam_lr_kind kind;
    float base_lr;
    float start_factor;                 /* LINEAR_WARMUP */
    int total;                          /* LINEAR_WARMUP: steps to reach base_lr */
    float gamma;                        /* EXP, STEP */
    int step_size;                      /* STEP */
    float (*fn)(int epoch, void *user); /* FN */
    void *user;
} asam_lr_schedule;

float asam_lr_at(const asam_lr_schedule *s, int t);

/* ASAM's "slow start, fast decay" factor, stepped once per epoch:
 * (e + 1) / 10 for e < 10, else 0.5^(e - 9). Usable as an ASAM_LR_FN function. */
float asam_lr_asam_factor(int epoch, void *user);

#ifdef __cplusplus
}
#endif
#endif
