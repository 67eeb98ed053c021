/* Test-only injection into asam_tune (tests/test_asam_ref_tune.c pins three official tuning
 * steps). The official run draws its random numbers with torch, numpy and Python's random,
 * which C cannot reproduce; the reference records those draws and the test hands them to
 * asam through this hook in place of asam's own stream. NULL members keep asam's draws.
 * step: the optimiser step of this run (from 0); k: the image's place in the batch; mask: the
 * mask's place in the batch (k * masks_per_image + j). */
#ifndef ASAM_TUNE_HOOK_H
#define ASAM_TUNE_HOOK_H

#include "asam/engine.h"
#include "asam/segmenter.h"

#include <stddef.h>

typedef struct asam_tune_hook {
    void *user;
    /* the epoch's image order (a permutation of 0..n-1) */
    void (*order)(void *user, int epoch, size_t *order, size_t n);
    /* RandomHFlip: 1 flips */
    int (*flip)(void *user, int step, int k);
    /* LargeScaleJitter: the torch.rand(1) draw of the scale, and the crop offset in
     * [0, margin] along axis 0 (rows) / 1 (columns) */
    float (*lsj_u)(void *user, int step, int k);
    int (*crop)(void *user, int step, int k, int axis, int margin);
    /* prompt kind: one ASAM_PROMPT_* of the set `available` */
    int (*kind)(void *user, int step, int k, int available);
    /* point prompts: n indices into the mask's n_fg foreground pixels in raster order */
    void (*points)(void *user, int step, int mask, int n_fg, int n, int *idx);
    /* n values of stream `which`: 1 the loss's candidate points, 2 its random share (uniform in
     * [0, 1)), 3 the mask-prompt noise (standard normal, one per low-res pixel: 256x256, S/4 x S/4
     * for a model of input side S) */
    void (*draws)(void *user, int step, int which, int mask, float *out, size_t n);
    /* after each optimiser step: the step's loss; params[0] iou_token, params[1] mask_tokens
     * (their .grad still holds the step's gradient) */
    void (*after_step)(void *user, int step, double loss, asam_tensor *const *params);
    /* observation only: image k's prompts as the decoder gets them (kind: one ASAM_PROMPT_*;
     * boxes / points in the model's S x S input frame, mask_input (B, 1, S/4, S/4)) */
    void (*prompts)(void *user, int step, int k, int kind, const asam_seg_prompt *p);
} asam_tune_hook;

#endif
