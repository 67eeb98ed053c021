/* Random SD 1.x checkpoints of any size (see sd_synth.h). The key list follows the CompVis
 * layout rules that unet.c / vae.c / controlnet.c load; diffusers names come from sd_names.c. */
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/util.h"
#include "models/sd/sd_names.h"
#include "asam/sd_synth.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

asam_sd_synth_unet_cfg asam_sd_synth_unet_sd15(void) {
    return (asam_sd_synth_unet_cfg){.in_channels = 4,
                                    .out_channels = 4,
                                    .model_channels = 320,
                                    .n_levels = 4,
                                    .num_res_blocks = 2,
                                    .mult = {1, 2, 4, 4},
                                    .attn = {1, 1, 1, 0},
                                    .context_dim = 768,
                                    .depth = 1,
                                    .hint_channels = 3};
}

asam_sd_synth_vae_cfg asam_sd_synth_vae_sd15(void) {
    return (asam_sd_synth_vae_cfg){.in_channels = 3,
                                   .out_channels = 3,
                                   .ch = 128,
                                   .n_levels = 4,
                                   .num_res_blocks = 2,
                                   .z_channels = 4,
                                   .embed_dim = 4,
                                   .mult = {1, 2, 4, 4}};
}

typedef struct {
    char name[200];
    int ndim;
    int64_t shape[4];
    int kind; /* 0: matrix/conv, 1: norm gain, 2: bias */
} key;

typedef struct {
    key *k;
    size_t n, cap;
    int err;
} keylist;

static void add(keylist *L, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...) {
    if (L->err) return;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 1024;
        key *k = realloc(L->k, cap * sizeof *k);
        if (!k) {
            L->err = 1;
            return;
        }
        L->k = k;
        L->cap = cap;
    }
    key *k = &L->k[L->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->name, sizeof k->name, fmt, ap);
    va_end(ap);
    k->ndim = ndim;
    int64_t s[4] = {d0, d1, d2, d3};
    memcpy(k->shape, s, sizeof s);
    size_t len = strlen(k->name);
    int is_bias = len > 5 && strcmp(k->name + len - 5, ".bias") == 0;
    k->kind = ndim >= 2 ? 0 : is_bias ? 2 : 1;
}

static void conv(keylist *L, const char *p, const char *base, int co, int ci, int ks) {
    add(L, 4, co, ci, ks, ks, "%s%s.weight", p, base);
    add(L, 1, co, 0, 0, 0, "%s%s.bias", p, base);
}

static void norm(keylist *L, const char *p, const char *base, int c) {
    add(L, 1, c, 0, 0, 0, "%s%s.weight", p, base);
    add(L, 1, c, 0, 0, 0, "%s%s.bias", p, base);
}

static void unet_res(keylist *L, const char *p, const char *b, int ci, int co, int T) {
    char s[160];
    snprintf(s, sizeof s, "%s.in_layers.0", b), norm(L, p, s, ci);
    snprintf(s, sizeof s, "%s.in_layers.2", b), conv(L, p, s, co, ci, 3);
    add(L, 2, co, T, 0, 0, "%s%s.emb_layers.1.weight", p, b);
    add(L, 1, co, 0, 0, 0, "%s%s.emb_layers.1.bias", p, b);
    snprintf(s, sizeof s, "%s.out_layers.0", b), norm(L, p, s, co);
    snprintf(s, sizeof s, "%s.out_layers.3", b), conv(L, p, s, co, co, 3);
    if (ci != co) snprintf(s, sizeof s, "%s.skip_connection", b), conv(L, p, s, co, ci, 1);
}

static void unet_st(keylist *L, const char *p, const char *b, int C, int ctx, int depth) {
    char s[160];
    snprintf(s, sizeof s, "%s.norm", b), norm(L, p, s, C);
    snprintf(s, sizeof s, "%s.proj_in", b), conv(L, p, s, C, C, 1);
    for (int d = 0; d < depth; d++) {
        char t[120];
        snprintf(t, sizeof t, "%.80s.transformer_blocks.%d", b, d);
        add(L, 2, C, C, 0, 0, "%s%s.attn1.to_q.weight", p, t);
        add(L, 2, C, C, 0, 0, "%s%s.attn1.to_k.weight", p, t);
        add(L, 2, C, C, 0, 0, "%s%s.attn1.to_v.weight", p, t);
        add(L, 2, C, C, 0, 0, "%s%s.attn1.to_out.0.weight", p, t);
        add(L, 1, C, 0, 0, 0, "%s%s.attn1.to_out.0.bias", p, t);
        add(L, 2, 8 * C, C, 0, 0, "%s%s.ff.net.0.proj.weight", p, t);
        add(L, 1, 8 * C, 0, 0, 0, "%s%s.ff.net.0.proj.bias", p, t);
        add(L, 2, C, 4 * C, 0, 0, "%s%s.ff.net.2.weight", p, t);
        add(L, 1, C, 0, 0, 0, "%s%s.ff.net.2.bias", p, t);
        add(L, 2, C, C, 0, 0, "%s%s.attn2.to_q.weight", p, t);
        add(L, 2, C, ctx, 0, 0, "%s%s.attn2.to_k.weight", p, t);
        add(L, 2, C, ctx, 0, 0, "%s%s.attn2.to_v.weight", p, t);
        add(L, 2, C, C, 0, 0, "%s%s.attn2.to_out.0.weight", p, t);
        add(L, 1, C, 0, 0, 0, "%s%s.attn2.to_out.0.bias", p, t);
        for (int n = 1; n <= 3; n++) snprintf(s, sizeof s, "%s.norm%d", t, n), norm(L, p, s, C);
    }
    snprintf(s, sizeof s, "%s.proj_out", b), conv(L, p, s, C, C, 1);
}

/* UNet (control = 0) or ControlNet (control = 1) keys. */
static void unet_keys(keylist *L, const asam_sd_synth_unet_cfg *c, const char *p, int control) {
    int mc = c->model_channels, T = 4 * mc, nrb = c->num_res_blocks;
    add(L, 2, T, mc, 0, 0, "%stime_embed.0.weight", p);
    add(L, 1, T, 0, 0, 0, "%stime_embed.0.bias", p);
    add(L, 2, T, T, 0, 0, "%stime_embed.2.weight", p);
    add(L, 1, T, 0, 0, 0, "%stime_embed.2.bias", p);
    conv(L, p, "input_blocks.0.0", mc, c->in_channels, 3);
    int chans[64], nch = 0, ch = mc, idx = 1;
    chans[nch++] = mc;
    char b[64];
    for (int l = 0; l < c->n_levels; l++) {
        for (int r = 0; r < nrb; r++, idx++) {
            int co = mc * c->mult[l];
            snprintf(b, sizeof b, "input_blocks.%d.0", idx), unet_res(L, p, b, ch, co, T);
            ch = co;
            if (c->attn[l])
                snprintf(b, sizeof b, "input_blocks.%d.1", idx),
                    unet_st(L, p, b, ch, c->context_dim, c->depth);
            chans[nch++] = ch;
        }
        if (l != c->n_levels - 1) {
            snprintf(b, sizeof b, "input_blocks.%d.0.op", idx++), conv(L, p, b, ch, ch, 3);
            chans[nch++] = ch;
        }
    }
    unet_res(L, p, "middle_block.0", ch, ch, T);
    unet_st(L, p, "middle_block.1", ch, c->context_dim, c->depth);
    unet_res(L, p, "middle_block.2", ch, ch, T);
    if (control) {
        static const int hw[8] = {16, 16, 32, 32, 96, 96, 256, 0};
        int hc = c->hint_channels;
        for (int i = 0; i < 8; i++) {
            int co = i == 7 ? mc : hw[i];
            snprintf(b, sizeof b, "input_hint_block.%d", 2 * i), conv(L, p, b, co, hc, 3);
            hc = co;
        }
        for (int i = 0; i < nch; i++)
            snprintf(b, sizeof b, "zero_convs.%d.0", i), conv(L, p, b, chans[i], chans[i], 1);
        conv(L, p, "middle_block_out.0", ch, ch, 1);
        return;
    }
    idx = 0;
    for (int l = c->n_levels - 1; l >= 0; l--) {
        for (int r = 0; r <= nrb; r++, idx++) {
            int co = mc * c->mult[l], skip = chans[--nch], next = 1;
            snprintf(b, sizeof b, "output_blocks.%d.0", idx), unet_res(L, p, b, ch + skip, co, T);
            ch = co;
            if (c->attn[l]) {
                snprintf(b, sizeof b, "output_blocks.%d.1", idx),
                    unet_st(L, p, b, ch, c->context_dim, c->depth);
                next = 2;
            }
            if (l && r == nrb)
                snprintf(b, sizeof b, "output_blocks.%d.%d.conv", idx, next),
                    conv(L, p, b, ch, ch, 3);
        }
    }
    norm(L, p, "out.0", ch);
    conv(L, p, "out.2", c->out_channels, ch, 3);
}

static void vae_res(keylist *L, const char *p, const char *b, int ci, int co) {
    char s[160];
    snprintf(s, sizeof s, "%s.norm1", b), norm(L, p, s, ci);
    snprintf(s, sizeof s, "%s.conv1", b), conv(L, p, s, co, ci, 3);
    snprintf(s, sizeof s, "%s.norm2", b), norm(L, p, s, co);
    snprintf(s, sizeof s, "%s.conv2", b), conv(L, p, s, co, co, 3);
    if (ci != co) snprintf(s, sizeof s, "%s.nin_shortcut", b), conv(L, p, s, co, ci, 1);
}

static void vae_mid(keylist *L, const char *p, const char *side, int c) {
    char s[160];
    snprintf(s, sizeof s, "%s.mid.block_1", side), vae_res(L, p, s, c, c);
    const char *a[] = {"q", "k", "v", "proj_out"};
    snprintf(s, sizeof s, "%s.mid.attn_1.norm", side), norm(L, p, s, c);
    for (int i = 0; i < 4; i++)
        snprintf(s, sizeof s, "%s.mid.attn_1.%s", side, a[i]), conv(L, p, s, c, c, 1);
    snprintf(s, sizeof s, "%s.mid.block_2", side), vae_res(L, p, s, c, c);
}

static void vae_keys(keylist *L, const asam_sd_synth_vae_cfg *v, const char *p) {
    char b[96];
    conv(L, p, "encoder.conv_in", v->ch, v->in_channels, 3);
    int c = v->ch;
    for (int i = 0; i < v->n_levels; i++) {
        for (int j = 0; j < v->num_res_blocks; j++) {
            int co = v->ch * v->mult[i];
            snprintf(b, sizeof b, "encoder.down.%d.block.%d", i, j), vae_res(L, p, b, c, co);
            c = co;
        }
        if (i != v->n_levels - 1)
            snprintf(b, sizeof b, "encoder.down.%d.downsample.conv", i), conv(L, p, b, c, c, 3);
    }
    vae_mid(L, p, "encoder", c);
    norm(L, p, "encoder.norm_out", c);
    conv(L, p, "encoder.conv_out", 2 * v->z_channels, c, 3);
    conv(L, p, "quant_conv", 2 * v->embed_dim, 2 * v->z_channels, 1);
    conv(L, p, "post_quant_conv", v->z_channels, v->embed_dim, 1);
    c = v->ch * v->mult[v->n_levels - 1];
    conv(L, p, "decoder.conv_in", c, v->z_channels, 3);
    vae_mid(L, p, "decoder", c);
    for (int i = v->n_levels - 1; i >= 0; i--) {
        for (int j = 0; j <= v->num_res_blocks; j++) {
            int co = v->ch * v->mult[i];
            snprintf(b, sizeof b, "decoder.up.%d.block.%d", i, j), vae_res(L, p, b, c, co);
            c = co;
        }
        if (i) snprintf(b, sizeof b, "decoder.up.%d.upsample.conv", i), conv(L, p, b, c, c, 3);
    }
    norm(L, p, "decoder.norm_out", c);
    conv(L, p, "decoder.conv_out", v->out_channels, c, 3);
}

static float uniform(uint64_t *s) { /* [-1, 1), 24 bits of a splitmix64 stream */
    return (float)((asam_splitmix64(s) >> 40) * (2.0 / (double)(1ull << 24)) - 1.0);
}

/* The entries (names, shapes, random values in owned buffers) of the requested models. */
static int synth_build(const char *path, const asam_sd_synth_unet_cfg *unet,
                       const char *unet_prefix, const asam_sd_synth_vae_cfg *vae,
                       const char *vae_prefix, const asam_sd_synth_unet_cfg *control,
                       const char *control_prefix, int diffusers, int f16, uint64_t seed,
                       asam_sd_synth_model *out) {
    memset(out, 0, sizeof *out);
    keylist L = {0};
    /* remember which model each key belongs to for the diffusers names */
    size_t ends[3] = {0, 0, 0};
    if (unet) unet_keys(&L, unet, diffusers ? "" : (unet_prefix ? unet_prefix : ""), 0);
    ends[0] = L.n;
    if (vae) vae_keys(&L, vae, diffusers ? "" : (vae_prefix ? vae_prefix : ""));
    ends[1] = L.n;
    if (control) unet_keys(&L, control, diffusers ? "" : (control_prefix ? control_prefix : ""), 1);
    ends[2] = L.n;
    if (L.err) {
        free(L.k);
        return asam_error("%s: out of memory", path);
    }
    asam_st_entry *ent = calloc(L.n ? L.n : 1, sizeof *ent);
    void **bufs = calloc(L.n ? L.n : 1, sizeof *bufs);
    int rc = ent && bufs ? 0 : asam_error("%s: out of memory", path);
    int64_t total = 0;
    uint64_t s = seed;
    for (size_t i = 0; i < L.n && rc == 0; i++) {
        key *k = &L.k[i];
        if (diffusers) {
            char dn[200];
            int r = i < ends[0]
                        ? sd_unet_name_to_diffusers(k->name, unet->num_res_blocks, dn, sizeof dn)
                    : i < ends[1]
                        ? sd_vae_name_to_diffusers(k->name, vae->n_levels, 0, dn, sizeof dn)
                        : sd_controlnet_name_to_diffusers(k->name, control->num_res_blocks, dn,
                                                          sizeof dn);
            if (r != 0) {
                rc = asam_error("%s: no diffusers name for %s", path, k->name);
                break;
            }
            snprintf(k->name, sizeof k->name, "%s", dn);
            /* diffusers' VAE attention and SD2-style layouts store 1x1 convs as Linear */
            if (i >= ends[0] && i < ends[1] && strstr(dn, "attentions.0.to_") && k->ndim == 4)
                k->ndim = 2;
        }
        int64_t n = 1;
        for (int d = 0; d < k->ndim; d++) n *= k->shape[d];
        total += n;
        size_t es = f16 ? 2 : 4;
        bufs[i] = malloc((size_t)n * es);
        if (!bufs[i]) {
            rc = asam_error("%s: out of memory (%lld values)", path, (long long)n);
            break;
        }
        float scale = k->kind == 0 ? (float)sqrt(3.0 * k->shape[0] / (double)n) : 0.05f;
        for (int64_t j = 0; j < n; j++) {
            float v = uniform(&s) * scale + (k->kind == 1 ? 1.0f : 0.0f);
            if (f16)
                ((uint16_t *)bufs[i])[j] = asam_f32_to_f16(v);
            else
                ((float *)bufs[i])[j] = v;
        }
        ent[i].name = k->name;
        ent[i].dtype = f16 ? ASAM_DT_F16 : ASAM_DT_F32;
        ent[i].ndim = k->ndim;
        for (int d = 0; d < k->ndim; d++) ent[i].shape[d] = k->shape[d];
        ent[i].data = bufs[i];
    }
    out->entries = ent;
    out->n = L.n;
    out->n_params = total;
    out->bufs_ = bufs;
    out->keys_ = L.k;
    if (rc) asam_sd_synth_model_free(out);
    return rc;
}

void asam_sd_synth_model_free(asam_sd_synth_model *m) {
    for (size_t i = 0; m->bufs_ && i < m->n; i++) free(m->bufs_[i]);
    free(m->bufs_);
    free(m->entries);
    free(m->keys_);
    memset(m, 0, sizeof *m);
}

int asam_sd_synth_build(const asam_sd_synth_unet_cfg *unet, const asam_sd_synth_vae_cfg *vae,
                        const asam_sd_synth_unet_cfg *control, uint64_t seed,
                        asam_sd_synth_model *out) {
    return synth_build("<sd synth>", unet, "", vae, "", control, "", 0, 0, seed, out);
}

int asam_sd_synth_write(const char *path, const asam_sd_synth_unet_cfg *unet,
                        const char *unet_prefix, const asam_sd_synth_vae_cfg *vae,
                        const char *vae_prefix, const asam_sd_synth_unet_cfg *control,
                        const char *control_prefix, int diffusers, int f16, uint64_t seed,
                        int64_t *n_tensors, int64_t *n_params) {
    asam_sd_synth_model m;
    int rc = synth_build(path, unet, unet_prefix, vae, vae_prefix, control, control_prefix,
                         diffusers, f16, seed, &m);
    if (rc == 0) rc = asam_safetensors_write(path, m.entries, m.n, NULL, 0);
    if (rc == 0 && n_tensors) *n_tensors = (int64_t)m.n;
    if (rc == 0 && n_params) *n_params = m.n_params;
    if (m.entries) asam_sd_synth_model_free(&m);
    return rc;
}
