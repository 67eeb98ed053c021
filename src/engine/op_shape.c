/* Shape ops. reshape and slice0 are views (they share x's data; their backward adds the view's
 * gradient into x's). permute, transpose, slice, concat, pad and contiguous_copy copy through
 * one strided kernel. */
#include "engine/engine_internal.h"

#include <string.h>

#define PAR_MIN 32768

static void contiguous_strides(int nd, const int64_t *shape, int64_t *st) {
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        st[i] = s;
        s *= shape[i];
    }
}

/* dst[i] (=|+=) src[i] over an nd-dim index space with arbitrary element strides on both
 * sides. Dims of size 1 are dropped and dims that are contiguous in both merged, so the inner
 * loop is usually a plain copy. Rows of the index space run in parallel; callers guarantee
 * distinct rows write distinct dst elements. */
static void strided_op(int nd, const int64_t *shape, float *dst, const int64_t *ds,
                       const float *src, const int64_t *ss, int add) {
    int64_t sh[ASAM_MAX_DIMS], d[ASAM_MAX_DIMS], s[ASAM_MAX_DIMS];
    int m = 0;
    int64_t total = 1;
    for (int i = 0; i < nd; i++) {
        total *= shape[i];
        if (shape[i] == 1) continue;
        if (m > 0 && d[m - 1] == ds[i] * shape[i] && s[m - 1] == ss[i] * shape[i]) {
            sh[m - 1] *= shape[i];
            d[m - 1] = ds[i];
            s[m - 1] = ss[i];
        } else {
            sh[m] = shape[i];
            d[m] = ds[i];
            s[m] = ss[i];
            m++;
        }
    }
    if (total == 0) return;
    if (m == 0) {
        sh[0] = 1;
        d[0] = s[0] = 1;
        m = 1;
    }
    int64_t len = sh[m - 1], rows = total / len, dj = d[m - 1], sj = s[m - 1];
    /* A transpose (one side strided in the inner dim, unit-stride in another dim k): copy in
     * TB x TB tiles of (k, inner) so both sides stay within a few cache lines. */
    int k = -1;
    if (dj != 1 || sj != 1)
        for (int i = m - 2; i >= 0 && k < 0; i--)
            if ((dj != 1 && d[i] == 1) || (sj != 1 && s[i] == 1)) k = i;
    if (k >= 0) {
        enum { TB = 32 };
        int64_t nk = sh[k], dk = d[k], sk = s[k];
        int64_t tk = (nk + TB - 1) / TB, tj = (len + TB - 1) / TB, outer = total / (nk * len);
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int64_t t = 0; t < outer * tk * tj; t++) {
            int64_t rr = t / (tk * tj), k0 = (t / tj) % tk * TB, j0 = t % tj * TB;
            int64_t k1 = k0 + TB < nk ? k0 + TB : nk, j1 = j0 + TB < len ? j0 + TB : len;
            int64_t od = 0, os = 0;
            for (int i = m - 2; i >= 0; i--) {
                if (i == k) continue;
                int64_t q = rr % sh[i];
                rr /= sh[i];
                od += q * d[i];
                os += q * s[i];
            }
            for (int64_t a = k0; a < k1; a++) {
                float *restrict o = dst + od + a * dk;
                const float *restrict x = src + os + a * sk;
                if (add)
                    for (int64_t j = j0; j < j1; j++) o[j * dj] += x[j * sj];
                else
                    for (int64_t j = j0; j < j1; j++) o[j * dj] = x[j * sj];
            }
        }
        return;
    }
    /* long rows are cut into chunks so a few big rows still use every thread */
    int64_t chunk = len > 16384 ? 16384 : len, nchunk = (len + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int64_t t = 0; t < rows * nchunk; t++) {
        int64_t r = t / nchunk, j0 = (t % nchunk) * chunk;
        int64_t n = len - j0 < chunk ? len - j0 : chunk;
        int64_t rr = r, od = j0 * dj, os = j0 * sj;
        for (int i = m - 2; i >= 0; i--) {
            int64_t k = rr % sh[i];
            rr /= sh[i];
            od += k * d[i];
            os += k * s[i];
        }
        float *restrict o = dst + od;
        const float *restrict x = src + os;
        if (dj == 1 && sj == 1) {
            if (add)
                for (int64_t j = 0; j < n; j++) o[j] += x[j];
            else
                memcpy(o, x, (size_t)n * sizeof(float));
        } else if (add) {
            for (int64_t j = 0; j < n; j++) o[j * dj] += x[j * sj];
        } else {
            for (int64_t j = 0; j < n; j++) o[j * dj] = x[j * sj];
        }
    }
}

/* dst (=|+=) src over n contiguous floats, in parallel when large. */
static void flat_op(float *restrict dst, const float *restrict src, int64_t n, int add) {
    if (add) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t i = 0; i < n; i++) dst[i] += src[i];
    } else {
        int64_t nb = (n + 65535) / 65536;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (int64_t b = 0; b < nb; b++) {
            int64_t i0 = b * 65536, len = n - i0 < 65536 ? n - i0 : 65536;
            memcpy(dst + i0, src + i0, (size_t)len * sizeof(float));
        }
    }
}

/* ---- views ---------------------------------------------------------------------------------- */

static void view_backward(asam_ctx *ctx, asam_node *n) {
    /* a view of all of x (a reshape): its gradient becomes x's when x has none yet */
    if (n->ip[0] == 0 && n->out->numel == n->in[0]->numel &&
        asam_grad_alias(ctx, n->in[0], n->out->grad))
        return;
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    flat_op(gx + n->ip[0], n->out->grad, n->out->numel, 1);
}

static asam_tensor *make_view(asam_ctx *ctx, const char *op, asam_tensor *x, int ndim,
                              const int64_t *shape, int64_t offset) {
    if (!asam_ctx_ok(ctx)) return NULL;
    asam_tensor *v = asam_ctx_alloc(ctx, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++) v->shape[i] = shape[i];
    v->numel = asam_numel_of(ndim, shape);
    v->data = x->data + offset;
    v->base = x->base ? x->base : x;
    v->name = x->name;
    asam_node *n = asam_record(ctx, op, view_backward, v, 1, &x);
    if (n) n->ip[0] = offset;
    return v;
}

asam_tensor *asam_reshape(asam_ctx *ctx, asam_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (!asam_check(ctx, ndim >= 0 && ndim <= ASAM_MAX_DIMS && (shape || ndim == 0), "reshape",
                    "invalid shape (%d dims)", ndim))
        return NULL;
    int64_t sh[ASAM_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1) {
            if (!asam_check(ctx, infer < 0, "reshape", "more than one -1")) return NULL;
            infer = i;
        } else {
            if (!asam_check(ctx, shape[i] >= 0, "reshape", "negative size %lld",
                            (long long)shape[i]))
                return NULL;
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (!asam_check(ctx, known > 0 && x->numel % known == 0, "reshape",
                        "cannot infer -1 for %lld elements", (long long)x->numel))
            return NULL;
        sh[infer] = x->numel / known;
        known *= sh[infer];
    }
    if (known != x->numel) {
        char s[96];
        asam_shape_str(x, s, sizeof s);
        asam_check(ctx, false, "reshape", "%s has %lld elements, the new shape %lld", s,
                   (long long)x->numel, (long long)known);
        return NULL;
    }
    return make_view(ctx, "reshape", x, ndim, sh, 0);
}

asam_tensor *asam_slice0(asam_ctx *ctx, asam_tensor *x, int64_t start, int64_t end) {
    if (!x) return NULL;
    if (!asam_check(ctx, x->ndim >= 1, "slice0", "needs at least one dim")) return NULL;
    int64_t n0 = x->shape[0];
    if (!asam_check(ctx, start >= 0 && start <= end && end <= n0, "slice0",
                    "range [%lld, %lld) outside dim 0 of size %lld", (long long)start,
                    (long long)end, (long long)n0))
        return NULL;
    int64_t sh[ASAM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[0] = end - start;
    int64_t row = n0 ? x->numel / n0 : 0;
    return make_view(ctx, "slice0", x, x->ndim, sh, start * row);
}

/* ---- copies --------------------------------------------------------------------------------- */

static void copy_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (gx) flat_op(gx, n->out->grad, n->out->numel, 1);
}

asam_tensor *asam_contiguous_copy(asam_ctx *ctx, asam_tensor *x) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    flat_op(out->data, x->data, x->numel, 0);
    asam_record(ctx, "contiguous_copy", copy_backward, out, 1, &x);
    return out;
}

/* permute: out dim i is x dim perm[i]; perm kept in ip[0..nd) */
static void permute_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *out = n->out;
    int fresh; /* a permutation writes every element: a new buffer is stored into */
    float *gx = asam_grad_buf_fresh(ctx, x, &fresh);
    if (!gx) return;
    int64_t xs[ASAM_MAX_DIMS], ds[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xs);
    contiguous_strides(out->ndim, out->shape, os);
    for (int i = 0; i < out->ndim; i++) ds[i] = xs[n->ip[i]];
    strided_op(out->ndim, out->shape, gx, ds, out->grad, os, !fresh);
}

asam_tensor *asam_permute(asam_ctx *ctx, asam_tensor *x, const int *perm) {
    if (!x) return NULL;
    if (!asam_check(ctx, perm || x->ndim == 0, "permute", "no permutation given")) return NULL;
    int nd = x->ndim, p[ASAM_MAX_DIMS], seen[ASAM_MAX_DIMS] = {0};
    for (int i = 0; i < nd; i++) {
        p[i] = asam_norm_dim(perm[i], nd);
        if (!asam_check(ctx, p[i] >= 0 && !seen[p[i]], "permute",
                        "invalid permutation entry %d for %d dims", perm[i], nd))
            return NULL;
        seen[p[i]] = 1;
    }
    int64_t sh[ASAM_MAX_DIMS] = {0}, xs[ASAM_MAX_DIMS], ss[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS];
    contiguous_strides(nd, x->shape, xs);
    for (int i = 0; i < nd; i++) {
        sh[i] = x->shape[p[i]];
        ss[i] = xs[p[i]];
    }
    asam_tensor *out = asam_op_out(ctx, nd, sh);
    if (!out) return NULL;
    contiguous_strides(nd, sh, os);
    strided_op(nd, sh, out->data, os, x->data, ss, 0);
    asam_node *n = asam_record(ctx, "permute", permute_backward, out, 1, &x);
    if (n)
        for (int i = 0; i < nd; i++) n->ip[i] = p[i];
    return out;
}

asam_tensor *asam_transpose(asam_ctx *ctx, asam_tensor *x, int d0, int d1) {
    if (!x) return NULL;
    int a = asam_norm_dim(d0, x->ndim), b = asam_norm_dim(d1, x->ndim);
    if (!asam_check(ctx, a >= 0 && b >= 0, "transpose", "dims %d, %d out of range for %d dims", d0,
                    d1, x->ndim))
        return NULL;
    int perm[ASAM_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return asam_permute(ctx, x, perm);
}

/* slice along any dim: ip[0] = dim, ip[1] = start */
static void slice_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *out = n->out;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    int64_t xs[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS];
    contiguous_strides(x->ndim, x->shape, xs);
    contiguous_strides(out->ndim, out->shape, os);
    strided_op(out->ndim, out->shape, gx + n->ip[1] * xs[n->ip[0]], xs, out->grad, os, 1);
}

asam_tensor *asam_slice(asam_ctx *ctx, asam_tensor *x, int dim, int64_t start, int64_t end) {
    if (!x) return NULL;
    int d = asam_norm_dim(dim, x->ndim);
    if (!asam_check(ctx, d >= 0, "slice", "dim %d out of range for %d dims", dim, x->ndim))
        return NULL;
    int64_t size = x->shape[d];
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (!asam_check(ctx, start >= 0 && start <= end && end <= size, "slice",
                    "range [%lld, %lld) outside dim %d of size %lld", (long long)start,
                    (long long)end, d, (long long)size))
        return NULL;
    int64_t sh[ASAM_MAX_DIMS], xs[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[d] = end - start;
    asam_tensor *out = asam_op_out(ctx, x->ndim, sh);
    if (!out) return NULL;
    contiguous_strides(x->ndim, x->shape, xs);
    contiguous_strides(x->ndim, sh, os);
    strided_op(x->ndim, sh, out->data, os, x->data + start * xs[d], xs, 0);
    asam_node *n = asam_record(ctx, "slice", slice_backward, out, 1, &x);
    if (n) {
        n->ip[0] = d;
        n->ip[1] = start;
    }
    return out;
}

/* concat of up to ASAM_NODE_MAX_IN inputs along ip[0] */
static void concat_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *out = n->out;
    int d = (int)n->ip[0];
    int64_t os[ASAM_MAX_DIMS], off = 0;
    contiguous_strides(out->ndim, out->shape, os);
    for (int k = 0; k < n->n_in; k++) {
        asam_tensor *x = n->in[k];
        float *gx = asam_grad_buf(ctx, x);
        if (gx) {
            int64_t xs[ASAM_MAX_DIMS];
            contiguous_strides(x->ndim, x->shape, xs);
            strided_op(x->ndim, x->shape, gx, xs, out->grad + off * os[d], os, 1);
        }
        off += x->shape[d];
    }
}

static asam_tensor *concat_small(asam_ctx *ctx, asam_tensor *const *xs, int n, int d) {
    asam_tensor *x0 = xs[0];
    int64_t sh[ASAM_MAX_DIMS];
    memcpy(sh, x0->shape, sizeof sh);
    sh[d] = 0;
    for (int k = 0; k < n; k++) sh[d] += xs[k]->shape[d];
    asam_tensor *out = asam_op_out(ctx, x0->ndim, sh);
    if (!out) return NULL;
    int64_t os[ASAM_MAX_DIMS], off = 0;
    contiguous_strides(out->ndim, sh, os);
    for (int k = 0; k < n; k++) {
        int64_t ks[ASAM_MAX_DIMS];
        contiguous_strides(xs[k]->ndim, xs[k]->shape, ks);
        strided_op(xs[k]->ndim, xs[k]->shape, out->data + off * os[d], os, xs[k]->data, ks, 0);
        off += xs[k]->shape[d];
    }
    asam_node *node = asam_record(ctx, "concat", concat_backward, out, n, xs);
    if (node) node->ip[0] = d;
    return out;
}

asam_tensor *asam_concat(asam_ctx *ctx, asam_tensor *const *xs, int n, int dim) {
    if (!asam_check(ctx, n >= 1 && xs, "concat", "no inputs")) return NULL;
    for (int k = 0; k < n; k++)
        if (!xs[k]) return NULL;
    int nd = xs[0]->ndim, d = asam_norm_dim(dim, nd);
    if (!asam_check(ctx, d >= 0, "concat", "dim %d out of range for %d dims", dim, nd)) return NULL;
    for (int k = 1; k < n; k++) {
        bool ok = xs[k]->ndim == nd;
        for (int i = 0; ok && i < nd; i++) ok = i == d || xs[k]->shape[i] == xs[0]->shape[i];
        if (!ok) {
            char s0[96], sk[96];
            asam_shape_str(xs[0], s0, sizeof s0);
            asam_shape_str(xs[k], sk, sizeof sk);
            asam_check(ctx, false, "concat", "input %d %s does not match input 0 %s along dim %d",
                       k, sk, s0, d);
            return NULL;
        }
    }
    if (n <= ASAM_NODE_MAX_IN) return concat_small(ctx, xs, n, d);
    /* A node holds at most ASAM_NODE_MAX_IN inputs: concat in up to that many groups. */
    asam_tensor *parts[ASAM_NODE_MAX_IN];
    int per = (n + ASAM_NODE_MAX_IN - 1) / ASAM_NODE_MAX_IN, np = 0;
    for (int k = 0; k < n; k += per) {
        int cnt = n - k < per ? n - k : per;
        parts[np] = asam_concat(ctx, xs + k, cnt, d);
        if (!parts[np]) return NULL;
        np++;
    }
    return concat_small(ctx, parts, np, d);
}

/* pad: ip[] holds nothing; the before-offsets are recomputed from saved pads */
static void pad_backward(asam_ctx *ctx, asam_node *n) {
    asam_tensor *x = n->in[0], *out = n->out;
    float *gx = asam_grad_buf(ctx, x);
    if (!gx) return;
    const int64_t *pads = n->saved;
    int64_t xs[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS], off = 0;
    contiguous_strides(x->ndim, x->shape, xs);
    contiguous_strides(out->ndim, out->shape, os);
    for (int i = 0; i < x->ndim; i++) off += pads[2 * i] * os[i];
    strided_op(x->ndim, x->shape, gx, xs, out->grad + off, os, 1);
}

asam_tensor *asam_pad(asam_ctx *ctx, asam_tensor *x, const int64_t *pads, float value) {
    if (!x) return NULL;
    if (!asam_check(ctx, pads || x->ndim == 0, "pad", "no padding given")) return NULL;
    int nd = x->ndim;
    int64_t sh[ASAM_MAX_DIMS] = {0};
    for (int i = 0; i < nd; i++) {
        if (!asam_check(ctx, pads[2 * i] >= 0 && pads[2 * i + 1] >= 0, "pad",
                        "negative padding in dim %d", i))
            return NULL;
        sh[i] = x->shape[i] + pads[2 * i] + pads[2 * i + 1];
    }
    asam_tensor *out = asam_op_out(ctx, nd, sh);
    if (!out) return NULL;
    float *o = out->data;
    int64_t N = out->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) o[i] = value;
    int64_t xs[ASAM_MAX_DIMS], os[ASAM_MAX_DIMS], off = 0;
    contiguous_strides(nd, x->shape, xs);
    contiguous_strides(nd, sh, os);
    for (int i = 0; i < nd; i++) off += pads[2 * i] * os[i];
    strided_op(nd, x->shape, out->data + off, os, x->data, xs, 0);
    asam_node *n = asam_record(ctx, "pad", pad_backward, out, 1, &x);
    if (n) {
        int64_t *p = asam_ctx_alloc(ctx, (size_t)(2 * (nd ? nd : 1)) * sizeof(int64_t));
        if (!p) return NULL;
        memcpy(p, pads, (size_t)(2 * nd) * sizeof(int64_t));
        n->saved = p;
    }
    return out;
}
