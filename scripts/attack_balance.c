/* Issue 16 item 6: the attack's loss balance on trained models. For each inversion a generate
 * run left (GEN/inv/STEM.safetensors) and its scene (DATA/STEM.jpg + .json), at the clean x_T
 * (grad skip, as the official code): dL/dz_0 of the mask terms (100 BCE + 100 Dice) and of the
 * -||x - x_ref||_2 term separately (the gradient is linear in the terms), their shares of
 * ||dL/dz_0||_1, and how many latent values keep the sign of the MI-FGSM step with and without
 * the L2 term (the first step's sign is the gradient's).
 *
 * Build and run: cmake --build build --target attack_balance, then
 *   build/attack_balance SD_DIR CONTROLNET SAM GEN_DIR DATA_DIR [N] */
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/image.h"
#include "asam/sa1b.h"
#include "asam/sam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dL/dz_0 of one loss setting at z_0 = the chain output from the inversion's x_T. */
static int grad_at(asam_ctx *ctx, const asam_gen_models *M, const asam_gen_opts *o,
                   const asam_inversion *inv, asam_tensor *hint, const asam_attack_target *tg,
                   float *g, size_t nl) {
    asam_mark mk = asam_ctx_mark(ctx);
    int prev = asam_ctx_set_grad(ctx, 0);
    asam_tensor *cond = asam_sd_encode_prompt(ctx, M->sd, inv->prompt);
    asam_tensor *xT = asam_from_data(ctx, ASAM_SHAPE(1, 4, inv->lat_h, inv->lat_w), inv->x_T);
    asam_tensor *z0 = asam_detach(ctx, asam_gen_sample_chain(ctx, M, o, inv, cond, hint, xT, 0));
    int rc = z0 ? 0 : -1;
    if (!rc) {
        asam_set_requires_grad(z0, 1);
        asam_ctx_set_grad(ctx, 1);
        asam_tensor *loss =
            asam_attack_loss(ctx, M, o, tg, asam_gen_decode01(ctx, M, z0), NULL, NULL);
        rc = loss && asam_backward(ctx, loss) == 0 && z0->grad ? 0 : -1;
        for (size_t i = 0; !rc && i < nl; i++) g[i] = z0->grad[i];
    }
    if (rc) fprintf(stderr, "attack_balance: %s\n", asam_ctx_error(ctx));
    asam_ctx_set_grad(ctx, prev);
    asam_ctx_release(ctx, mk);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: attack_balance SD_DIR CONTROLNET SAM GEN_DIR DATA_DIR [N]\n");
        return 2;
    }
    const int N = argc > 6 ? atoi(argv[6]) : 4;
    asam_gen_models M;
    if (asam_gen_models_load(argv[1], argv[2], argv[3], &M)) {
        fprintf(stderr, "attack_balance: %s\n", asam_last_error());
        return 1;
    }
    const int S = asam_sam_img_size(M.sam);
    asam_ctx *ctx = asam_ctx_new(0);
    double tot_mask = 0, tot_l2 = 0, tot_agree = 0;
    int done = 0;
    printf("| scene | masks | mask terms ||dL/dz0||_1 | L2 term ||dL/dz0||_1 | L2 share | step signs kept |\n"
           "| --- | --- | --- | --- | --- | --- |\n");
    for (int i = 1; i <= N; i++) {
        char p[4096];
        asam_inversion inv;
        snprintf(p, sizeof p, "%s/inv/sa_%d.safetensors", argv[4], i);
        if (asam_inversion_load(p, &inv)) continue;
        asam_gen_opts o;
        asam_gen_opts_default(&o);
        o.size = inv.size, o.steps = inv.steps;
        asam_sa1b_image ann;
        asam_image img = {0}, map = {0};
        asam_attack_target tg;
        memset(&tg, 0, sizeof tg);
        snprintf(p, sizeof p, "%s/sa_%d.json", argv[5], i);
        int rc = asam_sa1b_read(p, &ann);
        snprintf(p, sizeof p, "%s/sa_%d.jpg", argv[5], i);
        if (!rc) rc = asam_image_read(p, 3, &img);
        if (!rc) rc = asam_attack_target_make_at(&ann, o.max_boxes, S, &tg);
        if (!rc) rc = asam_attack_target_set_reference(&tg, &img);
        if (!rc) rc = asam_mask_map(&ann, &map);
        asam_tensor *hint = rc ? NULL : asam_control_hint(ctx, &map, o.size, 0);
        const size_t nl = (size_t)4 * inv.lat_h * inv.lat_w;
        float *gm = malloc(nl * sizeof(float)), *gl = malloc(nl * sizeof(float));
        asam_gen_opts om = o, ol = o;
        om.w_l2 = 0;              /* 100 BCE + 100 Dice */
        ol.w_bce = ol.w_dice = 0; /* -||x - x_ref||_2 (scaled by 1024/S as the attack does) */
        if (!rc && hint && gm && gl && grad_at(ctx, &M, &om, &inv, hint, &tg, gm, nl) == 0 &&
            grad_at(ctx, &M, &ol, &inv, hint, &tg, gl, nl) == 0) {
            double l1m = 0, l1l = 0;
            size_t agree = 0;
            for (size_t k = 0; k < nl; k++) {
                l1m += fabs(gm[k]), l1l += fabs(gl[k]);
                float both = gm[k] + gl[k];
                agree += (both > 0) == (gm[k] > 0) && (both < 0) == (gm[k] < 0);
            }
            printf("| sa_%d | %d | %.4g | %.4g | %.1f%% | %.1f%% of %zu |\n", i, tg.n, l1m, l1l,
                   100 * l1l / (l1m + l1l), 100.0 * agree / nl, nl);
            tot_mask += l1m, tot_l2 += l1l, tot_agree += (double)agree / nl, done++;
        } else if (rc) {
            fprintf(stderr, "attack_balance: sa_%d: %s\n", i, asam_last_error());
        }
        free(gm), free(gl);
        asam_attack_target_free(&tg);
        asam_image_free(&img), asam_image_free(&map);
        if (!rc) asam_sa1b_free(&ann);
        asam_inversion_free(&inv);
    }
    if (done)
        printf("| **mean** | | %.4g | %.4g | %.1f%% | %.1f%% |\n", tot_mask / done, tot_l2 / done,
               100 * tot_l2 / (tot_mask + tot_l2), 100 * tot_agree / done);
    asam_ctx_free(ctx);
    asam_gen_models_free(&M);
    return done ? 0 : 1;
}
