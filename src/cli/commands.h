/* Subcommands of the `asam` program. Each lives in its own cmd_<name>.c and is declared
 * weak here, so a command whose file is not part of the build is simply absent from
 * `asam --help` (never a stub). Each returns the process exit code. */
#ifndef ASAM_CLI_COMMANDS_H
#define ASAM_CLI_COMMANDS_H

typedef int (*asam_cmd_fn)(int argc, char **argv);

#define ASAM_COMMANDS(X)                                                                           \
    X(inspect, "print every tensor's name, dtype and shape of a checkpoint")                       \
    X(segment, "segment an image with SAM from box/point/mask prompts")                            \
    X(txt2img, "generate an image with Stable Diffusion (+ ControlNet)")                           \
    X(reconstruct, "VAE round trip or DDIM inversion + regeneration of an image")                  \
    X(invert, "DDIM + null-text inversion of SA-1B images")                                        \
    X(attack, "adversarial latent attack against SAM")                                             \
    X(generate, "invert + attack over a dataset (resumable)")                                      \
    X(train_controlnet, "train a mask-to-image ControlNet")                                        \
    X(tune, "tune SAM's output tokens on (adversarial) data")                                      \
    X(eval, "evaluate SAM checkpoints (mIoU, boundary IoU)")                                       \
    X(attack_pgd, "pixel-space PGD baseline dataset")                                              \
    X(demo, "run the ASAM pipeline end to end on a built-in synthetic default")                    \
    X(bench, "benchmarks: engine, sam, sd")

#define ASAM_DECLARE_CMD(name, help) int cmd_##name(int argc, char **argv) __attribute__((weak));
ASAM_COMMANDS(ASAM_DECLARE_CMD)
#undef ASAM_DECLARE_CMD

#endif
