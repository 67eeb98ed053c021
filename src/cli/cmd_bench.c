/* asam bench <engine|sam|sd> [options]: benchmarks that print seconds, GFLOP/s and peak
 * memory next to the DESIGN.md anchors. Never used as timed tests. Each suite lives in its
 * own bench_<suite>.c and is listed in the table below. */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    asam_cmd_fn fn;
    const char *help;
} suite;

int cmd_bench(int argc, char **argv) {
    const suite suites[] = {
        {"engine", bench_engine_main, "matmul, conv2d, attention vs raw OpenBLAS sgemm"},
        {"sam", bench_sam_main, "SAM ViT-B encoder/decoder forward and backward at 1024"},
        {"efficientsam", bench_efficientsam_main, "EfficientSAM ViT-Ti/ViT-S encoder and decoder"},
        {"sd", bench_sd_main, "SD 1.5 UNet, ControlNet, VAE at 64x64 latents"},
        {"generator", bench_generator_main, "ASAM invert and attack per image (SD 1.5 + ViT-B)"},
        {"amg", bench_amg_main, "segment everything (official defaults) with SAM ViT-B, s/image"},
    };
    size_t n = sizeof suites / sizeof suites[0];
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f,
                "usage: asam bench <suite> [options]   ('asam bench <suite> --help')\n\nsuites:\n");
        for (size_t i = 0; i < n; i++) fprintf(f, "  %-13s %s\n", suites[i].name, suites[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], suites[i].name)) return suites[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "asam bench: unknown suite '%s' (see asam bench --help)\n", argv[1]);
    return 2;
}
