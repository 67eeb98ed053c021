/* asam train-vae: SD's AutoencoderKL at a small width trained on an SA-1B folder (the recipe and
 * the resume contract are in asam/train_sd.h).
 *
 * The latent scale: asam multiplies every VAE latent by SD's 0.18215 (ASAM_SD_LATENT_SCALE), a
 * constant chosen for SD's VAE, whose posterior means have a std of about 1 / 0.18215 = 5.5.
 * A small VAE trained with a small KL weight ends with some other std, so after training the
 * mean path is rescaled exactly: quant_conv's mean rows (weight and bias) times s, its logvar
 * biases + 2 ln s (the posterior keeps its shape), post_quant_conv's weight divided by s, with
 * s = 1 / (0.18215 std). Decoding is unchanged and 0.18215 * mean has a std of 1 on the training
 * images, as SD's latents have, so the real 0.18215 stays right everywhere. */
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
#include "asam/util.h"

#define VAE_STATE_FORMAT "asam-vae-train-state-1"
#define VAE_FILE "diffusion_pytorch_model.safetensors"
#define SCALE_IMAGES 200 /* training images measured for the latent rescale */

void asam_vae_train_opts_default(asam_vae_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->ch = 32;
    o->n_levels = 4;
    o->mult[0] = 1, o->mult[1] = 2, o->mult[2] = 2, o->mult[3] = 2;
    o->num_res_blocks = 1;
    o->lr = 5e-4f;
    o->weight_decay = 0.01;
    o->kl_weight = 1e-6;
    o->warmup = 100;
    o->batch = 8;
    o->crop = 0;
    o->steps = 1000;
    o->save_every = 50;
    o->verbose = 1;
}

int asam_vae_train_parse_mult(int *mult, int *n_levels, const char *list) {
    int n = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 64 || n == 8)
            return asam_error("--mult '%s': expected 1 to 8 multipliers like 1,2,2,2", list);
        mult[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return asam_error("--mult '%s': expected 1 to 8 multipliers like 1,2,2,2", list);
    }
    if (n < 1) return asam_error("--mult '%s': expected multipliers like 1,2,2,2", list);
    *n_levels = n;
    return 0;
}

static asam_sd_synth_vae_cfg vae_cfg(const asam_vae_train_opts *o) {
    asam_sd_synth_vae_cfg c = {.in_channels = 3,
                               .out_channels = 3,
                               .ch = o->ch,
                               .n_levels = o->n_levels,
                               .num_res_blocks = o->num_res_blocks,
                               .z_channels = 4,
                               .embed_dim = 4};
    for (int i = 0; i < o->n_levels; i++) c.mult[i] = o->mult[i];
    return c;
}

static int check_opts(const asam_vae_train_opts *o) {
    if (!o->data || !o->out) return asam_error("train-vae: --data and --out are required");
    if (o->ch < 32 || o->ch % 32)
        return asam_error("train-vae: --ch %d must be a multiple of 32 (GroupNorm(32))", o->ch);
    for (int i = 0; i < o->n_levels; i++)
        if ((o->ch * o->mult[i]) % 32)
            return asam_error("train-vae: --mult: level %d width %d is not a multiple of 32", i,
                              o->ch * o->mult[i]);
    if (o->n_levels < 2 || o->n_levels > 6)
        return asam_error("train-vae: --mult needs 2..6 levels (SD: 4, an 8x latent)");
    if (o->num_res_blocks < 1 || o->num_res_blocks > 4)
        return asam_error("train-vae: --res-blocks %d outside 1..4", o->num_res_blocks);
    if (o->batch < 1 || o->batch > 256)
        return asam_error("train-vae: --batch %d outside 1..256", o->batch);
    const int f = 1 << (o->n_levels - 1);
    if (o->crop < 0 || o->crop % f)
        return asam_error("train-vae: --crop %d must be a multiple of %d (0: whole images)",
                          o->crop, f);
    if (!(o->lr > 0)) return asam_error("train-vae: --lr must be positive");
    if (o->steps < 0) return asam_error("train-vae: --steps must not be negative");
    return 0;
}

static asam_prov *make_prov(const asam_vae_train_opts *o) {
    asam_prov *p = asam_prov_new("train-vae");
    if (!p) return NULL;
    char m[64] = "";
    for (int i = 0, len = 0; i < o->n_levels; i++)
        len += snprintf(m + len, sizeof m - (size_t)len, "%s%d", i ? "," : "", o->mult[i]);
    asam_prov_int(p, "--ch", o->ch);
    asam_prov_str(p, "--mult", m);
    asam_prov_int(p, "--res-blocks", o->num_res_blocks);
    asam_prov_num(p, "--lr", o->lr);
    asam_prov_num(p, "--weight-decay", o->weight_decay);
    asam_prov_num(p, "--kl-weight", o->kl_weight);
    asam_prov_int(p, "--warmup", o->warmup);
    asam_prov_int(p, "--batch", o->batch);
    asam_prov_int(p, "--crop", o->crop);
    asam_prov_int(p, "--seed", (long long)o->seed);
    asam_prov_file(p, "data", sdm_data_dir(o->data));
    return p;
}

/* Every image of the dataset in memory (RGB, all of one size). */
typedef struct {
    asam_image *img;
    size_t n;
    int w, h;
} image_set;

static void images_free(image_set *s) {
    for (size_t i = 0; s->img && i < s->n; i++) asam_image_free(&s->img[i]);
    free(s->img);
    memset(s, 0, sizeof *s);
}

static int images_load(const char *data, size_t max, image_set *s) {
    memset(s, 0, sizeof *s);
    char spec[4096];
    snprintf(spec, sizeof spec, "%s%s", strchr(data, ':') ? "" : "sa1b:", data);
    asam_dataset *ds;
    if (asam_dataset_open(spec, &ds)) return -1;
    size_t N = asam_dataset_count(ds);
    if (max && max < N) N = max;
    int rc = N ? 0 : asam_error("%s holds no annotated images", data);
    if (!rc && !(s->img = calloc(N, sizeof *s->img))) rc = asam_error("out of memory");
    for (size_t i = 0; i < N && !rc; i++) {
        asam_sample sm;
        if ((rc = asam_dataset_get(ds, i, 1, &sm))) break;
        s->img[i] = sm.image; /* the sample's image is taken over */
        memset(&sm.image, 0, sizeof sm.image);
        asam_sample_free(&sm);
        s->n++;
        if (i == 0) s->w = s->img[0].w, s->h = s->img[0].h;
        if (s->img[i].w != s->w || s->img[i].h != s->h || s->img[i].c != 3)
            rc = asam_error("%s: %s is %dx%d, the first image %dx%d (train-vae needs one size)",
                            data, asam_dataset_item_name(ds, i), s->img[i].w, s->img[i].h, s->w,
                            s->h);
    }
    asam_dataset_close(ds);
    if (rc) images_free(s);
    return rc;
}

/* The batch of step `step`: per sample a crop (offset keyed by the sample) and a horizontal
 * flip with probability 1/2, as floats in [-1, 1] -> x (B, 3, S, S). */
static void make_batch(const asam_vae_train_opts *o, const image_set *im, int64_t step,
                       size_t *perm, uint64_t *perm_epoch, int S, float *x) {
    const size_t plane = (size_t)S * S;
    for (int b = 0; b < o->batch; b++) {
        uint64_t k = (uint64_t)step * (uint64_t)o->batch + (uint64_t)b;
        const asam_image *img = &im->img[train_sample_index(o->seed, im->n, k, perm, perm_epoch)];
        uint64_t r = sdm_key(o->seed, k, 1);
        int ox = (int)(r % (uint64_t)(img->w - S + 1));
        int oy = (int)((r >> 20) % (uint64_t)(img->h - S + 1));
        int flip = (int)((r >> 40) & 1);
        float *xb = x + (size_t)b * 3 * plane;
        for (int yy = 0; yy < S; yy++)
            for (int xx = 0; xx < S; xx++) {
                int sx = ox + (flip ? S - 1 - xx : xx);
                const uint8_t *px = img->data + ((size_t)(oy + yy) * img->w + sx) * 3;
                for (int c = 0; c < 3; c++)
                    xb[c * plane + (size_t)yy * S + xx] = px[c] / 127.5f - 1.0f;
            }
    }
}

/* exp(x) = sigmoid(x) / sigmoid(-x), exactly: the engine's ops, with their checked gradients. */
static asam_tensor *exp_op(asam_ctx *ctx, asam_tensor *x) {
    return asam_div(ctx, asam_sigmoid(ctx, x), asam_sigmoid(ctx, asam_scale(ctx, x, -1.0f)));
}

/* Forward + backward of one batch; returns the loss (NULL on error) and the L1 part. */
// ref: CompVis/stable-diffusion ldm/models/autoencoder.py:318-336 (AutoencoderKL.forward:
//   posterior.sample(), decode); ldm/modules/losses/contperceptual.py:44-62 (rec_loss = |x -
//   x'|, nll summed / batch, kl_loss = posterior.kl() summed / batch, loss = nll + kl_weight kl)
static asam_tensor *vae_loss(asam_ctx *ctx, const asam_vae_train_opts *o, asam_vae *m,
                             asam_tensor *x, const float *eps, float *l1_out) {
    const int64_t B = x->shape[0], Z = 4;
    asam_tensor *mom = asam_vae_encode_moments(ctx, m, x); /* (B, 8, h, w) */
    if (!mom) return NULL;
    asam_tensor *mean = asam_slice(ctx, mom, 1, 0, Z), *lv = asam_slice(ctx, mom, 1, Z, 2 * Z);
    asam_tensor *var = exp_op(ctx, lv);
    asam_tensor *n = asam_from_data(ctx, 4, mean->shape, eps);
    asam_tensor *z = asam_add(ctx, mean, asam_mul(ctx, asam_sqrt(ctx, var), n));
    asam_tensor *xr = asam_vae_decode(ctx, m, z);
    asam_tensor *l1 = asam_mean(ctx, asam_abs(ctx, asam_sub(ctx, x, xr)));
    // ref: ldm/modules/distributions/distributions.py:44 (kl = 0.5 sum(mean^2 + var - 1 - logvar))
    asam_tensor *kl_el = asam_sub(ctx, asam_add(ctx, asam_mul(ctx, mean, mean), var),
                                  asam_add_scalar(ctx, lv, 1.0f));
    asam_tensor *kl = asam_scale(ctx, asam_sum(ctx, kl_el), 0.5f / (float)B); /* per image */
    const float pix = (float)(3 * x->shape[2] * x->shape[3]);
    asam_tensor *loss = asam_add(ctx, l1, asam_scale(ctx, kl, (float)o->kl_weight / pix));
    if (loss && l1_out) *l1_out = l1->data[0];
    return loss;
}

/* Posterior-mean std over up to SCALE_IMAGES whole training images (unscaled latents). */
static int latent_std(asam_ctx *ctx, const asam_vae *m, const image_set *im, double *std) {
    double s = 0, s2 = 0;
    int64_t cnt = 0;
    asam_ctx_set_grad(ctx, 0);
    const size_t n = im->n < SCALE_IMAGES ? im->n : SCALE_IMAGES;
    for (size_t i = 0; i < n; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *x = asam_sd_image_to_tensor(ctx, &im->img[i], im->w, im->h, -1.0f);
        asam_tensor *z = x ? asam_vae_encode(ctx, m, x) : NULL;
        if (!z || !asam_ctx_ok(ctx)) {
            int rc = asam_error("train-vae: latent scale: %s", asam_ctx_error(ctx));
            asam_ctx_release(ctx, mk);
            return rc;
        }
        for (int64_t j = 0; j < z->numel; j++)
            s += z->data[j], s2 += (double)z->data[j] * z->data[j];
        cnt += z->numel;
        asam_ctx_release(ctx, mk);
    }
    double mu = s / (double)cnt;
    *std = sqrt(s2 / (double)cnt - mu * mu);
    return 0;
}

/* The exact reparameterisation described at the top of the file. */
// ref: CompVis/stable-diffusion ldm/models/autoencoder.py:300-309 (encode: quant_conv ->
//   DiagonalGaussianDistribution(moments); decode: post_quant_conv first)
static void rescale_latents(asam_vae *m, double s) {
    sdm_params P;
    sdm_vae_params(m, &P);
    for (size_t i = 0; i < P.n; i++) {
        asam_tensor *t = P.p[i];
        const char *nm = P.names[i];
        if (!strcmp(nm, "quant_conv.weight")) { /* (8, 8, 1, 1): rows 0..3 are the mean */
            for (int64_t j = 0; j < t->numel / 2; j++) t->data[j] = (float)(t->data[j] * s);
        } else if (!strcmp(nm, "quant_conv.bias")) {
            for (int64_t j = 0; j < 4; j++) t->data[j] = (float)(t->data[j] * s);
            for (int64_t j = 4; j < 8; j++) t->data[j] = (float)(t->data[j] + 2.0 * log(s));
        } else if (!strcmp(nm, "post_quant_conv.weight")) { /* (4, 4, 1, 1): z's columns */
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = (float)(t->data[j] / s);
        }
    }
}

static char *vae_config_json(const asam_vae_train_opts *o, int sample_size) {
    char *js = malloc(2048);
    if (!js) return NULL;
    int len = snprintf(js, 2048,
                       "{\n  \"_class_name\": \"AutoencoderKL\",\n  \"_diffusers_version\": "
                       "\"0.27.0\",\n  \"act_fn\": \"silu\",\n  \"norm_num_groups\": 32,\n"
                       "  \"sample_size\": %d,\n  \"in_channels\": 3,\n  \"out_channels\": 3,\n"
                       "  \"down_block_types\": [",
                       sample_size);
    for (int i = 0; i < o->n_levels; i++)
        len += snprintf(js + len, 2048 - (size_t)len, "%s\"DownEncoderBlock2D\"", i ? ", " : "");
    len += snprintf(js + len, 2048 - (size_t)len, "],\n  \"up_block_types\": [");
    for (int i = 0; i < o->n_levels; i++)
        len += snprintf(js + len, 2048 - (size_t)len, "%s\"UpDecoderBlock2D\"", i ? ", " : "");
    len += snprintf(js + len, 2048 - (size_t)len, "],\n  \"block_out_channels\": [");
    for (int i = 0; i < o->n_levels; i++)
        len += snprintf(js + len, 2048 - (size_t)len, "%s%d", i ? ", " : "", o->ch * o->mult[i]);
    snprintf(js + len, 2048 - (size_t)len,
             "],\n  \"latent_channels\": 4,\n  \"layers_per_block\": %d,\n"
             "  \"scaling_factor\": 0.18215\n}\n",
             o->num_res_blocks);
    return js;
}

int asam_train_vae(const asam_vae_train_opts *o) {
    if (check_opts(o)) return -1;
    char state_path[4096];
    snprintf(state_path, sizeof state_path, "%s/vae.state.safetensors", o->out);
    if (o->state) snprintf(state_path, sizeof state_path, "%s", o->state);
    image_set im;
    if (images_load(o->data, 0, &im)) return -1; /* the error names the folder */
    const int S = o->crop ? o->crop : im.w;
    const int f = 1 << (o->n_levels - 1);
    if (S > im.w || S > im.h || (!o->crop && (im.w != im.h || im.w % f))) {
        images_free(&im);
        return asam_error("train-vae: images of %dx%d do not fit --crop %d (whole images must be "
                          "square with a side that is a multiple of %d)",
                          im.w, im.h, o->crop, f);
    }
    asam_sd_synth_vae_cfg cfg = vae_cfg(o);
    asam_vae *m = NULL;
    asam_optim *opt = NULL;
    asam_ctx *ctx = NULL;
    asam_prov *prov = make_prov(o);
    char *prov_json = prov ? asam_prov_json(prov) : NULL;
    size_t *perm = malloc(im.n * sizeof *perm);
    const size_t xn = (size_t)o->batch * 3 * S * S, zn = (size_t)o->batch * 4 * (S / f) * (S / f);
    float *x = malloc(xn * sizeof *x), *eps = malloc(zn * sizeof *eps);
    int rc = (!prov_json || !perm || !x || !eps) ? asam_error("train-vae: out of memory") : 0;
    if (!rc) rc = asam_mkdirs(o->out);
    if (!rc) rc = sdm_vae_new(&cfg, o->seed, &m);
    sdm_params P = {0};
    if (!rc) {
        sdm_vae_params(m, &P);
        sdm_set_trainable(&P);
        asam_vae_set_checkpointing(m, 0); /* small images: keep activations, no recompute */
        opt = asam_optim_new(ASAM_ADAMW, P.p, (int)P.n, o->lr, 0.9, 0.999, 1e-8, o->weight_decay);
        ctx = asam_ctx_new(0);
        if (!opt || !ctx) rc = asam_error("train-vae: out of memory");
    }
    int64_t step = 0;
    if (!rc && o->resume && asam_file_exists(state_path)) {
        rc = sdm_state_load(state_path, VAE_STATE_FORMAT, &P, opt, prov, &step);
        if (!rc && o->verbose)
            fprintf(stderr, "train-vae: resumed from %s at step %lld/%d\n", state_path,
                    (long long)step, o->steps);
    }
    uint64_t perm_epoch = UINT64_MAX;
    const int64_t step0 = step, total = o->steps;
    double avg = 0;
    int stopped = 0;
    asam_progress bar;
    asam_progress_start(&bar, "train-vae", "step", total > step ? total : step, ASAM_PROGRESS_LOG);
    bar.word = "step";
    bar.skipped = step0;
    bar.every = total / 20 > 0 ? total / 20 : 1;
    while (!rc && step < total) {
        make_batch(o, &im, step, perm, &perm_epoch, S, x);
        asam_randn(sdm_key(o->seed, (uint64_t)step, 2), eps, zn);
        asam_mark mk = asam_ctx_mark(ctx);
        asam_ctx_set_grad(ctx, 1);
        asam_optim_zero_grad(opt);
        asam_tensor *xt = asam_from_data(ctx, ASAM_SHAPE(o->batch, 3, S, S), x);
        float l1 = 0;
        asam_tensor *loss = xt ? vae_loss(ctx, o, m, xt, eps, &l1) : NULL;
        if (!loss || asam_backward(ctx, loss) || !asam_ctx_ok(ctx))
            rc = sdm_step_error(ctx, "train-vae", step);
        const float lv = rc ? 0 : loss->data[0];
        asam_ctx_release(ctx, mk);
        asam_ctx_clear_error(ctx);
        if (rc) break;
        if (!isfinite(lv)) {
            rc = asam_error("train-vae: step %lld: loss is %g", (long long)step, lv);
            break;
        }
        opt->lr = sdm_lr(o->lr, o->warmup, step);
        asam_optim_step(opt);
        if (o->losses) o->losses[step] = lv;
        avg = step == step0 ? lv : 0.95 * avg + 0.05 * lv;
        step++;
        if (o->verbose)
            asam_progress_update(&bar, step, "loss %.4f (L1 %.4f, avg %.4f)", lv, l1, avg);
        int stop = o->stop_after > 0 && step >= o->stop_after && step < total;
        if (stop || step == total || (o->save_every > 0 && step % o->save_every == 0))
            rc = sdm_state_save(state_path, VAE_STATE_FORMAT, &P, opt, step, prov_json);
        if (stop) {
            stopped = 1;
            break;
        }
    }
    asam_progress_end(&bar);
    double std = 0;
    if (!rc && !stopped) rc = latent_std(ctx, m, &im, &std);
    if (!rc && !stopped && !(std > 0))
        rc = asam_error("train-vae: the latents have no spread (std %g)", std);
    if (!rc && !stopped) {
        const double s = 1.0 / (ASAM_SD_LATENT_SCALE * std);
        rescale_latents(m, s);
        char *cfg_js = vae_config_json(o, im.w);
        asam_st_entry *e = sdm_entries(&P);
        rc = (!cfg_js || !e) ? asam_error("train-vae: out of memory")
                             : sdm_write_sub(o->out, "vae", VAE_FILE, e, P.n, 'v', o->n_levels,
                                             o->f16, cfg_js, prov_json, (long long)step);
        free(cfg_js), free(e);
        if (!rc && o->verbose)
            fprintf(stderr,
                    "train-vae: wrote %s/vae (%lld steps); latent std %.4f before the rescale "
                    "by %.4f (0.18215-scaled std 1), state %s\n",
                    o->out, (long long)step, std, s, state_path);
    }
    free(x), free(eps), free(perm), free(prov_json);
    asam_prov_free(prov);
    if (ctx) asam_ctx_free(ctx);
    asam_optim_free(opt);
    asam_vae_free(m);
    images_free(&im);
    return rc ? -1 : stopped;
}

int asam_vae_eval(const char *dir, const char *data, int max_images, double *psnr, int *n_images,
                  double *latent_sd) {
    char path[4096];
    snprintf(path, sizeof path, "%s/vae/%s", dir, VAE_FILE);
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    asam_vae *m = NULL;
    int rc = asam_vae_load(ck, "", &m); /* the loader --sd uses for a diffusers vae/ */
    asam_checkpoint_close(ck);
    image_set im = {0};
    if (!rc) rc = images_load(data, (size_t)(max_images > 0 ? max_images : 0), &im);
    asam_ctx *ctx = rc ? NULL : asam_ctx_new(0);
    if (!rc && !ctx) rc = asam_error("out of memory");
    double sum_psnr = 0, s = 0, s2 = 0;
    int64_t cnt = 0;
    for (size_t i = 0; i < im.n && !rc; i++) {
        asam_mark mk = asam_ctx_mark(ctx);
        const asam_image *img = &im.img[i];
        asam_tensor *x = asam_sd_image_to_tensor(ctx, img, img->w, img->h, -1.0f);
        asam_tensor *z =
            x ? asam_scale(ctx, asam_vae_encode(ctx, m, x), ASAM_SD_LATENT_SCALE) : NULL;
        for (int64_t j = 0; z && j < z->numel; j++)
            s += z->data[j], s2 += (double)z->data[j] * z->data[j];
        if (z) cnt += z->numel;
        asam_tensor *xr =
            z ? asam_vae_decode(ctx, m, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE)) : NULL;
        asam_image out = {0};
        if (!xr || !asam_ctx_ok(ctx) || asam_sd_tensor_to_image(xr, &out))
            rc = asam_error("%s: %s", path, asam_ctx_error(ctx) ? asam_ctx_error(ctx) : "failed");
        if (!rc) {
            double se = 0;
            const size_t nv = (size_t)img->w * img->h * 3;
            for (size_t j = 0; j < nv; j++) {
                double d = (double)out.data[j] - img->data[j];
                se += d * d;
            }
            double mse = se / (double)nv;
            sum_psnr += mse > 0 ? 10.0 * log10(255.0 * 255.0 / mse) : 99.0;
        }
        asam_image_free(&out);
        asam_ctx_release(ctx, mk);
    }
    if (!rc) {
        *n_images = (int)im.n;
        *psnr = im.n ? sum_psnr / (double)im.n : 0;
        double mu = cnt ? s / (double)cnt : 0;
        *latent_sd = cnt ? sqrt(s2 / (double)cnt - mu * mu) : 0;
    }
    if (ctx) asam_ctx_free(ctx);
    images_free(&im);
    asam_vae_free(m);
    return rc ? -1 : 0;
}
