/* asam_matmul, asam_linear, asam_embedding: forward against naive double loops, gradients
 * against finite differences. */
#include "asam/engine.h"
#include "gradcheck.h"
#include "test_util.h"

static asam_tensor *rand_tensor(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    gc_fill(t, seed, 1.0f);
    return t;
}

/* ---- matmul ---- */

typedef struct {
    int ta, tb;
} mm_opts;

static asam_tensor *f_matmul(asam_ctx *ctx, asam_tensor **in, void *user) {
    mm_opts *o = user;
    return asam_matmul(ctx, in[0], in[1], o->ta, o->tb);
}

/* Broadcast index of an output batch index into an operand with nb batch dims. */
static int64_t bcast_index(int64_t i, int nbo, const int64_t *oshape, int nb,
                           const int64_t *shape) {
    int64_t off = 0, stride = 1;
    for (int d = nbo - 1; d >= 0; d--) {
        int64_t idx = i % oshape[d];
        i /= oshape[d];
        int dd = d - (nbo - nb);
        if (dd >= 0) {
            if (shape[dd] != 1) off += idx * stride;
            stride *= shape[dd];
        }
    }
    return off;
}

static void check_matmul(asam_ctx *ctx, int na, const int64_t *sa, int nb, const int64_t *sb,
                         int ta, int tb) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *a = rand_tensor(ctx, na, sa, 1), *b = rand_tensor(ctx, nb, sb, 2);
    asam_tensor *c = asam_matmul(ctx, a, b, ta, tb);
    char name[160], s1[64], s2[64];
    asam_shape_str(a, s1, sizeof s1);
    asam_shape_str(b, s2, sizeof s2);
    snprintf(name, sizeof name, "matmul %s%s x %s%s", s1, ta ? "^T" : "", s2, tb ? "^T" : "");
    CHECK(c != NULL, "%s: %s", name, asam_ctx_error(ctx));
    if (!c) return;
    int64_t M = ta ? sa[na - 1] : sa[na - 2], K = ta ? sa[na - 2] : sa[na - 1];
    int64_t N = tb ? sb[nb - 2] : sb[nb - 1];
    int nbo = c->ndim - 2;
    int64_t nbatch = c->numel / (M * N);
    CHECK(c->shape[nbo] == M && c->shape[nbo + 1] == N, "%s: output shape", name);
    float *ref = malloc((size_t)c->numel * sizeof(float));
    for (int64_t i = 0; i < nbatch; i++) {
        const float *A = a->data + bcast_index(i, nbo, c->shape, na - 2, sa) * M * K;
        const float *Bm = b->data + bcast_index(i, nbo, c->shape, nb - 2, sb) * K * N;
        for (int64_t r = 0; r < M; r++)
            for (int64_t col = 0; col < N; col++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)(ta ? A[k * M + r] : A[r * K + k]) *
                         (tb ? Bm[col * K + k] : Bm[k * N + col]);
                ref[(i * M + r) * N + col] = (float)s;
            }
    }
    CHECK_CLOSE(c->data, ref, (size_t)c->numel, 1e-5, name);
    free(ref);
    asam_tensor *ins[2] = {a, b};
    int chk[2] = {1, 1};
    mm_opts o = {ta, tb};
    gradcheck(ctx, name, f_matmul, ins, 2, chk, &o, 1e-2f, 200, 1e-3);
    asam_ctx_release(ctx, m);
}

/* ---- linear ---- */

static asam_tensor *f_linear(asam_ctx *ctx, asam_tensor **in, void *user) {
    return asam_linear(ctx, in[0], in[1], user ? in[2] : NULL);
}

static void check_linear(asam_ctx *ctx, int nx, const int64_t *sx, int64_t out, int with_bias) {
    asam_mark m = asam_ctx_mark(ctx);
    int64_t in_f = sx[nx - 1];
    asam_tensor *x = rand_tensor(ctx, nx, sx, 3);
    asam_tensor *w = rand_tensor(ctx, ASAM_SHAPE(out, in_f), 4);
    asam_tensor *b = rand_tensor(ctx, ASAM_SHAPE(out), 5);
    asam_tensor *y = asam_linear(ctx, x, w, with_bias ? b : NULL);
    char name[96], s1[64];
    asam_shape_str(x, s1, sizeof s1);
    snprintf(name, sizeof name, "linear %s -> %lld%s", s1, (long long)out,
             with_bias ? " + bias" : "");
    CHECK(y != NULL && y->ndim == nx && y->shape[nx - 1] == out, "%s: %s", name,
          asam_ctx_error(ctx));
    if (!y) return;
    int64_t R = x->numel / in_f;
    float *ref = malloc((size_t)y->numel * sizeof(float));
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = with_bias ? b->data[o] : 0;
            for (int64_t i = 0; i < in_f; i++)
                s += (double)x->data[r * in_f + i] * w->data[o * in_f + i];
            ref[r * out + o] = (float)s;
        }
    CHECK_CLOSE(y->data, ref, (size_t)y->numel, 1e-5, name);
    free(ref);
    asam_tensor *ins[3] = {x, w, b};
    int chk[3] = {1, 1, with_bias};
    gradcheck(ctx, name, f_linear, ins, with_bias ? 3 : 2, chk, with_bias ? (void *)1 : NULL, 1e-2f,
              200, 1e-3);
    asam_ctx_release(ctx, m);
}

/* ---- embedding ---- */

static const int64_t emb_ids[] = {3, 0, 3, 6, 1};

static asam_tensor *f_embedding(asam_ctx *ctx, asam_tensor **in, void *user) {
    return asam_embedding(ctx, in[0], emb_ids, 5);
}

static void check_embedding(asam_ctx *ctx) {
    asam_mark m = asam_ctx_mark(ctx);
    asam_tensor *w = rand_tensor(ctx, ASAM_SHAPE(7, 4), 6);
    asam_tensor *y = asam_embedding(ctx, w, emb_ids, 5);
    CHECK(y && y->shape[0] == 5 && y->shape[1] == 4, "embedding shape");
    if (y) {
        int same = 1;
        for (int i = 0; i < 5; i++)
            same &= memcmp(y->data + i * 4, w->data + emb_ids[i] * 4, 16) == 0;
        CHECK(same, "embedding rows");
        if (same) printf("ok   embedding rows\n");
    }
    asam_tensor *ins[1] = {w};
    int chk[1] = {1};
    gradcheck(ctx, "embedding (repeated ids)", f_embedding, ins, 1, chk, NULL, 1e-2f, 100, 1e-3);
    /* Bad ids fail cleanly. */
    int64_t bad[2] = {1, 7};
    CHECK(asam_embedding(ctx, w, bad, 2) == NULL && !asam_ctx_ok(ctx), "out-of-range id accepted");
    asam_ctx_clear_error(ctx);
    asam_ctx_release(ctx, m);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new((size_t)1 << 30);
    CHECK(ctx != NULL, "ctx");
    if (!ctx) return 1;
    /* plain 2-D, all four transpose combinations */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_matmul(ctx, 2, ta ? (int64_t[]){5, 4} : (int64_t[]){4, 5}, 2,
                         tb ? (int64_t[]){3, 5} : (int64_t[]){5, 3}, ta, tb);
    /* batched a with a shared 2-D b (the fused single-GEMM path), with and without trans_b */
    check_matmul(ctx, 3, (int64_t[]){3, 4, 6}, 2, (int64_t[]){6, 5}, 0, 0);
    check_matmul(ctx, 4, (int64_t[]){2, 3, 4, 6}, 2, (int64_t[]){5, 6}, 0, 1);
    /* same batch on both sides, transposes (attention-like q k^T, p v) */
    check_matmul(ctx, 4, (int64_t[]){2, 2, 5, 3}, 4, (int64_t[]){2, 2, 4, 3}, 0, 1);
    check_matmul(ctx, 3, (int64_t[]){3, 6, 4}, 3, (int64_t[]){3, 6, 5}, 1, 0);
    check_matmul(ctx, 3, (int64_t[]){3, 6, 4}, 3, (int64_t[]){3, 5, 6}, 1, 1);
    /* broadcast in both directions: a (2,1,4,3) x b (3,3,2): out (2,3,4,2); 2-D a, batched b */
    check_matmul(ctx, 4, (int64_t[]){2, 1, 4, 3}, 3, (int64_t[]){3, 3, 2}, 0, 0);
    check_matmul(ctx, 2, (int64_t[]){4, 3}, 3, (int64_t[]){2, 3, 5}, 0, 0);
    check_matmul(ctx, 3, (int64_t[]){1, 3, 4}, 3, (int64_t[]){3, 5, 3}, 1, 1);
    /* a larger one through the threaded path */
    check_matmul(ctx, 2, (int64_t[]){130, 70}, 2, (int64_t[]){70, 90}, 0, 0);
    /* thin products (<= 96 columns, >= 128 rows a thread) split by rows across the threads,
     * each part single-threaded (backend.c), A as stored and transposed */
    check_matmul(ctx, 2, (int64_t[]){300, 40}, 2, (int64_t[]){50, 40}, 0, 1);
    check_matmul(ctx, 2, (int64_t[]){40, 301}, 2, (int64_t[]){40, 96}, 1, 0);
    /* <= 64 columns with B as stored: each part on the tile GEMM, K in blocks of 1536 */
    check_matmul(ctx, 2, (int64_t[]){300, 1600}, 2, (int64_t[]){1600, 50}, 0, 0);
    check_matmul(ctx, 2, (int64_t[]){1700, 290}, 2, (int64_t[]){1700, 33}, 1, 0);

    check_linear(ctx, 2, (int64_t[]){5, 7}, 4, 1);
    check_linear(ctx, 2, (int64_t[]){5, 7}, 4, 0);
    check_linear(ctx, 3, (int64_t[]){2, 3, 6}, 5, 1);
    check_linear(ctx, 1, (int64_t[]){6}, 3, 1);

    check_embedding(ctx);

    /* shape errors are reported, not crashes */
    asam_tensor *a = asam_zeros(ctx, ASAM_SHAPE(3, 4)), *b = asam_zeros(ctx, ASAM_SHAPE(5, 2));
    CHECK(asam_matmul(ctx, a, b, 0, 0) == NULL && !asam_ctx_ok(ctx), "inner mismatch accepted");
    if (asam_ctx_error(ctx)) printf("ok   error: %s\n", asam_ctx_error(ctx));
    asam_ctx_clear_error(ctx);
    asam_tensor *a3 = asam_zeros(ctx, ASAM_SHAPE(2, 3, 4)),
                *b3 = asam_zeros(ctx, ASAM_SHAPE(3, 4, 2));
    CHECK(asam_matmul(ctx, a3, b3, 0, 0) == NULL && !asam_ctx_ok(ctx), "batch mismatch accepted");
    asam_ctx_clear_error(ctx);
    CHECK(asam_linear(ctx, a, b, NULL) == NULL && !asam_ctx_ok(ctx), "linear mismatch accepted");
    asam_ctx_clear_error(ctx);
    CHECK(asam_matmul(ctx, NULL, b, 0, 0) == NULL, "NULL input");
    asam_ctx_free(ctx);
    return test_finish("test_ops_matmul");
}
