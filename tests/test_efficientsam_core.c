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
    asam_image_free(&img);
    asam_ctx_free(ctx);
    esam_check_grad(m, grad, "grad");
    asam_checkpoint_close(box);
    asam_checkpoint_close(grad);
    asam_esam_free(m);
    return test_finish("test_efficientsam_core");
}
