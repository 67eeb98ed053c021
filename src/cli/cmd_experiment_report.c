/* asam experiment-report --dir DIR [--world W]: the world experiment's tables, charts, attack
 * statistics and panels from the files scripts/experiment.sh left in DIR (asam/experiment.h). */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/error.h"
#include "asam/experiment.h"

#include <stdio.h>

int cmd_experiment_report(int argc, char **argv) {
    asam_experiment_opts o = {0};
    o.n_panels = 3;
    const cli_opt opts[] = {
        {"--dir", OPT_STR, &o.dir, "DIR", "the experiment folder", .required = 1},
        {"--world", OPT_STR, &o.world, "W", "the world folder (panels show its train images)"},
        {"--panels", OPT_INT, &o.n_panels, "N", "images in the panels", 0, 8},
        {"--reproduce", OPT_STR, &o.reproduce, "CMD", "command line quoted in the report"},
    };
    const cli_spec spec = {"experiment-report",
                           "--dir DIR [--world W] [--panels N] [--reproduce CMD]",
                           "Reads DIR/eval/seed*.json (asam eval --json, one per tuning seed),\n"
                           "DIR/eval/attacks.json, DIR/*/adv/*.attack.json and DIR/settings.md;\n"
                           "writes DIR/report.md, results.json, miou.svg, attack_iou.svg and\n"
                           "panel_*.png.",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (asam_experiment_report(&o)) return cli_fail("experiment-report", "%s", asam_last_error());
    printf("experiment-report: %s/report.md\n", o.dir);
    return 0;
}
