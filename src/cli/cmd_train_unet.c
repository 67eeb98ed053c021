/* asam train-unet: SD 1.5's text-conditioned UNet at a small width, trained from scratch on the
 * latents of OUT/vae (from train-vae) with the images' captions through a frozen random CLIP text
 * encoder (see asam/train_sd.h); completes OUT as a diffusers folder that --sd loads.
 * parse (option table) -> asam_train_unet (weights + resumable state). */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/engine.h"
#include "asam/error.h"
#include "asam/train_sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int *v, *n;
} int_list_dst;

static int parse_ints(const char *value, void *dst, char *err, size_t n_err) {
    int_list_dst *d = dst;
    int n = 0;
    const char *p = value;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 64 || n == 8 || (*end && *end != ',')) {
            snprintf(err, n_err, "'%s': expected 1 to 8 small numbers like 1,2,2", value);
            return -1;
        }
        d->v[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        snprintf(err, n_err, "'%s': expected numbers like 1,2,2", value);
        return -1;
    }
    if (d->n) *d->n = n;
    return 0;
}

int cmd_train_unet(int argc, char **argv) {
    asam_unet_train_opts o;
    asam_unet_train_opts_default(&o);
    int quiet = 0, threads = 0, n_attn = o.n_levels;
    int_list_dst md = {o.mult, &o.n_levels}, ad = {o.attn, &n_attn};
    const cli_opt opts[] = {
        {"--data", OPT_STR, &o.data, "sa1b:DIR", "training images + DIR/captions.jsonl",
         .required = 1},
        {"--out", OPT_STR, &o.out, "DIR",
         "diffusers folder holding vae/ (train-vae); writes unet/,\n"
         "text_encoder/, tokenizer/, scheduler/, model_index.json",
         .required = 1},
        {"--channels", OPT_INT, &o.model_channels, "N", "UNet model channels (a multiple of 32)",
         32, 1024},
        {"--mult", OPT_CUSTOM, &md, "A,B,..", "channel multiplier per level (default 1,2,2)",
         .parse = parse_ints, .no_default = 1},
        {"--attn", OPT_CUSTOM, &ad, "0|1,..",
         "1: a SpatialTransformer at this level (default 1,1,1)", .parse = parse_ints,
         .no_default = 1},
        {"--res-blocks", OPT_INT, &o.num_res_blocks, "N", "ResBlocks per level", 1, 4},
        {"--text-width", OPT_INT, &o.text_width, "N",
         "CLIP-mini width (= the UNet's cross-attention context)", 8, 4096},
        {"--text-layers", OPT_INT, &o.text_layers, "N", "CLIP-mini layers", 1, 24},
        {"--text-heads", OPT_INT, &o.text_heads, "N", "CLIP-mini attention heads", 1, 64},
        {"--lr", OPT_FLOAT, &o.lr, "X", "AdamW learning rate (after warm-up)", 1e-12, 10},
        {"--weight-decay", OPT_DOUBLE, &o.weight_decay, "X", "AdamW weight decay", 0, 10},
        {"--warmup", OPT_INT, &o.warmup, "N", "steps of linear learning-rate warm-up", 0, 1e9},
        {"--batch", OPT_INT, &o.batch, "N", "latents per step", 1, 256},
        {"--uncond-share", OPT_FLOAT, &o.uncond_share, "X",
         "share of captions replaced by \"\" (classifier-free guidance)", 0, 1},
        {"--steps", OPT_INT, &o.steps, "N", "optimiser steps in all", 0, 1e9},
        {"--seed", OPT_U64, &o.seed, "N",
         "seed of the UNet, CLIP-mini, data order, timesteps and noise"},
        {"--threads", OPT_INT, &threads, "N", "CPU threads (as asam --threads)", 1, 4096,
         .no_default = 1},
        {"--f16", OPT_FLAG, &o.f16, NULL, "write the weights as F16 (the state stays F32)"},
        {"--save-every", OPT_INT, &o.save_every, "N", "write the resume state every N steps", 0,
         1e9},
        {"--state", OPT_STR, &o.state, "FILE", "resume state (default OUT/unet.state.safetensors)"},
        {"--resume", OPT_FLAG, &o.resume, NULL, "continue from the state file when it exists"},
        {"--stop-after", OPT_INT, &o.stop_after, "N",
         "stop (after saving the state) at step N, for resume tests", 0, 1e9, .no_default = 1},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress line"},
    };
    const cli_spec spec = {"train-unet",
                           "--data sa1b:DIR --out SDDIR [options]",
                           "Trains Stable Diffusion's UNet from scratch at a small width: "
                           "eps-prediction on the\nlatents of SDDIR/vae, captions through a "
                           "frozen random CLIP text encoder (10% \"\"),\nscaled-linear betas "
                           "0.00085..0.012 over 1000 steps, AdamW.",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (n_attn != o.n_levels) {
        fprintf(stderr, "asam train-unet: --attn has %d levels, --mult %d\n", n_attn, o.n_levels);
        return CLI_USAGE;
    }
    if (cli_single_process("train-unet")) return 1;
    if (quiet) o.verbose = 0;
    if (threads) asam_set_threads(threads);
    int r = asam_train_unet(&o);
    if (r < 0) return cli_fail_job("train-unet");
    return 0;
}
