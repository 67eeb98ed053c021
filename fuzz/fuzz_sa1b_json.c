/* libFuzzer harness for the SA-1B annotation parser (cJSON + RLE validation). Accepted
 * documents have every mask decoded, which checks the size validation end to end. */
#include "asam/sa1b.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    asam_sa1b_image s;
    if (asam_sa1b_parse((const char *)data, size, "fuzz.json", &s) != 0) return 0;
    size_t area = (size_t)s.width * s.height;
    if (area <= (1u << 22)) {
        uint8_t *m = malloc(area ? area : 1);
        for (size_t i = 0; m && i < s.n; i++)
            if (asam_rle_decode(&s.anns[i].rle, m) != 0) abort();
        free(m);
    }
    asam_sa1b_free(&s);
    return 0;
}
