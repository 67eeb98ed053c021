/* JPEG/PNG reading against Pillow 9.4 (hashes of Image.open(f).convert(mode) on the files in
 * tests/data/images, made with Pillow from the resize texture), writing round trips, and
 * malformed files: each must fail with one error naming the file, never crash. */
#include "asam/error.h"
#include "asam/image.h"
#include "test_synth.h"
#include "test_util.h"

#include <stdint.h>
#include <zlib.h>

static const struct {
    const char *file;
    int native_c;                         /* channels with want_channels = 0 */
    uint64_t hash_l, hash_rgb, hash_rgba; /* Pillow convert("L" / "RGB" / "RGBA") */
} files[] = {
    {"rgb.jpg", 3, 0x2cf8c2970a1412cbull, 0x734bf6726ca2f2a9ull, 0xbe37c2c17a450892ull},
    {"gray.jpg", 1, 0x7aca8bd54b08946eull, 0x1dd4bc8ee2d02830ull, 0x9086ea1718e05a7bull},
    {"rgb.png", 3, 0x08535822786d3e08ull, 0x79694e755cd92a37ull, 0x8a2e0930ba8d7784ull},
    {"rgba.png", 4, 0x08535822786d3e08ull, 0x79694e755cd92a37ull, 0xa191843ef1b1d605ull},
    {"gray.png", 1, 0x71602cb96116eb0full, 0x68ea01232cc8df4full, 0x27b955517b02c01cull},
    {"la.png", 4, 0x71602cb96116eb0full, 0x68ea01232cc8df4full, 0x7ecfb41322c4108dull},
    {"palette.png", 3, 0xb232d7f2259d0719ull, 0x0d28d645fddac06bull, 0x457edb5bd5c5700cull},
    {"palette_trns.png", 4, 0xb232d7f2259d0719ull, 0x0d28d645fddac06bull, 0x8d98a0beeb1667e0ull},
    {"gray1.png", 1, 0xf92598b07651a2ebull, 0xac4e221e94dbb18bull, 0xa4ff625b902a4d08ull},
    {"rgb16.png", 3, 0x632c2d82fed431bfull, 0xbb8bbd9097120052ull, 0xb9815491a313fa47ull},
    /* EXIF orientation 6 is ignored, as Image.open does (no exif_transpose) */
    {"exif6.jpg", 3, 0, 0x734bf6726ca2f2a9ull, 0},
};

static void data_path(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/tests/data/images/%s", ASAM_SOURCE_DIR, name);
}

static void test_decode_matches_pillow(void) {
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        data_path(path, sizeof path, files[i].file);
        asam_image im;
        int rc = asam_image_read(path, 0, &im);
        CHECK(rc == 0 && im.w == 37 && im.h == 29 && im.c == files[i].native_c,
              "%s: read: %s (got %dx%dx%d)", files[i].file, rc ? asam_last_error() : "ok", im.w,
              im.h, im.c);
        asam_image_free(&im);
        const int wants[3] = {1, 3, 4};
        const uint64_t want_hash[3] = {files[i].hash_l, files[i].hash_rgb, files[i].hash_rgba};
        int ok = 1;
        for (int k = 0; k < 3; k++) {
            if (!want_hash[k]) continue;
            rc = asam_image_read(path, wants[k], &im);
            uint64_t h = rc == 0 ? test_fnv1a(im.data, (size_t)im.w * im.h * im.c) : 0;
            CHECK(rc == 0 && im.c == wants[k] && h == want_hash[k],
                  "%s as %d channels differs from Pillow (%s)", files[i].file, wants[k],
                  rc ? asam_last_error() : "pixels");
            ok &= rc == 0 && h == want_hash[k];
            asam_image_free(&im);
        }
        if (ok) printf("ok   %s decodes as Pillow 9.4\n", files[i].file);
    }
}

static void test_write_round_trip(void) {
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        asam_image im, back;
        CHECK(asam_image_alloc(&im, 45, 31, c) == 0, "alloc");
        syn_texture(&im);
        char path[64];
        snprintf(path, sizeof path, "imgio_rt_%d.png", c);
        CHECK(asam_image_write_png(path, &im) == 0, "write %s: %s", path, asam_last_error());
        CHECK(asam_image_read(path, 0, &back) == 0 && back.w == 45 && back.h == 31 && back.c == c &&
                  memcmp(back.data, im.data, (size_t)45 * 31 * c) == 0,
              "PNG round trip c=%d", c);
        asam_image_free(&back);
        remove(path);
        if (c != 4) {
            /* smooth image so JPEG error is small */
            for (int y = 0; y < im.h; y++)
                for (int x = 0; x < im.w; x++)
                    for (int k = 0; k < c; k++)
                        im.data[((size_t)y * im.w + x) * c + k] = (uint8_t)(2 * x + 3 * y + 30 * k);
            snprintf(path, sizeof path, "imgio_rt_%d.jpg", c);
            CHECK(asam_image_write_jpeg(path, &im, 95) == 0, "write %s: %s", path,
                  asam_last_error());
            int rc = asam_image_read(path, 0, &back);
            CHECK(rc == 0 && back.c == c && back.w == 45 && back.h == 31, "JPEG read back c=%d", c);
            double se = 0;
            for (size_t i = 0; rc == 0 && i < (size_t)45 * 31 * c; i++) {
                double d = (double)back.data[i] - im.data[i];
                se += d * d;
            }
            double psnr = 10 * log10(255.0 * 255.0 / (se / (45.0 * 31 * c) + 1e-12));
            CHECK(psnr > 35, "JPEG round trip c=%d PSNR %.1f dB", c, psnr);
            printf("ok   PNG round trip c=%d, JPEG q95 PSNR %.1f dB\n", c, psnr);
            asam_image_free(&back);
            remove(path);
        } else {
            CHECK(asam_image_write_jpeg("imgio_rgba.jpg", &im, 90) == -1, "RGBA JPEG accepted");
            CHECK(!test_is_file("imgio_rgba.jpg"), "failed JPEG write left a file");
        }
        asam_image_free(&im);
    }
    asam_image im;
    CHECK(asam_image_alloc(&im, 4, 4, 3) == 0, "alloc");
    syn_texture(&im);
    CHECK(asam_image_write_png("no_such_dir_imgio/x.png", &im) == -1 &&
              strstr(asam_last_error(), "no_such_dir_imgio/x.png"),
          "write into a missing folder: %s", asam_last_error());
    CHECK(asam_image_write_jpeg("imgio_q.jpg", &im, 0) == -1, "quality 0 accepted");
    asam_image_free(&im);
    CHECK(asam_image_alloc(&im, 0, 5, 3) == -1, "zero-width alloc accepted");
    CHECK(asam_image_alloc(&im, 1 << 15, 1 << 15, 3) == -1, "2^30-pixel alloc accepted");
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(p, 1, n, f);
    fclose(f);
    return k == n ? 0 : -1;
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)sz);
    *n = fread(p, 1, (size_t)sz, f);
    fclose(f);
    return p;
}

/* Write bytes to a temp file and expect a clean failure naming it. */
static void expect_bad(const char *what, const void *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "imgio_bad_%s", what);
    CHECK(write_bytes(path, p, n) == 0, "cannot write %s", path);
    asam_image im = {1, 1, 1, NULL};
    int rc = asam_image_read(path, 3, &im);
    CHECK(rc == -1 && strstr(asam_last_error(), path) && im.data == NULL, "%s: rc %d, error '%s'",
          what, rc, asam_last_error());
    if (rc == -1) printf("ok   %-22s -> %s\n", what, asam_last_error());
    if (rc == 0) asam_image_free(&im);
    remove(path);
}

static void png_chunk(uint8_t *dst, size_t *pos, const char *type, const uint8_t *d, uint32_t n) {
    uint8_t *p = dst + *pos;
    p[0] = n >> 24, p[1] = n >> 16, p[2] = n >> 8, p[3] = n;
    memcpy(p + 4, type, 4);
    if (n) memcpy(p + 8, d, n);
    uint32_t crc = (uint32_t)crc32(0, p + 4, n + 4);
    p[8 + n] = crc >> 24, p[9 + n] = crc >> 16, p[10 + n] = crc >> 8, p[11 + n] = crc;
    *pos += 12 + n;
}

/* A well-formed PNG header declaring w x h RGB, followed by a tiny IDAT. */
static size_t make_png_header(uint8_t *buf, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    size_t pos = 8;
    uint8_t ihdr[13] = {w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h, 8, 2, 0, 0, 0};
    png_chunk(buf, &pos, "IHDR", ihdr, 13);
    uint8_t raw[16] = {0}, z[64];
    uLongf zn = sizeof z;
    compress(z, &zn, raw, sizeof raw);
    png_chunk(buf, &pos, "IDAT", z, (uint32_t)zn);
    png_chunk(buf, &pos, "IEND", NULL, 0);
    return pos;
}

static void test_bad_files(void) {
    char path[4096];
    size_t nj, np;
    data_path(path, sizeof path, "rgb.jpg");
    uint8_t *jpg = read_bytes(path, &nj);
    data_path(path, sizeof path, "rgb.png");
    uint8_t *png = read_bytes(path, &np);
    CHECK(jpg && png, "test images missing");
    if (!jpg || !png) return;

    expect_bad("empty", "", 0);
    expect_bad("text", "hello, not an image\n", 20);
    expect_bad("truncated.jpg", jpg, nj / 2);
    expect_bad("jpeg_magic_only", jpg, 3);
    expect_bad("truncated.png", png, np / 2);
    expect_bad("png_sig_only", png, 8);
    uint8_t rnd[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
    memcpy(rnd, jpg, 3);
    expect_bad("random_after_jpeg_magic", rnd, sizeof rnd);
    memcpy(rnd, png, 8);
    expect_bad("random_after_png_magic", rnd, sizeof rnd);

    /* corrupt a byte inside the PNG's first IDAT: CRC mismatch */
    uint8_t *p2 = malloc(np);
    memcpy(p2, png, np);
    p2[np / 2] ^= 0x55;
    expect_bad("png_bad_crc", p2, np);
    free(p2);

    /* JPEG with its SOF dimensions patched: huge and zero */
    uint8_t *j2 = malloc(nj);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < nj; i++)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {
            sof = i;
            break;
        }
    CHECK(sof, "no SOF marker in rgb.jpg");
    if (sof) {
        memcpy(j2, jpg, nj);
        j2[sof + 5] = 0xEA, j2[sof + 6] = 0x60; /* height 60000 */
        j2[sof + 7] = 0xEA, j2[sof + 8] = 0x60; /* width 60000: over our pixel limit */
        expect_bad("jpeg_huge_dims", j2, nj);
        memcpy(j2, jpg, nj);
        j2[sof + 5] = 0, j2[sof + 6] = 0; /* height 0 */
        expect_bad("jpeg_zero_height", j2, nj);
    }
    free(j2);

    uint8_t hdr[256];
    expect_bad("png_huge_dims", hdr, make_png_header(hdr, 900000, 900000));
    expect_bad("png_zero_width", hdr, make_png_header(hdr, 0, 10));
    expect_bad("png_idat_too_short", hdr, make_png_header(hdr, 64, 64));

    asam_image im;
    CHECK(asam_image_read("imgio_no_such_file.png", 0, &im) == -1 &&
              strstr(asam_last_error(), "imgio_no_such_file.png"),
          "missing file: %s", asam_last_error());
    data_path(path, sizeof path, "rgb.png");
    CHECK(asam_image_read(path, 2, &im) == -1, "want_channels=2 accepted");
    free(jpg);
    free(png);
}

int main(void) {
    test_decode_matches_pillow();
    test_write_round_trip();
    test_bad_files();
    return test_finish("test_image");
}
