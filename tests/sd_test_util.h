/* Helpers for the SD model tests: reference case files (safetensors) and the tiny model. */
#ifndef ASAM_SD_TEST_UTIL_H
#define ASAM_SD_TEST_UTIL_H

#include "asam/engine.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sd_models.h"
#include "test_util.h"

#include <stdint.h>

/* Open a fixture file (tests/data or $ASAM_FIXTURES); skips the test when absent. */
static inline asam_checkpoint *sd_open(const char *rel) {
    char path[4096];
    if (test_data_file(rel, path, sizeof path) != 0)
        TEST_SKIP("fixture %s not found (set ASAM_FIXTURES)", rel);
    asam_checkpoint *ck = NULL;
    if (asam_checkpoint_open(path, &ck) != 0) {
        fprintf(stderr, "FAIL: cannot open %s: %s\n", path, asam_last_error());
        exit(1);
    }
    return ck;
}

/* The tiny model's UNet / VAE / ControlNet under their CompVis prefixes; exits on failure. */
static inline void sd_load_fail(void) {
    fprintf(stderr, "FAIL load: %s\n", asam_last_error());
    exit(1);
}
static inline asam_unet *sd_load_unet(const asam_checkpoint *ck) {
    asam_unet *u = NULL;
    if (asam_unet_load(ck, "model.diffusion_model.", &u) != 0) sd_load_fail();
    return u;
}
static inline asam_vae *sd_load_vae(const asam_checkpoint *ck) {
    asam_vae *v = NULL;
    if (asam_vae_load(ck, "first_stage_model.", &v) != 0) sd_load_fail();
    return v;
}
static inline asam_controlnet *sd_load_controlnet(const asam_checkpoint *ck) {
    asam_controlnet *c = NULL;
    if (asam_controlnet_load(ck, "control_model.", &c) != 0) sd_load_fail();
    return c;
}

static inline const asam_ckpt_tensor *sd_entry(const asam_checkpoint *ck, const char *name) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t) {
        fprintf(stderr, "FAIL: %s: no tensor %s\n", asam_checkpoint_path(ck), name);
        exit(1);
    }
    return t;
}

/* A case tensor as an arena tensor (f32). */
static inline asam_tensor *sd_case(asam_ctx *ctx, const asam_checkpoint *ck, const char *name) {
    const asam_ckpt_tensor *e = sd_entry(ck, name);
    asam_tensor *t = asam_new(ctx, e->ndim, e->shape);
    if (!t || asam_ckpt_read_f32(ck, e, t->data) != 0) {
        fprintf(stderr, "FAIL: cannot read %s\n", name);
        exit(1);
    }
    return t;
}

static inline void sd_case_i64(const asam_checkpoint *ck, const char *name, int64_t *dst) {
    if (asam_ckpt_read_i64(ck, sd_entry(ck, name), dst) != 0) {
        fprintf(stderr, "FAIL: cannot read %s\n", name);
        exit(1);
    }
}

/* Compare data (n floats) with a case tensor of the same element count. */
static inline double sd_compare(const float *got, int64_t n, const asam_checkpoint *ck,
                                const char *name, double tol, const char *what) {
    const asam_ckpt_tensor *e = sd_entry(ck, name);
    if (!got) {
        CHECK(got != NULL, "%s: no output", what);
        return INFINITY;
    }
    if (e->numel != n) {
        CHECK(e->numel == n, "%s: %lld values, reference has %lld", what, (long long)n,
              (long long)e->numel);
        return INFINITY;
    }
    float *ref = malloc((size_t)n * sizeof(float));
    asam_ckpt_read_f32(ck, e, ref);
    double rd = test_rel_diff(got, ref, (size_t)n);
    CHECK_CLOSE(got, ref, (size_t)n, tol, what);
    free(ref);
    return rd;
}

static inline double sd_check(asam_tensor *t, const asam_checkpoint *ck, const char *name,
                              double tol) {
    if (!t) {
        CHECK(t != NULL, "%s: no output", name);
        return INFINITY;
    }
    const asam_ckpt_tensor *e = sd_entry(ck, name);
    int same = e->ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = e->shape[i] == t->shape[i];
    CHECK(same, "%s: shape mismatch", name);
    return sd_compare(t->data, t->numel, ck, name, tol, name);
}

/* The tiny SD checkpoint (CompVis single file). */
static inline asam_checkpoint *sd_open_model(void) {
    return sd_open("sd_tiny/model.ckpt");
}

#define SD_CHECK_OK(ctx, what)                                                                     \
    do {                                                                                           \
        if (!asam_ctx_ok(ctx)) {                                                                   \
            fprintf(stderr, "FAIL %s: %s\n", (what), asam_ctx_error(ctx));                         \
            test_failures++;                                                                       \
            asam_ctx_clear_error(ctx);                                                             \
        }                                                                                          \
    } while (0)

#endif
