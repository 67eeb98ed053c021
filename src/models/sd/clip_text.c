/* CLIP text encoder (openai CLIP text transformer, stored under Hugging Face CLIPTextModel
 * names): token + position embeddings, pre-LN blocks with causal multi-head self-attention and
 * a QuickGELU MLP, final LayerNorm; SD 1.5 uses the last hidden state of all 77 positions. */
#include "asam/binder.h"
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_LN_EPS 1e-5f

typedef struct {
    asam_tensor *ln1_w, *ln1_b; // (D)
    asam_tensor *q_w, *q_b;     // (D, D), (D)
    asam_tensor *k_w, *k_b;     // (D, D), (D)
    asam_tensor *v_w, *v_b;     // (D, D), (D)
    asam_tensor *o_w, *o_b;     // (D, D), (D)
    asam_tensor *ln2_w, *ln2_b; // (D)
    asam_tensor *fc1_w, *fc1_b; // (F, D), (F)
    asam_tensor *fc2_w, *fc2_b; // (D, F), (D)
} clip_layer;

struct asam_clip_text {
    int vocab, width, layers, heads, mlp, n_pos;
    asam_tensor *tok_emb;       // (V, D)
    asam_tensor *pos_emb;       // (P, D), P >= 77; rows 0..76 used
    clip_layer *layer;          // [layers]
    asam_tensor *lnf_w, *lnf_b; // (D)
    asam_binder weights;        // owns every tensor above
};

void asam_clip_text_free(asam_clip_text *m) {
    if (!m) return;
    asam_binder_free(&m->weights);
    free(m->layer);
    free(m);
}

/* The GEMM weights (attention projections, MLP): the tensors a frozen load holds in bf16. The
 * embeddings are 2-D too but are read as fp32 tables. */
static int clip_gemm_weight(const char *name, int ndim) {
    size_t n = strlen(name);
    return ndim == 2 && n > 7 && !strcmp(name + n - 7, ".weight") &&
           (strstr(name, "_proj.") || strstr(name, ".mlp.fc"));
}

static int load(const asam_checkpoint *ck, const char *prefix, int heads, int frozen,
                asam_clip_text **out);

int asam_clip_text_load(const struct asam_checkpoint *ck, const char *prefix, int heads,
                        asam_clip_text **out) {
    return load(ck, prefix, heads, 0, out);
}

int asam_clip_text_load_frozen(const struct asam_checkpoint *ck, const char *prefix, int heads,
                               asam_clip_text **out) {
    return load(ck, prefix, heads, 1, out);
}

int asam_clip_text_params(const asam_clip_text *m, asam_tensor *const **params,
                          const char *const **names, size_t *n) {
    *params = m->weights.params;
    *names = (const char *const *)m->weights.names;
    *n = m->weights.n;
    return 0;
}

static int load(const asam_checkpoint *ck, const char *prefix, int heads, int frozen,
                asam_clip_text **out) {
    *out = NULL;
    char key[512];
    snprintf(key, sizeof key, "%sembeddings.token_embedding.weight", prefix);
    const asam_ckpt_tensor *te = asam_checkpoint_find(ck, key);
    if (!te || te->ndim != 2)
        return asam_error("%s: no CLIP text encoder (missing %s)", asam_checkpoint_path(ck), key);
    asam_clip_text *m = calloc(1, sizeof *m);
    if (!m) return asam_error("out of memory");
    asam_binder *W = &m->weights;
    asam_binder_init(W, ck, prefix);
    W->hold_weights = frozen; /* under bf16: held as they are read */
    W->is_gemm_weight = clip_gemm_weight;
    m->vocab = (int)te->shape[0];
    m->width = (int)te->shape[1];
    while (1) {
        snprintf(key, sizeof key, "%sencoder.layers.%d.self_attn.q_proj.weight", prefix, m->layers);
        if (!asam_checkpoint_find(ck, key)) break;
        m->layers++;
    }
    snprintf(key, sizeof key, "%sencoder.layers.0.mlp.fc1.weight", prefix);
    const asam_ckpt_tensor *f1 = asam_checkpoint_find(ck, key);
    int D = m->width;
    if (m->layers == 0 || !f1 || f1->ndim != 2) {
        asam_clip_text_free(m);
        return asam_error("%s: CLIP text encoder under '%s' has no layers",
                          asam_checkpoint_path(ck), prefix);
    }
    m->mlp = (int)f1->shape[0];
    /* CLIP text towers use 64-wide heads; the fixtures' tiny width-64 encoder uses 16. */
    m->heads = heads > 0 ? heads : (D >= 256 ? D / 64 : D / 16);
    if (m->heads < 1 || D % m->heads) {
        int h = m->heads; /* (read before m is freed) */
        asam_clip_text_free(m);
        return asam_error("%s: CLIP width %d is not divisible into %d heads",
                          asam_checkpoint_path(ck), D, h);
    }
    int64_t sD[1] = {D}, sDD[2] = {D, D}, sFD[2] = {m->mlp, D}, sDF[2] = {D, m->mlp},
            sF[1] = {m->mlp};
    int64_t sV[2] = {m->vocab, D}, sP[2] = {-1, D};
    int bad = 0;
    m->tok_emb = asam_bind(W, "embeddings.token_embedding.weight", 2, sV);
    m->pos_emb = asam_bind(W, "embeddings.position_embedding.weight", 2, sP);
    if (!W->failed && m->pos_emb->shape[0] < ASAM_CLIP_CONTEXT) {
        asam_error("%s: position_embedding has %lld rows, need %d", asam_checkpoint_path(ck),
                   (long long)m->pos_emb->shape[0], ASAM_CLIP_CONTEXT);
        bad = 1;
    }
    m->layer = calloc((size_t)m->layers, sizeof *m->layer);
    if (!m->layer) bad = 1;
    for (int l = 0; !bad && l < m->layers; l++) {
        clip_layer *L = &m->layer[l];
        const char *p = "encoder.layers";
        L->ln1_w = asam_bindf(W, 1, sD, "%s.%d.layer_norm1.weight", p, l);
        L->ln1_b = asam_bindf(W, 1, sD, "%s.%d.layer_norm1.bias", p, l);
        L->q_w = asam_bindf(W, 2, sDD, "%s.%d.self_attn.q_proj.weight", p, l);
        L->q_b = asam_bindf(W, 1, sD, "%s.%d.self_attn.q_proj.bias", p, l);
        L->k_w = asam_bindf(W, 2, sDD, "%s.%d.self_attn.k_proj.weight", p, l);
        L->k_b = asam_bindf(W, 1, sD, "%s.%d.self_attn.k_proj.bias", p, l);
        L->v_w = asam_bindf(W, 2, sDD, "%s.%d.self_attn.v_proj.weight", p, l);
        L->v_b = asam_bindf(W, 1, sD, "%s.%d.self_attn.v_proj.bias", p, l);
        L->o_w = asam_bindf(W, 2, sDD, "%s.%d.self_attn.out_proj.weight", p, l);
        L->o_b = asam_bindf(W, 1, sD, "%s.%d.self_attn.out_proj.bias", p, l);
        L->ln2_w = asam_bindf(W, 1, sD, "%s.%d.layer_norm2.weight", p, l);
        L->ln2_b = asam_bindf(W, 1, sD, "%s.%d.layer_norm2.bias", p, l);
        L->fc1_w = asam_bindf(W, 2, sFD, "%s.%d.mlp.fc1.weight", p, l);
        L->fc1_b = asam_bindf(W, 1, sF, "%s.%d.mlp.fc1.bias", p, l);
        L->fc2_w = asam_bindf(W, 2, sDF, "%s.%d.mlp.fc2.weight", p, l);
        L->fc2_b = asam_bindf(W, 1, sD, "%s.%d.mlp.fc2.bias", p, l);
    }
    m->lnf_w = asam_bind(W, "final_layer_norm.weight", 1, sD);
    m->lnf_b = asam_bind(W, "final_layer_norm.bias", 1, sD);
    if (bad || W->failed) {
        asam_clip_text_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int asam_clip_text_width(const asam_clip_text *m) {
    return m->width;
}
int asam_clip_text_layers(const asam_clip_text *m) {
    return m->layers;
}

/* (B, N, D) -> (B, H, N, D/H) */
static asam_tensor *split_heads(asam_ctx *ctx, asam_tensor *x, int B, int N, int H, int Dh) {
    static const int perm[4] = {0, 2, 1, 3};
    return asam_permute(ctx, asam_reshape(ctx, x, ASAM_SHAPE(B, N, H, Dh)), perm);
}

asam_tensor *asam_clip_text_forward(asam_ctx *ctx, const asam_clip_text *m, const int64_t *ids,
                                    int batch, asam_tensor **hidden) {
    const int N = ASAM_CLIP_CONTEXT, D = m->width, H = m->heads, Dh = D / H, B = batch;
    for (int64_t i = 0; i < (int64_t)B * N; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab)
            return asam_ctx_fail(ctx, "CLIP: token id %lld outside the vocabulary (%d)",
                                 (long long)ids[i], m->vocab);
    /* Rows 0..76 of the position table (the checkpoint's position_ids buffer is ignored). */
    int64_t pos_ids[ASAM_CLIP_CONTEXT];
    for (int i = 0; i < N; i++) pos_ids[i] = i;
    asam_tensor *x = asam_embedding(ctx, m->tok_emb, ids, (int64_t)B * N);
    x = asam_reshape(ctx, x, ASAM_SHAPE(B, N, D));
    x = asam_add(ctx, x, asam_embedding(ctx, m->pos_emb, pos_ids, N));
    if (hidden) hidden[0] = x;
    static const int perm[4] = {0, 2, 1, 3};
    const asam_attn_opts opts = {.scale = 0, .causal = 1};
    for (int l = 0; l < m->layers; l++) {
        const clip_layer *L = &m->layer[l];
        asam_tensor *h = asam_layer_norm(ctx, x, L->ln1_w, L->ln1_b, CLIP_LN_EPS);
        asam_tensor *q = split_heads(ctx, asam_linear(ctx, h, L->q_w, L->q_b), B, N, H, Dh);
        asam_tensor *k = split_heads(ctx, asam_linear(ctx, h, L->k_w, L->k_b), B, N, H, Dh);
        asam_tensor *v = split_heads(ctx, asam_linear(ctx, h, L->v_w, L->v_b), B, N, H, Dh);
        asam_tensor *a = asam_attention(ctx, q, k, v, &opts); /* (B, H, N, Dh) */
        a = asam_reshape(ctx, asam_permute(ctx, a, perm), ASAM_SHAPE(B, N, D));
        x = asam_add(ctx, x, asam_linear(ctx, a, L->o_w, L->o_b));
        h = asam_layer_norm(ctx, x, L->ln2_w, L->ln2_b, CLIP_LN_EPS);
        h = asam_quick_gelu(ctx, asam_linear(ctx, h, L->fc1_w, L->fc1_b));
        x = asam_add(ctx, x, asam_linear(ctx, h, L->fc2_w, L->fc2_b));
        if (hidden) hidden[l + 1] = x;
    }
    return asam_layer_norm(ctx, x, m->lnf_w, m->lnf_b, CLIP_LN_EPS);
}
