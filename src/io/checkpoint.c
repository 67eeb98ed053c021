/* Checkpoint front end: opening a file or buffer (format detection, then the format's reader
 * fills the tensor table of tensor_table.c) and reading tensors with dtype conversion. */
#include "io/checkpoint_internal.h"
#include "asam/error.h"
#include "asam/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void asam_checkpoint_close(asam_checkpoint *ck) {
    if (!ck) return;
    ckpt_table_free(ck);
    if (ck->map) munmap(ck->map, ck->map_size);
    free(ck->path);
    free(ck);
}

static int starts_with(const uint8_t *p, size_t n, const char *magic, size_t m) {
    return n >= m && !memcmp(p, magic, m);
}

/* Detect the format of ck->base and parse it. Errors get the path prefixed. */
static int open_common(asam_checkpoint *ck) {
    const uint8_t *p = ck->base;
    size_t n = ck->size;
    int rc;
    if (n == 0) {
        rc = asam_error("empty file");
    } else if (starts_with(p, n, "PK\x03\x04", 4) || starts_with(p, n, "PK\x05\x06", 4) ||
               starts_with(p, n, "PK\x06\x06", 4)) {
        ck->format = "torch-zip";
        rc = ckpt_read_torch_zip(ck);
    } else if (n >= 9 && p[8] == '{') {
        /* Tested before the pickle magic: a safetensors header length such as 0x180 begins
         * with the bytes 80 01, which also look like a pickle PROTO opcode. */
        ck->format = "safetensors";
        rc = ckpt_read_safetensors(ck);
    } else if (n >= 2 && p[0] == 0x80 && p[1] >= 1 && p[1] <= 5) {
        /* A bare pickle: torch's legacy (pre-1.6) serialization, which starts with a pickled
         * magic number (0x1950a86a20f9469cfc6c) followed by more pickles and raw storages. */
        rc = asam_error("legacy (non-zip) torch format is not supported; re-save with "
                        "torch.save(..., _use_new_zipfile_serialization=True)");
    } else if (n >= 262 && !memcmp(p + 257, "ustar", 5)) {
        rc = asam_error("legacy tar torch format is not supported; re-save with torch.save");
    } else {
        rc = asam_error("unrecognised checkpoint format (neither safetensors nor a torch.save "
                        "zip archive)");
    }
    if (rc == 0) rc = ckpt_finish(ck);
    if (rc) return asam_error_prefix(ck->path);
    return 0;
}

int asam_checkpoint_open(const char *path, asam_checkpoint **out) {
    *out = NULL;
    asam_checkpoint *ck = ckpt_new(path);
    if (!ck) return -1;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        asam_checkpoint_close(ck);
        return asam_error("%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        asam_checkpoint_close(ck);
        return asam_error("%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            asam_checkpoint_close(ck);
            return asam_error("%s: mmap failed: %s", path, strerror(e));
        }
        ck->map = m;
        ck->map_size = (size_t)st.st_size;
        ck->base = m;
        ck->size = (size_t)st.st_size;
    }
    close(fd);
    if (open_common(ck)) {
        asam_checkpoint_close(ck);
        return -1;
    }
    *out = ck;
    return 0;
}

int asam_checkpoint_open_memory(const void *data, size_t n, const char *name,
                                asam_checkpoint **out) {
    *out = NULL;
    asam_checkpoint *ck = ckpt_new(name);
    if (!ck) return -1;
    ck->base = data;
    ck->size = n;
    if (open_common(ck)) {
        asam_checkpoint_close(ck);
        return -1;
    }
    *out = ck;
    return 0;
}

/* ---- element conversion ---- */

static int64_t load_elem_i(asam_dtype dt, const uint8_t *p) {
    switch (dt) {
    case ASAM_DT_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    case ASAM_DT_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case ASAM_DT_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case ASAM_DT_I8:
        return (int8_t)p[0];
    case ASAM_DT_U8:
        return p[0];
    case ASAM_DT_BOOL:
        return p[0] != 0;
    default:
        return 0;
    }
}

static double load_elem_f(asam_dtype dt, const uint8_t *p) {
    switch (dt) {
    case ASAM_DT_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case ASAM_DT_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return asam_f16_to_f32(h);
    }
    case ASAM_DT_BF16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return asam_bf16_to_f32(h);
    }
    case ASAM_DT_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    default: /* integer and bool dtypes */
        return (double)load_elem_i(dt, p);
    }
}

static int is_contiguous(const asam_ckpt_tensor *t) {
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0;
        expect *= t->shape[d];
    }
    return 1;
}

/* Visit every element in row-major order; calls fn(ctx, i, ptr). Strides were bounds-checked
 * when the checkpoint was opened. */
typedef void (*elem_fn)(void *ctx, int64_t i, const uint8_t *p, asam_dtype dt);
static void for_each_elem(const asam_ckpt_tensor *t, elem_fn fn, void *ctx) {
    size_t es = asam_dtype_size(t->dtype);
    if (t->numel == 0) return;
    if (is_contiguous(t)) {
        for (int64_t i = 0; i < t->numel; i++) fn(ctx, i, t->data + (size_t)i * es, t->dtype);
        return;
    }
    int64_t idx[ASAM_CKPT_MAX_DIMS] = {0};
    int64_t off = 0; /* element offset of idx */
    for (int64_t i = 0; i < t->numel; i++) {
        fn(ctx, i, t->data + (size_t)off * es, t->dtype);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                off += t->stride[d];
                break;
            }
            off -= (idx[d] - 1) * t->stride[d];
            idx[d] = 0;
        }
    }
}

static void put_f32(void *ctx, int64_t i, const uint8_t *p, asam_dtype dt) {
    ((float *)ctx)[i] = (float)load_elem_f(dt, p);
}
static void put_i64(void *ctx, int64_t i, const uint8_t *p, asam_dtype dt) {
    ((int64_t *)ctx)[i] = load_elem_i(dt, p);
}
typedef struct {
    uint8_t *dst;
    size_t es;
} raw_ctx;
static void put_raw(void *ctx, int64_t i, const uint8_t *p, asam_dtype dt) {
    raw_ctx *r = ctx;
    memcpy(r->dst + (size_t)i * r->es, p, r->es);
}

/* A contiguous tensor just copied out of a file mapping: hand its pages back (those it covers
 * whole), so loading a model does not hold the file's pages and the weights at once (the load
 * peak was file + weights). Read-only private file pages: a later read faults them in again
 * from the page cache, so nothing is lost. A caller's memory buffer is left alone. */
static void drop_pages(const asam_checkpoint *ck, const asam_ckpt_tensor *t, size_t bytes) {
    if (!ck->map || !bytes) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)t->data;
    uintptr_t lo = (a + page - 1) / page * page, hi = (a + bytes) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int asam_ckpt_read_f32(const asam_checkpoint *ck, const asam_ckpt_tensor *t, float *dst) {
    if (t->dtype == ASAM_DT_F32 && is_contiguous(t)) {
        if (t->numel) memcpy(dst, t->data, (size_t)t->numel * 4);
        drop_pages(ck, t, (size_t)t->numel * 4);
        return 0;
    }
    if (t->dtype == ASAM_DT_F16 && is_contiguous(t)) {
        const uint8_t *p = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = asam_f16_to_f32(h);
        }
        drop_pages(ck, t, (size_t)t->numel * 2);
        return 0;
    }
    for_each_elem(t, put_f32, dst);
    return 0;
}

int asam_ckpt_read_i64(const asam_checkpoint *ck, const asam_ckpt_tensor *t, int64_t *dst) {
    switch (t->dtype) {
    case ASAM_DT_F32:
    case ASAM_DT_F16:
    case ASAM_DT_BF16:
    case ASAM_DT_F64:
        return asam_error("%s: tensor '%s' is %s, not an integer tensor", ck->path, t->name,
                          asam_dtype_name(t->dtype));
    default:
        break;
    }
    for_each_elem(t, put_i64, dst);
    return 0;
}

int asam_ckpt_read_raw(const asam_checkpoint *ck, const asam_ckpt_tensor *t, void *dst) {
    raw_ctx r = {dst, asam_dtype_size(t->dtype)};
    if (is_contiguous(t)) {
        if (t->numel) memcpy(dst, t->data, (size_t)t->numel * r.es);
        return 0;
    }
    for_each_elem(t, put_raw, &r);
    return 0;
}
