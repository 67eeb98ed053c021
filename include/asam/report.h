/* Small picture helpers for reports (asam demo, the world experiment): image strips, mask
 * overlays and a line plot written as PNG without any font or plotting library, and charts
 * with titles, axis labels, legends and error bars written as SVG (text needs no font there). */
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

/* Grouped bar chart as SVG (atomic): n_groups groups on the x axis (group[g] below each), in
 * each one bar per series (series[s] in the legend), height mean[g * n_series + s] with an
 * error bar of +-err[...] (err NULL or a value <= 0: none); y axis from ymin to ymax with
 * five ticks. Returns 0, or -1 with the error naming path. */
int asam_chart_bars_svg(const char *path, const char *title, const char *ylabel, int n_groups,
                        const char *const *group, int n_series, const char *const *series,
                        const double *mean, const double *err, double ymin, double ymax);
/* Line chart as SVG (atomic): n_series lines over x = 0..n_x-1 (integer ticks), y[s * n_x + i]
 * with optional error bars err[...] (NULL: none); NaN points are left out. */
int asam_chart_lines_svg(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, int n_series, const char *const *series, int n_x,
                         const double *y, const double *err, double ymin, double ymax);

#ifdef __cplusplus
}
#endif
#endif
