/* SAM at an input size other than 1024 (build_sam.py's image_size parameter): a random model of
 * input side 128 (8x8 tokens, 32x32 low-res masks) saved in the official layout (.pth and
 * .safetensors), loaded back with its size read from pos_embed, the predictor run end to end
 * on a box and a point over a non-square image (resize + padding + crop), and central finite
 * differences of the mask loss against the analytic gradient through the whole model
 * (pixels, encoder, prompt embeddings, decoder). */
#include "test_util.h"

#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static asam_sam_config mini_config(void) {
    asam_sam_config c;
    memset(&c, 0, sizeof c);
    c.embed_dim = 32;
    c.depth = 2;
    c.num_heads = 2;
    c.head_dim = 16;
    c.mlp_dim = 128;
    c.window = 3; /* 8 is not a multiple of 3: windowed blocks pad */
    c.img_size = 128;
    c.n_global = 1;
    c.global_idx[0] = 1;
    c.is_global[1] = 1;
    snprintf(c.variant, sizeof c.variant, "custom");
    return c;
}

static void fill_image(asam_image *img, int w, int h) {
    asam_image_alloc(img, w, h, 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int in = (x - 40) * (x - 40) + (y - 30) * (y - 30) < 400;
            uint8_t *p = img->data + ((size_t)y * w + x) * 3;
            p[0] = in ? 220 : (uint8_t)(40 + x / 2);
            p[1] = in ? 60 : (uint8_t)(50 + y / 2);
            p[2] = (uint8_t)(70 + ((x ^ y) & 15));
        }
}

/* The mask loss of a box prompt on the image given as 0..255 pixels (1, 3, h, w). */
static asam_tensor *box_loss(asam_ctx *ctx, const asam_sam *m, asam_tensor *pix, const float *box,
                             asam_tensor *target) {
    asam_tensor *x = asam_sam_normalize_pad_at(ctx, pix, asam_sam_img_size(m));
    asam_tensor *emb = asam_sam_encode(ctx, m, x);
    asam_sam_prompt pr = {.batch = 1, .boxes = box};
    asam_tensor *sp, *de, *low, *iou;
    if (asam_sam_prompt_encode(ctx, m, &pr, &sp, &de)) return NULL;
    if (asam_sam_decode(ctx, m, emb, sp, de, 0, &low, &iou, NULL)) return NULL;
    asam_tensor *l = asam_add(ctx, asam_bce_with_logits(ctx, low, target),
                              asam_dice_loss(ctx, low, target, 1.0f));
    return asam_add(ctx, l, asam_mse(ctx, iou, asam_full(ctx, ASAM_SHAPE(1, 1), 0.7f)));
}

int main(void) {
    asam_set_threads(1);
    char dir[] = "/tmp/asam_sam_mini_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    asam_sam_config cfg = mini_config();
    asam_sam *m = NULL, *mp = NULL, *ms = NULL;
    CHECK(asam_sam_init_random(&cfg, 7, &m) == 0, "init: %s", asam_last_error());
    if (!m) return test_finish("test_sam_mini");
    CHECK(asam_sam_img_size(m) == 128 && asam_sam_grid(m) == 8 && asam_sam_lowres(m) == 32,
          "sizes %d %d %d", asam_sam_img_size(m), asam_sam_grid(m), asam_sam_lowres(m));
    CHECK(m->enc.pos_embed->shape[1] == 8 && m->enc.blocks[1].rel_pos_h->shape[0] == 15,
          "pos_embed / global rel_pos shapes");

    /* ---- official layout round trip ---- */
    char pth[512], st[512];
    snprintf(pth, sizeof pth, "%s/mini.pth", dir);
    snprintf(st, sizeof st, "%s/mini.safetensors", dir);
    CHECK(asam_sam_save(m, pth) == 0, "save pth: %s", asam_last_error());
    CHECK(asam_sam_save(m, st) == 0, "save st: %s", asam_last_error());
    CHECK(asam_sam_load(pth, &mp) == 0, "load pth: %s", asam_last_error());
    CHECK(asam_sam_load(st, &ms) == 0, "load st: %s", asam_last_error());
    asam_sam_config got;
    CHECK(asam_sam_config_from_file(pth, &got) == 0, "config: %s", asam_last_error());
    CHECK(got.img_size == 128 && got.embed_dim == 32 && got.depth == 2 && got.num_heads == 2 &&
              got.window == 3 && got.n_global == 1 && got.global_idx[0] == 1 &&
              !strcmp(got.variant, "custom"),
          "config read back: img %d C %d depth %d heads %d window %d globals %d", got.img_size,
          got.embed_dim, got.depth, got.num_heads, got.window, got.n_global);

    /* ---- predictor end to end: 96 x 128 image (landscape: padded rows) ---- */
    asam_image img;
    fill_image(&img, 128, 96);
    const float box[4] = {18, 8, 62, 52}, pt[2] = {40, 30}, lab[1] = {1};
    asam_sam_result r[3];
    const asam_sam *models[3] = {m, mp, ms};
    for (int k = 0; k < 3; k++) {
        memset(&r[k], 0, sizeof r[k]);
        asam_sam_predictor p;
        CHECK(asam_sam_predictor_init(&p, models[k]) == 0, "predictor");
        CHECK(asam_sam_predictor_set_image(&p, &img) == 0, "set_image: %s", asam_last_error());
        CHECK(p.sizes.input_h == 96 && p.sizes.input_w == 128, "sizes %dx%d", p.sizes.input_w,
              p.sizes.input_h);
        asam_sam_query q = {.batch = 1, .boxes = box};
        CHECK(asam_sam_predictor_predict(&p, &q, 0, &r[k]) == 0, "predict: %s", asam_last_error());
        asam_sam_result rp;
        asam_sam_query qp = {.batch = 1, .n_points = 1, .points = pt, .labels = lab};
        CHECK(asam_sam_predictor_predict(&p, &qp, 1, &rp) == 0, "predict point: %s",
              asam_last_error());
        CHECK(rp.n_masks == 3 && rp.h == 96 && rp.w == 128, "multimask shape");
        asam_sam_result_free(&rp);
        asam_sam_predictor_free(&p);
    }
    CHECK(r[0].n_masks == 1 && r[0].h == 96 && r[0].w == 128, "result shape %d %dx%d", r[0].n_masks,
          r[0].w, r[0].h);
    for (int k = 1; k < 3 && r[0].low_res && r[k].low_res; k++) {
        CHECK(!memcmp(r[0].low_res, r[k].low_res, sizeof(float) * 32 * 32),
              "reloaded model (%s) gives other low-res logits", k == 1 ? "pth" : "safetensors");
        CHECK(!memcmp(r[0].mask_logits, r[k].mask_logits, sizeof(float) * 96 * 128),
              "reloaded model gives other mask logits");
    }
    /* postprocess: the 32x32 low-res upsampled to 128, cropped to 96 rows (no second resize) */
    if (r[0].low_res) {
        asam_ctx *c = asam_ctx_new(0);
        asam_tensor *lr = asam_from_data(c, ASAM_SHAPE(1, 1, 32, 32), r[0].low_res);
        asam_tensor *up = asam_resize_bilinear(c, lr, 128, 128);
        double worst = 0;
        for (int y = 0; y < 96; y++)
            for (int x = 0; x < 128; x++)
                worst = fmax(worst, fabs(up->data[y * 128 + x] - r[0].mask_logits[y * 128 + x]));
        CHECK(worst == 0, "postprocess differs from resize+crop by %g", worst);
        asam_ctx_free(c);
    }
    for (int k = 0; k < 3; k++) asam_sam_result_free(&r[k]);

    /* ---- gradient: analytic vs central finite differences through the whole model ---- */
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *const *params;
    const char *const *names;
    size_t n;
    asam_sam_params(m, &params, &names, &n);
    for (size_t i = 0; i < n; i++) {
        asam_set_requires_grad(params[i], 1);
        asam_param_zero_grad(params[i]);
    }
    asam_tensor *pix = asam_sam_image_to_tensor(ctx, &img);
    asam_tensor *pixp = asam_param_new(ASAM_SHAPE(1, 3, 96, 128));
    memcpy(pixp->data, pix->data, sizeof(float) * (size_t)pix->numel);
    asam_set_requires_grad(pixp, 1);
    asam_param_zero_grad(pixp);
    asam_tensor *target = asam_param_new(ASAM_SHAPE(1, 1, 32, 32));
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++)
            target->data[y * 32 + x] = (x - 10) * (x - 10) + (y - 8) * (y - 8) < 30;
    asam_mark mk = asam_ctx_mark(ctx);
    asam_tensor *loss = box_loss(ctx, m, pixp, box, target);
    CHECK(loss && asam_backward(ctx, loss) == 0, "backward: %s", asam_ctx_error(ctx));
    asam_ctx_release(ctx, mk);
    asam_ctx_set_grad(ctx, 0);
    /* one probe per kind of weight: pixels, patch embedding, pos_embed, a windowed and a global
     * block, the neck, the prompt embeddings (box corners, no-mask), decoder and IoU head */
    struct {
        asam_tensor *t;
        const char *what;
    } probes[] = {{pixp, "pixels"},
                  {m->enc.patch_w, "patch_embed"},
                  {m->enc.pos_embed, "pos_embed"},
                  {m->enc.blocks[0].qkv_w, "block0 qkv (windowed)"},
                  {m->enc.blocks[0].rel_pos_w, "block0 rel_pos_w"},
                  {m->enc.blocks[1].lin1_w, "block1 mlp (global)"},
                  {m->enc.neck2_w, "neck conv"},
                  {m->pe.point_embed[2], "box corner embedding"},
                  {m->pe.no_mask, "no_mask embedding"},
                  {m->dec.layers[0].t2i.v_w, "decoder cross-attention"},
                  {m->dec.up0_w, "output upscaling"},
                  {m->dec.iou_head.w[2], "IoU head"},
                  {m->dec.mask_tokens, "mask tokens"}};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        asam_tensor *t = probes[k].t;
        CHECK(t->grad != NULL, "%s: no gradient", probes[k].what);
        if (!t->grad) continue;
        /* the 6 coordinates with the largest analytic gradient */
        int64_t idx[6];
        for (int j = 0; j < 6; j++) {
            idx[j] = -1;
            for (int64_t i = 0; i < t->numel; i++) {
                int dup = 0;
                for (int q = 0; q < j; q++) dup |= idx[q] == i;
                if (!dup && (idx[j] < 0 || fabsf(t->grad[i]) > fabsf(t->grad[idx[j]]))) idx[j] = i;
            }
        }
        double worst = 0, scale = 0;
        for (int j = 0; j < 6; j++) {
            float keep = t->data[idx[j]];
            const float eps = t == pixp ? 4.0f : fmaxf(1e-2f * fabsf(keep), 1e-2f);
            double f[2];
            for (int s = 0; s < 2; s++) {
                t->data[idx[j]] = keep + (s ? -eps : eps);
                asam_mark mk2 = asam_ctx_mark(ctx);
                asam_tensor *l = box_loss(ctx, m, pixp, box, target);
                f[s] = l ? l->data[0] : NAN;
                asam_ctx_release(ctx, mk2);
            }
            t->data[idx[j]] = keep;
            double fd = (f[0] - f[1]) / (2.0 * eps);
            worst = fmax(worst, fabs(fd - t->grad[idx[j]]));
            scale = fmax(scale, fabs(fd));
        }
        double rel = scale > 0 ? worst / scale : worst;
        printf("  FD %-26s max|grad - fd| / max|fd| = %.2e (max|fd| %.3e)\n", probes[k].what, rel,
               scale);
        CHECK(rel < 3e-2 && scale > 0, "%s: finite differences disagree (%.2e)", probes[k].what,
              rel);
    }
    asam_param_free(pixp);
    asam_param_free(target);
    asam_ctx_free(ctx);
    asam_image_free(&img);
    asam_sam_free(m);
    asam_sam_free(mp);
    asam_sam_free(ms);

    /* ---- bad sizes are refused with a message ---- */
    asam_sam_config bad = mini_config();
    bad.img_size = 120;
    asam_sam *mb = NULL;
    CHECK(asam_sam_init_random(&bad, 1, &mb) != 0 && strstr(asam_last_error(), "120"),
          "img_size 120 accepted");
    asam_sam_free(mb);
    if (!test_failures) test_rm_rf(dir);
    return test_finish("test_sam_mini");
}
