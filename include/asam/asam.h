/* ASAM's SAM side: segmentation metrics, the BCE + Dice training loss, adversarial token
 * tuning, evaluation (mIoU / boundary IoU tables) and the pixel-space PGD baseline.
 * Defaults are the official code's numbers (DESIGN.md §1.1). */
#ifndef ASAM_ASAM_H
#define ASAM_ASAM_H

#include "asam/dataset.h"
#include "asam/efficientsam.h"
#include "asam/engine.h"
#include "asam/sam.h"
#include "asam/util.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* random numbers: asam_rng (xoshiro256**, state saved for exact resumes) in asam/util.h */

/* ---- metrics (masks are row-major 0/1 bytes) ---------------------------------------------- */
/* |A and B| / |A or B|; both empty -> 1 (they agree). */
double asam_mask_iou(const uint8_t *pred, const uint8_t *gt, int64_t n);
/* Boundary IoU's dilation: d = max(1, round(ratio * sqrt(h^2 + w^2))). */
int asam_boundary_dilation(int h, int w, double ratio);
/* The mask minus its erosion by a (2d+1)^2 square, pixels outside the image counting as
 * background (as the reference pads with zeros before cv2.erode). out: h*w 0/1. */
int asam_mask_boundary(const uint8_t *mask, int h, int w, int d, uint8_t *out);
/* Boundary IoU (Cheng et al. 2021) with dilation ratio (0.02 in ASAM / HQ-SAM). */
double asam_boundary_iou(const uint8_t *pred, const uint8_t *gt, int h, int w, double ratio);

/* ---- loss --------------------------------------------------------------------------------- */
typedef struct {
    int points;       /* 1: point-sampled (HQ-SAM / Mask2Former), 0: full 256x256 */
    int n_points;     /* 112 * 112 */
    float oversample; /* 3 */
    float importance; /* 0.75: share of the points taken as the most uncertain */
    /* tests (asam/tune_hook.h): when set, the uniform draws come from draw(user, which, mask,
     * out, n) instead of rng: which 1 the candidates, 2 the random share, mask = mask0 + b */
    void (*draw)(void *user, int which, int64_t mask, float *out, size_t n);
    void *draw_user;
    int64_t draw_mask0;
} asam_mask_loss_cfg;
void asam_mask_loss_defaults(asam_mask_loss_cfg *c);
/* BCE-with-logits + Dice (smooth 1), weight 1:1, each averaged over the B masks.
 * logits (B, 1, 256, 256) with a gradient; gt (B, 1, H, W) floats in [0, 1] (any resolution:
 * point-sampled in normalised coordinates; resized bilinearly to 256 for the full loss).
 * Point mode draws random numbers from rng. Returns a scalar or NULL (ctx error). */
asam_tensor *asam_mask_loss(asam_ctx *ctx, asam_tensor *logits, asam_tensor *gt,
                            const asam_mask_loss_cfg *c, asam_rng *rng);

/* ---- tuning ------------------------------------------------------------------------------- */
enum { ASAM_PROMPT_BOX = 1, ASAM_PROMPT_POINTS = 2, ASAM_PROMPT_MASK = 4 };

typedef struct {
    const char *model_path;
    const char *const *data; /* dataset specs (asam/dataset.h) */
    int n_data;
    const char *out_dir;
    const char *cache_dir; /* embedding cache (no-augment mode); NULL = OUT/cache */
    int epochs;            /* 20 */
    float lr;              /* 2e-3, scaled per epoch by asam_lr_asam_factor */
    int batch;             /* 32 images per optimiser step: the official 4 per GPU x 8 GPUs
                              (tuning.sh:2, main.py:300), gradients averaged by DDP */
    int keep_last;         /* 0: drop the last partial batch (official BatchSampler
                              drop_last=True, dataloader.py:130-133); 1: step on it too */
    int masks_per_image;   /* 4: the first four annotations, wrapping around */
    int prompts;           /* ASAM_PROMPT_* set drawn from (all three) */
    int n_prompt_points;   /* 10 positive points */
    float box_noise;       /* 0: exact GT box (HQ-SAM's box_noise scale when > 0) */
    asam_mask_loss_cfg loss;
    int augment;            /* 1: h-flip + large-scale jitter; 0: cached embeddings */
    float lsj_min, lsj_max; /* 0.1, 2.0 */
    uint64_t seed;
    int resume;     /* continue OUT/state.safetensors when its provenance (model, data, seed,
                       lr, batch, loss, prompts, augmentation) equals this run's */
    int force;      /* a state recorded with other options: start over (else refuse) */
    int stop_after; /* > 0: stop after this many completed epochs (tests) */
    int limit;      /* > 0: at most this many images per dataset */
    int progress;   /* 1: progress line on stderr */
    /* asam's own choices where the official code does otherwise (docs/asam-conformance.md) */
    int adv_resized;  /* D3: tune on the adversarial image resized to the annotation size
                         (official: the saved square image, masks squashed to its frame) */
    int points_any;   /* D8: a mask below n_prompt_points foreground pixels gets its points with
                         replacement (official: no point prompts for its point group) */
    int point_group;  /* D8: images deciding together whether point prompts are drawn: the
                         official rank batch, 4 (main.py:300 per GPU) */
    int drop_cropped; /* D9: drop masks the crop emptied (official: kept, box (1e8, 1e8, 0, 0),
                         zero target) */
    const struct asam_tune_hook *hook; /* tests only (asam/tune_hook.h); NULL */
} asam_tune_opts;
void asam_tune_defaults(asam_tune_opts *o);

typedef struct {
    int start_epoch, epochs_done; /* epochs completed before this run / in total */
    int n_images;                 /* images in the training set */
    double epoch_loss[256];       /* mean training loss of each epoch run now (by epoch) */
} asam_tune_report;

/* Writes OUT/state.safetensors after every epoch and, at the end, OUT/sam_tuned.pth (torch.save
 * zip, official keys), OUT/sam_tuned.safetensors and OUT/decoder_tokens.safetensors. The model
 * may be an EfficientSAM (EASAM; family from the file, asam/segmenter.h): then the outputs are
 * OUT/efficientsam_tuned.pt (its official {"model": state_dict}) and
 * OUT/efficientsam_tuned.safetensors, and mask prompts are not drawn. */
int asam_tune(const asam_tune_opts *o, asam_tune_report *rep);

/* ---- evaluation --------------------------------------------------------------------------- */
enum { ASAM_PROTOCOL_ASAM = 0, ASAM_PROTOCOL_SAM = 1 };

typedef struct {
    double miou, biou; /* means over images of the per-image mean over masks, 0..1 */
    int n_images, n_masks;
} asam_eval_cell;

/* One image, one model: IoU and boundary IoU per mask averaged over the image's masks.
 * ASAM protocol: image and GT boxes at S x S (aspect ignored, torch bilinear; S the model's
 * input side, 1024 officially), one tight box per mask, multimask off, the S/4 logits
 * bilinearly to the GT size, logits > 0. SAM protocol:
 * the official predictor (ResizeLongestSide, padding, post-processing). Returns 0 (with
 * *n_masks = 0 when the sample has none) or -1. */
int asam_eval_sample(const asam_sam *m, const asam_sample *s, int protocol, double dilation_ratio,
                     double *miou, double *biou, int *n_masks);
/* As asam_eval_sample; two_step (ASAM protocol): the logits go x4 bilinearly to S first, then
 * to the GT size, as the official eval treats its tuned decoder (main.py:664 then :565);
 * 0: one step, as its --baseline (SAM's own decoder). */
int asam_eval_sample_path(const asam_sam *m, const asam_sample *s, int protocol,
                          double dilation_ratio, int two_step, double *miou, double *biou,
                          int *n_masks);
/* logits (B, 1, S/4, S/4) -> (B, 1, h, w), in one or two bilinear steps (see above) */
asam_tensor *asam_eval_upsample(asam_ctx *ctx, asam_tensor *low, int h, int w, int two_step);

/* EfficientSAM, with its own official pipeline under either protocol: the image stretched to
 * 1024x1024 (bilinear), each GT's tight box as points labelled 2 / 3, single-mask output
 * resized bicubically to the original size, logits >= 0. */
int asam_eval_sample_esam(const asam_esam *m, const asam_sample *s, double dilation_ratio,
                          double *miou, double *biou, int *n_masks);

typedef struct {
    const char *const *models; /* checkpoint paths: SAM or EfficientSAM (family from the file) */
    int n_models;
    const char *const *names; /* dataset display names */
    const char *const *specs; /* dataset specs */
    int n_data;
    int protocol;
    double dilation_ratio;           /* 0.02 */
    int limit;                       /* > 0: first N images per dataset */
    const int *two_step;             /* per model: 1 = a tuned decoder's path (official
                                        main.py:664), 0 / NULL = the --baseline path */
    const char *md_path, *json_path; /* outputs, either may be NULL */
    int progress;
} asam_eval_opts;
void asam_eval_defaults(asam_eval_opts *o);
/* cells: n_models * n_data, cells[m * n_data + d]. Writes the tables (atomic). */
int asam_eval_run(const asam_eval_opts *o, asam_eval_cell *cells);
/* The Markdown table (a row per dataset, mIoU / bIoU columns per model, a mean row). */
void asam_eval_write_md(const asam_eval_opts *o, const asam_eval_cell *cells, FILE *f);

/* ---- PGD baseline ------------------------------------------------------------------------- */
typedef struct {
    const char *model_path;
    const char *data;    /* dataset spec */
    const char *out_dir; /* ADVDIR: STEM.png per image */
    float eps;           /* 8/255 (pixel values in [0, 1]) */
    float step;          /* 2/255 */
    int iters;           /* 10 */
    int max_masks;       /* GT boxes per image (0 = all); 140 as ASAM's attack caps */
    int limit;
    int progress;
    int force; /* ADVDIR made with other options (ADVDIR/provenance.json): redo every image
                  (else refuse, naming the option) */
} asam_pgd_opts;
void asam_pgd_defaults(asam_pgd_opts *o);

/* Loss of the PGD attack and its gradient w.r.t. the pixels: BCE + Dice (full 256x256, as
 * ASAM's attack) of SAM's box-prompted single-mask low-res logits against the GT in the 1024
 * frame (S/4 x S/4 and S for a SAM of input side S). pixels (3, h, w) floats 0..255 at the image's
 * size go through a torch-bilinear resize to the ResizeLongestSide size, normalisation and zero
 * padding, so the loss is differentiable w.r.t. them. gt: (n, h, w) 0/1 bytes; boxes are their
 * tight bounds; boxes are decoded in chunks against one encoder pass. grad: 3*h*w floats or NULL
 * (forward only). */
int asam_pgd_loss_grad(const asam_sam *m, const float *pixels, const uint8_t *gt, int n, int h,
                       int w, double *loss, float *grad);
/* Attack one sample (the sample is not modified): iters signed-gradient steps of step * 255,
 * projected to |x - clean| <= eps * 255 and [0, 255]; adv receives the rounded 8-bit RGB image
 * of the same size (allocated). loss_before (first iterate) / loss_after (the saved 8-bit
 * image, one extra forward) are optional. */
int asam_pgd_attack_sample(const asam_sam *m, const asam_sample *s, const asam_pgd_opts *o,
                           asam_image *adv, double *loss_before, double *loss_after);
/* The whole dataset; images already in out_dir are skipped (resumable) when out_dir's
 * provenance.json records the same model, data and options. */
int asam_pgd_run(const asam_pgd_opts *o);

/* The one number parser of the library and the CLI: a whole string holding a finite number
 * ("0.03", "1e-5") or a fraction ("8/255"); -1 on anything else. */
int asam_parse_number(const char *s, double *out);
/* The same, rounded to float. */
int asam_parse_fraction(const char *s, float *out);

#ifdef __cplusplus
}
#endif
#endif
