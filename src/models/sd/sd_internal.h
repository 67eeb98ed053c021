/* Internals shared by the SD UNet and ControlNet (unet.c, controlnet.c): the openaimodel
 * building blocks with their weights named as in CompVis checkpoints. */
#ifndef ASAM_SD_INTERNAL_H
#define ASAM_SD_INTERNAL_H

#include "asam/engine.h"
#include "asam/sd_models.h"
#include "models/sd/sd_names.h"

#define SD_UNET_HEADS 8 /* SD 1.x: num_heads 8, head dim C/8 */
#define SD_GN_GROUPS 32
#define SD_RES_EPS 1e-5f /* GroupNorm32 in ResBlocks and the output norm */
#define SD_ST_EPS 1e-6f  /* SpatialTransformer input norm */
#define SD_LN_EPS 1e-5f  /* transformer LayerNorms */
#define SD_VAE_EPS 1e-6f /* every VAE GroupNorm */

/* The residual block of both the UNet (openaimodel.ResBlock) and the VAE
 * (diffusionmodules/model.ResnetBlock): GN-SiLU-conv, + timestep-embedding projection (UNet
 * only), GN-SiLU-conv, + skip (1x1 conv when the width changes). Checkpoint names per model in
 * sd_resblock_names; shapes below. */
typedef struct {
    asam_tensor *norm1_w, *norm1_b; // (Cin)
    asam_tensor *conv1_w, *conv1_b; // (Cout, Cin, 3, 3), (Cout)
    asam_tensor *emb_w, *emb_b;     // (Cout, Temb), (Cout); NULL in the VAE
    asam_tensor *norm2_w, *norm2_b; // (Cout)
    asam_tensor *conv2_w, *conv2_b; // (Cout, Cout, 3, 3), (Cout)
    asam_tensor *skip_w, *skip_b;   // (Cout, Cin, 1, 1), (Cout); NULL if Cin == Cout
    int cin, cout;
} sd_resblock;

/* Checkpoint names of a block's parts, after "BASE." */
typedef struct {
    const char *what; /* for errors: "ResBlock" / "ResnetBlock" */
    const char *norm1, *conv1, *emb, *norm2, *conv2, *skip;
} sd_resblock_names;
extern const sd_resblock_names sd_resblock_unet; /* in_layers.0/.2, emb_layers.1, ... */
extern const sd_resblock_names sd_resblock_vae;  /* norm1, conv1, norm2, conv2, nin_shortcut */

/* Binds the block under BASE (Cout read from conv1's shape; temb 0: no embedding projection).
 * Returns 0, or -1 with the loader failed and the error recorded. */
int sd_resblock_load(sd_loader *L, sd_resblock *r, const char *base, int cin, int temb,
                     const sd_resblock_names *nm);
/* emb: (B, Temb) or NULL (VAE); eps of the GroupNorms. */
asam_tensor *sd_resblock_forward(asam_ctx *ctx, const sd_resblock *r, asam_tensor *x,
                                 asam_tensor *emb, float eps);

/* attention.BasicTransformerBlock (self-attn, cross-attn, GEGLU feed-forward). */
typedef struct {
    asam_tensor *norm1_w, *norm1_b;           // (C)
    asam_tensor *attn1_q, *attn1_k, *attn1_v; // attn1.to_{q,k,v} (C, C), no bias
    asam_tensor *attn1_out_w, *attn1_out_b;   // attn1.to_out.0 (C, C), (C)
    asam_tensor *norm2_w, *norm2_b;           // (C)
    asam_tensor *attn2_q;                     // attn2.to_q (C, C)
    asam_tensor *attn2_k, *attn2_v;           // attn2.to_{k,v} (C, Cctx)
    asam_tensor *attn2_out_w, *attn2_out_b;   // attn2.to_out.0 (C, C), (C)
    asam_tensor *norm3_w, *norm3_b;           // (C)
    asam_tensor *ff0_w, *ff0_b;               // ff.net.0.proj (2F, C), (2F): GEGLU, F = 4C
    asam_tensor *ff2_w, *ff2_b;               // ff.net.2 (C, F), (C)
    int ff_inner;                             // F
} sd_tblock;

/* attention.SpatialTransformer: GN(1e-6), proj_in, blocks over H*W tokens, proj_out, + x. */
typedef struct {
    asam_tensor *norm_w, *norm_b; // norm (C)
    asam_tensor *proj_in_w,
        *proj_in_b; // proj_in (C, C) (stored (C, C, 1, 1) or Linear (C, C)), (C)
    asam_tensor *proj_out_w, *proj_out_b; // proj_out (C, C), (C)
    sd_tblock *blocks;                    // transformer_blocks.0..depth-1
    int depth, C, heads, context_dim;
} sd_transformer;

/* One entry of input_blocks / middle_block / output_blocks (a TimestepEmbedSequential). */
typedef struct {
    sd_resblock *res;     // .0 ResBlock (NULL for conv_in / Downsample)
    sd_transformer *attn; // .1 SpatialTransformer or NULL
    asam_tensor *conv_w;  // conv_in (input_blocks.0.0), Downsample (.0.op, stride 2) or
    asam_tensor *conv_b;  //   Upsample (.{1,2}.conv) weights (Cout, Cin, 3, 3), (Cout)
    int conv_stride;      // 1 or 2 (Downsample)
    int upsample;         // nearest x2 before conv_w (output blocks)
    int concat_skip;      // output blocks: h = cat([h, skip], 1) first
    int cout;             // channels out
} sd_block;

struct asam_unet {
    int in_channels, model_channels, out_channels, num_res_blocks, n_levels;
    int context_dim, temb_dim, num_heads;
    asam_tensor *time_embed0_w, *time_embed0_b; // time_embed.0 (4mc, mc), (4mc)
    asam_tensor *time_embed2_w, *time_embed2_b; // time_embed.2 (4mc, 4mc), (4mc)
    sd_block *input_blocks;                     // n_in = n_levels * (num_res_blocks + 1)
    int n_in;
    sd_block middle[3];      // middle_block.0 Res, .1 ST, .2 Res
    sd_block *output_blocks; // n_out (0 in a ControlNet's encoder copy)
    int n_out;
    asam_tensor *out_norm_w, *out_norm_b; // out.0 (mc)
    asam_tensor *out_conv_w, *out_conv_b; // out.2 (out_ch, mc, 3, 3), (out_ch)
    int *skip_ch;                         // channels of each input block's output
    int grad_checkpointing;               // recompute blocks during backward
    sd_loader weights;                    // owns every tensor
};

/* Load the UNet layout (encoder_only: no output blocks / out, as in a ControlNet). Fills u
 * (zeroed by the caller) using L. Returns 0 or -1 (asam_error set). */
int sd_unet_load_into(struct asam_unet *u, sd_loader *L, int encoder_only);
/* asam_unet_load / asam_vae_load / asam_controlnet_load; frozen: the model is never trained, so
 * under bf16 its GEMM weights are held in bf16 as they are read (asam_binder.hold_weights). The SD
 * bundle loads so, and asam_sd_controlnet_open its ControlNet. */
int sd_unet_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen, asam_unet **out);
int sd_vae_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen, asam_vae **out);
int sd_controlnet_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen,
                              struct asam_controlnet **out);
void sd_unet_release(struct asam_unet *u);
/* Sinusoidal timestep embedding -> time_embed MLP: (B, temb). */
asam_tensor *sd_time_embed(asam_ctx *ctx, const struct asam_unet *u, const float *t, int64_t B);
/* Run one block (through gradient checkpointing when enabled and recording; block-wise
 * arena release when not recording). skip: output blocks only. */
asam_tensor *sd_run_block(asam_ctx *ctx, const struct asam_unet *u, const sd_block *blk,
                          asam_tensor *h, asam_tensor *emb, asam_tensor *context,
                          asam_tensor *skip);
/* Check x / context shapes against the model; ctx error and -1 on mismatch. */
int sd_unet_check_inputs(asam_ctx *ctx, const struct asam_unet *u, const char *who, asam_tensor *x,
                         const float *t, asam_tensor *context);

/* The loaded tensors of a VAE / ControlNet (names, persistent tensors), for tests. */
const sd_loader *sd_vae_weights(const asam_vae *m);
const sd_loader *sd_controlnet_weights(const asam_controlnet *m);

#endif
