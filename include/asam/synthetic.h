/* A deterministic synthetic SA-1B-style shard: images of simple shapes (ellipses, rectangles,
 * polygons) on textured backgrounds, each with its masks as COCO RLE.
 *
 * Files written into DIR (created if needed), for i = 1..n_images:
 *   sa_<i>.jpg   the image (size x size RGB, JPEG quality 95)
 *   sa_<i>.json  SA-1B annotation file: {"image": {image_id, width, height, file_name},
 *                "annotations": [{id, segmentation {size, counts}, bbox, area, predicted_iou,
 *                point_coords, stability_score, crop_box}, ...]}
 *   captions.jsonl  one {"img": "sa_<i>.jpg", "prompt": "..."} line per image
 * Each mask is the *visible* region of one shape (later shapes occlude earlier ones), so the
 * masks do not overlap and each matches the pixels painted with that shape's colour. Shapes
 * whose visible area falls below 1% of the image are dropped. The same (index, size, seed)
 * always gives the same pixels, masks and bytes. Every file is written atomically. */
#ifndef ASAM_SYNTHETIC_H
#define ASAM_SYNTHETIC_H

#include <stdint.h>

#include "asam/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ASAM_SYNTH_MAX_SHAPES 6

typedef struct {
    asam_image img; /* size x size RGB */
    int n_masks;    /* 1..ASAM_SYNTH_MAX_SHAPES */
    uint8_t *masks; /* n_masks * size * size, row-major 0/1 */
    char caption[256];
} asam_synth_sample;

/* Render image `index` (0-based) of the shard with this seed in memory. size >= 16. */
int asam_synthetic_render(int index, int size, uint64_t seed, asam_synth_sample *out);
void asam_synth_sample_free(asam_synth_sample *s);
/* The SA-1B annotation JSON of a rendered sample (any n_masks; malloc'ed, NULL on failure). */
char *asam_synth_sample_json(const asam_synth_sample *s, int image_id, const char *file_name);

/* Write the shard (see above). n_images >= 1, size 16..4096. Returns 0, or -1 with the error
 * naming the file. */
int asam_synthetic_sa1b(const char *dir, int n_images, int size, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
