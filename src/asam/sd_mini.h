/* What train-vae and train-unet share (internal to the asam layer): new models with the official
 * initialisation, the diffusers-folder writers, the resumable state files and the data order. */
#ifndef ASAM_SD_MINI_H
#define ASAM_SD_MINI_H

#include <stddef.h>
#include <stdint.h>

#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/optim.h"
#include "asam/provenance.h"
#include "asam/sd.h"
#include "asam/sd_models.h"
#include "asam/sd_synth.h"

/* A model's weights with their CompVis names (no prefix); arrays belong to the model. */
typedef struct {
    asam_tensor **p;
    const char **names;
    size_t n;
} sdm_params;

void sdm_vae_params(const asam_vae *m, sdm_params *out);
void sdm_unet_params(const asam_unet *m, sdm_params *out);
/* requires_grad on every weight; the sum of their sizes. */
int64_t sdm_set_trainable(const sdm_params *P);
/* One error line for a failed training step: "CMD: step N: why", why being the ctx's message,
 * else the library's (copied first: asam_error writes the buffer asam_last_error reads). */
int sdm_step_error(asam_ctx *ctx, const char *cmd, int64_t step);

/* Initial log-variance of a new VAE's posterior (see sdm_vae_new). */
#define SDM_VAE_LOGVAR0 (-10.0f)

/* New models of the given configuration, initialised as the official code does (torch's
 * default Linear/Conv initialisation, norms 1/0, biases 0, the UNet's zero_module layers 0). */
int sdm_vae_new(const asam_sd_synth_vae_cfg *c, uint64_t seed, asam_vae **out);
int sdm_unet_new(const asam_sd_synth_unet_cfg *c, uint64_t seed, asam_unet **out);

/* A random CLIP text encoder (Hugging Face CLIPTextModel names under "text_model.", openai
 * CLIP's initialisation) in owned buffers: vocab 49408, 77 positions, MLP 4 x width. */
typedef struct {
    asam_st_entry *e;
    size_t n;
    float **bufs;
    char **names;
    int width, layers, heads;
} sdm_clip;
int sdm_clip_build(int width, int layers, int heads, uint64_t seed, sdm_clip *out);
void sdm_clip_free(sdm_clip *c);
/* Load it as a model (the weights are copied). */
int sdm_clip_load(const sdm_clip *c, asam_clip_text **out);

/* Weights as a diffusers sub-folder DIR/SUB/<file> (+ DIR/SUB/config.json = config_json):
 * kind 'v' VAE (arg = n_levels; mid attention as Linear), 'u' UNet (arg = num_res_blocks),
 * 'c' CLIP (names as they are); F16 or F32; metadata "provenance" and "train_steps". */
int sdm_write_sub(const char *dir, const char *sub, const char *file, const asam_st_entry *e,
                  size_t n, int kind, int arg, int f16, const char *config_json,
                  const char *prov_json, long long steps);
/* Entries (F32, CompVis names) over a model's weights; free with free(). */
asam_st_entry *sdm_entries(const sdm_params *P);

/* Resumable state: "param.<name>" weights, AdamW moments, step, provenance. */
int sdm_state_save(const char *path, const char *format, const sdm_params *P, const asam_optim *opt,
                   int64_t step, const char *prov_json);
/* Refuses (one line naming the first option that differs) a state of other provenance. */
int sdm_state_load(const char *path, const char *format, const sdm_params *P, asam_optim *opt,
                   const asam_prov *prov, int64_t *step);

/* A value keyed by (seed, sample, stream). */
uint64_t sdm_key(uint64_t seed, uint64_t k, uint64_t stream);
/* Linear warm-up over `warmup` steps, then constant. */
float sdm_lr(float lr, int warmup, int64_t step);
/* "sa1b:DIR" -> DIR. */
const char *sdm_data_dir(const char *spec);

#endif
