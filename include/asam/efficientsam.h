/* EfficientSAM (yformer/EfficientSAM: ViT-Ti, ViT-S, or any width/depth read from the
 * checkpoint) on the asam engine.
 *
 * How it differs from SAM (see ../shared/fixtures/efficientsam_tiny/README.md): the image is
 * resized to 1024x1024 with bilinear (aspect ratio not kept, no padding) in [0,1] units and
 * normalised with ImageNet mean/std; the encoder is a plain global-attention ViT whose 14x14
 * position embedding is resampled bicubically to 64x64; every prompt is exactly 6 points
 * (boxes are two points with labels 2 and 3; more points are cut, fewer padded with -1);
 * there is no dense prompt; the logits go from 256x256 to the original size in one bicubic
 * step and masks are logits >= 0.
 *
 * Weights are bound by their official state-dict names: the official .pt ({"model": state
 * dict}), a bare state dict, or a safetensors with the same names. The encoder head count is
 * not visible in tensor shapes: it is taken from the official variants (192 -> 3 heads, 384 ->
 * 6), else from the safetensors metadata key "encoder_num_heads", else embed_dim / 64, unless
 * the caller passes it. Everything else comes from the shapes. */
#ifndef ASAM_EFFICIENTSAM_H
#define ASAM_EFFICIENTSAM_H

#include "asam/engine.h"
#include "asam/image.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ASAM_ESAM_IMG 1024   /* encoder input side */
#define ASAM_ESAM_GRID 64    /* embedding side */
#define ASAM_ESAM_LOWRES 256 /* low-res mask side */
#define ASAM_ESAM_POINTS 6   /* prompt points per query (official decoder_max_num_input_points) */
#define ASAM_ESAM_MAX_DEPTH 64

typedef struct {
    int embed_dim;    /* C: 192 (ViT-Ti), 384 (ViT-S) */
    int depth;        /* 12 */
    int num_heads;    /* 3, 6 */
    int mlp_dim;      /* 4C */
    int pos_grid;     /* 14: the pretrain position grid (224 / 16) */
    int dim;          /* D: neck and decoder width, 256 */
    int dec_depth;    /* two-way transformer layers, 2 */
    int dec_heads;    /* 8 */
    int dec_mlp_dim;  /* 2048 */
    int up_dims[2];   /* upscaling widths, 64 and 32 */
    int iou_hidden;   /* IoU head width, 256 */
    char variant[16]; /* "vit_t", "vit_s" or "custom" */
} asam_esam_config;

typedef struct asam_esam asam_esam;

/* "efficientsam", "sam" or NULL (neither) from a checkpoint's tensor names; no data is read. */
const char *asam_model_family_of_file(const char *path);

/* num_heads: encoder heads, 0 = detect (see above). Errors name the file and the tensor. */
int asam_esam_config_from_file(const char *path, int num_heads, asam_esam_config *cfg);
int asam_esam_load(const char *path, int num_heads, asam_esam **out);
/* The same for a model that will not be trained: under bf16 the image encoder's GEMM weights are
 * held in bf16 as they are read (the load peaks near the bf16 weights, not the fp32 ones). */
int asam_esam_load_frozen(const char *path, int num_heads, asam_esam **out);
/* "vit_t", "vit_s": the official configurations. Random weights of a configuration (norm
 * weights 1, biases 0, torch-default uniform matrices); for benchmarks and tests. */
int asam_esam_config_preset(const char *variant, asam_esam_config *cfg);
int asam_esam_init_random(const asam_esam_config *cfg, uint64_t seed, asam_esam **out);
void asam_esam_free(asam_esam *m);
const asam_esam_config *asam_esam_cfg(const asam_esam *m);
/* Every loaded weight under its official name (arrays belong to the model). */
int asam_esam_params(const asam_esam *m, asam_tensor *const **params, const char *const **names,
                     size_t *n);
/* Every tensor under its official name: .pt/.pth/.bin/.ckpt -> torch.save zip of
 * {"model": state_dict} (what build_efficient_sam loads strictly), else safetensors (with
 * the metadata key "encoder_num_heads"). Atomic. */
int asam_esam_save(const asam_esam *m, const char *path);
/* Same with up to 8 (key, value) metadata strings (e.g. "provenance"). */
int asam_esam_save_meta(const asam_esam *m, const char *path, const char *const *metadata,
                        size_t n_meta);

/* FNV-1a hash of the encoder's weights (keys embedding caches). */
uint64_t asam_esam_encoder_hash(const asam_esam *m);
/* The tokens ASAM tunes: iou_token (1, D) and mask_tokens (4, D). */
asam_tensor *asam_esam_iou_token(asam_esam *m);
asam_tensor *asam_esam_mask_tokens(asam_esam *m);
void asam_esam_tokens_requires_grad(asam_esam *m, int on);

/* ---- pre-processing and encoder ------------------------------------------------------------ */
/* RGB uint8 HWC -> (1, 3, H, W) float32 u8 / 255 (ToTensor). */
asam_tensor *asam_esam_image_to_tensor(asam_ctx *ctx, const asam_image *img);
/* (B, 3, H, W) in [0,1] -> (B, 3, 1024, 1024): bilinear resize (skipped at 1024x1024), then
 * (x - mean) / std. Differentiable. */
asam_tensor *asam_esam_preprocess(asam_ctx *ctx, asam_tensor *x);
/* (B, 3, 1024, 1024) -> (B, D, 64, 64). Gradient-checkpointed per block when anything needs a
 * gradient, else block by block in released arena regions. */
asam_tensor *asam_esam_encode(asam_ctx *ctx, const asam_esam *m, asam_tensor *x);

/* ---- prompts and decoder ------------------------------------------------------------------- */
/* Original-pixel points (n per query) of Q queries -> the decoder's (Q, 6, 2) coordinates in
 * the 1024 frame and (Q, 6) labels: x' = (x * 1024) / W (float32), negative -> -1, first 6
 * points kept, padding (-1, -1) with label -1. */
void asam_esam_prepare_points(int Q, int n, const float *xy, const float *labels, int orig_h,
                              int orig_w, float *coords6, float *labels6);
/* coords6 (Q, 6, 2) and labels6 (Q, 6) -> sparse embeddings (Q, 6, D). */
asam_tensor *asam_esam_prompt_encode(asam_ctx *ctx, const asam_esam *m, int Q, const float *coords6,
                                     const float *labels6);

typedef struct {
    asam_tensor *queries_out; /* (Q, 5 + 6, D) after norm_final_attn */
    asam_tensor *keys_out;    /* (Q, 4096, D) */
    asam_tensor *upscale0;    /* (Q, D/4, 128, 128) */
    asam_tensor *upscaled;    /* (Q, D/8, 256, 256) */
    asam_tensor *hyper_in;    /* (Q, 4, D/8) */
    asam_tensor *all_masks;   /* (Q, 4, 256, 256) */
    asam_tensor *all_iou;     /* (Q, 4) */
} asam_esam_decoder_trace;

/* embedding (1, D, 64, 64), sparse (Q, 6, D) -> low_res (Q, C, 256, 256), iou (Q, C); C = 3
 * (tokens 1..3) with multimask, else 1 (token 0). trace may be NULL. */
int asam_esam_decode(asam_ctx *ctx, const asam_esam *m, asam_tensor *embedding, asam_tensor *sparse,
                     int multimask, asam_tensor **low_res, asam_tensor **iou,
                     asam_esam_decoder_trace *trace);
/* low_res (..., 256, 256) -> (..., H, W) in one bicubic step. */
asam_tensor *asam_esam_postprocess(asam_ctx *ctx, asam_tensor *low_res, int orig_h, int orig_w);

/* ---- predictor: encode once, decode many queries ------------------------------------------- */
typedef struct {
    const asam_esam *model;
    asam_ctx *ctx;
    asam_tensor *embedding; /* persistent (1, D, 64, 64) once an image is set */
    int orig_h, orig_w;
} asam_esam_predictor;

typedef struct {
    int n_queries, n_masks; /* Q, C */
    int h, w;
    float *low_res;     /* (Q, C, 256, 256) */
    float *iou;         /* (Q, C) */
    float *mask_logits; /* (Q, C, h, w) */
    uint8_t *masks;     /* (Q, C, h, w) 0/1 = logits >= 0 */
} asam_esam_result;

int asam_esam_predictor_init(asam_esam_predictor *p, const asam_esam *m);
void asam_esam_predictor_free(asam_esam_predictor *p);
int asam_esam_predictor_set_image(asam_esam_predictor *p, const asam_image *img);
/* The official model's input as it is: chw = (3, h, w) float32, RGB in [0, 1] (ToTensor of a
 * uint8 image gives the same embedding as set_image on that image). */
int asam_esam_predictor_set_image_f32(asam_esam_predictor *p, const float *chw, int h, int w);
int asam_esam_predictor_set_embedding(asam_esam_predictor *p, const float *embedding, int orig_h,
                                      int orig_w);
/* Q queries of n points each, original pixels; labels 1 fg, 0 bg, 2/3 box corners, -1 none. */
int asam_esam_predictor_predict(asam_esam_predictor *p, int Q, int n, const float *xy,
                                const float *labels, int multimask, asam_esam_result *res);
void asam_esam_result_free(asam_esam_result *r);
/* n low-res logit maps (n, 256, 256) -> (n, out_h, out_w), the official bicubic step
 * (predict_masks with an output size other than the input's). */
int asam_esam_resize_logits(const float *low_res, int n, int out_h, int out_w, float *out);

#ifdef __cplusplus
}
#endif
#endif
