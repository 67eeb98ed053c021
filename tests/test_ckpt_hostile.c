/* Hostile torch.save archives (issue 16, item 4): a ~0.3 MB file whose pickle memo repeats one
 * dict of 2,000 tensor views under 20,000 keys would flatten to 40 million named tensors
 * (several GB). The loader must refuse it quickly with one message and bounded memory. Also:
 * a shape entry beyond 64 bits gets its own message. The archive is built here (stored zip,
 * hand-written pickle) so the regression needs no data file. */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "test_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 1024;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void u8(buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    put(b, &c, 1);
}
static void le(buf *b, uint64_t v, int k) {
    for (int i = 0; i < k; i++) u8(b, (unsigned)(v >> (8 * i)) & 255);
}
static void ustr(buf *b, const char *s) { /* BINUNICODE */
    u8(b, 'X');
    le(b, strlen(s), 4);
    put(b, s, strlen(s));
}

/* {k0: D, k1: D, ..., k(nk-1): D} with D = {t0: view, ..., t(nt-1): view} of one storage.
 * big_dim: the first view's size holds a 9-byte integer (beyond int64). */
static void build_pickle(buf *b, int nt, int nk, int big_dim) {
    u8(b, 0x80), u8(b, 2); /* PROTO 2 */
    const char *g = "ctorch._utils\n_rebuild_tensor_v2\n";
    put(b, g, strlen(g));
    u8(b, 'q'), u8(b, 2), u8(b, '0'); /* BINPUT 2 (the rebuild function), POP */
    u8(b, '(');                       /* the storage: persistent id tuple */
    ustr(b, "storage");
    const char *fs = "ctorch\nFloatStorage\n";
    put(b, fs, strlen(fs));
    ustr(b, "0");
    ustr(b, "cpu");
    u8(b, 'K'), u8(b, 16);
    u8(b, 't'), u8(b, 'Q');           /* TUPLE, BINPERSID */
    u8(b, 'q'), u8(b, 3), u8(b, '0'); /* BINPUT 3, POP */
    u8(b, '}'), u8(b, 'q'), u8(b, 0); /* outer dict, BINPUT 0 */
    u8(b, '(');                       /* MARK */
    ustr(b, "k0");
    u8(b, '}'), u8(b, 'q'), u8(b, 1); /* D, BINPUT 1 */
    u8(b, '(');
    for (int i = 0; i < nt; i++) {
        char key[32];
        snprintf(key, sizeof key, "t%d", i);
        ustr(b, key);
        u8(b, 'h'), u8(b, 2);    /* BINGET rebuild */
        u8(b, '(');              /* args */
        u8(b, 'h'), u8(b, 3);    /* BINGET storage */
        u8(b, 'K'), u8(b, 0);    /* offset 0 */
        if (i == 0 && big_dim) { /* size (2^64 + 4,): LONG1 of 9 bytes */
            u8(b, 0x8a), u8(b, 9);
            le(b, 4, 8), u8(b, 1);
        } else {
            u8(b, 'K'), u8(b, 4);
        }
        u8(b, 0x85);                       /* TUPLE1: size */
        u8(b, 'K'), u8(b, 1), u8(b, 0x85); /* stride (1,) */
        u8(b, 0x89);                       /* NEWFALSE: requires_grad */
        u8(b, 't'), u8(b, 'R');            /* TUPLE, REDUCE */
    }
    u8(b, 'u'); /* SETITEMS into D */
    for (int k = 1; k < nk; k++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", k);
        ustr(b, key);
        u8(b, 'h'), u8(b, 1); /* BINGET D: a shared reference */
    }
    u8(b, 'u'), u8(b, '.'); /* SETITEMS into the outer dict, STOP */
}

static void zip_add(buf *z, buf *cd, const char *name, const uint8_t *data, size_t n) {
    uint32_t crc = (uint32_t)crc32(0, data, (uInt)n);
    size_t off = z->n, nl = strlen(name);
    le(z, 0x04034b50, 4), le(z, 20, 2), le(z, 0, 2), le(z, 0, 2), le(z, 0, 4), le(z, crc, 4);
    le(z, n, 4), le(z, n, 4), le(z, nl, 2), le(z, 0, 2);
    put(z, name, nl);
    put(z, data, n);
    le(cd, 0x02014b50, 4), le(cd, 20, 2), le(cd, 20, 2), le(cd, 0, 2), le(cd, 0, 2), le(cd, 0, 4);
    le(cd, crc, 4), le(cd, n, 4), le(cd, n, 4), le(cd, nl, 2), le(cd, 0, 2), le(cd, 0, 2);
    le(cd, 0, 2), le(cd, 0, 2), le(cd, 0, 4), le(cd, off, 4);
    put(cd, name, nl);
}

static buf make_archive(int nt, int nk, int big_dim) {
    buf pk = {0}, z = {0}, cd = {0};
    build_pickle(&pk, nt, nk, big_dim);
    float st[16] = {0};
    zip_add(&z, &cd, "archive/data.pkl", pk.p, pk.n);
    zip_add(&z, &cd, "archive/data/0", (const uint8_t *)st, sizeof st);
    size_t cd_off = z.n;
    put(&z, cd.p, cd.n);
    le(&z, 0x06054b50, 4), le(&z, 0, 2), le(&z, 0, 2), le(&z, 2, 2), le(&z, 2, 2);
    le(&z, cd.n, 4), le(&z, cd_off, 4), le(&z, 0, 2);
    free(pk.p);
    free(cd.p);
    return z;
}

static long rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(void) {
    /* a small honest version first: 3 shared references of a 2-tensor dict = 6 names */
    buf ok = make_archive(2, 3, 0);
    asam_checkpoint *ck = NULL;
    int rc = asam_checkpoint_open_memory(ok.p, ok.n, "small.pth", &ck);
    CHECK(rc == 0, "the small shared-dict archive must load: %s", asam_last_error());
    if (!rc) {
        CHECK(asam_checkpoint_find(ck, "k2.t1") != NULL, "k2.t1 missing");
        printf("ok   small shared-dict archive loads (k0..k2 x t0..t1)\n");
        asam_checkpoint_close(ck);
    }
    free(ok.p);

    buf z = make_archive(2000, 20000, 0);
    printf("     hostile archive: %zu bytes, 2,000 views x 20,000 keys = 40,000,000 names\n", z.n);
    long before = rss_kb();
    rc = asam_checkpoint_open_memory(z.p, z.n, "hostile.pth", &ck);
    long grew = rss_kb() - before;
    CHECK(rc != 0, "the hostile archive loaded");
    if (rc == 0) asam_checkpoint_close(ck);
    const char *msg = asam_last_error();
    CHECK(strstr(msg, "hostile.pth") && strstr(msg, "more tensor entries than the pickle can hold"),
          "message: %s", msg);
    CHECK(grew < 200 * 1024, "peak memory grew by %ld MB", grew / 1024);
    if (rc && grew < 200 * 1024)
        printf("ok   refused (%s), peak memory +%ld MB\n", msg, grew / 1024);
    free(z.p);

    buf big = make_archive(1, 1, 1);
    rc = asam_checkpoint_open_memory(big.p, big.n, "bigdim.pth", &ck);
    CHECK(rc != 0 && strstr(asam_last_error(), "overflows 64 bits"),
          "a 9-byte shape entry: rc %d, %s", rc, asam_last_error());
    if (rc != 0)
        printf("ok   %s\n", asam_last_error());
    else
        asam_checkpoint_close(ck);
    free(big.p);
    return test_finish("test_ckpt_hostile");
}
