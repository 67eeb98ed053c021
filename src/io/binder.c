/* The weight binder (see asam/binder.h). */
#include "asam/binder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam/engine.h"
#include "asam/error.h"

void asam_binder_init(asam_binder *B, const asam_checkpoint *ck, const char *prefix) {
    memset(B, 0, sizeof *B);
    B->ck = ck;
    B->prefix = prefix ? prefix : "";
}

const char *asam_binder_path(const asam_binder *B) {
    return B->ck ? asam_checkpoint_path(B->ck) : "(random)";
}

const asam_ckpt_tensor *asam_binder_find(const asam_binder *B, const char *name, char *key,
                                         size_t n) {
    int rc = B->map ? B->map(B, name, key, n)
                    : (snprintf(key, n, "%s%s", B->prefix, name) < (int)n ? 0 : -1);
    if (rc != 0) {
        snprintf(key, n, "%s", name);
        return NULL;
    }
    return B->ck ? asam_checkpoint_find(B->ck, key) : NULL;
}

/* Stored shape a against the wanted b: the same numbers in the same order, exactly or (loose)
 * after dropping trailing 1s; a wanted -1 matches any size. */
static int shape_ok(int loose, int na, const int64_t *a, int nb, const int64_t *b) {
    while (loose && na > 0 && a[na - 1] == 1) na--;
    while (loose && nb > 0 && b[nb - 1] == 1) nb--;
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (b[i] >= 0 && a[i] != b[i]) return 0;
    return 1;
}

static void shape_str(char *buf, size_t n, int nd, const int64_t *s) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

static asam_tensor *fail(asam_binder *B, asam_tensor *p, char *name) {
    asam_param_free(p);
    free(name);
    B->failed = 1;
    return NULL;
}

static asam_tensor *bind(asam_binder *B, const char *name, int ndim, const int64_t *shape,
                         int optional) {
    if (B->failed) return NULL;
    char key[512];
    const asam_ckpt_tensor *t = NULL;
    if (B->ck) {
        t = asam_binder_find(B, name, key, sizeof key);
        if (!t && optional) return NULL;
        if (!t) {
            asam_error("%s: %s%s%smissing tensor '%s'", asam_binder_path(B),
                       B->model ? "not a " : "", B->model ? B->model : "",
                       B->model ? " checkpoint: " : "", key);
            return fail(B, NULL, NULL);
        }
        if (!shape_ok(B->loose_shape, t->ndim, t->shape, ndim, shape)) {
            char got[128], want[128];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(want, sizeof want, ndim, shape);
            asam_error("%s: tensor '%s' has shape %s, expected %s", asam_binder_path(B), key, got,
                       want);
            return fail(B, NULL, NULL);
        }
    }
    if (B->n == B->cap) {
        size_t cap = B->cap ? 2 * B->cap : 256;
        asam_tensor **p = realloc(B->params, cap * sizeof *p);
        if (p) B->params = p;
        char **q = p ? realloc(B->names, cap * sizeof *q) : NULL;
        if (q) B->names = q, B->cap = cap;
    }
    int64_t dims[ASAM_CKPT_MAX_DIMS]; /* wanted shape, any -1 resolved from the file */
    for (int i = 0; i < ndim && i < ASAM_CKPT_MAX_DIMS; i++)
        dims[i] = shape[i] < 0 && t ? t->shape[i] : shape[i];
    asam_tensor *p = B->n < B->cap ? asam_param_new(ndim, dims) : NULL;
    char *nm = p ? strdup(name) : NULL;
    if (!nm) {
        asam_error("%s: out of memory binding '%s'", asam_binder_path(B), name);
        return fail(B, p, NULL);
    }
    if (t && asam_ckpt_read_f32(B->ck, t, p->data) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", asam_last_error());
        asam_error("%s: tensor '%s': cannot read: %s", asam_binder_path(B), key, why);
        return fail(B, p, nm);
    }
    if (t && B->hold_weights &&
        (B->is_gemm_weight ? B->is_gemm_weight(name, ndim) : ndim == 2 || ndim == 4))
        asam_weight_hold_now(p);
    if (!t && B->init) B->init(B->user, name, p);
    p->name = nm;
    B->params[B->n] = p;
    B->names[B->n++] = nm;
    return p;
}

asam_tensor *asam_bind(asam_binder *B, const char *name, int ndim, const int64_t *shape) {
    return bind(B, name, ndim, shape, 0);
}

asam_tensor *asam_bind_opt(asam_binder *B, const char *name, int ndim, const int64_t *shape) {
    return bind(B, name, ndim, shape, 1);
}

asam_tensor *asam_bindf(asam_binder *B, int ndim, const int64_t *shape, const char *fmt, ...) {
    char name[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return bind(B, name, ndim, shape, 0);
}

void asam_binder_free(asam_binder *B) {
    for (size_t i = 0; i < B->n; i++) {
        B->params[i]->name = NULL;
        asam_param_free(B->params[i]);
        free(B->names[i]);
    }
    free(B->params);
    free(B->names);
    B->params = NULL;
    B->names = NULL;
    B->n = B->cap = 0;
}
