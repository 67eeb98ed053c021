/* asam bench amg: seconds per image of "segment everything" (the automatic mask generator at
 * the official defaults: 32 x 32 points, batches of 64) with SAM ViT-B. Random ViT-B weights
 * unless --model is given; --write-model saves them (official .pth layout) so the official
 * PyTorch generator can run on the very same weights (scripts/bench_amg.sh alternates the
 * two). */
#include "cli/bench_util.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/error.h"
#include "asam/image.h"
#include "asam/sam.h"
#include "asam/sam_amg.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model_path, *image_path, *write_model;
    int iters, points_per_side;
    uint64_t seed;
} bench_amg_args;

static int parse_args(bench_amg_args *a, int argc, char **argv) {
    *a = (bench_amg_args){.iters = 1, .points_per_side = 32, .seed = 1};
    const cli_opt opts[] = {
        {"--image", OPT_STR, &a->image_path, "FILE", "the image (JPEG/PNG)", .required = 1},
        {"--model", OPT_STR, &a->model_path, "FILE",
         "SAM checkpoint (default: random ViT-B weights)"},
        {"--seed", OPT_U64, &a->seed, "N", "seed of the random ViT-B weights"},
        {"--write-model", OPT_STR, &a->write_model, "FILE.pth",
         "save the random ViT-B weights (for the PyTorch peer)"},
        {"--iters", OPT_INT, &a->iters, "N", "generator runs (each is reported)", 0, 1000},
        {"--points-per-side", OPT_INT, &a->points_per_side, "N", "point grid", 1, 1024},
    };
    const cli_spec spec = {"bench amg",
                           "--image FILE [--model FILE | --seed N] [--write-model FILE.pth]",
                           "Segment everything (official defaults) with SAM ViT-B: seconds "
                           "per image.\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    return cli_parse(&spec, argc, argv);
}

int bench_amg_main(int argc, char **argv) {
    bench_amg_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_sam *m = NULL;
    asam_image img = {0};
    if (a.model_path) {
        rc = asam_sam_load_frozen(a.model_path, &m);
    } else {
        asam_sam_config cfg;
        rc = asam_sam_config_preset("vit_b", &cfg) || asam_sam_init_random(&cfg, a.seed, &m);
        if (!rc && a.write_model) rc = asam_sam_save(m, a.write_model);
    }
    if (!rc) rc = asam_image_read(a.image_path, 3, &img);
    asam_amg_options o;
    asam_amg_options_default(&o);
    o.points_per_side = a.points_per_side;
    for (int i = 0; !rc && i < a.iters; i++) {
        asam_amg_result res;
        double t = asam_now_s();
        rc = asam_amg_generate(m, &img, &o, NULL, NULL, &res);
        double sec = asam_now_s() - t;
        if (rc) break;
        char what[96], note[96];
        snprintf(what, sizeof what, "amg %s %dx%d points, %dx%d image", m->cfg.variant,
                 a.points_per_side, a.points_per_side, img.w, img.h);
        snprintf(note, sizeof note, "%zu masks", res.n);
        bench_row(what, sec, 0, note);
        asam_amg_result_free(&res);
    }
    asam_image_free(&img);
    asam_sam_free(m);
    if (rc) return cli_fail("bench amg", "%s", asam_last_error());
    return 0;
}
