/* asam segment --everything: SAM's automatic mask generator over an image or a folder; one
 * SA-1B annotation JSON + overlay per image, resumable (src/asam/segment_everything.c). */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/error.h"
#include "asam/sam.h"
#include "asam/segment_everything.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *model_path, *input, *out_dir;
    int everything;
    asam_everything_opts o;
} everything_args;

static int parse_args(everything_args *a, int argc, char **argv) {
    asam_amg_options *g = &a->o.amg;
    const cli_opt opts[] = {
        {"--everything", OPT_FLAG, &a->everything, NULL,
         "segment everything (automatic mask generation)", .required = 1},
        {"--model", OPT_STR, &a->model_path, "FILE", "SAM ViT-B/L/H (official .pth or safetensors)",
         .required = 1},
        {"--image", OPT_STR, &a->input, "FILE|DIR",
         "an image, or a folder of .jpg/.jpeg/.png images", .required = 1},
        {"--out", OPT_STR, &a->out_dir, "DIR",
         "output folder: STEM.json (SA-1B), the image (linked),\n"
         "overlays/STEM.png; a dataset for generate / tune / eval as sa1b:DIR",
         .required = 1},
        {"--points-per-side", OPT_INT, &g->points_per_side, "N", "point grid N x N", 1, 1024},
        {"--points-per-batch", OPT_INT, &g->points_per_batch, "N",
         "points decoded together (speed / memory only)", 1, 4096},
        {"--pred-iou-thresh", OPT_DOUBLE, &g->pred_iou_thresh, "X",
         "keep masks with predicted IoU above X (<= 0: off)", -1e9, 1e9},
        {"--stability-score-thresh", OPT_DOUBLE, &g->stability_score_thresh, "X",
         "keep masks with stability score >= X (<= 0: off)", -1e9, 1e9},
        {"--stability-score-offset", OPT_DOUBLE, &g->stability_score_offset, "X",
         "logit offset of the stability score", 0, 1e9},
        {"--box-nms-thresh", OPT_DOUBLE, &g->box_nms_thresh, "X",
         "box IoU above which a duplicate is dropped", 0, 1},
        {"--crop-n-layers", OPT_INT, &g->crop_n_layers, "N",
         "also run on crops: layer i has 4^i crops", 0, 4},
        {"--crop-nms-thresh", OPT_DOUBLE, &g->crop_nms_thresh, "X",
         "box IoU for duplicates across crops", 0, 1},
        {"--crop-overlap-ratio", OPT_DOUBLE, &g->crop_overlap_ratio, "X",
         "crop overlap, a fraction of the short side", 0, 0.999},
        {"--crop-n-points-downscale-factor", OPT_INT, &g->crop_n_points_downscale_factor, "N",
         "points per side in layer i divided by N^i", 1, 1024},
        {"--min-mask-region-area", OPT_INT, &g->min_mask_region_area, "PX",
         "remove holes and islands smaller than PX pixels (0: none)", 0, 1e9},
        {"--redo", OPT_FLAG, &a->o.redo, NULL,
         "recompute images whose JSON was made with other options\n"
         "(without it such a folder is refused)"},
        {"--no-overlay", OPT_FLAG, &a->o.no_overlay, NULL, "do not write overlays/STEM.png"},
        {"--quiet", OPT_FLAG, &a->o.quiet, NULL, "no progress lines"},
    };
    const cli_spec spec = {
        "segment --everything",
        "--model FILE --image FILE|DIR --out DIR [options]",
        "Segment everything, as the official SamAutomaticMaskGenerator: a grid of point\n"
        "prompts (3 masks each), filtered by predicted IoU and stability, box NMS, optional\n"
        "crops and hole/island removal. One SA-1B annotation JSON per image. Finished images\n"
        "are skipped on a rerun; each output is written atomically.\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        "The defaults are the official ones. The JSON records a hash of the options that\n"
        "change results and of the model file.\n"};
    return cli_parse(&spec, argc, argv);
}

int cmd_segment_everything(int argc, char **argv) {
    everything_args a = {0};
    asam_amg_options_default(&a.o.amg);
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    a.o.model_path = a.model_path;
    asam_sam *m = NULL;
    asam_everything_stats st;
    rc = asam_sam_load_frozen(a.model_path, &m) ||
         asam_segment_everything(m, a.input, a.out_dir, &a.o, &st);
    asam_sam_free(m);
    if (rc) return cli_fail("segment", "%s", asam_last_error());
    if (!a.o.quiet)
        fprintf(stderr, "segment: %d images (%d done now, %d already done), %lld masks, %.1f s\n",
                st.n_images, st.n_done, st.n_skipped, st.n_masks, st.seconds);
    return 0;
}
