#include "asam/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

int asam_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return -1;
}

int asam_error_prefix(const char *prefix) {
    char tmp[sizeof last_error + 256];
    snprintf(tmp, sizeof tmp, "%.200s: %s", prefix, last_error);
    size_t n = strlen(tmp);
    if (n >= sizeof last_error) n = sizeof last_error - 1;
    memcpy(last_error, tmp, n);
    last_error[n] = 0;
    return -1;
}

const char *asam_last_error(void) {
    return last_error[0] ? last_error : "unknown error";
}

void asam_clear_error(void) {
    last_error[0] = 0;
}
