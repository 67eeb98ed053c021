/* Locating the data folder (share/asam) from the library's own location; see
 * include/asam/data_dir.h for the lookup order. */
#define _GNU_SOURCE /* dladdr */
#include "asam/data_dir.h"
#include "asam/error.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Relative paths from the install bindir / libdir to datadir/asam, set by CMakeLists.txt
 * (e.g. "../share/asam"); the defaults are the plain GNU layout. */
#ifndef ASAM_DATA_FROM_BIN
#define ASAM_DATA_FROM_BIN "../share/asam"
#endif
#ifndef ASAM_DATA_FROM_LIB
#define ASAM_DATA_FROM_LIB "../share/asam"
#endif

static char found[PATH_MAX];
static char failure[PATH_MAX + 128];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* A data folder is one that holds clip/vocab.json. */
static int is_data_dir(const char *dir) {
    char p[PATH_MAX + 128];
    struct stat st;
    snprintf(p, sizeof p, "%s/clip/vocab.json", dir);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Try the installed and build-tree layouts next to the folder holding `file`. */
static int try_beside(const char *file) {
    char real[PATH_MAX];
    if (!file || !*file || !realpath(file, real)) return 0;
    char *slash = strrchr(real, '/');
    if (!slash) return 0;
    *slash = 0;
    const char *rel[] = {ASAM_DATA_FROM_LIB, ASAM_DATA_FROM_BIN, "share/asam"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char cand[PATH_MAX + 64], canon[PATH_MAX];
        snprintf(cand, sizeof cand, "%s/%s", real, rel[i]);
        if (is_data_dir(cand) && realpath(cand, canon)) {
            snprintf(found, sizeof found, "%s", canon);
            return 1;
        }
    }
    return 0;
}

static void locate(void) {
    const char *env = getenv("ASAM_DATA_DIR");
    if (env && *env) {
        if (is_data_dir(env)) {
            snprintf(found, sizeof found, "%s", env);
        } else {
            snprintf(failure, sizeof failure,
                     "ASAM_DATA_DIR=%s: not an asam data folder (no clip/vocab.json)", env);
        }
        return;
    }
    // The file this function was loaded from: libasam.so, or the executable when linked
    // statically (glibc then reports the main program's name, which /proc/self/exe covers).
    Dl_info info;
    if (dladdr((void *)&asam_data_dir, &info) && try_beside(info.dli_fname)) return;
    if (try_beside("/proc/self/exe")) return;
    snprintf(failure, sizeof failure,
             "asam data folder (share/asam with clip/vocab.json) not found beside the library "
             "or the program; set ASAM_DATA_DIR");
}

const char *asam_data_dir(void) {
    pthread_once(&once, locate);
    if (found[0]) return found;
    asam_error("%s", failure);
    return NULL;
}
