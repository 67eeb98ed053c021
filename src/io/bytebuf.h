/* A growable byte buffer for the writers that build a file in memory first (safetensors
 * header, torch.save pickle) and for tests that build malformed files. Internal to io (and
 * tests). After an allocation failure it stops growing and sets oom; the caller checks once. */
#ifndef ASAM_IO_BYTEBUF_H
#define ASAM_IO_BYTEBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p; /* always followed by a 0 byte once anything is written (text use) */
    size_t n, cap;
    int oom;
} io_buf;

static inline void io_put(io_buf *b, const void *s, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > nc) nc *= 2;
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
    b->p[b->n] = 0;
}

static inline void io_put_u8(io_buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    io_put(b, &c, 1);
}

/* v as k little-endian bytes */
static inline void io_put_le(io_buf *b, uint64_t v, int k) {
    uint8_t t[8];
    for (int i = 0; i < k; i++) t[i] = (uint8_t)(v >> (8 * i));
    io_put(b, t, (size_t)k);
}

static inline void io_put_str(io_buf *b, const char *s) {
    io_put(b, s, strlen(s));
}

#endif
