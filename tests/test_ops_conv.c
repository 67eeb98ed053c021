/* asam_conv2d and asam_conv_transpose2d: forward against naive double loops, gradients to x, w
 * and b against finite differences; includes the pointwise, patchify and chunked paths. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

extern int64_t asam_conv_chunk_floats;        /* op_conv.c: column buffer cap (test hook) */
extern int64_t asam_conv_winograd_min_pixels; /* op_conv.c: Winograd from this size (hook) */
extern int64_t asam_wino_chunk_floats;        /* conv_winograd.c: tiles per chunk (hook) */

static asam_tensor *rand_tensor(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    gc_fill(t, seed, 1.0f);
    return t;
}

typedef struct {
    int stride, pad, bias;
} conv_opts;

static asam_tensor *f_conv(asam_ctx *ctx, asam_tensor **in, void *user) {
    conv_opts *o = user;
    return asam_conv2d(ctx, in[0], in[1], o->bias ? in[2] : NULL, o->stride, o->pad);
}

static asam_tensor *f_convt(asam_ctx *ctx, asam_tensor **in, void *user) {
    conv_opts *o = user;
    return asam_conv_transpose2d(ctx, in[0], in[1], o->bias ? in[2] : NULL, o->stride);
}

static void check_conv(asam_ctx *ctx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                       int64_t kh, int64_t kw, int s, int p, int bias, int grad) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *x = rand_tensor(ctx, ASAM_SHAPE(N, C, H, W), 11);
    asam_tensor *w = rand_tensor(ctx, ASAM_SHAPE(O, C, kh, kw), 12);
    /* bias 1: (O); 2: (N, O), a bias for each image */
    asam_tensor *b =
        bias == 2 ? rand_tensor(ctx, ASAM_SHAPE(N, O), 13) : rand_tensor(ctx, ASAM_SHAPE(O), 13);
    char name[128];
    snprintf(name, sizeof name, "conv2d x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) s%d p%d%s",
             (long long)N, (long long)C, (long long)H, (long long)W, (long long)O, (long long)C,
             (long long)kh, (long long)kw, s, p,
             bias == 2 ? " +b per image"
             : bias    ? " +b"
                       : "");
    asam_tensor *y = asam_conv2d(ctx, x, w, bias ? b : NULL, s, p);
    int64_t Ho = (H + 2 * p - kh) / s + 1, Wo = (W + 2 * p - kw) / s + 1;
    CHECK(y && y->shape[0] == N && y->shape[1] == O && y->shape[2] == Ho && y->shape[3] == Wo,
          "%s: shape (%s)", name, asam_ctx_error(ctx));
    if (!y) return;
    float *ref = malloc((size_t)y->numel * sizeof(float));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double acc = bias ? b->data[bias == 2 ? n * O + o : o] : 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t iy = oy * s - p + i, ix = ox * s - p + j;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)x->data[((n * C + c) * H + iy) * W + ix] *
                                       w->data[((o * C + c) * kh + i) * kw + j];
                            }
                    ref[((n * O + o) * Ho + oy) * Wo + ox] = (float)acc;
                }
    CHECK_CLOSE(y->data, ref, (size_t)y->numel, 1e-5, name);
    free(ref);
    if (grad) {
        asam_tensor *ins[3] = {x, w, b};
        int chk[3] = {1, 1, bias};
        conv_opts o = {s, p, bias};
        gradcheck(ctx, name, f_conv, ins, bias ? 3 : 2, chk, &o, 1e-2f, 150, 1e-3);
    }
    asam_ctx_release(ctx, m);
}

static void check_convt(asam_ctx *ctx, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O,
                        int64_t kh, int64_t kw, int s, int bias) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *x = rand_tensor(ctx, ASAM_SHAPE(N, C, H, W), 21);
    asam_tensor *w = rand_tensor(ctx, ASAM_SHAPE(C, O, kh, kw), 22);
    asam_tensor *b = rand_tensor(ctx, ASAM_SHAPE(O), 23);
    char name[128];
    snprintf(name, sizeof name,
             "conv_transpose2d x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) s%d%s", (long long)N,
             (long long)C, (long long)H, (long long)W, (long long)C, (long long)O, (long long)kh,
             (long long)kw, s, bias ? " +b" : "");
    asam_tensor *y = asam_conv_transpose2d(ctx, x, w, bias ? b : NULL, s);
    int64_t Ho = (H - 1) * s + kh, Wo = (W - 1) * s + kw;
    CHECK(y && y->shape[0] == N && y->shape[1] == O && y->shape[2] == Ho && y->shape[3] == Wo,
          "%s: shape (%s)", name, asam_ctx_error(ctx));
    if (!y) return;
    double *acc = calloc((size_t)y->numel, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t i = 0; i < Ho * Wo; i++)
                acc[(n * O + o) * Ho * Wo + i] = bias ? b->data[o] : 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t iy = 0; iy < H; iy++)
                for (int64_t ix = 0; ix < W; ix++)
                    for (int64_t o = 0; o < O; o++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++)
                                acc[((n * O + o) * Ho + iy * s + i) * Wo + ix * s + j] +=
                                    (double)x->data[((n * C + c) * H + iy) * W + ix] *
                                    w->data[((c * O + o) * kh + i) * kw + j];
    float *ref = malloc((size_t)y->numel * sizeof(float));
    for (int64_t i = 0; i < y->numel; i++) ref[i] = (float)acc[i];
    CHECK_CLOSE(y->data, ref, (size_t)y->numel, 1e-5, name);
    free(ref);
    free(acc);
    asam_tensor *ins[3] = {x, w, b};
    int chk[3] = {1, 1, bias};
    conv_opts o = {s, 0, bias};
    gradcheck(ctx, name, f_convt, ins, bias ? 3 : 2, chk, &o, 1e-2f, 150, 1e-3);
    asam_ctx_release(ctx, m);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    CHECK(ctx != NULL, "ctx");
    if (!ctx) return 1;
    check_conv(ctx, 2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1);      /* 3x3 same */
    check_conv(ctx, 2, 3, 7, 6, 4, 3, 3, 1, 0, 0, 1);      /* 3x3 valid, no bias */
    check_conv(ctx, 1, 3, 9, 8, 5, 3, 3, 2, 1, 1, 1);      /* 3x3 stride 2 (SD downsample) */
    check_conv(ctx, 2, 4, 5, 6, 3, 1, 1, 1, 0, 1, 1);      /* pointwise direct GEMM */
    check_conv(ctx, 1, 4, 5, 6, 3, 1, 1, 1, 0, 0, 1);      /* pointwise, no bias */
    check_conv(ctx, 1, 3, 6, 5, 3, 1, 1, 2, 0, 1, 1);      /* 1x1 stride 2 */
    check_conv(ctx, 1, 3, 8, 12, 5, 4, 4, 4, 0, 1, 1);     /* patchify (SAM's 16x16/16 in small) */
    check_conv(ctx, 1, 2, 9, 9, 3, 4, 4, 4, 0, 0, 1);      /* patchify, input not a multiple */
    check_conv(ctx, 1, 2, 6, 7, 3, 3, 2, 2, 1, 1, 1);      /* non-square kernel */
    check_conv(ctx, 1, 2, 2, 2, 2, 3, 3, 1, 1, 1, 1);      /* kernel larger than the input */
    check_conv(ctx, 1, 3, 64, 64, 8, 16, 16, 16, 0, 1, 0); /* 16x16/16 forward */
    check_conv(ctx, 2, 3, 7, 6, 4, 3, 3, 1, 1, 2, 1);      /* a bias for each image */
    check_conv(ctx, 3, 4, 5, 6, 3, 1, 1, 1, 0, 2, 1);      /* pointwise, a bias per image */
    check_conv(ctx, 2, 3, 9, 8, 5, 3, 3, 2, 1, 2, 1);      /* stride 2, a bias per image */
    /* chunked column buffers: a few output rows per chunk */
    int64_t saved = asam_conv_chunk_floats;
    asam_conv_chunk_floats = 3 * 9 * 6 * 2;
    check_conv(ctx, 2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1);
    check_conv(ctx, 1, 3, 9, 8, 5, 3, 3, 2, 1, 1, 1);
    check_convt(ctx, 2, 3, 5, 4, 2, 3, 3, 2, 1);
    asam_conv_chunk_floats = saved;

    /* Winograd F(4x4, 3x3) for 3x3 "same" convolutions (16+ channels each way): partial edge
     * tiles (sides not multiples of 4), several tile groups per row (W 70: 18 tiles), the batch,
     * and chunks of 16 tiles; forward to 1e-5 of the double loops, dx, dw, db by differences */
    int64_t saved_wino = asam_conv_winograd_min_pixels, saved_wchunk = asam_wino_chunk_floats;
    asam_conv_winograd_min_pixels = 1;
    check_conv(ctx, 2, 16, 7, 6, 17, 3, 3, 1, 1, 1, 1);
    check_conv(ctx, 2, 16, 7, 6, 17, 3, 3, 1, 1, 2, 1); /* a bias for each image */
    check_conv(ctx, 1, 16, 9, 70, 16, 3, 3, 1, 1, 0, 1);
    check_conv(ctx, 1, 24, 4, 4, 16, 3, 3, 1, 1, 1, 1);
    asam_wino_chunk_floats = 36 * (16 + 17) * 16;
    check_conv(ctx, 2, 16, 13, 11, 17, 3, 3, 1, 1, 1, 1);
    asam_wino_chunk_floats = saved_wchunk;
    asam_conv_winograd_min_pixels = saved_wino;
    check_conv(ctx, 1, 16, 32, 32, 24, 3, 3, 1, 1, 1, 0); /* at the default threshold (32x32) */
    check_conv(ctx, 1, 16, 64, 64, 24, 3, 3, 1, 1, 1, 0); /* 256 tiles: the tile GEMM's last */
    check_conv(ctx, 1, 16, 68, 68, 17, 3, 3, 1, 1, 1, 0); /* 289 tiles: sgemm per position */

    check_convt(ctx, 2, 4, 3, 5, 3, 2, 2, 2, 1); /* SAM output upscaling: k2 s2 */
    check_convt(ctx, 1, 4, 3, 3, 2, 2, 2, 2, 0);
    check_convt(ctx, 1, 3, 4, 3, 2, 3, 3, 2, 1); /* overlapping k3 s2 */
    check_convt(ctx, 1, 2, 3, 4, 3, 3, 2, 1, 1); /* k (3,2) s1 */
    check_convt(ctx, 1, 2, 3, 3, 2, 2, 2, 3, 1); /* k2 s3: gaps */

    /* errors */
    asam_tensor *x = asam_zeros(ctx, ASAM_SHAPE(1, 3, 8, 8));
    asam_tensor *w = asam_zeros(ctx, ASAM_SHAPE(4, 2, 3, 3));
    CHECK(asam_conv2d(ctx, x, w, NULL, 1, 1) == NULL && !asam_ctx_ok(ctx), "channel mismatch");
    if (asam_ctx_error(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    asam_tensor *w3 = asam_zeros(ctx, ASAM_SHAPE(4, 3, 3, 3));
    asam_tensor *b2 = asam_zeros(ctx, ASAM_SHAPE(2, 4)); /* two images' biases for one image */
    CHECK(asam_conv2d(ctx, x, w3, b2, 1, 1) == NULL && !asam_ctx_ok(ctx), "bias (2, 4) for N 1");
    if (asam_ctx_error(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    asam_tensor *w2 = asam_zeros(ctx, ASAM_SHAPE(4, 3, 9, 9));
    CHECK(asam_conv2d(ctx, x, w2, NULL, 1, 0) == NULL && !asam_ctx_ok(ctx), "kernel too large");
    asam_ctx_clear_error(ctx);
    CHECK(asam_conv_transpose2d(ctx, x, w, NULL, 2) == NULL && !asam_ctx_ok(ctx),
          "convt channel mismatch");
    asam_ctx_clear_error(ctx);
    CHECK(asam_conv2d(ctx, NULL, w, NULL, 1, 0) == NULL, "NULL input");
    asam_ctx_free(ctx);
    return test_finish("test_ops_conv");
}
