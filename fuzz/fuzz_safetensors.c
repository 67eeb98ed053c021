/* libFuzzer harness: arbitrary bytes through asam_checkpoint_open_memory (format detection,
 * safetensors header parsing, and the zip reader for inputs starting with "PK"), then every
 * tensor through the f32 converter so out-of-range views would touch unmapped memory. */
#include "asam/checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exact-size heap copy: ASan sees over-reads */
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    asam_checkpoint *ck;
    if (asam_checkpoint_open_memory(copy, size, "fuzz", &ck) == 0) {
        for (size_t i = 0; i < asam_checkpoint_count(ck); i++) {
            const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
            if (t->numel > (1 << 24)) continue;
            float *f = malloc(((size_t)t->numel + 1) * sizeof *f);
            if (f) asam_ckpt_read_f32(ck, t, f);
            free(f);
            (void)asam_checkpoint_find(ck, t->name);
        }
        (void)asam_checkpoint_metadata(ck, "format");
        asam_checkpoint_close(ck);
    }
    free(copy);
    return 0;
}
