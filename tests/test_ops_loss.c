/* Losses: bce_with_logits (mean, stable for large |x|), dice (per row of dim 0, averaged) and
 * mse, forward against hand values / naive double loops and backward against finite
 * differences. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static asam_tensor *mask(asam_ctx *ctx, int nd, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, nd, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = gc_rand(&seed) > 0 ? 1.0f : 0.0f;
    return t;
}

static double ref_bce(const asam_tensor *x, const asam_tensor *t) {
    double s = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        double v = x->data[i], y = t->data[i], p = 1 / (1 + exp(-v));
        s += -(y * log(p) + (1 - y) * log(1 - p));
    }
    return s / (double)x->numel;
}

static double ref_dice(const asam_tensor *x, const asam_tensor *t, double smooth) {
    int64_t R = x->shape[0], D = x->numel / R;
    double loss = 0;
    for (int64_t r = 0; r < R; r++) {
        double pt = 0, ps = 0, ts = 0;
        for (int64_t j = 0; j < D; j++) {
            double p = 1 / (1 + exp(-(double)x->data[r * D + j])), y = t->data[r * D + j];
            pt += p * y;
            ps += p;
            ts += y;
        }
        loss += 1 - (2 * pt + smooth) / (ps + ts + smooth);
    }
    return loss / (double)R;
}

static asam_tensor *f_bce(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_bce_with_logits(ctx, in[0], in[1]);
}
static asam_tensor *f_dice(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_dice_loss(ctx, in[0], in[1], *(float *)u);
}
static asam_tensor *f_mse(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_mse(ctx, in[0], in[1]);
}
/* ASAM's attack loss shape: 100 * bce + 100 * dice on a view of the logits */
static asam_tensor *f_combo(asam_ctx *ctx, asam_tensor **in, void *u) {
    asam_tensor *x = asam_reshape(ctx, in[0], ASAM_SHAPE(3, 1, 4, 4));
    asam_tensor *t = asam_reshape(ctx, in[1], ASAM_SHAPE(3, 1, 4, 4));
    return asam_add(ctx, asam_scale(ctx, asam_bce_with_logits(ctx, x, t), 100.0f),
                    asam_scale(ctx, asam_dice_loss(ctx, x, t, 1.0f), 100.0f));
}

/* hand values: x = 0 gives log 2 whatever the target; x = +-100 stays finite */
static void case_hand_values(asam_ctx *ctx) {
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(2), (float[]){0, 0});
    asam_tensor *t = asam_from_data(ctx, ASAM_SHAPE(2), (float[]){1, 0});
    CHECK_CLOSE(asam_bce_with_logits(ctx, x, t)->data, ((float[]){0.69314718f}), 1, 1e-6,
                "bce(0) = log 2");
    asam_tensor *xl = asam_from_data(ctx, ASAM_SHAPE(4), (float[]){100, -100, 100, -100});
    asam_tensor *tl = asam_from_data(ctx, ASAM_SHAPE(4), (float[]){1, 0, 0, 1});
    CHECK_CLOSE(asam_bce_with_logits(ctx, xl, tl)->data, ((float[]){50}), 1, 1e-6,
                "bce at |x| = 100: (0 + 0 + 100 + 100) / 4");
    /* dice: x = 0 -> p = 0.5 everywhere; row t = (1, 0): (2*0.5 + 1) / (1 + 1 + 1) */
    asam_tensor *xd = asam_from_data(ctx, ASAM_SHAPE(2, 2), (float[]){0, 0, 0, 0});
    asam_tensor *td = asam_from_data(ctx, ASAM_SHAPE(2, 2), (float[]){1, 0, 1, 1});
    /* row 0: 1 - 2/3; row 1: 1 - (2 + 1)/(1 + 2 + 1) = 1/4 */
    CHECK_CLOSE(asam_dice_loss(ctx, xd, td, 1.0f)->data, ((float[]){(float)((1.0 / 3 + 0.25) / 2)}),
                1, 1e-6, "dice hand value");
    asam_tensor *a = asam_from_data(ctx, ASAM_SHAPE(3), (float[]){1, 2, 3});
    asam_tensor *b = asam_from_data(ctx, ASAM_SHAPE(3), (float[]){1, 0, 6});
    CHECK_CLOSE(asam_mse(ctx, a, b)->data, ((float[]){13.0f / 3}), 1, 1e-6, "mse hand value");
    CHECK(asam_mse(ctx, a, xd) == NULL, "mse shape mismatch fails");
    asam_ctx_clear_error(ctx);
}

/* naive references, small and large */
static void case_naive_references(asam_ctx *ctx) {
    for (int big = 0; big < 2; big++) {
        asam_mark m = asam_ctx_mark(ctx);
        int64_t n = big ? 256 : 5;
        asam_tensor *lx = gc_new(ctx, ASAM_SHAPE(4, 1, n, n), 10 + big, 8.0f, 0.0f);
        asam_tensor *lt = mask(ctx, ASAM_SHAPE(4, 1, n, n), 20 + big);
        float got[3] = {asam_bce_with_logits(ctx, lx, lt)->data[0],
                        asam_dice_loss(ctx, lx, lt, 1.0f)->data[0], asam_mse(ctx, lx, lt)->data[0]};
        double ms = 0;
        for (int64_t i = 0; i < lx->numel; i++)
            ms += ((double)lx->data[i] - lt->data[i]) * ((double)lx->data[i] - lt->data[i]);
        float ref[3] = {(float)ref_bce(lx, lt), (float)ref_dice(lx, lt, 1.0),
                        (float)(ms / (double)lx->numel)};
        CHECK_CLOSE(&got[0], &ref[0], 1, 1e-5, big ? "bce (4,1,256,256)" : "bce (4,1,5,5)");
        CHECK_CLOSE(&got[1], &ref[1], 1, 1e-5, big ? "dice (4,1,256,256)" : "dice (4,1,5,5)");
        CHECK_CLOSE(&got[2], &ref[2], 1, 1e-5, big ? "mse (4,1,256,256)" : "mse (4,1,5,5)");
        asam_ctx_release(ctx, m);
    }
}

/* gradients: logits only for bce and dice (targets get none), both sides for mse */
static void case_gradchecks(asam_ctx *ctx) {
    asam_tensor *in[2] = {gc_new(ctx, ASAM_SHAPE(3, 2, 5), 1, 3.0f, 0.0f),
                          mask(ctx, ASAM_SHAPE(3, 2, 5), 2)};
    int c_logits[2] = {1, 0}, c_both[2] = {1, 1};
    float smooth = 1.0f, smooth0 = 0.5f;
    gradcheck(ctx, "bce_with_logits", f_bce, in, 2, c_logits, NULL, 1e-2f, 30, 1e-3);
    gradcheck(ctx, "dice smooth 1", f_dice, in, 2, c_logits, &smooth, 1e-2f, 30, 1e-3);
    gradcheck(ctx, "dice smooth 0.5", f_dice, in, 2, c_logits, &smooth0, 1e-2f, 30, 1e-3);
    /* soft targets */
    asam_tensor *soft[2] = {gc_new(ctx, ASAM_SHAPE(2, 6), 3, 2.0f, 0.0f),
                            gc_new(ctx, ASAM_SHAPE(2, 6), 4, 0.5f, 0.0f)};
    for (int64_t i = 0; i < 12; i++) soft[1]->data[i] += 0.5f;
    gradcheck(ctx, "bce soft targets", f_bce, soft, 2, c_logits, NULL, 1e-2f, 12, 1e-3);
    gradcheck(ctx, "mse", f_mse, soft, 2, c_both, NULL, 1e-2f, 12, 1e-3);
    asam_tensor *combo[2] = {gc_new(ctx, ASAM_SHAPE(48), 5, 3.0f, 0.0f),
                             mask(ctx, ASAM_SHAPE(48), 6)};
    gradcheck(ctx, "100 bce + 100 dice through reshape views", f_combo, combo, 2, c_logits, NULL,
              1e-2f, 48, 1e-3);
}

/* large (parallel kernels): finite differences of a float mean over 32768 elements drown
 * in rounding, so compare the backward with the closed forms evaluated in double */
static void case_large_backward(asam_ctx *ctx) {
    asam_tensor *lx = gc_new(ctx, ASAM_SHAPE(2, 1, 128, 128), 7, 4.0f, 0.0f);
    asam_tensor *lt = mask(ctx, ASAM_SHAPE(2, 1, 128, 128), 8);
    int64_t N = lx->numel, R = 2, D = N / R;
    float *ref = malloc((size_t)N * sizeof(float));
    for (int k = 0; k < 3; k++) {
        asam_mark m = asam_ctx_mark(ctx);
        lx->grad = lt->grad = NULL;
        asam_set_requires_grad(lx, 1);
        asam_set_requires_grad(lt, k == 2);
        asam_tensor *loss = k == 0   ? asam_bce_with_logits(ctx, lx, lt)
                            : k == 1 ? asam_dice_loss(ctx, lx, lt, 1.0f)
                                     : asam_mse(ctx, lx, lt);
        CHECK(asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
        for (int64_t r = 0; r < R; r++) {
            double pt = 0, ps = 0, ts = 0;
            for (int64_t j = 0; j < D; j++) {
                double p = 1 / (1 + exp(-(double)lx->data[r * D + j]));
                pt += p * lt->data[r * D + j];
                ps += p;
                ts += lt->data[r * D + j];
            }
            double num = 2 * pt + 1, den = ps + ts + 1;
            for (int64_t j = 0; j < D; j++) {
                int64_t i = r * D + j;
                double p = 1 / (1 + exp(-(double)lx->data[i])), y = lt->data[i];
                double g = k == 0   ? (p - y) / N
                           : k == 1 ? (num - 2 * y * den) / (den * den * R) * p * (1 - p)
                                    : 2 * ((double)lx->data[i] - y) / N;
                ref[i] = (float)g;
            }
        }
        const char *names[3] = {"bce backward (2,1,128,128) vs closed form",
                                "dice backward (2,1,128,128) vs closed form",
                                "mse backward (2,1,128,128) vs closed form"};
        CHECK_CLOSE(lx->grad, ref, (size_t)N, 1e-5, names[k]);
        if (k == 2) {
            for (int64_t i = 0; i < N; i++) ref[i] = -ref[i];
            CHECK_CLOSE(lt->grad, ref, (size_t)N, 1e-5, "mse backward to b (2,1,128,128)");
        }
        asam_ctx_release(ctx, m);
    }
    free(ref);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    if (!ctx) return 1;
    case_hand_values(ctx);
    case_naive_references(ctx);
    case_gradchecks(ctx);
    case_large_backward(ctx);
    CHECK(asam_ctx_ok(ctx), "ctx error: %s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    return test_finish("test_ops_loss");
}
