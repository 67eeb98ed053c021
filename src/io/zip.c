/* Zip reader for torch.save archives: stored (uncompressed) entries only, zip64 aware. Every
 * offset and size read from the file is checked against the mapping before it is used. */
#include "io/checkpoint_internal.h"
#include "asam/error.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint64_t le(const uint8_t *p, int k) {
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* 1 if [off, off+len) lies within [0, size). */
static int in_bounds(uint64_t off, uint64_t len, size_t size) {
    return off <= size && len <= size - off;
}

static int cmp_entry(const void *a, const void *b) {
    const zip_entry *x = *(const zip_entry *const *)a, *y = *(const zip_entry *const *)b;
    size_t m = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, m);
    if (c) return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* Reads the zip64 extended-information extra field (id 1): the 64-bit values replace, in this
 * order, those 32-bit fields that hold 0xFFFFFFFF. */
static int zip64_extra(const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                       uint64_t *off) {
    size_t i = 0;
    while (i + 4 <= xlen) {
        unsigned id = (unsigned)le(x + i, 2), len = (unsigned)le(x + i + 2, 2);
        if (len > xlen - i - 4) return -1;
        if (id == 1) {
            const uint8_t *d = x + i + 4;
            size_t k = 0;
            uint64_t *fields[3] = {usize, csize, off};
            for (int f = 0; f < 3; f++) {
                if (!fields[f] || *fields[f] != 0xffffffffu) continue;
                if (k + 8 > len) return -1;
                *fields[f] = le(d + k, 8);
                k += 8;
            }
            return 0;
        }
        i += 4 + len;
    }
    return 0;
}

int zip_open(zip_archive *z, const uint8_t *base, size_t size) {
    memset(z, 0, sizeof *z);
    if (size < 22) return asam_error("truncated zip archive (no end of central directory)");
    /* The EOCD record sits at the end, followed by a comment of up to 65535 bytes. */
    size_t eocd = SIZE_MAX;
    size_t lo = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (size_t i = size - 22 + 1; i-- > lo;) {
        if (le(base + i, 4) == SIG_EOCD && i + 22 + le(base + i + 20, 2) <= size) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX)
        return asam_error("truncated zip archive (end of central directory not found)");
    uint64_t count = le(base + eocd + 10, 2), cd_size = le(base + eocd + 12, 4),
             cd_off = le(base + eocd + 16, 4);
    if (eocd >= 20 && le(base + eocd - 20, 4) == SIG_LOC64) {
        uint64_t r = le(base + eocd - 20 + 8, 8);
        if (!in_bounds(r, 56, size) || le(base + r, 4) != SIG_EOCD64)
            return asam_error("corrupt zip64 end of central directory");
        count = le(base + r + 32, 8);
        cd_size = le(base + r + 40, 8);
        cd_off = le(base + r + 48, 8);
    }
    if (!in_bounds(cd_off, cd_size, size))
        return asam_error("truncated zip archive (central directory out of range)");
    if (count > cd_size / 46) return asam_error("corrupt zip central directory (entry count)");
    z->e = calloc(count ? count : 1, sizeof *z->e);
    z->sorted = malloc((count ? count : 1) * sizeof *z->sorted);
    if (!z->e || !z->sorted) {
        zip_close(z);
        return asam_error("out of memory");
    }
    const uint8_t *cd = base + cd_off;
    uint64_t pos = 0;
    for (uint64_t k = 0; k < count; k++) {
        if (pos + 46 > cd_size || le(cd + pos, 4) != SIG_CENTRAL) {
            zip_close(z);
            return asam_error("corrupt zip central directory (entry %llu)", (unsigned long long)k);
        }
        const uint8_t *h = cd + pos;
        unsigned method = (unsigned)le(h + 10, 2);
        uint64_t csize = le(h + 20, 4), usize = le(h + 24, 4), off = le(h + 42, 4);
        size_t nlen = (size_t)le(h + 28, 2), xlen = (size_t)le(h + 30, 2),
               clen = (size_t)le(h + 32, 2);
        if (pos + 46 + nlen + xlen + clen > cd_size) {
            zip_close(z);
            return asam_error("corrupt zip central directory (entry %llu)", (unsigned long long)k);
        }
        const char *name = (const char *)h + 46;
        if (zip64_extra(h + 46 + nlen, xlen, &usize, &csize, &off)) {
            zip_close(z);
            return asam_error("corrupt zip64 extra field of '%.*s'", (int)nlen, name);
        }
        if (method != 0) {
            zip_close(z);
            return asam_error("zip entry '%.*s' is compressed (method %u); only stored entries "
                              "are supported",
                              (int)nlen, name, method);
        }
        if (csize != usize) {
            zip_close(z);
            return asam_error("zip entry '%.*s': stored entry with different sizes", (int)nlen,
                              name);
        }
        /* The payload starts after the LOCAL header, whose extra field (alignment padding)
         * may differ from the central directory's. */
        if (!in_bounds(off, 30, size) || le(base + off, 4) != SIG_LOCAL) {
            zip_close(z);
            return asam_error("zip entry '%.*s': local header out of range or corrupt", (int)nlen,
                              name);
        }
        uint64_t data = off + 30 + le(base + off + 26, 2) + le(base + off + 28, 2);
        if (!in_bounds(data, usize, size)) {
            zip_close(z);
            return asam_error("truncated zip archive: entry '%.*s' extends past the end of the "
                              "file",
                              (int)nlen, name);
        }
        zip_entry *e = &z->e[z->n++];
        e->name = name;
        e->name_len = nlen;
        e->data = base + data;
        e->size = usize;
        pos += 46 + nlen + xlen + clen;
    }
    const zip_entry **ptr = malloc((z->n ? z->n : 1) * sizeof *ptr);
    if (!ptr) {
        zip_close(z);
        return asam_error("out of memory");
    }
    for (size_t i = 0; i < z->n; i++) ptr[i] = &z->e[i];
    qsort(ptr, z->n, sizeof *ptr, cmp_entry);
    for (size_t i = 0; i < z->n; i++) z->sorted[i] = (size_t)(ptr[i] - z->e);
    free(ptr);
    return 0;
}

void zip_close(zip_archive *z) {
    free(z->e);
    free(z->sorted);
    memset(z, 0, sizeof *z);
}

const zip_entry *zip_find(const zip_archive *z, const char *name, size_t name_len) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const zip_entry *e = &z->e[z->sorted[mid]];
        size_t m = e->name_len < name_len ? e->name_len : name_len;
        int c = memcmp(e->name, name, m);
        if (!c) c = e->name_len < name_len ? -1 : e->name_len > name_len;
        if (!c) return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
