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
/* Nearest-neighbour resize as PIL's NEAREST (for label/mask maps). */
int asam_image_resize_nearest(const asam_image *src, int new_w, int new_h, asam_image *dst);

#ifdef __cplusplus
}
#endif
#endif
