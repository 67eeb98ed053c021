/* Stable Diffusion VAE (CompVis ldm AutoencoderKL, diffusionmodules/model.py Encoder/Decoder):
 * loading from checkpoint shapes, posterior-mean encoding and decoding, with autograd.
 * Every GroupNorm has eps 1e-6; the encoder's Downsample pads one zero row/column on the
 * right/bottom and convolves with stride 2 and no padding; the decoder runs levels deepest
 * first with num_res_blocks + 1 ResnetBlocks each. */
#include "asam/error.h"
#include "asam/sd_models.h"
#include "models/sd/sd_internal.h"
#include "models/sd/sd_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAE_EPS SD_VAE_EPS
#define VAE_GROUPS 32
#define VAE_MAX_LEVELS 8
#define VAE_MAX_RES 8

typedef sd_resblock vae_resblock; /* ResnetBlock: the UNet's block without the embedding */

/* AttnBlock: single-head self-attention over H*W with 1x1-conv q/k/v/proj_out. */
typedef struct {
    asam_tensor *norm_w, *norm_b; // norm (C)
    asam_tensor *q_w, *q_b;       // q (C, C) (stored (C, C, 1, 1) or Linear), (C)
    asam_tensor *k_w, *k_b;       // k (C, C), (C)
    asam_tensor *v_w, *v_b;       // v (C, C), (C)
    asam_tensor *proj_w, *proj_b; // proj_out (C, C), (C)
} vae_attn;

typedef struct {
    asam_tensor *w, *b; // (C, C, 3, 3), (C)
    int down;           // 1: pad (0,1,0,1) + stride 2; 0: nearest x2 + conv pad 1
} vae_resample;

struct asam_vae {
    int in_channels, ch, n_levels, num_res_blocks, z_channels, embed_dim, out_ch;
    /* encoder */
    asam_tensor *enc_conv_in_w, *enc_conv_in_b;        // encoder.conv_in (ch, in, 3, 3)
    vae_resblock enc_res[VAE_MAX_LEVELS][VAE_MAX_RES]; // encoder.down.i.block.j
    vae_resample enc_down[VAE_MAX_LEVELS];             // encoder.down.i.downsample.conv
    vae_resblock enc_mid1, enc_mid2;                   // encoder.mid.block_1/2
    vae_attn enc_attn;                                 // encoder.mid.attn_1
    asam_tensor *enc_norm_out_w, *enc_norm_out_b;      // encoder.norm_out (Cmid)
    asam_tensor *enc_conv_out_w, *enc_conv_out_b;      // encoder.conv_out (2z, Cmid, 3, 3)
    asam_tensor *quant_w, *quant_b;                    // quant_conv (2e, 2z, 1, 1)
    /* decoder */
    asam_tensor *post_quant_w, *post_quant_b;              // post_quant_conv (z, e, 1, 1)
    asam_tensor *dec_conv_in_w, *dec_conv_in_b;            // decoder.conv_in (Cmid, z, 3, 3)
    vae_resblock dec_mid1, dec_mid2;                       // decoder.mid.block_1/2
    vae_attn dec_attn;                                     // decoder.mid.attn_1
    vae_resblock dec_res[VAE_MAX_LEVELS][VAE_MAX_RES + 1]; // decoder.up.i.block.j
    vae_resample dec_up[VAE_MAX_LEVELS];                   // decoder.up.i.upsample.conv (i > 0)
    asam_tensor *dec_norm_out_w, *dec_norm_out_b;          // decoder.norm_out (ch)
    asam_tensor *dec_conv_out_w, *dec_conv_out_b;          // decoder.conv_out (out, ch, 3, 3)
    int grad_checkpointing;
    sd_loader weights;
};

/* ---- loading ------------------------------------------------------------------------------ */

static int load_res(sd_loader *L, vae_resblock *r, const char *base, int cin) {
    return sd_resblock_load(L, r, base, cin, 0, &sd_resblock_vae);
}

static void load_attn(sd_loader *L, vae_attn *a, const char *base, int C) {
    a->norm_w = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm.weight", base);
    a->norm_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm.bias", base);
    a->q_w = sd_paramf(L, 2, C, C, 0, 0, "%s.q.weight", base);
    a->q_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.q.bias", base);
    a->k_w = sd_paramf(L, 2, C, C, 0, 0, "%s.k.weight", base);
    a->k_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.k.bias", base);
    a->v_w = sd_paramf(L, 2, C, C, 0, 0, "%s.v.weight", base);
    a->v_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.v.bias", base);
    a->proj_w = sd_paramf(L, 2, C, C, 0, 0, "%s.proj_out.weight", base);
    a->proj_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.proj_out.bias", base);
}

static int vae_load_into(asam_vae *m, sd_loader *L) {
    int64_t s[8];
    const char *path = sd_loader_path(L);
    char base[128];
    if (sd_probe(L, "encoder.conv_in.weight", s) != 4)
        return asam_error("%s: no VAE weights (encoder.conv_in.weight%s%s not found)", path,
                          L->naming == SD_NAMES_COMPVIS ? " under prefix " : "",
                          L->naming == SD_NAMES_COMPVIS ? L->b.prefix : "");
    m->ch = (int)s[0];
    m->in_channels = (int)s[1];
    while (m->n_levels < VAE_MAX_LEVELS &&
           sd_has(L, "encoder.down.%d.block.0.conv1.weight", m->n_levels))
        m->n_levels++;
    while (m->num_res_blocks < VAE_MAX_RES &&
           sd_has(L, "encoder.down.0.block.%d.conv1.weight", m->num_res_blocks))
        m->num_res_blocks++;
    if (m->n_levels == 0 || m->num_res_blocks == 0)
        return asam_error("%s: cannot find the VAE encoder levels", path);
    L->n_levels = m->n_levels;
    int nl = m->n_levels, nrb = m->num_res_blocks;
    m->enc_conv_in_w = sd_paramf(L, 4, m->ch, m->in_channels, 3, 3, "encoder.conv_in.weight");
    m->enc_conv_in_b = sd_paramf(L, 1, m->ch, 0, 0, 0, "encoder.conv_in.bias");
    int c = m->ch;
    for (int i = 0; i < nl && !L->b.failed; i++) {
        for (int j = 0; j < nrb && !L->b.failed; j++) {
            snprintf(base, sizeof base, "encoder.down.%d.block.%d", i, j);
            if (load_res(L, &m->enc_res[i][j], base, c) == 0) c = m->enc_res[i][j].cout;
        }
        if (i != nl - 1) {
            m->enc_down[i].down = 1;
            m->enc_down[i].w =
                sd_paramf(L, 4, c, c, 3, 3, "encoder.down.%d.downsample.conv.weight", i);
            m->enc_down[i].b =
                sd_paramf(L, 1, c, 0, 0, 0, "encoder.down.%d.downsample.conv.bias", i);
        }
    }
    if (L->b.failed) return -1;
    load_res(L, &m->enc_mid1, "encoder.mid.block_1", c);
    load_attn(L, &m->enc_attn, "encoder.mid.attn_1", c);
    load_res(L, &m->enc_mid2, "encoder.mid.block_2", c);
    m->enc_norm_out_w = sd_paramf(L, 1, c, 0, 0, 0, "encoder.norm_out.weight");
    m->enc_norm_out_b = sd_paramf(L, 1, c, 0, 0, 0, "encoder.norm_out.bias");
    if (L->b.failed) return -1;
    if (sd_probe(L, "encoder.conv_out.weight", s) != 4 || s[0] % 2)
        return asam_error("%s: missing or odd encoder.conv_out.weight", path);
    int z2 = (int)s[0];
    m->z_channels = z2 / 2;
    m->enc_conv_out_w = sd_paramf(L, 4, z2, c, 3, 3, "encoder.conv_out.weight");
    m->enc_conv_out_b = sd_paramf(L, 1, z2, 0, 0, 0, "encoder.conv_out.bias");
    if (L->b.failed) return -1;
    if (sd_probe(L, "quant_conv.weight", s) < 2 || s[0] % 2)
        return asam_error("%s: missing or odd quant_conv.weight", path);
    m->embed_dim = (int)(s[0] / 2);
    int e = m->embed_dim, z = m->z_channels;
    m->quant_w = sd_paramf(L, 4, 2 * e, z2, 1, 1, "quant_conv.weight");
    m->quant_b = sd_paramf(L, 1, 2 * e, 0, 0, 0, "quant_conv.bias");
    m->post_quant_w = sd_paramf(L, 4, z, e, 1, 1, "post_quant_conv.weight");
    m->post_quant_b = sd_paramf(L, 1, z, 0, 0, 0, "post_quant_conv.bias");
    if (L->b.failed) return -1;
    /* decoder */
    if (sd_probe(L, "decoder.conv_in.weight", s) != 4 || s[1] != z)
        return asam_error("%s: missing or bad decoder.conv_in.weight", path);
    c = (int)s[0];
    m->dec_conv_in_w = sd_paramf(L, 4, c, z, 3, 3, "decoder.conv_in.weight");
    m->dec_conv_in_b = sd_paramf(L, 1, c, 0, 0, 0, "decoder.conv_in.bias");
    load_res(L, &m->dec_mid1, "decoder.mid.block_1", c);
    load_attn(L, &m->dec_attn, "decoder.mid.attn_1", c);
    load_res(L, &m->dec_mid2, "decoder.mid.block_2", c);
    for (int i = nl - 1; i >= 0 && !L->b.failed; i--) {
        for (int j = 0; j <= nrb && !L->b.failed; j++) {
            snprintf(base, sizeof base, "decoder.up.%d.block.%d", i, j);
            if (load_res(L, &m->dec_res[i][j], base, c) == 0) c = m->dec_res[i][j].cout;
        }
        if (i != 0) {
            m->dec_up[i].w = sd_paramf(L, 4, c, c, 3, 3, "decoder.up.%d.upsample.conv.weight", i);
            m->dec_up[i].b = sd_paramf(L, 1, c, 0, 0, 0, "decoder.up.%d.upsample.conv.bias", i);
        }
    }
    if (L->b.failed) return -1;
    m->dec_norm_out_w = sd_paramf(L, 1, c, 0, 0, 0, "decoder.norm_out.weight");
    m->dec_norm_out_b = sd_paramf(L, 1, c, 0, 0, 0, "decoder.norm_out.bias");
    if (sd_probe(L, "decoder.conv_out.weight", s) != 4)
        return asam_error("%s: missing decoder.conv_out.weight", path);
    m->out_ch = (int)s[0];
    m->dec_conv_out_w = sd_paramf(L, 4, m->out_ch, c, 3, 3, "decoder.conv_out.weight");
    m->dec_conv_out_b = sd_paramf(L, 1, m->out_ch, 0, 0, 0, "decoder.conv_out.bias");
    return L->b.failed ? -1 : 0;
}

int asam_vae_load(const asam_checkpoint *ck, const char *prefix, asam_vae **out) {
    return sd_vae_load_frozen(ck, prefix, 0, out);
}

int sd_vae_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen, asam_vae **out) {
    *out = NULL;
    asam_vae *m = calloc(1, sizeof *m);
    if (!m) return asam_error("out of memory");
    prefix = prefix ? prefix : "";
    if (!*prefix && !sd_ckpt_has(ck, "encoder.conv_in.weight") &&
        sd_ckpt_has(ck, "first_stage_model.encoder.conv_in.weight"))
        prefix = "first_stage_model."; /* "" on a CompVis single file means its VAE */
    int diffusers = !*prefix && !sd_ckpt_has(ck, "encoder.down.0.block.0.conv1.weight") &&
                    sd_ckpt_has(ck, "encoder.down_blocks.0.resnets.0.conv1.weight");
    sd_loader_init(&m->weights, ck, prefix, diffusers ? SD_NAMES_DIFFUSERS_VAE : SD_NAMES_COMPVIS);
    m->weights.b.hold_weights = frozen;
    m->grad_checkpointing = 1;
    if (vae_load_into(m, &m->weights) != 0) {
        asam_vae_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void asam_vae_free(asam_vae *m) {
    if (!m) return;
    sd_loader_free(&m->weights);
    free(m);
}

/* ---- forward ------------------------------------------------------------------------------ */

static asam_tensor *res_forward(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    return sd_resblock_forward(ctx, user, in[0], NULL, VAE_EPS);
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/model.py:178 (AttnBlock.forward)
static asam_tensor *attn_forward(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    const vae_attn *a = user;
    asam_tensor *x = in[0];
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    asam_tensor *h = asam_group_norm(ctx, x, VAE_GROUPS, a->norm_w, a->norm_b, VAE_EPS);
    h = asam_permute(ctx, h, (const int[]){0, 2, 3, 1});
    h = asam_reshape(ctx, h, ASAM_SHAPE(B, 1, H * W, C)); // one head over H*W tokens
    asam_tensor *q = asam_linear(ctx, h, a->q_w, a->q_b);
    asam_tensor *k = asam_linear(ctx, h, a->k_w, a->k_b);
    asam_tensor *v = asam_linear(ctx, h, a->v_w, a->v_b);
    asam_attn_opts opts = {0}; // scale C^-0.5
    h = asam_attention(ctx, q, k, v, &opts);
    h = asam_linear(ctx, h, a->proj_w, a->proj_b);
    h = asam_reshape(ctx, h, ASAM_SHAPE(B, H, W, C));
    h = asam_permute(ctx, h, (const int[]){0, 3, 1, 2});
    return asam_add(ctx, x, h);
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/model.py:53 (Upsample.forward), :72
//   (Downsample.forward: pad (0,1,0,1))
static asam_tensor *resample_forward(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    const vae_resample *r = user;
    asam_tensor *x = in[0];
    if (r->down) {
        const int64_t pads[8] = {0, 0, 0, 0, 0, 1, 0, 1}; // F.pad(x, (0, 1, 0, 1))
        return asam_conv2d(ctx, asam_pad(ctx, x, pads, 0.0f), r->w, r->b, 2, 0);
    }
    x = asam_resize_nearest(ctx, x, 2 * x->shape[2], 2 * x->shape[3]);
    return asam_conv2d(ctx, x, r->w, r->b, 1, 1);
}

/* Run one piece: released block-wise without recording, checkpointed with recording. */
static asam_tensor *run(asam_ctx *ctx, const asam_vae *m, asam_segment_fn fn, const void *w,
                        asam_tensor *x) {
    if (!x) return NULL;
    if (!asam_ctx_grad_enabled(ctx)) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *out = fn(ctx, &x, 1, (void *)w);
        return out ? asam_ctx_release_keep(ctx, mk, out) : NULL;
    }
    if (!m->grad_checkpointing) return fn(ctx, &x, 1, (void *)w);
    return asam_grad_checkpoint(ctx, fn, &x, 1, (void *)w);
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/model.py:434 (Encoder.forward)
asam_tensor *asam_vae_encode_moments(asam_ctx *ctx, const asam_vae *m, asam_tensor *img) {
    if (!img || !asam_ctx_ok(ctx)) return NULL;
    int64_t f = (int64_t)1 << (m->n_levels - 1);
    if (img->ndim != 4 || img->shape[1] != m->in_channels || img->shape[2] % f ||
        img->shape[3] % f || img->shape[2] == 0 || img->shape[3] == 0) {
        char a[96];
        asam_shape_str(img, a, sizeof a);
        return asam_ctx_fail(
            ctx,
            "vae encode: image of shape %s, expected (B, %d, H, W) with H, W multiples of %lld", a,
            m->in_channels, (long long)f);
    }
    asam_tensor *h = asam_conv2d(ctx, img, m->enc_conv_in_w, m->enc_conv_in_b, 1, 1);
    for (int i = 0; i < m->n_levels; i++) {
        for (int j = 0; j < m->num_res_blocks; j++)
            h = run(ctx, m, res_forward, &m->enc_res[i][j], h);
        if (i != m->n_levels - 1) h = run(ctx, m, resample_forward, &m->enc_down[i], h);
    }
    h = run(ctx, m, res_forward, &m->enc_mid1, h);
    h = run(ctx, m, attn_forward, &m->enc_attn, h);
    h = run(ctx, m, res_forward, &m->enc_mid2, h);
    h = asam_group_norm_silu(ctx, h, VAE_GROUPS, m->enc_norm_out_w, m->enc_norm_out_b, VAE_EPS);
    h = asam_conv2d(ctx, h, m->enc_conv_out_w, m->enc_conv_out_b, 1, 1);
    return asam_conv2d(ctx, h, m->quant_w, m->quant_b, 1, 0); // moments = (mean, logvar)
}

asam_tensor *asam_vae_encode(asam_ctx *ctx, const asam_vae *m, asam_tensor *img) {
    return asam_slice(ctx, asam_vae_encode_moments(ctx, m, img), 1, 0, m->embed_dim);
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/model.py:535 (Decoder.forward)
asam_tensor *asam_vae_decode(asam_ctx *ctx, const asam_vae *m, asam_tensor *z) {
    if (!z || !asam_ctx_ok(ctx)) return NULL;
    if (z->ndim != 4 || z->shape[1] != m->embed_dim || z->shape[2] == 0 || z->shape[3] == 0) {
        char a[96];
        asam_shape_str(z, a, sizeof a);
        return asam_ctx_fail(ctx, "vae decode: latent of shape %s, expected (B, %d, h, w)", a,
                             m->embed_dim);
    }
    asam_tensor *h = asam_conv2d(ctx, z, m->post_quant_w, m->post_quant_b, 1, 0);
    h = asam_conv2d(ctx, h, m->dec_conv_in_w, m->dec_conv_in_b, 1, 1);
    h = run(ctx, m, res_forward, &m->dec_mid1, h);
    h = run(ctx, m, attn_forward, &m->dec_attn, h);
    h = run(ctx, m, res_forward, &m->dec_mid2, h);
    for (int i = m->n_levels - 1; i >= 0; i--) {
        for (int j = 0; j <= m->num_res_blocks; j++)
            h = run(ctx, m, res_forward, &m->dec_res[i][j], h);
        if (i != 0) h = run(ctx, m, resample_forward, &m->dec_up[i], h);
    }
    h = asam_group_norm_silu(ctx, h, VAE_GROUPS, m->dec_norm_out_w, m->dec_norm_out_b, VAE_EPS);
    h = asam_conv2d(ctx, h, m->dec_conv_out_w, m->dec_conv_out_b, 1, 1);
    return asam_ctx_ok(ctx) ? h : NULL;
}

void asam_vae_set_checkpointing(asam_vae *m, int on) {
    m->grad_checkpointing = on;
}

const sd_loader *sd_vae_weights(const asam_vae *m) {
    return &m->weights;
}

static double cf(const asam_tensor *w, int64_t h, int64_t wd) {
    return w ? 2.0 * (double)w->numel * (double)(h * wd) : 0.0;
}

static double rf(const vae_resblock *r, int64_t h, int64_t w) {
    return cf(r->conv1_w, h, w) + cf(r->conv2_w, h, w) + cf(r->skip_w, h, w);
}

double asam_vae_decode_flops(const asam_vae *m, int64_t h, int64_t w) {
    double C = m->dec_mid1.cout, N = (double)(h * w);
    double f = cf(m->post_quant_w, h, w) + cf(m->dec_conv_in_w, h, w);
    f += rf(&m->dec_mid1, h, w) + rf(&m->dec_mid2, h, w);
    f += 4 * 2 * N * C * C + 2 * 2 * N * N * C; /* mid attention */
    for (int i = m->n_levels - 1; i >= 0; i--) {
        for (int j = 0; j <= m->num_res_blocks; j++) f += rf(&m->dec_res[i][j], h, w);
        if (i) h *= 2, w *= 2, f += cf(m->dec_up[i].w, h, w);
    }
    return f + cf(m->dec_conv_out_w, h, w);
}
