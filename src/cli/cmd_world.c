/* asam world: write the miniature world's sets (training distribution, validation split and six
 * shifted "unseen" sets) as SA-1B folders; see asam/world.h.
 * parse (option table) -> asam_world_write (atomic, resumable) -> one line per set. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/world.h"

#include <stdio.h>
#include <string.h>

int cmd_world(int argc, char **argv) {
    asam_world_opts o;
    asam_world_opts_default(&o);
    int quiet = 0;
    const cli_opt opts[] = {
        {"--out", OPT_STR, &o.out, "DIR", "output folder: one SA-1B folder per set + world.json",
         .required = 1},
        {"--seed", OPT_U64, &o.seed, "N", "seed of every scene"},
        {"--count", OPT_INT, &o.count, "N", "training images", 1, 1e8},
        {"--eval-count", OPT_INT, &o.eval_count, "N", "images of val, test and each unseen set", 1,
         1e8},
        {"--size", OPT_INT, &o.size, "N", "image side", 32, 1024, .multiple_of = 16},
        {"--force", OPT_FLAG, &o.force, NULL,
         "rewrite sets made with other options (only files this command writes are removed)"},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress line"},
    };
    const cli_spec spec = {
        "world",
        "--out DIR [--seed N] [--count N] [--eval-count N] [--size N]",
        "Sets: train, val, test, unseen_texture, unseen_palette, unseen_lighting,\n"
        "unseen_blur_noise, unseen_shapes, unseen_clutter (see docs/world.md).",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (cli_single_process("world")) return 1;
    if (quiet) o.verbose = 0;
    if (asam_world_write(&o)) return cli_fail("world", "%s", asam_last_error());
    for (int s = 0; s < ASAM_WORLD_N_SETS; s++)
        printf("world: %s/%s: %d images (%s)\n", o.out, asam_world_set_name(s),
               s == ASAM_WORLD_TRAIN ? o.count : o.eval_count, asam_world_set_about(s));
    return 0;
}
