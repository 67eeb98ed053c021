/* UNet parity with CompVis openaimodel.UNetModel on the tiny SD checkpoint: eps at t=981 and
 * t=1, every block's output (via a hook-free re-run of the blocks), the guidance batch and a
 * mixed-timestep batch. */
#include "sd_test_util.h"

#include "models/sd/sd_internal.h"

/* Re-run the UNet block by block and compare each intermediate with inter.* (t = 981). */
static void check_intermediates(asam_ctx *ctx, const asam_unet *u, const asam_checkpoint *cs) {
    asam_tensor *x = sd_case(ctx, cs, "x"), *c = sd_case(ctx, cs, "context");
    float t = 981.0f;
    asam_tensor *emb = sd_time_embed(ctx, u, &t, 1);
    sd_check(emb, cs, "inter.time_embed", 1e-4);
    asam_tensor *hs[64], *h = x;
    char name[64];
    for (int i = 0; i < u->n_in; i++) {
        hs[i] = h = sd_run_block(ctx, u, &u->input_blocks[i], h, emb, c, NULL);
        snprintf(name, sizeof name, "inter.input_blocks.%d", i);
        sd_check(h, cs, name, 1e-4);
    }
    for (int j = 0; j < 3; j++) h = sd_run_block(ctx, u, &u->middle[j], h, emb, c, NULL);
    sd_check(h, cs, "inter.middle_block", 1e-4);
    for (int k = 0; k < u->n_out; k++) {
        h = sd_run_block(ctx, u, &u->output_blocks[k], h, emb, c, hs[u->n_in - 1 - k]);
        snprintf(name, sizeof name, "inter.output_blocks.%d", k);
        sd_check(h, cs, name, 1e-4);
    }
    SD_CHECK_OK(ctx, "intermediates");
}

/* inter.t_emb: the raw sinusoidal embedding = input of time_embed.0; recover it by checking
 * the embedding MLP's first layer against it instead (the sinusoid itself is internal). */
static void check_t_emb(asam_ctx *ctx, const asam_unet *u, const asam_checkpoint *cs) {
    asam_tensor *te = sd_case(ctx, cs, "inter.t_emb");
    asam_tensor *e = asam_linear(ctx, te, u->time_embed0_w, u->time_embed0_b);
    e = asam_linear(ctx, asam_silu(ctx, e), u->time_embed2_w, u->time_embed2_b);
    sd_check(e, cs, "inter.time_embed", 1e-4);
    /* and the sinusoid directly: cos first, then sin */
    int half = u->model_channels / 2;
    float ref[512];
    for (int i = 0; i < half; i++) {
        float f = expf((float)(-log(10000.0)) * (float)i / (float)half);
        ref[i] = cosf(981.0f * f);
        ref[half + i] = sinf(981.0f * f);
    }
    CHECK_CLOSE(ref, te->data, (size_t)(2 * half), 1e-5,
                "inter.t_emb (sinusoid order/frequencies)");
}

/* norm_eps: each norm on low-variance inputs, with the eps the models use. */
static void check_norm_eps(asam_ctx *ctx, const asam_checkpoint *ck, const asam_unet *u) {
    asam_checkpoint *cn = sd_open("sd_tiny/norm_eps.safetensors");
    asam_tensor *x = sd_case(ctx, cn, "x_gn"), *xl = sd_case(ctx, cn, "x_ln");
    sd_check(asam_group_norm(ctx, x, SD_GN_GROUPS, u->out_norm_w, u->out_norm_b, SD_RES_EPS), cn,
             "unet_out0", 1e-3);
    const sd_resblock *r = u->input_blocks[1].res;
    sd_check(asam_group_norm(ctx, x, SD_GN_GROUPS, r->norm1_w, r->norm1_b, SD_RES_EPS), cn,
             "unet_resblock_in0", 1e-3);
    const sd_transformer *st = u->input_blocks[1].attn;
    sd_check(asam_group_norm(ctx, x, SD_GN_GROUPS, st->norm_w, st->norm_b, SD_ST_EPS), cn,
             "unet_st_norm", 1e-3);
    sd_check(asam_layer_norm(ctx, xl, st->blocks[0].norm1_w, st->blocks[0].norm1_b, SD_LN_EPS), cn,
             "unet_ln_norm1", 1e-3);
    asam_tensor *w = sd_case(ctx, ck, "first_stage_model.decoder.norm_out.weight");
    asam_tensor *b = sd_case(ctx, ck, "first_stage_model.decoder.norm_out.bias");
    sd_check(asam_group_norm(ctx, x, SD_GN_GROUPS, w, b, SD_VAE_EPS), cn, "vae_dec_norm_out", 1e-3);
    SD_CHECK_OK(ctx, "norm_eps");
    asam_checkpoint_close(cn);
}

int main(void) {
    asam_checkpoint *ck = sd_open_model();
    asam_checkpoint *cs = sd_open("sd_tiny/unet_fwd.safetensors");
    asam_unet *u = sd_load_unet(ck);
    CHECK(asam_unet_context_dim(u) == 64, "context dim %d", asam_unet_context_dim(u));
    CHECK(asam_unet_in_channels(u) == 4, "in channels %d", asam_unet_in_channels(u));
    CHECK(u->model_channels == 32 && u->num_res_blocks == 2 && u->n_levels == 4 && u->n_in == 12,
          "config mc %d nrb %d levels %d n_in %d", u->model_channels, u->num_res_blocks,
          u->n_levels, u->n_in);
    CHECK(u->weights.b.n == 684 - 0, "loaded %zu UNet tensors, expected 684", u->weights.b.n);

    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = sd_case(ctx, cs, "x"), *c = sd_case(ctx, cs, "context");
    int64_t ts[2];
    sd_case_i64(cs, "timesteps", ts);
    for (int i = 0; i < 2; i++) {
        float t = (float)ts[i];
        asam_tensor *eps = asam_unet_forward(ctx, u, x, &t, c, NULL, 1.0f);
        SD_CHECK_OK(ctx, "unet forward");
        char name[32];
        snprintf(name, sizeof name, "eps_t%lld", (long long)ts[i]);
        sd_check(eps, cs, name, 1e-4);
    }
    check_t_emb(ctx, u, cs);
    check_intermediates(ctx, u, cs);
    check_norm_eps(ctx, ck, u);

    /* batch 2: guidance batch and per-sample timesteps */
    asam_checkpoint *cb = sd_open("sd_tiny/unet_cfg_batch.safetensors");
    asam_ctx_reset(ctx);
    asam_ctx_set_grad(ctx, 0);
    int64_t ti[2];
    sd_case_i64(cb, "t_in", ti);
    float tf[2] = {(float)ti[0], (float)ti[1]};
    asam_tensor *c_in = sd_case(ctx, cb, "c_in");
    asam_tensor *eps = asam_unet_forward(ctx, u, sd_case(ctx, cb, "x_in"), tf, c_in, NULL, 1.0f);
    SD_CHECK_OK(ctx, "cfg batch");
    sd_check(eps, cb, "eps", 1e-4);
    if (eps) {
        int64_t n = eps->numel / 2;
        float *cfg = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            cfg[i] = eps->data[i] + 7.5f * (eps->data[n + i] - eps->data[i]);
        sd_compare(cfg, n, cb, "eps_cfg", 1e-4, "eps_cfg");
        free(cfg);
    }
    sd_case_i64(cb, "t_mixed", ti);
    tf[0] = (float)ti[0];
    tf[1] = (float)ti[1];
    eps = asam_unet_forward(ctx, u, sd_case(ctx, cb, "x_mixed"), tf, c_in, NULL, 1.0f);
    SD_CHECK_OK(ctx, "mixed batch");
    sd_check(eps, cb, "eps_mixed", 1e-4);

    /* bad input: one clear error, no crash */
    asam_ctx_reset(ctx);
    asam_tensor *bad = asam_zeros(ctx, ASAM_SHAPE(1, 3, 16, 16));
    float t1 = 1;
    CHECK(asam_unet_forward(ctx, u, bad, &t1, c_in, NULL, 1.0f) == NULL, "wrong latent accepted");
    CHECK(!asam_ctx_ok(ctx) && strstr(asam_ctx_error(ctx), "latent"), "error: %s",
          asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "(none)");
    if (asam_ctx_error(ctx)) printf("ok   bad latent -> %s\n", asam_ctx_error(ctx));

    asam_ctx_free(ctx);
    asam_unet_free(u);
    asam_checkpoint_close(cb);
    asam_checkpoint_close(cs);
    asam_checkpoint_close(ck);
    return test_finish("test_sd_unet");
}
