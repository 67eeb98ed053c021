/* SAM prompt encoder: random-Fourier positional encoding of points / box corners, the dense
 * positional grid and the low-res mask downscaling. */
#include "asam/sam.h"
#include "models/sam/sam_internal.h"

#include <math.h>
#include <string.h>

/* [sin, cos] of (2*(x, y) - 1) @ G * (float)(2*pi); x, y already divided by the input size. */
// ref: facebookresearch/segment-anything segment_anything/modeling/prompt_encoder.py:185
//   (PositionEmbeddingRandom._pe_encoding)
static void pe_encode(const float *G, float x, float y, float *out) {
    float cx = 2.0f * x - 1.0f, cy = 2.0f * y - 1.0f;
    const float two_pi = (float)(2.0 * M_PI); /* Python folds 2*np.pi first: one f32 multiply */
    for (int j = 0; j < 128; j++) {
        /* torch's (1, 2) @ (2, 128) (CPU sgemm) rounds x * G0 and fuses y * G1 into it; the
         * 2 pi multiply makes every rounding count for far corners such as the (1e8, 1e8) box
         * of an empty mask (|v| ~ 1e5) */
        float v = fmaf(cy, G[128 + j], cx * G[j]);
        v = v * two_pi;
        out[j] = sinf(v);
        out[128 + j] = cosf(v);
    }
}

/* Dense PE grid x = (j + 0.5) / G, y = (i + 0.5) / G (G = 64 at 1024) into chw (256, G, G) and
 * hwc (G*G, 256); either may be NULL. */
// ref: facebookresearch/segment-anything segment_anything/modeling/prompt_encoder.py:194
//   (PositionEmbeddingRandom.forward), :62 (get_dense_pe)
void sam_compute_dense_pe(const asam_sam *m, float *chw, float *hwc) {
    const int n = asam_sam_grid(m);
    float pe[256];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            pe_encode(m->pe.pe_gaussian->data, (j + 0.5f) / n, (i + 0.5f) / n, pe);
            if (chw)
                for (int c = 0; c < 256; c++) chw[(int64_t)c * n * n + i * n + j] = pe[c];
            if (hwc) memcpy(hwc + ((int64_t)i * n + j) * 256, pe, sizeof pe);
        }
}

asam_tensor *asam_sam_dense_pe(asam_ctx *ctx, const asam_sam *m) {
    if (m->pe.dense_pe) return asam_detach(ctx, m->pe.dense_pe);
    const int n = asam_sam_grid(m);
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(1, ASAM_SAM_DIM, n, n));
    if (t) sam_compute_dense_pe(m, t->data, NULL);
    return t;
}

// ref: facebookresearch/segment-anything segment_anything/modeling/prompt_encoder.py:102
//   (_embed_masks)
asam_tensor *asam_sam_mask_downscale(asam_ctx *ctx, const asam_sam *m, asam_tensor *mask,
                                     asam_tensor **stage1, asam_tensor **stage2) {
    const asam_sam_prompt_encoder *p = &m->pe;
    if (!mask) return NULL;
    const int L = asam_sam_lowres(m);
    if (mask->ndim != 4 || mask->shape[1] != 1 || mask->shape[2] != L || mask->shape[3] != L)
        return asam_ctx_fail(ctx, "sam: mask input must be (B, 1, %d, %d)", L, L);
    asam_tensor *x = asam_conv2d(ctx, mask, p->md0_w, p->md0_b, 2, 0);
    x = asam_gelu(ctx, asam_layer_norm2d(ctx, x, p->md1_w, p->md1_b, 1e-6f));
    if (stage1) *stage1 = x;
    x = asam_conv2d(ctx, x, p->md3_w, p->md3_b, 2, 0);
    x = asam_gelu(ctx, asam_layer_norm2d(ctx, x, p->md4_w, p->md4_b, 1e-6f));
    if (stage2) *stage2 = x;
    return asam_conv2d(ctx, x, p->md6_w, p->md6_b, 1, 0);
}

/* The sparse tokens are PE(coordinate) + a learned embedding per token kind. The PE part is a
 * constant (pe_gaussian is a buffer in the official model, never trained); the embeddings are
 * gathered from a small table with an embedding op, and the dense "no mask" embedding is
 * broadcast with an add, so gradients reach point_embeddings, not_a_point_embed and
 * no_mask_embed when they are trained (asam train-sam). The sums are the same float adds as
 * the official code's, so the values are unchanged. */
enum { TOK_NEG, TOK_POS, TOK_TL, TOK_BR, TOK_NOT_A_POINT, TOK_BARE, TOK_KINDS };

// ref: facebookresearch/segment-anything segment_anything/modeling/prompt_encoder.py:128 (forward;
//   _embed_points :73, _embed_boxes :93)
int asam_sam_prompt_encode(asam_ctx *ctx, const asam_sam *m, const asam_sam_prompt *pr,
                           asam_tensor **sparse, asam_tensor **dense) {
    const asam_sam_prompt_encoder *p = &m->pe;
    *sparse = *dense = NULL;
    int B = pr->batch > 0 ? pr->batch : 1;
    int N = pr->points ? pr->n_points : 0;
    int has_box = pr->boxes != NULL;
    int pad = N > 0 && !has_box; /* a padding point (label -1) only when there is no box */
    int T = N + pad + 2 * has_box;
    if (N > 0 && !pr->labels) return asam_ctx_fail(ctx, "sam: points without labels"), -1;
    if (N < 0) return asam_ctx_fail(ctx, "sam: negative point count"), -1;
    const float S = (float)asam_sam_img_size(m); /* coordinates / input size */
    const int64_t D = ASAM_SAM_DIM, BT = (int64_t)B * T;
    float *G = p->pe_gaussian->data;
    asam_tensor *sp;
    if (T == 0) {
        sp = asam_new(ctx, ASAM_SHAPE(B, 0, D));
    } else {
        asam_tensor *pe = asam_zeros(ctx, ASAM_SHAPE(BT, D)); /* not-a-point rows: no PE */
        int64_t *kind = asam_ctx_alloc(ctx, sizeof(int64_t) * (size_t)BT);
        if (!pe || !kind) return -1;
        for (int b = 0; b < B; b++) {
            int64_t r = (int64_t)b * T;
            for (int i = 0; i < N + pad; i++, r++) {
                float label = i < N ? pr->labels[b * N + i] : -1.0f;
                if (label == -1.0f) { /* coordinate irrelevant: PE zeroed */
                    kind[r] = TOK_NOT_A_POINT;
                    continue;
                }
                float x = pr->points[(b * N + i) * 2] + 0.5f,
                      y = pr->points[(b * N + i) * 2 + 1] + 0.5f;
                pe_encode(G, x / S, y / S, pe->data + r * D);
                kind[r] = label == 1.0f   ? TOK_POS
                          : label == 0.0f ? TOK_NEG
                                          : TOK_BARE; /* other labels: bare PE */
            }
            for (int k = 0; has_box && k < 2; k++, r++) {
                float x = pr->boxes[b * 4 + 2 * k] + 0.5f, y = pr->boxes[b * 4 + 2 * k + 1] + 0.5f;
                pe_encode(G, x / S, y / S, pe->data + r * D);
                kind[r] = k == 0 ? TOK_TL : TOK_BR;
            }
        }
        asam_tensor *rows[TOK_KINDS] = {p->point_embed[0], p->point_embed[1],
                                        p->point_embed[2], p->point_embed[3],
                                        p->not_a_point,    asam_zeros(ctx, ASAM_SHAPE(1, D))};
        asam_tensor *table = asam_concat(ctx, rows, TOK_KINDS, 0); /* (6, 256) */
        asam_tensor *emb = asam_embedding(ctx, table, kind, BT);   /* (B*T, 256) */
        sp = asam_reshape(ctx, asam_add(ctx, pe, emb), ASAM_SHAPE(B, T, D));
    }
    if (!sp) return -1;
    *sparse = sp;
    if (pr->mask_input) {
        if (pr->mask_input->shape[0] != B)
            return asam_ctx_fail(ctx, "sam: mask input batch differs from the prompt batch"), -1;
        *dense = asam_sam_mask_downscale(ctx, m, pr->mask_input, NULL, NULL);
    } else {
        const int64_t g = asam_sam_grid(m);
        asam_tensor *nm = asam_reshape(ctx, p->no_mask, ASAM_SHAPE(1, D, 1, 1));
        *dense = asam_add(ctx, asam_zeros(ctx, ASAM_SHAPE(B, D, g, g)), nm); /* expand */
    }
    return *dense ? 0 : -1;
}
