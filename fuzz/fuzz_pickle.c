/* libFuzzer harness: arbitrary bytes as the data.pkl of a torch.save archive whose storages
 * "0" (64 bytes) and "1" (0 bytes) exist, so the unpickler, the flattening of the pickled
 * object and the storage bounds checks are all exercised; loaded tensors are then read. */
#include "asam/checkpoint.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;
    size_t n;
} out;

static void le(out *o, uint64_t v, int k) {
    for (int i = 0; i < k; i++) o->p[o->n++] = (uint8_t)(v >> (8 * i));
}
static void raw(out *o, const void *s, size_t n) {
    if (n) memcpy(o->p + o->n, s, n);
    o->n += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const uint8_t storage0[64] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *names[3] = {"archive/data.pkl", "archive/data/0", "archive/data/1"};
    const uint8_t *payload[3] = {data, storage0, storage0};
    size_t len[3] = {size, sizeof storage0, 0};
    out z = {malloc(size + 512), 0};
    if (!z.p) return 0;
    uint64_t offs[3];
    for (int i = 0; i < 3; i++) { /* local headers + payloads */
        offs[i] = z.n;
        size_t nl = strlen(names[i]);
        le(&z, 0x04034b50u, 4), le(&z, 20, 2), le(&z, 0, 2), le(&z, 0, 2), le(&z, 0, 4);
        le(&z, 0, 4), le(&z, len[i], 4), le(&z, len[i], 4), le(&z, nl, 2), le(&z, 0, 2);
        raw(&z, names[i], nl);
        raw(&z, payload[i], len[i]);
    }
    uint64_t cd = z.n;
    for (int i = 0; i < 3; i++) { /* central directory */
        size_t nl = strlen(names[i]);
        le(&z, 0x02014b50u, 4), le(&z, 20, 2), le(&z, 20, 2), le(&z, 0, 2), le(&z, 0, 2);
        le(&z, 0, 4), le(&z, 0, 4), le(&z, len[i], 4), le(&z, len[i], 4), le(&z, nl, 2);
        le(&z, 0, 2), le(&z, 0, 2), le(&z, 0, 2), le(&z, 0, 2), le(&z, 0, 4), le(&z, offs[i], 4);
        raw(&z, names[i], nl);
    }
    uint64_t cd_size = z.n - cd;
    le(&z, 0x06054b50u, 4), le(&z, 0, 4), le(&z, 3, 2), le(&z, 3, 2), le(&z, cd_size, 4);
    le(&z, cd, 4), le(&z, 0, 2);
    asam_checkpoint *ck;
    if (asam_checkpoint_open_memory(z.p, z.n, "fuzz.pth", &ck) == 0) {
        for (size_t i = 0; i < asam_checkpoint_count(ck); i++) {
            const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
            float *f = malloc(((size_t)t->numel + 1) * sizeof *f);
            if (f) asam_ckpt_read_f32(ck, t, f);
            free(f);
        }
        asam_checkpoint_close(ck);
    }
    free(z.p);
    return 0;
}
