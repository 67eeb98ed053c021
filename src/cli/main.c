/* asam: one program, many subcommands, listed in one registry below. Global flags (before the
 * command):
 *   --threads N   number of CPU threads (default: OMP_NUM_THREADS or all cores)
 *   --precision P fp32 (default) or bf16 products in matmul/conv/attention (asam_set_precision) */
#include "cli/commands.h"
#include "cli/options.h"
#include "asam/dist.h"
#include "asam/engine.h"
#include "asam/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    asam_cmd_fn fn;
    const char *help;
} command;

static const command commands[] = {
    {"inspect", cmd_inspect, "print every tensor's name, dtype and shape of a checkpoint"},
    {"convert", cmd_convert, "rewrite a checkpoint with its float tensors in f16, bf16 or f32"},
    {"segment", cmd_segment,
     "segment an image with SAM from box/point/mask prompts, or everything (--everything)"},
    {"txt2img", cmd_txt2img, "generate an image with Stable Diffusion (+ ControlNet)"},
    {"reconstruct", cmd_reconstruct, "VAE round trip or DDIM inversion + regeneration of an image"},
    {"invert", cmd_invert, "DDIM + null-text inversion of SA-1B images"},
    {"attack", cmd_attack, "adversarial latent attack against SAM"},
    {"generate", cmd_generate, "invert + attack over a dataset (resumable)"},
    {"train-controlnet", cmd_train_controlnet, "train a mask-to-image ControlNet"},
    {"train-sam", cmd_train_sam, "train SAM from scratch (box and point prompts)"},
    {"train-vae", cmd_train_vae, "train SD's VAE from scratch (small width, diffusers folder)"},
    {"train-unet", cmd_train_unet, "train SD's UNet from scratch on VAE latents + CLIP captions"},
    {"world", cmd_world, "write the miniature world: training, validation and six shifted sets"},
    {"experiment-report", cmd_experiment_report,
     "tables, charts and panels of the world experiment (scripts/experiment.sh)"},
    {"tune", cmd_tune, "tune SAM's output tokens on (adversarial) data"},
    {"eval", cmd_eval, "evaluate SAM checkpoints (mIoU, boundary IoU)"},
    {"attack-pgd", cmd_attack_pgd, "pixel-space PGD baseline dataset"},
    {"demo", cmd_demo, "run the ASAM pipeline end to end on the miniature world's trained models"},
    {"bench", cmd_bench, "benchmarks: engine, sam, sd, generator"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: asam [--threads N] [--precision fp32|bf16] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-18s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nRun 'asam <command> --help' for the options of one command.\n");
}

/* Under mpirun / srun every rank runs the command (asam/dist.h shares the work out). A rank
 * that fails ends the whole job, so no other rank waits for it in a collective forever. */
static int finish(int rc) {
    if (asam_dist_size() > 1 && rc != 0 && rc != 3) { /* 3: the generate test hook's stop */
        fflush(stdout);
        fflush(stderr);
        asam_dist_abort(rc);
    }
    asam_dist_finalize();
    return rc;
}

static int run(int argc, char **argv) {
    int threads = 0, precision = 0;
    const cli_opt opts[] = {
        {"--threads", OPT_INT, &threads, "N", "CPU threads", 1, 4096},
        {"--precision", OPT_CHOICE, &precision, "P",
         "arithmetic of matmul/conv/attention: fp32, or bf16 (fp32 accumulation; needs "
         "AVX512-BF16)",
         .choices = "fp32|bf16"},
    };
    const cli_spec spec = {"",
                           "[--threads N] [--precision fp32|bf16] <command> [options]",
                           NULL,
                           opts,
                           CLI_NOPTS(opts),
                           NULL,
                           NULL};
    int i = 1;
    while (i < argc && argv[i][0] == '-') { /* global flags, up to the command's name */
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        int take = !strcmp(argv[i], "--threads") || !strcmp(argv[i], "--precision") ? 2 : 1;
        char *sub[3] = {"asam", argv[i], i + 1 < argc ? argv[i + 1] : NULL};
        int rc = cli_parse(&spec, take == 2 && i + 1 < argc ? 3 : 2, sub);
        if (rc) return cli_exit_code(rc);
        i += take;
    }
    if (threads)
        asam_set_threads(threads);
    else if (!getenv("OMP_NUM_THREADS") && asam_dist_size() > 1)
        asam_set_threads(asam_dist_default_threads()); /* this rank's share of the machine */
    /* bf16 where the CPU has it (AMX or AVX512-BF16), else fp32 with a warning: the same
     * results to bf16's precision, only slower. */
    if (precision && asam_set_precision(ASAM_BF16))
        fprintf(stderr, "asam: warning: %s; running in fp32\n", asam_last_error());
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    for (size_t c = 0; c < N_COMMANDS; c++)
        if (!strcmp(argv[i], commands[c].name)) return commands[c].fn(argc - i, argv + i);
    fprintf(stderr, "asam: unknown command '%s' (see asam --help)\n", argv[i]);
    return CLI_USAGE;
}

int main(int argc, char **argv) {
    if (asam_dist_init(&argc, &argv)) {
        fprintf(stderr, "asam: %s\n", asam_last_error());
        return 1;
    }
    return finish(run(argc, argv));
}
