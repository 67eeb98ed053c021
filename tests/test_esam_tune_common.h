/* Shared by the EfficientSAM tuning tests: compare a tuned checkpoint with its source. */
#ifndef ASAM_TEST_ESAM_TUNE_COMMON_H
#define ASAM_TEST_ESAM_TUNE_COMMON_H

#include "asam/asam.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/fileio.h"

/* Count changed values inside / outside the two token tensors; every source name must be in
 * the tuned file with the same shape and no other name may be added. */
static inline void esam_tuned_diff(const char *src, const char *tuned, long *tok_vals,
                                   long *changed, long *other) {
    *tok_vals = *changed = *other = 0;
    asam_checkpoint *a = NULL, *b = NULL;
    CHECK(asam_checkpoint_open(src, &a) == 0, "open %s: %s", src, asam_last_error());
    CHECK(asam_checkpoint_open(tuned, &b) == 0, "open %s: %s", tuned, asam_last_error());
    if (a && b) {
        CHECK(asam_checkpoint_count(a) == asam_checkpoint_count(b), "key counts %zu vs %zu",
              asam_checkpoint_count(a), asam_checkpoint_count(b));
        for (size_t i = 0; i < asam_checkpoint_count(a); i++) {
            const asam_ckpt_tensor *ta = asam_checkpoint_get(a, i);
            const asam_ckpt_tensor *tb = asam_checkpoint_find(b, ta->name);
            CHECK(tb && tb->numel == ta->numel && tb->dtype == ASAM_DT_F32, "%s in the tuned file",
                  ta->name);
            if (!tb || tb->numel != ta->numel) continue;
            float *va = malloc(sizeof(float) * ta->numel), *vb = malloc(sizeof(float) * ta->numel);
            asam_ckpt_read_f32(a, ta, va);
            asam_ckpt_read_f32(b, tb, vb);
            int tok = !strcmp(ta->name, "mask_decoder.iou_token.weight") ||
                      !strcmp(ta->name, "mask_decoder.mask_tokens.weight");
            for (int64_t k = 0; k < ta->numel; k++) {
                int d = memcmp(&va[k], &vb[k], 4) != 0;
                if (tok) {
                    (*tok_vals)++;
                    *changed += d;
                } else {
                    *other += d;
                }
            }
            free(va);
            free(vb);
        }
    }
    asam_checkpoint_close(a);
    asam_checkpoint_close(b);
}

/* The .pt is torch.save({"model": state_dict}): its pickle opens with EMPTY_DICT and the key. */
static inline int esam_has_model_wrapper(const char *path) {
    char *d;
    size_t n;
    if (asam_read_file(path, &d, &n)) return 0;
    const char pat[] = "\x80\x02}X\x05\x00\x00\x00model";
    int found = 0;
    for (size_t i = 0; i + sizeof pat - 1 <= n && !found; i++)
        found = !memcmp(d + i, pat, sizeof pat - 1);
    free(d);
    return found;
}

#endif
