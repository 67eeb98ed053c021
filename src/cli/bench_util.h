/* Shared pieces of the benchmark suites (src/cli/bench_*.c): the result row, random model
 * files at real sizes, scratch-folder helpers. Benchmarks print seconds, GFLOP/s and peak
 * memory; they are never timed tests. */
#ifndef ASAM_CLI_BENCH_UTIL_H
#define ASAM_CLI_BENCH_UTIL_H

/* One result line: what, seconds, GFLOP/s (flops <= 0: none), the process's peak RSS, note. */
void bench_row(const char *what, double sec, double flops, const char *note);
int bench_file_exists(const char *path);
/* A random CLIP text encoder of width 768 with n_layers layers (ViT-L/14: 12) under Hugging
 * Face names ("text_model."), F32 safetensors. */
int bench_write_clip_text(const char *path, int n_layers);

/* `asam bench sd`: its options (shared by the image-model part in bench_sd_models.c and the
 * text-encoder and pipeline parts in bench_sd.c). */
typedef struct {
    const char *dir, *skip;
    int size, clean, level, threads;
    int iters; /* warm runs of each timed piece; the best is reported */
} bench_sd_args;
int bench_sd_parse_args(bench_sd_args *a, int argc, char **argv); /* CLI_OK/CLI_HELP/CLI_USAGE */
/* UNet, ControlNet + UNet, UNet backward, VAE decode and the diffusers-named files. */
int bench_sd_image_models(const bench_sd_args *a);

#endif
