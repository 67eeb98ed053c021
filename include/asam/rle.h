/* COCO run-length encoding (pycocotools-compatible). COCO masks are column-major (Fortran
 * order): runs alternate 0,1,0,... starting with zeros, scanning down columns. Decoded masks
 * here are row-major h x w uint8 (0/1). */
#ifndef ASAM_RLE_H
#define ASAM_RLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int h, w;
    size_t n;         /* number of runs */
    uint32_t *counts; /* run lengths */
} asam_rle;

/* Parse pycocotools' compressed string ("counts" of a compressed RLE). Validates that the
 * runs add up to h*w. */
int asam_rle_from_string(const char *s, int h, int w, asam_rle *out);
/* Uncompressed RLE: counts as a list of integers. */
int asam_rle_from_counts(const uint32_t *counts, size_t n, int h, int w, asam_rle *out);
/* Compressed string, caller frees. NULL on allocation failure. */
char *asam_rle_to_string(const asam_rle *r);
int asam_rle_encode(const uint8_t *mask_rowmajor, int h, int w, asam_rle *out);
int asam_rle_decode(const asam_rle *r, uint8_t *mask_rowmajor);
uint64_t asam_rle_area(const asam_rle *r);
/* Tight box [x, y, w, h] as pycocotools toBbox. */
void asam_rle_bbox(const asam_rle *r, double bbox[4]);
/* Polygons (COCO "segmentation": [[x0,y0,x1,y1,...], ...]) rasterised as pycocotools
 * frPyObjects/merge does. */
int asam_rle_from_polygons(const double *const *polys, const size_t *lens, size_t n_polys, int h,
                           int w, asam_rle *out);
void asam_rle_free(asam_rle *r);

#ifdef __cplusplus
}
#endif
#endif
