/* The progress line of long jobs (count, rate, ETA); see asam/util.h for its format. */
#include "asam/util.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

void asam_fmt_hms(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e8) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void asam_progress_start(asam_progress *p, const char *label, const char *unit, int64_t total,
                         int flags) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->unit = unit ? unit : "item";
    p->total = total;
    p->flags = flags;
    p->tty = isatty(2);
    p->out = stderr;
    p->t0 = asam_now_s();
}

void asam_progress_skip(asam_progress *p) {
    p->skipped++;
}

int asam_progress_visible(const asam_progress *p) {
    return p->tty || (p->flags & ASAM_PROGRESS_LOG);
}

void asam_progress_update(asam_progress *p, int64_t done, const char *detail, ...) {
    if (!asam_progress_visible(p)) return;
    const int rewrite = p->tty && !(p->flags & ASAM_PROGRESS_LINES);
    if (!p->tty && p->every > 1 && done % p->every != 0 && done != p->total) return;
    const int64_t worked = done - p->skipped;
    const double el = asam_now_s() - p->t0;
    const double per = worked > 0 ? el / (double)worked : 0; /* seconds per item */
    char rate[48], eta[32], text[256] = "";
    if (worked <= 0)
        snprintf(rate, sizeof rate, "- %s/s", p->unit);
    else if (per > 0 && per <= 1.0)
        snprintf(rate, sizeof rate, "%.2f %s/s", 1.0 / per, p->unit);
    else
        snprintf(rate, sizeof rate, "%.2f s/%s", per, p->unit);
    asam_fmt_hms(per * (double)(p->total - done), eta, sizeof eta);
    if (detail) {
        va_list ap;
        va_start(ap, detail);
        vsnprintf(text, sizeof text, detail, ap);
        va_end(ap);
    }
    fprintf(p->out, "%s%s: %s%s%lld/%lld%s%s  %s  ETA %s%s", rewrite ? "\r" : "", p->label,
            p->word ? p->word : "", p->word ? " " : "", (long long)done, (long long)p->total,
            *text ? "  " : "", text, rate, eta, rewrite ? "\033[K" : "\n");
    fflush(p->out);
    p->open = rewrite;
}

void asam_progress_end(asam_progress *p) {
    if (p->open) fputc('\n', p->out);
    p->open = 0;
}
