/* Small picture helpers for reports (asam demo): image strips, mask overlays and a line plot,
 * written as PNG without any font or plotting library. */
#ifndef ASAM_REPORT_H
#define ASAM_REPORT_H

#include <stdint.h>

#include "asam/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tiles side by side (each resized, nearest, to tile x tile) on a white background with a
 * gap of 4 pixels: a (tile * n + 4 * (n + 1)) x (tile + 8) RGB image. Tiles may be gray or RGB. */
int asam_report_strip(const asam_image *const *tiles, int n, int tile, asam_image *out);
/* img (RGB) with n masks (n, h, w) 0/1 blended in their colours (alpha 0.55); outlines drawn
 * fully opaque. colours: n RGB triples. */
int asam_report_overlay(const asam_image *img, const uint8_t *masks, int n, const uint8_t *colours,
                        asam_image *out);
/* Line plot of y[0..n) against 0..n-1 on [ymin, ymax]: w x h RGB, light grid at quarters,
 * points as small squares, the point `mark` (or -1) in red. */
int asam_report_plot(const float *y, int n, float ymin, float ymax, int mark, int w, int h,
                     asam_image *out);

#ifdef __cplusplus
}
#endif
#endif
