/* Shared pieces of the benchmark suites; see bench_util.h. */
#include "cli/bench_util.h"
#include "cli/cli_util.h"
#include "asam/checkpoint.h"
#include "asam/error.h"
#include "asam/sd.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

void bench_row(const char *what, double sec, double flops, const char *note) {
    printf("%-34s %8.2f s %8.1f GFLOP/s %7.2f GB   %s\n", what, sec,
           flops > 0 ? flops / sec / 1e9 : 0.0, cli_peak_rss_gb(), note);
}

int bench_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int bench_write_clip_text(const char *path, int n_layers) {
    enum { D = 768, F = 3072, V = 49408, P = 77 };
    const size_t n_max = 16 * (size_t)n_layers + 4;
    asam_st_entry *e = calloc(n_max, sizeof *e);
    char(*names)[96] = calloc(n_max, sizeof *names);
    /* one pool of N(0, 1) * 1/sqrt(D) values that every weight matrix views */
    float *big = malloc(sizeof(float) * (size_t)V * D), *ones = malloc(sizeof(float) * F);
    float *zeros = calloc(F, sizeof(float));
    int rc = 0;
    if (!e || !names || !big || !ones || !zeros) {
        rc = asam_error("out of memory");
        goto done;
    }
    asam_randn(12345, big, (size_t)V * D);
    for (size_t i = 0; i < (size_t)V * D; i++) big[i] *= 0.036f;
    for (int i = 0; i < F; i++) ones[i] = 1.0f;
    size_t n = 0;
#define ADD(nm, nd, d0, d1, ptr)                                                                   \
    do {                                                                                           \
        snprintf(names[n], sizeof names[n], "%s", nm);                                             \
        e[n] = (asam_st_entry){names[n], ASAM_DT_F32, nd, {d0, d1}, ptr};                          \
        n++;                                                                                       \
    } while (0)
    ADD("text_model.embeddings.token_embedding.weight", 2, V, D, big);
    ADD("text_model.embeddings.position_embedding.weight", 2, P, D, big);
    ADD("text_model.final_layer_norm.weight", 1, D, 0, ones);
    ADD("text_model.final_layer_norm.bias", 1, D, 0, zeros);
    for (int l = 0; l < n_layers; l++) {
        char b[96];
        const char *lin[6] = {"self_attn.q_proj",   "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.out_proj", "mlp.fc1",          "mlp.fc2"};
        for (int k = 0; k < 6; k++) {
            int o = k == 4 ? F : D, in = k == 5 ? F : D;
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.%s.weight", l, lin[k]);
            ADD(b, 2, o, in, big + (size_t)(l * 7 + k) * 4096);
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.%s.bias", l, lin[k]);
            ADD(b, 1, o, 0, zeros);
        }
        for (int k = 1; k <= 2; k++) {
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.layer_norm%d.weight", l, k);
            ADD(b, 1, D, 0, ones);
            snprintf(b, sizeof b, "text_model.encoder.layers.%d.layer_norm%d.bias", l, k);
            ADD(b, 1, D, 0, zeros);
        }
    }
#undef ADD
    rc = asam_safetensors_write(path, e, n, NULL, 0);
done:
    free(e), free(names), free(big), free(ones), free(zeros);
    return rc;
}
