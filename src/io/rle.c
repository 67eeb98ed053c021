/* COCO run-length encoding, compatible with pycocotools (common/maskApi.c).
 *
 * Runs scan the mask in column-major order and alternate 0,1,0,... starting with zeros (the
 * first run may be empty). The compressed string stores each count as little-endian groups of
 * 5 bits, one character per group ('0' + bits, 0x20 = "more groups follow"), the last group
 * sign-extended from its 0x10 bit; from the fourth count on, the value stored is the
 * difference to the count two places earlier. Unlike pycocotools we validate everything:
 * characters, value ranges, and that the runs cover exactly h*w pixels. */
#include "asam/rle.h"

#include "asam/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Masks larger than this are refused (counts are uint32 and h*w must fit). */
#define RLE_MAX_PIXELS 0xFFFFFFFFull

static int check_size(int h, int w, const char *what) {
    if (h < 0 || w < 0) return asam_error("%s: negative mask size %dx%d", what, h, w);
    if ((unsigned long long)h * (unsigned long long)w > RLE_MAX_PIXELS)
        return asam_error("%s: mask size %dx%d too large", what, h, w);
    return 0;
}

void asam_rle_free(asam_rle *r) {
    if (!r) return;
    free(r->counts);
    r->counts = NULL;
    r->n = 0;
}

int asam_rle_from_counts(const uint32_t *counts, size_t n, int h, int w, asam_rle *out) {
    memset(out, 0, sizeof *out);
    if (check_size(h, w, "rle")) return -1;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += counts[i];
    uint64_t area = (uint64_t)h * (uint64_t)w;
    if (sum != area)
        return asam_error("rle: counts sum to %llu, expected h*w = %llu", (unsigned long long)sum,
                          (unsigned long long)area);
    out->counts = malloc(sizeof(uint32_t) * (n ? n : 1));
    if (!out->counts) return asam_error("rle: out of memory");
    if (n) memcpy(out->counts, counts, sizeof(uint32_t) * n);
    out->n = n;
    out->h = h;
    out->w = w;
    return 0;
}

int asam_rle_from_string(const char *s, int h, int w, asam_rle *out) {
    memset(out, 0, sizeof *out);
    if (!s) return asam_error("rle: NULL counts string");
    if (check_size(h, w, "rle")) return -1;
    size_t len = strlen(s);
    /* Each count takes at least one character. */
    uint32_t *cnts = malloc(sizeof(uint32_t) * (len ? len : 1));
    if (!cnts) return asam_error("rle: out of memory");
    uint64_t area = (uint64_t)h * (uint64_t)w, sum = 0;
    size_t m = 0, p = 0;
    while (p < len) {
        int64_t x = 0;
        int k = 0, more = 1;
        while (more) {
            if (p >= len) {
                free(cnts);
                return asam_error("rle: counts string ends inside a value");
            }
            int c = (unsigned char)s[p] - 48;
            if (c < 0 || c > 63) {
                free(cnts);
                return asam_error("rle: bad character 0x%02x at offset %zu in counts string",
                                  (unsigned char)s[p], p);
            }
            if (k >= 7) { /* 35 bits is more than any uint32 count or difference needs */
                free(cnts);
                return asam_error("rle: value too long at offset %zu in counts string", p);
            }
            x |= (int64_t)(c & 0x1f) << (5 * k);
            more = c & 0x20;
            p++;
            k++;
            if (!more && (c & 0x10)) x -= (int64_t)1 << (5 * k); /* sign-extend */
        }
        if (m > 2) x += cnts[m - 2];
        if (x < 0 || (uint64_t)x > area) {
            free(cnts);
            return asam_error("rle: count %zu out of range (%lld) for a %dx%d mask", m,
                              (long long)x, h, w);
        }
        sum += (uint64_t)x;
        if (sum > area) {
            free(cnts);
            return asam_error("rle: counts exceed h*w = %llu", (unsigned long long)area);
        }
        cnts[m++] = (uint32_t)x;
    }
    if (sum != area) {
        free(cnts);
        return asam_error("rle: counts sum to %llu, expected h*w = %llu", (unsigned long long)sum,
                          (unsigned long long)area);
    }
    out->counts = cnts;
    out->n = m;
    out->h = h;
    out->w = w;
    return 0;
}

char *asam_rle_to_string(const asam_rle *r) {
    /* A 32-bit count or difference needs at most 7 characters. */
    char *s = malloc(r->n * 7 + 1);
    if (!s) return NULL;
    size_t p = 0;
    for (size_t i = 0; i < r->n; i++) {
        int64_t x = r->counts[i];
        if (i > 2) x -= r->counts[i - 2];
        int more = 1;
        while (more) {
            int c = (int)(x & 0x1f);
            x >>= 5; /* arithmetic shift on int64 (gcc/clang) */
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more) c |= 0x20;
            s[p++] = (char)(c + 48);
        }
    }
    s[p] = 0;
    return s;
}

int asam_rle_encode(const uint8_t *mask, int h, int w, asam_rle *out) {
    memset(out, 0, sizeof *out);
    if (check_size(h, w, "rle_encode")) return -1;
    size_t area = (size_t)h * w;
    uint32_t *cnts = malloc(sizeof(uint32_t) * (area + 1));
    if (!cnts) return asam_error("rle_encode: out of memory");
    size_t k = 0;
    uint32_t c = 0;
    int prev = 0;
    for (int x = 0; x < w; x++) {
        for (int y = 0; y < h; y++) {
            int v = mask[(size_t)y * w + x] != 0;
            if (v != prev) {
                cnts[k++] = c;
                c = 0;
                prev = v;
            }
            c++;
        }
    }
    cnts[k++] = c;
    uint32_t *shrunk = realloc(cnts, sizeof(uint32_t) * k);
    out->counts = shrunk ? shrunk : cnts;
    out->n = k;
    out->h = h;
    out->w = w;
    return 0;
}

int asam_rle_decode(const asam_rle *r, uint8_t *mask) {
    size_t area = (size_t)r->h * r->w, pos = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->counts[i] > area - pos)
            return asam_error("rle_decode: runs exceed the %dx%d mask", r->h, r->w);
        pos += r->counts[i];
    }
    if (pos != area) return asam_error("rle_decode: runs cover %zu of %zu pixels", pos, area);
    memset(mask, 0, area);
    /* Only the foreground runs are written; walk down columns without a division per pixel. */
    pos = 0;
    for (size_t i = 0; i < r->n; i++) {
        uint32_t len = r->counts[i];
        if (i % 2 == 1 && len > 0) {
            size_t y = pos % r->h, x = pos / r->h;
            for (uint32_t j = 0; j < len; j++) {
                mask[y * r->w + x] = 1;
                if (++y == (size_t)r->h) y = 0, x++;
            }
        }
        pos += len;
    }
    return 0;
}

uint64_t asam_rle_area(const asam_rle *r) {
    uint64_t a = 0;
    for (size_t i = 1; i < r->n; i += 2) a += r->counts[i];
    return a;
}

void asam_rle_bbox(const asam_rle *r, double bbox[4]) {
    /* As the current pycocotools rleToBbox: only non-empty foreground runs count; a run that
     * crosses a column boundary spans the full height. */
    uint64_t h = (uint64_t)r->h, w = (uint64_t)r->w;
    size_t m = r->n / 2 * 2;
    bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
    if (m == 0 || h == 0) return;
    uint64_t xs = w, ys = h, xe = 0, ye = 0, cc = 0;
    for (size_t j = 0; j < m; j++) {
        uint64_t start = cc;
        cc += r->counts[j];
        if (j % 2 == 0 || r->counts[j] == 0) continue;
        uint64_t y0 = start % h, x0 = start / h, y1 = (cc - 1) % h, x1 = (cc - 1) / h;
        if (x0 < xs) xs = x0;
        if (x1 > xe) xe = x1;
        if (x0 < x1) {
            ys = 0;
            ye = h - 1;
        } else {
            if (y0 < ys) ys = y0;
            if (y1 > ye) ye = y1;
        }
    }
    /* pycocotools computes these in uint: an all-background mask with an even number of runs
     * (a trailing empty foreground run) gives xs=w, xe=0 and wraps around; keep that
     * degenerate case at zeros instead. */
    if (xs > xe || ys > ye) return;
    bbox[0] = (double)xs;
    bbox[1] = (double)ys;
    bbox[2] = (double)(xe - xs + 1);
    bbox[3] = (double)(ye - ys + 1);
}

/* ---- polygons ------------------------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x > y ? 1 : x < y ? -1 : 0;
}

/* pycocotools rleFrPoly: trace the polygon on a 5x upsampled grid, keep the points where the
 * boundary crosses a pixel column centre, and turn those column-major positions into runs.
 * Long on purpose: it follows maskApi.c's rleFrPoly step for step so the two can be compared. */
static int rle_from_poly(const double *xy, size_t k, int h, int w, asam_rle *out) {
    const double scale = 5;
    /* Coordinates far outside the image would overflow the integer grid; pycocotools has
     * undefined behaviour there, we refuse. */
    double lim = 4.0 * ((double)(h > w ? h : w) + 1000.0);
    if (lim > 1e8) lim = 1e8;
    for (size_t j = 0; j < 2 * k; j++)
        if (!isfinite(xy[j]) || fabs(xy[j]) > lim)
            return asam_error("rle_from_polygons: coordinate %g out of range", xy[j]);
    int *x = malloc(sizeof(int) * (k + 1)), *y = malloc(sizeof(int) * (k + 1));
    int *u = NULL, *v = NULL;
    uint32_t *a = NULL, *b = NULL;
    int rc = -1;
    if (!x || !y) goto oom;
    for (size_t j = 0; j < k; j++) x[j] = (int)(scale * xy[2 * j] + .5);
    for (size_t j = 0; j < k; j++) y[j] = (int)(scale * xy[2 * j + 1] + .5);
    x[k] = x[0];
    y[k] = y[0];
    size_t m = 0;
    for (size_t j = 0; j < k; j++) {
        int dx = abs(x[j] - x[j + 1]), dy = abs(y[j] - y[j + 1]);
        m += (size_t)(dx > dy ? dx : dy) + 1;
    }
    if (m > ((size_t)1 << 27)) {
        free(x);
        free(y);
        return asam_error("rle_from_polygons: polygon outline too long (%zu points)", m);
    }
    u = malloc(sizeof(int) * (m ? m : 1));
    v = malloc(sizeof(int) * (m ? m : 1));
    if (!u || !v) goto oom;
    m = 0;
    for (size_t j = 0; j < k; j++) {
        int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
        int dx = abs(xe - xs), dy = abs(ys - ye), t;
        int flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if (flip) {
            t = xs, xs = xe, xe = t;
            t = ys, ys = ye, ye = t;
        }
        /* a repeated vertex gives 0/0 in pycocotools; its value is never used, keep it 0 */
        double s = dx == 0 && dy == 0 ? 0.0
                   : dx >= dy         ? (double)(ye - ys) / dx
                                      : (double)(xe - xs) / dy;
        if (dx >= dy) {
            for (int d = 0; d <= dx; d++) {
                t = flip ? dx - d : d;
                u[m] = t + xs;
                v[m] = (int)(ys + s * t + .5);
                m++;
            }
        } else {
            for (int d = 0; d <= dy; d++) {
                t = flip ? dy - d : d;
                v[m] = t + ys;
                u[m] = (int)(xs + s * t + .5);
                m++;
            }
        }
    }
    /* Boundary points at pixel-column centres, downsampled back to the pixel grid. */
    size_t kk = m, np = 0;
    a = malloc(sizeof(uint32_t) * (kk + 1));
    if (!a) goto oom;
    for (size_t j = 1; j < kk; j++) {
        if (u[j] == u[j - 1]) continue;
        double xd = (double)(u[j] < u[j - 1] ? u[j] : u[j] - 1);
        xd = (xd + .5) / scale - .5;
        if (floor(xd) != xd || xd < 0 || xd > w - 1) continue;
        double yd = (double)(v[j] < v[j - 1] ? v[j] : v[j - 1]);
        yd = (yd + .5) / scale - .5;
        if (yd < 0)
            yd = 0;
        else if (yd > h)
            yd = h;
        yd = ceil(yd);
        a[np++] = (uint32_t)((int)xd * h + (int)yd);
    }
    a[np++] = (uint32_t)((uint64_t)h * w);
    qsort(a, np, sizeof(uint32_t), cmp_u32);
    uint32_t prev = 0;
    for (size_t j = 0; j < np; j++) {
        uint32_t t = a[j];
        a[j] -= prev;
        prev = t;
    }
    /* Zero-length runs merge their neighbours (two crossings at the same pixel cancel). */
    b = malloc(sizeof(uint32_t) * np);
    if (!b) goto oom;
    size_t j = 0, nb = 0;
    b[nb++] = a[j++];
    while (j < np) {
        if (a[j] > 0) {
            b[nb++] = a[j++];
        } else {
            j++;
            if (j < np) b[nb - 1] += a[j++];
        }
    }
    out->h = h;
    out->w = w;
    out->n = nb;
    out->counts = b;
    b = NULL;
    rc = 0;
    goto done;
oom:
    asam_error("rle_from_polygons: out of memory");
done:
    free(x);
    free(y);
    free(u);
    free(v);
    free(a);
    free(b);
    return rc;
}

/* Union of two RLEs of the same size (pycocotools rleMerge, intersect = 0). */
static int rle_union(const asam_rle *A, const asam_rle *B, asam_rle *out) {
    uint32_t *cnts = malloc(sizeof(uint32_t) * (A->n + B->n + 1));
    if (!cnts) return asam_error("rle_from_polygons: out of memory");
    size_t a = 1, b = 1, m = 0;
    uint32_t ca = A->n ? A->counts[0] : 0, cb = B->n ? B->counts[0] : 0, cc = 0, ct = 1;
    int va = 0, vb = 0, v = 0;
    while (ct > 0) {
        uint32_t c = ca < cb ? ca : cb;
        cc += c;
        ct = 0;
        ca -= c;
        if (!ca && a < A->n) ca = A->counts[a++], va = !va;
        ct += ca;
        cb -= c;
        if (!cb && b < B->n) cb = B->counts[b++], vb = !vb;
        ct += cb;
        int vp = v;
        v = va || vb;
        if (v != vp || ct == 0) {
            cnts[m++] = cc;
            cc = 0;
        }
    }
    out->h = A->h;
    out->w = A->w;
    out->n = m;
    out->counts = cnts;
    return 0;
}

int asam_rle_from_polygons(const double *const *polys, const size_t *lens, size_t n_polys, int h,
                           int w, asam_rle *out) {
    memset(out, 0, sizeof *out);
    if (check_size(h, w, "rle_from_polygons")) return -1;
    if ((uint64_t)h * (uint64_t)w > 0x7FFFFFFFull)
        return asam_error("rle_from_polygons: mask size %dx%d too large", h, w);
    if (n_polys == 0) return asam_error("rle_from_polygons: no polygons");
    asam_rle acc = {0};
    for (size_t i = 0; i < n_polys; i++) {
        /* pycocotools treats a list of <= 4 numbers as a box, not a polygon */
        if (lens[i] < 6 || lens[i] % 2) {
            asam_rle_free(&acc);
            return asam_error("rle_from_polygons: polygon %zu has %zu coordinates (need an "
                              "even count >= 6)",
                              i, lens[i]);
        }
        asam_rle cur = {0};
        if (rle_from_poly(polys[i], lens[i] / 2, h, w, &cur)) {
            asam_rle_free(&acc);
            return -1;
        }
        if (i == 0) {
            acc = cur;
            continue;
        }
        asam_rle merged = {0};
        int rc = rle_union(&acc, &cur, &merged);
        asam_rle_free(&acc);
        asam_rle_free(&cur);
        if (rc) return -1;
        acc = merged;
    }
    *out = acc;
    return 0;
}
