/* DDIM scheduler: the schedule (vs the checkpoint's alphas_cumprod buffer), both timestep
 * conventions (vs CompVis' lists in ddim_sample's metadata), the step / guidance / inversion
 * formulas on the fixture tensors (no UNet needed), their gradients, and the noise PRNG. */
#include "asam/engine.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sd.h"
#include "sd_test_util.h"
#include "test_util.h"

#include <cjson/cJSON.h>

/* Timestep conventions. */
static void case_timestep_conventions(void) {
    asam_ddim s;
    CHECK(asam_ddim_init(&s, 50, 0) == 0 && s.n == 50, "init 50/0");
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= s.t[i] == 980 - 20 * i;
    CHECK(ok && s.alpha_prev[49] == s.alphas_cumprod[0] && s.alpha[49] == s.alphas_cumprod[0],
          "ASAM convention: 980..0, final alpha = alphas_cumprod[0]");
    CHECK(asam_ddim_init(&s, 4, 0) == 0 && s.t[0] == 750 && s.t[3] == 0, "4 steps offset 0");
    CHECK(asam_ddim_init(&s, 0, 1) == -1 && asam_ddim_init(&s, 4, 2) == -1,
          "bad arguments rejected");
}

/* CompVis' uniform timestep lists (the fixture's metadata) for every S. */
static void case_compvis_timesteps(asam_checkpoint *ck) {
    asam_ddim s;
    int ok;
    const char *meta = asam_checkpoint_metadata(ck, "compvis_uniform_ddim_timesteps_ascending");
    cJSON *lists = meta ? cJSON_Parse(meta) : NULL;
    CHECK(lists != NULL, "timestep metadata");
    cJSON *l;
    int n_lists = 0;
    cJSON_ArrayForEach(l, lists) {
        int S = atoi(l->string), n = cJSON_GetArraySize(l);
        asam_ddim_init(&s, S, 1);
        ok = s.n == n;
        for (int i = 0; ok && i < n; i++) ok = s.t[n - 1 - i] == cJSON_GetArrayItem(l, i)->valueint;
        CHECK(ok, "CompVis uniform timesteps for S=%d (%d entries, got %d)", S, n, s.n);
        if (ok) printf("ok   CompVis timesteps S=%d (%d steps)\n", S, n);
        n_lists++;
    }
    CHECK(n_lists == 6, "%d timestep lists", n_lists);
    cJSON_Delete(lists);
}

/* Alphas of the fixture's 4-step run (F64 holding float32 values: exact match expected). */
static void case_fixture_alphas(const asam_ddim *sp, asam_checkpoint *ck) {
    asam_ddim s = *sp;
    double da[4], dp[4];
    const asam_ckpt_tensor *ta = asam_checkpoint_find(ck, "ddim_alphas");
    const asam_ckpt_tensor *tp = asam_checkpoint_find(ck, "ddim_alphas_prev");
    float fa[4], fp[4];
    CHECK(ta && tp && !asam_ckpt_read_f32(ck, ta, fa) && !asam_ckpt_read_f32(ck, tp, fp),
          "alpha tensors");
    double maxd = 0;
    for (int i = 0; i < 4; i++) { /* fixture order: ascending t */
        da[i] = s.alpha[3 - i];
        dp[i] = s.alpha_prev[3 - i];
        maxd = fmax(maxd, fmax(fabs(da[i] - fa[i]), fabs(dp[i] - fp[i])));
    }
    CHECK(maxd <= 1e-7, "ddim alphas differ by %.3g", maxd);
    printf("ok   ddim_alphas / ddim_alphas_prev (max diff %.3g)\n", maxd);
}

/* Against the checkpoint's own float32 alphas_cumprod buffer. */
static void case_alphas_cumprod(void) {
    char mpath[4096];
    if (!test_data_file("sd_tiny/model.ckpt", mpath, sizeof mpath)) {
        asam_checkpoint *mk;
        CHECK(asam_checkpoint_open(mpath, &mk) == 0, "open %s: %s", mpath, asam_last_error());
        const asam_ckpt_tensor *t = mk ? asam_checkpoint_find(mk, "alphas_cumprod") : NULL;
        CHECK(t && t->numel == 1000, "alphas_cumprod buffer");
        if (t) {
            float ref[1000], mine[1000];
            asam_ckpt_read_f32(mk, t, ref);
            asam_sd_alphas_cumprod(mine);
            CHECK_CLOSE(mine, ref, 1000, 1e-6, "alphas_cumprod vs model.ckpt buffer");
        }
        if (mk) asam_checkpoint_close(mk);
    }
}

/* Formulas on the fixture's tensors: guidance, pred_x0, x_prev for every step. */
static void case_step_formulas(asam_ctx *ctx, const asam_ddim *sp, asam_checkpoint *ck) {
    asam_ddim s = *sp;
    asam_tensor *x = sd_case(ctx, ck, "x_T");
    for (int i = 0; i < 4; i++) {
        char n[64];
        snprintf(n, sizeof n, "step%d.eps_uncond", i);
        asam_tensor *eu = sd_case(ctx, ck, n);
        snprintf(n, sizeof n, "step%d.eps_cond", i);
        asam_tensor *ec = sd_case(ctx, ck, n);
        snprintf(n, sizeof n, "step%d.eps_cfg", i);
        asam_tensor *ecfg = sd_case(ctx, ck, n);
        asam_tensor *e = asam_cfg_combine(ctx, eu, ec, 7.5f);
        CHECK_CLOSE(e->data, ecfg->data, e->numel, 1e-6, n);
        asam_tensor *x0;
        asam_tensor *xp = asam_ddim_step(ctx, x, ecfg, s.alpha[i], s.alpha_prev[i], &x0);
        snprintf(n, sizeof n, "step%d.pred_x0", i);
        CHECK_CLOSE(x0->data, sd_case(ctx, ck, n)->data, x0->numel, 1e-5, n);
        snprintf(n, sizeof n, "step%d.x_prev", i);
        asam_tensor *ref = sd_case(ctx, ck, n);
        CHECK_CLOSE(xp->data, ref->data, xp->numel, 1e-5, n);
        x = ref; /* continue from the reference so each step is tested on its own */
    }
}

/* Inversion formula. */
static void case_inversion_formula(asam_ctx *ctx, const asam_ddim *sp) {
    asam_ddim s = *sp;
    char path[4096];
    asam_checkpoint *ck;
    asam_tensor *x;
    if (!test_data_file("sd_tiny/ddim_invert.safetensors", path, sizeof path)) {
        CHECK(asam_checkpoint_open(path, &ck) == 0, "open %s", path);
        float acur[4], anext[4];
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "a_cur"), acur);
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "a_next"), anext);
        x = sd_case(ctx, ck, "x_0");
        for (int i = 0; i < 4; i++) {
            float ac, an;
            int t = asam_ddim_invert_alphas(&s, i, &ac, &an);
            CHECK(t == 1 + 250 * i && ac == acur[i] && an == anext[i],
                  "inversion step %d alphas (t %d)", i, t);
            char n[64];
            snprintf(n, sizeof n, "step%d.eps", i);
            asam_tensor *xn = asam_ddim_invert_step(ctx, x, sd_case(ctx, ck, n), ac, an);
            snprintf(n, sizeof n, "step%d.x_next", i);
            asam_tensor *ref = sd_case(ctx, ck, n);
            CHECK_CLOSE(xn->data, ref->data, xn->numel, 1e-5, n);
            x = ref;
        }
        asam_checkpoint_close(ck);
    }
}

/* Gradients: x_prev = c1 x + c2 eps with c1 = sqrt(a_prev/a_t), c2 = sqrt(1-a_prev) -
 * sqrt(a_prev) sqrt(1-a_t)/sqrt(a_t); sum(x_prev) backward gives those constants. */
static void case_gradients(asam_ctx *ctx, const asam_ddim *sp) {
    asam_ddim s = *sp;
    asam_tensor *xg = asam_full(ctx, ASAM_SHAPE(1, 4, 2, 2), 0.3f);
    asam_tensor *eg = asam_full(ctx, ASAM_SHAPE(1, 4, 2, 2), -0.2f);
    asam_set_requires_grad(xg, 1);
    asam_set_requires_grad(eg, 1);
    float at = s.alpha[1], ap = s.alpha_prev[1];
    asam_tensor *e2 = asam_cfg_combine(ctx, asam_scale(ctx, eg, 0.5f), eg, 3.0f); /* = 2 eg */
    asam_tensor *xp = asam_ddim_step(ctx, xg, e2, at, ap, NULL);
    CHECK(asam_backward(ctx, asam_sum(ctx, xp)) == 0, "backward: %s", asam_ctx_error(ctx));
    double c1 = sqrt((double)ap / at),
           c2 = sqrt(1.0 - ap) - sqrt((double)ap) * sqrt(1.0 - at) / sqrt(at);
    CHECK(xg->grad && fabs(xg->grad[0] - c1) < 1e-5 * c1, "d/dx %g vs %g",
          xg->grad ? xg->grad[0] : 0, c1);
    CHECK(eg->grad && fabs(eg->grad[3] - 2 * c2) < 1e-5 * fabs(2 * c2), "d/deps %g vs %g",
          eg->grad ? eg->grad[3] : 0, 2 * c2);
    asam_tensor *xi = asam_ddim_invert_step(ctx, xg, eg, at, ap);
    CHECK(xi && asam_backward(ctx, asam_sum(ctx, xi)) == 0, "invert backward");
}

/* Noise: deterministic, independent of the length asked for, roughly N(0,1). */
static void case_noise(void) {
    enum { NN = 1 << 16 };
    static float r1[NN], r2[NN];
    asam_randn(42, r1, NN);
    asam_randn(42, r2, 1001);
    CHECK(!memcmp(r1, r2, 1001 * sizeof(float)), "randn prefix stable");
    asam_randn(43, r2, NN);
    CHECK(memcmp(r1, r2, 64 * sizeof(float)), "seeds differ");
    double m = 0, v = 0;
    for (int i = 0; i < NN; i++) m += r1[i];
    m /= NN;
    for (int i = 0; i < NN; i++) v += (r1[i] - m) * (r1[i] - m);
    v /= NN;
    CHECK(fabs(m) < 0.02 && fabs(v - 1) < 0.03, "randn mean %g var %g", m, v);
}

int main(void) {
    char path[4096];
    case_timestep_conventions();
    if (test_data_file("sd_tiny/ddim_sample.safetensors", path, sizeof path))
        TEST_SKIP("sd_tiny/ddim_sample.safetensors not found");
    asam_checkpoint *ck;
    CHECK(asam_checkpoint_open(path, &ck) == 0, "open %s: %s", path, asam_last_error());
    if (!ck) return test_finish("test_sd_ddim");
    case_compvis_timesteps(ck);
    asam_ddim s; /* the fixture's 4-step run */
    asam_ddim_init(&s, 4, 1);
    case_fixture_alphas(&s, ck);
    case_alphas_cumprod();
    asam_ctx *ctx = asam_ctx_new(1ull << 30);
    case_step_formulas(ctx, &s, ck);
    asam_checkpoint_close(ck);
    case_inversion_formula(ctx, &s);
    case_gradients(ctx, &s);
    asam_ctx_free(ctx);
    case_noise();
    return test_finish("test_sd_ddim");
}
