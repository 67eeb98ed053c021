/* Helpers of the tests that compare asam's ASAM stages with the trajectories the official
 * scripts produced (tests/data/asam_ref, made by scripts/ref/make_asam_reference.py). */
#ifndef ASAM_REF_UTIL_H
#define ASAM_REF_UTIL_H

#include "asam/checkpoint.h"
#include "asam/error.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_DIR ASAM_SOURCE_DIR "/tests/data/asam_ref"

/* tensor NAME of REF_DIR/FILE as floats (malloc'ed); *n receives the count; exits when absent */
static inline float *ref_tensor(const char *file, const char *name, size_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", REF_DIR, file);
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) {
        fprintf(stderr, "FAIL: %s\n", asam_last_error());
        exit(1);
    }
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t) {
        fprintf(stderr, "FAIL: %s: no tensor %s\n", path, name);
        exit(1);
    }
    float *v = malloc(sizeof(float) * (t->numel ? (size_t)t->numel : 1));
    if (!v || asam_ckpt_read_f32(ck, t, v)) {
        fprintf(stderr, "FAIL: %s: cannot read %s\n", path, name);
        exit(1);
    }
    if (n) *n = (size_t)t->numel;
    asam_checkpoint_close(ck);
    return v;
}

static inline cJSON *ref_json(const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", REF_DIR, file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        exit(1);
    }
    static char buf[1 << 16];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    cJSON *j = cJSON_Parse(buf);
    if (!j) {
        fprintf(stderr, "FAIL: %s: bad JSON\n", path);
        exit(1);
    }
    return j;
}

static inline double ref_num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* element i of array KEY (NaN when null) */
static inline double ref_at(const cJSON *j, const char *key, int i) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    const cJSON *v = a ? cJSON_GetArrayItem(a, i) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* max |a - b| / max |b| over n values, and print it (the project's relative error) */
static inline double ref_rel(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

#define REF_CLOSE(a, b, n, tol, what)                                                              \
    do {                                                                                           \
        double rr_ = ref_rel((a), (b), (n));                                                       \
        CHECK(rr_ <= (tol), "%s: worst relative error %.3g > %.3g", (what), rr_, (double)(tol));   \
        if (rr_ <= (tol)) printf("ok   %s (worst relative error %.3g)\n", (what), rr_);            \
    } while (0)

/* scalar relative error |a - b| / |b| (NaN == NaN) */
#define REF_SCALAR(a, b, tol, what)                                                                \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        int same_ = (isnan(a_) && isnan(b_)) || fabs(a_ - b_) <= (tol)*fmax(fabs(b_), 1e-30);      \
        CHECK(same_, "%s: %.9g vs official %.9g", (what), a_, b_);                                 \
        if (same_)                                                                                 \
            printf("ok   %s %.7g (official %.7g, rel %.2g)\n", (what), a_, b_,                     \
                   b_ != 0 && !isnan(b_) ? fabs(a_ - b_) / fabs(b_) : 0.0);                        \
    } while (0)

#endif
