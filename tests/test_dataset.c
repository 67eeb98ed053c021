/* Every dataset format reads a small sample made here (incl. an SA-1B .tar shard written with
 * libarchive), and bad inputs fail with one message naming the file. */
#include "asam/dataset.h"
#include "asam/error.h"
#include "test_synth.h"
#include "test_util.h"

#include <archive.h>
#include <archive_entry.h>

static char root[256];

static void pathf(char *out, size_t n, const char *rel) {
    snprintf(out, n, "%s/%s", root, rel);
}

static int masks_equal(const asam_sample *s, int k, const uint8_t *want) {
    return !memcmp(s->masks + (size_t)k * s->mh * s->mw, want, (size_t)s->mh * s->mw);
}

static void add_to_tar(struct archive *a, const char *path, const char *name) {
    char *data;
    size_t n;
    if (asam_read_file(path, &data, &n)) return;
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, data, n);
    archive_entry_free(e);
    free(data);
}

/* expect failure whose message contains `needle` */
static void expect_fail(const char *spec, int get, const char *needle) {
    asam_dataset *ds = NULL;
    int rc = asam_dataset_open(spec, &ds);
    if (!rc && get) {
        asam_sample s;
        rc = asam_dataset_get(ds, 0, 0, &s);
        if (!rc) asam_sample_free(&s);
    }
    asam_dataset_close(ds);
    CHECK(rc != 0, "%s: expected an error", spec);
    if (rc) {
        CHECK(strstr(asam_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", spec,
              asam_last_error(), needle);
        printf("ok   error: %s\n", asam_last_error());
    }
}

static asam_dataset *open_ok(const char *spec, size_t want_n) {
    asam_dataset *ds = NULL;
    int rc = asam_dataset_open(spec, &ds);
    CHECK(rc == 0, "open %s: %s", spec, asam_last_error());
    if (rc) return NULL;
    CHECK(asam_dataset_count(ds) == want_n, "%s: %zu items, want %zu", spec, asam_dataset_count(ds),
          want_n);
    return ds;
}

/* ---- sa1b folder (JPEG images) ---- */
static void case_sa1b_folder(syn_image *B) {
    char p[512], spec[2400];
    pathf(p, sizeof p, "sa1b");
    CHECK(syn_write_sa1b(p, 2, 48, 32, 3, 0) == 0, "write sa1b");
    snprintf(spec, sizeof spec, "sa1b:%s", p);
    asam_dataset *ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 1, 0, &s) == 0, "get: %s", asam_last_error());
        CHECK(!strcmp(s.name, "sa_2") && s.n_masks == 3 && s.w == 48 && s.h == 32 && s.image.c == 3,
              "sa1b sample: %s %d masks %dx%d", s.name, s.n_masks, s.w, s.h);
        for (int k = 0; k < 3 && k < s.n_masks; k++)
            CHECK(masks_equal(&s, k, B->masks[k]), "sa1b mask %d", k);
        asam_sample_free(&s);
        CHECK(asam_dataset_get(ds, 0, 2, &s) == 0 && s.n_masks == 2, "max_masks 2");
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   sa1b folder\n");
    }
}

/* ---- sa1b .tar shard (of the folder's files) ---- */
static void case_sa1b_tar(syn_image *A, syn_image *B) {
    char p[512], q[512], spec[2400];
    pathf(p, sizeof p, "sa1b");
    pathf(q, sizeof q, "shard.tar");
    struct archive *a = archive_write_new();
    archive_write_set_format_ustar(a);
    archive_write_open_filename(a, q);
    const char *members[] = {"sa_1.jpg", "sa_1.json", "sa_2.jpg", "sa_2.json"};
    for (int i = 0; i < 4; i++) {
        char src[600];
        snprintf(src, sizeof src, "%s/%s", p, members[i]);
        add_to_tar(a, src, members[i]);
    }
    archive_write_close(a);
    archive_write_free(a);
    snprintf(spec, sizeof spec, "sa1b:%s", q);
    asam_dataset *ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        /* forwards, then backwards (re-opens the stream) */
        CHECK(asam_dataset_get(ds, 1, 0, &s) == 0 && s.n_masks == 3 &&
                  masks_equal(&s, 2, B->masks[2]),
              "tar item 1: %s", asam_last_error());
        asam_sample_free(&s);
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 3 &&
                  masks_equal(&s, 0, A->masks[0]),
              "tar item 0: %s", asam_last_error());
        CHECK(!strcmp(s.name, "sa_1"), "tar name %s", s.name);
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   sa1b tar shard\n");
    }
}

/* ---- adv: smaller PNGs + the SA-1B annotations ---- */
static void case_adv(syn_image *A, syn_image *B) {
    char p[512], q[512], spec[2400];
    pathf(p, sizeof p, "sa1b");
    pathf(q, sizeof q, "adv");
    asam_mkdirs(q);
    for (int k = 1; k <= 2; k++) {
        asam_image small;
        asam_image_resize_pil_bilinear(k == 1 ? &A->img : &B->img, 24, 16, &small);
        char f[1100];
        snprintf(f, sizeof f, "%s/sa_%d.png", q, k);
        asam_image_write_png(f, &small);
        asam_image_free(&small);
    }
    snprintf(spec, sizeof spec, "adv:%s:%s", q, p);
    asam_dataset *ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.w == 48 && s.h == 32 && s.n_masks == 3,
              "adv sample resized to the annotation size: %s", asam_last_error());
        asam_sample_free(&s);
        /* native: the image as saved, the masks at the annotation's size */
        CHECK(asam_dataset_get_native(ds, 0, 0, &s) == 0 && s.w == 24 && s.h == 16 && s.mw == 48 &&
                  s.mh == 32 && s.n_masks == 3 && masks_equal(&s, 1, A->masks[1]),
              "adv native sizes: %s", asam_last_error());
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   adv layout\n");
    }
    /* the official layout: GTDIR/sa_N/segmentation_j.png (0 / 255) */
    char g[512];
    pathf(g, sizeof g, "advgt");
    for (int k = 1; k <= 2; k++) {
        syn_image *S = k == 1 ? A : B;
        for (int j = 0; j < 2; j++) {
            char f[1100];
            snprintf(f, sizeof f, "%s/sa_%d", g, k);
            asam_mkdirs(f);
            snprintf(f, sizeof f, "%s/sa_%d/segmentation_%d.png", g, k, j);
            asam_image m = {0};
            asam_image_alloc(&m, 48, 32, 1);
            for (int i = 0; i < 48 * 32; i++) m.data[i] = S->masks[j][i] ? 255 : 0;
            asam_image_write_png(f, &m);
            asam_image_free(&m);
        }
    }
    snprintf(spec, sizeof spec, "adv:%s:%s", q, g);
    ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get_native(ds, 1, 0, &s) == 0 && s.w == 24 && s.h == 16 && s.mw == 48 &&
                  s.mh == 32 && s.n_masks == 2 && masks_equal(&s, 0, B->masks[0]) &&
                  masks_equal(&s, 1, B->masks[1]),
              "adv per-mask PNGs: %s", asam_last_error());
        asam_sample_free(&s);
        CHECK(asam_dataset_get(ds, 0, 1, &s) == 0 && s.w == 48 && s.h == 32 && s.n_masks == 1 &&
                  masks_equal(&s, 0, A->masks[0]),
              "adv per-mask PNGs, resized image, max 1: %s", asam_last_error());
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   adv per-mask PNG layout\n");
    }
}

/* ---- coco: polygon, compressed RLE, uncompressed RLE, a crowd region, an empty image ---- */
static void case_coco(syn_image *A, syn_image *B) {
    char q[512], spec[2400];
    pathf(q, sizeof q, "coco");
    asam_mkdirs(q);
    char f[1100];
    snprintf(f, sizeof f, "%s/one.png", q);
    asam_image_write_png(f, &A->img);
    snprintf(f, sizeof f, "%s/two.png", q);
    asam_image_write_png(f, &B->img);
    {
        asam_rle r;
        asam_rle_encode(A->masks[1], 32, 48, &r);
        char *cs = asam_rle_to_string(&r), *esc = malloc(2 * strlen(cs) + 1), *e = esc;
        for (char *c = cs; *c; c++) {
            if (*c == '\\') *e++ = '\\';
            *e++ = *c;
        }
        *e = 0;
        char counts[4096] = "";
        int o = 0;
        for (size_t i = 0; i < r.n; i++)
            o += snprintf(counts + o, sizeof counts - (size_t)o, "%s%u", i ? "," : "", r.counts[i]);
        char json[16384];
        snprintf(
            json, sizeof json,
            "{\"images\": [{\"id\": 7, \"file_name\": \"one.png\", \"width\": 48, \"height\": "
            "32}, {\"id\": 9, \"file_name\": \"two.png\", \"width\": 48, \"height\": 32}],"
            "\"annotations\": ["
            "{\"id\": 1, \"image_id\": 7, \"iscrowd\": 0, \"segmentation\": [[4, 4, 20, 4, 20, "
            "12, 4, 12]]},"
            "{\"id\": 2, \"image_id\": 7, \"iscrowd\": 0, \"segmentation\": {\"size\": [32, 48], "
            "\"counts\": \"%s\"}},"
            "{\"id\": 3, \"image_id\": 7, \"iscrowd\": 1, \"segmentation\": {\"size\": [32, 48], "
            "\"counts\": [%s]}},"
            "{\"id\": 4, \"image_id\": 7, \"iscrowd\": 0, \"segmentation\": {\"size\": [32, 48], "
            "\"counts\": [%s]}}]}",
            esc, counts, counts);
        snprintf(f, sizeof f, "%s/ann.json", root);
        asam_write_file_atomic(f, json, strlen(json));
        free(cs);
        free(esc);
        asam_rle_free(&r);
    }
    /* official (utils/dataloader_COCO.py:61-72 annToMask of every annotation): the crowd
     * region is the third of four masks */
    snprintf(spec, sizeof spec, "coco:%s:%s", f, q);
    asam_dataset *ds = open_ok(spec, 1); /* image 9 has no annotation */
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0, "coco get: %s", asam_last_error());
        CHECK(s.n_masks == 4, "coco: %d masks (crowd included -> 4)", s.n_masks);
        if (s.n_masks == 4) CHECK(masks_equal(&s, 2, A->masks[1]), "coco crowd RLE mask");
        asam_sample_free(&s);
        asam_dataset_close(ds);
    }
    snprintf(spec, sizeof spec, "coco:%s:%s:skip-crowd", f, q);
    ds = open_ok(spec, 1);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0, "coco get: %s", asam_last_error());
        CHECK(s.n_masks == 3, "coco: %d masks (skip-crowd -> 3)", s.n_masks);
        if (s.n_masks == 3) {
            CHECK(masks_equal(&s, 1, A->masks[1]) && masks_equal(&s, 2, A->masks[1]),
                  "coco RLE masks");
            asam_rle pr;
            const double poly[8] = {4, 4, 20, 4, 20, 12, 4, 12};
            const double *pp[1] = {poly};
            size_t len = 8;
            uint8_t *want = malloc(32 * 48);
            asam_rle_from_polygons(pp, &len, 1, 32, 48, &pr);
            asam_rle_decode(&pr, want);
            CHECK(masks_equal(&s, 0, want), "coco polygon mask");
            asam_rle_free(&pr);
            free(want);
        }
        CHECK(!strcmp(s.name, "one"), "coco name %s", s.name);
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   coco\n");
    }
}

/* ---- masks: image + binary mask pairs ---- */
static void case_masks(syn_image *A) {
    char spec[2400], f[1100];
    char im_dir[512], mk_dir[512];
    pathf(im_dir, sizeof im_dir, "hrsod/img");
    pathf(mk_dir, sizeof mk_dir, "hrsod/gt");
    asam_mkdirs(im_dir);
    asam_mkdirs(mk_dir);
    snprintf(f, sizeof f, "%s/x1.jpg", im_dir);
    asam_image_write_jpeg(f, &A->img, 90);
    asam_image gm;
    asam_image_alloc(&gm, 48, 32, 1);
    for (int i = 0; i < 48 * 32; i++) gm.data[i] = A->masks[0][i] ? 200 : (i % 2 ? 100 : 0);
    snprintf(f, sizeof f, "%s/x1.png", mk_dir);
    asam_image_write_png(f, &gm);
    snprintf(spec, sizeof spec, "masks:%s:%s", im_dir, mk_dir);
    asam_dataset *ds = open_ok(spec, 1);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 1 &&
                  masks_equal(&s, 0, A->masks[0]),
              "masks: foreground = value > 128: %s", asam_last_error());
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   masks pairs\n");
    }
    asam_image_free(&gm);
}

/* ---- idmap: gray ids with an ignore value, and a colour map ---- */
static void case_idmap(syn_image *A, syn_image *B) {
    char spec[2400], f[1100], im_dir[512], mk_dir[512];
    pathf(im_dir, sizeof im_dir, "ade/img");
    pathf(mk_dir, sizeof mk_dir, "ade/map");
    asam_mkdirs(im_dir);
    asam_mkdirs(mk_dir);
    snprintf(f, sizeof f, "%s/g.png", im_dir);
    asam_image_write_png(f, &A->img);
    snprintf(f, sizeof f, "%s/c.png", im_dir);
    asam_image_write_png(f, &B->img);
    asam_image gm;
    asam_image_alloc(&gm, 48, 32, 1);
    for (int i = 0; i < 48 * 32; i++)
        gm.data[i] = A->masks[0][i] ? 3 : A->masks[1][i] ? 7 : A->masks[2][i] ? 255 : 0;
    snprintf(f, sizeof f, "%s/g.png", mk_dir);
    asam_image_write_png(f, &gm);
    asam_image cm;
    asam_image_alloc(&cm, 48, 32, 3);
    for (int i = 0; i < 48 * 32; i++) {
        cm.data[3 * i] = B->masks[0][i] ? 255 : 0;
        cm.data[3 * i + 1] = B->masks[2][i] ? 255 : 0; /* 0x00ff00 (0x0000ff would be 255) */
        cm.data[3 * i + 2] = 0;
    }
    snprintf(f, sizeof f, "%s/c.png", mk_dir);
    asam_image_write_png(f, &cm);
    snprintf(spec, sizeof spec, "idmap:%s:%s:ignore=255", im_dir, mk_dir);
    asam_dataset *ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        /* sorted: c before g */
        CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 2, "colour map: %d masks (%s)",
              s.n_masks, asam_last_error());
        if (s.n_masks == 2) /* values sorted: 0x00ff00 (mask 2) before 0xff0000 (mask 0) */
            CHECK(masks_equal(&s, 0, B->masks[2]) && masks_equal(&s, 1, B->masks[0]),
                  "colour masks");
        asam_sample_free(&s);
        CHECK(asam_dataset_get(ds, 1, 0, &s) == 0 && s.n_masks == 2, "gray ids minus ignore: %d",
              s.n_masks);
        if (s.n_masks == 2)
            CHECK(masks_equal(&s, 0, A->masks[0]) && masks_equal(&s, 1, A->masks[1]), "gray masks");
        asam_sample_free(&s);
        asam_dataset_close(ds);
    }
    snprintf(spec, sizeof spec, "idmap:%s:%s", im_dir, mk_dir);
    ds = open_ok(spec, 2);
    if (ds) {
        asam_sample s;
        CHECK(asam_dataset_get(ds, 1, 0, &s) == 0 && s.n_masks == 3, "no ignore: 3 masks");
        asam_sample_free(&s);
        asam_dataset_close(ds);
        printf("ok   idmap\n");
    }
    asam_image_free(&gm);
    asam_image_free(&cm);
}

/* ---- bad inputs (after the cases above wrote their folders) ---- */
static void case_bad_inputs(syn_image *A) {
    char p[512], q[512], spec[2400], f[1100], im_dir[512], mk_dir[512];
    pathf(q, sizeof q, "coco");
    expect_fail("sa1b:/nonexistent/folder", 0, "/nonexistent/folder");
    expect_fail("pascal:/tmp", 0, "unknown dataset kind");
    expect_fail("nocolon", 0, "KIND:PATH");
    snprintf(spec, sizeof spec, "coco:%s/missing.json:%s", root, q);
    expect_fail(spec, 0, "missing.json");
    /* corrupt JSON */
    pathf(p, sizeof p, "bad");
    syn_write_sa1b(p, 1, 48, 32, 2, 1);
    snprintf(f, sizeof f, "%s/sa_1.json", p);
    asam_write_file_atomic(f, "{\"image\": {", 11);
    snprintf(spec, sizeof spec, "sa1b:%s", p);
    expect_fail(spec, 1, "sa_1.json");
    /* annotation size differs from the image */
    syn_write_sa1b(p, 1, 48, 32, 2, 1);
    syn_image C;
    syn_make(&C, 1, 40, 32, 2);
    snprintf(f, sizeof f, "%s/sa_1.png", p);
    asam_image_write_png(f, &C.img);
    syn_free(&C);
    expect_fail(spec, 1, "sa_1.json");
    /* mask of the wrong size */
    pathf(im_dir, sizeof im_dir, "hrsod/gt/x1.png");
    asam_image small;
    asam_image_alloc(&small, 10, 10, 1);
    memset(small.data, 0, 100);
    asam_image_write_png(im_dir, &small);
    asam_image_free(&small);
    pathf(im_dir, sizeof im_dir, "hrsod/img");
    pathf(mk_dir, sizeof mk_dir, "hrsod/gt");
    snprintf(spec, sizeof spec, "masks:%s:%s", im_dir, mk_dir);
    expect_fail(spec, 1, "x1.png");
    /* an image without its mask */
    snprintf(f, sizeof f, "%s/x2.jpg", im_dir);
    asam_image_write_jpeg(f, &A->img, 90);
    expect_fail(spec, 0, "x2.jpg");
    /* a bad RLE string inside COCO */
    snprintf(f, sizeof f, "%s/ann_bad.json", root);
    const char *bad = "{\"images\": [{\"id\": 1, \"file_name\": \"one.png\", \"width\": 48, "
                      "\"height\": 32}], \"annotations\": [{\"image_id\": 1, \"segmentation\": "
                      "{\"size\": [32, 48], \"counts\": \"zz\"}}]}";
    asam_write_file_atomic(f, bad, strlen(bad));
    snprintf(spec, sizeof spec, "coco:%s:%s", f, q);
    expect_fail(spec, 1, "ann_bad.json");
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/asam_test_dataset_XXXXXX");
    if (!mkdtemp(root)) return 1;
    syn_image A, B;
    syn_make(&A, 1, 48, 32, 3);
    syn_make(&B, 2, 48, 32, 3);
    case_sa1b_folder(&B);
    case_sa1b_tar(&A, &B);
    case_adv(&A, &B);
    case_coco(&A, &B);
    case_masks(&A);
    case_idmap(&A, &B);
    case_bad_inputs(&A);
    syn_free(&A);
    syn_free(&B);
    test_rm_rf(root);
    return test_finish("test_dataset");
}
