/* Error reporting: every fallible function returns 0 on success and -1 on failure, after
 * recording one human-readable line (naming the file and the problem) that the caller can
 * fetch with asam_last_error(). The message is thread-local. */
#ifndef ASAM_ERROR_H
#define ASAM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Record a printf-style message; always returns -1 so callers can `return asam_error(...)`. */
int asam_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the current message with "prefix: " (e.g. the file name) and return -1. */
int asam_error_prefix(const char *prefix);
const char *asam_last_error(void);
void asam_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
