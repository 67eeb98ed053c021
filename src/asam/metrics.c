/* Mask IoU and boundary IoU (Cheng et al., as HQ-SAM's misc.boundary_iou computes it). The
 * random-number generator tuning and PGD draw from (asam_rng) is in util/rng.c. */
#include "asam/asam.h"
#include "asam/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- metrics -------------------------------------------------------------------------------- */

// ref: SysCV/sam-hq train/utils/misc.py:483 (mask_iou)
double asam_mask_iou(const uint8_t *pred, const uint8_t *gt, int64_t n) {
    int64_t inter = 0, uni = 0;
    for (int64_t i = 0; i < n; i++) {
        int p = pred[i] != 0, g = gt[i] != 0;
        inter += p & g;
        uni += p | g;
    }
    return uni ? (double)inter / (double)uni : 1.0;
}

int asam_boundary_dilation(int h, int w, double ratio) {
    double diag = sqrt((double)h * h + (double)w * w);
    int d = (int)nearbyint(ratio * diag); /* ties to even, as Python round() */
    return d < 1 ? 1 : d;
}

/* Erosion by a (2d+1) square = a separable running minimum (rows, then columns), with the
 * outside of the image as 0. Computed via distance to the nearest 0 along each axis. */
// ref: SysCV/sam-hq train/utils/misc.py:499 (mask_to_boundary: zero-padded erosion)
int asam_mask_boundary(const uint8_t *mask, int h, int w, int d, uint8_t *out) {
    uint8_t *rowmin = malloc((size_t)h * w);
    int *run = malloc(sizeof(int) * (size_t)(h > w ? h : w) + sizeof(int));
    if (!rowmin || !run) {
        free(rowmin);
        free(run);
        return asam_error("boundary: out of memory");
    }
    /* horizontal: rowmin(y, x) = 1 iff mask is 1 on [x-d, x+d] and that span is inside */
    for (int y = 0; y < h; y++) {
        const uint8_t *m = mask + (size_t)y * w;
        uint8_t *o = rowmin + (size_t)y * w;
        /* prefix count of ones */
        run[0] = 0;
        for (int x = 0; x < w; x++) run[x + 1] = run[x] + (m[x] != 0);
        for (int x = 0; x < w; x++) {
            int a = x - d, b = x + d;
            o[x] = a >= 0 && b < w && run[b + 1] - run[a] == 2 * d + 1;
        }
    }
    for (int x = 0; x < w; x++) {
        run[0] = 0;
        for (int y = 0; y < h; y++) run[y + 1] = run[y] + rowmin[(size_t)y * w + x];
        for (int y = 0; y < h; y++) {
            int a = y - d, b = y + d;
            int eroded = a >= 0 && b < h && run[b + 1] - run[a] == 2 * d + 1;
            size_t i = (size_t)y * w + x;
            out[i] = (mask[i] != 0) && !eroded;
        }
    }
    free(rowmin);
    free(run);
    return 0;
}

// ref: SysCV/sam-hq train/utils/misc.py:520 (boundary_iou)
double asam_boundary_iou(const uint8_t *pred, const uint8_t *gt, int h, int w, double ratio) {
    int d = asam_boundary_dilation(h, w, ratio);
    size_t n = (size_t)h * w;
    uint8_t *bp = malloc(n), *bg = malloc(n);
    double r = 0;
    if (bp && bg && !asam_mask_boundary(pred, h, w, d, bp) && !asam_mask_boundary(gt, h, w, d, bg))
        r = asam_mask_iou(bp, bg, (int64_t)n);
    free(bp);
    free(bg);
    return r;
}
