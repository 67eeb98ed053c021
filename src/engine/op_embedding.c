/* asam_embedding: rows of a weight table picked by ids; the gradient is scatter-added back. */
#include "engine/engine_internal.h"

#include <string.h>

static void embedding_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *w = n->in[0];
    float *dw = asam_grad_buf(ctx, w);
    if (!dw) return;
    const int64_t *ids = n->saved;
    int64_t cnt = n->ip[0], D = w->shape[1];
    const float *dy = n->out->grad;
    /* Serial: ids may repeat, and the tables here (77 tokens) are small. */
    for (int64_t i = 0; i < cnt; i++) {
        float *row = dw + ids[i] * D;
        for (int64_t d = 0; d < D; d++) row[d] += dy[i * D + d];
    }
}

asam_tensor *asam_embedding(asam_ctx *ctx, asam_tensor *weight, const int64_t *ids, int64_t n) {
    const char *op = "embedding";
    if (!weight) return NULL;
    if (!asam_check(ctx, weight->ndim == 2, op, "weight must be (V, D), got %d dims", weight->ndim))
        return NULL;
    if (!asam_check(ctx, n >= 0 && (ids || n == 0), op, "no ids")) return NULL;
    int64_t V = weight->shape[0], D = weight->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (!asam_check(ctx, ids[i] >= 0 && ids[i] < V, op, "id %lld at %lld outside [0, %lld)",
                        (long long)ids[i], (long long)i, (long long)V))
            return NULL;
    asam_tensor *out = asam_op_out(ctx, ASAM_SHAPE(n, D));
    if (!out) return NULL;
    for (int64_t i = 0; i < n; i++)
        memcpy(out->data + i * D, weight->data + ids[i] * D, (size_t)D * sizeof(float));
    asam_node *node = asam_record(ctx, op, embedding_backward, out, 1, &weight);
    if (node) {
        int64_t *copy = asam_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int64_t));
        if (!copy) return NULL;
        if (n) memcpy(copy, ids, (size_t)n * sizeof(int64_t));
        node->saved = copy;
        node->ip[0] = n;
    }
    return out;
}
