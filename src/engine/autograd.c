/* The reverse-mode tape: recording, gradient buffers, backward, gradient checkpointing. */
#include "engine/engine_internal.h"

#include <stdlib.h>
#include <string.h>

bool asam_needs_record(const asam_ctx *ctx, int n, asam_tensor *const *in) {
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

asam_node *asam_record(asam_ctx *ctx, const char *op, asam_backward_fn fn, asam_tensor *out, int n,
                       asam_tensor *const *in) {
    if (!out || n > ASAM_NODE_MAX_IN || !asam_needs_record(ctx, n, in)) return NULL;
    asam_node *node = asam_ctx_alloc(ctx, sizeof *node);
    if (!node) return NULL;
    memset(node, 0, sizeof *node);
    node->backward = fn;
    node->op = op;
    node->out = out;
    node->n_in = n;
    for (int i = 0; i < n; i++) node->in[i] = in[i];
    node->prev = ctx->tape_tail;
    ctx->tape_tail = node;
    out->node = node;
    out->requires_grad = 1;
    return node;
}

/* Inside a checkpoint recompute, a gradient buffer for a tensor from outside the segment would
 * be freed with the segment: such tensors must be passed as segment inputs. */
static int outside_segment(const asam_ctx *ctx, const asam_tensor *t) {
    return ctx->ckpt_floor && (const uint8_t *)t < ctx->base + ctx->ckpt_floor;
}

/* A new arena gradient buffer for t (zeroed when zero), NULL (ctx failed) when t lies outside
 * the running checkpoint segment or memory runs out. */
static float *new_grad_buf(asam_ctx *ctx, asam_tensor *t, int zero) {
    if (outside_segment(ctx, t)) {
        asam_ctx_fail(ctx, "checkpoint: a tensor from outside the segment needs a gradient; "
                           "pass it as a segment input");
        return NULL;
    }
    float *g = asam_ctx_alloc(ctx, (size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!g) return NULL;
    if (zero) memset(g, 0, (size_t)t->numel * sizeof(float));
    t->grad = g;
    return g;
}

float *asam_grad_buf_fresh(asam_ctx *ctx, asam_tensor *t, int *fresh) {
    *fresh = 0;
    if (!t || !t->requires_grad) return NULL;
    if (t->grad || t->persistent) return asam_grad_buf(ctx, t);
    t->grad_stamp = ctx->grad_stamp;
    float *g = new_grad_buf(ctx, t, 0);
    *fresh = g != NULL;
    return g;
}

int asam_grad_alias(asam_ctx *ctx, asam_tensor *t, float *buf) {
    if (!t || !t->requires_grad || t->grad || t->persistent || !buf || outside_segment(ctx, t))
        return 0;
    t->grad_stamp = ctx->grad_stamp;
    t->grad = buf;
    return 1;
}

float *asam_grad_buf(asam_ctx *ctx, asam_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    t->grad_stamp = ctx->grad_stamp; /* reached by the running backward pass */
    if (t->grad) return t->grad;
    if (t->persistent) {
        asam_param_zero_grad(t);
        if (!t->grad) asam_ctx_fail(ctx, "out of memory for a gradient");
        return t->grad;
    }
    return new_grad_buf(ctx, t, 1);
}

/* Run, from tail back to (excluding) stop, the nodes whose output received a gradient in this
 * backward pass (stamp): the ancestors of its output. A node of a sibling branch recorded
 * earlier, even one holding gradients from an earlier backward, is left alone (running it
 * again would add that gradient into shared inputs twice). Every backward function takes its
 * inputs' gradient buffers through asam_grad_buf, which stamps them. */
static int run_tape(asam_ctx *ctx, asam_node *tail, asam_node *stop, uint64_t stamp) {
    for (asam_node *n = tail; n && n != stop; n = n->prev) {
        if (n->out->grad && n->out->grad_stamp == stamp) n->backward(ctx, n);
        if (ctx->error[0]) return -1;
    }
    return 0;
}

static int seed_and_run(asam_ctx *ctx, asam_tensor *out, const float *grad_out, asam_node *stop) {
    if (!out) return -1;
    if (ctx->error[0]) return -1;
    if (!out->requires_grad) {
        asam_ctx_fail(ctx, "backward: the output does not depend on anything needing a gradient");
        return -1;
    }
    const uint64_t outer = ctx->grad_stamp; /* a checkpoint's recompute nests a pass */
    const uint64_t stamp = ctx->grad_stamp = ++ctx->n_passes;
    float *g = asam_grad_buf(ctx, out);
    int rc = g ? 0 : -1;
    for (int64_t i = 0; g && i < out->numel; i++) g[i] += grad_out ? grad_out[i] : 1.0f;
    if (!rc && out->node) rc = run_tape(ctx, out->node, stop, stamp); /* leaf: just the seed */
    ctx->grad_stamp = outer;
    return rc;
}

int asam_backward(asam_ctx *ctx, asam_tensor *loss) {
    if (!loss) return -1;
    if (loss->numel != 1) {
        asam_ctx_fail(ctx, "backward: loss must be a scalar, got %lld elements",
                      (long long)loss->numel);
        return -1;
    }
    return seed_and_run(ctx, loss, NULL, NULL);
}

int asam_backward_from(asam_ctx *ctx, asam_tensor *out, const float *grad_out) {
    return seed_and_run(ctx, out, grad_out, NULL);
}

/* ---- gradient checkpointing --------------------------------------------------------------- */

typedef struct {
    asam_segment_fn fn;
    void *user;
    int n;
    asam_tensor **inputs;
} checkpoint_saved;

static void checkpoint_backward(asam_ctx *ctx, asam_node *node) {
    checkpoint_saved *s = node->saved;
    /* Gradient buffers of the segment's inputs must exist below the recompute's mark. */
    for (int i = 0; i < s->n; i++)
        if (s->inputs[i]->requires_grad && !asam_grad_buf(ctx, s->inputs[i])) return;

    asam_mark m = asam_ctx_mark(ctx);
    size_t outer_floor = ctx->ckpt_floor;
    ctx->ckpt_floor = m.offset;
    int prev_grad = asam_ctx_set_grad(ctx, 1);

    asam_tensor **leaves = asam_ctx_alloc(ctx, (size_t)s->n * sizeof *leaves);
    for (int i = 0; leaves && i < s->n; i++) {
        leaves[i] = asam_detach(ctx, s->inputs[i]);
        if (leaves[i]) leaves[i]->requires_grad = s->inputs[i]->requires_grad;
    }
    asam_tensor *out = leaves ? s->fn(ctx, leaves, s->n, s->user) : NULL;
    if (out && out->numel != node->out->numel)
        asam_ctx_fail(ctx, "checkpoint: the segment's recomputed output changed shape");
    if (out && out->requires_grad && ctx->error[0] == 0)
        seed_and_run(ctx, out, node->out->grad, m.tape_tail);
    if (ctx->error[0] == 0)
        for (int i = 0; i < s->n; i++) {
            if (!leaves[i]->grad) continue;
            float *g = s->inputs[i]->grad;
            for (int64_t j = 0; j < leaves[i]->numel; j++) g[j] += leaves[i]->grad[j];
        }
    asam_ctx_set_grad(ctx, prev_grad);
    ctx->ckpt_floor = outer_floor;
    asam_ctx_release(ctx, m);
}

asam_tensor *asam_grad_checkpoint(asam_ctx *ctx, asam_segment_fn fn, asam_tensor *const *inputs,
                                  int n_inputs, void *user) {
    if (ctx->error[0]) return NULL;
    for (int i = 0; i < n_inputs; i++)
        if (!inputs[i]) return NULL;
    bool record = ctx->grad_enabled; /* parameters inside fn may need gradients */
    if (record && ctx->checkpoint_off) return fn(ctx, inputs, n_inputs, user);
    asam_mark m = asam_ctx_mark(ctx);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *out = fn(ctx, inputs, n_inputs, user);
    asam_ctx_set_grad(ctx, prev);
    if (!out) return NULL;
    out = asam_ctx_release_keep(ctx, m, out);
    if (!out || !record) return out;

    asam_node *node = asam_ctx_alloc(ctx, sizeof *node);
    checkpoint_saved *s = asam_ctx_alloc(ctx, sizeof *s);
    asam_tensor **ins = asam_ctx_alloc(ctx, (size_t)(n_inputs ? n_inputs : 1) * sizeof *ins);
    if (!node || !s || !ins) return NULL;
    memset(node, 0, sizeof *node);
    for (int i = 0; i < n_inputs; i++) ins[i] = inputs[i];
    *s = (checkpoint_saved){fn, user, n_inputs, ins};
    node->backward = checkpoint_backward;
    node->op = "checkpoint";
    node->out = out;
    node->saved = s;
    node->prev = ctx->tape_tail;
    ctx->tape_tail = node;
    out->node = node;
    out->requires_grad = 1;
    return out;
}
