/* asam f16: a copy of a safetensors checkpoint with its F32 tensors stored as F16 (IEEE half,
 * round to nearest even), other dtypes and the names unchanged, and the metadata asam writes
 * ("format", "provenance", "train_steps") carried over: how the miniature world's trained
 * models are committed at half their size. Prints the largest relative change of a tensor
 * (max |f16 - f32| / max |f32|, over tensors whose values reach 1e-4) and the largest absolute
 * change, so that what the rounding costs is seen. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sd_synth.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float f16_value(uint16_t h) { /* back to float, for the error measure */
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0    ? ldexpf((float)m, -24)
              : e == 31 ? INFINITY
                        : ldexpf(1024.0f + m, (int)e - 25);
    uint32_t x;
    memcpy(&x, &v, 4);
    x |= s;
    memcpy(&v, &x, 4);
    return v;
}

int cmd_f16(int argc, char **argv) {
    const char *pos_v[2];
    cli_list pos = {pos_v, 0, 2};
    const cli_spec spec = {"f16",
                           "IN.safetensors OUT.safetensors",
                           "Writes a copy of a safetensors checkpoint with F32 tensors as F16.",
                           NULL,
                           0,
                           &pos,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (pos.n != 2) {
        fprintf(stderr, "asam f16: expected IN.safetensors OUT.safetensors\n");
        return CLI_USAGE;
    }
    asam_checkpoint *ck;
    if (asam_checkpoint_open(pos.v[0], &ck)) return cli_fail("f16", "%s", asam_last_error());
    if (strcmp(asam_checkpoint_format(ck), "safetensors")) {
        asam_checkpoint_close(ck);
        return cli_fail("f16", "%s: not a safetensors file", pos.v[0]);
    }
    const size_t n = asam_checkpoint_count(ck);
    asam_st_entry *e = calloc(n ? n : 1, sizeof *e);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    rc = (!e || !bufs) ? -1 : 0;
    double worst = 0, worst_abs = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < n && !rc; i++) {
        const asam_ckpt_tensor *t = asam_checkpoint_get(ck, i);
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = t->shape[d];
        const size_t es = asam_dtype_size(t->dtype);
        if (t->dtype == ASAM_DT_F32) {
            float *f = malloc((size_t)t->numel * sizeof *f);
            uint16_t *h = malloc((size_t)t->numel * sizeof *h);
            bufs[i] = h;
            if (!f || !h || asam_ckpt_read_f32(ck, t, f)) {
                free(f);
                rc = -1;
                break;
            }
            double mx = 0, md = 0;
            for (int64_t j = 0; j < t->numel; j++) {
                h[j] = asam_f32_to_f16(f[j]);
                mx = fmax(mx, fabs(f[j]));
                md = fmax(md, fabs((double)f16_value(h[j]) - f[j]));
            }
            free(f);
            /* tensors of tiny values (new biases) lie in f16's subnormal steps: count them in
             * the absolute change only */
            if (mx >= 1e-4 && md / mx > worst) worst = md / mx, worst_name = t->name;
            worst_abs = fmax(worst_abs, md);
            e[i].dtype = ASAM_DT_F16;
            e[i].data = h;
        } else {
            void *raw = malloc((size_t)t->numel * es + 1);
            bufs[i] = raw;
            if (!raw || asam_ckpt_read_raw(ck, t, raw)) {
                rc = -1;
                break;
            }
            e[i].data = raw;
        }
    }
    const char *keys[3] = {"format", "provenance", "train_steps"}, *meta[6];
    size_t nm = 0;
    for (int k = 0; k < 3; k++) {
        const char *v = asam_checkpoint_metadata(ck, keys[k]);
        if (v) meta[2 * nm] = keys[k], meta[2 * nm + 1] = v, nm++;
    }
    if (!rc) rc = asam_safetensors_write(pos.v[1], e, n, meta, nm);
    if (!rc)
        printf("f16: wrote %s (%zu tensors); largest change relative to a tensor's largest value "
               "%.3g (%s), largest absolute change %.3g\n",
               pos.v[1], n, worst, worst_name, worst_abs);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs), free(e);
    char why[1024];
    snprintf(why, sizeof why, "%s", asam_last_error());
    asam_checkpoint_close(ck);
    return rc ? cli_fail("f16", "%s: %s", pos.v[0], why) : 0;
}
