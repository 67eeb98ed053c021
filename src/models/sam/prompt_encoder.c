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

/* Dense PE grid x = (j + 0.5) / 64, y = (i + 0.5) / 64 into chw (256, 64, 64) and hwc
 * (4096, 256); either may be NULL. */
// ref: facebookresearch/segment-anything segment_anything/modeling/prompt_encoder.py:194
//   (PositionEmbeddingRandom.forward), :62 (get_dense_pe)
void sam_compute_dense_pe(const asam_sam *m, float *chw, float *hwc) {
    const int n = ASAM_SAM_GRID;
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
    const int n = ASAM_SAM_GRID;
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
    if (mask->ndim != 4 || mask->shape[1] != 1 || mask->shape[2] != ASAM_SAM_LOWRES ||
        mask->shape[3] != ASAM_SAM_LOWRES)
        return asam_ctx_fail(ctx, "sam: mask input must be (B, 1, 256, 256)");
    asam_tensor *x = asam_conv2d(ctx, mask, p->md0_w, p->md0_b, 2, 0);
    x = asam_gelu(ctx, asam_layer_norm2d(ctx, x, p->md1_w, p->md1_b, 1e-6f));
    if (stage1) *stage1 = x;
    x = asam_conv2d(ctx, x, p->md3_w, p->md3_b, 2, 0);
    x = asam_gelu(ctx, asam_layer_norm2d(ctx, x, p->md4_w, p->md4_b, 1e-6f));
    if (stage2) *stage2 = x;
    return asam_conv2d(ctx, x, p->md6_w, p->md6_b, 1, 0);
}

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
    float *G = p->pe_gaussian->data;
    asam_tensor *sp = asam_new(ctx, ASAM_SHAPE(B, T, ASAM_SAM_DIM));
    if (!sp) return -1;
    for (int b = 0; b < B; b++) {
        float *row = sp->data + (int64_t)b * T * ASAM_SAM_DIM;
        for (int i = 0; i < N + pad; i++, row += ASAM_SAM_DIM) {
            float label = i < N ? pr->labels[b * N + i] : -1.0f;
            if (label == -1.0f) { /* coordinate irrelevant: PE zeroed */
                memcpy(row, p->not_a_point->data, sizeof(float) * ASAM_SAM_DIM);
                continue;
            }
            float x = pr->points[(b * N + i) * 2] + 0.5f,
                  y = pr->points[(b * N + i) * 2 + 1] + 0.5f;
            pe_encode(G, x / ASAM_SAM_IMG, y / ASAM_SAM_IMG, row);
            const float *add = label == 1.0f   ? p->point_embed[1]->data
                               : label == 0.0f ? p->point_embed[0]->data
                                               : NULL; /* other labels: bare PE */
            if (add)
                for (int c = 0; c < ASAM_SAM_DIM; c++) row[c] += add[c];
        }
        if (has_box) {
            for (int k = 0; k < 2; k++, row += ASAM_SAM_DIM) {
                float x = pr->boxes[b * 4 + 2 * k] + 0.5f, y = pr->boxes[b * 4 + 2 * k + 1] + 0.5f;
                pe_encode(G, x / ASAM_SAM_IMG, y / ASAM_SAM_IMG, row);
                const float *add = p->point_embed[2 + k]->data;
                for (int c = 0; c < ASAM_SAM_DIM; c++) row[c] += add[c];
            }
        }
    }
    *sparse = sp;
    if (pr->mask_input) {
        if (pr->mask_input->shape[0] != B)
            return asam_ctx_fail(ctx, "sam: mask input batch differs from the prompt batch"), -1;
        *dense = asam_sam_mask_downscale(ctx, m, pr->mask_input, NULL, NULL);
    } else {
        const int64_t hw = (int64_t)ASAM_SAM_GRID * ASAM_SAM_GRID;
        asam_tensor *d = asam_new(ctx, ASAM_SHAPE(B, ASAM_SAM_DIM, ASAM_SAM_GRID, ASAM_SAM_GRID));
        if (!d) return -1;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < ASAM_SAM_DIM; c++) {
                float v = p->no_mask->data[c];
                float *o = d->data + ((int64_t)b * ASAM_SAM_DIM + c) * hw;
                for (int64_t i = 0; i < hw; i++) o[i] = v;
            }
        *dense = d;
    }
    return *dense ? 0 : -1;
}
