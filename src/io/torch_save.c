/* Writer of torch.save zip archives holding a plain state dict (collections.OrderedDict of
 * tensors rebuilt by torch._utils._rebuild_tensor_v2), loadable by torch.load (also with
 * weights_only=True: only OrderedDict, _rebuild_tensor_v2 and torch.*Storage are referenced).
 *
 * Layout: archive/data.pkl (pickle protocol 2), archive/byteorder ("little"),
 * archive/data/0 .. data/N-1 (one storage per tensor, payload 64-byte aligned through the local
 * header's extra field, as torch does), archive/version ("3"). Entries are stored; zip64
 * records are written when sizes or offsets need them. */
#include "io/checkpoint_internal.h"
#include "asam/error.h"
#include "asam/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PREFIX "archive"
#define ALIGN 64

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (b->n + n > nc) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_u8(buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    put(b, &c, 1);
}

static void put_le(buf *b, uint64_t v, int k) {
    uint8_t t[8];
    for (int i = 0; i < k; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)k);
}

/* ---- pickle (protocol 2) ---- */

static void pk_int(buf *b, int64_t v) {
    if (v >= 0 && v < 256) {
        put_u8(b, 'K'); /* BININT1 */
        put_u8(b, (unsigned)v);
    } else if (v >= 0 && v < 65536) {
        put_u8(b, 'M'); /* BININT2 */
        put_le(b, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put_u8(b, 'J'); /* BININT */
        put_le(b, (uint64_t)(uint32_t)(int32_t)v, 4);
    } else {
        put_u8(b, 0x8a); /* LONG1, 8 bytes two's complement */
        put_u8(b, 8);
        put_le(b, (uint64_t)v, 8);
    }
}

static void pk_str(buf *b, const char *s) {
    size_t n = strlen(s);
    put_u8(b, 'X'); /* BINUNICODE */
    put_le(b, n, 4);
    put(b, s, n);
}

static void pk_global(buf *b, const char *module, const char *name) {
    put_u8(b, 'c');
    put(b, module, strlen(module));
    put_u8(b, '\n');
    put(b, name, strlen(name));
    put_u8(b, '\n');
}

static void pk_tuple_of(buf *b, const int64_t *v, int n) {
    if (n == 0) {
        put_u8(b, ')');
        return;
    }
    if (n > 3) put_u8(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    put_u8(b, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
}

static void pk_put(buf *b, unsigned idx) {
    put_u8(b, 'q'); /* BINPUT (we use fewer than 256 memo slots) */
    put_u8(b, idx);
}

static void pk_get(buf *b, unsigned idx) {
    put_u8(b, 'h'); /* BINGET */
    put_u8(b, idx);
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
static void build_pickle(buf *b, const asam_st_entry *e, size_t n) {
    int have_rebuild = 0, have_storage[16] = {0};
    put_u8(b, 0x80);
    put_u8(b, 2);
    pk_global(b, "collections", "OrderedDict");
    pk_put(b, 0);
    put_u8(b, ')');
    put_u8(b, 'R');
    pk_put(b, 1);
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) put_u8(b, '('); /* SETITEMS in batches, as pickle does */
        pk_str(b, e[i].name);
        if (have_rebuild) {
            pk_get(b, 2);
        } else {
            pk_global(b, "torch._utils", "_rebuild_tensor_v2");
            pk_put(b, 2);
            have_rebuild = 1;
        }
        put_u8(b, '('); /* args of _rebuild_tensor_v2 */
        put_u8(b, '('); /* persistent id */
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
        put_u8(b, 't');
        put_u8(b, 'Q'); /* BINPERSID */
        pk_int(b, 0);   /* storage_offset */
        pk_tuple_of(b, e[i].shape, e[i].ndim);
        int64_t stride[ASAM_CKPT_MAX_DIMS], s = 1;
        for (int d = e[i].ndim - 1; d >= 0; d--) {
            stride[d] = s;
            s *= e[i].shape[d] ? e[i].shape[d] : 1;
        }
        pk_tuple_of(b, stride, e[i].ndim);
        put_u8(b, 0x89); /* requires_grad = False */
        pk_get(b, 0);    /* backward_hooks = OrderedDict() */
        put_u8(b, ')');
        put_u8(b, 'R');
        put_u8(b, 't');
        put_u8(b, 'R');
        if (i % 1000 == 999 || i == n - 1) put_u8(b, 'u');
    }
    put_u8(b, '.');
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
    buf h = {0};
    int z64 = w->force64 || r->size >= 0xffffffffu;
    size_t nlen = strlen(r->name);
    r->off = w->pos;
    r->crc = crc_of(data, r->size);
    uint64_t start = w->pos + 30 + nlen + (z64 ? 20 : 0) + 4;
    unsigned pad = (unsigned)((ALIGN - start % ALIGN) % ALIGN);
    put_le(&h, 0x04034b50u, 4);
    put_le(&h, z64 ? 45 : 20, 2); /* version needed */
    put_le(&h, 0, 2);             /* flags */
    put_le(&h, 0, 2);             /* stored */
    put_le(&h, 0, 4);             /* time, date */
    put_le(&h, r->crc, 4);
    put_le(&h, z64 ? 0xffffffffu : r->size, 4);
    put_le(&h, z64 ? 0xffffffffu : r->size, 4);
    put_le(&h, nlen, 2);
    put_le(&h, (z64 ? 20 : 0) + 4 + pad, 2);
    put(&h, r->name, nlen);
    if (z64) {
        put_le(&h, 1, 2);
        put_le(&h, 16, 2);
        put_le(&h, r->size, 8);
        put_le(&h, r->size, 8);
    }
    put_le(&h, 0x4246, 2); /* "FB": padding, as torch's writer uses */
    put_le(&h, pad, 2);
    for (unsigned i = 0; i < pad; i++) put_u8(&h, 'Z');
    if (h.oom) w->ok = 0;
    zw_write(w, h.p, h.n);
    free(h.p);
    zw_write(w, data, (size_t)r->size);
}

static void zw_central(zw *w, const rec *r, size_t n) {
    buf h = {0};
    uint64_t cd_off = w->pos;
    for (size_t i = 0; i < n; i++) {
        int zs = w->force64 || r[i].size >= 0xffffffffu, zo = w->force64 || r[i].off >= 0xffffffffu;
        size_t nlen = strlen(r[i].name);
        put_le(&h, 0x02014b50u, 4);
        put_le(&h, 45, 2); /* made by */
        put_le(&h, (zs || zo) ? 45 : 20, 2);
        put_le(&h, 0, 2);
        put_le(&h, 0, 2);
        put_le(&h, 0, 4);
        put_le(&h, r[i].crc, 4);
        put_le(&h, zs ? 0xffffffffu : r[i].size, 4);
        put_le(&h, zs ? 0xffffffffu : r[i].size, 4);
        put_le(&h, nlen, 2);
        put_le(&h, (zs || zo) ? 4 + 8 * (2 * zs + zo) : 0, 2);
        put_le(&h, 0, 2); /* comment */
        put_le(&h, 0, 2); /* disk */
        put_le(&h, 0, 2); /* internal attributes */
        put_le(&h, 0, 4); /* external attributes */
        put_le(&h, zo ? 0xffffffffu : r[i].off, 4);
        put(&h, r[i].name, nlen);
        if (zs || zo) {
            put_le(&h, 1, 2);
            put_le(&h, 8 * (2 * zs + zo), 2);
            if (zs) {
                put_le(&h, r[i].size, 8);
                put_le(&h, r[i].size, 8);
            }
            if (zo) put_le(&h, r[i].off, 8);
        }
    }
    uint64_t cd_size = h.n;
    int z64 = w->force64 || n >= 0xffff || cd_off >= 0xffffffffu || cd_size >= 0xffffffffu;
    if (z64) {
        uint64_t rec64 = cd_off + cd_size;
        put_le(&h, 0x06064b50u, 4);
        put_le(&h, 44, 8);
        put_le(&h, 45, 2);
        put_le(&h, 45, 2);
        put_le(&h, 0, 4);
        put_le(&h, 0, 4);
        put_le(&h, n, 8);
        put_le(&h, n, 8);
        put_le(&h, cd_size, 8);
        put_le(&h, cd_off, 8);
        put_le(&h, 0x07064b50u, 4); /* locator */
        put_le(&h, 0, 4);
        put_le(&h, rec64, 8);
        put_le(&h, 1, 4);
    }
    put_le(&h, 0x06054b50u, 4);
    put_le(&h, 0, 2);
    put_le(&h, 0, 2);
    put_le(&h, z64 ? 0xffff : n, 2);
    put_le(&h, z64 ? 0xffff : n, 2);
    put_le(&h, z64 ? 0xffffffffu : cd_size, 4);
    put_le(&h, z64 ? 0xffffffffu : cd_off, 4);
    put_le(&h, 0, 2);
    if (h.oom) w->ok = 0;
    zw_write(w, h.p, h.n);
    free(h.p);
}

int asam_torch_save_write_ex(const char *path, const asam_st_entry *entries, size_t n,
                             int force_zip64) {
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
    buf pkl = {0};
    build_pickle(&pkl, entries, n);
    rec *r = calloc(n + 3, sizeof *r);
    if (pkl.oom || !r) {
        free(pkl.p);
        free(r);
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
    snprintf(r[k].name, sizeof r[k].name, PREFIX "/version");
    r[k].size = 2;
    zw_entry(&w, &r[k++], "3\n");
    zw_central(&w, r, k);
    free(pkl.p);
    free(r);
    if (!w.ok) {
        int e = errno;
        asam_atomic_abort(&af);
        return asam_error("%s: write failed: %s", path, strerror(e));
    }
    return asam_atomic_commit(&af);
}

int asam_torch_save_write(const char *path, const asam_st_entry *entries, size_t n) {
    return asam_torch_save_write_ex(path, entries, n, 0);
}
