/* Internals shared by the engine's op files: tape nodes, the ctx layout and the helpers every
 * op uses to create outputs, record itself and reach gradient buffers. */
#ifndef ASAM_ENGINE_INTERNAL_H
#define ASAM_ENGINE_INTERNAL_H

#include "asam/engine.h"

#include <stdbool.h>

#define ASAM_NODE_MAX_IN 4

typedef void (*asam_backward_fn)(asam_ctx *ctx, asam_node *node);

/* One recorded op. Backward reads out->grad and accumulates into in[i]->grad through
 * asam_grad_buf(), which returns NULL for inputs that need no gradient. */
struct asam_node {
    asam_backward_fn backward;
    asam_node *prev; /* previous node on the tape */
    const char *op;  /* op name, for messages */
    asam_tensor *out;
    asam_tensor *in[ASAM_NODE_MAX_IN];
    int n_in;
    int64_t ip[8]; /* small integer parameters (dims, strides, ...) */
    float fp[4];   /* small float parameters (eps, scale, ...) */
    void *saved;   /* op-specific data kept for backward (arena memory) */
};

struct asam_ctx {
    uint8_t *base;        /* reserved virtual region */
    size_t reserved;      /* its size */
    size_t top;           /* bump pointer (offset) */
    size_t peak;          /* high-water mark of top */
    size_t touched;       /* highest offset possibly backed by pages */
    asam_node *tape_tail; /* last recorded node */
    bool grad_enabled;
    bool checkpoint_off; /* asam_ctx_set_checkpointing(ctx, 0) */
    size_t ckpt_floor;   /* inside a checkpoint recompute: arena offset of its mark */
    uint64_t n_passes;   /* backward passes started */
    uint64_t grad_stamp; /* the running pass (0: none): asam_grad_buf stamps what it reaches */
    char error[512];     /* first error, "" when none */
};

/* Allocate an op output of the given shape (uninitialised). NULL on failure (error set). */
asam_tensor *asam_op_out(asam_ctx *ctx, int ndim, const int64_t *shape);
/* The output of a resize of x's last two axes to OH x OW (checked: at least 2 dims, positive
 * sizes; errors name op); *H, *W receive the input's sizes. NULL after asam_ctx_fail. */
asam_tensor *asam_resize_out(asam_ctx *ctx, const char *op, asam_tensor *x, int64_t OH, int64_t OW,
                             int64_t *H, int64_t *W);
/* True when an op on these inputs must be recorded. NULL entries are ignored. */
bool asam_needs_record(const asam_ctx *ctx, int n, asam_tensor *const *in);
/* Record a node producing out from in[0..n) (n <= ASAM_NODE_MAX_IN) if needed; returns it, or
 * NULL when nothing needs a gradient (then the op skips saving anything). */
asam_node *asam_record(asam_ctx *ctx, const char *op, asam_backward_fn fn, asam_tensor *out, int n,
                       asam_tensor *const *in);
/* The gradient buffer of t (allocated zeroed on first use), or NULL if t needs no gradient. */
float *asam_grad_buf(asam_ctx *ctx, asam_tensor *t);
/* The same for an op that writes every element of it: a buffer allocated now is not zeroed and
 * *fresh is 1 (the op stores instead of adding); an existing one gives *fresh = 0. */
float *asam_grad_buf_fresh(asam_ctx *ctx, asam_tensor *t, int *fresh);
/* When t needs a gradient and has no buffer yet, make buf (a gradient of t's size that nothing
 * else will write: a view's, whose consumers have all run) its buffer and return 1; else 0 (the
 * caller adds buf into asam_grad_buf). A reshape's backward then costs nothing. */
int asam_grad_alias(asam_ctx *ctx, asam_tensor *t, float *buf);
/* Shape check helpers: record an error naming the op and return false. */
bool asam_check(asam_ctx *ctx, bool cond, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Convert persistent t's fp32 data to a held bf16 copy (t->bf16) and free the fp32 copy
 * (t->data = NULL). 0, or -1 when out of memory (t unchanged). See backend.c. */
int asam_param_hold_bf16(asam_tensor *t);
/* Attach a held weight's per-tap copy for the AMX convolution (conv_amx.c; freed with t->bf16,
 * counted with the bf16 bytes). */
void asam_param_set_conv_taps(asam_tensor *t, int adjoint, uint16_t *taps);
/* Free held t's bf16 copy when its forward conv taps (conv_amx.c) keep its values; nothing
 * otherwise. */
void asam_param_drop_bf16(asam_tensor *t);
/* Hand t (a 2-D weight held in bf16) its packed linear copy (asam_tensor.linear_tiles). */
void asam_param_set_linear_tiles(asam_tensor *t, uint16_t *tiles);
/* dst[i] = the fp32 value of bf16 src[i] (exact), i < n. */
void asam_bf16_widen(const uint16_t *src, float *dst, int64_t n);
int64_t asam_numel_of(int ndim, const int64_t *shape);
int asam_norm_dim(int dim, int ndim); /* negative -> from the end; -1 if out of range */

#endif
