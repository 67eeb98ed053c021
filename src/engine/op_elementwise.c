/* Elementwise binary ops with numpy broadcasting (add, sub, mul, div) and the scalar forms
 * (scale, add_scalar, axpby).
 *
 * Broadcasting is planned once per call: output dims of size 1 are dropped and adjacent dims
 * where each input is either full or broadcast in both are merged, so (N,C,H,W) + (C,1,1)
 * becomes [N][C][H*W] with b strides [0,1,0]. The innermost merged dim is then a plain loop
 * whose input strides are 0 or 1, which the compiler vectorises. */
#include "engine/engine_internal.h"

#include <omp.h>
#include <string.h>

#define PAR_MIN 32768 /* below this many elements threads cost more than they save */
#define CHUNK 8192    /* inner-loop work unit for the parallel loops */

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };
static const char *op_names[] = {"add", "sub", "mul", "div"};

typedef struct {
    int nd;                       /* merged dims, >= 1 */
    int64_t shape[ASAM_MAX_DIMS]; /* merged output shape */
    int64_t sa[ASAM_MAX_DIMS];    /* element strides of a (0 where broadcast) */
    int64_t sb[ASAM_MAX_DIMS];
    int64_t rows, len; /* product of all but the last merged dim; the last one */
} bc_plan;

/* Output shape of broadcasting a and b; false (error recorded) when incompatible. */
static bool bc_shape(asam_ctx *ctx, const char *op, const asam_tensor *a, const asam_tensor *b,
                     int *nd, int64_t *shape) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = a->ndim - n + i, ib = b->ndim - n + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            asam_shape_str(a, sa, sizeof sa);
            asam_shape_str(b, sb, sizeof sb);
            return asam_check(ctx, false, op, "shapes %s and %s do not broadcast", sa, sb);
        }
        shape[i] = da == 1 ? db : da;
    }
    *nd = n;
    return true;
}

static void bc_plan_make(bc_plan *p, int nd, const int64_t *shape, const asam_tensor *a,
                         const asam_tensor *b) {
    /* kind: 1 = the input spans this dim, 0 = broadcast along it */
    int64_t ms[ASAM_MAX_DIMS];
    int ka[ASAM_MAX_DIMS], kb[ASAM_MAX_DIMS], m = 0;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 1) continue;
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int fa = ia >= 0 && a->shape[ia] != 1, fb = ib >= 0 && b->shape[ib] != 1;
        if (m > 0 && ka[m - 1] == fa && kb[m - 1] == fb) {
            ms[m - 1] *= shape[i];
        } else {
            ms[m] = shape[i];
            ka[m] = fa;
            kb[m] = fb;
            m++;
        }
    }
    if (m == 0) { /* every dim is 1: one element each */
        ms[0] = 1;
        ka[0] = kb[0] = 1;
        m = 1;
    }
    int64_t ra = 1, rb = 1;
    for (int i = m - 1; i >= 0; i--) {
        p->shape[i] = ms[i];
        p->sa[i] = ka[i] ? ra : 0;
        p->sb[i] = kb[i] ? rb : 0;
        if (ka[i]) ra *= ms[i];
        if (kb[i]) rb *= ms[i];
    }
    p->nd = m;
    p->len = ms[m - 1];
    p->rows = 1;
    for (int i = 0; i < m - 1; i++) p->rows *= ms[i];
}

/* Offsets of row r (all merged dims but the last) in a and b. */
static inline void bc_row(const bc_plan *p, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t a = 0, b = 0;
    for (int i = p->nd - 2; i >= 0; i--) {
        int64_t k = r % p->shape[i];
        r /= p->shape[i];
        a += k * p->sa[i];
        b += k * p->sb[i];
    }
    *oa = a;
    *ob = b;
}

/* One inner run: o[j] = A op B for j < n, A/B strides 0 or 1. */
#define BC_LOOP(EXPR)                                                                              \
    do {                                                                                           \
        if (ia && ib)                                                                              \
            for (int64_t j = 0; j < n; j++) {                                                      \
                float x = a[j], y = b[j];                                                          \
                o[j] = EXPR;                                                                       \
            }                                                                                      \
        else if (ia) {                                                                             \
            float y = b[0];                                                                        \
            for (int64_t j = 0; j < n; j++) {                                                      \
                float x = a[j];                                                                    \
                o[j] = EXPR;                                                                       \
            }                                                                                      \
        } else if (ib) {                                                                           \
            float x = a[0];                                                                        \
            for (int64_t j = 0; j < n; j++) {                                                      \
                float y = b[j];                                                                    \
                o[j] = EXPR;                                                                       \
            }                                                                                      \
        } else {                                                                                   \
            float x = a[0], y = b[0];                                                              \
            for (int64_t j = 0; j < n; j++) o[j] = EXPR;                                           \
        }                                                                                          \
    } while (0)

static void run_inner(int op, float *restrict o, const float *restrict a, const float *restrict b,
                      int64_t n, int ia, int ib) {
    switch (op) {
    case OP_ADD:
        BC_LOOP(x + y);
        break;
    case OP_SUB:
        BC_LOOP(x - y);
        break;
    case OP_MUL:
        BC_LOOP(x * y);
        break;
    default:
        BC_LOOP(x / y);
        break;
    }
}

static void bc_forward(int op, const bc_plan *p, float *out, const float *a, const float *b) {
    int64_t nchunk = (p->len + CHUNK - 1) / CHUNK, tasks = p->rows * nchunk;
    int ia = p->sa[p->nd - 1] != 0, ib = p->sb[p->nd - 1] != 0;
#pragma omp parallel for schedule(static) if (p->rows * p->len >= PAR_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t r = t / nchunk, j0 = (t % nchunk) * CHUNK;
        int64_t j1 = j0 + CHUNK < p->len ? j0 + CHUNK : p->len;
        int64_t oa, ob;
        bc_row(p, r, &oa, &ob);
        run_inner(op, out + r * p->len + j0, a + oa + (ia ? j0 : 0), b + ob + (ib ? j0 : 0),
                  j1 - j0, ia, ib);
    }
}

typedef struct {
    int op;
    bc_plan plan;
} bc_saved;

/* Contribution of the output gradient to input `which` (0 = a, 1 = b) at each output element:
 * add: g, sub: g / -g, mul: g*b / g*a, div: g/b / -g*a/b^2. */
static void contrib_inner(int op, int which, float *restrict c, const float *restrict g,
                          const float *restrict a, const float *restrict b, int64_t n, int ia,
                          int ib) {
    switch (op * 2 + which) {
    case OP_ADD * 2 + 0:
    case OP_ADD * 2 + 1:
    case OP_SUB * 2 + 0:
        for (int64_t j = 0; j < n; j++) c[j] = g[j];
        break;
    case OP_SUB * 2 + 1:
        for (int64_t j = 0; j < n; j++) c[j] = -g[j];
        break;
    case OP_MUL * 2 + 0:
        if (ib)
            for (int64_t j = 0; j < n; j++) c[j] = g[j] * b[j];
        else
            for (int64_t j = 0; j < n; j++) c[j] = g[j] * b[0];
        break;
    case OP_MUL * 2 + 1:
        if (ia)
            for (int64_t j = 0; j < n; j++) c[j] = g[j] * a[j];
        else
            for (int64_t j = 0; j < n; j++) c[j] = g[j] * a[0];
        break;
    case OP_DIV * 2 + 0:
        if (ib)
            for (int64_t j = 0; j < n; j++) c[j] = g[j] / b[j];
        else
            for (int64_t j = 0; j < n; j++) c[j] = g[j] / b[0];
        break;
    default: /* d(a/b)/db = -a/b^2 */
        for (int64_t j = 0; j < n; j++) {
            float x = a[ia ? j : 0], y = b[ib ? j : 0];
            c[j] = -g[j] * x / (y * y);
        }
        break;
    }
}

/* Gradient for input `which`: full-size inputs accumulate in place (parallel, no conflicts);
 * broadcast ones get the contributions in a scratch buffer, then reduced over the broadcast
 * dims. Long on purpose: the four ops' gradient formulas sit side by side in the hot loops
 * (one specialised loop per case, so each vectorises). */
static void bc_backward_input(asam_ctx *ctx, int op, int which, const bc_plan *p, float *gx,
                              const float *g, const float *a, const float *b) {
    const int64_t *sx = which ? p->sb : p->sa;
    int64_t total = p->rows * p->len;
    int ia = p->sa[p->nd - 1] != 0, ib = p->sb[p->nd - 1] != 0;
    int full = 1;
    for (int i = 0; i < p->nd; i++) full &= sx[i] != 0;
    int64_t nchunk = (p->len + CHUNK - 1) / CHUNK, tasks = p->rows * nchunk;
    asam_mark mk = asam_ctx_mark(ctx);
    /* add/sub contribute +-g itself: reduce straight from g without a scratch copy */
    int direct = op == OP_ADD || op == OP_SUB;
    float sign = op == OP_SUB && which == 1 ? -1.0f : 1.0f;
    const float *tmp = g;
    if (!full && !direct) {
        float *t = asam_ctx_alloc(ctx, (size_t)total * sizeof(float));
        if (!t) return;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int64_t k = 0; k < tasks; k++) {
            int64_t r = k / nchunk, j0 = (k % nchunk) * CHUNK;
            int64_t j1 = j0 + CHUNK < p->len ? j0 + CHUNK : p->len;
            int64_t oa, ob;
            bc_row(p, r, &oa, &ob);
            contrib_inner(op, which, t + r * p->len + j0, g + r * p->len + j0,
                          a + oa + (ia ? j0 : 0), b + ob + (ib ? j0 : 0), j1 - j0, ia, ib);
        }
        tmp = t;
    }
    if (full) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int64_t k = 0; k < tasks; k++) {
            int64_t r = k / nchunk, j0 = (k % nchunk) * CHUNK;
            int64_t j1 = j0 + CHUNK < p->len ? j0 + CHUNK : p->len, n = j1 - j0;
            int64_t oa, ob;
            bc_row(p, r, &oa, &ob);
            float *dst = gx + r * p->len + j0; /* a full-size input is laid out like out */
            const float *gr = g + r * p->len + j0;
            if (direct) {
                for (int64_t j = 0; j < n; j++) dst[j] += sign * gr[j];
            } else {
                float c[CHUNK];
                contrib_inner(op, which, c, gr, a + oa + (ia ? j0 : 0), b + ob + (ib ? j0 : 0), n,
                              ia, ib);
                for (int64_t j = 0; j < n; j++) dst[j] += c[j];
            }
        }
        return;
    }
    if (!direct) sign = 1.0f;

    int ix = sx[p->nd - 1] != 0;
    int64_t nx = 1; /* elements of x */
    for (int i = 0; i < p->nd; i++)
        if (sx[i]) nx *= p->shape[i];
    int nt = total >= PAR_MIN ? omp_get_max_threads() : 1;
    if (ix && nt > 1 && nx * nt <= total) {
        /* x spans the inner dim (a bias): each thread sums its rows into its own copy of x's
         * gradient, then the copies are added up */
        float *part = asam_ctx_alloc(ctx, (size_t)(nx * nt) * sizeof(float));
        if (!part) return;
#pragma omp parallel num_threads(nt)
        {
            float *mine = part + (size_t)omp_get_thread_num() * (size_t)nx;
            memset(mine, 0, (size_t)nx * sizeof(float));
#pragma omp for schedule(static)
            for (int64_t r = 0; r < p->rows; r++) {
                int64_t oa, ob;
                bc_row(p, r, &oa, &ob);
                float *dst = mine + (which ? ob : oa);
                const float *src = tmp + r * p->len;
                for (int64_t j = 0; j < p->len; j++) dst[j] += src[j];
            }
#pragma omp for schedule(static)
            for (int64_t i = 0; i < nx; i++) {
                float acc = 0;
                for (int t = 0; t < nt; t++) acc += part[(size_t)t * (size_t)nx + (size_t)i];
                gx[i] += sign * acc;
            }
        }
    } else if (ix) {
        /* rows collide: split the work over columns instead */
        int64_t ncol = (p->len + 255) / 256;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int64_t cb = 0; cb < ncol; cb++) {
            int64_t j0 = cb * 256, j1 = j0 + 256 < p->len ? j0 + 256 : p->len;
            for (int64_t r = 0; r < p->rows; r++) {
                int64_t oa, ob;
                bc_row(p, r, &oa, &ob);
                float *dst = gx + (which ? ob : oa);
                const float *src = tmp + r * p->len;
                for (int64_t j = j0; j < j1; j++) dst[j] += sign * src[j];
            }
        }
    } else {
        /* x is broadcast along the inner dim: sum each row, then add the sums serially. */
        double *rs = asam_ctx_alloc(ctx, (size_t)p->rows * sizeof(double));
        if (!rs) return;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (int64_t r = 0; r < p->rows; r++) {
            double s = 0;
            const float *src = tmp + r * p->len;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < p->len; j++) s += src[j];
            rs[r] = sign * s;
        }
        for (int64_t r = 0; r < p->rows; r++) {
            int64_t oa, ob;
            bc_row(p, r, &oa, &ob);
            gx[which ? ob : oa] += (float)rs[r];
        }
    }
    asam_ctx_release(ctx, mk);
}

static void binary_backward(asam_ctx *ctx, asam_node *n) {
    bc_saved *s = n->saved;
    asam_tensor *a = n->in[0], *b = n->in[1];
    float *gb = a == b ? NULL : asam_grad_buf(ctx, b);
    if (gb) bc_backward_input(ctx, s->op, 1, &s->plan, gb, n->out->grad, a->data, b->data);
    /* a + b with a of the output's shape (a residual connection): a's gradient is the output's
     * itself when a has none yet (every consumer of the output has run, so nothing writes it
     * any more; b's share was read from it above) */
    if (s->op == OP_ADD && a != b && a->numel == n->out->numel &&
        asam_grad_alias(ctx, a, n->out->grad))
        return;
    float *ga = asam_grad_buf(ctx, a);
    if (ga) bc_backward_input(ctx, s->op, 0, &s->plan, ga, n->out->grad, a->data, b->data);
    if (a == b && ga) {
        /* same tensor on both sides: its gradient gets both contributions */
        bc_backward_input(ctx, s->op, 1, &s->plan, ga, n->out->grad, a->data, b->data);
    }
}

static asam_tensor *binary(asam_ctx *ctx, int op, asam_tensor *a, asam_tensor *b) {
    if (!a || !b) return NULL;
    int nd = 0;
    int64_t shape[ASAM_MAX_DIMS] = {0};
    if (!bc_shape(ctx, op_names[op], a, b, &nd, shape)) return NULL;
    asam_tensor *out = asam_op_out(ctx, nd, shape);
    if (!out) return NULL;
    bc_plan plan;
    bc_plan_make(&plan, nd, shape, a, b);
    if (out->numel) bc_forward(op, &plan, out->data, a->data, b->data);
    asam_tensor *ins[2] = {a, b};
    asam_node *n = asam_record(ctx, op_names[op], binary_backward, out, 2, ins);
    if (n) {
        bc_saved *s = asam_ctx_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        s->op = op;
        s->plan = plan;
        n->saved = s;
    }
    return out;
}

asam_tensor *asam_add(asam_ctx *ctx, asam_tensor *a, asam_tensor *b) {
    return binary(ctx, OP_ADD, a, b);
}
asam_tensor *asam_sub(asam_ctx *ctx, asam_tensor *a, asam_tensor *b) {
    return binary(ctx, OP_SUB, a, b);
}
asam_tensor *asam_mul(asam_ctx *ctx, asam_tensor *a, asam_tensor *b) {
    return binary(ctx, OP_MUL, a, b);
}
asam_tensor *asam_div(asam_ctx *ctx, asam_tensor *a, asam_tensor *b) {
    return binary(ctx, OP_DIV, a, b);
}

/* ---- scalar forms: out = fp[0] * x + fp[1] ------------------------------------------------- */

static void affine_backward(asam_ctx *ctx, asam_node *n) {
    float *gx = asam_grad_buf(ctx, n->in[0]);
    if (!gx) return;
    const float *g = n->out->grad;
    float s = n->fp[0];
    int64_t N = n->out->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) gx[i] += s * g[i];
}

static asam_tensor *affine(asam_ctx *ctx, const char *op, asam_tensor *x, float s, float c) {
    if (!x) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    const float *xd = x->data;
    float *o = out->data;
    int64_t N = x->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) o[i] = s * xd[i] + c;
    asam_node *n = asam_record(ctx, op, affine_backward, out, 1, &x);
    if (n) n->fp[0] = s;
    return out;
}

asam_tensor *asam_scale(asam_ctx *ctx, asam_tensor *x, float s) {
    return affine(ctx, "scale", x, s, 0.0f);
}

asam_tensor *asam_add_scalar(asam_ctx *ctx, asam_tensor *x, float s) {
    return affine(ctx, "add_scalar", x, 1.0f, s);
}

static void axpby_backward(asam_ctx *ctx, asam_node *n) {
    const float *g = n->out->grad;
    int64_t N = n->out->numel;
    for (int k = 0; k < 2; k++) {
        float *gx = asam_grad_buf(ctx, n->in[k]);
        if (!gx) continue;
        float s = n->fp[k];
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
        for (int64_t i = 0; i < N; i++) gx[i] += s * g[i];
    }
}

asam_tensor *asam_axpby(asam_ctx *ctx, float a, asam_tensor *x, float b, asam_tensor *y) {
    if (!x || !y) return NULL;
    if (!asam_check(ctx, asam_same_shape(x, y), "axpby", "x and y differ in shape")) return NULL;
    asam_tensor *out = asam_op_out(ctx, x->ndim, x->shape);
    if (!out) return NULL;
    const float *xd = x->data, *yd = y->data;
    float *o = out->data;
    int64_t N = x->numel;
#pragma omp parallel for schedule(static) if (N >= PAR_MIN)
    for (int64_t i = 0; i < N; i++) o[i] = a * xd[i] + b * yd[i];
    asam_tensor *ins[2] = {x, y};
    asam_node *n = asam_record(ctx, "axpby", axpby_backward, out, 2, ins);
    if (n) {
        n->fp[0] = a;
        n->fp[1] = b;
    }
    return out;
}
