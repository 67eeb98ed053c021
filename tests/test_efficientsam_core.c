/* EfficientSAM's core against the official code on a fresh clone: the subset of the tiny
 * fixtures kept in tests/data/efficientsam_tiny (scripts/ref/make_efficientsam_core_subset.py)
 * - case_box_landscape: bit-exact pre-processing rows, the image embedding, prompts, the
 *   decoder's low-res logits and IoU (forward 1e-4 relative);
 * - case_grad: losses and gradients to the image embedding and the tuned tokens (1e-3).
 * test_efficientsam_parity checks every tensor of every case when the fixtures are present. */
#include "test_util.h"
#include "test_sam_common.h"
#include "test_esam_common.h"

int main(void) {
    asam_set_threads(2);
    asam_checkpoint *box = fx_open("efficientsam_tiny/core_box.safetensors");
    asam_checkpoint *grad = fx_open("efficientsam_tiny/core_grad.safetensors");
    if (!box || !grad) TEST_SKIP("tests/data/efficientsam_tiny subset not found");
    asam_esam *m = esam_load_tiny();
    const asam_esam_config *c = asam_esam_cfg(m);
    CHECK(c->embed_dim == 64 && c->depth == 3 && c->num_heads == 2 && c->dim == 64 &&
              c->dec_mlp_dim == 512 && c->up_dims[0] == 16 && c->up_dims[1] == 8 &&
              c->iou_hidden == 64 && c->pos_grid == 14 && !strcmp(c->variant, "custom"),
          "tiny config read from shapes");
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_image img = {0};
    CHECK(esam_case_image(box, &img) == 0, "image");
    asam_tensor *emb = esam_check_encoder(ctx, m, box, &img, "box");
    esam_check_decoder(ctx, m, box, emb, img.h, img.w, "box");
    CHECK(asam_ctx_ok(ctx), "%s", asam_ctx_error(ctx));
    /* the predictor decodes queries in chunks: 11 queries at once equal each one alone */
    asam_esam_predictor p;
    asam_esam_predictor_init(&p, m);
    CHECK(emb && asam_esam_predictor_set_embedding(&p, emb->data, img.h, img.w) == 0, "set emb");
    float xy[11 * 4], lab[11 * 2];
    for (int q = 0; q < 11; q++) {
        float b[4] = {20.0f + 7 * q, 30.0f + 3 * q, 200.0f + 5 * q, 180.0f + 2 * q};
        memcpy(xy + 4 * q, b, sizeof b);
        lab[2 * q] = 2;
        lab[2 * q + 1] = 3;
    }
    asam_esam_result all, one;
    CHECK(asam_esam_predictor_predict(&p, 11, 2, xy, lab, 1, &all) == 0, "11 queries");
    int same = 1;
    for (int q = 0; q < 11 && same; q += 5) {
        CHECK(asam_esam_predictor_predict(&p, 1, 2, xy + 4 * q, lab + 2 * q, 1, &one) == 0, "1");
        size_t hw = (size_t)img.h * img.w;
        /* batched matmuls may round differently: values to float noise, not bits */
        double di = test_rel_diff(all.iou + 3 * q, one.iou, 3);
        double dl = test_rel_diff(all.mask_logits + 3 * q * hw, one.mask_logits, 3 * hw);
        same = di < 1e-5 && dl < 1e-5;
        if (!same) printf("query %d: iou %.3g logits %.3g\n", q, di, dl);
        asam_esam_result_free(&one);
    }
    CHECK(same, "chunked queries differ from single ones");
    if (same) printf("ok   11 queries decoded in chunks = one by one (to float noise)\n");
    asam_esam_result_free(&all);
    asam_esam_predictor_free(&p);
    asam_image_free(&img);
    asam_ctx_free(ctx);
    esam_check_grad(m, grad, "grad");
    asam_checkpoint_close(box);
    asam_checkpoint_close(grad);
    asam_esam_free(m);
    return test_finish("test_efficientsam_core");
}
