/* The tensor table of an open checkpoint: the named tensors every format reader fills
 * (ckpt_add, ckpt_finish), the lookups on it, and dtype facts. The readers (safetensors.c,
 * torch_zip.c) and the front end (checkpoint.c) sit on it; it depends on neither. */
#include "io/checkpoint_internal.h"
#include "asam/error.h"

#include <cjson/cJSON.h>

#include <stdlib.h>
#include <string.h>

size_t asam_dtype_size(asam_dtype dt) {
    switch (dt) {
    case ASAM_DT_F64:
    case ASAM_DT_I64:
        return 8;
    case ASAM_DT_F32:
    case ASAM_DT_I32:
        return 4;
    case ASAM_DT_F16:
    case ASAM_DT_BF16:
    case ASAM_DT_I16:
        return 2;
    case ASAM_DT_I8:
    case ASAM_DT_U8:
    case ASAM_DT_BOOL:
        return 1;
    }
    return 0;
}

const char *asam_dtype_name(asam_dtype dt) {
    switch (dt) {
    case ASAM_DT_F32:
        return "F32";
    case ASAM_DT_F16:
        return "F16";
    case ASAM_DT_BF16:
        return "BF16";
    case ASAM_DT_F64:
        return "F64";
    case ASAM_DT_I64:
        return "I64";
    case ASAM_DT_I32:
        return "I32";
    case ASAM_DT_I16:
        return "I16";
    case ASAM_DT_I8:
        return "I8";
    case ASAM_DT_U8:
        return "U8";
    case ASAM_DT_BOOL:
        return "BOOL";
    }
    return "?";
}

int64_t ckpt_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
    }
    return n;
}

asam_ckpt_tensor *ckpt_add(asam_checkpoint *ck, const char *name) {
    if (ck->n == ck->cap) {
        size_t nc = ck->cap ? ck->cap * 2 : 64;
        asam_ckpt_tensor *nt = realloc(ck->t, nc * sizeof *nt);
        if (!nt) return asam_error("out of memory"), NULL;
        ck->t = nt;
        ck->cap = nc;
    }
    asam_ckpt_tensor *t = &ck->t[ck->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return asam_error("out of memory"), NULL;
    ck->n++;
    return t;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const asam_ckpt_tensor *const *)a)->name,
                  (*(const asam_ckpt_tensor *const *)b)->name);
}

int ckpt_finish(asam_checkpoint *ck) {
    size_t n = ck->n ? ck->n : 1;
    ck->by_name = malloc(n * sizeof *ck->by_name);
    const asam_ckpt_tensor **ptr = malloc(n * sizeof *ptr);
    if (!ck->by_name || !ptr) {
        free(ptr);
        return asam_error("out of memory");
    }
    for (size_t i = 0; i < ck->n; i++) ptr[i] = &ck->t[i];
    qsort(ptr, ck->n, sizeof *ptr, cmp_tensor_name);
    for (size_t i = 0; i < ck->n; i++) ck->by_name[i] = (size_t)(ptr[i] - ck->t);
    free(ptr);
    for (size_t i = 1; i < ck->n; i++) {
        const char *a = ck->t[ck->by_name[i - 1]].name, *b = ck->t[ck->by_name[i]].name;
        if (!strcmp(a, b)) return asam_error("duplicate tensor name '%s'", a);
    }
    return 0;
}

void ckpt_table_free(asam_checkpoint *ck) {
    for (size_t i = 0; i < ck->n; i++) free((char *)ck->t[i].name);
    free(ck->t);
    free(ck->by_name);
    for (size_t i = 0; i < 2 * ck->n_meta; i++) free(ck->meta[i]);
    free(ck->meta);
    ck->t = NULL;
    ck->by_name = NULL;
    ck->meta = NULL;
    ck->n = ck->cap = ck->n_meta = 0;
}

const char *asam_checkpoint_path(const asam_checkpoint *ck) {
    return ck->path;
}

const char *asam_checkpoint_format(const asam_checkpoint *ck) {
    return ck->format;
}

size_t asam_checkpoint_count(const asam_checkpoint *ck) {
    return ck->n;
}

const asam_ckpt_tensor *asam_checkpoint_get(const asam_checkpoint *ck, size_t i) {
    return i < ck->n ? &ck->t[i] : NULL;
}

const asam_ckpt_tensor *asam_checkpoint_find(const asam_checkpoint *ck, const char *name) {
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->t[ck->by_name[mid]].name, name);
        if (c == 0) return &ck->t[ck->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *asam_checkpoint_metadata(const asam_checkpoint *ck, const char *key) {
    for (size_t i = 0; i < ck->n_meta; i++)
        if (!strcmp(ck->meta[2 * i], key)) return ck->meta[2 * i + 1];
    return NULL;
}

asam_checkpoint *ckpt_new(const char *name) {
    if (!name) name = "<memory>";
    asam_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->path = strdup(name))) {
        free(ck);
        asam_error("%s: out of memory", name);
        return NULL;
    }
    return ck;
}

int asam_checkpoint_from_entries(const asam_st_entry *e, size_t n, const char *name,
                                 asam_checkpoint **out) {
    *out = NULL;
    asam_checkpoint *ck = ckpt_new(name);
    if (!ck) return -1;
    name = ck->path;
    ck->format = "memory";
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int64_t numel = e[i].ndim >= 0 && e[i].ndim <= ASAM_CKPT_MAX_DIMS
                            ? ckpt_numel(e[i].ndim, e[i].shape)
                            : -1;
        asam_ckpt_tensor *t = numel < 0 ? NULL : ckpt_add(ck, e[i].name);
        if (!t) {
            rc = numel < 0 ? asam_error("tensor '%s': bad shape", e[i].name) : -1;
            break;
        }
        t->dtype = e[i].dtype;
        t->ndim = e[i].ndim;
        int64_t stride = 1; /* contiguous */
        for (int d = t->ndim - 1; d >= 0; d--) {
            t->shape[d] = e[i].shape[d];
            t->stride[d] = stride;
            stride *= t->shape[d];
        }
        t->numel = numel;
        t->data = e[i].data;
    }
    if (!rc) rc = ckpt_finish(ck);
    if (rc) {
        asam_error_prefix(name);
        ckpt_table_free(ck);
        free(ck->path);
        free(ck);
        return -1;
    }
    *out = ck;
    return 0;
}

int ckpt_set_metadata(asam_checkpoint *ck, const cJSON *m, const char *what) {
    if (!cJSON_IsObject(m)) return asam_error("%s is not an object", what);
    size_t n = (size_t)cJSON_GetArraySize(m);
    ck->meta = calloc(2 * n + 1, sizeof *ck->meta);
    if (!ck->meta) return asam_error("out of memory");
    const cJSON *kv;
    cJSON_ArrayForEach(kv, m) {
        if (!cJSON_IsString(kv))
            return asam_error("%s value '%s' is not a string", what, kv->string);
        char *k = strdup(kv->string), *v = strdup(kv->valuestring);
        ck->meta[2 * ck->n_meta] = k;
        ck->meta[2 * ck->n_meta + 1] = v;
        ck->n_meta++;
        if (!k || !v) return asam_error("out of memory");
    }
    return 0;
}
