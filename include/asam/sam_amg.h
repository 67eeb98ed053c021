/* "Segment everything": SAM's automatic mask generator with the semantics of the official
 * SamAutomaticMaskGenerator (facebookresearch/segment-anything, automatic_mask_generator.py
 * and utils/amg.py).
 *
 * A grid of single foreground points is decoded (three masks per point) on the whole image
 * and, with crop_n_layers > 0, on overlapping crops; masks are filtered by the predicted IoU
 * and by a stability score, de-duplicated with box NMS (within a crop, then across crops),
 * optionally cleaned of small holes and islands, and returned as COCO RLEs of the whole image
 * with the official record fields. The image encoder runs once per crop; the points of a
 * batch go through the mask decoder together.
 *
 * Ties in NMS are broken exactly as torchvision 0.14 on CPU with torch 1.13 (the reference
 * environment): boxes are ordered with a replica of torch's unstable CPU sort (libstdc++
 * std::sort). Connected components use 8-connectivity and OpenCV's label order, as the
 * official remove_small_regions (cv2.connectedComponentsWithStats). */
#ifndef ASAM_SAM_AMG_H
#define ASAM_SAM_AMG_H

#include "asam/image.h"
#include "asam/rle.h"
#include "asam/sam.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int points_per_side;                /* 32; 0 = explicit grids below */
    int points_per_batch;               /* 64 */
    double pred_iou_thresh;             /* 0.88; <= 0 disables the filter (as official) */
    double stability_score_thresh;      /* 0.95; <= 0 disables the filter */
    double stability_score_offset;      /* 1.0 */
    double box_nms_thresh;              /* 0.7 */
    int crop_n_layers;                  /* 0 */
    double crop_nms_thresh;             /* 0.7 */
    double crop_overlap_ratio;          /* 512 / 1500 */
    int crop_n_points_downscale_factor; /* 1 */
    int min_mask_region_area;           /* 0 = no hole / island removal */
    /* Explicit point grids (points_per_side = 0): grid i (points normalised to [0, 1], x,y
     * pairs, grid_n[i] points) is used in crop layer i; n_grids must be crop_n_layers + 1. */
    int n_grids;
    const int *grid_n;
    const double *const *grids;
} asam_amg_options;

/* One output mask, the official record. */
typedef struct {
    asam_rle rle;          /* the whole image, COCO column-major runs */
    int64_t bbox[4];       /* XYWH = x0, y0, x1 - x0, y1 - y0 with x1, y1 the LAST mask pixel */
    int64_t area;          /* pixels */
    float predicted_iou;   /* the decoder's IoU prediction */
    float stability_score; /* IoU of the mask thresholded at +offset and -offset */
    double point[2];       /* the prompt point, original pixels */
    int crop_box[4];       /* XYWH */
} asam_amg_mask;

typedef struct {
    int width, height;
    size_t n;
    asam_amg_mask *masks; /* in the official output order */
} asam_amg_result;

/* Progress callback: called after each decoded point batch (done, total over all crops). */
typedef void (*asam_amg_progress_fn)(int done, int total, void *user);

void asam_amg_options_default(asam_amg_options *o);
/* Range checks; one line naming the bad option. */
int asam_amg_options_check(const asam_amg_options *o);
/* Run the generator on an RGB image. */
int asam_amg_generate(const asam_sam *m, const asam_image *img, const asam_amg_options *o,
                      asam_amg_progress_fn progress, void *user, asam_amg_result *out);
void asam_amg_result_free(asam_amg_result *r);

/* ---- building blocks (amg_grid.c, amg_nms.c, amg_regions.c), exposed for tests ---------- */
/* n x n points in [0, 1] as numpy linspace(1/2n, 1 - 1/2n, n): xy has 2 n^2 doubles, x fastest. */
void asam_amg_point_grid(int n, double *xy);
/* Crop boxes XYXY of the image (layer 0) and of every crop layer; returns the number of boxes
 * (1 + sum 4^i) or -1. boxes[k] / layer[k] are filled for k < max. */
int asam_amg_crop_boxes(int h, int w, int n_layers, double overlap_ratio, int (*boxes)[4],
                        int *layer, int max);
/* torch.sort(scores, descending=True) on CPU (unstable: libstdc++ introsort; NaN first). */
void asam_amg_sort_desc(const float *scores, int64_t n, int64_t *order);
/* torchvision batched_nms with one category: boxes (n, 4) XYXY float, suppress IoU > thresh;
 * keep[] gets the kept indices in the official order; returns how many (or -1, no memory). */
int64_t asam_amg_nms(const float *boxes, const float *scores, int64_t n, double thresh,
                     int64_t *keep);
/* Tight box XYXY (inclusive last pixel) of a row-major h x w 0/1 mask; [0,0,0,0] if empty. */
void asam_amg_mask_box(const uint8_t *mask, int h, int w, int64_t box[4]);
/* The official remove_small_regions: holes = 1 fills components of the background smaller than
 * area_thresh, else removes such islands (keeping the largest if every island is small);
 * 8-connectivity. Edits mask in place; *changed = whether any region was small. */
int asam_amg_remove_small_regions(uint8_t *mask, int h, int w, double area_thresh, int holes,
                                  int *changed);

#ifdef __cplusplus
}
#endif
#endif
