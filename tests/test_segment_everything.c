/* "Segment everything" over a folder with the tiny SAM: outputs are an sa1b: dataset the
 * pipeline reads (asam_dataset_open / get, as generate, tune and eval do), a rerun skips done
 * images, a rerun with other options refuses before any work (nothing rewritten), --redo
 * recomputes, and an image whose content changed is recomputed. */
#include "test_util.h"

#include "asam/dataset.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/sa1b.h"
#include "asam/sam.h"
#include "asam/segment_everything.h"

#include <sys/stat.h>
#include <time.h>

static long long mtime_ns(const char *p) {
    struct stat st;
    if (stat(p, &st) != 0) return -1;
    return (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

static int copy_file(const char *src, const char *dst) {
    char *d;
    size_t n;
    if (asam_read_file(src, &d, &n)) return -1;
    int rc = asam_write_file_atomic(dst, d, n);
    free(d);
    return rc;
}

int main(void) {
    char model_path[4096];
    if (test_data_file("sam_tiny/model.pth", model_path, sizeof model_path) != 0)
        TEST_SKIP("sam_tiny/model.pth(.gz) not found");
    asam_sam *m = NULL;
    if (asam_sam_load(model_path, &m)) {
        fprintf(stderr, "FAIL: load %s: %s\n", model_path, asam_last_error());
        return 1;
    }
    char tmpl[] = "/tmp/asam_everything_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL, "mkdtemp");
    char in[4200], out[4200], p[4400], q[4400];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    asam_mkdirs(in);
    const char *names[2] = {"rgb.png", "exif6.jpg"}, *dst[2] = {"sa_2.png", "sa_10.jpg"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/tests/data/images/%s", ASAM_SOURCE_DIR, names[i]);
        snprintf(q, sizeof q, "%s/%s", in, dst[i]);
        CHECK(copy_file(p, q) == 0, "copy %s: %s", p, asam_last_error());
    }

    asam_everything_opts o = {.model_path = model_path, .quiet = 1};
    asam_amg_options_default(&o.amg);
    o.amg.points_per_side = 2; /* the tiny model's masks need the lowered thresholds */
    o.amg.pred_iou_thresh = 0.3;
    o.amg.stability_score_offset = 0.25;
    o.amg.stability_score_thresh = 0.45;
    o.amg.box_nms_thresh = 1.0;
    asam_everything_stats st;
    int rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc == 0, "first run: %s", asam_last_error());
    CHECK(st.n_images == 2 && st.n_done == 2 && st.n_skipped == 0, "first run: %d/%d done",
          st.n_done, st.n_images);
    snprintf(p, sizeof p, "%s/sa_2.json", out);
    asam_sa1b_image s;
    CHECK(asam_sa1b_read(p, &s) == 0, "read %s: %s", p, asam_last_error());
    CHECK(s.width == 37 && s.height == 29 && s.image_id == 2 && !strcmp(s.file_name, "sa_2.png"),
          "image record of %s", p);
    size_t n_masks = s.n;
    CHECK(n_masks > 0, "%s: no masks", p);
    asam_sa1b_free(&s);
    snprintf(q, sizeof q, "%s/overlays/sa_2.png", out);
    CHECK(asam_file_exists(q), "overlay %s missing", q);
    long long t_json = mtime_ns(p);

    /* the output folder is an sa1b: dataset, in version order (sa_2 before sa_10) */
    char spec[4300];
    snprintf(spec, sizeof spec, "sa1b:%s", out);
    asam_dataset *ds = NULL;
    CHECK(asam_dataset_open(spec, &ds) == 0, "open %s: %s", spec, asam_last_error());
    if (ds) {
        CHECK(asam_dataset_count(ds) == 2, "%s: %zu items", spec, asam_dataset_count(ds));
        asam_sample smp;
        CHECK(asam_dataset_get(ds, 0, 0, &smp) == 0, "get: %s", asam_last_error());
        CHECK(!strcmp(smp.name, "sa_2") && smp.n_masks > 0 && smp.n_masks <= (int)n_masks &&
                  smp.w == 37 && smp.h == 29,
              "item 0: %s with %d masks", smp.name, smp.n_masks);
        asam_sample_free(&smp);
        asam_dataset_close(ds);
    }

    /* rerun: both skipped, nothing rewritten */
    rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc == 0 && st.n_skipped == 2 && st.n_done == 0, "rerun: %d skipped, %d done",
          st.n_skipped, st.n_done);
    CHECK(mtime_ns(p) == t_json, "rerun rewrote %s", p);

    /* other options: refused with the file named, nothing rewritten */
    o.amg.stability_score_thresh = 0.4;
    rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc != 0 && strstr(asam_last_error(), "other options"),
          "other options accepted (rc %d: %s)", rc, asam_last_error());
    CHECK(mtime_ns(p) == t_json, "refused run rewrote %s", p);
    /* points_per_batch does not change results: not a conflict */
    o.amg.stability_score_thresh = 0.45;
    o.amg.points_per_batch = 3;
    rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc == 0 && st.n_skipped == 2, "points_per_batch change: rc %d, %d skipped", rc,
          st.n_skipped);

    /* --redo recomputes under the new options */
    o.amg.stability_score_thresh = 0.4;
    o.redo = 1;
    rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc == 0 && st.n_done == 2, "redo: rc %d, %d done: %s", rc, st.n_done, asam_last_error());
    o.redo = 0;

    /* a changed image is recomputed (same options) */
    snprintf(q, sizeof q, "%s/sa_2.png", in);
    snprintf(p, sizeof p, "%s/tests/data/images/rgba.png", ASAM_SOURCE_DIR);
    CHECK(copy_file(p, q) == 0, "replace image");
    rc = asam_segment_everything(m, in, out, &o, &st);
    CHECK(rc == 0 && st.n_done == 1 && st.n_skipped == 1, "changed image: %d done, %d skipped",
          st.n_done, st.n_skipped);

    /* bad input: a corrupt image names the file, writes no JSON */
    snprintf(q, sizeof q, "%s/bad", dir);
    asam_mkdirs(q);
    snprintf(q, sizeof q, "%s/bad/sa_1.png", dir);
    asam_write_file_atomic(q, "not a png", 9);
    snprintf(q, sizeof q, "%s/bad", dir);
    snprintf(p, sizeof p, "%s/bad_out", dir);
    rc = asam_segment_everything(m, q, p, &o, &st);
    CHECK(rc != 0 && strstr(asam_last_error(), "sa_1.png"), "corrupt image: rc %d: %s", rc,
          asam_last_error());
    snprintf(p, sizeof p, "%s/bad_out/sa_1.json", dir);
    CHECK(!asam_file_exists(p), "corrupt image left %s", p);

    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    asam_sam_free(m);
    return test_finish("test_segment_everything");
}
