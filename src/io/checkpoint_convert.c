/* asam_checkpoint_convert: one checkpoint's floating-point tensors stored in another float
 * type (e.g. the trained miniature models committed in F16), everything else unchanged. */
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/provenance.h"
#include "asam/util.h"

#include <stdlib.h>
#include <string.h>

static int is_float(asam_dtype dt) {
    return dt == ASAM_DT_F32 || dt == ASAM_DT_F16 || dt == ASAM_DT_BF16 || dt == ASAM_DT_F64;
}

static int torch_name(const char *path) {
    size_t n = strlen(path);
    return (n > 4 && (!strcmp(path + n - 4, ".pth") || !strcmp(path + n - 4, ".bin"))) ||
           (n > 5 && !strcmp(path + n - 5, ".ckpt")) || (n > 3 && !strcmp(path + n - 3, ".pt"));
}

/* One tensor's payload in the output type: floats through f32, others raw. NULL with the
 * error set. */
static void *convert_one(const asam_checkpoint *ck, const asam_ckpt_tensor *t, asam_dtype to) {
    size_t n = (size_t)t->numel;
    size_t es = is_float(t->dtype) ? sizeof(float) : asam_dtype_size(t->dtype);
    void *buf = malloc(n * es + 1);
    if (!buf) {
        asam_error("%s: tensor '%s': out of memory", asam_checkpoint_path(ck), t->name);
        return NULL;
    }
    int rc = is_float(t->dtype) ? asam_ckpt_read_f32(ck, t, buf) : asam_ckpt_read_raw(ck, t, buf);
    if (rc || !is_float(t->dtype) || to == ASAM_DT_F32) {
        if (rc) free(buf);
        return rc ? NULL : buf;
    }
    const float *f = buf;
    uint16_t *h = malloc(n * sizeof *h + 1);
    if (!h) asam_error("%s: tensor '%s': out of memory", asam_checkpoint_path(ck), t->name);
    for (size_t i = 0; h && i < n; i++)
        h[i] = to == ASAM_DT_F16 ? asam_f32_to_f16(f[i]) : asam_f32_to_bf16(f[i]);
    free(buf);
    return h;
}

int asam_checkpoint_convert(const char *in, const char *out, asam_dtype to) {
    if (to != ASAM_DT_F32 && to != ASAM_DT_F16 && to != ASAM_DT_BF16)
        return asam_error("%s: can convert floats to F32, F16 or BF16, not %s", out,
                          asam_dtype_name(to));
    asam_checkpoint *ck;
    if (asam_checkpoint_open(in, &ck)) return -1;
    size_t n = asam_checkpoint_count(ck);
    asam_st_entry *e = calloc(n ? n : 1, sizeof *e);
    int rc = e ? 0 : asam_error("%s: out of memory", in);
    for (size_t i = 0; !rc && i < n; i++) {
        const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
        e[i].name = t->name;
        e[i].dtype = is_float(t->dtype) ? to : t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        e[i].data = convert_one(ck, t, to);
        if (!e[i].data) rc = -1;
    }
    asam_prov *p = asam_prov_new("convert");
    asam_prov_file(p, "input", in);
    asam_prov_str(p, "--dtype", asam_dtype_name(to));
    char *prov = asam_prov_json(p);
    const char *src = asam_checkpoint_metadata(ck, "provenance");
    const char *meta[4] = {"provenance", prov ? prov : "{}", "source_provenance", src};
    size_t n_meta = src ? 2 : 1;
    if (!rc)
        rc = torch_name(out) ? asam_torch_save_write_meta(out, NULL, e, n, meta, n_meta)
                             : asam_safetensors_write(out, e, n, meta, n_meta);
    for (size_t i = 0; e && i < n; i++) free((void *)e[i].data);
    free(e);
    free(prov);
    asam_prov_free(p);
    asam_checkpoint_close(ck);
    return rc;
}
