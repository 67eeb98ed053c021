/* Small helpers shared by the subcommands and benchmarks: the error line and
 * peak memory (numbers are parsed by the option table, options.h; the clock is asam_now_s in
 * asam/util.h). */
#ifndef ASAM_CLI_UTIL_H
#define ASAM_CLI_UTIL_H

#include "asam/util.h"

/* Print "asam CMD: message" on stderr; returns 1 (the exit code for bad input). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_fail with the library's last error, without a leading "CMD: " the job already wrote. */
int cli_fail_job(const char *cmd);
/* 0 in a single process; else cli_fail's 1 with "runs in one process, not under mpirun/srun"
 * (for the jobs that would write the same files from every rank). */
int cli_single_process(const char *cmd);

/* Peak resident set size of the process in GiB (VmHWM), and a reset of that mark so one
 * phase can be measured on its own (Linux clear_refs 5; a no-op where unsupported). */
double cli_peak_rss_gb(void);
void cli_reset_peak_rss(void);

#endif
