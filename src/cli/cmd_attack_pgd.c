/* asam attack-pgd: the pixel-space PGD baseline dataset (adversarial PNGs in the adv: layout).
 * parse (option table) -> run (asam_pgd_run writes one PNG per image). */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdio.h>

static int parse_args(asam_pgd_opts *o, int argc, char **argv) {
    asam_pgd_defaults(o);
    int quiet = 0;
    const cli_opt opts[] = {
        {"--model", OPT_STR, &o->model_path, "SAM.pth", "the attacked SAM", .required = 1},
        {"--data", OPT_STR, &o->data, "DATASET", "images and masks (as for 'asam tune')",
         .required = 1},
        {"--out", OPT_STR, &o->out_dir, "ADVDIR", "output folder", .required = 1},
        {"--eps", OPT_FLOAT, &o->eps, "X", "L-inf radius, pixel values in [0,1] (e.g. 8/255)", 0,
         1e30},
        {"--step", OPT_FLOAT, &o->step, "X", "step size (e.g. 2/255)", 0, 1e30},
        {"--iters", OPT_INT, &o->iters, "N", "iterations", 0, 100000},
        {"--max-masks", OPT_INT, &o->max_masks, "N", "GT boxes per image (0 = all)", 0, 1 << 20},
        {"--limit", OPT_INT, &o->limit, "N", "first N images only", 1, 1 << 30, .no_default = 1},
        {"--force", OPT_FLAG, &o->force, NULL,
         "ADVDIR made with other options: redo every image (else refuse)"},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress lines"},
    };
    const cli_spec spec = {
        "attack-pgd",
        "--model SAM.pth --data DATASET --out ADVDIR [options]",
        "L-inf PGD on the pixels against SAM, maximising BCE + Dice of its GT-box-prompted masks.\n"
        "Writes ADVDIR/STEM.png per image (atomic; images already there are skipped), so that\n"
        "'asam tune --data adv:ADVDIR:SA1BDIR' tunes on them with the original annotations.\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    o->progress = !quiet;
    return rc;
}

int cmd_attack_pgd(int argc, char **argv) {
    asam_pgd_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (asam_pgd_run(&o)) return cli_fail("attack-pgd", "%s", asam_last_error());
    return 0;
}
