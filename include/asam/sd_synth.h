/* Random Stable Diffusion checkpoints of any size in the SD 1.x layout (CompVis or diffusers
 * names, F16 or F32), for full-size load/benchmark checks and for tests of loader rules. */
#ifndef ASAM_PUBLIC_SD_SYNTH_H
#define ASAM_PUBLIC_SD_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "asam/checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int in_channels, out_channels, model_channels, n_levels, num_res_blocks;
    int mult[8]; /* channel multiplier per level */
    int attn[8]; /* 1: SpatialTransformer at this level */
    int context_dim, depth;
    int hint_channels; /* ControlNet only */
} asam_sd_synth_unet_cfg;

typedef struct {
    int in_channels, out_channels, ch, n_levels, num_res_blocks, z_channels, embed_dim;
    int mult[8];
} asam_sd_synth_vae_cfg;

asam_sd_synth_unet_cfg
asam_sd_synth_unet_sd15(void); /* 320, (1,2,4,4), 2 blocks, attn 1,1,1,0, ctx 768 */
asam_sd_synth_vae_cfg asam_sd_synth_vae_sd15(void); /* 128, (1,2,4,4), 2 blocks, z 4 */

/* Write one safetensors file holding any of: a UNet (under unet_prefix), a VAE (vae_prefix),
 * a ControlNet (control_prefix); NULL configs are left out. diffusers: name every tensor as
 * diffusers does (prefixes ignored; put one model per file). f16: store F16, else F32.
 * Weights are random (seeded), scaled by 1/sqrt(fan_in); norm gains near 1.
 * *n_tensors / *n_params (optional) receive the totals written. Returns 0 or -1 (asam_error). */
int asam_sd_synth_write(const char *path, const asam_sd_synth_unet_cfg *unet,
                        const char *unet_prefix, const asam_sd_synth_vae_cfg *vae,
                        const char *vae_prefix, const asam_sd_synth_unet_cfg *control,
                        const char *control_prefix, int diffusers, int f16, uint64_t seed,
                        int64_t *n_tensors, int64_t *n_params);

/* The same models in memory: CompVis names without prefixes, F32 values (entries point into
 * buffers owned by the model), for building a model through its loader
 * (asam_checkpoint_from_entries) before initialising it by name. */
typedef struct {
    asam_st_entry *entries;
    size_t n;
    int64_t n_params;
    void **bufs_; /* owned */
    void *keys_;  /* owned: the names */
} asam_sd_synth_model;
int asam_sd_synth_build(const asam_sd_synth_unet_cfg *unet, const asam_sd_synth_vae_cfg *vae,
                        const asam_sd_synth_unet_cfg *control, uint64_t seed,
                        asam_sd_synth_model *out);
void asam_sd_synth_model_free(asam_sd_synth_model *m);

#ifdef __cplusplus
}
#endif
#endif
