/* Minimal test helpers shared by every tests/test_*.c (header-only).
 * A test prints one line per check and exits 0 (pass), 1 (fail) or 77 (skipped). */
#ifndef ASAM_TEST_UTIL_H
#define ASAM_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "asam/fileio.h"

static int test_failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* max|a-b| / max|b| (the DESIGN.md §4 "relative to the tensor's scale" measure). */
static inline double test_rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

#define CHECK_CLOSE(a, b, n, tol, what)                                                            \
    do {                                                                                           \
        double rd_ = test_rel_diff((a), (b), (n));                                                 \
        CHECK(rd_ <= (tol), "%s: rel diff %.3g > %.3g", (what), rd_, (double)(tol));               \
        if (rd_ <= (tol)) printf("ok   %s (rel diff %.3g)\n", (what), rd_);                        \
    } while (0)

/* Folder of the shared reference fixtures: $ASAM_FIXTURES or ../shared/fixtures. */
static inline const char *test_fixtures_dir(void) {
    const char *e = getenv("ASAM_FIXTURES");
    return e && *e ? e : ASAM_FIXTURES_DEFAULT;
}

static inline void test_path(char *out, size_t n, const char *dir, const char *rel) {
    snprintf(out, n, "%s/%s", dir, rel);
}

static inline int test_is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Locate a fixture file by its path relative to the fixtures folder (e.g.
 * "sam_tiny/model.pth"): tests/data/REL, else tests/data/REL.gz decompressed once into the
 * build folder, else $ASAM_FIXTURES/REL. Returns 0 and fills out, or -1 when absent. */
static inline int test_data_file(const char *rel, char *out, size_t n) {
    snprintf(out, n, "%s/tests/data/%s", ASAM_SOURCE_DIR, rel);
    if (test_is_file(out)) return 0;
    char gz[4096];
    snprintf(gz, sizeof gz, "%s/tests/data/%s.gz", ASAM_SOURCE_DIR, rel);
    if (test_is_file(gz)) {
        char flat[1024];
        snprintf(flat, sizeof flat, "%s", rel);
        for (char *c = flat; *c; c++)
            if (*c == '/') *c = '_';
        snprintf(out, n, "testdata_%s", flat); /* in the test's working (build) folder */
        if (test_is_file(out)) return 0;
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp%d", out, (int)getpid());
        gzFile in = gzopen(gz, "rb");
        FILE *o = fopen(tmp, "wb");
        int ok = in && o;
        char buf[1 << 16];
        int k;
        while (ok && (k = gzread(in, buf, sizeof buf)) > 0)
            ok = fwrite(buf, 1, (size_t)k, o) == (size_t)k;
        if (in) gzclose(in);
        if (o) ok = (fclose(o) == 0) && ok;
        if (ok && rename(tmp, out) == 0) return 0;
        remove(tmp);
    }
    snprintf(out, n, "%s/%s", test_fixtures_dir(), rel);
    return test_is_file(out) ? 0 : -1;
}

/* A whole file's bytes (NUL-terminated; caller frees), or NULL. */
static inline char *test_slurp(const char *path, size_t *n) {
    char *b = NULL;
    return asam_read_file(path, &b, n) == 0 ? b : NULL;
}

/* 1 when both files exist and hold the same bytes (resume / determinism checks). */
static inline int test_same_file(const char *a, const char *b) {
    char *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    int same = asam_read_file(a, &da, &na) == 0 && asam_read_file(b, &db, &nb) == 0 && na == nb &&
               memcmp(da, db, na) == 0;
    free(da);
    free(db);
    return same;
}

/* Skip visibly (CTest shows "Skipped" for exit code 77). */
#define TEST_SKIP(...)                                                                             \
    do {                                                                                           \
        printf("SKIP: ");                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        exit(77);                                                                                  \
    } while (0)

/* FNV-1a 64 of a byte array: a short fingerprint to pin decoded/resized pixels. */
static inline uint64_t test_fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* rm -rf a test's temporary folder (a warning, not a failure, when that fails). */
static inline void test_rm_rf(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* A part of a test whose data is absent: said on stdout, and the whole test then exits 77
 * (CTest: Skipped) instead of reporting Passed for checks it did not run. */
static int test_skipped_parts = 0;
#define TEST_SKIP_PART(...)                                                                        \
    do {                                                                                           \
        printf("SKIP part: ");                                                                     \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        test_skipped_parts++;                                                                      \
    } while (0)

static inline int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
        return 1;
    }
    if (test_skipped_parts) {
        printf("%s: the checks run passed, but %d part(s) were skipped (data absent): reported "
               "as skipped\n",
               name, test_skipped_parts);
        return 77;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif
