/* CompVis <-> diffusers weight names for the SD 1.x UNet, ControlNet and VAE, and the loader
 * that binds weights to persistent tensors by CompVis name. */
#include "asam/engine.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "models/sd/sd_names.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- name rules -------------------------------------------------------------------------- */

/* Does s start with p? Returns the rest or NULL. */
static const char *after(const char *s, const char *p) {
    size_t n = strlen(p);
    return strncmp(s, p, n) == 0 ? s + n : NULL;
}

/* Parse "N." at s: returns the rest after the dot and sets *v, or NULL. */
static const char *num_dot(const char *s, int *v) {
    char *end;
    if (*s < '0' || *s > '9') return NULL;
    long x = strtol(s, &end, 10);
    if (*end != '.') return NULL;
    *v = (int)x;
    return end + 1;
}

/* ResBlock internals: CompVis openaimodel.ResBlock -> diffusers ResnetBlock2D. */
static int unet_res(const char *rest, char *out, size_t n, const char *base) {
    static const char *map[][2] = {
        {"in_layers.0.", "norm1."},          {"in_layers.2.", "conv1."},
        {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
        {"out_layers.3.", "conv2."},         {"skip_connection.", "conv_shortcut."}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *r = after(rest, map[i][0]);
        if (r) return snprintf(out, n, "%s%s%s", base, map[i][1], r) < (int)n ? 0 : -1;
    }
    return -1;
}

static int cat3(char *out, size_t n, const char *a, const char *b) {
    return snprintf(out, n, "%s%s", a, b) < (int)n ? 0 : -1;
}

/* Shared by the UNet and the ControlNet: time embedding, encoder, middle block. Returns 1 when
 * the key was handled (0/-1 result in *rc). */
static int unet_common(const char *cv, int nrb, char *out, size_t n, int *rc) {
    const char *r;
    int i, j;
    char base[96];
    if ((r = after(cv, "time_embed.0.")))
        return *rc = cat3(out, n, "time_embedding.linear_1.", r), 1;
    if ((r = after(cv, "time_embed.2.")))
        return *rc = cat3(out, n, "time_embedding.linear_2.", r), 1;
    if ((r = after(cv, "input_blocks.0.0."))) return *rc = cat3(out, n, "conv_in.", r), 1;
    if ((r = after(cv, "input_blocks."))) {
        if (!(r = num_dot(r, &i)) || i < 1 || !(r = num_dot(r, &j))) return *rc = -1, 1;
        int level = (i - 1) / (nrb + 1), k = (i - 1) % (nrb + 1);
        if (k == nrb) { /* Downsample: input_blocks.i.0.op */
            const char *s = after(r, "op.");
            if (j != 0 || !s) return *rc = -1, 1;
            snprintf(base, sizeof base, "down_blocks.%d.downsamplers.0.conv.", level);
            return *rc = cat3(out, n, base, s), 1;
        }
        if (j == 0) {
            snprintf(base, sizeof base, "down_blocks.%d.resnets.%d.", level, k);
            return *rc = unet_res(r, out, n, base), 1;
        }
        if (j == 1) {
            snprintf(base, sizeof base, "down_blocks.%d.attentions.%d.", level, k);
            return *rc = cat3(out, n, base, r), 1;
        }
        return *rc = -1, 1;
    }
    if ((r = after(cv, "middle_block."))) {
        if (!(r = num_dot(r, &j))) return *rc = -1, 1;
        if (j == 0 || j == 2) {
            snprintf(base, sizeof base, "mid_block.resnets.%d.", j / 2);
            return *rc = unet_res(r, out, n, base), 1;
        }
        if (j == 1) return *rc = cat3(out, n, "mid_block.attentions.0.", r), 1;
        return *rc = -1, 1;
    }
    return 0;
}

int sd_unet_name_to_diffusers(const char *cv, int nrb, char *out, size_t n) {
    const char *r;
    int k, j, rc;
    char base[96];
    if (unet_common(cv, nrb, out, n, &rc)) return rc;
    if ((r = after(cv, "out.0."))) return cat3(out, n, "conv_norm_out.", r);
    if ((r = after(cv, "out.2."))) return cat3(out, n, "conv_out.", r);
    if ((r = after(cv, "output_blocks."))) {
        if (!(r = num_dot(r, &k)) || !(r = num_dot(r, &j))) return -1;
        int level = k / (nrb + 1), idx = k % (nrb + 1);
        const char *s;
        if (j > 0 && (s = after(r, "conv."))) { /* Upsample: last layer of a level's last block */
            if (idx != nrb) return -1;
            snprintf(base, sizeof base, "up_blocks.%d.upsamplers.0.conv.", level);
            return cat3(out, n, base, s);
        }
        if (j == 0) {
            snprintf(base, sizeof base, "up_blocks.%d.resnets.%d.", level, idx);
            return unet_res(r, out, n, base);
        }
        if (j == 1) {
            snprintf(base, sizeof base, "up_blocks.%d.attentions.%d.", level, idx);
            return cat3(out, n, base, r);
        }
        return -1;
    }
    return -1;
}

int sd_controlnet_name_to_diffusers(const char *cv, int nrb, char *out, size_t n) {
    const char *r;
    int i, rc;
    if (unet_common(cv, nrb, out, n, &rc)) return rc;
    if ((r = after(cv, "zero_convs."))) {
        if (!(r = num_dot(r, &i)) || !(r = after(r, "0."))) return -1;
        return snprintf(out, n, "controlnet_down_blocks.%d.%s", i, r) < (int)n ? 0 : -1;
    }
    if ((r = after(cv, "middle_block_out.0."))) return cat3(out, n, "controlnet_mid_block.", r);
    if ((r = after(cv, "input_hint_block."))) {
        /* conv layers at even indices 0..14: conv_in, blocks.0..5, conv_out */
        if (!(r = num_dot(r, &i)) || i % 2 || i > 14) return -1;
        if (i == 0) return cat3(out, n, "controlnet_cond_embedding.conv_in.", r);
        if (i == 14) return cat3(out, n, "controlnet_cond_embedding.conv_out.", r);
        return snprintf(out, n, "controlnet_cond_embedding.blocks.%d.%s", i / 2 - 1, r) < (int)n
                   ? 0
                   : -1;
    }
    return -1;
}

static int vae_res(const char *rest, char *out, size_t n, const char *base) {
    const char *r = after(rest, "nin_shortcut.");
    if (r) return snprintf(out, n, "%sconv_shortcut.%s", base, r) < (int)n ? 0 : -1;
    return cat3(out, n, base, rest) == 0 ? 0 : -1; /* norm1/conv1/norm2/conv2 keep their names */
}

int sd_vae_name_to_diffusers(const char *cv, int n_levels, int old_attn, char *out, size_t n) {
    const char *r, *side;
    char base[96];
    int i, j;
    if (after(cv, "quant_conv.") || after(cv, "post_quant_conv.")) return cat3(out, n, cv, "");
    if ((r = after(cv, "encoder.")))
        side = "encoder.";
    else if ((r = after(cv, "decoder.")))
        side = "decoder.";
    else
        return -1;
    const char *s;
    if ((s = after(r, "conv_in.")) || (s = after(r, "conv_out."))) return cat3(out, n, side, r);
    if ((s = after(r, "norm_out."))) {
        snprintf(base, sizeof base, "%sconv_norm_out.", side);
        return cat3(out, n, base, s);
    }
    if ((s = after(r, "mid.block_1."))) {
        snprintf(base, sizeof base, "%smid_block.resnets.0.", side);
        return vae_res(s, out, n, base);
    }
    if ((s = after(r, "mid.block_2."))) {
        snprintf(base, sizeof base, "%smid_block.resnets.1.", side);
        return vae_res(s, out, n, base);
    }
    if ((s = after(r, "mid.attn_1."))) {
        static const char *now[][2] = {{"norm.", "group_norm."},
                                       {"q.", "to_q."},
                                       {"k.", "to_k."},
                                       {"v.", "to_v."},
                                       {"proj_out.", "to_out.0."}};
        static const char *old[][2] = {{"norm.", "group_norm."},
                                       {"q.", "query."},
                                       {"k.", "key."},
                                       {"v.", "value."},
                                       {"proj_out.", "proj_attn."}};
        for (int m = 0; m < 5; m++) {
            const char *(*tab)[2] = old_attn ? old : now;
            const char *t = after(s, tab[m][0]);
            if (t)
                return snprintf(out, n, "%smid_block.attentions.0.%s%s", side, tab[m][1], t) <
                               (int)n
                           ? 0
                           : -1;
        }
        return -1;
    }
    int enc = side[0] == 'e';
    if ((s = after(r, enc ? "down." : "up."))) {
        if (!(s = num_dot(s, &i))) return -1;
        int level = enc ? i : n_levels - 1 - i; /* decoder up.i runs deepest first */
        const char *blk = enc ? "down_blocks" : "up_blocks";
        const char *t;
        if ((t = after(s, "block."))) {
            if (!(t = num_dot(t, &j))) return -1;
            snprintf(base, sizeof base, "%s%s.%d.resnets.%d.", side, blk, level, j);
            return vae_res(t, out, n, base);
        }
        if ((t = after(s, enc ? "downsample.conv." : "upsample.conv."))) {
            snprintf(base, sizeof base, "%s%s.%d.%s.0.conv.", side, blk, level,
                     enc ? "downsamplers" : "upsamplers");
            return cat3(out, n, base, t);
        }
    }
    return -1;
}

/* ---- loader ------------------------------------------------------------------------------- */

/* The binder's name map: CompVis name -> the key this file stores it under. */
static int map_name(const asam_binder *B, const char *cv, char *key, size_t n) {
    const sd_loader *L = B->user;
    switch (L->naming) {
    case SD_NAMES_COMPVIS:
        return snprintf(key, n, "%s%s", B->prefix, cv) < (int)n ? 0 : -1;
    case SD_NAMES_DIFFUSERS_UNET:
        return sd_unet_name_to_diffusers(cv, L->num_res_blocks, key, n);
    case SD_NAMES_DIFFUSERS_CONTROL:
        return sd_controlnet_name_to_diffusers(cv, L->num_res_blocks, key, n);
    case SD_NAMES_DIFFUSERS_VAE: {
        int rc = sd_vae_name_to_diffusers(cv, L->n_levels, 0, key, n);
        if (rc == 0 && !asam_checkpoint_find(B->ck, key)) {
            char old[512]; /* pre-0.14 diffusers mid-attention names */
            if (sd_vae_name_to_diffusers(cv, L->n_levels, 1, old, sizeof old) == 0 &&
                asam_checkpoint_find(B->ck, old))
                snprintf(key, n, "%s", old);
        }
        return rc;
    }
    }
    return -1;
}

void sd_loader_init(sd_loader *L, const asam_checkpoint *ck, const char *prefix, sd_naming naming) {
    memset(L, 0, sizeof *L);
    asam_binder_init(&L->b, ck, prefix);
    L->b.loose_shape = 1;
    L->b.map = map_name;
    L->b.user = L;
    L->naming = naming;
    L->num_res_blocks = 2;
    L->n_levels = 4;
}

const char *sd_loader_path(const sd_loader *L) {
    return asam_binder_path(&L->b);
}

int sd_ckpt_has(const asam_checkpoint *ck, const char *key) {
    return asam_checkpoint_find(ck, key) != NULL;
}

int sd_raw_has(sd_loader *L, const char *key) {
    char buf[512];
    if (L->naming == SD_NAMES_COMPVIS) {
        snprintf(buf, sizeof buf, "%s%s", L->b.prefix, key);
        key = buf;
    }
    return asam_checkpoint_find(L->b.ck, key) != NULL;
}

int sd_probe(sd_loader *L, const char *cv, int64_t *shape) {
    char key[512];
    const asam_ckpt_tensor *t = asam_binder_find(&L->b, cv, key, sizeof key);
    if (!t) return -1;
    for (int i = 0; i < 8; i++) shape[i] = i < t->ndim ? t->shape[i] : 1;
    return t->ndim;
}

int sd_has(sd_loader *L, const char *fmt, ...) {
    char cv[400];
    int64_t s[8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cv, sizeof cv, fmt, ap);
    va_end(ap);
    return sd_probe(L, cv, s) >= 0;
}

asam_tensor *sd_param(sd_loader *L, const char *cv, int ndim, const int64_t *shape) {
    return asam_bind(&L->b, cv, ndim, shape);
}

static asam_tensor *paramv(sd_loader *L, int opt, int ndim, int64_t d0, int64_t d1, int64_t d2,
                           int64_t d3, const char *fmt, va_list ap) {
    char cv[400];
    vsnprintf(cv, sizeof cv, fmt, ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    return opt ? asam_bind_opt(&L->b, cv, ndim, shape) : asam_bind(&L->b, cv, ndim, shape);
}

asam_tensor *sd_paramf(sd_loader *L, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                       const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    asam_tensor *t = paramv(L, 0, ndim, d0, d1, d2, d3, fmt, ap);
    va_end(ap);
    return t;
}

asam_tensor *sd_paramf_opt(sd_loader *L, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                           const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    asam_tensor *t = paramv(L, 1, ndim, d0, d1, d2, d3, fmt, ap);
    va_end(ap);
    return t;
}

void sd_loader_free(sd_loader *L) {
    asam_binder_free(&L->b);
}
