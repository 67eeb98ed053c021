/* ControlNet (lllyasviel cldm.ControlNet, SD 1.x v1.0/v1.1 layout): a copy of the UNet's time
 * embedding, input blocks and middle block, plus the hint encoder (input_hint_block), one 1x1
 * zero conv per input block and middle_block_out. Produces the 13 residuals that
 * ControlledUnetModel adds to the skip connections and the middle block. */
#include "asam/error.h"
#include "models/sd/sd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CN_HINT_CONVS 8
#define CN_MAX_BLOCKS 64

struct asam_controlnet {
    struct asam_unet enc; // time_embed, input_blocks, middle_block (no decoder)
    asam_tensor
        *hint_w[CN_HINT_CONVS]; // input_hint_block.{0,2,..,14}.weight (16,3,3,3) .. (mc,256,3,3)
    asam_tensor *hint_b[CN_HINT_CONVS]; // (Cout)
    int hint_stride[CN_HINT_CONVS];     // 2 at .4, .8, .12
    int hint_channels, hint_factor;     // 3; 8 = hint size / latent size
    asam_tensor *zero_w[CN_MAX_BLOCKS]; // zero_convs.i.0.weight (Ci, Ci, 1, 1)
    asam_tensor *zero_b[CN_MAX_BLOCKS]; // zero_convs.i.0.bias (Ci)
    asam_tensor *mid_out_w, *mid_out_b; // middle_block_out.0 (C, C, 1, 1), (C)
};

int asam_controlnet_load(const asam_checkpoint *ck, const char *prefix, asam_controlnet **out) {
    return sd_controlnet_load_frozen(ck, prefix, 0, out);
}

int sd_controlnet_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen,
                              asam_controlnet **out) {
    *out = NULL;
    prefix = prefix ? prefix : "";
    int diffusers = 0;
    if (!*prefix && !sd_ckpt_has(ck, "input_blocks.0.0.weight")) {
        if (sd_ckpt_has(ck, "controlnet_cond_embedding.conv_in.weight"))
            diffusers = 1;
        else if (sd_ckpt_has(ck, "control_model.input_blocks.0.0.weight"))
            prefix = "control_model.";
    }
    asam_controlnet *m = calloc(1, sizeof *m);
    if (!m) return asam_error("out of memory");
    sd_loader *L = &m->enc.weights;
    sd_loader_init(L, ck, prefix, diffusers ? SD_NAMES_DIFFUSERS_CONTROL : SD_NAMES_COMPVIS);
    L->b.hold_weights = frozen;
    const char *path = sd_loader_path(L);
    if (!sd_has(L, "input_hint_block.0.weight")) {
        asam_error("%s: not a ControlNet (input_hint_block.0.weight%s%s not found)", path,
                   diffusers ? "" : " under prefix ", diffusers ? "" : prefix);
        goto fail;
    }
    if (sd_unet_load_into(&m->enc, L, 1) != 0) goto fail;
    if (m->enc.n_in > CN_MAX_BLOCKS) {
        asam_error("%s: too many input blocks", path);
        goto fail;
    }
    int64_t s[8];
    int cin = -1;
    m->hint_factor = 1;
    for (int i = 0; i < CN_HINT_CONVS; i++) {
        char key[64];
        snprintf(key, sizeof key, "input_hint_block.%d.weight", 2 * i);
        if (sd_probe(L, key, s) != 4 || (cin >= 0 && s[1] != cin) || s[2] != 3 || s[3] != 3) {
            asam_error("%s: missing or bad %s (the hint encoder has 8 3x3 convs)", path, key);
            goto fail;
        }
        if (i == 0) m->hint_channels = (int)s[1];
        cin = (int)s[1];
        int co = (int)s[0];
        m->hint_w[i] = sd_paramf(L, 4, co, cin, 3, 3, "input_hint_block.%d.weight", 2 * i);
        m->hint_b[i] = sd_paramf(L, 1, co, 0, 0, 0, "input_hint_block.%d.bias", 2 * i);
        m->hint_stride[i] = (i == 2 || i == 4 || i == 6) ? 2 : 1;
        m->hint_factor *= m->hint_stride[i];
        cin = co;
    }
    if (!L->b.failed && cin != m->enc.model_channels) {
        asam_error("%s: input_hint_block ends with %d channels, the UNet starts with %d", path, cin,
                   m->enc.model_channels);
        goto fail;
    }
    for (int i = 0; i < m->enc.n_in && !L->b.failed; i++) {
        int c = m->enc.skip_ch[i];
        m->zero_w[i] = sd_paramf(L, 4, c, c, 1, 1, "zero_convs.%d.0.weight", i);
        m->zero_b[i] = sd_paramf(L, 1, c, 0, 0, 0, "zero_convs.%d.0.bias", i);
    }
    int cm = m->enc.middle[2].cout;
    m->mid_out_w = sd_paramf(L, 4, cm, cm, 1, 1, "middle_block_out.0.weight");
    m->mid_out_b = sd_paramf(L, 1, cm, 0, 0, 0, "middle_block_out.0.bias");
    if (L->b.failed) goto fail;
    *out = m;
    return 0;
fail:
    sd_unet_release(&m->enc);
    free(m);
    return -1;
}

void asam_controlnet_free(asam_controlnet *m) {
    if (!m) return;
    sd_unet_release(&m->enc);
    free(m);
}

int asam_controlnet_n_residuals(const asam_controlnet *m) {
    return m->enc.n_in + 1;
}

int asam_controlnet_check(const asam_controlnet *cn, const asam_unet *u) {
    const struct asam_unet *e = &cn->enc;
    if (e->in_channels != u->in_channels || e->model_channels != u->model_channels ||
        e->n_in != u->n_in || e->context_dim != u->context_dim)
        return asam_error("the ControlNet does not match the UNet: ControlNet has %d latent "
                          "channels, %d base channels, %d input blocks, context %d; the UNet "
                          "%d, %d, %d, %d",
                          e->in_channels, e->model_channels, e->n_in, e->context_dim,
                          u->in_channels, u->model_channels, u->n_in, u->context_dim);
    for (int i = 0; i < e->n_in; i++)
        if (e->skip_ch[i] != u->skip_ch[i])
            return asam_error("the ControlNet does not match the UNet: input block %d has %d "
                              "channels in the ControlNet and %d in the UNet",
                              i, e->skip_ch[i], u->skip_ch[i]);
    if (e->middle[2].cout != u->middle[2].cout)
        return asam_error("the ControlNet does not match the UNet: middle block widths %d vs %d",
                          e->middle[2].cout, u->middle[2].cout);
    return 0;
}

int asam_controlnet_params(const asam_controlnet *m, asam_tensor ***params, const char ***names,
                           size_t *n) {
    *params = m->enc.weights.b.params;
    *names = (const char **)m->enc.weights.b.names;
    *n = m->enc.weights.b.n;
    return 0;
}

void asam_controlnet_set_trainable(asam_controlnet *m, int on) {
    for (size_t i = 0; i < m->enc.weights.b.n; i++)
        asam_set_requires_grad(m->enc.weights.b.params[i], on);
}

void asam_controlnet_set_checkpointing(asam_controlnet *m, int on) {
    m->enc.grad_checkpointing = on;
}

/* input_hint_block: 8 convs with SiLU between (not after the last). */
static asam_tensor *hint_segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    const asam_controlnet *m = user;
    asam_tensor *h = in[0];
    for (int i = 0; i < CN_HINT_CONVS; i++) {
        h = asam_conv2d(ctx, h, m->hint_w[i], m->hint_b[i], m->hint_stride[i], 1);
        if (i != CN_HINT_CONVS - 1) h = asam_silu(ctx, h);
    }
    return h;
}

// ref: lllyasviel/ControlNet cldm/cldm.py:284 (ControlNet.forward: hint block :288, zero convs
//   :300)
int asam_controlnet_forward(asam_ctx *ctx, const asam_controlnet *m, asam_tensor *x, const float *t,
                            asam_tensor *context, asam_tensor *hint, asam_tensor *residuals[13]) {
    const struct asam_unet *u = &m->enc;
    if (u->n_in + 1 > 13) { /* the residuals[13] of this API (SD 1.x/2.x: always 13) */
        asam_ctx_fail(ctx, "controlnet: %d residuals do not fit the 13 of this API", u->n_in + 1);
        return -1;
    }
    for (int i = 0; i <= u->n_in; i++) residuals[i] = NULL;
    if (!asam_ctx_ok(ctx)) return -1;
    if (sd_unet_check_inputs(ctx, u, "controlnet", x, t, context) != 0) return -1;
    if (!hint || hint->ndim != 4 || hint->shape[0] != x->shape[0] ||
        hint->shape[1] != m->hint_channels || hint->shape[2] != x->shape[2] * m->hint_factor ||
        hint->shape[3] != x->shape[3] * m->hint_factor) {
        char a[96] = "NULL";
        if (hint) asam_shape_str(hint, a, sizeof a);
        asam_ctx_fail(ctx, "controlnet: hint of shape %s, expected (%lld, %d, %lld, %lld)", a,
                      (long long)x->shape[0], m->hint_channels,
                      (long long)(x->shape[2] * m->hint_factor),
                      (long long)(x->shape[3] * m->hint_factor));
        return -1;
    }
    asam_tensor *guided;
    if (!asam_ctx_grad_enabled(ctx)) {
        asam_mark mk = asam_ctx_mark(ctx);
        guided = hint_segment(ctx, &hint, 1, (void *)m);
        if (guided) guided = asam_ctx_release_keep(ctx, mk, guided);
    } else if (u->grad_checkpointing) {
        guided = asam_grad_checkpoint(ctx, hint_segment, &hint, 1, (void *)m);
    } else {
        guided = hint_segment(ctx, &hint, 1, (void *)m);
    }
    asam_tensor *emb = sd_time_embed(ctx, u, t, x->shape[0]);
    asam_tensor *h = x;
    for (int i = 0; i < u->n_in; i++) {
        h = sd_run_block(ctx, u, &u->input_blocks[i], h, emb, context, NULL);
        if (i == 0) h = asam_add(ctx, h, guided); // the hint joins after conv_in
        residuals[i] = asam_conv2d(ctx, h, m->zero_w[i], m->zero_b[i], 1, 0);
    }
    for (int j = 0; j < 3; j++) h = sd_run_block(ctx, u, &u->middle[j], h, emb, context, NULL);
    residuals[u->n_in] = asam_conv2d(ctx, h, m->mid_out_w, m->mid_out_b, 1, 0);
    if (!asam_ctx_ok(ctx)) {
        for (int i = 0; i <= u->n_in; i++) residuals[i] = NULL;
        return -1;
    }
    return 0;
}

const sd_loader *sd_controlnet_weights(const asam_controlnet *m) {
    return &m->enc.weights;
}

double asam_controlnet_flops(const asam_controlnet *m, int64_t h, int64_t w, int64_t ctx_len) {
    double f = asam_unet_flops(&m->enc, h, w, ctx_len);
    int64_t hh = h * m->hint_factor, ww = w * m->hint_factor;
    for (int i = 0; i < CN_HINT_CONVS; i++) {
        hh /= m->hint_stride[i], ww /= m->hint_stride[i];
        f += 2.0 * (double)m->hint_w[i]->numel * (double)(hh * ww);
    }
    int64_t hs = h, ws = w;
    for (int i = 0; i < m->enc.n_in; i++) {
        if (m->enc.input_blocks[i].conv_stride == 2) hs /= 2, ws /= 2;
        f += 2.0 * (double)m->zero_w[i]->numel * (double)(hs * ws);
    }
    return f + 2.0 * (double)m->mid_out_w->numel * (double)(hs * ws);
}
