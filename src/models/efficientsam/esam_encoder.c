/* EfficientSAM pre-processing and image encoder: a plain ViT with global attention in every
 * block, an absolute position embedding resampled bicubically from the 14x14 pretrain grid,
 * and SAM's neck. Engine ops throughout, so gradients reach the input image. */
#include "models/efficientsam/esam_internal.h"

#include <math.h>
#include <string.h>

#define SHAPE(...) ASAM_SHAPE(__VA_ARGS__)

/* ImageNet statistics in [0,1] units (float32 buffers).
 * ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:298 */
static const float k_mean[3] = {0.485f, 0.456f, 0.406f};
static const float k_std[3] = {0.229f, 0.224f, 0.225f};

asam_tensor *asam_esam_image_to_tensor(asam_ctx *ctx, const asam_image *img) {
    if (!img || !img->data || img->c != 3 || img->w <= 0 || img->h <= 0)
        return asam_ctx_fail(ctx, "efficientsam: image must be RGB with a positive size");
    int64_t h = img->h, w = img->w;
    asam_tensor *t = asam_new(ctx, SHAPE(1, 3, h, w));
    if (!t) return NULL;
    /* ref: yformer/EfficientSAM/EfficientSAM_example.py:28 (ToTensor: one float32 division) */
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                t->data[(c * h + y) * w + x] = (float)img->data[(y * w + x) * 3 + c] / 255.0f;
    return t;
}

asam_tensor *asam_esam_preprocess(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != 3)
        return asam_ctx_fail(ctx, "efficientsam: input must be (B, 3, H, W)");
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:220 (resize any other size to
     * 1024x1024 with bilinear: aspect ratio not kept, no padding, no antialias) */
    if (x->shape[2] != ASAM_ESAM_IMG || x->shape[3] != ASAM_ESAM_IMG)
        x = asam_resize_bilinear_torch(ctx, x, ASAM_ESAM_IMG, ASAM_ESAM_IMG);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:229 (then (x - mean) / std) */
    asam_tensor *mean = asam_from_data(ctx, SHAPE(1, 3, 1, 1), k_mean);
    asam_tensor *std = asam_from_data(ctx, SHAPE(1, 3, 1, 1), k_std);
    return asam_div(ctx, asam_sub(ctx, x, mean), std);
}

asam_tensor *esam_pos_embed(asam_ctx *ctx, const asam_esam *m) {
    const int64_t g = m->cfg.pos_grid, C = m->cfg.embed_dim, G = ASAM_ESAM_GRID;
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:161 (drop the cls slot) */
    asam_tensor *p = asam_slice(ctx, m->enc.pos_embed, 1, 1, 1 + g * g);
    p = asam_reshape(ctx, p, SHAPE(1, g, g, C));
    if (g == G) return p;
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:167 (bicubic to 64x64,
     * align_corners=False, back to NHWC) */
    p = asam_permute(ctx, p, (const int[]){0, 3, 1, 2});
    p = asam_resize_bicubic(ctx, p, G, G);
    return asam_permute(ctx, p, (const int[]){0, 2, 3, 1});
}

asam_tensor *esam_patch_embed(asam_ctx *ctx, const asam_esam *m, asam_tensor *x) {
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:41 (conv 16x16/s16) */
    return asam_conv2d(ctx, x, m->enc.patch_w, m->enc.patch_b, 16, 0);
}

/* Without recording, drop the intermediates made since mk and keep t (bounded memory). */
static asam_tensor *keep(asam_ctx *ctx, asam_mark mk, asam_tensor *t) {
    if (!t || asam_ctx_grad_enabled(ctx)) return t;
    return asam_ctx_release_keep(ctx, mk, t);
}

/* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:70 (Attention.forward) */
static asam_tensor *vit_attention(asam_ctx *ctx, const esam_block *b, asam_tensor *x) {
    if (!x) return NULL;
    int64_t B = x->shape[0], N = x->shape[1], C = x->shape[2], nH = b->num_heads, hd = C / nH;
    asam_mark m0 = asam_ctx_mark(ctx);
    asam_tensor *qkv = asam_linear(ctx, x, b->qkv_w, b->qkv_b);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:74 (channels ordered
     * (3, heads, head_dim)) */
    qkv = asam_reshape(ctx, qkv, SHAPE(B, N, 3, nH, hd));
    qkv = keep(ctx, m0, asam_permute(ctx, qkv, (const int[]){2, 0, 3, 1, 4}));
    asam_tensor *q = asam_reshape(ctx, asam_slice0(ctx, qkv, 0, 1), SHAPE(B, nH, N, hd));
    asam_tensor *k = asam_reshape(ctx, asam_slice0(ctx, qkv, 1, 2), SHAPE(B, nH, N, hd));
    asam_tensor *v = asam_reshape(ctx, asam_slice0(ctx, qkv, 2, 3), SHAPE(B, nH, N, hd));
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:82 ((q @ k^T) * scale,
     * scale = head_dim ** -0.5 as float32) */
    asam_attn_opts o = {.scale = (float)pow((double)hd, -0.5)};
    asam_tensor *a = keep(ctx, m0, asam_attention(ctx, q, k, v, &o)); /* (B, nH, N, hd) */
    a = asam_reshape(ctx, asam_permute(ctx, a, (const int[]){0, 2, 1, 3}), SHAPE(B, N, C));
    return keep(ctx, m0, asam_linear(ctx, a, b->proj_w, b->proj_b));
}

asam_tensor *esam_block_forward(asam_ctx *ctx, const esam_block *b, asam_tensor *x) {
    if (!x) return NULL;
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:138 (pre-norm residuals,
     * LayerNorm eps 1e-6, exact GELU MLP) */
    asam_mark m1 = asam_ctx_mark(ctx);
    asam_tensor *h = asam_layer_norm(ctx, x, b->norm1_w, b->norm1_b, 1e-6f);
    x = keep(ctx, m1, asam_add(ctx, x, vit_attention(ctx, b, h)));
    asam_mark m2 = asam_ctx_mark(ctx);
    h = asam_layer_norm(ctx, x, b->norm2_w, b->norm2_b, 1e-6f);
    h = asam_gelu(ctx, asam_linear(ctx, h, b->fc1_w, b->fc1_b));
    h = asam_linear(ctx, h, b->fc2_w, b->fc2_b);
    return keep(ctx, m2, asam_add(ctx, x, h));
}

/* tokens (B, 4096, C) -> (B, D, 64, 64).
 * ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:222 (conv1x1 -> LayerNorm2d
 * -> conv3x3 -> LayerNorm2d, eps 1e-6, no conv biases) */
static asam_tensor *neck(asam_ctx *ctx, const asam_esam *m, asam_tensor *x) {
    const esam_encoder *e = &m->enc;
    const int64_t G = ASAM_ESAM_GRID;
    x = asam_reshape(ctx, x, SHAPE(x->shape[0], G, G, m->cfg.embed_dim));
    x = asam_permute(ctx, x, (const int[]){0, 3, 1, 2});
    x = asam_conv2d(ctx, x, e->neck0_w, NULL, 1, 0);
    x = asam_layer_norm2d(ctx, x, e->neck1_w, e->neck1_b, 1e-6f);
    x = asam_conv2d(ctx, x, e->neck2_w, NULL, 1, 1);
    return asam_layer_norm2d(ctx, x, e->neck3_w, e->neck3_b, 1e-6f);
}

static asam_tensor *block_segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    (void)n;
    return esam_block_forward(ctx, (const esam_block *)user, in[0]);
}

/* Does the input or any encoder weight need a gradient? */
static int encoder_needs_grad(const asam_esam *m, const asam_tensor *x) {
    if (x->requires_grad) return 1;
    for (int i = 0; i < m->n; i++)
        if (m->all[i]->requires_grad && !strncmp(m->names[i], "image_encoder.", 14)) return 1;
    return 0;
}

asam_tensor *asam_esam_encode(asam_ctx *ctx, const asam_esam *m, asam_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] != ASAM_ESAM_IMG ||
        x->shape[3] != ASAM_ESAM_IMG)
        return asam_ctx_fail(ctx, "efficientsam: encoder input must be (B, 3, 1024, 1024)");
    int grad = asam_ctx_grad_enabled(ctx) && encoder_needs_grad(m, x);
    const int64_t B = x->shape[0], G = ASAM_ESAM_GRID, C = m->cfg.embed_dim;
    asam_mark mk = asam_ctx_mark(ctx);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:244 (patch embed, NHWC,
     * + resampled pos_embed, flatten to 4096 tokens) */
    asam_tensor *h = esam_patch_embed(ctx, m, x);
    h = asam_permute(ctx, h, (const int[]){0, 2, 3, 1});
    h = asam_add(ctx, h, esam_pos_embed(ctx, m));
    h = asam_reshape(ctx, h, SHAPE(B, G * G, C));
    if (!grad && h) h = asam_ctx_release_keep(ctx, mk, h);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:253 */
    for (int i = 0; i < m->cfg.depth && h; i++) {
        const esam_block *b = &m->enc.blocks[i];
        if (grad) {
            /* recompute each block during backward: one block's activations at a time */
            h = asam_grad_checkpoint(ctx, block_segment, &h, 1, (void *)b);
        } else {
            asam_mark bm = asam_ctx_mark(ctx);
            h = esam_block_forward(ctx, b, h);
            if (h) h = asam_ctx_release_keep(ctx, bm, h);
        }
    }
    if (!h) return NULL;
    if (grad) return neck(ctx, m, h);
    asam_mark nm = asam_ctx_mark(ctx);
    asam_tensor *y = neck(ctx, m, h);
    return y ? asam_ctx_release_keep(ctx, nm, y) : NULL;
}
