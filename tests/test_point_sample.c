/* asam_point_sample: hand-computed values (grid_sample align_corners=False, zero padding) and a
 * finite-difference gradient check. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

typedef struct {
    const float *coords;
    int64_t P;
} ps_user;

static asam_tensor *ps_fn(asam_ctx *ctx, asam_tensor **in, void *user) {
    ps_user *u = user;
    return asam_point_sample(ctx, in[0], u->coords, u->P);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new(0);
    /* 2x3 map, values 0..5: x = [[0,1,2],[3,4,5]] */
    float xv[6] = {0, 1, 2, 3, 4, 5};
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 1, 2, 3), xv);
    /* pixel centres: (j + 0.5) / W, (i + 0.5) / H hit the values exactly */
    float c[2 * 5] = {0.5f / 3, 0.25f,  /* (0,0) -> 0 */
                      2.5f / 3, 0.75f,  /* (1,2) -> 5 */
                      0.5f,     0.5f,   /* ix = 1, iy = 0.5 -> (1 + 4) / 2 = 2.5 */
                      0.0f,     0.25f,  /* ix = -0.5: half of pixel 0 with zero padding -> 0 */
                      1.0f,     0.75f}; /* ix = 2.5, iy = 1: half of 5 -> 2.5 */
    asam_tensor *o = asam_point_sample(ctx, x, c, 5);
    CHECK(o && o->ndim == 3 && o->shape[2] == 5, "shape");
    const float want[5] = {0, 5, 2.5f, 0, 2.5f};
    for (int i = 0; o && i < 5; i++)
        CHECK(fabsf(o->data[i] - want[i]) < 1e-6f, "point %d: %g != %g", i, o->data[i], want[i]);
    if (o) printf("ok   point_sample values\n");

    /* gradient check: N=2, C=3, 5x7 map, 9 points incl. some outside */
    asam_tensor *xin = asam_new(ctx, ASAM_SHAPE(2, 3, 5, 7));
    gc_fill(xin, 7, 1.0f);
    float coords[2 * 9 * 2];
    uint64_t s = 99;
    for (int i = 0; i < 2 * 9 * 2; i++) coords[i] = 0.6f * gc_rand(&s) + 0.5f; /* [-0.1, 1.1) */
    ps_user u = {coords, 9};
    int check = 1;
    double err = gradcheck(ctx, "point_sample grad", ps_fn, &xin, 1, &check, &u, 1e-2f, 1000, 1e-3);
    CHECK(err <= 1e-3, "gradient error %g", err);

    /* bad input */
    asam_tensor *bad = asam_new(ctx, ASAM_SHAPE(3, 4));
    CHECK(asam_point_sample(ctx, bad, c, 1) == NULL && !asam_ctx_ok(ctx), "2-D input rejected");
    asam_ctx_free(ctx);
    return test_finish("test_point_sample");
}
