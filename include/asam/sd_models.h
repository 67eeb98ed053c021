/* Stable Diffusion 1.5 image-side models: VAE (AutoencoderKL), UNet (CompVis openaimodel with
 * SpatialTransformer) and ControlNet (lllyasviel ControlLDM), forward with autograd.
 *
 * Weights are persistent tensors bound by the CompVis checkpoint names; diffusers files are
 * read through a name mapping (sd_names.c). Configuration (channels, multipliers, blocks per
 * level, attention levels, context width) comes from tensor shapes; heads are fixed at 8. */
#ifndef ASAM_SD_MODELS_H
#define ASAM_SD_MODELS_H

#include <stddef.h>

#include "asam/checkpoint.h"
#include "asam/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ASAM_SD_LATENT_SCALE 0.18215f

typedef struct asam_unet asam_unet;
typedef struct asam_vae asam_vae;
typedef struct asam_controlnet asam_controlnet;

/* prefix: "model.diffusion_model." (CompVis single file), "" for a diffusers unet/ file (names
   mapped from diffusers' UNet2DConditionModel layout), "control_model." for ControlNet (v1.0
   ControlLDM and v1.1 files) or "" for diffusers ControlNetModel;
   "first_stage_model." for the VAE in CompVis files, "" for a diffusers vae/ file (old
   query/key/value/proj_attn and new to_q/to_k/to_v/to_out.0 names, Linear (C,C) or conv (C,C,1,1)).
   Configuration from tensor shapes. Errors name the file and the key. With prefix "" the
   layout is detected: CompVis keys under the usual prefix, bare CompVis keys or diffusers keys. */
int asam_unet_load(const asam_checkpoint *ck, const char *prefix, asam_unet **out);
int asam_vae_load(const asam_checkpoint *ck, const char *prefix, asam_vae **out);
int asam_controlnet_load(const asam_checkpoint *ck, const char *prefix, asam_controlnet **out);
/* 0 if the ControlNet fits the UNet (widths, blocks, context), else -1 + message. */
int asam_controlnet_check(const asam_controlnet *cn, const asam_unet *unet);
void asam_unet_free(asam_unet *m);
void asam_vae_free(asam_vae *m);
void asam_controlnet_free(asam_controlnet *m);
int asam_unet_context_dim(const asam_unet *m);
int asam_unet_in_channels(const asam_unet *m);

/* eps = UNet(x (B,4,h,w), t[B] timesteps (float, as integers), context (B,77,Cctx)); control:
   NULL or 13 ControlNet residuals (unscaled) that are multiplied by control_scale and added
   to the skip connections / middle block as ControlLDM does. Returns NULL on error (message
   in the ctx). */
asam_tensor *asam_unet_forward(asam_ctx *ctx, const asam_unet *m, asam_tensor *x, const float *t,
                               asam_tensor *context, asam_tensor *const *control,
                               float control_scale);
/* 13 residuals for a hint (B,3,8h,8w) in [0,1]. Returns 0, or -1 (message in the ctx). */
int asam_controlnet_forward(asam_ctx *ctx, const asam_controlnet *m, asam_tensor *x, const float *t,
                            asam_tensor *context, asam_tensor *hint, asam_tensor *residuals[13]);
/* Posterior mean of an image (B,3,H,W) in [-1,1] -> (B,4,H/8,W/8), NOT multiplied by 0.18215. */
asam_tensor *asam_vae_encode(asam_ctx *ctx, const asam_vae *m, asam_tensor *img);
/* The encoder's moments (B, 2*4, H/8, W/8) = cat(mean, logvar) before logvar's clamp to
   [-30, 20]; for sampling the posterior (mean + exp(0.5 logvar) * noise) as CompVis does. */
asam_tensor *asam_vae_encode_moments(asam_ctx *ctx, const asam_vae *m, asam_tensor *img);
/* Decoder: z (B,4,h,w) already divided by 0.18215 -> image (B,3,8h,8w), not clamped. */
asam_tensor *asam_vae_decode(asam_ctx *ctx, const asam_vae *m, asam_tensor *z);
/* Trainable parameters (ControlNet training later): array of persistent tensors + names
   (CompVis names without the prefix). The arrays belong to the model. */
int asam_controlnet_params(const asam_controlnet *m, asam_tensor ***params, const char ***names,
                           size_t *n);

/* ControlNet training: requires_grad on every ControlNet weight (default off). */
void asam_controlnet_set_trainable(asam_controlnet *m, int on);
/* Gradient checkpointing while recording: 0 off, 1 (default) per block (less memory, one extra
 * forward during backward); for the UNet also 2 = the whole call keeps only its inputs (x,
 * context, control) and backward re-runs it with per-block checkpointing (two extra forwards):
 * for differentiating through many UNet calls such as a 50-step DDIM chain. */
void asam_unet_set_checkpointing(asam_unet *m, int level);
void asam_vae_set_checkpointing(asam_vae *m, int on);
void asam_controlnet_set_checkpointing(asam_controlnet *m, int on);

/* Number of residuals a ControlNet produces (13 for SD 1.5: one per encoder block + middle). */
int asam_controlnet_n_residuals(const asam_controlnet *m);
/* Number of control residuals the UNet accepts (same count). */
int asam_unet_n_control(const asam_unet *m);

/* The UNet's geometry and weights, for building a ControlNet from it (its encoder copy, the
 * zero convolutions' widths): model channels (320 for SD 1.5); the number of input blocks and
 * the channels of input block i's output; the middle block's output channels; every loaded
 * weight with its CompVis name (no prefix; arrays belong to the model). */
int asam_unet_model_channels(const asam_unet *m);
int asam_unet_n_input_blocks(const asam_unet *m);
int asam_unet_input_channels_out(const asam_unet *m, int i);
int asam_unet_middle_channels(const asam_unet *m);
int asam_unet_params(const asam_unet *m, asam_tensor ***params, const char ***names, size_t *n);

/* Multiply-add FLOPs (2 per MAC) of one forward at latent size h x w (batch 1, context of
 * ctx_len tokens): convs, linears and attention products; for benchmarks. */
double asam_unet_flops(const asam_unet *m, int64_t h, int64_t w, int64_t ctx_len);
double asam_controlnet_flops(const asam_controlnet *m, int64_t h, int64_t w, int64_t ctx_len);
double asam_vae_decode_flops(const asam_vae *m, int64_t h, int64_t w);

#ifdef __cplusplus
}
#endif
#endif
