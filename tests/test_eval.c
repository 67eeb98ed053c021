/* asam_eval_sample / asam_eval_run with the tiny SAM on a synthetic SA-1B folder:
 *  - the SAM protocol's mIoU equals the IoU of the predictor's own masks, averaged by hand;
 *  - the ASAM protocol gives values in [0, 1] that differ from the SAM protocol's on a
 *    non-square image;
 *  - the Markdown / JSON tables hold the cells; bad inputs fail naming the file. */
#include "asam/asam.h"
#include "asam/error.h"
#include "test_synth.h"
#include "test_util.h"

#include <cjson/cJSON.h>

/* The SAM protocol's mIoU / bIoU equal the predictor's own masks scored here; the ASAM
 * protocol's lie in [0, 1] and differ on a non-square image. */
static void case_protocols(const char *model, const char *spec, double *mi_asam, double *bi_asam) {
    asam_sam *m = NULL;
    CHECK(asam_sam_load(model, &m) == 0, "load: %s", asam_last_error());
    asam_dataset *ds = NULL;
    CHECK(asam_dataset_open(spec, &ds) == 0, "open: %s", asam_last_error());
    if (!m || !ds) return;
    asam_sample s;
    CHECK(asam_dataset_get(ds, 0, 0, &s) == 0 && s.n_masks == 3, "sample");

    /* SAM protocol vs the predictor's masks scored here */
    double mi_sam, bi_sam;
    int nm;
    CHECK(asam_eval_sample(m, &s, ASAM_PROTOCOL_SAM, 0.02, &mi_sam, &bi_sam, &nm) == 0 && nm == 3,
          "eval sam: %s", asam_last_error());
    asam_sam_predictor p;
    asam_sam_predictor_init(&p, m);
    CHECK(asam_sam_predictor_set_image(&p, &s.image) == 0, "set_image");
    double want_i = 0, want_b = 0;
    size_t hw = (size_t)s.h * s.w;
    for (int k = 0; k < s.n_masks; k++) {
        const uint8_t *g = s.masks + k * hw;
        float box[4]; /* the GT mask's tight box (masks are not empty here) */
        asam_mask_box_u8(g, s.w, s.h, box);
        asam_sam_query q = {.batch = 1, .boxes = box};
        asam_sam_result r;
        CHECK(asam_sam_predictor_predict(&p, &q, 0, &r) == 0, "predict");
        want_i += asam_mask_iou(r.masks, g, (int64_t)hw);
        want_b += asam_boundary_iou(r.masks, g, s.h, s.w, 0.02);
        asam_sam_result_free(&r);
    }
    asam_sam_predictor_free(&p);
    want_i /= s.n_masks;
    want_b /= s.n_masks;
    CHECK(fabs(mi_sam - want_i) < 1e-12 && fabs(bi_sam - want_b) < 1e-12,
          "sam protocol %.6f/%.6f vs predictor %.6f/%.6f", mi_sam, bi_sam, want_i, want_b);
    printf("ok   sam protocol = predictor masks (mIoU %.4f, bIoU %.4f)\n", mi_sam, bi_sam);

    CHECK(asam_eval_sample(m, &s, ASAM_PROTOCOL_ASAM, 0.02, mi_asam, bi_asam, &nm) == 0,
          "eval asam: %s", asam_last_error());
    CHECK(*mi_asam >= 0 && *mi_asam <= 1 && *bi_asam >= 0 && *bi_asam <= 1, "asam protocol range");
    CHECK(*mi_asam != mi_sam, "asam and sam protocols should differ on an 80x48 image");
    printf("ok   asam protocol mIoU %.4f bIoU %.4f\n", *mi_asam, *bi_asam);
    asam_sample_free(&s);
    asam_dataset_close(ds);
    asam_sam_free(m);
}

/* The table: two checkpoints (the same file twice) side by side, first image only. */
static void case_table(asam_eval_opts *o, double mi_asam, double bi_asam) {
    asam_eval_cell cells[2];
    CHECK(asam_eval_run(o, cells) == 0, "eval run: %s", asam_last_error());
    CHECK(cells[0].n_images == 1 && cells[0].n_masks == 3, "cells count");
    CHECK(cells[0].miou == mi_asam && cells[1].miou == mi_asam && cells[0].biou == bi_asam,
          "table cells %.6f %.6f vs %.6f", cells[0].miou, cells[1].miou, mi_asam);
    char *text;
    size_t n;
    if (asam_read_file(o->md_path, &text, &n) == 0) {
        CHECK(strstr(text, "| synthetic | 1 | 3 |") && strstr(text, "model.pth mIoU"),
              "markdown table");
        printf("%s", text);
        free(text);
    } else {
        CHECK(0, "markdown table missing");
    }
    if (asam_read_file(o->json_path, &text, &n) == 0) {
        cJSON *j = cJSON_Parse(text);
        const cJSON *d0 = j ? cJSON_GetArrayItem(cJSON_GetObjectItem(j, "datasets"), 0) : NULL;
        const cJSON *r0 = d0 ? cJSON_GetArrayItem(cJSON_GetObjectItem(d0, "results"), 1) : NULL;
        const cJSON *mi = r0 ? cJSON_GetObjectItem(r0, "miou") : NULL;
        CHECK(mi && fabs(mi->valuedouble - mi_asam) < 1e-6, "json miou");
        CHECK(j && !strcmp(cJSON_GetObjectItem(j, "protocol")->valuestring, "asam"),
              "json protocol");
        cJSON_Delete(j);
        free(text);
    } else {
        CHECK(0, "json table missing");
    }
}

/* Bad inputs fail naming the file. */
static void case_bad_inputs(asam_eval_opts *o, const char **models) {
    asam_eval_cell cells[2];
    const char *bad_models[1] = {"/nonexistent/sam.pth"};
    o->models = bad_models;
    o->n_models = 1;
    CHECK(asam_eval_run(o, cells) != 0 && strstr(asam_last_error(), "/nonexistent/sam.pth"),
          "missing model: %s", asam_last_error());
    const char *bad_specs[1] = {"masks:/nonexistent/img:/nonexistent/gt"};
    o->models = models;
    o->specs = bad_specs;
    CHECK(asam_eval_run(o, cells) != 0 && strstr(asam_last_error(), "/nonexistent/img"),
          "missing dataset: %s", asam_last_error());
}

int main(void) {
    char model[4096];
    if (test_data_file("sam_tiny/model.pth", model, sizeof model))
        TEST_SKIP("sam_tiny/model.pth not found");
    char root[] = "/tmp/asam_test_eval_XXXXXX";
    if (!mkdtemp(root)) return 1;
    char data[256], spec[300], md[300], js[300];
    snprintf(data, sizeof data, "%s/sa1b", root);
    snprintf(spec, sizeof spec, "sa1b:%s", data);
    snprintf(md, sizeof md, "%s/table.md", root);
    snprintf(js, sizeof js, "%s/table.json", root);
    CHECK(syn_write_sa1b(data, 2, 80, 48, 3, 1) == 0, "synthetic data");

    double mi_asam = 0, bi_asam = 0;
    case_protocols(model, spec, &mi_asam, &bi_asam);
    const char *models[2] = {model, model};
    const char *names[1] = {"synthetic"};
    const char *specs[1] = {spec};
    asam_eval_opts o;
    asam_eval_defaults(&o);
    o.models = models;
    o.n_models = 2;
    o.names = names;
    o.specs = specs;
    o.n_data = 1;
    o.limit = 1;
    o.md_path = md;
    o.json_path = js;
    o.progress = 1;
    case_table(&o, mi_asam, bi_asam);
    case_bad_inputs(&o, models);
    test_rm_rf(root);
    return test_finish("test_eval");
}
