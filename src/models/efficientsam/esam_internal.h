/* EfficientSAM internals: the weight structs shared by the model's source files. Names in the
 * comments are the official state-dict names; C = encoder width, D = decoder width. */
#ifndef ASAM_ESAM_INTERNAL_H
#define ASAM_ESAM_INTERNAL_H

#include "asam/efficientsam.h"

typedef struct {
    asam_tensor *norm1_w, *norm1_b; /* (C) blocks.i.norm1, LayerNorm eps 1e-6 */
    asam_tensor *qkv_w;             /* (3C, C) attn.qkv, channels (3, heads, head_dim) */
    asam_tensor *qkv_b;             /* (3C) */
    asam_tensor *proj_w;            /* (C, C) attn.proj */
    asam_tensor *proj_b;            /* (C) */
    asam_tensor *norm2_w, *norm2_b; /* (C) */
    asam_tensor *fc1_w;             /* (4C, C) mlp.fc1 */
    asam_tensor *fc1_b;             /* (4C) */
    asam_tensor *fc2_w;             /* (C, 4C) mlp.fc2 */
    asam_tensor *fc2_b;             /* (C) */
    int num_heads;
} esam_block;

typedef struct {
    asam_tensor *patch_w;   /* (C, 3, 16, 16) patch_embed.proj */
    asam_tensor *patch_b;   /* (C) */
    asam_tensor *pos_embed; /* (1, 1 + 14*14, C): cls slot (unused) + the pretrain grid */
    esam_block blocks[ASAM_ESAM_MAX_DEPTH];
    asam_tensor *neck0_w;           /* (D, C, 1, 1) neck.0, no bias */
    asam_tensor *neck1_w, *neck1_b; /* (D) LayerNorm2d eps 1e-6 */
    asam_tensor *neck2_w;           /* (D, D, 3, 3) neck.2, no bias */
    asam_tensor *neck3_w, *neck3_b; /* (D) LayerNorm2d */
} esam_encoder;

typedef struct {
    asam_tensor *gaussian; /* (2, D/2) pe_layer.positional_encoding_gaussian_matrix */
    asam_tensor *invalid;  /* (1, D) invalid_points: label -1 */
    asam_tensor *point;    /* (1, D) point_embeddings: label 1 */
    asam_tensor *box_tl;   /* (1, D) bbox_top_left_embeddings: label 2 */
    asam_tensor *box_br;   /* (1, D) bbox_bottom_right_embeddings: label 3 */
    asam_tensor *key_pe;   /* derived at load: dense PE as (1, 4096, D) image-token rows */
} esam_prompt_encoder;

typedef struct {
    asam_tensor *q_w, *q_b;     /* (I, D), (I); I = D self, D/2 cross */
    asam_tensor *k_w, *k_b;     /* (I, D), (I) */
    asam_tensor *v_w, *v_b;     /* (I, D), (I) */
    asam_tensor *out_w, *out_b; /* (D, I), (D) */
    int heads;
} esam_attn;

typedef struct {
    esam_attn self_attn, t2i, i2t;
    asam_tensor *norm_w[4], *norm_b[4]; /* norm1..norm4 (D), eps 1e-5 */
    asam_tensor *mlp0_w, *mlp0_b;       /* (M, D), (M) mlp.layers.0.0 */
    asam_tensor *fc_w, *fc_b;           /* (D, M), (D) mlp.fc */
} esam_twoway_layer;

/* MLPBlock(num_layers=2): Linear -> GELU -> Linear -> GELU -> fc */
typedef struct {
    asam_tensor *w0, *b0; /* (H, D), (H) layers.0.0 */
    asam_tensor *w1, *b1; /* (H, H), (H) layers.1.0 */
    asam_tensor *fc_w;    /* (out, H) fc */
    asam_tensor *fc_b;    /* (out) */
} esam_mlp;

typedef struct {
    esam_twoway_layer layers[8];
    esam_attn final_attn;
    asam_tensor *norm_final_w, *norm_final_b; /* (D) */
    asam_tensor *iou_token;                   /* (1, D) */
    asam_tensor *mask_tokens;                 /* (4, D) */
    asam_tensor *up0_w, *up0_b;               /* ConvTranspose (D, U0, 2, 2), (U0) */
    asam_tensor *gn_w, *gn_b;                 /* GroupNorm(1, U0) (U0) */
    asam_tensor *up1_w, *up1_b;               /* ConvTranspose (U0, U1, 2, 2), (U1) */
    esam_mlp hyper[4];                        /* out U1 */
    esam_mlp iou_head;                        /* hidden iou_hidden, out 4 */
} esam_decoder;

struct asam_esam {
    asam_esam_config cfg;
    esam_encoder enc;
    esam_prompt_encoder pe;
    esam_decoder dec;
    char path[1024];
    /* every bound tensor under its official name, in binding order (for saving and freeing) */
    asam_tensor **all;
    char **names;
    int n;
};

/* [sin, cos] of (2 * (x, y) - 1) @ G * float(2 pi); x, y in [0, 1] (the PE of one point). */
void esam_pe_encode(const asam_esam *m, float x, float y, float *out);
/* pos_embed's 14x14 grid resampled bicubically to (1, 64, 64, C). */
asam_tensor *esam_pos_embed(asam_ctx *ctx, const asam_esam *m);
/* Pieces for tests: patch embedding (NCHW, before pos_embed), one block on tokens (B, N, C). */
asam_tensor *esam_patch_embed(asam_ctx *ctx, const asam_esam *m, asam_tensor *x);
asam_tensor *esam_block_forward(asam_ctx *ctx, const esam_block *b, asam_tensor *x);

#endif
