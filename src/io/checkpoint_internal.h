/* Internals shared by the checkpoint readers (safetensors.c, zip.c, pickle.c, torch_zip.c,
 * checkpoint.c). Not a public header. */
#ifndef ASAM_CHECKPOINT_INTERNAL_H
#define ASAM_CHECKPOINT_INTERNAL_H

#include "asam/checkpoint.h"

#include <stddef.h>
#include <stdint.h>

struct asam_checkpoint {
    char *path;         /* as given (or the memory buffer's name) */
    const char *format; /* "safetensors" | "torch-zip" */
    void *map;          /* mmap'ed file, NULL for a caller-owned memory buffer */
    size_t map_size;
    const uint8_t *base; /* whole file */
    size_t size;
    asam_ckpt_tensor *t; /* names are owned (malloc'ed) */
    size_t n, cap;
    size_t *by_name; /* indices sorted by name, for asam_checkpoint_find */
    char **meta;     /* key, value, key, value, ... (owned) */
    size_t n_meta;
};

/* ---- the tensor table (tensor_table.c) ---- */
/* An empty checkpoint named name (a path, or NULL: "<memory>"); NULL with the error set. */
asam_checkpoint *ckpt_new(const char *name);
/* Append a tensor (name copied). Returns the new entry or NULL (error set). */
asam_ckpt_tensor *ckpt_add(asam_checkpoint *ck, const char *name);
/* Sort the name index; fails on duplicate names. */
int ckpt_finish(asam_checkpoint *ck);
/* Metadata from a JSON object of strings (safetensors' __metadata__, a torch archive's
 * asam_metadata.json); what names it in errors. 0 or -1 (error set). */
struct cJSON;
int ckpt_set_metadata(asam_checkpoint *ck, const struct cJSON *m, const char *what);
/* Free the table (names, index, metadata); the struct and its mapping stay. */
void ckpt_table_free(asam_checkpoint *ck);

/* ---- format readers (safetensors.c, torch_zip.c) ----
 * Fill ck->t from ck->base/ck->size. Errors are reported without the path
 * (the front end prefixes it). */
int ckpt_read_safetensors(asam_checkpoint *ck);
int ckpt_read_torch_zip(asam_checkpoint *ck);

/* Overflow-safe element count of a shape; -1 on overflow or a negative dimension (table). */
int64_t ckpt_numel(int ndim, const int64_t *shape);

/* ---- zip (stored entries only) ---- */
typedef struct {
    const char *name; /* points into the archive (not NUL-terminated) */
    size_t name_len;
    const uint8_t *data; /* payload start, from the local header */
    uint64_t size;
} zip_entry;

typedef struct {
    zip_entry *e;
    size_t n;
    size_t *sorted; /* indices sorted by name */
} zip_archive;

int zip_open(zip_archive *z, const uint8_t *base, size_t size);
void zip_close(zip_archive *z);
/* NULL when absent. */
const zip_entry *zip_find(const zip_archive *z, const char *name, size_t name_len);

/* Writer used by torch_save.c; force_zip64 exercises the zip64 path on small files. */
int asam_torch_save_write_ex(const char *path, const asam_st_entry *entries, size_t n,
                             int force_zip64);

#endif
