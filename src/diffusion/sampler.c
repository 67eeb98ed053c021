/* Guided UNet evaluation (classifier-free guidance, optional ControlNet in both branches) and
 * the DDIM sampling and inversion loops. */
#include "asam/sd.h"
#include "asam/util.h"

#include <stdio.h>
#include <string.h>

/* UNet (+ ControlNet) eps for a batch: x (B,4,h,w), t[B], context (B,77,C), hint (B,3,8h,8w). */
static asam_tensor *unet_eps(asam_ctx *ctx, const asam_sd_guide *g, asam_tensor *x, const float *t,
                             asam_tensor *context, asam_tensor *hint) {
    if (!g->controlnet) return asam_unet_forward(ctx, g->unet, x, t, context, NULL, 1.0f);
    asam_tensor *res[13] = {0};
    if (asam_controlnet_forward(ctx, g->controlnet, x, t, context, hint, res)) return NULL;
    return asam_unet_forward(ctx, g->unet, x, t, context, res, g->control_scale);
}

asam_tensor *asam_sd_eps(asam_ctx *ctx, const asam_sd_guide *g, asam_tensor *x, int t,
                         asam_tensor **e_u, asam_tensor **e_c) {
    if (e_u) *e_u = NULL;
    if (e_c) *e_c = NULL;
    if (!x || !g->cond) return asam_ctx_fail(ctx, "sampler: missing latent or text context");
    if (g->controlnet && !g->hint)
        return asam_ctx_fail(ctx, "sampler: ControlNet without a control image");
    const float tt[2] = {(float)t, (float)t};
    if (g->guidance == 1.0f || !g->uncond) {
        asam_tensor *c = unet_eps(ctx, g, x, tt, g->cond, g->hint);
        if (e_c) *e_c = c;
        return c;
    }
    asam_tensor *u, *c;
    if (g->controlnet && g->control_cond_only) {
        asam_sd_guide plain = *g;
        plain.controlnet = NULL;
        u = unet_eps(ctx, &plain, x, tt, g->uncond, NULL);
        c = unet_eps(ctx, g, x, tt, g->cond, g->hint);
    } else if (g->batch_cfg) {
        /* one UNet call on [uncond, cond], as CompVis' p_sample_ddim batches it */
        asam_tensor *xs[2] = {x, x}, *cs[2] = {g->uncond, g->cond}, *hs[2] = {g->hint, g->hint};
        asam_tensor *xb = asam_concat(ctx, xs, 2, 0), *cb = asam_concat(ctx, cs, 2, 0);
        asam_tensor *hb = g->controlnet ? asam_concat(ctx, hs, 2, 0) : NULL;
        asam_tensor *e = unet_eps(ctx, g, xb, tt, cb, hb);
        if (!e) return NULL;
        u = asam_slice0(ctx, e, 0, 1);
        c = asam_slice0(ctx, e, 1, 2);
    } else {
        u = unet_eps(ctx, g, x, tt, g->uncond, g->hint);
        c = unet_eps(ctx, g, x, tt, g->cond, g->hint);
    }
    if (e_u) *e_u = u;
    if (e_c) *e_c = c;
    return asam_cfg_combine(ctx, u, c, g->guidance);
}

asam_tensor *asam_ddim_sample(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                              asam_tensor *x_T, asam_sd_progress cb, void *user) {
    asam_tensor *x = x_T;
    for (int i = 0; i < s->n; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *eps = asam_sd_eps(ctx, g, x, s->t[i], NULL, NULL);
        x = asam_ddim_step(ctx, x, eps, s->alpha[i], s->alpha_prev[i], NULL);
        if (!x || !asam_ctx_ok(ctx)) return NULL;
        /* Without a gradient to keep, drop this step's temporaries. */
        if (!x->requires_grad) x = asam_ctx_release_keep(ctx, mk, x);
        if (cb) cb(i + 1, s->n, user);
    }
    return x;
}

asam_tensor *asam_ddim_invert(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                              asam_tensor *x_0, float *trajectory, asam_sd_progress cb,
                              void *user) {
    asam_tensor *x = x_0;
    const size_t n = (size_t)x_0->numel;
    if (trajectory) memcpy(trajectory, x_0->data, n * sizeof(float));
    for (int i = 0; i < s->n; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        float a_cur, a_next;
        int t = asam_ddim_invert_alphas(s, i, &a_cur, &a_next);
        asam_tensor *eps = asam_sd_eps(ctx, g, x, t, NULL, NULL);
        x = asam_ddim_invert_step(ctx, x, eps, a_cur, a_next);
        if (!x || !asam_ctx_ok(ctx)) return NULL;
        if (!x->requires_grad) x = asam_ctx_release_keep(ctx, mk, x);
        if (trajectory) memcpy(trajectory + (size_t)(i + 1) * n, x->data, n * sizeof(float));
        if (cb) cb(i + 1, s->n, user);
    }
    return x;
}

void asam_sd_progress_start(asam_sd_progress_state *st, const char *label, const asam_ddim *sched,
                            int ascending) {
    st->label = label;
    st->sched = sched;
    st->ascending = ascending;
    /* one full line per step, also into log files (the caller asked for them) */
    asam_progress_start(&st->bar, label, "step", sched ? sched->n : 0,
                        ASAM_PROGRESS_LOG | ASAM_PROGRESS_LINES);
    st->bar.word = "step";
}

void asam_sd_progress_stderr(int i, int n, void *user) {
    asam_sd_progress_state *st = user;
    st->bar.total = n;
    if (st->sched && i <= st->sched->n)
        asam_progress_update(&st->bar, i, "t=%d",
                             st->sched->t[st->ascending ? st->sched->n - i : i - 1]);
    else
        asam_progress_update(&st->bar, i, NULL);
}
