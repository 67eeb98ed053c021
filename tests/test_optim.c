/* Adam / AdamW against the torch.optim formulas evaluated by hand in double, the learning-rate
 * schedules (ASAM's slow start / fast decay for epochs 0..19), and exact continuation after
 * saving and restoring the optimiser state. */
#include "asam/engine.h"
#include "asam/optim.h"
#include "test_util.h"

/* loss = sum((p - target)^2) through the engine, so gradients come from backward */
static void quad_grad(asam_ctx *ctx, asam_tensor *p, const float *target) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *t = asam_from_data(ctx, p->ndim, p->shape, target);
    asam_tensor *d = asam_sub(ctx, p, t);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, d, d));
    asam_param_zero_grad(p);
    CHECK(asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
    asam_ctx_release(ctx, m);
}

/* torch's single-tensor Adam/AdamW in double: returns the parameters after `steps` steps */
static void ref_adam(int adamw, double lr, double b1, double b2, double eps, double wd,
                     const float *p0, const float *target, int n, int steps, double *out) {
    double p[8], m[8] = {0}, v[8] = {0};
    for (int i = 0; i < n; i++) p[i] = p0[i];
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < n; i++) {
            double g = 2.0 * (p[i] - target[i]);
            if (wd != 0) {
                if (adamw)
                    p[i] *= 1.0 - lr * wd;
                else
                    g += wd * p[i];
            }
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double mh = m[i] / (1 - pow(b1, t));
            double denom = sqrt(v[i]) / sqrt(1 - pow(b2, t)) + eps;
            p[i] -= lr * mh / denom;
        }
    }
    for (int i = 0; i < n; i++) out[i] = p[i];
}

static void test_adam(asam_ctx *ctx, int adamw, double wd, const char *what) {
    const float p0[4] = {0.5f, -1.0f, 2.0f, 0.0f}, target[4] = {1.0f, 1.0f, -1.0f, 0.25f};
    asam_tensor *p = asam_param_new(ASAM_SHAPE(2, 2));
    memcpy(p->data, p0, sizeof p0);
    asam_set_requires_grad(p, 1);
    asam_optim *o =
        asam_optim_new(adamw ? ASAM_ADAMW : ASAM_ADAM, &p, 1, 0.1f, 0.9, 0.999, 1e-8, wd);
    for (int s = 1; s <= 3; s++) {
        quad_grad(ctx, p, target);
        asam_optim_step(o);
        double ref[4];
        ref_adam(adamw, 0.1f, 0.9, 0.999, 1e-8, wd, p0, target, 4, s, ref);
        float reff[4] = {(float)ref[0], (float)ref[1], (float)ref[2], (float)ref[3]};
        char name[96];
        snprintf(name, sizeof name, "%s step %d", what, s);
        CHECK_CLOSE(p->data, reff, 4, 1e-6, name);
    }
    CHECK(o->step == 3, "step count %lld", (long long)o->step);
    asam_optim_free(o);
    asam_param_free(p);
}

/* Hand-worked first step: with m0 = v0 = 0 the bias-corrected ratio is g/|g| (eps aside), so
 * Adam's first update is -lr * sign(g) whatever the gradient's size. */
static void test_first_step_by_hand(void) {
    asam_tensor *p = asam_param_new(ASAM_SHAPE(3));
    p->data[0] = 1;
    p->data[1] = 2;
    p->data[2] = 3;
    asam_param_zero_grad(p);
    p->grad[0] = 4;
    p->grad[1] = -0.001f;
    p->grad[2] = 0;
    asam_optim *o = asam_optim_new(ASAM_ADAM, &p, 1, 0.01f, 0.9, 0.999, 1e-8, 0);
    asam_optim_step(o);
    CHECK_CLOSE(p->data, ((float[]){0.99f, 2.01f, 3}), 3, 1e-6, "Adam first step = -lr sign(g)");
    /* m1 = 0.1 g, v1 = 0.001 g^2 */
    CHECK_CLOSE(o->m[0], ((float[]){0.4f, -0.0001f, 0}), 3, 1e-6, "m after one step");
    CHECK_CLOSE(o->v[0], ((float[]){0.016f, 1e-9f, 0}), 3, 1e-6, "v after one step");
    /* AdamW, wd 0.5, lr 0.01: p <- p (1 - 0.005) then the same sign step */
    p->data[0] = 1;
    p->data[1] = 2;
    p->data[2] = 3;
    asam_optim *w = asam_optim_new(ASAM_ADAMW, &p, 1, 0.01f, 0.9, 0.999, 1e-8, 0.5f);
    asam_optim_step(w);
    CHECK_CLOSE(p->data, ((float[]){0.995f - 0.01f, 1.99f + 0.01f, 2.985f}), 3, 1e-6,
                "AdamW first step decays then steps");
    asam_optim_free(o);
    asam_optim_free(w);
    asam_param_free(p);
}

static void test_resume(asam_ctx *ctx) {
    const float target[6] = {1, -2, 3, 0.5f, 0, -1};
    asam_tensor *a = asam_param_new(ASAM_SHAPE(2, 2)), *b = asam_param_new(ASAM_SHAPE(2));
    for (int i = 0; i < 4; i++) a->data[i] = 0.1f * (float)i;
    b->data[0] = -0.3f;
    b->data[1] = 0.7f;
    asam_set_requires_grad(a, 1);
    asam_set_requires_grad(b, 1);
    asam_tensor *ps[2] = {a, b};
    asam_optim *o = asam_optim_new(ASAM_ADAMW, ps, 2, 0.05f, 0.9, 0.99, 1e-8, 0.01);
    for (int s = 0; s < 3; s++) {
        quad_grad(ctx, a, target);
        quad_grad(ctx, b, target + 4);
        asam_optim_step(o);
    }
    int64_t n = asam_optim_state_numel(o);
    CHECK(n == 6, "state numel %lld", (long long)n);
    float m[6], v[6], pa[4], pb[2];
    int64_t step;
    asam_optim_get_state(o, m, v, &step);
    memcpy(pa, a->data, sizeof pa);
    memcpy(pb, b->data, sizeof pb);
    for (int s = 0; s < 2; s++) {
        quad_grad(ctx, a, target);
        quad_grad(ctx, b, target + 4);
        asam_optim_step(o);
    }
    float cont_a[4], cont_b[2];
    memcpy(cont_a, a->data, sizeof cont_a);
    memcpy(cont_b, b->data, sizeof cont_b);
    asam_optim_free(o);

    /* a fresh optimiser restored from the saved arrays */
    memcpy(a->data, pa, sizeof pa);
    memcpy(b->data, pb, sizeof pb);
    asam_optim *r = asam_optim_new(ASAM_ADAMW, ps, 2, 0.05f, 0.9, 0.99, 1e-8, 0.01);
    asam_optim_set_state(r, m, v, step);
    CHECK(r->step == 3, "restored step %lld", (long long)r->step);
    for (int s = 0; s < 2; s++) {
        quad_grad(ctx, a, target);
        quad_grad(ctx, b, target + 4);
        asam_optim_step(r);
    }
    CHECK(memcmp(cont_a, a->data, sizeof cont_a) == 0 &&
              memcmp(cont_b, b->data, sizeof cont_b) == 0,
          "resumed run differs from the uninterrupted one");
    printf("ok   save/restore continues bit-identically\n");
    /* zero_grad clears every gradient */
    asam_optim_zero_grad(r);
    CHECK(a->grad[0] == 0 && b->grad[1] == 0, "zero_grad");
    asam_optim_free(r);
    asam_param_free(a);
    asam_param_free(b);
}

static void test_schedules(void) {
    asam_lr_schedule s = {.kind = ASAM_LR_FN, .base_lr = 2e-3f, .fn = asam_lr_asam_factor};
    const double want[20] = {0.1,      0.2,       0.3,        0.4,         0.5,
                             0.6,      0.7,       0.8,        0.9,         1.0,
                             0.5,      0.25,      0.125,      0.0625,      0.03125,
                             0.015625, 0.0078125, 0.00390625, 0.001953125, 0.0009765625};
    float got[20], ref[20];
    for (int e = 0; e < 20; e++) {
        got[e] = asam_lr_at(&s, e);
        ref[e] = (float)(2e-3 * want[e]);
    }
    CHECK_CLOSE(got, ref, 20, 1e-6, "ASAM schedule epochs 0..19");
    for (int e = 0; e < 20; e++)
        CHECK(fabs(got[e] - ref[e]) <= 1e-6 * ref[e] + 1e-12, "epoch %d: %g vs %g", e, got[e],
              ref[e]);

    asam_lr_schedule c = {.kind = ASAM_LR_CONSTANT, .base_lr = 0.5f};
    CHECK(asam_lr_at(&c, 0) == 0.5f && asam_lr_at(&c, 99) == 0.5f, "constant");
    asam_lr_schedule w = {
        .kind = ASAM_LR_LINEAR_WARMUP, .base_lr = 1.0f, .start_factor = 0.25f, .total = 3};
    float wg[5] = {asam_lr_at(&w, 0), asam_lr_at(&w, 1), asam_lr_at(&w, 2), asam_lr_at(&w, 3),
                   asam_lr_at(&w, 10)};
    CHECK_CLOSE(wg, ((float[]){0.25f, 0.5f, 0.75f, 1, 1}), 5, 1e-6, "linear warm-up");
    asam_lr_schedule x = {.kind = ASAM_LR_EXP, .base_lr = 1.0f, .gamma = 0.9f};
    float xg[3] = {asam_lr_at(&x, 0), asam_lr_at(&x, 1), asam_lr_at(&x, 3)};
    CHECK_CLOSE(xg, ((float[]){1, 0.9f, 0.729f}), 3, 1e-6, "exponential decay");
    asam_lr_schedule st = {.kind = ASAM_LR_STEP, .base_lr = 1.0f, .gamma = 0.1f, .step_size = 2};
    float sg[5] = {asam_lr_at(&st, 0), asam_lr_at(&st, 1), asam_lr_at(&st, 2), asam_lr_at(&st, 3),
                   asam_lr_at(&st, 4)};
    CHECK_CLOSE(sg, ((float[]){1, 1, 0.1f, 0.1f, 0.01f}), 5, 1e-6, "step decay");
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    if (!ctx) return 1;
    test_first_step_by_hand();
    test_adam(ctx, 0, 0.0f, "Adam");
    test_adam(ctx, 0, 0.1, "Adam wd 0.1");
    test_adam(ctx, 1, 0.0f, "AdamW wd 0");
    test_adam(ctx, 1, 0.1, "AdamW wd 0.1");
    test_resume(ctx);
    test_schedules();
    CHECK(asam_optim_new(ASAM_ADAM, (asam_tensor *[]){NULL}, 1, 0.1f, 0.9, 0.999, 1e-8, 0) == NULL,
          "NULL parameter rejected");
    asam_ctx_free(ctx);
    return test_finish("test_optim");
}
