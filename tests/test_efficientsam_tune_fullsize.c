/* EASAM at official sizes: a random-weight EfficientSAM ViT-Ti (official shapes, written as
 * efficient_sam_vitt-style {"model": state_dict}) tuned for one step on a synthetic image;
 * the output reloads with exactly the 1,280 token values changed and nothing else.
 * (scripts/ref/check_efficientsam_strict_load.py loads such a file into the official
 * build_efficient_sam with load_state_dict(strict=True).) */
#include "asam/efficientsam.h"
#include "test_util.h"
#include "test_esam_tune_common.h"
#include "test_synth.h"

int main(void) {
    asam_set_threads(2);
    char tmpl[] = "/tmp/asam_test_esam_full_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL, "mkdtemp");
    if (!root) return 1;
    char model[1200], data[1200], spec[1300], out[1200], p[1400];
    snprintf(model, sizeof model, "%s/efficient_sam_vitt.pt", root);
    asam_esam_config cfg;
    asam_esam *m = NULL;
    CHECK(asam_esam_config_preset("vit_t", &cfg) == 0 && asam_esam_init_random(&cfg, 11, &m) == 0 &&
              asam_esam_save(m, model) == 0,
          "random ViT-Ti: %s", asam_last_error());
    asam_esam_free(m);
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(out, sizeof out, "%s/out", root);
    CHECK(syn_write_sa1b(data, 1, 96, 64, 2, 1) == 0, "synthetic data");
    const char *specs[1] = {spec};
    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.model_path = model;
    o.data = specs;
    o.n_data = 1;
    o.out_dir = out;
    o.epochs = 1;
    o.batch = 1;
    o.augment = 0;
    o.masks_per_image = 1;
    o.prompts = ASAM_PROMPT_BOX | ASAM_PROMPT_POINTS;
    o.loss.n_points = 2048;
    asam_tune_report r;
    CHECK(asam_tune(&o, &r) == 0 && r.epochs_done == 1, "tune: %s", asam_last_error());
    long tok, changed, other;
    snprintf(p, sizeof p, "%s/efficientsam_tuned.pt", out);
    esam_tuned_diff(model, p, &tok, &changed, &other);
    CHECK(tok == 1280 && changed == 1280 && other == 0,
          "%ld of %ld token values changed, %ld others", changed, tok, other);
    printf("ok   ViT-Ti: %ld of %ld token values changed, %ld others\n", changed, tok, other);
    CHECK(esam_has_model_wrapper(p), "%s is not {\"model\": state_dict}", p);
    asam_esam *t = NULL;
    CHECK(asam_esam_load(p, 0, &t) == 0 && !strcmp(asam_esam_cfg(t)->variant, "vit_t"),
          "tuned .pt reloads as vit_t: %s", asam_last_error());
    asam_esam_free(t);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0, "cleanup");
    return test_finish("test_efficientsam_tune_fullsize");
}
