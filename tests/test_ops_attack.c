/* The attack ops (soft clamp, abs, sqrt, L2 norm, sign): forward against hand values, backward
 * against finite differences. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static asam_tensor *f_soft(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_soft_clamp01(ctx, in[0]);
}
static asam_tensor *f_abs(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_abs(ctx, in[0]);
}
static asam_tensor *f_sqrt(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_sqrt(ctx, in[0]);
}
static asam_tensor *f_l2(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_l2_norm(ctx, in[0]);
}

/* values away from the kinks (distance > 2h) */
static asam_tensor *vals(asam_ctx *ctx, int64_t n, uint64_t seed, float lo, float hi,
                         const float *avoid, int n_avoid, float margin) {
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(n));
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        float v;
        int bad;
        do {
            v = lo + (hi - lo) * 0.5f * (gc_rand(&s) + 1.0f);
            bad = 0;
            for (int k = 0; k < n_avoid; k++) bad |= fabsf(v - avoid[k]) < margin;
        } while (bad);
        t->data[i] = v;
    }
    return t;
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new(0);

    /* forward values */
    float xs[7] = {-1.0f, -0.0005f, 0.0f, 0.3f, 1.0f, 1.0005f, 2.0f};
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(7), xs);
    asam_tensor *y = asam_soft_clamp01(ctx, x);
    double ref[7];
    for (int i = 0; i < 7; i++) {
        double v = xs[i];
        ref[i] = v > 1   ? (tanh(1000 * (v - 1)) + 10000) / 10001
                 : v < 0 ? tanh(1000 * v) / 10000
                         : v;
    }
    double md = 0;
    for (int i = 0; i < 7; i++) md = fmax(md, fabs(y->data[i] - ref[i]));
    CHECK(md < 1e-6, "soft clamp forward off by %g", md);
    CHECK(y->data[0] >= -1.0001e-4f && y->data[6] < 1.0f + 1e-4f && y->data[3] == 0.3f,
          "soft clamp range");
    printf("ok   soft clamp forward (max diff %.2g)\n", md);

    float v3[4] = {3, -4, 0, 12};
    asam_tensor *t3 = asam_from_data(ctx, ASAM_SHAPE(2, 2), v3);
    CHECK(fabsf(asam_l2_norm(ctx, t3)->data[0] - 13.0f) < 1e-6f, "l2 norm of (3,-4,0,12)");
    asam_tensor *sg = asam_sign(ctx, t3);
    CHECK(sg->data[0] == 1 && sg->data[1] == -1 && sg->data[2] == 0, "sign");
    asam_tensor *ab = asam_abs(ctx, t3);
    CHECK(ab->data[1] == 4 && ab->data[3] == 12, "abs");
    float v4[2] = {4, 0.25f};
    asam_tensor *sq = asam_sqrt(ctx, asam_from_data(ctx, ASAM_SHAPE(2), v4));
    CHECK(sq->data[0] == 2 && sq->data[1] == 0.5f, "sqrt");
    float neg = -1;
    CHECK(asam_sqrt(ctx, asam_from_data(ctx, ASAM_SHAPE(1), &neg)) == NULL && !asam_ctx_ok(ctx),
          "sqrt of a negative is an error");
    asam_ctx_clear_error(ctx);

    /* gradients: the soft clamp in its three pieces, including the steep tanh region near 0 and
     * 1 (h small enough to resolve the 1000x slope) */
    int chk[1] = {1};
    const float kinks[2] = {0.0f, 1.0f};
    asam_tensor *in[1];
    in[0] = vals(ctx, 40, 1, -0.5f, 1.5f, kinks, 2, 0.02f);
    gradcheck(ctx, "soft_clamp01", f_soft, in, 1, chk, NULL, 1e-3f, 40, 1e-3);
    in[0] = vals(ctx, 12, 2, -0.003f, -0.0002f, kinks, 0, 0);
    gradcheck(ctx, "soft_clamp01 below 0 (tanh slope)", f_soft, in, 1, chk, NULL, 2e-5f, 12, 1e-2);
    in[0] = vals(ctx, 12, 3, 1.0002f, 1.003f, kinks, 0, 0);
    /* float spacing near 1 is 1.2e-7, so the difference quotient is good to ~1e-2 */
    gradcheck(ctx, "soft_clamp01 above 1 (tanh slope)", f_soft, in, 1, chk, NULL, 5e-5f, 12, 3e-2);
    const float zero[1] = {0.0f};
    in[0] = vals(ctx, 30, 4, -2, 2, zero, 1, 0.05f);
    gradcheck(ctx, "abs", f_abs, in, 1, chk, NULL, 1e-2f, 30, 1e-3);
    in[0] = vals(ctx, 30, 5, 0.2f, 3, NULL, 0, 0);
    gradcheck(ctx, "sqrt", f_sqrt, in, 1, chk, NULL, 1e-3f, 30, 1e-3);
    in[0] = asam_new(ctx, ASAM_SHAPE(3, 5, 7));
    gc_fill(in[0], 6, 1.0f);
    gradcheck(ctx, "l2_norm", f_l2, in, 1, chk, NULL, 1e-2f, 60, 1e-3);

    /* zero vector: no NaN gradient */
    asam_tensor *z = asam_zeros(ctx, ASAM_SHAPE(4));
    asam_set_requires_grad(z, 1);
    asam_tensor *nz = asam_l2_norm(ctx, z);
    CHECK(asam_backward(ctx, nz) == 0 && z->grad && z->grad[0] == 0.0f, "l2 norm grad at 0");

    asam_ctx_free(ctx);
    if (test_failures) return 1;
    printf("all attack op tests passed\n");
    return 0;
}
