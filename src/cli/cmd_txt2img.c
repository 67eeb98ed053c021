/* asam txt2img: Stable Diffusion 1.5 (+ ControlNet) text-to-image with DDIM and classifier-free
 * guidance. Everything is validated and computed before any output is written. */
#include "asam/engine.h"
#include "asam/checkpoint.h"

#include "asam/error.h"
#include "asam/image.h"
#include "asam/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: asam txt2img --sd FILE|DIR --prompt TEXT --out IMAGE [options]\n"
            "  --sd FILE|DIR        CompVis single file (.ckpt/.safetensors) or diffusers folder\n"
            "  --prompt TEXT        text prompt\n"
            "  --negative TEXT      negative prompt (unconditional branch; default \"\")\n"
            "  --controlnet FILE    ControlNet (v1.0/v1.1 .pth/.safetensors)\n"
            "  --control IMAGE      control image (resized to the output size, scaled to [0,1])\n"
            "  --control-scale S    ControlNet conditioning scale (default 1)\n"
            "  --steps N            DDIM steps (default 50)\n"
            "  --cfg W              guidance scale (default 7.5)\n"
            "  --seed N             seed of the starting noise (default 0; Philox + Box-Muller)\n"
            "  --size N             image size, a multiple of 64 (default 512)\n"
            "  --steps-offset 0|1   timestep convention: 1 = CompVis/SD 1.5 (981..1, default),\n"
            "                       0 = ASAM (980..0)\n"
            "  --latent FILE        starting latent x_T (safetensors, (1,4,size/8,size/8))\n"
            "  --save FILE          write x_T, latent, cond, uncond (safetensors)\n"
            "  --tokenizer DIR      vocab.json + merges.txt (default: built-in / diffusers "
            "tokenizer/)\n"
            "  --out IMAGE          output .png (or .jpg)\n");
}

static int fail(const char *msg) {
    fprintf(stderr, "asam txt2img: %s\n", msg);
    return 1;
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "asam txt2img: %s: expected a number in [%g, %g], got '%s'\n", flag, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

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

int cmd_txt2img(int argc, char **argv) {
    const char *sd_path = NULL, *prompt = NULL, *negative = "", *cn_path = NULL, *control = NULL;
    const char *latent = NULL, *save = NULL, *out = NULL, *tok_dir = NULL;
    double steps = 50, cfg = 7.5, seed = 0, size = 512, offset = 1, cscale = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "asam txt2img: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--sd"))
            sd_path = v;
        else if (!strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "--negative"))
            negative = v;
        else if (!strcmp(a, "--controlnet"))
            cn_path = v;
        else if (!strcmp(a, "--control"))
            control = v;
        else if (!strcmp(a, "--latent"))
            latent = v;
        else if (!strcmp(a, "--save"))
            save = v;
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
        else if (!strcmp(a, "--seed"))
            rc = parse_num(a, v, 0, 1.8e19, &seed);
        else if (!strcmp(a, "--size"))
            rc = parse_num(a, v, 64, 8192, &size);
        else if (!strcmp(a, "--steps-offset"))
            rc = parse_num(a, v, 0, 1, &offset);
        else {
            fprintf(stderr, "asam txt2img: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (rc) return 2;
    }
    if (!sd_path || !prompt || !out) {
        fprintf(stderr, "asam txt2img: --sd, --prompt and --out are required (see --help)\n");
        return 2;
    }
    if (!cn_path != !control) return fail("--controlnet and --control go together");
    if ((int)size % 64 || size != (int)size) return fail("--size must be a multiple of 64");
    if (steps != (int)steps || (offset != 0 && offset != 1))
        return fail("--steps and --steps-offset take integers");
    const int S = (int)size, lh = S / 8, lw = S / 8;

    asam_ddim sched;
    if (asam_ddim_init(&sched, (int)steps, (int)offset)) return fail("bad --steps");

    /* Inputs first (cheap checks), then the models. */
    asam_image cimg = {0};
    if (control && asam_image_read(control, 3, &cimg)) return fail(asam_last_error());
    float *xT = malloc(sizeof(float) * 4 * lh * lw);
    if (!xT) return fail("out of memory");
    if (latent) {
        if (read_latent(latent, lh, lw, xT)) {
            free(xT);
            asam_image_free(&cimg);
            return fail(asam_last_error());
        }
    } else {
        asam_randn((uint64_t)seed, xT, (size_t)4 * lh * lw);
    }
    int ret = 1;
    asam_sd *sd = NULL;
    asam_controlnet *cn = NULL;
    asam_ctx *ctx = NULL;
    asam_image img = {0};
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
    asam_tensor *cond = asam_sd_encode_prompt(ctx, sd, prompt);
    asam_tensor *uncond = asam_sd_encode_prompt(ctx, sd, negative);
    asam_tensor *hint = cn ? asam_sd_image_to_tensor(ctx, &cimg, S, S, 0.0f) : NULL;
    asam_tensor *x = asam_from_data(ctx, ASAM_SHAPE(1, 4, lh, lw), xT);
    if (!asam_ctx_ok(ctx)) {
        fail(asam_ctx_error(ctx));
        goto done;
    }
    asam_sd_guide g = {.unet = sd->unet,
                       .controlnet = cn,
                       .hint = hint,
                       .control_scale = (float)cscale,
                       .cond = cond,
                       .uncond = uncond,
                       .guidance = (float)cfg,
                       .batch_cfg = 1};
    asam_sd_progress_state ps;
    asam_sd_progress_start(&ps, "asam txt2img", &sched, 0);
    asam_tensor *z = asam_ddim_sample(ctx, &g, &sched, x, asam_sd_progress_stderr, &ps);
    asam_tensor *dec =
        z ? asam_vae_decode(ctx, sd->vae, asam_scale(ctx, z, 1.0f / ASAM_SD_LATENT_SCALE)) : NULL;
    if (!dec || !asam_ctx_ok(ctx)) {
        fail(asam_ctx_ok(ctx) ? "sampling failed" : asam_ctx_error(ctx));
        goto done;
    }
    if (asam_sd_tensor_to_image(dec, &img)) {
        fail(asam_last_error());
        goto done;
    }
    if (save) {
        const int D = (int)cond->shape[2];
        asam_st_entry e[4] = {
            {"cond", ASAM_DT_F32, 3, {1, ASAM_CLIP_CONTEXT, D}, cond->data},
            {"latent", ASAM_DT_F32, 4, {1, 4, lh, lw}, z->data},
            {"uncond", ASAM_DT_F32, 3, {1, ASAM_CLIP_CONTEXT, D}, uncond->data},
            {"x_T", ASAM_DT_F32, 4, {1, 4, lh, lw}, xT},
        };
        char st[32], cf[32], sdv[32], so[8];
        snprintf(st, sizeof st, "%d", (int)steps);
        snprintf(cf, sizeof cf, "%g", cfg);
        snprintf(sdv, sizeof sdv, "%.0f", seed);
        snprintf(so, sizeof so, "%d", (int)offset);
        const char *meta[] = {"prompt", prompt, "negative", negative, "steps",        st,
                              "cfg",    cf,     "seed",     sdv,      "steps_offset", so};
        if (asam_safetensors_write(save, e, 4, meta, 6)) {
            fail(asam_last_error());
            goto done;
        }
    }
    if (asam_sd_write_image(out, &img)) {
        fail(asam_last_error());
        if (save) remove(save); /* no partial output */
        goto done;
    }
    printf("wrote %s (%dx%d, %d steps, cfg %g%s)\n", out, S, S, sched.n, cfg,
           cn ? ", ControlNet" : "");
    ret = 0;
done:
    asam_image_free(&img);
    asam_image_free(&cimg);
    asam_ctx_free(ctx);
    asam_controlnet_free(cn);
    asam_sd_free(sd);
    free(xT);
    return ret;
}
