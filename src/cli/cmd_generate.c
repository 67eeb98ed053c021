/* asam generate / invert / attack: the ASAM generator over SA-1B images (see asam/generator.h).
 * The three commands share one option parser (gen_cli_main); invert and attack are generate
 * restricted to one half. */
#include "asam/error.h"
#include "asam/generator.h"
#include "cli/commands.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gen_cli_main(const char *cmd, int mode, int argc, char **argv);

static void usage(const char *cmd, FILE *f) {
    fprintf(f,
            "usage: asam %s --sd FILE|DIR [--controlnet FILE] %s--out DIR\n"
            "       (--data sa1b:DIR | IMAGE...)  [options]\n"
            "  IMAGE: sa_N.jpg with its annotations sa_N.json beside it\n"
            "  --captions FILE     JSON lines {\"img\": \"sa_1.jpg\", \"prompt\": \"...\"}\n"
            "  --steps 50 --cfg 7.5 --control-scale 1 --size 512\n"
            "  --null-steps 10 --null-lr 0.01\n"
            "  --iters 10 --alpha 0.02 --eps 0.2 --max-boxes 140 --grad skip|full\n"
            "  --shard I/N --limit N -v (progress of every step)\n"
            "outputs: OUT/inv/STEM.safetensors, OUT/adv/STEM.png, OUT/adv/STEM.attack.json,\n"
            "         OUT/summary.json; finished outputs are skipped (resumable)\n",
            cmd, strcmp(cmd, "invert") ? "--sam FILE " : "");
}

static int num_arg(const char *cmd, const char *opt, const char *v, double lo, double hi,
                   double *out) {
    char *e;
    double x = v ? strtod(v, &e) : 0;
    if (!v || *e || !(x >= lo && x <= hi)) {
        fprintf(stderr, "asam %s: %s needs a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int gen_cli_main(const char *cmd, int mode, int argc, char **argv) {
    asam_gen_opts o;
    asam_gen_opts_default(&o);
    asam_generate_cfg cfg = {.mode = mode, .n_shards = 1};
    const char *sd = NULL, *cn = NULL, *sam = NULL;
    const char **images = calloc((size_t)argc + 1, sizeof *images);
    int n_images = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
#define NUM(name, lo, hi, dst)                                                                     \
    if (!strcmp(a, name)) {                                                                        \
        if (num_arg(cmd, name, v, lo, hi, &x)) goto bad;                                           \
        dst = x;                                                                                   \
        i++;                                                                                       \
        continue;                                                                                  \
    }
#define STR(name, dst)                                                                             \
    if (!strcmp(a, name)) {                                                                        \
        if (!v) {                                                                                  \
            fprintf(stderr, "asam %s: %s needs a value\n", cmd, name);                             \
            goto bad;                                                                              \
        }                                                                                          \
        dst = v;                                                                                   \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(cmd, stdout);
            free(images);
            return 0;
        }
        STR("--sd", sd);
        STR("--controlnet", cn);
        STR("--sam", sam);
        STR("--captions", cfg.captions);
        STR("--out", cfg.out);
        STR("--data", cfg.data);
        NUM("--steps", 1, 1000, o.steps);
        NUM("--cfg", 0, 100, o.cfg);
        NUM("--control-scale", 0, 100, o.control_scale);
        NUM("--size", 8, 4096, o.size);
        NUM("--null-steps", 0, 10000, o.null_steps);
        NUM("--null-lr", 0, 100, o.null_lr);
        NUM("--iters", 0, 10000, o.iters);
        NUM("--alpha", 0, 100, o.alpha);
        NUM("--eps", 0, 100, o.eps);
        NUM("--max-boxes", 1, 100000, o.max_boxes);
        NUM("--limit", 0, 1e9, cfg.limit);
        if (!strcmp(a, "--grad")) {
            if (v && !strcmp(v, "skip"))
                o.grad = ASAM_GRAD_SKIP;
            else if (v && !strcmp(v, "full"))
                o.grad = ASAM_GRAD_FULL;
            else {
                fprintf(stderr, "asam %s: --grad takes skip or full\n", cmd);
                goto bad;
            }
            i++;
            continue;
        }
        if (!strcmp(a, "--shard")) {
            int s, n;
            char tail;
            if (!v || sscanf(v, "%d/%d%c", &s, &n, &tail) != 2 || n < 1 || s < 0 || s >= n) {
                fprintf(stderr, "asam %s: --shard takes I/N with 0 <= I < N\n", cmd);
                goto bad;
            }
            cfg.shard = s, cfg.n_shards = n;
            i++;
            continue;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose++;
            continue;
        }
        if (a[0] == '-') {
            fprintf(stderr, "asam %s: unknown option %s (see --help)\n", cmd, a);
            goto bad;
        }
        images[n_images++] = a;
    }
    if (!sd || !cfg.out || (!cfg.data && !n_images) || ((mode & ASAM_GEN_ATTACK) && !sam)) {
        usage(cmd, stderr);
        goto bad;
    }
    if (o.size % 8) {
        fprintf(stderr, "asam %s: --size must be a multiple of 8\n", cmd);
        goto bad;
    }
    asam_gen_models m;
    if (asam_gen_models_load(sd, cn, (mode & ASAM_GEN_ATTACK) ? sam : NULL, &m)) {
        fprintf(stderr, "asam %s: %s\n", cmd, asam_last_error());
        goto bad;
    }
    int rc = 0;
    if (cfg.data) {
        asam_generate_stats st;
        rc = asam_generate(&m, &o, &cfg, &st);
        if (rc < 0)
            fprintf(stderr, "asam %s: %s\n", cmd, asam_last_error());
        else if (rc == 1)
            fprintf(stderr, "asam %s: stopped after %d new images (test hook)\n", cmd,
                    st.done - st.skipped);
        rc = rc < 0 ? 1 : (rc == 1 ? 3 : 0);
    } else {
        asam_captions *caps = NULL;
        if (cfg.captions && asam_captions_load(cfg.captions, &caps)) {
            fprintf(stderr, "asam %s: %s\n", cmd, asam_last_error());
            rc = 1;
        }
        for (int k = 0; k < n_images && !rc; k++) {
            char ann[4096];
            const char *dot = strrchr(images[k], '.'), *sl = strrchr(images[k], '/');
            int stem_len =
                dot && (!sl || dot > sl) ? (int)(dot - images[k]) : (int)strlen(images[k]);
            snprintf(ann, sizeof ann, "%.*s.json", stem_len, images[k]);
            float b, a;
            if (asam_generate_image(&m, &o, images[k], ann,
                                    asam_captions_get(caps, sl ? sl + 1 : images[k]), cfg.out, mode,
                                    &b, &a, NULL)) {
                fprintf(stderr, "asam %s: %s\n", cmd, asam_last_error());
                rc = 1;
            } else if (!isnan(b)) {
                fprintf(stderr, "%s: mean IoU %.4f -> %.4f\n", images[k], b, a);
            }
        }
        asam_captions_free(caps);
    }
    asam_gen_models_free(&m);
    free(images);
    return rc;
bad:
    free(images);
    return 1;
}

int cmd_generate(int argc, char **argv) {
    return gen_cli_main("generate", ASAM_GEN_BOTH, argc, argv);
}
