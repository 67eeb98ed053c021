/* Shape ops (reshape / slice0 views, permute, transpose, concat, slice, pad, contiguous_copy)
 * and resizing (nearest, bilinear): forward against hand values and naive loops, backward
 * against finite differences. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static asam_tensor *rnd(asam_ctx *ctx, int nd, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, nd, shape);
    gc_fill(t, seed, 1.0f);
    return t;
}

static asam_tensor *iota(asam_ctx *ctx, int nd, const int64_t *shape) {
    asam_tensor *t = asam_new(ctx, nd, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)i;
    return t;
}

static int64_t flat(int nd, const int64_t *shape, const int64_t *idx) {
    int64_t f = 0;
    for (int i = 0; i < nd; i++) f = f * shape[i] + idx[i];
    return f;
}

static void unravel(int nd, const int64_t *shape, int64_t f, int64_t *idx) {
    for (int i = nd - 1; i >= 0; i--) {
        idx[i] = f % shape[i];
        f /= shape[i];
    }
}

/* ---- views ----------------------------------------------------------------------------------- */

static asam_tensor *f_view_chain(asam_ctx *ctx, asam_tensor **in, void *u) {
    /* view of a view, then an op on it */
    asam_tensor *r = asam_reshape(ctx, in[0], ASAM_SHAPE(6, 4));
    asam_tensor *s = asam_slice0(ctx, r, 1, 5);
    asam_tensor *t = asam_reshape(ctx, s, ASAM_SHAPE(2, 2, 4));
    return asam_mul(ctx, t, t);
}
static asam_tensor *f_view_twice(asam_ctx *ctx, asam_tensor **in, void *u) {
    /* two views of the same tensor both reaching it */
    asam_tensor *a = asam_slice0(ctx, in[0], 0, 2);
    asam_tensor *b = asam_slice0(ctx, in[0], 1, 3);
    return asam_mul(ctx, a, b);
}

static void test_views(asam_ctx *ctx) {
    asam_tensor *x = iota(ctx, ASAM_SHAPE(2, 3, 4));
    asam_tensor *r = asam_reshape(ctx, x, ASAM_SHAPE(-1, 6));
    CHECK(r && r->ndim == 2 && r->shape[0] == 4 && r->shape[1] == 6, "reshape -1 shape");
    CHECK(r && r->data == x->data, "reshape shares data");
    CHECK(r && r->base == x, "reshape base");
    asam_tensor *s = asam_slice0(ctx, r, 1, 3);
    CHECK(s && s->shape[0] == 2 && s->data == x->data + 6, "slice0 view offset");
    CHECK(s && s->base == x, "view of view has the root as base");
    CHECK(asam_reshape(ctx, x, ASAM_SHAPE(5, 5)) == NULL, "reshape to wrong size fails");
    CHECK(asam_ctx_error(ctx) && strstr(asam_ctx_error(ctx), "reshape"), "error names reshape");
    asam_ctx_clear_error(ctx);
    CHECK(asam_reshape(ctx, x, ASAM_SHAPE(-1, -1)) == NULL, "two -1 fail");
    asam_ctx_clear_error(ctx);
    CHECK(asam_slice0(ctx, x, 1, 3) == NULL, "slice0 out of range fails");
    asam_ctx_clear_error(ctx);

    asam_tensor *in[1] = {rnd(ctx, ASAM_SHAPE(4, 3, 2), 1)};
    int check[1] = {1};
    gradcheck(ctx, "reshape/slice0/reshape chain", f_view_chain, in, 1, check, NULL, 1e-2f, 24,
              1e-3);
    asam_tensor *in2[1] = {rnd(ctx, ASAM_SHAPE(3, 5), 2)};
    gradcheck(ctx, "two overlapping slice0 views", f_view_twice, in2, 1, check, NULL, 1e-2f, 15,
              1e-3);
}

/* ---- permute / transpose --------------------------------------------------------------------- */

typedef struct {
    int perm[ASAM_MAX_DIMS];
} perm_user;

static asam_tensor *f_permute(asam_ctx *ctx, asam_tensor **in, void *u) {
    /* square first so the gradient depends on the values */
    asam_tensor *p = asam_permute(ctx, in[0], ((perm_user *)u)->perm);
    return asam_mul(ctx, p, p);
}
static asam_tensor *f_transpose(asam_ctx *ctx, asam_tensor **in, void *u) {
    int *d = u;
    return asam_mul(ctx, asam_transpose(ctx, in[0], d[0], d[1]), in[1]);
}

static void check_permute(asam_ctx *ctx, int nd, const int64_t *shape, const int *perm,
                          const char *what) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *x = rnd(ctx, nd, shape, 7);
    asam_tensor *o = asam_permute(ctx, x, perm);
    CHECK(o != NULL, "%s: %s", what, asam_ctx_error(ctx));
    if (o) {
        float *ref = malloc((size_t)o->numel * sizeof(float));
        for (int64_t f = 0; f < o->numel; f++) {
            int64_t oi[ASAM_MAX_DIMS], xi[ASAM_MAX_DIMS];
            unravel(nd, o->shape, f, oi);
            for (int i = 0; i < nd; i++) xi[perm[i] < 0 ? perm[i] + nd : perm[i]] = oi[i];
            ref[f] = x->data[flat(nd, x->shape, xi)];
        }
        CHECK_CLOSE(o->data, ref, (size_t)o->numel, 0, what);
        free(ref);
    }
    asam_ctx_release(ctx, m);
}

static void test_permute(asam_ctx *ctx) {
    asam_tensor *x = iota(ctx, ASAM_SHAPE(2, 3));
    asam_tensor *t = asam_transpose(ctx, x, 0, -1);
    CHECK(t->shape[0] == 3 && t->shape[1] == 2, "transpose shape");
    CHECK_CLOSE(t->data, ((float[]){0, 3, 1, 4, 2, 5}), 6, 0, "transpose (2,3) literal");

    check_permute(ctx, ASAM_SHAPE(2, 3, 4, 5), (int[]){2, 0, 3, 1}, "permute (2,0,3,1)");
    check_permute(ctx, ASAM_SHAPE(2, 3, 4, 5), (int[]){0, 2, 1, 3}, "permute (0,2,1,3) heads");
    check_permute(ctx, ASAM_SHAPE(2, 3, 4, 5), (int[]){-1, 1, -2, 0}, "permute negative dims");
    check_permute(ctx, ASAM_SHAPE(1, 24, 32, 48), (int[]){0, 3, 1, 2}, "permute NHWC->NCHW big");
    check_permute(ctx, ASAM_SHAPE(2, 4, 7, 3, 7, 5), (int[]){0, 1, 3, 2, 4, 5},
                  "permute 6-D window partition");
    CHECK(asam_permute(ctx, x, (int[]){0, 0}) == NULL, "repeated permute dim fails");
    asam_ctx_clear_error(ctx);

    int check[1] = {1};
    perm_user u = {{2, 0, 3, 1}};
    asam_tensor *in[1] = {rnd(ctx, ASAM_SHAPE(2, 3, 4, 5), 3)};
    gradcheck(ctx, "permute (2,0,3,1)", f_permute, in, 1, check, &u, 1e-2f, 40, 1e-3);
    perm_user u2 = {{0, 3, 1, 2}};
    asam_tensor *big[1] = {rnd(ctx, ASAM_SHAPE(1, 24, 32, 48), 4)};
    gradcheck(ctx, "permute NHWC->NCHW (36864 elements)", f_permute, big, 1, check, &u2, 1e-2f, 30,
              1e-3);
    int dims[2] = {-1, -3};
    asam_tensor *in2[2] = {rnd(ctx, ASAM_SHAPE(3, 4, 5), 5), rnd(ctx, ASAM_SHAPE(5, 4, 3), 6)};
    int check2[2] = {1, 1};
    gradcheck(ctx, "transpose(-1, -3)", f_transpose, in2, 2, check2, dims, 1e-2f, 30, 1e-3);
}

/* ---- concat / slice / pad / copy ------------------------------------------------------------- */

typedef struct {
    int n, dim;
} cat_user;

static asam_tensor *f_concat(asam_ctx *ctx, asam_tensor **in, void *u) {
    cat_user *c = u;
    asam_tensor *o = asam_concat(ctx, in, c->n, c->dim);
    return asam_mul(ctx, o, o);
}

typedef struct {
    int dim;
    int64_t start, end;
} slice_user;

static asam_tensor *f_slice(asam_ctx *ctx, asam_tensor **in, void *u) {
    slice_user *s = u;
    asam_tensor *o = asam_slice(ctx, in[0], s->dim, s->start, s->end);
    return asam_mul(ctx, o, o);
}

static asam_tensor *f_pad(asam_ctx *ctx, asam_tensor **in, void *u) {
    asam_tensor *o = asam_pad(ctx, in[0], u, 0.5f);
    return asam_mul(ctx, o, o);
}

static asam_tensor *f_copy(asam_ctx *ctx, asam_tensor **in, void *u) {
    asam_tensor *o = asam_contiguous_copy(ctx, in[0]);
    return asam_mul(ctx, o, o);
}

static void test_copies(asam_ctx *ctx) {
    /* concat literals */
    asam_tensor *a = asam_from_data(ctx, ASAM_SHAPE(2, 2), (float[]){1, 2, 3, 4});
    asam_tensor *b = asam_from_data(ctx, ASAM_SHAPE(2, 1), (float[]){5, 6});
    asam_tensor *o = asam_concat(ctx, (asam_tensor *[]){a, b}, 2, -1);
    CHECK(o && o->shape[0] == 2 && o->shape[1] == 3, "concat shape");
    CHECK_CLOSE(o->data, ((float[]){1, 2, 5, 3, 4, 6}), 6, 0, "concat dim -1 literal");
    o = asam_concat(ctx, (asam_tensor *[]){a, a, a}, 3, 0);
    CHECK_CLOSE(o->data, ((float[]){1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}), 12, 0,
                "concat 3 along dim 0");
    CHECK(asam_concat(ctx, (asam_tensor *[]){a, b}, 2, 0) == NULL, "concat mismatch fails");
    asam_ctx_clear_error(ctx);

    /* many inputs (more than a node holds) */
    asam_tensor *parts[7];
    for (int k = 0; k < 7; k++) parts[k] = asam_full(ctx, ASAM_SHAPE(1, 2), (float)k);
    o = asam_concat(ctx, parts, 7, 0);
    float ref7[14];
    for (int k = 0; k < 14; k++) ref7[k] = (float)(k / 2);
    CHECK(o && o->shape[0] == 7, "concat of 7 shape");
    CHECK_CLOSE(o->data, ref7, 14, 0, "concat of 7 inputs");

    /* slice literals */
    asam_tensor *x = iota(ctx, ASAM_SHAPE(2, 3, 4));
    o = asam_slice(ctx, x, 1, 1, 3);
    CHECK_CLOSE(o->data, ((float[]){4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23}), 16,
                0, "slice dim 1 [1,3)");
    o = asam_slice(ctx, x, -1, -2, 4);
    CHECK_CLOSE(o->data, ((float[]){2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23}), 12, 0,
                "slice dim -1 [-2,4)");
    CHECK(asam_slice(ctx, x, 1, 2, 5) == NULL, "slice out of range fails");
    asam_ctx_clear_error(ctx);

    /* pad literal: (1,2) padded by (0,0),(1,2) with 9 */
    asam_tensor *p = asam_from_data(ctx, ASAM_SHAPE(1, 2), (float[]){1, 2});
    o = asam_pad(ctx, p, (int64_t[]){1, 0, 1, 2}, 9);
    CHECK(o && o->shape[0] == 2 && o->shape[1] == 5, "pad shape");
    CHECK_CLOSE(o->data, ((float[]){9, 9, 9, 9, 9, 9, 1, 2, 9, 9}), 10, 0, "pad literal");
    CHECK(asam_pad(ctx, p, (int64_t[]){0, 0, -1, 0}, 0) == NULL, "negative pad fails");
    asam_ctx_clear_error(ctx);

    o = asam_contiguous_copy(ctx, x);
    CHECK(o && o->data != x->data, "copy has its own data");
    CHECK_CLOSE(o->data, x->data, 24, 0, "contiguous_copy");

    /* gradients */
    int c1[1] = {1};
    asam_tensor *ci[3] = {rnd(ctx, ASAM_SHAPE(2, 3, 4), 1), rnd(ctx, ASAM_SHAPE(2, 1, 4), 2),
                          rnd(ctx, ASAM_SHAPE(2, 2, 4), 3)};
    int c3[3] = {1, 1, 1}, c3b[3] = {0, 1, 0};
    cat_user cu = {3, -2};
    gradcheck(ctx, "concat 3 dim -2", f_concat, ci, 3, c3, &cu, 1e-2f, 24, 1e-3);
    gradcheck(ctx, "concat 3 dim -2 (middle only)", f_concat, ci, 3, c3b, &cu, 1e-2f, 24, 1e-3);
    asam_tensor *ci6[6];
    int c6[6] = {1, 1, 1, 1, 1, 1};
    for (int k = 0; k < 6; k++) ci6[k] = rnd(ctx, ASAM_SHAPE(k + 1, 3), 10 + k);
    cat_user cu6 = {6, 0};
    gradcheck(ctx, "concat 6 dim 0", f_concat, ci6, 6, c6, &cu6, 1e-2f, 24, 1e-3);

    asam_tensor *si[1] = {rnd(ctx, ASAM_SHAPE(3, 4, 5), 4)};
    slice_user su = {1, 1, 3}, su2 = {-1, -3, -1};
    gradcheck(ctx, "slice dim 1", f_slice, si, 1, c1, &su, 1e-2f, 60, 1e-3);
    gradcheck(ctx, "slice dim -1 negative range", f_slice, si, 1, c1, &su2, 1e-2f, 60, 1e-3);
    int64_t pads[6] = {1, 0, 0, 2, 3, 1};
    gradcheck(ctx, "pad", f_pad, si, 1, c1, pads, 1e-2f, 60, 1e-3);
    gradcheck(ctx, "contiguous_copy", f_copy, si, 1, c1, NULL, 1e-2f, 60, 1e-3);
    /* big pad (SAM's window padding 64 -> 70) through the parallel path */
    asam_tensor *bp[1] = {rnd(ctx, ASAM_SHAPE(1, 64, 64, 16), 5)};
    int64_t wpads[8] = {0, 0, 0, 6, 0, 6, 0, 0};
    gradcheck(ctx, "pad (1,64,64,16) -> (1,70,70,16)", f_pad, bp, 1, c1, wpads, 1e-2f, 30, 1e-3);
}

/* ---- resize ---------------------------------------------------------------------------------- */

typedef struct {
    int bilinear;
    int64_t oh, ow;
} rs_user;

static asam_tensor *f_resize(asam_ctx *ctx, asam_tensor **in, void *u) {
    rs_user *r = u;
    asam_tensor *o = r->bilinear ? asam_resize_bilinear(ctx, in[0], r->oh, r->ow)
                                 : asam_resize_nearest(ctx, in[0], r->oh, r->ow);
    return asam_mul(ctx, o, o);
}

/* Reference with torch's float index rules, values in double. */
static void ref_resize(const asam_tensor *x, int bilinear, int64_t OH, int64_t OW, float *ref) {
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1], P = x->numel / (H * W);
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                const float *xp = x->data + p * H * W;
                double v;
                if (!bilinear) {
                    int64_t si = (int64_t)floorf((float)i * ((float)H / (float)OH));
                    int64_t sj = (int64_t)floorf((float)j * ((float)W / (float)OW));
                    v = xp[(si < H ? si : H - 1) * W + (sj < W ? sj : W - 1)];
                } else {
                    float fy = (float)H / (float)OH * ((float)i + 0.5f) - 0.5f;
                    float fx = (float)W / (float)OW * ((float)j + 0.5f) - 0.5f;
                    fy = fy < 0 ? 0 : fy;
                    fx = fx < 0 ? 0 : fx;
                    if (H == OH) fy = (float)i;
                    if (W == OW) fx = (float)j;
                    int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
                    int64_t y1 = y0 < H - 1 ? y0 + 1 : y0, x1 = x0 < W - 1 ? x0 + 1 : x0;
                    double ly = fy - y0, lx = fx - x0;
                    v = (1 - ly) * ((1 - lx) * xp[y0 * W + x0] + lx * xp[y0 * W + x1]) +
                        ly * ((1 - lx) * xp[y1 * W + x0] + lx * xp[y1 * W + x1]);
                }
                ref[(p * OH + i) * OW + j] = (float)v;
            }
}

static void test_resize(asam_ctx *ctx) {
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 1, 2, 2), (float[]){1, 2, 3, 4});
    asam_tensor *o = asam_resize_bilinear(ctx, x, 4, 4);
    CHECK(o && o->shape[2] == 4 && o->shape[3] == 4, "bilinear shape");
    CHECK_CLOSE(o->data,
                ((float[]){1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f,
                           3, 3.25f, 3.75f, 4}),
                16, 1e-7, "bilinear 2x2 -> 4x4 (torch values)");
    asam_tensor *r = asam_from_data(ctx, ASAM_SHAPE(1, 4), (float[]){1, 3, 5, 9});
    o = asam_resize_bilinear(ctx, r, 1, 2);
    CHECK_CLOSE(o->data, ((float[]){2, 7}), 2, 1e-7, "bilinear 4 -> 2 (no antialias)");
    asam_tensor *n = asam_from_data(ctx, ASAM_SHAPE(1, 3), (float[]){10, 20, 30});
    o = asam_resize_nearest(ctx, n, 1, 5);
    CHECK_CLOSE(o->data, ((float[]){10, 10, 20, 20, 30}), 5, 0, "nearest 3 -> 5");
    asam_tensor *n5 = asam_from_data(ctx, ASAM_SHAPE(1, 5), (float[]){1, 2, 3, 4, 5});
    o = asam_resize_nearest(ctx, n5, 1, 3);
    CHECK_CLOSE(o->data, ((float[]){1, 2, 4}), 3, 0, "nearest 5 -> 3");
    CHECK(asam_resize_nearest(ctx, n5, 0, 3) == NULL, "resize to 0 fails");
    asam_ctx_clear_error(ctx);

    const int64_t sizes[][4] = {{7, 5, 16, 11},     {16, 11, 7, 5},  {6, 6, 6, 13},
                                {64, 64, 256, 256}, {9, 10, 30, 30}, {1, 3, 4, 6}};
    for (int k = 0; k < 6; k++)
        for (int bil = 0; bil < 2; bil++) {
            asam_mark m = asam_ctx_mark(ctx);
            asam_tensor *t = rnd(ctx, ASAM_SHAPE(2, 3, sizes[k][0], sizes[k][1]), 30 + k);
            o = bil ? asam_resize_bilinear(ctx, t, sizes[k][2], sizes[k][3])
                    : asam_resize_nearest(ctx, t, sizes[k][2], sizes[k][3]);
            float *ref = malloc((size_t)o->numel * sizeof(float));
            ref_resize(t, bil, sizes[k][2], sizes[k][3], ref);
            char what[80];
            snprintf(what, sizeof what, "%s %lldx%lld -> %lldx%lld", bil ? "bilinear" : "nearest",
                     (long long)sizes[k][0], (long long)sizes[k][1], (long long)sizes[k][2],
                     (long long)sizes[k][3]);
            CHECK_CLOSE(o->data, ref, (size_t)o->numel, 1e-6, what);
            free(ref);
            asam_tensor *in[1] = {t};
            int c1[1] = {1};
            rs_user u = {bil, sizes[k][2], sizes[k][3]};
            gradcheck(ctx, what, f_resize, in, 1, c1, &u, 1e-2f, k == 3 ? 16 : 40, 1e-3);
            asam_ctx_release(ctx, m);
        }
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    if (!ctx) return 1;
    test_views(ctx);
    test_permute(ctx);
    test_copies(ctx);
    test_resize(ctx);
    CHECK(asam_ctx_ok(ctx), "ctx error: %s", asam_ctx_error(ctx));
    asam_ctx_free(ctx);
    return test_finish("test_ops_shape");
}
