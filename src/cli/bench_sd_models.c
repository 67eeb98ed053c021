/* Full-size check and benchmark of the SD image models: writes random SD 1.5-sized
 * checkpoints (F16 safetensors, CompVis and diffusers naming, in a scratch folder), loads
 * them, and times UNet forward (64x64 latent, batch 1), ControlNet + UNet, VAE decode
 * 64 -> 512 and UNet backward (input latent and text context), printing seconds, GFLOP/s and
 * peak RSS next to the PyTorch anchors of DESIGN.md §5.
 *
 *   bench_sd_models [--dir DIR] [--size 64] [--threads N] [--ckpt-level 0|1|2] [--skip
 * unet,control,vae,backward,diffusers]
 *                   [--clean]
 */
#include "cli/cli_util.h"
#include "asam/checkpoint.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/sd_models.h"
#include "models/sd/sd_internal.h"
#include "models/sd/sd_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int bench_sd_models_main(int argc, char **argv);

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static double file_gb(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (double)st.st_size / 1e9 : 0;
}

static asam_tensor *randn(asam_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    asam_tensor *t = asam_new(ctx, ndim, shape);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; t && i < t->numel; i += 2) { /* Box-Muller on an LCG */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((s >> 11) + 1.0) / 9007199254740993.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (s >> 11) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1));
        t->data[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < t->numel) t->data[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
    return t;
}

static int skipped(const char *skip, const char *what) {
    return skip && strstr(skip, what) != NULL;
}

static int open_ck(const char *path, asam_checkpoint **ck) {
    if (asam_checkpoint_open(path, ck) != 0) {
        fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
        return -1;
    }
    return 0;
}

static void row(const char *what, double sec, double flops, double rss, const char *anchor) {
    printf("%-34s %8.2f s %8.1f GFLOP/s %7.2f GB   %s\n", what, sec,
           flops > 0 ? flops / sec / 1e9 : 0.0, rss, anchor);
}

int bench_sd_models_main(int argc, char **argv) {
    const char *dir = "/tmp/asam_sd15_synth", *skip = NULL;
    int size = 64, clean = 0, level = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            asam_set_threads(atoi(argv[++i]));
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc)
            skip = argv[++i];
        else if (!strcmp(argv[i], "--clean"))
            clean = 1;
        else if (!strcmp(argv[i], "--ckpt-level") && i + 1 < argc)
            level = atoi(argv[++i]);
        else {
            fprintf(
                stderr,
                "usage: bench_sd_models [--dir DIR] [--size 64] [--threads N] "
                "[--skip unet,control,vae,backward,diffusers] [--ckpt-level 0|1|2] [--clean]\n");
            return 2;
        }
    }
    if (size <= 0 || size % 8) {
        fprintf(stderr, "bench_sd_models: --size must be a positive multiple of 8\n");
        return 2;
    }
    mkdir(dir, 0755);
    char f_cv[1024], f_cn[1024], f_du[1024], f_dv[1024];
    snprintf(f_cv, sizeof f_cv, "%s/sd15_compvis_f16.safetensors", dir);
    snprintf(f_cn, sizeof f_cn, "%s/control_v11_f16.safetensors", dir);
    snprintf(f_du, sizeof f_du, "%s/diffusers_unet_f16.safetensors", dir);
    snprintf(f_dv, sizeof f_dv, "%s/diffusers_vae_f16.safetensors", dir);
    sd_synth_unet_cfg uc = sd_synth_unet_sd15();
    sd_synth_vae_cfg vc = sd_synth_vae_sd15();
    printf("threads %d, latent %dx%d (image %dx%d), files in %s\n", asam_get_threads(), size, size,
           8 * size, 8 * size, dir);

    /* 1. random SD 1.5-sized checkpoints (the UNet weights of the CompVis and diffusers files
     *    are the same numbers: same seed, UNet keys first) */
    struct {
        const char *path, *what;
        int diffusers, unet, vae, control;
        uint64_t seed;
    } files[] = {{f_cv, "CompVis UNet+VAE", 0, 1, 1, 0, 1},
                 {f_cn, "ControlNet v1.1 (control_model.*)", 0, 0, 0, 1, 2},
                 {f_du, "diffusers unet/", 1, 1, 0, 0, 1},
                 {f_dv, "diffusers vae/", 1, 0, 1, 0, 3}};
    for (int i = 0; i < 4; i++) {
        if (exists(files[i].path)) continue;
        if (i == 2 && skipped(skip, "diffusers")) continue;
        if (i == 3 && skipped(skip, "diffusers")) continue;
        double t0 = cli_now();
        int64_t nt = 0, np = 0;
        if (sd_synth_write(files[i].path, files[i].unet ? &uc : NULL, "model.diffusion_model.",
                           files[i].vae ? &vc : NULL, "first_stage_model.",
                           files[i].control ? &uc : NULL, "control_model.", files[i].diffusers, 1,
                           files[i].seed, &nt, &np) != 0) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
            return 1;
        }
        printf("wrote %-36s %5lld tensors %6.1fM params %5.2f GB in %.1f s\n", files[i].what,
               (long long)nt, np / 1e6, file_gb(files[i].path), cli_now() - t0);
    }

    asam_checkpoint *ck = NULL;
    if (open_ck(f_cv, &ck) != 0) return 1;
    double t0 = cli_now();
    cli_reset_peak_rss();
    asam_unet *u = NULL;
    if (asam_unet_load(ck, "model.diffusion_model.", &u) != 0) {
        fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
        return 1;
    }
    printf("loaded CompVis UNet in %.1f s (peak RSS %.2f GB)\n", cli_now() - t0, cli_peak_rss_gb());
    asam_vae *v = NULL;
    t0 = cli_now();
    if (!skipped(skip, "vae") && asam_vae_load(ck, "first_stage_model.", &v) != 0) {
        fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
        return 1;
    }
    if (v) printf("loaded CompVis VAE in %.1f s\n", cli_now() - t0);
    asam_checkpoint_close(ck); /* drop the file mapping: RSS below counts our tensors only */
    ck = NULL;
    cli_reset_peak_rss();
    printf("weights in memory: RSS %.2f GB\n", cli_peak_rss_gb());
    asam_ctx *ctx = asam_ctx_new(0);
    asam_ctx_set_grad(ctx, 0);
    asam_tensor *x = randn(ctx, ASAM_SHAPE(1, 4, size, size), 1);
    asam_tensor *c = randn(ctx, ASAM_SHAPE(1, 77, 768), 2);
    asam_tensor *hint = asam_full(ctx, ASAM_SHAPE(1, 3, 8 * size, 8 * size), 0.5f);
    float t = 501;
    double fu = sd_unet_flops(u, size, size, 77);
    printf("\n%-34s %10s %16s %10s   %s\n", "what", "time", "rate", "peak RSS",
           "PyTorch 1.13 CPU (DESIGN.md §5)");
    asam_tensor *eps_cv = NULL;
    float *eps_ref = malloc((size_t)4 * size * size * sizeof(float));
    if (!skipped(skip, "unet")) {
        for (int rep = 0; rep < 2; rep++) { /* first run warms up pages and BLAS */
            asam_mark m = asam_ctx_mark(ctx);
            cli_reset_peak_rss();
            double s0 = cli_now();
            asam_tensor *eps = asam_unet_forward(ctx, u, x, &t, c, NULL, 1.0f);
            double sec = cli_now() - s0;
            if (!eps) {
                fprintf(stderr, "bench_sd_models: %s\n", asam_ctx_error(ctx));
                return 1;
            }
            memcpy(eps_ref, eps->data, (size_t)eps->numel * sizeof(float));
            eps_cv = eps;
            char what[64];
            snprintf(what, sizeof what, "UNet forward%s", rep ? "" : " (cold)");
            row(what, sec, fu, cli_peak_rss_gb(), "13-15 s, 4.9 GB (target <= 5 s)");
            printf("    arena peak %.2f GB\n", asam_ctx_peak(ctx) / 1e9);
            asam_ctx_release(ctx, m);
        }
    }
    if (!skipped(skip, "control")) {
        asam_checkpoint *cc = NULL;
        asam_controlnet *cn = NULL;
        if (open_ck(f_cn, &cc) != 0) return 1;
        double l0 = cli_now();
        if (asam_controlnet_load(cc, "control_model.", &cn) != 0 ||
            asam_controlnet_check(cn, u) != 0) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
            return 1;
        }
        printf("loaded ControlNet in %.1f s\n", cli_now() - l0);
        asam_checkpoint_close(cc);
        cc = NULL;
        double fc = sd_controlnet_flops(cn, size, size, 77);
        asam_mark m = asam_ctx_mark(ctx);
        asam_tensor *res[13];
        cli_reset_peak_rss();
        double s0 = cli_now();
        int rc = asam_controlnet_forward(ctx, cn, x, &t, c, hint, res);
        double s1 = cli_now();
        asam_tensor *eps = rc == 0 ? asam_unet_forward(ctx, u, x, &t, c, res, 1.0f) : NULL;
        double s2 = cli_now();
        if (!eps) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        row("ControlNet branch (512 hint)", s1 - s0, fc, cli_peak_rss_gb(), "6.5 s");
        row("ControlNet + UNet forward", s2 - s0, fc + fu, cli_peak_rss_gb(), "~20 s");
        asam_ctx_release(ctx, m);
        asam_controlnet_free(cn);
    }
    if (!skipped(skip, "backward")) {
        asam_mark m = asam_ctx_mark(ctx);
        asam_unet_set_checkpointing(u, level);
        asam_ctx_set_grad(ctx, 1);
        asam_tensor *xg = asam_contiguous_copy(ctx, x), *cg = asam_contiguous_copy(ctx, c);
        asam_set_requires_grad(xg, 1);
        asam_set_requires_grad(cg, 1);
        cli_reset_peak_rss();
        double s0 = cli_now();
        asam_tensor *eps = asam_unet_forward(ctx, u, xg, &t, cg, NULL, 1.0f);
        asam_tensor *loss = asam_sum(ctx, asam_mul(ctx, eps, x));
        double s1 = cli_now();
        size_t kept = asam_ctx_used(ctx); /* what one recorded UNet call holds until backward */
        int rc = loss ? asam_backward(ctx, loss) : -1;
        double s2 = cli_now();
        if (rc != 0) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        double gn = 0;
        for (int64_t i = 0; i < xg->numel; i++) gn += (double)xg->grad[i] * xg->grad[i];
        /* checkpointed backward = recompute (1x forward) + input gradients only (~1x) */
        row("UNet forward (recording)", s1 - s0, fu, cli_peak_rss_gb(), "");
        row("UNet backward (dx, dcontext)", s2 - s1, 2 * fu, cli_peak_rss_gb(), "");
        printf("    |dL/dx| = %.4g, held for backward %.3f GB, arena peak %.2f GB (gradient "
               "checkpointing level %d)\n",
               sqrt(gn), kept / 1e9, asam_ctx_peak(ctx) / 1e9, level);
        asam_ctx_set_grad(ctx, 0);
        asam_ctx_release(ctx, m);
    }
    if (!skipped(skip, "vae")) {
        double fv = sd_vae_decode_flops(v, size, size);
        asam_mark m = asam_ctx_mark(ctx);
        cli_reset_peak_rss();
        double s0 = cli_now();
        asam_tensor *img = asam_vae_decode(ctx, v, x);
        double sec = cli_now() - s0;
        if (!img) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        row("VAE decode 64 -> 512", sec, fv, cli_peak_rss_gb(), "14.8 s (target <= 5 s)");
        printf("    arena peak %.2f GB\n", asam_ctx_peak(ctx) / 1e9);
        asam_ctx_release(ctx, m);
    }
    asam_vae_free(v);
    asam_unet_free(u);

    if (!skipped(skip, "diffusers")) {
        asam_checkpoint *du = NULL, *dv = NULL;
        asam_unet *u2 = NULL;
        asam_vae *v2 = NULL;
        if (open_ck(f_du, &du) != 0 || open_ck(f_dv, &dv) != 0) return 1;
        double l0 = cli_now();
        if (asam_unet_load(du, "", &u2) != 0 || asam_vae_load(dv, "", &v2) != 0) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_last_error());
            return 1;
        }
        printf("loaded diffusers unet/ + vae/ in %.1f s\n", cli_now() - l0);
        asam_mark m = asam_ctx_mark(ctx);
        double s0 = cli_now();
        asam_tensor *eps = asam_unet_forward(ctx, u2, x, &t, c, NULL, 1.0f);
        double s1 = cli_now();
        asam_tensor *img = eps ? asam_vae_decode(ctx, v2, x) : NULL;
        if (!img) {
            fprintf(stderr, "bench_sd_models: %s\n", asam_ctx_error(ctx));
            return 1;
        }
        double md = 0, mx = 0;
        if (eps_cv)
            for (int64_t i = 0; i < eps->numel; i++) {
                md = fmax(md, fabs(eps->data[i] - eps_ref[i]));
                mx = fmax(mx, fabs(eps_ref[i]));
            }
        printf("diffusers UNet step %.2f s; eps vs CompVis file: max|diff| %.3g (max|eps| %.3g)\n",
               s1 - s0, md, mx);
        asam_ctx_release(ctx, m);
        asam_unet_free(u2);
        asam_vae_free(v2);
        asam_checkpoint_close(du);
        asam_checkpoint_close(dv);
    }
    (void)eps_cv;
    free(eps_ref);
    asam_ctx_free(ctx);
    printf("overall peak RSS since the last reset %.2f GB\n", cli_peak_rss_gb());
    if (clean) {
        remove(f_cv);
        remove(f_cn);
        remove(f_du);
        remove(f_dv);
    }
    return 0;
}
