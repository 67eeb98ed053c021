/* Stable Diffusion weight names: CompVis <-> diffusers mapping and a small loader that binds
 * CompVis-named weights to persistent tensors whatever layout the file uses.
 *
 * Models name every weight by its CompVis key without the prefix
 * ("input_blocks.1.0.in_layers.2.weight", "encoder.down.0.block.0.conv1.weight"); the loader adds
 * the prefix, or, for diffusers files, derives the diffusers key by rule (diffusers'
 * convert_diffusers_to_original_stable_diffusion mapping, stated here as rules so that it holds for
 * every size of the SD 1.x family). */
#ifndef ASAM_SD_NAMES_H
#define ASAM_SD_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "asam/binder.h"
#include "asam/checkpoint.h"
#include "asam/engine.h"

typedef enum {
    SD_NAMES_COMPVIS,           /* prefix + CompVis key */
    SD_NAMES_DIFFUSERS_UNET,    /* UNet2DConditionModel */
    SD_NAMES_DIFFUSERS_VAE,     /* AutoencoderKL */
    SD_NAMES_DIFFUSERS_CONTROL, /* ControlNetModel */
} sd_naming;

/* CompVis UNet key (no prefix) -> diffusers UNet2DConditionModel key. num_res_blocks is the
 * number of ResBlocks per level (2 for SD 1.5). Returns 0, or -1 when no rule applies. */
int sd_unet_name_to_diffusers(const char *cv, int num_res_blocks, char *out, size_t n);
/* ControlNet keys (CompVis "control_model." without the prefix) -> diffusers ControlNetModel. */
int sd_controlnet_name_to_diffusers(const char *cv, int num_res_blocks, char *out, size_t n);
/* CompVis VAE key (no "first_stage_model.") -> diffusers AutoencoderKL key; n_levels is the
 * number of resolution levels (4 for SD 1.5, decoder up.i -> up_blocks.(n_levels-1-i));
 * old_attn picks the pre-0.14 mid-attention names query/key/value/proj_attn. */
int sd_vae_name_to_diffusers(const char *cv, int n_levels, int old_attn, char *out, size_t n);

/* Binds CompVis-named weights of one model to persistent tensors: the shared binder
 * (asam/binder.h) with the CompVis prefix, or with the diffusers name rules as its name map. */
typedef struct {
    /* prefix (CompVis naming only), failed, and every tensor loaded in order with its CompVis
     * name (no prefix): b.params, b.names, b.n; freed by sd_loader_free */
    asam_binder b;
    sd_naming naming;
    int num_res_blocks; /* diffusers UNet/ControlNet mapping */
    int n_levels;       /* diffusers VAE mapping */
} sd_loader;

/* L must stay at its address while binding (the binder's name map points back to it). */
void sd_loader_init(sd_loader *L, const asam_checkpoint *ck, const char *prefix, sd_naming naming);
/* Shape of a weight by CompVis name: returns its ndim (filling shape[0..7]) or -1 if absent. */
int sd_probe(sd_loader *L, const char *cv, int64_t *shape);
int sd_has(sd_loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Load a weight into a new persistent tensor of the given shape. The stored shape must equal
 * it, or hold the same numbers with trailing 1s dropped/added ((C,C) vs (C,C,1,1)). On error
 * records "FILE: tensor 'KEY' ..." with asam_error, sets L->b.failed and returns NULL. */
asam_tensor *sd_param(sd_loader *L, const char *cv, int ndim, const int64_t *shape);
/* printf-style name; shape given as ndim + up to 4 dims */
asam_tensor *sd_paramf(sd_loader *L, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* Same, NULL without error when the weight is absent. */
asam_tensor *sd_paramf_opt(sd_loader *L, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                           const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* Raw key lookup (prefix applied only for CompVis naming): 1 if present. */
int sd_raw_has(sd_loader *L, const char *key);
const char *sd_loader_path(const sd_loader *L);
/* Is this exact key in the checkpoint? */
int sd_ckpt_has(const asam_checkpoint *ck, const char *key);
void sd_loader_free(sd_loader *L); /* frees every loaded tensor */

#endif
