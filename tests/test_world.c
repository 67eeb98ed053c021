/* The miniature world (asam/world.h): same seed -> same bytes in every file; a killed run resumes
 * to the same bytes; the written RLE masks decode to exactly the rendered objects' visible
 * regions with matching boxes, and the JPEGs to the rendered pixels; each unseen set differs from
 * the training distribution in the statistic of its shift (and val does not); a folder made with
 * another seed is refused unless forced. */
#include "test_util.h"

#include "asam/error.h"
#include "asam/image.h"
#include "asam/sa1b.h"
#include "asam/util.h"
#include "asam/world.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every file of every set in a equals the one in b; returns the number of files compared. */
static int same_tree(const char *a, const char *b) {
    int files = 0;
    for (int s = 0; s < ASAM_WORLD_N_SETS; s++) {
        char da[512], path_a[1024], path_b[1024];
        snprintf(da, sizeof da, "%s/%s", a, asam_world_set_name(s));
        DIR *d = opendir(da);
        CHECK(d != NULL, "%s missing", da);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(path_a, sizeof path_a, "%s/%s", da, e->d_name);
            snprintf(path_b, sizeof path_b, "%s/%s/%s", b, asam_world_set_name(s), e->d_name);
            size_t na = 0, nb = 0;
            char *fa = test_slurp(path_a, &na), *fb = test_slurp(path_b, &nb);
            CHECK(fa && fb && na == nb && !memcmp(fa, fb, na), "%s differs from %s", path_a,
                  path_b);
            free(fa);
            free(fb);
            files++;
        }
        closedir(d);
    }
    return files;
}

int main(void) {
    char dir[] = "/tmp/asam_world_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    asam_world_opts o;
    asam_world_opts_default(&o);
    o.seed = 9, o.count = 5, o.eval_count = 3, o.verbose = 0;
    o.out = a;
    CHECK(asam_world_write(&o) == 0, "write a: %s", asam_last_error());
    o.out = b;
    CHECK(asam_world_write(&o) == 0, "write b: %s", asam_last_error());
    int files = same_tree(a, b);
    printf("determinism: %d files identical across two runs\n", files);
    /* per set: images + annotations, captions.jsonl, provenance.jsonl */
    CHECK(files == (5 * 2 + 2) + 8 * (3 * 2 + 2), "file count %d", files);

    /* ---- a killed run: the val set half written, its record kept ---- */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mv '%s/val' '%s/.val.partial' && rm '%s/.val.partial/sa_2.json' "
             "'%s/.val.partial/captions.jsonl' '%s/world.json' && rm -r '%s/unseen_clutter'",
             b, b, b, b, b, b);
    CHECK(system(cmd) == 0, "simulating a kill");
    CHECK(asam_world_write(&o) == 0, "resume: %s", asam_last_error());
    char part[600];
    snprintf(part, sizeof part, "%s/.val.partial", b);
    CHECK(access(part, F_OK) != 0, "the partial folder is left behind");
    CHECK(same_tree(a, b) == files, "resumed world differs");
    size_t na = 0, nb = 0;
    char wa[600], wb[600];
    snprintf(wa, sizeof wa, "%s/world.json", a);
    snprintf(wb, sizeof wb, "%s/world.json", b);
    char *ja = test_slurp(wa, &na), *jb = test_slurp(wb, &nb);
    CHECK(ja && jb && na == nb && !memcmp(ja, jb, na), "world.json differs after resume");
    free(ja);
    free(jb);

    /* ---- another seed into the same folder: refused, then forced ---- */
    o.seed = 10;
    CHECK(asam_world_write(&o) == -1 && strstr(asam_last_error(), "--seed") &&
              strstr(asam_last_error(), "--force"),
          "other seed: %s", asam_last_error());
    o.force = 1;
    CHECK(asam_world_write(&o) == 0, "forced: %s", asam_last_error());
    o.force = 0, o.seed = 9;

    /* ---- the files hold what was drawn ---- */
    int checked = 0;
    for (int s = 0; s < ASAM_WORLD_N_SETS; s++) {
        for (int i = 0; i < 3; i++) {
            asam_synth_sample smp;
            CHECK(asam_world_render(s, i, 128, 9, &smp) == 0, "render: %s", asam_last_error());
            char jp[800], ip[800];
            snprintf(jp, sizeof jp, "%s/%s/sa_%d.json", a, asam_world_set_name(s), i + 1);
            snprintf(ip, sizeof ip, "%s/%s/sa_%d.jpg", a, asam_world_set_name(s), i + 1);
            asam_sa1b_image ann;
            CHECK(asam_sa1b_read(jp, &ann) == 0, "read %s: %s", jp, asam_last_error());
            CHECK((int)ann.n == smp.n_masks && ann.width == 128 && ann.height == 128,
                  "%s: %zu annotations for %d objects", jp, ann.n, smp.n_masks);
            uint8_t *m = malloc(128 * 128);
            for (size_t k = 0; k < ann.n && (int)k < smp.n_masks; k++) {
                CHECK(asam_rle_decode(&ann.anns[k].rle, m) == 0, "decode");
                const uint8_t *want = smp.masks + k * 128 * 128;
                CHECK(!memcmp(m, want, 128 * 128), "%s: mask %zu differs from the drawn object", jp,
                      k);
                float bx[4];
                int64_t area = asam_mask_box_u8(want, 128, 128, bx);
                CHECK(area > 0 && ann.anns[k].area == (double)area &&
                          ann.anns[k].bbox[0] == bx[0] && ann.anns[k].bbox[1] == bx[1] &&
                          ann.anns[k].bbox[2] == bx[2] - bx[0] + 1 &&
                          ann.anns[k].bbox[3] == bx[3] - bx[1] + 1,
                      "%s: mask %zu box/area", jp, k);
                checked++;
            }
            free(m);
            asam_sa1b_free(&ann);
            asam_image img;
            CHECK(asam_image_read(ip, 3, &img) == 0, "read %s", ip);
            /* JPEG (4:2:0, q95) drops much of the pixel noise: compare 4x4-block means */
            double mad = 0;
            for (int by = 0; by < 32; by++)
                for (int bx = 0; bx < 32; bx++)
                    for (int c = 0; c < 3; c++) {
                        double d = 0;
                        for (int y = 4 * by; y < 4 * by + 4; y++)
                            for (int x = 4 * bx; x < 4 * bx + 4; x++) {
                                size_t p = ((size_t)y * 128 + x) * 3 + c;
                                d += (double)img.data[p] - smp.img.data[p];
                            }
                        mad += fabs(d / 16);
                    }
            mad /= 32.0 * 32 * 3;
            CHECK(mad < 3, "%s: mean |jpeg - drawn| over 4x4 blocks = %.2f", ip, mad);
            asam_image_free(&img);
            asam_synth_sample_free(&smp);
        }
    }
    printf("%d masks decoded and matched\n", checked);

    /* ---- each shift shows in its statistic; val and test do not ---- */
    asam_world_stats st[ASAM_WORLD_N_SETS];
    for (int s = 0; s < ASAM_WORLD_N_SETS; s++) {
        CHECK(asam_world_set_stats(s, 30, 128, 9, &st[s]) == 0, "stats: %s", asam_last_error());
        printf("%-18s luma %6.1f sat %5.1f lap %5.1f obj-lap %5.1f light %5.1f masks %4.2f area "
               "%.3f fill %.2f\n",
               asam_world_set_name(s), st[s].luma, st[s].saturation, st[s].hf, st[s].object_hf,
               st[s].light_spread, st[s].masks_per_img, st[s].mask_area, st[s].box_fill);
    }
    const asam_world_stats *t = &st[ASAM_WORLD_TRAIN], *v = &st[ASAM_WORLD_VAL];
    CHECK(fabs(v->luma - t->luma) < 10 && fabs(v->masks_per_img - t->masks_per_img) < 0.7 &&
              fabs(v->box_fill - t->box_fill) < 0.05 && fabs(v->object_hf - t->object_hf) < 4,
          "val is not the training distribution");
    const asam_world_stats *te = &st[ASAM_WORLD_TEST];
    CHECK(fabs(te->luma - t->luma) < 10 && fabs(te->masks_per_img - t->masks_per_img) < 0.7 &&
              fabs(te->box_fill - t->box_fill) < 0.05 && fabs(te->object_hf - t->object_hf) < 4,
          "test is not the training distribution");
    CHECK(st[ASAM_WORLD_TEXTURE].object_hf > 2 * t->object_hf, "texture: object texture");
    CHECK(st[ASAM_WORLD_PALETTE].luma > t->luma + 50, "palette: brightness");
    CHECK(st[ASAM_WORLD_LIGHTING].light_spread > 1.6 * t->light_spread, "lighting: spread");
    CHECK(st[ASAM_WORLD_BLUR_NOISE].hf > 1.3 * t->hf, "blur/noise: high frequencies");
    CHECK(st[ASAM_WORLD_SHAPES].box_fill < t->box_fill - 0.1, "shapes: box fill");
    CHECK(st[ASAM_WORLD_CLUTTER].masks_per_img > t->masks_per_img + 2, "clutter: objects");

    if (!test_failures) test_rm_rf(dir);
    return test_finish("test_world");
}
