/* Shared pieces of train-vae and train-unet (see sd_mini.h and asam/train_sd.h). */
#include "asam/sd_mini.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/train_state.h"
#include "asam/util.h"
#include "models/sd/sd_internal.h"
#include "models/sd/sd_names.h"

/* ---- parameters and initialisation -------------------------------------------------------- */

void sdm_vae_params(const asam_vae *m, sdm_params *out) {
    const sd_loader *L = sd_vae_weights(m);
    out->p = L->b.params;
    out->names = (const char **)L->b.names;
    out->n = L->b.n;
}

void sdm_unet_params(const asam_unet *m, sdm_params *out) {
    asam_unet_params(m, &out->p, &out->names, &out->n);
}

int64_t sdm_set_trainable(const sdm_params *P) {
    int64_t n = 0;
    for (size_t i = 0; i < P->n; i++) {
        asam_set_requires_grad(P->p[i], 1);
        n += P->p[i]->numel;
    }
    return n;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* The UNet layers the official code wraps in zero_module: each ResBlock's last conv, each
 * SpatialTransformer's proj_out and the output conv, so a new UNet's blocks start as identities
 * and its output as zero. */
// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/openaimodel.py:233 (ResBlock
//   out_layers zero_module), :714 (out.2); ldm/modules/attention.py:251 (proj_out)
static int unet_zero_init(const char *name) {
    return strstr(name, ".out_layers.3.") || strstr(name, ".proj_out.") ||
           !strncmp(name, "out.2.", 6);
}

/* torch's default for Linear / Conv2d weights: kaiming_uniform(a = sqrt(5)), i.e.
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); 1-D weights are the norms' gains (1); biases 0 (torch
 * draws them from the same uniform; zero keeps the rule a function of the name alone). */
// ref: pytorch torch/nn/modules/conv.py:146 (_ConvNd.reset_parameters), linear.py:103
static void init_params(const sdm_params *P, uint64_t seed, int unet) {
    for (size_t i = 0; i < P->n; i++) {
        asam_tensor *t = P->p[i];
        const char *nm = P->names[i];
        if (ends_with(nm, ".bias") || (unet && unet_zero_init(nm))) {
            memset(t->data, 0, (size_t)t->numel * sizeof *t->data);
        } else if (t->ndim == 1) {
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = 1.0f;
        } else {
            const double bound = 1.0 / sqrt((double)(t->numel / t->shape[0]));
            uint64_t s = asam_mix64(seed ^ asam_mix64(0x73646d696e69ull + i));
            for (int64_t j = 0; j < t->numel; j++)
                t->data[j] = (float)((2.0 * asam_u01(asam_splitmix64(&s)) - 1.0) * bound);
        }
    }
}

int sdm_vae_new(const asam_sd_synth_vae_cfg *c, uint64_t seed, asam_vae **out) {
    asam_sd_synth_model sm;
    *out = NULL;
    if (asam_sd_synth_build(NULL, c, NULL, seed, &sm)) return -1;
    asam_checkpoint *ck = NULL;
    int rc = asam_checkpoint_from_entries(sm.entries, sm.n, "<new VAE>", &ck);
    if (!rc) rc = asam_vae_load(ck, "", out); /* builds the model from the shapes */
    if (ck) asam_checkpoint_close(ck);
    asam_sd_synth_model_free(&sm);
    if (rc) return -1;
    sdm_params P;
    sdm_vae_params(*out, &P);
    init_params(&P, seed, 0);
    /* One departure from the official initialisation: the posterior's log-variance starts at
     * SDM_VAE_LOGVAR0 (std 0.007) instead of about 0. With std 1 noise on latents whose means
     * start with a std of about 0.4, the decoder first sees mostly noise, and AdamW moves the
     * logvar bias by at most about lr per step, so a short run spends thousands of steps
     * removing it; the KL term still pulls the variance up as the official objective does. */
    for (size_t i = 0; i < P.n; i++)
        if (!strcmp(P.names[i], "quant_conv.bias"))
            for (int64_t j = P.p[i]->numel / 2; j < P.p[i]->numel; j++)
                P.p[i]->data[j] = SDM_VAE_LOGVAR0;
    return 0;
}

int sdm_unet_new(const asam_sd_synth_unet_cfg *c, uint64_t seed, asam_unet **out) {
    asam_sd_synth_model sm;
    *out = NULL;
    if (asam_sd_synth_build(c, NULL, NULL, seed, &sm)) return -1;
    asam_checkpoint *ck = NULL;
    int rc = asam_checkpoint_from_entries(sm.entries, sm.n, "<new UNet>", &ck);
    if (!rc) rc = asam_unet_load(ck, "", out);
    if (ck) asam_checkpoint_close(ck);
    asam_sd_synth_model_free(&sm);
    if (rc) return -1;
    sdm_params P;
    sdm_unet_params(*out, &P);
    init_params(&P, seed, 1);
    return 0;
}

/* ---- CLIP-mini ----------------------------------------------------------------------------- */

void sdm_clip_free(sdm_clip *c) {
    for (size_t i = 0; i < c->n; i++) free(c->bufs[i]), free(c->names[i]);
    free(c->bufs), free(c->names), free(c->e);
    memset(c, 0, sizeof *c);
}

/* One tensor: normal(0, std) values (std 0: zeros, std < 0: ones). */
static int clip_add(sdm_clip *c, int64_t d0, int64_t d1, double std, uint64_t seed, const char *fmt,
                    int layer, const char *what) {
    char nm[160];
    snprintf(nm, sizeof nm, fmt, layer, what);
    const size_t i = c->n, numel = (size_t)(d0 * (d1 ? d1 : 1));
    if (!(c->names[i] = strdup(nm)) || !(c->bufs[i] = malloc(numel * sizeof(float))))
        return asam_error("out of memory");
    c->n++;
    float *v = c->bufs[i];
    if (std > 0) {
        asam_randn(asam_mix64(seed ^ asam_mix64(0x636c6970ull + i)), v, numel);
        for (size_t j = 0; j < numel; j++) v[j] = (float)(v[j] * std);
    } else {
        for (size_t j = 0; j < numel; j++) v[j] = std < 0 ? 1.0f : 0.0f;
    }
    c->e[i] =
        (asam_st_entry){.name = c->names[i], .dtype = ASAM_DT_F32, .ndim = d1 ? 2 : 1, .data = v};
    c->e[i].shape[0] = d0;
    if (d1) c->e[i].shape[1] = d1;
    return 0;
}

// ref: openai/CLIP clip/model.py:314-331 (CLIP.initialize_parameters): token embedding
//   N(0, 0.02), positions N(0, 0.01), attention in_proj N(0, width^-0.5), out_proj and c_proj
//   N(0, width^-0.5 (2 layers)^-0.5), c_fc N(0, (2 width)^-0.5); biases 0, LayerNorms 1/0
int sdm_clip_build(int width, int layers, int heads, uint64_t seed, sdm_clip *c) {
    memset(c, 0, sizeof *c);
    if (width < 1 || layers < 1 || heads < 1 || width % heads)
        return asam_error("CLIP-mini: width %d, %d layers, %d heads is not a valid encoder", width,
                          layers, heads);
    const size_t cap = 4 + 16 * (size_t)layers;
    c->e = calloc(cap, sizeof *c->e);
    c->bufs = calloc(cap, sizeof *c->bufs);
    c->names = calloc(cap, sizeof *c->names);
    if (!c->e || !c->bufs || !c->names) {
        sdm_clip_free(c);
        return asam_error("out of memory");
    }
    c->width = width, c->layers = layers, c->heads = heads;
    const int D = width, F = 4 * width;
    const double attn_std = pow(D, -0.5), proj_std = pow(D, -0.5) * pow(2.0 * layers, -0.5),
                 fc_std = pow(2.0 * D, -0.5);
    int rc = clip_add(c, 49408, D, 0.02, seed, "text_model.embeddings.%.0dtoken_embedding%s", 0,
                      ".weight");
    if (!rc)
        rc = clip_add(c, ASAM_CLIP_CONTEXT, D, 0.01, seed,
                      "text_model.embeddings.%.0dposition_embedding%s", 0, ".weight");
    const char *L = "text_model.encoder.layers.%d.%s";
    for (int l = 0; l < layers && !rc; l++) {
        rc = clip_add(c, D, 0, -1, seed, L, l, "layer_norm1.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "layer_norm1.bias") ||
             clip_add(c, D, D, attn_std, seed, L, l, "self_attn.q_proj.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "self_attn.q_proj.bias") ||
             clip_add(c, D, D, attn_std, seed, L, l, "self_attn.k_proj.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "self_attn.k_proj.bias") ||
             clip_add(c, D, D, attn_std, seed, L, l, "self_attn.v_proj.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "self_attn.v_proj.bias") ||
             clip_add(c, D, D, proj_std, seed, L, l, "self_attn.out_proj.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "self_attn.out_proj.bias") ||
             clip_add(c, D, 0, -1, seed, L, l, "layer_norm2.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "layer_norm2.bias") ||
             clip_add(c, F, D, fc_std, seed, L, l, "mlp.fc1.weight") ||
             clip_add(c, F, 0, 0, seed, L, l, "mlp.fc1.bias") ||
             clip_add(c, D, F, proj_std, seed, L, l, "mlp.fc2.weight") ||
             clip_add(c, D, 0, 0, seed, L, l, "mlp.fc2.bias");
    }
    if (!rc)
        rc = clip_add(c, D, 0, -1, seed, "text_model.%.0dfinal_layer_norm%s", 0, ".weight") ||
             clip_add(c, D, 0, 0, seed, "text_model.%.0dfinal_layer_norm%s", 0, ".bias");
    if (rc) sdm_clip_free(c);
    return rc ? -1 : 0;
}

int sdm_clip_load(const sdm_clip *c, asam_clip_text **out) {
    asam_checkpoint *ck = NULL;
    int rc = asam_checkpoint_from_entries(c->e, c->n, "<CLIP-mini>", &ck);
    if (!rc) rc = asam_clip_text_load(ck, "text_model.", c->heads, out);
    if (ck) asam_checkpoint_close(ck);
    return rc;
}

/* ---- writing -------------------------------------------------------------------------------- */

asam_st_entry *sdm_entries(const sdm_params *P) {
    asam_st_entry *e = calloc(P->n ? P->n : 1, sizeof *e);
    for (size_t i = 0; e && i < P->n; i++) {
        e[i] = (asam_st_entry){.name = P->names[i],
                               .dtype = ASAM_DT_F32,
                               .ndim = P->p[i]->ndim,
                               .data = P->p[i]->data};
        for (int d = 0; d < P->p[i]->ndim; d++) e[i].shape[d] = P->p[i]->shape[d];
    }
    return e;
}

int sdm_write_sub(const char *dir, const char *sub, const char *file, const asam_st_entry *src,
                  size_t n, int kind, int arg, int f16, const char *config_json,
                  const char *prov_json, long long steps) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    if (asam_mkdirs(path)) return -1;
    asam_st_entry *e = calloc(n ? n : 1, sizeof *e);
    char(*names)[200] = calloc(n ? n : 1, sizeof *names);
    void **half = calloc(n ? n : 1, sizeof *half);
    int rc = (!e || !names || !half) ? asam_error("%s: out of memory", path) : 0;
    for (size_t i = 0; i < n && !rc; i++) {
        e[i] = src[i];
        const char *cv = src[i].name;
        // ref: huggingface/diffusers scripts/convert_diffusers_to_original_stable_diffusion.py
        //   (the CompVis <-> diffusers names, stated as rules in sd_names.c)
        int r = kind == 'v'   ? sd_vae_name_to_diffusers(cv, arg, 0, names[i], sizeof names[i])
                : kind == 'u' ? sd_unet_name_to_diffusers(cv, arg, names[i], sizeof names[i])
                              : (snprintf(names[i], sizeof names[i], "%s", cv), 0);
        if (r) {
            rc = asam_error("%s: no diffusers name for %s", path, cv);
            break;
        }
        e[i].name = names[i];
        /* diffusers' VAE mid attention is Linear (C, C), not a 1x1 conv */
        if (kind == 'v' && strstr(names[i], "attentions.0.to_") && e[i].ndim == 4) e[i].ndim = 2;
        if (f16) {
            int64_t numel = 1;
            for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d];
            uint16_t *h = malloc((size_t)numel * sizeof *h);
            if (!(half[i] = h)) {
                rc = asam_error("%s: out of memory", path);
                break;
            }
            const float *f = src[i].data;
            for (int64_t j = 0; j < numel; j++) h[j] = asam_f32_to_f16(f[j]);
            e[i].dtype = ASAM_DT_F16;
            e[i].data = h;
        }
    }
    char s_steps[32];
    snprintf(s_steps, sizeof s_steps, "%lld", steps);
    const char *meta[6] = {"format",      "pt",   "provenance", prov_json ? prov_json : "",
                           "train_steps", s_steps};
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
    if (!rc) rc = asam_safetensors_write(path, e, n, meta, 3);
    snprintf(path, sizeof path, "%s/%s/config.json", dir, sub);
    if (!rc && config_json) rc = asam_write_file_atomic(path, config_json, strlen(config_json));
    for (size_t i = 0; half && i < n; i++) free(half[i]);
    free(half), free(names), free(e);
    return rc;
}

/* ---- resumable state ------------------------------------------------------------------------ */

int sdm_state_save(const char *path, const char *format, const sdm_params *P, const asam_optim *opt,
                   int64_t step, const char *prov_json) {
    const size_t n = P->n;
    asam_st_entry *e = calloc(n + 2, sizeof *e);
    char **full = calloc(n ? n : 1, sizeof *full);
    int64_t sn = asam_optim_state_numel(opt);
    float *m = malloc((size_t)sn * sizeof *m), *v = malloc((size_t)sn * sizeof *v);
    int rc = (!e || !full || !m || !v) ? asam_error("%s: out of memory", path) : 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t len = strlen(P->names[i]) + 8;
        if (!(full[i] = malloc(len))) {
            rc = asam_error("%s: out of memory", path);
            break;
        }
        snprintf(full[i], len, "param.%s", P->names[i]);
        e[i] = (asam_st_entry){
            .name = full[i], .dtype = ASAM_DT_F32, .ndim = P->p[i]->ndim, .data = P->p[i]->data};
        for (int d = 0; d < P->p[i]->ndim; d++) e[i].shape[d] = P->p[i]->shape[d];
    }
    if (!rc) {
        int64_t ost;
        asam_optim_get_state(opt, m, v, &ost);
        e[n] = (asam_st_entry){.name = "optim.m", .dtype = ASAM_DT_F32, .ndim = 1, .data = m};
        e[n + 1] = (asam_st_entry){.name = "optim.v", .dtype = ASAM_DT_F32, .ndim = 1, .data = v};
        e[n].shape[0] = e[n + 1].shape[0] = sn;
        char s_step[32], s_ostep[32];
        snprintf(s_step, sizeof s_step, "%lld", (long long)step);
        snprintf(s_ostep, sizeof s_ostep, "%lld", (long long)ost);
        const char *meta[8] = {"format",     format,  "step",       s_step,
                               "optim_step", s_ostep, "provenance", prov_json};
        rc = asam_safetensors_write(path, e, n + 2, meta, 4);
    }
    for (size_t i = 0; full && i < n; i++) free(full[i]);
    free(full), free(e), free(m), free(v);
    return rc;
}

int sdm_state_load(const char *path, const char *format, const sdm_params *P, asam_optim *opt,
                   const asam_prov *prov, int64_t *step) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const char *fmt = asam_checkpoint_metadata(ck, "format");
    int rc = (!fmt || strcmp(fmt, format))
                 ? asam_error("%s: not a state file of this command (format %s)", path,
                              fmt ? fmt : "none")
                 : 0;
    long long st = 0, ost = 0;
    if (!rc)
        rc = train_state_meta_ll(ck, "step", &st) || train_state_meta_ll(ck, "optim_step", &ost);
    if (!rc) rc = asam_prov_check(prov, asam_checkpoint_metadata(ck, "provenance"), path);
    if (!rc) rc = train_state_read_weights(ck, path, P->p, P->names, P->n, opt, ost);
    asam_checkpoint_close(ck);
    if (!rc) *step = st;
    return rc ? -1 : 0;
}

/* ---- sampling ------------------------------------------------------------------------------- */

uint64_t sdm_key(uint64_t seed, uint64_t k, uint64_t stream) {
    return asam_mix64(asam_mix64(asam_mix64(seed) ^ k) ^ (stream * 0xD1B54A32D192ED03ull));
}

float sdm_lr(float lr, int warmup, int64_t step) {
    return warmup > 0 && step < warmup ? lr * (float)(step + 1) / (float)warmup : lr;
}

const char *sdm_data_dir(const char *spec) {
    return strncmp(spec, "sa1b:", 5) ? spec : spec + 5;
}

int sdm_step_error(asam_ctx *ctx, const char *cmd, int64_t step) {
    char why[1024];
    snprintf(why, sizeof why, "%s", asam_ctx_error(ctx) ? asam_ctx_error(ctx) : asam_last_error());
    return asam_error("%s: step %lld: %s", cmd, (long long)step, why);
}
