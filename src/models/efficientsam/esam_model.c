/* EfficientSAM weights: family and configuration from checkpoint names and shapes,
 * shape-checked binding by official name, random initialisation, saving in the official
 * layout. */
#include "asam/binder.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/util.h"
#include "models/efficientsam/esam_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A tensor only EfficientSAM has, and one only SAM has (the family tests). */
#define ESAM_MARK "prompt_encoder.invalid_points.weight"
#define SAM_MARK "mask_decoder.output_upscaling.0.weight"

const char *asam_model_family_of_file(const char *path) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return NULL;
    const char *f = asam_checkpoint_find(ck, ESAM_MARK)  ? "efficientsam"
                    : asam_checkpoint_find(ck, SAM_MARK) ? "sam"
                                                         : NULL;
    if (!f) asam_error("%s: neither a SAM nor an EfficientSAM checkpoint", path);
    asam_checkpoint_close(ck);
    return f;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

/* The named tensor, which must exist (else an error naming the file and the tensor). */
static const asam_ckpt_tensor *need(const asam_checkpoint *ck, const char *name) {
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, name);
    if (!t)
        asam_error("%s: not a complete EfficientSAM checkpoint: missing tensor '%s'",
                   asam_checkpoint_path(ck), name);
    return t;
}

static int bad_shape(const asam_checkpoint *ck, const asam_ckpt_tensor *t, const char *want) {
    char got[128];
    shape_str(t->ndim, t->shape, got, sizeof got);
    return asam_error("%s: tensor '%s' has shape %s, expected %s", asam_checkpoint_path(ck),
                      t->name, got, want);
}

static int count_indexed(const asam_checkpoint *ck, const char *fmt, int max) {
    char name[256];
    int n = 0;
    for (; n <= max; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!asam_checkpoint_find(ck, name)) break;
    }
    return n;
}

static int config_from_ckpt(const asam_checkpoint *ck, int heads, asam_esam_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *path = asam_checkpoint_path(ck);
    if (!asam_checkpoint_find(ck, ESAM_MARK)) {
        if (asam_checkpoint_find(ck, SAM_MARK))
            return asam_error("%s: this is a SAM checkpoint, not EfficientSAM (no tensor '%s')",
                              path, ESAM_MARK);
        return asam_error("%s: not an EfficientSAM checkpoint: missing tensor '%s'", path,
                          ESAM_MARK);
    }
    const asam_ckpt_tensor *t;
    if (!(t = need(ck, "image_encoder.patch_embed.proj.weight"))) return -1;
    if (t->ndim != 4 || t->shape[0] <= 0 || t->shape[1] != 3 || t->shape[2] != 16 ||
        t->shape[3] != 16)
        return bad_shape(ck, t, "(C, 3, 16, 16)");
    const int C = (int)t->shape[0];
    cfg->embed_dim = C;
    cfg->depth = count_indexed(ck, "image_encoder.blocks.%d.norm1.weight", ASAM_ESAM_MAX_DEPTH);
    if (cfg->depth == 0) return need(ck, "image_encoder.blocks.0.norm1.weight") ? 0 : -1;
    if (cfg->depth > ASAM_ESAM_MAX_DEPTH)
        return asam_error("%s: more than %d encoder blocks", path, ASAM_ESAM_MAX_DEPTH);
    if (!(t = need(ck, "image_encoder.blocks.0.mlp.fc1.weight"))) return -1;
    if (t->ndim != 2 || t->shape[1] != C || t->shape[0] <= 0) return bad_shape(ck, t, "(M, C)");
    cfg->mlp_dim = (int)t->shape[0];
    if (!(t = need(ck, "image_encoder.pos_embed"))) return -1;
    int g = t->ndim == 3 ? (int)lround(sqrt((double)(t->shape[1] - 1))) : 0;
    if (t->ndim != 3 || t->shape[0] != 1 || t->shape[2] != C || g < 1 ||
        (int64_t)g * g + 1 != t->shape[1])
        return bad_shape(ck, t, "(1, 1 + g*g, C)");
    cfg->pos_grid = g;
    if (!(t = need(ck, "image_encoder.neck.0.weight"))) return -1;
    if (t->ndim != 4 || t->shape[1] != C || t->shape[2] != 1 || t->shape[3] != 1 ||
        t->shape[0] < 16 || t->shape[0] % 16)
        return bad_shape(ck, t, "(D, C, 1, 1) with D a multiple of 16");
    const int D = (int)t->shape[0];
    cfg->dim = D;
    cfg->dec_heads = 8; /* build_efficient_sam: decoder_num_heads (not visible in shapes) */
    cfg->dec_depth = count_indexed(ck, "mask_decoder.transformer.layers.%d.norm1.weight", 8);
    if (cfg->dec_depth == 0)
        return need(ck, "mask_decoder.transformer.layers.0.norm1.weight") ? 0 : -1;
    if (cfg->dec_depth > 8) return asam_error("%s: more than 8 decoder layers", path);
    if (!(t = need(ck, "mask_decoder.transformer.layers.0.mlp.layers.0.0.weight"))) return -1;
    if (t->ndim != 2 || t->shape[1] != D || t->shape[0] <= 0) return bad_shape(ck, t, "(M, D)");
    cfg->dec_mlp_dim = (int)t->shape[0];
    if (!(t = need(ck, "mask_decoder.final_output_upscaling_layers.0.0.weight"))) return -1;
    if (t->ndim != 4 || t->shape[0] != D || t->shape[1] <= 0 || t->shape[2] != 2 ||
        t->shape[3] != 2)
        return bad_shape(ck, t, "(D, U0, 2, 2)");
    cfg->up_dims[0] = (int)t->shape[1];
    if (!(t = need(ck, "mask_decoder.final_output_upscaling_layers.1.0.weight"))) return -1;
    if (t->ndim != 4 || t->shape[0] != cfg->up_dims[0] || t->shape[1] <= 0 || t->shape[2] != 2 ||
        t->shape[3] != 2)
        return bad_shape(ck, t, "(U0, U1, 2, 2)");
    cfg->up_dims[1] = (int)t->shape[1];
    if (asam_checkpoint_find(ck, "mask_decoder.final_output_upscaling_layers.2.0.weight"))
        return asam_error("%s: three upscaling stages: only two (64 -> 256) are supported", path);
    if (!(t = need(ck, "mask_decoder.iou_prediction_head.layers.0.0.weight"))) return -1;
    if (t->ndim != 2 || t->shape[1] != D || t->shape[0] <= 0) return bad_shape(ck, t, "(H, D)");
    cfg->iou_hidden = (int)t->shape[0];

    /* Encoder heads: caller, then file metadata, then the official widths, then head_dim 64. */
    const char *meta = asam_checkpoint_metadata(ck, "encoder_num_heads");
    if (heads <= 0 && meta) heads = atoi(meta);
    if (heads <= 0) heads = C == 192 ? 3 : C == 384 ? 6 : (C % 64 == 0 ? C / 64 : 0);
    if (heads <= 0 || C % heads)
        return asam_error("%s: cannot tell the encoder's head count for width %d: give it "
                          "(it must divide %d)",
                          path, C, C);
    cfg->num_heads = heads;
    const char *v = "custom";
    if (C == 192 && cfg->depth == 12 && heads == 3 && D == 256) v = "vit_t";
    if (C == 384 && cfg->depth == 12 && heads == 6 && D == 256) v = "vit_s";
    snprintf(cfg->variant, sizeof cfg->variant, "%s", v);
    return 0;
}

int asam_esam_config_preset(const char *variant, asam_esam_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    int C, heads;
    if (!strcmp(variant, "vit_t"))
        C = 192, heads = 3;
    else if (!strcmp(variant, "vit_s"))
        C = 384, heads = 6;
    else
        return asam_error("efficientsam: unknown variant '%s' (vit_t, vit_s)", variant);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:233 (build_efficient_sam) */
    cfg->embed_dim = C;
    cfg->depth = 12;
    cfg->num_heads = heads;
    cfg->mlp_dim = 4 * C;
    cfg->pos_grid = 14;
    cfg->dim = 256;
    cfg->dec_depth = 2;
    cfg->dec_heads = 8;
    cfg->dec_mlp_dim = 2048;
    cfg->up_dims[0] = 64;
    cfg->up_dims[1] = 32;
    cfg->iou_hidden = 256;
    snprintf(cfg->variant, sizeof cfg->variant, "%s", variant);
    return 0;
}

/* ---- binding ------------------------------------------------------------------------------- */

/* Random weights shaped like a trained model's: norm weights 1, biases 0, matrices uniform
 * (+-1/sqrt(fan_in)) as torch's default init, embeddings and tokens larger. */
static void random_init(void *user, const char *name, asam_tensor *p) {
    uint64_t *rng = user;
    size_t len = strlen(name);
    if (len > 5 && !strcmp(name + len - 5, ".bias")) return; /* zeros */
    if (p->ndim == 1) {
        for (int64_t i = 0; i < p->numel; i++) p->data[i] = 1.0f;
        return;
    }
    double a = 1.0 / sqrt((double)p->numel / (double)p->shape[0]);
    if (strstr(name, "pos_embed")) a = 0.02;
    if (strstr(name, "prompt_encoder") || strstr(name, "tokens")) a = 1.0;
    for (int64_t i = 0; i < p->numel; i++)
        p->data[i] = (float)((2.0 * asam_u01(asam_splitmix64(rng)) - 1.0) * a);
}

#define S1(a)                                                                                      \
    1, (const int64_t[]) {                                                                         \
        a                                                                                          \
    }
#define S2(a, b)                                                                                   \
    2, (const int64_t[]) {                                                                         \
        a, b                                                                                       \
    }
#define S3(a, b, c)                                                                                \
    3, (const int64_t[]) {                                                                         \
        a, b, c                                                                                    \
    }
#define S4(a, b, c, d)                                                                             \
    4, (const int64_t[]) {                                                                         \
        a, b, c, d                                                                                 \
    }

static void bind_attn(asam_binder *B, esam_attn *a, int D, int I, int heads, const char *prefix) {
    a->q_w = asam_bindf(B, S2(I, D), "%s.q_proj.weight", prefix);
    a->q_b = asam_bindf(B, S1(I), "%s.q_proj.bias", prefix);
    a->k_w = asam_bindf(B, S2(I, D), "%s.k_proj.weight", prefix);
    a->k_b = asam_bindf(B, S1(I), "%s.k_proj.bias", prefix);
    a->v_w = asam_bindf(B, S2(I, D), "%s.v_proj.weight", prefix);
    a->v_b = asam_bindf(B, S1(I), "%s.v_proj.bias", prefix);
    a->out_w = asam_bindf(B, S2(D, I), "%s.out_proj.weight", prefix);
    a->out_b = asam_bindf(B, S1(D), "%s.out_proj.bias", prefix);
    a->heads = heads;
}

/* ref: yformer/EfficientSAM/efficient_sam/mlp.py:19 (layers.i.0 then fc) */
static void bind_mlp(asam_binder *B, esam_mlp *m, int in, int hidden, int out, const char *prefix) {
    m->w0 = asam_bindf(B, S2(hidden, in), "%s.layers.0.0.weight", prefix);
    m->b0 = asam_bindf(B, S1(hidden), "%s.layers.0.0.bias", prefix);
    m->w1 = asam_bindf(B, S2(hidden, hidden), "%s.layers.1.0.weight", prefix);
    m->b1 = asam_bindf(B, S1(hidden), "%s.layers.1.0.bias", prefix);
    m->fc_w = asam_bindf(B, S2(out, hidden), "%s.fc.weight", prefix);
    m->fc_b = asam_bindf(B, S1(out), "%s.fc.bias", prefix);
}

/* Dense positional encoding as image-token rows (4096, D): grid x = (j + 0.5) / 64,
 * y = (i + 0.5) / 64.
 * ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:120 (cumsum - 0.5, / h) */
static void compute_key_pe(const asam_esam *m, float *rows) {
    const int n = ASAM_ESAM_GRID, D = m->cfg.dim;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            esam_pe_encode(m, ((float)j + 1.0f - 0.5f) / (float)n,
                           ((float)i + 1.0f - 0.5f) / (float)n, rows + ((int64_t)i * n + j) * D);
}

/* The image encoder's GEMM weights (patch embedding, attention and MLP projections, neck
 * convolutions): what a frozen load holds in bf16 as it reads them; its position table and
 * norms are read as fp32. */
static int encoder_gemm_weight(const char *name, int ndim) {
    size_t n = strlen(name);
    return (ndim == 2 || ndim == 4) && !strncmp(name, "image_encoder.", 14) && n > 7 &&
           !strcmp(name + n - 7, ".weight") && !strstr(name, "norm");
}

/* frozen: a model that is never trained; under bf16 its encoder's GEMM weights are held in bf16
 * as they are read. */
static int build(const asam_checkpoint *ck, const asam_esam_config *cfg, uint64_t seed, int frozen,
                 asam_esam **out) {
    *out = NULL;
    asam_esam *m = calloc(1, sizeof *m);
    if (!m) return asam_error("efficientsam: out of memory");
    m->cfg = *cfg;
    snprintf(m->path, sizeof m->path, "%s", ck ? asam_checkpoint_path(ck) : "(random)");
    asam_binder B;
    asam_binder_init(&B, ck, NULL);
    B.model = "complete EfficientSAM";
    B.hold_weights = frozen;
    B.is_gemm_weight = encoder_gemm_weight;
    uint64_t rng = seed;
    B.init = random_init;
    B.user = &rng;
    const int64_t C = cfg->embed_dim, D = cfg->dim, M = cfg->mlp_dim, g = cfg->pos_grid;
    const int64_t U0 = cfg->up_dims[0], U1 = cfg->up_dims[1];
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_encoder.py:211 (patch_embed,
     * pos_embed (1, 1 + 14*14, C), blocks, neck) */
    esam_encoder *e = &m->enc;
    e->pos_embed = asam_bindf(&B, S3(1, g * g + 1, C), "image_encoder.pos_embed");
    e->patch_w = asam_bindf(&B, S4(C, 3, 16, 16), "image_encoder.patch_embed.proj.weight");
    e->patch_b = asam_bindf(&B, S1(C), "image_encoder.patch_embed.proj.bias");
    for (int i = 0; i < cfg->depth; i++) {
        esam_block *b = &e->blocks[i];
        const char *p = "image_encoder.blocks";
        b->num_heads = cfg->num_heads;
        b->norm1_w = asam_bindf(&B, S1(C), "%s.%d.norm1.weight", p, i);
        b->norm1_b = asam_bindf(&B, S1(C), "%s.%d.norm1.bias", p, i);
        b->qkv_w = asam_bindf(&B, S2(3 * C, C), "%s.%d.attn.qkv.weight", p, i);
        b->qkv_b = asam_bindf(&B, S1(3 * C), "%s.%d.attn.qkv.bias", p, i);
        b->proj_w = asam_bindf(&B, S2(C, C), "%s.%d.attn.proj.weight", p, i);
        b->proj_b = asam_bindf(&B, S1(C), "%s.%d.attn.proj.bias", p, i);
        b->norm2_w = asam_bindf(&B, S1(C), "%s.%d.norm2.weight", p, i);
        b->norm2_b = asam_bindf(&B, S1(C), "%s.%d.norm2.bias", p, i);
        b->fc1_w = asam_bindf(&B, S2(M, C), "%s.%d.mlp.fc1.weight", p, i);
        b->fc1_b = asam_bindf(&B, S1(M), "%s.%d.mlp.fc1.bias", p, i);
        b->fc2_w = asam_bindf(&B, S2(C, M), "%s.%d.mlp.fc2.weight", p, i);
        b->fc2_b = asam_bindf(&B, S1(C), "%s.%d.mlp.fc2.bias", p, i);
    }
    e->neck0_w = asam_bindf(&B, S4(D, C, 1, 1), "image_encoder.neck.0.weight");
    e->neck1_w = asam_bindf(&B, S1(D), "image_encoder.neck.1.weight");
    e->neck1_b = asam_bindf(&B, S1(D), "image_encoder.neck.1.bias");
    e->neck2_w = asam_bindf(&B, S4(D, D, 3, 3), "image_encoder.neck.2.weight");
    e->neck3_w = asam_bindf(&B, S1(D), "image_encoder.neck.3.weight");
    e->neck3_b = asam_bindf(&B, S1(D), "image_encoder.neck.3.bias");

    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:38 */
    esam_prompt_encoder *pe = &m->pe;
    pe->gaussian =
        asam_bindf(&B, S2(2, D / 2), "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    pe->invalid = asam_bindf(&B, S2(1, D), "prompt_encoder.invalid_points.weight");
    pe->point = asam_bindf(&B, S2(1, D), "prompt_encoder.point_embeddings.weight");
    pe->box_tl = asam_bindf(&B, S2(1, D), "prompt_encoder.bbox_top_left_embeddings.weight");
    pe->box_br = asam_bindf(&B, S2(1, D), "prompt_encoder.bbox_bottom_right_embeddings.weight");

    /* ref: yformer/EfficientSAM/efficient_sam/two_way_transformer.py:40 (layers, final attn) */
    esam_decoder *d = &m->dec;
    const char *tp = "mask_decoder.transformer";
    char pfx[256];
    for (int l = 0; l < cfg->dec_depth; l++) {
        esam_twoway_layer *ly = &d->layers[l];
        snprintf(pfx, sizeof pfx, "%s.layers.%d.self_attn", tp, l);
        bind_attn(&B, &ly->self_attn, (int)D, (int)D, cfg->dec_heads, pfx);
        snprintf(pfx, sizeof pfx, "%s.layers.%d.cross_attn_token_to_image", tp, l);
        bind_attn(&B, &ly->t2i, (int)D, (int)D / 2, cfg->dec_heads, pfx);
        snprintf(pfx, sizeof pfx, "%s.layers.%d.cross_attn_image_to_token", tp, l);
        bind_attn(&B, &ly->i2t, (int)D, (int)D / 2, cfg->dec_heads, pfx);
        for (int k = 0; k < 4; k++) {
            ly->norm_w[k] = asam_bindf(&B, S1(D), "%s.layers.%d.norm%d.weight", tp, l, k + 1);
            ly->norm_b[k] = asam_bindf(&B, S1(D), "%s.layers.%d.norm%d.bias", tp, l, k + 1);
        }
        const int64_t DM = cfg->dec_mlp_dim;
        ly->mlp0_w = asam_bindf(&B, S2(DM, D), "%s.layers.%d.mlp.layers.0.0.weight", tp, l);
        ly->mlp0_b = asam_bindf(&B, S1(DM), "%s.layers.%d.mlp.layers.0.0.bias", tp, l);
        ly->fc_w = asam_bindf(&B, S2(D, DM), "%s.layers.%d.mlp.fc.weight", tp, l);
        ly->fc_b = asam_bindf(&B, S1(D), "%s.layers.%d.mlp.fc.bias", tp, l);
    }
    snprintf(pfx, sizeof pfx, "%s.final_attn_token_to_image", tp);
    bind_attn(&B, &d->final_attn, (int)D, (int)D / 2, cfg->dec_heads, pfx);
    d->norm_final_w = asam_bindf(&B, S1(D), "%s.norm_final_attn.weight", tp);
    d->norm_final_b = asam_bindf(&B, S1(D), "%s.norm_final_attn.bias", tp);
    /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam_decoder.py:175 (tokens, upscaling,
     * hypernetworks, IoU head) */
    d->iou_token = asam_bindf(&B, S2(1, D), "mask_decoder.iou_token.weight");
    d->mask_tokens = asam_bindf(&B, S2(4, D), "mask_decoder.mask_tokens.weight");
    const char *up = "mask_decoder.final_output_upscaling_layers";
    d->up0_w = asam_bindf(&B, S4(D, U0, 2, 2), "%s.0.0.weight", up);
    d->up0_b = asam_bindf(&B, S1(U0), "%s.0.0.bias", up);
    d->gn_w = asam_bindf(&B, S1(U0), "%s.0.1.weight", up);
    d->gn_b = asam_bindf(&B, S1(U0), "%s.0.1.bias", up);
    d->up1_w = asam_bindf(&B, S4(U0, U1, 2, 2), "%s.1.0.weight", up);
    d->up1_b = asam_bindf(&B, S1(U1), "%s.1.0.bias", up);
    for (int i = 0; i < 4; i++) {
        snprintf(pfx, sizeof pfx, "mask_decoder.output_hypernetworks_mlps.%d", i);
        bind_mlp(&B, &d->hyper[i], (int)D, (int)D, (int)U1, pfx);
    }
    bind_mlp(&B, &d->iou_head, (int)D, cfg->iou_hidden, 4, "mask_decoder.iou_prediction_head");

    /* the model owns the bound tensors from here (asam_esam_free releases them) */
    m->all = B.params;
    m->names = B.names;
    m->n = (int)B.n;
    B.params = NULL;
    B.names = NULL;
    B.n = 0;
    if (!B.failed) {
        m->pe.key_pe = asam_param_new(S3(1, (int64_t)ASAM_ESAM_GRID * ASAM_ESAM_GRID, D));
        if (m->pe.key_pe)
            compute_key_pe(m, m->pe.key_pe->data);
        else
            B.failed = 1, asam_error("efficientsam: out of memory");
    }
    if (B.failed) {
        asam_esam_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int asam_esam_config_from_file(const char *path, int num_heads, asam_esam_config *cfg) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    int rc = config_from_ckpt(ck, num_heads, cfg);
    asam_checkpoint_close(ck);
    return rc;
}

static int load(const char *path, int num_heads, int frozen, asam_esam **out) {
    *out = NULL;
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck) != 0) return -1;
    asam_esam_config cfg;
    int rc = config_from_ckpt(ck, num_heads, &cfg);
    if (rc == 0) rc = build(ck, &cfg, 0, frozen, out);
    asam_checkpoint_close(ck);
    return rc;
}

int asam_esam_load(const char *path, int num_heads, asam_esam **out) {
    return load(path, num_heads, 0, out);
}

int asam_esam_load_frozen(const char *path, int num_heads, asam_esam **out) {
    return load(path, num_heads, 1, out);
}

int asam_esam_init_random(const asam_esam_config *cfg, uint64_t seed, asam_esam **out) {
    if (cfg->embed_dim <= 0 || cfg->num_heads <= 0 || cfg->embed_dim % cfg->num_heads ||
        cfg->depth <= 0 || cfg->depth > ASAM_ESAM_MAX_DEPTH || cfg->dim % 16 ||
        cfg->dec_depth <= 0 || cfg->dec_depth > 8)
        return asam_error("efficientsam: invalid configuration");
    return build(NULL, cfg, seed, 0, out);
}

void asam_esam_free(asam_esam *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        m->all[i]->name = NULL;
        asam_param_free(m->all[i]);
        free(m->names[i]);
    }
    free(m->all);
    free(m->names);
    if (m->pe.key_pe) asam_param_free(m->pe.key_pe);
    free(m);
}

int asam_esam_params(const asam_esam *m, asam_tensor *const **params, const char *const **names,
                     size_t *n) {
    *params = m->all;
    *names = (const char *const *)m->names;
    *n = (size_t)m->n;
    return 0;
}

const asam_esam_config *asam_esam_cfg(const asam_esam *m) {
    return &m->cfg;
}
asam_tensor *asam_esam_iou_token(asam_esam *m) {
    return m->dec.iou_token;
}
asam_tensor *asam_esam_mask_tokens(asam_esam *m) {
    return m->dec.mask_tokens;
}

uint64_t asam_esam_encoder_hash(const asam_esam *m) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < m->n; i++) {
        if (strncmp(m->names[i], "image_encoder.", 14)) continue;
        /* A weight held in bf16 (--precision bf16) has only its bf16 values to hash. */
        const asam_tensor *t = m->all[i];
        const uint8_t *b = t->data ? (const uint8_t *)t->data : (const uint8_t *)asam_param_bf16(t);
        size_t bytes = (t->data ? sizeof(float) : sizeof(uint16_t)) * (size_t)t->numel;
        for (size_t k = 0; k < bytes; k++) h = (h ^ b[k]) * 0x100000001b3ULL;
    }
    return h;
}

void asam_esam_tokens_requires_grad(asam_esam *m, int on) {
    asam_set_requires_grad(m->dec.iou_token, on);
    asam_set_requires_grad(m->dec.mask_tokens, on);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int asam_esam_save(const asam_esam *m, const char *path) {
    return asam_esam_save_meta(m, path, NULL, 0);
}

int asam_esam_save_meta(const asam_esam *m, const char *path, const char *const *metadata,
                        size_t n_meta) {
    asam_st_entry *e = calloc((size_t)m->n, sizeof *e);
    if (!e) return asam_error("%s: out of memory", path);
    for (int i = 0; i < m->n; i++) {
        e[i].name = m->names[i];
        /* A weight held in bf16 (--precision bf16) has only those values: written as BF16. */
        int held = asam_param_bf16_held(m->all[i]);
        e[i].dtype = held ? ASAM_DT_BF16 : ASAM_DT_F32;
        e[i].ndim = m->all[i]->ndim;
        for (int k = 0; k < e[i].ndim; k++) e[i].shape[k] = m->all[i]->shape[k];
        e[i].data = held ? (const void *)asam_param_bf16(m->all[i]) : (const void *)m->all[i]->data;
    }
    int rc;
    if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".bin") ||
        ends_with(path, ".ckpt")) {
        /* ref: yformer/EfficientSAM/efficient_sam/efficient_sam.py:303 (torch.load(f)["model"]) */
        rc = asam_torch_save_write_meta(path, "model", e, (size_t)m->n, metadata, n_meta);
    } else {
        char heads[16];
        snprintf(heads, sizeof heads, "%d", m->cfg.num_heads);
        const char *meta[2 + 2 * 8] = {"encoder_num_heads", heads};
        size_t k = 1;
        for (size_t i = 0; i < n_meta && k < 9; i++, k++) {
            meta[2 * k] = metadata[2 * i];
            meta[2 * k + 1] = metadata[2 * i + 1];
        }
        rc = asam_safetensors_write(path, e, (size_t)m->n, meta, k);
    }
    free(e);
    return rc;
}
