/* Helpers shared by the SAM tests: reading reference tensors from fixture safetensors and
 * comparing them. Include after test_util.h. */
#ifndef ASAM_TEST_SAM_COMMON_H
#define ASAM_TEST_SAM_COMMON_H

#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sam.h"

#include <stdint.h>

/* Open a fixture (tests/data or $ASAM_FIXTURES); NULL when absent. */
static inline asam_checkpoint *fx_open(const char *rel) {
    char path[4096];
    if (test_data_file(rel, path, sizeof path) != 0) return NULL;
    asam_checkpoint *ck = NULL;
    if (asam_checkpoint_open(path, &ck) != 0) {
        fprintf(stderr, "cannot open %s: %s\n", path, asam_last_error());
        return NULL;
    }
    return ck;
}

/* A parity case's fixture with a fresh arena (no gradients); skips the test when absent. */
static inline asam_checkpoint *fx_case(const char *rel, asam_ctx **ctx) {
    asam_checkpoint *ck = fx_open(rel);
    if (!ck) TEST_SKIP("%s not found (set ASAM_FIXTURES)", rel);
    *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(*ctx, 0);
    return ck;
}

/* A fixture tensor as malloc'd floats (U8 converted); exits the test when missing. */
static inline float *fx_f32(asam_checkpoint *ck, const char *name, int64_t *numel) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t) {
        fprintf(stderr, "FAIL: fixture tensor %s missing in %s\n", name, asam_checkpoint_path(ck));
        exit(1);
    }
    float *d = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (asam_ckpt_read_f32(ck, t, d) != 0) {
        fprintf(stderr, "FAIL: reading %s: %s\n", name, asam_last_error());
        exit(1);
    }
    if (numel) *numel = t->numel;
    return d;
}

static inline int fx_has(asam_checkpoint *ck, const char *name) {
    return asam_checkpoint_find(ck, name) != NULL;
}

/* Compare a tensor with a fixture tensor (same number of elements). */
static inline void fx_check(asam_checkpoint *ck, const char *name, const asam_tensor *t, double tol,
                            const char *what) {
    int64_t n;
    float *ref = fx_f32(ck, name, &n);
    if (!t) {
        CHECK(t != NULL, "%s: not computed", what);
    } else {
        CHECK(t->numel == n, "%s: %lld values, fixture %s has %lld", what, (long long)t->numel,
              name, (long long)n);
        if (t->numel == n) CHECK_CLOSE(t->data, ref, (size_t)n, tol, what);
    }
    free(ref);
}

/* Binary masks: equal except where the reference logit is within 1e-3 of 0. */
static inline void fx_check_masks(const uint8_t *masks, const float *ref_logits,
                                  const float *ref_masks, int64_t n, const char *what) {
    int64_t bad = 0, near = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((masks[i] != 0) != (ref_masks[i] != 0)) {
            if (fabsf(ref_logits[i]) < 1e-3f)
                near++;
            else
                bad++;
        }
    }
    CHECK(bad == 0, "%s: %lld mask pixels differ away from the decision boundary", what,
          (long long)bad);
    if (bad == 0) printf("ok   %s (%lld boundary flips)\n", what, (long long)near);
}

static inline asam_tensor *fx_tensor(asam_ctx *ctx, asam_checkpoint *ck, const char *name, int ndim,
                                     const int64_t *shape) {
    int64_t n;
    float *d = fx_f32(ck, name, &n);
    asam_tensor *t = asam_from_data(ctx, ndim, shape, d);
    free(d);
    return t;
}

#endif
