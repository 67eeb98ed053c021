/* Whole-file helpers and atomic output: results are written to "PATH.tmp.PID", fsync'ed and
 * renamed over PATH so a killed job never leaves a partial file behind. */
#ifndef ASAM_FILEIO_H
#define ASAM_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *fp;
    char *path;     /* final path */
    char *tmp_path; /* temporary path being written */
} asam_atomic_file;

int asam_atomic_open(asam_atomic_file *af, const char *path);
/* fflush + fsync + rename; on any failure the temp file is removed. */
int asam_atomic_commit(asam_atomic_file *af);
/* Drop the temp file without touching PATH. */
void asam_atomic_abort(asam_atomic_file *af);
int asam_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file (NUL-terminated for convenience); caller frees. */
int asam_read_file(const char *path, char **data, size_t *n);
int asam_file_exists(const char *path);
int asam_mkdirs(const char *path); /* mkdir -p */

#ifdef __cplusplus
}
#endif
#endif
