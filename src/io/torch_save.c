/* Writer of torch.save zip archives holding a plain state dict (collections.OrderedDict of
 * tensors rebuilt by torch._utils._rebuild_tensor_v2), loadable by torch.load (also with
 * weights_only=True: only OrderedDict, _rebuild_tensor_v2 and torch.*Storage are referenced).
 *
 * Layout: archive/data.pkl (pickle protocol 2), archive/byteorder ("little"),
 * archive/data/0 .. data/N-1 (one storage per tensor, payload 64-byte aligned through the local
 * header's extra field, as torch does), archive/version ("3"). Entries are stored; zip64
 * records are written when sizes or offsets need them. */
#include "io/bytebuf.h"
#include "io/checkpoint_internal.h"
#include "asam/error.h"
#include "asam/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <zlib.h>

#define PREFIX "archive"
#define ALIGN 64

/* ---- pickle (protocol 2) ---- */

static void pk_int(io_buf *b, int64_t v) {
    if (v >= 0 && v < 256) {
        io_put_u8(b, 'K'); /* BININT1 */
        io_put_u8(b, (unsigned)v);
    } else if (v >= 0 && v < 65536) {
        io_put_u8(b, 'M'); /* BININT2 */
        io_put_le(b, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        io_put_u8(b, 'J'); /* BININT */
        io_put_le(b, (uint64_t)(uint32_t)(int32_t)v, 4);
    } else {
        io_put_u8(b, 0x8a); /* LONG1, 8 bytes two's complement */
        io_put_u8(b, 8);
        io_put_le(b, (uint64_t)v, 8);
    }
}

static void pk_str(io_buf *b, const char *s) {
    size_t n = strlen(s);
    io_put_u8(b, 'X'); /* BINUNICODE */
    io_put_le(b, n, 4);
    io_put(b, s, n);
}

static void pk_global(io_buf *b, const char *module, const char *name) {
    io_put_u8(b, 'c');
    io_put(b, module, strlen(module));
    io_put_u8(b, '\n');
    io_put(b, name, strlen(name));
    io_put_u8(b, '\n');
}

static void pk_tuple_of(io_buf *b, const int64_t *v, int n) {
    if (n == 0) {
        io_put_u8(b, ')');
        return;
    }
    if (n > 3) io_put_u8(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    io_put_u8(b, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
}

static void pk_put(io_buf *b, unsigned idx) {
    io_put_u8(b, 'q'); /* BINPUT (we use fewer than 256 memo slots) */
    io_put_u8(b, idx);
}

static void pk_get(io_buf *b, unsigned idx) {
    io_put_u8(b, 'h'); /* BINGET */
    io_put_u8(b, idx);
}

static const char *storage_class(asam_dtype dt) {
    switch (dt) {
    case ASAM_DT_F32:
        return "FloatStorage";
    case ASAM_DT_F16:
        return "HalfStorage";
    case ASAM_DT_BF16:
        return "BFloat16Storage";
    case ASAM_DT_F64:
        return "DoubleStorage";
    case ASAM_DT_I64:
        return "LongStorage";
    case ASAM_DT_I32:
        return "IntStorage";
    case ASAM_DT_I16:
        return "ShortStorage";
    case ASAM_DT_I8:
        return "CharStorage";
    case ASAM_DT_U8:
        return "ByteStorage";
    case ASAM_DT_BOOL:
        return "BoolStorage";
    }
    return NULL;
}

/* Memo slots: 0 OrderedDict, 1 the result dict, 2 _rebuild_tensor_v2, 3 + dtype storages. */
static void build_pickle(io_buf *b, const asam_st_entry *e, size_t n, const char *wrap_key) {
    int have_rebuild = 0, have_storage[16] = {0};
    io_put_u8(b, 0x80);
    io_put_u8(b, 2);
    if (wrap_key) { /* {wrap_key: OrderedDict}: EMPTY_DICT, key, ..., SETITEM */
        io_put_u8(b, '}');
        pk_str(b, wrap_key);
    }
    pk_global(b, "collections", "OrderedDict");
    pk_put(b, 0);
    io_put_u8(b, ')');
    io_put_u8(b, 'R');
    pk_put(b, 1);
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) io_put_u8(b, '('); /* SETITEMS in batches, as pickle does */
        pk_str(b, e[i].name);
        if (have_rebuild) {
            pk_get(b, 2);
        } else {
            pk_global(b, "torch._utils", "_rebuild_tensor_v2");
            pk_put(b, 2);
            have_rebuild = 1;
        }
        io_put_u8(b, '('); /* args of _rebuild_tensor_v2 */
        io_put_u8(b, '('); /* persistent id */
        pk_str(b, "storage");
        unsigned slot = 3 + (unsigned)e[i].dtype;
        if (have_storage[e[i].dtype]) {
            pk_get(b, slot);
        } else {
            pk_global(b, "torch", storage_class(e[i].dtype));
            pk_put(b, slot);
            have_storage[e[i].dtype] = 1;
        }
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        pk_str(b, key);
        pk_str(b, "cpu");
        pk_int(b, ckpt_numel(e[i].ndim, e[i].shape));
        io_put_u8(b, 't');
        io_put_u8(b, 'Q'); /* BINPERSID */
        pk_int(b, 0);      /* storage_offset */
        pk_tuple_of(b, e[i].shape, e[i].ndim);
        int64_t stride[ASAM_CKPT_MAX_DIMS], s = 1;
        for (int d = e[i].ndim - 1; d >= 0; d--) {
            stride[d] = s;
            s *= e[i].shape[d] ? e[i].shape[d] : 1;
        }
        pk_tuple_of(b, stride, e[i].ndim);
        io_put_u8(b, 0x89); /* requires_grad = False */
        pk_get(b, 0);       /* backward_hooks = OrderedDict() */
        io_put_u8(b, ')');
        io_put_u8(b, 'R');
        io_put_u8(b, 't');
        io_put_u8(b, 'R');
        if (i % 1000 == 999 || i == n - 1) io_put_u8(b, 'u');
    }
    if (wrap_key) io_put_u8(b, 's');
    io_put_u8(b, '.');
}

/* ---- zip ---- */

typedef struct {
    char name[64];
    uint64_t off, size;
    uint32_t crc;
} rec;

typedef struct {
    FILE *fp;
    uint64_t pos;
    int ok;
    int force64;
} zw;

static void zw_write(zw *w, const void *p, size_t n) {
    if (w->ok && n && fwrite(p, 1, n, w->fp) != n) w->ok = 0;
    w->pos += n;
}

static uint32_t crc_of(const void *p, uint64_t n) {
    uLong c = crc32(0, Z_NULL, 0);
    const uint8_t *s = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, s, k);
        s += k;
        n -= k;
    }
    return (uint32_t)c;
}

static void zw_entry(zw *w, rec *r, const void *data) {
    io_buf h = {0};
    int z64 = w->force64 || r->size >= 0xffffffffu;
    size_t nlen = strlen(r->name);
    r->off = w->pos;
    r->crc = crc_of(data, r->size);
    uint64_t start = w->pos + 30 + nlen + (z64 ? 20 : 0) + 4;
    unsigned pad = (unsigned)((ALIGN - start % ALIGN) % ALIGN);
    io_put_le(&h, 0x04034b50u, 4);
    io_put_le(&h, z64 ? 45 : 20, 2); /* version needed */
    io_put_le(&h, 0, 2);             /* flags */
    io_put_le(&h, 0, 2);             /* stored */
    io_put_le(&h, 0, 4);             /* time, date */
    io_put_le(&h, r->crc, 4);
    io_put_le(&h, z64 ? 0xffffffffu : r->size, 4);
    io_put_le(&h, z64 ? 0xffffffffu : r->size, 4);
    io_put_le(&h, nlen, 2);
    io_put_le(&h, (z64 ? 20 : 0) + 4 + pad, 2);
    io_put(&h, r->name, nlen);
    if (z64) {
        io_put_le(&h, 1, 2);
        io_put_le(&h, 16, 2);
        io_put_le(&h, r->size, 8);
        io_put_le(&h, r->size, 8);
    }
    io_put_le(&h, 0x4246, 2); /* "FB": padding, as torch's writer uses */
    io_put_le(&h, pad, 2);
    for (unsigned i = 0; i < pad; i++) io_put_u8(&h, 'Z');
    if (h.oom) w->ok = 0;
    zw_write(w, h.p, h.n);
    free(h.p);
    zw_write(w, data, (size_t)r->size);
}

static void zw_central(zw *w, const rec *r, size_t n) {
    io_buf h = {0};
    uint64_t cd_off = w->pos;
    for (size_t i = 0; i < n; i++) {
        int zs = w->force64 || r[i].size >= 0xffffffffu, zo = w->force64 || r[i].off >= 0xffffffffu;
        size_t nlen = strlen(r[i].name);
        io_put_le(&h, 0x02014b50u, 4);
        io_put_le(&h, 45, 2); /* made by */
        io_put_le(&h, (zs || zo) ? 45 : 20, 2);
        io_put_le(&h, 0, 2);
        io_put_le(&h, 0, 2);
        io_put_le(&h, 0, 4);
        io_put_le(&h, r[i].crc, 4);
        io_put_le(&h, zs ? 0xffffffffu : r[i].size, 4);
        io_put_le(&h, zs ? 0xffffffffu : r[i].size, 4);
        io_put_le(&h, nlen, 2);
        io_put_le(&h, (zs || zo) ? 4 + 8 * (2 * zs + zo) : 0, 2);
        io_put_le(&h, 0, 2); /* comment */
        io_put_le(&h, 0, 2); /* disk */
        io_put_le(&h, 0, 2); /* internal attributes */
        io_put_le(&h, 0, 4); /* external attributes */
        io_put_le(&h, zo ? 0xffffffffu : r[i].off, 4);
        io_put(&h, r[i].name, nlen);
        if (zs || zo) {
            io_put_le(&h, 1, 2);
            io_put_le(&h, 8 * (2 * zs + zo), 2);
            if (zs) {
                io_put_le(&h, r[i].size, 8);
                io_put_le(&h, r[i].size, 8);
            }
            if (zo) io_put_le(&h, r[i].off, 8);
        }
    }
    uint64_t cd_size = h.n;
    int z64 = w->force64 || n >= 0xffff || cd_off >= 0xffffffffu || cd_size >= 0xffffffffu;
    if (z64) {
        uint64_t rec64 = cd_off + cd_size;
        io_put_le(&h, 0x06064b50u, 4);
        io_put_le(&h, 44, 8);
        io_put_le(&h, 45, 2);
        io_put_le(&h, 45, 2);
        io_put_le(&h, 0, 4);
        io_put_le(&h, 0, 4);
        io_put_le(&h, n, 8);
        io_put_le(&h, n, 8);
        io_put_le(&h, cd_size, 8);
        io_put_le(&h, cd_off, 8);
        io_put_le(&h, 0x07064b50u, 4); /* locator */
        io_put_le(&h, 0, 4);
        io_put_le(&h, rec64, 8);
        io_put_le(&h, 1, 4);
    }
    io_put_le(&h, 0x06054b50u, 4);
    io_put_le(&h, 0, 2);
    io_put_le(&h, 0, 2);
    io_put_le(&h, z64 ? 0xffff : n, 2);
    io_put_le(&h, z64 ? 0xffff : n, 2);
    io_put_le(&h, z64 ? 0xffffffffu : cd_size, 4);
    io_put_le(&h, z64 ? 0xffffffffu : cd_off, 4);
    io_put_le(&h, 0, 2);
    if (h.oom) w->ok = 0;
    zw_write(w, h.p, h.n);
    free(h.p);
}

static int write_archive(const char *path, const asam_st_entry *entries, size_t n, int force_zip64,
                         const char *wrap_key, const char *const *metadata, size_t n_meta) {
    for (size_t i = 0; i < n; i++) {
        const asam_st_entry *e = &entries[i];
        if (e->ndim < 0 || e->ndim > ASAM_CKPT_MAX_DIMS || ckpt_numel(e->ndim, e->shape) < 0 ||
            !storage_class(e->dtype))
            return asam_error("%s: tensor '%s': invalid dtype or shape", path, e->name);
        uint64_t nb;
        if (__builtin_mul_overflow((uint64_t)ckpt_numel(e->ndim, e->shape),
                                   (uint64_t)asam_dtype_size(e->dtype), &nb))
            return asam_error("%s: tensor '%s': too large", path, e->name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(entries[j].name, e->name))
                return asam_error("%s: duplicate tensor name '%s'", path, e->name);
    }
    io_buf pkl = {0};
    build_pickle(&pkl, entries, n, wrap_key);
    char *meta_txt = NULL; /* asam_metadata.json: a JSON object of the metadata strings */
    if (n_meta) {
        cJSON *mj = cJSON_CreateObject();
        for (size_t i = 0; mj && i < n_meta; i++)
            if (!cJSON_AddStringToObject(mj, metadata[2 * i], metadata[2 * i + 1])) {
                cJSON_Delete(mj);
                mj = NULL;
            }
        meta_txt = mj ? cJSON_PrintUnformatted(mj) : NULL;
        cJSON_Delete(mj);
    }
    rec *r = calloc(n + 4, sizeof *r);
    if (pkl.oom || !r || (n_meta && !meta_txt)) {
        free(pkl.p);
        free(r);
        cJSON_free(meta_txt);
        return asam_error("%s: out of memory", path);
    }
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) {
        free(pkl.p);
        free(r);
        return -1;
    }
    zw w = {af.fp, 0, 1, force_zip64};
    size_t k = 0;
    snprintf(r[k].name, sizeof r[k].name, PREFIX "/data.pkl");
    r[k].size = pkl.n;
    zw_entry(&w, &r[k++], pkl.p);
    snprintf(r[k].name, sizeof r[k].name, PREFIX "/byteorder");
    r[k].size = 6;
    zw_entry(&w, &r[k++], "little");
    for (size_t i = 0; i < n; i++) {
        snprintf(r[k].name, sizeof r[k].name, PREFIX "/data/%zu", i);
        r[k].size = (uint64_t)ckpt_numel(entries[i].ndim, entries[i].shape) *
                    asam_dtype_size(entries[i].dtype);
        zw_entry(&w, &r[k++], entries[i].data);
    }
    if (meta_txt) { /* torch.load reads only the records it names: this one it leaves alone */
        snprintf(r[k].name, sizeof r[k].name, PREFIX "/asam_metadata.json");
        r[k].size = strlen(meta_txt);
        zw_entry(&w, &r[k++], meta_txt);
    }
    snprintf(r[k].name, sizeof r[k].name, PREFIX "/version");
    r[k].size = 2;
    zw_entry(&w, &r[k++], "3\n");
    zw_central(&w, r, k);
    free(pkl.p);
    free(r);
    cJSON_free(meta_txt);
    if (!w.ok) {
        int e = errno;
        asam_atomic_abort(&af);
        return asam_error("%s: write failed: %s", path, strerror(e));
    }
    return asam_atomic_commit(&af);
}

int asam_torch_save_write_ex(const char *path, const asam_st_entry *entries, size_t n,
                             int force_zip64) {
    return write_archive(path, entries, n, force_zip64, NULL, NULL, 0);
}

int asam_torch_save_write(const char *path, const asam_st_entry *entries, size_t n) {
    return write_archive(path, entries, n, 0, NULL, NULL, 0);
}

int asam_torch_save_write_meta(const char *path, const char *wrap_key, const asam_st_entry *entries,
                               size_t n, const char *const *metadata, size_t n_meta) {
    return write_archive(path, entries, n, 0, wrap_key, metadata, n_meta);
}

int asam_torch_save_write_wrapped(const char *path, const char *key, const asam_st_entry *entries,
                                  size_t n) {
    return write_archive(path, entries, n, 0, key, NULL, 0);
}
