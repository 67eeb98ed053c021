/* Bar and line charts as SVG: plain text, so titles, tick labels, axis names and legends need
 * no font rendering, and any browser or Markdown viewer shows them. One layout for both kinds:
 * a plot area with a left axis (five ticks), a title above, the legend in a row under the
 * title, x labels below. */
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/report.h"

#include <math.h>
#include <stdio.h>

enum { W = 820, H = 420, LEFT = 70, RIGHT = 20, TOP = 70, BOTTOM = 80 };

/* Colour-blind-safe palette (Okabe & Ito). */
static const char *const colours[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                      "#56B4E9", "#D55E00", "#F0E442", "#000000"};

static void text_escaped(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

static double y_px(double v, double ymin, double ymax) {
    double t = (v - ymin) / (ymax - ymin);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return TOP + (1 - t) * (H - TOP - BOTTOM);
}

/* Header, title, left axis with ticks and its label, legend. */
static void frame(FILE *f, const char *title, const char *ylabel, int n_series,
                  const char *const *series, double ymin, double ymax) {
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">", W / 2);
    text_escaped(f, title);
    fputs("</text>\n", f);
    for (int k = 0; k <= 4; k++) { /* ticks and grid */
        double v = ymin + (ymax - ymin) * k / 4, y = y_px(v, ymin, ymax);
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
                LEFT, y, W - RIGHT, y, LEFT - 6, y + 4, v);
    }
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n",
            LEFT, TOP, LEFT, H - BOTTOM, LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM);
    fprintf(f, "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">",
            (TOP + H - BOTTOM) / 2);
    text_escaped(f, ylabel);
    fputs("</text>\n", f);
    double x = LEFT;
    for (int s = 0; s < n_series; s++) { /* legend row */
        fprintf(f,
                "<rect x=\"%.0f\" y=\"38\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%.0f\" y=\"49\">",
                x, colours[s % 8], x + 16);
        text_escaped(f, series[s]);
        fputs("</text>\n", f);
        int len = 0;
        for (const char *c = series[s]; c && *c; c++) len++;
        x += 16 + 7.2 * len + 18;
    }
}

static int finish(asam_atomic_file *af) {
    fputs("</svg>\n", af->fp);
    return asam_atomic_commit(af);
}

static void error_bar(FILE *f, double x, double v, double e, double ymin, double ymax) {
    if (!(e > 0)) return;
    double y0 = y_px(v - e, ymin, ymax), y1 = y_px(v + e, ymin, ymax);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
            x, y0, x, y1, x - 3, y0, x + 3, y0, x - 3, y1, x + 3, y1);
}

/* Checks the sizes, opens the file and draws the frame: the start of either chart. */
static int open_chart(asam_atomic_file *af, const char *path, int n_a, int n_b, const char *title,
                      const char *ylabel, int n_series, const char *const *series, double ymin,
                      double ymax) {
    if (n_a < 1 || n_b < 1 || !(ymax > ymin))
        return asam_error("%s: a chart needs data and ymax > ymin", path);
    if (asam_atomic_open(af, path)) return -1;
    frame(af->fp, title, ylabel, n_series, series, ymin, ymax);
    return 0;
}

int asam_chart_bars_svg(const char *path, const char *title, const char *ylabel, int n_groups,
                        const char *const *group, int n_series, const char *const *series,
                        const double *mean, const double *err, double ymin, double ymax) {
    asam_atomic_file af;
    if (open_chart(&af, path, n_groups, n_series, title, ylabel, n_series, series, ymin, ymax))
        return -1;
    FILE *f = af.fp;
    const double gw = (double)(W - LEFT - RIGHT) / n_groups, bw = gw * 0.8 / n_series;
    for (int g = 0; g < n_groups; g++) {
        double gx = LEFT + g * gw + gw * 0.1;
        for (int s = 0; s < n_series; s++) {
            double v = mean[g * n_series + s];
            if (isnan(v)) continue;
            double y = y_px(v, ymin, ymax), x = gx + s * bw;
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                    "<title>%.4f</title></rect>\n",
                    x, y, bw * 0.92, H - BOTTOM - y, colours[s % 8], v);
            if (err) error_bar(f, x + bw * 0.46, v, err[g * n_series + s], ymin, ymax);
        }
        fprintf(f, "<text transform=\"translate(%.1f,%d) rotate(-20)\" text-anchor=\"end\">",
                LEFT + (g + 0.5) * gw + 8, H - BOTTOM + 16);
        text_escaped(f, group[g]);
        fputs("</text>\n", f);
    }
    return finish(&af);
}

int asam_chart_lines_svg(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, int n_series, const char *const *series, int n_x,
                         const double *y, const double *err, double ymin, double ymax) {
    asam_atomic_file af;
    if (open_chart(&af, path, n_series, n_x, title, ylabel, n_series, series, ymin, ymax))
        return -1;
    FILE *f = af.fp;
    const double dx = n_x > 1 ? (double)(W - LEFT - RIGHT - 40) / (n_x - 1) : 0;
    for (int i = 0; i < n_x; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
                LEFT + 20 + i * dx, H - BOTTOM + 18, i);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (LEFT + W - RIGHT) / 2,
            H - BOTTOM + 44);
    text_escaped(f, xlabel);
    fputs("</text>\n", f);
    for (int s = 0; s < n_series; s++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                colours[s % 8]);
        for (int i = 0; i < n_x; i++)
            if (!isnan(y[s * n_x + i]))
                fprintf(f, "%.1f,%.1f ", LEFT + 20 + i * dx, y_px(y[s * n_x + i], ymin, ymax));
        fputs("\"/>\n", f);
        for (int i = 0; i < n_x; i++) {
            double v = y[s * n_x + i];
            if (isnan(v)) continue;
            fprintf(f,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%.4f</title>"
                    "</circle>\n",
                    LEFT + 20 + i * dx, y_px(v, ymin, ymax), colours[s % 8], v);
            if (err) error_bar(f, LEFT + 20 + i * dx, v, err[s * n_x + i], ymin, ymax);
        }
    }
    return finish(&af);
}
