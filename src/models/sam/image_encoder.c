/* SAM image encoder (ViT with windowed / global attention and decomposed relative positions),
 * written with engine ops so gradients reach the input image. */
#include "asam/sam.h"

#include <math.h>
#include <stdlib.h>

#define SHAPE(...) ASAM_SHAPE(__VA_ARGS__)

// ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:364
//   (PatchEmbed; :391 forward)
asam_tensor *asam_sam_patch_embed(asam_ctx *ctx, const asam_sam *m, asam_tensor *x) {
    asam_tensor *y = asam_conv2d(ctx, x, m->enc.patch_w, m->enc.patch_b, 16, 0); /* (B,C,G,G) */
    return asam_permute(ctx, y, (const int[]){0, 2, 3, 1});                      /* NHWC */
}

/* Relative-position table gathered to (S, S, hd): R[q, k] = rel_pos[q - k + S - 1]. The
 * gather is an embedding lookup so the tables receive gradients. */
// ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:292
//   (get_rel_pos)
static asam_tensor *gather_rel_pos(asam_ctx *ctx, asam_tensor *rel_pos, int S) {
    int64_t *ids = asam_ctx_alloc(ctx, sizeof(int64_t) * (size_t)S * (size_t)S);
    if (!ids) return asam_ctx_fail(ctx, "sam: out of memory");
    for (int q = 0; q < S; q++)
        for (int k = 0; k < S; k++) ids[q * S + k] = q - k + S - 1;
    asam_tensor *r = asam_embedding(ctx, rel_pos, ids, (int64_t)S * S);
    return asam_reshape(ctx, r, SHAPE(S, S, rel_pos->shape[1]));
}

/* Without recording (inference, or a checkpoint's first pass) drop the intermediates made
 * since m and keep t, so the arena's high-water mark (and the pages it keeps mapped) stays at
 * one block's phase. */
static asam_tensor *keep(asam_ctx *ctx, asam_mark m, asam_tensor *t) {
    if (!t || asam_ctx_grad_enabled(ctx)) return t;
    return asam_ctx_release_keep(ctx, m, t);
}

/* Multi-head attention with decomposed relative positions over x (Bw, S, S, C). */
// ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:224
//   (Attention.forward), :325 (add_decomposed_rel_pos)
static asam_tensor *vit_attention(asam_ctx *ctx, const asam_sam_block *b, asam_tensor *x, int S) {
    if (!x) return NULL;
    int64_t Bw = x->shape[0], C = x->shape[3], nH = b->num_heads, hd = C / nH, N = (int64_t)S * S;
    asam_mark m0 = asam_ctx_mark(ctx);
    asam_tensor *qkv = asam_linear(ctx, x, b->qkv_w, b->qkv_b); /* (Bw, S, S, 3C) */
    qkv = asam_reshape(ctx, qkv, SHAPE(Bw, N, 3, nH, hd));
    qkv = asam_permute(ctx, qkv, (const int[]){2, 0, 3, 1, 4}); /* (3, Bw, nH, N, hd) */
    qkv = keep(ctx, m0, qkv);
    asam_tensor *q = asam_reshape(ctx, asam_slice0(ctx, qkv, 0, 1), SHAPE(Bw, nH, N, hd));
    asam_tensor *k = asam_reshape(ctx, asam_slice0(ctx, qkv, 1, 2), SHAPE(Bw, nH, N, hd));
    asam_tensor *v = asam_reshape(ctx, asam_slice0(ctx, qkv, 2, 3), SHAPE(Bw, nH, N, hd));

    /* rel_h[b, qh, qw, kh] = sum_c q[b, qh, qw, c] Rh[qh, kh, c] with the UNSCALED q: one
     * batched matmul over qh (w: over qw). */
    asam_tensor *Rh = gather_rel_pos(ctx, b->rel_pos_h, S);
    asam_tensor *Rw = gather_rel_pos(ctx, b->rel_pos_w, S);
    int64_t BH = Bw * nH;
    asam_tensor *rq = asam_reshape(ctx, q, SHAPE(BH, S, S, hd));
    asam_tensor *ah = asam_permute(ctx, rq, (const int[]){1, 0, 2, 3}); /* (qh, BH, qw, hd) */
    ah = asam_reshape(ctx, ah, SHAPE(S, BH * S, hd));
    asam_tensor *rel_h = asam_matmul(ctx, ah, Rh, 0, 1); /* (qh, BH*qw, kh) */
    rel_h = asam_reshape(ctx, rel_h, SHAPE(S, BH, S, S));
    rel_h = asam_permute(ctx, rel_h, (const int[]){1, 0, 2, 3}); /* (BH, qh, qw, kh) */
    rel_h = asam_reshape(ctx, rel_h, SHAPE(Bw, nH, N, S));
    asam_tensor *aw = asam_permute(ctx, rq, (const int[]){2, 0, 1, 3}); /* (qw, BH, qh, hd) */
    aw = asam_reshape(ctx, aw, SHAPE(S, BH * S, hd));
    asam_tensor *rel_w = asam_matmul(ctx, aw, Rw, 0, 1); /* (qw, BH*qh, kw) */
    rel_w = asam_reshape(ctx, rel_w, SHAPE(S, BH, S, S));
    rel_w = asam_permute(ctx, rel_w, (const int[]){1, 2, 0, 3}); /* (BH, qh, qw, kw) */
    rel_w = asam_reshape(ctx, rel_w, SHAPE(Bw, nH, N, S));

    asam_attn_opts o = {.scale = 1.0f / sqrtf((float)hd), .rel_h = rel_h, .rel_w = rel_w};
    asam_tensor *a = asam_attention(ctx, q, k, v, &o); /* (Bw, nH, N, hd) */
    a = keep(ctx, m0, a);
    a = asam_permute(ctx, a, (const int[]){0, 2, 1, 3}); /* (Bw, N, nH, hd) */
    a = asam_reshape(ctx, a, SHAPE(Bw, S, S, C));
    return keep(ctx, m0, asam_linear(ctx, a, b->proj_w, b->proj_b));
}

// ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:166
//   (Block.forward; window_partition :243, window_unpartition :267)
asam_tensor *asam_sam_block_forward(asam_ctx *ctx, const asam_sam_block *b, asam_tensor *x) {
    if (!x) return NULL;
    int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
    asam_mark m1 = asam_ctx_mark(ctx);
    asam_tensor *h = asam_layer_norm(ctx, x, b->norm1_w, b->norm1_b, 1e-6f);
    if (b->window) {
        /* Zero-pad AFTER norm1 to a multiple of the window; padded tokens stay unmasked. */
        int64_t ws = b->window, ph = (ws - H % ws) % ws, pw = (ws - W % ws) % ws;
        int64_t Hp = H + ph, Wp = W + pw, nh = Hp / ws, nw = Wp / ws;
        if (ph || pw) h = asam_pad(ctx, h, (const int64_t[]){0, 0, 0, ph, 0, pw, 0, 0}, 0.0f);
        h = asam_reshape(ctx, h, SHAPE(B * nh, ws, nw, ws, C));
        h = asam_permute(ctx, h, (const int[]){0, 2, 1, 3, 4}); /* (B*nh, nw, ws, ws, C) */
        h = asam_reshape(ctx, h, SHAPE(B * nh * nw, ws, ws, C));
        h = vit_attention(ctx, b, h, (int)ws);
        /* Un-partition and crop the padding in one row gather (one copy instead of three). */
        int64_t *ids = asam_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(B * H * W));
        if (!ids) return asam_ctx_fail(ctx, "sam: out of memory");
        for (int64_t bi = 0; bi < B; bi++)
            for (int64_t i = 0; i < H; i++)
                for (int64_t j = 0; j < W; j++)
                    ids[(bi * H + i) * W + j] =
                        (((bi * nh + i / ws) * nw + j / ws) * ws + i % ws) * ws + j % ws;
        h = asam_reshape(ctx, h, SHAPE(B * nh * nw * ws * ws, C));
        h = asam_embedding(ctx, h, ids, B * H * W);
        h = asam_reshape(ctx, h, SHAPE(B, H, W, C));
    } else {
        h = vit_attention(ctx, b, h, (int)H);
    }
    x = keep(ctx, m1, asam_add(ctx, x, h));
    asam_mark m2 = asam_ctx_mark(ctx);
    h = asam_layer_norm(ctx, x, b->norm2_w, b->norm2_b, 1e-6f);
    h = asam_linear(ctx, h, b->lin1_w, b->lin1_b);
    h = asam_gelu(ctx, h);
    h = asam_linear(ctx, h, b->lin2_w, b->lin2_b);
    return keep(ctx, m2, asam_add(ctx, x, h));
}

asam_tensor *asam_sam_neck(asam_ctx *ctx, const asam_sam *m, asam_tensor *x) {
    const asam_sam_image_encoder *e = &m->enc;
    x = asam_permute(ctx, x, (const int[]){0, 3, 1, 2}); /* NCHW */
    x = asam_conv2d(ctx, x, e->neck0_w, NULL, 1, 0);
    x = asam_layer_norm2d(ctx, x, e->neck1_w, e->neck1_b, 1e-6f);
    x = asam_conv2d(ctx, x, e->neck2_w, NULL, 1, 1);
    return asam_layer_norm2d(ctx, x, e->neck3_w, e->neck3_b, 1e-6f);
}

static asam_tensor *block_segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    (void)n;
    return asam_sam_block_forward(ctx, (const asam_sam_block *)user, in[0]);
}

/* Does anything in the encoder (input or weights) need a gradient? */
static int encoder_needs_grad(const asam_sam *m, const asam_tensor *x) {
    const asam_sam_image_encoder *e = &m->enc;
    int g = x->requires_grad || e->patch_w->requires_grad || e->patch_b->requires_grad ||
            e->pos_embed->requires_grad || e->neck0_w->requires_grad || e->neck1_w->requires_grad ||
            e->neck1_b->requires_grad || e->neck2_w->requires_grad || e->neck3_w->requires_grad ||
            e->neck3_b->requires_grad;
    for (int i = 0; i < m->cfg.depth && !g; i++) {
        const asam_sam_block *b = &e->blocks[i];
        const asam_tensor *t[] = {b->norm1_w, b->norm1_b,   b->qkv_w,     b->qkv_b,   b->proj_w,
                                  b->proj_b,  b->rel_pos_h, b->rel_pos_w, b->norm2_w, b->norm2_b,
                                  b->lin1_w,  b->lin1_b,    b->lin2_w,    b->lin2_b};
        for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) g |= t[k]->requires_grad;
    }
    return g;
}

// ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:106
//   (ImageEncoderViT.forward)
asam_tensor *asam_sam_encode(asam_ctx *ctx, const asam_sam *m, asam_tensor *x) {
    if (!x) return NULL;
    const int S = asam_sam_img_size(m);
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] != S || x->shape[3] != S)
        return asam_ctx_fail(ctx, "sam: encoder input must be (B, 3, %d, %d)", S, S);
    /* Without anything to differentiate, run block by block in released arena regions. */
    int grad = asam_ctx_grad_enabled(ctx) && encoder_needs_grad(m, x);
    asam_mark mk = asam_ctx_mark(ctx);
    asam_tensor *h = asam_sam_patch_embed(ctx, m, x);
    h = asam_add(ctx, h, m->enc.pos_embed);
    if (!grad && h) h = asam_ctx_release_keep(ctx, mk, h);
    for (int i = 0; i < m->cfg.depth && h; i++) {
        const asam_sam_block *b = &m->enc.blocks[i];
        if (grad) {
            /* Recompute each block during backward: memory stays at one block's activations. */
            h = asam_grad_checkpoint(ctx, block_segment, &h, 1, (void *)b);
        } else {
            asam_mark bm = asam_ctx_mark(ctx);
            h = asam_sam_block_forward(ctx, b, h);
            if (h) h = asam_ctx_release_keep(ctx, bm, h);
        }
    }
    if (!h) return NULL;
    if (grad) return asam_sam_neck(ctx, m, h);
    asam_mark nm = asam_ctx_mark(ctx);
    asam_tensor *y = asam_sam_neck(ctx, m, h);
    return y ? asam_ctx_release_keep(ctx, nm, y) : NULL;
}
