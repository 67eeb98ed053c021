/* Checkpoint I/O: fixtures in both formats agree, writers round-trip, and malformed files of
 * every kind give -1 with a message naming the file (run under ASan too). */
#include "asam/checkpoint.h"
#include "asam/util.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "io/bytebuf.h"
#include "test_util.h"

#include <stdint.h>
#include <zlib.h>

int asam_torch_save_write_ex(const char *path, const asam_st_entry *entries, size_t n,
                             int force_zip64);

/* ---- byte-buffer builders of hand-made (often malformed) files, on io/bytebuf.h ---- */
static void bstr(io_buf *b, const char *s) { /* BINUNICODE */
    io_put_u8(b, 'X');
    io_put_le(b, strlen(s), 4);
    io_put(b, s, strlen(s));
}
static void bint(io_buf *b, int32_t v) { /* BININT */
    io_put_u8(b, 'J');
    io_put_le(b, (uint32_t)v, 4);
}
static void bglobal(io_buf *b, const char *mod, const char *name) {
    io_put_u8(b, 'c');
    io_put(b, mod, strlen(mod));
    io_put_u8(b, '\n');
    io_put(b, name, strlen(name));
    io_put_u8(b, '\n');
}
/* _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride, ...) */
static void btensor(io_buf *b, const char *key, int numel, int offset, const int *size,
                    const int *stride, int nd) {
    bglobal(b, "torch._utils", "_rebuild_tensor_v2");
    io_put_u8(b, '(');
    io_put_u8(b, '(');
    bstr(b, "storage");
    bglobal(b, "torch", "FloatStorage");
    bstr(b, key);
    bstr(b, "cpu");
    bint(b, numel);
    io_put_u8(b, 't');
    io_put_u8(b, 'Q');
    bint(b, offset);
    io_put_u8(b, '(');
    for (int i = 0; i < nd; i++) bint(b, size[i]);
    io_put_u8(b, 't');
    io_put_u8(b, '(');
    for (int i = 0; i < nd; i++) bint(b, stride[i]);
    io_put_u8(b, 't');
    io_put_u8(b, 0x89);
    bglobal(b, "collections", "OrderedDict");
    io_put_u8(b, ')');
    io_put_u8(b, 'R');
    io_put_u8(b, 't');
    io_put_u8(b, 'R');
}

/* A stored zip (no alignment padding) of n named entries; method forced for entry `compress`. */
typedef struct {
    const char *name;
    const void *data;
    size_t size;
} zent;
static io_buf make_zip(const zent *e, int n, int compress) {
    io_buf z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        uint64_t off = z.n;
        uint32_t crc = (uint32_t)crc32(0, e[i].data, (uInt)e[i].size);
        unsigned method = i == compress ? 8 : 0;
        size_t nl = strlen(e[i].name);
        io_put_le(&z, 0x04034b50u, 4), io_put_le(&z, 20, 2), io_put_le(&z, 0, 2),
            io_put_le(&z, method, 2), io_put_le(&z, 0, 4);
        io_put_le(&z, crc, 4), io_put_le(&z, e[i].size, 4), io_put_le(&z, e[i].size, 4),
            io_put_le(&z, nl, 2), io_put_le(&z, 0, 2);
        io_put(&z, e[i].name, nl);
        io_put(&z, e[i].data, e[i].size);
        io_put_le(&cd, 0x02014b50u, 4), io_put_le(&cd, 20, 2), io_put_le(&cd, 20, 2),
            io_put_le(&cd, 0, 2);
        io_put_le(&cd, method, 2), io_put_le(&cd, 0, 4), io_put_le(&cd, crc, 4),
            io_put_le(&cd, e[i].size, 4);
        io_put_le(&cd, e[i].size, 4), io_put_le(&cd, nl, 2), io_put_le(&cd, 0, 2),
            io_put_le(&cd, 0, 2), io_put_le(&cd, 0, 2);
        io_put_le(&cd, 0, 2), io_put_le(&cd, 0, 4), io_put_le(&cd, off, 4);
        io_put(&cd, e[i].name, nl);
    }
    uint64_t cd_off = z.n;
    io_put(&z, cd.p, cd.n);
    io_put_le(&z, 0x06054b50u, 4), io_put_le(&z, 0, 4), io_put_le(&z, (unsigned)n, 2),
        io_put_le(&z, (unsigned)n, 2);
    io_put_le(&z, cd.n, 4), io_put_le(&z, cd_off, 4), io_put_le(&z, 0, 2);
    free(cd.p);
    return z;
}

static const float storage6[6] = {0, 1, 2, 3, 4, 5};

/* torch zip with the given data.pkl and storage "0" = storage6. */
static io_buf torch_zip(const io_buf *pkl, int compress) {
    zent e[3] = {{"archive/data.pkl", pkl->p, pkl->n},
                 {"archive/data/0", storage6, sizeof storage6},
                 {"archive/version", "3\n", 2}};
    return make_zip(e, 3, compress);
}

/* Open from an exact-size heap copy (so ASan sees any over-read). */
static int open_mem(const void *p, size_t n, const char *name, asam_checkpoint **ck) {
    void *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    int rc = asam_checkpoint_open_memory(copy, n, name, ck);
    if (rc == 0) {
        /* touch every tensor through the converters while the buffer is alive */
        for (size_t i = 0; i < asam_checkpoint_count(*ck); i++) {
            const asam_ckpt_tensor *t = asam_checkpoint_get(*ck, i);
            float *f = malloc(((size_t)t->numel + 1) * sizeof *f);
            asam_ckpt_read_f32(*ck, t, f);
            free(f);
        }
        asam_checkpoint_close(*ck);
        *ck = NULL;
    }
    free(copy);
    return rc;
}

/* Expect a clean failure naming `name`, optionally containing `needle`. */
static void expect_fail(const void *p, size_t n, const char *what, const char *needle) {
    asam_checkpoint *ck = NULL;
    asam_clear_error();
    int rc = open_mem(p, n, "bad.pth", &ck);
    const char *err = asam_last_error();
    CHECK(rc == -1, "%s: expected failure", what);
    CHECK(rc != -1 || strstr(err, "bad.pth") == err, "%s: message must name the file: %s", what,
          err);
    CHECK(rc != -1 || !needle || strstr(err, needle), "%s: message '%s' lacks '%s'", what, err,
          needle);
    if (rc == -1) printf("ok   %s -> %s\n", what, err);
}

static asam_checkpoint *open_ok(const char *path) {
    asam_checkpoint *ck = NULL;
    if (asam_checkpoint_open(path, &ck)) {
        CHECK(0, "open %s: %s", path, asam_last_error());
        return NULL;
    }
    return ck;
}

/* Same names (as sets), dtypes, shapes and bytes. */
static void compare_ckpts(const asam_checkpoint *a, const asam_checkpoint *b, const char *what) {
    CHECK(asam_checkpoint_count(a) == asam_checkpoint_count(b), "%s: counts %zu vs %zu", what,
          asam_checkpoint_count(a), asam_checkpoint_count(b));
    size_t bad = 0;
    for (size_t i = 0; i < asam_checkpoint_count(a); i++) {
        const asam_ckpt_tensor *x = asam_checkpoint_get(a, i);
        const asam_ckpt_tensor *y = asam_checkpoint_find(b, x->name);
        if (!y || x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel ||
            memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim)) {
            if (bad++ < 5) CHECK(0, "%s: tensor %s differs in name/dtype/shape", what, x->name);
            continue;
        }
        size_t nb = (size_t)x->numel * asam_dtype_size(x->dtype);
        uint8_t *ra = malloc(nb + 1), *rb = malloc(nb + 1);
        float *fa = malloc(((size_t)x->numel + 1) * 4), *fb = malloc(((size_t)x->numel + 1) * 4);
        asam_ckpt_read_raw(a, x, ra);
        asam_ckpt_read_raw(b, y, rb);
        asam_ckpt_read_f32(a, x, fa);
        asam_ckpt_read_f32(b, y, fb);
        if (memcmp(ra, rb, nb) || memcmp(fa, fb, (size_t)x->numel * 4)) {
            if (bad++ < 5) CHECK(0, "%s: tensor %s values differ", what, x->name);
        }
        free(ra), free(rb), free(fa), free(fb);
    }
    CHECK(bad == 0, "%s: %zu tensors differ", what, bad);
    if (!bad) printf("ok   %s: %zu tensors identical\n", what, asam_checkpoint_count(a));
}

/* Compare a checkpoint to a "key<TAB>dtype<TAB>[shape]" listing from the fixtures. */
static void compare_tsv(const asam_checkpoint *ck, const char *tsv_rel) {
    char path[4096];
    test_path(path, sizeof path, test_fixtures_dir(), tsv_rel);
    char *txt;
    size_t n;
    if (asam_read_file(path, &txt, &n)) {
        TEST_SKIP_PART("%s absent, listing not compared", tsv_rel);
        return;
    }
    size_t lines = 0, bad = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        char name[1024], dt[32], shape[256];
        if (sscanf(line, "%1023[^\t]\t%31[^\t]\t%255s", name, dt, shape) != 3) continue;
        lines++;
        const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
        char mine[256] = "[", *p = mine + 1;
        if (t)
            for (int d = 0; d < t->ndim; d++)
                p += snprintf(p, (size_t)(mine + sizeof mine - p), "%s%lld", d ? ", " : "",
                              (long long)t->shape[d]);
        snprintf(p, (size_t)(mine + sizeof mine - p), "]");
        const char *want = !strcmp(dt, "float32")   ? "F32"
                           : !strcmp(dt, "float16") ? "F16"
                           : !strcmp(dt, "int64")   ? "I64"
                                                    : dt;
        char shape_sp[256]; /* tsv shapes may have no spaces: normalise both */
        int k = 0;
        for (char *s = line + strlen(name) + strlen(dt) + 2; *s && k < 255; s++)
            if (*s != ' ') shape_sp[k++] = *s;
        shape_sp[k] = 0;
        k = 0;
        for (char *s = mine; *s; s++)
            if (*s != ' ') mine[k++] = *s;
        mine[k] = 0;
        if (!t || strcmp(asam_dtype_name(t->dtype), want) || strcmp(mine, shape_sp)) {
            if (bad++ < 5)
                CHECK(0, "%s: %s: listed %s %s, loaded %s %s", tsv_rel, name, dt, shape_sp,
                      t ? asam_dtype_name(t->dtype) : "-", mine);
        }
    }
    CHECK(lines == asam_checkpoint_count(ck), "%s: %zu lines vs %zu tensors", tsv_rel, lines,
          asam_checkpoint_count(ck));
    if (!bad) printf("ok   %s: %zu tensors match the listing\n", tsv_rel, lines);
    free(txt);
}

static void test_fixtures(void) {
    char pth[4096], st[4096];
    if (test_data_file("sam_tiny/model.pth", pth, sizeof pth)) {
        TEST_SKIP_PART("sam_tiny/model.pth absent");
        return;
    }
    asam_checkpoint *a = open_ok(pth);
    if (!a) return;
    CHECK(!strcmp(asam_checkpoint_format(a), "torch-zip"), "format %s", asam_checkpoint_format(a));
    CHECK(asam_checkpoint_count(a) == 188, "sam_tiny has %zu tensors", asam_checkpoint_count(a));
    const asam_ckpt_tensor *pe = asam_checkpoint_find(a, "image_encoder.pos_embed");
    CHECK(pe && pe->ndim == 4 && pe->shape[0] == 1 && pe->shape[1] == 64 && pe->shape[2] == 64 &&
              pe->shape[3] == 64 && pe->dtype == ASAM_DT_F32,
          "pos_embed shape");
    CHECK(asam_checkpoint_find(a, "mask_decoder.iou_token.weight") != NULL, "iou_token");
    CHECK(asam_checkpoint_find(a, "no.such.key") == NULL, "find of an absent key");
    /* the torch loader must hand out 64-byte aligned payloads for torch-written files */
    CHECK(((uintptr_t)pe->data & 63) == 0, "payload alignment");
    if (test_data_file("sam_tiny/model.safetensors", st, sizeof st) == 0) {
        asam_checkpoint *b = open_ok(st);
        if (b) {
            CHECK(!strcmp(asam_checkpoint_format(b), "safetensors"), "format");
            compare_ckpts(a, b, "sam_tiny model.pth vs model.safetensors");
            asam_checkpoint_close(b);
        }
    } else {
        TEST_SKIP_PART("sam_tiny/model.safetensors absent (set ASAM_FIXTURES), comparison skipped");
    }
    asam_checkpoint_close(a);

    if (test_data_file("sd_tiny/model.ckpt", pth, sizeof pth) == 0) {
        a = open_ok(pth);
        if (a) {
            /* CompVis {"state_dict": {...}}: names come without the wrapper prefix */
            const asam_ckpt_tensor *pid = asam_checkpoint_find(
                a, "cond_stage_model.transformer.text_model.embeddings.position_ids");
            CHECK(pid && pid->dtype == ASAM_DT_I64 && pid->numel == 77, "position_ids I64");
            if (pid) {
                int64_t ids[77];
                CHECK(asam_ckpt_read_i64(a, pid, ids) == 0 && ids[0] == 0 && ids[76] == 76,
                      "position_ids values");
            }
            const asam_ckpt_tensor *betas = asam_checkpoint_find(a, "betas");
            CHECK(betas && betas->dtype == ASAM_DT_F32 && betas->numel == 1000, "betas");
            if (betas) {
                float b[1000];
                asam_ckpt_read_f32(a, betas, b);
                CHECK(fabsf(b[0] - 0.00085f) < 1e-7f && fabsf(b[999] - 0.012f) < 1e-6f,
                      "betas values %g %g", b[0], b[999]);
            }
            compare_tsv(a, "sd_tiny/model_keys.tsv");
            if (test_data_file("sd_tiny/model.safetensors", st, sizeof st) == 0) {
                asam_checkpoint *b = open_ok(st);
                if (b) {
                    compare_ckpts(a, b, "sd_tiny model.ckpt vs model.safetensors");
                    asam_checkpoint_close(b);
                }
            }
            asam_checkpoint_close(a);
        }
    }
    if (test_data_file("sd_tiny/control.pth", pth, sizeof pth) == 0) {
        a = open_ok(pth);
        if (a) {
            CHECK(asam_checkpoint_count(a) == 338, "control.pth: %zu tensors",
                  asam_checkpoint_count(a));
            size_t nonpref = 0;
            for (size_t i = 0; i < asam_checkpoint_count(a); i++)
                nonpref += strncmp(asam_checkpoint_get(a, i)->name, "control_model.", 14) != 0;
            CHECK(nonpref == 0, "control.pth: %zu keys outside control_model.*", nonpref);
            compare_tsv(a, "sd_tiny/control_keys.tsv");
            asam_checkpoint_close(a);
        }
    }
}

/* ---- writers ---- */

static void test_writers(void) {
    float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t f16[5] = {0x3e00 /*1.5*/, 0xc000 /*-2*/, 0x7bff /*65504*/, 0x0001 /*2^-24*/,
                       0x8000 /*-0*/};
    uint16_t bf16[4] = {asam_f32_to_bf16(1.0f), asam_f32_to_bf16(-3.5f), asam_f32_to_bf16(256.0f),
                        0};
    double f64[3] = {0.25, -1e10, 3};
    int64_t i64[77];
    for (int i = 0; i < 77; i++) i64[i] = i - 3000000000ll * (i == 5);
    int32_t i32[2] = {-5, 1 << 30};
    int16_t i16[2] = {-300, 300};
    int8_t i8[3] = {-128, 0, 127};
    uint8_t u8[5] = {0, 1, 2, 254, 255}, bl[2] = {1, 0};
    float scalar = 42;
    asam_st_entry e[] = {
        {"w.f32", ASAM_DT_F32, 2, {2, 3}, f32},
        {"b.f16", ASAM_DT_F16, 1, {5}, f16},
        {"c.bf16", ASAM_DT_BF16, 2, {2, 2}, bf16},
        {"d.f64", ASAM_DT_F64, 1, {3}, f64},
        {"pos_ids", ASAM_DT_I64, 2, {1, 77}, i64},
        {"i32", ASAM_DT_I32, 1, {2}, i32},
        {"i16", ASAM_DT_I16, 1, {2}, i16},
        {"i8", ASAM_DT_I8, 1, {3}, i8},
        {"u8", ASAM_DT_U8, 1, {5}, u8},
        {"bool", ASAM_DT_BOOL, 1, {2}, bl},
        {"scalar", ASAM_DT_F32, 0, {0}, &scalar},
        {"empty", ASAM_DT_F32, 2, {0, 4}, NULL},
        {"name with \"quotes\"\\", ASAM_DT_U8, 1, {2}, u8},
    };
    size_t n = sizeof e / sizeof e[0];
    const char *meta[] = {"format", "pt", "note", "a \"quoted\" value"};
    const char *paths[3] = {"test_ckpt_rt.safetensors", "test_ckpt_rt.pth", "test_ckpt_rt64.pth"};
    CHECK(asam_safetensors_write(paths[0], e, n, meta, 2) == 0, "st write: %s", asam_last_error());
    CHECK(asam_torch_save_write(paths[1], e, n) == 0, "torch write: %s", asam_last_error());
    CHECK(asam_torch_save_write_ex(paths[2], e, n, 1) == 0, "torch zip64 write: %s",
          asam_last_error());
    for (int k = 0; k < 3; k++) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", paths[k], (int)getpid());
        CHECK(!test_is_file(tmp), "temp file left behind: %s", tmp);
        asam_checkpoint *ck = open_ok(paths[k]);
        if (!ck) continue;
        CHECK(asam_checkpoint_count(ck) == n, "%s: count %zu", paths[k], asam_checkpoint_count(ck));
        for (size_t i = 0; i < n; i++) {
            const asam_ckpt_tensor *t = asam_checkpoint_find(ck, e[i].name);
            if (!t) {
                CHECK(0, "%s: %s missing", paths[k], e[i].name);
                continue;
            }
            CHECK(t->dtype == e[i].dtype && t->ndim == e[i].ndim, "%s: %s dtype/ndim", paths[k],
                  e[i].name);
            size_t nb = (size_t)t->numel * asam_dtype_size(t->dtype);
            uint8_t raw[1024];
            CHECK(asam_ckpt_read_raw(ck, t, raw) == 0 && (nb == 0 || !memcmp(raw, e[i].data, nb)),
                  "%s: %s bytes", paths[k], e[i].name);
            if (k > 0) /* torch order = insertion order */
                CHECK(!strcmp(asam_checkpoint_get(ck, i)->name, e[i].name), "torch order");
        }
        float v[8];
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "b.f16"), v);
        CHECK(v[0] == 1.5f && v[1] == -2 && v[2] == 65504 && v[3] == ldexpf(1, -24) && v[4] == 0 &&
                  signbit(v[4]),
              "f16 conversion %g %g %g %g", v[0], v[1], v[2], v[3]);
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "c.bf16"), v);
        CHECK(v[0] == 1 && v[1] == -3.5f && v[2] == 256, "bf16 conversion");
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "i8"), v);
        CHECK(v[0] == -128 && v[2] == 127, "i8 conversion");
        asam_ckpt_read_f32(ck, asam_checkpoint_find(ck, "d.f64"), v);
        CHECK(v[0] == 0.25f && v[1] == -1e10f, "f64 conversion");
        int64_t iv[77];
        CHECK(asam_ckpt_read_i64(ck, asam_checkpoint_find(ck, "pos_ids"), iv) == 0 &&
                  iv[5] == 5 - 3000000000ll && iv[76] == 76,
              "i64 values");
        CHECK(asam_ckpt_read_i64(ck, asam_checkpoint_find(ck, "w.f32"), iv) == -1,
              "read_i64 of a float tensor must fail");
        const asam_ckpt_tensor *s = asam_checkpoint_find(ck, "scalar");
        CHECK(s && s->ndim == 0 && s->numel == 1, "scalar");
        const asam_ckpt_tensor *em = asam_checkpoint_find(ck, "empty");
        CHECK(em && em->numel == 0 && em->shape[1] == 4, "empty tensor");
        if (k == 0) {
            CHECK(asam_checkpoint_metadata(ck, "format") &&
                      !strcmp(asam_checkpoint_metadata(ck, "format"), "pt"),
                  "metadata");
            CHECK(asam_checkpoint_metadata(ck, "note") &&
                      !strcmp(asam_checkpoint_metadata(ck, "note"), "a \"quoted\" value"),
                  "metadata escaping");
            CHECK(asam_checkpoint_metadata(ck, "nope") == NULL, "absent metadata");
            /* header: padded to 8, keys sorted, data in sorted order */
            uint64_t hl = 0;
            uint8_t h8[8] = {0};
            FILE *fh = fopen(paths[0], "rb");
            if (fh) {
                CHECK(fread(h8, 1, 8, fh) == 8, "read header length");
                fclose(fh);
            }
            for (int i = 7; i >= 0; i--) hl = hl << 8 | h8[i];
            CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
            for (size_t i = 1; i < asam_checkpoint_count(ck); i++)
                CHECK(strcmp(asam_checkpoint_get(ck, i - 1)->name,
                             asam_checkpoint_get(ck, i)->name) < 0 &&
                          asam_checkpoint_get(ck, i - 1)->data <= asam_checkpoint_get(ck, i)->data,
                      "safetensors order");
        } else {
            CHECK(asam_checkpoint_metadata(ck, "format") == NULL, "torch has no metadata");
            for (size_t i = 0; i < n; i++) {
                const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
                CHECK(t->numel == 0 || ((uintptr_t)t->data & 63) == 0, "alignment of %s", t->name);
            }
        }
        asam_checkpoint_close(ck);
        remove(paths[k]);
    }
    /* invalid input to the writers */
    asam_st_entry dup[2] = {{"a", ASAM_DT_F32, 1, {1}, f32}, {"a", ASAM_DT_F32, 1, {1}, f32}};
    CHECK(asam_safetensors_write("test_ckpt_dup.safetensors", dup, 2, NULL, 0) == -1,
          "duplicate names must fail");
    CHECK(asam_torch_save_write("test_ckpt_dup.pth", dup, 2) == -1, "duplicate names must fail");
    CHECK(!test_is_file("test_ckpt_dup.safetensors") && !test_is_file("test_ckpt_dup.pth"),
          "no output on failure");
    asam_st_entry neg = {"n", ASAM_DT_F32, 1, {-1}, f32};
    CHECK(asam_safetensors_write("test_ckpt_neg.safetensors", &neg, 1, NULL, 0) == -1,
          "negative shape must fail");
    printf("ok   writers round trip\n");

    /* metadata in a torch archive (asam_metadata.json), plain and wrapped: read back as from
     * safetensors; a record that is not an object of strings is refused naming it */
    const char *pmeta[4] = {"provenance", "{\"stage\":\"tune\"}", "note", "x"};
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        const char *mp = "test_ckpt_meta.pth";
        CHECK(asam_torch_save_write_meta(mp, wrapped ? "model" : NULL, dup, 1, pmeta, 2) == 0,
              "write with metadata: %s", asam_last_error());
        asam_checkpoint *ck = open_ok(mp);
        if (ck) {
            const char *a = asam_checkpoint_metadata(ck, "provenance"),
                       *b = asam_checkpoint_metadata(ck, "note");
            CHECK(a && b && !strcmp(a, pmeta[1]) && !strcmp(b, "x") &&
                      asam_checkpoint_count(ck) == 1,
                  "metadata read back: %s / %s", a ? a : "(none)", b ? b : "(none)");
        }
        asam_checkpoint_close(ck);
        size_t n = 0;
        char *file = NULL;
        CHECK(asam_read_file(mp, &file, &n) == 0, "read back: %s", asam_last_error());
        uint8_t *bytes = (uint8_t *)file;
        remove(mp);
        const char *key = "\"note\":\"x\"";
        uint8_t *at = NULL;
        for (size_t i = 0; bytes && i + strlen(key) <= n && !at; i++)
            if (!memcmp(bytes + i, key, strlen(key))) at = bytes + i;
        CHECK(at != NULL, "metadata record present in the archive");
        if (at) {
            memcpy(at, "\"note\":1234", strlen(key)); /* same length, not a string */
            expect_fail(bytes, n, "metadata value not a string", "is not a string");
        }
        free(bytes);
    }
}

/* ---- malformed safetensors ---- */

static io_buf st_file(const char *json, uint64_t hlen_override, size_t data_bytes) {
    io_buf b = {0};
    size_t hl = strlen(json);
    io_put_le(&b, hlen_override ? hlen_override : hl, 8);
    io_put(&b, json, hl);
    for (size_t i = 0; i < data_bytes; i++) io_put_u8(&b, (unsigned)i);
    return b;
}

static void test_bad_safetensors(void) {
    struct {
        const char *what, *json, *needle;
        uint64_t hlen;
        size_t data;
    } cases[] = {
        {"st data_offsets out of range",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "beyond", 0, 8},
        {"st overlapping tensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\","
         "\"shape\":[2],\"data_offsets\":[4,12]}}",
         "overlap", 0, 12},
        {"st negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
         "shape", 0, 8},
        {"st fractional shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "shape", 0, 8},
        {"st shape/size mismatch",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "needs", 0, 8},
        {"st shape overflow",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":["
         "0,8]}}",
         "overflow", 0, 8},
        {"st reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}",
         "data_offsets", 0, 8},
        {"st unknown dtype", "{\"a\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
         "dtype", 0, 8},
        {"st missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "expected", 0, 8},
        {"st not JSON", "{\"a\":{\"dtype\":\"F32\",", "JSON", 0, 8},
        {"st entry not an object", "{\"a\":5}", "expected", 0, 8},
        {"st duplicate names",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\","
         "\"shape\":[1],\"data_offsets\":[1,2]}}",
         "duplicate", 0, 8},
        {"st header length overflow", "{}", "too large", 0xffffffffffffffffull, 8},
        {"st header past end of file", "{}", "truncated", 1000, 8},
        {"st bad metadata", "{\"__metadata__\":{\"k\":1}}", "metadata", 0, 0},
        {"st too many dims",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
         "dimensions", 0, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        io_buf b = st_file(cases[i].json, cases[i].hlen, cases[i].data);
        expect_fail(b.p, b.n, cases[i].what, cases[i].needle);
        free(b.p);
    }
    expect_fail("hello, not a checkpoint at all", 30, "wrong magic", "unrecognised");
    expect_fail("", 0, "empty file", "empty");
    expect_fail("\x02\0\0\0", 4, "tiny file", NULL);
    /* a valid one for contrast, with metadata */
    io_buf ok = st_file("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"U8\",\"shape\":[2,2],"
                        "\"data_offsets\":[0,4]}}",
                        0, 4);
    asam_checkpoint *ck;
    void *copy = malloc(ok.n);
    memcpy(copy, ok.p, ok.n);
    CHECK(asam_checkpoint_open_memory(copy, ok.n, "ok.st", &ck) == 0, "valid st: %s",
          asam_last_error());
    if (ck) {
        CHECK(asam_checkpoint_count(ck) == 1 && !strcmp(asam_checkpoint_metadata(ck, "k"), "v"),
              "valid st");
        asam_checkpoint_close(ck);
    }
    free(copy);
    free(ok.p);
}

/* ---- malformed torch archives and pickles ---- */

/* Shape and stride of the 2x2 views below. */
static const int sz2[2] = {2, 2}, st2[2] = {1, 2};

/* a strided view with offset: element (i,j) = storage[1 + i + 2j] */
static void pickle_strided_view(void) {
    io_buf p = {0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, 'q'), io_put_u8(&p, 0),
        io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "0", 6, 1, sz2, st2, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    asam_checkpoint *ck;
    void *copy = malloc(z.n);
    memcpy(copy, z.p, z.n);
    CHECK(asam_checkpoint_open_memory(copy, z.n, "strided.pth", &ck) == 0, "strided: %s",
          asam_last_error());
    if (ck) {
        float v[4];
        const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "w");
        CHECK(t && asam_ckpt_read_f32(ck, t, v) == 0 && v[0] == 1 && v[1] == 3 && v[2] == 2 &&
                  v[3] == 4,
              "strided gather %g %g %g %g", v[0], v[1], v[2], v[3]);
        uint8_t raw[16];
        asam_ckpt_read_raw(ck, t, raw);
        CHECK(!memcmp(raw, v, 16), "strided raw gather");
        asam_checkpoint_close(ck);
        printf("ok   strided view with storage offset\n");
    }
    free(copy);
    free(z.p);
    free(p.p);
}

/* view extending past its storage */
static void pickle_view_past_storage(void) {
    io_buf p = {0};
    const int sz[2] = {2, 3};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "0", 6, 2, sz, st2, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    expect_fail(z.p, z.n, "view past the storage", "storage");
    free(z.p), free(p.p);
}

/* unknown GLOBAL + REDUCE must never run: {"cmd": os.system("touch ..."), "obj":
 *    argparse.Namespace() with BUILD, "w": tensor} still loads "w" */
static void pickle_no_code_runs(void) {
    io_buf p = {0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "cmd");
    bglobal(&p, "os", "system");
    bstr(&p, "touch test_ckpt_PWNED");
    io_put_u8(&p, 0x85), io_put_u8(&p, 'R');
    bstr(&p, "obj");
    bglobal(&p, "argparse", "Namespace");
    io_put_u8(&p, ')'), io_put_u8(&p, 0x81);
    io_put_u8(&p, '}'), bstr(&p, "lr"), io_put_u8(&p, 'G');
    for (int i = 0; i < 8; i++) io_put_u8(&p, i == 0 ? 0x3f : 0);
    io_put_u8(&p, 's'), io_put_u8(&p, 'b');
    bstr(&p, "w");
    btensor(&p, "0", 6, 0, sz2, (const int[]){2, 1}, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    asam_checkpoint *ck;
    void *copy = malloc(z.n);
    memcpy(copy, z.p, z.n);
    CHECK(asam_checkpoint_open_memory(copy, z.n, "evil.pth", &ck) == 0, "evil: %s",
          asam_last_error());
    CHECK(!test_is_file("test_ckpt_PWNED"), "os.system was executed!");
    if (ck) {
        CHECK(asam_checkpoint_count(ck) == 1 && asam_checkpoint_find(ck, "w"),
              "tensors load beside unknown objects");
        asam_checkpoint_close(ck);
        printf("ok   unknown GLOBAL + REDUCE stays inert, tensors still load\n");
    }
    free(copy), free(z.p), free(p.p);
}

/* wrappers and nesting: {"state_dict": {"a": t, "sub": {"b": t}}, "global_step": 5} */
static void pickle_wrappers_and_nesting(void) {
    io_buf p = {0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "global_step"), bint(&p, 5);
    bstr(&p, "state_dict"), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "a");
    btensor(&p, "0", 6, 0, sz2, (const int[]){2, 1}, 2);
    io_put_u8(&p, 'q'), io_put_u8(&p, 7); /* memoize the tensor and share it */
    bstr(&p, "sub"), io_put_u8(&p, '}'), bstr(&p, "b"), io_put_u8(&p, 'h'), io_put_u8(&p, 7),
        io_put_u8(&p, 's');
    io_put_u8(&p, 'u'); /* inner */
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    asam_checkpoint *ck;
    void *copy = malloc(z.n);
    memcpy(copy, z.p, z.n);
    CHECK(asam_checkpoint_open_memory(copy, z.n, "wrapped.pth", &ck) == 0, "wrapped: %s",
          asam_last_error());
    if (ck) {
        CHECK(asam_checkpoint_count(ck) == 2 && asam_checkpoint_find(ck, "a") &&
                  asam_checkpoint_find(ck, "sub.b"),
              "wrapper rule: names %s, %s", asam_checkpoint_get(ck, 0)->name,
              asam_checkpoint_count(ck) > 1 ? asam_checkpoint_get(ck, 1)->name : "-");
        asam_checkpoint_close(ck);
        printf("ok   state_dict wrapper + nested dict flattening\n");
    }
    free(copy), free(z.p), free(p.p);
}

/* malformed pickles: each must fail cleanly */
static void pickle_malformed_pickles(void) {
    struct {
        const char *what, *bytes;
        size_t n;
        const char *needle;
    } bad[] = {
        {"unknown opcode", "\x80\x02\xff.", 4, "unsupported opcode"},
        {"STOP on an empty stack", "\x80\x02.", 3, "underflow"},
        {"TUPLE1 on an empty stack", "\x80\x02\x85.", 4, "underflow"},
        {"SETITEMS without MARK", "\x80\x02}u.", 5, "MARK"},
        {"SETITEM below the mark", "\x80\x02}(Ns.", 7, "underflow"},
        {"APPENDS onto a MARK", "\x80\x02(Ne.", 6, "underflow"},
        {"BINGET out of range", "\x80\x02h\x05.", 5, "memo"},
        {"LONG_BINGET out of range", "\x80\x02jxxxx.", 8, "memo"},
        {"LONG_BINPUT huge index", "\x80\x02Nr\xff\xff\xff\xff.", 9, "memo"},
        {"BINPUT on an empty stack", "\x80\x02q\x00.", 5, "underflow"},
        {"string length past the end",
         "\x80\x02X\x00\x00\x00\x40"
         "ab.",
         10, "truncated"},
        {"BINUNICODE8 huge length", "\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", 12,
         "truncated"},
        {"truncated BININT", "\x80\x02J\x01", 4, "truncated"},
        {"no STOP", "\x80\x02}", 3, "STOP"},
        {"unterminated GLOBAL",
         "\x80\x02"
         "cos\nsystem",
         12, "GLOBAL"},
        {"bad protocol", "\x80\x09}.", 4, NULL},
        {"SETITEM on a list", "\x80\x02]NNs.", 7, "non-dict"},
        {"odd SETITEMS", "\x80\x02}(Nu.", 7, "odd"},
        {"BINPERSID junk", "\x80\x02NQ.", 5, "persistent"},
        {"REDUCE with non-tuple args", "\x80\x02NNR.", 6, "tuple"},
        {"top level not a dict", "\x80\x02N.", 4, "not a dict"},
        {"top level pickled module",
         "\x80\x02"
         "c__main__\nNet\n)R.",
         19, "__main__.Net"},
        {"negative LONG4 length", "\x80\x02\x8b\xff\xff\xff\xff.", 8, "negative"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        io_buf p = {0};
        io_put(&p, bad[i].bytes, bad[i].n);
        io_buf z = torch_zip(&p, -1);
        expect_fail(z.p, z.n, bad[i].what, bad[i].needle);
        free(z.p), free(p.p);
    }
}

/* tensor argument errors */
static void pickle_tensor_argument_errors(void) {
    io_buf p = {0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "7", 6, 0, sz2, st2, 2); /* storage "7" is not in the archive */
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    expect_fail(z.p, z.n, "missing storage entry", "missing");
    free(z.p), free(p.p);
    p = (io_buf){0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "0", 6, 0, sz2, (const int[]){1, -2}, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    z = torch_zip(&p, -1);
    expect_fail(z.p, z.n, "negative stride", "stride");
    free(z.p), free(p.p);
    p = (io_buf){0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "0", 6, 0x7fffffff, sz2, (const int[]){0x7fffffff, 0x7fffffff}, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    z = torch_zip(&p, -1);
    expect_fail(z.p, z.n, "huge offset/stride", "storage");
    free(z.p), free(p.p);
}

/* archive-level errors */
static void pickle_archive_errors(void) {
    io_buf p = {0};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, 1);
    expect_fail(z.p, z.n, "compressed zip entry", "compressed");
    free(z.p);
    zent noslash[1] = {{"data.pkl", p.p, p.n}};
    z = make_zip(noslash, 1, -1);
    expect_fail(z.p, z.n, "zip without a folder prefix", "torch.save");
    free(z.p);
    zent nopkl[1] = {{"archive/other", p.p, p.n}};
    z = make_zip(nopkl, 1, -1);
    expect_fail(z.p, z.n, "zip without data.pkl", "data.pkl");
    free(z.p);
    z = make_zip(NULL, 0, -1);
    expect_fail(z.p, z.n, "empty zip", "empty");
    free(z.p);
    z = torch_zip(&p, -1);
    z.p[z.n - 22 + 16] ^= 0x40; /* central directory offset out of range */
    expect_fail(z.p, z.n, "central directory out of range", "central directory");
    free(z.p);
    z = torch_zip(&p, -1);
    z.p[z.n - 22 + 10] = 50; /* entry count larger than the directory */
    expect_fail(z.p, z.n, "bad entry count", "central directory");
    free(z.p);
    free(p.p);
    /* the legacy format: a pickled magic number first */
    const char legacy[] =
        "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.";
    expect_fail(legacy, sizeof legacy - 1, "legacy torch format", "legacy");
}

static void test_pickles(void) {
    pickle_strided_view();
    pickle_view_past_storage();
    pickle_no_code_runs();
    pickle_wrappers_and_nesting();
    pickle_malformed_pickles();
    pickle_tensor_argument_errors();
    pickle_archive_errors();
}

/* Truncate a real file at many offsets, through memory and through the file path. */
static void test_truncation(const char *rel) {
    char path[4096];
    if (test_data_file(rel, path, sizeof path)) {
        TEST_SKIP_PART("%s absent, truncation test skipped", rel);
        return;
    }
    char *data;
    size_t n;
    if (asam_read_file(path, &data, &n)) {
        CHECK(0, "%s", asam_last_error());
        return;
    }
    size_t cuts = 0, failed = 0;
    /* the first 80 bytes, the last 40, and 80 cuts spread over the file */
    for (int k = 0; k < 200; k++) {
        size_t len = k < 80    ? (size_t)k
                     : k < 120 ? n - (size_t)(k - 79)
                               : (n / 80) * (size_t)(k - 120);
        if (len >= n) continue;
        asam_checkpoint *ck = NULL;
        asam_clear_error();
        int rc = open_mem(data, len, "cut.bin", &ck);
        cuts++;
        if (rc == -1 && strstr(asam_last_error(), "cut.bin") == asam_last_error())
            failed++;
        else if (failed + 5 > cuts)
            CHECK(0, "%s cut at %zu: rc %d (%s)", rel, len, rc, asam_last_error());
    }
    CHECK(failed == cuts, "%s: %zu of %zu truncations failed cleanly", rel, failed, cuts);
    /* through a real file: message names the path */
    const char *tp = "test_ckpt_truncated.bin";
    CHECK(asam_write_file_atomic(tp, data, n / 2) == 0, "write");
    asam_checkpoint *ck = NULL;
    CHECK(asam_checkpoint_open(tp, &ck) == -1 && strstr(asam_last_error(), tp),
          "truncated file: %s", asam_last_error());
    printf("ok   %s: %zu truncations rejected (e.g. %s)\n", rel, cuts, asam_last_error());
    remove(tp);
    CHECK(asam_checkpoint_open("test_ckpt_no_such_file", &ck) == -1 &&
              strstr(asam_last_error(), "test_ckpt_no_such_file"),
          "missing file");
    free(data);
}

/* Random byte mutations of small valid files: must load or fail, never crash (ASan build). */
static void test_mutations(void) {
    uint64_t seed = 12345;
#define RND()                                                                                      \
    (seed = seed * 6364136223846793005ull + 1442695040888963407ull, (unsigned)(seed >> 33))
    io_buf p = {0};
    const int sz2[2] = {2, 2};
    io_put_u8(&p, 0x80), io_put_u8(&p, 2), io_put_u8(&p, '}'), io_put_u8(&p, 'q'), io_put_u8(&p, 0),
        io_put_u8(&p, '(');
    bstr(&p, "w");
    btensor(&p, "0", 6, 1, sz2, (const int[]){1, 2}, 2);
    bstr(&p, "v");
    btensor(&p, "0", 6, 0, sz2, (const int[]){2, 1}, 2);
    io_put_u8(&p, 'u'), io_put_u8(&p, '.');
    io_buf z = torch_zip(&p, -1);
    io_buf s =
        st_file("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_"
                "offsets\":[0,8]},\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}",
                0, 16);
    size_t loaded = 0, total = 0;
    for (int which = 0; which < 2; which++) {
        io_buf *src = which ? &s : &z;
        uint8_t *m = malloc(src->n);
        for (int it = 0; it < 3000; it++) {
            memcpy(m, src->p, src->n);
            int nm = 1 + (int)(RND() % 4);
            for (int j = 0; j < nm; j++) {
                size_t at = RND() % src->n;
                unsigned r = RND();
                m[at] = (r & 256) ? (uint8_t)r : (uint8_t)(m[at] ^ (1u << (r % 8)));
            }
            size_t len = (RND() % 8 == 0) ? RND() % src->n : src->n;
            asam_checkpoint *ck;
            loaded += open_mem(m, len, "mut.bin", &ck) == 0;
            total++;
        }
        free(m);
    }
    printf("ok   %zu mutated files: %zu loaded, the rest failed cleanly\n", total, loaded);
    free(z.p), free(s.p), free(p.p);
#undef RND
}

/* asam_checkpoint_convert: float tensors rounded to the target type (nearest even), integer
 * tensors byte for byte, names and shapes kept, provenance recording the conversion and the
 * source's own provenance; both output formats; a bad input leaves no output. */
static void test_convert(void) {
    float w[7] = {1,           -2.0009765625f /* a tie between two f16 values */,
                  3.14159265f, 0,
                  1e-6f,       70000 /* past f16's range */,
                  -1e-9f};
    double d[2] = {0.1, -3};
    int64_t ids[3] = {7, -1, 5000000000ll};
    uint8_t u8[2] = {9, 200};
    asam_st_entry e[] = {
        {"a.weight", ASAM_DT_F32, 2, {7, 1}, w},
        {"b.f64", ASAM_DT_F64, 1, {2}, d},
        {"ids", ASAM_DT_I64, 1, {3}, ids},
        {"mask", ASAM_DT_U8, 1, {2}, u8},
    };
    const char *meta[] = {"provenance", "{\"stage\":\"train-sam\",\"hash\":\"00\"}"};
    const char *src = "test_ckpt_conv_src.safetensors";
    CHECK(asam_safetensors_write(src, e, 4, meta, 1) == 0, "convert src: %s", asam_last_error());
    const char *outs[4] = {"test_ckpt_conv16.safetensors", "test_ckpt_convbf.safetensors",
                           "test_ckpt_conv32.pth", "test_ckpt_conv16.pth"};
    const asam_dtype to[4] = {ASAM_DT_F16, ASAM_DT_BF16, ASAM_DT_F32, ASAM_DT_F16};
    for (int k = 0; k < 4; k++) {
        CHECK(asam_checkpoint_convert(src, outs[k], to[k]) == 0, "convert %s: %s", outs[k],
              asam_last_error());
        asam_checkpoint *ck = open_ok(outs[k]);
        if (!ck) continue;
        CHECK(asam_checkpoint_count(ck) == 4, "%s: count", outs[k]);
        const asam_ckpt_tensor *a = asam_checkpoint_find(ck, "a.weight");
        const asam_ckpt_tensor *b = asam_checkpoint_find(ck, "b.f64");
        const asam_ckpt_tensor *i = asam_checkpoint_find(ck, "ids");
        const asam_ckpt_tensor *m = asam_checkpoint_find(ck, "mask");
        CHECK(a && b && i && m, "%s: names kept", outs[k]);
        if (!a || !b || !i || !m) {
            asam_checkpoint_close(ck);
            continue;
        }
        CHECK(a->dtype == to[k] && b->dtype == to[k] && a->ndim == 2 && a->shape[0] == 7,
              "%s: float dtype/shape", outs[k]);
        CHECK(i->dtype == ASAM_DT_I64 && m->dtype == ASAM_DT_U8, "%s: int dtypes kept", outs[k]);
        float v[7];
        asam_ckpt_read_f32(ck, a, v);
        for (int j = 0; j < 7; j++) {
            float want = to[k] == ASAM_DT_F16    ? asam_f16_to_f32(asam_f32_to_f16(w[j]))
                         : to[k] == ASAM_DT_BF16 ? asam_bf16_to_f32(asam_f32_to_bf16(w[j]))
                                                 : w[j];
            CHECK(v[j] == want, "%s: a[%d] %.9g, want %.9g", outs[k], j, v[j], want);
        }
        if (to[k] == ASAM_DT_F16)
            CHECK(v[1] == -2.0f && isinf(v[5]) && v[6] == 0 && v[4] != 0,
                  "%s: f16 ties to even, overflow to inf, subnormals kept", outs[k]);
        int64_t iv[3];
        uint8_t uv[2];
        CHECK(!asam_ckpt_read_i64(ck, i, iv) && !memcmp(iv, ids, sizeof ids), "%s: ids", outs[k]);
        CHECK(!asam_ckpt_read_raw(ck, m, uv) && !memcmp(uv, u8, 2), "%s: u8", outs[k]);
        const char *prov = asam_checkpoint_metadata(ck, "provenance");
        const char *sp = asam_checkpoint_metadata(ck, "source_provenance");
        CHECK(prov && strstr(prov, "\"convert\"") && strstr(prov, "--dtype"),
              "%s: provenance records the conversion", outs[k]);
        CHECK(sp && strstr(sp, "train-sam"), "%s: source provenance kept", outs[k]);
        asam_checkpoint_close(ck);
        remove(outs[k]);
    }
    remove(src);
    CHECK(asam_checkpoint_convert("test_ckpt_conv_missing.safetensors",
                                  "test_ckpt_conv_none.safetensors", ASAM_DT_F16) == -1 &&
              strstr(asam_last_error(), "test_ckpt_conv_missing") &&
              !test_is_file("test_ckpt_conv_none.safetensors"),
          "convert of a missing file fails naming it, writes nothing");
}

int main(void) {
    test_fixtures();
    test_writers();
    test_convert();
    test_bad_safetensors();
    test_pickles();
    test_truncation("sam_tiny/model.pth");
    test_truncation("sam_tiny/model.safetensors");
    test_mutations();
    return test_finish("test_checkpoint");
}
