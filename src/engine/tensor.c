/* Tensor creation: arena tensors (asam_new & co.) and persistent parameters. */
#include "engine/conv_amx.h"
#include "engine/engine_internal.h"
#include "engine/gemm_bf16.h"
#include "engine/linear_amx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t asam_numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int asam_norm_dim(int dim, int ndim) {
    if (dim < 0) dim += ndim;
    return dim >= 0 && dim < ndim ? dim : -1;
}

static bool valid_shape(asam_ctx *ctx, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > ASAM_MAX_DIMS)
        return asam_check(ctx, false, "tensor", "%d dims (at most %d)", ndim, ASAM_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > (INT64_C(1) << 40) / shape[i]))
            return asam_check(ctx, false, "tensor", "invalid size %lld in dim %d",
                              (long long)shape[i], i);
        n *= shape[i];
    }
    return true;
}

asam_tensor *asam_op_out(asam_ctx *ctx, int ndim, const int64_t *shape) {
    if (!ctx->error[0] && !valid_shape(ctx, ndim, shape)) return NULL;
    if (ctx->error[0]) return NULL;
    asam_tensor *t = asam_ctx_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = asam_numel_of(ndim, shape);
    t->data = asam_ctx_alloc(ctx, (size_t)(t->numel ? t->numel : 1) * sizeof(float));
    return t->data ? t : NULL;
}

asam_tensor *asam_new(asam_ctx *ctx, int ndim, const int64_t *shape) {
    return asam_op_out(ctx, ndim, shape);
}

asam_tensor *asam_zeros(asam_ctx *ctx, int ndim, const int64_t *shape) {
    asam_tensor *t = asam_op_out(ctx, ndim, shape);
    if (t) memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return t;
}

asam_tensor *asam_full(asam_ctx *ctx, int ndim, const int64_t *shape, float value) {
    asam_tensor *t = asam_op_out(ctx, ndim, shape);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    return t;
}

asam_tensor *asam_from_data(asam_ctx *ctx, int ndim, const int64_t *shape, const float *data) {
    asam_tensor *t = asam_op_out(ctx, ndim, shape);
    if (t) memcpy(t->data, data, (size_t)t->numel * sizeof(float));
    return t;
}

asam_tensor *asam_scalar(asam_ctx *ctx, float value) {
    return asam_full(ctx, 0, NULL, value);
}

asam_tensor *asam_new_like(asam_ctx *ctx, const asam_tensor *t) {
    if (!t) return NULL;
    return asam_op_out(ctx, t->ndim, t->shape);
}

asam_tensor *asam_detach(asam_ctx *ctx, asam_tensor *t) {
    if (!t || ctx->error[0]) return NULL;
    asam_tensor *d = asam_ctx_alloc(ctx, sizeof *d);
    if (!d) return NULL;
    *d = *t;
    d->grad = NULL;
    d->node = NULL;
    d->requires_grad = 0;
    d->persistent = 0;
    d->base = t;
    return d;
}

/* Bytes of persistent tensors' data, fp32 and held bf16 (see asam_param_bytes). */
static int64_t param_f32_bytes, param_bf16_bytes;

static void count(int64_t *counter, int64_t delta) {
    __atomic_add_fetch(counter, delta, __ATOMIC_RELAXED);
}

void asam_param_bytes(size_t *fp32_bytes, size_t *bf16_bytes) {
    if (fp32_bytes) *fp32_bytes = (size_t)__atomic_load_n(&param_f32_bytes, __ATOMIC_RELAXED);
    if (bf16_bytes) *bf16_bytes = (size_t)__atomic_load_n(&param_bf16_bytes, __ATOMIC_RELAXED);
}

int asam_param_bf16_held(const asam_tensor *t) {
    return t && !t->data && (t->bf16 || t->conv_taps[0]);
}

static void *aligned_zeroed(size_t bytes);

/* Values in each of a weight's per-tap copies (conv_amx.c's tiles: 9 x O x C, both padded to
 * a multiple of 32). */
static int64_t conv_taps_numel(const asam_tensor *t) {
    int64_t O = t->ndim == 4 ? t->shape[0] : 0, C = t->ndim == 4 ? t->shape[1] : 0;
    return 9 * ((O + 31) / 32 * 32) * ((C + 31) / 32 * 32);
}

void asam_param_set_conv_taps(asam_tensor *t, int adjoint, uint16_t *taps) {
    t->conv_taps[adjoint] = taps;
    count(&param_bf16_bytes, 2 * conv_taps_numel(t));
}

/* Values in a linear weight's packed copy (linear_amx.c: both dimensions padded to 32). */
static int64_t linear_tiles_numel(const asam_tensor *t) {
    return t->ndim == 2 ? asam_linear_amx_packed_numel(t->shape[0], t->shape[1]) : 0;
}

void asam_param_set_linear_tiles(asam_tensor *t, uint16_t *tiles) {
    t->linear_tiles = tiles;
    count(&param_bf16_bytes, 2 * linear_tiles_numel(t));
}

/* The repacked copies (per tap, linear tiles) go with the bf16 copy they were made from. */
static void drop_packed_copies(asam_tensor *t) {
    for (int i = 0; i < 2; i++)
        if (t->conv_taps[i]) {
            free(t->conv_taps[i]);
            t->conv_taps[i] = NULL;
            count(&param_bf16_bytes, -2 * conv_taps_numel(t));
        }
    if (t->linear_tiles) {
        free(t->linear_tiles);
        t->linear_tiles = NULL;
        count(&param_bf16_bytes, -2 * linear_tiles_numel(t));
    }
}

void asam_bf16_widen(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

/* A held weight's bf16 buffer of n values (64-byte aligned, its size rounded up to that). */
static uint16_t *bf16_alloc(int64_t n) {
    size_t bytes = ((size_t)n * sizeof(uint16_t) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

void asam_param_drop_bf16(asam_tensor *t) {
    uint16_t *h = NULL;
#pragma omp critical(asam_weight_hold)
    {
        if (t->bf16 && t->conv_taps[0]) h = t->bf16, t->bf16 = NULL;
    }
    if (!h) return;
    free(h);
    count(&param_bf16_bytes, -2 * t->numel);
}

const uint16_t *asam_param_bf16(const asam_tensor *ct) {
    /* the rebuilt copy is a cache of values t already holds: logically const */
    asam_tensor *t = (asam_tensor *)ct;
    if (!t) return NULL;
    const uint16_t *h = __atomic_load_n(&t->bf16, __ATOMIC_ACQUIRE);
    /* only the packed tiles: rebuild the plain copy once, for every later caller (the same lock
     * as the conversions, so it is made once even when ops run on several threads) */
    if (h || t->data || !t->conv_taps[0]) return h;
#pragma omp critical(asam_weight_hold)
    {
        h = t->bf16;
        if (!h) {
            uint16_t *b = bf16_alloc(t->numel);
            if (b) {
                asam_conv_amx_unpack(t, b);
                count(&param_bf16_bytes, 2 * t->numel);
                __atomic_store_n(&t->bf16, b, __ATOMIC_RELEASE);
            }
            h = b;
        }
    }
    return h;
}

/* A held weight that becomes trainable gets an fp32 master copy again, made from its bf16
 * values (its original fp32 values were freed when it was converted). */
static int unhold(asam_tensor *t) {
    if (!asam_param_bf16(t)) return -1;
    float *d = aligned_zeroed((size_t)t->numel * sizeof(float));
    if (!d) return -1;
    asam_bf16_widen(t->bf16, d, t->numel);
    free(t->bf16);
    t->bf16 = NULL;
    drop_packed_copies(t);
    t->data = d;
    count(&param_bf16_bytes, -2 * t->numel);
    count(&param_f32_bytes, 4 * t->numel);
    return 0;
}

int asam_param_hold_bf16(asam_tensor *t) {
    if (!t || !t->persistent || t->bf16 || !t->data) return -1;
    uint16_t *h = bf16_alloc(t->numel);
    if (!h) return -1;
    int64_t rows = t->ndim ? t->shape[0] : 1, cols = rows ? t->numel / rows : 0;
    asam_bf16_convert(t->data, rows, cols, cols, h);
    free(t->data);
    t->data = NULL;
    t->bf16 = h;
    count(&param_f32_bytes, -4 * t->numel);
    count(&param_bf16_bytes, 2 * t->numel);
    return 0;
}

void asam_set_requires_grad(asam_tensor *t, int on) {
    if (!t) return;
    if (on && asam_param_bf16_held(t) && unhold(t))
        fprintf(stderr, "asam: out of memory restoring the fp32 copy of a bf16 weight\n");
    t->requires_grad = on != 0;
}

static void *aligned_zeroed(size_t bytes) {
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) memset(p, 0, n ? n : 64);
    return p;
}

asam_tensor *asam_param_new(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > ASAM_MAX_DIMS) return NULL;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > (INT64_C(1) << 40) / shape[i])) return NULL;
        n *= shape[i];
    }
    asam_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    t->persistent = 1;
    t->data = aligned_zeroed((size_t)n * sizeof(float));
    if (!t->data) {
        free(t);
        return NULL;
    }
    count(&param_f32_bytes, 4 * n);
    return t;
}

void asam_param_free(asam_tensor *t) {
    if (!t) return;
    if (t->persistent) {
        if (t->data) count(&param_f32_bytes, -4 * t->numel);
        if (t->bf16) count(&param_bf16_bytes, -2 * t->numel);
        drop_packed_copies(t);
        free(t->data);
        free(t->bf16);
        free(t->grad);
        free(t);
    }
}

void asam_param_zero_grad(asam_tensor *t) {
    if (!t) return;
    if (t->grad)
        memset(t->grad, 0, (size_t)t->numel * sizeof(float));
    else if (t->persistent)
        t->grad = aligned_zeroed((size_t)t->numel * sizeof(float));
}

int asam_same_shape(const asam_tensor *a, const asam_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

void asam_shape_str(const asam_tensor *t, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "(");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, ")");
}
