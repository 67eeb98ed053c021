/* SAM pre-processing as the official predictor: ResizeLongestSide(1024) with Pillow's bilinear
 * filter, (x - mean) / std, zero padding to 1024x1024; prompt coordinate transforms. */
#include "asam/error.h"
#include "asam/sam.h"

#include <string.h>

static const float k_mean[3] = {123.675f, 116.28f, 103.53f};
static const float k_std[3] = {58.395f, 57.12f, 57.375f};

// ref: facebookresearch/segment-anything segment_anything/utils/transforms.py:94
//   (ResizeLongestSide.get_preprocess_shape)
void asam_sam_sizes_at(int img_size, int orig_h, int orig_w, asam_sam_sizes *s) {
    double scale = (double)img_size / (orig_h > orig_w ? orig_h : orig_w);
    s->orig_h = orig_h;
    s->orig_w = orig_w;
    s->input_h = (int)(orig_h * scale + 0.5);
    s->input_w = (int)(orig_w * scale + 0.5);
}

void asam_sam_sizes_for(int orig_h, int orig_w, asam_sam_sizes *s) {
    asam_sam_sizes_at(ASAM_SAM_IMG, orig_h, orig_w, s);
}

// ref: facebookresearch/segment-anything segment_anything/utils/transforms.py:26
//   (ResizeLongestSide.apply_image)
int asam_sam_resize_image_at(const asam_image *src, int img_size, asam_image *dst,
                             asam_sam_sizes *sizes) {
    if (!src->data || src->w <= 0 || src->h <= 0 || src->c != 3)
        return asam_error("sam: image must be RGB with a positive size");
    asam_sam_sizes_at(img_size, src->h, src->w, sizes);
    if (sizes->input_h < 1 || sizes->input_w < 1)
        return asam_error("sam: image %dx%d is too thin to resize", src->w, src->h);
    return asam_image_resize_pil_bilinear(src, sizes->input_w, sizes->input_h, dst);
}

int asam_sam_resize_image(const asam_image *src, asam_image *dst, asam_sam_sizes *sizes) {
    return asam_sam_resize_image_at(src, ASAM_SAM_IMG, dst, sizes);
}

asam_tensor *asam_sam_image_to_tensor(asam_ctx *ctx, const asam_image *img) {
    if (img->c != 3) return asam_ctx_fail(ctx, "sam: image must have 3 channels");
    int64_t h = img->h, w = img->w;
    asam_tensor *t = asam_new(ctx, ASAM_SHAPE(1, 3, h, w));
    if (!t) return NULL;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                t->data[(c * h + y) * w + x] = img->data[(y * w + x) * 3 + c];
    return t;
}

// ref: facebookresearch/segment-anything segment_anything/modeling/sam.py:164 (Sam.preprocess)
asam_tensor *asam_sam_normalize_pad_at(asam_ctx *ctx, asam_tensor *pixels, int img_size) {
    if (!pixels) return NULL;
    if (pixels->ndim != 4 || pixels->shape[1] != 3 || pixels->shape[2] > img_size ||
        pixels->shape[3] > img_size)
        return asam_ctx_fail(ctx, "sam: pixels must be (B, 3, h, w) with h, w <= %d", img_size);
    asam_tensor *mean = asam_from_data(ctx, ASAM_SHAPE(1, 3, 1, 1), k_mean);
    asam_tensor *std = asam_from_data(ctx, ASAM_SHAPE(1, 3, 1, 1), k_std);
    asam_tensor *x = asam_div(ctx, asam_sub(ctx, pixels, mean), std);
    int64_t ph = img_size - pixels->shape[2], pw = img_size - pixels->shape[3];
    if (ph == 0 && pw == 0) return x;
    return asam_pad(ctx, x, (const int64_t[]){0, 0, 0, 0, 0, ph, 0, pw}, 0.0f);
}

asam_tensor *asam_sam_normalize_pad(asam_ctx *ctx, asam_tensor *pixels) {
    return asam_sam_normalize_pad_at(ctx, pixels, ASAM_SAM_IMG);
}

asam_tensor *asam_sam_preprocess_at(asam_ctx *ctx, const asam_image *img, int img_size,
                                    asam_sam_sizes *sizes) {
    asam_image r = {0};
    if (asam_sam_resize_image_at(img, img_size, &r, sizes) != 0)
        return asam_ctx_fail(ctx, "%s", asam_last_error());
    asam_tensor *x = asam_sam_normalize_pad_at(ctx, asam_sam_image_to_tensor(ctx, &r), img_size);
    asam_image_free(&r);
    return x;
}

asam_tensor *asam_sam_preprocess(asam_ctx *ctx, const asam_image *img, asam_sam_sizes *sizes) {
    return asam_sam_preprocess_at(ctx, img, ASAM_SAM_IMG, sizes);
}

// ref: facebookresearch/segment-anything segment_anything/utils/transforms.py:33 (apply_coords),
//   :67 (apply_coords_torch)
void asam_sam_transform_coords(const asam_sam_sizes *s, const float *xy, float *out, int n_pairs,
                               int use_double) {
    double rw = (double)s->input_w / s->orig_w, rh = (double)s->input_h / s->orig_h;
    for (int i = 0; i < n_pairs; i++) {
        if (use_double) {
            out[2 * i] = (float)((double)xy[2 * i] * rw);
            out[2 * i + 1] = (float)((double)xy[2 * i + 1] * rh);
        } else {
            out[2 * i] = xy[2 * i] * (float)rw;
            out[2 * i + 1] = xy[2 * i + 1] * (float)rh;
        }
    }
}
