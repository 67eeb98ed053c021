/* The options txt2img and reconstruct share (the SD model, prompts, ControlNet, steps, size),
 * as option-table rows over one struct, and their common checks. */
#ifndef ASAM_CLI_SD_OPTIONS_H
#define ASAM_CLI_SD_OPTIONS_H

#include "cli/options.h"

#include <stdio.h>

typedef struct {
    const char *sd_path, *negative, *cn_path, *control, *tok_dir, *out;
    int steps, size;
    double cscale;
} sd_cli_common;

#define SD_CLI_DEFAULTS                                                                            \
    { .negative = "", .steps = 50, .size = 512, .cscale = 1 }

/* The rows, for a cli_opt table; c points to an sd_cli_common. */
#define SD_CLI_OPTS(c)                                                                               \
    {"--sd",                                                                                         \
     OPT_STR,                                                                                        \
     &(c)->sd_path,                                                                                  \
     "FILE|DIR",                                                                                     \
     "CompVis single file (.ckpt/.safetensors) or diffusers folder",                                 \
     .required = 1},                                                                                 \
        {"--negative", OPT_STR, &(c)->negative, "TEXT", "negative prompt (unconditional branch)"},   \
        {"--controlnet", OPT_STR, &(c)->cn_path, "FILE",                                             \
         "ControlNet (v1.0/v1.1 .pth/.safetensors), with --control"},                                \
        {"--control", OPT_STR, &(c)->control, "IMAGE",                                               \
         "control image (resized to the output size, scaled to [0,1])"},                             \
        {"--control-scale", OPT_DOUBLE, &(c)->cscale, "S", "ControlNet conditioning scale", 0, 100}, \
        {"--steps", OPT_INT, &(c)->steps, "N", "DDIM steps", 1, 1000},                               \
        {"--size", OPT_INT, &(c)->size, "N", "image size", 64, 8192, .multiple_of = 64},             \
        {"--tokenizer", OPT_STR, &(c)->tok_dir, "DIR",                                               \
         "vocab.json + merges.txt (default: built-in / diffusers tokenizer/)"},                      \
    {                                                                                                \
        "--out", OPT_STR, &(c)->out, "IMAGE", "output .png (or .jpg)", .required = 1                 \
    }

/* --controlnet and --control together: CLI_OK or CLI_USAGE. */
static inline int sd_cli_check(const char *cmd, const sd_cli_common *c) {
    if (!c->cn_path == !c->control) return CLI_OK;
    fprintf(stderr, "asam %s: --controlnet and --control go together\n", cmd);
    return CLI_USAGE;
}

#endif
