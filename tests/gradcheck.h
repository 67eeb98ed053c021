/* Finite-difference gradient checks for engine ops (header-only, for tests).
 *
 * gradcheck() builds out = f(inputs), seeds backward with fixed pseudo-random weights R
 * (so the checked scalar is L = sum(out * R), accumulated in double), and compares every
 * checked input's analytic gradient with central differences (x +- h) on up to max_elems
 * elements per input. The error is max|analytic - numeric| / max(max|numeric|, 1e-3). */
#ifndef ASAM_TEST_GRADCHECK_H
#define ASAM_TEST_GRADCHECK_H

#include "asam/engine.h"
#include "test_util.h"

typedef asam_tensor *(*gradcheck_fn)(asam_ctx *ctx, asam_tensor **in, void *user);

static inline float gc_rand(uint64_t *s) { /* uniform in [-1, 1) */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
}

static inline void gc_fill(asam_tensor *t, uint64_t seed, float scale) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = scale * gc_rand(&seed);
}

/* A new arena tensor of uniform [-scale, scale) + offset values. */
static inline asam_tensor *gc_new(asam_ctx *ctx, int nd, const int64_t *shape, uint64_t seed,
                                  float scale, float offset) {
    asam_tensor *t = asam_new(ctx, nd, shape);
    gc_fill(t, seed, scale);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] += offset;
    return t;
}

static inline double gc_eval(asam_ctx *ctx, gradcheck_fn f, asam_tensor **in, void *user,
                             const float *R) {
    asam_mark m = asam_ctx_mark(ctx);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *out = f(ctx, in, user);
    asam_ctx_set_grad(ctx, prev);
    double L = 0;
    if (out)
        for (int64_t i = 0; i < out->numel; i++) L += (double)out->data[i] * R[i];
    asam_ctx_release(ctx, m);
    return L;
}

/* in[i] are leaf tensors of ctx; check[i] != 0 marks those whose gradient is checked.
 * Returns the worst relative error (or +inf on failure) and prints one line. */
static inline double gradcheck(asam_ctx *ctx, const char *name, gradcheck_fn f, asam_tensor **in,
                               int n, const int *check, void *user, float h, int max_elems,
                               double tol) {
    for (int i = 0; i < n; i++) {
        in[i]->grad = NULL;
        asam_set_requires_grad(in[i], check[i]);
    }
    asam_mark m0 = asam_ctx_mark(ctx);
    asam_tensor *out = f(ctx, in, user);
    if (!out || !asam_ctx_ok(ctx)) {
        printf("FAIL %s: forward failed: %s\n", name, asam_ctx_error(ctx));
        test_failures++;
        return INFINITY;
    }
    int64_t n_out = out->numel;
    float *R = malloc((size_t)n_out * sizeof(float));
    uint64_t s = 12345;
    for (int64_t i = 0; i < n_out; i++) R[i] = gc_rand(&s);
    if (asam_backward_from(ctx, out, R) != 0) {
        printf("FAIL %s: backward failed: %s\n", name, asam_ctx_error(ctx));
        test_failures++;
        free(R);
        return INFINITY;
    }
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (!check[i]) continue;
        int64_t ne = in[i]->numel;
        float *ana = malloc((size_t)ne * sizeof(float));
        for (int64_t j = 0; j < ne; j++) ana[j] = in[i]->grad ? in[i]->grad[j] : 0.0f;
        int64_t stride = ne > max_elems ? ne / max_elems : 1;
        double max_num = 0, max_err = 0;
        for (int64_t j = 0; j < ne; j += stride) {
            float x0 = in[i]->data[j];
            in[i]->data[j] = x0 + h;
            double lp = gc_eval(ctx, f, in, user, R);
            in[i]->data[j] = x0 - h;
            double lm = gc_eval(ctx, f, in, user, R);
            in[i]->data[j] = x0;
            double num = (lp - lm) / (2.0 * (double)h);
            if (fabs(num) > max_num) max_num = fabs(num);
            double e = fabs(num - (double)ana[j]);
            if (e > max_err || e != e) max_err = e != e ? INFINITY : e;
        }
        double rel = max_err / (max_num > 1e-3 ? max_num : 1e-3);
        if (rel > worst || rel != rel) worst = rel != rel ? INFINITY : rel;
        free(ana);
    }
    free(R);
    asam_ctx_release(ctx, m0);
    for (int i = 0; i < n; i++) in[i]->grad = NULL;
    if (worst <= tol)
        printf("ok   gradcheck %s (rel err %.2e)\n", name, worst);
    else {
        printf("FAIL gradcheck %s: rel err %.2e > %.2e\n", name, worst, tol);
        test_failures++;
    }
    return worst;
}

#endif
