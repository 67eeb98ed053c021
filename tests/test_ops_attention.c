/* asam_attention: forward against a naive double implementation with every option (scale,
 * bias broadcast, causal, decomposed relative position, cross-attention, Dv != D, sizes past the
 * query block), gradients to q, k, v, rel_h, rel_w against finite differences. */
#include "asam/engine.h"
#include "engine/amx_tile.h"
#include "gradcheck.h"
#include "test_util.h"

extern int asam_attention_flash; /* op_attention.c: the flash forward on AVX-512 (hook) */

typedef struct {
    int64_t B, H, Nq, Nk, D, Dv, kh, kw; /* kh = 0: no relative positions */
    int64_t Bb, Hb;                      /* 0: no bias */
    float scale;
    int causal;
} attn_case;

static asam_tensor *rand_tensor(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed,
                                float scale) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    gc_fill(t, seed, scale);
    return t;
}

/* in: q, k, v, rel_h, rel_w, bias (absent ones NULL) */
static asam_tensor *f_attn(asam_ctx *ctx, asam_tensor **in, void *user) {
    attn_case *c = user;
    asam_attn_opts o = {c->scale, c->causal, c->Bb ? in[5] : NULL, c->kh ? in[3] : NULL,
                        c->kh ? in[4] : NULL};
    return asam_attention(ctx, in[0], in[1], in[2], &o);
}

static void naive_attention(const attn_case *c, asam_tensor **in, double *out) {
    int64_t Nk = c->Nk;
    double scale = c->scale ? c->scale : 1.0 / sqrt((double)c->D);
    double *l = malloc((size_t)Nk * sizeof(double));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++) {
            int64_t bh = b * c->H + h;
            for (int64_t i = 0; i < c->Nq; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < Nk; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < c->D; d++)
                        s += (double)in[0]->data[(bh * c->Nq + i) * c->D + d] *
                             in[1]->data[(bh * Nk + j) * c->D + d];
                    s *= scale;
                    if (c->Bb) {
                        int64_t bb = c->Bb == 1 ? 0 : b, hb = c->Hb == 1 ? 0 : h;
                        s += in[5]->data[((bb * c->Hb + hb) * c->Nq + i) * Nk + j];
                    }
                    if (c->kh)
                        s += in[3]->data[(bh * c->Nq + i) * c->kh + j / c->kw] +
                             in[4]->data[(bh * c->Nq + i) * c->kw + j % c->kw];
                    if (c->causal && j > i) s = -INFINITY;
                    l[j] = s;
                    if (s > mx) mx = s;
                }
                double sum = 0;
                for (int64_t j = 0; j < Nk; j++) sum += l[j] = exp(l[j] - mx);
                for (int64_t e = 0; e < c->Dv; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < Nk; j++)
                        o += l[j] / sum * in[2]->data[(bh * Nk + j) * c->Dv + e];
                    out[(bh * c->Nq + i) * c->Dv + e] = o;
                }
            }
        }
    free(l);
}

/* Gradients against central differences of the double-precision reference (free of the float
 * round-off that limits gradcheck.h on large outputs), on up to max_elems elements per input. */
static void check_grads_double(asam_ctx *ctx, const char *name, attn_case *c, asam_tensor **in,
                               int max_elems) {
    int chk[5] = {1, 1, 1, c->kh != 0, c->kh != 0};
    asam_mark m = asam_ctx_mark(ctx);
    for (int i = 0; i < 6; i++) {
        in[i]->grad = NULL;
        asam_set_requires_grad(in[i], i < 5 && chk[i]);
    }
    asam_tensor *out = f_attn(ctx, in, c);
    if (!out) return;
    int64_t n_out = out->numel;
    float *R = malloc((size_t)n_out * sizeof(float));
    double *ref = malloc((size_t)n_out * sizeof(double));
    uint64_t seed = 99;
    for (int64_t i = 0; i < n_out; i++) R[i] = gc_rand(&seed);
    CHECK(asam_backward_from(ctx, out, R) == 0, "%s: backward: %s", name, asam_ctx_error(ctx));
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        if (!chk[i]) continue;
        int64_t ne = in[i]->numel, stride = ne > max_elems ? ne / max_elems : 1;
        double max_num = 0, max_err = 0;
        for (int64_t j = 0; j < ne; j += stride) {
            float x0 = in[i]->data[j], xs[2] = {x0 + 1e-3f, x0 - 1e-3f};
            double L[2];
            for (int s = 0; s < 2; s++) {
                in[i]->data[j] = xs[s];
                naive_attention(c, in, ref);
                L[s] = 0;
                for (int64_t o = 0; o < n_out; o++) L[s] += ref[o] * R[o];
            }
            in[i]->data[j] = x0;
            double num = (L[0] - L[1]) / ((double)xs[0] - (double)xs[1]);
            double ana = in[i]->grad ? in[i]->grad[j] : 0;
            if (fabs(num) > max_num) max_num = fabs(num);
            if (!(fabs(num - ana) <= max_err)) max_err = fabs(num - ana);
        }
        double rel = max_err / (max_num > 1e-3 ? max_num : 1e-3);
        if (!(rel <= worst)) worst = rel;
    }
    CHECK(worst <= 1e-4, "%s: gradient vs double finite differences: rel err %.3g", name, worst);
    if (worst <= 1e-4) printf("ok   grad vs double FD %s (rel err %.2e)\n", name, worst);
    for (int i = 0; i < 6; i++) in[i]->grad = NULL;
    free(R);
    free(ref);
    asam_ctx_release(ctx, m);
}

/* A case's random inputs q, k, v, rel_h, rel_w, bias (seeds seed .. seed + 5); rel_h, rel_w and
 * bias are made (size-1 placeholders) even where the case does not use them. */
static void attn_inputs(asam_ctx *ctx, const attn_case *c, uint64_t seed, asam_tensor **in) {
    int64_t kh = c->kh ? c->kh : 1, kw = c->kw ? c->kw : 1;
    in[0] = rand_tensor(ctx, ASAM_SHAPE(c->B, c->H, c->Nq, c->D), seed, 1.0f);
    in[1] = rand_tensor(ctx, ASAM_SHAPE(c->B, c->H, c->Nk, c->D), seed + 1, 1.0f);
    in[2] = rand_tensor(ctx, ASAM_SHAPE(c->B, c->H, c->Nk, c->Dv), seed + 2, 1.0f);
    in[3] = rand_tensor(ctx, ASAM_SHAPE(c->B, c->H, c->Nq, kh), seed + 3, 0.5f);
    in[4] = rand_tensor(ctx, ASAM_SHAPE(c->B, c->H, c->Nq, kw), seed + 4, 0.5f);
    in[5] = rand_tensor(ctx, ASAM_SHAPE(c->Bb ? c->Bb : 1, c->Hb ? c->Hb : 1, c->Nq, c->Nk),
                        seed + 5, 1.0f);
}

static void check_attention(asam_ctx *ctx, const char *what, attn_case c, int max_elems) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *in[6];
    attn_inputs(ctx, &c, 31, in);
    char name[200];
    snprintf(name, sizeof name, "attention %s B%lld H%lld Nq%lld Nk%lld D%lld Dv%lld", what,
             (long long)c.B, (long long)c.H, (long long)c.Nq, (long long)c.Nk, (long long)c.D,
             (long long)c.Dv);
    asam_tensor *y = f_attn(ctx, in, &c);
    CHECK(y && y->ndim == 4 && y->shape[2] == c.Nq && y->shape[3] == c.Dv, "%s: %s", name,
          asam_ctx_error(ctx));
    if (!y) return;
    double *refd = malloc((size_t)y->numel * sizeof(double));
    float *ref = malloc((size_t)y->numel * sizeof(float));
    naive_attention(&c, in, refd);
    for (int64_t i = 0; i < y->numel; i++) ref[i] = (float)refd[i];
    CHECK_CLOSE(y->data, ref, (size_t)y->numel, 1e-5, name);
    free(ref);
    free(refd);
    /* gradcheck.h (float finite differences) where outputs are few enough for its precision */
    int chk[6] = {1, 1, 1, c.kh != 0, c.kh != 0, 0};
    if (y->numel <= 400) gradcheck(ctx, name, f_attn, in, 6, chk, &c, 1e-2f, max_elems, 1e-3);
    check_grads_double(ctx, name, &c, in, max_elems);
    asam_ctx_release(ctx, m);
}

/* Under bf16 on AMX CPUs: the tile forward and backward (flash on) and the blocked ones (flash
 * off) against the double reference, each within bf16's rounding of q, k, v and the
 * probabilities (2^-9 per operand); their input gradients (q, k, v and, with relative
 * positions, rel_h and rel_w) against fp32's. */
/* With extra_grad != 0 the loss also has extra_grad * sum(q + k + v), whose gradients the
 * backward reaches before the attention's: the attention then adds into existing buffers. */
static float extra_grad;
/* Added to the bias of keys 512 .. 767 (the third key chunk of 256): logits that jump past the
 * running max by far more than the tile softmax's slack (e^100 would overflow), so the row is
 * rescaled there, and fall back below it in the next chunk. */
static float bias_step;

static void check_attention_bf16(asam_ctx *ctx, const char *what, attn_case c) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *in[6];
    attn_inputs(ctx, &c, 41, in);
    for (int64_t i = 0; bias_step != 0 && i < in[5]->numel; i++)
        if (i % c.Nk >= 512 && i % c.Nk < 768) in[5]->data[i] += bias_step;
    int ngrad = c.kh ? 5 : 3;
    for (int i = 0; i < ngrad; i++) asam_set_requires_grad(in[i], 1);
    int64_t n = c.B * c.H * c.Nq * c.Dv;
    double *refd = malloc((size_t)n * sizeof(double));
    float *ref = malloc((size_t)n * sizeof(float)), *g32[5] = {0};
    float *dq_tile = malloc((size_t)in[0]->numel * sizeof(float));
    naive_attention(&c, in, refd);
    for (int64_t i = 0; i < n; i++) ref[i] = (float)refd[i];
    static const char *gnames[5] = {"dq", "dk", "dv", "drel_h", "drel_w"};
    for (int prec = 0; prec < 3; prec++) { /* fp32 (gradients), bf16 tile, bf16 blocked */
        asam_set_precision(prec ? ASAM_BF16 : ASAM_FP32);
        asam_attention_flash = prec != 2;
        asam_ctx_set_grad(ctx, 1);
        asam_tensor *y = f_attn(ctx, in, &c);
        asam_tensor *l = y ? asam_sum(ctx, asam_mul(ctx, y, y)) : NULL;
        for (int i = 0; l && extra_grad != 0 && i < 3; i++) /* run first: q, k, v have grads */
            l = asam_add(ctx, l, asam_scale(ctx, asam_sum(ctx, in[i]), extra_grad));
        int ok = l && asam_backward(ctx, l) == 0;
        asam_ctx_set_grad(ctx, 0);
        char name[200];
        snprintf(name, sizeof name, "attention %s %s B%lld H%lld Nq%lld Nk%lld D%lld Dv%lld", what,
                 prec == 0   ? "fp32"
                 : prec == 1 ? "bf16 tile"
                             : "bf16 blocked",
                 (long long)c.B, (long long)c.H, (long long)c.Nq, (long long)c.Nk, (long long)c.D,
                 (long long)c.Dv);
        CHECK(ok, "%s: %s", name, asam_ctx_error(ctx));
        if (!ok) break;
        for (int i = 0; i < ngrad; i++) {
            size_t cnt = (size_t)in[i]->numel;
            CHECK(in[i]->grad != NULL, "%s: no %s", name, gnames[i]);
            if (!in[i]->grad) continue;
            if (prec == 0) {
                g32[i] = malloc(cnt * sizeof(float));
                memcpy(g32[i], in[i]->grad, cnt * sizeof(float));
            } else {
                char gname[240];
                snprintf(gname, sizeof gname, "%s %s vs fp32", name, gnames[i]);
                CHECK_CLOSE(in[i]->grad, g32[i], cnt, 3e-2, gname);
            }
            if (prec == 1 && i == 0) memcpy(dq_tile, in[0]->grad, cnt * sizeof(float));
            if (prec == 2 && i == 0) /* the tile backward ran, not the blocked one twice */
                CHECK(memcmp(dq_tile, in[0]->grad, cnt * sizeof(float)) != 0,
                      "%s: dq bitwise equal to the tile path's", name);
            memset(in[i]->grad, 0, cnt * sizeof(float));
        }
        if (prec) CHECK_CLOSE(y->data, ref, (size_t)n, 1.5e-2, name);
    }
    asam_set_precision(ASAM_FP32);
    asam_attention_flash = 1;
    free(ref), free(refd), free(dq_tile);
    for (int i = 0; i < 5; i++) free(g32[i]);
    asam_ctx_release(ctx, m);
}

static void attention_cases_bf16(asam_ctx *ctx) {
    /* query blocks of 32 (forward) and 128 (backward) with a short last one, key chunks of 256
     * with a short last one, head sizes padded to 32 and 16, causal rows ending inside a chunk,
     * relative positions and a bias across chunk edges, one pair split over both threads' query
     * blocks (H 1, B 1) and pairs shared out (H 3) */
    /*                                               B  H  Nq   Nk  D   Dv kh kw Bb Hb sc causal */
    check_attention_bf16(ctx, "plain", (attn_case){2, 2, 37, 45, 40, 40, 0, 0, 0, 0, 0, 0});
    check_attention_bf16(ctx, "chunks", (attn_case){1, 2, 70, 600, 40, 48, 0, 0, 0, 0, 0, 0});
    check_attention_bf16(ctx, "causal", (attn_case){1, 1, 300, 300, 80, 80, 0, 0, 0, 0, 0, 1});
    check_attention_bf16(ctx, "rel+bias", (attn_case){1, 2, 65, 600, 64, 64, 20, 30, 1, 2, 0, 0});
    check_attention_bf16(ctx, "cross Dv 7", (attn_case){2, 1, 65, 77, 64, 7, 0, 0, 0, 0, 0.3f, 0});
    check_attention_bf16(ctx, "split rel", (attn_case){1, 1, 400, 400, 64, 64, 20, 20, 0, 0, 0, 0});
    check_attention_bf16(ctx, "pairs", (attn_case){1, 3, 260, 333, 40, 40, 0, 0, 0, 0, 0, 0});
    extra_grad = 0.5f;
    check_attention_bf16(ctx, "pairs, adding",
                         (attn_case){1, 3, 260, 333, 40, 40, 0, 0, 0, 0, 0, 0});
    check_attention_bf16(ctx, "split, adding",
                         (attn_case){1, 1, 400, 400, 64, 64, 0, 0, 0, 0, 0, 0});
    extra_grad = 0;
    /* full key chunks against the running max, one chunk rising 100 above it, and sharp logits
     * (scale 2: chunk maxima spread by several units) */
    bias_step = 100.0f;
    check_attention_bf16(ctx, "rising", (attn_case){1, 2, 64, 1100, 40, 40, 0, 0, 1, 1, 0, 0});
    bias_step = 0;
    check_attention_bf16(ctx, "sharp", (attn_case){1, 2, 64, 1100, 40, 40, 0, 0, 0, 0, 2.0f, 0});
}

static void attention_cases(asam_ctx *ctx) {
    /*                                      B  H  Nq  Nk  D  Dv kh kw Bb Hb scale causal */
    check_attention(ctx, "plain", (attn_case){2, 2, 5, 5, 4, 4, 0, 0, 0, 0, 0, 0}, 200);
    check_attention(ctx, "bias (1,H) + scale", (attn_case){2, 3, 5, 6, 4, 4, 0, 0, 1, 3, 0.7f, 0},
                    200);
    check_attention(ctx, "bias (B,1)", (attn_case){2, 2, 4, 3, 3, 3, 0, 0, 2, 1, 0, 0}, 200);
    check_attention(ctx, "causal", (attn_case){2, 2, 6, 6, 4, 4, 0, 0, 0, 0, 0, 1}, 200);
    check_attention(ctx, "rel_h/rel_w", (attn_case){1, 2, 6, 6, 4, 4, 2, 3, 0, 0, 0, 0}, 200);
    check_attention(ctx, "cross Dv!=D", (attn_case){2, 2, 5, 7, 4, 3, 0, 0, 0, 0, 0, 0}, 200);
    check_attention(ctx, "cross rel+bias", (attn_case){1, 1, 5, 12, 3, 2, 3, 4, 1, 1, 0, 0}, 200);
    /* past the 128-query block: one (b,h) pair split over threads, then pairs over threads */
    check_attention(ctx, "blocked rel+bias", (attn_case){1, 1, 140, 130, 8, 8, 10, 13, 1, 1, 0, 0},
                    30);
    check_attention(ctx, "blocked pairs", (attn_case){2, 1, 300, 140, 4, 5, 0, 0, 0, 0, 0, 0}, 30);
    check_attention(ctx, "blocked causal", (attn_case){1, 1, 200, 200, 4, 4, 0, 0, 0, 0, 0, 1}, 30);
    check_attention(ctx, "blocked causal pairs",
                    (attn_case){2, 1, 200, 200, 4, 4, 0, 0, 0, 0, 0, 1}, 30);

    /* the flash forward's key chunks (256) and query blocks (64): several chunks with a short
     * last one, relative-position rows that straddle a chunk edge, causal rows whose keys end
     * inside a chunk, and head sizes that fill 1, 2.5, 3 and 5 vectors of 16 */
    check_attention(ctx, "chunks D40", (attn_case){1, 1, 130, 600, 40, 40, 0, 0, 0, 0, 0, 0}, 3);
    check_attention(ctx, "chunks rel", (attn_case){1, 1, 70, 600, 16, 48, 20, 30, 1, 1, 0, 0}, 3);
    check_attention(ctx, "chunks causal", (attn_case){1, 1, 300, 300, 80, 80, 0, 0, 0, 0, 0, 1}, 3);
    check_attention(ctx, "chunks cross D>Dv", (attn_case){2, 1, 65, 77, 64, 7, 0, 0, 0, 0, 0, 0},
                    3);
}

/* asam_attention_heads against splitting the heads out, asam_attention, merging them back: in
 * inference under bf16 on AMX, and in fp32 on AVX-512 (the column-layout flash forward), the
 * heads are read in place (bit for bit the same values: the same kernels; the arena shows no
 * permuted copies), recorded calls take the general path, and the gradient reaches q, k and v. */
static void attention_heads_case(int64_t B, int64_t Nq, int64_t Nk, int64_t H, int64_t D,
                                 int64_t Dv, int bf16) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 28);
    asam_set_precision(bf16 ? ASAM_BF16 : ASAM_FP32);
    asam_tensor *q = rand_tensor(ctx, ASAM_SHAPE(B, Nq, H * D), 61, 1.0f);
    asam_tensor *k = rand_tensor(ctx, ASAM_SHAPE(B, Nk, H * D), 62, 1.0f);
    asam_tensor *v = rand_tensor(ctx, ASAM_SHAPE(B, Nk, H * Dv), 63, 1.0f);
    asam_tensor *ref = asam_reshape(
        ctx,
        asam_permute(
            ctx,
            asam_attention(ctx,
                           asam_permute(ctx, asam_reshape(ctx, q, ASAM_SHAPE(B, Nq, H, D)),
                                        (const int[]){0, 2, 1, 3}),
                           asam_permute(ctx, asam_reshape(ctx, k, ASAM_SHAPE(B, Nk, H, D)),
                                        (const int[]){0, 2, 1, 3}),
                           asam_permute(ctx, asam_reshape(ctx, v, ASAM_SHAPE(B, Nk, H, Dv)),
                                        (const int[]){0, 2, 1, 3}),
                           NULL),
            (const int[]){0, 2, 1, 3}),
        ASAM_SHAPE(B, Nq, H * Dv));
    size_t u0 = asam_ctx_used(ctx);
    asam_tensor *o = asam_attention_heads(ctx, q, k, v, (int)H, NULL);
    size_t used = asam_ctx_used(ctx) - u0, out_bytes = (size_t)(B * Nq * H * Dv) * 4;
    char what[128];
    snprintf(what, sizeof what, "attention_heads %s B%lld Nq%lld Nk%lld H%lld D%lld Dv%lld",
             bf16 ? "bf16" : "fp32", (long long)B, (long long)Nq, (long long)Nk, (long long)H,
             (long long)D, (long long)Dv);
    CHECK(o && ref && !memcmp(o->data, ref->data, out_bytes), "%s: differs from split + merge",
          what);
    int in_place = used < 2 * out_bytes;
    int expect = bf16 ? asam_amx_supported() != 0 : __builtin_cpu_supports("avx512f") != 0;
    CHECK(in_place == expect, "%s: %s", what,
          in_place ? "in place where it should not be" : "permuted copies");
    /* recorded: the general path; its gradient to q, k, v */
    asam_set_requires_grad(q, 1);
    asam_set_requires_grad(k, 1);
    asam_set_requires_grad(v, 1);
    asam_tensor *og = asam_attention_heads(ctx, q, k, v, (int)H, NULL);
    CHECK(og && !memcmp(og->data, ref->data, out_bytes) &&
              asam_backward(ctx, asam_sum(ctx, asam_mul(ctx, og, og))) == 0 && q->grad && k->grad &&
              v->grad,
          "%s: recorded call", what);
    if (!test_failures) printf("ok   %s (%s)\n", what, in_place ? "heads in place" : "general");
    asam_set_precision(ASAM_FP32);
    asam_ctx_free(ctx);
}

int main(void) {
    asam_set_threads(2); /* both parallel schedules (over heads, over query blocks) run */
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    CHECK(ctx != NULL, "ctx");
    if (!ctx) return 1;
    /* every case through the flash forward (where the CPU has AVX-512) and the blocked one */
    for (int flash = 1; flash >= 0; flash--) {
        asam_attention_flash = flash;
        printf("-- %s forward\n", flash ? "flash" : "blocked");
        attention_cases(ctx);
    }
    if (asam_bf16_supported() && asam_amx_supported()) {
        printf("-- bf16 forward and backward on AMX tiles vs blocked\n");
        attention_cases_bf16(ctx);
    } else {
        printf("SKIP (part): no AMX on this CPU: the bf16 tile forward and backward are not "
               "checked here\n");
    }
    attention_heads_case(1, 100, 100, 8, 40, 40, 0);
    attention_heads_case(2, 77, 45, 4, 40, 40, 0);  /* a short last query block in each image */
    attention_heads_case(1, 130, 600, 2, 64, 7, 0); /* key chunks with a short last one */
    if (asam_bf16_supported()) {
        attention_heads_case(2, 77, 45, 4, 40, 40, 1);
        attention_heads_case(1, 256, 77, 8, 80, 80, 1);
        attention_heads_case(1, 64, 64, 2, 64, 32, 1);
    }
    /* shape errors */
    asam_tensor *q = asam_zeros(ctx, ASAM_SHAPE(1, 2, 4, 8)),
                *k = asam_zeros(ctx, ASAM_SHAPE(1, 2, 5, 8));
    asam_tensor *v = asam_zeros(ctx, ASAM_SHAPE(1, 2, 4, 8));
    CHECK(asam_attention(ctx, q, k, v, NULL) == NULL && !asam_ctx_ok(ctx), "Nk mismatch accepted");
    if (asam_ctx_error(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    asam_attn_opts causal = {0, 1, NULL, NULL, NULL};
    asam_tensor *v5 = asam_zeros(ctx, ASAM_SHAPE(1, 2, 5, 8));
    CHECK(asam_attention(ctx, q, k, v5, &causal) == NULL && !asam_ctx_ok(ctx),
          "causal with Nq != Nk accepted");
    asam_ctx_clear_error(ctx);
    asam_tensor *rh = asam_zeros(ctx, ASAM_SHAPE(1, 2, 4, 2)),
                *rw = asam_zeros(ctx, ASAM_SHAPE(1, 2, 4, 2));
    asam_attn_opts rel = {0, 0, NULL, rh, rw};
    CHECK(asam_attention(ctx, q, k, v5, &rel) == NULL && !asam_ctx_ok(ctx),
          "rel with kh*kw != Nk accepted");
    asam_ctx_clear_error(ctx);
    CHECK(asam_attention(ctx, q, NULL, v5, NULL) == NULL, "NULL input");
    asam_ctx_free(ctx);
    return test_finish("test_ops_attention");
}
