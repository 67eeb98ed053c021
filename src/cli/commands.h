/* Subcommands of the `asam` program, each in its own cmd_<name>.c. The registry (the table
 * in main.c) names every one explicitly, so a command missing from the build is a link error,
 * never a silently absent command. Each returns the process exit code: 0 success, 1 failure,
 * 2 usage error (see options.h). */
#ifndef ASAM_CLI_COMMANDS_H
#define ASAM_CLI_COMMANDS_H

typedef int (*asam_cmd_fn)(int argc, char **argv);

int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_experiment_report(int argc, char **argv);
int cmd_segment(int argc, char **argv);
/* `segment --everything` (cmd_segment_everything.c), reached through cmd_segment. */
int cmd_segment_everything(int argc, char **argv);
int cmd_txt2img(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_invert(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train_controlnet(int argc, char **argv);
int cmd_train_sam(int argc, char **argv);
int cmd_train_vae(int argc, char **argv);
int cmd_train_unet(int argc, char **argv);
int cmd_world(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_attack_pgd(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* The benchmark suites behind `asam bench <suite>` (src/cli/bench_<suite>.c). */
int bench_engine_main(int argc, char **argv);
int bench_sam_main(int argc, char **argv);
int bench_efficientsam_main(int argc, char **argv);
int bench_sd_main(int argc, char **argv);
int bench_generator_main(int argc, char **argv);
int bench_amg_main(int argc, char **argv);

#endif
