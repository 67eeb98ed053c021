/* Where the automatic mask generator looks: the point grid prompted in each crop layer and the
 * crop boxes of every layer, with the official arithmetic (float64, Python's int() truncation
 * and math.ceil). */
#include "asam/sam_amg.h"

#include <math.h>

void asam_amg_point_grid(int n, double *xy) {
    // ref: segment-anything/segment_anything/utils/amg.py:181
    double start = 1.0 / (2 * n), stop = 1.0 - start;
    double side[n > 0 ? n : 1];
    // ref: segment-anything/segment_anything/utils/amg.py:182
    // numpy.linspace: start + i * step with step = (stop - start) / (n - 1), the last point set
    // to stop exactly; a single point is the start.
    double step = n > 1 ? (stop - start) / (n - 1) : 0.0;
    for (int i = 0; i < n; i++) side[i] = i * step + start;
    if (n > 1) side[n - 1] = stop;
    // ref: segment-anything/segment_anything/utils/amg.py:183
    // rows are y, columns x; flattened row-major so x varies fastest
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            xy[2 * (r * n + c)] = side[c];
            xy[2 * (r * n + c) + 1] = side[r];
        }
}

int asam_amg_crop_boxes(int h, int w, int n_layers, double overlap_ratio, int (*boxes)[4],
                        int *layer, int max) {
    if (n_layers < 0 || n_layers > 8 || h <= 0 || w <= 0) return -1;
    int k = 0;
    // ref: segment-anything/segment_anything/utils/amg.py:212
    if (k < max) {
        boxes[k][0] = 0, boxes[k][1] = 0, boxes[k][2] = w, boxes[k][3] = h;
        layer[k] = 0;
    }
    k++;
    int short_side = h < w ? h : w;
    for (int i = 0; i < n_layers; i++) {
        // ref: segment-anything/segment_anything/utils/amg.py:219
        int n = 1 << (i + 1);
        int overlap = (int)(overlap_ratio * short_side * (2.0 / n));
        // ref: segment-anything/segment_anything/utils/amg.py:215
        int crop_w = (int)ceil((double)((long long)overlap * (n - 1) + w) / n);
        int crop_h = (int)ceil((double)((long long)overlap * (n - 1) + h) / n);
        // ref: segment-anything/segment_anything/utils/amg.py:229
        // itertools.product(x0s, y0s): x0 in the outer loop
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) {
                int x0 = (crop_w - overlap) * a, y0 = (crop_h - overlap) * b;
                if (k < max) {
                    boxes[k][0] = x0;
                    boxes[k][1] = y0;
                    boxes[k][2] = x0 + crop_w < w ? x0 + crop_w : w;
                    boxes[k][3] = y0 + crop_h < h ? y0 + crop_h : h;
                    layer[k] = i + 1;
                }
                k++;
            }
    }
    return k;
}
