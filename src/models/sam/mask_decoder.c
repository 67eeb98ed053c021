/* SAM mask decoder: two-way transformer between prompt tokens and the image embedding, output
 * upscaling, hypernetwork MLPs and the IoU head. All engine ops: gradients reach the image
 * embedding and the iou / mask tokens. */
#include "asam/sam.h"

#include <math.h>

#define SHAPE(...) ASAM_SHAPE(__VA_ARGS__)

/* q (B, Nq, 256), k/v (B, Nk, 256) -> (B, Nq, 256); heads split the (possibly downsampled)
 * internal width. */
// ref: facebookresearch/segment-anything segment_anything/modeling/transformer.py:218
//   (Attention.forward)
static asam_tensor *dec_attn(asam_ctx *ctx, const asam_sam_attn *a, asam_tensor *q, asam_tensor *k,
                             asam_tensor *v) {
    if (!q || !k || !v) return NULL;
    int64_t B = q->shape[0], Nq = q->shape[1], Nk = k->shape[1];
    int64_t I = a->q_w->shape[0], h = a->heads, d = I / h;
    asam_tensor *qp = asam_linear(ctx, q, a->q_w, a->q_b);
    asam_tensor *kp = asam_linear(ctx, k, a->k_w, a->k_b);
    asam_tensor *vp = asam_linear(ctx, v, a->v_w, a->v_b);
    const int perm[4] = {0, 2, 1, 3};
    qp = asam_permute(ctx, asam_reshape(ctx, qp, SHAPE(B, Nq, h, d)), perm);
    kp = asam_permute(ctx, asam_reshape(ctx, kp, SHAPE(B, Nk, h, d)), perm);
    vp = asam_permute(ctx, asam_reshape(ctx, vp, SHAPE(B, Nk, h, d)), perm);
    asam_attn_opts o = {.scale = 1.0f / sqrtf((float)d)};
    asam_tensor *out = asam_attention(ctx, qp, kp, vp, &o); /* (B, h, Nq, d) */
    out = asam_reshape(ctx, asam_permute(ctx, out, perm), SHAPE(B, Nq, I));
    return asam_linear(ctx, out, a->out_w, a->out_b);
}

// ref: facebookresearch/segment-anything segment_anything/modeling/mask_decoder.py:171
//   (MLP.forward)
static asam_tensor *mlp3(asam_ctx *ctx, const asam_sam_mlp3 *m, asam_tensor *x) {
    x = asam_relu(ctx, asam_linear(ctx, x, m->w[0], m->b[0]));
    x = asam_relu(ctx, asam_linear(ctx, x, m->w[1], m->b[1]));
    return asam_linear(ctx, x, m->w[2], m->b[2]);
}

/* One TwoWayAttentionBlock; post-norm LayerNorms with eps 1e-5. */
// ref: facebookresearch/segment-anything segment_anything/modeling/transformer.py:151
//   (TwoWayAttentionBlock.forward)
static void twoway_layer(asam_ctx *ctx, const asam_sam_twoway_layer *L, int first,
                         asam_tensor **queries, asam_tensor **keys, asam_tensor *query_pe,
                         asam_tensor *key_pe) {
    asam_tensor *qs = *queries, *ks = *keys;
    if (first) { /* layer 0: no PE and no residual */
        qs = dec_attn(ctx, &L->self_attn, qs, qs, qs);
    } else {
        asam_tensor *q = asam_add(ctx, qs, query_pe);
        qs = asam_add(ctx, qs, dec_attn(ctx, &L->self_attn, q, q, qs));
    }
    qs = asam_layer_norm(ctx, qs, L->norm_w[0], L->norm_b[0], 1e-5f);
    asam_tensor *q = asam_add(ctx, qs, query_pe);
    asam_tensor *k = asam_add(ctx, ks, key_pe);
    qs = asam_add(ctx, qs, dec_attn(ctx, &L->t2i, q, k, ks));
    qs = asam_layer_norm(ctx, qs, L->norm_w[1], L->norm_b[1], 1e-5f);
    asam_tensor *h = asam_relu(ctx, asam_linear(ctx, qs, L->mlp1_w, L->mlp1_b));
    qs = asam_add(ctx, qs, asam_linear(ctx, h, L->mlp2_w, L->mlp2_b));
    qs = asam_layer_norm(ctx, qs, L->norm_w[2], L->norm_b[2], 1e-5f);
    q = asam_add(ctx, qs, query_pe);
    k = asam_add(ctx, ks, key_pe);
    ks = asam_add(ctx, ks, dec_attn(ctx, &L->i2t, k, q, qs));
    ks = asam_layer_norm(ctx, ks, L->norm_w[3], L->norm_b[3], 1e-5f);
    *queries = qs;
    *keys = ks;
}

// ref: facebookresearch/segment-anything segment_anything/modeling/mask_decoder.py:71 (forward),
//   :112 (predict_masks); transformer.py:62 (TwoWayTransformer.forward)
int asam_sam_decode(asam_ctx *ctx, const asam_sam *m, asam_tensor *embedding, asam_tensor *sparse,
                    asam_tensor *dense, int multimask, asam_tensor **low_res, asam_tensor **iou,
                    asam_sam_decoder_trace *trace) {
    const asam_sam_mask_decoder *d = &m->dec;
    *low_res = *iou = NULL;
    if (!embedding || !sparse || !dense) return -1;
    const int64_t D = ASAM_SAM_DIM, G = asam_sam_grid(m), HW = G * G;
    if (embedding->ndim != 4 || embedding->shape[0] != 1 || embedding->shape[1] != D ||
        embedding->shape[2] != G || embedding->shape[3] != G) {
        asam_ctx_fail(ctx, "sam: image embedding must be (1, 256, %lld, %lld)", (long long)G,
                      (long long)G);
        return -1;
    }
    int64_t B = sparse->shape[0], T = sparse->shape[1];
    if (dense->shape[0] != B) {
        asam_ctx_fail(ctx, "sam: dense and sparse prompt batches differ");
        return -1;
    }
    /* tokens = [iou_token, mask_tokens, sparse...] per prompt */
    asam_tensor *parts[2] = {d->iou_token, d->mask_tokens};
    asam_tensor *out_tok = asam_concat(ctx, parts, 2, 0);                          /* (5, 256) */
    asam_tensor *tokens = asam_add(ctx, asam_zeros(ctx, SHAPE(B, 5, D)), out_tok); /* expand */
    if (T > 0) {
        asam_tensor *tp[2] = {tokens, sparse};
        tokens = asam_concat(ctx, tp, 2, 1); /* (B, 5+T, 256) */
    }
    asam_tensor *src = asam_add(ctx, embedding, dense); /* broadcast over B */
    asam_tensor *keys = asam_transpose(ctx, asam_reshape(ctx, src, SHAPE(B, D, HW)), 1, 2);
    asam_tensor *key_pe;
    if (m->pe.key_pe) {
        key_pe = asam_detach(ctx, m->pe.key_pe); /* cached at load */
    } else {
        asam_tensor *pe = asam_sam_dense_pe(ctx, m);
        key_pe = asam_transpose(ctx, asam_reshape(ctx, pe, SHAPE(1, D, HW)), 1, 2);
    }

    asam_tensor *queries = tokens;
    for (int l = 0; l < 2; l++)
        twoway_layer(ctx, &d->layers[l], l == 0, &queries, &keys, tokens, key_pe);
    asam_tensor *q = asam_add(ctx, queries, tokens);
    asam_tensor *k = asam_add(ctx, keys, key_pe);
    queries = asam_add(ctx, queries, dec_attn(ctx, &d->final_attn, q, k, keys));
    queries = asam_layer_norm(ctx, queries, d->norm_final_w, d->norm_final_b, 1e-5f);

    /* Upscale the image tokens 4x: 64 -> 256 (G -> 4G) */
    asam_tensor *up = asam_reshape(ctx, asam_transpose(ctx, keys, 1, 2), SHAPE(B, D, G, G));
    up = asam_conv_transpose2d(ctx, up, d->up0_w, d->up0_b, 2);
    up = asam_gelu(ctx, asam_layer_norm2d(ctx, up, d->up1_w, d->up1_b, 1e-6f));
    up = asam_gelu(ctx, asam_conv_transpose2d(ctx, up, d->up3_w, d->up3_b, 2)); /* (B,32,4G,4G) */

    asam_tensor *hyper[4];
    for (int i = 0; i < 4; i++)
        hyper[i] =
            mlp3(ctx, &d->hyper[i], asam_slice(ctx, queries, 1, 1 + i, 2 + i)); /* (B,1,32) */
    asam_tensor *hyper_in = asam_concat(ctx, hyper, 4, 1);                      /* (B,4,32) */
    const int64_t L = 4 * G;
    asam_tensor *masks =
        asam_matmul(ctx, hyper_in, asam_reshape(ctx, up, SHAPE(B, 32, L * L)), 0, 0);
    masks = asam_reshape(ctx, masks, SHAPE(B, 4, L, L));
    asam_tensor *iou_all = mlp3(ctx, &d->iou_head, asam_slice(ctx, queries, 1, 0, 1));
    iou_all = asam_reshape(ctx, iou_all, SHAPE(B, 4));

    if (trace) {
        trace->tokens_out = queries;
        trace->hyper_in = hyper_in;
        trace->all_masks = masks;
        trace->all_iou = iou_all;
    }
    int s0 = multimask ? 1 : 0, s1 = multimask ? 4 : 1;
    *low_res = asam_slice(ctx, masks, 1, s0, s1);
    *iou = asam_slice(ctx, iou_all, 1, s0, s1);
    return *low_res && *iou && asam_ctx_ok(ctx) ? 0 : -1;
}

// ref: facebookresearch/segment-anything segment_anything/modeling/sam.py:133 (postprocess_masks)
asam_tensor *asam_sam_postprocess(asam_ctx *ctx, asam_tensor *low_res, const asam_sam_sizes *s) {
    if (!low_res) return NULL;
    if (low_res->ndim < 2) return asam_ctx_fail(ctx, "sam: low-res masks (.., L, L) expected");
    /* The input side is 4x the low-res side (1024 for 256): image_encoder.img_size. */
    const int64_t S = 4 * low_res->shape[low_res->ndim - 1];
    if (low_res->shape[low_res->ndim - 2] * 4 != S || s->input_h > S || s->input_w > S)
        return asam_ctx_fail(ctx, "sam: low-res masks (.., L, L) with input size <= 4L expected");
    asam_tensor *x = asam_resize_bilinear(ctx, low_res, S, S);
    if (s->input_h < S) x = asam_slice(ctx, x, -2, 0, s->input_h);
    if (s->input_w < S) x = asam_slice(ctx, x, -1, 0, s->input_w);
    if (s->orig_h == s->input_h && s->orig_w == s->input_w) return x;
    return asam_resize_bilinear(ctx, x, s->orig_h, s->orig_w);
}
