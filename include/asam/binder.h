/* The weight binder: model code asks for each weight by its checkpoint name and shape, and
 * gets a persistent tensor holding it (lookup, shape check, any dtype converted to f32), as
 * stable-diffusion.cpp binds its blocks by name. Every problem is one error line naming the
 * file and the tensor; after the first one the binder stays failed and binds nothing more, so
 * a loader can bind a whole model and check `failed` once at the end.
 *
 * Variants: a prefix ("model.diffusion_model." of a CompVis .ckpt), a name map (diffusers
 * files name the same weight differently), optional weights (absent without error), shapes
 * compared up to trailing 1s ((C, C) vs (C, C, 1, 1)), and random initialisation when there is
 * no file (tests and the tiny demo models). */
#ifndef ASAM_BINDER_H
#define ASAM_BINDER_H

#include <stddef.h>
#include <stdint.h>

#include "asam/checkpoint.h"
#include "asam/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct asam_binder asam_binder;
struct asam_binder {
    const asam_checkpoint *ck; /* NULL: no file, `init` fills every tensor */
    const char *prefix;        /* prepended to each name to make the key ("" none) */
    const char *model;         /* what the file should hold, for errors ("SAM"), or NULL */
    int loose_shape;           /* shapes equal after dropping trailing 1s are accepted */
    /* Every 2-D and 4-D tensor read from the file is a frozen GEMM weight: under bf16 it is held
     * as soon as it is read (asam_weight_hold_now). For frozen models only: a trainer that
     * later sets requires_grad would start from the bf16-rounded values. */
    int hold_weights;
    /* With hold_weights: which tensors are GEMM weights (1) by name and rank; NULL: every 2-D
     * and 4-D one. For a model whose other 2-D / 4-D tensors (position tables, say) are read
     * as fp32 by its code. */
    int (*is_gemm_weight)(const char *name, int ndim);
    /* Optional name variant: the key a name is stored under. Returns 0 with key written, or -1
     * when no rule applies. When set, prefix is not used. */
    int (*map)(const asam_binder *B, const char *name, char *key, size_t n);
    /* Random initialisation when ck is NULL (called once per tensor, in binding order). */
    void (*init)(void *user, const char *name, asam_tensor *p);
    void *user; /* for map and init */
    /* Every tensor bound, in order, each with its name (p->name points at names[i]); owned
     * by the binder until the caller takes the arrays (then sets params, names NULL, n 0). */
    asam_tensor **params;
    char **names;
    size_t n, cap;
    int failed;
};

/* A binder over ck (NULL: random tensors through init) with a key prefix (NULL: none). */
void asam_binder_init(asam_binder *B, const asam_checkpoint *ck, const char *prefix);
const char *asam_binder_path(const asam_binder *B); /* the file, for messages */
/* The stored tensor for a name (NULL when absent, no error); key (n bytes) receives the key
 * looked up. */
const asam_ckpt_tensor *asam_binder_find(const asam_binder *B, const char *name, char *key,
                                         size_t n);
/* Bind one weight of the given shape (a -1 size: any, taken from the file); NULL (with the
 * error recorded, B->failed set) when it is missing, shaped otherwise, unreadable, or the binder
 * failed before. */
asam_tensor *asam_bind(asam_binder *B, const char *name, int ndim, const int64_t *shape);
/* Same, but an absent weight returns NULL without an error (optional weights). */
asam_tensor *asam_bind_opt(asam_binder *B, const char *name, int ndim, const int64_t *shape);
/* printf-style name. */
asam_tensor *asam_bindf(asam_binder *B, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Frees every tensor still owned by the binder, and its arrays. */
void asam_binder_free(asam_binder *B);

#ifdef __cplusplus
}
#endif
#endif
