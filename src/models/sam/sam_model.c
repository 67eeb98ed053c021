/* SAM weights: configuration from checkpoint shapes and shape-checked loading by official name. */
#include "asam/binder.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/util.h"
#include "models/sam/sam_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int config_from_ckpt(const asam_checkpoint *ck, asam_sam_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *path = asam_checkpoint_path(ck);
    const asam_ckpt_tensor *pw = asam_checkpoint_find(ck, "image_encoder.patch_embed.proj.weight");
    if (!pw)
        return asam_error("%s: not a SAM checkpoint: missing tensor "
                          "'image_encoder.patch_embed.proj.weight'",
                          path);
    if (pw->ndim != 4 || pw->shape[1] != 3 || pw->shape[2] != 16 || pw->shape[3] != 16 ||
        pw->shape[0] <= 0 || pw->shape[0] > 8192)
        return asam_error("%s: tensor 'image_encoder.patch_embed.proj.weight' is not a 16x16 RGB "
                          "patch embedding",
                          path);
    int C = (int)pw->shape[0];
    cfg->embed_dim = C;
    int depth = 0;
    char name[256];
    for (;;) {
        snprintf(name, sizeof name, "image_encoder.blocks.%d.norm1.weight", depth);
        if (!asam_checkpoint_find(ck, name)) break;
        if (depth == ASAM_SAM_MAX_DEPTH)
            return asam_error("%s: more than %d encoder blocks", path, ASAM_SAM_MAX_DEPTH);
        depth++;
    }
    if (depth == 0)
        return asam_error("%s: not a SAM checkpoint: missing tensor "
                          "'image_encoder.blocks.0.norm1.weight'",
                          path);
    cfg->depth = depth;
    snprintf(name, sizeof name, "image_encoder.blocks.0.attn.rel_pos_h");
    const asam_ckpt_tensor *rp = asam_checkpoint_find(ck, name);
    if (!rp) return asam_error("%s: not a SAM checkpoint: missing tensor '%s'", path, name);
    if (rp->ndim != 2 || rp->shape[1] <= 0 || C % rp->shape[1] != 0)
        return asam_error("%s: tensor '%s' has an unexpected shape", path, name);
    cfg->head_dim = (int)rp->shape[1];
    cfg->num_heads = C / cfg->head_dim;
    snprintf(name, sizeof name, "image_encoder.blocks.0.mlp.lin1.weight");
    const asam_ckpt_tensor *l1 = asam_checkpoint_find(ck, name);
    if (!l1) return asam_error("%s: not a SAM checkpoint: missing tensor '%s'", path, name);
    if (l1->ndim != 2 || l1->shape[1] != C || l1->shape[0] <= 0)
        return asam_error("%s: tensor '%s' has an unexpected shape", path, name);
    cfg->mlp_dim = (int)l1->shape[0];
    /* The input side: pos_embed is (1, img/16, img/16, C) (build_sam.py's image_size = 1024 ->
     * 64x64 tokens; a smaller SAM has a smaller grid). */
    // ref: facebookresearch/segment-anything segment_anything/modeling/image_encoder.py:63
    //   (pos_embed of img_size // patch_size)
    const asam_ckpt_tensor *pe = asam_checkpoint_find(ck, "image_encoder.pos_embed");
    if (!pe)
        return asam_error("%s: not a SAM checkpoint: missing tensor 'image_encoder.pos_embed'",
                          path);
    if (pe->ndim != 4 || pe->shape[0] != 1 || pe->shape[1] != pe->shape[2] || pe->shape[3] != C ||
        pe->shape[1] < 1 || pe->shape[1] > ASAM_SAM_GRID)
        return asam_error("%s: tensor 'image_encoder.pos_embed' is not (1, G, G, %d) with G in "
                          "1..%d",
                          path, C, ASAM_SAM_GRID);
    const int G = (int)pe->shape[1];
    cfg->img_size = 16 * G;
    /* Global blocks have (2*G-1) relative-position rows; windowed ones 2*window-1. */
    cfg->window = 0;
    for (int i = 0; i < depth; i++) {
        snprintf(name, sizeof name, "image_encoder.blocks.%d.attn.rel_pos_h", i);
        const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
        if (!t) return asam_error("%s: not a SAM checkpoint: missing tensor '%s'", path, name);
        if (t->ndim != 2 || t->shape[1] != cfg->head_dim || t->shape[0] % 2 == 0)
            return asam_error("%s: tensor '%s' has an unexpected shape", path, name);
        int S = (int)(t->shape[0] + 1) / 2;
        if (S == G) {
            cfg->is_global[i] = 1;
            cfg->global_idx[cfg->n_global++] = i;
        } else {
            if (S < 1 || S > G || (cfg->window && cfg->window != S))
                return asam_error("%s: tensor '%s' has %lld rows: inconsistent window size", path,
                                  name, (long long)t->shape[0]);
            cfg->window = S;
        }
    }
    if (!cfg->window) cfg->window = 14; /* all global: unused */
    const char *v = "custom";
    if (G == ASAM_SAM_GRID) {
        if (C == 768 && depth == 12 && cfg->num_heads == 12) v = "vit_b";
        if (C == 1024 && depth == 24 && cfg->num_heads == 16) v = "vit_l";
        if (C == 1280 && depth == 32 && cfg->num_heads == 16) v = "vit_h";
    }
    snprintf(cfg->variant, sizeof cfg->variant, "%s", v);
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* Random weights shaped like a trained model's: norm weights 1, biases 0, matrices and
 * convolutions uniform(+-1/sqrt(fan_in)) as torch's default init, embeddings small. The
 * binder calls it for each tensor in binding order; user is the splitmix64 state. */
static void random_init(void *user, const char *name, asam_tensor *p) {
    uint64_t *rng = user;
    size_t len = strlen(name);
    int is_bias = len > 5 && !strcmp(name + len - 5, ".bias");
    if (is_bias) return; /* zeros */
    if (p->ndim == 1) {
        for (int64_t i = 0; i < p->numel; i++) p->data[i] = 1.0f;
        return;
    }
    double fan_in = (double)p->numel / (double)p->shape[0];
    double a = 1.0 / sqrt(fan_in);
    if (strstr(name, "rel_pos") || strstr(name, "pos_embed")) a = 0.02;
    if (strstr(name, "embed") && p->ndim == 2 && p->shape[0] == 1) a = 1.0; /* prompt embeddings */
    if (strstr(name, "tokens") || strstr(name, "gaussian")) a = 1.0;
    for (int64_t i = 0; i < p->numel; i++)
        p->data[i] = (float)((2.0 * asam_u01(asam_splitmix64(rng)) - 1.0) * a);
}

/* Shape arguments for asam_bindf(): count, literal. */
#define S1(a)                                                                                      \
    1, (const int64_t[]) {                                                                         \
        a                                                                                          \
    }
#define S2(a, b)                                                                                   \
    2, (const int64_t[]) {                                                                         \
        a, b                                                                                       \
    }
#define S4(a, b, c, d)                                                                             \
    4, (const int64_t[]) {                                                                         \
        a, b, c, d                                                                                 \
    }

/* The model and the binder that owns its tensors (asam_sam_free releases them; save writes
 * them under their names). */
typedef struct {
    asam_sam m;
    asam_binder B;
} sam_holder;

static void load_attn(asam_binder *L, asam_sam_attn *a, int inner, const char *prefix) {
    a->q_w = asam_bindf(L, S2(inner, 256), "%s.q_proj.weight", prefix);
    a->q_b = asam_bindf(L, S1(inner), "%s.q_proj.bias", prefix);
    a->k_w = asam_bindf(L, S2(inner, 256), "%s.k_proj.weight", prefix);
    a->k_b = asam_bindf(L, S1(inner), "%s.k_proj.bias", prefix);
    a->v_w = asam_bindf(L, S2(inner, 256), "%s.v_proj.weight", prefix);
    a->v_b = asam_bindf(L, S1(inner), "%s.v_proj.bias", prefix);
    a->out_w = asam_bindf(L, S2(256, inner), "%s.out_proj.weight", prefix);
    a->out_b = asam_bindf(L, S1(256), "%s.out_proj.bias", prefix);
    a->heads = 8;
}

static void load_mlp3(asam_binder *L, asam_sam_mlp3 *m, int out, const char *prefix) {
    for (int i = 0; i < 3; i++) {
        int o = i == 2 ? out : 256;
        m->w[i] = asam_bindf(L, S2(o, 256), "%s.layers.%d.weight", prefix, i);
        m->b[i] = asam_bindf(L, S1(o), "%s.layers.%d.bias", prefix, i);
    }
}

/* Bind every tensor from ck (shape-checked), or random ones when ck is NULL. Long on purpose:
 * one bind per weight in the official state_dict's order, to be read against its key list. */
/* The image encoder's GEMM weights (patch embedding, each block's qkv, proj and MLP, the neck's
 * convolutions: nearly all of the model's bytes); its position tables and norms are read as
 * fp32, and the decoder's small weights are held at first use. */
static int encoder_gemm_weight(const char *name, int ndim) {
    size_t n = strlen(name);
    return (ndim == 2 || ndim == 4) && !strncmp(name, "image_encoder.", 14) && n > 7 &&
           !strcmp(name + n - 7, ".weight") && !strstr(name, "norm");
}

/* frozen: a model that is never trained; under bf16 its encoder's GEMM weights are held in bf16
 * as they are read. */
static int build(const asam_checkpoint *ck, const asam_sam_config *cfgp, uint64_t seed, int frozen,
                 asam_sam **out) {
    *out = NULL;
    asam_sam_config cfg = *cfgp;
    if (cfg.img_size <= 0) cfg.img_size = ASAM_SAM_IMG; /* callers that predate the field */
    if (cfg.img_size % 16 || cfg.img_size > ASAM_SAM_IMG)
        return asam_error("sam: input size %d is not a multiple of 16 in 16..%d", cfg.img_size,
                          ASAM_SAM_IMG);
    const int64_t G = cfg.img_size / 16; /* embedding side */
    sam_holder *h = calloc(1, sizeof *h);
    if (!h) return asam_error("out of memory");
    asam_sam *m = &h->m;
    m->cfg = cfg;
    snprintf(m->path, sizeof m->path, "%s", ck ? asam_checkpoint_path(ck) : "(random)");
    uint64_t rng = seed; /* random weights (no file): one splitmix64 stream */
    asam_binder *L = &h->B;
    asam_binder_init(L, ck, NULL);
    L->model = "SAM";
    L->hold_weights = frozen;
    L->is_gemm_weight = encoder_gemm_weight;
    L->init = random_init;
    L->user = &rng;
    const int64_t C = cfg.embed_dim, hd = cfg.head_dim, M = cfg.mlp_dim;
    asam_sam_image_encoder *e = &m->enc;
    e->patch_w = asam_bindf(L, S4(C, 3, 16, 16), "image_encoder.patch_embed.proj.weight");
    e->patch_b = asam_bindf(L, S1(C), "image_encoder.patch_embed.proj.bias");
    e->pos_embed = asam_bindf(L, S4(1, G, G, C), "image_encoder.pos_embed");
    for (int i = 0; i < cfg.depth; i++) {
        asam_sam_block *b = &e->blocks[i];
        const char *p = "image_encoder.blocks";
        int S = cfg.is_global[i] ? (int)G : cfg.window;
        b->window = cfg.is_global[i] ? 0 : cfg.window;
        b->num_heads = cfg.num_heads;
        b->norm1_w = asam_bindf(L, S1(C), "%s.%d.norm1.weight", p, i);
        b->norm1_b = asam_bindf(L, S1(C), "%s.%d.norm1.bias", p, i);
        b->qkv_w = asam_bindf(L, S2(3 * C, C), "%s.%d.attn.qkv.weight", p, i);
        b->qkv_b = asam_bindf(L, S1(3 * C), "%s.%d.attn.qkv.bias", p, i);
        b->proj_w = asam_bindf(L, S2(C, C), "%s.%d.attn.proj.weight", p, i);
        b->proj_b = asam_bindf(L, S1(C), "%s.%d.attn.proj.bias", p, i);
        b->rel_pos_h = asam_bindf(L, S2(2 * S - 1, hd), "%s.%d.attn.rel_pos_h", p, i);
        b->rel_pos_w = asam_bindf(L, S2(2 * S - 1, hd), "%s.%d.attn.rel_pos_w", p, i);
        b->norm2_w = asam_bindf(L, S1(C), "%s.%d.norm2.weight", p, i);
        b->norm2_b = asam_bindf(L, S1(C), "%s.%d.norm2.bias", p, i);
        b->lin1_w = asam_bindf(L, S2(M, C), "%s.%d.mlp.lin1.weight", p, i);
        b->lin1_b = asam_bindf(L, S1(M), "%s.%d.mlp.lin1.bias", p, i);
        b->lin2_w = asam_bindf(L, S2(C, M), "%s.%d.mlp.lin2.weight", p, i);
        b->lin2_b = asam_bindf(L, S1(C), "%s.%d.mlp.lin2.bias", p, i);
    }
    e->neck0_w = asam_bindf(L, S4(256, C, 1, 1), "image_encoder.neck.0.weight");
    e->neck1_w = asam_bindf(L, S1(256), "image_encoder.neck.1.weight");
    e->neck1_b = asam_bindf(L, S1(256), "image_encoder.neck.1.bias");
    e->neck2_w = asam_bindf(L, S4(256, 256, 3, 3), "image_encoder.neck.2.weight");
    e->neck3_w = asam_bindf(L, S1(256), "image_encoder.neck.3.weight");
    e->neck3_b = asam_bindf(L, S1(256), "image_encoder.neck.3.bias");

    asam_sam_prompt_encoder *pe = &m->pe;
    pe->pe_gaussian =
        asam_bindf(L, S2(2, 128), "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    for (int i = 0; i < 4; i++)
        pe->point_embed[i] =
            asam_bindf(L, S2(1, 256), "prompt_encoder.point_embeddings.%d.weight", i);
    pe->not_a_point = asam_bindf(L, S2(1, 256), "prompt_encoder.not_a_point_embed.weight");
    pe->no_mask = asam_bindf(L, S2(1, 256), "prompt_encoder.no_mask_embed.weight");
    const char *md = "prompt_encoder.mask_downscaling";
    pe->md0_w = asam_bindf(L, S4(4, 1, 2, 2), "%s.0.weight", md);
    pe->md0_b = asam_bindf(L, S1(4), "%s.0.bias", md);
    pe->md1_w = asam_bindf(L, S1(4), "%s.1.weight", md);
    pe->md1_b = asam_bindf(L, S1(4), "%s.1.bias", md);
    pe->md3_w = asam_bindf(L, S4(16, 4, 2, 2), "%s.3.weight", md);
    pe->md3_b = asam_bindf(L, S1(16), "%s.3.bias", md);
    pe->md4_w = asam_bindf(L, S1(16), "%s.4.weight", md);
    pe->md4_b = asam_bindf(L, S1(16), "%s.4.bias", md);
    pe->md6_w = asam_bindf(L, S4(256, 16, 1, 1), "%s.6.weight", md);
    pe->md6_b = asam_bindf(L, S1(256), "%s.6.bias", md);

    asam_sam_mask_decoder *d = &m->dec;
    char pfx[256];
    for (int l = 0; l < 2; l++) {
        asam_sam_twoway_layer *ly = &d->layers[l];
        snprintf(pfx, sizeof pfx, "mask_decoder.transformer.layers.%d.self_attn", l);
        load_attn(L, &ly->self_attn, 256, pfx);
        snprintf(pfx, sizeof pfx, "mask_decoder.transformer.layers.%d.cross_attn_token_to_image",
                 l);
        load_attn(L, &ly->t2i, 128, pfx);
        snprintf(pfx, sizeof pfx, "mask_decoder.transformer.layers.%d.cross_attn_image_to_token",
                 l);
        load_attn(L, &ly->i2t, 128, pfx);
        for (int k = 0; k < 4; k++) {
            ly->norm_w[k] = asam_bindf(
                L, S1(256), "mask_decoder.transformer.layers.%d.norm%d.weight", l, k + 1);
            ly->norm_b[k] =
                asam_bindf(L, S1(256), "mask_decoder.transformer.layers.%d.norm%d.bias", l, k + 1);
        }
        ly->mlp1_w =
            asam_bindf(L, S2(2048, 256), "mask_decoder.transformer.layers.%d.mlp.lin1.weight", l);
        ly->mlp1_b = asam_bindf(L, S1(2048), "mask_decoder.transformer.layers.%d.mlp.lin1.bias", l);
        ly->mlp2_w =
            asam_bindf(L, S2(256, 2048), "mask_decoder.transformer.layers.%d.mlp.lin2.weight", l);
        ly->mlp2_b = asam_bindf(L, S1(256), "mask_decoder.transformer.layers.%d.mlp.lin2.bias", l);
    }
    load_attn(L, &d->final_attn, 128, "mask_decoder.transformer.final_attn_token_to_image");
    d->norm_final_w = asam_bindf(L, S1(256), "mask_decoder.transformer.norm_final_attn.weight");
    d->norm_final_b = asam_bindf(L, S1(256), "mask_decoder.transformer.norm_final_attn.bias");
    d->iou_token = asam_bindf(L, S2(1, 256), "mask_decoder.iou_token.weight");
    d->mask_tokens = asam_bindf(L, S2(4, 256), "mask_decoder.mask_tokens.weight");
    d->up0_w = asam_bindf(L, S4(256, 64, 2, 2), "mask_decoder.output_upscaling.0.weight");
    d->up0_b = asam_bindf(L, S1(64), "mask_decoder.output_upscaling.0.bias");
    d->up1_w = asam_bindf(L, S1(64), "mask_decoder.output_upscaling.1.weight");
    d->up1_b = asam_bindf(L, S1(64), "mask_decoder.output_upscaling.1.bias");
    d->up3_w = asam_bindf(L, S4(64, 32, 2, 2), "mask_decoder.output_upscaling.3.weight");
    d->up3_b = asam_bindf(L, S1(32), "mask_decoder.output_upscaling.3.bias");
    for (int i = 0; i < 4; i++) {
        snprintf(pfx, sizeof pfx, "mask_decoder.output_hypernetworks_mlps.%d", i);
        load_mlp3(L, &d->hyper[i], 32, pfx);
    }
    load_mlp3(L, &d->iou_head, 4, "mask_decoder.iou_prediction_head");

    if (!L->failed) {
        m->pe.dense_pe = asam_param_new(ASAM_SHAPE(1, 256, G, G));
        m->pe.key_pe = asam_param_new(ASAM_SHAPE(1, G * G, 256));
        if (m->pe.dense_pe && m->pe.key_pe)
            sam_compute_dense_pe(m, m->pe.dense_pe->data, m->pe.key_pe->data);
        else
            L->failed = 1, asam_error("sam: out of memory");
    }
    if (L->failed) {
        asam_sam_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

static int load(const char *path, int frozen, asam_sam **out) {
    *out = NULL;
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    asam_sam_config cfg;
    int rc = config_from_ckpt(ck, &cfg);
    if (rc == 0) rc = build(ck, &cfg, 0, frozen, out);
    asam_checkpoint_close(ck);
    return rc;
}

int asam_sam_load(const char *path, asam_sam **out) {
    return load(path, 0, out);
}

int asam_sam_load_frozen(const char *path, asam_sam **out) {
    return load(path, 1, out);
}

void asam_sam_free(asam_sam *m) {
    if (!m) return;
    sam_holder *h = (sam_holder *)m; /* m is the first member */
    asam_binder_free(&h->B);
    if (m->pe.dense_pe) asam_param_free(m->pe.dense_pe);
    if (m->pe.key_pe) asam_param_free(m->pe.key_pe);
    free(h);
}

void asam_sam_tokens_requires_grad(asam_sam *m, int on) {
    asam_set_requires_grad(m->dec.iou_token, on);
    asam_set_requires_grad(m->dec.mask_tokens, on);
}

int asam_sam_config_from_file(const char *path, asam_sam_config *cfg) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    int rc = config_from_ckpt(ck, cfg);
    asam_checkpoint_close(ck);
    return rc;
}

int asam_sam_config_preset(const char *variant, asam_sam_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    int C, depth, heads;
    if (!strcmp(variant, "vit_b"))
        C = 768, depth = 12, heads = 12;
    else if (!strcmp(variant, "vit_l"))
        C = 1024, depth = 24, heads = 16;
    else if (!strcmp(variant, "vit_h"))
        C = 1280, depth = 32, heads = 16;
    else
        return asam_error("sam: unknown variant '%s' (vit_b, vit_l, vit_h)", variant);
    cfg->embed_dim = C;
    cfg->depth = depth;
    cfg->num_heads = heads;
    cfg->head_dim = C / heads;
    cfg->mlp_dim = 4 * C;
    cfg->window = 14;
    cfg->img_size = ASAM_SAM_IMG;
    /* four evenly spaced global blocks: 2,5,8,11 / 5,11,17,23 / 7,15,23,31 */
    for (int k = 1; k <= 4; k++) {
        int i = k * depth / 4 - 1;
        cfg->global_idx[cfg->n_global++] = i;
        cfg->is_global[i] = 1;
    }
    snprintf(cfg->variant, sizeof cfg->variant, "%s", variant);
    return 0;
}

int asam_sam_img_size(const asam_sam *m) {
    return 16 * (int)m->enc.pos_embed->shape[1];
}
int asam_sam_grid(const asam_sam *m) {
    return (int)m->enc.pos_embed->shape[1];
}
int asam_sam_lowres(const asam_sam *m) {
    return 4 * (int)m->enc.pos_embed->shape[1];
}

int asam_sam_params(const asam_sam *m, asam_tensor *const **params, const char *const **names,
                    size_t *n) {
    const sam_holder *h = (const sam_holder *)m;
    *params = h->B.params;
    *names = (const char *const *)h->B.names;
    *n = h->B.n;
    return 0;
}

int asam_sam_init_random(const asam_sam_config *cfg, uint64_t seed, asam_sam **out) {
    return build(NULL, cfg, seed, 0, out);
}

int asam_sam_save(const asam_sam *m, const char *path) {
    return asam_sam_save_meta(m, path, NULL, 0);
}

int asam_sam_save_meta(const asam_sam *m, const char *path, const char *const *metadata,
                       size_t n_meta) {
    const sam_holder *h = (const sam_holder *)m;
    const size_t n = h->B.n;
    asam_st_entry *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return asam_error("%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const asam_tensor *p = h->B.params[i];
        e[i].name = h->B.names[i];
        /* A weight held in bf16 (--precision bf16) has only those values: written as BF16. */
        int held = asam_param_bf16_held(p);
        e[i].dtype = held ? ASAM_DT_BF16 : ASAM_DT_F32;
        e[i].ndim = p->ndim;
        for (int d = 0; d < e[i].ndim; d++) e[i].shape[d] = p->shape[d];
        e[i].data = held ? (const void *)asam_param_bf16(p) : (const void *)p->data;
    }
    size_t len = strlen(path);
    int torch = (len > 4 && (!strcmp(path + len - 4, ".pth") || !strcmp(path + len - 4, ".bin"))) ||
                (len > 5 && !strcmp(path + len - 5, ".ckpt")) ||
                (len > 3 && !strcmp(path + len - 3, ".pt"));
    int rc = torch ? asam_torch_save_write_meta(path, NULL, e, n, metadata, n_meta)
                   : asam_safetensors_write(path, e, n, metadata, n_meta);
    free(e);
    return rc;
}
