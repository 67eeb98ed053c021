#include "cli/cli_util.h"
#include "asam/dist.h"
#include "asam/error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "asam %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail_job(const char *cmd) {
    const char *msg = asam_last_error();
    size_t n = strlen(cmd);
    if (!strncmp(msg, cmd, n) && !strncmp(msg + n, ": ", 2)) msg += n + 2; /* already said */
    return cli_fail(cmd, "%s", msg);
}

int cli_single_process(const char *cmd) {
    if (asam_dist_size() <= 1) return 0;
    return cli_fail(cmd, "runs in one process, not under mpirun/srun (%d ranks)", asam_dist_size());
}

double cli_peak_rss_gb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1048576.0;
}

void cli_reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}
