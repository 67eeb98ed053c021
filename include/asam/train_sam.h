/* Training SAM from scratch (`asam train-sam`): image encoder, prompt encoder and mask decoder of
 * the official architecture, at any encoder width / depth and input size, on an SA-1B folder,
 * with box and point prompts. The result is an official-layout state dict, so every loader and
 * code path that takes sam_vit_b_01ec64.pth takes it.
 *
 * One step: `batch` images; per image one encoder pass and up to `prompts` masks, prompted all
 * by boxes (the mask's tight box, each side jittered by N(0, (0.1 side)^2) capped at 20 px of the
 * 1024 frame, as SAM's training) or all by one foreground point (uniform over the mask), the
 * choice per image with probability point_share. Boxes decode the single-mask token; a point
 * decodes the three multimask tokens and only the best of them (lowest loss) is trained, as SAM
 * does for ambiguous prompts.
 *
 * Loss per mask, on the logits upsampled to the image (postprocess_masks, differentiable):
 *   BCE-with-logits (mean over pixels) + Dice (smooth 1) + MSE(IoU head, IoU of the thresholded
 *   prediction with the GT, detached), the IoU term over every decoded token.
 * (SAM's paper uses focal 20 : dice 1; BCE + dice is the HQ-SAM/ASAM tuning loss, and it keeps
 * to engine ops that already have checked gradients.) Images' losses are averaged over the batch.
 * Optimiser: AdamW (betas 0.9/0.999, eps 1e-8) over every weight but the PE Gaussian matrix (a
 * buffer in the official model), learning rate warmed up linearly over `warmup` steps, then
 * constant, divided by 10 from step `lr_drop` on when it is set (SAM's step decay).
 *
 * Determinism and resume: the sample order (a permutation per epoch), the masks, prompt kinds and
 * jitter are pure functions of (seed, global sample index), so a run stopped at step k and
 * resumed from its state file (weights + AdamW moments + step, with the provenance of the
 * options and the data) ends bit-identical to an uninterrupted run on the same thread count.
 * --steps is not in the provenance (a finished run can be extended), and a state made without
 * --lr-drop resumes with one that lies ahead of it (the schedule so far is the same). */
#ifndef ASAM_TRAIN_SAM_H
#define ASAM_TRAIN_SAM_H
#include <stdint.h>

#include "asam/sam.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The defaults are SAM-mini's (docs/world.md). */
typedef struct {
    const char *data;  /* "sa1b:DIR" (or DIR) */
    const char *out;   /* .pth / .pt (torch.save zip) or .safetensors */
    const char *state; /* resume state; NULL = OUT.state.safetensors */
    /* architecture (image encoder; decoder and prompt encoder are the official 256-wide ones) */
    int img_size;  /* 128: a multiple of 16 */
    int embed_dim; /* 128 */
    int depth;     /* 4 */
    int num_heads; /* 4 */
    int window;    /* 4 (tokens) */
    int n_global;
    int global_idx[ASAM_SAM_MAX_DEPTH]; /* default {1, 3} */
    /* optimisation */
    float lr;            /* 5e-4 */
    double weight_decay; /* 0.01 */
    int warmup;          /* 200 steps */
    int lr_drop;         /* from this step on lr / 10 (0: never) */
    int batch;           /* 8 images per step */
    int prompts;         /* 4 masks per image */
    float point_share;   /* 0.5 */
    int steps;           /* 1000 */
    uint64_t seed;
    int resume;     /* continue from the state file when it exists */
    int save_every; /* state every N steps (50; 0 = only at the end) */
    int stop_after; /* test hook: stop (after saving state) at this step */
    int verbose;    /* progress line */
    float *losses;  /* NULL or room for `steps` losses (by step index) */
} asam_sam_train_opts;

void asam_sam_train_opts_default(asam_sam_train_opts *o);
/* "1,3" -> global_idx / n_global. 0, or -1 with the error. */
int asam_sam_train_parse_global(asam_sam_train_opts *o, const char *list);
/* The whole job. Returns 0, 1 when stopped by stop_after, or -1 (asam_last_error()). */
int asam_train_sam(const asam_sam_train_opts *o);

/* Box-prompt mIoU: every mask of the first max_images (0 = all) images of a dataset, prompted
 * with its tight GT box through the predictor (single-mask output), IoU of the thresholded mask
 * with the GT; *miou is the mean over masks and *n_masks their count. */
int asam_sam_box_miou(const asam_sam *m, const char *data, int max_images, double *miou,
                      int *n_masks);

#ifdef __cplusplus
}
#endif
#endif
