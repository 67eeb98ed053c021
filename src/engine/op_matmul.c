/* Matrix products: asam_matmul (batched, broadcast, transposes) and asam_linear, on sgemm (the
 * weight's products through asam_gemm_wb, which may hold it in bf16: backend.h). */
#include "engine/blas.h"
#include "engine/engine_internal.h"

#include <limits.h>
#include <string.h>

/* Batches whose single GEMM is below this many multiply-adds run one per thread (OpenBLAS's
 * OpenMP build runs single-threaded inside a parallel region); larger ones use all threads. */
#define SMALL_GEMM_MACS (INT64_C(1) << 22)
/* ... unless the whole batch is tiny: then a fork/join costs more than it saves. */
#define PAR_MIN_MACS (INT64_C(1) << 16)

/* ---- matmul -------------------------------------------------------------------------------- */

typedef struct {
    int64_t M, N, K, nbatch;
    int64_t *aoff, *boff;   /* (nbatch) offsets in floats of each batch's A and B matrix */
    int a_shared, b_shared; /* some batch dim of a (b) is broadcast: its gradient is summed */
    int fused; /* b shared by all of a's batches, !trans_a: one GEMM of nbatch*M rows */
    int ta, tb;
} matmul_info;

static void matmul_backward(asam_ctx *ctx, asam_node *n) {
    matmul_info *mi = n->saved;
    if (!mi) return; /* an empty product: nothing flows back */
    asam_tensor *a = n->in[0], *b = n->in[1];
    const float *dC = n->out->grad;
    float *dA = asam_grad_buf(ctx, a);
    float *dB = asam_grad_buf(ctx, b);
    int64_t M = mi->M, N = mi->N, K = mi->K;
    int ta = mi->ta, tb = mi->tb;
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (mi->fused) {
        int64_t Mf = M * mi->nbatch;
        /* dA (Mf, K) += dC (Mf, N) op(B)^T */
        if (dA) sgemm(0, !tb, Mf, K, N, 1.0f, dC, N, b->data, ldb, 1.0f, dA, K);
        if (dB) {
            if (!tb) /* dB (K, N) += A^T dC */
                sgemm(1, 0, K, N, Mf, 1.0f, a->data, K, dC, N, 1.0f, dB, N);
            else /* dB (N, K) += dC^T A */
                sgemm(1, 0, N, K, Mf, 1.0f, dC, N, a->data, K, 1.0f, dB, K);
        }
        return;
    }
    int64_t nb = mi->nbatch;
    int small = M * N * K < SMALL_GEMM_MACS && nb > 1 && nb * M * N * K >= PAR_MIN_MACS;
    int blas_nt = small ? blas_enter_parallel() : 0;
    if (dA) {
        /* d op(A) = dC op(B)^T; with trans_a, dA = op(B) dC^T. */
#pragma omp parallel for schedule(dynamic) if (small && !mi->a_shared)
        for (int64_t i = 0; i < nb; i++) {
            const float *Bm = b->data + mi->boff[i], *dCm = dC + i * M * N;
            float *dAm = dA + mi->aoff[i];
            if (!ta)
                sgemm(0, !tb, M, K, N, 1.0f, dCm, N, Bm, ldb, 1.0f, dAm, lda);
            else
                sgemm(tb, 1, K, M, N, 1.0f, Bm, ldb, dCm, N, 1.0f, dAm, lda);
        }
    }
    if (dB) {
        /* d op(B) = op(A)^T dC; with trans_b, dB = dC^T op(A). */
#pragma omp parallel for schedule(dynamic) if (small && !mi->b_shared)
        for (int64_t i = 0; i < nb; i++) {
            const float *Am = a->data + mi->aoff[i], *dCm = dC + i * M * N;
            float *dBm = dB + mi->boff[i];
            if (!tb)
                sgemm(!ta, 0, K, N, M, 1.0f, Am, lda, dCm, N, 1.0f, dBm, ldb);
            else
                sgemm(1, ta, N, K, M, 1.0f, dCm, N, Am, lda, 1.0f, dBm, ldb);
        }
    }
    blas_leave_parallel(blas_nt);
}

asam_tensor *asam_matmul(asam_ctx *ctx, asam_tensor *a, asam_tensor *b, int trans_a, int trans_b) {
    const char *op = "matmul";
    if (!a || !b) return NULL;
    if (!asam_check(ctx, a->ndim >= 2 && b->ndim >= 2, op, "needs 2+ dims, got %d and %d", a->ndim,
                    b->ndim))
        return NULL;
    int na = a->ndim, nbd = b->ndim;
    int64_t M = trans_a ? a->shape[na - 1] : a->shape[na - 2];
    int64_t K = trans_a ? a->shape[na - 2] : a->shape[na - 1];
    int64_t K2 = trans_b ? b->shape[nbd - 1] : b->shape[nbd - 2];
    int64_t N = trans_b ? b->shape[nbd - 2] : b->shape[nbd - 1];
    char sa[96], sb[96];
    asam_shape_str(a, sa, sizeof sa);
    asam_shape_str(b, sb, sizeof sb);
    /* A weight held in bf16 (asam_linear/conv's weights under ASAM_BF16) has no fp32 data. */
    if (!asam_check(ctx, a->data && b->data, op, "an operand is a weight held in bf16 only"))
        return NULL;
    if (!asam_check(ctx, K == K2, op, "inner dims differ: %s%s x %s%s", sa, trans_a ? "^T" : "", sb,
                    trans_b ? "^T" : ""))
        return NULL;
    if (!asam_check(ctx, M < INT_MAX && N < INT_MAX && K < INT_MAX, op, "matrix too large"))
        return NULL;
    /* Broadcast the batch dims (aligned to the right). */
    int nbo = (na > nbd ? na : nbd) - 2;
    int64_t oshape[ASAM_MAX_DIMS], sa_b[ASAM_MAX_DIMS], sb_b[ASAM_MAX_DIMS];
    int64_t stra = M * K, strb = K * N;
    for (int d = nbo - 1; d >= 0; d--) {
        int da = d - (nbo - (na - 2)), db = d - (nbo - (nbd - 2));
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (!asam_check(ctx, ea == eb || ea == 1 || eb == 1, op,
                        "batch dims of %s and %s do not broadcast", sa, sb))
            return NULL;
        oshape[d] = ea > eb ? ea : eb;
        sa_b[d] = ea == 1 ? 0 : stra;
        sb_b[d] = eb == 1 ? 0 : strb;
        stra *= ea;
        strb *= eb;
    }
    oshape[nbo] = M;
    oshape[nbo + 1] = N;
    asam_tensor *out = asam_op_out(ctx, nbo + 2, oshape);
    if (!out) return NULL;
    int64_t nbatch = asam_numel_of(nbo, oshape);
    int64_t na_mats = asam_numel_of(na - 2, a->shape), nb_mats = asam_numel_of(nbd - 2, b->shape);

    asam_tensor *ins[2] = {a, b};
    asam_node *node = asam_record(ctx, op, matmul_backward, out, 2, ins);
    /* Offsets live with the node when recording, else in scratch released at the end. */
    asam_mark mark = asam_ctx_mark(ctx);
    matmul_info *mi = asam_ctx_alloc(ctx, sizeof *mi);
    int64_t *offs = asam_ctx_alloc(ctx, (size_t)(2 * nbatch + 1) * sizeof(int64_t));
    if (!mi || !offs) return NULL;
    mi->M = M, mi->N = N, mi->K = K, mi->nbatch = nbatch, mi->ta = trans_a, mi->tb = trans_b;
    mi->aoff = offs, mi->boff = offs + nbatch;
    mi->a_shared = na_mats != nbatch;
    mi->b_shared = nb_mats != nbatch;
    mi->fused = !trans_a && nb_mats == 1 && na_mats == nbatch && M * nbatch < INT_MAX;
    for (int64_t i = 0; i < nbatch; i++) {
        int64_t rem = i, oa = 0, ob = 0;
        for (int d = nbo - 1; d >= 0; d--) {
            int64_t idx = rem % oshape[d];
            rem /= oshape[d];
            oa += idx * sa_b[d];
            ob += idx * sb_b[d];
        }
        mi->aoff[i] = oa;
        mi->boff[i] = ob;
    }

    int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
    if (M * N == 0) {
    } else if (K == 0) {
        memset(out->data, 0, (size_t)out->numel * sizeof(float));
    } else if (mi->fused) {
        sgemm(0, trans_b, M * nbatch, N, K, 1.0f, a->data, K, b->data, ldb, 0.0f, out->data, N);
    } else {
        int small = M * N * K < SMALL_GEMM_MACS && nbatch > 1 && nbatch * M * N * K >= PAR_MIN_MACS;
        int blas_nt = small ? blas_enter_parallel() : 0;
#pragma omp parallel for schedule(dynamic) if (small)
        for (int64_t i = 0; i < nbatch; i++)
            sgemm(trans_a, trans_b, M, N, K, 1.0f, a->data + mi->aoff[i], lda,
                  b->data + mi->boff[i], ldb, 0.0f, out->data + i * M * N, N);
        blas_leave_parallel(blas_nt);
    }
    if (node && M * N * K > 0)
        node->saved = mi;
    else
        asam_ctx_release(ctx, mark);
    return out;
}

/* ---- linear -------------------------------------------------------------------------------- */

/* Bias rows and bias gradients of at least this many values are shared out among the threads. */
#define LINEAR_PAR_MIN (1 << 16)

static void linear_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t R = n->ip[0], Din = n->ip[1], Dout = n->ip[2];
    const float *dy = n->out->grad;
    int fresh; /* dx's buffer is new: the product stores into it (no zeroing, no read) */
    float *dx = asam_grad_buf_fresh(ctx, x, &fresh);
    float *dw = asam_grad_buf(ctx, w);
    float *db = b ? asam_grad_buf(ctx, b) : NULL;
    if (R == 0) return;
    if (dx && fresh && Dout == 0) /* an empty product: dx is 0 */
        memset(dx, 0, (size_t)(R * Din) * sizeof(float));
    else if (dx) /* dy (R,Dout) @ w (Dout,Din) */
        asam_gemm_wb(0, 0, R, Din, Dout, 1.0f, dy, Dout, w, Din, fresh ? 0.0f : 1.0f, dx, Din);
    if (dw)
        sgemm(1, 0, Dout, Din, R, 1.0f, dy, Dout, x->data, Din, 1.0f, dw,
              Din); /* dy^T (Dout,R) @ x (R,Din) */
    if (db)         /* column blocks over the threads; each column sums its rows in order */
#pragma omp parallel for schedule(static) if (R * Dout >= LINEAR_PAR_MIN)
        for (int64_t o0 = 0; o0 < Dout; o0 += 64) {
            int64_t o1 = o0 + 64 < Dout ? o0 + 64 : Dout;
            for (int64_t r = 0; r < R; r++) {
                const float *row = dy + r * Dout;
                for (int64_t o = o0; o < o1; o++) db[o] += row[o];
            }
        }
}

asam_tensor *asam_linear(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b) {
    const char *op = "linear";
    if (!x || !w) return NULL;
    char sx[96], sw[96];
    asam_shape_str(x, sx, sizeof sx);
    asam_shape_str(w, sw, sizeof sw);
    if (!asam_check(ctx, x->ndim >= 1 && w->ndim == 2 && x->shape[x->ndim - 1] == w->shape[1], op,
                    "x %s does not match weight %s (out, in)", sx, sw))
        return NULL;
    int64_t Dout = w->shape[0], Din = w->shape[1];
    if (b &&
        !asam_check(ctx, b->ndim == 1 && b->shape[0] == Dout, op,
                    "bias of %lld values for %lld outputs", (long long)b->numel, (long long)Dout))
        return NULL;
    int64_t R = x->numel / (Din ? Din : 1);
    if (Din == 0) R = asam_numel_of(x->ndim - 1, x->shape);
    if (!asam_check(ctx, R < INT_MAX && Din < INT_MAX && Dout < INT_MAX, op, "matrix too large"))
        return NULL;
    int64_t oshape[ASAM_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) oshape[d] = x->shape[d];
    oshape[x->ndim - 1] = Dout;
    asam_tensor *out = asam_op_out(ctx, x->ndim, oshape);
    if (!out) return NULL;
    float *y = out->data;
    /* the backend's linear product where it has one (the bias added as the product is stored) */
    int fused =
        R && Dout && Din &&
        asam_gemm_wb_bias(R, Dout, Din, x->data, Din, w, Din, b ? b->data : NULL, y, Dout) == 0;
    if (b && !fused) /* the rows start as the bias; the product adds to them */
#pragma omp parallel for schedule(static) if (R * Dout >= LINEAR_PAR_MIN)
        for (int64_t r = 0; r < R; r++) memcpy(y + r * Dout, b->data, (size_t)Dout * sizeof(float));
    if (R && Dout && !fused) {
        if (Din)
            asam_gemm_wb(0, 1, R, Dout, Din, 1.0f, x->data, Din, w, Din, b ? 1.0f : 0.0f, y, Dout);
        else if (!b)
            memset(y, 0, (size_t)(R * Dout) * sizeof(float));
    }
    asam_tensor *ins[3] = {x, w, b};
    asam_node *n = asam_record(ctx, op, linear_backward, out, 3, ins);
    if (n) n->ip[0] = R, n->ip[1] = Din, n->ip[2] = Dout;
    return out;
}

asam_tensor *asam_linear_geglu(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b) {
    if (!x || !w) return NULL;
    asam_tensor *ins[3] = {x, w, b};
    int64_t Dout = w->ndim == 2 ? w->shape[0] : 0, Din = w->ndim == 2 ? w->shape[1] : 0;
    int fits = !asam_needs_record(ctx, b ? 3 : 2, ins) && x->ndim >= 1 &&
               x->shape[x->ndim - 1] == Din && Din > 0 && Dout > 0 && Dout % 2 == 0 &&
               (!b || (b->ndim == 1 && b->shape[0] == Dout)) && x->numel / Din < INT_MAX;
    if (fits) { /* inference: the backend's fused pass, where it has one */
        int64_t F = Dout / 2, R = x->numel / Din, oshape[ASAM_MAX_DIMS];
        for (int d = 0; d < x->ndim - 1; d++) oshape[d] = x->shape[d];
        oshape[x->ndim - 1] = F;
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *out = asam_op_out(ctx, x->ndim, oshape);
        if (out && asam_gemm_wb_geglu(R, F, Din, x->data, Din, w, Din, b ? b->data : NULL,
                                      out->data, F) == 0)
            return out;
        if (out) asam_ctx_release(ctx, m); /* the two ops below instead */
    }
    return asam_geglu(ctx, asam_linear(ctx, x, w, b));
}

int64_t asam_linear_many_fused = 0; /* calls that took the one-pass product (tests read it) */

int asam_linear_many(asam_ctx *ctx, asam_tensor *x, int n, asam_tensor *const *w,
                     asam_tensor *const *b, asam_tensor **out) {
    if (n < 1 || n > 4) return -1;
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!x) return -1;
    int64_t Din = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0, R = Din > 0 ? x->numel / Din : 0;
    int fits = Din > 0 && R > 0 && R < INT_MAX;
    asam_tensor *ins[9] = {x};
    for (int i = 0; i < n && fits; i++) {
        fits = w[i] && w[i]->ndim == 2 && w[i]->shape[1] == Din && w[i]->shape[0] > 0 &&
               (!b || !b[i] || (b[i]->ndim == 1 && b[i]->shape[0] == w[i]->shape[0]));
        ins[1 + 2 * i] = w[i], ins[2 + 2 * i] = b ? b[i] : NULL;
    }
    if (fits && !asam_needs_record(ctx, 1 + 2 * n, ins)) { /* inference: one pass over x */
        asam_mark m = asam_ctx_mark(ctx);
        const float *bias[4];
        float *C[4];
        int ok = 1;
        for (int i = 0; i < n && ok; i++) {
            int64_t shape[ASAM_MAX_DIMS];
            for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
            shape[x->ndim - 1] = w[i]->shape[0];
            out[i] = asam_op_out(ctx, x->ndim, shape);
            ok = out[i] != NULL;
            if (ok) C[i] = out[i]->data, bias[i] = b && b[i] ? b[i]->data : NULL;
        }
        if (ok && asam_gemm_wb_many(R, Din, x->data, Din, n, w, bias, C) == 0) {
#pragma omp atomic
            asam_linear_many_fused++;
            return 0;
        }
        asam_ctx_release(ctx, m); /* one by one below */
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        out[i] = asam_linear(ctx, x, w[i], b ? b[i] : NULL);
        if (!out[i]) rc = -1;
    }
    return rc;
}

asam_tensor *asam_linear_add(asam_ctx *ctx, asam_tensor *x, asam_tensor *w, asam_tensor *b,
                             asam_tensor *r) {
    if (!x || !w || !r) return NULL;
    asam_tensor *ins[4] = {x, w, b, r};
    int64_t Dout = w->ndim == 2 ? w->shape[0] : 0, Din = w->ndim == 2 ? w->shape[1] : 0;
    int fits = !asam_needs_record(ctx, 4, ins) && x->ndim >= 1 && x->ndim == r->ndim &&
               x->shape[x->ndim - 1] == Din && Din > 0 && Dout > 0 &&
               r->shape[r->ndim - 1] == Dout && (!b || (b->ndim == 1 && b->shape[0] == Dout)) &&
               x->numel / Din < INT_MAX;
    for (int d = 0; fits && d < x->ndim - 1; d++) fits = x->shape[d] == r->shape[d];
    if (fits) { /* inference: the product and the add in one pass */
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *out = asam_op_out(ctx, r->ndim, r->shape);
        if (out && asam_gemm_wb_add(x->numel / Din, Dout, Din, x->data, Din, w, Din,
                                    b ? b->data : NULL, r->data, out->data) == 0)
            return out;
        if (out) asam_ctx_release(ctx, m); /* the two ops below instead */
    }
    return asam_add(ctx, r, asam_linear(ctx, x, w, b));
}
