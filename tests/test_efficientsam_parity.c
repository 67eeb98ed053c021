/* EfficientSAM against the official code on every case of ../shared/fixtures/efficientsam_tiny
 * (or $ASAM_FIXTURES): pre-processing, position embedding, each encoder block, the embedding,
 * prompts, every decoder stage, IoU, low-res and original-size logits, masks, the best mask,
 * and the gradient case. Skipped (77) when the fixture folder is absent; the subset in
 * tests/data is checked by test_efficientsam_core. */
#include "test_util.h"
#include "test_sam_common.h"
#include "test_esam_common.h"

static asam_checkpoint *open_case(const char *name) {
    char rel[256], path[4096];
    snprintf(rel, sizeof rel, "%s/efficientsam_tiny/%s.safetensors", test_fixtures_dir(), name);
    snprintf(path, sizeof path, "%s", rel);
    if (!test_is_file(path)) return NULL;
    asam_checkpoint *ck = NULL;
    CHECK(asam_checkpoint_open(path, &ck) == 0, "open %s: %s", path, asam_last_error());
    return ck;
}

int main(void) {
    asam_set_threads(2);
    asam_checkpoint *box = open_case("case_box_landscape");
    if (!box) TEST_SKIP("efficientsam_tiny fixtures not found (set ASAM_FIXTURES)");
    asam_esam *m = esam_load_tiny();
    /* the official torch.save({"model": ...}) file binds to the same weights */
    char pth[4096];
    snprintf(pth, sizeof pth, "%s/efficientsam_tiny/model.pth", test_fixtures_dir());
    asam_esam *mo = NULL;
    CHECK(asam_esam_load(pth, 2, &mo) == 0, "official model.pth: %s", asam_last_error());
    if (mo) {
        int same = mo->n == m->n;
        for (int i = 0; same && i < m->n; i++)
            same = !strcmp(mo->names[i], m->names[i]) &&
                   !memcmp(mo->all[i]->data, m->all[i]->data,
                           sizeof(float) * (size_t)m->all[i]->numel);
        CHECK(same, "model.pth and the safetensors differ");
        if (same) printf("ok   official model.pth ({\"model\": state_dict}) = the safetensors\n");
        asam_esam_free(mo);
    }
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    const char *cases[] = {"case_box_landscape", "case_points_portrait", "case_many_points_tall"};
    for (int i = 0; i < 3; i++) {
        asam_checkpoint *ck = i == 0 ? box : open_case(cases[i]);
        CHECK(ck != NULL, "fixture %s missing", cases[i]);
        if (!ck) continue;
        asam_image img = {0};
        CHECK(esam_case_image(ck, &img) == 0, "%s: image", cases[i]);
        asam_tensor *emb = esam_check_encoder(ctx, m, ck, &img, cases[i]);
        esam_check_decoder(ctx, m, ck, emb, img.h, img.w, cases[i]);
        CHECK(asam_ctx_ok(ctx), "%s: %s", cases[i], asam_ctx_error(ctx));
        asam_ctx_reset(ctx);
        asam_image_free(&img);
        if (i) asam_checkpoint_close(ck);
    }
    /* batch_queries: four queries at once on image A's embedding (240 x 360) */
    asam_checkpoint *bq = open_case("case_batch_queries");
    CHECK(bq != NULL, "fixture case_batch_queries missing");
    if (bq) {
        const int D = m->cfg.dim;
        asam_tensor *emb = fx_tensor(ctx, box, "image_embeddings",
                                     ASAM_SHAPE(1, D, ASAM_ESAM_GRID, ASAM_ESAM_GRID));
        esam_check_decoder(ctx, m, bq, emb, 240, 360, "case_batch_queries");
        asam_ctx_reset(ctx);
        asam_checkpoint_close(bq);
    }
    asam_checkpoint *cg = open_case("case_grad");
    CHECK(cg != NULL, "fixture case_grad missing");
    if (cg) {
        esam_check_grad(m, cg, "case_grad");
        asam_checkpoint_close(cg);
    }
    asam_checkpoint_close(box);
    asam_ctx_free(ctx);
    asam_esam_free(m);
    return test_finish("test_efficientsam_parity");
}
