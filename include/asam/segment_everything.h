/* "Segment everything" over images: the automatic mask generator (sam_amg.h) run on one image
 * or a folder, writing per image
 *   OUT/STEM.json           SA-1B annotation file (image record; per mask the COCO RLE
 *                           "segmentation", "bbox" XYWH, "area", "predicted_iou",
 *                           "stability_score", "point_coords", "crop_box"), readable by
 *                           asam_sa1b_read() and so by `sa1b:OUT` datasets (generate, tune,
 *                           eval); plus an "asam" provenance record (options, hashes)
 *   OUT/STEM.EXT            the image itself (hard link, else a copy) when OUT is not its folder,
 *                           so that OUT is a complete sa1b: dataset
 *   OUT/overlays/STEM.png   the image with every mask in its own colour
 * Each file is written atomically, the JSON last: it marks the image done. A rerun skips done
 * images. The JSON records a hash of the options that change results (all generator options
 * but points_per_batch) and of the model file; when an existing JSON was made with another
 * hash the run refuses before doing any work (error naming the file), unless redo is set, in
 * which case such images are recomputed. An image whose content changed since its JSON was
 * written is recomputed. */
#ifndef ASAM_SEGMENT_EVERYTHING_H
#define ASAM_SEGMENT_EVERYTHING_H

#include "asam/sam.h"
#include "asam/sam_amg.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    asam_amg_options amg;
    const char *model_path; /* the checkpoint the model was loaded from (hashed, recorded) */
    int redo;               /* recompute images whose JSON has another options hash */
    int no_overlay;         /* skip OUT/overlays/STEM.png */
    int quiet;              /* no progress lines */
} asam_everything_opts;

typedef struct {
    int n_images, n_done, n_skipped;
    long long n_masks; /* over the images processed in this run */
    double seconds;
} asam_everything_stats;

/* input: an image file or a folder of .jpg/.jpeg/.png images (sorted in version order). */
int asam_segment_everything(const asam_sam *m, const char *input, const char *out_dir,
                            const asam_everything_opts *o, asam_everything_stats *st);

/* Pieces, for tests and other callers. */
/* SA-1B JSON text (caller frees); provenance (a JSON object text) may be NULL. */
char *asam_amg_sa1b_json(const asam_amg_result *r, long long image_id, const char *file_name,
                         const char *provenance);
/* The image with each mask blended in its own colour (largest first, so small ones show). */
int asam_amg_overlay(const asam_image *img, const asam_amg_result *r, asam_image *out);
/* FNV-1a 64 hex (16 digits) of the options that change results. */
void asam_amg_options_hash(const asam_amg_options *o, uint64_t model_hash, char hex[17]);

#ifdef __cplusplus
}
#endif
#endif
