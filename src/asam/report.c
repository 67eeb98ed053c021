/* Report pictures (see asam/report.h). */
#include "asam/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asam/error.h"

static void put(asam_image *im, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->data + ((size_t)y * im->w + x) * 3, rgb, 3);
}

int asam_report_strip(const asam_image *const *tiles, int n, int tile, asam_image *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || tile < 1) return asam_error("report: empty strip");
    const int gap = 4, W = tile * n + gap * (n + 1), H = tile + 2 * gap;
    if (asam_image_alloc(out, W, H, 3)) return -1;
    memset(out->data, 255, (size_t)W * H * 3);
    for (int k = 0; k < n; k++) {
        const asam_image *t = tiles[k];
        if (!t || !t->data || (t->c != 1 && t->c != 3)) continue;
        const int x0 = gap + k * (tile + gap);
        for (int y = 0; y < tile; y++)
            for (int x = 0; x < tile; x++) {
                int sx = (int)((int64_t)x * t->w / tile), sy = (int)((int64_t)y * t->h / tile);
                const uint8_t *p = t->data + ((size_t)sy * t->w + sx) * t->c;
                uint8_t rgb[3] = {p[0], t->c == 3 ? p[1] : p[0], t->c == 3 ? p[2] : p[0]};
                put(out, x0 + x, gap + y, rgb);
            }
    }
    return 0;
}

int asam_report_overlay(const asam_image *img, const uint8_t *masks, int n, const uint8_t *colours,
                        asam_image *out) {
    memset(out, 0, sizeof *out);
    if (img->c != 3) return asam_error("report: overlay needs an RGB image");
    const int w = img->w, h = img->h;
    if (asam_image_alloc(out, w, h, 3)) return -1;
    memcpy(out->data, img->data, (size_t)w * h * 3);
    for (int k = 0; k < n; k++) {
        const uint8_t *m = masks + (size_t)k * w * h, *c = colours + 3 * k;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                if (!m[(size_t)y * w + x]) continue;
                uint8_t *p = out->data + ((size_t)y * w + x) * 3;
                // A pixel of the mask next to a non-mask pixel is on the outline.
                int edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 ||
                           !m[(size_t)y * w + x - 1] || !m[(size_t)y * w + x + 1] ||
                           !m[(size_t)(y - 1) * w + x] || !m[(size_t)(y + 1) * w + x];
                for (int ch = 0; ch < 3; ch++)
                    p[ch] = edge ? c[ch] : (uint8_t)(0.45f * p[ch] + 0.55f * c[ch] + 0.5f);
            }
    }
    return 0;
}

int asam_report_plot(const float *y, int n, float ymin, float ymax, int mark, int w, int h,
                     asam_image *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || w < 32 || h < 32 || !(ymax > ymin)) return asam_error("report: bad plot");
    if (asam_image_alloc(out, w, h, 3)) return -1;
    memset(out->data, 255, (size_t)w * h * 3);
    const int l = 12, r = w - 12, t = 10, b = h - 12; // plot area
    const uint8_t grid[3] = {225, 225, 225}, axis[3] = {60, 60, 60}, line[3] = {40, 90, 200},
                  red[3] = {220, 30, 30};
    for (int q = 0; q <= 4; q++) {
        int yy = b - (b - t) * q / 4;
        for (int x = l; x <= r; x++) put(out, x, yy, q == 0 ? axis : grid);
    }
    for (int yy = t; yy <= b; yy++) put(out, l, yy, axis);
    for (int k = 0; k < n; k++) { // ticks per iteration
        int xx = n == 1 ? (l + r) / 2 : l + (r - l) * k / (n - 1);
        for (int d = 1; d <= 3; d++) put(out, xx, b + d, axis);
    }
    int px = -1, py = -1;
    for (int k = 0; k < n; k++) {
        float v = y[k];
        if (!isfinite(v)) continue;
        v = v < ymin ? ymin : v > ymax ? ymax : v;
        int xx = n == 1 ? (l + r) / 2 : l + (r - l) * k / (n - 1);
        int yy = b - (int)lroundf((v - ymin) / (ymax - ymin) * (float)(b - t));
        if (px >= 0) { // segment from the previous point
            int steps = abs(xx - px) > abs(yy - py) ? abs(xx - px) : abs(yy - py);
            for (int s = 0; s <= steps; s++)
                put(out, px + (xx - px) * s / (steps ? steps : 1),
                    py + (yy - py) * s / (steps ? steps : 1), line);
        }
        px = xx, py = yy;
    }
    for (int k = 0; k < n; k++) { // points on top
        if (!isfinite(y[k])) continue;
        float v = y[k] < ymin ? ymin : y[k] > ymax ? ymax : y[k];
        int xx = n == 1 ? (l + r) / 2 : l + (r - l) * k / (n - 1);
        int yy = b - (int)lroundf((v - ymin) / (ymax - ymin) * (float)(b - t));
        int rad = k == mark ? 3 : 2;
        for (int dy = -rad; dy <= rad; dy++)
            for (int dx = -rad; dx <= rad; dx++) put(out, xx + dx, yy + dy, k == mark ? red : line);
    }
    return 0;
}
