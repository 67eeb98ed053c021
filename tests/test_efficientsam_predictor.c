/* The EfficientSAM predictor's float entry points (the Python binding's model call):
 *  - set_image_f32 on ToTensor's values (u8 / 255 in float32) gives the embedding set_image
 *    gives on the uint8 image, bit for bit;
 *  - resize_logits of the low-res logits to the image size equals the predictor's own
 *    original-size logits, bit for bit, and resizes to any other size;
 *  - bad arguments fail with one line. */
#include "asam/efficientsam.h"
#include "asam/error.h"
#include "test_util.h"

int main(void) {
    char tiny[4096], img_path[4096];
    if (test_data_file("efficientsam_tiny/model.safetensors", tiny, sizeof tiny))
        TEST_SKIP("efficientsam_tiny/model.safetensors(.gz) not found");
    snprintf(img_path, sizeof img_path, "%s/tests/data/images/rgb.png", ASAM_SOURCE_DIR);
    asam_esam *m = NULL;
    asam_image img = {0};
    CHECK(asam_esam_load(tiny, 2, &m) == 0, "load: %s", asam_last_error());
    CHECK(asam_image_read(img_path, 3, &img) == 0, "image: %s", asam_last_error());
    if (!m || !img.data) return test_finish("test_efficientsam_predictor");
    const int h = img.h, w = img.w, D = asam_esam_cfg(m)->dim;
    const size_t ne = (size_t)D * ASAM_ESAM_GRID * ASAM_ESAM_GRID, hw = (size_t)h * w;

    asam_esam_predictor a, b;
    asam_esam_predictor_init(&a, m);
    asam_esam_predictor_init(&b, m);
    float *chw = malloc(sizeof(float) * 3 * hw);
    for (size_t p = 0; p < hw; p++)
        for (int c = 0; c < 3; c++) chw[c * hw + p] = (float)img.data[p * 3 + c] / 255.0f;
    CHECK(asam_esam_predictor_set_image(&a, &img) == 0, "set_image: %s", asam_last_error());
    CHECK(asam_esam_predictor_set_image_f32(&b, chw, h, w) == 0, "set_image_f32: %s",
          asam_last_error());
    CHECK(b.orig_h == h && b.orig_w == w, "set_image_f32 records the image size");
    CHECK(memcmp(a.embedding->data, b.embedding->data, sizeof(float) * ne) == 0,
          "set_image_f32(u8 / 255) embedding differs from set_image");

    float pts[4] = {3, 4, 30, 25}, lab[2] = {2, 3};
    asam_esam_result r;
    CHECK(asam_esam_predictor_predict(&b, 1, 2, pts, lab, 1, &r) == 0, "predict: %s",
          asam_last_error());
    const int n = r.n_queries * r.n_masks;
    float *up = malloc(sizeof(float) * (size_t)n * hw);
    CHECK(asam_esam_resize_logits(r.low_res, n, h, w, up) == 0, "resize: %s", asam_last_error());
    CHECK(memcmp(up, r.mask_logits, sizeof(float) * (size_t)n * hw) == 0,
          "resize_logits to the image size differs from the predictor's logits");
    float *big = malloc(sizeof(float) * (size_t)n * 50 * 70);
    CHECK(asam_esam_resize_logits(r.low_res, n, 50, 70, big) == 0, "resize 50x70: %s",
          asam_last_error());
    int finite = 1;
    for (int i = 0; i < n * 50 * 70; i++) finite &= isfinite(big[i]);
    CHECK(finite, "resized logits are finite");

    CHECK(asam_esam_predictor_set_image_f32(&b, chw, 0, w) != 0 &&
              strstr(asam_last_error(), "positive size"),
          "a zero height is refused");
    CHECK(asam_esam_predictor_set_image_f32(&b, NULL, h, w) != 0, "NULL data is refused");
    CHECK(asam_esam_resize_logits(r.low_res, n, -1, w, up) != 0, "a negative size is refused");

    asam_esam_result_free(&r);
    free(chw), free(up), free(big);
    asam_esam_predictor_free(&a);
    asam_esam_predictor_free(&b);
    asam_image_free(&img);
    asam_esam_free(m);
    if (!test_failures)
        printf("ok   set_image_f32 == set_image, resize_logits == predictor logits\n");
    return test_finish("test_efficientsam_predictor");
}
