/* torch-exact bicubic and bilinear resampling (EfficientSAM): values against torch 1.13
 * F.interpolate (align_corners=False) on small inputs, shapes, errors, and central finite
 * differences for the backward of both. The bit-exact check on real sizes (14 -> 64 pos-embed,
 * 256 -> original logits, any size -> 1024 input) is in test_efficientsam_parity. */
#include "gradcheck.h"
#include "test_util.h"

static const float k_in[15] = {1, 3, 5, 9, 2, 0, -1, 4, 2, 7, 3, 3, 1, 0, 5}; /* (3, 5) */

typedef struct {
    int bicubic;
    int64_t oh, ow;
} rs_case;

static asam_tensor *rs_fn(asam_ctx *ctx, asam_tensor **in, void *user) {
    const rs_case *r = user;
    asam_tensor *o = r->bicubic ? asam_resize_bicubic(ctx, in[0], r->oh, r->ow)
                                : asam_resize_bilinear_torch(ctx, in[0], r->oh, r->ow);
    return asam_mul(ctx, o, o);
}

int main(void) {
    asam_set_threads(1);
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 1, 3, 5), k_in);
    /* torch 1.13: F.interpolate(x, (4, 7) / (2, 3), mode=...) */
    const float cub47[28] = {
        0.8973922729492188f,   2.169745683670044f,   3.8064324855804443f, 5.071777820587158f,
        9.270939826965332f,    6.667083740234375f,   1.0222911834716797f, 0.03302942216396332f,
        -0.47798556089401245f, 1.2334375381469727f,  4.68994140625f,      4.859533309936523f,
        5.0313801765441895f,   5.471163749694824f,   1.0474876165390015f, 0.11423788219690323f,
        0.7371753454208374f,   2.80908203125f,       0.5487736463546753f, 2.9215822219848633f,
        7.325976371765137f,    3.2096829414367676f,  3.5196213722229004f, 2.6752843856811523f,
        0.78466796875f,        -0.5547279715538025f, 1.858147144317627f,  5.250030517578125f};
    const float cub23[6] = {0.9100127220153809f, 4.87890625f, 4.695672988891602f,
                            2.197772264480591f,  1.64453125f, 3.8421571254730225f};
    const float bil47[28] = {1.0f,
                             2.142857074737549f,
                             3.5714287757873535f,
                             5.0f,
                             7.857143402099609f,
                             5.999999523162842f,
                             2.0f,
                             0.375f,
                             0.4464285969734192f,
                             1.6071430444717407f,
                             4.375f,
                             4.5535712242126465f,
                             4.839285850524902f,
                             5.125f,
                             1.125f,
                             0.7678571343421936f,
                             1.1785715818405151f,
                             2.874999761581421f,
                             1.7142856121063232f,
                             3.392857551574707f,
                             6.25f,
                             3.0f,
                             3.0f,
                             2.4285712242126465f,
                             0.9999999403953552f,
                             0.28571420907974243f,
                             2.142857551574707f,
                             5.0f};
    asam_tensor *o = asam_resize_bicubic(ctx, x, 4, 7);
    CHECK(o && o->shape[2] == 4 && o->shape[3] == 7, "bicubic shape");
    if (o) CHECK_CLOSE(o->data, cub47, 28, 0, "bicubic 3x5 -> 4x7 bit-exact vs torch");
    o = asam_resize_bicubic(ctx, x, 2, 3);
    /* torch's kernels for such tiny planes take paths that round differently (1 ulp); the
       recipe is bit-exact on EfficientSAM's real sizes (test_efficientsam_parity) */
    if (o) CHECK_CLOSE(o->data, cub23, 6, 2e-7, "bicubic 3x5 -> 2x3 (shrink, no antialias)");
    o = asam_resize_bilinear_torch(ctx, x, 4, 7);
    if (o) CHECK_CLOSE(o->data, bil47, 28, 2e-7, "bilinear 3x5 -> 4x7 vs torch (1 ulp)");
    o = asam_resize_bicubic(ctx, x, 3, 5);
    if (o) CHECK_CLOSE(o->data, k_in, 15, 0, "bicubic same size is the identity");
    o = asam_resize_bilinear_torch(ctx, x, 3, 5);
    if (o) CHECK_CLOSE(o->data, k_in, 15, 0, "bilinear same size is the identity");
    CHECK(asam_resize_bicubic(ctx, x, 0, 3) == NULL && !asam_ctx_ok(ctx), "size 0 rejected");
    asam_ctx_clear_error(ctx);
    CHECK(asam_resize_bicubic(ctx, asam_from_data(ctx, ASAM_SHAPE(3), k_in), 2, 2) == NULL,
          "1-D input rejected");
    asam_ctx_clear_error(ctx);

    /* finite differences: up, down, mixed, batch of planes */
    const int64_t sizes[][4] = {{3, 5, 4, 7}, {7, 6, 3, 4}, {5, 5, 9, 2}, {14, 14, 20, 20}};
    for (int k = 0; k < 4; k++)
        for (int bic = 0; bic < 2; bic++) {
            asam_tensor *t = asam_new(ctx, ASAM_SHAPE(2, 1, sizes[k][0], sizes[k][1]));
            gc_fill(t, 7 + k, 1.0f);
            rs_case rc = {bic, sizes[k][2], sizes[k][3]};
            char name[96];
            snprintf(name, sizeof name, "%s %lldx%lld -> %lldx%lld", bic ? "bicubic" : "bilinear",
                     (long long)sizes[k][0], (long long)sizes[k][1], (long long)sizes[k][2],
                     (long long)sizes[k][3]);
            gradcheck(ctx, name, rs_fn, &t, 1, (const int[]){1}, &rc, 1e-2f, 400, 1e-2);
        }
    asam_ctx_free(ctx);
    return test_finish("test_resize_torch");
}
