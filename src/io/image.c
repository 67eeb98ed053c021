/* JPEG (libjpeg-turbo) and PNG (libpng) reading and atomic writing of 8-bit images.
 *
 * Both libraries report fatal errors through callbacks that must not return; we longjmp back
 * to the caller and turn the library's message into one asam_error line naming the file.
 * Decoding matches what PIL gives for Image.open(path).convert(mode): libjpeg defaults (islow
 * IDCT, fancy upsampling), EXIF orientation ignored, 16-bit PNG samples keep their high byte,
 * RGB -> gray uses PIL's L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16. */
#include "asam/image.h"

#include "asam/error.h"
#include "asam/fileio.h"

#include <stdio.h> /* before jpeglib.h, which needs FILE */

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Refuse images whose pixel count is absurd (a corrupt or hostile header) before allocating. */
#define ASAM_IMAGE_MAX_PIXELS (1ull << 28)
#define ASAM_IMAGE_MAX_SIDE (1 << 20)

int asam_image_alloc(asam_image *img, int w, int h, int c) {
    img->w = img->h = img->c = 0;
    img->data = NULL;
    if (w <= 0 || h <= 0 || (c != 1 && c != 3 && c != 4))
        return asam_error("image: bad size %dx%dx%d", w, h, c);
    if (w > ASAM_IMAGE_MAX_SIDE || h > ASAM_IMAGE_MAX_SIDE ||
        (unsigned long long)w * (unsigned long long)h > ASAM_IMAGE_MAX_PIXELS)
        return asam_error("image: size %dx%d exceeds the %llu-pixel limit", w, h,
                          ASAM_IMAGE_MAX_PIXELS);
    img->data = malloc((size_t)w * h * c);
    if (!img->data) return asam_error("image: out of memory for %dx%dx%d", w, h, c);
    img->w = w;
    img->h = h;
    img->c = c;
    return 0;
}

void asam_image_free(asam_image *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->w = img->h = img->c = 0;
}

static int check_dims(const char *path, long long w, long long h) {
    if (w <= 0 || h <= 0) return asam_error("%s: image has zero size (%lldx%lld)", path, w, h);
    if (w > ASAM_IMAGE_MAX_SIDE || h > ASAM_IMAGE_MAX_SIDE ||
        (unsigned long long)w * (unsigned long long)h > ASAM_IMAGE_MAX_PIXELS)
        return asam_error("%s: image size %lldx%lld exceeds the %llu-pixel limit", path, w, h,
                          ASAM_IMAGE_MAX_PIXELS);
    return 0;
}

/* Whole file into memory (images are small next to the models; one read keeps the decoders'
 * error paths simple). */
static int slurp(const char *path, unsigned char **data, size_t *n) {
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return asam_error("%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return asam_error("%s: cannot seek", path);
    }
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return asam_error("%s: cannot seek", path);
    }
    unsigned char *buf = malloc(sz > 0 ? (size_t)sz : 1);
    if (!buf) {
        fclose(f);
        return asam_error("%s: out of memory reading %ld bytes", path, sz);
    }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        free(buf);
        return asam_error("%s: read error", path);
    }
    *data = buf;
    *n = got;
    return 0;
}

static inline uint8_t pil_luma(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

/* Convert an image in place to `want` channels (0 keeps it). */
static int convert_channels(const char *path, asam_image *img, int want) {
    if (want == 0 || want == img->c) return 0;
    if (want != 1 && want != 3 && want != 4)
        return asam_error("%s: want_channels must be 0, 1, 3 or 4 (got %d)", path, want);
    size_t np = (size_t)img->w * img->h;
    uint8_t *out = malloc(np * want);
    if (!out) return asam_error("%s: out of memory", path);
    const uint8_t *in = img->data;
    int c = img->c;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = in + i * c;
        uint8_t *q = out + i * want;
        if (want == 1) {
            q[0] = c == 1 ? p[0] : pil_luma(p);
        } else {
            if (c == 1)
                q[0] = q[1] = q[2] = p[0];
            else
                q[0] = p[0], q[1] = p[1], q[2] = p[2];
            if (want == 4) q[3] = c == 4 ? p[3] : 255;
        }
    }
    free(img->data);
    img->data = out;
    img->c = want;
    return 0;
}

/* ---- JPEG ---------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int hit_eof; /* saw JWRN_JPEG_EOF */
} jpeg_err;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_silent_cb(j_common_ptr cinfo, int level) {
    /* Warnings (e.g. "premature end of data") are collected, not printed. libjpeg pads a
     * truncated stream with gray; PIL refuses such files unless LOAD_TRUNCATED_IMAGES, so we
     * treat a corrupt-data warning as an error too (checked after decoding). */
    if (level >= 0) return;
    cinfo->err->num_warnings++;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) ((jpeg_err *)cinfo->err)->hit_eof = 1;
}

/* libjpeg's error manager with our callbacks: errors longjmp back with the message kept. */
static struct jpeg_error_mgr *jpeg_err_init(jpeg_err *e) {
    struct jpeg_error_mgr *m = jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_error_exit_cb;
    e->pub.emit_message = jpeg_silent_cb;
    e->msg[0] = 0;
    e->hit_eof = 0;
    return m;
}

static int read_jpeg(const char *path, const unsigned char *buf, size_t n, asam_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    asam_image *volatile img = out;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_err_init(&jerr);
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        asam_image_free(img);
        return asam_error("%s: corrupt JPEG: %s", path, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (check_dims(path, cinfo.image_width, cinfo.image_height)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int c;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE, c = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB, c = 3;
        break;
    default:
        jpeg_destroy_decompress(&cinfo);
        return asam_error("%s: unsupported JPEG colour space %d (CMYK/YCCK)", path,
                          (int)cinfo.jpeg_color_space);
    }
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_components != c) {
        jpeg_destroy_decompress(&cinfo);
        return asam_error("%s: unexpected JPEG output components %d", path,
                          cinfo.output_components);
    }
    if (asam_image_alloc(img, (int)cinfo.output_width, (int)cinfo.output_height, c)) {
        jpeg_destroy_decompress(&cinfo);
        return asam_error_prefix(path);
    }
    size_t stride = (size_t)img->w * c;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = img->data + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    /* A truncated file decodes "successfully" with a warning; report it instead. */
    if (jerr.hit_eof) {
        jpeg_destroy_decompress(&cinfo);
        asam_image_free(img);
        return asam_error("%s: truncated JPEG (premature end of data)", path);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* ---- PNG ----------------------------------------------------------------------------- */

typedef struct {
    jmp_buf jb;
    char msg[256];
    const unsigned char *buf;
    size_t n, pos;
} png_ctx;

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    longjmp(ctx->jb, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_read_cb(png_structp png, png_bytep dst, png_size_t len) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (len > ctx->n - ctx->pos) png_error(png, "truncated file");
    memcpy(dst, ctx->buf + ctx->pos, len);
    ctx->pos += len;
}

static int read_png(const char *path, const unsigned char *buf, size_t n, asam_image *out) {
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.buf = buf;
    ctx.n = n;
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_cb, png_warning_cb);
    if (!png) return asam_error("%s: out of memory (png)", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return asam_error("%s: out of memory (png)", path);
    }
    asam_image *volatile img = out;
    png_bytep *volatile rows = NULL;
    if (setjmp(ctx.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        asam_image_free(img);
        return asam_error("%s: corrupt PNG: %s", path, ctx.msg);
    }
    png_set_read_fn(png, &ctx, png_read_cb);
    /* Our own limit is checked below; raise libpng's so it does not reject first. */
    png_set_user_limits(png, ASAM_IMAGE_MAX_SIDE, ASAM_IMAGE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_dims(path, w, h)) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth == 16) png_set_strip_16(png); /* PIL's "RGB;16B": keep the high byte */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY_ALPHA ||
        (color == PNG_COLOR_TYPE_GRAY && png_get_valid(png, info, PNG_INFO_tRNS)))
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || (c != 1 && c != 3 && c != 4))
        png_error(png, "unsupported pixel layout after expansion");
    if (asam_image_alloc(img, (int)w, (int)h, c)) png_error(png, "cannot allocate image");
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = img->data + (size_t)y * w * c;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

int asam_image_read(const char *path, int want_channels, asam_image *out) {
    memset(out, 0, sizeof *out);
    if (want_channels != 0 && want_channels != 1 && want_channels != 3 && want_channels != 4)
        return asam_error("%s: want_channels must be 0, 1, 3 or 4 (got %d)", path, want_channels);
    unsigned char *buf;
    size_t n;
    if (slurp(path, &buf, &n)) return -1;
    int rc;
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        rc = read_jpeg(path, buf, n, out);
    else if (n >= 8 && memcmp(buf, png_magic, 8) == 0)
        rc = read_png(path, buf, n, out);
    else if (n == 0)
        rc = asam_error("%s: empty file, not an image", path);
    else
        rc = asam_error("%s: not a JPEG or PNG file", path);
    free(buf);
    if (rc == 0 && convert_channels(path, out, want_channels)) {
        asam_image_free(out);
        rc = -1;
    }
    return rc;
}

/* ---- writing ------------------------------------------------------------------------- */

static int check_image(const char *path, const asam_image *img) {
    if (!img || !img->data || img->w <= 0 || img->h <= 0 ||
        (img->c != 1 && img->c != 3 && img->c != 4))
        return asam_error("%s: cannot write an empty or malformed image", path);
    return 0;
}

int asam_image_write_png(const char *path, const asam_image *img) {
    if (check_image(path, img)) return -1;
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) return -1;
    png_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        asam_atomic_abort(&af);
        return asam_error("%s: out of memory (png)", path);
    }
    if (setjmp(ctx.jb)) {
        png_destroy_write_struct(&png, &info);
        asam_atomic_abort(&af);
        return asam_error("%s: cannot write PNG: %s", path, ctx.msg);
    }
    png_init_io(png, af.fp);
    int color = img->c == 1   ? PNG_COLOR_TYPE_GRAY
                : img->c == 3 ? PNG_COLOR_TYPE_RGB
                              : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->w * img->c;
    for (int y = 0; y < img->h; y++) png_write_row(png, img->data + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return asam_atomic_commit(&af);
}

int asam_image_write_jpeg(const char *path, const asam_image *img, int quality) {
    if (check_image(path, img)) return -1;
    if (img->c == 4) return asam_error("%s: JPEG cannot store an alpha channel", path);
    if (quality < 1 || quality > 100)
        return asam_error("%s: JPEG quality must be 1..100 (got %d)", path, quality);
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) return -1;
    struct jpeg_compress_struct cinfo;
    jpeg_err jerr;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_err_init(&jerr);
    if (setjmp(jerr.jb)) {
        jpeg_destroy_compress(&cinfo);
        asam_atomic_abort(&af);
        return asam_error("%s: cannot write JPEG: %s", path, jerr.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, af.fp);
    cinfo.image_width = (JDIMENSION)img->w;
    cinfo.image_height = (JDIMENSION)img->h;
    cinfo.input_components = img->c;
    cinfo.in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)img->w * img->c;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->data + (size_t)cinfo.next_scanline * stride;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return asam_atomic_commit(&af);
}
