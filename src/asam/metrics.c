/* Mask IoU, boundary IoU (Cheng et al., as HQ-SAM's misc.boundary_iou computes it) and the
 * random-number generator shared by tuning and PGD. */
#include "asam/asam.h"
#include "asam/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- xoshiro256** ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void asam_rng_seed(asam_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t asam_rng_u64(asam_rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double asam_rng_uniform(asam_rng *r) {
    return (double)(asam_rng_u64(r) >> 11) * 0x1.0p-53;
}

int asam_rng_int(asam_rng *r, int n) {
    return n <= 1 ? 0 : (int)(asam_rng_uniform(r) * n) % n;
}

double asam_rng_normal(asam_rng *r) {
    double u1 = asam_rng_uniform(r), u2 = asam_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* ---- metrics -------------------------------------------------------------------------------- */

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
