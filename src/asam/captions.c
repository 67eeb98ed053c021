/* The captions file of a dataset (the text prompt of each image): JSON lines
 * {"img": "sa_1.jpg", "prompt": "..."}; the last line for an image wins. */
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

struct asam_captions {
    size_t n;
    char **img, **prompt;
};

void asam_captions_free(asam_captions *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->img[i]);
        free(c->prompt[i]);
    }
    free(c->img);
    free(c->prompt);
    free(c);
}

int asam_captions_load(const char *path, asam_captions **out) {
    *out = NULL;
    char *buf;
    size_t len;
    if (asam_read_file(path, &buf, &len)) return -1;
    asam_captions *c = calloc(1, sizeof *c);
    size_t cap = 0;
    int rc = c ? 0 : asam_error("%s: out of memory", path);
    int line_no = 0;
    for (char *p = buf; !rc && p < buf + len;) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        if (!e) e = buf + len;
        *e = 0;
        line_no++;
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            cJSON *j = cJSON_Parse(q);
            const cJSON *im = j ? cJSON_GetObjectItemCaseSensitive(j, "img") : NULL;
            const cJSON *pr = j ? cJSON_GetObjectItemCaseSensitive(j, "prompt") : NULL;
            if (!cJSON_IsString(im) || (pr && !cJSON_IsString(pr))) {
                rc = asam_error("%s:%d: expected {\"img\": \"...\", \"prompt\": \"...\"}", path,
                                line_no);
            } else {
                if (c->n == cap) {
                    cap = cap ? 2 * cap : 64;
                    char **a = realloc(c->img, cap * sizeof *a), **b = NULL;
                    if (a) c->img = a;
                    if (a) b = realloc(c->prompt, cap * sizeof *b);
                    if (b) c->prompt = b;
                    if (!a || !b) rc = asam_error("%s: out of memory", path);
                }
                if (!rc) {
                    c->img[c->n] = strdup(im->valuestring);
                    c->prompt[c->n] = strdup(pr ? pr->valuestring : "");
                    c->n++;
                }
            }
            cJSON_Delete(j);
        }
        p = e + 1;
    }
    free(buf);
    if (rc) {
        asam_captions_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int asam_captions_has(const asam_captions *c, const char *img_name) {
    for (size_t i = 0; c && img_name && i < c->n; i++)
        if (!strcmp(c->img[i], img_name)) return 1;
    return 0;
}

const char *asam_captions_get(const asam_captions *c, const char *img_name) {
    if (!c || !img_name) return "";
    for (size_t i = c->n; i-- > 0;) /* the last line for an image wins */
        if (!strcmp(c->img[i], img_name)) return c->prompt[i];
    return "";
}
