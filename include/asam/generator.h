/* The ASAM generator (DESIGN.md §1.1): colour mask maps from SA-1B annotations, DDIM + null-text
 * inversion with the mask ControlNet, the MI-FGSM latent attack against SAM (the official
 * code's "skip" gradient or the paper's full chain rule through every guided UNet step), the
 * controlled regeneration of the worst latent, and a resumable driver over a dataset.
 *
 * Output layout of asam_generate() (each file written atomically):
 *   OUT/inv/sa_N.safetensors    inversion: x_T, z_0, the per-step null embeddings, the prompt
 *   OUT/adv/sa_N.png            adversarial image, size x size (512 by default)
 *   OUT/adv/sa_N.attack.json    record: IoU per attack iteration, best iteration, options
 *   OUT/summary.json            mean IoU before / after over all finished images
 * The SA-1B masks of sa_N.json stay the labels of OUT/adv/sa_N.png. */
#ifndef ASAM_GENERATOR_H
#define ASAM_GENERATOR_H

#include "asam/engine.h"
#include "asam/image.h"
#include "asam/sa1b.h"
#include "asam/efficientsam.h"
#include "asam/sam.h"
#include "asam/sd.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options (defaults = the official code) ------------------------------------------------ */
typedef enum { ASAM_GRAD_SKIP = 0, ASAM_GRAD_FULL = 1 } asam_grad_mode;

typedef struct {
    int size;                  /* SD image side (512); latents are size/8 */
    int steps;                 /* DDIM steps (50), steps_offset 0: t = 980, 960, ..., 0 */
    float cfg;                 /* classifier-free guidance (7.5) */
    float control_scale;       /* ControlNet conditioning scale (1) */
    int null_steps;            /* inner Adam steps per timestep (10) */
    float null_lr;             /* base lr (0.01); step i uses null_lr * (1 - i/100) */
    float null_eps;            /* early stop when loss < null_eps + i * null_eps_slope (1e-5) */
    float null_eps_slope;      /* (2e-5) */
    int iters;                 /* attack iterations (10) */
    float alpha;               /* MI-FGSM step (0.02) */
    float eps;                 /* L-inf radius around x_T0 (0.2) */
    float momentum;            /* MI-FGSM decay (0.5) */
    int max_boxes;             /* SAM box prompts from the first GT masks (140) */
    asam_grad_mode grad;       /* ASAM_GRAD_SKIP (official code) or ASAM_GRAD_FULL (paper) */
    float w_bce, w_dice, w_l2; /* loss weights (100, 100, 1): bce + dice - l2 */
    int verbose;               /* progress lines on stderr */
} asam_gen_opts;

void asam_gen_opts_default(asam_gen_opts *o);

/* ---- models -------------------------------------------------------------------------------- */
typedef struct {
    asam_sd *sd;                 /* tokenizer, CLIP text encoder, UNet, VAE */
    asam_controlnet *controlnet; /* mask ControlNet, or NULL (plain SD) */
    asam_sam *sam;               /* the attacked SAM (attack only; NULL for invert) */
    asam_esam *esam;             /* or the attacked EfficientSAM (at most one of the two) */
} asam_gen_models;

/* sd: CompVis single file or diffusers folder; controlnet, sam: NULL to leave out; sam may be
 * a SAM or an EfficientSAM checkpoint (family from its names). */
int asam_gen_models_load(const char *sd_path, const char *controlnet_path, const char *sam_path,
                         asam_gen_models *m);
void asam_gen_models_free(asam_gen_models *m);

/* ---- colour mask map ----------------------------------------------------------------------- */
/* Deterministic colour of mask k (the k-th annotation in file order): a fixed hash of k, never
 * black. */
void asam_mask_color(int k, uint8_t rgb[3]);
/* Paint every annotation in its colour on black at the annotation size (height x width),
 * larger masks first (ties: file order) so small masks stay visible. out: RGB, allocated. */
int asam_mask_map(const asam_sa1b_image *ann, asam_image *out);
/* The ControlNet hint: the map resized to size x size (PIL bilinear), scaled to [0,1],
 * (1,3,size,size). NULL on error (message in ctx). */
asam_tensor *asam_mask_map_tensor(asam_ctx *ctx, const asam_sa1b_image *ann, int size);

/* ---- inversion ----------------------------------------------------------------------------- */
typedef struct {
    int steps;               /* DDIM steps */
    int size;                /* image side */
    int lat_c, lat_h, lat_w; /* 4, size/8, size/8 */
    int ctx_len, ctx_dim;    /* 77, text width */
    float *x_T;              /* (1, 4, h, w) inverted noise latent */
    float *z0;               /* (1, 4, h, w) VAE mean * 0.18215 of the input image */
    float *null_emb;  /* (steps, 77, D): uncond embedding for sampling step i (t[i] descending) */
    float *null_loss; /* (steps): last inner loss per step */
    char *prompt;     /* caption used for the conditional branch */
    char *image;      /* source image name (metadata) */
} asam_inversion;

/* img: RGB, any size (resized to size x size ignoring aspect); hint: (1,3,size,size) in [0,1]
 * or NULL without ControlNet; prompt: caption ("" when absent). */
int asam_invert(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, asam_tensor *hint, const char *prompt, asam_inversion *out);
int asam_inversion_save(const char *path, const asam_inversion *inv); /* safetensors, atomic */
int asam_inversion_load(const char *path, asam_inversion *inv);
void asam_inversion_free(asam_inversion *inv);

/* ---- guided sampling chain ------------------------------------------------------------------ */
/* x_T (1,4,h,w) -> z_0 with CFG (inv's null embedding per step as uncond, cond = text context
 * (1,77,D)) and the ControlNet in both branches. grad_full = 0: without recording (each step's
 * temporaries released). grad_full = 1 and x_T requiring a gradient: every step is a
 * gradient-checkpointed segment, so backward memory stays near one step's. */
asam_tensor *asam_gen_sample_chain(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                                   const asam_inversion *inv, asam_tensor *cond, asam_tensor *hint,
                                   asam_tensor *x_T, int grad_full);

/* Differentiable soft-clamped VAE decode: z_0 (1,4,h,w) -> image (1,3,8h,8w) in [0,1]
 * (decode(z/0.18215), (x+1)/2, soft clamp). */
asam_tensor *asam_gen_decode01(asam_ctx *ctx, const asam_gen_models *m, asam_tensor *z0);

/* ---- attack -------------------------------------------------------------------------------- */
/* The SAM target of one image: box prompts and GT masks from its annotations. */
typedef struct {
    int n;           /* masks used (<= max_boxes) */
    float *boxes;    /* (n, 4) x0,y0,x1,y1 in the 1024 frame (tight bounds of the resized mask) */
    float *gt256;    /* (n, 1, 256, 256) 0/1 */
    uint8_t *gt1024; /* (n, 1024, 1024) 0/1, for IoU */
} asam_attack_target;

int asam_attack_target_make(const asam_sa1b_image *ann, int max_boxes, asam_attack_target *t);
void asam_attack_target_free(asam_attack_target *t);

/* SAM (or EfficientSAM) on an image tensor (1,3,S,S) in [0,1]: nearest resize to 1024, x255,
 * the model's ImageNet normalisation, encode, box prompts (EfficientSAM: points labelled 2 /
 * 3), single-mask decode. Returns the attack loss
 *   w_bce BCE(low_res, gt256) + w_dice Dice(sigmoid) - w_l2 ||x1024 - clean1024||_2
 * (clean01: (1,3,S,S) in [0,1], or NULL to leave the norm term out); miou: mean IoU of the
 * thresholded masks (bilinear to 1024, logits > 0) against gt1024. */
asam_tensor *asam_attack_loss(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                              const asam_attack_target *tg, asam_tensor *img01,
                              asam_tensor *clean01, float *miou);

typedef struct {
    int iters;        /* evaluations = iters + 1: [0] clean x_T, [k] after k updates */
    float *miou;      /* (iters + 1) mean IoU of each evaluated latent */
    float *loss;      /* (iters + 1) attack loss */
    int best;         /* index of the lowest mean IoU (0 = the clean latent) */
    float *x_best;    /* (1, 4, h, w) the kept latent */
    asam_image image; /* size x size RGB regenerated from x_best (with the mask ControlNet) */
    int n_masks;      /* box prompts used */
} asam_attack_result;

/* img: the clean image (any size, RGB); ann: its annotations; hint: the colour mask map
 * tensor; inv: its inversion. */
int asam_attack(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, const asam_sa1b_image *ann, asam_tensor *hint,
                const asam_inversion *inv, asam_attack_result *res);
/* The same with a ready-made target (e.g. other labels than the SA-1B masks). */
int asam_attack_target_run(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                           const asam_image *img, const asam_attack_target *target,
                           asam_tensor *hint, const asam_inversion *inv, asam_attack_result *res);
void asam_attack_result_free(asam_attack_result *r);
/* PNG (atomic) and the JSON record (atomic); image_name goes into the record. */
int asam_attack_write(const char *png_path, const char *json_path, const char *image_name,
                      const asam_gen_opts *o, const asam_attack_result *r);

/* ---- dataset driver ------------------------------------------------------------------------ */
enum { ASAM_GEN_INVERT = 1, ASAM_GEN_ATTACK = 2, ASAM_GEN_BOTH = 3 };

/* One image: IMAGE (jpg/png) with its SA-1B annotations ANN; outputs under out_dir as listed at
 * the top (stem = IMAGE's file name without extension). Parts already on disk are skipped
 * (an existing inversion is loaded; a finished attack is read back). mode ASAM_GEN_ATTACK alone
 * needs the inversion file. miou_before / miou_after: NULL or receive the attack record's clean
 * and kept mean IoU (NAN without attack). *did_work: NULL or 1 when something was computed. */
int asam_generate_image(const asam_gen_models *m, const asam_gen_opts *o, const char *image_path,
                        const char *ann_path, const char *prompt, const char *out_dir, int mode,
                        float *miou_before, float *miou_after, int *did_work);

typedef struct {
    const char *data;     /* "sa1b:DIR" or DIR: folder of sa_N.jpg + sa_N.json */
    const char *captions; /* JSON lines {"img": "sa_1.jpg", "prompt": "..."} or NULL */
    const char *out;      /* output folder */
    int shard, n_shards;  /* process images with index % n_shards == shard (0/1 = all) */
    int limit;            /* only the first `limit` images of the folder (0 = all) */
    int mode;             /* ASAM_GEN_INVERT, ASAM_GEN_ATTACK or ASAM_GEN_BOTH */
    int stop_after;       /* test hook: return 1 after this many newly finished images (0 = no);
                             also read from $ASAM_GENERATE_STOP_AFTER */
} asam_generate_cfg;

typedef struct {
    int total;                      /* images in the shard */
    int done;                       /* finished now or before */
    int skipped;                    /* already finished when the run started */
    int attacked;                   /* images with an attack record */
    double miou_before, miou_after; /* means over attacked images */
} asam_generate_stats;

/* Invert (+ attack) every image of the shard, skipping finished outputs; progress (count, rate,
 * ETA) on stderr; writes OUT/summary.json (OUT/summary.I-of-N.json for a shard). Returns 0, 1
 * when stopped by stop_after, or -1. */
int asam_generate(const asam_gen_models *m, const asam_gen_opts *o, const asam_generate_cfg *cfg,
                  asam_generate_stats *st);

/* Captions: JSON lines file -> lookup. */
typedef struct asam_captions asam_captions;
int asam_captions_load(const char *path, asam_captions **out);
const char *asam_captions_get(const asam_captions *c, const char *img_name); /* "" when absent */
void asam_captions_free(asam_captions *c);

#ifdef __cplusplus
}
#endif
#endif
