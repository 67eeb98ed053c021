/* The ASAM pipeline's data preparation against the official scripts' own numbers
 * (tests/data/asam_ref, scripts/ref/make_asam_reference.py; no models needed):
 *   control-map hints (cv2 INTER_LINEAR, float path for the inversion, uint8 for the attack),
 *   the SD-side image (PIL default = bicubic), the attack target (bicubic 1024 masks, boxes of
 *   mask > 128, soft 256 labels), the L2 reference (bicubic 1024, ImageNet-normalised), the
 *   saved JPEG (quality 75), the official compute_iou (NaN on an empty union) and the eval
 *   protocol's per-mask IoU and boundary IoU. */
#include "asam/asam.h"
#include "asam/engine.h"
#include "asam/generator.h"
#include "asam/image.h"
#include "asam/train.h"
#include "asam_ref_util.h"

static asam_image read_img(const char *rel, int ch) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", REF_DIR, rel);
    asam_image im = {0};
    CHECK(asam_image_read(p, ch, &im) == 0, "read %s: %s", p, asam_last_error());
    return im;
}

static void test_hints(asam_ctx *ctx, const cJSON *meta) {
    int S = (int)ref_num(meta, "size");
    asam_image map = read_img("control_sa_1.png", 3);
    size_t n;
    float *inv = ref_tensor("inversion.safetensors", "hint_inv", &n);
    float *adv = ref_tensor("attack.safetensors", "hint_adv", NULL);
    asam_tensor *hi = asam_control_hint(ctx, &map, S, 1), *ha = asam_control_hint(ctx, &map, S, 0);
    CHECK(hi && ha && (size_t)hi->numel == n, "hints: %s", asam_ctx_error(ctx));
    if (hi && ha) {
        // ref: null_text_inversion.py:718-720 (cv2 float) and grad...edit.py:898-902 (cv2 uint8)
        REF_CLOSE(hi->data, inv, n, 1e-6, "inversion hint (cv2 INTER_LINEAR on float32)");
        REF_CLOSE(ha->data, adv, n, 1e-7, "attack hint (cv2 INTER_LINEAR on uint8)");
    }
    free(inv);
    free(adv);
    asam_image_free(&map);
}

static void test_sd_image(const cJSON *meta) {
    int S = (int)ref_num(meta, "size");
    asam_image img = read_img("sa_1.png", 3), rs;
    size_t n;
    float *ref = ref_tensor("inversion.safetensors", "image_gt", &n);
    // ref: null_text_inversion.py:550 Image.open().convert('RGB').resize((512, 512))
    CHECK(asam_image_resize_pil_bicubic(&img, S, S, &rs) == 0, "bicubic: %s", asam_last_error());
    if (rs.data && n == (size_t)S * S * 3) {
        int bad = 0;
        for (size_t i = 0; i < n; i++) bad += rs.data[i] != (uint8_t)ref[i];
        CHECK(bad == 0, "SD image: %d of %zu values differ from PIL's default resize", bad, n);
        if (!bad) printf("ok   SD-side image = PIL default (bicubic) resize, bit-exact\n");
    }
    asam_image_free(&rs);
    asam_image_free(&img);
    free(ref);
}

static void test_target(void) {
    asam_image masks[3];
    for (int j = 0; j < 3; j++) {
        char rel[64];
        snprintf(rel, sizeof rel, "sa_1/segmentation_%d.png", j);
        masks[j] = read_img(rel, 1);
    }
    asam_attack_target tg;
    CHECK(asam_attack_target_from_masks(masks, 3, &tg) == 0, "target: %s", asam_last_error());
    asam_image img = read_img("sa_1.png", 3);
    CHECK(asam_attack_target_set_reference(&tg, &img) == 0, "reference: %s", asam_last_error());
    size_t nb, nl, nr;
    float *boxes = ref_tensor("attack.safetensors", "boxes", &nb);
    float *lab = ref_tensor("attack.safetensors", "label_masks_256", &nl);
    float *raw = ref_tensor("attack.safetensors", "raw_img_s8", &nr);
    if (tg.n == 3 && nb == 12) {
        int bad = 0;
        for (int i = 0; i < 12; i++) bad += tg.boxes[i] != boxes[i];
        CHECK(bad == 0, "boxes: %d of 12 coordinates differ", bad);
        if (!bad)
            printf("ok   boxes = official masks_to_boxes of the bicubic 1024 masks (%g,%g,%g,%g "
                   "...)\n",
                   boxes[0], boxes[1], boxes[2], boxes[3]);
        REF_CLOSE(tg.lab256, lab, nl, 1e-7, "label_masks_256 (bicubic 1024 -> bilinear 256)");
        float *soft = malloc(nl * sizeof(float));
        for (size_t i = 0; i < nl; i++) soft[i] = lab[i] / 255.0f;
        REF_CLOSE(tg.gt256, soft, nl, 1e-7, "soft BCE/Dice target label_masks_256/255");
        free(soft);
        float *sub = malloc(nr * sizeof(float)); /* every 8th row and column, as stored */
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 128; y++)
                for (int x = 0; x < 128; x++)
                    sub[(c * 128 + y) * 128 + x] =
                        tg.ref1024[((size_t)c * 1024 + 8 * y) * 1024 + 8 * x];
        REF_CLOSE(sub, raw, nr, 1e-6,
                  "L2 reference raw_img (bicubic 1024, normalised; 1/64 sampled)");
        free(sub);
    }
    /* an empty mask: official masks_to_boxes gives (1e8, 1e8, 0, 0) */
    asam_image empty = {0};
    asam_image_alloc(&empty, 40, 30, 1);
    memset(empty.data, 0, 40 * 30);
    asam_attack_target te;
    if (asam_attack_target_from_masks(&empty, 1, &te) == 0) {
        CHECK(te.boxes[0] == 1e8f && te.boxes[1] == 1e8f && te.boxes[2] == 0 && te.boxes[3] == 0,
              "empty mask box (%g,%g,%g,%g), official (1e8,1e8,0,0)", te.boxes[0], te.boxes[1],
              te.boxes[2], te.boxes[3]);
        /* official compute_iou: 0/0 = NaN, and the mean over masks is NaN */
        float *low = malloc(256 * 256 * sizeof(float));
        for (int i = 0; i < 256 * 256; i++) low[i] = -1.0f;
        float v = asam_attack_iou(low, te.lab256, 1);
        CHECK(isnan(v), "IoU of an empty prediction and an empty label is %g, official NaN", v);
        if (isnan(v)) printf("ok   empty union -> NaN IoU, box (1e8,1e8,0,0) as official\n");
        free(low);
        asam_attack_target_free(&te);
    }
    asam_image_free(&empty);
    asam_image_free(&img);
    for (int j = 0; j < 3; j++) asam_image_free(&masks[j]);
    asam_attack_target_free(&tg);
    free(boxes);
    free(lab);
    free(raw);
}

static void test_jpeg(const cJSON *meta) {
    int S = (int)ref_num(meta, "size");
    size_t n;
    float *u8 = ref_tensor("attack.safetensors", "image_u8", &n);
    float *jp = ref_tensor("attack.safetensors", "jpeg_rgb", NULL);
    asam_image im = {0};
    asam_image_alloc(&im, S, S, 3);
    for (size_t i = 0; i < n; i++) im.data[i] = (uint8_t)u8[i];
    asam_attack_result r = {.iters = 1, .image = im};
    float mi = 0.5f, lo = 1.0f;
    r.miou = &mi;
    r.loss = &lo;
    asam_gen_opts o;
    asam_gen_opts_default(&o);
    // ref: grad...edit.py:911 + ptp_utils.py:62: PIL save, JPEG quality 75
    CHECK(asam_attack_write("asam_ref_adv.jpg", NULL, "sa_1", &o, &r) == 0, "write: %s",
          asam_last_error());
    asam_image back = {0};
    CHECK(asam_image_read("asam_ref_adv.jpg", 3, &back) == 0, "read back: %s", asam_last_error());
    if (back.data) {
        int bad = 0, worst = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)back.data[i] - (int)jp[i]);
            bad += d != 0;
            worst = d > worst ? d : worst;
        }
        CHECK(bad == 0, "saved JPEG: %d of %zu decoded values differ (max %d)", bad, n, worst);
        if (!bad)
            printf("ok   adversarial JPEG (q75, 4:2:0) decodes to the official file's pixels\n");
    }
    remove("asam_ref_adv.jpg");
    asam_image_free(&back);
    asam_image_free(&im);
    free(u8);
    free(jp);
}

/* The official eval protocol on the reference logits, upsampled one step (main.py:565, the
 * --baseline path) or two (x4 to 1024, then the GT size: main.py:664 + :565, a tuned
 * decoder): per-mask IoU and boundary IoU against the official numbers in json. */
static void check_eval(asam_ctx *ctx, const char *json, int two_step, const char *label) {
    cJSON *ev = ref_json(json);
    size_t nl, ng;
    float *logits = ref_tensor("eval.safetensors", "logits", &nl);
    float *gt = ref_tensor("eval.safetensors", "gt", &ng);
    const int n = 3, L = 256, W = 120, H = (int)(ng / n) / W;
    asam_mark mk = asam_ctx_mark(ctx);
    asam_tensor *up = asam_eval_upsample(ctx, asam_from_data(ctx, ASAM_SHAPE(n, 1, L, L), logits),
                                         H, W, two_step);
    uint8_t *p = malloc((size_t)H * W), *g = malloc((size_t)H * W);
    CHECK(up != NULL, "%s: upsample", label);
    for (int i = 0; up && i < n; i++) {
        for (int q = 0; q < H * W; q++) {
            p[q] = up->data[(size_t)i * H * W + q] > 0; // misc.py:525 pred > 0
            g[q] = gt[(size_t)i * H * W + q] > 128;     // misc.py:526 label > 128
        }
        char what[96];
        snprintf(what, sizeof what, "%s IoU of mask %d", label, i);
        REF_SCALAR(asam_mask_iou(p, g, (int64_t)H * W), ref_at(ev, "iou", i), 1e-6, what);
        snprintf(what, sizeof what, "%s boundary IoU of mask %d", label, i);
        REF_SCALAR(asam_boundary_iou(p, g, H, W, 0.02), ref_at(ev, "biou", i), 1e-6, what);
    }
    asam_ctx_release(ctx, mk);
    free(p);
    free(g);
    free(logits);
    free(gt);
    cJSON_Delete(ev);
}

/* D19: ControlNet training data (tutorial_dataset.py) and the VAE posterior sample */
static void test_controlnet_data(asam_ctx *ctx) {
    const int S = 128;
    char path[4200];
    asam_image img = {0}, map = {0};
    snprintf(path, sizeof path, "%s/sa_1.png", REF_DIR);
    CHECK(asam_image_read(path, 3, &img) == 0, "%s", asam_last_error());
    snprintf(path, sizeof path, "%s/control_sa_1.png", REF_DIR);
    CHECK(asam_image_read(path, 3, &map) == 0, "%s", asam_last_error());
    asam_mark mk = asam_ctx_mark(ctx);
    size_t n;
    float *jpg = ref_tensor("cn.safetensors", "jpg_s2", &n);
    float *hint = ref_tensor("cn.safetensors", "hint_s2", NULL);
    asam_tensor *x = asam_cn_target_tensor(ctx, &img, S);
    asam_tensor *h = asam_control_hint(ctx, &map, S, 0);
    CHECK(x && h && n == (size_t)(S / 2) * (S / 2) * 3, "controlnet data");
    if (x && h && n == (size_t)(S / 2) * (S / 2) * 3) {
        float *xs = malloc(n * sizeof(float)), *hs = malloc(n * sizeof(float));
        for (int y = 0; y < S / 2; y++) /* HWC at every 2nd row / column */
            for (int xx = 0; xx < S / 2; xx++)
                for (int c = 0; c < 3; c++) {
                    size_t src = ((size_t)c * S + 2 * y) * S + 2 * xx,
                           dst = ((size_t)y * (S / 2) + xx) * 3 + c;
                    xs[dst] = x->data[src];
                    hs[dst] = h->data[src];
                }
        REF_CLOSE(xs, jpg, n, 0, "ControlNet training image (cv2 INTER_LINEAR, / 127.5 - 1)");
        REF_CLOSE(hs, hint, n, 0, "ControlNet training hint (cv2 INTER_LINEAR, / 255)");
        free(xs);
        free(hs);
    }
    size_t nm, nz;
    float *mom = ref_tensor("cn.safetensors", "moments", &nm);
    float *eps = ref_tensor("cn.safetensors", "eps", NULL);
    float *z = ref_tensor("cn.safetensors", "z", &nz);
    asam_tensor *mt = asam_from_data(ctx, ASAM_SHAPE(1, 8, S / 8, S / 8), mom);
    asam_tensor *zs =
        nm == (size_t)8 * (S / 8) * (S / 8) ? asam_vae_posterior_sample(ctx, mt, eps) : NULL;
    CHECK(zs && (size_t)zs->numel == nz, "posterior sample");
    if (zs && (size_t)zs->numel == nz)
        REF_CLOSE(zs->data, z, nz, 1e-6,
                  "0.18215 * DiagonalGaussianDistribution.sample() (eps injected)");
    asam_ctx_release(ctx, mk);
    asam_image_free(&img);
    asam_image_free(&map);
    free(jpg);
    free(hint);
    free(mom);
    free(eps);
    free(z);
}

int main(void) {
    asam_ctx *ctx = asam_ctx_new(0);
    cJSON *meta = ref_json("attack.json");
    test_hints(ctx, meta);
    test_sd_image(meta);
    test_target();
    test_jpeg(meta);
    check_eval(ctx, "eval.json", 0, "eval");
    check_eval(ctx, "eval_tuned.json", 1, "tuned-decoder eval");
    test_controlnet_data(ctx);
    cJSON_Delete(meta);
    asam_ctx_free(ctx);
    return test_finish("test_asam_ref_prep");
}
