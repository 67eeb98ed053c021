/* The tight box of a mask: the box prompt SAM is given for a ground-truth mask. */
#include "asam/util.h"

/* ref: pytorch/vision torchvision/ops/boxes.py masks_to_boxes (x1, y1 = max index, inclusive),
 * as ASAM's and HQ-SAM's training code derive box prompts from masks. */
#define MASK_BOX(PIXEL_ON)                                                                         \
    int x0 = w, y0 = h, x1 = -1, y1 = -1;                                                          \
    int64_t n = 0;                                                                                 \
    for (int y = 0; y < h; y++)                                                                    \
        for (int x = 0; x < w; x++)                                                                \
            if (PIXEL_ON) {                                                                        \
                if (x < x0) x0 = x;                                                                \
                if (x > x1) x1 = x;                                                                \
                if (y < y0) y0 = y;                                                                \
                if (y > y1) y1 = y;                                                                \
                n++;                                                                               \
            }                                                                                      \
    box[0] = (float)x0;                                                                            \
    box[1] = (float)y0;                                                                            \
    box[2] = (float)x1;                                                                            \
    box[3] = (float)y1;                                                                            \
    return n;

int64_t asam_mask_box_u8(const uint8_t *m, int w, int h,
                         float box[4]){MASK_BOX(m[(size_t)y * w + x] != 0)}

int64_t asam_mask_box_f32(const float *m, int w, int h, float thresh, float box[4]) {
    MASK_BOX(m[(size_t)y * w + x] > thresh)
}
