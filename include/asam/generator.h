/* The ASAM generator (DESIGN.md §1.1): colour mask maps from SA-1B annotations, DDIM + null-text
 * inversion with the mask ControlNet, the MI-FGSM latent attack against SAM (the official
 * code's "skip" gradient or the paper's full chain rule through every guided UNet step), the
 * controlled regeneration of the worst latent, and a resumable driver over a dataset.
 *
 * Output layout of asam_generate() (each file written atomically):
 *   OUT/inv/sa_N.safetensors    inversion: x_T, z_0, the per-step null embeddings, the prompt
 *   OUT/adv/sa_N.jpg            adversarial image, size x size (512 by default), JPEG q75 as
 *                               the official script (sa_N.png with adv_png)
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
    int null_checkpointing;    /* ASAM_NULL_CKPT_AUTO|ON|OFF (asam/sd.h): speed and memory only */
    int iters;                 /* attack iterations (10) */
    float alpha;               /* MI-FGSM step (0.02) */
    float eps;                 /* L-inf radius around x_T0 (0.2) */
    float momentum;            /* MI-FGSM decay (0.5) */
    int max_boxes;             /* SAM box prompts from the first GT masks (140) */
    asam_grad_mode grad;       /* ASAM_GRAD_SKIP (official code) or ASAM_GRAD_FULL (paper) */
    float w_bce, w_dice, w_l2; /* loss weights (100, 100, 1): bce + dice - l2 */
    int adv_png;               /* save adversarial images as PNG (lossless) instead of the
                                  official JPEG quality 75 */
    int force;                 /* redo outputs recorded with other options (else refuse) */
    const char *control_dir;   /* pre-rendered control maps DIR/STEM.png (the official
                                  control_mask_dir), or NULL: render from the annotations */
    int verbose;               /* progress lines on stderr */
    int trace;                 /* tests: keep per-iteration latents / gradients / momentum and
                                  call null_trace per null-text inner step */
    void (*null_trace)(void *user, int i, int j, float loss, const float *emb, size_t n);
    void *trace_user;
} asam_gen_opts;

void asam_gen_opts_default(asam_gen_opts *o);

/* ---- models -------------------------------------------------------------------------------- */
typedef struct {
    asam_sd *sd;                     /* tokenizer, CLIP text encoder, UNet, VAE */
    asam_controlnet *controlnet;     /* mask ControlNet, or NULL (plain SD) */
    asam_controlnet *controlnet_adv; /* the attack's ControlNet (official: _mask_adv, while
                                        the inversion uses _mask_inv), or NULL: controlnet */
    asam_sam *sam;                   /* the attacked SAM (attack only; NULL for invert) */
    asam_esam *esam;                 /* or the attacked EfficientSAM (at most one of the two) */
    /* the files they came from (not owned; set by asam_gen_models_load, controlnet_adv_path by
     * whoever opens controlnet_adv): the provenance of every output names them */
    const char *sd_path, *controlnet_path, *controlnet_adv_path, *sam_path;
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
/* The ControlNet hint of the annotations' map: asam_control_hint(map, size, 0). NULL on error
 * (message in ctx). */
asam_tensor *asam_mask_map_tensor(asam_ctx *ctx, const asam_sa1b_image *ann, int size);
/* A control map (RGB, any size: asam_mask_map's or a pre-rendered control_mask_dir/sa_N.png)
 * -> (1,3,size,size) in [0,1] as the official scripts make it: cv2.resize (INTER_LINEAR) on
 * the uint8 map (float_path 0: the attack, grad_null_text_inversion_edit.py:898-902) or on the
 * float32 map (float_path 1: the inversion, null_text_inversion.py:718-720), then /255. */
asam_tensor *asam_control_hint(asam_ctx *ctx, const asam_image *map, int size, int float_path);

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
    char *provenance; /* JSON of the options and inputs that made it (asam/provenance.h) */
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
/* The SAM target of one image, as grad_null_text_inversion_edit.py builds it (:850-876): each
 * mask as an 8-bit 0/255 image, PIL-bicubic to 1024x1024 (aspect ignored), boxes from the
 * 1024 masks > 128, the 256x256 labels bilinear (align_corners=False) from the 1024 masks.
 * For a SAM of input side S every 1024 reads S and every 256 reads S/4 (the field names keep
 * the official sizes). */
typedef struct {
    int n;          /* masks used (<= max_boxes) */
    int size;       /* S, the attacked model's input side (0: 1024) */
    float *boxes;   /* (n, 4) x0,y0,x1,y1 in the S frame: masks_to_boxes of mask > 128 (max
                       inclusive); an empty mask gives (1e8, 1e8, 0, 0) as the official code */
    float *lab256;  /* (n, 1, S/4, S/4) label_masks_256: 0..255; the IoU counts lab256 > 128 */
    float *gt256;   /* (n, 1, S/4, S/4) lab256 / 255: the soft BCE / Dice target */
    float *ref1024; /* (1, 3, S, S) the L2 term's reference: the original image PIL-bicubic
                       to S, /255, ImageNet mean/std; NULL leaves the term out */
} asam_attack_target;

/* From SA-1B annotations (the first max_boxes in file order, each decoded at the image size),
 * for a 1024-input model; _at: for a model of input side size (a multiple of 16). */
int asam_attack_target_make(const asam_sa1b_image *ann, int max_boxes, asam_attack_target *t);
int asam_attack_target_make_at(const asam_sa1b_image *ann, int max_boxes, int size,
                               asam_attack_target *t);
/* From per-mask 8-bit images (the official segmentation_j.png files; any size, gray). */
int asam_attack_target_from_masks(const asam_image *masks, int n, asam_attack_target *t);
int asam_attack_target_from_masks_at(const asam_image *masks, int n, int size,
                                     asam_attack_target *t);
/* Sets t->ref1024 from the clean original image (RGB, any size), at the target's size. */
int asam_attack_target_set_reference(asam_attack_target *t, const asam_image *img);
void asam_attack_target_free(asam_attack_target *t);

/* The official compute_iou (grad_null_text_inversion_edit.py:243-264) of n low-res logit maps
 * against lab256: per mask |p & g| / |p | g| with p = logit > 0, g = lab > 128, at 256x256
 * (_at: at lowres x lowres, S/4 for a model of input side S); 0/0 is NaN, and the mean over
 * masks is NaN then (never kept). */
float asam_attack_iou(const float *low, const float *lab256, int n);
float asam_attack_iou_at(const float *low, const float *lab, int n, int lowres);

/* SAM (or EfficientSAM) on an image tensor (1,3,H,W) in [0,1]: nearest resize to S (1024),
 * the model's ImageNet normalisation, encode, box prompts (EfficientSAM: points labelled 2 /
 * 3), single-mask decode. Returns the attack loss
 *   w_bce BCE(low_res, gt256) + w_dice Dice(sigmoid) - w_l2 ||x1024 - ref1024||_2
 * (the norm term only with tg->ref1024); miou: asam_attack_iou of the prediction. terms: NULL
 * or receives {bce, dice, l2} (weighted as they enter the loss, l2 positive). */
asam_tensor *asam_attack_loss(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                              const asam_attack_target *tg, asam_tensor *img01, float *miou,
                              float terms[3]);

typedef struct {
    int iters;        /* evaluations: [0] the clean x_T, [k] after k updates (the official loop
                         scores iterates 0..iters-1; the update made after the last is unused) */
    float *miou;      /* (iters) mean IoU of each evaluated latent (NaN possible) */
    float *loss;      /* (iters) attack loss */
    float *terms;     /* (iters, 3) bce, dice, l2 as in asam_attack_loss */
    int best;         /* the kept iterate: the first with IoU below every earlier one and below
                         1 (official: worst_iou starts at 1.0); 0 (clean) when none is */
    float *x_best;    /* (1, 4, h, w) the kept latent */
    asam_image image; /* size x size RGB regenerated from x_best: trunc(255 clamp(x)) as the
                         official astype(np.uint8) */
    int n_masks;      /* box prompts used */
    /* trace for tests (NULL unless asam_gen_opts.trace): (iters, 4, h, w) each */
    float *x_in, *grad, *mom;
} asam_attack_result;

/* img: the clean image (any size, RGB); ann: its annotations; hint: the colour mask map
 * tensor; inv: its inversion. */
int asam_attack(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                const asam_image *img, const asam_sa1b_image *ann, asam_tensor *hint,
                const asam_inversion *inv, asam_attack_result *res);
/* The same with a ready-made target (e.g. other labels than the SA-1B masks), made for the
 * model's input side (asam_gen_models_img_size). */
int asam_attack_target_run(asam_ctx *ctx, const asam_gen_models *m, const asam_gen_opts *o,
                           const asam_image *img, const asam_attack_target *target,
                           asam_tensor *hint, const asam_inversion *inv, asam_attack_result *res);
void asam_attack_result_free(asam_attack_result *r);
/* The input side S of the attacked SAM / EfficientSAM in m (0 when there is none). */
int asam_gen_models_img_size(const asam_gen_models *m);
/* The adversarial image (atomic): JPEG quality 75 (PIL's defaults, 4:2:0) when the path ends
 * in .jpg as the official script saves it (:911, ptp_utils.py:60-62), PNG otherwise; and the
 * JSON record (atomic); image_name goes into the record. */
int asam_attack_write(const char *png_path, const char *json_path, const char *image_name,
                      const asam_gen_opts *o, const asam_attack_result *r);
/* The same, with the provenance JSON (asam/provenance.h) stored in the record. */
int asam_attack_write_prov(const char *png_path, const char *json_path, const char *image_name,
                           const asam_gen_opts *o, const asam_attack_result *r,
                           const char *provenance);

/* ---- dataset driver ------------------------------------------------------------------------ */
enum { ASAM_GEN_INVERT = 1, ASAM_GEN_ATTACK = 2, ASAM_GEN_BOTH = 3 };

/* One image: IMAGE (jpg/png) with its SA-1B annotations ANN; outputs under out_dir as listed at
 * the top (stem = IMAGE's file name without extension). Parts already on disk are skipped
 * (an existing inversion is loaded; a finished attack is read back) when their recorded
 * provenance equals the current options and inputs; otherwise the run refuses with one line
 * naming the option that differs, or redoes them with o->force. mode ASAM_GEN_ATTACK alone
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
/* 1 when the file has a line for img_name. With a captions file, generate refuses an image
 * without one (the official captions[name] raises KeyError). */
int asam_captions_has(const asam_captions *c, const char *img_name);
void asam_captions_free(asam_captions *c);

#ifdef __cplusplus
}
#endif
#endif
