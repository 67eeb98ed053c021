/* ControlNet parity with lllyasviel cldm (ControlNet + ControlledUnetModel) on the tiny model:
 * the 13 residuals of a v1.1 control.pth, the controlled UNet output, the gradient of the
 * controlled UNet with respect to each residual, the uncontrolled output, the mismatch error,
 * and a finite-difference check of a ControlNet weight's gradient (for training). */
#include "sd_test_util.h"

static asam_tensor *sum_weighted(asam_ctx *ctx, asam_tensor *y, asam_tensor *w) {
    return asam_sum(ctx, asam_mul(ctx, y, w));
}

/* The case's timestep. */
static float case_t(asam_checkpoint *cs) {
    int64_t ti;
    sd_case_i64(cs, "t", &ti);
    return (float)ti;
}

/* The tiny ControlNet matches the UNet: 13 residuals, 338 tensors, 1,765,168 parameters. */
static void case_structure(asam_controlnet *cn, asam_unet *u) {
    CHECK(asam_controlnet_check(cn, u) == 0, "check: %s", asam_last_error());
    CHECK(asam_controlnet_n_residuals(cn) == 13, "%d residuals", asam_controlnet_n_residuals(cn));
    asam_tensor **params;
    const char **names;
    size_t np;
    asam_controlnet_params(cn, &params, &names, &np);
    CHECK(np == 338, "%zu ControlNet tensors, expected 338", np);
    int64_t total = 0;
    for (size_t i = 0; i < np; i++) total += params[i]->numel;
    CHECK(total == 1765168, "%lld ControlNet parameters, expected 1765168", (long long)total);
}

/* Residuals and controlled eps (scale 1 and 0) vs the reference. */
static void case_forward(asam_ctx *ctx, asam_controlnet *cn, asam_unet *u, asam_checkpoint *cs) {
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = sd_case(ctx, cs, "x"), *c = sd_case(ctx, cs, "context");
    asam_tensor *hint = sd_case(ctx, cs, "hint");
    float t = case_t(cs);
    asam_tensor *res[13];
    CHECK(asam_controlnet_forward(ctx, cn, x, &t, c, hint, res) == 0, "controlnet: %s",
          asam_ctx_error(ctx));
    char name[64];
    for (int i = 0; i < 13; i++) {
        snprintf(name, sizeof name, "control.%02d", i);
        sd_check(res[i], cs, name, 1e-4);
    }
    asam_tensor *eps = asam_unet_forward(ctx, u, x, &t, c, res, 1.0f);
    sd_check(eps, cs, "eps", 1e-4);
    sd_check(asam_unet_forward(ctx, u, x, &t, c, NULL, 1.0f), cs, "eps_no_control", 1e-4);
    /* scale 0 = no control */
    sd_check(asam_unet_forward(ctx, u, x, &t, c, res, 0.0f), cs, "eps_no_control", 1e-4);
    SD_CHECK_OK(ctx, "controlled unet");
}

/* dL/dcontrol for L = sum(eps(control = control.*) * W): leaf residuals from the file;
 * per-block (1) and whole-call (2) gradient checkpointing of the UNet */
static void case_control_grads(asam_ctx *ctx, asam_unet *u, asam_checkpoint *cs) {
    float t = case_t(cs);
    asam_tensor *x, *c, *res[13];
    char name[64];
    for (int level = 1; level <= 2; level++) {
        asam_unet_set_checkpointing(u, level);
        asam_ctx_reset(ctx);
        asam_ctx_set_grad(ctx, 1);
        x = sd_case(ctx, cs, "x");
        c = sd_case(ctx, cs, "context");
        for (int i = 0; i < 13; i++) {
            snprintf(name, sizeof name, "control.%02d", i);
            res[i] = sd_case(ctx, cs, name);
            asam_set_requires_grad(res[i], 1);
        }
        asam_tensor *loss = sum_weighted(ctx, asam_unet_forward(ctx, u, x, &t, c, res, 1.0f),
                                         sd_case(ctx, cs, "grad.W"));
        CHECK(loss && asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
        for (int i = 0; i < 13; i++) {
            snprintf(name, sizeof name, "grad.dL_dcontrol.%02d", i);
            char what[112];
            snprintf(what, sizeof what, "%s (checkpointing %d)", name, level);
            sd_compare(res[i]->grad, res[i]->numel, cs, name, 1e-3, what);
        }
    }
    SD_CHECK_OK(ctx, "control grads");
}

/* finite differences on ControlNet weights: zero_convs.3.0.weight[0] and a hint conv */
static void case_weight_finite_differences(asam_ctx *ctx, asam_controlnet *cn, asam_unet *u,
                                           asam_checkpoint *cs) {
    asam_unet_set_checkpointing(u, 2); /* the finite differences go through it */
    float t = case_t(cs);
    asam_tensor *x, *c, *hint, *loss, *res[13];
    asam_tensor **params;
    const char **names;
    size_t np;
    asam_controlnet_params(cn, &params, &names, &np);
    asam_controlnet_set_trainable(cn, 1);
    const char *probe[] = {"zero_convs.3.0.weight", "input_hint_block.14.bias",
                           "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
                           "time_embed.0.weight"};
    for (size_t p = 0; p < sizeof probe / sizeof probe[0]; p++) {
        asam_tensor *w = NULL;
        for (size_t i = 0; i < np; i++)
            if (strcmp(names[i], probe[p]) == 0) w = params[i];
        CHECK(w != NULL, "no parameter %s", probe[p]);
        if (!w) continue;
        asam_param_zero_grad(w);
        asam_ctx_reset(ctx);
        asam_ctx_set_grad(ctx, 1);
        x = sd_case(ctx, cs, "x");
        c = sd_case(ctx, cs, "context");
        hint = sd_case(ctx, cs, "hint");
        asam_tensor *W = sd_case(ctx, cs, "grad.W");
        asam_controlnet_forward(ctx, cn, x, &t, c, hint, res);
        loss = sum_weighted(ctx, asam_unet_forward(ctx, u, x, &t, c, res, 1.0f), W);
        CHECK(loss && asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
        if (!w->grad) continue;
        /* directional derivative along the gradient: d = g/|g|, dL/dh = |g| */
        double gn = 0, wmax = 0;
        for (int64_t i = 0; i < w->numel; i++) {
            gn += (double)w->grad[i] * w->grad[i];
            wmax = fmax(wmax, fabs(w->data[i]));
        }
        gn = sqrt(gn);
        float *w0 = malloc((size_t)w->numel * sizeof(float));
        memcpy(w0, w->data, (size_t)w->numel * sizeof(float));
        double h = 1e-3 * wmax * sqrt((double)w->numel); /* moves each weight ~1e-3 of max */
        asam_ctx_set_grad(ctx, 0);
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            for (int64_t i = 0; i < w->numel; i++)
                w->data[i] = w0[i] + (float)((sgn ? -h : h) * w->grad[i] / gn);
            asam_controlnet_forward(ctx, cn, x, &t, c, hint, res);
            l[sgn] = sum_weighted(ctx, asam_unet_forward(ctx, u, x, &t, c, res, 1.0f), W)->data[0];
        }
        memcpy(w->data, w0, (size_t)w->numel * sizeof(float));
        free(w0);
        double fd = (l[0] - l[1]) / (2 * h);
        double rel = fabs(fd - gn) / fmax(fabs(fd), 1e-6);
        CHECK(rel < 1e-2, "%s: |grad| %.6g vs directional finite difference %.6g", probe[p], gn,
              fd);
        if (rel < 1e-2)
            printf("ok   d loss / d %s along its gradient: autograd %.6g, finite difference "
                   "%.6g\n",
                   probe[p], gn, fd);
    }
    asam_controlnet_set_trainable(cn, 0);
}

int main(void) {
    asam_checkpoint *ck = sd_open_model();
    asam_checkpoint *cc = sd_open("sd_tiny/control.pth");
    asam_checkpoint *cs = sd_open("sd_tiny/controlnet_fwd.safetensors");
    asam_unet *u = sd_load_unet(ck);
    asam_controlnet *cn = sd_load_controlnet(cc);
    case_structure(cn, u);
    asam_ctx *ctx = asam_ctx_new(0);
    case_forward(ctx, cn, u, cs);
    case_control_grads(ctx, u, cs);
    case_weight_finite_differences(ctx, cn, u, cs);
    asam_ctx_free(ctx);
    asam_controlnet_free(cn);
    asam_unet_free(u);
    asam_checkpoint_close(cs);
    asam_checkpoint_close(cc);
    asam_checkpoint_close(ck);
    return test_finish("test_sd_controlnet");
}
