/* EfficientSAM prompt encoder and mask decoder: six-point prompts, the two-way transformer
 * (whose self-attention keeps its residual in layer 0 and adds the PE into the stream in later
 * layers), GroupNorm(1, C) upscaling, hypernetwork MLPs, the IoU head, and the bicubic
 * resize of the logits. Engine ops: gradients reach the image embedding and the tokens. */
#include "models/efficientsam/esam_internal.h"

#include <math.h>
#include <string.h>

#define SHAPE(...) ASAM_SHAPE(__VA_ARGS__)

/* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:107 (_pe_encoding) */
void esam_pe_encode(const asam_esam *m, float x, float y, float *out) {
    const int F = m->cfg.dim / 2;
    const float *G = m->pe.gaussian->data;
    float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:112 (Python folds
     * 2 * np.pi first: one float32 multiply) */
    const float two_pi = (float)(2.0 * M_PI);
    for (int j = 0; j < F; j++) {
        float v = cx * G[j] + cy * G[F + j];
        v = v * two_pi;
        out[j] = sinf(v);
        out[F + j] = cosf(v);
    }
}

void asam_esam_prepare_points(int Q, int n, const float *xy, const float *labels, int orig_h,
                              int orig_w, float *coords6, float *labels6) {
    const int P = ASAM_ESAM_POINTS;
    for (int q = 0; q < Q; q++)
        for (int i = 0; i < P; i++) {
            float *c = coords6 + ((int64_t)q * P + i) * 2;
            if (i >= n) {
                /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:93 (pad with -1
                 * coordinates and label -1, after rescaling) */
                c[0] = c[1] = -1.0f;
                labels6[q * P + i] = -1.0f;
                continue;
            }
            /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:85 (only the first 6) */
            const float *s = xy + ((int64_t)q * n + i) * 2;
            /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:153 ((x * 1024) / W in
             * float32 when x >= 0, else -1, per axis) */
            c[0] = s[0] >= 0 ? (s[0] * (float)ASAM_ESAM_IMG) / (float)orig_w : -1.0f;
            c[1] = s[1] >= 0 ? (s[1] * (float)ASAM_ESAM_IMG) / (float)orig_h : -1.0f;
            labels6[q * P + i] = labels[(int64_t)q * n + i];
        }
}

asam_tensor *asam_esam_prompt_encode(asam_ctx *ctx, const asam_esam *m, int Q, const float *coords6,
                                     const float *labels6) {
    const int P = ASAM_ESAM_POINTS, D = m->cfg.dim;
    if (Q <= 0) return asam_ctx_fail(ctx, "efficientsam: no query");
    asam_tensor *sp = asam_new(ctx, SHAPE(Q, P, D));
    if (!sp) return NULL;
    const esam_prompt_encoder *pe = &m->pe;
    for (int i = 0; i < Q * P; i++) {
        float *row = sp->data + (int64_t)i * D;
        /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:61 (+0.5, then / 1024
         * on both axes, efficient_sam_decoder.py:134) */
        float x = (coords6[2 * i] + 0.5f) / (float)ASAM_ESAM_IMG;
        float y = (coords6[2 * i + 1] + 0.5f) / (float)ASAM_ESAM_IMG;
        esam_pe_encode(m, x, y, row);
        /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:69 (label embeddings
         * are ADDED to the PE; labels other than -1, 1, 2, 3, background 0 included, keep the
         * bare PE) */
        float l = labels6[i];
        const asam_tensor *add = l == -1.0f  ? pe->invalid
                                 : l == 1.0f ? pe->point
                                 : l == 2.0f ? pe->box_tl
                                 : l == 3.0f ? pe->box_br
                                             : NULL;
        if (add)
            for (int c = 0; c < D; c++) row[c] += add->data[c];
    }
    return sp;
}

/* q (B, Nq, D), k/v (B, Nk, D) -> (B, Nq, D).
 * ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:246 */
static asam_tensor *dec_attn(asam_ctx *ctx, const esam_attn *a, asam_tensor *q, asam_tensor *k,
                             asam_tensor *v) {
    if (!q || !k || !v) return NULL;
    int64_t B = q->shape[0] > k->shape[0] ? q->shape[0] : k->shape[0];
    int64_t Nq = q->shape[1], Nk = k->shape[1];
    int64_t I = a->q_w->shape[0], h = a->heads, d = I / h;
    asam_tensor *qp = asam_linear(ctx, q, a->q_w, a->q_b);
    asam_tensor *kp = asam_linear(ctx, k, a->k_w, a->k_b);
    asam_tensor *vp = asam_linear(ctx, v, a->v_w, a->v_b);
    const int perm[4] = {0, 2, 1, 3};
    qp = asam_permute(ctx, asam_reshape(ctx, qp, SHAPE(B, Nq, h, d)), perm);
    kp = asam_permute(ctx, asam_reshape(ctx, kp, SHAPE(B, Nk, h, d)), perm);
    vp = asam_permute(ctx, asam_reshape(ctx, vp, SHAPE(B, Nk, h, d)), perm);
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:259 ((q @ k^T) *
     * float32(1 / sqrt(c_per_head)), a multiplication after the matmul) */
    asam_attn_opts o = {.scale = (float)(1.0 / sqrt((double)d))};
    asam_tensor *out = asam_attention(ctx, qp, kp, vp, &o);
    out = asam_reshape(ctx, asam_permute(ctx, out, perm), SHAPE(B, Nq, I));
    return asam_linear(ctx, out, a->out_w, a->out_b);
}

/* ref: yformer/EfficientSAM/efficient_sam/mlp.py:26 (Linear -> GELU, twice, then fc) */
static asam_tensor *mlp(asam_ctx *ctx, const esam_mlp *m, asam_tensor *x) {
    x = asam_gelu(ctx, asam_linear(ctx, x, m->w0, m->b0));
    x = asam_gelu(ctx, asam_linear(ctx, x, m->w1, m->b1));
    return asam_linear(ctx, x, m->fc_w, m->fc_b);
}

/* One TwoWayAttentionBlock; post-norm LayerNorms eps 1e-5.
 * ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:160 */
static void twoway_layer(asam_ctx *ctx, const esam_twoway_layer *L, int first,
                         asam_tensor **queries, asam_tensor **keys, asam_tensor *query_pe,
                         asam_tensor *key_pe) {
    asam_tensor *qs = *queries, *ks = *keys;
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:164 (after layer 0 the PE
     * is added to the queries themselves, so it enters the residual and v; the residual is
     * kept in layer 0 too, unlike SAM) */
    if (!first) qs = asam_add(ctx, qs, query_pe);
    qs = asam_add(ctx, qs, dec_attn(ctx, &L->self_attn, qs, qs, qs));
    qs = asam_layer_norm(ctx, qs, L->norm_w[0], L->norm_b[0], 1e-5f);
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:171 (tokens -> image) */
    asam_tensor *q = asam_add(ctx, qs, query_pe);
    asam_tensor *k = asam_add(ctx, ks, key_pe);
    qs = asam_add(ctx, qs, dec_attn(ctx, &L->t2i, q, k, ks));
    qs = asam_layer_norm(ctx, qs, L->norm_w[1], L->norm_b[1], 1e-5f);
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:178 (MLPBlock with one
     * hidden layer: Linear -> GELU -> fc) */
    asam_tensor *h = asam_gelu(ctx, asam_linear(ctx, qs, L->mlp0_w, L->mlp0_b));
    qs = asam_add(ctx, qs, asam_linear(ctx, h, L->fc_w, L->fc_b));
    qs = asam_layer_norm(ctx, qs, L->norm_w[2], L->norm_b[2], 1e-5f);
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:183 (image -> tokens) */
    q = asam_add(ctx, qs, query_pe);
    k = asam_add(ctx, ks, key_pe);
    ks = asam_add(ctx, ks, dec_attn(ctx, &L->i2t, k, q, qs));
    ks = asam_layer_norm(ctx, ks, L->norm_w[3], L->norm_b[3], 1e-5f);
    *queries = qs;
    *keys = ks;
}

int asam_esam_decode(asam_ctx *ctx, const asam_esam *m, asam_tensor *embedding, asam_tensor *sparse,
                     int multimask, asam_tensor **low_res, asam_tensor **iou,
                     asam_esam_decoder_trace *trace) {
    const esam_decoder *d = &m->dec;
    *low_res = *iou = NULL;
    if (!embedding || !sparse) return -1;
    const int64_t D = m->cfg.dim, G = ASAM_ESAM_GRID, HW = G * G;
    if (embedding->ndim != 4 || embedding->shape[0] != 1 || embedding->shape[1] != D ||
        embedding->shape[2] != G || embedding->shape[3] != G) {
        asam_ctx_fail(ctx, "efficientsam: image embedding must be (1, %lld, 64, 64)", (long long)D);
        return -1;
    }
    if (sparse->ndim != 3 || sparse->shape[2] != D) {
        asam_ctx_fail(ctx, "efficientsam: sparse embeddings must be (Q, 6, %lld)", (long long)D);
        return -1;
    }
    const int64_t Q = sparse->shape[0];
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:288 (tokens = [iou_token,
     * mask_tokens, sparse] per query) */
    asam_tensor *parts[2] = {d->iou_token, d->mask_tokens};
    asam_tensor *out_tok = asam_concat(ctx, parts, 2, 0); /* (5, D) */
    asam_tensor *tokens = asam_add(ctx, asam_zeros(ctx, SHAPE(Q, 5, D)), out_tok);
    asam_tensor *tp[2] = {tokens, sparse};
    tokens = asam_concat(ctx, tp, 2, 1); /* (Q, 11, D) */
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:259 (the image embedding
     * tiled per query, no dense prompt added) */
    asam_tensor *keys = asam_transpose(ctx, asam_reshape(ctx, embedding, SHAPE(1, D, HW)), 1, 2);
    if (Q > 1) keys = asam_add(ctx, asam_zeros(ctx, SHAPE(Q, HW, D)), keys);
    asam_tensor *key_pe = asam_detach(ctx, m->pe.key_pe); /* (1, 4096, D) */

    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:89 */
    asam_tensor *queries = tokens;
    for (int l = 0; l < m->cfg.dec_depth; l++)
        twoway_layer(ctx, &d->layers[l], l == 0, &queries, &keys, tokens, key_pe);
    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:98 (final attention) */
    asam_tensor *q = asam_add(ctx, queries, tokens);
    asam_tensor *k = asam_add(ctx, keys, key_pe);
    queries = asam_add(ctx, queries, dec_attn(ctx, &d->final_attn, q, k, keys));
    queries = asam_layer_norm(ctx, queries, d->norm_final_w, d->norm_final_b, 1e-5f);

    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:303 (upscale 64 -> 256:
     * ConvT -> GroupNorm(1, U0) -> GELU, ConvT -> GELU; decoder.py:193 builds them) */
    asam_tensor *up = asam_reshape(ctx, asam_transpose(ctx, keys, 1, 2), SHAPE(Q, D, G, G));
    up = asam_conv_transpose2d(ctx, up, d->up0_w, d->up0_b, 2);
    up = asam_gelu(ctx, asam_group_norm(ctx, up, 1, d->gn_w, d->gn_b, 1e-5f));
    asam_tensor *up0 = up;
    up = asam_gelu(ctx, asam_conv_transpose2d(ctx, up, d->up1_w, d->up1_b, 2));

    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:308 (hypernetworks) */
    asam_tensor *hyper[4];
    for (int i = 0; i < 4; i++)
        hyper[i] = mlp(ctx, &d->hyper[i], asam_slice(ctx, queries, 1, 1 + i, 2 + i));
    asam_tensor *hyper_in = asam_concat(ctx, hyper, 4, 1); /* (Q, 4, U1) */
    const int64_t L = ASAM_ESAM_LOWRES, U1 = m->cfg.up_dims[1];
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:312 */
    asam_tensor *masks =
        asam_matmul(ctx, hyper_in, asam_reshape(ctx, up, SHAPE(Q, U1, L * L)), 0, 0);
    masks = asam_reshape(ctx, masks, SHAPE(Q, 4, L, L));
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:314 (raw IoU) */
    asam_tensor *iou_all = mlp(ctx, &d->iou_head, asam_slice(ctx, queries, 1, 0, 1));
    iou_all = asam_reshape(ctx, iou_all, SHAPE(Q, 4));
    if (trace) {
        trace->queries_out = queries;
        trace->keys_out = keys;
        trace->upscale0 = up0;
        trace->upscaled = up;
        trace->hyper_in = hyper_in;
        trace->all_masks = masks;
        trace->all_iou = iou_all;
    }
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:275 */
    int s0 = multimask ? 1 : 0, s1 = multimask ? 4 : 1;
    *low_res = asam_slice(ctx, masks, 1, s0, s1);
    *iou = asam_slice(ctx, iou_all, 1, s0, s1);
    return *low_res && *iou && asam_ctx_ok(ctx) ? 0 : -1;
}

asam_tensor *asam_esam_postprocess(asam_ctx *ctx, asam_tensor *low_res, int orig_h, int orig_w) {
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:127 (bicubic straight to the
     * original size: the 1024 frame is the whole image) */
    return asam_resize_bicubic(ctx, low_res, orig_h, orig_w);
}
