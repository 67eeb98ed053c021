/* Options, model bundle, the generator's inversion of one image (VAE encoding, prompts, then
 * DDIM + null-text inversion with the mask ControlNet, diffusion/null_text.c), the guided
 * sampling chain over an inversion, and the inversion file (safetensors). */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/segmenter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void asam_gen_opts_default(asam_gen_opts *o) {
    *o = (asam_gen_opts){.size = 512,
                         .steps = 50,
                         .cfg = 7.5f,
                         .control_scale = 1.0f,
                         .null_steps = 10,
                         .null_lr = 0.01f,
                         .null_eps = 1e-5f,
                         .null_eps_slope = 2e-5f,
                         .iters = 10,
                         .alpha = 0.02f,
                         .eps = 0.2f,
                         .momentum = 0.5f,
                         .max_boxes = 140,
                         .grad = ASAM_GRAD_SKIP,
                         .w_bce = 100.0f,
                         .w_dice = 100.0f,
                         .w_l2 = 1.0f,
                         .verbose = 0};
}

int asam_gen_models_load(const char *sd_path, const char *controlnet_path, const char *sam_path,
                         asam_gen_models *m) {
    memset(m, 0, sizeof *m);
    if (!sd_path) return asam_error("generator: no Stable Diffusion model given (--sd)");
    m->sd_path = sd_path, m->controlnet_path = controlnet_path, m->sam_path = sam_path;
    if (asam_sd_load(sd_path, NULL, &m->sd)) return -1;
    if (controlnet_path && asam_sd_controlnet_open(controlnet_path, m->sd->unet, &m->controlnet)) {
        asam_gen_models_free(m);
        return -1;
    }
    if (sam_path) { /* the attacked model: SAM or EfficientSAM, from the file */
        asam_segmenter seg;
        if (asam_segmenter_load_frozen(sam_path, &seg)) {
            asam_gen_models_free(m);
            return -1;
        }
        m->sam = seg.sam;
        m->esam = seg.esam;
    }
    return 0;
}

void asam_gen_models_free(asam_gen_models *m) {
    if (m->sd) asam_sd_free(m->sd);
    if (m->controlnet) asam_controlnet_free(m->controlnet);
    if (m->controlnet_adv) asam_controlnet_free(m->controlnet_adv);
    if (m->sam) asam_sam_free(m->sam);
    if (m->esam) asam_esam_free(m->esam);
    memset(m, 0, sizeof *m);
}

static asam_sd_guide make_guide(const asam_gen_models *m, const asam_gen_opts *o, asam_tensor *hint,
                                asam_tensor *cond, asam_tensor *uncond, float guidance) {
    return (asam_sd_guide){.unet = m->sd->unet,
                           .controlnet = hint ? m->controlnet : NULL,
                           .hint = hint,
                           .control_scale = o->control_scale,
                           .cond = cond,
                           .uncond = uncond,
                           .guidance = guidance,
                           /* both CFG branches in one UNet call of batch 2, ControlNet hint
                            * in both, as the official sampling and null-text steps do */
                           // ref: luckybird1994/ASAM/ptp_utils.py:97
                           // ref: luckybird1994/ASAM/null_text_inversion.py:425
                           .batch_cfg = 1,
                           .control_cond_only = 0};
}

/* ---- inversion ------------------------------------------------------------------------------ */
void asam_inversion_free(asam_inversion *inv) {
    free(inv->x_T);
    free(inv->z0);
    free(inv->null_emb);
    free(inv->null_loss);
    free(inv->prompt);
    free(inv->image);
    free(inv->provenance);
    memset(inv, 0, sizeof *inv);
}

static int inv_alloc(asam_inversion *inv) {
    size_t nl = (size_t)inv->lat_c * inv->lat_h * inv->lat_w;
    inv->x_T = malloc(nl * sizeof(float));
    inv->z0 = malloc(nl * sizeof(float));
    inv->null_emb = malloc((size_t)inv->steps * inv->ctx_len * inv->ctx_dim * sizeof(float));
    inv->null_loss = calloc((size_t)inv->steps, sizeof(float));
    if (!inv->x_T || !inv->z0 || !inv->null_emb || !inv->null_loss) {
        asam_inversion_free(inv);
        return asam_error("inversion: out of memory");
    }
    return 0;
}

int asam_invert(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, asam_tensor *hint, const char *prompt, asam_inversion *out) {
    memset(out, 0, sizeof *out);
    if (!m->sd) return asam_error("invert: no Stable Diffusion model");
    if (hint && !m->controlnet) return asam_error("invert: a control image but no ControlNet");
    if (o->size % 8 || o->size < 8)
        return asam_error("invert: size %d is not a multiple of 8", o->size);
    asam_ddim s;
    if (asam_ddim_init(&s, o->steps, 0)) return asam_error("invert: bad step count %d", o->steps);
    const int n = s.n, S = o->size;
    asam_mark m0 = asam_ctx_mark(ctx);
    int prev_grad = asam_ctx_set_grad(ctx, 0);
    int D = asam_unet_context_dim(m->sd->unet);
    *out = (asam_inversion){.steps = n,
                            .size = S,
                            .lat_c = 4,
                            .lat_h = S / 8,
                            .lat_w = S / 8,
                            .ctx_len = ASAM_CLIP_CONTEXT,
                            .ctx_dim = D};
    if (inv_alloc(out)) goto fail_noctx;
    out->prompt = strdup(prompt ? prompt : "");
    const size_t nl = (size_t)4 * (S / 8) * (S / 8);
    if (!out->prompt) {
        asam_error("invert: out of memory");
        goto fail_noctx;
    }

    /* z_0 = VAE posterior mean * 0.18215 of the size x size image in [-1, 1] */
    // ref: null_text_inversion.py:550 Image.open().convert('RGB').resize((512,512)): PIL's
    // default filter, bicubic
    asam_image rs = {0};
    if (asam_image_resize_pil_bicubic(img, S, S, &rs)) goto fail_noctx;
    asam_tensor *x = asam_sd_image_to_tensor(ctx, &rs, S, S, -1.0f);
    asam_image_free(&rs);
    asam_tensor *z0 = asam_scale(ctx, asam_vae_encode(ctx, m->sd->vae, x), ASAM_SD_LATENT_SCALE);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, m->sd, out->prompt);
    asam_tensor *uncond0 = asam_sd_encode_prompt(ctx, m->sd, "");
    if (!z0 || !cond || !uncond0 || !asam_ctx_ok(ctx)) goto fail;
    memcpy(out->z0, z0->data, nl * sizeof(float));

    /* DDIM inversion with the ControlNet, then one null embedding per sampling step */
    asam_sd_guide g = make_guide(m, o, hint, cond, NULL, 1.0f);
    const asam_null_text_opts no = {.guidance = o->cfg,
                                    .inner_steps = o->null_steps,
                                    .lr = o->null_lr,
                                    .eps = o->null_eps,
                                    .eps_slope = o->null_eps_slope,
                                    .checkpointing = o->null_checkpointing,
                                    .trace = o->null_trace,
                                    .trace_user = o->trace_user,
                                    .verbose = o->verbose};
    if (asam_null_text_invert(ctx, &g, &s, z0, uncond0, &no, out->x_T, out->null_emb,
                              out->null_loss) ||
        !asam_ctx_ok(ctx))
        goto fail;
    asam_ctx_set_grad(ctx, prev_grad);
    asam_ctx_release(ctx, m0);
    return 0;
fail:
    if (!asam_ctx_ok(ctx)) asam_error("invert: %s", asam_ctx_error(ctx));
fail_noctx:
    asam_ctx_set_grad(ctx, prev_grad);
    asam_ctx_release(ctx, m0);
    asam_inversion_free(out);
    return -1;
}

/* ---- file ------------------------------------------------------------------------------------ */
int asam_inversion_save(const char *path, const asam_inversion *inv) {
    asam_st_entry e[4] = {
        {"null_emb", ASAM_DT_F32, 3, {inv->steps, inv->ctx_len, inv->ctx_dim}, inv->null_emb},
        {"null_loss", ASAM_DT_F32, 1, {inv->steps}, inv->null_loss},
        {"x_T", ASAM_DT_F32, 4, {1, inv->lat_c, inv->lat_h, inv->lat_w}, inv->x_T},
        {"z0", ASAM_DT_F32, 4, {1, inv->lat_c, inv->lat_h, inv->lat_w}, inv->z0},
    };
    char steps[32], size[32];
    snprintf(steps, sizeof steps, "%d", inv->steps);
    snprintf(size, sizeof size, "%d", inv->size);
    const char *meta[] = {"format",     "asam-inversion-1",
                          "prompt",     inv->prompt ? inv->prompt : "",
                          "image",      inv->image ? inv->image : "",
                          "steps",      steps,
                          "size",       size,
                          "provenance", inv->provenance ? inv->provenance : ""};
    return asam_safetensors_write(path, e, 4, meta, 6);
}

static int read_f32(const asam_checkpoint *ck, const char *name, int64_t numel, float *dst) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t) return asam_error("%s: no tensor %s", asam_checkpoint_path(ck), name);
    if (t->numel != numel)
        return asam_error("%s: %s has %lld values, expected %lld", asam_checkpoint_path(ck), name,
                          (long long)t->numel, (long long)numel);
    return asam_ckpt_read_f32(ck, t, dst);
}

int asam_inversion_load(const char *path, asam_inversion *inv) {
    memset(inv, 0, sizeof *inv);
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *fmt = asam_checkpoint_metadata(ck, "format");
    const asam_ckpt_tensor *ne = asam_checkpoint_find(ck, "null_emb");
    const asam_ckpt_tensor *xt = asam_checkpoint_find(ck, "x_T");
    if (!fmt || strcmp(fmt, "asam-inversion-1") || !ne || ne->ndim != 3 || !xt || xt->ndim != 4) {
        asam_checkpoint_close(ck);
        return asam_error("%s: not an asam inversion file", path);
    }
    const char *sz = asam_checkpoint_metadata(ck, "size");
    *inv = (asam_inversion){.steps = (int)ne->shape[0],
                            .ctx_len = (int)ne->shape[1],
                            .ctx_dim = (int)ne->shape[2],
                            .lat_c = (int)xt->shape[1],
                            .lat_h = (int)xt->shape[2],
                            .lat_w = (int)xt->shape[3],
                            .size = sz ? atoi(sz) : (int)xt->shape[2] * 8};
    if (inv_alloc(inv)) {
        asam_checkpoint_close(ck);
        return -1;
    }
    int64_t nl = (int64_t)inv->lat_c * inv->lat_h * inv->lat_w;
    const char *pr = asam_checkpoint_metadata(ck, "prompt"),
               *im = asam_checkpoint_metadata(ck, "image");
    inv->prompt = strdup(pr ? pr : "");
    inv->image = strdup(im ? im : "");
    const char *pv = asam_checkpoint_metadata(ck, "provenance");
    inv->provenance = pv && *pv ? strdup(pv) : NULL;
    int rc = (!inv->prompt || !inv->image) ? asam_error("%s: out of memory", path) : 0;
    if (!rc) rc = read_f32(ck, "x_T", nl, inv->x_T);
    if (!rc) rc = read_f32(ck, "z0", nl, inv->z0);
    if (!rc)
        rc = read_f32(ck, "null_emb", (int64_t)inv->steps * inv->ctx_len * inv->ctx_dim,
                      inv->null_emb);
    if (!rc) rc = read_f32(ck, "null_loss", inv->steps, inv->null_loss);
    asam_checkpoint_close(ck);
    if (rc) asam_inversion_free(inv);
    return rc;
}

/* ---- sampling chain ---------------------------------------------------------------------- */
asam_tensor *asam_gen_sample_chain(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                                   const asam_inversion *inv, asam_tensor *cond, asam_tensor *hint,
                                   asam_tensor *x_T, int grad_full) {
    asam_ddim s;
    if (!x_T) return NULL;
    if (asam_ddim_init(&s, inv->steps, 0))
        return asam_ctx_fail(ctx, "sample: bad step count %d", inv->steps);
    const int64_t eshape[3] = {1, inv->ctx_len, inv->ctx_dim};
    int record = grad_full && asam_ctx_grad_enabled(ctx) && x_T->requires_grad;
    asam_sd_guide g = make_guide(m, o, hint, cond, NULL, o->cfg);
    return asam_ddim_sample_null_text(ctx, &g, &s, inv->null_emb, eshape, x_T, record, o->verbose);
}

asam_tensor *asam_gen_decode01(asam_ctx *ctx, const asam_gen_models *m, asam_tensor *z0) {
    asam_tensor *img =
        asam_vae_decode(ctx, m->sd->vae, asam_scale(ctx, z0, 1.0f / ASAM_SD_LATENT_SCALE));
    return asam_soft_clamp01(ctx, asam_add_scalar(ctx, asam_scale(ctx, img, 0.5f), 0.5f));
}
