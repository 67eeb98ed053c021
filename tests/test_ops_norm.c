/* layer_norm, layer_norm2d and group_norm: forward against hand values and naive double loops
 * (biased variance, eps inside the sqrt, as torch), backward for x, w and b against finite
 * differences, with and without affine parameters, small and large (parallel) shapes. */
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static void ref_layer_norm(const asam_tensor *x, const float *w, const float *b, float eps,
                           float *ref) {
    int64_t C = x->shape[x->ndim - 1], R = x->numel / C;
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < C; j++) mu += xr[j];
        mu /= C;
        for (int64_t j = 0; j < C; j++) var += (xr[j] - mu) * (xr[j] - mu);
        var /= C;
        for (int64_t j = 0; j < C; j++)
            ref[r * C + j] =
                (float)((xr[j] - mu) / sqrt(var + eps) * (w ? w[j] : 1) + (b ? b[j] : 0));
    }
}

static void ref_layer_norm2d(const asam_tensor *x, const float *w, const float *b, float eps,
                             float *ref) {
    int64_t N = x->shape[0], C = x->shape[1], S = x->numel / (N * C);
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < S; p++) {
            double mu = 0, var = 0;
            for (int64_t c = 0; c < C; c++) mu += x->data[(n * C + c) * S + p];
            mu /= C;
            for (int64_t c = 0; c < C; c++) {
                double d = x->data[(n * C + c) * S + p] - mu;
                var += d * d;
            }
            var /= C;
            for (int64_t c = 0; c < C; c++) {
                int64_t i = (n * C + c) * S + p;
                ref[i] =
                    (float)((x->data[i] - mu) / sqrt(var + eps) * (w ? w[c] : 1) + (b ? b[c] : 0));
            }
        }
}

static void ref_group_norm(const asam_tensor *x, int G, const float *w, const float *b, float eps,
                           float *ref) {
    int64_t N = x->shape[0], C = x->shape[1], S = x->numel / (N * C), Cg = C / G, M = Cg * S;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x->data + (n * C + g * Cg) * S;
            double mu = 0, var = 0;
            for (int64_t k = 0; k < M; k++) mu += xg[k];
            mu /= M;
            for (int64_t k = 0; k < M; k++) var += (xg[k] - mu) * (xg[k] - mu);
            var /= M;
            for (int64_t k = 0; k < M; k++) {
                int64_t c = g * Cg + k / S;
                ref[(n * C + g * Cg) * S + k] =
                    (float)((xg[k] - mu) / sqrt(var + eps) * (w ? w[c] : 1) + (b ? b[c] : 0));
            }
        }
}

typedef struct {
    int kind; /* 0 layer_norm, 1 layer_norm2d, 2 group_norm */
    int groups, affine;
    float eps;
} norm_user;

static asam_tensor *f_norm(asam_ctx *ctx, asam_tensor **in, void *user) {
    norm_user *u = user;
    asam_tensor *w = u->affine ? in[1] : NULL, *b = u->affine ? in[2] : NULL;
    switch (u->kind) {
    case 0:
        return asam_layer_norm(ctx, in[0], w, b, u->eps);
    case 1:
        return asam_layer_norm2d(ctx, in[0], w, b, u->eps);
    default:
        return asam_group_norm(ctx, in[0], u->groups, w, b, u->eps);
    }
}

static void run_case(asam_ctx *ctx, const char *label, norm_user u, int nd, const int64_t *shape,
                     int max_elems) {
    static const char *kinds[] = {"layer_norm", "layer_norm2d", "group_norm"};
    asam_mark m = asam_ctx_mark(ctx);
    int64_t C = u.kind == 0 ? shape[nd - 1] : shape[1];
    asam_tensor *x = gc_new(ctx, nd, shape, 3 + (uint64_t)nd, 2.0f, 0.5f);
    asam_tensor *w = gc_new(ctx, ASAM_SHAPE(C), 5, 0.5f, 1.0f);
    asam_tensor *b = gc_new(ctx, ASAM_SHAPE(C), 6, 0.5f, 0.0f);
    asam_tensor *in[3] = {x, w, b};
    asam_tensor *o = f_norm(ctx, in, &u);
    CHECK(o != NULL, "%s %s: %s", kinds[u.kind], label, asam_ctx_error(ctx));
    if (!o) return;
    float *ref = malloc((size_t)x->numel * sizeof(float));
    const float *wd = u.affine ? w->data : NULL, *bd = u.affine ? b->data : NULL;
    if (u.kind == 0) ref_layer_norm(x, wd, bd, u.eps, ref);
    if (u.kind == 1) ref_layer_norm2d(x, wd, bd, u.eps, ref);
    if (u.kind == 2) ref_group_norm(x, u.groups, wd, bd, u.eps, ref);
    char what[128];
    snprintf(what, sizeof what, "%s %s forward", kinds[u.kind], label);
    CHECK_CLOSE(o->data, ref, (size_t)x->numel, 2e-6, what);
    free(ref);
    snprintf(what, sizeof what, "%s %s", kinds[u.kind], label);
    int check[3] = {1, u.affine, u.affine};
    gradcheck(ctx, what, f_norm, in, u.affine ? 3 : 1, check, &u, 1e-2f, max_elems, 1e-3);
    if (u.affine) { /* only the parameters needing gradients (frozen input) */
        int check_wb[3] = {0, 1, 1};
        snprintf(what, sizeof what, "%s %s (w, b only)", kinds[u.kind], label);
        gradcheck(ctx, what, f_norm, in, 3, check_wb, &u, 1e-2f, max_elems, 1e-3);
    }
    asam_ctx_release(ctx, m);
}

/* A transformer-style segment (reshape view, layer_norm with persistent weights, gelu,
 * residual add) run plainly and under asam_grad_checkpoint must give the same gradients. */
typedef struct {
    asam_tensor *w, *b;
} seg_params;

static asam_tensor *segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    seg_params *p = user;
    asam_tensor *x = asam_reshape(ctx, in[0], ASAM_SHAPE(6, 8));
    asam_tensor *h = asam_gelu(ctx, asam_layer_norm(ctx, x, p->w, p->b, 1e-6f));
    return asam_add(ctx, asam_mul(ctx, h, h), x);
}

static void test_checkpoint(asam_ctx *ctx) {
    asam_tensor *w = asam_param_new(ASAM_SHAPE(8)), *b = asam_param_new(ASAM_SHAPE(8));
    uint64_t seed = 99;
    for (int i = 0; i < 8; i++) {
        w->data[i] = 1.0f + 0.3f * gc_rand(&seed);
        b->data[i] = 0.2f * gc_rand(&seed);
    }
    asam_set_requires_grad(w, 1);
    asam_set_requires_grad(b, 1);
    seg_params sp = {w, b};
    float gx[2][48], gw[2][8], gb[2][8], val[2];
    for (int ck = 0; ck < 2; ck++) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *x = gc_new(ctx, ASAM_SHAPE(2, 3, 8), 17, 1.5f, 0.0f);
        asam_set_requires_grad(x, 1);
        asam_param_zero_grad(w);
        asam_param_zero_grad(b);
        asam_tensor *y =
            ck ? asam_grad_checkpoint(ctx, segment, &x, 1, &sp) : segment(ctx, &x, 1, &sp);
        asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, y, y));
        CHECK(asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
        val[ck] = loss ? loss->data[0] : NAN;
        if (x->grad) memcpy(gx[ck], x->grad, sizeof gx[ck]);
        memcpy(gw[ck], w->grad, sizeof gw[ck]);
        memcpy(gb[ck], b->grad, sizeof gb[ck]);
        asam_ctx_release(ctx, m);
    }
    CHECK_CLOSE(&val[1], &val[0], 1, 1e-6, "checkpointed segment: same loss");
    CHECK_CLOSE(gx[1], gx[0], 48, 1e-6, "checkpointed segment: same input gradient");
    CHECK_CLOSE(gw[1], gw[0], 8, 1e-6, "checkpointed segment: same weight gradient");
    CHECK_CLOSE(gb[1], gb[0], 8, 1e-6, "checkpointed segment: same bias gradient");
    asam_param_free(w);
    asam_param_free(b);
}

/* Parity with the official modules (sd_tiny/norm_eps.safetensors): low-variance inputs
 * (mean 0.5, std 1e-3) make eps and variance-precision mistakes O(1) errors. */
static int read_tensor(asam_checkpoint *ck, const char *name, asam_tensor *dst) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t || t->numel != dst->numel) {
        CHECK(0, "fixture tensor %s missing or of the wrong size", name);
        return -1;
    }
    return asam_ckpt_read_f32(ck, t, dst->data);
}

static void test_fixture_parity(asam_ctx *ctx) {
    char cases_path[4096], model_path[4096];
    if (test_data_file("sd_tiny/norm_eps.safetensors", cases_path, sizeof cases_path) != 0 ||
        test_data_file("sd_tiny/model.safetensors", model_path, sizeof model_path) != 0) {
        TEST_SKIP_PART("norm_eps fixture parity: sd_tiny fixtures not found (set ASAM_FIXTURES)");
        return;
    }
    asam_checkpoint *cases = NULL, *model = NULL;
    if (asam_checkpoint_open(cases_path, &cases) != 0 ||
        asam_checkpoint_open(model_path, &model) != 0) {
        CHECK(0, "cannot open fixtures");
        asam_checkpoint_close(cases);
        return;
    }
    static const struct {
        const char *out, *in, *prefix;
        int group; /* 0: layer_norm over the last dim, else GroupNorm with 32 groups */
        float eps;
    } tc[] = {
        {"unet_out0", "x_gn", "model.diffusion_model.out.0", 1, 1e-5f},
        {"unet_resblock_in0", "x_gn", "model.diffusion_model.input_blocks.1.0.in_layers.0", 1,
         1e-5f},
        {"unet_st_norm", "x_gn", "model.diffusion_model.input_blocks.1.1.norm", 1, 1e-6f},
        {"vae_dec_norm_out", "x_gn", "first_stage_model.decoder.norm_out", 1, 1e-6f},
        {"unet_ln_norm1", "x_ln",
         "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm1", 0, 1e-5f},
        {"clip_final_ln", "x_clip_ln", "cond_stage_model.transformer.text_model.final_layer_norm",
         0, 1e-5f},
    };
    for (size_t k = 0; k < sizeof tc / sizeof tc[0]; k++) {
        asam_mark m = asam_ctx_mark(ctx);
        const asam_ckpt_tensor *ti = asam_checkpoint_find(cases, tc[k].in);
        if (!ti) {
            CHECK(0, "fixture tensor %s missing", tc[k].in);
            continue;
        }
        asam_tensor *x = asam_new(ctx, ti->ndim, ti->shape);
        asam_tensor *want = asam_new(ctx, ti->ndim, ti->shape);
        int64_t C = tc[k].group ? x->shape[1] : x->shape[x->ndim - 1];
        asam_tensor *w = asam_new(ctx, ASAM_SHAPE(C)), *b = asam_new(ctx, ASAM_SHAPE(C));
        char wn[256], bn[256];
        snprintf(wn, sizeof wn, "%s.weight", tc[k].prefix);
        snprintf(bn, sizeof bn, "%s.bias", tc[k].prefix);
        if (read_tensor(cases, tc[k].in, x) || read_tensor(cases, tc[k].out, want) ||
            read_tensor(model, wn, w) || read_tensor(model, bn, b))
            continue;
        asam_tensor *y = tc[k].group ? asam_group_norm(ctx, x, 32, w, b, tc[k].eps)
                                     : asam_layer_norm(ctx, x, w, b, tc[k].eps);
        char what[128];
        snprintf(what, sizeof what, "%s vs the official module (norm_eps fixture)", tc[k].out);
        CHECK(y != NULL, "%s: %s", what, asam_ctx_error(ctx));
        if (y) CHECK_CLOSE(y->data, want->data, (size_t)y->numel, 1e-4, what);
        asam_ctx_release(ctx, m);
    }
    asam_checkpoint_close(cases);
    asam_checkpoint_close(model);
}

/* Large mean next to the spread (ratio 1000): statistics must not lose precision. */
static void test_large_mean(asam_ctx *ctx) {
    asam_tensor *x = gc_new(ctx, ASAM_SHAPE(2, 64, 5, 5), 71, 0.1f, 100.0f);
    float *ref = malloc((size_t)x->numel * sizeof(float));
    asam_tensor *o = asam_group_norm(ctx, x, 8, NULL, NULL, 1e-6f);
    ref_group_norm(x, 8, NULL, NULL, 1e-6f, ref);
    CHECK_CLOSE(o->data, ref, (size_t)x->numel, 2e-4, "group_norm mean 100, std 0.1");
    o = asam_layer_norm2d(ctx, x, NULL, NULL, 1e-6f);
    ref_layer_norm2d(x, NULL, NULL, 1e-6f, ref);
    CHECK_CLOSE(o->data, ref, (size_t)x->numel, 2e-4, "layer_norm2d mean 100, std 0.1");
    asam_tensor *xl = asam_reshape(ctx, x, ASAM_SHAPE(50, 64));
    o = asam_layer_norm(ctx, xl, NULL, NULL, 1e-6f);
    ref_layer_norm(xl, NULL, NULL, 1e-6f, ref);
    CHECK_CLOSE(o->data, ref, (size_t)x->numel, 2e-4, "layer_norm mean 100, std 0.1");
    free(ref);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    if (!ctx) return 1;

    /* hand values: (1,2,3,4) -> mean 2.5, biased var 1.25 */
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 4), (float[]){1, 2, 3, 4});
    asam_tensor *o = asam_layer_norm(ctx, x, NULL, NULL, 0.0f);
    float s = 1.0f / sqrtf(1.25f);
    CHECK_CLOSE(o->data, ((float[]){-1.5f * s, -0.5f * s, 0.5f * s, 1.5f * s}), 4, 1e-6,
                "layer_norm (1,2,3,4) hand values");
    asam_tensor *w = asam_from_data(ctx, ASAM_SHAPE(4), (float[]){1, 2, 1, 2});
    asam_tensor *b = asam_from_data(ctx, ASAM_SHAPE(4), (float[]){0, 0, 1, 1});
    o = asam_layer_norm(ctx, x, w, b, 0.0f);
    CHECK_CLOSE(o->data, ((float[]){-1.5f * s, -1.0f * s, 0.5f * s + 1, 3.0f * s + 1}), 4, 1e-6,
                "layer_norm affine hand values");
    /* layer_norm2d: channels at one pixel are (1,2,3,4) */
    asam_tensor *x2 = asam_from_data(ctx, ASAM_SHAPE(1, 4, 1, 1), (float[]){1, 2, 3, 4});
    o = asam_layer_norm2d(ctx, x2, NULL, NULL, 0.0f);
    CHECK_CLOSE(o->data, ((float[]){-1.5f * s, -0.5f * s, 0.5f * s, 1.5f * s}), 4, 1e-6,
                "layer_norm2d hand values");
    /* group_norm 2 groups of 2 channels x 1 pixel: (1,3) and (2,6) */
    asam_tensor *x3 = asam_from_data(ctx, ASAM_SHAPE(1, 4, 1), (float[]){1, 3, 2, 6});
    o = asam_group_norm(ctx, x3, 2, NULL, NULL, 0.0f);
    CHECK_CLOSE(o->data, ((float[]){-1, 1, -1, 1}), 4, 1e-6, "group_norm hand values");
    CHECK(asam_group_norm(ctx, x3, 3, NULL, NULL, 1e-5f) == NULL, "groups must divide C");
    asam_ctx_clear_error(ctx);
    CHECK(asam_layer_norm(ctx, x, b, asam_new(ctx, ASAM_SHAPE(3)), 1e-5f) == NULL,
          "wrong bias size fails");
    asam_ctx_clear_error(ctx);

    norm_user ln = {0, 0, 1, 1e-6f}, ln_na = {0, 0, 0, 1e-5f};
    run_case(ctx, "(2,3,8) eps 1e-6", ln, 3, (int64_t[]){2, 3, 8}, 48);
    run_case(ctx, "(5,7) no affine", ln_na, 2, (int64_t[]){5, 7}, 35);
    run_case(ctx, "(64,768) parallel", ln, 2, (int64_t[]){64, 768}, 40);

    norm_user l2 = {1, 0, 1, 1e-6f}, l2_na = {1, 0, 0, 1e-6f};
    run_case(ctx, "(2,5,3,4)", l2, 4, (int64_t[]){2, 5, 3, 4}, 60);
    run_case(ctx, "(1,3,2,2) no affine", l2_na, 4, (int64_t[]){1, 3, 2, 2}, 12);
    run_case(ctx, "(1,16,40,40) parallel", l2, 4, (int64_t[]){1, 16, 40, 40}, 40);

    norm_user gn = {2, 2, 1, 1e-5f}, gn1 = {2, 1, 1, 1e-6f}, gn_na = {2, 3, 0, 1e-5f},
              gnb = {2, 8, 1, 1e-5f};
    run_case(ctx, "(2,4,3,2) 2 groups", gn, 4, (int64_t[]){2, 4, 3, 2}, 48);
    run_case(ctx, "(2,6,5) 1 group", gn1, 3, (int64_t[]){2, 6, 5}, 60);
    run_case(ctx, "(1,6,4) 3 groups no affine", gn_na, 3, (int64_t[]){1, 6, 4}, 24);
    run_case(ctx, "(2,32,24,24) 8 groups parallel", gnb, 4, (int64_t[]){2, 32, 24, 24}, 40);

    test_checkpoint(ctx);
    test_large_mean(ctx);
    test_fixture_parity(ctx);

    CHECK(asam_ctx_ok(ctx), "ctx error: %s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    return test_finish("test_ops_norm");
}
