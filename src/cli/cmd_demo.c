/* asam demo: the ASAM pipeline end to end on a built-in default, in a few minutes on 2 cores.
 *
 *   models   the miniature world's models, trained by asam itself and installed with it
 *            (share/asam/models/world: SAM-mini, SD-mini with CLIP-mini, the mask ControlNet;
 *            data/world/README.md in the sources), read in place
 *   data     a few scenes of the world (asam world, the seed the models were trained with):
 *            training images and, per held-out set, as many evaluation images (OUT/world)
 *   generate DDIM + null-text inversion and the MI-FGSM latent attack against SAM (OUT/gen)
 *   tune     SAM's output tokens on the adversarial images with the original masks (OUT/tune)
 *   eval     original vs tuned SAM on the test split and the six shifted sets (OUT/eval)
 *   report   OUT/report.md with SVG charts and PNG panels in OUT/report/, and the last full
 *            experiment's table (scripts/experiment.sh) when it is installed
 * Every stage keeps its outputs; a rerun skips what is finished. */
#include "cli/cli_util.h"
#include "cli/demo.h"
#include "cli/options.h"
#include "asam/error.h"
#include "asam/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Options; 0 in a count means "the default for --quick or not". */
static int parse_args(demo *d, int argc, char **argv) {
    snprintf(d->out, sizeof d->out, "asam_demo");
    demo_default_assets(d->assets, sizeof d->assets);
    const char *out = NULL, *assets = NULL;
    int images = 0, heldout = 0, steps = 0, iters = 0, epochs = 0;
    const cli_opt opts[] = {
        {"--out", OPT_STR, &out, "DIR", "output folder (default asam_demo)"},
        {"--images", OPT_INT, &images, "N", "training images (default 4; --quick: 1)", 1, 10000},
        {"--heldout", OPT_INT, &heldout, "N",
         "evaluation images per held-out set (default: as --images)", 1, 10000},
        {"--quick", OPT_FLAG, &d->quick, NULL,
         "one image, fewer steps and epochs (under a minute; for tests)"},
        {"--steps", OPT_INT, &steps, "N", "DDIM steps (default 10; --quick 3)", 1, 10000},
        {"--iters", OPT_INT, &iters, "N", "attack iterations (default 5; --quick 2)", 1, 10000},
        {"--epochs", OPT_INT, &epochs, "N", "tuning epochs (default 20; --quick 3)", 1, 10000},
        {"--assets", OPT_STR, &assets, "DIR",
         "folder holding world/ (the trained models; default: the installed\nshare/asam/models)"},
    };
    const cli_spec spec = {
        "demo",
        "[--out DIR] [--images N] [--quick] [--assets DIR]",
        "Runs ASAM end to end on scenes of the miniature world with its trained models\n"
        "(SAM-mini, SD-mini, mask ControlNet): generate (invert + attack) -> tune -> eval,\n"
        "then writes DIR/report.md with charts and panels in DIR/report/. A rerun skips\n"
        "finished stages.\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return rc;
    if (out) snprintf(d->out, sizeof d->out, "%s", out);
    if (assets) snprintf(d->assets, sizeof d->assets, "%s", assets);
    d->images = images ? images : d->quick ? 1 : 4;
    d->heldout_n = heldout ? heldout : d->images;
    d->steps = steps ? steps : d->quick ? 3 : 10;
    d->null_steps = d->quick ? 1 : 5;
    d->iters = iters ? iters : d->quick ? 2 : 5;
    d->epochs = epochs ? epochs : d->quick ? 3 : 20;
    if (d->epochs > 256) d->epochs = 256;
    return CLI_OK;
}

/* Paths under OUT, and OUT/demo_config.txt: finished stages are only reusable with the same
 * settings, so a folder made with other ones is refused. */
static int setup_out(demo *d) {
    snprintf(d->sam, sizeof d->sam, "%s/world/sam_mini.safetensors", d->assets);
    snprintf(d->sd, sizeof d->sd, "%s/world/sd", d->assets);
    snprintf(d->cn, sizeof d->cn, "%s/world/controlnet.safetensors", d->assets);
    snprintf(d->experiment, sizeof d->experiment, "%s/world/experiment", d->assets);
    snprintf(d->world, sizeof d->world, "%s/world", d->out);
    snprintf(d->train, sizeof d->train, "%s/world/train", d->out);
    snprintf(d->gen, sizeof d->gen, "%s/gen", d->out);
    snprintf(d->tune, sizeof d->tune, "%s/tune", d->out);
    snprintf(d->tuned, sizeof d->tuned, "%s/tune/sam_tuned.pth", d->out);
    snprintf(d->eval, sizeof d->eval, "%s/eval", d->out);
    if (asam_mkdirs(d->out)) return -1;
    char cfg_path[2400], cfg[256];
    snprintf(cfg_path, sizeof cfg_path, "%s/demo_config.txt", d->out);
    snprintf(cfg, sizeof cfg, "images %d heldout %d steps %d null_steps %d iters %d epochs %d\n",
             d->images, d->heldout_n, d->steps, d->null_steps, d->iters, d->epochs);
    if (!asam_file_exists(cfg_path)) return asam_write_file_atomic(cfg_path, cfg, strlen(cfg));
    char *old = NULL;
    size_t n = 0;
    int rc = 0;
    if (asam_read_file(cfg_path, &old, &n) == 0 && strcmp(old, cfg) != 0)
        rc = asam_error("%s was made with other settings (%.*s); use another --out or remove it",
                        d->out, (int)(n && old[n - 1] == '\n' ? n - 1 : n), old);
    free(old);
    return rc;
}

/* Each stage needs the previous ones; a failed stage leaves the later ones out (listed in the
 * report) and the report is still written. Returns 1 when every stage succeeded. */
static int run_stages(demo *d) {
    int ok =
        stage_models(d) == 0 && stage_data(d) == 0 && stage_generate(d) == 0 && stage_tune(d) == 0;
    if (ok) ok = stage_eval(d) == 0;
    const char *all[5] = {"models", "data", "generate (invert + attack)", "tune (output tokens)",
                          "eval (original vs tuned SAM)"}; /* the names the stages give */
    for (int i = d->n_st; i < 5; i++) {
        stage *s = &d->st[d->n_st++];
        s->name = all[i];
        snprintf(s->status, sizeof s->status, "not run (an earlier stage failed)");
    }
    return ok;
}

int cmd_demo(int argc, char **argv) {
    static demo d; // large; one per process
    memset(&d, 0, sizeof d);
    int rc = parse_args(&d, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (setup_out(&d)) return cli_fail("demo", "%s", asam_last_error());
    const double t0 = asam_now_s();
    int ok = run_stages(&d);
    int rep = stage_report(&d);
    fprintf(stderr, "asam demo: %s in %.1f s; report: %s/report.md\n",
            ok && rep == 0 ? "finished" : "FAILED", asam_now_s() - t0, d.out);
    if (!ok || rep) {
        for (int i = 0; i < d.n_st; i++)
            if (!d.st[i].ok && strncmp(d.st[i].status, "not run", 7))
                fprintf(stderr, "asam demo: %s: %s\n", d.st[i].name, d.st[i].status);
        return 1;
    }
    return 0;
}
