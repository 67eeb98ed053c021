/* The ctx: arena (one reserved virtual region with a bump pointer), error state, threads. */
#include "engine/engine_internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_ALIGN 64

void asam_set_threads(int n) {
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int asam_get_threads(void) {
    return omp_get_max_threads();
}

asam_ctx *asam_ctx_new(size_t reserve_bytes) {
    asam_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    size_t size = reserve_bytes ? reserve_bytes : ((size_t)256 << 30);
    /* Overcommit policies differ: shrink the reservation until the kernel accepts it. */
    for (; size >= ((size_t)64 << 20); size /= 2) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            ctx->base = p;
            ctx->reserved = size;
            break;
        }
        if (reserve_bytes) break;
    }
    if (!ctx->base) {
        free(ctx);
        return NULL;
    }
    ctx->grad_enabled = true;
    return ctx;
}

void asam_ctx_free(asam_ctx *ctx) {
    if (!ctx) return;
    munmap(ctx->base, ctx->reserved);
    free(ctx);
}

/* Pages stay mapped up to the arena's high-water mark until this is called: releases and
 * resets do not hand them back, because the next pass needs them again and a first touch
 * costs far more than the copy it serves (measured on a 2-core Zen 5 VM: the VAE decode at
 * 512 px took 28 s with its 1.9 GB faulted in afresh, 17 s with the pages kept). */
void asam_ctx_trim(asam_ctx *ctx) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t from = (ctx->top + page - 1) / page * page;
    if (from < ctx->touched) madvise(ctx->base + from, ctx->touched - from, MADV_DONTNEED);
    ctx->touched = from;
}

void asam_ctx_reset(asam_ctx *ctx) {
    ctx->top = 0;
    ctx->tape_tail = NULL;
    ctx->ckpt_floor = 0;
    ctx->error[0] = 0;
}

asam_mark asam_ctx_mark(asam_ctx *ctx) {
    return (asam_mark){ctx->top, ctx->tape_tail};
}

void asam_ctx_release(asam_ctx *ctx, asam_mark m) {
    if (m.offset > ctx->top) return; /* stale mark: nothing to free */
    ctx->top = m.offset;
    ctx->tape_tail = m.tape_tail;
}

void *asam_ctx_alloc(asam_ctx *ctx, size_t bytes) {
    size_t start = (ctx->top + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (bytes > ctx->reserved || start > ctx->reserved - bytes) {
        asam_ctx_fail(ctx, "out of memory: arena of %zu MiB cannot hold %zu more MiB",
                      ctx->reserved >> 20, bytes >> 20);
        return NULL;
    }
    ctx->top = start + bytes;
    if (ctx->top > ctx->peak) ctx->peak = ctx->top;
    if (ctx->top > ctx->touched) ctx->touched = ctx->top;
    return ctx->base + start;
}

asam_tensor *asam_ctx_release_keep(asam_ctx *ctx, asam_mark m, asam_tensor *keep) {
    if (!keep) {
        asam_ctx_release(ctx, m);
        return NULL;
    }
    asam_tensor hdr = *keep;
    uint8_t *old_data = (uint8_t *)keep->data;
    bool data_in_released = old_data >= ctx->base + m.offset && old_data < ctx->base + ctx->top;
    ctx->top = m.offset;
    ctx->tape_tail = m.tape_tail;
    asam_tensor *t = asam_ctx_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    *t = hdr;
    t->node = NULL;
    t->grad = NULL;
    t->base = NULL;
    if (data_in_released) {
        float *dst = asam_ctx_alloc(ctx, (size_t)hdr.numel * sizeof(float));
        if (!dst) return NULL;
        memmove(dst, old_data, (size_t)hdr.numel * sizeof(float)); /* dst <= old_data */
        t->data = dst;
    }
    return t;
}

size_t asam_ctx_used(const asam_ctx *ctx) {
    return ctx->top;
}

size_t asam_ctx_spare(const asam_ctx *ctx) {
    return ctx->touched > ctx->top ? ctx->touched - ctx->top : 0;
}

size_t asam_ctx_peak(const asam_ctx *ctx) {
    return ctx->peak;
}

void asam_ctx_reset_peak(asam_ctx *ctx) {
    ctx->peak = ctx->top;
}

int asam_ctx_set_grad(asam_ctx *ctx, int enabled) {
    int prev = ctx->grad_enabled;
    ctx->grad_enabled = enabled != 0;
    return prev;
}

int asam_ctx_set_checkpointing(asam_ctx *ctx, int enabled) {
    int prev = !ctx->checkpoint_off;
    ctx->checkpoint_off = !enabled;
    return prev;
}

int asam_ctx_grad_enabled(const asam_ctx *ctx) {
    return ctx->grad_enabled;
}

int asam_ctx_ok(const asam_ctx *ctx) {
    return ctx->error[0] == 0;
}

const char *asam_ctx_error(const asam_ctx *ctx) {
    return ctx->error[0] ? ctx->error : NULL;
}

asam_tensor *asam_ctx_fail(asam_ctx *ctx, const char *fmt, ...) {
    if (ctx->error[0]) return NULL; /* keep the first error: later ones are consequences */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    return NULL;
}

void asam_ctx_clear_error(asam_ctx *ctx) {
    ctx->error[0] = 0;
}

bool asam_check(asam_ctx *ctx, bool cond, const char *op, const char *fmt, ...) {
    if (cond) return true;
    if (ctx->error[0]) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ctx->error, sizeof ctx->error, "%s: %s", op, msg);
    return false;
}
