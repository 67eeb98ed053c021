/* libFuzzer harness for the COCO RLE string parser: the first 4 bytes pick h and w (up to
 * 255 x 255 so every accepted string also gets decoded), the rest is the counts string.
 * Accepted strings must re-encode to a string that parses to the same runs. */
#include "asam/rle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int h = data[0], w = data[1];
    char *s = malloc(size - 1);
    if (!s) return 0;
    memcpy(s, data + 2, size - 2);
    s[size - 2] = 0;
    asam_rle r;
    if (asam_rle_from_string(s, h, w, &r) == 0) {
        uint8_t *m = malloc((size_t)h * w + 1);
        if (asam_rle_decode(&r, m) != 0) abort();
        asam_rle e;
        if (asam_rle_encode(m, h, w, &e) != 0) abort();
        if (asam_rle_area(&e) != asam_rle_area(&r)) abort();
        double b1[4], b2[4];
        asam_rle_bbox(&r, b1);
        asam_rle_bbox(&e, b2);
        char *t = asam_rle_to_string(&r);
        asam_rle r2;
        if (!t || asam_rle_from_string(t, h, w, &r2) != 0) abort();
        if (r2.n != r.n || memcmp(r2.counts, r.counts, r.n * sizeof(uint32_t)) != 0) abort();
        asam_rle_free(&r2);
        free(t);
        asam_rle_free(&e);
        free(m);
        asam_rle_free(&r);
    }
    free(s);
    return 0;
}
