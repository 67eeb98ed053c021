/* asam inspect FILE [--json]: every tensor's name, dtype and shape, plus a summary. */
#include "asam/checkpoint.h"
#include "asam/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: asam inspect FILE [--json]\n\n"
               "Print every tensor's name, dtype and shape of a checkpoint (safetensors or a\n"
               "torch.save .pth/.ckpt/.bin zip), then a summary line (count, values, format).\n\n"
               "  --json   print one JSON object {file, format, count, values, metadata,\n"
               "           tensors: [{name, dtype, shape}]} to stdout instead\n");
}

static void shape_text(const asam_ckpt_tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int print_json(const asam_checkpoint *ck, const char *path, double values) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddStringToObject(root, "format", asam_checkpoint_format(ck));
    cJSON_AddNumberToObject(root, "count", (double)asam_checkpoint_count(ck));
    cJSON_AddNumberToObject(root, "values", values);
    const char *fmt = asam_checkpoint_metadata(ck, "format");
    if (fmt) cJSON_AddStringToObject(root, "metadata_format", fmt);
    for (size_t i = 0; i < asam_checkpoint_count(ck); i++) {
        const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
        cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", asam_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToObject(o, "shape", sh);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(root, "tensors", arr);
    char *txt = cJSON_Print(root);
    cJSON_Delete(root);
    if (!txt) {
        fprintf(stderr, "asam inspect: %s: out of memory\n", path);
        return 1;
    }
    puts(txt);
    cJSON_free(txt);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "asam inspect: unknown option '%s' (see asam inspect --help)\n",
                    argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "asam inspect: expected one FILE, got '%s' and '%s'\n", path, argv[i]);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) {
        fprintf(stderr, "asam inspect: %s\n", asam_last_error());
        return 1;
    }
    double values = 0;
    for (size_t i = 0; i < asam_checkpoint_count(ck); i++)
        values += (double)asam_checkpoint_get(ck, i)->numel;
    int rc = 0;
    if (json) {
        rc = print_json(ck, path, values);
    } else {
        for (size_t i = 0; i < asam_checkpoint_count(ck); i++) {
            const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
            char shape[256];
            shape_text(t, shape, sizeof shape);
            printf("%s\t%s\t%s\n", t->name, asam_dtype_name(t->dtype), shape);
        }
        printf("%zu tensors, %.0f values, format %s\n", asam_checkpoint_count(ck), values,
               asam_checkpoint_format(ck));
    }
    asam_checkpoint_close(ck);
    return rc;
}
