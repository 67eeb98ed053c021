/* Stable Diffusion UNet (CompVis ldm openaimodel.UNetModel with SpatialTransformer, the SD 1.x
 * layout, legacy=False): loading from checkpoint shapes and forward with autograd.
 *
 * Forward memory: without gradient recording every block runs between an arena mark and a
 * release that keeps only its output, so peak memory is the skip tensors plus one block's
 * intermediates. With recording, blocks run through gradient checkpointing (recomputed during
 * backward) unless grad_checkpointing is turned off; level 2 also checkpoints the whole call. */
#include "asam/error.h"
#include "models/sd/sd_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading ------------------------------------------------------------------------------ */

static sd_resblock *load_resblock(sd_loader *L, const char *base, int cin, int temb) {
    sd_resblock *r = calloc(1, sizeof *r);
    if (!r) {
        asam_error("out of memory");
        L->b.failed = 1;
        return NULL;
    }
    if (sd_resblock_load(L, r, base, cin, temb, &sd_resblock_unet)) {
        free(r);
        return NULL;
    }
    return r;
}

static sd_transformer *load_transformer(sd_loader *L, const char *base, int C) {
    int64_t s[8];
    sd_transformer *st = calloc(1, sizeof *st);
    if (!st) {
        asam_error("out of memory");
        L->b.failed = 1;
        return NULL;
    }
    while (sd_has(L, "%s.transformer_blocks.%d.norm1.weight", base, st->depth)) st->depth++;
    char key[256];
    snprintf(key, sizeof key, "%s.transformer_blocks.0.attn2.to_k.weight", base);
    if (st->depth == 0 || sd_probe(L, key, s) != 2) {
        L->b.failed = 1;
        asam_error("%s: missing weight %s (SpatialTransformer)", sd_loader_path(L), key);
        return st;
    }
    st->C = C;
    st->context_dim = (int)s[1];
    st->heads = SD_UNET_HEADS;
    if (C % st->heads) {
        L->b.failed = 1;
        asam_error("%s: %s: %d channels do not split into %d heads", sd_loader_path(L), base, C,
                   st->heads);
        return st;
    }
    st->norm_w = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm.weight", base);
    st->norm_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm.bias", base);
    st->proj_in_w = sd_paramf(L, 2, C, C, 0, 0, "%s.proj_in.weight", base);
    st->proj_in_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.proj_in.bias", base);
    st->proj_out_w = sd_paramf(L, 2, C, C, 0, 0, "%s.proj_out.weight", base);
    st->proj_out_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.proj_out.bias", base);
    st->blocks = calloc((size_t)st->depth, sizeof *st->blocks);
    if (!st->blocks) {
        asam_error("out of memory");
        L->b.failed = 1;
        return st;
    }
    for (int d = 0; d < st->depth; d++) {
        sd_tblock *b = &st->blocks[d];
        char tb[192];
        snprintf(tb, sizeof tb, "%s.transformer_blocks.%d", base, d);
        snprintf(key, sizeof key, "%s.ff.net.0.proj.weight", tb);
        if (sd_probe(L, key, s) != 2 || s[0] % 2) {
            L->b.failed = 1;
            asam_error("%s: missing or odd-sized weight %s", sd_loader_path(L), key);
            return st;
        }
        int F = (int)(s[0] / 2), Cc = st->context_dim;
        b->ff_inner = F;
        b->norm1_w = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm1.weight", tb);
        b->norm1_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm1.bias", tb);
        b->attn1_q = sd_paramf(L, 2, C, C, 0, 0, "%s.attn1.to_q.weight", tb);
        b->attn1_k = sd_paramf(L, 2, C, C, 0, 0, "%s.attn1.to_k.weight", tb);
        b->attn1_v = sd_paramf(L, 2, C, C, 0, 0, "%s.attn1.to_v.weight", tb);
        b->attn1_out_w = sd_paramf(L, 2, C, C, 0, 0, "%s.attn1.to_out.0.weight", tb);
        b->attn1_out_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.attn1.to_out.0.bias", tb);
        b->norm2_w = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm2.weight", tb);
        b->norm2_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm2.bias", tb);
        b->attn2_q = sd_paramf(L, 2, C, C, 0, 0, "%s.attn2.to_q.weight", tb);
        b->attn2_k = sd_paramf(L, 2, C, Cc, 0, 0, "%s.attn2.to_k.weight", tb);
        b->attn2_v = sd_paramf(L, 2, C, Cc, 0, 0, "%s.attn2.to_v.weight", tb);
        b->attn2_out_w = sd_paramf(L, 2, C, C, 0, 0, "%s.attn2.to_out.0.weight", tb);
        b->attn2_out_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.attn2.to_out.0.bias", tb);
        b->norm3_w = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm3.weight", tb);
        b->norm3_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.norm3.bias", tb);
        b->ff0_w = sd_paramf(L, 2, 2 * F, C, 0, 0, "%s.ff.net.0.proj.weight", tb);
        b->ff0_b = sd_paramf(L, 1, 2 * F, 0, 0, 0, "%s.ff.net.0.proj.bias", tb);
        b->ff2_w = sd_paramf(L, 2, C, F, 0, 0, "%s.ff.net.2.weight", tb);
        b->ff2_b = sd_paramf(L, 1, C, 0, 0, 0, "%s.ff.net.2.bias", tb);
    }
    return st;
}

/* Number of ResBlocks per level: CompVis files have their first Downsample at
 * input_blocks.{nrb+1}.0.op; diffusers files list down_blocks.0.resnets.*. */
static int detect_num_res_blocks(sd_loader *L) {
    char key[128];
    if (L->naming == SD_NAMES_COMPVIS) {
        for (int i = 1; i < 64; i++) {
            snprintf(key, sizeof key, "input_blocks.%d.0.op.weight", i);
            if (sd_raw_has(L, key)) return i - 1;
        }
        return -1;
    }
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "down_blocks.0.resnets.%d.conv1.weight", n);
        if (!sd_raw_has(L, key)) break;
    }
    return n ? n : -1;
}

/* Long on purpose: binds the blocks in the order openaimodel.UNetModel.__init__ builds them
 * (input blocks, middle, output blocks), widths carried from one block to the next. */
int sd_unet_load_into(struct asam_unet *u, sd_loader *L, int encoder_only) {
    int64_t s[8];
    const char *path = sd_loader_path(L);
    if (sd_probe(L, "input_blocks.0.0.weight", s) != 4)
        return asam_error("%s: no UNet weights (input_blocks.0.0.weight%s%s not found)", path,
                          L->naming == SD_NAMES_COMPVIS ? " under prefix " : "",
                          L->naming == SD_NAMES_COMPVIS ? L->b.prefix : "");
    u->model_channels = (int)s[0];
    u->in_channels = (int)s[1];
    int nrb = detect_num_res_blocks(L);
    if (nrb < 1) return asam_error("%s: cannot find the UNet's first Downsample", path);
    u->num_res_blocks = L->num_res_blocks = nrb;
    u->num_heads = SD_UNET_HEADS;
    u->grad_checkpointing = 1;
    int mc = u->model_channels;
    if (sd_probe(L, "time_embed.0.weight", s) != 2 || s[1] != mc)
        return asam_error("%s: missing or bad time_embed.0.weight", path);
    u->temb_dim = (int)s[0];
    int T = u->temb_dim;
    u->time_embed0_w = sd_paramf(L, 2, T, mc, 0, 0, "time_embed.0.weight");
    u->time_embed0_b = sd_paramf(L, 1, T, 0, 0, 0, "time_embed.0.bias");
    u->time_embed2_w = sd_paramf(L, 2, T, T, 0, 0, "time_embed.2.weight");
    u->time_embed2_b = sd_paramf(L, 1, T, 0, 0, 0, "time_embed.2.bias");

    /* input blocks: count them, then walk levels */
    int n_in = 1;
    while (sd_has(L, "input_blocks.%d.0.in_layers.2.weight", n_in) ||
           sd_has(L, "input_blocks.%d.0.op.weight", n_in))
        n_in++;
    if (n_in % (nrb + 1))
        return asam_error("%s: %d input blocks do not form levels of %d ResBlocks + Downsample",
                          path, n_in, nrb);
    u->n_in = n_in;
    u->n_levels = n_in / (nrb + 1);
    u->input_blocks = calloc((size_t)n_in, sizeof *u->input_blocks);
    u->skip_ch = calloc((size_t)n_in, sizeof *u->skip_ch);
    if (!u->input_blocks || !u->skip_ch) return asam_error("out of memory");
    char base[128];
    sd_block *b0 = &u->input_blocks[0];
    b0->conv_w = sd_paramf(L, 4, mc, u->in_channels, 3, 3, "input_blocks.0.0.weight");
    b0->conv_b = sd_paramf(L, 1, mc, 0, 0, 0, "input_blocks.0.0.bias");
    b0->conv_stride = 1;
    b0->cout = u->skip_ch[0] = mc;
    int ch = mc;
    u->context_dim = -1;
    for (int i = 1; i < n_in && !L->b.failed; i++) {
        sd_block *b = &u->input_blocks[i];
        if ((i - 1) % (nrb + 1) == nrb) {
            b->conv_w = sd_paramf(L, 4, ch, ch, 3, 3, "input_blocks.%d.0.op.weight", i);
            b->conv_b = sd_paramf(L, 1, ch, 0, 0, 0, "input_blocks.%d.0.op.bias", i);
            b->conv_stride = 2;
        } else {
            snprintf(base, sizeof base, "input_blocks.%d.0", i);
            b->res = load_resblock(L, base, ch, T);
            if (!b->res) break;
            ch = b->res->cout;
            if (sd_has(L, "input_blocks.%d.1.norm.weight", i)) {
                snprintf(base, sizeof base, "input_blocks.%d.1", i);
                b->attn = load_transformer(L, base, ch);
            }
        }
        b->cout = u->skip_ch[i] = ch;
    }
    /* middle block: Res, ST, Res */
    if (!L->b.failed) {
        u->middle[0].res = load_resblock(L, "middle_block.0", ch, T);
        u->middle[1].attn = load_transformer(L, "middle_block.1", ch);
        u->middle[2].res = load_resblock(L, "middle_block.2", ch, T);
        for (int j = 0; j < 3; j++) u->middle[j].cout = ch;
    }
    if (!encoder_only && !L->b.failed) {
        u->n_out = n_in;
        u->output_blocks = calloc((size_t)n_in, sizeof *u->output_blocks);
        if (!u->output_blocks) return asam_error("out of memory");
        for (int k = 0; k < u->n_out && !L->b.failed; k++) {
            sd_block *b = &u->output_blocks[k];
            int skip = u->skip_ch[n_in - 1 - k];
            snprintf(base, sizeof base, "output_blocks.%d.0", k);
            b->concat_skip = 1;
            b->res = load_resblock(L, base, ch + skip, T);
            if (!b->res) break;
            ch = b->res->cout;
            int next = 1;
            if (sd_has(L, "output_blocks.%d.1.norm.weight", k)) {
                snprintf(base, sizeof base, "output_blocks.%d.1", k);
                b->attn = load_transformer(L, base, ch);
                next = 2;
            }
            if (sd_has(L, "output_blocks.%d.%d.conv.weight", k, next)) {
                b->upsample = 1;
                b->conv_stride = 1;
                b->conv_w =
                    sd_paramf(L, 4, ch, ch, 3, 3, "output_blocks.%d.%d.conv.weight", k, next);
                b->conv_b = sd_paramf(L, 1, ch, 0, 0, 0, "output_blocks.%d.%d.conv.bias", k, next);
            }
            b->cout = ch;
        }
        if (!L->b.failed && sd_probe(L, "out.2.weight", s) == 4) u->out_channels = (int)s[0];
        u->out_norm_w = sd_paramf(L, 1, ch, 0, 0, 0, "out.0.weight");
        u->out_norm_b = sd_paramf(L, 1, ch, 0, 0, 0, "out.0.bias");
        u->out_conv_w = sd_paramf(L, 4, u->out_channels, ch, 3, 3, "out.2.weight");
        u->out_conv_b = sd_paramf(L, 1, u->out_channels, 0, 0, 0, "out.2.bias");
    }
    if (L->b.failed) return -1;
    /* every transformer must agree on the context width */
    for (int pass = 0; pass < 3; pass++) {
        sd_block *arr = pass == 0 ? u->input_blocks : pass == 1 ? u->middle : u->output_blocks;
        int n = pass == 0 ? u->n_in : pass == 1 ? 3 : u->n_out;
        for (int i = 0; i < n; i++) {
            if (!arr[i].attn) continue;
            if (u->context_dim < 0) u->context_dim = arr[i].attn->context_dim;
            if (arr[i].attn->context_dim != u->context_dim)
                return asam_error("%s: transformers disagree on the context width (%d vs %d)", path,
                                  arr[i].attn->context_dim, u->context_dim);
        }
    }
    if (u->context_dim < 0) return asam_error("%s: the UNet has no cross-attention", path);
    return 0;
}

static void free_blocks(sd_block *arr, int n) {
    for (int i = 0; arr && i < n; i++) {
        free(arr[i].res);
        if (arr[i].attn) free(arr[i].attn->blocks);
        free(arr[i].attn);
    }
}

void sd_unet_release(struct asam_unet *u) {
    free_blocks(u->input_blocks, u->n_in);
    free_blocks(u->middle, 3);
    free_blocks(u->output_blocks, u->n_out);
    free(u->input_blocks);
    free(u->output_blocks);
    free(u->skip_ch);
    sd_loader_free(&u->weights);
}

int asam_unet_load(const asam_checkpoint *ck, const char *prefix, asam_unet **out) {
    return sd_unet_load_frozen(ck, prefix, 0, out);
}

int sd_unet_load_frozen(const asam_checkpoint *ck, const char *prefix, int frozen,
                        asam_unet **out) {
    *out = NULL;
    asam_unet *u = calloc(1, sizeof *u);
    if (!u) return asam_error("out of memory");
    prefix = prefix ? prefix : "";
    /* "" on a CompVis single file means its UNet; "" with diffusers keys -> diffusers layout */
    if (!*prefix && !sd_ckpt_has(ck, "input_blocks.0.0.weight") &&
        sd_ckpt_has(ck, "model.diffusion_model.input_blocks.0.0.weight"))
        prefix = "model.diffusion_model.";
    int diffusers = !*prefix && !sd_ckpt_has(ck, "input_blocks.0.0.weight") &&
                    sd_ckpt_has(ck, "conv_in.weight");
    sd_loader_init(&u->weights, ck, prefix, diffusers ? SD_NAMES_DIFFUSERS_UNET : SD_NAMES_COMPVIS);
    u->weights.b.hold_weights = frozen;
    if (sd_unet_load_into(u, &u->weights, 0) != 0) {
        sd_unet_release(u);
        free(u);
        return -1;
    }
    *out = u;
    return 0;
}

/* ---- forward ------------------------------------------------------------------------------ */

void asam_unet_free(asam_unet *m) {
    if (!m) return;
    sd_unet_release(m);
    free(m);
}

int asam_unet_context_dim(const asam_unet *m) {
    return m->context_dim;
}

int asam_unet_in_channels(const asam_unet *m) {
    return m->in_channels;
}

int asam_unet_n_control(const asam_unet *m) {
    return m->n_in + 1;
}

/* ldm timestep_embedding: [cos(t f_i), sin(t f_i)], f_i = exp(-ln(10000) i / half), in float32
 * in the same operation order as torch so that large t (981) rounds alike. */
// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/util.py:151 (timestep_embedding)
static asam_tensor *timestep_embedding(asam_ctx *ctx, const float *t, int64_t B, int dim) {
    asam_tensor *e = asam_new(ctx, ASAM_SHAPE(B, dim));
    if (!e) return NULL;
    int half = dim / 2;
    const float neg_log = (float)(-log(10000.0));
    for (int64_t b = 0; b < B; b++) {
        float *row = e->data + b * dim;
        for (int i = 0; i < half; i++) {
            float f = expf(neg_log * (float)i / (float)half);
            float a = t[b] * f;
            row[i] = cosf(a);
            row[half + i] = sinf(a);
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
    return e;
}

asam_tensor *sd_time_embed(asam_ctx *ctx, const struct asam_unet *u, const float *t, int64_t B) {
    asam_tensor *e = timestep_embedding(ctx, t, B, u->model_channels);
    e = asam_linear(ctx, e, u->time_embed0_w, u->time_embed0_b);
    e = asam_silu(ctx, e);
    return asam_linear(ctx, e, u->time_embed2_w, u->time_embed2_b);
}

/* ldm CrossAttention: q from x, k/v from kv (x itself for self-attention), scale d^-0.5. */
// ref: CompVis/stable-diffusion ldm/modules/attention.py:170 (CrossAttention.forward)
/* Returns r + the attention's output projection (the transformer's residual add). */
static asam_tensor *cross_attention(asam_ctx *ctx, asam_tensor *r, asam_tensor *x, asam_tensor *kv,
                                    int heads, asam_tensor *wq, asam_tensor *wk, asam_tensor *wv,
                                    asam_tensor *wo, asam_tensor *bo) {
    asam_tensor *qkv[3] = {NULL, NULL, NULL};
    if (x == kv) { // self-attention: the three projections of one input in one pass
        asam_linear_many(ctx, x, 3, (asam_tensor *const[]){wq, wk, wv}, NULL, qkv);
    } else {
        qkv[0] = asam_linear(ctx, x, wq, NULL);
        asam_linear_many(ctx, kv, 2, (asam_tensor *const[]){wk, wv}, NULL, qkv + 1);
    }
    asam_tensor *q = qkv[0], *k = qkv[1], *v = qkv[2];
    asam_attn_opts opts = {0};
    asam_tensor *o = asam_attention_heads(ctx, q, k, v, heads, &opts); // (B, N, heads d)
    return asam_linear_add(ctx, o, wo, bo, r); // r + out projection: one pass in inference
}

/* GEGLU feed-forward: proj -> (value, gate) halves -> value * gelu(gate) -> linear. */
// ref: CompVis/stable-diffusion ldm/modules/attention.py:37 (GEGLU), :47 (FeedForward)
/* Returns r + the feed-forward's output (the transformer's residual add). */
static asam_tensor *geglu_ff(asam_ctx *ctx, const sd_tblock *b, asam_tensor *r, asam_tensor *x) {
    // proj (B, N, 2F) then value * gelu(gate) (B, N, F): one pass when nothing is recorded
    asam_tensor *y = asam_linear_geglu(ctx, x, b->ff0_w, b->ff0_b);
    return asam_linear_add(ctx, y, b->ff2_w, b->ff2_b, r);
}

// ref: CompVis/stable-diffusion ldm/modules/attention.py:250 (SpatialTransformer.forward), :208
//   (BasicTransformerBlock.forward)
static asam_tensor *transformer_forward(asam_ctx *ctx, const sd_transformer *st, asam_tensor *x,
                                        asam_tensor *context) {
    if (!x) return NULL;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    asam_tensor *h = asam_group_norm(ctx, x, SD_GN_GROUPS, st->norm_w, st->norm_b, SD_ST_EPS);
    h = asam_permute(ctx, h, (const int[]){0, 2, 3, 1}); // b c h w -> b (h w) c
    h = asam_reshape(ctx, h, ASAM_SHAPE(B, H * W, C));
    h = asam_linear(ctx, h, st->proj_in_w, st->proj_in_b); // 1x1 conv == per-token linear
    for (int d = 0; d < st->depth; d++) {
        const sd_tblock *b = &st->blocks[d];
        asam_tensor *n = asam_layer_norm(ctx, h, b->norm1_w, b->norm1_b, SD_LN_EPS);
        h = cross_attention(ctx, h, n, n, st->heads, b->attn1_q, b->attn1_k, b->attn1_v,
                            b->attn1_out_w, b->attn1_out_b); // h + attn1(norm1(h))
        n = asam_layer_norm(ctx, h, b->norm2_w, b->norm2_b, SD_LN_EPS);
        h = cross_attention(ctx, h, n, context, st->heads, b->attn2_q, b->attn2_k, b->attn2_v,
                            b->attn2_out_w, b->attn2_out_b); // h + attn2(norm2(h), context)
        n = asam_layer_norm(ctx, h, b->norm3_w, b->norm3_b, SD_LN_EPS);
        h = geglu_ff(ctx, b, h, n); // h + ff(norm3(h))
    }
    h = asam_linear(ctx, h, st->proj_out_w, st->proj_out_b);
    h = asam_reshape(ctx, h, ASAM_SHAPE(B, H, W, C));
    h = asam_permute(ctx, h, (const int[]){0, 3, 1, 2});
    return asam_add(ctx, h, x);
}

static asam_tensor *block_forward(asam_ctx *ctx, const sd_block *blk, asam_tensor *h,
                                  asam_tensor *emb, asam_tensor *context, asam_tensor *skip) {
    if (blk->concat_skip) h = asam_concat(ctx, (asam_tensor *const[]){h, skip}, 2, 1);
    if (blk->res) h = sd_resblock_forward(ctx, blk->res, h, emb, SD_RES_EPS);
    if (blk->attn) h = transformer_forward(ctx, blk->attn, h, context);
    if (blk->conv_w) {
        if (blk->upsample && h) h = asam_resize_nearest(ctx, h, 2 * h->shape[2], 2 * h->shape[3]);
        h = asam_conv2d(ctx, h, blk->conv_w, blk->conv_b, blk->conv_stride, 1);
    }
    return h;
}

/* Segment for gradient checkpointing: inputs h, emb, context[, skip]; user = the block. */
static asam_tensor *block_segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    const sd_block *blk = user;
    return block_forward(ctx, blk, in[0], in[1], in[2], n > 3 ? in[3] : NULL);
}

asam_tensor *sd_run_block(asam_ctx *ctx, const struct asam_unet *u, const sd_block *blk,
                          asam_tensor *h, asam_tensor *emb, asam_tensor *context,
                          asam_tensor *skip) {
    if (!h || !emb || !context || (blk->concat_skip && !skip)) return NULL;
    if (!asam_ctx_grad_enabled(ctx)) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *out = block_forward(ctx, blk, h, emb, context, skip);
        return out ? asam_ctx_release_keep(ctx, m, out) : NULL;
    }
    if (!u->grad_checkpointing) return block_forward(ctx, blk, h, emb, context, skip);
    asam_tensor *in[4] = {h, emb, context, skip};
    return asam_grad_checkpoint(ctx, block_segment, in, skip ? 4 : 3, (void *)blk);
}

int sd_unet_check_inputs(asam_ctx *ctx, const struct asam_unet *u, const char *who, asam_tensor *x,
                         const float *t, asam_tensor *context) {
    if (!x || !context || !t) {
        if (asam_ctx_ok(ctx)) asam_ctx_fail(ctx, "%s: missing input", who);
        return -1;
    }
    char a[96], b[96];
    asam_shape_str(x, a, sizeof a);
    asam_shape_str(context, b, sizeof b);
    int64_t mult = (int64_t)1 << (u->n_levels - 1);
    if (x->ndim != 4 || x->shape[1] != u->in_channels || x->shape[2] % mult || x->shape[3] % mult ||
        x->shape[2] == 0 || x->shape[3] == 0) {
        asam_ctx_fail(ctx,
                      "%s: latent of shape %s, expected (B, %d, h, w) with h, w multiples of %lld",
                      who, a, u->in_channels, (long long)mult);
        return -1;
    }
    if (context->ndim != 3 || context->shape[0] != x->shape[0] ||
        context->shape[2] != u->context_dim) {
        asam_ctx_fail(ctx, "%s: context of shape %s, expected (%lld, N, %d)", who, b,
                      (long long)x->shape[0], u->context_dim);
        return -1;
    }
    return 0;
}

// ref: CompVis/stable-diffusion ldm/modules/diffusionmodules/openaimodel.py:710
//   (UNetModel.forward); control residuals as lllyasviel/ControlNet cldm/cldm.py:23
//   (ControlledUnetModel.forward)
static asam_tensor *unet_forward(asam_ctx *ctx, const asam_unet *m, asam_tensor *x, const float *t,
                                 asam_tensor *context, asam_tensor *const *control,
                                 float control_scale) {
    int64_t B = x->shape[0];
    asam_tensor *emb = sd_time_embed(ctx, m, t, B);
    asam_tensor *hs[64];
    if (m->n_in > 64) return asam_ctx_fail(ctx, "unet: too many blocks");
    asam_tensor *h = x;
    for (int i = 0; i < m->n_in; i++)
        hs[i] = h = sd_run_block(ctx, m, &m->input_blocks[i], h, emb, context, NULL);
    for (int j = 0; j < 3; j++) h = sd_run_block(ctx, m, &m->middle[j], h, emb, context, NULL);
    if (control) {
        for (int i = 0; i <= m->n_in; i++) {
            asam_tensor *want = i < m->n_in ? hs[i] : h;
            if (!control[i] || !want || !asam_same_shape(control[i], want)) {
                char a[96] = "NULL", b[96] = "?";
                if (control[i]) asam_shape_str(control[i], a, sizeof a);
                if (want) asam_shape_str(want, b, sizeof b);
                return asam_ctx_fail(ctx, "unet: control residual %d has shape %s, expected %s", i,
                                     a, b);
            }
        }
        h = asam_add(ctx, h, asam_scale(ctx, control[m->n_in], control_scale));
    }
    for (int k = 0; k < m->n_out; k++) {
        int si = m->n_in - 1 - k;
        asam_tensor *skip = hs[si];
        if (control) skip = asam_add(ctx, skip, asam_scale(ctx, control[si], control_scale));
        h = sd_run_block(ctx, m, &m->output_blocks[k], h, emb, context, skip);
    }
    h = asam_group_norm_silu(ctx, h, SD_GN_GROUPS, m->out_norm_w, m->out_norm_b, SD_RES_EPS);
    h = asam_conv2d(ctx, h, m->out_conv_w, m->out_conv_b, 1, 1);
    return asam_ctx_ok(ctx) ? h : NULL;
}

/* Whole-call checkpointing (level 2): the call's arguments, kept in the arena until backward. */
typedef struct {
    const asam_unet *m;
    float scale;
    int has_control;
    float t[]; /* B timesteps */
} unet_call;

static asam_tensor *unet_segment(asam_ctx *ctx, asam_tensor *const *in, int n, void *user) {
    const unet_call *c = user;
    return unet_forward(ctx, c->m, in[0], c->t, in[1], c->has_control ? in + 2 : NULL, c->scale);
}

asam_tensor *asam_unet_forward(asam_ctx *ctx, const asam_unet *m, asam_tensor *x, const float *t,
                               asam_tensor *context, asam_tensor *const *control,
                               float control_scale) {
    if (!asam_ctx_ok(ctx)) return NULL;
    if (sd_unet_check_inputs(ctx, m, "unet", x, t, context) != 0) return NULL;
    if (m->grad_checkpointing < 2 || !asam_ctx_grad_enabled(ctx))
        return unet_forward(ctx, m, x, t, context, control, control_scale);
    /* keep only the inputs; backward re-runs the UNet (itself checkpointed per block) */
    int64_t B = x->shape[0];
    unet_call *c = asam_ctx_alloc(ctx, sizeof *c + (size_t)B * sizeof(float));
    if (!c) return asam_ctx_fail(ctx, "unet: out of memory");
    c->m = m;
    c->scale = control_scale;
    c->has_control = control != NULL;
    memcpy(c->t, t, (size_t)B * sizeof(float));
    asam_tensor *in[2 + 64] = {x, context};
    int n = 2;
    for (int i = 0; control && i <= m->n_in; i++) {
        if (!control[i]) return asam_ctx_fail(ctx, "unet: control residual %d is missing", i);
        in[n++] = control[i];
    }
    return asam_grad_checkpoint(ctx, unet_segment, in, n, c);
}

void asam_unet_set_checkpointing(asam_unet *m, int level) {
    m->grad_checkpointing = level < 0 ? 0 : level > 2 ? 2 : level;
}

/* ---- FLOP count (benchmarks) -------------------------------------------------------------- */

static double conv_flops(const asam_tensor *w, int64_t ho, int64_t wo) {
    return w ? 2.0 * (double)w->numel * (double)(ho * wo) : 0.0;
}

static double res_flops(const sd_resblock *r, int64_t h, int64_t w) {
    return conv_flops(r->conv1_w, h, w) + conv_flops(r->conv2_w, h, w) +
           conv_flops(r->skip_w, h, w);
}

static double st_flops(const sd_transformer *st, int64_t h, int64_t w, int64_t M) {
    double N = (double)(h * w), C = st->C, Cc = st->context_dim;
    double f = 2 * 2 * N * C * C; /* proj_in, proj_out */
    for (int d = 0; d < st->depth; d++) {
        double F = st->blocks[d].ff_inner;
        f += 4 * 2 * N * C * C + 2 * 2 * N * N * C;                      /* self-attention */
        f += 2 * 2 * N * C * C + 2 * 2 * M * Cc * C + 2 * 2 * N * M * C; /* cross-attention */
        f += 2 * N * C * 2 * F + 2 * N * F * C;                          /* GEGLU feed-forward */
    }
    return f;
}

static double block_flops(const sd_block *b, int64_t *h, int64_t *w, int64_t M) {
    double f = 0;
    if (b->res) f += res_flops(b->res, *h, *w);
    if (b->attn) f += st_flops(b->attn, *h, *w, M);
    if (b->conv_w) {
        if (b->upsample) *h *= 2, *w *= 2;
        if (b->conv_stride == 2) *h /= 2, *w /= 2;
        f += conv_flops(b->conv_w, *h, *w);
    }
    return f;
}

double asam_unet_flops(const asam_unet *u, int64_t h, int64_t w, int64_t ctx_len) {
    double f = 0;
    for (int i = 0; i < u->n_in; i++) f += block_flops(&u->input_blocks[i], &h, &w, ctx_len);
    for (int j = 0; j < 3; j++) f += block_flops(&u->middle[j], &h, &w, ctx_len);
    for (int k = 0; k < u->n_out; k++) f += block_flops(&u->output_blocks[k], &h, &w, ctx_len);
    return f + conv_flops(u->out_conv_w, h, w);
}

int asam_unet_model_channels(const asam_unet *m) {
    return m->model_channels;
}

int asam_unet_n_input_blocks(const asam_unet *m) {
    return m->n_in;
}

int asam_unet_input_channels_out(const asam_unet *m, int i) {
    return i >= 0 && i < m->n_in ? m->skip_ch[i] : 0;
}

int asam_unet_middle_channels(const asam_unet *m) {
    return m->middle[2].cout;
}

int asam_unet_params(const asam_unet *m, asam_tensor ***params, const char ***names, size_t *n) {
    *params = m->weights.b.params;
    *names = (const char **)m->weights.b.names;
    *n = m->weights.b.n;
    return 0;
}
