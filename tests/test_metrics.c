/* IoU and boundary IoU on crafted masks against values worked out by hand; the loss against a
 * direct computation. */
#include "asam/asam.h"
#include "test_util.h"

static void rect(uint8_t *m, int w, int y0, int y1, int x0, int x1) { /* inclusive */
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) m[y * w + x] = 1;
}

static int count(const uint8_t *m, int n) {
    int c = 0;
    for (int i = 0; i < n; i++) c += m[i] != 0;
    return c;
}

int main(void) {
    uint8_t gt[100] = {0}, pr[100] = {0}, b[120];
    rect(gt, 10, 2, 7, 2, 7); /* 6x6 */
    rect(pr, 10, 2, 7, 3, 8); /* shifted right by one */
    /* intersection 6x5 = 30, union 42 */
    double iou = asam_mask_iou(pr, gt, 100);
    CHECK(fabs(iou - 30.0 / 42.0) < 1e-12, "iou %.9f != 30/42", iou);
    /* 10x10: d = max(1, round(0.02 * 14.14)) = 1 */
    CHECK(asam_boundary_dilation(10, 10, 0.02) == 1, "d(10x10)");
    CHECK(asam_boundary_dilation(480, 640, 0.02) == 16, "d(480x640) = round(16) = %d",
          asam_boundary_dilation(480, 640, 0.02));
    CHECK(asam_boundary_dilation(1000, 1000, 0.02) == 28, "d(1000x1000) = round(28.28)");
    /* the boundary of a 6x6 square with d = 1 is its 20-pixel ring */
    asam_mask_boundary(gt, 10, 10, 1, b);
    CHECK(count(b, 100) == 20, "ring of 6x6: %d", count(b, 100));
    CHECK(b[2 * 10 + 2] && b[7 * 10 + 7] && !b[3 * 10 + 3], "ring pixels");
    /* rings overlap in rows 2 and 7, columns 3..7: 10 pixels; union 20 + 20 - 10 = 30 */
    double biou = asam_boundary_iou(pr, gt, 10, 10, 0.02);
    CHECK(fabs(biou - 10.0 / 30.0) < 1e-12, "boundary iou %.9f != 1/3", biou);
    /* d = 2 on the 6x6 square: erosion leaves 2x2, boundary 32 */
    asam_mask_boundary(gt, 10, 10, 2, b);
    CHECK(count(b, 100) == 32, "6x6 with d=2: %d", count(b, 100));
    /* the image edge counts as background: a half-image mask keeps its border pixels */
    uint8_t half[100] = {0};
    rect(half, 10, 0, 9, 0, 4); /* 50 px; eroded: rows 1..8, cols 1..3 = 24 */
    asam_mask_boundary(half, 10, 10, 1, b);
    CHECK(count(b, 100) == 26, "edge mask boundary %d != 26", count(b, 100));
    /* degenerate cases */
    uint8_t empty[100] = {0};
    CHECK(asam_mask_iou(empty, empty, 100) == 1.0, "empty vs empty = 1");
    CHECK(asam_mask_iou(empty, gt, 100) == 0.0, "empty vs gt = 0");
    CHECK(asam_boundary_iou(gt, gt, 10, 10, 0.02) == 1.0, "self boundary iou");
    /* a non-square image: 3x40, d = round(0.02 * 40.11) = 1 */
    uint8_t thin[120] = {0};
    rect(thin, 40, 0, 2, 10, 29);
    asam_mask_boundary(thin, 3, 40, 1, b);
    /* erosion keeps row 1, columns 11..28 (18 px); boundary 60 - 18 = 42 */
    CHECK(count(b, 120) == 42, "thin boundary %d != 42", count(b, 120));
    if (!test_failures) printf("ok   iou / boundary iou on crafted masks\n");

    /* loss: full mode equals BCE + Dice computed directly */
    asam_ctx *ctx = asam_ctx_new(0);
    asam_tensor *lg = asam_new(ctx, ASAM_SHAPE(2, 1, 256, 256));
    asam_tensor *g = asam_new(ctx, ASAM_SHAPE(2, 1, 256, 256));
    uint64_t s = 5;
    double bce = 0, dice = 0;
    for (int bi = 0; bi < 2; bi++) {
        double pt = 0, ps = 0, ts = 0;
        for (int i = 0; i < 65536; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            float x = (float)((double)(s >> 11) / 9007199254740992.0 * 6 - 3);
            float t = (i % 256) < 128 ? 1.0f : 0.0f;
            lg->data[bi * 65536 + i] = x;
            g->data[bi * 65536 + i] = t;
            double p = 1 / (1 + exp(-x));
            bce += fmax(x, 0) - x * t + log1p(exp(-fabs(x)));
            pt += p * t;
            ps += p;
            ts += t;
        }
        dice += 1 - (2 * pt + 1) / (ps + ts + 1);
    }
    double want = bce / (2 * 65536) + dice / 2;
    asam_mask_loss_cfg c;
    asam_mask_loss_defaults(&c);
    c.points = 0;
    asam_tensor *l = asam_mask_loss(ctx, lg, g, &c, NULL);
    CHECK(l && fabs(l->data[0] - want) < 1e-5 * want, "full loss %g != %g", l ? l->data[0] : -1.0,
          want);
    /* point mode: a prediction agreeing with the GT scores lower than one that disagrees */
    asam_rng rng;
    asam_rng_seed(&rng, 1);
    c.points = 1;
    for (int i = 0; i < 2 * 65536; i++) lg->data[i] = g->data[i] > 0.5f ? 4.0f : -4.0f;
    asam_tensor *good = asam_mask_loss(ctx, lg, g, &c, &rng);
    for (int i = 0; i < 2 * 65536; i++) lg->data[i] = -lg->data[i];
    asam_tensor *bad = asam_mask_loss(ctx, lg, g, &c, &rng);
    CHECK(good && bad && good->data[0] < 0.2f && bad->data[0] > 2.0f, "point loss good %g bad %g",
          good ? good->data[0] : -1, bad ? bad->data[0] : -1);
    if (l && good)
        printf("ok   loss: full %.6f (direct %.6f), points good %.4f bad %.4f\n", l->data[0], want,
               good->data[0], bad->data[0]);
    asam_ctx_free(ctx);
    return test_finish("test_metrics");
}
