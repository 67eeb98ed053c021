/* The miniature world: a scene distribution small enough to train SAM, SD and ControlNet on two
 * cores, with held-out sets that each shift it one way (issue 9).
 *
 * A scene is a size x size RGB image (128 by default) of 2..4 objects (ellipses, rectangles,
 * polygons in nine saturated colours, lit from one side) on a dark background (gradient,
 * stripes or checkerboard), with mild pixel noise. Each object's mask is its *visible* region
 * (later objects occlude earlier ones); objects with less than 0.4% of the image visible are
 * dropped. Sets (folder names):
 *   train, val, test       the training distribution (val: other scenes of it, for choosing
 *                          hyper-parameters; test: others again, for reporting only)
 *   unseen_texture         textured backgrounds (blobs, dots, waves) and striped/checked objects
 *   unseen_palette         unseen colours (pastels, earth tones, greys) on bright backgrounds
 *   unseen_lighting        a strong light gradient across the scene and a vignette
 *   unseen_blur_noise      two box blurs, a haze and heavy pixel and block noise
 *   unseen_shapes          new object kinds (stars, rings, crescents), small and large
 *   unseen_clutter         6..9 overlapping objects and unannotated occluding bars
 * Each set is written as an SA-1B folder (sa_N.jpg + sa_N.json with RLE masks, boxes, a point
 * per mask; captions.jsonl), every file atomically, the set first into DIR/.SET.partial and
 * renamed to DIR/SET when complete; a rerun skips finished sets and resumes partial ones.
 * DIR/SET/provenance.jsonl and DIR/world.json record the provenance (seed, sizes, counts, generator
 * version) and per-set statistics. Everything is a pure function of (seed, set, index, size). */
#ifndef ASAM_WORLD_H
#define ASAM_WORLD_H
#include <stdint.h>

#include "asam/synthetic.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ASAM_WORLD_MAX_OBJECTS 10

typedef enum {
    ASAM_WORLD_TRAIN = 0,
    ASAM_WORLD_VAL,
    ASAM_WORLD_TEXTURE,
    ASAM_WORLD_PALETTE,
    ASAM_WORLD_LIGHTING,
    ASAM_WORLD_BLUR_NOISE,
    ASAM_WORLD_SHAPES,
    ASAM_WORLD_CLUTTER,
    ASAM_WORLD_TEST, /* last, so adding it left the other sets' bytes as they were */
    ASAM_WORLD_N_SETS
} asam_world_set;

const char *asam_world_set_name(asam_world_set set);  /* "train", "unseen_texture", ... */
const char *asam_world_set_about(asam_world_set set); /* one line on what it shifts */

/* Render image `index` of a set in memory (masks: n_masks * size * size, 0/1). size 32..1024. */
int asam_world_render(asam_world_set set, int index, int size, uint64_t seed,
                      asam_synth_sample *out);

/* Summary statistics of a set's first n images, to see and test how the sets differ. */
typedef struct {
    double luma;          /* mean luma 0..255 */
    double saturation;    /* mean max(RGB) - min(RGB) */
    double hf;            /* mean |4-neighbour Laplacian| of luma: noise and texture */
    double object_hf;     /* the same inside the masks only: object texture */
    double light_spread;  /* std of the mean luma of the four image quadrants */
    double masks_per_img; /* annotated objects per image */
    double mask_area;     /* mean mask area / image area */
    double box_fill;      /* mean mask area / its tight box's area: shape kind */
} asam_world_stats;
int asam_world_set_stats(asam_world_set set, int n, int size, uint64_t seed, asam_world_stats *st);

typedef struct {
    const char *out; /* folder */
    uint64_t seed;
    int count;      /* train images (2000) */
    int eval_count; /* val and each unseen set (200) */
    int size;       /* 128 */
    int force;      /* rewrite sets whose recorded provenance differs */
    int verbose;    /* progress line */
} asam_world_opts;
void asam_world_opts_default(asam_world_opts *o);
/* Write every set (see above). Returns 0 or -1 (asam_last_error() names the file). */
int asam_world_write(const asam_world_opts *o);

#ifdef __cplusplus
}
#endif
#endif
