/* asam train-sam: train SAM (image encoder, prompt encoder, mask decoder) from scratch on an
 * SA-1B folder with box and point prompts (see asam/train_sam.h), then optionally measure its
 * box-prompt mIoU on other folders.
 * parse (option table) -> asam_train_sam (checkpoint + resumable state) -> evaluations. */
#include "cli/cli_util.h"
#include "cli/options.h"
#include "asam/engine.h"
#include "asam/dist.h"
#include "asam/error.h"
#include "asam/fileio.h"
#include "asam/train_sam.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_global(const char *value, void *dst, char *err, size_t n_err) {
    if (asam_sam_train_parse_global(dst, value)) {
        snprintf(err, n_err, "%s", asam_last_error());
        return -1;
    }
    return 0;
}

/* Box-prompt mIoU of the trained checkpoint (loaded back through the official-layout loader)
 * on each --eval folder: one line each on stdout and OUT.eval.json. */
static int evaluate(const char *out, const cli_list *evals, int max_images) {
    asam_sam *m;
    if (asam_sam_load_frozen(out, &m)) return -1;
    cJSON *root = cJSON_CreateObject(), *sets = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "model", out);
    cJSON_AddStringToObject(root, "metric", "box-prompt mIoU (tight GT boxes, single-mask output)");
    cJSON_AddItemToObject(root, "sets", sets);
    int rc = 0;
    for (int i = 0; i < evals->n && !rc; i++) {
        double miou;
        int n;
        rc = asam_sam_box_miou(m, evals->v[i], max_images, &miou, &n);
        if (rc) break;
        printf("train-sam: %s: box mIoU %.4f over %d masks\n", evals->v[i], miou, n);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "data", evals->v[i]);
        cJSON_AddNumberToObject(s, "miou", miou);
        cJSON_AddNumberToObject(s, "masks", n);
        cJSON_AddItemToArray(sets, s);
    }
    asam_sam_free(m);
    char *txt = rc ? NULL : cJSON_Print(root);
    cJSON_Delete(root);
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s.eval.json", out);
        rc = txt ? asam_write_file_atomic(path, txt, strlen(txt)) : asam_error("out of memory");
    }
    free(txt);
    return rc;
}

int cmd_train_sam(int argc, char **argv) {
    asam_sam_train_opts o;
    asam_sam_train_opts_default(&o);
    int quiet = 0, threads = 0, eval_max = 0;
    const char *evals_v[64];
    cli_list evals = {evals_v, 0, 64};
    const cli_opt opts[] = {
        {"--data", OPT_STR, &o.data, "sa1b:DIR", "training images: sa_N.jpg + sa_N.json (SA-1B)",
         .required = 1},
        {"--out", OPT_STR, &o.out, "FILE",
         "checkpoint in the official segment-anything layout: .pth/.pt\n"
         "(torch.save) or .safetensors (with provenance metadata), F32",
         .required = 1},
        {"--img-size", OPT_INT, &o.img_size, "N", "input side (the encoder grid is N/16)", 16, 1024,
         .multiple_of = 16},
        {"--embed-dim", OPT_INT, &o.embed_dim, "N", "image encoder width", 1, 4096},
        {"--depth", OPT_INT, &o.depth, "N", "image encoder blocks", 1, ASAM_SAM_MAX_DEPTH},
        {"--heads", OPT_INT, &o.num_heads, "N", "image encoder attention heads", 1, 256},
        {"--window", OPT_INT, &o.window, "N", "windowed-attention side, in tokens", 1, 64},
        {"--global-attn", OPT_CUSTOM, &o, "I,J", "blocks with global attention (default 1,3)",
         .parse = parse_global, .no_default = 1},
        {"--lr", OPT_FLOAT, &o.lr, "X", "AdamW learning rate (after warm-up)", 1e-12, 10},
        {"--weight-decay", OPT_DOUBLE, &o.weight_decay, "X", "AdamW weight decay", 0, 10},
        {"--warmup", OPT_INT, &o.warmup, "N", "steps of linear learning-rate warm-up", 0, 1e9},
        {"--lr-drop", OPT_INT, &o.lr_drop, "STEP",
         "divide the learning rate by 10 from this step on (0: never;\n"
         "a run made without it resumes with one still ahead)",
         0, 1e9},
        {"--batch", OPT_INT, &o.batch, "N", "images per step", 1, 1024},
        {"--prompts", OPT_INT, &o.prompts, "N", "masks (prompts) per image", 1, 16},
        {"--point-share", OPT_FLOAT, &o.point_share, "X",
         "share of images prompted by one point per mask (the rest: boxes)", 0, 1},
        {"--steps", OPT_INT, &o.steps, "N", "optimiser steps in all", 0, 1e9},
        {"--seed", OPT_U64, &o.seed, "N", "seed of the weights, data order and prompts"},
        {"--threads", OPT_INT, &threads, "N", "CPU threads (as asam --threads)", 1, 4096,
         .no_default = 1},
        {"--save-every", OPT_INT, &o.save_every, "N", "write the resume state every N steps", 0,
         1e9},
        {"--state", OPT_STR, &o.state, "FILE", "resume state (default OUT.state.safetensors)"},
        {"--resume", OPT_FLAG, &o.resume, NULL, "continue from the state file when it exists"},
        {"--stop-after", OPT_INT, &o.stop_after, "N",
         "stop (after saving the state) at step N, for resume tests", 0, 1e9, .no_default = 1},
        {"--eval", OPT_LIST, &evals, "sa1b:DIR",
         "after training, box-prompt mIoU on this folder (repeatable;\n"
         "written to OUT.eval.json)"},
        {"--eval-images", OPT_INT, &eval_max, "N", "evaluate the first N images of each (0: all)",
         0, 1e9},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress line"},
    };
    const cli_spec spec = {"train-sam",
                           "--data sa1b:DIR --out sam_mini.pth [options]",
                           "Trains SAM from scratch: the image encoder at the given width, the "
                           "official prompt\nencoder and mask decoder; loss BCE + Dice + IoU-head "
                           "MSE; AdamW.",
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int rc = cli_parse(&spec, argc, argv);
    if (rc) return cli_exit_code(rc);
    if (cli_single_process("train-sam")) return 1;
    if (quiet) o.verbose = 0;
    if (threads) asam_set_threads(threads);
    int r = asam_train_sam(&o);
    if (r < 0) return cli_fail_job("train-sam");
    if (r == 0 && evals.n > 0 && evaluate(o.out, &evals, eval_max))
        return cli_fail("train-sam", "%s", asam_last_error());
    return 0;
}
