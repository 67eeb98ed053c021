/* Caption adherence of the miniature world's SD UNet as a diffusion classifier (Li et al. 2023,
 * "Your Diffusion Model is Secretly a Zero-Shot Classifier", arXiv:2303.16203): a model that
 * uses its caption predicts the noise of an image's noised latent better under that image's
 * caption than under another image's. For each of the first N images of an SA-1B folder with
 * captions.jsonl:
 *   z0 = 0.18215 x the VAE posterior mean of the image (train_unet.c samples the posterior;
 *        the mean takes that sampling noise out of the comparison),
 *   K candidate captions: its own and K-1 other images' captions of the same folder whose text
 *        differs from it and from each other (seeded choice), plus the empty caption "",
 *   T pairs (t_j, n_j) shared by all candidates of the image: t_j = floor((j + 1/2) 1000 / T)
 *        evenly over the training range 0..999, n_j standard normal noise (seeded),
 *   for every candidate c: the mean over j of MSE(UNet(sqrt(a_t) z0 + sqrt(1 - a_t) n_j, t_j,
 *        CLIP(c)), n_j), the training loss (no guidance, no ControlNet).
 * The predicted caption is the candidate (not "") with the lowest mean MSE; exact ties share
 * the credit. Reported: top-1 accuracy against chance 1/K with its binomial standard error, the
 * mean MSE under the true caption, the other candidates and "", the mean relative gap
 * (other - true) / true, the same per timestep, and the share of images whose own caption
 * beats "". A table on stdout and a JSON file (written atomically, with the provenance).
 *
 * Build and run: cmake --build build --target sd_caption_adherence, then
 *   build/sd_caption_adherence SD_DIR DATA_DIR N K T SEED OUT_JSON
 * One thread (asam_set_threads(1)), as the other measurement tools of the world. */
#include "asam/dataset.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/provenance.h"
#include "asam/sd.h"
#include "asam/sd_models.h"
#include "asam/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_K 64
#define MAX_T 1000

/* Whole-string integer in [lo, hi], else one error line naming the argument. */
static int parse_int(const char *name, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return asam_error("%s '%s': must be an integer in %lld..%lld", name, s, lo, hi);
    *out = v;
    return 0;
}

/* Per-image and per-timestep sums of the measurement. */
typedef struct {
    int n_img, K, T;
    double correct;               /* top-1 credit over images (ties shared) */
    double mse_true, mse_other;   /* sums over images of the mean over timesteps */
    double mse_empty;             /*   (other: also averaged over the K-1 candidates) */
    double gap, gap2;             /* (other - true) / true per image: sum and sum of squares */
    double gap_empty, gap_empty2; /* ("" - true) / true */
    int true_beats_empty;
    double *t_true, *t_other, *t_empty, *t_correct; /* (T) sums over images at one timestep */
} tally;

/* Credit of candidate 0 (the true caption) for argmin over mse[0..K): 1/(number tied at the
 * minimum) when it is among them, else 0. Candidate 0 is always the true one, so a UNet that
 * ignores its context (all equal) earns chance, not a perfect score. */
static double top1_credit(const double *mse, int K) {
    double lo = mse[0];
    for (int c = 1; c < K; c++) lo = fmin(lo, mse[c]);
    if (mse[0] > lo) return 0.0;
    int tied = 0;
    for (int c = 0; c < K; c++) tied += mse[c] == lo;
    return 1.0 / tied;
}

/* The K-1 other captions of image i: a seeded shuffle of the folder's other images, keeping
 * the first whose text differs from the true caption and from those already taken (two equal
 * texts could never be told apart). Fills cand[1..K) with image indices. */
static int pick_candidates(asam_rng *rng, const char *const *caption, size_t n_all, size_t i, int K,
                           size_t *order, size_t *cand) {
    asam_rng_shuffle(rng, order, n_all);
    cand[0] = i;
    int got = 1;
    for (size_t j = 0; j < n_all && got < K; j++) {
        int dup = 0;
        for (int c = 0; c < got && !dup; c++) dup = !strcmp(caption[order[j]], caption[cand[c]]);
        if (!dup) cand[got++] = order[j];
    }
    if (got < K)
        return asam_error("image %zu: only %d captions of the folder differ from its own and "
                          "from each other, K = %d needs %d",
                          i, got - 1, K, K - 1);
    return 0;
}

/* One image: the eps MSE of every candidate (K captions, then "") at every timestep into
 * mse[c * T + j]. */
static int measure_image(asam_ctx *ctx, const asam_sd *sd, const asam_image *img,
                         const char *const *cand_text, int K, int T, const int *ts, const float *ac,
                         uint64_t noise_seed, double *mse) {
    const int B = K + 1, D = asam_unet_context_dim(sd->unet);
    asam_mark mk = asam_ctx_mark(ctx);
    // ref: luckybird1994/ASAM ControlNet/tutorial_dataset.py:27-42 (image / 127.5 - 1)
    asam_tensor *x = asam_sd_image_to_tensor(ctx, img, img->w, img->h, -1.0f);
    asam_tensor *z0 =
        x ? asam_scale(ctx, asam_vae_encode(ctx, sd->vae, x), ASAM_SD_LATENT_SCALE) : NULL;
    asam_tensor *cond = asam_new(ctx, ASAM_SHAPE(B, ASAM_CLIP_CONTEXT, D));
    if (!z0 || !cond || !asam_ctx_ok(ctx)) goto fail;
    const size_t per = (size_t)ASAM_CLIP_CONTEXT * D, lat = (size_t)z0->numel;
    for (int c = 0; c < B; c++) { /* the candidates' contexts, "" last */
        asam_tensor *e = asam_sd_encode_prompt(ctx, sd, c < K ? cand_text[c] : "");
        if (!e || !asam_ctx_ok(ctx)) goto fail;
        memcpy(cond->data + (size_t)c * per, e->data, per * sizeof(float));
    }
    float *noise = asam_ctx_alloc(ctx, (size_t)T * lat * sizeof(float));
    if (!noise) goto fail;
    /* one stream per image: the same (t_j, n_j) for every candidate, the variance reduction
       the classifier relies on */
    asam_randn(noise_seed, noise, (size_t)T * lat);
    float tf[MAX_K + 1];
    for (int j = 0; j < T; j++) {
        asam_mark mj = asam_ctx_mark(ctx);
        const float *n = noise + (size_t)j * lat;
        const float sa = sqrtf(ac[ts[j]]), sn = sqrtf(1.0f - ac[ts[j]]);
        asam_tensor *zt = asam_new(ctx, ASAM_SHAPE(B, z0->shape[1], z0->shape[2], z0->shape[3]));
        if (!zt) goto fail;
        // ref: CompVis/stable-diffusion ldm/models/diffusion/ddpm.py:1030 (p_losses: q_sample,
        //   target = noise for eps), as train_unet.c trains it
        for (int b = 0; b < B; b++) {
            float *z = zt->data + (size_t)b * lat;
            for (size_t k = 0; k < lat; k++) z[k] = sa * z0->data[k] + sn * n[k];
            tf[b] = (float)ts[j];
        }
        asam_tensor *pred = asam_unet_forward(ctx, sd->unet, zt, tf, cond, NULL, 1.0f);
        if (!pred || !asam_ctx_ok(ctx)) goto fail;
        for (int b = 0; b < B; b++) {
            const float *p = pred->data + (size_t)b * lat;
            double se = 0;
            for (size_t k = 0; k < lat; k++) se += ((double)p[k] - n[k]) * ((double)p[k] - n[k]);
            mse[(size_t)b * T + j] = se / (double)lat;
        }
        asam_ctx_release(ctx, mj);
    }
    asam_ctx_release(ctx, mk);
    return 0;
fail:;
    int rc = asam_error("%s", asam_ctx_ok(ctx) ? "out of memory" : asam_ctx_error(ctx));
    asam_ctx_release(ctx, mk);
    return rc;
}

static void tally_image(tally *s, const double *mse) {
    const int K = s->K, T = s->T;
    double mean[MAX_K + 1];
    for (int c = 0; c <= K; c++) {
        mean[c] = 0;
        for (int j = 0; j < T; j++) mean[c] += mse[(size_t)c * T + j] / T;
    }
    double other = 0;
    for (int c = 1; c < K; c++) other += mean[c] / (K - 1);
    const double g = (other - mean[0]) / mean[0], ge = (mean[K] - mean[0]) / mean[0];
    s->correct += top1_credit(mean, K);
    s->mse_true += mean[0], s->mse_other += other, s->mse_empty += mean[K];
    s->gap += g, s->gap2 += g * g, s->gap_empty += ge, s->gap_empty2 += ge * ge;
    s->true_beats_empty += mean[0] < mean[K];
    for (int j = 0; j < T; j++) {
        double at[MAX_K] = {0}, o = 0;
        for (int c = 0; c < K; c++) at[c] = mse[(size_t)c * T + j];
        for (int c = 1; c < K; c++) o += at[c] / (K - 1);
        s->t_true[j] += at[0], s->t_other[j] += o, s->t_empty[j] += mse[(size_t)K * T + j];
        s->t_correct[j] += top1_credit(at, K);
    }
    s->n_img++;
}

/* Standard error of a mean from its sum and sum of squares over n values. */
static double mean_se(double sum, double sum2, int n) {
    if (n < 2) return NAN;
    const double m = sum / n, var = (sum2 - n * m * m) / (n - 1);
    return sqrt(fmax(var, 0.0) / n);
}

static void print_table(const tally *s, const int *ts, const char *data) {
    const int n = s->n_img, K = s->K;
    const double acc = s->correct / n, se = sqrt(acc * (1 - acc) / n);
    printf("caption adherence (diffusion classifier): %d images of %s, K = %d candidates, "
           "T = %d (t, noise) pairs\n",
           n, data, K, s->T);
    printf("top-1 accuracy      %.4f +- %.4f (binomial SE)   chance 1/K = %.4f\n", acc, se,
           1.0 / K);
    printf("eps MSE: true caption %.5f   other captions %.5f   empty caption %.5f\n",
           s->mse_true / n, s->mse_other / n, s->mse_empty / n);
    printf("relative gap (other - true)/true  %+.5f +- %.5f\n", s->gap / n,
           mean_se(s->gap, s->gap2, n));
    printf("relative gap (\"\" - true)/true     %+.5f +- %.5f   own caption beats \"\": %d/%d\n",
           s->gap_empty / n, mean_se(s->gap_empty, s->gap_empty2, n), s->true_beats_empty, n);
    printf("%5s  %10s  %10s  %10s  %10s  %8s\n", "t", "MSE true", "MSE other", "MSE \"\"",
           "rel. gap", "top-1");
    for (int j = 0; j < s->T; j++)
        printf("%5d  %10.5f  %10.5f  %10.5f  %+10.5f  %8.4f\n", ts[j], s->t_true[j] / n,
               s->t_other[j] / n, s->t_empty[j] / n, (s->t_other[j] - s->t_true[j]) / s->t_true[j],
               s->t_correct[j] / n);
}

static char *result_json(const tally *s, const int *ts, const char *sd_dir, const char *data,
                         long long seed, const char *prov_json) {
    const int n = s->n_img;
    const double acc = s->correct / n;
    cJSON *r = cJSON_CreateObject(), *per = cJSON_CreateArray();
    cJSON_AddStringToObject(r, "what",
                            "caption adherence of the SD UNet as a diffusion classifier (Li et "
                            "al. 2023): top-1 over K candidate captions by the lowest mean eps "
                            "MSE over T shared (t, noise) pairs");
    cJSON_AddStringToObject(r, "sd", sd_dir);
    cJSON_AddStringToObject(r, "data", data);
    cJSON_AddNumberToObject(r, "images", n);
    cJSON_AddNumberToObject(r, "K", s->K);
    cJSON_AddNumberToObject(r, "T", s->T);
    cJSON_AddNumberToObject(r, "seed", (double)seed);
    cJSON_AddNumberToObject(r, "top1_accuracy", acc);
    cJSON_AddNumberToObject(r, "top1_binomial_se", sqrt(acc * (1 - acc) / n));
    cJSON_AddNumberToObject(r, "chance", 1.0 / s->K);
    cJSON_AddNumberToObject(r, "mse_true_caption", s->mse_true / n);
    cJSON_AddNumberToObject(r, "mse_other_captions", s->mse_other / n);
    cJSON_AddNumberToObject(r, "mse_empty_caption", s->mse_empty / n);
    cJSON_AddNumberToObject(r, "relative_gap_other", s->gap / n);
    cJSON_AddNumberToObject(r, "relative_gap_other_se", mean_se(s->gap, s->gap2, n));
    cJSON_AddNumberToObject(r, "relative_gap_empty", s->gap_empty / n);
    cJSON_AddNumberToObject(r, "relative_gap_empty_se", mean_se(s->gap_empty, s->gap_empty2, n));
    cJSON_AddNumberToObject(r, "true_beats_empty", s->true_beats_empty);
    for (int j = 0; j < s->T; j++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "t", ts[j]);
        cJSON_AddNumberToObject(o, "mse_true", s->t_true[j] / n);
        cJSON_AddNumberToObject(o, "mse_other", s->t_other[j] / n);
        cJSON_AddNumberToObject(o, "mse_empty", s->t_empty[j] / n);
        cJSON_AddNumberToObject(o, "top1_accuracy", s->t_correct[j] / n);
        cJSON_AddItemToArray(per, o);
    }
    cJSON_AddItemToObject(r, "per_timestep", per);
    cJSON *prov = cJSON_Parse(prov_json);
    if (prov) cJSON_AddItemToObject(r, "provenance", prov);
    char *txt = prov ? cJSON_Print(r) : NULL;
    cJSON_Delete(r);
    return txt;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s SD_DIR DATA_DIR N K T SEED OUT_JSON\n", argv[0]);
        return 2;
    }
    const char *sd_dir = argv[1], *data = argv[2], *out_path = argv[7];
    long long N, K, T, seed;
    if (parse_int("N", argv[3], 1, 1000000, &N) || parse_int("K", argv[4], 2, MAX_K, &K) ||
        parse_int("T", argv[5], 1, MAX_T, &T) || parse_int("SEED", argv[6], 0, INT64_MAX, &seed)) {
        fprintf(stderr, "caption adherence: %s\n", asam_last_error());
        return 2;
    }
    asam_set_threads(1);
    asam_sd *sd = NULL;
    asam_dataset *ds = NULL;
    asam_captions *caps = NULL;
    asam_ctx *ctx = NULL;
    asam_prov *prov = NULL;
    asam_atomic_file out = {0};
    char *prov_json = NULL, *txt = NULL, *name_buf = NULL;
    const char **caption = NULL, **cand_text = NULL;
    size_t *order = NULL, *cand = NULL;
    double *mse = NULL;
    tally s = {.K = (int)K, .T = (int)T};
    int ts[MAX_T], rc = 1;
    float ac[ASAM_DDPM_STEPS];
    char spec[4096], path[4096];
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(path, sizeof path, "%s/captions.jsonl", data);
    if (!asam_file_exists(path)) {
        asam_error("%s: not found (the images' captions)", path);
        goto done;
    }
    /* opened first: an unwritable OUT_JSON fails now, not after the measurement */
    if (asam_atomic_open(&out, out_path)) goto done;
    if (asam_sd_load(sd_dir, NULL, &sd) || asam_dataset_open(spec, &ds) ||
        asam_captions_load(path, &caps))
        goto done;
    const size_t n_all = asam_dataset_count(ds);
    if ((size_t)N > n_all || (size_t)K > n_all) {
        asam_error("%s holds %zu images: N = %lld and K = %lld must not exceed it", data, n_all, N,
                   K);
        goto done;
    }
    /* every image's caption: the pool the other candidates come from */
    const size_t name_len = 300;
    caption = calloc(n_all, sizeof *caption);
    name_buf = malloc(name_len);
    order = malloc(n_all * sizeof *order);
    cand = malloc((size_t)K * sizeof *cand);
    cand_text = malloc((size_t)K * sizeof *cand_text);
    mse = malloc((size_t)(K + 1) * (size_t)T * sizeof *mse);
    s.t_true = calloc((size_t)T * 4, sizeof(double));
    if (!caption || !name_buf || !order || !cand || !cand_text || !mse || !s.t_true) {
        asam_error("out of memory");
        goto done;
    }
    s.t_other = s.t_true + T, s.t_empty = s.t_true + 2 * T, s.t_correct = s.t_true + 3 * T;
    for (size_t j = 0; j < n_all; j++) {
        snprintf(name_buf, name_len, "%s.jpg", asam_dataset_item_name(ds, j));
        if (!asam_captions_has(caps, name_buf)) {
            asam_error("%s: no caption for %s", path, name_buf);
            goto done;
        }
        caption[j] = asam_captions_get(caps, name_buf);
    }
    /* evenly over the training range 0..999 (train_unet.c draws t uniformly from it) */
    for (int j = 0; j < T; j++) ts[j] = (int)(((double)j + 0.5) * ASAM_DDPM_STEPS / (double)T);
    asam_sd_alphas_cumprod(ac);
    ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_rng rng;
    asam_rng_seed(&rng, (uint64_t)seed);
    asam_progress bar;
    asam_progress_start(&bar, "caption adherence", "img", N, ASAM_PROGRESS_LOG);
    bar.every = N / 10 > 0 ? N / 10 : 1;
    for (size_t i = 0; i < (size_t)N; i++) {
        asam_sample smp;
        if (pick_candidates(&rng, caption, n_all, i, (int)K, order, cand)) goto done;
        const uint64_t noise_seed = asam_rng_u64(&rng);
        for (int c = 0; c < K; c++) cand_text[c] = caption[cand[c]];
        if (asam_dataset_get(ds, i, 1, &smp)) goto done;
        int bad = smp.w % 8 || smp.h % 8;
        if (bad)
            asam_error("%s: %dx%d is not a multiple of 8 (the VAE's factor)",
                       asam_dataset_item_name(ds, i), smp.w, smp.h);
        else if (measure_image(ctx, sd, &smp.image, cand_text, (int)K, (int)T, ts, ac, noise_seed,
                               mse))
            bad = asam_error_prefix(asam_dataset_item_name(ds, i));
        asam_sample_free(&smp);
        if (bad) goto done;
        tally_image(&s, mse);
        asam_progress_update(&bar, (int64_t)i + 1, "top-1 %.3f", s.correct / s.n_img);
    }
    asam_progress_end(&bar);
    print_table(&s, ts, data);
    prov = asam_prov_new("sd-caption-adherence");
    asam_prov_int(prov, "N", N);
    asam_prov_int(prov, "K", K);
    asam_prov_int(prov, "T", T);
    asam_prov_int(prov, "seed", seed);
    asam_prov_file(prov, "sd", sd_dir);
    asam_prov_file(prov, "data", data);
    prov_json = prov ? asam_prov_json(prov) : NULL;
    txt = prov_json ? result_json(&s, ts, sd_dir, data, seed, prov_json) : NULL;
    if (!txt) {
        asam_error("out of memory");
        goto done;
    }
    if (fputs(txt, out.fp) == EOF) {
        asam_error("%s: cannot write", out_path);
        goto done;
    }
    if (asam_atomic_commit(&out)) goto done;
    printf("written: %s\n", out_path);
    rc = 0;
done:
    if (rc) fprintf(stderr, "caption adherence: %s\n", asam_last_error());
    if (out.fp) asam_atomic_abort(&out);
    free(txt), free(prov_json), free(name_buf), free(order), free(cand), free(mse);
    free(caption), free(cand_text), free(s.t_true);
    asam_prov_free(prov);
    asam_ctx_free(ctx);
    asam_sd_free(sd);
    asam_captions_free(caps);
    asam_dataset_close(ds);
    return rc;
}
