/* Elementwise ops (broadcasting add/sub/mul/div, scale, add_scalar, axpby), activations,
 * softmax and reductions: forward against hand values / naive double loops, backward against
 * finite differences (tests/gradcheck.h). */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

/* Naive numpy-broadcast reference in double. op: 0 add, 1 sub, 2 mul, 3 div. */
static void ref_binary(int op, const asam_tensor *a, const asam_tensor *b, const asam_tensor *o,
                       float *ref) {
    for (int64_t i = 0; i < o->numel; i++) {
        int64_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (int d = o->ndim - 1; d >= 0; d--) {
            int64_t k = rem % o->shape[d];
            rem /= o->shape[d];
            int da = a->ndim - o->ndim + d, db = b->ndim - o->ndim + d;
            if (da >= 0) {
                if (a->shape[da] != 1) ia += k * sa;
                sa *= a->shape[da];
            }
            if (db >= 0) {
                if (b->shape[db] != 1) ib += k * sb;
                sb *= b->shape[db];
            }
        }
        double x = a->data[ia], y = b->data[ib];
        ref[i] = (float)(op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y);
    }
}

typedef asam_tensor *(*binop)(asam_ctx *, asam_tensor *, asam_tensor *);
static const binop binops[4] = {asam_add, asam_sub, asam_mul, asam_div};
static const char *binnames[4] = {"add", "sub", "mul", "div"};

static asam_tensor *f_bin(asam_ctx *ctx, asam_tensor **in, void *user) {
    return binops[*(int *)user](ctx, in[0], in[1]);
}
static asam_tensor *f_bin_self(asam_ctx *ctx, asam_tensor **in, void *user) {
    return binops[*(int *)user](ctx, in[0], in[0]);
}

static void test_literals(asam_ctx *ctx) {
    asam_tensor *a = asam_from_data(ctx, ASAM_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    asam_tensor *b = asam_from_data(ctx, ASAM_SHAPE(3), (float[]){10, 20, 30});
    asam_tensor *c = asam_from_data(ctx, ASAM_SHAPE(2, 1), (float[]){2, -1});
    asam_tensor *o = asam_add(ctx, a, b);
    CHECK_CLOSE(o->data, ((float[]){11, 22, 33, 14, 25, 36}), 6, 0, "add (2,3)+(3) literal");
    o = asam_sub(ctx, b, a);
    CHECK_CLOSE(o->data, ((float[]){9, 18, 27, 6, 15, 24}), 6, 0, "sub (3)-(2,3) literal");
    o = asam_mul(ctx, a, c);
    CHECK_CLOSE(o->data, ((float[]){2, 4, 6, -4, -5, -6}), 6, 0, "mul (2,3)*(2,1) literal");
    o = asam_div(ctx, b, c);
    CHECK(o->ndim == 2 && o->shape[0] == 2 && o->shape[1] == 3, "div shape");
    CHECK_CLOSE(o->data, ((float[]){5, 10, 15, -10, -20, -30}), 6, 0, "div (3)/(2,1) literal");
    o = asam_mul(ctx, a, asam_scalar(ctx, 0.5f));
    CHECK_CLOSE(o->data, ((float[]){0.5f, 1, 1.5f, 2, 2.5f, 3}), 6, 0, "mul by 0-dim scalar");
    o = asam_scale(ctx, a, -2);
    CHECK_CLOSE(o->data, ((float[]){-2, -4, -6, -8, -10, -12}), 6, 0, "scale literal");
    o = asam_add_scalar(ctx, a, 0.25f);
    CHECK_CLOSE(o->data, ((float[]){1.25f, 2.25f, 3.25f, 4.25f, 5.25f, 6.25f}), 6, 0,
                "add_scalar literal");
    asam_tensor *a2 = asam_from_data(ctx, ASAM_SHAPE(2, 3), (float[]){1, 0, -1, 2, 0, 1});
    o = asam_axpby(ctx, 2, a, -3, a2);
    CHECK_CLOSE(o->data, ((float[]){-1, 4, 9, 2, 10, 9}), 6, 0, "axpby literal");

    /* errors: incompatible shapes give NULL and a message naming the op */
    asam_tensor *bad = asam_new(ctx, ASAM_SHAPE(4));
    CHECK(asam_add(ctx, a, bad) == NULL, "add (2,3)+(4) must fail");
    CHECK(asam_ctx_error(ctx) && strstr(asam_ctx_error(ctx), "add"), "error names op: %s",
          asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    CHECK(asam_axpby(ctx, 1, a, 1, bad) == NULL, "axpby shape mismatch must fail");
    asam_ctx_clear_error(ctx);
    CHECK(asam_add(ctx, NULL, a) == NULL, "NULL input gives NULL");
    CHECK(asam_ctx_ok(ctx), "NULL input records no error");
}

/* Forward against the naive reference on many broadcast patterns, small and large. */
static const int64_t shapes[][2][5] = {
    /* {ndim, dims...} of a, of b */
    {{3, 2, 3, 4}, {3, 2, 3, 4}},
    {{3, 2, 3, 4}, {1, 4}},
    {{1, 4}, {3, 2, 3, 4}},
    {{3, 2, 1, 4}, {2, 3, 1}},
    {{3, 2, 3, 4}, {3, 2, 1, 4}},
    {{4, 2, 3, 5, 4}, {3, 3, 1, 1}},
    {{0}, {3, 2, 3, 4}},
    {{3, 2, 3, 4}, {0}},
    {{2, 1, 1}, {2, 1, 1}},
    {{3, 1, 3, 1}, {3, 2, 1, 4}},
    {{2, 128, 300}, {1, 300}},
    {{4, 2, 16, 32, 32}, {3, 16, 1, 1}},
    {{3, 64, 40, 30}, {3, 64, 1, 30}},
    {{2, 70000, 1}, {2, 1, 1}},
};

static void test_broadcast_forward(asam_ctx *ctx) {
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < ns; si++) {
        asam_mark m = asam_ctx_mark(ctx);
        int na = (int)shapes[si][0][0], nb = (int)shapes[si][1][0];
        asam_tensor *a = gc_new(ctx, na, &shapes[si][0][1], 11 + si, 1.0f, 0);
        asam_tensor *b = gc_new(ctx, nb, &shapes[si][1][1], 77 + si, 0.5f, 1.0f);
        for (int op = 0; op < 4; op++) {
            asam_tensor *o = binops[op](ctx, a, b);
            CHECK(o != NULL, "case %d %s failed: %s", si, binnames[op], asam_ctx_error(ctx));
            if (!o) continue;
            float *ref = malloc((size_t)o->numel * sizeof(float));
            ref_binary(op, a, b, o, ref);
            char what[64];
            snprintf(what, sizeof what, "%s broadcast case %d forward", binnames[op], si);
            CHECK_CLOSE(o->data, ref, (size_t)o->numel, 1e-6, what);
            free(ref);
        }
        asam_ctx_release(ctx, m);
    }
}

static void test_broadcast_backward(asam_ctx *ctx) {
    /* small cases for every op and every broadcast direction */
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int si = 0; si < ns; si++) {
        int na = (int)shapes[si][0][0], nb = (int)shapes[si][1][0];
        for (int op = 0; op < 4; op++) {
            asam_mark m = asam_ctx_mark(ctx);
            asam_tensor *in[2] = {gc_new(ctx, na, &shapes[si][0][1], 5 + si, 1.0f, 0),
                                  gc_new(ctx, nb, &shapes[si][1][1], 9 + si, 0.5f, 1.0f)};
            int check[2] = {1, 1};
            char name[64];
            snprintf(name, sizeof name, "%s case %d", binnames[op], si);
            gradcheck(ctx, name, f_bin, in, 2, check, &op, 1e-2f, 24, 1e-3);
            /* only one side needing a gradient */
            int check_b[2] = {0, 1};
            snprintf(name, sizeof name, "%s case %d (b only)", binnames[op], si);
            gradcheck(ctx, name, f_bin, in, 2, check_b, &op, 1e-2f, 24, 1e-3);
            asam_ctx_release(ctx, m);
        }
    }
    for (int op = 0; op < 4; op++) {
        asam_tensor *in[1] = {gc_new(ctx, ASAM_SHAPE(3, 5), 3, 0.5f, 1.0f)};
        int check[1] = {1};
        char name[64];
        snprintf(name, sizeof name, "%s(x, x)", binnames[op]);
        gradcheck(ctx, name, f_bin_self, in, 1, check, &op, 1e-2f, 15, 1e-3);
    }
}

static asam_tensor *f_scale(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_scale(ctx, in[0], -1.5f);
}
static asam_tensor *f_add_scalar(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_add_scalar(ctx, in[0], 3.0f);
}
static asam_tensor *f_axpby(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_axpby(ctx, 0.7f, in[0], -2.0f, in[1]);
}
/* views: a reshape / slice0 of a leaf feeding an op; the gradient must reach the leaf */
static asam_tensor *f_reshape_mul(asam_ctx *ctx, asam_tensor **in, void *u) {
    asam_tensor *r = asam_reshape(ctx, in[0], ASAM_SHAPE(4, -1));
    return asam_mul(ctx, r, in[1]);
}
static asam_tensor *f_slice0_add(asam_ctx *ctx, asam_tensor **in, void *u) {
    asam_tensor *s = asam_slice0(ctx, in[0], 1, 3);
    return asam_add(ctx, asam_mul(ctx, s, s), in[1]);
}

static void test_scalar_ops_grad(asam_ctx *ctx) {
    asam_tensor *in[2] = {gc_new(ctx, ASAM_SHAPE(3, 4), 1, 1, 0),
                          gc_new(ctx, ASAM_SHAPE(3, 4), 2, 1, 0)};
    int c1[1] = {1}, c2[2] = {1, 1};
    gradcheck(ctx, "scale", f_scale, in, 1, c1, NULL, 1e-2f, 12, 1e-3);
    gradcheck(ctx, "add_scalar", f_add_scalar, in, 1, c1, NULL, 1e-2f, 12, 1e-3);
    gradcheck(ctx, "axpby", f_axpby, in, 2, c2, NULL, 1e-2f, 12, 1e-3);
    asam_tensor *v[2] = {gc_new(ctx, ASAM_SHAPE(2, 2, 6), 3, 1, 0),
                         gc_new(ctx, ASAM_SHAPE(6), 4, 1, 0)};
    gradcheck(ctx, "reshape view -> mul", f_reshape_mul, v, 2, c2, NULL, 1e-2f, 24, 1e-3);
    asam_tensor *w[2] = {gc_new(ctx, ASAM_SHAPE(4, 3), 5, 1, 0),
                         gc_new(ctx, ASAM_SHAPE(3), 6, 1, 0)};
    gradcheck(ctx, "slice0 view -> mul, add", f_slice0_add, w, 2, c2, NULL, 1e-2f, 12, 1e-3);
}

/* ---- activations ----------------------------------------------------------------------------- */

typedef asam_tensor *(*unop)(asam_ctx *, asam_tensor *);
static const unop acts[] = {asam_gelu, asam_gelu_tanh, asam_quick_gelu, asam_silu,
                            asam_relu, asam_sigmoid,   asam_tanh,       asam_softmax};
static const char *act_names[] = {"gelu", "gelu_tanh", "quick_gelu", "silu",
                                  "relu", "sigmoid",   "tanh",       "softmax"};
#define N_ACTS 8

static double ref_act(int k, double x) {
    double s = 1.0 / (1.0 + exp(-x));
    switch (k) {
    case 0:
        return 0.5 * x * erfc(-x / sqrt(2.0)); /* erfc: no cancellation in the tail */
    case 1:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case 2:
        return x / (1.0 + exp(-1.702 * x));
    case 3:
        return x * s;
    case 4:
        return x > 0 ? x : 0;
    case 5:
        return s;
    default:
        return tanh(x);
    }
}

static asam_tensor *f_act(asam_ctx *ctx, asam_tensor **in, void *user) {
    return acts[*(int *)user](ctx, in[0]);
}

/* GEGLU: gradients by finite differences; the forward bit for bit and the gradient to rounding
 * what slicing, gelu and mul give (the UNet's feed-forward used those). */
static asam_tensor *f_geglu(asam_ctx *ctx, asam_tensor **in, void *user) {
    (void)user;
    return asam_geglu(ctx, in[0]);
}

static void test_geglu(asam_ctx *ctx) {
    asam_tensor *x[1] = {gc_new(ctx, ASAM_SHAPE(2, 3, 10), 11, 1, 0)};
    int c1[1] = {1};
    gradcheck(ctx, "geglu", f_geglu, x, 1, c1, NULL, 1e-2f, 60, 1e-3);
    const int64_t F = 700; /* past the op's parallel threshold */
    asam_tensor *p = gc_new(ctx, ASAM_SHAPE(3, 40, 2 * F), 12, 3, 0);
    asam_set_requires_grad(p, 1);
    float *gs[2];
    float *ys[2];
    for (int fused = 0; fused < 2; fused++) {
        int prev = asam_ctx_set_grad(ctx, 1);
        asam_tensor *y = fused ? asam_geglu(ctx, p)
                               : asam_mul(ctx, asam_slice(ctx, p, -1, 0, F),
                                          asam_gelu(ctx, asam_slice(ctx, p, -1, F, 2 * F)));
        asam_tensor *w = gc_new(ctx, 3, y->shape, 13, 1, 0);
        int ok = asam_backward(ctx, asam_sum(ctx, asam_mul(ctx, y, w))) == 0;
        asam_ctx_set_grad(ctx, prev);
        CHECK(ok, "geglu backward: %s", asam_ctx_error(ctx));
        ys[fused] = y->data;
        gs[fused] = malloc((size_t)p->numel * sizeof(float));
        memcpy(gs[fused], p->grad, (size_t)p->numel * sizeof(float));
        memset(p->grad, 0, (size_t)p->numel * sizeof(float));
    }
    CHECK(memcmp(ys[0], ys[1], (size_t)(3 * 40 * F) * sizeof(float)) == 0,
          "geglu forward differs from slice, gelu, mul");
    /* the gradient to rounding: the compiler may contract the two loops' products into fused
     * multiply-adds differently */
    CHECK_CLOSE(gs[1], gs[0], (size_t)p->numel, 1e-6, "geglu gradient vs slice, gelu, mul");
    printf("ok   geglu forward bit for bit the composed ops\n");
    free(gs[0]), free(gs[1]);
    asam_tensor *odd = asam_zeros(ctx, ASAM_SHAPE(2, 5));
    CHECK(asam_geglu(ctx, odd) == NULL && !asam_ctx_ok(ctx), "geglu of an odd last dim accepted");
    asam_ctx_clear_error(ctx);
}

static void test_activations(asam_ctx *ctx) {
    /* hand values */
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(3), (float[]){-1, 0, 1});
    CHECK_CLOSE(asam_gelu(ctx, x)->data, ((float[]){-0.15865525f, 0, 0.84134475f}), 3, 1e-6,
                "gelu(-1,0,1) hand values");
    CHECK_CLOSE(asam_gelu_tanh(ctx, x)->data, ((float[]){-0.15880801f, 0, 0.84119199f}), 3, 1e-6,
                "gelu_tanh(-1,0,1) hand values");
    CHECK_CLOSE(asam_quick_gelu(ctx, x)->data, ((float[]){-0.15420423f, 0, 0.84579577f}), 3, 1e-6,
                "quick_gelu(-1,0,1) hand values");
    CHECK_CLOSE(asam_silu(ctx, x)->data, ((float[]){-0.26894142f, 0, 0.73105858f}), 3, 1e-6,
                "silu(-1,0,1) hand values");
    CHECK_CLOSE(asam_sigmoid(ctx, x)->data, ((float[]){0.26894142f, 0.5f, 0.73105858f}), 3, 1e-6,
                "sigmoid(-1,0,1) hand values");
    CHECK_CLOSE(asam_softmax(ctx, x)->data, ((float[]){0.09003057f, 0.24472847f, 0.66524096f}), 3,
                1e-6, "softmax(-1,0,1) hand values");
    CHECK_CLOSE(asam_relu(ctx, x)->data, ((float[]){0, 0, 1}), 3, 0, "relu(-1,0,1)");

    /* tails and extremes: elementwise relative accuracy, finite results */
    float xs[8] = {-100, -30, -8, -5, 5, 8, 30, 100};
    asam_tensor *xt = asam_from_data(ctx, ASAM_SHAPE(8), xs);
    for (int k = 0; k < 7; k++) {
        asam_tensor *o = acts[k](ctx, xt);
        for (int i = 0; i < 8; i++) {
            double r = ref_act(k, xs[i]);
            double err = fabs(o->data[i] - r);
            /* gelu_tanh is 0.5 x (1 + tanh(.)) as torch evaluates it: absolute accuracy only */
            double tol = k == 1 ? 1e-6 : 1e-5 * fabs(r) + 1e-30;
            CHECK(isfinite(o->data[i]) && err <= tol, "%s(%g) = %g, want %g", act_names[k], xs[i],
                  o->data[i], r);
        }
    }
    printf(
        "ok   activations at +-5, 8, 30, 100: relative error <= 1e-5 (gelu_tanh absolute 1e-6)\n");

    /* naive double references, small and large (parallel path) */
    for (int big = 0; big < 2; big++) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *t = big ? gc_new(ctx, ASAM_SHAPE(64, 1000), 8, 6, 0)
                             : gc_new(ctx, ASAM_SHAPE(4, 7), 8, 6, 0);
        float *ref = malloc((size_t)t->numel * sizeof(float));
        for (int k = 0; k < 7; k++) {
            asam_tensor *o = acts[k](ctx, t);
            for (int64_t i = 0; i < t->numel; i++) ref[i] = (float)ref_act(k, t->data[i]);
            char what[64];
            snprintf(what, sizeof what, "%s forward (%s)", act_names[k], big ? "64000" : "28");
            CHECK_CLOSE(o->data, ref, (size_t)t->numel, 2e-6, what);
        }
        /* softmax rows with a large common offset: max subtraction keeps it finite */
        for (int64_t i = 0; i < t->numel; i++) t->data[i] += 100.0f;
        int64_t D = t->shape[1], R = t->shape[0];
        asam_tensor *o = asam_softmax(ctx, t);
        for (int64_t r = 0; r < R; r++) {
            double mx = -1e30, s = 0;
            for (int64_t j = 0; j < D; j++) mx = fmax(mx, t->data[r * D + j]);
            for (int64_t j = 0; j < D; j++) s += exp((double)t->data[r * D + j] - mx);
            for (int64_t j = 0; j < D; j++)
                ref[r * D + j] = (float)(exp((double)t->data[r * D + j] - mx) / s);
        }
        CHECK_CLOSE(o->data, ref, (size_t)t->numel, 1e-5, "softmax forward, offset 100");
        free(ref);
        asam_ctx_release(ctx, m);
    }

    for (int k = 0; k < N_ACTS; k++) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *in[1] = {gc_new(ctx, ASAM_SHAPE(3, 7), 100 + k, 3, 0)};
        /* keep relu's inputs away from its kink at 0 */
        for (int64_t i = 0; i < in[0]->numel; i++)
            if (fabsf(in[0]->data[i]) < 0.1f) in[0]->data[i] = 0.3f;
        int check[1] = {1};
        char name[64];
        snprintf(name, sizeof name, "%s", act_names[k]);
        gradcheck(ctx, name, f_act, in, 1, check, &k, 1e-2f, 21, 1e-3);
        /* large input: parallel kernels */
        asam_tensor *big[1] = {gc_new(ctx, ASAM_SHAPE(40, 1000), 200 + k, 3, 0)};
        for (int64_t i = 0; i < big[0]->numel; i++)
            if (fabsf(big[0]->data[i]) < 0.1f) big[0]->data[i] = 0.3f;
        snprintf(name, sizeof name, "%s (40000 elements)", act_names[k]);
        gradcheck(ctx, name, f_act, big, 1, check, &k, 1e-2f, 16, 1e-3);
        asam_ctx_release(ctx, m);
    }
}

/* ---- reductions ------------------------------------------------------------------------------ */

typedef struct {
    int dim, keepdim, mean;
} red_user;

static asam_tensor *f_sum(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_sum(ctx, in[0]);
}
static asam_tensor *f_mean(asam_ctx *ctx, asam_tensor **in, void *u) {
    return asam_mean(ctx, in[0]);
}
static asam_tensor *f_sum_dim(asam_ctx *ctx, asam_tensor **in, void *u) {
    red_user *r = u;
    return r->mean ? asam_mean_dim(ctx, in[0], r->dim, r->keepdim)
                   : asam_sum_dim(ctx, in[0], r->dim, r->keepdim);
}

static void test_reductions(asam_ctx *ctx) {
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    CHECK_CLOSE(asam_sum(ctx, x)->data, ((float[]){21}), 1, 0, "sum literal");
    CHECK_CLOSE(asam_mean(ctx, x)->data, ((float[]){3.5f}), 1, 0, "mean literal");
    asam_tensor *o = asam_sum_dim(ctx, x, 0, 0);
    CHECK(o->ndim == 1 && o->shape[0] == 3, "sum_dim 0 shape");
    CHECK_CLOSE(o->data, ((float[]){5, 7, 9}), 3, 0, "sum_dim 0 literal");
    o = asam_sum_dim(ctx, x, -1, 1);
    CHECK(o->ndim == 2 && o->shape[0] == 2 && o->shape[1] == 1, "sum_dim -1 keepdim shape");
    CHECK_CLOSE(o->data, ((float[]){6, 15}), 2, 0, "sum_dim -1 literal");
    o = asam_mean_dim(ctx, x, 1, 0);
    CHECK_CLOSE(o->data, ((float[]){2, 5}), 2, 0, "mean_dim 1 literal");
    CHECK(asam_sum_dim(ctx, x, 2, 0) == NULL, "sum_dim out of range fails");
    asam_ctx_clear_error(ctx);

    /* naive reference over a 4-D tensor, every dim */
    asam_tensor *t = gc_new(ctx, ASAM_SHAPE(3, 4, 5, 6), 42, 1, 0);
    for (int d = -4; d < 4; d++) {
        asam_tensor *r = asam_mean_dim(ctx, t, d, 0);
        int dd = d < 0 ? d + 4 : d;
        int64_t outer = 1, inner = 1, D = t->shape[dd];
        for (int i = 0; i < dd; i++) outer *= t->shape[i];
        for (int i = dd + 1; i < 4; i++) inner *= t->shape[i];
        float ref[360];
        for (int64_t a = 0; a < outer; a++)
            for (int64_t c = 0; c < inner; c++) {
                double s = 0;
                for (int64_t k = 0; k < D; k++) s += t->data[(a * D + k) * inner + c];
                ref[a * inner + c] = (float)(s / D);
            }
        char what[64];
        snprintf(what, sizeof what, "mean_dim %d forward", d);
        CHECK_CLOSE(r->data, ref, (size_t)r->numel, 1e-6, what);
    }

    asam_tensor *in[1] = {t};
    int check[1] = {1};
    gradcheck(ctx, "sum", f_sum, in, 1, check, NULL, 1e-2f, 30, 1e-3);
    gradcheck(ctx, "mean", f_mean, in, 1, check, NULL, 1e-2f, 30, 1e-3);
    for (int d = -4; d < 4; d += 3)
        for (int k = 0; k < 2; k++) {
            red_user u = {d, k, k};
            char name[64];
            snprintf(name, sizeof name, "%s_dim %d keepdim %d", k ? "mean" : "sum", d, k);
            gradcheck(ctx, name, f_sum_dim, in, 1, check, &u, 1e-2f, 30, 1e-3);
        }
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    if (!ctx) return 1;
    test_literals(ctx);
    test_broadcast_forward(ctx);
    test_broadcast_backward(ctx);
    test_scalar_ops_grad(ctx);
    test_activations(ctx);
    test_geglu(ctx);
    test_reductions(ctx);
    CHECK(asam_ctx_ok(ctx), "ctx error: %s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    return test_finish("test_ops_elementwise");
}
