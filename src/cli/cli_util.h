/* Small helpers shared by the subcommands and benchmarks: error lines, number parsing,
 * clocks and peak memory. */
#ifndef ASAM_CLI_UTIL_H
#define ASAM_CLI_UTIL_H

/* Print "asam CMD: message" on stderr; returns 1 (the exit code for bad input). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whole-string integer / number in [lo, hi]; 0 on success, -1 otherwise. */
int cli_parse_int(const char *s, long lo, long hi, int *out);
int cli_parse_num(const char *s, double lo, double hi, double *out);

double cli_now(void);     /* monotonic wall clock, seconds */
double cli_cpu_now(void); /* CPU time of the whole process (all threads), seconds */
/* Peak resident set size of the process in GiB (VmHWM), and a reset of that mark so one
 * phase can be measured on its own (Linux clear_refs 5; a no-op where unsupported). */
double cli_peak_rss_gb(void);
void cli_reset_peak_rss(void);

#endif
