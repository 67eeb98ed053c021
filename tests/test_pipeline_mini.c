/* The ASAM pipeline stages with a SAM of input side 128 (SAM-mini's size) on 128 px world
 * scenes: each stage must work in the model's S x S frame, with S/4 low-res masks, and each
 * is checked against a direct computation through the public SAM API, so that a 1024 (or
 * 256) left in a stage fails here:
 *   eval    per-image box mIoU (ASAM protocol) = the predictor's masks for the GT boxes;
 *   tune    the decoder's box prompts are the GT masks' tight boxes in the S frame, its points
 *           lie on the masks, its mask prompts are S/4 x S/4 (cached and augmented runs);
 *   attack  asam_attack_loss's IoU = the predictor's low-res masks for the target's boxes,
 *           scored against its S/4 labels; the skip-gradient attack's reported IoU of the kept
 *           latent = that of its saved 8-bit image (up to the 8-bit rounding);
 *   PGD     the loss = BCE + Dice of the predictor's low-res logits for the GT boxes;
 *   AMG     every mask is one of the predictor's three masks for its own point prompt, and
 *           the crops lie in the image.
 * The model has random weights (a trained one is not needed to pin the frame). */
#include "test_util.h"

#include "asam/asam.h"
#include "asam/dataset.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/generator.h"
#include "asam/sa1b.h"
#include "asam/sam.h"
#include "asam/sam_amg.h"
#include "asam/tune_hook.h"
#include "asam/util.h"
#include "asam/world.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S 128
#define L (S / 4)

static char dir[64], model_path[256], world[256];

static asam_sam_config mini_config(void) {
    asam_sam_config c;
    memset(&c, 0, sizeof c);
    c.embed_dim = 32;
    c.depth = 2;
    c.num_heads = 2;
    c.head_dim = 16;
    c.mlp_dim = 128;
    c.window = 4;
    c.img_size = S;
    c.n_global = 1;
    c.global_idx[0] = 1;
    c.is_global[1] = 1;
    snprintf(c.variant, sizeof c.variant, "custom");
    return c;
}

/* The predictor's single-mask output for B boxes (original pixels) of an image. */
static int predict_boxes(const asam_sam *m, const asam_image *img, const float *boxes, int B,
                         asam_sam_result *r) {
    asam_sam_predictor p;
    if (asam_sam_predictor_init(&p, m)) return -1;
    int rc = asam_sam_predictor_set_image(&p, img);
    asam_sam_query q = {.batch = B, .boxes = boxes};
    if (!rc) rc = asam_sam_predictor_predict(&p, &q, 0, r);
    asam_sam_predictor_free(&p);
    return rc;
}

/* ---- eval ---- */
static void case_eval(const asam_sam *m) {
    char spec[300];
    snprintf(spec, sizeof spec, "sa1b:%s/val", world);
    const char *models[] = {model_path}, *specs[] = {spec}, *names[] = {"val"};
    asam_eval_opts o;
    asam_eval_defaults(&o);
    o.models = models;
    o.n_models = 1;
    o.specs = specs;
    o.names = names;
    o.n_data = 1;
    o.limit = 2;
    asam_eval_cell cell;
    CHECK(asam_eval_run(&o, &cell) == 0, "eval: %s", asam_last_error());
    asam_dataset *ds;
    CHECK(asam_dataset_open(spec, &ds) == 0, "open: %s", asam_last_error());
    double sum = 0, worst = 0;
    int n_img = 0;
    for (size_t i = 0; i < 2; i++) {
        asam_sample s;
        if (asam_dataset_get(ds, i, 0, &s)) break;
        CHECK(s.w == S && s.h == S, "world image %zu is %dx%d", i, s.w, s.h);
        double mi, bi, direct = 0;
        int nm;
        CHECK(asam_eval_sample_path(m, &s, ASAM_PROTOCOL_ASAM, 0.02, 0, &mi, &bi, &nm) == 0,
              "eval sample: %s", asam_last_error());
        size_t hw = (size_t)s.h * s.w;
        float *boxes = malloc(sizeof(float) * 4 * (size_t)s.n_masks);
        for (int k = 0; k < s.n_masks; k++)
            asam_mask_box_u8(s.masks + k * hw, s.w, s.h, boxes + 4 * k);
        asam_sam_result r;
        CHECK(predict_boxes(m, &s.image, boxes, s.n_masks, &r) == 0, "predict: %s",
              asam_last_error());
        for (int k = 0; k < s.n_masks; k++)
            direct += asam_mask_iou(r.masks + k * hw, s.masks + k * hw, (int64_t)hw);
        direct /= s.n_masks;
        worst = fmax(worst, fabs(direct - mi));
        sum += mi;
        n_img++;
        printf("     eval image %zu: %d masks, mIoU %.6f (predictor: %.6f)\n", i, s.n_masks, mi,
               direct);
        asam_sam_result_free(&r);
        free(boxes);
        asam_sample_free(&s);
    }
    asam_dataset_close(ds);
    CHECK(n_img == 2 && worst < 1e-6, "eval's box IoU differs from the predictor's by %g", worst);
    CHECK(fabs(cell.miou - sum / 2) < 1e-9 && cell.n_images == 2, "eval run %.6f vs %.6f",
          cell.miou, sum / 2);
    if (n_img == 2 && worst < 1e-6) printf("ok   eval at S = %d: box mIoU = the predictor's\n", S);
}

/* ---- tune ---- */
typedef struct {
    asam_dataset *ds;
    int batch, masks_per_image, augment;
    int seen[3], bad;
    char why[256];
} tune_probe;

static void probe_order(void *user, int epoch, size_t *order, size_t n) {
    (void)user, (void)epoch;
    for (size_t i = 0; i < n; i++) order[i] = i;
}

/* step 0 boxes, step 1 points, step 2 mask prompts (when available) */
static int probe_kind(void *user, int step, int k, int available) {
    (void)user, (void)k;
    int want = step % 3 == 0   ? ASAM_PROMPT_BOX
               : step % 3 == 1 ? ASAM_PROMPT_POINTS
                               : ASAM_PROMPT_MASK;
    return available & want ? want : ASAM_PROMPT_BOX;
}

static void probe_prompts(void *user, int step, int k, int kind, const asam_seg_prompt *p) {
    tune_probe *t = user;
    if (t->bad) return;
    t->seen[kind == ASAM_PROMPT_BOX ? 0 : kind == ASAM_PROMPT_POINTS ? 1 : 2]++;
    asam_sample s = {0};
    int have = !t->augment &&
               !asam_dataset_get(t->ds, (size_t)(step * t->batch + k), t->masks_per_image, &s);
    size_t hw = (size_t)S * S;
    for (int b = 0; b < p->batch && !t->bad; b++) {
        const uint8_t *gt = have ? s.masks + (size_t)(b % s.n_masks) * hw : NULL;
        if (kind == ASAM_PROMPT_BOX) {
            const float *bx = p->boxes + 4 * b;
            for (int i = 0; i < 4; i++)
                if (!(bx[i] >= 0 && bx[i] <= S) && bx[i] != 1e8f)
                    snprintf(t->why, sizeof t->why, "step %d box %g outside the frame", step,
                             bx[i]),
                        t->bad = 1;
            float want[4];
            if (gt && asam_mask_box_u8(gt, S, S, want) &&
                (want[0] != bx[0] || want[1] != bx[1] || want[2] != bx[2] || want[3] != bx[3]))
                snprintf(t->why, sizeof t->why, "step %d box (%g %g %g %g), GT box (%g %g %g %g)",
                         step, bx[0], bx[1], bx[2], bx[3], want[0], want[1], want[2], want[3]),
                    t->bad = 1;
        } else if (kind == ASAM_PROMPT_POINTS) {
            for (int j = 0; j < p->n_points; j++) {
                float x = p->points[2 * (b * p->n_points + j)],
                      y = p->points[2 * (b * p->n_points + j) + 1];
                if (!(x >= 0 && x < S && y >= 0 && y < S) || (gt && !gt[(size_t)y * S + (size_t)x]))
                    snprintf(t->why, sizeof t->why, "step %d point (%g, %g) off the mask", step, x,
                             y),
                        t->bad = 1;
            }
        } else {
            const asam_tensor *mi = p->mask_input;
            if (!mi || mi->shape[2] != L || mi->shape[3] != L || mi->shape[0] != p->batch)
                snprintf(t->why, sizeof t->why, "step %d mask prompt is not (B, 1, %d, %d)", step,
                         L, L),
                    t->bad = 1;
        }
    }
    if (have) asam_sample_free(&s);
}

static void case_tune(int augment) {
    char spec[300], out[300], tuned[400];
    snprintf(spec, sizeof spec, "sa1b:%s/train", world);
    snprintf(out, sizeof out, "%s/tune%d", dir, augment);
    const char *data[] = {spec};
    tune_probe t = {.batch = 2, .masks_per_image = 2, .augment = augment};
    CHECK(asam_dataset_open(spec, &t.ds) == 0, "open: %s", asam_last_error());
    asam_tune_hook hk = {
        .user = &t, .order = probe_order, .kind = probe_kind, .prompts = probe_prompts};
    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.model_path = model_path;
    o.data = data;
    o.n_data = 1;
    o.out_dir = out;
    o.epochs = 1;
    o.batch = 2;
    o.masks_per_image = 2;
    o.limit = 6;
    o.augment = augment;
    o.loss.n_points = 64;
    o.point_group = 1;
    o.hook = &hk;
    asam_tune_report rep;
    CHECK(asam_tune(&o, &rep) == 0, "tune: %s", asam_last_error());
    asam_dataset_close(t.ds);
    CHECK(!t.bad, "tune (augment %d): %s", augment, t.why);
    CHECK(t.seen[0] > 0 && t.seen[1] > 0 && t.seen[2] > 0,
          "tune (augment %d) drew %d box, %d point, %d mask prompts", augment, t.seen[0], t.seen[1],
          t.seen[2]);
    snprintf(tuned, sizeof tuned, "%s/sam_tuned.safetensors", out);
    asam_sam *back = NULL;
    CHECK(asam_sam_load(tuned, &back) == 0 && asam_sam_img_size(back) == S, "tuned model: %s",
          asam_last_error());
    asam_sam_free(back);
    if (!t.bad && t.seen[2] > 0)
        printf("ok   tune at S = %d (augment %d): boxes %s, points on the masks, %dx%d mask "
               "prompts\n",
               S, augment, augment ? "in the frame" : "= GT boxes", L, L);
}

/* ---- PGD ---- */
static void case_pgd(const asam_sam *m) {
    char spec[300];
    snprintf(spec, sizeof spec, "sa1b:%s/val", world);
    asam_dataset *ds;
    asam_sample s;
    CHECK(asam_dataset_open(spec, &ds) == 0 && asam_dataset_get(ds, 0, 0, &s) == 0, "data: %s",
          asam_last_error());
    size_t hw = (size_t)S * S;
    float *px = malloc(sizeof(float) * 3 * hw);
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < hw; i++) px[c * hw + i] = s.image.data[i * 3 + c];
    double loss = NAN;
    CHECK(asam_pgd_loss_grad(m, px, s.masks, s.n_masks, S, S, &loss, NULL) == 0, "pgd loss: %s",
          asam_last_error());
    /* direct: the predictor's low-res logits for the tight boxes, BCE + Dice over all S/4 x S/4
     * logits against the GT (resized bilinearly to S/4 inside the loss) */
    float *boxes = malloc(sizeof(float) * 4 * (size_t)s.n_masks);
    for (int k = 0; k < s.n_masks; k++) asam_mask_box_u8(s.masks + k * hw, S, S, boxes + 4 * k);
    asam_sam_result r;
    CHECK(predict_boxes(m, &s.image, boxes, s.n_masks, &r) == 0, "predict: %s", asam_last_error());
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *low = asam_from_data(ctx, ASAM_SHAPE(s.n_masks, 1, L, L), r.low_res);
    asam_tensor *g = asam_new(ctx, ASAM_SHAPE(s.n_masks, 1, S, S));
    for (size_t i = 0; i < (size_t)s.n_masks * hw; i++) g->data[i] = s.masks[i];
    asam_mask_loss_cfg lc;
    asam_mask_loss_defaults(&lc);
    lc.points = 0;
    asam_tensor *d = asam_mask_loss(ctx, low, g, &lc, NULL);
    double direct = d ? d->data[0] : NAN;
    CHECK(fabs(direct - loss) <= 1e-5 * fabs(direct), "PGD loss %.7f, direct %.7f", loss, direct);
    /* one PGD step raises the loss */
    asam_pgd_opts po;
    asam_pgd_defaults(&po);
    po.iters = 2;
    asam_image adv = {0};
    double before = 0, after = 0;
    CHECK(asam_pgd_attack_sample(m, &s, &po, &adv, &before, &after) == 0, "pgd: %s",
          asam_last_error());
    CHECK(adv.w == S && adv.h == S && after > before, "PGD loss %.5f -> %.5f", before, after);
    if (fabs(direct - loss) <= 1e-5 * fabs(direct) && after > before)
        printf("ok   PGD at S = %d: loss = the predictor's (%.6f), %.4f -> %.4f after 2 steps\n", S,
               loss, before, after);
    asam_image_free(&adv);
    asam_ctx_free(ctx);
    asam_sam_result_free(&r);
    free(boxes);
    free(px);
    asam_sample_free(&s);
    asam_dataset_close(ds);
}

/* ---- AMG ---- */
static void case_amg(const asam_sam *m) {
    char path[400];
    snprintf(path, sizeof path, "%s/val/sa_1.jpg", world);
    asam_image img;
    CHECK(asam_image_read(path, 3, &img) == 0, "read: %s", asam_last_error());
    asam_amg_options o;
    asam_amg_options_default(&o);
    o.points_per_side = 4; /* random weights: keep every mask the filters would drop */
    o.pred_iou_thresh = 0;
    o.stability_score_thresh = 0;
    o.box_nms_thresh = 1.0;
    o.crop_nms_thresh = 1.0;
    o.crop_n_layers = 1;
    asam_amg_result res;
    CHECK(asam_amg_generate(m, &img, &o, NULL, NULL, &res) == 0, "amg: %s", asam_last_error());
    asam_sam_predictor p;
    CHECK(asam_sam_predictor_init(&p, m) == 0, "predictor");
    size_t hw = (size_t)S * S, matched = 0, uncropped = 0, worst = 0;
    uint8_t *mask = malloc(hw);
    int bad_crop = 0;
    for (size_t i = 0; i < res.n; i++) {
        const asam_amg_mask *a = &res.masks[i];
        const int *cb = a->crop_box;
        if (cb[0] < 0 || cb[1] < 0 || cb[0] + cb[2] > S || cb[1] + cb[3] > S) bad_crop = 1;
        if (cb[0] || cb[1] || cb[2] != S || cb[3] != S) continue; /* whole-image masks below */
        uncropped++;
        if (asam_rle_decode(&a->rle, mask)) continue;
        /* the official point is in original pixels; decode it through the public predictor */
        float pt[2] = {(float)a->point[0], (float)a->point[1]}, lab[1] = {1};
        asam_sam_query q = {.batch = 1, .n_points = 1, .points = pt, .labels = lab};
        asam_sam_result r;
        if (asam_sam_predictor_set_image(&p, &img) || asam_sam_predictor_predict(&p, &q, 1, &r))
            break;
        size_t best = hw;
        for (int c = 0; c < r.n_masks; c++) {
            size_t diff = 0;
            for (size_t q = 0; q < hw; q++) diff += mask[q] != r.masks[c * hw + q];
            if (diff < best) best = diff;
        }
        /* The generator decodes its points batched, the predictor one at a time: the products
         * round differently by shape (a logit a few ulp from 0 lands on either side), so a
         * pixel or two in 1,000 may differ; a wrong point or crop differs in far more. */
        if (best * 1000 <= hw) matched++;
        if (best > worst) worst = best;
        asam_sam_result_free(&r);
    }
    CHECK(res.n > 0 && !bad_crop, "amg: %zu masks, crops %s", res.n, bad_crop ? "outside" : "in");
    CHECK(uncropped > 0 && matched == uncropped,
          "amg: %zu of %zu whole-image masks are the predictor's for their point", matched,
          uncropped);
    if (uncropped > 0 && matched == uncropped && !bad_crop)
        printf("ok   AMG at S = %d: %zu masks; each of the %zu whole-image ones is the "
               "predictor's for its point (%zu pixels differ at most)\n",
               S, res.n, uncropped, worst);
    free(mask);
    asam_sam_predictor_free(&p);
    asam_amg_result_free(&res);
    asam_image_free(&img);
}

/* ---- attack (tiny SD 1.5 at 128 px, skip gradient) ---- */
static void case_attack(void) {
    char sd[4096], cn[4096], ann_path[400], img_path[400];
    if (test_data_file("sd_tiny/model.ckpt", sd, sizeof sd) ||
        test_data_file("sd_tiny/control.pth", cn, sizeof cn)) {
        TEST_SKIP_PART("attack: tiny SD fixtures not found");
        return;
    }
    asam_gen_models M;
    CHECK(asam_gen_models_load(sd, cn, model_path, &M) == 0, "models: %s", asam_last_error());
    CHECK(asam_gen_models_img_size(&M) == S, "attacked model's side %d",
          asam_gen_models_img_size(&M));
    snprintf(ann_path, sizeof ann_path, "%s/val/sa_1.json", world);
    snprintf(img_path, sizeof img_path, "%s/val/sa_1.jpg", world);
    asam_image img;
    asam_sa1b_image ann;
    CHECK(asam_image_read(img_path, 3, &img) == 0 && asam_sa1b_read(ann_path, &ann) == 0,
          "world image: %s", asam_last_error());
    asam_ctx *ctx = asam_ctx_new(0);
    asam_gen_opts o;
    asam_gen_opts_default(&o);
    o.size = S;
    o.steps = 2;
    o.null_steps = 1;
    o.iters = 2;
    o.grad = ASAM_GRAD_SKIP;
    asam_tensor *hint = asam_mask_map_tensor(ctx, &ann, S);
    asam_inversion inv;
    o.null_checkpointing = ASAM_NULL_CKPT_ON;
    CHECK(hint && asam_invert(ctx, &M, &o, &img, hint, "a red ellipse", &inv) == 0, "invert: %s",
          asam_last_error());
    /* the null-text steps with their activations kept (no checkpoint re-runs): the same result
     * but for the order in which gradients are summed (~1e-6 relative) */
    asam_inversion kept;
    o.null_checkpointing = ASAM_NULL_CKPT_OFF;
    CHECK(asam_invert(ctx, &M, &o, &img, hint, "a red ellipse", &kept) == 0, "invert: %s",
          asam_last_error());
    size_t ne = (size_t)inv.steps * inv.ctx_len * inv.ctx_dim;
    double dmax = 0, vmax = 0, lmax = 0;
    for (size_t i = 0; i < ne; i++) {
        dmax = fmax(dmax, fabs((double)kept.null_emb[i] - inv.null_emb[i]));
        vmax = fmax(vmax, fabs((double)inv.null_emb[i]));
    }
    for (int i = 0; i < inv.steps; i++)
        lmax = fmax(lmax, fabs((double)kept.null_loss[i] - inv.null_loss[i]) /
                              fmax(fabs((double)inv.null_loss[i]), 1e-30));
    CHECK(dmax <= 1e-5 * vmax && lmax <= 1e-5,
          "null-text inversion without checkpointing: embeddings differ by %.3g (of %.3g), losses "
          "by %.3g relative",
          dmax, vmax, lmax);
    printf("ok   null-text inversion with and without checkpointing: embeddings within %.2g "
           "(of %.2g), losses within %.2g relative\n",
           dmax, vmax, lmax);
    asam_inversion_free(&kept);
    o.null_checkpointing = ASAM_NULL_CKPT_AUTO;
    asam_attack_target tg;
    CHECK(asam_attack_target_make_at(&ann, o.max_boxes, S, &tg) == 0, "target: %s",
          asam_last_error());
    CHECK(asam_attack_target_set_reference(&tg, &img) == 0, "reference: %s", asam_last_error());
    asam_attack_result res;
    CHECK(asam_attack_target_run(ctx, &M, &o, &img, &tg, hint, &inv, &res) == 0, "attack: %s",
          asam_last_error());
    /* the saved image through asam_attack_loss and through the public predictor */
    asam_tensor *x = asam_new(ctx, ASAM_SHAPE(1, 3, S, S));
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S * S; i++) x->data[c * S * S + i] = res.image.data[i * 3 + c] / 255.0f;
    float miou_loss = NAN;
    int prev = asam_ctx_set_grad(ctx, 0);
    CHECK(asam_attack_loss(ctx, &M, &o, &tg, x, &miou_loss, NULL) != NULL, "attack loss: %s",
          asam_ctx_error(ctx));
    asam_ctx_set_grad(ctx, prev);
    asam_sam_result r;
    CHECK(predict_boxes(M.sam, &res.image, tg.boxes, tg.n, &r) == 0, "predict: %s",
          asam_last_error());
    float miou_pred = asam_attack_iou_at(r.low_res, tg.lab256, tg.n, L);
    printf("     attack IoU per iteration:");
    for (int k = 0; k < res.iters; k++) printf(" %.4f", res.miou[k]);
    printf(" (kept %d); saved image: %.4f (attack loss), %.4f (predictor)\n", res.best, miou_loss,
           miou_pred);
    CHECK(fabsf(miou_loss - miou_pred) < 1e-4f, "attack IoU %.5f vs predictor %.5f", miou_loss,
          miou_pred);
    CHECK(fabsf(res.miou[res.best] - miou_pred) < 0.02f,
          "reported IoU %.5f of the kept latent vs %.5f of its saved 8-bit image",
          res.miou[res.best], miou_pred);
    CHECK(res.image.w == S && res.image.h == S, "adversarial image %dx%d", res.image.w,
          res.image.h);
    /* a target made for another side is refused, not misread */
    asam_attack_target t1024;
    CHECK(asam_attack_target_make(&ann, 2, &t1024) == 0, "1024 target");
    CHECK(asam_attack_loss(ctx, &M, &o, &t1024, x, NULL, NULL) == NULL,
          "a 1024 target on a %d model was accepted", S);
    asam_attack_target_free(&t1024);
    if (fabsf(miou_loss - miou_pred) < 1e-4f && fabsf(res.miou[res.best] - miou_pred) < 0.02f)
        printf("ok   attack at S = %d: reported IoU = the predictor's on the saved image\n", S);
    asam_sam_result_free(&r);
    asam_attack_result_free(&res);
    asam_attack_target_free(&tg);
    asam_inversion_free(&inv);
    asam_ctx_free(ctx);
    asam_sa1b_free(&ann);
    asam_image_free(&img);
    asam_gen_models_free(&M);
}

int main(void) {
    asam_set_threads(1);
    snprintf(dir, sizeof dir, "/tmp/asam_pipeline_mini_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(model_path, sizeof model_path, "%s/mini.safetensors", dir);
    snprintf(world, sizeof world, "%s/world", dir);
    asam_sam_config cfg = mini_config();
    asam_sam *m = NULL;
    CHECK(asam_sam_init_random(&cfg, 11, &m) == 0 && asam_sam_save(m, model_path) == 0, "model: %s",
          asam_last_error());
    asam_world_opts w;
    asam_world_opts_default(&w);
    w.out = world;
    w.seed = 3;
    w.count = 6;
    w.eval_count = 2;
    w.size = S;
    w.verbose = 0;
    CHECK(asam_world_write(&w) == 0, "world: %s", asam_last_error());
    if (test_failures) return test_finish("test_pipeline_mini");

    case_eval(m);
    case_tune(0);
    case_tune(1);
    case_pgd(m);
    case_amg(m);
    case_attack();

    asam_sam_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_pipeline_mini");
}
