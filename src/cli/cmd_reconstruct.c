/* asam reconstruct: VAE round trip of an image, or (--invert) DDIM inversion of its latent
 * (ASAM's convention: steps_offset 0, guidance 1 on the prompt, ControlNet on when given)
 * followed by regeneration from the inverted x_T. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "cli/sd_options.h"
#include "asam/engine.h"
#include "asam/checkpoint.h"

#include "asam/error.h"
#include "asam/image.h"
#include "asam/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sd_cli_common c;
    const char *image, *prompt;
    int invert;
    double cfg;
} recon_args;

static int parse_args(recon_args *a, int argc, char **argv) {
    *a = (recon_args){.c = SD_CLI_DEFAULTS, .prompt = "", .cfg = 1};
    const cli_opt opts[] = {
        SD_CLI_OPTS(&a->c),
        {"--image", OPT_STR, &a->image, "IN", "input image (JPEG/PNG), resized to --size x --size",
         .required = 1},
        {"--invert", OPT_FLAG, &a->invert, NULL,
         "DDIM inversion + regeneration instead of a VAE round trip;\n"
         "the ControlNet, when given, is used in both directions"},
        {"--prompt", OPT_STR, &a->prompt, "TEXT", "prompt for inversion and regeneration"},
        {"--cfg", OPT_DOUBLE, &a->cfg, "W", "guidance of the regeneration (1: as inverted)", 0,
         100},
    };
    const cli_spec spec = {"reconstruct",
                           "--sd FILE|DIR --image IN --out OUT [options]",
                           "VAE round trip of an image, or (--invert) DDIM inversion with ASAM's\n"
                           "convention followed by regeneration from the inverted x_T.\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (!rc) rc = sd_cli_check("reconstruct", &a->c);
    if (!rc && a->c.cn_path && !a->invert) {
        fprintf(stderr, "asam reconstruct: --controlnet only applies with --invert\n");
        return CLI_USAGE;
    }
    return rc;
}

typedef struct {
    asam_image in, cimg, res;
    asam_sd *sd;
    asam_controlnet *cn;
    asam_ctx *ctx;
} recon_run;

/* z (the VAE latent of the input) -> DDIM inversion -> DDIM sampling from the inverted x_T. */
static asam_tensor *invert_and_sample(const recon_args *a, const asam_ddim *sched, recon_run *r,
                                      asam_tensor *z) {
    asam_ctx *ctx = r->ctx;
    const int S = a->c.size;
    asam_sd_guide g = {.unet = r->sd->unet,
                       .controlnet = r->cn,
                       .hint = r->cn ? asam_sd_image_to_tensor(ctx, &r->cimg, S, S, 0.0f) : NULL,
                       .control_scale = (float)a->c.cscale,
                       .cond = asam_sd_encode_prompt(ctx, r->sd, a->prompt),
                       .guidance = 1.0f,
                       .batch_cfg = 1};
    asam_sd_progress_state ps;
    asam_sd_progress_start(&ps, "asam reconstruct: invert", sched, 1);
    asam_tensor *xT = asam_ddim_invert(ctx, &g, sched, z, NULL, asam_sd_progress_stderr, &ps);
    if (a->cfg != 1.0) g.uncond = asam_sd_encode_prompt(ctx, r->sd, a->c.negative);
    g.guidance = (float)a->cfg;
    asam_sd_progress_start(&ps, "asam reconstruct: sample", sched, 0);
    return xT && asam_ctx_ok(ctx)
               ? asam_ddim_sample(ctx, &g, sched, xT, asam_sd_progress_stderr, &ps)
               : NULL;
}

static int run(const recon_args *a, const asam_ddim *sched, recon_run *r) {
    const int S = a->c.size;
    if (asam_image_read(a->image, 3, &r->in) ||
        (a->c.control && asam_image_read(a->c.control, 3, &r->cimg)))
        return -1;
    if (asam_sd_load(a->c.sd_path, a->c.tok_dir, &r->sd) ||
        (a->c.cn_path && asam_sd_controlnet_open(a->c.cn_path, r->sd->unet, &r->cn)))
        return -1;
    asam_ctx *ctx = r->ctx = asam_ctx_new(0);
    if (!ctx) return asam_error("out of memory");
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = asam_sd_image_to_tensor(ctx, &r->in, S, S, -1.0f);
    asam_tensor *z = asam_scale(ctx, asam_vae_encode(ctx, r->sd->vae, x), ASAM_SD_LATENT_SCALE);
    if (a->invert && asam_ctx_ok(ctx)) z = invert_and_sample(a, sched, r, z);
    asam_tensor *dec =
        z ? asam_vae_decode(ctx, r->sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE))
          : NULL;
    if (!dec || !asam_ctx_ok(ctx))
        return asam_error("%s", asam_ctx_ok(ctx) ? "reconstruction failed" : asam_ctx_error(ctx));
    return asam_sd_tensor_to_image(dec, &r->res);
}

int cmd_reconstruct(int argc, char **argv) {
    recon_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_ddim sched;
    if (asam_ddim_init(&sched, a.c.steps, 0)) return cli_fail("reconstruct", "bad --steps");
    recon_run r = {0};
    rc = run(&a, &sched, &r) || asam_sd_write_image(a.c.out, &r.res);
    if (rc)
        cli_fail("reconstruct", "%s", asam_last_error());
    else
        printf("wrote %s (%dx%d, %s)\n", a.c.out, a.c.size, a.c.size,
               a.invert ? "DDIM inversion + regeneration" : "VAE round trip");
    asam_image_free(&r.in);
    asam_image_free(&r.cimg);
    asam_image_free(&r.res);
    asam_ctx_free(r.ctx);
    asam_controlnet_free(r.cn);
    asam_sd_free(r.sd);
    return rc;
}
