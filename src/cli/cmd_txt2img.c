/* asam txt2img: Stable Diffusion 1.5 (+ ControlNet) text-to-image with DDIM and classifier-free
 * guidance. Everything is validated and computed before any output is written. */
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

/* Read the starting latent: the tensor "x_T", or the file's only tensor; shape (1,4,h,w) or
 * (4,h,w). */
static int read_latent(const char *path, int lh, int lw, float *dst) {
    asam_checkpoint *ck;
    if (asam_checkpoint_open(path, &ck)) return -1;
    const asam_ckpt_tensor *t = asam_checkpoint_find(ck, "x_T");
    if (!t && asam_checkpoint_count(ck) == 1) t = asam_checkpoint_get(ck, 0);
    int rc;
    if (!t) {
        rc = asam_error("%s: no tensor named x_T", path);
    } else {
        int ok = (t->ndim == 4 && t->shape[0] == 1 && t->shape[1] == 4 && t->shape[2] == lh &&
                  t->shape[3] == lw) ||
                 (t->ndim == 3 && t->shape[0] == 4 && t->shape[1] == lh && t->shape[2] == lw);
        char shp[128] = "";
        for (int i = 0; i < t->ndim && i < 6; i++)
            snprintf(shp + strlen(shp), sizeof shp - strlen(shp), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        rc = ok ? asam_ckpt_read_f32(ck, t, dst)
                : asam_error("%s: latent %s has shape (%s), expected (1, 4, %d, %d)", path, t->name,
                             shp, lh, lw);
    }
    asam_checkpoint_close(ck);
    return rc;
}

typedef struct {
    sd_cli_common c;
    const char *prompt, *latent, *save;
    int offset;
    double cfg;
    uint64_t seed;
} txt2img_args;

static int parse_args(txt2img_args *a, int argc, char **argv) {
    *a = (txt2img_args){.c = SD_CLI_DEFAULTS, .offset = 1, .cfg = 7.5};
    const cli_opt opts[] = {
        SD_CLI_OPTS(&a->c),
        {"--prompt", OPT_STR, &a->prompt, "TEXT", "text prompt", .required = 1},
        {"--cfg", OPT_DOUBLE, &a->cfg, "W", "guidance scale", 0, 100},
        {"--seed", OPT_U64, &a->seed, "N", "seed of the starting noise (Philox + Box-Muller)"},
        {"--steps-offset", OPT_INT, &a->offset, "0|1",
         "timestep convention: 1 = CompVis/SD 1.5 (981..1),\n0 = ASAM (980..0)", 0, 1},
        {"--latent", OPT_STR, &a->latent, "FILE",
         "starting latent x_T (safetensors, (1,4,size/8,size/8))"},
        {"--save", OPT_STR, &a->save, "FILE", "write x_T, latent, cond, uncond (safetensors)"},
    };
    const cli_spec spec = {"txt2img",
                           "--sd FILE|DIR --prompt TEXT --out IMAGE [options]",
                           "Stable Diffusion 1.5 (+ ControlNet) text-to-image with DDIM and\n"
                           "classifier-free guidance.\n",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    return rc ? rc : sd_cli_check("txt2img", &a->c);
}

/* The models and the prompt's conditioning, built once per run. */
typedef struct {
    asam_sd *sd;
    asam_controlnet *cn;
    asam_ctx *ctx;
    float *xT; /* (1, 4, S/8, S/8) starting noise */
    asam_image cimg, img;
    asam_tensor *cond, *uncond, *z;
} txt2img_run;

static void run_free(txt2img_run *r) {
    asam_image_free(&r->img);
    asam_image_free(&r->cimg);
    asam_ctx_free(r->ctx);
    asam_controlnet_free(r->cn);
    asam_sd_free(r->sd);
    free(r->xT);
}

/* Inputs first (cheap checks), then the models, then DDIM sampling and the VAE decode. */
static int run(const txt2img_args *a, const asam_ddim *sched, txt2img_run *r) {
    const int S = a->c.size, lh = S / 8, lw = S / 8;
    if (a->c.control && asam_image_read(a->c.control, 3, &r->cimg)) return -1;
    r->xT = malloc(sizeof(float) * 4 * lh * lw);
    if (!r->xT) return asam_error("out of memory");
    if (a->latent) {
        if (read_latent(a->latent, lh, lw, r->xT)) return -1;
    } else {
        asam_randn(a->seed, r->xT, (size_t)4 * lh * lw);
    }
    if (asam_sd_load(a->c.sd_path, a->c.tok_dir, &r->sd) ||
        (a->c.cn_path && asam_sd_controlnet_open(a->c.cn_path, r->sd->unet, &r->cn)))
        return -1;
    asam_ctx *ctx = r->ctx = asam_ctx_new(0);
    if (!ctx) return asam_error("out of memory");
    asam_ctx_set_grad(ctx, 0);
    r->cond = asam_sd_encode_prompt(ctx, r->sd, a->prompt);
    r->uncond = asam_sd_encode_prompt(ctx, r->sd, a->c.negative);
    asam_tensor *hint = r->cn ? asam_sd_image_to_tensor(ctx, &r->cimg, S, S, 0.0f) : NULL;
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 4, lh, lw), r->xT);
    if (!asam_ctx_ok(ctx)) return asam_error("%s", asam_ctx_error(ctx));
    asam_sd_guide g = {.unet = r->sd->unet,
                       .controlnet = r->cn,
                       .hint = hint,
                       .control_scale = (float)a->c.cscale,
                       .cond = r->cond,
                       .uncond = r->uncond,
                       .guidance = (float)a->cfg,
                       .batch_cfg = 1};
    asam_sd_progress_state ps;
    asam_sd_progress_start(&ps, "asam txt2img", sched, 0);
    r->z = asam_ddim_sample(ctx, &g, sched, x, asam_sd_progress_stderr, &ps);
    asam_tensor *dec =
        r->z ? asam_vae_decode(ctx, r->sd->vae, asam_scale(ctx, r->z, 1.0f / ASAM_SD_LATENT_SCALE))
             : NULL;
    if (!dec || !asam_ctx_ok(ctx))
        return asam_error("%s", asam_ctx_ok(ctx) ? "sampling failed" : asam_ctx_error(ctx));
    return asam_sd_tensor_to_image(dec, &r->img);
}

/* --save (x_T, latent, cond, uncond + the settings as metadata), then the image; the
 * safetensors file is removed again when the image cannot be written (no partial output). */
static int write_outputs(const txt2img_args *a, const txt2img_run *r) {
    const int lh = a->c.size / 8, lw = a->c.size / 8;
    if (a->save) {
        const int D = (int)r->cond->shape[2];
        asam_st_entry e[4] = {
            {"cond", ASAM_DT_F32, 3, {1, ASAM_CLIP_CONTEXT, D}, r->cond->data},
            {"latent", ASAM_DT_F32, 4, {1, 4, lh, lw}, r->z->data},
            {"uncond", ASAM_DT_F32, 3, {1, ASAM_CLIP_CONTEXT, D}, r->uncond->data},
            {"x_T", ASAM_DT_F32, 4, {1, 4, lh, lw}, r->xT},
        };
        char st[32], cf[32], sdv[32], so[8];
        snprintf(st, sizeof st, "%d", a->c.steps);
        snprintf(cf, sizeof cf, "%g", a->cfg);
        snprintf(sdv, sizeof sdv, "%llu", (unsigned long long)a->seed);
        snprintf(so, sizeof so, "%d", a->offset);
        const char *meta[] = {"prompt", a->prompt, "negative", a->c.negative, "steps",        st,
                              "cfg",    cf,        "seed",     sdv,           "steps_offset", so};
        if (asam_safetensors_write(a->save, e, 4, meta, 6)) return -1;
    }
    if (asam_sd_write_image(a->c.out, &r->img)) {
        if (a->save) remove(a->save);
        return -1;
    }
    return 0;
}

int cmd_txt2img(int argc, char **argv) {
    txt2img_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc) return cli_exit_code(rc);
    asam_ddim sched;
    if (asam_ddim_init(&sched, a.c.steps, a.offset)) return cli_fail("txt2img", "bad --steps");
    txt2img_run r = {0};
    rc = run(&a, &sched, &r) || write_outputs(&a, &r);
    if (rc)
        cli_fail("txt2img", "%s", asam_last_error());
    else
        printf("wrote %s (%dx%d, %d steps, cfg %g%s)\n", a.c.out, a.c.size, a.c.size, sched.n,
               a.cfg, r.cn ? ", ControlNet" : "");
    run_free(&r);
    return rc;
}
