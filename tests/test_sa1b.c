/* SA-1B annotation files: tests/data/sa1b/sa_1.json (+ sa_1.jpg) was written in the SA-1B
 * layout with pycocotools-encoded masks (a disc, a rectangle, diagonal stripes); malformed
 * documents must fail with an error naming the file. */
#include "asam/error.h"
#include "asam/image.h"
#include "asam/sa1b.h"
#include "test_util.h"

static void test_sample_file(void) {
    char path[4096], jpg[4096];
    snprintf(path, sizeof path, "%s/tests/data/sa1b/sa_1.json", ASAM_SOURCE_DIR);
    asam_sa1b_image s;
    int rc = asam_sa1b_read(path, &s);
    CHECK(rc == 0, "read: %s", asam_last_error());
    if (rc) return;
    CHECK(s.image_id == 1 && s.width == 40 && s.height == 30 &&
              strcmp(s.file_name, "sa_1.jpg") == 0,
          "image fields");
    CHECK(s.n == 3, "%zu annotations", s.n);
    snprintf(jpg, sizeof jpg, "%s/tests/data/sa1b/%s", ASAM_SOURCE_DIR, s.file_name);
    asam_image im;
    CHECK(asam_image_read(jpg, 3, &im) == 0 && im.w == s.width && im.h == s.height, "sa_1.jpg: %s",
          asam_last_error());
    asam_image_free(&im);
    uint8_t *m = malloc((size_t)s.width * s.height);
    for (size_t i = 0; i < s.n && s.n == 3; i++) {
        asam_sa1b_annotation *a = &s.anns[i];
        CHECK(a->id == 1000000000LL + (long long)i, "id %lld", a->id);
        CHECK(fabs(a->predicted_iou - (0.91 - 0.1 * i)) < 1e-12 &&
                  fabs(a->stability_score - (0.97 - 0.01 * i)) < 1e-12,
              "scores of annotation %zu", i);
        CHECK(asam_rle_decode(&a->rle, m) == 0, "decode %zu", i);
        /* recompute mask statistics from the decoded pixels */
        int x0 = s.width, y0 = s.height, x1 = -1, y1 = -1;
        uint64_t area = 0;
        int ok_shape = 1;
        for (int y = 0; y < s.height; y++)
            for (int x = 0; x < s.width; x++) {
                int v = m[y * s.width + x];
                int expect = i == 0   ? (x - 12) * (x - 12) + (y - 10) * (y - 10) <= 36
                             : i == 1 ? x >= 20 && x < 38 && y >= 15 && y < 28
                                      : (x + y) % 7 == 0 && y < 12;
                ok_shape &= v == expect;
                if (!v) continue;
                area++;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
        CHECK(ok_shape, "annotation %zu: decoded mask differs from its shape", i);
        CHECK(area == (uint64_t)a->area && area == asam_rle_area(&a->rle), "area %zu", i);
        CHECK(a->bbox[0] == x0 && a->bbox[1] == y0 && a->bbox[2] == x1 - x0 + 1 &&
                  a->bbox[3] == y1 - y0 + 1,
              "bbox %zu", i);
        double b[4];
        asam_rle_bbox(&a->rle, b);
        CHECK(memcmp(b, a->bbox, sizeof b) == 0, "rle bbox %zu", i);
    }
    free(m);
    asam_sa1b_free(&s);
    if (!test_failures) printf("ok   sa_1.json: 3 masks decode to their shapes, boxes, areas\n");
}

static void test_optional_fields(void) {
    /* uncompressed counts, no bbox/area/scores: computed from the mask, scores NAN */
    const char *doc = "{\"image\": {\"image_id\": 7, \"width\": 4, \"height\": 3, \"file_name\": "
                      "\"x.jpg\"}, \"annotations\": [{\"id\": 5, \"segmentation\": {\"size\": "
                      "[3, 4], \"counts\": [4, 2, 6]}}]}";
    asam_sa1b_image s;
    int rc = asam_sa1b_parse(doc, strlen(doc), "opt.json", &s);
    CHECK(rc == 0, "optional fields: %s", asam_last_error());
    if (rc) return;
    CHECK(s.n == 1 && s.anns[0].area == 2 && s.anns[0].bbox[0] == 1 && s.anns[0].bbox[1] == 1 &&
              s.anns[0].bbox[2] == 1 && s.anns[0].bbox[3] == 2 && isnan(s.anns[0].predicted_iou),
          "computed bbox/area");
    asam_sa1b_free(&s);
    const char *empty = "{\"image\": {\"image_id\": 7, \"width\": 4, \"height\": 3, \"file_name\": "
                        "\"x.jpg\"}, \"annotations\": []}";
    CHECK(asam_sa1b_parse(empty, strlen(empty), "empty.json", &s) == 0 && s.n == 0,
          "no annotations: %s", asam_last_error());
    asam_sa1b_free(&s);
    printf("ok   optional fields and empty annotation lists\n");
}

static void test_bad_documents(void) {
#define IMG "\"image\": {\"image_id\": 1, \"width\": 4, \"height\": 3, \"file_name\": \"a.jpg\"}"
#define SEG "\"segmentation\": {\"size\": [3, 4], \"counts\": \"<\"}"
    static const char *bad[] = {
        "",
        "{",
        "[1, 2]",
        "{\"annotations\": []}",
        "{\"image\": 5, \"annotations\": []}",
        "{" IMG "}",
        "{" IMG ", \"annotations\": {}}",
        "{\"image\": {\"image_id\": 1, \"width\": \"4\", \"height\": 3, \"file_name\": \"a\"}, "
        "\"annotations\": []}",
        "{\"image\": {\"image_id\": 1, \"width\": 4, \"height\": 3, \"file_name\": 9}, "
        "\"annotations\": []}",
        "{\"image\": {\"image_id\": 1.5, \"width\": 4, \"height\": 3, \"file_name\": \"a\"}, "
        "\"annotations\": []}",
        "{\"image\": {\"image_id\": 1, \"width\": -4, \"height\": 3, \"file_name\": \"a\"}, "
        "\"annotations\": []}",
        "{\"image\": {\"image_id\": 1, \"width\": 4e9, \"height\": 3e9, \"file_name\": \"a\"}, "
        "\"annotations\": []}",
        "{" IMG ", \"annotations\": [7]}",
        "{" IMG ", \"annotations\": [{" SEG "}]}",   /* no id */
        "{" IMG ", \"annotations\": [{\"id\": 1}]}", /* no segmentation */
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": [[1, 2, 3, 4, 5, 6]]}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [4, 3], "
        "\"counts\": \"<\"}}]}", /* transposed size */
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3], "
        "\"counts\": \"<\"}}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3, 4], "
        "\"counts\": 12}}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3, 4], "
        "\"counts\": \"<1\"}}]}", /* sums to 13 */
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3, 4], "
        "\"counts\": \"< \"}}]}", /* bad character */
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3, 4], "
        "\"counts\": [4, -2, 10]}}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [3, 4], "
        "\"counts\": [4, 2, 5]}}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, " SEG ", \"bbox\": [1, 2, 3]}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, " SEG ", \"bbox\": [1, 2, \"3\", 4]}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, " SEG ", \"predicted_iou\": \"high\"}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, " SEG ", \"area\": null}]}",
        "{" IMG ", \"annotations\": [{\"id\": 1, " SEG "}, {\"id\": 2, " SEG
        ", \"stability_score\": [1]}]}",
    };
    /* control: the pieces above make a valid document */
    const char *good = "{" IMG ", \"annotations\": [{\"id\": 1, " SEG "}]}";
#undef IMG
#undef SEG
    asam_sa1b_image g;
    CHECK(asam_sa1b_parse(good, strlen(good), "good.json", &g) == 0 && g.n == 1,
          "control document rejected: %s", asam_last_error());
    asam_sa1b_free(&g);
    int n_ok = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        asam_sa1b_image s;
        int rc = asam_sa1b_parse(bad[i], strlen(bad[i]), "bad.json", &s);
        int ok = rc == -1 && strstr(asam_last_error(), "bad.json") && s.anns == NULL &&
                 s.file_name == NULL;
        CHECK(ok, "bad document %zu accepted or unclear error: '%s' (%s)", i, bad[i],
              rc ? asam_last_error() : "accepted");
        if (rc == 0) asam_sa1b_free(&s);
        n_ok += ok;
        if (ok) printf("     %2zu: %s\n", i, asam_last_error());
    }
    printf("ok   %d of %zu malformed documents rejected with the file named\n", n_ok,
           sizeof bad / sizeof bad[0]);
    asam_sa1b_image s;
    CHECK(asam_sa1b_read("imgio_no_such.json", &s) == -1 &&
              strstr(asam_last_error(), "imgio_no_such.json"),
          "missing file: %s", asam_last_error());
    /* size mismatch message says what differs */
    const char *mis = "{\"image\": {\"image_id\": 1, \"width\": 4, \"height\": 3, \"file_name\": "
                      "\"a\"}, \"annotations\": [{\"id\": 1, \"segmentation\": {\"size\": [4, "
                      "3], \"counts\": \"<\"}}]}";
    asam_sa1b_parse(mis, strlen(mis), "mis.json", &s);
    CHECK(strstr(asam_last_error(), "annotations[0]") && strstr(asam_last_error(), "size"),
          "size mismatch error: %s", asam_last_error());
}

int main(void) {
    test_sample_file();
    test_optional_fields();
    test_bad_documents();
    return test_finish("test_sa1b");
}
