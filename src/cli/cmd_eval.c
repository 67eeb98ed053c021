/* asam eval: mIoU and boundary IoU of SAM checkpoints with box prompts, side by side. */
#include "cli/cli_util.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: asam eval --model A.pth [--model B.pth ...] --data NAME=DATASET [--data ...]\n"
    "                 [--protocol asam|sam] [--out table.md] [--json table.json] [--limit N]\n"
    "\n"
    "One box prompt per GT mask (its tight bounds), single-mask output, IoU per mask averaged per\n"
    "image and then over images; boundary IoU with dilation ratio 0.02.\n"
    "  --protocol asam   (default) image and GT boxes at 1024x1024 ignoring the aspect ratio,\n"
    "                    256x256 logits upsampled bilinearly to the GT size, as ASAM's code\n"
    "  --protocol sam    the official SamPredictor path (aspect kept, padding, post-processing)\n"
    "  --dilation X      boundary IoU dilation ratio (0.02)\n"
    "  --quiet           no progress lines\n"
    "Datasets as for 'asam tune' (sa1b:, adv:, coco:, masks:, idmap:); NAME= is optional.\n"
    "The Markdown table is also printed on stdout.\n";

#define fail(...) cli_fail("eval", __VA_ARGS__)

int cmd_eval(int argc, char **argv) {
    asam_eval_opts o;
    asam_eval_defaults(&o);
    o.progress = 1;
    const char *models[64], *names[64], *specs[64];
    char name_buf[64][128];
    int nm = 0, nd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.progress = 0;
            continue;
        }
        if (!v) return fail("%s: missing value (see asam eval --help)", a);
        i++;
        if (!strcmp(a, "--model")) {
            if (nm == 64) return fail("too many --model (64 at most)");
            models[nm++] = v;
        } else if (!strcmp(a, "--data")) {
            if (nd == 64) return fail("too many --data (64 at most)");
            const char *eq = strchr(v, '='), *colon = strchr(v, ':');
            if (eq && (!colon || eq < colon)) {
                snprintf(name_buf[nd], sizeof name_buf[nd], "%.*s", (int)(eq - v), v);
                specs[nd] = eq + 1;
            } else {
                const char *p = colon ? colon + 1 : v, *end = strchr(p, ':');
                const char *base = p;
                for (const char *q = p; *q && (!end || q < end); q++)
                    if (*q == '/' && q[1] && q + 1 != end) base = q + 1;
                snprintf(name_buf[nd], sizeof name_buf[nd], "%.*s",
                         (int)(end ? end - base : (long)strlen(base)), base);
                specs[nd] = v;
            }
            names[nd] = name_buf[nd];
            nd++;
        } else if (!strcmp(a, "--protocol")) {
            if (!strcmp(v, "asam"))
                o.protocol = ASAM_PROTOCOL_ASAM;
            else if (!strcmp(v, "sam"))
                o.protocol = ASAM_PROTOCOL_SAM;
            else
                return fail("--protocol: expected asam or sam, got '%s'", v);
        } else if (!strcmp(a, "--out"))
            o.md_path = v;
        else if (!strcmp(a, "--json"))
            o.json_path = v;
        else if (!strcmp(a, "--dilation")) {
            float f;
            if (asam_parse_fraction(v, &f) || !(f > 0))
                return fail("--dilation: expected a positive number, got '%s'", v);
            o.dilation_ratio = f;
        } else if (!strcmp(a, "--limit")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1)
                return fail("--limit: expected a positive integer, got '%s'", v);
            o.limit = (int)n;
        } else
            return fail("unknown option '%s' (see asam eval --help)", a);
    }
    if (!nm || !nd) return fail("--model and --data are required (see asam eval --help)");
    o.models = models;
    o.n_models = nm;
    o.names = names;
    o.specs = specs;
    o.n_data = nd;
    asam_eval_cell *cells = calloc((size_t)(nm * nd), sizeof *cells);
    if (!cells) return fail("out of memory");
    int rc = asam_eval_run(&o, cells);
    if (rc) {
        free(cells);
        return fail("%s", asam_last_error());
    }
    asam_eval_write_md(&o, cells, stdout);
    free(cells);
    return 0;
}
