/* EfficientSAM in the ASAM pipeline (tiny model):
 *  - eval: asam_eval_sample_esam's mIoU equals the IoU of the EfficientSAM predictor's own
 *    masks (tight GT boxes as points labelled 2 / 3) averaged by hand; asam_eval_run scores a
 *    SAM and an EfficientSAM checkpoint side by side;
 *  - attack: the attacked model may be an EfficientSAM (asam_gen_models_load picks the family
 *    from the file); the attack loss's gradient w.r.t. the image matches central differences
 *    along a random direction. */
#include "asam/asam.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "gradcheck.h"
#include "test_synth.h"
#include "test_util.h"

int main(void) {
    asam_set_threads(2);
    char tiny[4096], sam[4096], ann_path[4096];
    if (test_data_file("efficientsam_tiny/model.safetensors", tiny, sizeof tiny) ||
        test_data_file("sam_tiny/model.pth", sam, sizeof sam) ||
        test_data_file("sa1b/sa_1.json", ann_path, sizeof ann_path))
        TEST_SKIP("tiny models / SA-1B sample not found");
    char root[] = "/tmp/asam_test_esam_pipe_XXXXXX";
    if (!mkdtemp(root)) return 1;
    char model[300], data[300], spec[320], md[300];
    snprintf(model, sizeof model, "%s/esam_tiny.safetensors", root);
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(md, sizeof md, "%s/table.md", root);
    asam_esam *m = NULL;
    CHECK(asam_esam_load(tiny, 2, &m) == 0 && asam_esam_save(m, model) == 0, "tiny: %s",
          asam_last_error());
    if (!m) return test_finish("test_efficientsam_pipeline");
    CHECK(syn_write_sa1b(data, 2, 80, 48, 3, 1) == 0, "synthetic data");

    /* ---- eval ---- */
    asam_dataset *ds = NULL;
    CHECK(asam_dataset_open(spec, &ds) == 0, "open: %s", asam_last_error());
    asam_sample s;
    CHECK(ds && asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 3, "sample");
    double mi, bi;
    int nm;
    CHECK(asam_eval_sample_esam(m, &s, 0.02, &mi, &bi, &nm) == 0 && nm == 3, "eval: %s",
          asam_last_error());
    asam_esam_predictor p;
    asam_esam_predictor_init(&p, m);
    CHECK(asam_esam_predictor_set_image(&p, &s.image) == 0, "set image");
    size_t hw = (size_t)s.h * s.w;
    double want = 0, want_b = 0;
    for (int k = 0; k < s.n_masks; k++) {
        const uint8_t *g = s.masks + k * hw;
        int x0 = s.w, y0 = s.h, x1 = -1, y1 = -1;
        for (int y = 0; y < s.h; y++)
            for (int x = 0; x < s.w; x++)
                if (g[(size_t)y * s.w + x]) {
                    x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                    y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                }
        float pts[4] = {(float)x0, (float)y0, (float)x1, (float)y1}, lab[2] = {2, 3};
        asam_esam_result r;
        CHECK(asam_esam_predictor_predict(&p, 1, 2, pts, lab, 0, &r) == 0, "predict");
        want += asam_mask_iou(r.masks, g, (int64_t)hw) / s.n_masks;
        want_b += asam_boundary_iou(r.masks, g, s.h, s.w, 0.02) / s.n_masks;
        asam_esam_result_free(&r);
    }
    asam_esam_predictor_free(&p);
    CHECK(fabs(mi - want) < 1e-12 && fabs(bi - want_b) < 1e-12,
          "eval mIoU %.6f / bIoU %.6f vs predictor %.6f / %.6f", mi, bi, want, want_b);
    printf("ok   EfficientSAM eval = its predictor's masks scored by hand (mIoU %.4f)\n", mi);
    asam_sample_free(&s);
    asam_dataset_close(ds);

    asam_eval_opts eo;
    asam_eval_defaults(&eo);
    const char *models[2] = {sam, model}, *names[1] = {"syn"}, *specs[1] = {spec};
    eo.models = models;
    eo.n_models = 2;
    eo.names = names;
    eo.specs = specs;
    eo.n_data = 1;
    eo.md_path = md;
    asam_eval_cell cells[2];
    CHECK(asam_eval_run(&eo, cells) == 0, "eval run: %s", asam_last_error());
    CHECK(cells[0].n_masks == 6 && cells[1].n_masks == 6 && fabs(cells[1].miou - mi) < 1 &&
              cells[1].miou >= 0 && cells[1].miou <= 1,
          "cells: SAM %d masks, EfficientSAM %d masks", cells[0].n_masks, cells[1].n_masks);
    printf("ok   SAM and EfficientSAM side by side: mIoU %.4f / %.4f\n", cells[0].miou,
           cells[1].miou);

    /* ---- attack loss through EfficientSAM ---- */
    asam_gen_models gm = {0};
    gm.esam = m;
    asam_sa1b_image ann;
    CHECK(asam_sa1b_read(ann_path, &ann) == 0, "annotation: %s", asam_last_error());
    asam_attack_target tg;
    CHECK(asam_attack_target_make(&ann, 3, &tg) == 0, "target: %s", asam_last_error());
    asam_gen_opts o;
    asam_gen_opts_default(&o);
    o.w_l2 = 0.01f;
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *img = asam_new(ctx, ASAM_SHAPE(1, 3, 64, 64));
    asam_tensor *clean = asam_new(ctx, ASAM_SHAPE(1, 3, 64, 64));
    uint64_t sd = 5;
    for (int64_t i = 0; i < img->numel; i++) {
        clean->data[i] = 0.5f + 0.4f * gc_rand(&sd);
        img->data[i] = clean->data[i] + 0.05f * gc_rand(&sd);
    }
    asam_set_requires_grad(img, 1);
    /* the L2 term's reference: the clean image as 8-bit RGB (the attack's own reference) */
    asam_image ref_im = {0};
    CHECK(asam_image_alloc(&ref_im, 64, 64, 3) == 0, "reference image");
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            for (int c = 0; c < 3; c++)
                ref_im.data[(y * 64 + x) * 3 + c] =
                    (uint8_t)(clean->data[(c * 64 + y) * 64 + x] * 255.0f);
    CHECK(asam_attack_target_set_reference(&tg, &ref_im) == 0, "reference: %s", asam_last_error());
    asam_image_free(&ref_im);
    float miou;
    asam_tensor *loss = asam_attack_loss(ctx, &gm, &o, &tg, img, &miou, NULL);
    CHECK(loss && asam_backward(ctx, loss) == 0 && img->grad, "attack loss: %s",
          asam_ctx_error(ctx));
    if (loss && img->grad) {
        float *dir = malloc(sizeof(float) * (size_t)img->numel),
              *x0 = malloc(sizeof(float) * img->numel);
        /* The direction is the gradient itself, scaled to the norm of a random N(0,1) direction
         * (sqrt(n)): the derivative along it is |g| sqrt(n), about sqrt(n) = 111 times the one
         * along a random direction of the same length, while the float32 rounding of the loss
         * (one ulp of 137 = 1.5e-5 per evaluation, 0.3 / 2051 = 1.5e-4 after dividing by 2h)
         * stays the same: the central difference meets the 1e-3 gradient bound without a noise
         * allowance (measured: 1.4e-4 at h = 5e-5, 1.5e-5 at 3e-5, 3.6e-2 at 1e-3). */
        double g2 = 0;
        for (int64_t i = 0; i < img->numel; i++) g2 += (double)img->grad[i] * img->grad[i];
        const double scale = sqrt((double)img->numel / (g2 > 0 ? g2 : 1.0));
        double ana = 0;
        for (int64_t i = 0; i < img->numel; i++) {
            dir[i] = (float)(img->grad[i] * scale);
            ana += (double)dir[i] * img->grad[i];
            x0[i] = img->data[i];
        }
        double lv[2];
        const float h = 5e-5f; /* along the gradient the loss bends within about 1e-3 */
        asam_ctx_set_grad(ctx, 0);
        for (int k = 0; k < 2; k++) {
            asam_mark mk = asam_ctx_mark(ctx);
            for (int64_t i = 0; i < img->numel; i++) img->data[i] = x0[i] + (k ? -h : h) * dir[i];
            asam_tensor *l = asam_attack_loss(ctx, &gm, &o, &tg, img, NULL, NULL);
            lv[k] = l ? l->data[0] : NAN;
            asam_ctx_release(ctx, mk);
        }
        double num = (lv[0] - lv[1]) / (2.0 * h);
        CHECK(g2 > 0 && fabs(num - ana) <= 1e-3 * fabs(num),
              "attack-loss directional derivative %.6g vs central difference %.6g", ana, num);
        printf("ok   attack loss through EfficientSAM: loss %.4f, mIoU %.4f, directional "
               "derivative %.6g vs central difference %.6g\n",
               loss->data[0], miou, ana, num);
        free(dir);
        free(x0);
    }
    asam_ctx_free(ctx);
    asam_attack_target_free(&tg);
    asam_sa1b_free(&ann);

    /* asam_gen_models_load routes an EfficientSAM file to .esam */
    char sdp[4096];
    if (test_data_file("sd_tiny/model.ckpt", sdp, sizeof sdp) == 0) {
        asam_gen_models g2;
        CHECK(asam_gen_models_load(sdp, NULL, model, &g2) == 0 && g2.esam && !g2.sam,
              "gen models with an EfficientSAM: %s", asam_last_error());
        asam_gen_models_free(&g2);
    }
    asam_esam_free(m);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0, "cleanup");
    return test_finish("test_efficientsam_pipeline");
}
