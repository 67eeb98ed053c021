/* Segment Anything (ViT-B/L/H) on the asam engine.
 *
 * Weights are bound by their official state-dict names (the .pth from facebookresearch/
 * segment-anything, or a safetensors with the same names); the encoder configuration (width,
 * depth, heads, window size, global-attention blocks) is read from the tensor shapes.
 *
 * Every stage is built from engine ops, so gradients flow from the low-res logits / IoU
 * predictions back to the decoder parameters, the image embedding, the normalised 1024 input
 * and the 0..255 pixels before it. Coordinates follow the official predictor: prompts given to
 * asam_sam_prompt_encode() are in the 1024-input frame (after the ResizeLongestSide transform);
 * asam_sam_transform_coords() maps original-image pixels into that frame.
 *
 * Sizes: the shapes below are the official 1024 model's. A SAM built for input side S (a
 * multiple of 16, read from pos_embed; e.g. a miniature trained at 128) has the same code path
 * with every 1024 read as S, 64 (embedding side) as S / 16 and 256 (low-res masks) as S / 4,
 * as build_sam.py's image_size / image_embedding_size parameters. */
#ifndef ASAM_SAM_H
#define ASAM_SAM_H

#include "asam/engine.h"
#include "asam/image.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The official sizes. A model built for another input size (asam_sam_config.img_size) uses
 * asam_sam_img_size() / _grid() / _lowres() instead; these constants are the upper bounds. */
#define ASAM_SAM_IMG 1024   /* input side */
#define ASAM_SAM_GRID 64    /* embedding side (1024 / patch 16) */
#define ASAM_SAM_LOWRES 256 /* low-res mask side */
#define ASAM_SAM_DIM 256    /* prompt / decoder width */
#define ASAM_SAM_MAX_DEPTH 64

typedef struct {
    int embed_dim; /* C: 768 (B), 1024 (L), 1280 (H) */
    int depth;     /* 12, 24, 32 */
    int num_heads; /* C / head_dim */
    int head_dim;  /* 64 (B, L), 80 (H): the rel_pos tables' width */
    int mlp_dim;   /* 4C */
    int window;    /* 14 */
    int n_global;
    int global_idx[ASAM_SAM_MAX_DEPTH]; /* blocks with global attention */
    int is_global[ASAM_SAM_MAX_DEPTH];
    char variant[16]; /* "vit_b", "vit_l", "vit_h" or "custom" */
    /* Input side: 1024 for the official models; a multiple of 16 up to 1024 (the encoder grid
     * is img_size / 16, the low-res masks 4x that). Read from pos_embed's shape; 0 in a
     * hand-made config means 1024. */
    int img_size;
} asam_sam_config;

typedef struct {
    asam_tensor *norm1_w, *norm1_b; /* (C) */
    asam_tensor *qkv_w;             /* (3C, C) */
    asam_tensor *qkv_b;             /* (3C) */
    asam_tensor *proj_w;            /* (C, C) */
    asam_tensor *proj_b;            /* (C) */
    asam_tensor *rel_pos_h;         /* (2S-1, head_dim), S = 14 windowed, 64 global */
    asam_tensor *rel_pos_w;         /* (2S-1, head_dim) */
    asam_tensor *norm2_w, *norm2_b; /* (C) */
    asam_tensor *lin1_w;            /* (4C, C) */
    asam_tensor *lin1_b;            /* (4C) */
    asam_tensor *lin2_w;            /* (C, 4C) */
    asam_tensor *lin2_b;            /* (C) */
    int window;                     /* 0 = global attention, else the window side */
    int num_heads;
} asam_sam_block;

typedef struct {
    asam_tensor *patch_w;   /* (C, 3, 16, 16) */
    asam_tensor *patch_b;   /* (C) */
    asam_tensor *pos_embed; /* (1, G, G, C), G = img_size / 16 (64) */
    asam_sam_block blocks[ASAM_SAM_MAX_DEPTH];
    asam_tensor *neck0_w;           /* (256, C, 1, 1) */
    asam_tensor *neck1_w, *neck1_b; /* (256) LayerNorm2d */
    asam_tensor *neck2_w;           /* (256, 256, 3, 3) */
    asam_tensor *neck3_w, *neck3_b; /* (256) LayerNorm2d */
} asam_sam_image_encoder;

typedef struct {
    asam_tensor *pe_gaussian;    /* (2, 128) */
    asam_tensor *point_embed[4]; /* (1, 256): neg, pos, box tl, box br */
    asam_tensor *not_a_point;    /* (1, 256) */
    asam_tensor *no_mask;        /* (1, 256) */
    asam_tensor *md0_w, *md0_b;  /* (4, 1, 2, 2), (4) */
    asam_tensor *md1_w, *md1_b;  /* (4) LayerNorm2d */
    asam_tensor *md3_w, *md3_b;  /* (16, 4, 2, 2), (16) */
    asam_tensor *md4_w, *md4_b;  /* (16) LayerNorm2d */
    asam_tensor *md6_w, *md6_b;  /* (256, 16, 1, 1), (256) */
    /* derived at load (not in the checkpoint): the constant dense positional encoding */
    asam_tensor *dense_pe; /* (1, 256, G, G) */
    asam_tensor *key_pe;   /* (1, G*G, 256): dense_pe as image-token rows, for the decoder */
} asam_sam_prompt_encoder;

typedef struct {
    asam_tensor *q_w, *q_b;     /* (I, 256), (I); I = 256 self, 128 cross */
    asam_tensor *k_w, *k_b;     /* (I, 256), (I) */
    asam_tensor *v_w, *v_b;     /* (I, 256), (I) */
    asam_tensor *out_w, *out_b; /* (256, I), (256) */
    int heads;                  /* 8 */
} asam_sam_attn;

typedef struct {
    asam_sam_attn self_attn, t2i, i2t;
    asam_tensor *norm_w[4], *norm_b[4]; /* norm1..norm4 (256), eps 1e-5 */
    asam_tensor *mlp1_w, *mlp1_b;       /* (2048, 256), (2048) */
    asam_tensor *mlp2_w, *mlp2_b;       /* (256, 2048), (256) */
} asam_sam_twoway_layer;

typedef struct {
    asam_tensor *w[3], *b[3]; /* (256,256), (256,256), (out,256) */
} asam_sam_mlp3;

typedef struct {
    asam_sam_twoway_layer layers[2];
    asam_sam_attn final_attn;
    asam_tensor *norm_final_w, *norm_final_b; /* (256) */
    asam_tensor *iou_token;                   /* (1, 256) */
    asam_tensor *mask_tokens;                 /* (4, 256) */
    asam_tensor *up0_w, *up0_b;               /* ConvTranspose (256, 64, 2, 2), (64) */
    asam_tensor *up1_w, *up1_b;               /* LayerNorm2d (64) */
    asam_tensor *up3_w, *up3_b;               /* ConvTranspose (64, 32, 2, 2), (32) */
    asam_sam_mlp3 hyper[4];                   /* out 32 */
    asam_sam_mlp3 iou_head;                   /* out 4 */
} asam_sam_mask_decoder;

typedef struct {
    asam_sam_config cfg;
    asam_sam_image_encoder enc;
    asam_sam_prompt_encoder pe;
    asam_sam_mask_decoder dec;
    char path[1024];
} asam_sam;

/* ---- model -------------------------------------------------------------------------------- */
/* Configuration from the image encoder's tensor shapes in a checkpoint (.pth or safetensors;
 * no tensor data is read). Errors name the file and the first missing or mis-shaped tensor. */
int asam_sam_config_from_file(const char *path, asam_sam_config *cfg);
/* Load every tensor (shape-checked) into persistent tensors. Returns 0 and *out, or -1. */
int asam_sam_load(const char *path, asam_sam **out);
/* The same for a model that will not be trained (segmenting, evaluating, attacking): under
 * bf16 (set before loading) the image encoder's GEMM weights are held in bf16 as they are read,
 * so the load peaks near the bf16 size. */
int asam_sam_load_frozen(const char *path, asam_sam **out);
void asam_sam_free(asam_sam *m);
/* Official configurations ("vit_b", "vit_l", "vit_h") and a model with random weights of
 * those shapes (norm weights 1, biases 0, torch-default uniform matrices); for benchmarks and
 * tests. */
int asam_sam_config_preset(const char *variant, asam_sam_config *cfg);
int asam_sam_init_random(const asam_sam_config *cfg, uint64_t seed, asam_sam **out);
/* Write every tensor under its official name: torch.save zip for .pth/.pt/.bin/.ckpt, else
 * safetensors (atomic). */
int asam_sam_save(const asam_sam *m, const char *path);
/* Same with n_meta (key, value) metadata strings (e.g. "provenance"), which
 * asam_checkpoint_metadata reads back from either format. */
int asam_sam_save_meta(const asam_sam *m, const char *path, const char *const *metadata,
                       size_t n_meta);
/* This model's input side (16 * pos_embed side), embedding side and low-res mask side: 1024, 64,
 * 256 for the official models. */
int asam_sam_img_size(const asam_sam *m);
int asam_sam_grid(const asam_sam *m);
int asam_sam_lowres(const asam_sam *m);
/* Every weight in the official state-dict order with its name (owned by the model). */
int asam_sam_params(const asam_sam *m, asam_tensor *const **params, const char *const **names,
                    size_t *n);
/* Turn gradients on/off for the trainable output tokens (iou_token, mask_tokens). */
void asam_sam_tokens_requires_grad(asam_sam *m, int on);

/* ---- pre-processing ----------------------------------------------------------------------- */
typedef struct {
    int orig_h, orig_w;   /* original image */
    int input_h, input_w; /* after ResizeLongestSide(1024): int(x * s + 0.5) */
} asam_sam_sizes;

void asam_sam_sizes_for(int orig_h, int orig_w, asam_sam_sizes *s);
/* ResizeLongestSide(img_size) for a model of another input size (the functions without _at
 * are these with 1024). */
void asam_sam_sizes_at(int img_size, int orig_h, int orig_w, asam_sam_sizes *s);
/* ResizeLongestSide on uint8 (Pillow-exact bilinear); dst is allocated. */
int asam_sam_resize_image(const asam_image *src, asam_image *dst, asam_sam_sizes *sizes);
int asam_sam_resize_image_at(const asam_image *src, int img_size, asam_image *dst,
                             asam_sam_sizes *sizes);
/* pixels (1, 3, h, w), values 0..255 -> (x - mean) / std, zero-padded to (1, 3, 1024, 1024);
 * differentiable w.r.t. pixels. */
asam_tensor *asam_sam_normalize_pad(asam_ctx *ctx, asam_tensor *pixels);
asam_tensor *asam_sam_normalize_pad_at(asam_ctx *ctx, asam_tensor *pixels, int img_size);
/* Resized uint8 RGB image (HWC, at most 1024 a side) -> (1, 3, h, w) float 0..255. */
asam_tensor *asam_sam_image_to_tensor(asam_ctx *ctx, const asam_image *img);
/* Whole official pre-processing: image (any size, RGB) -> (1, 3, 1024, 1024) and the sizes. */
asam_tensor *asam_sam_preprocess(asam_ctx *ctx, const asam_image *img, asam_sam_sizes *sizes);
asam_tensor *asam_sam_preprocess_at(asam_ctx *ctx, const asam_image *img, int img_size,
                                    asam_sam_sizes *sizes);
/* Original-pixel coordinates (x, y pairs) -> 1024-input frame. use_double = 1 as predict()
 * (numpy float64, then float32), 0 as apply_*_torch (float32 multiply). */
void asam_sam_transform_coords(const asam_sam_sizes *s, const float *xy, float *out, int n_pairs,
                               int use_double);

/* ---- image encoder ------------------------------------------------------------------------ */
/* x (B, 3, 1024, 1024) -> embedding (B, 256, 64, 64). With grad recording on and x (or an
 * encoder weight) needing a gradient, each block is gradient-checkpointed (the ViT-B backward
 * at 1024 peaks at ~1.5 GB of arena); otherwise blocks run one at a time in released arena
 * regions, so inference holds one block's activations. */
asam_tensor *asam_sam_encode(asam_ctx *ctx, const asam_sam *m, asam_tensor *x);
/* Pieces, for tests: patch embedding (NHWC, before pos_embed) and one block (NHWC in/out). */
asam_tensor *asam_sam_patch_embed(asam_ctx *ctx, const asam_sam *m, asam_tensor *x);
asam_tensor *asam_sam_block_forward(asam_ctx *ctx, const asam_sam_block *b, asam_tensor *x);
asam_tensor *asam_sam_neck(asam_ctx *ctx, const asam_sam *m, asam_tensor *x_nhwc);

/* ---- prompt encoder ----------------------------------------------------------------------- */
/* A batch of B prompts. Every prompt has the same number of points (n_points, possibly 0).
 * Coordinates are in the 1024-input frame. */
typedef struct {
    int batch;               /* B */
    int n_points;            /* N per prompt */
    const float *points;     /* (B, N, 2) x,y or NULL when N = 0 */
    const float *labels;     /* (B, N): 1 fg, 0 bg, -1 not-a-point */
    const float *boxes;      /* (B, 4) x0,y0,x1,y1 or NULL */
    asam_tensor *mask_input; /* (B, 1, 256, 256) low-res logits or NULL */
} asam_sam_prompt;

/* sparse (B, Ntok, 256) and dense (B, 256, 64, 64). */
int asam_sam_prompt_encode(asam_ctx *ctx, const asam_sam *m, const asam_sam_prompt *p,
                           asam_tensor **sparse, asam_tensor **dense);
/* Dense positional encoding (1, 256, 64, 64). */
asam_tensor *asam_sam_dense_pe(asam_ctx *ctx, const asam_sam *m);
/* mask (B, 1, 256, 256) -> (B, 256, 64, 64); stage1/stage2 optional outputs for tests. */
asam_tensor *asam_sam_mask_downscale(asam_ctx *ctx, const asam_sam *m, asam_tensor *mask,
                                     asam_tensor **stage1, asam_tensor **stage2);

/* ---- mask decoder ------------------------------------------------------------------------- */
typedef struct {
    asam_tensor *tokens_out; /* (B, 5 + Ntok, 256) after norm_final_attn */
    asam_tensor *hyper_in;   /* (B, 4, 32) */
    asam_tensor *all_masks;  /* (B, 4, 256, 256) */
    asam_tensor *all_iou;    /* (B, 4) */
} asam_sam_decoder_trace;

/* embedding (1, 256, 64, 64) -> low_res (B, C, 256, 256) and iou (B, C); C = 3 with multimask
 * (tokens 1..3), else 1 (token 0). trace may be NULL. */
int asam_sam_decode(asam_ctx *ctx, const asam_sam *m, asam_tensor *embedding, asam_tensor *sparse,
                    asam_tensor *dense, int multimask, asam_tensor **low_res, asam_tensor **iou,
                    asam_sam_decoder_trace *trace);

/* ---- post-processing ---------------------------------------------------------------------- */
/* low_res (B, C, 256, 256) -> mask logits (B, C, orig_h, orig_w): bilinear to 1024, crop to
 * the input size, bilinear to the original size (align_corners=False, no antialias). For a
 * model of input side S the low-res side is S / 4 and the first resize goes to S. */
asam_tensor *asam_sam_postprocess(asam_ctx *ctx, asam_tensor *low_res, const asam_sam_sizes *s);

/* ---- predictor: encode once, decode many prompts ------------------------------------------ */
typedef struct {
    const asam_sam *model;
    asam_ctx *ctx;          /* owned scratch arena */
    asam_tensor *embedding; /* persistent (1, 256, 64, 64) once an image is set */
    asam_sam_sizes sizes;
} asam_sam_predictor;

typedef struct {
    int batch, n_masks; /* B, C */
    int h, w;           /* original size */
    float *low_res;     /* (B, C, 256, 256) */
    float *iou;         /* (B, C) */
    float *mask_logits; /* (B, C, h, w) */
    uint8_t *masks;     /* (B, C, h, w) 0/1 = logits > 0 */
} asam_sam_result;

int asam_sam_predictor_init(asam_sam_predictor *p, const asam_sam *m);
void asam_sam_predictor_free(asam_sam_predictor *p);
/* Any-size RGB image: resize, normalise, pad, encode. */
int asam_sam_predictor_set_image(asam_sam_predictor *p, const asam_image *img);
/* Reuse a saved embedding (1, 256, 64, 64) with its sizes. */
int asam_sam_predictor_set_embedding(asam_sam_predictor *p, const float *embedding,
                                     const asam_sam_sizes *sizes);
/* Prompts in ORIGINAL image pixels (transformed in float64 as predict() does); mask_input
 * (B, 1, 256, 256) floats or NULL. */
typedef struct {
    int batch, n_points;
    const float *points, *labels, *boxes; /* as asam_sam_prompt, original pixels */
    const float *mask_input;              /* (B, 1, 256, 256) or NULL */
} asam_sam_query;
int asam_sam_predictor_predict(asam_sam_predictor *p, const asam_sam_query *q, int multimask,
                               asam_sam_result *res);
void asam_sam_result_free(asam_sam_result *r);

#ifdef __cplusplus
}
#endif
#endif
