/* asam inspect FILE [--json]: every tensor's name, dtype and shape, plus a summary. */
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

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
    const char *prov = asam_checkpoint_metadata(ck, "provenance"); /* what made the file */
    if (prov) cJSON_AddStringToObject(root, "provenance", prov);
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
    const char *files[2];
    cli_list file_list = {files, 0, 1};
    int json = 0;
    const cli_opt opts[] = {
        {"--json", OPT_FLAG, &json, NULL,
         "print one JSON object {file, format, count, values, metadata,\n"
         "tensors: [{name, dtype, shape}]} to stdout instead"},
    };
    const cli_spec spec = {
        "inspect",
        "FILE [--json]",
        "Print every tensor's name, dtype and shape of a checkpoint (safetensors or a\n"
        "torch.save .pth/.ckpt/.bin zip), then a summary line (count, values, format).\n",
        opts,
        CLI_NOPTS(opts),
        &file_list,
        NULL};
    int prc = cli_parse(&spec, argc, argv);
    if (prc) return cli_exit_code(prc);
    if (!file_list.n) {
        cli_help(&spec, stderr);
        return CLI_USAGE;
    }
    const char *path = files[0];
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
