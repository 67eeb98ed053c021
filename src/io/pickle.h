/* Restricted unpickler for torch.save's data.pkl. It never executes anything: GLOBAL yields a
 * named placeholder, and REDUCE/NEWOBJ only interpret a small whitelist (tensor rebuild,
 * OrderedDict, Parameter); every other call yields an opaque object. Internal header. */
#ifndef ASAM_IO_PICKLE_H
#define ASAM_IO_PICKLE_H

#include "asam/checkpoint.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,   /* unicode (UTF-8) */
    PK_BYTES, /* bytes / py2 str */
    PK_TUPLE,
    PK_LIST,
    PK_DICT, /* dict or OrderedDict; items = key, value, key, value, ... */
    PK_SET,
    PK_GLOBAL, /* "module.name" in s */
    PK_STORAGE,
    PK_TENSOR,
    PK_OPAQUE, /* result of calling something we do not interpret; s = callable's name */
} pk_type;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_type type;
    int64_t i; /* BOOL, INT */
    double f;
    char *s; /* STR, BYTES, GLOBAL, OPAQUE (NUL-terminated; len excludes it) */
    size_t len;
    pk_obj **items; /* TUPLE, LIST, DICT (2 per entry), SET, OPAQUE (absorbed items) */
    size_t n, cap;
    /* STORAGE: key (s), dtype, numel. TENSOR: storage, offset, ndim, shape, stride. */
    asam_dtype dtype;
    int64_t numel;
    pk_obj *storage;
    int64_t offset;
    int ndim;
    int64_t shape[ASAM_CKPT_MAX_DIMS];
    int64_t stride[ASAM_CKPT_MAX_DIMS];
};

typedef struct pk_ctx pk_ctx;

/* Parse a pickle. On success *root is owned by *ctx (free with pk_free). On failure returns -1
 * with an error message (no file name) and frees everything. */
int pk_load(const uint8_t *data, size_t n, pk_ctx **ctx, pk_obj **root);
void pk_free(pk_ctx *ctx);

#endif
