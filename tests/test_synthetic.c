/* The synthetic SA-1B shard: deterministic bytes, masks that decode to the drawn shapes. */
#include "test_util.h"

#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/image.h"
#include "asam/rle.h"
#include "asam/sa1b.h"
#include "asam/synthetic.h"

enum { N = 4, S = 96 }; /* images per shard, their size */

// Same seed -> identical bytes; another seed -> other images.
static void case_deterministic(const char *d1, const char *d2, const char *d3) {
    char pa[512], pb[512], pc[512];
    int all_same = 1, any_diff = 0;
    for (int i = 1; i <= N; i++) {
        const char *ext[2] = {"jpg", "json"};
        for (int e = 0; e < 2; e++) {
            snprintf(pa, sizeof pa, "%s/sa_%d.%s", d1, i, ext[e]);
            snprintf(pb, sizeof pb, "%s/sa_%d.%s", d2, i, ext[e]);
            snprintf(pc, sizeof pc, "%s/sa_%d.%s", d3, i, ext[e]);
            all_same &= test_same_file(pa, pb);
            any_diff |= !test_same_file(pa, pc);
        }
    }
    snprintf(pa, sizeof pa, "%s/captions.jsonl", d1);
    snprintf(pb, sizeof pb, "%s/captions.jsonl", d2);
    all_same &= test_same_file(pa, pb);
    CHECK(all_same, "same seed gave different bytes");
    CHECK(any_diff, "different seeds gave the same shard");
    if (all_same) printf("ok   same seed -> identical bytes (%d images + captions)\n", N);
}

// Captions: one line per image, naming the file.
static void case_captions(const char *d1) {
    char pa[512];
    snprintf(pa, sizeof pa, "%s/captions.jsonl", d1);
    char *cap = NULL;
    size_t ncap = 0;
    CHECK(asam_read_file(pa, &cap, &ncap) == 0, "%s", asam_last_error());
    int lines = 0;
    for (size_t i = 0; cap && i < ncap; i++) lines += cap[i] == '\n';
    CHECK(lines == N, "captions.jsonl has %d lines, want %d", lines, N);
    CHECK(cap && strstr(cap, "{\"img\": \"sa_1.jpg\", \"prompt\": \"a "), "first caption: %.80s",
          cap ? cap : "");
    free(cap);
}

// Masks decode to exactly the rendered shapes, do not overlap, and the JPEG's pixels inside
// each mask have the shape's colour (mean inside far from mean just outside).
static void case_masks(const char *d1) {
    char pa[512], pb[512];
    int total_masks = 0;
    for (int i = 0; i < N; i++) {
        asam_synth_sample s;
        CHECK(asam_synthetic_render(i, S, 7, &s) == 0, "%s", asam_last_error());
        asam_sa1b_image ann;
        snprintf(pa, sizeof pa, "%s/sa_%d.json", d1, i + 1);
        if (asam_sa1b_read(pa, &ann)) {
            CHECK(0, "%s", asam_last_error());
            asam_synth_sample_free(&s);
            continue;
        }
        CHECK(ann.width == S && ann.height == S && (int)ann.n == s.n_masks,
              "image %d: %dx%d, %zu masks (want %d)", i, ann.width, ann.height, ann.n, s.n_masks);
        asam_image img;
        snprintf(pb, sizeof pb, "%s/sa_%d.jpg", d1, i + 1);
        CHECK(asam_image_read(pb, 3, &img) == 0, "%s", asam_last_error());
        uint8_t *m = malloc((size_t)S * S), *cover = calloc((size_t)S * S, 1);
        for (size_t k = 0; k < ann.n && (int)k < s.n_masks; k++) {
            CHECK(asam_rle_decode(&ann.anns[k].rle, m) == 0, "%s", asam_last_error());
            const uint8_t *ref = s.masks + k * S * S;
            size_t diff = 0, area = 0;
            for (size_t p = 0; p < (size_t)S * S; p++) {
                diff += m[p] != ref[p];
                area += m[p];
                if (m[p] && cover[p]) diff++; // overlap counts as a mismatch
                cover[p] |= m[p];
            }
            CHECK(diff == 0, "image %d mask %zu: %zu pixels differ from the drawn shape", i, k,
                  diff);
            CHECK(area >= (size_t)S * S / 100 && fabs(ann.anns[k].area - (double)area) < 0.5,
                  "image %d mask %zu: area %zu (json %g)", i, k, area, ann.anns[k].area);
            // Inside the mask (eroded by 3 px: JPEG's 2x2 chroma subsampling blurs edges) the
            // JPEG has the drawn colours.
            double err = 0, n_int = 0;
            for (int y = 3; y < S - 3; y++)
                for (int x = 3; x < S - 3; x++) {
                    int interior = 1;
                    for (int dy = -3; dy <= 3 && interior; dy++)
                        for (int dx = -3; dx <= 3; dx++) interior &= m[(y + dy) * S + x + dx];
                    if (!interior) continue;
                    size_t p = (size_t)y * S + x;
                    for (int c = 0; c < 3; c++)
                        err += fabs((double)img.data[p * 3 + c] - s.img.data[p * 3 + c]) / 3;
                    n_int++;
                }
            err /= n_int > 0 ? n_int : 1;
            CHECK(n_int > 0 && err < 6, "image %d mask %zu: interior mean |jpeg - drawn| %.2f", i,
                  k, err);
            total_masks++;
        }
        free(m);
        free(cover);
        asam_image_free(&img);
        asam_sa1b_free(&ann);
        asam_synth_sample_free(&s);
    }
    printf("ok   %d masks decode to the drawn shapes\n", total_masks);
    CHECK(total_masks >= 2 * N, "only %d masks in %d images", total_masks, N);
}

// Bad arguments give errors, not crashes.
static void case_bad_arguments(const char *d1) {
    CHECK(asam_synthetic_sa1b(d1, 0, S, 1) == -1, "0 images accepted");
    asam_synth_sample bad;
    CHECK(asam_synthetic_render(0, 4, 1, &bad) == -1, "size 4 accepted");
}

int main(void) {
    char d1[256], d2[256], d3[256];
    snprintf(d1, sizeof d1, "synth_test_%d/a", (int)getpid());
    snprintf(d2, sizeof d2, "synth_test_%d/b", (int)getpid());
    snprintf(d3, sizeof d3, "synth_test_%d/c", (int)getpid());
    CHECK(asam_synthetic_sa1b(d1, N, S, 7) == 0, "%s", asam_last_error());
    CHECK(asam_synthetic_sa1b(d2, N, S, 7) == 0, "%s", asam_last_error());
    CHECK(asam_synthetic_sa1b(d3, N, S, 8) == 0, "%s", asam_last_error());
    case_deterministic(d1, d2, d3);
    case_captions(d1);
    case_masks(d1);
    case_bad_arguments(d1);
    char dir[64];
    snprintf(dir, sizeof dir, "synth_test_%d", (int)getpid());
    if (!test_failures) test_rm_rf(dir); /* kept for a look when something failed */
    return test_finish("test_synthetic");
}
