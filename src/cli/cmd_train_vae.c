/* asam train-vae: SD's AutoencoderKL at a small width trained from scratch on an SA-1B folder
 * (see asam/train_sd.h), written as OUT/vae of a diffusers folder; then optionally its
 * reconstruction PSNR on other folders.
 * parse (option table) -> asam_train_vae (weights + resumable state) -> evaluations. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/train_sd.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *mult, *n_levels;
} mult_dst;

static int parse_mult(const char *value, void *dst, char *err, size_t n_err) {
    mult_dst *d = dst;
    if (asam_vae_train_parse_mult(d->mult, d->n_levels, value)) {
        snprintf(err, n_err, "%s", asam_last_error());
        return -1;
    }
    return 0;
}

/* PSNR of OUT/vae (loaded back through the diffusers-folder loader) on each --eval folder: one
 * line each on stdout and in OUT/vae.eval.json. */
static int evaluate(const char *out, const cli_list *evals, int max_images) {
    cJSON *root = cJSON_CreateObject(), *sets = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "model", out);
    cJSON_AddStringToObject(root, "metric",
                            "PSNR dB of 8-bit reconstructions (posterior mean), mean over images");
    cJSON_AddItemToObject(root, "sets", sets);
    int rc = 0;
    for (int i = 0; i < evals->n && !rc; i++) {
        double psnr, sd;
        int n;
        if ((rc = asam_vae_eval(out, evals->v[i], max_images, &psnr, &n, &sd))) break;
        printf("train-vae: %s: PSNR %.2f dB over %d images (0.18215-scaled latent std %.3f)\n",
               evals->v[i], psnr, n, sd);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "data", evals->v[i]);
        cJSON_AddNumberToObject(s, "psnr", psnr);
        cJSON_AddNumberToObject(s, "images", n);
        cJSON_AddNumberToObject(s, "latent_std", sd);
        cJSON_AddItemToArray(sets, s);
    }
    char *txt = rc ? NULL : cJSON_Print(root);
    cJSON_Delete(root);
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s/vae.eval.json", out);
        rc = txt ? asam_write_file_atomic(path, txt, strlen(txt)) : asam_error("out of memory");
    }
    free(txt);
    return rc;
}

int cmd_train_vae(int argc, char **argv) {
    asam_vae_train_opts o;
    asam_vae_train_opts_default(&o);
    int quiet = 0, threads = 0, eval_max = 0;
    const char *evals_v[64];
    cli_list evals = {evals_v, 0, 64};
    mult_dst md = {o.mult, &o.n_levels};
    const cli_opt opts[] = {
        {"--data", OPT_STR, &o.data, "sa1b:DIR", "training images (SA-1B folder, one size)",
         .required = 1},
        {"--out", OPT_STR, &o.out, "DIR",
         "diffusers folder: writes DIR/vae/{config.json,\n"
         "diffusion_pytorch_model.safetensors} (provenance in the metadata)",
         .required = 1},
        {"--ch", OPT_INT, &o.ch, "N", "base width (a multiple of 32)", 32, 1024},
        {"--mult", OPT_CUSTOM, &md, "A,B,..", "width multiplier per level (default 1,2,2,2: 8x)",
         .parse = parse_mult, .no_default = 1},
        {"--res-blocks", OPT_INT, &o.num_res_blocks, "N", "ResnetBlocks per level", 1, 4},
        {"--lr", OPT_FLOAT, &o.lr, "X", "AdamW learning rate (after warm-up)", 1e-12, 10},
        {"--weight-decay", OPT_DOUBLE, &o.weight_decay, "X", "AdamW weight decay", 0, 10},
        {"--kl-weight", OPT_DOUBLE, &o.kl_weight, "X",
         "KL weight relative to the L1 summed over pixels (ldm: 1e-6)", 0, 1e6},
        {"--warmup", OPT_INT, &o.warmup, "N", "steps of linear learning-rate warm-up", 0, 1e9},
        {"--batch", OPT_INT, &o.batch, "N", "images per step", 1, 256},
        {"--crop", OPT_INT, &o.crop, "N", "train on random N x N crops (0: whole images)", 0, 4096},
        {"--steps", OPT_INT, &o.steps, "N", "optimiser steps in all", 0, 1e9},
        {"--seed", OPT_U64, &o.seed, "N", "seed of the weights, data order, crops and noise"},
        {"--threads", OPT_INT, &threads, "N", "CPU threads (as asam --threads)", 1, 4096,
         .no_default = 1},
        {"--f16", OPT_FLAG, &o.f16, NULL, "write the weights as F16 (the state stays F32)"},
        {"--save-every", OPT_INT, &o.save_every, "N", "write the resume state every N steps", 0,
         1e9},
        {"--state", OPT_STR, &o.state, "FILE", "resume state (default OUT/vae.state.safetensors)"},
        {"--resume", OPT_FLAG, &o.resume, NULL, "continue from the state file when it exists"},
        {"--stop-after", OPT_INT, &o.stop_after, "N",
         "stop (after saving the state) at step N, for resume tests", 0, 1e9, .no_default = 1},
        {"--eval", OPT_LIST, &evals, "sa1b:DIR",
         "after training, reconstruction PSNR on this folder\n(repeatable; OUT/vae.eval.json)"},
        {"--eval-images", OPT_INT, &eval_max, "N", "evaluate the first N images of each (0: all)",
         0, 1e9},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress line"},
    };
    const cli_spec spec = {
        "train-vae",
        "--data sa1b:DIR --out SDDIR [options]",
        "Trains Stable Diffusion's AutoencoderKL from scratch at a small width: "
        "L1 reconstruction\n+ KL (ldm's objective without LPIPS and GAN), AdamW; "
        "the latents are rescaled to\nfit SD's 0.18215.",
        opts,
        CLI_NOPTS(opts),
        NULL,
        NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (cli_single_process("train-vae")) return 1;
    if (quiet) o.verbose = 0;
    if (threads) asam_set_threads(threads);
    int r = asam_train_vae(&o);
    if (r < 0) return cli_fail_job("train-vae");
    if (r == 0 && evals.n > 0 && evaluate(o.out, &evals, eval_max))
        return cli_fail("train-vae", "%s", asam_last_error());
    return 0;
}
