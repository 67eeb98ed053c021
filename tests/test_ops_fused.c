/* Fused inference ops: asam_group_norm_silu is bit for bit silu(group_norm(x)) without
 * recording, records the two ops (gradients checked by finite differences) when recording. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static asam_tensor *f_gns(asam_ctx *ctx, asam_tensor **in, void *user) {
    return asam_group_norm_silu(ctx, in[0], 4, in[1], in[2], 1e-5f);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(2, 8, 33, 40));
    asam_tensor *w = asam_new(ctx, ASAM_SHAPE(8)), *b = asam_new(ctx, ASAM_SHAPE(8));
    gc_fill(x, 1, 3.0f);
    gc_fill(w, 2, 1.5f);
    gc_fill(b, 3, 1.0f);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *ref = asam_silu(ctx, asam_group_norm(ctx, x, 4, w, b, 1e-5f));
    asam_tensor *fused = asam_group_norm_silu(ctx, x, 4, w, b, 1e-5f);
    CHECK(ref && fused && !memcmp(ref->data, fused->data, (size_t)ref->numel * sizeof(float)),
          "fused group_norm+silu differs from the two ops");
    if (ref && fused) printf("ok   group_norm_silu == silu(group_norm) bit for bit (inference)\n");
    asam_tensor *nb = asam_group_norm_silu(ctx, x, 4, NULL, NULL, 1e-5f);
    asam_tensor *nr = asam_silu(ctx, asam_group_norm(ctx, x, 4, NULL, NULL, 1e-5f));
    CHECK(nb && nr && !memcmp(nb->data, nr->data, (size_t)nb->numel * sizeof(float)),
          "fused, no affine: differs");
    CHECK(!asam_group_norm_silu(ctx, x, 3, w, b, 1e-5f), "3 groups of 8 channels accepted");
    asam_ctx_clear_error(ctx);
    asam_ctx_set_grad(ctx, prev);

    asam_tensor *sx = asam_new(ctx, ASAM_SHAPE(2, 8, 3, 5));
    gc_fill(sx, 4, 2.0f);
    asam_tensor *in[3] = {sx, w, b};
    int check[3] = {1, 1, 1};
    double err = gradcheck(ctx, "group_norm_silu", f_gns, in, 3, check, NULL, 1e-2f, 400, 1e-3);
    CHECK(err <= 1e-3, "group_norm_silu gradients: %g", err);
    asam_ctx_free(ctx);
    return test_finish("test_ops_fused");
}
