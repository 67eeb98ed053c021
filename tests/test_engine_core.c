/* The engine's machinery: arena marks/release/release_keep and peak accounting, backward through
 * a chain of ops, gradient accumulation into persistent parameters, gradient checkpointing
 * (same gradients as without, nested, less memory held), grad on/off, error propagation. Uses
 * only linear / matmul / attention so it does not depend on the elementwise ops. */
#include "asam/engine.h"

#include <stdio.h>
#include <unistd.h>
#include "gradcheck.h"
#include "test_util.h"

#define N_TOK 6
#define DIM 4

static asam_tensor *rand_tensor(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    gc_fill(t, seed, 1.0f);
    return t;
}

static asam_tensor *rand_param(int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_param_new(ndim, shape);
    gc_fill(t, seed, 0.5f);
    asam_set_requires_grad(t, 1);
    return t;
}

/* ---- a small nonlinear block: self-attention with projections, then a product ---- */

typedef struct {
    asam_tensor *wq, *wk, *bq; /* (DIM, DIM), (DIM, DIM), (DIM) persistent */
    int inner_ckpt;            /* run the attention part as a nested checkpoint */
} block_params;

/* inputs: x (1, 1, N_TOK, DIM), m (DIM, DIM) */
static asam_tensor *attn_part(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    block_params *p = user;
    asam_tensor *q = asam_linear(ctx, in[0], p->wq, p->bq);
    asam_tensor *k = asam_linear(ctx, in[0], p->wk, NULL);
    return asam_attention(ctx, q, k, in[0], NULL);
}

static asam_tensor *block(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    block_params *p = user;
    asam_tensor *a = p->inner_ckpt ? asam_grad_checkpoint(ctx, attn_part, in, 1, user)
                                   : attn_part(ctx, in, 1, user);
    asam_tensor *h = asam_matmul(ctx, a, in[1], 0, 0);
    return asam_linear(ctx, h, p->wq, NULL);
}

/* A segment that (wrongly) uses an arena tensor from outside that needs a gradient. */
static asam_tensor *seg_outside(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    return asam_matmul(ctx, in[0], (asam_tensor *)user, 0, 0);
}

static asam_tensor *f_block(asam_ctx *ctx, asam_tensor **in, void *user) {
    return block(ctx, in, 2, user);
}

static asam_tensor *f_two_blocks(asam_ctx *ctx, asam_tensor **in, void *user) {
    asam_tensor *h = block(ctx, in, 2, user);
    asam_tensor *in2[2] = {h, in[1]};
    return block(ctx, in2, 2, user);
}

/* Gradients of x, m, wq, wk, bq after backward of out * R, with or without checkpointing. */
typedef struct {
    float gx[N_TOK * DIM], gm[DIM * DIM], gwq[DIM * DIM], gwk[DIM * DIM], gbq[DIM];
    float out[N_TOK * DIM];
    size_t held; /* arena bytes held after the forward */
} grads;

static int run_grads(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *m, int ckpt,
                     grads *g) {
    asam_param_zero_grad(p->wq);
    asam_param_zero_grad(p->wk);
    asam_param_zero_grad(p->bq);
    x->grad = m->grad = NULL;
    asam_set_requires_grad(x, 1);
    asam_set_requires_grad(m, 1);
    asam_mark mk = asam_ctx_mark(ctx);
    asam_tensor *in[2] = {x, m};
    asam_tensor *out = ckpt ? asam_grad_checkpoint(ctx, block, in, 2, p) : block(ctx, in, 2, p);
    if (!out) return -1;
    g->held = asam_ctx_used(ctx) - mk.offset;
    float R[N_TOK * DIM];
    uint64_t s = 7;
    for (int i = 0; i < N_TOK * DIM; i++) R[i] = gc_rand(&s);
    if (asam_backward_from(ctx, out, R) != 0) return -1;
    memcpy(g->out, out->data, sizeof g->out);
    memcpy(g->gx, x->grad, sizeof g->gx);
    memcpy(g->gm, m->grad, sizeof g->gm);
    memcpy(g->gwq, p->wq->grad, sizeof g->gwq);
    memcpy(g->gwk, p->wk->grad, sizeof g->gwk);
    memcpy(g->gbq, p->bq->grad, sizeof g->gbq);
    asam_ctx_release(ctx, mk);
    x->grad = m->grad = NULL;
    return 0;
}

static void compare_grads(const grads *a, const grads *b, const char *what) {
    char name[128];
    snprintf(name, sizeof name, "%s: output", what);
    CHECK_CLOSE(a->out, b->out, N_TOK * DIM, 1e-6, name);
    snprintf(name, sizeof name, "%s: grad x", what);
    CHECK_CLOSE(a->gx, b->gx, N_TOK * DIM, 1e-6, name);
    snprintf(name, sizeof name, "%s: grad m", what);
    CHECK_CLOSE(a->gm, b->gm, DIM * DIM, 1e-6, name);
    snprintf(name, sizeof name, "%s: grad wq (param)", what);
    CHECK_CLOSE(a->gwq, b->gwq, DIM * DIM, 1e-6, name);
    snprintf(name, sizeof name, "%s: grad wk (param)", what);
    CHECK_CLOSE(a->gwk, b->gwk, DIM * DIM, 1e-6, name);
    snprintf(name, sizeof name, "%s: grad bq (param)", what);
    CHECK_CLOSE(a->gbq, b->gbq, DIM, 1e-6, name);
}

static void test_arena(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)256 << 20);
    CHECK(ctx != NULL, "ctx");
    if (!ctx) return;
    CHECK(asam_ctx_used(ctx) == 0 && asam_ctx_peak(ctx) == 0, "fresh ctx not empty");
    asam_tensor *a = asam_full(ctx, ASAM_SHAPE(100), 1.0f);
    size_t after_a = asam_ctx_used(ctx);
    CHECK(a && after_a >= 100 * sizeof(float), "allocation not counted");
    CHECK(((uintptr_t)a->data & 63) == 0, "data not 64-byte aligned");
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *big = asam_zeros(ctx, ASAM_SHAPE(1 << 20)); /* 4 MiB */
    CHECK(big && asam_ctx_used(ctx) >= after_a + (4u << 20), "big allocation not counted");
    size_t peak = asam_ctx_peak(ctx);
    asam_ctx_release(ctx, m);
    CHECK(asam_ctx_used(ctx) == after_a, "release did not return to the mark (%zu vs %zu)",
          asam_ctx_used(ctx), after_a);
    CHECK(asam_ctx_peak(ctx) == peak && peak >= after_a + (4u << 20), "peak lost on release");
    asam_ctx_reset_peak(ctx);
    CHECK(asam_ctx_peak(ctx) == after_a, "reset_peak");
    CHECK(a->data[99] == 1.0f, "data below the mark damaged");

    /* release_keep: intermediates go, the kept tensor survives as a leaf with its values */
    m = asam_ctx_mark(ctx);
    asam_tensor *tmp = asam_full(ctx, ASAM_SHAPE(1 << 18), 2.0f);
    asam_tensor *keep = asam_full(ctx, ASAM_SHAPE(3, 5), 0.0f);
    for (int i = 0; i < 15; i++) keep->data[i] = (float)i;
    (void)tmp;
    asam_tensor *kept = asam_ctx_release_keep(ctx, m, keep);
    int same = kept && kept->ndim == 2 && kept->shape[0] == 3 && kept->shape[1] == 5;
    for (int i = 0; same && i < 15; i++) same = kept->data[i] == (float)i;
    CHECK(same, "release_keep lost the kept tensor");
    CHECK(kept && kept->node == NULL, "kept tensor is not a leaf");
    CHECK(asam_ctx_used(ctx) < after_a + 4096, "release_keep kept the intermediates (%zu)",
          asam_ctx_used(ctx) - after_a);
    /* out of memory is an error, not a crash */
    CHECK(asam_new(ctx, ASAM_SHAPE((int64_t)1 << 30)) == NULL && !asam_ctx_ok(ctx),
          "allocation past the reservation succeeded");
    if (asam_ctx_error(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_reset(ctx);
    CHECK(asam_ctx_ok(ctx) && asam_ctx_used(ctx) == 0, "reset");
    if (!test_failures) printf("ok   arena mark/release/release_keep/peak\n");
    asam_ctx_free(ctx);
}

/* Resident pages of this process (/proc/self/statm), in bytes; 0 where unknown. */
static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Released arena pages stay resident (the next pass reuses them without faulting them in);
 * asam_ctx_trim hands them back. */
static void test_arena_pages(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)256 << 20);
    CHECK(ctx != NULL, "ctx");
    if (!ctx || !resident_bytes()) {
        asam_ctx_free(ctx);
        return;
    }
    size_t r0 = resident_bytes();
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *big = asam_full(ctx, ASAM_SHAPE(16 << 20), 3.0f); /* 64 MiB touched */
    CHECK(big != NULL, "64 MiB tensor");
    size_t r1 = resident_bytes();
    asam_ctx_release(ctx, m);
    asam_ctx_reset(ctx);
    size_t r2 = resident_bytes(), spare = asam_ctx_spare(ctx);
    asam_ctx_trim(ctx);
    size_t r3 = resident_bytes();
    CHECK(spare >= (64u << 20) && asam_ctx_spare(ctx) == 0,
          "spare pages: %zu MiB after the reset, %zu after trim", spare >> 20,
          asam_ctx_spare(ctx) >> 20);
    CHECK(r1 >= r0 + (60u << 20), "touching 64 MiB made %zu MiB resident", (r1 - r0) >> 20);
    CHECK(r2 + (4u << 20) >= r1, "release/reset handed pages back (%zu -> %zu MiB)", r1 >> 20,
          r2 >> 20);
    CHECK(r3 + (60u << 20) <= r2, "trim kept the pages (%zu -> %zu MiB)", r2 >> 20, r3 >> 20);
    asam_tensor *again = asam_full(ctx, ASAM_SHAPE(1 << 20), 5.0f);
    CHECK(again && again->data[(1 << 20) - 1] == 5.0f, "allocation after trim");
    if (!test_failures)
        printf("ok   arena keeps released pages (%zu MiB resident), trim returns them (%zu MiB)\n",
               r2 >> 20, r3 >> 20);
    asam_ctx_free(ctx);
}

/* backward through a chain (linear, attention, matmul, linear, twice), vs finite differences */
static void case_chain_gradcheck(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    asam_tensor *ins[2] = {x, mm};
    int chk[2] = {1, 1};
    gradcheck(ctx, "chain of two blocks", f_two_blocks, ins, 2, chk, p, 1e-2f, 100, 1e-3);
}

/* parameter gradients: finite differences on wq through the chain */
static void case_param_gradcheck(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    grads g;
    CHECK(run_grads(ctx, p, x, mm, 0, &g) == 0, "backward: %s", asam_ctx_error(ctx));
    float R[N_TOK * DIM];
    uint64_t s = 7;
    for (int i = 0; i < N_TOK * DIM; i++) R[i] = gc_rand(&s);
    double worst = 0, maxnum = 0;
    for (int j = 0; j < DIM * DIM; j++) {
        float w0 = p->wq->data[j];
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            p->wq->data[j] = w0 + (sgn ? -1e-2f : 1e-2f);
            asam_tensor *in[2] = {x, mm};
            L[sgn] = gc_eval(ctx, f_block, in, p, R);
        }
        p->wq->data[j] = w0;
        double num = (L[0] - L[1]) / 2e-2;
        if (fabs(num) > maxnum) maxnum = fabs(num);
        if (fabs(num - g.gwq[j]) > worst) worst = fabs(num - g.gwq[j]);
    }
    double rel = worst / (maxnum > 1e-3 ? maxnum : 1e-3);
    CHECK(rel < 1e-3, "param grad vs finite differences: %.3g", rel);
    if (rel < 1e-3) printf("ok   gradcheck persistent param wq (rel err %.2e)\n", rel);
}

/* accumulation: two backward calls add up in persistent params until zero_grad */
static void case_accumulation(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    grads g1;
    run_grads(ctx, p, x, mm, 0, &g1);
    asam_param_zero_grad(p->wq);
    for (int rep = 0; rep < 2; rep++) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *in[2] = {x, mm};
        asam_set_requires_grad(x, 0);
        asam_set_requires_grad(mm, 0);
        asam_tensor *out = block(ctx, in, 2, p);
        float R[N_TOK * DIM];
        uint64_t s = 7;
        for (int i = 0; i < N_TOK * DIM; i++) R[i] = gc_rand(&s);
        CHECK(asam_backward_from(ctx, out, R) == 0, "backward %d", rep);
        asam_ctx_release(ctx, mk);
    }
    float twice[DIM * DIM];
    for (int i = 0; i < DIM * DIM; i++) twice[i] = 2 * g1.gwq[i];
    CHECK_CLOSE(p->wq->grad, twice, DIM * DIM, 1e-6, "param grad accumulates over 2 backwards");
    asam_param_zero_grad(p->wq);
    int zero = 1;
    for (int i = 0; i < DIM * DIM; i++) zero &= p->wq->grad[i] == 0;
    CHECK(zero, "zero_grad");
}

/* checkpointing: same outputs and gradients (inputs and params), less memory held */
static void case_checkpointing(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    grads plain, ck, nested;
    CHECK(run_grads(ctx, p, x, mm, 0, &plain) == 0, "plain: %s", asam_ctx_error(ctx));
    CHECK(run_grads(ctx, p, x, mm, 1, &ck) == 0, "checkpoint: %s", asam_ctx_error(ctx));
    compare_grads(&ck, &plain, "checkpoint vs plain");
    CHECK(ck.held < plain.held, "checkpoint holds %zu bytes, plain %zu", ck.held, plain.held);
    p->inner_ckpt = 1;
    CHECK(run_grads(ctx, p, x, mm, 1, &nested) == 0, "nested: %s", asam_ctx_error(ctx));
    p->inner_ckpt = 0;
    compare_grads(&nested, &plain, "nested checkpoint vs plain");
    printf("ok   arena held after forward: plain %zu B, checkpointed %zu B\n", plain.held, ck.held);
    /* checkpointing turned off on the ctx: the (nested) segments record like plain code */
    grads off;
    p->inner_ckpt = 1;
    CHECK(asam_ctx_set_checkpointing(ctx, 0) == 1, "checkpointing is on by default");
    CHECK(run_grads(ctx, p, x, mm, 1, &off) == 0, "checkpointing off: %s", asam_ctx_error(ctx));
    CHECK(asam_ctx_set_checkpointing(ctx, 1) == 0, "set_checkpointing returns the old state");
    p->inner_ckpt = 0;
    compare_grads(&off, &plain, "checkpointing off vs plain");
    CHECK(off.held == plain.held, "checkpointing off holds %zu bytes, plain %zu", off.held,
          plain.held);
    /* checkpoint with grad disabled just runs the segment */
    asam_mark mk = asam_ctx_mark(ctx);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *in[2] = {x, mm};
    asam_tensor *o = asam_grad_checkpoint(ctx, block, in, 2, p);
    CHECK(o && o->node == NULL && test_rel_diff(o->data, plain.out, N_TOK * DIM) < 1e-6,
          "checkpoint without grad");
    asam_ctx_set_grad(ctx, prev);
    asam_ctx_release(ctx, mk);
}

/* grad off: nothing recorded */
static void case_grad_off(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    asam_mark mk = asam_ctx_mark(ctx);
    asam_set_requires_grad(x, 1);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *y = asam_linear(ctx, x, p->wq, NULL);
    CHECK(y && y->node == NULL && !y->requires_grad, "recorded with grad disabled");
    asam_ctx_set_grad(ctx, prev);
    asam_tensor *y2 = asam_linear(ctx, x, p->wq, NULL);
    CHECK(y2 && y2->node != NULL && y2->requires_grad, "not recorded with grad enabled");
    CHECK(asam_backward(ctx, y2) != 0 && !asam_ctx_ok(ctx), "non-scalar loss accepted");
    asam_ctx_clear_error(ctx);
    asam_set_requires_grad(x, 0);
    asam_set_requires_grad(mm, 0);
    asam_tensor *y3 = asam_matmul(ctx, x, mm, 0, 0);
    CHECK(y3 && y3->node == NULL, "recorded although nothing needs a gradient");
    asam_ctx_release(ctx, mk);
}

/* backward visits only the ancestors of its output: a sibling branch recorded earlier, which
 * still holds gradients from its own backward, is neither run again nor changed */
static void case_sibling(asam_ctx *ctx, block_params *p, asam_tensor *x) {
    const int64_t n = p->wq->numel;
    float *g_a = malloc(sizeof(float) * (size_t)n), *g_b = malloc(sizeof(float) * (size_t)n);
    asam_mark mk = asam_ctx_mark(ctx);
    /* alone: d lb / d wq */
    asam_param_zero_grad(p->wq);
    asam_tensor *yb = asam_linear(ctx, x, p->wq, NULL);
    CHECK(asam_backward(ctx, asam_mean(ctx, asam_mul(ctx, yb, yb))) == 0, "backward lb");
    memcpy(g_b, p->wq->grad, sizeof(float) * (size_t)n);
    asam_ctx_release(ctx, mk);
    /* la, backward; then lb recorded after it, backward */
    asam_param_zero_grad(p->wq);
    asam_tensor *ya = asam_linear(ctx, x, p->wq, NULL);
    CHECK(asam_backward(ctx, asam_sum(ctx, ya)) == 0, "backward la");
    memcpy(g_a, p->wq->grad, sizeof(float) * (size_t)n);
    float ya_g0 = ya->grad ? ya->grad[0] : -1;
    yb = asam_linear(ctx, x, p->wq, NULL);
    CHECK(asam_backward(ctx, asam_mean(ctx, asam_mul(ctx, yb, yb))) == 0, "backward lb after la");
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(p->wq->grad[i] - (g_a[i] + g_b[i])) /
                                (fabs(g_a[i]) + fabs(g_b[i]) + 1e-6));
    CHECK(worst < 1e-6, "second backward re-ran the first branch: d/dwq off by %.3g", worst);
    CHECK(ya->grad && ya->grad[0] == ya_g0, "the sibling branch's gradient changed");
    if (worst < 1e-6)
        printf("ok   backward visits only the output's ancestors (sibling untouched)\n");
    asam_ctx_release(ctx, mk);
    free(g_a);
    free(g_b);
}

/* errors propagate: a shape mismatch fails, later ops get NULL and return NULL, the first
 * message is kept, backward refuses */
static void case_errors(asam_ctx *ctx, block_params *p, asam_tensor *x, asam_tensor *mm) {
    asam_mark mk = asam_ctx_mark(ctx);
    asam_tensor *bad = asam_zeros(ctx, ASAM_SHAPE(DIM + 1, DIM));
    asam_tensor *h = asam_matmul(ctx, x, bad, 0, 0);
    CHECK(h == NULL && !asam_ctx_ok(ctx), "mismatch accepted");
    const char *e = asam_ctx_error(ctx);
    char first[512];
    snprintf(first, sizeof first, "%s", e ? e : "");
    CHECK(strstr(first, "matmul") != NULL, "error does not name the op: %s", first);
    asam_tensor *h2 = asam_linear(ctx, h, p->wq, NULL);
    asam_tensor *h3 = asam_attention(ctx, h2, x, x, NULL);
    asam_tensor *h4 = asam_conv2d(ctx, h3, mm, NULL, 1, 0);
    CHECK(h2 == NULL && h3 == NULL && h4 == NULL, "NULL input not propagated");
    asam_tensor *h5 = asam_linear(ctx, x, bad, NULL); /* another error: first one kept */
    CHECK(h5 == NULL && strcmp(asam_ctx_error(ctx), first) == 0, "first error not kept");
    CHECK(asam_backward(ctx, h4) != 0, "backward of NULL");
    printf("ok   error propagation (%s)\n", first);
    asam_ctx_clear_error(ctx);
    /* a checkpointed segment using an outside tensor that needs a gradient is refused */
    asam_tensor *outside = rand_tensor(ctx, ASAM_SHAPE(DIM, DIM), 9);
    asam_set_requires_grad(outside, 1);
    asam_set_requires_grad(x, 1);
    asam_tensor *o = asam_grad_checkpoint(ctx, seg_outside, &x, 1, outside);
    CHECK(o == NULL || asam_backward_from(ctx, o, NULL) != 0, "outside tensor accepted");
    if (!asam_ctx_ok(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    asam_ctx_release(ctx, mk);
}

static void test_autograd(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    block_params p = {rand_param(ASAM_SHAPE(DIM, DIM), 1), rand_param(ASAM_SHAPE(DIM, DIM), 2),
                      rand_param(ASAM_SHAPE(DIM), 3), 0};
    asam_tensor *x = rand_tensor(ctx, ASAM_SHAPE(1, 1, N_TOK, DIM), 4);
    asam_tensor *mm = rand_tensor(ctx, ASAM_SHAPE(DIM, DIM), 5);
    case_chain_gradcheck(ctx, &p, x, mm);
    case_param_gradcheck(ctx, &p, x, mm);
    case_accumulation(ctx, &p, x, mm);
    case_checkpointing(ctx, &p, x, mm);
    case_grad_off(ctx, &p, x, mm);
    case_sibling(ctx, &p, x);
    case_errors(ctx, &p, x, mm);
    asam_param_free(p.wq);
    asam_param_free(p.wk);
    asam_param_free(p.bq);
    asam_ctx_free(ctx);
}

int main(void) {
    test_arena();
    test_arena_pages();
    test_autograd();
    return test_finish("test_engine_core");
}
