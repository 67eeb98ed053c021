/* torch.save zip archives: <prefix>/data.pkl (restricted unpickler) + <prefix>/data/<key>
 * storages. The pickled object is flattened to named tensors (rule in checkpoint.h). */
#include "io/checkpoint_internal.h"
#include "io/pickle.h"
#include "asam/error.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME 4096
#define MAX_DEPTH 32
#define MAX_VISITS (1u << 22) /* dicts visited while flattening (memo can share them) */

typedef struct {
    asam_checkpoint *ck;
    const zip_archive *z;
    const char *prefix;
    size_t prefix_len;
    size_t visits;
    /* Memo references (BINGET: 2 bytes) can share one dict under many keys, so the flattened
     * list could outgrow the file by orders of magnitude. Caps from the pickle's size:
     * entries <= pkl bytes / 2 + 1024, name bytes <= 16 x that, bytes viewed <= 64 x the
     * archive (views of one storage may overlap, but not without bound). */
    size_t max_entries, entries;
    uint64_t max_name_bytes, name_bytes;
    uint64_t max_view_bytes, view_bytes;
} flat_ctx;

static int add_tensor(flat_ctx *f, const char *name, const pk_obj *t) {
    char ename[MAX_NAME + 64];
    const char *key = t->storage->s;
    int len = snprintf(ename, sizeof ename, "%.*s/data/%s", (int)f->prefix_len, f->prefix, key);
    if (len < 0 || (size_t)len >= sizeof ename)
        return asam_error("tensor '%s': storage key too long", name);
    const zip_entry *e = zip_find(f->z, ename, (size_t)len);
    if (!e) return asam_error("tensor '%s': storage '%s' is missing from the archive", name, ename);
    size_t es = asam_dtype_size(t->dtype);
    int64_t numel = ckpt_numel(t->ndim, t->shape);
    if (numel < 0) return asam_error("tensor '%s': shape overflows", name);
    /* Bytes the view touches: (offset + sum (size_i - 1) * stride_i + 1) * elem_size. */
    uint64_t need = 0;
    if (numel > 0) {
        uint64_t last = (uint64_t)t->offset, term;
        for (int d = 0; d < t->ndim; d++) {
            if (__builtin_mul_overflow((uint64_t)(t->shape[d] - 1), (uint64_t)t->stride[d],
                                       &term) ||
                __builtin_add_overflow(last, term, &last))
                return asam_error("tensor '%s': size/stride overflow", name);
        }
        if (__builtin_add_overflow(last, 1, &last) || __builtin_mul_overflow(last, es, &need))
            return asam_error("tensor '%s': size/stride overflow", name);
    }
    if (need > e->size)
        return asam_error("tensor '%s': offset %lld with shape/stride needs %llu bytes but storage "
                          "'%s' holds %llu",
                          name, (long long)t->offset, (unsigned long long)need, ename,
                          (unsigned long long)e->size);
    size_t nl = strlen(name) + 1;
    if (++f->entries > f->max_entries || (f->name_bytes += nl) > f->max_name_bytes ||
        (f->view_bytes += need) > f->max_view_bytes)
        return asam_error("more tensor entries than the pickle can hold (%zu entries, %llu name "
                          "bytes, %llu bytes viewed at '%s'): shared dicts repeated under many "
                          "keys",
                          f->entries, (unsigned long long)f->name_bytes,
                          (unsigned long long)f->view_bytes, name);
    asam_ckpt_tensor *o = ckpt_add(f->ck, name);
    if (!o) return -1;
    o->dtype = t->dtype;
    o->ndim = t->ndim;
    memcpy(o->shape, t->shape, sizeof o->shape);
    memcpy(o->stride, t->stride, sizeof o->stride);
    o->numel = numel;
    o->data = numel > 0 ? e->data + (size_t)t->offset * es : e->data;
    return 0;
}

/* Dict keys that name a tensor or a sub-dict: strings and ints. */
static int key_text(const pk_obj *k, char *buf, size_t n, const char **out) {
    if (k->type == PK_STR || k->type == PK_BYTES) {
        *out = k->s;
        return 0;
    }
    if (k->type == PK_INT) {
        snprintf(buf, n, "%lld", (long long)k->i);
        *out = buf;
        return 0;
    }
    return -1;
}

static int flatten(flat_ctx *f, const pk_obj *d, char *name, size_t len, int depth) {
    if (depth > MAX_DEPTH) return asam_error("pickled dicts nested more than %d deep", MAX_DEPTH);
    if (++f->visits > MAX_VISITS) return asam_error("too many nested dicts");
    for (size_t i = 0; i + 1 < d->n; i += 2) {
        const pk_obj *k = d->items[i], *v = d->items[i + 1];
        if (v->type != PK_TENSOR && v->type != PK_DICT) continue; /* other values are ignored */
        char num[32];
        const char *kt;
        if (key_text(k, num, sizeof num, &kt)) continue;
        size_t kl = strlen(kt);
        if (len + kl + 2 > MAX_NAME)
            return asam_error("tensor name longer than %d bytes", MAX_NAME);
        memcpy(name + len, kt, kl + 1);
        if (v->type == PK_TENSOR) {
            if (add_tensor(f, name, v)) return -1;
        } else {
            name[len + kl] = '.';
            name[len + kl + 1] = 0;
            if (flatten(f, v, name, len + kl + 1, depth + 1)) return -1;
        }
        name[len] = 0;
    }
    return 0;
}

static const pk_obj *dict_get(const pk_obj *d, const char *key) {
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->type == PK_STR && !strcmp(d->items[i]->s, key)) return d->items[i + 1];
    return NULL;
}

static int has_tensor_value(const pk_obj *d) {
    for (size_t i = 1; i < d->n; i += 2)
        if (d->items[i]->type == PK_TENSOR) return 1;
    return 0;
}

/* Training checkpoints wrap the weights: {"state_dict": {...}, "global_step": ...} (CompVis),
 * {"model": {...}, "optimizer": ...}. Step inside a known wrapper key when the outer dict holds
 * no tensor itself. */
static const pk_obj *unwrap(const pk_obj *root) {
    static const char *wrappers[] = {"state_dict", "model_state_dict", "model", "module"};
    for (int level = 0; level < 4 && root->type == PK_DICT && !has_tensor_value(root); level++) {
        const pk_obj *in = NULL;
        for (size_t w = 0; w < sizeof wrappers / sizeof wrappers[0] && !in; w++) {
            const pk_obj *v = dict_get(root, wrappers[w]);
            if (v && v->type == PK_DICT) in = v;
        }
        if (!in) break;
        root = in;
    }
    return root;
}

/* asam's own record in a torch.save archive: <prefix>/asam_metadata.json, a JSON object of
 * strings (what safetensors keeps in __metadata__, e.g. the provenance of a tuned model).
 * torch.load reads only the records it names, so the file stays an official checkpoint. */
#define ASAM_METADATA_MAX (1u << 20)
static int read_asam_metadata(asam_checkpoint *ck, const zip_archive *z, const char *prefix,
                              size_t prefix_len) {
    char mname[MAX_NAME + 64];
    int ml = snprintf(mname, sizeof mname, "%.*s/asam_metadata.json", (int)prefix_len, prefix);
    const zip_entry *me =
        ml > 0 && (size_t)ml < sizeof mname ? zip_find(z, mname, (size_t)ml) : NULL;
    if (!me) return 0;
    if (me->size > ASAM_METADATA_MAX)
        return asam_error("%s: %llu bytes, more than the %u a metadata record may hold", mname,
                          (unsigned long long)me->size, ASAM_METADATA_MAX);
    cJSON *js = cJSON_ParseWithLength((const char *)me->data, (size_t)me->size);
    if (!js) return asam_error("%s: not valid JSON", mname);
    int rc = ckpt_set_metadata(ck, js, mname);
    cJSON_Delete(js);
    return rc;
}

int ckpt_read_torch_zip(asam_checkpoint *ck) {
    zip_archive z;
    if (zip_open(&z, ck->base, ck->size)) return -1;
    int rc = 0;
    pk_ctx *pc = NULL;
    char *name = NULL;
    if (z.n == 0) {
        rc = asam_error("empty zip archive (not a torch.save file)");
        goto done;
    }
    /* The archive prefix (folder of every entry) varies: take it from the first entry. */
    const char *slash = memchr(z.e[0].name, '/', z.e[0].name_len);
    if (!slash) {
        rc = asam_error("zip archive is not a torch.save file (entry '%.*s' has no folder)",
                        (int)z.e[0].name_len, z.e[0].name);
        goto done;
    }
    flat_ctx f = {
        .ck = ck, .z = &z, .prefix = z.e[0].name, .prefix_len = (size_t)(slash - z.e[0].name)};
    char pkl_name[MAX_NAME + 64];
    int pl = snprintf(pkl_name, sizeof pkl_name, "%.*s/data.pkl", (int)f.prefix_len, f.prefix);
    const zip_entry *pkl =
        pl > 0 && (size_t)pl < sizeof pkl_name ? zip_find(&z, pkl_name, (size_t)pl) : NULL;
    if (!pkl) {
        rc = asam_error("zip archive is not a torch.save file (no %.*s/data.pkl)",
                        (int)f.prefix_len, f.prefix);
        goto done;
    }
    char bo_name[MAX_NAME + 64];
    int bl = snprintf(bo_name, sizeof bo_name, "%.*s/byteorder", (int)f.prefix_len, f.prefix);
    const zip_entry *bo =
        bl > 0 && (size_t)bl < sizeof bo_name ? zip_find(&z, bo_name, (size_t)bl) : NULL;
    if (bo && bo->size >= 3 && !memcmp(bo->data, "big", 3)) {
        rc = asam_error("big-endian torch checkpoints are not supported");
        goto done;
    }
    f.max_entries = (size_t)(pkl->size / 2) + 1024;
    f.max_name_bytes = 16 * (uint64_t)f.max_entries;
    f.max_view_bytes = 64 * (uint64_t)ck->size + (1u << 20);
    pk_obj *root;
    if (pk_load(pkl->data, (size_t)pkl->size, &pc, &root)) {
        rc = asam_error_prefix(pkl_name);
        goto done;
    }
    const pk_obj *top = unwrap(root);
    if (top->type != PK_DICT) {
        if (top->type == PK_OPAQUE)
            rc = asam_error("top-level pickled object is a %s, not a dict of tensors (pickled "
                            "modules are not supported; save the state_dict)",
                            top->s ? top->s : "custom object");
        else
            rc = asam_error("top-level pickled object is not a dict of tensors");
        goto done;
    }
    name = malloc(MAX_NAME + 1);
    if (!name) {
        rc = asam_error("out of memory");
        goto done;
    }
    name[0] = 0;
    rc = flatten(&f, top, name, 0, 0);
    if (!rc) rc = read_asam_metadata(ck, &z, f.prefix, f.prefix_len);
done:
    free(name);
    pk_free(pc);
    zip_close(&z);
    return rc;
}
