/* asam attack: the MI-FGSM latent attack against SAM from stored inversions (OUT/inv), writing
 * the adversarial images and records (the second half of asam generate; options in
 * cmd_generate.c). */
#include "asam/generator.h"
#include "cli/commands.h"

int gen_cli_main(const char *cmd, int mode, int argc, char **argv);

int cmd_attack(int argc, char **argv) {
    return gen_cli_main("attack", ASAM_GEN_ATTACK, argc, argv);
}
