/* asam tune: train SAM's output tokens (iou_token + mask_tokens) on (adversarial) data. */
#include "cli/cli_util.h"
#include "asam/asam.h"
#include "asam/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: asam tune --model SAM.pth --data DATASET [--data ...] --out DIR [options]\n"
    "\n"
    "Tune only mask_decoder.iou_token and mask_decoder.mask_tokens (1,280 values) with Adam,\n"
    "as ASAM's tuning stage (defaults = the official code's numbers).\n"
    "\n"
    "datasets: sa1b:DIR | sa1b:SHARD.tar | adv:ADVDIR:SA1BDIR | coco:ANN.json:IMGDIR |\n"
    "          masks:IMGDIR:MASKDIR | idmap:IMGDIR:MAPDIR[:ignore=V]\n"
    "\n"
    "options:\n"
    "  --epochs N            epochs (20); lr factor (e+1)/10 for e < 10, else 0.5^(e-9)\n"
    "  --lr X                base learning rate (2e-3), Adam betas 0.9/0.999, no decay\n"
    "  --batch N             images per optimiser step (4)\n"
    "  --masks-per-image N   first N annotations of each image, wrapping around (4)\n"
    "  --prompts LIST        prompt kinds drawn per image: box,points,mask (all three)\n"
    "  --box-noise X         HQ-SAM box jitter scale (0 = exact GT box)\n"
    "  --loss points|full    BCE+Dice on 112x112 uncertainty-sampled points (default) or on\n"
    "                        the full 256x256 low-res logits\n"
    "  --points N            sampled points per mask for --loss points (12544)\n"
    "  --no-augment          no flip / large-scale jitter: embeddings computed once and cached\n"
    "  --cache DIR           embedding cache folder (DIR/cache)\n"
    "  --seed N              random seed (0)\n"
    "  --limit N             use at most N images per dataset\n"
    "  --resume              continue from DIR/state.safetensors (last completed epoch)\n"
    "  --stop-after N        stop after N completed epochs (resume later with --resume)\n"
    "  --quiet               no progress lines\n"
    "\n"
    "outputs in DIR: sam_tuned.pth (torch.save state dict, official keys), sam_tuned.safetensors,\n"
    "decoder_tokens.safetensors, state.safetensors (after every epoch), cache/ (--no-augment).\n";

#define fail(...) cli_fail("tune", __VA_ARGS__)

int cmd_tune(int argc, char **argv) {
    asam_tune_opts o;
    asam_tune_defaults(&o);
    o.progress = 1;
    const char *data[64];
    int n_data = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--no-augment")) {
            o.augment = 0;
            continue;
        }
        if (!strcmp(a, "--resume")) {
            o.resume = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.progress = 0;
            continue;
        }
        if (!v) return fail("%s: missing value (see asam tune --help)", a);
        i++;
        float f;
        if (!strcmp(a, "--model"))
            o.model_path = v;
        else if (!strcmp(a, "--data")) {
            if (n_data == 64) return fail("too many --data (64 at most)");
            data[n_data++] = v;
        } else if (!strcmp(a, "--out"))
            o.out_dir = v;
        else if (!strcmp(a, "--cache"))
            o.cache_dir = v;
        else if (!strcmp(a, "--epochs")) {
            if (cli_parse_int(v, 1, 256, &o.epochs))
                return fail("--epochs: expected 1..256, got '%s'", v);
        } else if (!strcmp(a, "--lr")) {
            if (asam_parse_fraction(v, &f) || !(f > 0))
                return fail("--lr: expected a positive number, got '%s'", v);
            o.lr = f;
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(v, 1, 4096, &o.batch))
                return fail("--batch: expected a positive integer, got '%s'", v);
        } else if (!strcmp(a, "--masks-per-image")) {
            if (cli_parse_int(v, 1, 64, &o.masks_per_image))
                return fail("--masks-per-image: expected 1..64, got '%s'", v);
        } else if (!strcmp(a, "--prompts")) {
            o.prompts = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "box"))
                    o.prompts |= ASAM_PROMPT_BOX;
                else if (!strcmp(t, "points"))
                    o.prompts |= ASAM_PROMPT_POINTS;
                else if (!strcmp(t, "mask"))
                    o.prompts |= ASAM_PROMPT_MASK;
                else
                    return fail("--prompts: unknown kind '%s' (box, points, mask)", t);
            }
        } else if (!strcmp(a, "--box-noise")) {
            if (asam_parse_fraction(v, &f) || f < 0)
                return fail("--box-noise: expected a number >= 0, got '%s'", v);
            o.box_noise = f;
        } else if (!strcmp(a, "--loss")) {
            if (!strcmp(v, "points"))
                o.loss.points = 1;
            else if (!strcmp(v, "full"))
                o.loss.points = 0;
            else
                return fail("--loss: expected points or full, got '%s'", v);
        } else if (!strcmp(a, "--points")) {
            if (cli_parse_int(v, 1, 1 << 20, &o.loss.n_points))
                return fail("--points: expected a positive integer, got '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(v, &end, 10);
            if (end == v || *end) return fail("--seed: expected an integer, got '%s'", v);
        } else if (!strcmp(a, "--limit")) {
            if (cli_parse_int(v, 1, 1 << 30, &o.limit))
                return fail("--limit: expected a positive integer, got '%s'", v);
        } else if (!strcmp(a, "--stop-after")) {
            if (cli_parse_int(v, 1, 256, &o.stop_after))
                return fail("--stop-after: expected 1..256, got '%s'", v);
        } else
            return fail("unknown option '%s' (see asam tune --help)", a);
    }
    if (!o.model_path || !n_data || !o.out_dir)
        return fail("--model, --data and --out are required (see asam tune --help)");
    o.data = data;
    o.n_data = n_data;
    asam_tune_report rep;
    if (asam_tune(&o, &rep)) return fail("%s", asam_last_error());
    if (o.progress)
        fprintf(stderr, "asam tune: %d/%d epochs done on %d images; wrote %s/sam_tuned.pth\n",
                rep.epochs_done, o.epochs, rep.n_images, o.out_dir);
    return 0;
}
