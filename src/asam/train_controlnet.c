/* Mask-to-image ControlNet training (see asam/train.h). */
#include "asam/train.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam/checkpoint.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/train_state.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/optim.h"
#include "asam/provenance.h"
#include "asam/util.h"
#include "asam/sa1b.h"

#define CN_MAX_RES 64

/* ---- keyed draws ------------------------------------------------------------------------- */
// One splitmix64 step from state z (a keyed value, not a stream).
static uint64_t mix64(uint64_t z) {
    return asam_splitmix64(&z);
}
// A value keyed by (seed, index, stream): what the trainer draws per sample.
static uint64_t key3(uint64_t seed, uint64_t idx, uint64_t stream) {
    return mix64(mix64(mix64(seed) ^ idx) ^ (stream * 0xD1B54A32D192ED03ull));
}

/* ---- ControlNet initialisation from the UNet --------------------------------------------- */
typedef struct {
    char *name;
    int ndim;
    int64_t shape[4];
    float *data; // owned when own != 0
    int own;
} init_entry;

typedef struct {
    init_entry *e;
    size_t n, cap;
} init_list;

static int init_add(init_list *L, const char *name, int ndim, const int64_t *shape, float *data,
                    int own) {
    if (L->n == L->cap) {
        size_t nc = L->cap ? 2 * L->cap : 256;
        init_entry *ne = realloc(L->e, nc * sizeof *ne);
        if (!ne) return asam_error("out of memory");
        L->e = ne, L->cap = nc;
    }
    init_entry *e = &L->e[L->n];
    memset(e, 0, sizeof *e);
    size_t len = strlen(name) + 16;
    e->name = malloc(len);
    if (!e->name) return asam_error("out of memory");
    snprintf(e->name, len, "control_model.%s", name);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data, e->own = own;
    L->n++;
    return 0;
}

static void init_free(init_list *L) {
    for (size_t i = 0; i < L->n; i++) {
        free(L->e[i].name);
        if (L->e[i].own) free(L->e[i].data);
    }
    free(L->e);
}

// A new owned conv: weight (co, ci, k, k) and bias (co), zero or torch's default init.
static int init_conv(init_list *L, const char *wname, const char *bname, int co, int ci, int k,
                     int zero, uint64_t *rng) {
    size_t nw = (size_t)co * ci * k * k;
    float *w = calloc(nw, sizeof *w), *b = calloc((size_t)co, sizeof *b);
    if (!w || !b) {
        free(w), free(b);
        return asam_error("out of memory");
    }
    if (!zero) { // kaiming_uniform(a=sqrt(5)) and the bias rule both give U(-1/sqrt(fan_in), ..)
        double bound = 1.0 / sqrt((double)ci * k * k);
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)((2.0 * asam_u01(mix64((*rng)++)) - 1.0) * bound);
        for (int i = 0; i < co; i++)
            b[i] = (float)((2.0 * asam_u01(mix64((*rng)++)) - 1.0) * bound);
    }
    int64_t ws[4] = {co, ci, k, k}, bs[1] = {co};
    if (init_add(L, wname, 4, ws, w, 1)) {
        free(w), free(b);
        return -1;
    }
    if (init_add(L, bname, 1, bs, b, 1)) {
        free(b);
        return -1;
    }
    return 0;
}

static int starts_with(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

int asam_controlnet_init_from_unet(const asam_unet *unet, int hint_channels, uint64_t seed,
                                   asam_controlnet **out) {
    *out = NULL;
    if (hint_channels < 1)
        return asam_error("controlnet init: bad hint channel count %d", hint_channels);
    init_list L = {0};
    int rc = 0;
    // The encoder copy: time_embed, input_blocks, middle_block, shared with the UNet's tensors.
    asam_tensor **params;
    const char **names;
    size_t n_params;
    asam_unet_params(unet, &params, &names, &n_params);
    for (size_t i = 0; i < n_params && !rc; i++) {
        const char *nm = names[i];
        if (!starts_with(nm, "time_embed.") && !starts_with(nm, "input_blocks.") &&
            !starts_with(nm, "middle_block."))
            continue;
        const asam_tensor *t = params[i];
        if (t->ndim > 4)
            rc = asam_error("controlnet init: %s has %d dims", nm, t->ndim);
        else if (!t->data) /* a bf16 forward ran first: only the weight's bf16 values are left */
            rc = asam_error("controlnet init: %s is held in bf16 (its fp32 copy was freed by a "
                            "bf16 forward): initialise before running the UNet",
                            nm);
        else
            rc = init_add(&L, nm, t->ndim, t->shape, t->data, 0);
    }
    // Hint encoder: 8 3x3 convs 3 -> 16 -> 16 -> 32 -> 32 -> 96 -> 96 -> 256 -> mc; the last
    // one is a zero_module in ControlNet (so is every zero conv).
    const int mc = asam_unet_model_channels(unet);
    const int hc[9] = {hint_channels, 16, 16, 32, 32, 96, 96, 256, mc};
    uint64_t rng = mix64(seed ^ 0x68696e74ull);
    char wn[64], bn[64];
    for (int i = 0; i < 8 && !rc; i++) {
        snprintf(wn, sizeof wn, "input_hint_block.%d.weight", 2 * i);
        snprintf(bn, sizeof bn, "input_hint_block.%d.bias", 2 * i);
        rc = init_conv(&L, wn, bn, hc[i + 1], hc[i], 3, i == 7, &rng);
    }
    for (int i = 0; i < asam_unet_n_input_blocks(unet) && !rc; i++) {
        snprintf(wn, sizeof wn, "zero_convs.%d.0.weight", i);
        snprintf(bn, sizeof bn, "zero_convs.%d.0.bias", i);
        const int ch = asam_unet_input_channels_out(unet, i);
        rc = init_conv(&L, wn, bn, ch, ch, 1, 1, &rng);
    }
    if (!rc) {
        int cm = asam_unet_middle_channels(unet);
        rc = init_conv(&L, "middle_block_out.0.weight", "middle_block_out.0.bias", cm, cm, 1, 1,
                       &rng);
    }
    // Bind through the ControlNet loader from a checkpoint over these tensors in memory, so
    // the new model is built exactly as one read from a file.
    asam_st_entry *ents = rc ? NULL : calloc(L.n ? L.n : 1, sizeof *ents);
    if (!rc && !ents) rc = asam_error("out of memory");
    for (size_t i = 0; !rc && i < L.n; i++) {
        const init_entry *e = &L.e[i];
        ents[i].name = e->name;
        ents[i].dtype = ASAM_DT_F32;
        ents[i].ndim = e->ndim;
        for (int d = 0; d < e->ndim; d++) ents[i].shape[d] = e->shape[d];
        ents[i].data = e->data;
    }
    asam_checkpoint *ck = NULL;
    if (!rc) rc = asam_checkpoint_from_entries(ents, L.n, "<controlnet init>", &ck);
    if (!rc) rc = asam_controlnet_load(ck, "control_model.", out); // copies the weights
    if (ck) asam_checkpoint_close(ck);
    free(ents);
    init_free(&L);
    return rc ? -1 : 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int asam_controlnet_save(const char *path, const asam_controlnet *cn) {
    return asam_controlnet_save_meta(path, cn, NULL, 0);
}

int asam_controlnet_save_meta(const char *path, const asam_controlnet *cn,
                              const char *const *metadata, size_t n_meta) {
    asam_tensor **params;
    const char **names;
    size_t n;
    asam_controlnet_params(cn, &params, &names, &n);
    asam_st_entry *e = calloc(n ? n : 1, sizeof *e);
    char **full = calloc(n ? n : 1, sizeof *full);
    int rc = (!e || !full) ? asam_error("%s: out of memory", path) : 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = strlen(names[i]) + 16;
        full[i] = malloc(len);
        if (!full[i]) {
            rc = asam_error("%s: out of memory", path);
            break;
        }
        snprintf(full[i], len, "control_model.%s", names[i]);
        e[i].name = full[i];
        e[i].dtype = ASAM_DT_F32;
        e[i].ndim = params[i]->ndim;
        for (int d = 0; d < params[i]->ndim; d++) e[i].shape[d] = params[i]->shape[d];
        e[i].data = params[i]->data;
    }
    if (!rc) {
        if (ends_with(path, ".safetensors")) {
            const char *meta[2 + 2 * 8] = {"format", "pt"};
            size_t k = 1;
            for (size_t i = 0; i < n_meta && k < 9; i++, k++) {
                meta[2 * k] = metadata[2 * i];
                meta[2 * k + 1] = metadata[2 * i + 1];
            }
            rc = asam_safetensors_write(path, e, n, meta, k);
        } else {
            rc = asam_torch_save_write_meta(path, NULL, e, n, metadata, n_meta);
        }
    }
    for (size_t i = 0; full && i < n; i++) free(full[i]);
    free(full);
    free(e);
    return rc;
}

asam_tensor *asam_controlnet_loss(asam_ctx *ctx, const asam_unet *unet, const asam_controlnet *cn,
                                  asam_tensor *z0, const int *t, asam_tensor *noise,
                                  asam_tensor *context, asam_tensor *hint) {
    if (!z0 || !noise || !context || !hint)
        return asam_ctx_fail(ctx, "controlnet loss: missing input");
    if (z0->ndim != 4 || !asam_same_shape(z0, noise))
        return asam_ctx_fail(ctx, "controlnet loss: latent and noise shapes differ");
    const int64_t B = z0->shape[0], per = z0->numel / B;
    static float ac[ASAM_DDPM_STEPS];
    static int ac_ready = 0;
    if (!ac_ready) asam_sd_alphas_cumprod(ac), ac_ready = 1;
    // z_t = sqrt(a) z + sqrt(1-a) n: computed directly (no gradient flows to the data).
    asam_tensor *zt = asam_new_like(ctx, z0);
    float tf[CN_MAX_RES];
    if (!zt) return NULL;
    if (B > CN_MAX_RES)
        return asam_ctx_fail(ctx, "controlnet loss: batch %lld too large", (long long)B);
    for (int64_t b = 0; b < B; b++) {
        if (t[b] < 0 || t[b] >= ASAM_DDPM_STEPS)
            return asam_ctx_fail(ctx, "controlnet loss: timestep %d outside [0, 1000)", t[b]);
        const float sa = sqrtf(ac[t[b]]), sn = sqrtf(1.0f - ac[t[b]]);
        for (int64_t i = 0; i < per; i++)
            zt->data[b * per + i] = sa * z0->data[b * per + i] + sn * noise->data[b * per + i];
        tf[b] = (float)t[b];
    }
    asam_tensor *res[CN_MAX_RES];
    if (asam_controlnet_forward(ctx, cn, zt, tf, context, hint, res)) return NULL;
    asam_tensor *eps = asam_unet_forward(ctx, unet, zt, tf, context, res, 1.0f);
    return asam_mse(ctx, eps, noise);
}

/* ---- dataset: sa_N.json + image in a folder ---------------------------------------------- */
typedef struct {
    char *dir;
    char **json; // sorted by the number in sa_N (version order)
    size_t n;
    asam_captions *caps;
} cn_data;

static long stem_number(const char *name) {
    const char *p = name;
    while (*p && (*p < '0' || *p > '9')) p++;
    return *p ? strtol(p, NULL, 10) : -1;
}
static int cmp_names(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    long nx = stem_number(x), ny = stem_number(y);
    if (nx != ny) return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

static void data_free(cn_data *d) {
    for (size_t i = 0; i < d->n; i++) free(d->json[i]);
    free(d->json);
    free(d->dir);
    if (d->caps) asam_captions_free(d->caps);
    memset(d, 0, sizeof *d);
}

static int data_open(const char *spec, const char *captions, cn_data *d) {
    memset(d, 0, sizeof *d);
    const char *dir = starts_with(spec, "sa1b:") ? spec + 5 : spec;
    d->dir = strdup(dir);
    DIR *dp = opendir(dir);
    if (!d->dir || !dp) {
        if (dp) closedir(dp);
        free(d->dir);
        d->dir = NULL;
        return asam_error("%s: cannot open the data folder", dir);
    }
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dp)) && !rc) {
        const char *nm = de->d_name;
        if (!ends_with(nm, ".json") || stem_number(nm) < 0) continue;
        if (d->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nj = realloc(d->json, cap * sizeof *nj);
            if (!nj) {
                rc = asam_error("out of memory");
                break;
            }
            d->json = nj;
        }
        if (!(d->json[d->n] = strdup(nm)))
            rc = asam_error("out of memory");
        else
            d->n++;
    }
    closedir(dp);
    if (!rc && d->n == 0) rc = asam_error("%s: no sa_N.json annotation files", dir);
    if (!rc) qsort(d->json, d->n, sizeof *d->json, cmp_names);
    char path[4096];
    if (!rc && !captions) {
        snprintf(path, sizeof path, "%s/captions.jsonl", dir);
        if (asam_file_exists(path)) captions = path;
    }
    if (!rc && captions) rc = asam_captions_load(captions, &d->caps);
    if (rc) data_free(d);
    return rc;
}

/* The training target as ControlNet's tutorial_dataset.py makes it: cv2.resize (INTER_LINEAR)
 * of the 8-bit image to size x size, then / 127.5 - 1 -> (1, 3, size, size). */
// ref: luckybird1994/ASAM ControlNet/tutorial_dataset.py:27-42
asam_tensor *asam_cn_target_tensor(asam_ctx *ctx, const asam_image *img, int size) {
    asam_image rs = {0};
    if (asam_image_resize_cv2_linear(img, size, size, &rs))
        return asam_ctx_fail(ctx, "%s", asam_last_error());
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, size, size));
    const size_t hw = (size_t)size * size;
    for (int c = 0; x && c < 3; c++)
        for (size_t i = 0; i < hw; i++) {
            float v = (float)rs.data[i * (size_t)rs.c + (size_t)(rs.c == 1 ? 0 : c)] / 127.5f;
            x->data[c * hw + i] = v - 1.0f;
        }
    asam_image_free(&rs);
    return x;
}

/* z = 0.18215 * (mean + exp(0.5 * clamp(logvar, -30, 20)) * eps) of the VAE moments
 * (1, 8, h, w) = (mean, logvar); eps (1, 4, h, w). */
// ref: luckybird1994/ASAM ControlNet/ldm/modules/distributions/distributions.py:24-35
//   (DiagonalGaussianDistribution), ldm/models/diffusion/ddpm.py:655-661 (sample() * scale)
asam_tensor *asam_vae_posterior_sample(asam_ctx *ctx, asam_tensor *moments, const float *eps) {
    if (!moments || moments->ndim != 4 || moments->shape[1] % 2)
        return asam_ctx_fail(ctx, "posterior: moments (B, 2C, h, w) expected");
    const int64_t B = moments->shape[0], C = moments->shape[1] / 2;
    const int64_t hw = moments->shape[2] * moments->shape[3];
    asam_tensor *z = asam_new(ctx, ASAM_SHAPE(B, C, moments->shape[2], moments->shape[3]));
    for (int64_t b = 0; z && b < B; b++)
        for (int64_t i = 0; i < C * hw; i++) {
            float mean = moments->data[b * 2 * C * hw + i];
            float lv = moments->data[b * 2 * C * hw + C * hw + i];
            lv = fminf(fmaxf(lv, -30.0f), 20.0f);
            float sd = expf(0.5f * lv);
            float x = mean + sd * eps[b * C * hw + i];
            z->data[b * C * hw + i] = ASAM_SD_LATENT_SCALE * x;
        }
    return z;
}

/* One training sample prepared without gradients: z0 (1,4,h,w) scaled, hint (1,3,S,S),
 * context (1,77,D). eps_key: the posterior's noise (vae_mean: the mean instead). */
static int data_sample(asam_ctx *ctx, const cn_data *d, size_t i, const asam_sd *sd, int size,
                       uint64_t eps_key, int vae_mean, asam_tensor **z0, asam_tensor **hint,
                       asam_tensor **context) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", d->dir, d->json[i]);
    asam_sa1b_image ann;
    if (asam_sa1b_read(path, &ann)) return -1;
    char img_name[1024];
    if (ann.file_name && *ann.file_name)
        snprintf(img_name, sizeof img_name, "%s", ann.file_name);
    else
        snprintf(img_name, sizeof img_name, "%.*s.jpg", (int)(strlen(d->json[i]) - 5), d->json[i]);
    snprintf(path, sizeof path, "%s/%s", d->dir, img_name);
    asam_image img = {0};
    int rc = asam_image_read(path, 3, &img);
    if (!rc) {
        *hint = asam_mask_map_tensor(ctx, &ann, size);
        asam_tensor *x = asam_cn_target_tensor(ctx, &img, size);
        asam_tensor *mom = x ? asam_vae_encode_moments(ctx, sd->vae, x) : NULL;
        if (vae_mean) {
            asam_tensor *mean = mom ? asam_slice(ctx, mom, 1, 0, mom->shape[1] / 2) : NULL;
            *z0 = asam_scale(ctx, mean, ASAM_SD_LATENT_SCALE);
        } else {
            const size_t n = mom ? (size_t)(mom->numel / 2) : 0;
            float *eps = mom ? asam_ctx_alloc(ctx, sizeof(float) * n) : NULL;
            if (eps) asam_randn(eps_key, eps, n);
            *z0 = eps ? asam_vae_posterior_sample(ctx, mom, eps) : NULL;
        }
        const char *cap = d->caps ? asam_captions_get(d->caps, img_name) : "";
        *context = asam_sd_encode_prompt(ctx, sd, cap);
        if (!asam_ctx_ok(ctx) || !*hint || !*z0 || !*context)
            rc = asam_error("%s: %s", path, asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "failed");
    }
    asam_image_free(&img);
    asam_sa1b_free(&ann);
    return rc;
}

// Position of sample `k` (global index) in the data: a shuffled order per epoch.
static size_t sample_index(uint64_t seed, size_t N, uint64_t k, size_t *perm,
                           uint64_t *perm_epoch) {
    uint64_t epoch = k / N;
    if (*perm_epoch != epoch) {
        for (size_t i = 0; i < N; i++) perm[i] = i;
        for (size_t i = N - 1; i > 0; i--) { // Fisher-Yates
            size_t j = (size_t)(key3(seed, epoch, 3 + i) % (i + 1));
            size_t tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        *perm_epoch = epoch;
    }
    return perm[k % N];
}

/* ---- resumable state ------------------------------------------------------------------------ */
static int state_save(const char *path, const asam_controlnet *cn, const asam_optim *opt,
                      int64_t step, uint64_t seed, int batch, int size, const char *prov) {
    asam_tensor **params;
    const char **names;
    size_t n;
    asam_controlnet_params(cn, &params, &names, &n);
    int64_t sn = asam_optim_state_numel(opt);
    float *m = malloc((size_t)sn * sizeof *m), *v = malloc((size_t)sn * sizeof *v);
    asam_st_entry *e = calloc(n + 2, sizeof *e);
    char **full = calloc(n, sizeof *full);
    int rc = (!m || !v || !e || !full) ? asam_error("%s: out of memory", path) : 0;
    int64_t st = 0;
    if (!rc) asam_optim_get_state(opt, m, v, &st);
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = strlen(names[i]) + 8;
        if (!(full[i] = malloc(len))) {
            rc = asam_error("%s: out of memory", path);
            break;
        }
        snprintf(full[i], len, "param.%s", names[i]);
        e[i] = (asam_st_entry){.name = full[i],
                               .dtype = ASAM_DT_F32,
                               .ndim = params[i]->ndim,
                               .data = params[i]->data};
        for (int d = 0; d < params[i]->ndim; d++) e[i].shape[d] = params[i]->shape[d];
    }
    if (!rc) {
        e[n] = (asam_st_entry){.name = "optim.m", .dtype = ASAM_DT_F32, .ndim = 1, .data = m};
        e[n + 1] = (asam_st_entry){.name = "optim.v", .dtype = ASAM_DT_F32, .ndim = 1, .data = v};
        e[n].shape[0] = e[n + 1].shape[0] = sn;
        char s_step[32], s_seed[32], s_batch[16], s_size[16], s_ostep[32];
        snprintf(s_step, sizeof s_step, "%lld", (long long)step);
        snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
        snprintf(s_batch, sizeof s_batch, "%d", batch);
        snprintf(s_size, sizeof s_size, "%d", size);
        snprintf(s_ostep, sizeof s_ostep, "%lld", (long long)st);
        const char *meta[14] = {"format",     "asam-controlnet-train-state-1",
                                "step",       s_step,
                                "seed",       s_seed,
                                "batch",      s_batch,
                                "size",       s_size,
                                "optim_step", s_ostep,
                                "provenance", prov ? prov : ""};
        rc = asam_safetensors_write(path, e, n + 2, meta, 7);
    }
    for (size_t i = 0; full && i < n; i++) free(full[i]);
    free(full), free(e), free(m), free(v);
    return rc;
}

static int state_load(const char *path, asam_controlnet *cn, asam_optim *opt, int64_t *step,
                      uint64_t seed, int batch, int size) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    long long st = 0, sd = 0, bt = 0, sz = 0, ost = 0;
    const char *fmt = asam_checkpoint_metadata(ck, "format");
    int rc = (!fmt || strcmp(fmt, "asam-controlnet-train-state-1"))
                 ? asam_error("%s: not a train-controlnet state file", path)
                 : 0;
    if (!rc)
        rc = train_state_meta_ll(ck, "step", &st) || train_state_meta_ll(ck, "seed", &sd) ||
             train_state_meta_ll(ck, "batch", &bt) || train_state_meta_ll(ck, "size", &sz) ||
             train_state_meta_ll(ck, "optim_step", &ost);
    if (!rc && ((uint64_t)sd != seed || bt != batch || sz != size))
        rc =
            asam_error("%s: state was made with --seed %llu --batch %lld --size %lld; this run "
                       "uses %llu, %d, %d",
                       path, (unsigned long long)sd, bt, sz, (unsigned long long)seed, batch, size);
    asam_tensor **params;
    const char **names;
    size_t n;
    asam_controlnet_params(cn, &params, &names, &n);
    if (!rc) rc = train_state_read_weights(ck, path, params, names, n, opt, ost);
    asam_checkpoint_close(ck);
    if (!rc) *step = st;
    return rc;
}

/* What determines the weights: the models, the data, every option that changes the trajectory
 * (not --steps / --epochs / --stop-after, which say how far to go; a resume may go further). */
static asam_prov *cn_provenance(const asam_cn_train_opts *o) {
    asam_prov *p = asam_prov_new("train-controlnet");
    asam_prov_file(p, "--sd", o->sd);
    asam_prov_str(p, "--data", o->data);
    if (o->captions) asam_prov_file(p, "--captions", o->captions);
    if (o->init_controlnet) asam_prov_file(p, "--init-controlnet", o->init_controlnet);
    asam_prov_num(p, "--lr", o->lr);
    asam_prov_num(p, "--weight-decay", o->weight_decay);
    asam_prov_int(p, "--batch", o->batch);
    asam_prov_int(p, "--size", o->size);
    asam_prov_int(p, "--seed", (long long)o->seed);
    asam_prov_int(p, "--vae-mean", o->vae_mean);
    return p;
}

/* 0: the state at path was made by this run's provenance; -1 with one line naming the first
 * option that differs (a state without provenance counts as different). */
static int state_check(const char *path, const asam_prov *p) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *rec = asam_checkpoint_metadata(ck, "provenance");
    int rc = asam_prov_check(p, rec && *rec ? rec : "{}", path);
    asam_checkpoint_close(ck);
    return rc;
}

/* ---- the job -------------------------------------------------------------------------------- */
void asam_cn_train_opts_default(asam_cn_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->lr = 1e-5f;
    o->weight_decay = 1e-2;
    o->batch = 64; // ref: ControlNet/train.sh:2 --batchsize=8 --gpus 8 (DDP: 64 per step)
    o->epochs = 1;
    o->size = 512;
    o->save_every = 100;
    o->verbose = 1;
}

/* One optimiser step on batch number `step`: per sample its latent, hint and text context,
 * timestep and noise keyed by (seed, step * batch + b), then the ControlNet loss and AdamW.
 * *lv receives the loss. Runs in the caller's arena mark.
 *
 * Data-parallel over the ranks of an MPI job (asam/dist.h): rank r takes samples
 * [batch r / P, batch (r + 1) / P). Each sample is a forward + backward of its own, its loss
 * scaled by 1/batch (the batch mean); its gradient is added into the double accumulator acc
 * (n_grad values, then the loss and a failure flag), the ranks' accumulators are summed in
 * rank order and rounded to float once, and every rank takes the same AdamW step. The double
 * sums of a batch of float gradients are exact unless their exponents lie more than about 29
 * binades apart, so the weights do not depend on how many ranks there are (README, MPI). */
static int train_step(asam_ctx *ctx, const asam_cn_train_opts *o, cn_data *data, asam_sd *sd,
                      asam_controlnet *cn, asam_optim *opt, asam_tensor **params, size_t n_params,
                      double *acc, size_t n_grad, int64_t step, size_t *perm, uint64_t *perm_epoch,
                      float *noise_buf, float *lv) {
    const int lat = o->size / 8;
    const size_t per = (size_t)4 * lat * lat;
    const int P = asam_dist_size(), R = asam_dist_rank();
    const int lo = o->batch * R / P, hi = o->batch * (R + 1) / P;
    int rc = 0;
    memset(acc, 0, (n_grad + 2) * sizeof *acc);
    for (int b = lo; b < hi && !rc; b++) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, 0);
        uint64_t k = (uint64_t)step * o->batch + b;
        size_t idx = sample_index(o->seed, data->n, k, perm, perm_epoch);
        asam_tensor *z0, *hint, *context, *loss = NULL;
        // ref: ControlNet/ldm/models/diffusion/ddpm.py:657 encoder_posterior.sample()
        rc = data_sample(ctx, data, idx, sd, o->size, key3(o->seed, k, 0), o->vae_mean, &z0, &hint,
                         &context);
        // ref: lllyasviel/ControlNet ldm/models/diffusion/ddpm.py:840 (t uniform in 0..999),
        // :886 (Gaussian noise), LatentDiffusion's training step
        int t = (int)(key3(o->seed, k, 1) % ASAM_DDPM_STEPS);
        asam_randn(key3(o->seed, k, 2), noise_buf, per);
        if (!rc) {
            asam_tensor *noise = asam_from_data(ctx, ASAM_SHAPE(1, 4, lat, lat), noise_buf);
            asam_ctx_set_grad(ctx, 1);
            for (size_t i = 0; i < n_params; i++) asam_param_zero_grad(params[i]);
            loss = asam_controlnet_loss(ctx, sd->unet, cn, z0, &t, noise, context, hint);
            loss = asam_scale(ctx, loss, 1.0f / (float)o->batch);
            if (!loss || asam_backward(ctx, loss))
                rc = asam_error("train-controlnet: step %lld: %s", (long long)step,
                                asam_ctx_error(ctx) ? asam_ctx_error(ctx) : asam_last_error());
        }
        if (!rc) {
            size_t e = 0;
            for (size_t i = 0; i < n_params; i++)
                for (int64_t j = 0; j < params[i]->numel; j++, e++) acc[e] += params[i]->grad[j];
            acc[n_grad] += loss->data[0];
        }
        asam_ctx_release(ctx, mk);
        asam_ctx_clear_error(ctx);
    }
    acc[n_grad + 1] = rc != 0;
    if (asam_dist_sum_f64(acc, n_grad + 2) || acc[n_grad + 1] > 0)
        return rc ? rc
                  : asam_error("train-controlnet: step %lld: stopped because another rank failed",
                               (long long)step);
    *lv = (float)acc[n_grad];
    if (!isfinite(*lv))
        return asam_error("train-controlnet: step %lld: loss is %g", (long long)step, *lv);
    size_t e = 0;
    for (size_t i = 0; i < n_params; i++) {
        asam_param_zero_grad(params[i]);
        for (int64_t j = 0; j < params[i]->numel; j++, e++) params[i]->grad[j] = (float)acc[e];
    }
    opt->lr = o->lr;
    asam_optim_step(opt);
    return 0;
}

static int check_opts(const asam_cn_train_opts *o) {
    if (!o->sd || !o->data || !o->out)
        return asam_error("train-controlnet: --sd, --data and --out are required");
    if (o->size < 64 || o->size % 64)
        return asam_error("train-controlnet: --size %d must be a positive multiple of 64", o->size);
    if (o->batch < 1 || o->batch > CN_MAX_RES)
        return asam_error("train-controlnet: --batch %d outside 1..%d", o->batch, CN_MAX_RES);
    if (!(o->lr > 0)) return asam_error("train-controlnet: --lr must be positive");
    return 0;
}

int asam_train_controlnet(const asam_cn_train_opts *o) {
    if (check_opts(o)) return -1;
    char state_path[4096];
    snprintf(state_path, sizeof state_path, "%s.state.safetensors", o->out);
    if (o->state) snprintf(state_path, sizeof state_path, "%s", o->state);

    cn_data data;
    if (data_open(o->data, o->captions, &data))
        return asam_dist_agree(-1); /* the other ranks wait for this one below */
    if (asam_dist_agree(0)) {
        data_free(&data);
        return -1;
    }
    const size_t N = data.n;
    int64_t total =
        o->steps > 0 ? o->steps : (int64_t)o->epochs * (int64_t)((N + o->batch - 1) / o->batch);
    if (total < 1) {
        data_free(&data);
        return asam_error("train-controlnet: nothing to do (--steps/--epochs)");
    }
    asam_sd *sd = NULL;
    asam_controlnet *cn = NULL;
    asam_optim *opt = NULL;
    asam_ctx *ctx = NULL;
    size_t *perm = malloc(N * sizeof *perm);
    float *noise_buf = NULL;
    int rc = perm ? 0 : asam_error("out of memory");
    /* Under bf16 the bundle would hold its frozen weights in bf16 as they are read; the new
     * ControlNet copies the UNet encoder's fp32 values (as the official init does), so the load
     * holds nothing and the UNet's weights are held at their first use instead. */
    int holding = asam_set_weight_holding(0);
    if (!rc) rc = asam_sd_load(o->sd, NULL, &sd);
    if (!rc) {
        if (o->init_controlnet)
            rc = asam_sd_controlnet_open_trainable(o->init_controlnet, sd->unet, &cn);
        else
            rc = asam_controlnet_init_from_unet(sd->unet, 3, o->seed, &cn);
    }
    asam_set_weight_holding(holding);
    asam_tensor **params = NULL;
    const char **names = NULL;
    size_t n_params = 0;
    if (!rc) {
        asam_controlnet_params(cn, &params, &names, &n_params);
        asam_controlnet_set_trainable(cn, 1);
        opt = asam_optim_new(ASAM_ADAMW, params, (int)n_params, o->lr, 0.9, 0.999, 1e-8,
                             o->weight_decay);
        ctx = asam_ctx_new(0);
        if (!opt || !ctx) rc = asam_error("train-controlnet: out of memory");
    }
    int64_t step = 0;
    asam_prov *prov = cn_provenance(o);
    char *prov_js = asam_prov_json(prov);
    int fresh = 0; /* --force over a state of other options: start over */
    if (!rc && o->resume && asam_file_exists(state_path) && state_check(state_path, prov)) {
        if (o->force)
            fresh = 1;
        else
            rc = -1;
    }
    asam_prov_free(prov);
    if (!rc && !fresh && o->resume && asam_file_exists(state_path)) {
        rc = state_load(state_path, cn, opt, &step, o->seed, o->batch, o->size);
        if (!rc && o->verbose && asam_dist_rank() == 0)
            fprintf(stderr, "train-controlnet: resumed from %s at step %lld/%lld\n", state_path,
                    (long long)step, (long long)total);
    }
    const size_t per = (size_t)4 * (o->size / 8) * (o->size / 8); /* latent floats per sample */
    size_t n_grad = 0;
    for (size_t i = 0; i < n_params; i++) n_grad += (size_t)params[i]->numel;
    double *acc = NULL; /* gradients, loss, failure flag (see train_step) */
    if (!rc && !(noise_buf = malloc(per * sizeof *noise_buf))) rc = asam_error("out of memory");
    if (!rc && !(acc = malloc((n_grad + 2) * sizeof *acc))) rc = asam_error("out of memory");
    rc = asam_dist_agree(rc); /* every rank set up, or none goes on */
    const int verbose = o->verbose && asam_dist_rank() == 0;
    uint64_t perm_epoch = UINT64_MAX;
    const int64_t step0 = step;
    double loss_avg = 0;
    int stopped = 0;
    asam_progress bar; /* in place on a terminal, every 5% into a log */
    asam_progress_start(&bar, "train-controlnet", "step", total, ASAM_PROGRESS_LOG);
    bar.word = "step";
    bar.skipped = step0; /* resumed steps cost this run nothing */
    bar.every = total / 20 > 0 ? total / 20 : 1;
    while (!rc && step < total) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, 0);
        float lv = 0;
        rc = train_step(ctx, o, &data, sd, cn, opt, params, n_params, acc, n_grad, step, perm,
                        &perm_epoch, noise_buf, &lv);
        if (!rc || !isfinite(lv)) { /* a non-finite loss is recorded, then stops the run */
            if (o->losses) o->losses[step] = lv;
            loss_avg = step == step0 ? lv : 0.95 * loss_avg + 0.05 * lv;
            step++;
            if (verbose) asam_progress_update(&bar, step, "loss %.5f (avg %.5f)", lv, loss_avg);
        }
        asam_ctx_release(ctx, mk);
        asam_ctx_clear_error(ctx);
        if (rc) break;
        int stop = o->stop_after > 0 && step >= o->stop_after && step < total;
        if (stop || step == total || (o->save_every > 0 && step % o->save_every == 0)) {
            /* rank 0 writes the state; all ranks learn whether it could */
            if (asam_dist_rank() == 0)
                rc = state_save(state_path, cn, opt, step, o->seed, o->batch, o->size, prov_js);
            rc = asam_dist_agree(rc);
        }
        if (stop) {
            stopped = 1;
            break;
        }
    }
    asam_progress_end(&bar);
    free(acc);
    if (!rc && !stopped && asam_dist_rank() == 0) {
        /* the weights carry the record of the run that made them, as the state does */
        const char *meta[2] = {"provenance", prov_js ? prov_js : ""};
        rc = asam_controlnet_save_meta(o->out, cn, meta, 1);
    }
    if (!stopped) rc = asam_dist_agree(rc);
    if (!rc && !stopped && verbose)
        fprintf(stderr, "train-controlnet: wrote %s (%zu tensors, control_model.*), state %s\n",
                o->out, n_params, state_path);
    free(noise_buf);
    free(perm);
    free(prov_js);
    if (ctx) asam_ctx_free(ctx);
    asam_optim_free(opt);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
    data_free(&data);
    return rc ? -1 : stopped;
}
