/* Weights held in bf16 (--precision bf16): a frozen weight of linear / conv2d /
 * conv_transpose2d is converted once on first use and its fp32 copy freed.
 *
 * Checks, for each bf16 kernel (ours, and oneDNN when built in):
 *   - ops: forward and the input gradient of linear, conv2d (3x3 stride 2 and pointwise) and
 *     conv_transpose2d with a held weight are bit-identical to the per-call rounding of the
 *     same fp32 weight (asam_set_weight_holding(0), the path before holding existed);
 *   - the fp32 copy is really freed: the weight's data is NULL, asam_param_bytes counts
 *     4 bytes less and 2 more per element; a trainable weight (requires_grad 1) and a small one
 *     stay fp32 and still get their gradient; making a held weight trainable restores fp32;
 *   - models: the tiny SAM (image embedding, low-res logits) and the tiny SD UNet (eps, the
 *     attack's dL/dx and dL/dcontext through the frozen UNet) bit-identical held vs per call.
 * Skips (77) on a CPU without AVX512-BF16. */
#include "asam/engine.h"
#include "engine/amx_tile.h"
#include "engine/linear_amx.h"
#include "asam/efficientsam.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/sd.h"
#include "asam/util.h"
#include "test_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bitwise comparison; prints the first differing element. */
static int same_bits(const char *what, const float *a, const float *b, int64_t n) {
    if (!a || !b) {
        CHECK(0, "%s: missing output", what);
        return 0;
    }
    for (int64_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) {
            CHECK(0, "%s: element %lld differs: %.9g held vs %.9g per call", what, (long long)i,
                  a[i], b[i]);
            return 0;
        }
    printf("ok   %-52s bit-identical (%lld values)\n", what, (long long)n);
    return 1;
}

static float *copy(const asam_tensor *t) {
    if (!t || !t->data) return NULL;
    float *p = malloc((size_t)t->numel * sizeof(float));
    memcpy(p, t->data, (size_t)t->numel * sizeof(float));
    return p;
}

static asam_tensor *param(uint64_t seed, int ndim, const int64_t *shape) {
    asam_tensor *p = asam_param_new(ndim, shape);
    asam_randn(seed, p->data, (size_t)p->numel);
    for (int64_t i = 0; i < p->numel; i++) p->data[i] *= 0.1f;
    return p;
}

typedef enum { LINEAR, CONV3, CONV1, CONVT } op_kind;
static const char *op_names[] = {"linear", "conv2d 3x3 stride 2", "conv2d 1x1", "conv_transpose2d"};

/* y = op(x, w) and dL/dx for L = sum(y * r); returns y and dx (malloc'd) in *y, *dx. */
static void run_op(op_kind k, asam_tensor *w, float **y, float **dx) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    asam_tensor *x = k == LINEAR ? asam_new(ctx, ASAM_SHAPE(2, 37, 96))
                                 : asam_new(ctx, ASAM_SHAPE(2, k == CONVT ? 48 : 32, 11, 13));
    asam_randn(5, x->data, (size_t)x->numel);
    asam_set_requires_grad(x, 1);
    asam_tensor *out = k == LINEAR  ? asam_linear(ctx, x, w, NULL)
                       : k == CONV3 ? asam_conv2d(ctx, x, w, NULL, 2, 1)
                       : k == CONV1 ? asam_conv2d(ctx, x, w, NULL, 1, 0)
                                    : asam_conv_transpose2d(ctx, x, w, NULL, 2);
    asam_tensor *r = out ? asam_new_like(ctx, out) : NULL;
    if (r) asam_randn(9, r->data, (size_t)r->numel);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, out, r));
    CHECK(loss && asam_backward(ctx, loss) == 0, "%s: %s", op_names[k], asam_ctx_error(ctx));
    *y = copy(out);
    *dx = x->grad ? malloc((size_t)x->numel * sizeof(float)) : NULL;
    if (*dx) memcpy(*dx, x->grad, (size_t)x->numel * sizeof(float));
    asam_ctx_free(ctx);
}

static void op_suite(const char *kernel) {
    const int64_t shapes[4][4] = {{64, 96, 0, 0}, {48, 32, 3, 3}, {160, 32, 1, 1}, {48, 24, 2, 2}};
    for (int k = 0; k < 4; k++) {
        asam_tensor *w = param(11 + (uint64_t)k, k == LINEAR ? 2 : 4, shapes[k]);
        char what[128];
        float *y0, *dx0, *y1, *dx1;
        asam_set_weight_holding(0);
        run_op(k, w, &y0, &dx0); /* per call: the fp32 weight rounded by the kernel */
        CHECK(w->data && !w->bf16, "%s: held with holding off", op_names[k]);
        size_t f0, b0, f1, b1;
        asam_param_bytes(&f0, &b0);
        asam_set_weight_holding(1);
        run_op(k, w, &y1, &dx1); /* converted here, then the held copy */
        asam_param_bytes(&f1, &b1);
        CHECK(!w->data && w->bf16 && asam_param_bf16_held(w), "%s: weight not held", op_names[k]);
        /* on AMX a held linear weight also keeps its packed tile copy (counted as bf16 bytes) */
        int64_t tiles = w->linear_tiles ? asam_linear_amx_packed_numel(64, 96) : 0;
        int amx_linear =
            asam_amx_supported() && strcmp(kernel, "[own]") && strcmp(kernel, "[onednn]");
        CHECK(k != LINEAR || (w->linear_tiles != NULL) == amx_linear,
              "%s [%s]: packed tile copy %s", op_names[k], kernel,
              w->linear_tiles ? "made where no AMX linear runs" : "missing");
        CHECK(f0 - f1 == (size_t)(4 * w->numel) && b1 - b0 == (size_t)(2 * (w->numel + tiles)),
              "%s: fp32 bytes %zu -> %zu, bf16 bytes %zu -> %zu for %lld elements", op_names[k], f0,
              f1, b0, b1, (long long)w->numel);
        int64_t ny = k == LINEAR ? 2 * 37 * 64 : 0, nx = 0;
        { /* output and input sizes, from one more (held) run's shapes */
            asam_ctx *ctx = asam_ctx_new((size_t)1 << 26);
            asam_tensor *x = k == LINEAR
                                 ? asam_new(ctx, ASAM_SHAPE(2, 37, 96))
                                 : asam_new(ctx, ASAM_SHAPE(2, k == CONVT ? 48 : 32, 11, 13));
            asam_tensor *o = k == LINEAR  ? asam_linear(ctx, x, w, NULL)
                             : k == CONV3 ? asam_conv2d(ctx, x, w, NULL, 2, 1)
                             : k == CONV1 ? asam_conv2d(ctx, x, w, NULL, 1, 0)
                                          : asam_conv_transpose2d(ctx, x, w, NULL, 2);
            ny = o ? o->numel : 0, nx = x->numel;
            asam_ctx_free(ctx);
        }
        snprintf(what, sizeof what, "%s %s forward", kernel, op_names[k]);
        same_bits(what, y1, y0, ny);
        snprintf(what, sizeof what, "%s %s dL/dx", kernel, op_names[k]);
        same_bits(what, dx1, dx0, nx);
        printf("ok   %-52s fp32 copy freed: -%zu B fp32, +%zu B bf16\n", op_names[k], f0 - f1,
               b1 - b0);
        /* Trainable again: an fp32 copy (of the bf16 values) comes back. */
        asam_set_requires_grad(w, 1);
        CHECK(w->data && !w->bf16, "%s: no fp32 copy after requires_grad", op_names[k]);
        free(y0), free(dx0), free(y1), free(dx1);
        asam_param_free(w);
    }

    /* A trainable weight keeps its fp32 master copy and gets its gradient; a small frozen one
     * (under 4096 elements) stays fp32 too. */
    asam_tensor *tw = param(21, ASAM_SHAPE(64, 96)), *sw = param(22, ASAM_SHAPE(16, 96));
    asam_set_requires_grad(tw, 1);
    size_t f0, b0, f1, b1;
    asam_param_bytes(&f0, &b0);
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 26);
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(8, 96));
    asam_randn(3, x->data, (size_t)x->numel);
    asam_tensor *small = asam_linear(ctx, x, sw, NULL); /* frozen, 1536 elements */
    asam_tensor *l2 = asam_sum(ctx, asam_linear(ctx, x, tw, NULL));
    CHECK(small && l2 && asam_backward(ctx, l2) == 0, "trainable: %s", asam_ctx_error(ctx));
    asam_param_bytes(&f1, &b1);
    CHECK(tw->data && !tw->bf16 && tw->grad, "a trainable weight was held or got no gradient");
    CHECK(sw->numel < 4096 && sw->data && !sw->bf16, "a small weight was held");
    CHECK(f1 == f0 && b1 == b0, "trainable/small: fp32 bytes %zu -> %zu, bf16 %zu -> %zu", f0, f1,
          b0, b1);
    printf("ok   %-52s trainable and small weights stay fp32\n", kernel);
    asam_ctx_free(ctx);
    asam_param_free(tw);
    asam_param_free(sw);
}

/* ---- models ---- */

typedef struct {
    float *emb, *low;
    int64_t n_emb, n_low;
} sam_run;

/* Counts over a model's parameters: its image encoder's GEMM weights (2-D or 4-D ".weight"s
 * outside the norms, 4096 values or more), how many of them are held in bf16, and how many other
 * parameters are. */
typedef struct {
    size_t gemm, held, other_held;
} held_counts;

static held_counts count_encoder_held(asam_tensor *const *p, const char *const *names, size_t n) {
    held_counts c = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        int gemm = !strncmp(names[i], "image_encoder.", 14) && strstr(names[i], ".weight") &&
                   !strstr(names[i], "norm") && (p[i]->ndim == 2 || p[i]->ndim == 4) &&
                   p[i]->numel >= 4096;
        c.gemm += gemm;
        c.held += gemm && asam_param_bf16_held(p[i]);
        c.other_held += !gemm && asam_param_bf16_held(p[i]);
    }
    return c;
}

static sam_run run_sam(asam_sam *m, const asam_image *img) {
    sam_run o = {0};
    asam_sam_predictor p;
    asam_sam_predictor_init(&p, m);
    CHECK(asam_sam_predictor_set_image(&p, img) == 0, "set_image: %s", asam_last_error());
    o.emb = copy(p.embedding);
    o.n_emb = p.embedding ? p.embedding->numel : 0;
    float box[4] = {0.2f * img->w, 0.25f * img->h, 0.7f * img->w, 0.8f * img->h};
    asam_sam_query q = {.batch = 1, .boxes = box};
    asam_sam_result r;
    CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict: %s", asam_last_error());
    o.n_low = (int64_t)r.batch * r.n_masks * 256 * 256;
    o.low = malloc((size_t)o.n_low * sizeof(float));
    memcpy(o.low, r.low_res, (size_t)o.n_low * sizeof(float));
    asam_sam_result_free(&r);
    asam_sam_predictor_free(&p);
    return o;
}

/* m's low-res logits on img bit for bit ref's. */
static void same_sam_logits(const char *kernel, const char *what, asam_sam *m,
                            const asam_image *img, const sam_run *ref) {
    sam_run again = run_sam(m, img);
    char name[160];
    snprintf(name, sizeof name, "%s %s", kernel, what);
    same_bits(name, again.low, ref->low, ref->n_low);
    free(again.emb), free(again.low);
}

static void sam_suite(const char *kernel) {
    char path[4096], img_path[4096];
    if (test_data_file("sam_tiny/model.pth", path, sizeof path) ||
        test_data_file("sam_tiny/image_a.png", img_path, sizeof img_path)) {
        TEST_SKIP_PART("SAM: sam_tiny fixtures not found");
        return;
    }
    asam_image img = {0};
    CHECK(asam_image_read(img_path, 3, &img) == 0, "read: %s", asam_last_error());
    sam_run r[2];
    size_t held_bytes = 0;
    char saved[64];
    snprintf(saved, sizeof saved, "test_bf16_weights_%d.safetensors", (int)getpid());
    for (int hold = 0; hold < 2; hold++) { /* a fresh model each: holding is one-way */
        asam_sam *m = NULL;
        CHECK(asam_sam_load(path, &m) == 0, "load: %s", asam_last_error());
        if (!m) return;
        asam_set_weight_holding(hold);
        size_t b0, b1;
        asam_param_bytes(NULL, &b0);
        r[hold] = run_sam(m, &img);
        asam_param_bytes(NULL, &b1);
        if (hold) held_bytes = b1 - b0;
        /* A model with held weights saves them as BF16 tensors: reloaded, it gives the same. */
        if (hold) CHECK(asam_sam_save(m, saved) == 0, "save: %s", asam_last_error());
        asam_sam_free(m);
    }
    asam_sam *m2 = NULL;
    CHECK(asam_sam_load(saved, &m2) == 0, "reload: %s", asam_last_error());
    if (m2) {
        same_sam_logits(kernel, "SAM saved with held weights, reloaded", m2, &img, &r[1]);
        asam_sam_free(m2);
    }
    remove(saved);
    CHECK(held_bytes > 0, "SAM: no weight was held");
    /* Loaded frozen, the encoder's GEMM weights are held as they are read (nothing else: its
     * position tables and norms stay fp32); the results are those of holding at first use. */
    asam_sam *mf = NULL;
    CHECK(asam_sam_load_frozen(path, &mf) == 0, "load frozen: %s", asam_last_error());
    if (mf) {
        asam_tensor *const *p;
        const char *const *names;
        size_t n;
        asam_sam_params(mf, &p, &names, &n);
        held_counts c = count_encoder_held(p, names, n);
        CHECK(c.gemm > 0 && c.held == c.gemm && c.other_held == 0,
              "SAM frozen: %zu of %zu encoder GEMM weights held at load, %zu others", c.held,
              c.gemm, c.other_held);
        same_sam_logits(kernel, "SAM loaded frozen (held at load)", mf, &img, &r[1]);
        asam_sam_free(mf);
    }
    char what[128];
    snprintf(what, sizeof what, "%s SAM image embedding", kernel);
    same_bits(what, r[1].emb, r[0].emb, r[0].n_emb);
    snprintf(what, sizeof what, "%s SAM low-res logits (box)", kernel);
    CHECK(r[0].n_low == r[1].n_low && r[0].n_low > 0, "SAM: logits sizes");
    same_bits(what, r[1].low, r[0].low, r[0].n_low);
    printf("     SAM tiny: %zu bytes of weights held in bf16\n", held_bytes);
    for (int i = 0; i < 2; i++) free(r[i].emb), free(r[i].low);
    asam_image_free(&img);
}

typedef struct {
    float *eps, *gx, *gc;
    int64_t n_eps, n_gx, n_gc;
} sd_run;

static sd_run run_unet(asam_sd *sd) {
    sd_run o = {0};
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, "a photograph of an astronaut");
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 4, 16, 16));
    asam_randn(42, x->data, (size_t)x->numel);
    float t = 501;
    asam_tensor *eps = asam_unet_forward(ctx, sd->unet, x, &t, cond, NULL, 1.0f);
    o.eps = copy(eps), o.n_eps = eps ? eps->numel : 0;
    /* The attack's gradient through the frozen UNet: L = sum(eps * W) to x and the context. */
    asam_ctx_set_grad(ctx, 1);
    asam_tensor *xg = asam_detach(ctx, x), *cg = asam_detach(ctx, asam_contiguous_copy(ctx, cond));
    asam_set_requires_grad(xg, 1);
    asam_set_requires_grad(cg, 1);
    asam_tensor *e2 = asam_unet_forward(ctx, sd->unet, xg, &t, cg, NULL, 1.0f);
    asam_tensor *W = asam_new(ctx, ASAM_SHAPE(1, 4, 16, 16));
    asam_randn(7, W->data, (size_t)W->numel);
    asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, e2, W));
    CHECK(loss && asam_backward(ctx, loss) == 0, "unet backward: %s", asam_ctx_error(ctx));
    if (xg->grad) {
        o.gx = malloc((size_t)xg->numel * sizeof(float)), o.n_gx = xg->numel;
        memcpy(o.gx, xg->grad, (size_t)xg->numel * sizeof(float));
    }
    if (cg->grad) {
        o.gc = malloc((size_t)cg->numel * sizeof(float)), o.n_gc = cg->numel;
        memcpy(o.gc, cg->grad, (size_t)cg->numel * sizeof(float));
    }
    asam_ctx_free(ctx);
    return o;
}

/* GEMM weights of a ControlNet (count, and how many are held in bf16). */
static size_t controlnet_held(const asam_controlnet *cn, size_t *held) {
    asam_tensor **p;
    const char **names;
    size_t n, gemm = 0;
    *held = 0;
    if (asam_controlnet_params(cn, &p, &names, &n)) return 0;
    for (size_t i = 0; i < n; i++)
        if ((p[i]->ndim == 2 || p[i]->ndim == 4) && p[i]->numel >= 4096) {
            gemm++;
            *held += asam_param_bf16_held(p[i]) != 0;
        }
    return gemm;
}

/* A ControlNet opened for inference is held at load like the bundle's UNet; one opened to be
 * trained is not (bf16-rounded starting values would change its training). */
static void controlnet_held_at_load(const asam_sd *sd) {
    char path[4096];
    if (test_data_file("sd_tiny/control.pth", path, sizeof path)) {
        TEST_SKIP_PART("SD: sd_tiny/control.pth not found");
        return;
    }
    for (int trainable = 0; trainable < 2; trainable++) {
        asam_controlnet *cn = NULL;
        int rc = trainable ? asam_sd_controlnet_open_trainable(path, sd->unet, &cn)
                           : asam_sd_controlnet_open(path, sd->unet, &cn);
        CHECK(rc == 0, "open %s: %s", path, asam_last_error());
        if (rc) return;
        size_t held, n = controlnet_held(cn, &held);
        if (trainable)
            CHECK(n > 0 && held == 0, "SD: %zu of %zu trainable ControlNet weights held", held, n);
        else
            CHECK(n > 0 && held == n, "SD: %zu of %zu ControlNet weights not held at load",
                  n - held, n);
        asam_controlnet_free(cn);
    }
}

/* EfficientSAM loaded frozen: its image encoder's GEMM weights are held as they are read (its
 * position table and norms stay fp32), and the image embedding is bit for bit that of the
 * model loaded trainable and held at first use. */
static void esam_suite(const char *kernel) {
    char path[4096];
    if (test_data_file("efficientsam_tiny/model.pth", path, sizeof path)) {
        TEST_SKIP_PART("EfficientSAM: efficientsam_tiny/model.pth not found");
        return;
    }
    float *emb[2] = {NULL, NULL};
    int64_t n_emb = 0;
    for (int frozen = 0; frozen < 2; frozen++) {
        asam_esam *m = NULL;
        int rc = frozen ? asam_esam_load_frozen(path, 0, &m) : asam_esam_load(path, 0, &m);
        CHECK(rc == 0, "load %s: %s", path, asam_last_error());
        if (!m) return;
        asam_tensor *const *p;
        const char *const *names;
        size_t n;
        asam_esam_params(m, &p, &names, &n);
        held_counts c = count_encoder_held(p, names, n);
        CHECK(c.gemm > 0 && c.held == (frozen ? c.gemm : 0) && c.other_held == 0,
              "EfficientSAM %s: %zu of %zu encoder GEMM weights held at load, %zu others",
              frozen ? "frozen" : "trainable", c.held, c.gemm, c.other_held);
        asam_ctx *ctx = asam_ctx_new(0);
        asam_ctx_set_grad(ctx, 0);
        asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, ASAM_ESAM_IMG, ASAM_ESAM_IMG));
        asam_randn(3, x->data, (size_t)x->numel);
        asam_tensor *e = asam_esam_encode(ctx, m, x);
        CHECK(e != NULL, "EfficientSAM encode: %s", asam_ctx_error(ctx));
        if (e) emb[frozen] = copy(e), n_emb = e->numel;
        asam_ctx_free(ctx);
        asam_esam_free(m);
    }
    char what[128];
    snprintf(what, sizeof what, "%s EfficientSAM loaded frozen (held at load): embedding", kernel);
    if (emb[0] && emb[1]) same_bits(what, emb[1], emb[0], n_emb);
    free(emb[0]), free(emb[1]);
}

static void sd_suite(const char *kernel) {
    char model[4096];
    if (test_data_file("sd_tiny/model.ckpt", model, sizeof model)) {
        TEST_SKIP_PART("SD: sd_tiny/model.ckpt not found");
        return;
    }
    sd_run r[2];
    size_t held_bytes = 0;
    for (int hold = 0; hold < 2; hold++) {
        asam_sd *sd = NULL;
        size_t b0, b1;
        asam_set_weight_holding(hold); /* before loading: the bundle holds as it reads */
        asam_param_bytes(NULL, &b0);
        CHECK(asam_sd_load(model, NULL, &sd) == 0, "load %s: %s", model, asam_last_error());
        if (!sd) return;
        if (hold) { /* every GEMM weight of the UNet held at load, before any forward */
            asam_tensor **p;
            const char **names;
            size_t n, not_held = 0;
            asam_unet_params(sd->unet, &p, &names, &n);
            for (size_t i = 0; i < n; i++)
                if ((p[i]->ndim == 2 || p[i]->ndim == 4) && p[i]->numel >= 4096 &&
                    !asam_param_bf16_held(p[i]))
                    not_held++;
            CHECK(n > 0 && not_held == 0, "SD: %zu UNet weights not held at load", not_held);
            /* CLIP's projections and MLP held at load; its embedding tables stay fp32 */
            asam_tensor *const *cp;
            const char *const *cn;
            size_t nc, gemm = 0, held = 0, other = 0;
            asam_clip_text_params(sd->text, &cp, &cn, &nc);
            for (size_t i = 0; i < nc; i++) {
                int g = cp[i]->ndim == 2 && cp[i]->numel >= 4096 && !strstr(cn[i], "embedding");
                gemm += g;
                held += g && asam_param_bf16_held(cp[i]);
                other += !g && asam_param_bf16_held(cp[i]);
            }
            CHECK(gemm > 0 && held == gemm && other == 0,
                  "SD: CLIP %zu of %zu GEMM weights held at load, %zu others", held, gemm, other);
            controlnet_held_at_load(sd);
        }
        r[hold] = run_unet(sd);
        asam_param_bytes(NULL, &b1);
        if (hold) held_bytes = b1 - b0;
        asam_sd_free(sd);
    }
    CHECK(held_bytes > 0, "SD: no weight was held");
    char what[128];
    snprintf(what, sizeof what, "%s UNet eps", kernel);
    same_bits(what, r[1].eps, r[0].eps, r[0].n_eps);
    snprintf(what, sizeof what, "%s attack dL/dx through the frozen UNet", kernel);
    same_bits(what, r[1].gx, r[0].gx, r[0].n_gx);
    snprintf(what, sizeof what, "%s attack dL/dcontext", kernel);
    same_bits(what, r[1].gc, r[0].gc, r[0].n_gc);
    printf("     SD tiny (CLIP + UNet): %zu bytes of weights held in bf16\n", held_bytes);
    for (int i = 0; i < 2; i++) free(r[i].eps), free(r[i].gx), free(r[i].gc);
}

int main(void) {
    if (!asam_bf16_supported()) TEST_SKIP("this CPU has no AVX512-BF16: bf16 cannot run here");
    /* Our AVX512-BF16 kernel, our AMX kernels (on CPUs with AMX), oneDNN alone (when built in),
     * then the default (oneDNN with the linear layers on AMX tiles where the CPU has them);
     * ASAM_BF16_KERNEL is read when the precision is set. */
    static const char *const kernels[4] = {"avx512", "amx", "onednn", NULL};
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 1 && !asam_amx_supported()) {
            printf("SKIP (part): no AMX on this CPU: the AMX kernel is not checked here\n");
            continue;
        }
#ifndef ASAM_HAVE_ONEDNN
        if (pass == 2) continue; /* "onednn" falls back to the default here */
#endif
        if (kernels[pass])
            setenv("ASAM_BF16_KERNEL", kernels[pass], 1);
        else
            unsetenv("ASAM_BF16_KERNEL");
        CHECK(asam_set_precision(ASAM_BF16) == 0, "bf16: %s", asam_last_error());
        const char *kernel = pass == 0   ? "[own]"
                             : pass == 1 ? "[amx]"
                             : pass == 2 ? "[onednn]"
                                         : "[default]";
        printf("bf16 kernels %s: %s\n", kernel, asam_backend_describe());
        op_suite(kernel);
        sam_suite(kernel);
        esam_suite(kernel);
        sd_suite(kernel);
    }
    asam_set_precision(ASAM_FP32);
    asam_set_weight_holding(1);
    return test_finish("test_bf16_weights");
}
