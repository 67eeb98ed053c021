/* Mask fidelity of the miniature world's SD models (docs/world.md): for the first N images of an
 * SA-1B folder, DDIM-invert the VAE latent (ASAM's convention: 50 steps, steps_offset 0,
 * guidance 1 on the caption, the mask ControlNet on with the image's GT colour mask map), then
 * regenerate from the inverted x_T under the same control, with guidance 1 (as inverted) and 7.5
 * (no null-text optimisation), and report per variant:
 *   PSNR of the 8-bit result against the original, and
 *   SAM-mini's box mIoU (tight GT boxes, single-mask output) on the result, against the GT masks,
 *   next to the same mIoU on the original and on the VAE round trip.
 * A few panels (original | VAE | guidance 1 | guidance 7.5 | control map) go to OUT_DIR.
 *
 * Build and run: cmake --build build --target sd_mini_fidelity, then
 *   build/sd_mini_fidelity SD_DIR CONTROLNET SAM DATA_DIR N OUT_DIR */
#include "asam/dataset.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/generator.h"
#include "asam/sa1b.h"
#include "asam/sam.h"
#include "asam/sd.h"
#include "asam/sd_models.h"
#include "asam/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V_ORIG, V_VAE, V_CFG1, V_CFG75, NV };
static const char *vname[NV] = {"original", "VAE round trip", "regenerated, guidance 1",
                                "regenerated, guidance 7.5"};

static double psnr8(const asam_image *a, const asam_image *b) {
    double se = 0;
    const size_t n = (size_t)a->w * a->h * 3;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a->data[i] - b->data[i];
        se += d * d;
    }
    return se > 0 ? 10.0 * log10(255.0 * 255.0 * (double)n / se) : 99.0;
}

/* Box-prompt IoUs of every GT mask on img: sum into *sum, count into *cnt. */
static int box_iou(asam_sam_predictor *pred, const asam_image *img, const asam_sample *s,
                   double *sum, long *cnt) {
    if (s->n_masks < 1) return 0;
    float *boxes = malloc(sizeof(float) * 4 * (size_t)s->n_masks);
    if (!boxes) return -1;
    for (int k = 0; k < s->n_masks; k++)
        asam_mask_box_u8(s->masks + (size_t)k * s->w * s->h, s->w, s->h, boxes + 4 * k);
    asam_sam_result res;
    asam_sam_query q = {.batch = s->n_masks, .boxes = boxes};
    int rc =
        asam_sam_predictor_set_image(pred, img) || asam_sam_predictor_predict(pred, &q, 0, &res);
    const int64_t HW = (int64_t)s->w * s->h;
    for (int k = 0; !rc && k < s->n_masks; k++) {
        const uint8_t *a = res.masks + k * HW, *b = s->masks + k * HW;
        int64_t inter = 0, uni = 0;
        for (int64_t p = 0; p < HW; p++) inter += a[p] && b[p], uni += a[p] || b[p];
        *sum += uni ? (double)inter / (double)uni : 1.0;
        (*cnt)++;
    }
    if (!rc) asam_sam_result_free(&res);
    free(boxes);
    return rc;
}

static int decode_image(asam_ctx *ctx, const asam_sd *sd, asam_tensor *z, asam_image *out) {
    asam_tensor *x = asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE));
    return x ? asam_sd_tensor_to_image(x, out) : -1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s SD_DIR CONTROLNET SAM DATA_DIR N OUT_DIR\n", argv[0]);
        return 2;
    }
    const char *sd_dir = argv[1], *cn_path = argv[2], *sam_path = argv[3], *data = argv[4];
    const int N = atoi(argv[5]), S = 128;
    const char *out_dir = argv[6];
    asam_set_threads(1);
    asam_sd *sd = NULL;
    asam_controlnet *cn = NULL;
    asam_sam *sam = NULL;
    asam_dataset *ds = NULL;
    asam_captions *caps = NULL;
    char spec[4096], path[4096];
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(path, sizeof path, "%s/captions.jsonl", data);
    if (asam_sd_load(sd_dir, NULL, &sd) || asam_sd_controlnet_open(cn_path, sd->unet, &cn) ||
        asam_sam_load(sam_path, &sam) || asam_dataset_open(spec, &ds) ||
        asam_captions_load(path, &caps) || asam_mkdirs(out_dir)) {
        fprintf(stderr, "fidelity: %s\n", asam_last_error());
        return 1;
    }
    asam_sam_predictor pred;
    if (asam_sam_predictor_init(&pred, sam)) return 1;
    asam_ddim sched;
    asam_ddim_init(&sched, 50,
                   0); // ref: luckybird1994/ASAM (DDIMScheduler steps_offset 0, 50 steps)
    asam_ctx *ctx = asam_ctx_new(0);
    double psnr[NV] = {0}, iou_sum[NV] = {0};
    long iou_cnt[NV] = {0};
    int n_done = 0;
    for (size_t i = 0; i < asam_dataset_count(ds) && (int)i < N; i++) {
        asam_sample s;
        if (asam_dataset_get(ds, i, 0, &s)) return fprintf(stderr, "%s\n", asam_last_error()), 1;
        asam_sa1b_image ann;
        snprintf(path, sizeof path, "%s/%s.json", data, s.name);
        if (asam_sa1b_read(path, &ann)) return fprintf(stderr, "%s\n", asam_last_error()), 1;
        snprintf(path, sizeof path, "%s.jpg", s.name);
        const char *cap = asam_captions_get(caps, path);
        asam_mark mk = asam_ctx_mark(ctx);
        asam_tensor *x = asam_sd_image_to_tensor(ctx, &s.image, S, S, -1.0f);
        asam_tensor *z0 = asam_scale(ctx, asam_vae_encode(ctx, sd->vae, x), ASAM_SD_LATENT_SCALE);
        asam_tensor *hint = asam_mask_map_tensor(ctx, &ann, S);
        asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, cap);
        asam_tensor *uncond = asam_sd_encode_prompt(ctx, sd, "");
        asam_sd_guide g = {.unet = sd->unet,
                           .controlnet = cn,
                           .hint = hint,
                           .control_scale = 1.0f,
                           .cond = cond,
                           .uncond = uncond,
                           .guidance = 1.0f};
        asam_tensor *xT = asam_ddim_invert(ctx, &g, &sched, z0, NULL, NULL, NULL);
        asam_tensor *z1 = xT ? asam_ddim_sample(ctx, &g, &sched, xT, NULL, NULL) : NULL;
        asam_sd_guide g7 = g;
        g7.guidance = 7.5f;
        asam_tensor *z7 = xT ? asam_ddim_sample(ctx, &g7, &sched, xT, NULL, NULL) : NULL;
        asam_image im[NV] = {{0}}, ctl = {0};
        im[V_ORIG] = s.image;
        if (!z1 || !z7 || decode_image(ctx, sd, z0, &im[V_VAE]) ||
            decode_image(ctx, sd, z1, &im[V_CFG1]) || decode_image(ctx, sd, z7, &im[V_CFG75]) ||
            !asam_ctx_ok(ctx)) {
            fprintf(stderr, "fidelity: %s: %s\n", s.name, asam_ctx_error(ctx));
            return 1;
        }
        /* the control map as an image, for the panel */
        asam_tensor *h2 = asam_add_scalar(ctx, asam_scale(ctx, hint, 2.0f), -1.0f);
        asam_sd_tensor_to_image(h2, &ctl);
        for (int v = 0; v < NV; v++) {
            psnr[v] += psnr8(&s.image, &im[v]);
            if (box_iou(&pred, &im[v], &s, &iou_sum[v], &iou_cnt[v])) return 1;
        }
        if (i < 6) { /* panel: the five images side by side */
            asam_image p = {0};
            asam_image_alloc(&p, 5 * S, S, 3);
            const asam_image *cols[5] = {&im[0], &im[1], &im[2], &im[3], &ctl};
            for (int c = 0; c < 5; c++)
                for (int y = 0; y < S; y++)
                    memcpy(p.data + ((size_t)y * 5 * S + (size_t)c * S) * 3,
                           cols[c]->data + (size_t)y * S * 3, (size_t)S * 3);
            snprintf(path, sizeof path, "%s/fidelity_%s.png", out_dir, s.name);
            asam_image_write_png(path, &p);
            asam_image_free(&p);
        }
        for (int v = 1; v < NV; v++) asam_image_free(&im[v]);
        asam_image_free(&ctl);
        asam_ctx_release(ctx, mk);
        asam_sa1b_free(&ann);
        asam_sample_free(&s);
        n_done++;
        fprintf(stderr, "\rfidelity: %d/%d", n_done, N);
    }
    fprintf(stderr, "\n");
    printf("images: %d from %s (captions from captions.jsonl, GT mask control)\n", n_done, data);
    for (int v = 0; v < NV; v++)
        printf("%-28s PSNR %6.2f dB   SAM-mini box mIoU %.4f (%ld masks)\n", vname[v],
               v ? psnr[v] / n_done : INFINITY, iou_sum[v] / iou_cnt[v], iou_cnt[v]);
    printf("mask fidelity (mIoU regenerated / original): guidance 1 %.3f, guidance 7.5 %.3f\n",
           (iou_sum[V_CFG1] / iou_cnt[V_CFG1]) / (iou_sum[V_ORIG] / iou_cnt[V_ORIG]),
           (iou_sum[V_CFG75] / iou_cnt[V_CFG75]) / (iou_sum[V_ORIG] / iou_cnt[V_ORIG]));
    asam_ctx_free(ctx);
    asam_sam_predictor_free(&pred);
    asam_sam_free(sam);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
    asam_captions_free(caps);
    asam_dataset_close(ds);
    return 0;
}
