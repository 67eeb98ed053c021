/* PIL-compatible resize: bit-exact against the official SAM fixtures (Pillow 9.4 through
 * ResizeLongestSide.apply_image) and against Pillow 9.4 on L/RGB/RGBA, BILINEAR/NEAREST.
 *
 * case_resize inputs are an integer formula (see the fixture README), so they are generated
 * here; tests/data/sam_tiny/case_resize_small.safetensors.gz holds the outputs of img1, 4, 5,
 * 6, 7 (img2 is same-size, i.e. a copy) so the test runs on a fresh clone; the shared fixtures
 * add img0, img3 and the two 1024-side images of case_box_landscape / case_points_portrait. */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/image.h"
#include "test_synth.h"
#include "test_util.h"

#include <stdint.h>
#include <time.h>

/* segment-anything get_preprocess_shape */
static void longest_side(int H, int W, int *nh, int *nw) {
    double s = 1024.0 / (H > W ? H : W);
    *nh = (int)(H * s + 0.5);
    *nw = (int)(W * s + 0.5);
}

/* Resize `in` like apply_image and compare with tensor `name` of ck; returns 1 if checked. */
static int compare_with(const asam_checkpoint *ck, const char *name, const asam_image *in,
                        const char *what) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t) return 0;
    int nh, nw;
    longest_side(in->h, in->w, &nh, &nw);
    CHECK(t->ndim == 3 && t->shape[0] == nh && t->shape[1] == nw && t->shape[2] == in->c,
          "%s: fixture shape differs from the expected %dx%d", what, nh, nw);
    if (t->ndim != 3 || t->shape[0] != nh || t->shape[1] != nw) return 1;
    uint8_t *ref = malloc((size_t)t->numel);
    CHECK(ref && asam_ckpt_read_raw(ck, t, ref) == 0, "%s: read %s", what, asam_last_error());
    asam_image out;
    CHECK(asam_image_resize_pil_bilinear(in, nw, nh, &out) == 0, "%s: %s", what, asam_last_error());
    size_t ndiff = 0, n = (size_t)nh * nw * in->c;
    int maxd = 0;
    for (size_t i = 0; out.data && ref && i < n; i++) {
        int d = abs((int)out.data[i] - (int)ref[i]);
        if (d) ndiff++;
        if (d > maxd) maxd = d;
    }
    CHECK(ndiff == 0, "%s: %zu of %zu values differ (max %d)", what, ndiff, n, maxd);
    if (ndiff == 0) printf("ok   %s %dx%d -> %dx%d bit-exact\n", what, in->h, in->w, nh, nw);
    asam_image_free(&out);
    free(ref);
    return 1;
}

static void check_case_resize(const char *path, int *checked) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) {
        CHECK(0, "open %s: %s", path, asam_last_error());
        return;
    }
    static const int sizes[8][2] = {{37, 53},   {1500, 20}, {1024, 40}, {333, 1000},
                                    {2048, 33}, {1030, 77}, {3, 50},    {1, 40}};
    for (int i = 0; i < 8; i++) {
        asam_image in;
        CHECK(asam_image_alloc(&in, sizes[i][1], sizes[i][0], 3) == 0, "alloc");
        syn_texture(&in);
        char name[32], what[64];
        snprintf(name, sizeof name, "img%d_in", i);
        const asam_ckpt_tensor *tin = asam_checkpoint_find(ck, name);
        if (tin) { /* the full fixture stores the inputs too: confirm the formula */
            uint8_t *ref = malloc((size_t)tin->numel);
            CHECK(tin->numel == (int64_t)in.w * in.h * 3 && asam_ckpt_read_raw(ck, tin, ref) == 0 &&
                      memcmp(ref, in.data, (size_t)tin->numel) == 0,
                  "img%d_in differs from the texture formula", i);
            free(ref);
        }
        snprintf(name, sizeof name, "img%d_out", i);
        snprintf(what, sizeof what, "case_resize img%d", i);
        if (compare_with(ck, name, &in, what)) checked[i] = 1;
        if (i == 2) { /* same size: a copy */
            asam_image out;
            CHECK(asam_image_resize_pil_bilinear(&in, in.w, in.h, &out) == 0 &&
                      memcmp(out.data, in.data, (size_t)in.w * in.h * 3) == 0,
                  "same-size resize is not a copy");
            asam_image_free(&out);
            checked[i] = 1;
        }
        asam_image_free(&in);
    }
    asam_checkpoint_close(ck);
}

static void check_sam_case(const char *rel) {
    char path[4096];
    if (test_data_file(rel, path, sizeof path)) {
        TEST_SKIP_PART("%s (fixture not found)", rel);
        return;
    }
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) {
        CHECK(0, "open %s: %s", path, asam_last_error());
        return;
    }
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "image_u8");
    CHECK(t && t->ndim == 3 && t->shape[2] == 3, "%s: image_u8 missing", rel);
    if (t && t->ndim == 3) {
        asam_image in;
        CHECK(asam_image_alloc(&in, (int)t->shape[1], (int)t->shape[0], 3) == 0, "alloc");
        CHECK(asam_ckpt_read_raw(ck, t, in.data) == 0, "read image_u8");
        clock_t t0 = clock();
        CHECK(compare_with(ck, "resized_image_u8", &in, rel), "%s: resized_image_u8 missing", rel);
        printf("     (%.1f ms CPU incl. compare)\n", 1e3 * (clock() - t0) / CLOCKS_PER_SEC);
        asam_image_free(&in);
    }
    asam_checkpoint_close(ck);
}

/* Hashes of Pillow 9.4 outputs on the texture (C channels of L/RGB/RGBA). */
static const struct {
    int c, h, w, nh, nw, bilinear;
    uint64_t hash;
} pil_cases[] = {
    {1, 37, 53, 100, 7, 1, 0x4ba4789e1ad649b8ull},
    {1, 64, 64, 17, 200, 1, 0x31b739e0d542daf0ull},
    {1, 1000, 3, 1, 1, 1, 0xaf63f24c860211eeull},
    {1, 5, 5, 5, 9, 1, 0xa0fa0e82a83653eeull},
    {3, 333, 1000, 128, 128, 1, 0xf071654a3d7d598bull},
    {3, 13, 17, 13, 4, 1, 0xd62a4ce3bad5ead1ull},
    {3, 2, 2, 1000, 999, 1, 0x31481d5981fe07fdull},
    {4, 40, 30, 71, 13, 1, 0xe89a36cf4861ce90ull},
    {4, 50, 50, 20, 20, 1, 0x54b79e6fe9200f69ull},
    {4, 9, 9, 9, 5, 1, 0x1dd9e2f012299c2cull},
    {4, 9, 9, 3, 9, 1, 0x753b9855527ba98full},
    {1, 37, 53, 100, 7, 0, 0xd1c7a4aa7e43d395ull},
    {1, 1000, 3, 7, 1, 0, 0x5ce6d7eea222f4acull},
    {3, 333, 1000, 128, 129, 0, 0x0d2cb8dd4195daa9ull},
    {3, 10, 10, 1024, 3, 0, 0x3133657a6f5a8285ull},
    {4, 7, 3, 7, 3, 0, 0x455039c0022d7571ull},
    {4, 30, 31, 59, 11, 0, 0x6ca2b9b6faf74cf1ull},
    {1, 3, 1000, 2, 999, 0, 0x39d258f640d45ffbull},
};

static void check_pil_hashes(void) {
    for (size_t i = 0; i < sizeof pil_cases / sizeof pil_cases[0]; i++) {
        asam_image in, out;
        CHECK(asam_image_alloc(&in, pil_cases[i].w, pil_cases[i].h, pil_cases[i].c) == 0, "alloc");
        syn_texture(&in);
        int rc = pil_cases[i].bilinear
                     ? asam_image_resize_pil_bilinear(&in, pil_cases[i].nw, pil_cases[i].nh, &out)
                     : asam_image_resize_nearest(&in, pil_cases[i].nw, pil_cases[i].nh, &out);
        CHECK(rc == 0, "resize: %s", asam_last_error());
        uint64_t h = rc == 0 ? test_fnv1a(out.data, (size_t)out.w * out.h * out.c) : 0;
        CHECK(h == pil_cases[i].hash, "%s c=%d %dx%d -> %dx%d differs from Pillow 9.4",
              pil_cases[i].bilinear ? "BILINEAR" : "NEAREST", pil_cases[i].c, pil_cases[i].h,
              pil_cases[i].w, pil_cases[i].nh, pil_cases[i].nw);
        if (h == pil_cases[i].hash)
            printf("ok   Pillow %s c=%d %dx%d -> %dx%d\n",
                   pil_cases[i].bilinear ? "BILINEAR" : "NEAREST", pil_cases[i].c, pil_cases[i].h,
                   pil_cases[i].w, pil_cases[i].nh, pil_cases[i].nw);
        asam_image_free(&in);
        asam_image_free(&out);
    }
}

static void check_bad_args(void) {
    asam_image in, out;
    CHECK(asam_image_alloc(&in, 4, 4, 3) == 0, "alloc");
    syn_texture(&in);
    CHECK(asam_image_resize_pil_bilinear(&in, 0, 4, &out) == -1 && out.data == NULL,
          "zero width accepted");
    CHECK(asam_image_resize_nearest(&in, 4, -1, &out) == -1, "negative height accepted");
    CHECK(asam_image_resize_pil_bilinear(&in, 1 << 20, 1 << 20, &out) == -1,
          "2^40-pixel target accepted");
    asam_image bad = {4, 4, 2, in.data};
    CHECK(asam_image_resize_pil_bilinear(&bad, 2, 2, &out) == -1, "2-channel image accepted");
    asam_image_free(&in);
}

int main(void) {
    int checked[8] = {0};
    char path[4096];
    if (test_data_file("sam_tiny/case_resize_small.safetensors", path, sizeof path) == 0)
        check_case_resize(path, checked);
    else
        CHECK(0, "tests/data/sam_tiny/case_resize_small.safetensors(.gz) missing");
    char full[4096];
    snprintf(full, sizeof full, "%s/sam_tiny/case_resize.safetensors", test_fixtures_dir());
    if (test_is_file(full))
        check_case_resize(full, checked);
    else
        TEST_SKIP_PART("full case_resize (img0, img3): %s not found", full);
    int n = 0;
    for (int i = 0; i < 8; i++) n += checked[i];
    printf("case_resize: %d of 8 images checked\n", n);
    CHECK(n >= 6, "only %d case_resize images checked", n);
    check_sam_case("sam_tiny/case_box_landscape.safetensors");
    check_sam_case("sam_tiny/case_points_portrait.safetensors");
    check_pil_hashes();
    check_bad_args();
    return test_finish("test_resize");
}
