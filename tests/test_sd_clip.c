/* CLIP text encoder parity (openai CLIP math, HF names) on clip_fwd: embeddings, the residual
 * stream after each layer and the last hidden state, from the CompVis single file and (when the
 * shared fixtures are present) from the diffusers text_encoder file. */
#include "asam/engine.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sd.h"
#include "sd_test_util.h"
#include "test_util.h"

static void run(asam_ctx *ctx, asam_checkpoint *ref, const char *file, const char *prefix,
                int heads) {
    asam_checkpoint *ck;
    CHECK(asam_checkpoint_open(file, &ck) == 0, "open %s: %s", file, asam_last_error());
    if (!ck) return;
    asam_clip_text *m = NULL;
    CHECK(asam_clip_text_load(ck, prefix, heads, &m) == 0, "load: %s", asam_last_error());
    if (!m) return;
    CHECK(asam_clip_text_width(m) == 64 && asam_clip_text_layers(m) == 2, "config");
    const asam_ckpt_tensor *ti = asam_checkpoint_find(ref, "input_ids");
    int64_t ids[3 * 77];
    CHECK(ti && asam_ckpt_read_i64(ref, ti, ids) == 0, "input_ids");
    asam_tensor *hidden[3];
    asam_tensor *out = asam_clip_text_forward(ctx, m, ids, 3, hidden);
    CHECK(out && asam_ctx_ok(ctx), "forward: %s", asam_ctx_error(ctx));
    if (out) {
        const char *names[4] = {"embeddings", "layer0", "layer1", "last_hidden_state"};
        asam_tensor *got[4] = {hidden[0], hidden[1], hidden[2], out};
        for (int i = 0; i < 4; i++) {
            asam_tensor *r = sd_case(ctx, ref, names[i]);
            char what[256];
            snprintf(what, sizeof what, "%s (%s)", names[i], prefix);
            CHECK(got[i]->numel == r->numel, "%s size", what);
            CHECK_CLOSE(got[i]->data, r->data, r->numel, 1e-4, what);
        }
    }
    asam_clip_text_free(m);
    asam_checkpoint_close(ck);
}

int main(void) {
    char refp[4096], model[4096], dif[4096];
    if (test_data_file("sd_tiny/clip_fwd.safetensors", refp, sizeof refp))
        TEST_SKIP("clip_fwd not found");
    if (test_data_file("sd_tiny/model.ckpt", model, sizeof model))
        TEST_SKIP("sd_tiny/model.ckpt not found");
    asam_checkpoint *ref;
    CHECK(asam_checkpoint_open(refp, &ref) == 0, "open %s: %s", refp, asam_last_error());
    if (!ref) return test_finish("test_sd_clip");
    asam_ctx *ctx = asam_ctx_new(1ull << 30);
    asam_ctx_set_grad(ctx, 0);
    run(ctx, ref, model, "cond_stage_model.transformer.text_model.", 0);
    if (!test_data_file("sd_tiny/diffusers/text_encoder/model.safetensors", dif, sizeof dif))
        run(ctx, ref, dif, "text_model.", 4);
    else
        TEST_SKIP_PART("diffusers text_encoder (shared fixtures absent)");

    /* A wrong prefix is reported with the file name. */
    asam_checkpoint *ck;
    asam_clip_text *m = NULL;
    if (asam_checkpoint_open(model, &ck) == 0) {
        CHECK(asam_clip_text_load(ck, "nope.", 0, &m) == -1 && !m, "bad prefix loads");
        CHECK(strstr(asam_last_error(), "nope.") != NULL, "error: %s", asam_last_error());
        asam_checkpoint_close(ck);
    }
    asam_ctx_free(ctx);
    asam_checkpoint_close(ref);
    return test_finish("test_sd_clip");
}
