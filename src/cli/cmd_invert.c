/* asam invert: DDIM + null-text inversion of SA-1B images with the mask ControlNet
 * (the first half of asam generate; options in cmd_generate.c). */
#include "asam/generator.h"
#include "cli/commands.h"

int gen_cli_main(const char *cmd, int mode, int argc, char **argv);

int cmd_invert(int argc, char **argv) {
    return gen_cli_main("invert", ASAM_GEN_INVERT, argc, argv);
}
