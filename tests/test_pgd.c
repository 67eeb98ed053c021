/* PGD against the tiny SAM: the loss gradient matches finite differences along its sign
 * direction, the attack raises the loss, stays within eps of the clean image, and the dataset
 * run writes PNGs in the adv: layout and skips finished images. */
#include "asam/asam.h"
#include "asam/error.h"
#include "test_synth.h"
#include "test_util.h"

int main(void) {
    char model[4096];
    if (test_data_file("sam_tiny/model.pth", model, sizeof model))
        TEST_SKIP("sam_tiny/model.pth not found");
    char root[] = "/tmp/asam_test_pgd_XXXXXX";
    if (!mkdtemp(root)) return 1;
    char data[256], spec[300], adv[300];
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(adv, sizeof adv, "%s/adv", root);
    CHECK(syn_write_sa1b(data, 1, 64, 48, 2, 1) == 0, "synthetic data");

    float f;
    CHECK(asam_parse_fraction("8/255", &f) == 0 && fabsf(f - 8.0f / 255) < 1e-9f, "8/255");
    CHECK(asam_parse_fraction("0.5", &f) == 0 && f == 0.5f, "0.5");
    CHECK(asam_parse_fraction("1/0", &f) != 0 && asam_parse_fraction("x", &f) != 0,
          "bad fractions");

    asam_sam *m = NULL;
    asam_dataset *ds = NULL;
    CHECK(asam_sam_load(model, &m) == 0, "load");
    CHECK(asam_dataset_open(spec, &ds) == 0, "open");
    if (!m || !ds) return test_finish("test_pgd");
    asam_sample s;
    CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 2, "sample");
    size_t hw = (size_t)s.h * s.w;

    /* gradient: L(x + h d) - L(x - h d) ~ 2 h <g, d> along d = sign(g) */
    float *x = malloc(sizeof(float) * 3 * hw), *g = malloc(sizeof(float) * 3 * hw),
          *xp = malloc(sizeof(float) * 3 * hw);
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < hw; i++) x[c * hw + i] = s.image.data[i * 3 + c];
    double l0;
    CHECK(asam_pgd_loss_grad(m, x, s.masks, s.n_masks, s.h, s.w, &l0, g) == 0, "loss+grad: %s",
          asam_last_error());
    double gd = 0;
    for (size_t i = 0; i < 3 * hw; i++) gd += fabs(g[i]);
    const float h = 0.25f;
    double lp, lm;
    for (size_t i = 0; i < 3 * hw; i++) xp[i] = x[i] + h * (g[i] > 0 ? 1 : g[i] < 0 ? -1 : 0);
    asam_pgd_loss_grad(m, xp, s.masks, s.n_masks, s.h, s.w, &lp, NULL);
    for (size_t i = 0; i < 3 * hw; i++) xp[i] = x[i] - h * (g[i] > 0 ? 1 : g[i] < 0 ? -1 : 0);
    asam_pgd_loss_grad(m, xp, s.masks, s.n_masks, s.h, s.w, &lm, NULL);
    double num = (lp - lm) / (2 * h);
    CHECK(gd > 0 && fabs(num - gd) < 0.05 * gd, "directional derivative %.6g vs <g, sign g> %.6g",
          num, gd);
    printf("ok   pixel gradient: directional derivative %.6g vs analytic %.6g\n", num, gd);

    /* the attack */
    asam_pgd_opts o;
    asam_pgd_defaults(&o);
    o.iters = 2;
    o.eps = 3.0f / 255; /* two steps of 2/255 must be clipped to 3/255 */
    asam_image advimg = {0};
    double lb = 0, la = 0;
    CHECK(asam_pgd_attack_sample(m, &s, &o, &advimg, &lb, &la) == 0, "attack: %s",
          asam_last_error());
    CHECK(la > lb, "loss not increased: %.5f -> %.5f", lb, la);
    int maxd = 0;
    for (size_t i = 0; advimg.data && i < 3 * hw; i++) {
        int d = abs((int)advimg.data[i] - (int)s.image.data[i]);
        if (d > maxd) maxd = d;
    }
    CHECK(maxd == 3, "max |x_adv - x| = %d levels (eps 3/255, 2 steps of 2/255)", maxd);
    printf("ok   PGD loss %.5f -> %.5f, max change %d/255\n", lb, la, maxd);
    asam_image_free(&advimg);
    asam_sample_free(&s);
    asam_dataset_close(ds);
    asam_sam_free(m);

    /* dataset run: writes ADV/sa_1.png, readable as adv:ADV:SA1B; a second run skips it */
    o.model_path = model;
    o.data = spec;
    o.out_dir = adv;
    o.iters = 1;
    o.progress = 0;
    CHECK(asam_pgd_run(&o) == 0, "pgd run: %s", asam_last_error());
    char png[400], advspec[700];
    snprintf(png, sizeof png, "%s/sa_1.png", adv);
    CHECK(test_is_file(png), "adversarial PNG written");
    struct stat st0, st1;
    stat(png, &st0);
    CHECK(asam_pgd_run(&o) == 0, "second run");
    stat(png, &st1);
    CHECK(st0.st_mtime == st1.st_mtime && st0.st_ino == st1.st_ino, "finished image skipped");
    snprintf(advspec, sizeof advspec, "adv:%s:%s", adv, data);
    CHECK(asam_dataset_open(advspec, &ds) == 0 && asam_dataset_count(ds) == 1, "adv layout: %s",
          asam_last_error());
    asam_dataset_close(ds);
    o.data = "sa1b:/nonexistent";
    CHECK(asam_pgd_run(&o) != 0 && strstr(asam_last_error(), "/nonexistent"), "bad data: %s",
          asam_last_error());

    free(x);
    free(g);
    free(xp);
    test_rm_rf(root);
    return test_finish("test_pgd");
}
