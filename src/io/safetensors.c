/* Safetensors: u64 little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {k: v}}, then the
 * raw little-endian data; offsets are relative to the end of the header. */
#include "io/bytebuf.h"
#include "io/checkpoint_internal.h"
#include "asam/error.h"
#include "asam/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

static int parse_dtype(const char *s, asam_dtype *dt) {
    static const struct {
        const char *name;
        asam_dtype dt;
    } tab[] = {{"F32", ASAM_DT_F32},  {"F16", ASAM_DT_F16}, {"BF16", ASAM_DT_BF16},
               {"F64", ASAM_DT_F64},  {"I64", ASAM_DT_I64}, {"I32", ASAM_DT_I32},
               {"I16", ASAM_DT_I16},  {"I8", ASAM_DT_I8},   {"U8", ASAM_DT_U8},
               {"BOOL", ASAM_DT_BOOL}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            return 0;
        }
    return -1;
}

/* A JSON number that is an exact non-negative integer (doubles hold integers to 2^53). */
static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *v = (uint64_t)d;
    return 0;
}

typedef struct {
    uint64_t begin, end;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses and validates the header into the tensor table. Long on purpose: the checks of an
 * untrusted header (length, JSON, each entry's dtype/shape/offsets, overlaps, coverage) read as
 * one sequence, each with its own error line. */
int ckpt_read_safetensors(asam_checkpoint *ck) {
    if (ck->size < 8) return asam_error("truncated safetensors file (%zu bytes)", ck->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ck->base[i];
    if (hlen > ST_MAX_HEADER)
        return asam_error("safetensors header length %llu is too large", (unsigned long long)hlen);
    if (hlen > ck->size - 8)
        return asam_error("truncated safetensors file: header of %llu bytes but only %zu follow",
                          (unsigned long long)hlen, ck->size - 8);
    const uint8_t *data = ck->base + 8 + hlen;
    uint64_t data_size = ck->size - 8 - hlen;

    /* Parse a NUL-terminated copy so the JSON parser can never read past the header. */
    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr) return asam_error("out of memory");
    memcpy(hdr, ck->base + 8, (size_t)hlen);
    hdr[hlen] = 0;
    cJSON *root = cJSON_ParseWithLength(hdr, (size_t)hlen);
    free(hdr);
    if (!root) return asam_error("safetensors header is not valid JSON");
    int rc = 0;
    span *spans = NULL;
    if (!cJSON_IsObject(root)) {
        rc = asam_error("safetensors header is not a JSON object");
        goto done;
    }
    size_t count = (size_t)cJSON_GetArraySize(root);
    spans = malloc((count ? count : 1) * sizeof *spans);
    if (!spans) {
        rc = asam_error("out of memory");
        goto done;
    }
    size_t ns = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (ck->meta) {
                rc = asam_error("duplicate __metadata__");
                goto done;
            }
            if ((rc = ckpt_set_metadata(ck, e, "__metadata__"))) goto done;
            continue;
        }
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        asam_dtype dtype;
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
            !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            rc = asam_error("tensor '%s': expected {dtype, shape, data_offsets[2]}", name);
            goto done;
        }
        if (parse_dtype(dt->valuestring, &dtype)) {
            rc = asam_error("tensor '%s': unsupported dtype '%s'", name, dt->valuestring);
            goto done;
        }
        int ndim = cJSON_GetArraySize(shape);
        if (ndim > ASAM_CKPT_MAX_DIMS) {
            rc = asam_error("tensor '%s': %d dimensions (at most %d supported)", name, ndim,
                            ASAM_CKPT_MAX_DIMS);
            goto done;
        }
        asam_ckpt_tensor *t = ckpt_add(ck, name);
        if (!t) {
            rc = -1;
            goto done;
        }
        t->dtype = dtype;
        t->ndim = ndim;
        int d = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, shape) {
            uint64_t v;
            if (json_uint(s, &v)) {
                if (cJSON_IsNumber(s) && s->valuedouble > 9007199254740992.0)
                    rc = asam_error("tensor '%s': shape entry %.17g overflows", name,
                                    s->valuedouble);
                else
                    rc = asam_error("tensor '%s': shape entries must be non-negative integers",
                                    name);
                goto done;
            }
            t->shape[d++] = (int64_t)v;
        }
        t->numel = ckpt_numel(ndim, t->shape);
        uint64_t nbytes;
        if (t->numel < 0 ||
            __builtin_mul_overflow((uint64_t)t->numel, (uint64_t)asam_dtype_size(dtype), &nbytes)) {
            rc = asam_error("tensor '%s': shape overflows", name);
            goto done;
        }
        int64_t stv = 1;
        for (int k = ndim - 1; k >= 0; k--) {
            t->stride[k] = stv;
            stv *= t->shape[k] ? t->shape[k] : 1; /* bounded by numel (no overflow) */
        }
        uint64_t b, en;
        if (json_uint(cJSON_GetArrayItem(offs, 0), &b) ||
            json_uint(cJSON_GetArrayItem(offs, 1), &en) || b > en) {
            rc = asam_error("tensor '%s': invalid data_offsets", name);
            goto done;
        }
        if (en > data_size) {
            rc = asam_error("tensor '%s': data_offsets [%llu, %llu] beyond the %llu data bytes "
                            "(truncated file?)",
                            name, (unsigned long long)b, (unsigned long long)en,
                            (unsigned long long)data_size);
            goto done;
        }
        if (en - b != nbytes) {
            rc = asam_error("tensor '%s': data_offsets span %llu bytes but %s%s needs %llu", name,
                            (unsigned long long)(en - b), asam_dtype_name(dtype),
                            ndim ? " shape" : " scalar", (unsigned long long)nbytes);
            goto done;
        }
        t->data = data + b;
        spans[ns].begin = b;
        spans[ns].end = en;
        spans[ns].idx = ck->n - 1;
        ns++;
    }
    /* No two tensors may share bytes. */
    qsort(spans, ns, sizeof *spans, cmp_span);
    for (size_t i = 1; i < ns; i++) {
        if (spans[i].begin < spans[i - 1].end) {
            rc = asam_error("tensors '%s' and '%s' overlap", ck->t[spans[i - 1].idx].name,
                            ck->t[spans[i].idx].name);
            goto done;
        }
    }
done:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

/* ---- writer ---- */

static void json_string(io_buf *b, const char *s) {
    io_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            io_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            io_put(b, esc, 6);
        } else {
            io_put(b, (const char *)&c, 1);
        }
    }
    io_put(b, "\"", 1);
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const asam_st_entry *const *)a)->name,
                  (*(const asam_st_entry *const *)b)->name);
}

int asam_safetensors_write(const char *path, const asam_st_entry *entries, size_t n,
                           const char *const *metadata, size_t n_meta) {
    const asam_st_entry **ord = malloc((n ? n : 1) * sizeof *ord);
    uint64_t *nbytes = malloc((n ? n : 1) * sizeof *nbytes);
    io_buf h = {0};
    int rc = 0;
    if (!ord || !nbytes) {
        rc = asam_error("%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) ord[i] = &entries[i];
    qsort(ord, n, sizeof *ord, cmp_entry_name);
    for (size_t i = 0; i < n; i++) {
        const asam_st_entry *e = ord[i];
        if (i && !strcmp(ord[i - 1]->name, e->name)) {
            rc = asam_error("%s: duplicate tensor name '%s'", path, e->name);
            goto done;
        }
        if (!strcmp(e->name, "__metadata__")) {
            rc = asam_error("%s: '__metadata__' is reserved", path);
            goto done;
        }
        int64_t numel =
            e->ndim >= 0 && e->ndim <= ASAM_CKPT_MAX_DIMS ? ckpt_numel(e->ndim, e->shape) : -1;
        if (numel < 0 || asam_dtype_size(e->dtype) == 0 ||
            __builtin_mul_overflow((uint64_t)numel, asam_dtype_size(e->dtype), &nbytes[i])) {
            rc = asam_error("%s: tensor '%s': invalid dtype or shape", path, e->name);
            goto done;
        }
    }
    io_put_str(&h, "{");
    if (n_meta) {
        io_put_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) io_put_str(&h, ",");
            json_string(&h, metadata[2 * i]);
            io_put_str(&h, ":");
            json_string(&h, metadata[2 * i + 1]);
        }
        io_put_str(&h, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const asam_st_entry *e = ord[i];
        char num[64];
        if (i || n_meta) io_put_str(&h, ",");
        json_string(&h, e->name);
        io_put_str(&h, ":{\"dtype\":\"");
        io_put_str(&h, asam_dtype_name(e->dtype));
        io_put_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            io_put_str(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nbytes[i]));
        io_put_str(&h, num);
        off += nbytes[i];
    }
    io_put_str(&h, "}");
    while (!h.oom && h.n % 8) io_put_str(&h, " ");
    if (h.oom) {
        rc = asam_error("%s: out of memory", path);
        goto done;
    }
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) {
        rc = -1;
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    int ok = fwrite(len8, 1, 8, af.fp) == 8 && fwrite(h.p, 1, h.n, af.fp) == h.n;
    int holes = 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (!nbytes[i]) continue;
        if (ord[i]->data) {
            ok = fwrite(ord[i]->data, 1, nbytes[i], af.fp) == nbytes[i];
        } else { /* zeros: skipped over, a hole in the file where the filesystem allows */
            ok = fseeko(af.fp, (off_t)nbytes[i], SEEK_CUR) == 0;
            holes = 1;
        }
    }
    if (ok && holes) /* a hole at the end needs the size set */
        ok = fflush(af.fp) == 0 && ftruncate(fileno(af.fp), (off_t)(8 + h.n + off)) == 0;
    if (!ok) {
        int e = errno;
        asam_atomic_abort(&af);
        rc = asam_error("%s: write failed: %s", path, strerror(e));
        goto done;
    }
    rc = asam_atomic_commit(&af);
done:
    free(ord);
    free(nbytes);
    free(h.p);
    return rc;
}
