/* Null-text inversion (Mokady et al., CVPR 2023) as ASAM's generator uses it, and the guided
 * DDIM chain that replays it: DDIM inversion of z_0 with guidance 1, then per sampling step an
 * unconditional embedding optimised (Adam) so that the guided step lands on the inversion
 * trajectory; sampling with those embeddings reconstructs z_0 and is what the latent attack
 * differentiates (per-step gradient checkpointing). */
#include "asam/optim.h"
#include "asam/sd.h"
#include "asam/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* g with another text conditioning and guidance */
static asam_sd_guide with_text(const asam_sd_guide *g, asam_tensor *cond, asam_tensor *uncond,
                               float guidance) {
    asam_sd_guide r = *g;
    r.cond = cond;
    r.uncond = uncond;
    r.guidance = guidance;
    return r;
}

/* Bytes one inner step's forward + backward holds without gradient checkpointing: measured 6.4 GB
 * arena peak at a 64x64 latent for the UNet (bench sd --ckpt-level 0), i.e. ~1.6 MB per latent
 * pixel; the ControlNet's encoder adds its own activations (taken as half as much again). */
static double keep_bytes(const asam_sd_guide *g, const asam_tensor *x) {
    double px = (double)x->shape[2] * (double)x->shape[3];
    return px * 1.6e6 * (g->controlnet ? 1.5 : 1.0);
}

/* Whether the inner steps keep their activations (see asam_null_text_opts.checkpointing): in
 * auto, when they fit in the arena's spare pages (kept from earlier passes, such as the previous
 * image's) plus 70% of the memory available now. */
static int keep_activations(asam_ctx *ctx, const asam_sd_guide *g, const asam_tensor *x,
                            const asam_null_text_opts *o) {
    if (o->checkpointing != ASAM_NULL_CKPT_AUTO) return o->checkpointing == ASAM_NULL_CKPT_OFF;
    double need = keep_bytes(g, x);
    double avail = (double)asam_ctx_spare(ctx) + 0.7 * (double)asam_mem_available();
    int keep = need <= avail;
    if (o->verbose)
        fprintf(stderr, "invert: null-text steps %s (activations ~%.1f GB, %.1f GB available)\n",
                keep ? "keep their activations" : "use gradient checkpointing", need / 1e9,
                avail / 1e9);
    return keep;
}

/* The inner optimisation of step i: the uncond embedding P such that one guided DDIM step from
 * cur lands on target. P is updated in place; *last receives the last loss. Returns 0 or -1. */
// ref: luckybird1994/ASAM null_text_inversion.py:505-534 (null_optimization: Adam at
// lr 1e-2 * (1 - i/100), CFG as :524, early stop at loss < epsilon + i * 2e-5 at :532)
static int optimise_step(asam_ctx *ctx, const asam_sd_guide *g, asam_tensor *P, asam_tensor *cur,
                         asam_tensor *target, asam_tensor *e_c, int i, int t, float a, float ap,
                         const asam_null_text_opts *o, float *last_out) {
    asam_optim *opt =
        asam_optim_new(ASAM_ADAM, &P, 1, o->lr * (1.0f - i / 100.0f), 0.9, 0.999, 1e-8, 0.0);
    if (!opt) return -1;
    float last = 0;
    int rc = 0;
    for (int j = 0; j < o->inner_steps; j++) {
        asam_mark mj = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, 1);
        asam_sd_guide gu = with_text(g, P, NULL, 1.0f); /* uncond branch */
        asam_tensor *e_u = asam_sd_eps(ctx, &gu, cur, t, NULL, NULL);
        asam_tensor *e = asam_cfg_combine(ctx, e_u, e_c, o->guidance);
        asam_tensor *loss = asam_mse(ctx, asam_ddim_step(ctx, cur, e, a, ap, NULL), target);
        asam_param_zero_grad(P);
        if (!loss || asam_backward(ctx, loss)) {
            rc = -1;
            break;
        }
        asam_optim_step(opt);
        last = loss->data[0];
        if (o->trace) o->trace(o->trace_user, i, j, last, P->data, (size_t)P->numel);
        asam_ctx_set_grad(ctx, 0);
        asam_ctx_release(ctx, mj);
        if (last < o->eps + i * o->eps_slope) break;
    }
    asam_ctx_set_grad(ctx, 0);
    asam_optim_free(opt);
    *last_out = last;
    return rc;
}

int asam_null_text_invert(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                          asam_tensor *z0, asam_tensor *uncond0, const asam_null_text_opts *o,
                          float *x_T, float *null_emb, float *null_loss) {
    const int n = s->n;
    const size_t nl = (size_t)z0->numel, ne = (size_t)uncond0->numel;
    float *traj = malloc((size_t)(n + 1) * nl * sizeof(float));
    if (!traj) {
        asam_ctx_fail(ctx, "null-text inversion: out of memory");
        return -1;
    }
    /* DDIM inversion with the ControlNet, guidance 1 (conditional branch only) */
    // ref: luckybird1994/ASAM null_text_inversion.py:483-503 (ddim_loop / ddim_inversion)
    double t0 = asam_now_s();
    asam_sd_guide gi = with_text(g, g->cond, NULL, 1.0f);
    asam_tensor *xT = asam_ddim_invert(ctx, &gi, s, z0, traj, NULL, NULL);
    if (!xT) {
        free(traj);
        return -1;
    }
    memcpy(x_T, xT->data, nl * sizeof(float));
    if (o->verbose)
        fprintf(stderr, "invert: DDIM inversion %d steps in %.1f s\n", n, asam_now_s() - t0);

    /* null-text optimisation: one unconditional embedding per sampling step */
    asam_tensor *P = asam_param_new(uncond0->ndim, uncond0->shape);
    if (!P) {
        free(traj);
        asam_ctx_fail(ctx, "null-text inversion: out of memory");
        return -1;
    }
    memcpy(P->data, uncond0->data, ne * sizeof(float));
    asam_set_requires_grad(P, 1);
    asam_tensor *cur = asam_from_data(ctx, z0->ndim, z0->shape, x_T);
    int ok = cur != NULL;
    int prev_ckpt = asam_ctx_set_checkpointing(ctx, !keep_activations(ctx, g, z0, o));
    t0 = asam_now_s();
    for (int i = 0; i < n && ok; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        int t = s->t[i];
        float a = s->alpha[i], ap = s->alpha_prev[i];
        asam_tensor *target =
            asam_from_data(ctx, z0->ndim, z0->shape, traj + (size_t)(n - 1 - i) * nl);
        asam_sd_guide gc = with_text(g, g->cond, NULL, 1.0f);
        asam_tensor *e_c = asam_sd_eps(ctx, &gc, cur, t, NULL, NULL);
        float last = 0;
        if (!e_c || !target || optimise_step(ctx, g, P, cur, target, e_c, i, t, a, ap, o, &last)) {
            ok = 0;
            break;
        }
        null_loss[i] = last;
        memcpy(null_emb + (size_t)i * ne, P->data, ne * sizeof(float));
        /* advance with the optimised embedding: the next step starts where sampling will be */
        asam_tensor *un = asam_from_data(ctx, P->ndim, P->shape, P->data);
        asam_sd_guide gs = with_text(g, g->cond, un, o->guidance);
        asam_tensor *nx =
            asam_ddim_step(ctx, cur, asam_sd_eps(ctx, &gs, cur, t, NULL, NULL), a, ap, NULL);
        if (!nx) {
            ok = 0;
            break;
        }
        cur = asam_ctx_release_keep(ctx, mk, nx);
        if (o->verbose)
            fprintf(stderr, "invert: null-text step %d/%d  t=%d  loss %.3g  %.2f s/step\n", i + 1,
                    n, t, last, (asam_now_s() - t0) / (i + 1));
    }
    asam_ctx_set_checkpointing(ctx, prev_ckpt);
    asam_param_free(P);
    free(traj);
    return ok && asam_ctx_ok(ctx) ? 0 : -1;
}

/* ---- the guided chain ---------------------------------------------------------------------- */
typedef struct {
    asam_sd_guide g; /* with this step's null embedding as uncond */
    int t;
    float a, a_prev;
} chain_step;

/* one guided DDIM step: the gradient-checkpointed segment of the full-chain attack */
static asam_tensor *chain_step_fn(asam_ctx *ctx, asam_tensor *const *in, int n_in, void *user) {
    const chain_step *st = user;
    asam_tensor *eps = asam_sd_eps(ctx, &st->g, in[0], st->t, NULL, NULL);
    return asam_ddim_step(ctx, in[0], eps, st->a, st->a_prev, NULL);
}

asam_tensor *asam_ddim_sample_null_text(asam_ctx *ctx, const asam_sd_guide *g, const asam_ddim *s,
                                        const float *null_emb, const int64_t emb_shape[3],
                                        asam_tensor *x_T, int record, int verbose) {
    if (!x_T) return NULL;
    const size_t ne = (size_t)(emb_shape[0] * emb_shape[1] * emb_shape[2]);
    int prev = asam_ctx_set_grad(ctx, record);
    asam_tensor *x = x_T;
    double t0 = asam_now_s();
    for (int i = 0; i < s->n; i++) {
        if (record) {
            /* the step's user data and null embedding must live until backward */
            chain_step *st = asam_ctx_alloc(ctx, sizeof *st);
            asam_tensor *un = asam_from_data(ctx, 3, emb_shape, null_emb + i * ne);
            if (!st || !un) break;
            *st = (chain_step){with_text(g, g->cond, un, g->guidance), s->t[i], s->alpha[i],
                               s->alpha_prev[i]};
            x = asam_grad_checkpoint(ctx, chain_step_fn, &x, 1, st);
        } else {
            asam_mark mk = asam_ctx_mark(ctx);
            asam_tensor *un = asam_from_data(ctx, 3, emb_shape, null_emb + i * ne);
            chain_step st = {with_text(g, g->cond, un, g->guidance), s->t[i], s->alpha[i],
                             s->alpha_prev[i]};
            x = chain_step_fn(ctx, &x, 1, &st);
            if (x) x = asam_ctx_release_keep(ctx, mk, x);
        }
        if (!x || !asam_ctx_ok(ctx)) {
            x = NULL;
            break;
        }
        if (verbose > 1)
            fprintf(stderr, "sample: step %d/%d  t=%d  %.2f s/step\n", i + 1, s->n, s->t[i],
                    (asam_now_s() - t0) / (i + 1));
    }
    asam_ctx_set_grad(ctx, prev);
    return x;
}
