/* 8-bit images (JPEG/PNG) and PIL-compatible resampling. Pixels are interleaved HWC,
 * row-major: data[(y*w + x)*c + ch]. */
#ifndef ASAM_IMAGE_H
#define ASAM_IMAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int w, h, c; /* c = 1 (gray), 3 (RGB) or 4 (RGBA) */
    uint8_t *data;
} asam_image;

/* Read JPEG or PNG (detected by magic bytes). want_channels = 0 keeps the file's layout
 * (gray, gray+alpha becomes RGBA, 16-bit becomes 8-bit), 1/3/4 converts (RGBA->RGB drops
 * alpha, gray->RGB replicates). Errors name the file. */
int asam_image_read(const char *path, int want_channels, asam_image *out);
int asam_image_write_png(const char *path, const asam_image *img);               /* atomic */
int asam_image_write_jpeg(const char *path, const asam_image *img, int quality); /* atomic */
int asam_image_alloc(asam_image *img, int w, int h, int c);
void asam_image_free(asam_image *img);

/* Pillow's Image.resize(BILINEAR) on uint8, bit-exact (fixed-point, horizontal pass first,
 * antialiased triangle filter when shrinking, passes skipped on unchanged axes). */
int asam_image_resize_pil_bilinear(const asam_image *src, int new_w, int new_h, asam_image *dst);
/* Pillow's BICUBIC (the default filter of Image.resize for RGB and L), bit-exact likewise. */
int asam_image_resize_pil_bicubic(const asam_image *src, int new_w, int new_h, asam_image *dst);
/* OpenCV 4.6 cv2.resize(..., INTER_LINEAR) of an 8-bit image (fixed point, as its SIMD path
 * rounds). out: same channels. */
int asam_image_resize_cv2_linear(const asam_image *src, int new_w, int new_h, asam_image *dst);
/* The same resize on float pixels (cv2 on a float32 array): out w*h*c floats, malloc'ed. */
int asam_image_resize_cv2_linear_f32(const asam_image *src, int new_w, int new_h, float **out);
/* Nearest-neighbour resize as PIL's NEAREST (for label/mask maps). */
int asam_image_resize_nearest(const asam_image *src, int new_w, int new_h, asam_image *dst);

#ifdef __cplusplus
}
#endif
#endif
