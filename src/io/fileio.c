/* Whole-file helpers and atomic output (temp file, fsync, rename). */
#include "asam/fileio.h"
#include "asam/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void atomic_free(asam_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->fp = NULL;
}

int asam_atomic_open(asam_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 48;
    af->path = strdup(path);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        atomic_free(af);
        return asam_error("%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        int e = errno;
        asam_error("%s: cannot create: %s", path, strerror(e)); /* the target, not the temp */
        atomic_free(af);
        return -1;
    }
    return 0;
}

/* fsync the folder holding path so the rename itself is durable (best effort). */
static void sync_parent_dir(const char *path) {
    char *tmp = strdup(path);
    if (!tmp) return;
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(tmp);
}

int asam_atomic_commit(asam_atomic_file *af) {
    if (!af->fp) return asam_error("%s: atomic file is not open", af->path ? af->path : "?");
    int ok = fflush(af->fp) == 0;
    int e = errno;
    if (ok && fsync(fileno(af->fp)) != 0) ok = 0, e = errno;
    if (fclose(af->fp) != 0 && ok) ok = 0, e = errno;
    af->fp = NULL;
    if (ok && rename(af->tmp_path, af->path) != 0) ok = 0, e = errno;
    if (!ok) {
        asam_error("%s: write failed: %s", af->path, strerror(e));
        remove(af->tmp_path);
        atomic_free(af);
        return -1;
    }
    sync_parent_dir(af->path);
    atomic_free(af);
    return 0;
}

void asam_atomic_abort(asam_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) remove(af->tmp_path);
    atomic_free(af);
}

int asam_write_file_atomic(const char *path, const void *data, size_t n) {
    asam_atomic_file af;
    if (asam_atomic_open(&af, path)) return -1;
    if (n && fwrite(data, 1, n, af.fp) != n) {
        int e = errno;
        asam_atomic_abort(&af);
        return asam_error("%s: write failed: %s", path, strerror(e));
    }
    return asam_atomic_commit(&af);
}

int asam_read_file(const char *path, char **data, size_t *n) {
    *data = NULL;
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return asam_error("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *nb = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + len, 1, cap - 1 - len, f);
        len += k;
        if (k == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf) return asam_error("%s: out of memory", path);
    if (err) {
        free(buf);
        return asam_error("%s: read error", path);
    }
    buf[len] = 0;
    *data = buf;
    if (n) *n = len;
    return 0;
}

int asam_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int asam_mkdirs(const char *path) {
    size_t len = strlen(path);
    char *p = malloc(len + 1);
    if (!p) return asam_error("%s: out of memory", path);
    memcpy(p, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return asam_error("%s: cannot create directory: %s", path, strerror(e));
        }
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            free(p);
            return asam_error("%s: not a directory", path);
        }
        p[i] = c;
    }
    free(p);
    return 0;
}
