/* asam reconstruct: VAE round trip of an image, or (--invert) DDIM inversion of its latent
 * (ASAM's convention: steps_offset 0, guidance 1 on the prompt, ControlNet on when given)
 * followed by regeneration from the inverted x_T. */
#include "asam/engine.h"
#include "asam/checkpoint.h"

#include "asam/error.h"
#include "asam/image.h"
#include "asam/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: asam reconstruct --sd FILE|DIR --image IN --out OUT [options]\n"
               "  --sd FILE|DIR        CompVis single file or diffusers folder\n"
               "  --image IN           input image (JPEG/PNG), resized to --size x --size\n"
               "  --invert             DDIM inversion + regeneration instead of a VAE round trip\n"
               "  --prompt TEXT        prompt for inversion and regeneration (default \"\")\n"
               "  --negative TEXT      unconditional prompt when --cfg != 1 (default \"\")\n"
               "  --controlnet FILE    ControlNet used in both directions, with --control IMAGE\n"
               "  --control IMAGE      control image ([0,1], resized to the output size)\n"
               "  --control-scale S    ControlNet conditioning scale (default 1)\n"
               "  --steps N            DDIM steps (default 50)\n"
               "  --cfg W              guidance of the regeneration (default 1: as inverted)\n"
               "  --size N             working size, a multiple of 64 (default 512)\n"
               "  --tokenizer DIR      vocab.json + merges.txt\n"
               "  --out OUT            output .png (or .jpg)\n");
}

static int fail(const char *msg) {
    fprintf(stderr, "asam reconstruct: %s\n", msg);
    return 1;
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "asam reconstruct: %s: expected a number in [%g, %g], got '%s'\n", flag, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_reconstruct(int argc, char **argv) {
    const char *sd_path = NULL, *image = NULL, *prompt = "", *negative = "", *cn_path = NULL;
    const char *control = NULL, *out = NULL, *tok_dir = NULL;
    double steps = 50, cfg = 1, size = 512, cscale = 1;
    int invert = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--invert")) {
            invert = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "asam reconstruct: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--sd"))
            sd_path = v;
        else if (!strcmp(a, "--image"))
            image = v;
        else if (!strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "--negative"))
            negative = v;
        else if (!strcmp(a, "--controlnet"))
            cn_path = v;
        else if (!strcmp(a, "--control"))
            control = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--tokenizer"))
            tok_dir = v;
        else if (!strcmp(a, "--control-scale"))
            rc = parse_num(a, v, 0, 100, &cscale);
        else if (!strcmp(a, "--steps"))
            rc = parse_num(a, v, 1, 1000, &steps);
        else if (!strcmp(a, "--cfg"))
            rc = parse_num(a, v, 0, 100, &cfg);
        else if (!strcmp(a, "--size"))
            rc = parse_num(a, v, 64, 8192, &size);
        else {
            fprintf(stderr, "asam reconstruct: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (rc) return 2;
    }
    if (!sd_path || !image || !out) {
        fprintf(stderr, "asam reconstruct: --sd, --image and --out are required (see --help)\n");
        return 2;
    }
    if (!cn_path != !control) return fail("--controlnet and --control go together");
    if (cn_path && !invert) return fail("--controlnet only applies with --invert");
    if ((int)size % 64 || size != (int)size) return fail("--size must be a multiple of 64");
    if (steps != (int)steps) return fail("--steps takes an integer");
    const int S = (int)size;
    asam_ddim sched;
    if (asam_ddim_init(&sched, (int)steps, 0)) return fail("bad --steps");

    asam_image in = {0}, cimg = {0}, res = {0};
    if (asam_image_read(image, 3, &in) || (control && asam_image_read(control, 3, &cimg))) {
        asam_image_free(&in);
        return fail(asam_last_error());
    }
    int ret = 1;
    asam_sd *sd = NULL;
    asam_controlnet *cn = NULL;
    asam_ctx *ctx = NULL;
    if (asam_sd_load(sd_path, tok_dir, &sd) ||
        (cn_path && asam_sd_controlnet_open(cn_path, sd->unet, &cn))) {
        fail(asam_last_error());
        goto done;
    }
    ctx = asam_ctx_new(0);
    if (!ctx) {
        fail("out of memory");
        goto done;
    }
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = asam_sd_image_to_tensor(ctx, &in, S, S, -1.0f);
    asam_tensor *z = asam_scale(ctx, asam_vae_encode(ctx, sd->vae, x), ASAM_SD_LATENT_SCALE);
    if (invert && asam_ctx_ok(ctx)) {
        asam_sd_guide g = {.unet = sd->unet,
                           .controlnet = cn,
                           .hint = cn ? asam_sd_image_to_tensor(ctx, &cimg, S, S, 0.0f) : NULL,
                           .control_scale = (float)cscale,
                           .cond = asam_sd_encode_prompt(ctx, sd, prompt),
                           .guidance = 1.0f,
                           .batch_cfg = 1};
        asam_sd_progress_state ps;
        asam_sd_progress_start(&ps, "asam reconstruct: invert", &sched, 1);
        asam_tensor *xT = asam_ddim_invert(ctx, &g, &sched, z, NULL, asam_sd_progress_stderr, &ps);
        if (cfg != 1.0) g.uncond = asam_sd_encode_prompt(ctx, sd, negative);
        g.guidance = (float)cfg;
        asam_sd_progress_start(&ps, "asam reconstruct: sample", &sched, 0);
        z = xT && asam_ctx_ok(ctx)
                ? asam_ddim_sample(ctx, &g, &sched, xT, asam_sd_progress_stderr, &ps)
                : NULL;
    }
    asam_tensor *dec =
        z ? asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE)) : NULL;
    if (!dec || !asam_ctx_ok(ctx)) {
        fail(asam_ctx_ok(ctx) ? "reconstruction failed" : asam_ctx_error(ctx));
        goto done;
    }
    if (asam_sd_tensor_to_image(dec, &res) || asam_sd_write_image(out, &res)) {
        fail(asam_last_error());
        goto done;
    }
    printf("wrote %s (%dx%d, %s)\n", out, S, S,
           invert ? "DDIM inversion + regeneration" : "VAE round trip");
    ret = 0;
done:
    asam_image_free(&in);
    asam_image_free(&cimg);
    asam_image_free(&res);
    asam_ctx_free(ctx);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
    return ret;
}
