/* asam train-unet: SD 1.5's text-conditioned UNet at a small width, trained from scratch with
 * eps-prediction on the latents of a trained VAE (OUT/vae from train-vae) and the images'
 * captions through a frozen random CLIP text encoder (CLIP-mini); see asam/train_sd.h for the
 * loss and the resume contract.
 *
 * Caches (computed once, reused by a resumed run when their provenance matches): the VAE
 * posterior moments of every training image (OUT/unet.latents.safetensors) and, in memory, the
 * CLIP context of every caption and of "" (the encoder is frozen, so each is computed once). */
#include "asam/train_sd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asam/sd_mini.h"
#include "asam/train_state.h"
#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/train.h"
#include "asam/util.h"

#define UNET_STATE_FORMAT "asam-unet-train-state-1"
#define CACHE_FORMAT "asam-unet-latent-cache-1"
#define UNET_MAX_BATCH 256

void asam_unet_train_opts_default(asam_unet_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->model_channels = 32;
    o->n_levels = 3;
    o->mult[0] = 1, o->mult[1] = 2, o->mult[2] = 2;
    o->attn[0] = o->attn[1] = o->attn[2] = 1;
    o->num_res_blocks = 1;
    o->text_width = 32;
    o->text_layers = 2;
    o->text_heads = 4;
    o->lr = 3e-4f;
    o->weight_decay = 0.01;
    o->warmup = 200;
    o->batch = 16;
    o->uncond_share = 0.1f;
    o->steps = 1000;
    o->save_every = 100;
    o->verbose = 1;
}

static asam_sd_synth_unet_cfg unet_cfg(const asam_unet_train_opts *o) {
    asam_sd_synth_unet_cfg c = {.in_channels = 4,
                                .out_channels = 4,
                                .model_channels = o->model_channels,
                                .n_levels = o->n_levels,
                                .num_res_blocks = o->num_res_blocks,
                                .context_dim = o->text_width,
                                .depth = 1,
                                .hint_channels = 3};
    for (int i = 0; i < o->n_levels; i++) c.mult[i] = o->mult[i], c.attn[i] = o->attn[i];
    return c;
}

static int check_opts(const asam_unet_train_opts *o) {
    if (!o->data || !o->out) return asam_error("train-unet: --data and --out are required");
    if (o->model_channels < 32 || o->model_channels % 32)
        return asam_error("train-unet: --channels %d must be a multiple of 32 (GroupNorm(32))",
                          o->model_channels);
    if (o->n_levels < 1 || o->n_levels > 4)
        return asam_error("train-unet: --mult needs 1..4 levels");
    for (int i = 0; i < o->n_levels; i++)
        if ((o->model_channels * o->mult[i]) % 32)
            return asam_error("train-unet: --mult: level %d width %d is not a multiple of 32", i,
                              o->model_channels * o->mult[i]);
    if (o->num_res_blocks < 1 || o->num_res_blocks > 4)
        return asam_error("train-unet: --res-blocks %d outside 1..4", o->num_res_blocks);
    if (o->text_width < 8 || o->text_heads < 1 || o->text_width % o->text_heads ||
        o->text_layers < 1 || o->text_layers > 24)
        return asam_error("train-unet: CLIP-mini --text-width %d / --text-heads %d / "
                          "--text-layers %d is not a valid encoder",
                          o->text_width, o->text_heads, o->text_layers);
    if (o->batch < 1 || o->batch > UNET_MAX_BATCH)
        return asam_error("train-unet: --batch %d outside 1..%d", o->batch, UNET_MAX_BATCH);
    if (!(o->lr > 0)) return asam_error("train-unet: --lr must be positive");
    if (!(o->uncond_share >= 0 && o->uncond_share <= 1))
        return asam_error("train-unet: --uncond-share must be in [0, 1]");
    if (o->steps < 0) return asam_error("train-unet: --steps must not be negative");
    return 0;
}

static void list_str(char *buf, size_t n, const int *v, int cnt) {
    buf[0] = 0;
    for (int i = 0, len = 0; i < cnt; i++)
        len += snprintf(buf + len, n - (size_t)len, "%s%d", i ? "," : "", v[i]);
}

static asam_prov *make_prov(const asam_unet_train_opts *o, const char *vae_path) {
    asam_prov *p = asam_prov_new("train-unet");
    if (!p) return NULL;
    char m[64], a[64];
    list_str(m, sizeof m, o->mult, o->n_levels);
    list_str(a, sizeof a, o->attn, o->n_levels);
    asam_prov_int(p, "--channels", o->model_channels);
    asam_prov_str(p, "--mult", m);
    asam_prov_str(p, "--attn", a);
    asam_prov_int(p, "--res-blocks", o->num_res_blocks);
    asam_prov_int(p, "--text-width", o->text_width);
    asam_prov_int(p, "--text-layers", o->text_layers);
    asam_prov_int(p, "--text-heads", o->text_heads);
    asam_prov_num(p, "--lr", o->lr);
    asam_prov_num(p, "--weight-decay", o->weight_decay);
    asam_prov_int(p, "--warmup", o->warmup);
    asam_prov_int(p, "--batch", o->batch);
    asam_prov_num(p, "--uncond-share", o->uncond_share);
    asam_prov_int(p, "--seed", (long long)o->seed);
    asam_prov_file(p, "data", sdm_data_dir(o->data));
    asam_prov_file(p, "vae", vae_path);
    return p;
}

/* ---- the training set: cached VAE moments and caption contexts ---------------------------- */

typedef struct {
    size_t n;
    int h, w;        /* latent size */
    float *moments;  /* (n, 8, h, w): VAE posterior (mean, logvar) */
    float *context;  /* (n, 77, D): CLIP of each caption */
    float *null_ctx; /* (77, D): CLIP of "" */
} unet_data;

static void data_free(unet_data *d) {
    free(d->moments), free(d->context), free(d->null_ctx);
    memset(d, 0, sizeof *d);
}

/* The VAE moments of every image: from the cache when it was made from the same VAE and data,
 * else computed (one encoder pass per image) and cached. */
static int load_moments(const asam_unet_train_opts *o, asam_ctx *ctx, const asam_vae *vae,
                        const char *vae_path, asam_dataset *ds, unet_data *d, int verbose) {
    char path[4096];
    snprintf(path, sizeof path, "%s/unet.latents.safetensors", o->out);
    asam_prov *p = asam_prov_new("unet-latent-cache");
    asam_prov_file(p, "data", sdm_data_dir(o->data));
    asam_prov_file(p, "vae", vae_path);
    char *pj = asam_prov_json(p);
    int rc = pj ? 0 : asam_error("out of memory");
    const size_t N = asam_dataset_count(ds);
    if (!rc && asam_file_exists(path)) {
        asam_checkpoint *ck;
        if (asam_checkpoint_open(path, &ck) == 0) {
            const char *fmt = asam_checkpoint_metadata(ck, "format");
            const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "moments");
            if (fmt && !strcmp(fmt, CACHE_FORMAT) && t && t->ndim == 4 &&
                t->shape[0] == (int64_t)N && t->shape[1] == 8 &&
                asam_prov_check(p, asam_checkpoint_metadata(ck, "provenance"), path) == 0) {
                d->n = N, d->h = (int)t->shape[2], d->w = (int)t->shape[3];
                d->moments = malloc((size_t)t->numel * sizeof *d->moments);
                if (!d->moments || asam_ckpt_read_f32(ck, t, d->moments)) {
                    free(d->moments);
                    d->moments = NULL;
                }
            }
            asam_checkpoint_close(ck);
        }
        if (d->moments && verbose)
            fprintf(stderr, "train-unet: VAE latents of %zu images from %s\n", N, path);
    }
    asam_progress bar;
    if (!rc && !d->moments) {
        asam_progress_start(&bar, "train-unet: encoding", "image", (int64_t)N, ASAM_PROGRESS_LOG);
        bar.every = N / 10 > 0 ? (int64_t)N / 10 : 1;
        asam_ctx_set_grad(ctx, 0);
        for (size_t i = 0; i < N && !rc; i++) {
            asam_sample s;
            if ((rc = asam_dataset_get(ds, i, 1, &s))) break;
            asam_mark mk = asam_ctx_mark(ctx);
            // ref: luckybird1994/ASAM ControlNet/tutorial_dataset.py:27-42 (image / 127.5 - 1)
            asam_tensor *x = asam_sd_image_to_tensor(ctx, &s.image, s.w, s.h, -1.0f);
            asam_tensor *mom = x ? asam_vae_encode_moments(ctx, vae, x) : NULL;
            if (!mom || !asam_ctx_ok(ctx)) {
                rc = asam_error("%s: %s", asam_dataset_item_name(ds, i), asam_ctx_error(ctx));
            } else {
                if (i == 0) {
                    d->h = (int)mom->shape[2], d->w = (int)mom->shape[3];
                    d->moments = malloc(N * (size_t)mom->numel * sizeof *d->moments);
                    if (!d->moments) rc = asam_error("out of memory");
                }
                if (!rc && mom->shape[2] != d->h)
                    rc = asam_error("%s: another image size than the first (train-unet needs "
                                    "one size)",
                                    asam_dataset_item_name(ds, i));
                if (!rc)
                    memcpy(d->moments + i * (size_t)mom->numel, mom->data,
                           (size_t)mom->numel * sizeof *d->moments);
            }
            asam_ctx_release(ctx, mk);
            asam_sample_free(&s);
            if (verbose) asam_progress_update(&bar, (int64_t)i + 1, NULL);
        }
        asam_progress_end(&bar);
        d->n = N;
        if (!rc) {
            asam_st_entry e = {
                .name = "moments", .dtype = ASAM_DT_F32, .ndim = 4, .data = d->moments};
            e.shape[0] = (int64_t)N, e.shape[1] = 8, e.shape[2] = d->h, e.shape[3] = d->w;
            const char *meta[4] = {"format", CACHE_FORMAT, "provenance", pj};
            rc = asam_safetensors_write(path, &e, 1, meta, 2);
        }
    }
    free(pj);
    asam_prov_free(p);
    return rc;
}

static int load_contexts(asam_ctx *ctx, const asam_clip_tokenizer *tok, const asam_clip_text *clip,
                         asam_dataset *ds, const asam_captions *caps, int D, unet_data *d) {
    const size_t N = d->n, per = (size_t)ASAM_CLIP_CONTEXT * D;
    d->context = malloc(N * per * sizeof *d->context);
    d->null_ctx = malloc(per * sizeof *d->null_ctx);
    if (!d->context || !d->null_ctx) return asam_error("out of memory");
    asam_ctx_set_grad(ctx, 0);
    for (size_t i = 0; i <= N; i++) {
        char img[300];
        const char *cap = "";
        if (i < N) {
            snprintf(img, sizeof img, "%s.jpg", asam_dataset_item_name(ds, i));
            if (!asam_captions_has(caps, img))
                return asam_error("captions.jsonl has no caption for %s", img);
            cap = asam_captions_get(caps, img);
        }
        int64_t ids[ASAM_CLIP_CONTEXT];
        if (asam_clip_tokenize(tok, cap, ids) < 0) return -1;
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *c = asam_clip_text_forward(ctx, clip, ids, 1, NULL);
        if (!c || !asam_ctx_ok(ctx)) {
            int rc = asam_error("CLIP-mini: %s", asam_ctx_error(ctx));
            asam_ctx_release(ctx, mk);
            return rc;
        }
        memcpy(i < N ? d->context + i * per : d->null_ctx, c->data, per * sizeof(float));
        asam_ctx_release(ctx, mk);
    }
    return 0;
}

/* ---- one step ------------------------------------------------------------------------------ */

/* The batch of step `step`: per sample k its image, posterior noise, timestep, noise and
 * caption dropout keyed by (seed, k); the eps-prediction MSE; backward. */
// ref: CompVis/stable-diffusion ldm/models/diffusion/ddpm.py:874 (t = randint(0, 1000)), :1030
//   (p_losses: noise = randn, x_noisy = q_sample, target = noise for eps), :655-661
//   (get_first_stage_encoding: posterior sample * scale_factor); the "" caption for guidance as
//   diffusers' examples/text_to_image/train_text_to_image.py does (proportion_empty_prompts)
static asam_tensor *unet_loss(asam_ctx *ctx, const asam_unet_train_opts *o, const asam_unet *unet,
                              const unet_data *d, int64_t step, size_t *perm, uint64_t *perm_epoch,
                              const float *ac) {
    const int B = o->batch, D = o->text_width;
    const size_t lat = (size_t)4 * d->h * d->w, per = (size_t)ASAM_CLIP_CONTEXT * D;
    asam_tensor *zt = asam_new(ctx, ASAM_SHAPE(B, 4, d->h, d->w));
    asam_tensor *noise = asam_new(ctx, ASAM_SHAPE(B, 4, d->h, d->w));
    asam_tensor *cond = asam_new(ctx, ASAM_SHAPE(B, ASAM_CLIP_CONTEXT, D));
    float tf[UNET_MAX_BATCH], eps[4 * 64 * 64];
    if (!zt || !noise || !cond) return NULL;
    if (lat > sizeof eps / sizeof *eps) return asam_ctx_fail(ctx, "latent too large");
    for (int b = 0; b < B; b++) {
        uint64_t k = (uint64_t)step * (uint64_t)B + (uint64_t)b;
        size_t idx = train_sample_index(o->seed, d->n, k, perm, perm_epoch);
        const float *mom = d->moments + idx * 2 * lat;
        asam_randn(sdm_key(o->seed, k, 1), eps, lat);
        int t = (int)(sdm_key(o->seed, k, 2) % ASAM_DDPM_STEPS);
        float *nz = noise->data + b * lat, *z = zt->data + b * lat;
        asam_randn(sdm_key(o->seed, k, 3), nz, lat);
        const int drop = asam_u01(sdm_key(o->seed, k, 4)) < o->uncond_share;
        const float sa = sqrtf(ac[t]), sn = sqrtf(1.0f - ac[t]);
        for (size_t i = 0; i < lat; i++) {
            /* 0.18215 (mean + exp(0.5 clamp(logvar, -30, 20)) n), as asam_vae_posterior_sample */
            float lv = fminf(fmaxf(mom[lat + i], -30.0f), 20.0f);
            float z0 = ASAM_SD_LATENT_SCALE * (mom[i] + expf(0.5f * lv) * eps[i]);
            z[i] = sa * z0 + sn * nz[i];
        }
        memcpy(cond->data + b * per, drop ? d->null_ctx : d->context + idx * per,
               per * sizeof(float));
        tf[b] = (float)t;
    }
    asam_tensor *pred = asam_unet_forward(ctx, unet, zt, tf, cond, NULL, 1.0f);
    return asam_mse(ctx, pred, noise);
}

/* ---- writing the folder -------------------------------------------------------------------- */

static char *unet_config_json(const asam_unet_train_opts *o, int sample_size) {
    char *js = malloc(4096);
    if (!js) return NULL;
    int len = snprintf(
        js, 4096,
        "{\n  \"_class_name\": \"UNet2DConditionModel\",\n  \"_diffusers_version\": \"0.27.0\",\n"
        "  \"act_fn\": \"silu\",\n  \"center_input_sample\": false,\n  \"downsample_padding\": 1,\n"
        "  \"flip_sin_to_cos\": true,\n  \"freq_shift\": 0,\n  \"mid_block_scale_factor\": 1,\n"
        "  \"norm_eps\": 1e-05,\n  \"norm_num_groups\": 32,\n  \"sample_size\": %d,\n"
        "  \"in_channels\": 4,\n  \"out_channels\": 4,\n  \"down_block_types\": [",
        sample_size);
    for (int i = 0; i < o->n_levels; i++)
        len += snprintf(js + len, 4096 - (size_t)len, "%s\"%s\"", i ? ", " : "",
                        o->attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    len += snprintf(js + len, 4096 - (size_t)len, "],\n  \"up_block_types\": [");
    for (int i = o->n_levels - 1; i >= 0; i--)
        len += snprintf(js + len, 4096 - (size_t)len, "%s\"%s\"", i != o->n_levels - 1 ? ", " : "",
                        o->attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
    len += snprintf(js + len, 4096 - (size_t)len, "],\n  \"block_out_channels\": [");
    for (int i = 0; i < o->n_levels; i++)
        len += snprintf(js + len, 4096 - (size_t)len, "%s%d", i ? ", " : "",
                        o->model_channels * o->mult[i]);
    snprintf(js + len, 4096 - (size_t)len,
             "],\n  \"layers_per_block\": %d,\n  \"cross_attention_dim\": %d,\n"
             "  \"attention_head_dim\": 8,\n  \"use_linear_projection\": false,\n"
             "  \"transformer_layers_per_block\": 1\n}\n",
             o->num_res_blocks, o->text_width);
    return js;
}

static char *clip_config_json(const asam_unet_train_opts *o) {
    char *js = malloc(2048);
    if (js)
        snprintf(
            js, 2048,
            "{\n  \"_name_or_path\": \"asam-clip-mini (random, frozen)\",\n"
            "  \"architectures\": [\"CLIPTextModel\"],\n  \"model_type\": \"clip_text_model\",\n"
            "  \"vocab_size\": 49408,\n  \"max_position_embeddings\": 77,\n"
            "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
            "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"hidden_act\": \"quick_gelu\",\n  \"layer_norm_eps\": 1e-05,\n"
            "  \"projection_dim\": %d,\n  \"bos_token_id\": 49406,\n"
            "  \"eos_token_id\": 49407,\n  \"pad_token_id\": 49407,\n"
            "  \"attention_dropout\": 0.0,\n  \"dropout\": 0.0,\n"
            "  \"initializer_factor\": 1.0,\n  \"initializer_range\": 0.02\n}\n",
            o->text_width, 4 * o->text_width, o->text_layers, o->text_heads, o->text_width);
    return js;
}

static int copy_file(const char *from, const char *to) {
    char *data = NULL;
    size_t n = 0;
    int rc = asam_read_file(from, &data, &n) || asam_write_file_atomic(to, data, n);
    free(data);
    return rc ? -1 : 0;
}

/* scheduler/, tokenizer/ and model_index.json: what makes OUT a StableDiffusionPipeline folder. */
// ref: runwayml/stable-diffusion-v1-5 model_index.json, scheduler/scheduler_config.json (the
//   schedule this UNet is trained with: scaled_linear 0.00085..0.012, 1000 steps)
static int write_pipeline_files(const char *out) {
    static const char *sched =
        "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"_diffusers_version\": \"0.27.0\",\n"
        "  \"beta_schedule\": \"scaled_linear\",\n  \"beta_start\": 0.00085,\n"
        "  \"beta_end\": 0.012,\n  \"num_train_timesteps\": 1000,\n"
        "  \"prediction_type\": \"epsilon\",\n  \"set_alpha_to_one\": false,\n"
        "  \"steps_offset\": 1,\n  \"clip_sample\": false,\n  \"trained_betas\": null\n}\n";
    static const char *index =
        "{\n  \"_class_name\": \"StableDiffusionPipeline\",\n  \"_diffusers_version\": "
        "\"0.27.0\",\n  \"feature_extractor\": [null, null],\n  \"requires_safety_checker\": "
        "false,\n  \"safety_checker\": [null, null],\n  \"scheduler\": [\"diffusers\", "
        "\"DDIMScheduler\"],\n  \"text_encoder\": [\"transformers\", \"CLIPTextModel\"],\n"
        "  \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],\n  \"unet\": [\"diffusers\", "
        "\"UNet2DConditionModel\"],\n  \"vae\": [\"diffusers\", \"AutoencoderKL\"]\n}\n";
    char p[4096], q[4096];
    snprintf(p, sizeof p, "%s/scheduler", out);
    int rc = asam_mkdirs(p);
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", out);
    if (!rc) rc = asam_write_file_atomic(p, sched, strlen(sched));
    snprintf(p, sizeof p, "%s/model_index.json", out);
    if (!rc) rc = asam_write_file_atomic(p, index, strlen(index));
    snprintf(p, sizeof p, "%s/tokenizer", out);
    if (!rc) rc = asam_mkdirs(p);
    static const char *const tok_files[] = {"vocab.json", "merges.txt"};
    for (int i = 0; i < 2 && !rc; i++) {
        snprintf(p, sizeof p, "%s/%s", asam_clip_default_dir(), tok_files[i]);
        snprintf(q, sizeof q, "%s/tokenizer/%s", out, tok_files[i]);
        rc = copy_file(p, q);
    }
    return rc;
}

/* ---- the job ------------------------------------------------------------------------------- */

int asam_train_unet(const asam_unet_train_opts *o) {
    if (check_opts(o)) return -1;
    char state_path[4096], vae_path[4096], spec[4096];
    snprintf(state_path, sizeof state_path, "%s/unet.state.safetensors", o->out);
    if (o->state) snprintf(state_path, sizeof state_path, "%s", o->state);
    snprintf(vae_path, sizeof vae_path, "%s/vae/diffusion_pytorch_model.safetensors", o->out);
    snprintf(spec, sizeof spec, "%s%s", strchr(o->data, ':') ? "" : "sa1b:", o->data);
    if (!asam_file_exists(vae_path))
        return asam_error("train-unet: %s: not found (run train-vae --out %s first)", vae_path,
                          o->out);
    char cap_path[4096];
    snprintf(cap_path, sizeof cap_path, "%s/captions.jsonl", sdm_data_dir(o->data));
    if (!asam_file_exists(cap_path))
        return asam_error("train-unet: %s: not found (the captions of the images)", cap_path);

    asam_dataset *ds = NULL;
    asam_captions *caps = NULL;
    asam_clip_tokenizer *tok = NULL;
    asam_clip_text *clip = NULL;
    sdm_clip cw = {0};
    asam_vae *vae = NULL;
    asam_unet *unet = NULL;
    asam_optim *opt = NULL;
    asam_ctx *ctx = asam_ctx_new(0);
    asam_prov *prov = make_prov(o, vae_path);
    char *prov_json = prov ? asam_prov_json(prov) : NULL;
    unet_data d = {0};
    size_t *perm = NULL;
    int rc = (!ctx || !prov_json) ? asam_error("out of memory") : 0;
    if (!rc) rc = asam_dataset_open(spec, &ds);
    if (!rc && asam_dataset_count(ds) == 0)
        rc = asam_error("%s holds no annotated images", o->data);
    if (!rc) rc = asam_captions_load(cap_path, &caps);
    if (!rc) rc = asam_clip_tokenizer_load_dir(asam_clip_default_dir(), &tok);
    if (!rc) rc = sdm_clip_build(o->text_width, o->text_layers, o->text_heads, o->seed, &cw);
    if (!rc) rc = sdm_clip_load(&cw, &clip);
    if (!rc) {
        asam_checkpoint *ck;
        rc = asam_checkpoint_open(vae_path, &ck);
        if (!rc) rc = asam_vae_load(ck, "", &vae), asam_checkpoint_close(ck);
    }
    if (!rc) rc = load_moments(o, ctx, vae, vae_path, ds, &d, o->verbose);
    if (!rc) rc = load_contexts(ctx, tok, clip, ds, caps, o->text_width, &d);
    if (!rc && !(perm = malloc(d.n * sizeof *perm))) rc = asam_error("out of memory");
    asam_sd_synth_unet_cfg cfg = unet_cfg(o);
    if (!rc) rc = sdm_unet_new(&cfg, o->seed, &unet);
    sdm_params P = {0};
    if (!rc) {
        sdm_unet_params(unet, &P);
        sdm_set_trainable(&P);
        asam_unet_set_checkpointing(unet, 0); /* 16x16 latents: keep the activations */
        opt = asam_optim_new(ASAM_ADAMW, P.p, (int)P.n, o->lr, 0.9, 0.999, 1e-8, o->weight_decay);
        if (!opt) rc = asam_error("out of memory");
    }
    int64_t step = 0;
    if (!rc && o->resume && asam_file_exists(state_path)) {
        rc = sdm_state_load(state_path, UNET_STATE_FORMAT, &P, opt, prov, &step);
        if (!rc && o->verbose)
            fprintf(stderr, "train-unet: resumed from %s at step %lld/%d\n", state_path,
                    (long long)step, o->steps);
    }
    float ac[ASAM_DDPM_STEPS];
    asam_sd_alphas_cumprod(ac);
    uint64_t perm_epoch = UINT64_MAX;
    const int64_t step0 = step, total = o->steps;
    double avg = 0;
    int stopped = 0;
    asam_progress bar;
    asam_progress_start(&bar, "train-unet", "step", total > step ? total : step, ASAM_PROGRESS_LOG);
    bar.word = "step";
    bar.skipped = step0;
    bar.every = total / 20 > 0 ? total / 20 : 1;
    while (!rc && step < total) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, 1);
        asam_optim_zero_grad(opt);
        asam_tensor *loss = unet_loss(ctx, o, unet, &d, step, perm, &perm_epoch, ac);
        if (!loss || asam_backward(ctx, loss) || !asam_ctx_ok(ctx))
            rc = sdm_step_error(ctx, "train-unet", step);
        const float lv = rc ? 0 : loss->data[0];
        asam_ctx_release(ctx, mk);
        asam_ctx_clear_error(ctx);
        if (rc) break;
        if (!isfinite(lv)) {
            rc = asam_error("train-unet: step %lld: loss is %g", (long long)step, lv);
            break;
        }
        opt->lr = sdm_lr(o->lr, o->warmup, step);
        asam_optim_step(opt);
        if (o->losses) o->losses[step] = lv;
        avg = step == step0 ? lv : 0.98 * avg + 0.02 * lv;
        step++;
        if (o->verbose) asam_progress_update(&bar, step, "loss %.4f (avg %.4f)", lv, avg);
        int stop = o->stop_after > 0 && step >= o->stop_after && step < total;
        if (stop || step == total || (o->save_every > 0 && step % o->save_every == 0))
            rc = sdm_state_save(state_path, UNET_STATE_FORMAT, &P, opt, step, prov_json);
        if (stop) {
            stopped = 1;
            break;
        }
    }
    asam_progress_end(&bar);
    if (!rc && !stopped) {
        char *ucfg = unet_config_json(o, d.h), *ccfg = clip_config_json(o);
        asam_st_entry *e = sdm_entries(&P);
        rc = (!ucfg || !ccfg || !e) ? asam_error("out of memory") : 0;
        if (!rc)
            rc = sdm_write_sub(o->out, "unet", "diffusion_pytorch_model.safetensors", e, P.n, 'u',
                               o->num_res_blocks, o->f16, ucfg, prov_json, (long long)step);
        /* the frozen encoder, written as it was used */
        if (!rc)
            rc = sdm_write_sub(o->out, "text_encoder", "model.safetensors", cw.e, cw.n, 'c', 0,
                               o->f16, ccfg, prov_json, 0);
        if (!rc) rc = write_pipeline_files(o->out);
        free(ucfg), free(ccfg), free(e);
        if (!rc && o->verbose)
            fprintf(stderr,
                    "train-unet: wrote %s/{unet,text_encoder,tokenizer,scheduler} (%lld steps), "
                    "state %s\n",
                    o->out, (long long)step, state_path);
    }
    free(perm);
    data_free(&d);
    free(prov_json);
    asam_prov_free(prov);
    asam_optim_free(opt);
    asam_unet_free(unet);
    asam_vae_free(vae);
    asam_clip_text_free(clip);
    sdm_clip_free(&cw);
    asam_clip_tokenizer_free(tok);
    if (caps) asam_captions_free(caps);
    asam_dataset_close(ds);
    if (ctx) asam_ctx_free(ctx);
    return rc ? -1 : stopped;
}
