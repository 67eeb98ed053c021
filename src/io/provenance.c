/* Provenance records (see asam/provenance.h): one ordered list of (name, value) strings per
 * output, FNV-1a 64 over "name=value\n" lines as its hash, JSON in and out with cJSON. */
#include "asam/provenance.h"
#include "asam/engine.h"
#include "asam/error.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct asam_prov {
    char *stage;
    int n, cap;
    char **name, **value;
};

static const uint64_t FNV_OFF = 0xcbf29ce484222325ull, FNV_PRIME = 0x100000001b3ull;

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

asam_prov *asam_prov_new(const char *stage) {
    asam_prov *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->stage = strdup(stage ? stage : "");
    /* bf16 changes every number a stage computes: a run never resumes across precisions */
    asam_prov_str(p, "--precision", asam_precision_name(asam_get_precision()));
    return p;
}

void asam_prov_free(asam_prov *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        free(p->name[i]);
        free(p->value[i]);
    }
    free(p->name);
    free(p->value);
    free(p->stage);
    free(p);
}

void asam_prov_str(asam_prov *p, const char *name, const char *value) {
    if (!p) return;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        char **a = realloc(p->name, sizeof(char *) * cap),
             **b = a ? realloc(p->value, sizeof(char *) * cap) : NULL;
        if (a) p->name = a;
        if (b) p->value = b;
        if (!a || !b)
            return; /* out of memory: the entry is dropped, the hash still covers the rest */
        p->cap = cap;
    }
    p->name[p->n] = strdup(name);
    p->value[p->n] = strdup(value ? value : "");
    p->n++;
}

void asam_prov_num(asam_prov *p, const char *name, double value) {
    char b[64];
    snprintf(b, sizeof b, "%.9g", value);
    asam_prov_str(p, name, b);
}

void asam_prov_int(asam_prov *p, const char *name, long long value) {
    char b[64];
    snprintf(b, sizeof b, "%lld", value);
    asam_prov_str(p, name, b);
}

/* a file's hash: all bytes up to 4 MiB, else the first and last MiB and the size */
static int file_hash(const char *path, uint64_t *h, long long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        return -1;
    }
    *size = (long long)st.st_size;
    static const size_t MIB = 1 << 20;
    unsigned char *buf = malloc(MIB);
    uint64_t v = FNV_OFF;
    int ok = buf != NULL;
    if (ok && (size_t)st.st_size <= 4 * MIB) {
        size_t k;
        while ((k = fread(buf, 1, MIB, f)) > 0) v = fnv(v, buf, k);
    } else if (ok) {
        size_t k = fread(buf, 1, MIB, f);
        v = fnv(v, buf, k);
        ok = fseeko(f, (off_t)st.st_size - (off_t)MIB, SEEK_SET) == 0;
        if (ok) v = fnv(v, buf, fread(buf, 1, MIB, f));
        v = fnv(v, &st.st_size, sizeof st.st_size);
    }
    free(buf);
    fclose(f);
    *h = v;
    return ok ? 0 : -1;
}

static int by_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void dir_hash(const char *path, uint64_t *h, int depth) {
    DIR *d = opendir(path);
    if (!d || depth > 8) {
        if (d) closedir(d);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **x = realloc(names, cap * sizeof *x);
            if (!x) break;
            names = x;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_str); /* a fixed order whatever readdir gives */
    for (size_t i = 0; i < n; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        *h = fnv(*h, names[i], strlen(names[i]) + 1);
        struct stat st;
        if (!stat(sub, &st) && S_ISDIR(st.st_mode)) {
            dir_hash(sub, h, depth + 1);
        } else {
            uint64_t fh = 0;
            long long sz = 0;
            if (!file_hash(sub, &fh, &sz)) {
                *h = fnv(*h, &fh, sizeof fh);
                *h = fnv(*h, &sz, sizeof sz);
            }
        }
        free(names[i]);
    }
    free(names);
}

void asam_prov_file(asam_prov *p, const char *name, const char *path) {
    struct stat st;
    char v[96];
    if (!path || stat(path, &st)) {
        asam_prov_str(p, name, "absent");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        uint64_t h = FNV_OFF;
        dir_hash(path, &h, 0);
        snprintf(v, sizeof v, "folder %016llx", (unsigned long long)h);
    } else {
        uint64_t h = 0;
        long long sz = 0;
        if (file_hash(path, &h, &sz)) {
            asam_prov_str(p, name, "unreadable");
            return;
        }
        snprintf(v, sizeof v, "%lld bytes %016llx", sz, (unsigned long long)h);
    }
    asam_prov_str(p, name, v);
}

void asam_prov_hash(const asam_prov *p, char hex[17]) {
    uint64_t h = fnv(FNV_OFF, p->stage, strlen(p->stage) + 1);
    for (int i = 0; i < p->n; i++) {
        h = fnv(h, p->name[i], strlen(p->name[i]));
        h = fnv(h, "=", 1);
        h = fnv(h, p->value[i], strlen(p->value[i]));
        h = fnv(h, "\n", 1);
    }
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

char *asam_prov_json(const asam_prov *p) {
    char hex[17];
    asam_prov_hash(p, hex);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "stage", p->stage);
    cJSON_AddStringToObject(j, "hash", hex);
    for (int i = 0; i < p->n; i++) cJSON_AddStringToObject(j, p->name[i], p->value[i]);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int asam_prov_check(const asam_prov *p, const char *recorded_json, const char *what) {
    cJSON *j = recorded_json ? cJSON_Parse(recorded_json) : NULL;
    const cJSON *r = j;
    if (r && !cJSON_GetObjectItemCaseSensitive(r, "hash"))
        r = cJSON_GetObjectItemCaseSensitive(r, "provenance");
    const cJSON *h = r ? cJSON_GetObjectItemCaseSensitive(r, "hash") : NULL;
    char hex[17];
    asam_prov_hash(p, hex);
    if (cJSON_IsString(h) && !strcmp(h->valuestring, hex)) {
        cJSON_Delete(j);
        return 0;
    }
    if (!cJSON_IsString(h)) {
        cJSON_Delete(j);
        return asam_error("%s: made by a run that recorded no provenance (use --force to redo it)",
                          what);
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "stage");
    if (!cJSON_IsString(st) || strcmp(st->valuestring, p->stage)) {
        int rc = asam_error("%s: made by stage '%s', not '%s' (use --force to redo it)", what,
                            cJSON_IsString(st) ? st->valuestring : "?", p->stage);
        cJSON_Delete(j);
        return rc;
    }
    for (int i = 0; i < p->n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, p->name[i]);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, p->value[i])) {
            int rc =
                asam_error("%s: made with %s %s, now %s (use --force to redo it)", what, p->name[i],
                           cJSON_IsString(v) ? v->valuestring : "(unset)", p->value[i]);
            cJSON_Delete(j);
            return rc;
        }
    }
    cJSON_Delete(j);
    return asam_error("%s: made with other options (recorded hash %s, now %s; use --force to "
                      "redo it)",
                      what, h->valuestring, hex);
}
