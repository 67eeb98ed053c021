/* Shared pieces of the training state files (see train_state.h). */
#include "asam/train_state.h"
#include "asam/util.h"
#include "asam/error.h"

#include <stdio.h>
#include <stdlib.h>

int train_state_meta_ll(const asam_checkpoint *ck, const char *key, long long *out) {
    const char *s = asam_checkpoint_metadata(ck, key);
    char *end;
    if (!s) return asam_error("%s: state file has no \"%s\"", asam_checkpoint_path(ck), key);
    *out = strtoll(s, &end, 10);
    if (*end || *out < 0)
        return asam_error("%s: bad \"%s\" value %s", asam_checkpoint_path(ck), key, s);
    return 0;
}

int train_state_read_weights(const asam_checkpoint *ck, const char *path,
                             asam_tensor *const *params, const char *const *names, size_t n,
                             asam_optim *opt, long long optim_step) {
    int rc = 0;
    char key[512];
    for (size_t i = 0; i < n && !rc; i++) {
        snprintf(key, sizeof key, "param.%s", names[i]);
        const asam_ckpt_tensor *t = asam_checkpoint_find(ck, key);
        if (!t || t->numel != params[i]->numel)
            rc = asam_error("%s: %s missing or of another size", path, key);
        else
            rc = asam_ckpt_read_f32(ck, t, params[i]->data);
    }
    if (rc) return -1;
    int64_t sn = asam_optim_state_numel(opt);
    const asam_ckpt_tensor *tm = asam_checkpoint_find(ck, "optim.m");
    const asam_ckpt_tensor *tv = asam_checkpoint_find(ck, "optim.v");
    if (!tm || !tv || tm->numel != sn || tv->numel != sn)
        return asam_error("%s: optimizer state missing or of another size", path);
    float *m = malloc((size_t)sn * sizeof *m), *v = malloc((size_t)sn * sizeof *v);
    if (!m || !v) rc = asam_error("%s: out of memory", path);
    if (!rc) rc = asam_ckpt_read_f32(ck, tm, m) || asam_ckpt_read_f32(ck, tv, v);
    if (!rc) asam_optim_set_state(opt, m, v, optim_step);
    free(m);
    free(v);
    return rc ? -1 : 0;
}

size_t train_sample_index(uint64_t seed, size_t N, uint64_t k, size_t *perm, uint64_t *perm_epoch) {
    uint64_t epoch = k / N;
    if (*perm_epoch != epoch) {
        asam_rng r;
        asam_rng_seed(&r, asam_mix64(seed ^ 0x7065726D75746531ull) + epoch);
        for (size_t i = 0; i < N; i++) perm[i] = i;
        for (size_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)(asam_rng_u64(&r) % (i + 1));
            size_t t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        *perm_epoch = epoch;
    }
    return perm[k % N];
}
