/* asam train-controlnet: train a mask-to-image ControlNet from an SD 1.5 checkpoint on SA-1B
 * (colour mask map -> image, caption) triples; see asam/train.h.
 * parse (option table) -> run (asam_train_controlnet writes the checkpoint and its state). */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/error.h"
#include "asam/train.h"

#include <stdio.h>
#include <string.h>

static int parse_args(asam_cn_train_opts *o, int argc, char **argv) {
    asam_cn_train_opts_default(o);
    int quiet = 0;
    const cli_opt opts[] = {
        {"--sd", OPT_STR, &o->sd, "FILE|DIR",
         "SD 1.5 checkpoint (CompVis single file or diffusers folder)", .required = 1},
        {"--data", OPT_STR, &o->data, "sa1b:DIR", "folder of sa_N.jpg + sa_N.json (SA-1B layout)",
         .required = 1},
        {"--captions", OPT_STR, &o->captions, "FILE",
         "JSON lines {\"img\": \"sa_1.jpg\", \"prompt\": ...} (default:\n"
         "DIR/captions.jsonl when present, else empty prompts)"},
        {"--init-controlnet", OPT_STR, &o->init_controlnet, "FILE",
         "start from this ControlNet instead of the UNet's encoder"},
        {"--out", OPT_STR, &o->out, "FILE",
         "output: .pth/.ckpt (torch.save) or .safetensors, keys\n"
         "control_model.* (ControlNet v1.1 layout), F32",
         .required = 1},
        {"--lr", OPT_FLOAT, &o->lr, "X", "AdamW learning rate", 1e-12, 10},
        {"--weight-decay", OPT_DOUBLE, &o->weight_decay, "X", "AdamW weight decay (torch's)", 0,
         10},
        {"--batch", OPT_INT, &o->batch, "N",
         "images per step (official: 8 per GPU x 8 GPUs, gradients averaged)", 1, 64},
        {"--vae-mean", OPT_FLAG, &o->vae_mean, NULL,
         "latent = the VAE posterior's mean (official: a sample,\n"
         "here keyed by the seed and the sample)"},
        {"--epochs", OPT_INT, &o->epochs, "N", "passes over the data (ignored with --steps)", 1,
         1e6},
        {"--steps", OPT_INT, &o->steps, "N", "optimiser steps in all", 1, 1e9, .no_default = 1},
        {"--size", OPT_INT, &o->size, "N", "image and hint side", 64, 4096, .multiple_of = 64},
        {"--seed", OPT_U64, &o->seed, "N", "seed of the data order, timesteps, noise, hint init"},
        {"--save-every", OPT_INT, &o->save_every, "N", "write the resume state every N steps", 0,
         1e9},
        {"--state", OPT_STR, &o->state, "FILE", "resume state (default OUT.state.safetensors)"},
        {"--resume", OPT_FLAG, &o->resume, NULL, "continue from the state file when it exists"},
        {"--force", OPT_FLAG, &o->force, NULL,
         "with --resume: a state made with other options starts over\n(else refused)"},
        {"--stop-after", OPT_INT, &o->stop_after, "N",
         "stop (after saving the state) at step N, for resume tests", 0, 1e9, .no_default = 1},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress line"},
    };
    const cli_spec spec = {"train-controlnet",
                           "--sd FILE|DIR --data sa1b:DIR --out control.pth [options]",
                           NULL,
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (quiet) o->verbose = 0;
    return rc;
}

int cmd_train_controlnet(int argc, char **argv) {
    asam_cn_train_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (asam_train_controlnet(&o) < 0) return cli_fail_job("train-controlnet");
    return 0;
}
