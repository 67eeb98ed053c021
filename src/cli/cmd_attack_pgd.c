/* asam attack-pgd: the pixel-space PGD baseline dataset (adversarial PNGs in the adv: layout). */
#include "cli/cli_util.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: asam attack-pgd --model SAM.pth --data DATASET --out ADVDIR [options]\n"
    "\n"
    "L-inf PGD on the pixels against SAM, maximising BCE + Dice of its GT-box-prompted masks.\n"
    "Writes ADVDIR/STEM.png per image (atomic; images already there are skipped), so that\n"
    "'asam tune --data adv:ADVDIR:SA1BDIR' tunes on them with the original annotations.\n"
    "\n"
    "options:\n"
    "  --eps X        L-inf radius, pixel values in [0,1] (8/255)\n"
    "  --step X       step size (2/255)\n"
    "  --iters N      iterations (10)\n"
    "  --max-masks N  GT boxes per image (140, as ASAM's attack; 0 = all)\n"
    "  --limit N      first N images only\n"
    "  --quiet        no progress lines\n";

#define fail(...) cli_fail("attack-pgd", __VA_ARGS__)

int cmd_attack_pgd(int argc, char **argv) {
    asam_pgd_opts o;
    asam_pgd_defaults(&o);
    o.progress = 1;
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
        if (!v) return fail("%s: missing value (see asam attack-pgd --help)", a);
        i++;
        if (!strcmp(a, "--model"))
            o.model_path = v;
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--out"))
            o.out_dir = v;
        else if (!strcmp(a, "--eps")) {
            if (asam_parse_fraction(v, &o.eps) || o.eps < 0)
                return fail("--eps: expected e.g. 8/255, got '%s'", v);
        } else if (!strcmp(a, "--step")) {
            if (asam_parse_fraction(v, &o.step) || o.step < 0)
                return fail("--step: expected e.g. 2/255, got '%s'", v);
        } else if (!strcmp(a, "--iters")) {
            if (cli_parse_int(v, 0, 100000, &o.iters))
                return fail("--iters: expected an integer >= 0, got '%s'", v);
        } else if (!strcmp(a, "--max-masks")) {
            if (cli_parse_int(v, 0, 1 << 20, &o.max_masks))
                return fail("--max-masks: expected an integer >= 0, got '%s'", v);
        } else if (!strcmp(a, "--limit")) {
            if (cli_parse_int(v, 1, 1 << 30, &o.limit))
                return fail("--limit: expected a positive integer, got '%s'", v);
        } else
            return fail("unknown option '%s' (see asam attack-pgd --help)", a);
    }
    if (!o.model_path || !o.data || !o.out_dir)
        return fail("--model, --data and --out are required (see asam attack-pgd --help)");
    if (asam_pgd_run(&o)) return fail("%s", asam_last_error());
    return 0;
}
