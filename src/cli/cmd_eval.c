/* asam eval: mIoU and boundary IoU of SAM checkpoints with box prompts, side by side.
 * parse (option table) -> run (asam_eval_run writes the tables) -> print the Markdown table. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 64

typedef struct {
    asam_eval_opts o;
    const char *models[MAX_ITEMS], *data[MAX_ITEMS], *names[MAX_ITEMS];
    const char *tuned[MAX_ITEMS], *baselines[MAX_ITEMS];
    int two_step[MAX_ITEMS];
    char name_buf[MAX_ITEMS][128];
    cli_list model_list, baseline_list, data_list;
    int quiet;
} eval_args;

/* "NAME=SPEC" keeps NAME; a bare spec is named after the last folder of its first path. */
static void dataset_name(const char *v, char *name, size_t n, const char **spec) {
    const char *eq = strchr(v, '='), *colon = strchr(v, ':');
    if (eq && (!colon || eq < colon)) {
        snprintf(name, n, "%.*s", (int)(eq - v), v);
        *spec = eq + 1;
        return;
    }
    const char *p = colon ? colon + 1 : v, *end = strchr(p, ':');
    const char *base = p;
    for (const char *q = p; *q && (!end || q < end); q++)
        if (*q == '/' && q[1] && q + 1 != end) base = q + 1;
    snprintf(name, n, "%.*s", (int)(end ? end - base : (long)strlen(base)), base);
    *spec = v;
}

static int parse_args(eval_args *a, int argc, char **argv) {
    asam_eval_defaults(&a->o);
    a->model_list = (cli_list){a->tuned, 0, MAX_ITEMS};
    a->baseline_list = (cli_list){a->baselines, 0, MAX_ITEMS};
    a->data_list = (cli_list){a->data, 0, MAX_ITEMS};
    const cli_opt opts[] = {
        {"--model", OPT_LIST, &a->model_list, "FILE",
         "SAM or EfficientSAM checkpoint (each with its own\n"
         "pre-processing; EfficientSAM always its official pipeline); repeat\n"
         "to compare several. SAM logits go x4 to 1024, then to the GT size\n"
         "(the official eval of a tuned decoder, main.py:664). A SAM of\n"
         "input side S works at S (1024 -> S, 256 -> S/4 here and below)"},
        {"--baseline", OPT_LIST, &a->baseline_list, "FILE",
         "a model scored as the official --baseline: 256 logits to the GT\n"
         "size in one step (main.py:655); listed before the --model ones"},
        {"--data", OPT_LIST, &a->data_list, "[NAME=]DATASET",
         "dataset (as for 'asam tune': sa1b:, adv:, coco:, masks:, idmap:); repeatable",
         .required = 1},
        {"--protocol", OPT_CHOICE, &a->o.protocol, NULL,
         "asam: image and GT boxes at 1024x1024 ignoring the aspect ratio, 256x256\n"
         "logits upsampled bilinearly to the GT size, as ASAM's code;\n"
         "sam: the official SamPredictor path (aspect kept, padding, post-processing)",
         .choices = "asam|sam"},
        {"--out", OPT_STR, &a->o.md_path, "FILE", "Markdown table"},
        {"--json", OPT_STR, &a->o.json_path, "FILE", "JSON table"},
        {"--dilation", OPT_DOUBLE, &a->o.dilation_ratio, "X", "boundary IoU dilation ratio", 1e-9,
         1},
        {"--limit", OPT_INT, &a->o.limit, "N", "first N images of each dataset", 1, 1 << 30,
         .no_default = 1},
        {"--quiet", OPT_FLAG, &a->quiet, NULL, "no progress lines"},
    };
    const cli_spec spec = {
        "eval",
        "--model A.pth [--model B.pth ...] --data NAME=DATASET [--data ...] [options]",
        "One box prompt per GT mask (its tight bounds), single-mask output, IoU per mask averaged\n"
        "per image and then over images; boundary IoU with dilation ratio 0.02.\n",
        opts,
        CLI_NOPTS(opts),
        NULL,
        "The Markdown table is also printed on stdout.\n"};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return rc;
    int nm = 0;
    for (int i = 0; i < a->baseline_list.n; i++)
        a->two_step[nm] = 0, a->models[nm++] = a->baselines[i];
    for (int i = 0; i < a->model_list.n && nm < MAX_ITEMS; i++)
        a->two_step[nm] = 1, a->models[nm++] = a->tuned[i];
    if (nm == 0) {
        fprintf(stderr, "asam eval: --model or --baseline is required (see asam eval --help)\n");
        return CLI_USAGE;
    }
    for (int d = 0; d < a->data_list.n; d++) {
        dataset_name(a->data[d], a->name_buf[d], sizeof a->name_buf[d], &a->data[d]);
        a->names[d] = a->name_buf[d];
    }
    a->o.progress = !a->quiet;
    a->o.models = a->models;
    a->o.n_models = nm;
    a->o.two_step = a->two_step;
    a->o.names = a->names;
    a->o.specs = a->data;
    a->o.n_data = a->data_list.n;
    return CLI_OK;
}

int cmd_eval(int argc, char **argv) {
    eval_args a = {0};
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_eval_cell *cells = calloc((size_t)(a.o.n_models * a.o.n_data), sizeof *cells);
    if (!cells) return cli_fail("eval", "out of memory");
    if (asam_eval_run(&a.o, cells)) {
        free(cells);
        return cli_fail("eval", "%s", asam_last_error());
    }
    if (asam_dist_rank() == 0) asam_eval_write_md(&a.o, cells, stdout); /* one table per job */
    free(cells);
    return 0;
}
