/* Training a mask-to-image ControlNet (ControlNet's own recipe, DESIGN.md §1.1): the ControlNet
 * starts as a copy of the SD UNet's encoder (time_embed, input_blocks, middle_block, as
 * ControlNet's tool_add_control.py copies model.diffusion_model.* into control_model.*), with a
 * random hint encoder (input_hint_block, its last conv zero) and zero-initialised zero_convs and
 * middle_block_out, so the untrained ControlNet leaves the UNet unchanged. SD stays frozen.
 *
 * Loss per sample (standard eps-prediction diffusion loss):
 *   z = 0.18215 * VAE posterior mean(image in [-1,1]),  t ~ U{0..999},  n ~ N(0, I)
 *   z_t = sqrt(a_t) z + sqrt(1 - a_t) n,  loss = MSE(UNet(z_t, t, CLIP(caption), CN(z_t, t,
 *   CLIP(caption), hint)), n)
 * optimised with AdamW (lr 1e-5, torch's defaults otherwise: betas 0.9/0.999, eps 1e-8,
 * weight decay 0.01) over every ControlNet weight.
 *
 * Determinism and resume: sample order (a shuffled permutation per epoch), timesteps and noise
 * are pure functions of (seed, global sample index), so a run resumed from its state file
 * (parameters + AdamW moments + step) continues exactly as the uninterrupted run would. */
#ifndef ASAM_TRAIN_H
#define ASAM_TRAIN_H

#include <stdint.h>

#include "asam/engine.h"
#include "asam/image.h"
#include "asam/sd.h"
#include "asam/sd_models.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new ControlNet for this UNet (see above); hint encoder weights drawn with torch's default
 * conv initialisation (uniform +-1/sqrt(fan_in)) from a generator keyed by seed. */
int asam_controlnet_init_from_unet(const asam_unet *unet, int hint_channels, uint64_t seed,
                                   asam_controlnet **out);

/* Write the ControlNet in the v1.1 layout: control_model.<name>, F32. ".safetensors" ->
 * safetensors; anything else (.pth, .ckpt, .bin) -> torch.save zip. Atomic. */
int asam_controlnet_save(const char *path, const asam_controlnet *cn);
/* Same with up to 8 (key, value) metadata strings (e.g. "provenance"), read back by
 * asam_checkpoint_metadata from either format. */
int asam_controlnet_save_meta(const char *path, const asam_controlnet *cn,
                              const char *const *metadata, size_t n_meta);

/* The diffusion loss on a batch: z0 (B,4,h,w) already scaled by 0.18215, t[B] timesteps,
 * noise (B,4,h,w), context (B,77,D), hint (B,3,8h,8w) in [0,1]. Records on the ctx tape when
 * gradients are enabled (gradients reach the ControlNet's parameters when they are trainable).
 * Returns the scalar loss or NULL (message in the ctx). */
asam_tensor *asam_controlnet_loss(asam_ctx *ctx, const asam_unet *unet, const asam_controlnet *cn,
                                  asam_tensor *z0, const int *t, asam_tensor *noise,
                                  asam_tensor *context, asam_tensor *hint);

typedef struct {
    const char *sd;              /* SD 1.5 checkpoint (CompVis file or diffusers folder) */
    const char *data;            /* "sa1b:DIR" or DIR with sa_N.jpg + sa_N.json */
    const char *captions;        /* JSON lines; NULL = DIR/captions.jsonl when present */
    const char *init_controlnet; /* start from this ControlNet instead of the UNet copy */
    const char *out;             /* .pth / .ckpt / .safetensors */
    const char *state;           /* resume state; NULL = OUT.state.safetensors; records the
                                    provenance (options and inputs) of the weights in OUT */
    float lr;                    /* 1e-5 */
    double weight_decay;         /* 0.01 (torch AdamW default) */
    int batch;                   /* 64: the official 8 per GPU x 8 GPUs (ControlNet/train.sh:2) */
    int epochs;                  /* 1 (used when steps == 0) */
    int steps;                   /* total optimiser steps (0 = epochs * ceil(N / batch)) */
    int size;                    /* image / hint side (512), a multiple of 64 */
    uint64_t seed;               /* 0 */
    int resume;                  /* continue from the state file when it exists */
    int save_every;              /* write the state file every N steps (100; 0 = only at end) */
    int stop_after;              /* test hook: stop (after saving state) at this step (0 = no) */
    int verbose;                 /* progress line with ETA on stderr */
    float *losses;               /* NULL or room for `steps` losses (filled by step index) */
    int force;    /* resume over a state made with other options: start over (else refuse) */
    int vae_mean; /* 1: z0 from the VAE posterior's mean (asam's former choice); 0: a sample
                     keyed by (seed, sample), as the official get_first_stage_encoding */
} asam_cn_train_opts;

void asam_cn_train_opts_default(asam_cn_train_opts *o);
/* The training image as ControlNet's tutorial_dataset.py: cv2 INTER_LINEAR of the 8-bit image
 * to size x size, / 127.5 - 1 -> (1, 3, size, size). */
asam_tensor *asam_cn_target_tensor(asam_ctx *ctx, const asam_image *img, int size);
/* 0.18215 * (mean + exp(0.5 clamp(logvar, -30, 20)) eps) of VAE moments (B, 8, h, w) =
 * (mean, logvar) and eps (B, 4, h, w): ldm's DiagonalGaussianDistribution.sample(), scaled. */
asam_tensor *asam_vae_posterior_sample(asam_ctx *ctx, asam_tensor *moments, const float *eps);
/* The whole job. Returns 0, 1 when stopped by stop_after, or -1 (asam_last_error()). */
int asam_train_controlnet(const asam_cn_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
