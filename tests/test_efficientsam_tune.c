/* EASAM: asam_tune on an EfficientSAM (the tiny one, cached embeddings, synthetic SA-1B):
 *  - only the token values change (320 at the tiny width; 1,280 at official sizes in
 *    test_efficientsam_tune_fullsize), every other tensor is byte-identical;
 *  - efficientsam_tuned.pt is the official {"model": state_dict} layout and loads back;
 *  - the loss goes down with box prompts; the augmented path runs;
 *  - mask prompts alone are refused for EfficientSAM. */
#include "asam/efficientsam.h"
#include "test_util.h"
#include "test_esam_tune_common.h"
#include "test_synth.h"

int main(void) {
    char tiny[4096];
    if (test_data_file("efficientsam_tiny/model.safetensors", tiny, sizeof tiny))
        TEST_SKIP("efficientsam_tiny/model.safetensors not found");
    char tmpl[] = "/tmp/asam_test_esam_tune_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL, "mkdtemp");
    if (!root) return 1;
    /* the tiny model's 2 encoder heads travel in the safetensors metadata */
    char model[1200], data[1200], spec[1300], outA[1200], outB[1200], p[1400];
    snprintf(model, sizeof model, "%s/tiny.safetensors", root);
    asam_esam *m = NULL;
    CHECK(asam_esam_load(tiny, 2, &m) == 0 && asam_esam_save(m, model) == 0, "tiny: %s",
          asam_last_error());
    asam_esam_free(m);
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(outA, sizeof outA, "%s/A", root);
    snprintf(outB, sizeof outB, "%s/B", root);
    CHECK(syn_write_sa1b(data, 2, 96, 64, 3, 1) == 0, "synthetic data");
    const char *specs[1] = {spec};

    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.model_path = model;
    o.data = specs;
    o.n_data = 1;
    o.out_dir = outA;
    o.epochs = 3;
    o.batch = 1;
    o.augment = 0;
    o.seed = 3;
    o.masks_per_image = 2;
    o.lr = 0.05f;
    o.prompts = ASAM_PROMPT_BOX;
    o.loss.points = 0;
    asam_tune_report r;
    CHECK(asam_tune(&o, &r) == 0 && r.epochs_done == 3, "tune: %s", asam_last_error());
    printf("     epoch losses: %.5f %.5f %.5f\n", r.epoch_loss[0], r.epoch_loss[1],
           r.epoch_loss[2]);
    CHECK(r.epoch_loss[2] < r.epoch_loss[1] && r.epoch_loss[1] < r.epoch_loss[0],
          "loss did not go down");
    long tok, changed, other;
    snprintf(p, sizeof p, "%s/efficientsam_tuned.pt", outA);
    esam_tuned_diff(model, p, &tok, &changed, &other);
    CHECK(tok == 320 && changed == 320 && other == 0, "%ld of %ld token values changed, %ld others",
          changed, tok, other);
    printf("ok   %ld of %ld token values changed, %ld others\n", changed, tok, other);
    CHECK(esam_has_model_wrapper(p), "%s is not {\"model\": state_dict}", p);
    asam_esam *t = NULL;
    CHECK(asam_esam_load(p, 2, &t) == 0, "tuned .pt loads back: %s", asam_last_error());
    asam_esam_free(t);
    snprintf(p, sizeof p, "%s/efficientsam_tuned.safetensors", outA);
    esam_tuned_diff(model, p, &tok, &changed, &other);
    CHECK(changed == 320 && other == 0, "safetensors output");

    /* augmentation: flip + large-scale jitter, points and boxes (mask prompts are not drawn) */
    o.out_dir = outB;
    o.augment = 1;
    o.epochs = 1;
    o.limit = 1;
    o.prompts = ASAM_PROMPT_BOX | ASAM_PROMPT_POINTS | ASAM_PROMPT_MASK;
    o.loss.points = 1;
    o.loss.n_points = 2048;
    CHECK(asam_tune(&o, &r) == 0 && r.epochs_done == 1, "augmented: %s", asam_last_error());
    snprintf(p, sizeof p, "%s/efficientsam_tuned.pt", outB);
    esam_tuned_diff(model, p, &tok, &changed, &other);
    CHECK(other == 0 && changed > 0, "augmented run moved only the tokens");
    o.prompts = ASAM_PROMPT_MASK;
    CHECK(asam_tune(&o, NULL) != 0 && strstr(asam_last_error(), "no mask prompts"),
          "mask prompts refused: '%s'", asam_last_error());

    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0, "cleanup");
    return test_finish("test_efficientsam_tune");
}
