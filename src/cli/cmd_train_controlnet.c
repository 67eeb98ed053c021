/* asam train-controlnet: train a mask-to-image ControlNet from an SD 1.5 checkpoint on SA-1B
 * (colour mask map -> image, caption) triples; see asam/train.h. */
#include "asam/error.h"
#include "asam/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: asam train-controlnet --sd FILE|DIR --data sa1b:DIR --out control.pth "
        "[options]\n"
        "  --sd FILE|DIR          SD 1.5 checkpoint (CompVis single file or diffusers folder)\n"
        "  --data sa1b:DIR        folder of sa_N.jpg + sa_N.json (SA-1B layout)\n"
        "  --captions FILE        JSON lines {\"img\": \"sa_1.jpg\", \"prompt\": ...} (default:\n"
        "                         DIR/captions.jsonl when present, else empty prompts)\n"
        "  --init-controlnet FILE start from this ControlNet instead of the UNet's encoder\n"
        "  --out FILE             output: .pth/.ckpt (torch.save) or .safetensors, keys\n"
        "                         control_model.* (ControlNet v1.1 layout), F32\n"
        "  --lr X                 AdamW learning rate (default 1e-5)\n"
        "  --weight-decay X       AdamW weight decay (default 0.01, torch's default)\n"
        "  --batch N              images per step (default 1)\n"
        "  --epochs N             passes over the data (default 1; ignored with --steps)\n"
        "  --steps N              optimiser steps in all\n"
        "  --size N               image and hint side, a multiple of 64 (default 512)\n"
        "  --seed N               seed of the data order, timesteps, noise, hint init (0)\n"
        "  --save-every N         write the resume state every N steps (default 100)\n"
        "  --state FILE           resume state (default OUT.state.safetensors)\n"
        "  --resume               continue from the state file when it exists\n"
        "  --quiet                no progress line\n");
}

static int parse_num(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "asam train-controlnet: %s: expected a number in [%g, %g], got '%s'\n",
                flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_train_controlnet(int argc, char **argv) {
    asam_cn_train_opts o;
    asam_cn_train_opts_default(&o);
    double lr = o.lr, wd = o.weight_decay, batch = o.batch, epochs = o.epochs, steps = 0,
           size = o.size, seed = 0, save_every = o.save_every, stop_after = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--resume")) {
            o.resume = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.verbose = 0;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "asam train-controlnet: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--sd"))
            o.sd = v;
        else if (!strcmp(a, "--data"))
            o.data = v;
        else if (!strcmp(a, "--captions"))
            o.captions = v;
        else if (!strcmp(a, "--init-controlnet"))
            o.init_controlnet = v;
        else if (!strcmp(a, "--out"))
            o.out = v;
        else if (!strcmp(a, "--state"))
            o.state = v;
        else if (!strcmp(a, "--lr"))
            rc = parse_num(a, v, 1e-12, 10, &lr);
        else if (!strcmp(a, "--weight-decay"))
            rc = parse_num(a, v, 0, 10, &wd);
        else if (!strcmp(a, "--batch"))
            rc = parse_num(a, v, 1, 64, &batch);
        else if (!strcmp(a, "--epochs"))
            rc = parse_num(a, v, 1, 1e6, &epochs);
        else if (!strcmp(a, "--steps"))
            rc = parse_num(a, v, 1, 1e9, &steps);
        else if (!strcmp(a, "--size"))
            rc = parse_num(a, v, 64, 4096, &size);
        else if (!strcmp(a, "--seed"))
            rc = parse_num(a, v, 0, 1.8e19, &seed);
        else if (!strcmp(a, "--save-every"))
            rc = parse_num(a, v, 0, 1e9, &save_every);
        else if (!strcmp(a, "--stop-after"))
            rc = parse_num(a, v, 0, 1e9, &stop_after); // tests
        else {
            fprintf(stderr, "asam train-controlnet: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (rc) return 2;
    }
    if (!o.sd || !o.data || !o.out) {
        fprintf(stderr,
                "asam train-controlnet: --sd, --data and --out are required (see --help)\n");
        return 2;
    }
    if (batch != (int)batch || epochs != (int)epochs || steps != (int)steps || size != (int)size ||
        save_every != (int)save_every || stop_after != (int)stop_after) {
        fprintf(stderr, "asam train-controlnet: --batch, --epochs, --steps, --size and "
                        "--save-every take integers\n");
        return 2;
    }
    o.lr = (float)lr;
    o.weight_decay = wd;
    o.batch = (int)batch;
    o.epochs = (int)epochs;
    o.steps = (int)steps;
    o.size = (int)size;
    o.seed = (uint64_t)seed;
    o.save_every = (int)save_every;
    o.stop_after = (int)stop_after;
    int rc = asam_train_controlnet(&o);
    if (rc < 0) {
        const char *msg = asam_last_error();
        if (!strncmp(msg, "train-controlnet: ", 18)) msg += 18; // already said
        fprintf(stderr, "asam train-controlnet: %s\n", msg);
        return 1;
    }
    return 0;
}
