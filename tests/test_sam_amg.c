/* The automatic mask generator against the official SamAutomaticMaskGenerator
 * (scripts/ref/make_amg_reference.py -> tests/data/amg/amg_reference.json.gz):
 *   - torch's unstable CPU sort and torchvision's batched_nms, tie order included;
 *   - remove_small_regions (OpenCV 8-connected components), holes and islands;
 *   - whole generator runs on the tiny SAM: same mask count, every official mask matched at
 *     IoU >= 0.99 (and in the same order), bbox / area / predicted_iou / stability_score /
 *     point_coords / crop_box within tolerance; with crops and with min_mask_region_area. */
#include "test_util.h"

#include "asam/error.h"
#include "asam/image.h"
#include "asam/rle.h"
#include "asam/sam.h"
#include "asam/sa1b.h"
#include "asam/sam_amg.h"
#include "asam/segment_everything.h"

#include <cjson/cJSON.h>
#include <stdint.h>

static cJSON *load_reference(void) {
    char path[4096];
    if (test_data_file("amg/amg_reference.json", path, sizeof path) != 0) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, got);
    free(buf);
    return j;
}

static int64_t *int_array(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(*n ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[i++] = (int64_t)e->valuedouble;
    return v;
}

static float *float_array(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    float *v = malloc(sizeof(float) * (size_t)(*n ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[i++] = (float)e->valuedouble;
    return v;
}

static const cJSON *item(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static void check_sort(const cJSON *ref) {
    int k = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, item(ref, "sort")) {
        int n, m;
        float *s = float_array(item(c, "scores"), &n);
        int64_t *want = int_array(item(c, "order"), &m);
        int64_t *got = malloc(sizeof(int64_t) * (size_t)n);
        asam_amg_sort_desc(s, n, got);
        int same = n == m;
        for (int i = 0; same && i < n; i++) same = got[i] == want[i];
        CHECK(same, "sort case %d (n = %d): order differs from torch.sort", k, n);
        bad += !same;
        free(s), free(want), free(got);
        k++;
    }
    CHECK(k > 0, "no sort cases in the reference");
    if (!bad) printf("ok   torch.sort(descending) tie order: %d cases\n", k);
}

static void check_nms(const cJSON *ref) {
    int k = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, item(ref, "nms")) {
        int n = cJSON_GetArraySize(item(c, "boxes")), ns, nk;
        float *boxes = malloc(sizeof(float) * 4 * (size_t)n);
        int i = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, item(c, "boxes")) {
            for (int q = 0; q < 4; q++)
                boxes[4 * i + q] = (float)cJSON_GetArrayItem(b, q)->valuedouble;
            i++;
        }
        float *scores = float_array(item(c, "scores"), &ns);
        int64_t *want = int_array(item(c, "keep"), &nk);
        int64_t *got = malloc(sizeof(int64_t) * (size_t)n);
        int64_t g = asam_amg_nms(boxes, scores, n, item(c, "thresh")->valuedouble, got);
        int same = g == nk;
        for (int q = 0; same && q < nk; q++) same = got[q] == want[q];
        CHECK(same, "nms case %d (n = %d): kept %lld, torchvision kept %d (or order differs)", k, n,
              (long long)g, nk);
        bad += !same;
        free(boxes), free(scores), free(want), free(got);
        k++;
    }
    CHECK(k > 0, "no nms cases in the reference");
    if (!bad) printf("ok   batched_nms keep lists (both torchvision paths): %d cases\n", k);
}

static void check_regions(const cJSON *ref) {
    int k = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, item(ref, "regions")) {
        int h = item(c, "h")->valueint, w = item(c, "w")->valueint, n, nr;
        int64_t *m = int_array(item(c, "mask"), &n);
        int64_t *want = int_array(item(c, "result"), &nr);
        uint8_t *mask = malloc((size_t)n);
        for (int i = 0; i < n; i++) mask[i] = (uint8_t)m[i];
        int holes = !strcmp(item(c, "mode")->valuestring, "holes"), changed = -1;
        int rc = asam_amg_remove_small_regions(mask, h, w, item(c, "thresh")->valuedouble, holes,
                                               &changed);
        int diff = 0;
        for (int i = 0; i < n; i++) diff += mask[i] != want[i];
        int ok = rc == 0 && diff == 0 && changed == cJSON_IsTrue(item(c, "changed"));
        CHECK(ok, "regions case %d (%dx%d %s < %g): %d pixels differ, changed %d", k, w, h,
              holes ? "holes" : "islands", item(c, "thresh")->valuedouble, diff, changed);
        bad += !ok;
        free(m), free(want), free(mask);
        k++;
    }
    CHECK(k > 0, "no region cases in the reference");
    if (!bad) printf("ok   remove_small_regions (cv2 8-connectivity): %d cases\n", k);
}

static double mask_iou(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t i_ = 0, u = 0;
    for (size_t p = 0; p < n; p++) {
        i_ += a[p] && b[p];
        u += a[p] || b[p];
    }
    return u ? (double)i_ / (double)u : 1.0;
}

/* The SA-1B JSON of a result reads back through the project's reader with every field. */
static void check_round_trip(const char *name, const asam_amg_result *res, const asam_image *img,
                             uint8_t *a, uint8_t *b) {
    char *json = asam_amg_sa1b_json(res, 7, "x.png", "{\"tool\": \"test\"}");
    asam_sa1b_image s;
    int ok = json && asam_sa1b_parse(json, strlen(json), name, &s) == 0;
    CHECK(ok, "%s: SA-1B JSON does not parse: %s", name, json ? asam_last_error() : "no JSON");
    free(json);
    if (!ok) return;
    ok = s.n == res->n && s.width == img->w && s.height == img->h && s.image_id == 7 &&
         !strcmp(s.file_name, "x.png");
    size_t hw = (size_t)img->w * img->h;
    for (size_t i = 0; ok && i < s.n; i++) {
        const asam_amg_mask *g = &res->masks[i];
        const asam_sa1b_annotation *r = &s.anns[i];
        ok = asam_rle_decode(&r->rle, a) == 0 && asam_rle_decode(&g->rle, b) == 0 &&
             memcmp(a, b, hw) == 0 && r->area == (double)g->area &&
             (float)r->predicted_iou == g->predicted_iou &&
             ((float)r->stability_score == g->stability_score ||
              (isnan(r->stability_score) && isnan(g->stability_score)));
        for (int q = 0; ok && q < 4; q++) ok = r->bbox[q] == (double)g->bbox[q];
    }
    CHECK(ok, "%s: SA-1B JSON round trip differs", name);
    asam_sa1b_free(&s);
    asam_image ov = {0};
    CHECK(asam_amg_overlay(img, res, &ov) == 0 && ov.w == img->w && ov.h == img->h &&
              (res->n == 0 || memcmp(ov.data, img->data, hw * 3) != 0),
          "%s: overlay", name);
    asam_image_free(&ov);
}

static void opt_from_json(const cJSON *o, asam_amg_options *opt) {
    asam_amg_options_default(opt);
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        const char *k = e->string;
        double v = e->valuedouble;
        if (!strcmp(k, "points_per_side"))
            opt->points_per_side = (int)v;
        else if (!strcmp(k, "points_per_batch"))
            opt->points_per_batch = (int)v;
        else if (!strcmp(k, "pred_iou_thresh"))
            opt->pred_iou_thresh = v;
        else if (!strcmp(k, "stability_score_thresh"))
            opt->stability_score_thresh = v;
        else if (!strcmp(k, "stability_score_offset"))
            opt->stability_score_offset = v;
        else if (!strcmp(k, "box_nms_thresh"))
            opt->box_nms_thresh = v;
        else if (!strcmp(k, "crop_n_layers"))
            opt->crop_n_layers = (int)v;
        else if (!strcmp(k, "crop_nms_thresh"))
            opt->crop_nms_thresh = v;
        else if (!strcmp(k, "crop_overlap_ratio"))
            opt->crop_overlap_ratio = v;
        else if (!strcmp(k, "crop_n_points_downscale_factor"))
            opt->crop_n_points_downscale_factor = (int)v;
        else if (!strcmp(k, "min_mask_region_area"))
            opt->min_mask_region_area = (int)v;
        else
            CHECK(0, "unknown option %s in the reference", k);
    }
}

static void check_case(const asam_sam *m, const cJSON *c) {
    const char *name = item(c, "name")->valuestring;
    char img_path[4096];
    snprintf(img_path, sizeof img_path, "%s/%s", ASAM_SOURCE_DIR, item(c, "image")->valuestring);
    asam_image img = {0};
    if (asam_image_read(img_path, 3, &img)) {
        CHECK(0, "%s: %s", name, asam_last_error());
        return;
    }
    asam_amg_options opt;
    opt_from_json(item(c, "options"), &opt);
    asam_amg_result res;
    if (asam_amg_generate(m, &img, &opt, NULL, NULL, &res)) {
        CHECK(0, "%s: generate: %s", name, asam_last_error());
        asam_image_free(&img);
        return;
    }
    const cJSON *masks = item(c, "masks");
    int n_ref = cJSON_GetArraySize(masks);
    CHECK((int)res.n == n_ref, "%s: %zu masks, official %d", name, res.n, n_ref);
    size_t hw = (size_t)img.h * img.w;
    uint8_t *a = malloc(hw), *b = malloc(hw);
    double worst_iou = 1, d_iou = 0, d_stab = 0, d_area = 0, d_pt = 0;
    int64_t d_box = 0, d_crop = 0;
    int in_order = 0, matched = 0, i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, masks) {
        int nc;
        int64_t *cnt = int_array(item(r, "counts"), &nc);
        uint32_t *c32 = malloc(sizeof(uint32_t) * (size_t)(nc ? nc : 1));
        for (int q = 0; q < nc; q++) c32[q] = (uint32_t)cnt[q];
        asam_rle rr;
        int ok = asam_rle_from_counts(c32, (size_t)nc, img.h, img.w, &rr) == 0 &&
                 asam_rle_decode(&rr, a) == 0;
        CHECK(ok, "%s: reference mask %d does not decode", name, i);
        asam_rle_free(&rr);
        free(cnt), free(c32);
        /* the same position first, else the best match anywhere */
        int best = -1;
        double best_iou = -1;
        for (size_t j = 0; ok && j < res.n; j++) {
            size_t jj = ((size_t)i + j) % res.n;
            asam_rle_decode(&res.masks[jj].rle, b);
            double v = mask_iou(a, b, hw);
            if (v > best_iou) best_iou = v, best = (int)jj;
            if (j == 0 && v >= 0.99) break;
        }
        if (best_iou < worst_iou) worst_iou = best_iou;
        if (best >= 0 && best_iou >= 0.99) {
            matched++;
            in_order += best == i;
            const asam_amg_mask *g = &res.masks[best];
            int n4;
            int64_t *bb = int_array(item(r, "bbox"), &n4);
            int64_t *cb = int_array(item(r, "crop_box"), &n4);
            for (int q = 0; q < 4; q++) {
                int64_t d = llabs(g->bbox[q] - bb[q]);
                if (d > d_box) d_box = d;
                d = llabs((int64_t)g->crop_box[q] - cb[q]);
                if (d > d_crop) d_crop = d;
            }
            free(bb), free(cb);
            double ra = fabs((double)g->area - item(r, "area")->valuedouble) /
                        fmax(1.0, item(r, "area")->valuedouble);
            if (ra > d_area) d_area = ra;
            double di = fabs(g->predicted_iou - item(r, "predicted_iou")->valuedouble);
            if (di > d_iou) d_iou = di;
            double ds = fabs(g->stability_score - item(r, "stability_score")->valuedouble);
            if (ds > d_stab || ds != ds) d_stab = ds != ds ? INFINITY : ds;
            const cJSON *pt = cJSON_GetArrayItem(item(r, "point_coords"), 0);
            for (int q = 0; q < 2; q++) {
                double dp = fabs(g->point[q] - cJSON_GetArrayItem(pt, q)->valuedouble);
                if (dp > d_pt) d_pt = dp;
            }
        }
        i++;
    }
    CHECK(matched == n_ref, "%s: %d of %d official masks matched at IoU >= 0.99 (worst %.4f)", name,
          matched, n_ref, worst_iou);
    CHECK(in_order == n_ref, "%s: %d of %d masks in the official order", name, in_order, n_ref);
    CHECK(d_box <= 1, "%s: bbox differs by %lld px", name, (long long)d_box);
    CHECK(d_crop == 0, "%s: crop_box differs by %lld px", name, (long long)d_crop);
    CHECK(d_area <= 0.01, "%s: area differs by %.4f (relative)", name, d_area);
    CHECK(d_iou <= 1e-4, "%s: predicted_iou differs by %.3g", name, d_iou);
    CHECK(d_stab <= 2e-3, "%s: stability_score differs by %.3g", name, d_stab);
    CHECK(d_pt <= 1e-9, "%s: point_coords differ by %.3g", name, d_pt);
    printf("%s %-20s %zu/%d masks, %d matched (%d in order), worst IoU %.5f, |bbox| %lld px, "
           "area %.2g, iou %.2g, stability %.2g, point %.2g\n",
           test_failures ? "..." : "ok  ", name, res.n, n_ref, matched, in_order, worst_iou,
           (long long)d_box, d_area, d_iou, d_stab, d_pt);
    check_round_trip(name, &res, &img, a, b);
    free(a), free(b);
    asam_amg_result_free(&res);
    asam_image_free(&img);
}

static void check_building_blocks(void) {
    /* numpy.linspace(1/8, 7/8, 4) */
    double g[32];
    asam_amg_point_grid(4, g);
    const double want[4] = {0.125, 0.375, 0.625, 0.875};
    int ok = 1;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            ok &= g[2 * (r * 4 + c)] == want[c] && g[2 * (r * 4 + c) + 1] == want[r];
    CHECK(ok, "point grid 4x4 differs from numpy.linspace(1/8, 7/8, 4)");
    /* generate_crop_boxes((480, 640), 1, 512/1500): overlap int(163.84) = 163, crops 402x322 */
    int boxes[5][4], layer[5];
    int n = asam_amg_crop_boxes(480, 640, 1, 512.0 / 1500.0, boxes, layer, 5);
    const int wantb[5][4] = {{0, 0, 640, 480},
                             {0, 0, 402, 322},
                             {0, 159, 402, 480},
                             {239, 0, 640, 322},
                             {239, 159, 640, 480}};
    ok = n == 5;
    for (int k = 0; ok && k < 5; k++)
        for (int q = 0; q < 4; q++) ok &= boxes[k][q] == wantb[k][q];
    CHECK(ok, "crop boxes of 640x480, one layer, differ from generate_crop_boxes");
    uint8_t m[12] = {0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0}; /* 3 x 4 */
    int64_t box[4];
    asam_amg_mask_box(m, 3, 4, box);
    CHECK(box[0] == 1 && box[1] == 1 && box[2] == 2 && box[3] == 2, "mask box (inclusive)");
    memset(m, 0, sizeof m);
    asam_amg_mask_box(m, 3, 4, box);
    CHECK(box[0] == 0 && box[1] == 0 && box[2] == 0 && box[3] == 0, "empty mask box");
    asam_amg_options o;
    asam_amg_options_default(&o);
    CHECK(asam_amg_options_check(&o) == 0, "defaults rejected: %s", asam_last_error());
    o.points_per_batch = 0;
    CHECK(asam_amg_options_check(&o) != 0, "points_per_batch 0 accepted");
    if (!test_failures) printf("ok   point grid, crop boxes, mask box, option checks\n");
}

int main(void) {
    check_building_blocks();
    cJSON *ref = load_reference();
    if (!ref) TEST_SKIP("tests/data/amg/amg_reference.json.gz not found");
    check_sort(ref);
    check_nms(ref);
    check_regions(ref);
    char model_path[4096];
    if (test_data_file("sam_tiny/model.pth", model_path, sizeof model_path) != 0) {
        cJSON_Delete(ref);
        TEST_SKIP("sam_tiny/model.pth(.gz) not found");
    }
    asam_sam *m = NULL;
    if (asam_sam_load(model_path, &m)) {
        CHECK(0, "load %s: %s", model_path, asam_last_error());
    } else {
        const char *only = getenv("AMG_CASE");
        const cJSON *c;
        cJSON_ArrayForEach(c, item(ref, "cases")) {
            if (only && strcmp(only, item(c, "name")->valuestring)) continue;
            check_case(m, c);
        }
        asam_sam_free(m);
    }
    cJSON_Delete(ref);
    return test_finish("test_sam_amg");
}
