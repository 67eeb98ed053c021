/* bf16 GEMM on oneDNN's matmul primitive.
 *
 * Why oneDNN: on the AVX512-BF16 machine this was written on (AMD Zen 5, no AMX) its brgemm
 * bf16 matmul ran 1.6-2x faster than our own AVX512-BF16 micro-kernel (gemm_bf16.c), and on
 * CPUs with AMX it uses the tiles, which our kernel does not.
 *
 * Each call rounds A and B to bf16 into per-thread buffers (contiguous, transposes kept as
 * strides), then runs a matmul primitive made once per shape and kept in a small cache: the
 * primitive folds alpha in as an output scale and beta as a sum post-op on C. Primitive creation
 * JIT-compiles kernels, so the cache matters; shapes in a model repeat. */
#include "engine/gemm_onednn.h"
#include "engine/gemm_bf16.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_N 128

typedef struct {
    int64_t M, N, K, ldc;
    int ta, tb, bias;
    float alpha, beta;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t scratch; /* its scratchpad, supplied per thread by the caller */
} prim_entry;

static dnnl_engine_t engine;
static int engine_state; /* 0 not tried, 1 ready, -1 failed */
static prim_entry cache[CACHE_N];
static char impl_name[128];

/* Per-thread bf16 copies of A and B, grown as needed, kept for the next call. */
static _Thread_local uint16_t *tl_buf;
static _Thread_local size_t tl_cap;
static _Thread_local dnnl_stream_t tl_stream;
static _Thread_local void *tl_scratch;
static _Thread_local size_t tl_scratch_cap;

static int engine_ready(void) {
    int st;
#pragma omp critical(asam_onednn)
    {
        if (!engine_state) engine_state = dnnl_engine_create(&engine, dnnl_cpu, 0) ? -1 : 1;
        st = engine_state;
    }
    return st == 1;
}

static int md_2d(dnnl_memory_desc_t *md, int64_t r, int64_t c, int64_t sr, int64_t sc,
                 dnnl_data_type_t dt) {
    dnnl_dims_t dims = {r, c}, strides = {sr, sc};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides) ? -1 : 0;
}

/* A matmul primitive for this shape (made on a miss). Runs under the cache lock. */
static dnnl_primitive_t make_prim(int ta, int tb, int bias, int64_t M, int64_t N, int64_t K,
                                  float alpha, float beta, int64_t ldc,
                                  dnnl_memory_desc_t *scratch) {
    dnnl_memory_desc_t a, b, c, bm;
    if (md_2d(&a, M, K, ta ? 1 : K, ta ? M : 1, dnnl_bf16) ||
        md_2d(&b, K, N, tb ? 1 : N, tb ? K : 1, dnnl_bf16) || md_2d(&c, M, N, ldc, 1, dnnl_f32) ||
        md_2d(&bm, 1, N, N, 1, dnnl_f32))
        return NULL;
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &a, &b, bias ? &bm : NULL, &c)) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    if (dnnl_primitive_attr_create(&attr)) return NULL;
    /* A user scratchpad: with the library's own (one buffer shared by every thread in builds
     * without concurrent execution, as Debian's) two threads running primitives at once
     * corrupt each other's results. */
    int ok = !dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (ok && alpha != 1.0f) ok = !dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    if (ok && beta != 0.0f)
        ok = !dnnl_post_ops_create(&po) && !dnnl_post_ops_append_sum(po, beta) &&
             !dnnl_primitive_attr_set_post_ops(attr, po);
    if (ok) ok = !dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
    if (ok) {
        const char *impl = NULL;
        if (!impl_name[0] && !dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) &&
            impl)
            strncpy(impl_name, impl, sizeof impl_name - 1);
        const dnnl_memory_desc_t *smd =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (smd) *scratch = *smd;
        if (!smd || dnnl_primitive_create(&prim, pd)) prim = NULL;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return prim;
}

/* The cached primitive for this shape, made on a miss. When the cache is full the new one is
 * not cached (*owned = 1: the caller destroys it after use), so no primitive another thread
 * may be running is ever destroyed. */
static dnnl_primitive_t get_prim(int ta, int tb, int bias, int64_t M, int64_t N, int64_t K,
                                 float alpha, float beta, int64_t ldc, int *owned,
                                 dnnl_memory_desc_t *scratch) {
    dnnl_primitive_t prim = NULL;
    *owned = 0;
#pragma omp critical(asam_onednn)
    {
        int free_slot = -1;
        for (int i = 0; i < CACHE_N && !prim; i++) {
            prim_entry *e = &cache[i];
            if (!e->prim) {
                if (free_slot < 0) free_slot = i;
            } else if (e->M == M && e->N == N && e->K == K && e->ldc == ldc && e->ta == ta &&
                       e->tb == tb && e->bias == bias && e->alpha == alpha && e->beta == beta) {
                prim = e->prim;
                *scratch = e->scratch;
            }
        }
        if (!prim) {
            prim = make_prim(ta, tb, bias, M, N, K, alpha, beta, ldc, scratch);
            if (prim && free_slot >= 0)
                cache[free_slot] =
                    (prim_entry){M, N, K, ldc, ta, tb, bias, alpha, beta, prim, *scratch};
            else if (prim)
                *owned = 1;
        }
    }
    return prim;
}

static int gemm_run(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                    int64_t ldb, float beta, const float *bias, float *C, int64_t ldc);

int asam_gemm_onednn(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return asam_gemm_onednn_ex(ta, tb, M, N, K, alpha, A, NULL, lda, B, NULL, ldb, beta, C, ldc);
}

int asam_gemm_onednn_ex(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, const uint16_t *A16, int64_t lda, const float *B,
                        const uint16_t *B16, int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_run(ta, tb, M, N, K, alpha, A, A16, lda, B, B16, ldb, beta, NULL, C, ldc);
}

int asam_gemm_onednn_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, const uint16_t *B16, int64_t ldb, const float *bias,
                          float *C, int64_t ldc) {
    return gemm_run(0, 1, M, N, K, 1.0f, A, NULL, lda, B, B16, ldb, 0.0f, bias, C, ldc);
}

/* asam_gemm_onednn_ex, with bias (N values added to every row of C, beta 0) when non-NULL. */
static int gemm_run(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    const uint16_t *A16, int64_t lda, const float *B, const uint16_t *B16,
                    int64_t ldb, float beta, const float *bias, float *C, int64_t ldc) {
    if (!engine_ready()) return -1;
    int owned;
    dnnl_memory_desc_t smd;
    dnnl_primitive_t prim = get_prim(ta, tb, bias != NULL, M, N, K, alpha, beta, ldc, &owned, &smd);
    if (!prim) return -1;
    int rc = -1;
    size_t need = (size_t)((A16 ? 0 : M * K) + (B16 ? 0 : K * N));
    if (need > tl_cap) {
        uint16_t *p = realloc(tl_buf, need * sizeof *p);
        if (!p) goto done;
        tl_buf = p, tl_cap = need;
    }
    size_t sbytes = dnnl_memory_desc_get_size(&smd);
    if (sbytes > tl_scratch_cap) {
        void *p = realloc(tl_scratch, sbytes);
        if (!p) goto done;
        tl_scratch = p, tl_scratch_cap = sbytes;
    }
    if (!tl_stream && dnnl_stream_create(&tl_stream, engine, dnnl_stream_default_flags)) goto done;
    /* Stored layouts kept: op(A) = A^T is described by strides, not transposed here. An operand
     * given in bf16 (a weight held so) is used where it lies. */
    uint16_t *a16 = (uint16_t *)A16, *b16 = (uint16_t *)B16, *next = tl_buf;
    if (!a16) {
        a16 = next, next += M * K;
        asam_bf16_convert(A, ta ? K : M, ta ? M : K, lda, a16);
    }
    if (!b16) {
        b16 = next;
        asam_bf16_convert(B, tb ? N : K, tb ? K : N, ldb, b16);
    }
    dnnl_memory_desc_t ad, bd, cd, vd;
    md_2d(&ad, M, K, ta ? 1 : K, ta ? M : 1, dnnl_bf16);
    md_2d(&bd, K, N, tb ? 1 : N, tb ? K : 1, dnnl_bf16);
    md_2d(&cd, M, N, ldc, 1, dnnl_f32);
    md_2d(&vd, 1, N, N, 1, dnnl_f32);
    dnnl_memory_t am = NULL, bm = NULL, cm = NULL, sm = NULL, vm = NULL;
    if (!dnnl_memory_create(&am, &ad, engine, a16) && !dnnl_memory_create(&bm, &bd, engine, b16) &&
        !dnnl_memory_create(&cm, &cd, engine, C) &&
        !dnnl_memory_create(&sm, &smd, engine, tl_scratch) &&
        (!bias || !dnnl_memory_create(&vm, &vd, engine, (void *)bias))) {
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, am},
                                   {DNNL_ARG_WEIGHTS, bm},
                                   {DNNL_ARG_DST, cm},
                                   {DNNL_ARG_SCRATCHPAD, sm},
                                   {DNNL_ARG_BIAS, vm}};
        rc = dnnl_primitive_execute(prim, tl_stream, bias ? 5 : 4, args) ||
                     dnnl_stream_wait(tl_stream)
                 ? -1
                 : 0;
    }
    if (am) dnnl_memory_destroy(am);
    if (bm) dnnl_memory_destroy(bm);
    if (cm) dnnl_memory_destroy(cm);
    if (sm) dnnl_memory_destroy(sm);
    if (vm) dnnl_memory_destroy(vm);
done:
    if (owned) dnnl_primitive_destroy(prim);
    return rc;
}

const char *asam_onednn_impl(void) {
    if (!impl_name[0]) {
        float a[4] = {0}, c[4];
        if (asam_gemm_onednn(0, 0, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2)) return NULL;
    }
    return impl_name[0] ? impl_name : NULL;
}
